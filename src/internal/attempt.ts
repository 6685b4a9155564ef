/**
 * One attempt: choose and take a deployment of a group (the filters, the selector, the
 * half-open probe and the concurrency slot), then record how its call ended everywhere it
 * counts (the request's attempts, the state store, the breaker). `call` runs a request-response
 * attempt (chat, embed); streams open theirs with `choose` and `settle` (see `driver.ts`).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { Cooldown } from "../Cooldown.js"
import type { Deployment } from "../Deployment.js"
import { NoDeploymentAvailable, type ProviderError, Timeout } from "../Errors.js"
import type { Admission, DeploymentStats, Lease, StoreError, Unreserved } from "../RouterState.js"
import type { MeteredUsage } from "../CostMeter.js"
import type { ChatChunk, ChatRequest, Target, Usage } from "../Provider.js"
import type { Candidate, SelectionRequest } from "../Selector.js"
import type { Engine } from "./engine.js"
import { byTier, explainAll, type Filter, filterIn, fits, tokensOf } from "./filters.js"
import { costOf, nowMs, record, type RequestContext } from "./request.js"
import { type FastReservation, takesAvailable } from "./state.js"
import { maxOutputTokens, promptTokens } from "./tokens.js"

/**
 * Builds an error without capturing a stack trace: the router's own errors carry their facts,
 * and a stack that only points into the fiber runtime costs more (about 8 µs) than a routed
 * call that falls back.
 */
const withoutStack = <A>(build: () => A): A => {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return build()
  } finally {
    Error.stackTraceLimit = limit
  }
}

/** Why nothing of the group could take the request, as the typed error. */
const unavailable = (group: string, pool: ReadonlyArray<Deployment>, filter: Filter | undefined, counts: Unreserved, ctx: RequestContext) =>
  withoutStack(() => unavailableError(group, pool, filter, counts, ctx))

const unavailableError = (group: string, pool: ReadonlyArray<Deployment>, filter: Filter | undefined, counts: Unreserved, ctx: RequestContext) => {
  // Which deployments the pre-call filters left out, and why: worked out again over the pool,
  // here only, so that admission stays a yes or no.
  const explained = counts.untagged > 0 && filter !== undefined ? explainAll(filter, pool) : undefined
  if (counts.untagged === pool.length) {
    return new NoDeploymentAvailable({
      group,
      reason: "none_fits",
      message: `no deployment of "${group}" fits the request: ${explained?.text ?? "all filtered out"}`,
      filtered: explained?.filtered
    })
  }
  const back = counts.firstBack === undefined ? undefined : Math.max(0, counts.firstBack - ctx.clock.unsafeCurrentTimeMillis())
  const parts: Array<string> = []
  if (counts.full > 0) parts.push(`${counts.full} at their concurrency limit`)
  const rated = counts.rpm + counts.tpm
  const now = ctx.clock.unsafeCurrentTimeMillis()
  const capacityIn = counts.capacityBack === undefined ? undefined : Math.max(0, counts.capacityBack - now)
  if (counts.rpm > 0) parts.push(`${counts.rpm} at their rpm limit`)
  if (counts.tpm > 0) parts.push(`${counts.tpm} without room under their tpm limit for the request's ~${ctx.tokens ?? 0} tokens`)
  if (rated > 0) parts.push(capacityIn === undefined ? "none of them will ever have room for it" : `the first has room in ${Math.ceil(capacityIn)} ms`)
  const budget = counts.budgetRefusal === undefined ? undefined : { name: counts.budgetRefusal.key, resetsAt: counts.budgetRefusal.resetsAt }
  if (budget !== undefined) {
    parts.push(`${counts.budget} over budget ("${budget.name}" resets at ${new Date(budget.resetsAt).toISOString()})`)
  }
  if (counts.cooling > 0) {
    parts.push(
      back === undefined
        ? `${counts.cooling} cooling down or being probed`
        : `${counts.cooling} cooling down (the first returns in ${Math.ceil(back)} ms)`
    )
  }
  if (counts.excluded > 0) parts.push(`${counts.excluded} already failed this request`)
  if (counts.untagged > 0) parts.push(`${counts.untagged} filtered out: ${explained?.text ?? "by the request's filters"}`)
  // Only deployments this request already failed on are left: the caller gets the upstream's
  // error instead of this one (`finalError`), so the reason is moot.
  const reason = counts.full > 0 || rated > 0
    ? "over_limits"
    : counts.cooling > 0
    ? "cooling_down"
    : budget !== undefined
    ? "over_budget"
    : "none_fits"
  const limits: Array<"maxConcurrent" | "rpm" | "tpm"> = []
  if (counts.full > 0) limits.push("maxConcurrent")
  if (counts.rpm > 0) limits.push("rpm")
  if (counts.tpm > 0) limits.push("tpm")
  const retryAfter = reason === "cooling_down"
    ? back
    : reason === "over_limits" && counts.full === 0
    ? capacityIn
    : reason === "over_budget"
    ? Math.max(0, budget!.resetsAt - now)
    : undefined
  return new NoDeploymentAvailable({
    group,
    reason,
    message: `no deployment of "${group}" available: ${parts.length === 0 ? "none admitted" : parts.join(", ")}`,
    retryAfter: retryAfter === undefined ? undefined : Duration.millis(retryAfter),
    limits: limits.length === 0 ? undefined : limits,
    budget: reason === "over_budget" ? budget : undefined,
    filtered: explained?.filtered
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

const untagged: Admission = { refused: "untagged" }
const excluded: Admission = { refused: "excluded" }
const full: Admission = { refused: "full" }

/**
 * What the request says of a deployment: not one its pre-call filters refuse (`filter`: tags,
 * region, context window; counted as `"untagged"`), one it must not go back to, one cooling down
 * (or that asked it to wait), one at its concurrency limit; the one it just failed on, or
 * already waits on, only when no other can take it.
 */
const admit = (ctx: RequestContext, d: Deployment, stats: DeploymentStats, now: number, filter: Filter | undefined): Admission => {
  if (filter !== undefined && !fits(filter, d)) return untagged
  if (ctx.excluded !== undefined && ctx.excluded.has(d.id)) return excluded
  const circuit = stats.cooldown
  if (!ctx.policies.cooldown.isAvailable(circuit, now)) {
    return { refused: "cooling", until: circuit.status === "open" ? circuit.until : undefined }
  }
  const notBefore = ctx.notBefore?.get(d.id)
  if (notBefore !== undefined && notBefore > now) return { refused: "cooling", until: notBefore }
  if (d.maxConcurrent !== undefined && stats.inFlight >= d.maxConcurrent) return full
  if (d.id === ctx.lastFailed || (ctx.inFlight !== undefined && ctx.inFlight.has(d.id))) return "fallback"
  return "take"
}

/**
 * Whether `admit` answers `"take"` for every deployment whose circuit the cooldown policy says
 * is available and that is below its `maxConcurrent` (the store's `takesAvailable` promise):
 * so it does when no pre-call filter applies in the group (`filterIn` is `undefined`: checked by
 * the caller), and the request has no exclusions, no retry-after holds, no last failure and no
 * attempt in flight, since nothing else can refuse a deployment or make it a fallback.
 */
const takesEveryAvailable = (ctx: RequestContext): boolean =>
  ctx.lastFailed === undefined &&
  (ctx.excluded === undefined || ctx.excluded.size === 0) &&
  (ctx.notBefore === undefined || ctx.notBefore.size === 0) &&
  (ctx.inFlight === undefined || ctx.inFlight.size === 0)

/** The budgets a call of this request on a deployment charges (the meter's), `undefined` without any. */
const chargesOf = (ctx: RequestContext) => {
  const charges = ctx.policies.meter.charges
  if (charges === undefined) return undefined
  const estimate = { promptTokens: promptTokens(ctx.request), outputTokens: maxOutputTokens(ctx.request) }
  return (d: Deployment) => charges(d, ctx.tags, estimate)
}

/**
 * How long an attempt's lease in `group` lasts: the longest call timeout there (or the
 * request's own) and a margin, so a call ends before its lease does (streams renew theirs).
 *
 * @internal
 */
export const leaseTtl = (ctx: RequestContext, group: string): number => {
  const timeout = ctx.options?.timeout
  return timeout === undefined ? ctx.engine.leaseTtlMs.get(group)! : Duration.toMillis(timeout) + ctx.engine.leaseMarginMs
}

/** Extra life of a lease beyond its call's own timeout, by default (`Config.leaseMargin`). */
export const leaseMarginMs = 60_000

/**
 * Takes a slot on a deployment of `group` for the request, in one atomic store step (admission,
 * the selector's pick, the half-open probe, the slot), or says why none can take it. Runs inside
 * the caller's uninterruptible region, so that a lease it takes is always handed over to the
 * caller's completion; only the selector's own pick stays interruptible.
 *
 * @internal
 */
export const choose = (
  ctx: RequestContext,
  group: string,
  selection: SelectionRequest,
  restore: Restore
): Effect.Effect<Lease, NoDeploymentAvailable> => {
  const pool = poolOf(ctx, group)
  const { cooldown, selector } = ctx.policies
  const traits = ctx.engine.traits.get(group)
  const filter = filterIn(ctx, group, traits)
  const pick = (candidates: ReadonlyArray<Candidate>) => restore(selector.pick(candidates, selection))
  const reservation: FastReservation = {
    deployments: pool,
    admit: (d, stats, now) => admit(ctx, d, stats, now, filter),
    pick: traits !== undefined && traits.tiers ? byTier(pick) : pick,
    claim: cooldown.claim,
    ttlMs: leaseTtl(ctx, group),
    tokens: ctx.engine.rated.has(group) ? tokensOf(ctx) : undefined,
    charges: chargesOf(ctx),
    [takesAvailable]: filter === undefined && takesEveryAvailable(ctx) ? cooldown : undefined
  }
  return Effect.catchTags(ctx.engine.state.reserve(reservation), {
    Unreserved: (counts) => Effect.fail(unavailable(group, pool, filter, counts, ctx)),
    NoFit: (noFit) =>
      Effect.fail(withoutStack(() =>
        new NoDeploymentAvailable({ group, reason: "none_fits", message: `no deployment of "${group}" fits: ${noFit.message}` })
      ))
  })
}

/**
 * Runs a policy's update of the store; a store that fails it loses it (logged): the request
 * goes on.
 *
 * @internal
 */
export const quietly = (effect: Effect.Effect<void, StoreError>): Effect.Effect<void> =>
  Effect.catchTag(effect, "StoreError", (error) => Effect.logWarning(`router store: ${error.operation} failed (${error.message})`))

/**
 * Records a finished call everywhere it counts: the request's attempts, the lease's deployment
 * in the store and the breaker (`recordOutcome`). An interrupted call is `cancelled` and judges
 * nothing.
 *
 * @internal
 */
export const settle = (
  ctx: RequestContext,
  lease: Lease,
  startedMs: number,
  circuitClosed: boolean,
  exit: Exit.Exit<unknown, ProviderError>,
  kind: "call" | "stream",
  usage: (MeteredUsage & { readonly total_tokens: number }) | undefined,
  firstContentMs?: number | undefined
): Effect.Effect<void> => {
  const d = lease.deployment
  const latencyMs = nowMs(ctx.clock) - startedMs
  const engine = ctx.engine
  const cooldown = ctx.policies.cooldown
  ctx.providerMs += latencyMs
  ctx.groupAttempts++
  if (Exit.isSuccess(exit)) {
    ctx.attempts.push(
      firstContentMs === undefined
        ? { deploymentId: d.id, group: d.group, outcome: "won", latencyMs }
        : { deploymentId: d.id, group: d.group, outcome: "won", latencyMs, firstContentMs }
    )
    // What it cost goes with its completion: to the budgets its lease holds, and to the spend
    // (in the same store step when the meter says its keys, else with `record`).
    const cost = costOf(ctx, d, usage)
    const spendKeys = ctx.policies.meter.spendKeys
    const recorded = recordOutcome(engine, cooldown, lease, circuitClosed, "success", kind, latencyMs, usage, firstContentMs, cost, cost > 0 ? spendKeys?.(d, ctx.tags) : undefined)
    return cost > 0 && spendKeys === undefined ? Effect.zipRight(recorded, record(ctx, d, cost)) : recorded
  }
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) {
    ctx.attempts.push({ deploymentId: d.id, group: d.group, outcome: "cancelled", latencyMs })
    return recordOutcome(engine, cooldown, lease, circuitClosed, "cancelled", kind, latencyMs, undefined, firstContentMs)
  }
  const error = failure.value
  const now = ctx.clock.unsafeCurrentTimeMillis()
  ctx.attempts.push({ deploymentId: d.id, group: d.group, outcome: "failed", error: error._tag, latencyMs })
  ctx.lastFailed = d.id
  ctx.lastUpstream = error
  if (engine.table[error._tag].retry === "elsewhere") (ctx.excluded ??= new Set()).add(d.id)
  if (error.retryAfter !== undefined) (ctx.notBefore ??= new Map()).set(d.id, now + Duration.toMillis(error.retryAfter))
  return recordOutcome(engine, cooldown, lease, circuitClosed, error, kind, latencyMs, undefined, firstContentMs)
}

/**
 * Records how a call on `lease` ended, in the store (the slot back, the latency samples: the
 * whole call, or for a stream its first content `firstContentMs` after it started) and in the
 * breaker: what `settle` records beyond the request's own bookkeeping, and all that a health
 * probe records (`health.ts`). `ended` is `"success"`, `"cancelled"` (interrupted: it judges
 * nothing) or the error the call failed with. `circuitClosed`: the circuit was closed when the
 * call began (a success then changes nothing in the breaker).
 *
 * @internal
 */
export const recordOutcome = (
  engine: Engine,
  cooldown: Context.Tag.Service<Cooldown>,
  lease: Lease,
  circuitClosed: boolean,
  ended: "success" | "cancelled" | ProviderError,
  kind: "call" | "stream",
  latencyMs: number,
  usage: { readonly total_tokens: number; readonly completion_tokens?: number | undefined } | undefined,
  firstContentMs?: number | undefined,
  cost?: number | undefined,
  spend?: ReadonlyArray<string> | undefined
): Effect.Effect<void> => {
  const d = lease.deployment
  const state = engine.state
  if (ended === "success") {
    const completed = state.complete(lease, {
      result: "success",
      kind,
      latencyMs,
      firstTokenMs: firstContentMs,
      outputTokens: usage?.completion_tokens,
      tokens: usage?.total_tokens ?? 0,
      cost,
      spend
    })
    // A success only changes a circuit that was not closed when the attempt began.
    return circuitClosed ? completed : Effect.zipRight(completed, quietly(cooldown.onSuccess(d)))
  }
  if (ended === "cancelled") {
    return Effect.zipRight(state.complete(lease, undefined), circuitClosed ? Effect.void : quietly(cooldown.onInterrupt(d)))
  }
  const error = ended
  const classification = engine.table[error._tag]
  // An error that is the request's fault (bad request, context window...) says the
  // deployment is alive; a rate limit that says when to come back holds it instead of
  // counting against it (Cooldown).
  const result = classification.cooldown === "none"
    ? "success"
    : error._tag === "RateLimited" && error.retryAfter !== undefined
    ? "ignored"
    : "failure"
  return Effect.zipRight(
    state.complete(lease, { result, kind, latencyMs, firstTokenMs: firstContentMs, tokens: 0 }),
    quietly(cooldown.onFailure(d, { error, classification, group: engine.pools.get(d.group)! }))
  )
}

/**
 * A hedged attempt that answered too, after another won: its answer is dropped, it is recorded
 * as cancelled, and its usage is still paid (its spend went with its completion, `settle`).
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
  return Effect.sync(() => {
    const cost = costOf(ctx, d, usage)
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

const timeoutError = (d: Deployment, timeout: Duration.Duration, what: string) => () =>
  new Timeout({
    provider: d.provider.name,
    deploymentId: d.id,
    message: `no ${what} from ${d.id} within ${Duration.format(timeout)}`
  })

/** The timeout the router enforces on `d` for this request: none when its provider enforces its own. */
const routerTimeout = (ctx: RequestContext, d: Deployment): Duration.Duration | undefined =>
  d.provider.enforcesTimeout === true ? undefined : ctx.options?.timeout ?? ctx.engine.raceTimeouts[d.index]

/**
 * Bounds `call` by the deployment's timeout when its provider does not enforce it itself.
 *
 * @internal
 */
export const withTimeout = <A>(ctx: RequestContext, d: Deployment, call: Effect.Effect<A, ProviderError>) => {
  const duration = routerTimeout(ctx, d)
  return duration === undefined ? call : Effect.timeoutFail(call, { duration, onTimeout: timeoutError(d, duration, "answer") })
}

/**
 * `d`'s stream of `request`; when its provider does not enforce its timeout, the router does:
 * no chunk within the timeout (the first or any later one) fails it.
 *
 * @internal
 */
export const streamOf = (ctx: RequestContext, d: Deployment, request: ChatRequest): Stream.Stream<ChatChunk, ProviderError> => {
  const stream = d.provider.stream({ ...request, model: d.model }, targetOf(ctx, d))
  const duration = routerTimeout(ctx, d)
  if (duration === undefined) return stream
  const onTimeout = timeoutError(d, duration, "data")
  return Stream.timeoutFail(stream, onTimeout, duration)
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
  usageOf: (a: A) => (MeteredUsage & { readonly total_tokens: number }) | undefined
): Effect.Effect<readonly [A, Deployment], ProviderError | NoDeploymentAvailable> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(choose(ctx, group, selection, restore), (lease) => {
      const d = lease.deployment
      const startedMs = nowMs(ctx.clock)
      const closed = lease.stats.cooldown.status === "closed"
      const concurrent = ctx.concurrent
      if (concurrent) (ctx.inFlight ??= new Set()).add(d.id)
      const done = (exit: Exit.Exit<A, ProviderError>, usage: ReturnType<typeof usageOf>) => {
        if (concurrent) ctx.inFlight!.delete(d.id)
        return Effect.zipRight(settle(ctx, lease, startedMs, closed, exit, "call", usage), Exit.map(exit, (a) => [a, d] as const))
      }
      return Effect.matchCauseEffect(restore(withTimeout(ctx, d, invoke(d))), {
        onSuccess: (a) => done(Exit.succeed(a), usageOf(a)),
        onFailure: (cause) => done(Exit.failCause(cause), undefined)
      })
    })
  )
