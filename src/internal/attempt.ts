/**
 * One attempt: choose and take a deployment of a group (the filters, the selector, the
 * half-open probe and the concurrency slot), then record how its call ended everywhere it
 * counts (the request's attempts, the state store, the breaker). `call` runs a request-response
 * attempt (chat, embed); streams open theirs with `choose` and `settle` (see `driver.ts`).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type { Deployment } from "../Deployment.js"
import { NoDeploymentAvailable, type ProviderError, Timeout } from "../Errors.js"
import type { Target, Usage } from "../Provider.js"
import type { Candidate, SelectionRequest } from "../Selector.js"
import { hasTags } from "./engine.js"
import { meter, nowMs, type RequestContext } from "./request.js"

/** Why a group has no candidate, counted over its deployments. */
interface Unavailable {
  untagged: number
  excluded: number
  cooling: number
  full: number
  /** When the first cooling deployment returns (epoch ms), `Infinity` if unknown. */
  firstBack: number
  readonly size: number
}

/** Why nothing of the group could take the request, as the typed error. */
const unavailable = (group: string, counts: Unavailable, ctx: RequestContext, now: number) => {
  if (counts.untagged === counts.size) {
    return new NoDeploymentAvailable({
      group,
      reason: "none_fits",
      message: `no deployment of "${group}" available: none carries every tag of [${ctx.tags.join(", ")}]`
    })
  }
  const back = counts.firstBack === Infinity ? undefined : Math.max(0, counts.firstBack - now)
  const parts: Array<string> = []
  if (counts.full > 0) parts.push(`${counts.full} at their concurrency limit`)
  if (counts.cooling > 0) {
    parts.push(
      back === undefined
        ? `${counts.cooling} cooling down or being probed`
        : `${counts.cooling} cooling down (the first returns in ${Math.ceil(back)} ms)`
    )
  }
  if (counts.excluded > 0) parts.push(`${counts.excluded} already failed this request`)
  if (counts.untagged > 0) parts.push(`${counts.untagged} without every tag of [${ctx.tags.join(", ")}]`)
  // Only deployments this request already failed on are left: the caller gets the upstream's
  // error instead of this one (`finalError`), so the reason is moot.
  const reason = counts.full > 0 ? "over_limits" : counts.cooling > 0 ? "cooling_down" : "none_fits"
  return new NoDeploymentAvailable({
    group,
    reason,
    message: `no deployment of "${group}" available: ${parts.join(", ")}`,
    retryAfter: reason === "cooling_down" && back !== undefined ? Duration.millis(back) : undefined
  })
}

/**
 * The deployments of `group` a request may use: the one it is pinned to, else the group.
 *
 * @internal
 */
export const poolOf = (ctx: RequestContext, group: string): ReadonlyArray<Deployment> => {
  const pinned = ctx.options?.deployment
  return pinned !== undefined && pinned.group === group ? [pinned] : ctx.engine.pools.get(group)!
}

type Restore = <A, E>(effect: Effect.Effect<A, E>) => Effect.Effect<A, E>

/**
 * A deployment taken for an attempt: its candidate, and when its slot was taken (epoch ms, what
 * `RouterState.release` is given back).
 *
 * @internal
 */
export interface Taken {
  readonly candidate: Candidate
  readonly at: number
}

/**
 * Picks, claims and acquires a deployment of `group`, or says why none can take the request.
 * Runs inside the caller's uninterruptible region, so that a slot it acquires is always handed
 * over to the caller's release; only the selector's own pick stays interruptible.
 *
 * @internal
 */
export const choose = (
  ctx: RequestContext,
  group: string,
  selection: SelectionRequest,
  restore: Restore
): Effect.Effect<Taken, NoDeploymentAvailable> =>
  Effect.suspend(() => {
    const pool = poolOf(ctx, group)
    const now = ctx.clock.unsafeCurrentTimeMillis()
    const cooldown = ctx.policies.cooldown
    return Effect.flatMap(ctx.engine.state.snapshot(pool, now), (stats) => {
      const candidates: Array<Candidate> = []
      const counts: Unavailable = { untagged: 0, excluded: 0, cooling: 0, full: 0, firstBack: Infinity, size: pool.length }
      let lastFailed: Candidate | undefined
      let busy: Array<Candidate> | undefined
      for (let i = 0; i < pool.length; i++) {
        const d = pool[i]
        const s = stats[i]
        if (ctx.tags.length > 0 && !hasTags(d, ctx.tags)) {
          counts.untagged++
          continue
        }
        if (ctx.excluded !== undefined && ctx.excluded.has(d.id)) {
          counts.excluded++
          continue
        }
        if (!cooldown.isAvailable(s.cooldown, now)) {
          counts.cooling++
          if (s.cooldown.status === "open" && s.cooldown.until < counts.firstBack) counts.firstBack = s.cooldown.until
          continue
        }
        const notBefore = ctx.notBefore?.get(d.id)
        if (notBefore !== undefined && notBefore > now) {
          counts.cooling++
          if (notBefore < counts.firstBack) counts.firstBack = notBefore
          continue
        }
        if (d.maxConcurrent !== undefined && s.inFlight >= d.maxConcurrent) {
          counts.full++
          continue
        }
        const candidate = { deployment: d, stats: s }
        if (ctx.inFlight !== undefined && ctx.inFlight.has(d.id)) (busy ??= []).push(candidate)
        else if (d.id === ctx.lastFailed) lastFailed = candidate
        else candidates.push(candidate)
      }
      // A retry avoids the deployment that just failed, and a hedge the ones the request is
      // already waiting on, unless nothing else is left.
      if (candidates.length === 0 && lastFailed !== undefined) candidates.push(lastFailed)
      if (candidates.length === 0 && busy !== undefined) candidates.push(...busy)
      return pickFrom(ctx, group, candidates, selection, restore, now, counts)
    })
  })

const pickFrom = (
  ctx: RequestContext,
  group: string,
  candidates: Array<Candidate>,
  selection: SelectionRequest,
  restore: Restore,
  now: number,
  counts: Unavailable
): Effect.Effect<Taken, NoDeploymentAvailable> => {
  if (candidates.length === 0) return Effect.fail(unavailable(group, counts, ctx, now))
  const { cooldown, selector } = ctx.policies
  const picked = Effect.catchTag(
    restore(selector.pick(candidates, selection)),
    "NoFit",
    (noFit) =>
      Effect.fail(new NoDeploymentAvailable({ group, reason: "none_fits", message: `no deployment of "${group}" fits: ${noFit.message}` }))
  )
  return Effect.flatMap(picked, (candidate) => {
    const d = candidate.deployment
    const closed = candidate.stats.cooldown.status === "closed"
    const others = () => candidates.filter((c) => c !== candidate)
    const take = Effect.flatMap(ctx.engine.state.acquire(d, now), (acquired) => {
      if (acquired) return Effect.succeed({ candidate, at: now })
      counts.full++
      return Effect.zipRight(closed ? Effect.void : cooldown.onInterrupt(d, now), pickFrom(ctx, group, others(), selection, restore, now, counts))
    })
    // A closed circuit needs no claim; an expired one is claimed for its single probe.
    if (closed) return take
    return Effect.flatMap(cooldown.claim(d, now), (ok) => {
      if (ok) return take
      counts.cooling++
      return pickFrom(ctx, group, others(), selection, restore, now, counts)
    })
  })
}

/**
 * Records a finished call everywhere it counts: the request's attempts, the deployment's
 * outcome in the store (its latency samples: the whole call, or for a stream its first content
 * `firstContentMs` after it started), the breaker. An interrupted call is `cancelled` and
 * judges nothing.
 *
 * @internal
 */
export const settle = (
  ctx: RequestContext,
  d: Deployment,
  startedMs: number,
  circuitClosed: boolean,
  exit: Exit.Exit<unknown, ProviderError>,
  kind: "call" | "stream",
  usage: { readonly total_tokens: number; readonly completion_tokens?: number | undefined } | undefined,
  firstContentMs?: number | undefined
): Effect.Effect<void> => {
  const latencyMs = nowMs(ctx.clock) - startedMs
  const now = ctx.clock.unsafeCurrentTimeMillis()
  const { cooldown } = ctx.policies
  const state = ctx.engine.state
  ctx.providerMs += latencyMs
  ctx.groupAttempts++
  if (Exit.isSuccess(exit)) {
    ctx.attempts.push(
      firstContentMs === undefined
        ? { deploymentId: d.id, group: d.group, outcome: "won", latencyMs }
        : { deploymentId: d.id, group: d.group, outcome: "won", latencyMs, firstContentMs }
    )
    const recorded = state.recordOutcome(d, now, {
      result: "success",
      kind,
      latencyMs,
      firstTokenMs: firstContentMs,
      outputTokens: usage?.completion_tokens,
      tokens: usage?.total_tokens ?? 0
    })
    // A success only changes a circuit that was not closed when the attempt began.
    return circuitClosed ? recorded : Effect.zipRight(recorded, cooldown.onSuccess(d, now))
  }
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) {
    ctx.attempts.push({ deploymentId: d.id, group: d.group, outcome: "cancelled", latencyMs })
    return cooldown.onInterrupt(d, now)
  }
  const error = failure.value
  const classification = ctx.engine.table[error._tag]
  ctx.attempts.push({ deploymentId: d.id, group: d.group, outcome: "failed", error: error._tag, latencyMs })
  ctx.lastFailed = d.id
  ctx.lastUpstream = error
  if (classification.retry === "elsewhere") (ctx.excluded ??= new Set()).add(d.id)
  if (error.retryAfter !== undefined) (ctx.notBefore ??= new Map()).set(d.id, now + Duration.toMillis(error.retryAfter))
  // An error that is the request's fault (bad request, context window...) says the
  // deployment is alive; a rate limit that says when to come back holds it instead of
  // counting against it (Cooldown).
  const result = classification.cooldown === "none"
    ? "success"
    : error._tag === "RateLimited" && error.retryAfter !== undefined
    ? "ignored"
    : "failure"
  return Effect.zipRight(
    state.recordOutcome(d, now, { result, kind, latencyMs, firstTokenMs: firstContentMs, tokens: 0 }),
    cooldown.onFailure(d, { error, classification, group: ctx.engine.pools.get(d.group)!, now })
  )
}

/**
 * A hedged attempt that answered too, after another won: its answer is dropped, it is recorded
 * as cancelled, and its usage is still paid.
 *
 * @internal
 */
export const outrun = (ctx: RequestContext, d: Deployment, usage: Usage | undefined): Effect.Effect<void> => {
  for (let i = ctx.attempts.length - 1; i >= 0; i--) {
    const attempt = ctx.attempts[i]
    if (attempt.deploymentId === d.id && attempt.outcome === "won") {
      ctx.attempts[i] = { ...attempt, outcome: "cancelled" }
      break
    }
  }
  return Effect.map(meter(ctx, d, usage), (cost) => {
    ctx.otherCost += cost
  })
}

/**
 * What a deployment's provider is called with for this request: its target, with the
 * request's own timeout when it sets one.
 *
 * @internal
 */
export const targetOf = (ctx: RequestContext, d: Deployment): Target => {
  const target = ctx.engine.targets[d.index]
  const timeout = ctx.options?.timeout
  return timeout === undefined ? target : { ...target, timeout }
}

const timeoutError = (d: Deployment, timeout: Duration.Duration) => () =>
  new Timeout({
    provider: d.provider.name,
    deploymentId: d.id,
    message: `no answer from ${d.id} within ${Duration.format(timeout)}`
  })

/**
 * Bounds `call` by the deployment's timeout when its provider does not enforce it itself.
 *
 * @internal
 */
export const withTimeout = <A>(ctx: RequestContext, d: Deployment, call: Effect.Effect<A, ProviderError>) => {
  if (d.provider.enforcesTimeout === true) return call
  const duration = ctx.options?.timeout ?? ctx.engine.raceTimeouts[d.index]
  return duration === undefined ? call : Effect.timeoutFail(call, { duration, onTimeout: timeoutError(d, duration) })
}

/**
 * One request-response attempt (chat, embed) in `group`: its deployment's answer, or why it
 * failed (recorded).
 *
 * @internal
 */
export const call = <A>(
  ctx: RequestContext,
  group: string,
  selection: SelectionRequest,
  invoke: (d: Deployment) => Effect.Effect<A, ProviderError>,
  usageOf: (a: A) => { readonly total_tokens: number; readonly completion_tokens?: number | undefined } | undefined
): Effect.Effect<readonly [A, Deployment], ProviderError | NoDeploymentAvailable> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(choose(ctx, group, selection, restore), ({ at, candidate }) => {
      const d = candidate.deployment
      const startedMs = nowMs(ctx.clock)
      const closed = candidate.stats.cooldown.status === "closed"
      const hedging = ctx.concurrent
      if (hedging) (ctx.inFlight ??= new Set()).add(d.id)
      const done = (exit: Exit.Exit<A, ProviderError>, usage: ReturnType<typeof usageOf>) => {
        if (hedging) ctx.inFlight!.delete(d.id)
        return Effect.zipRight(
          Effect.zipRight(ctx.engine.state.release(d, at), settle(ctx, d, startedMs, closed, exit, "call", usage)),
          Exit.map(exit, (a) => [a, d] as const)
        )
      }
      return Effect.matchCauseEffect(restore(withTimeout(ctx, d, invoke(d))), {
        onSuccess: (a) => done(Exit.succeed(a), usageOf(a)),
        onFailure: (cause) => done(Exit.failCause(cause), undefined)
      })
    })
  )
