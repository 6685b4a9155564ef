/**
 * The router behind `Router.make`: selection, attempts, retries, cooldowns, fallbacks, cost and
 * route info for chat, stream and embed.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Channel from "effect/Channel"
import * as Chunk from "effect/Chunk"
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as ScheduleDecision from "effect/ScheduleDecision"
import * as Intervals from "effect/ScheduleIntervals"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { Cooldown } from "../Cooldown.js"
import { CostMeter } from "../CostMeter.js"
import { type Deployment, fromConfig } from "../Deployment.js"
import {
  type Attempt,
  classification as defaultClassification,
  type ClassificationOverrides,
  type ClassificationTable,
  type ErrorTag,
  InvalidConfig,
  isProviderError,
  NoDeploymentAvailable,
  type ProviderError,
  type RouterError,
  Timeout,
  UnknownGroup
} from "../Errors.js"
import { Fallback } from "../Fallback.js"
import type { ChatRequest, EmbeddingRequest, RateLimitInfo, Target, Usage } from "../Provider.js"
import { RetrySchedule } from "../RetrySchedule.js"
import type { Config, RouteInfo, RoutedChunk, Service } from "../Router.js"
import { RouterState } from "../RouterState.js"
import { type Candidate, type SelectionRequest, Selector } from "../Selector.js"
import { PositiveDuration, validateConfig } from "./schemas.js"
import { storeOf } from "./state.js"

const validateTimeout = validateConfig(Schema.UndefinedOr(PositiveDuration), "timeout")
const defaultTimeout = Duration.minutes(10)
const defaultMaxWaitMs = 60_000

const errorTags = Object.keys(defaultClassification) as ReadonlyArray<ErrorTag>
const oneOf = <const L extends ReadonlyArray<string>>(...literals: L) =>
  Schema.Literal(...literals).annotations({ message: () => `expected one of ${literals.map((l) => `"${l}"`).join(", ")}` })
const ClassificationRow = Schema.Struct({
  retry: Schema.optional(oneOf("any", "elsewhere", "never")),
  cooldown: Schema.optional(oneOf("none", "count", "immediate", "long")),
  fallback: Schema.optional(oneOf("generic", "context_window", "content_policy", "none"))
})
const validateClassification = validateConfig(Schema.Record({ key: Schema.String, value: ClassificationRow }), "classification")

/** The default table with a router's overrides laid over it, row by row. */
const resolveClassification = (overrides: ClassificationOverrides | undefined) =>
  overrides === undefined ? Effect.succeed(defaultClassification) : Effect.flatMap(validateClassification(overrides), (rows): Effect.Effect<ClassificationTable, InvalidConfig> => {
    const unknown = Object.keys(rows).filter((tag) => !errorTags.includes(tag as ErrorTag))
    if (unknown.length > 0) {
      return Effect.fail(InvalidConfig.fromIssues(unknown.map((tag) => ({
        path: `classification.${tag}`,
        message: `unknown error tag; known: ${errorTags.join(", ")}`
      }))))
    }
    const table: Record<string, ClassificationTable[ErrorTag]> = { ...defaultClassification }
    for (const [tag, row] of Object.entries(rows)) {
      const base = table[tag]
      table[tag] = {
        retry: row.retry ?? base.retry,
        cooldown: row.cooldown ?? base.cooldown,
        fallback: row.fallback ?? base.fallback
      }
    }
    return Effect.succeed(table as ClassificationTable)
  })

/** What one routed request accumulates across its attempts. */
interface RequestContext {
  readonly requestedGroup: string
  readonly tags: ReadonlyArray<string>
  readonly clock: Clock.Clock
  readonly startedMs: number
  readonly attempts: Array<Attempt>
  /** The deployment the last attempt failed on: the next retry avoids it when it can. */
  lastFailed: string | undefined
  /** Deployments this request never goes back to (they failed with an error retried only elsewhere). */
  excluded: Set<string> | undefined
  /** The last error an upstream answered with: what the caller gets if the request then runs out of deployments. */
  lastUpstream: ProviderError | undefined
  /**
   * When each deployment that answered with a retry-after takes this request again (epoch ms):
   * the request never goes back earlier, whatever the cooldown policy does.
   */
  notBefore: Map<string, number> | undefined
  /** Attempts made in the group being tried. */
  groupAttempts: number
  providerMs: number
  waitedMs: number
}

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

const nowMs = (clock: Clock.Clock) => Number(clock.unsafeCurrentTimeNanos()) / 1e6

const noTags: ReadonlyArray<string> = []

/** Re-creates an error with the request's attempts on it (errors are immutable). */
const withAttempts = (error: RouterError, attempts: ReadonlyArray<Attempt>): RouterError => {
  const Ctor = error.constructor as new(args: object) => RouterError
  return new Ctor({ ...error, message: error.message, attempts: attempts.slice() })
}

export const make = (config: Config) =>
  Effect.gen(function*() {
    const deployments = yield* Either.match(fromConfig(config.deployments, config.providers ?? {}), {
      onLeft: (error) => Effect.fail(error),
      onRight: (ds) => Effect.succeed(ds)
    })
    const configuredTimeout = yield* validateTimeout(config.timeout)
    const table = yield* resolveClassification(config.classification)
    const selector = yield* Selector
    const retry = yield* RetrySchedule
    const cooldown = yield* Cooldown
    const fallback = yield* Fallback
    const meter = yield* CostMeter
    const state = yield* RouterState
    const maxWaitMs = retry.maxWait === undefined ? defaultMaxWaitMs : Duration.toMillis(retry.maxWait)

    // Policies built by this package keep their state in a store of their own choosing; over
    // another store than the router's they would write where the router never reads.
    const strayStores = ([["Cooldown", cooldown], ["CostMeter", meter]] as const).filter(([, policy]) => {
      const store = storeOf.get(policy)
      return store !== undefined && store !== state
    })
    if (strayStores.length > 0) {
      return yield* Effect.fail(InvalidConfig.fromIssues(strayStores.map(([name]) => ({
        path: "RouterState",
        message: `${name} keeps its state in another RouterState than the router's, so the router would never see it. ` +
          "To use your own store, provide Router.policies and then your store (Router.defaults brings an in-memory store of its own)"
      }))))
    }

    const pools = new Map<string, Array<Deployment>>()
    for (const d of deployments) {
      const pool = pools.get(d.group)
      if (pool === undefined) pools.set(d.group, [d])
      else pool.push(d)
    }
    const groups = Array.from(pools.keys())
    const fallbackIssues = fallback.check(groups)
    if (fallbackIssues.length > 0) return yield* Effect.fail(InvalidConfig.fromIssues(fallbackIssues))
    // Per deployment, by index: what its provider is called with (listening for rate-limit
    // headers), and the timeout the router races it against when the provider does not
    // enforce `target.timeout` itself.
    const targets: Array<Target> = []
    const raceTimeouts: Array<Duration.Duration | undefined> = []
    for (const d of deployments) {
      const timeout = d.timeout ?? configuredTimeout
      targets[d.index] = { ...d.target, timeout, reportRateLimit: (info) => reportRateLimit(d, info) }
      raceTimeouts[d.index] = d.provider.enforcesTimeout === true ? undefined : timeout ?? defaultTimeout
    }

    /**
     * Keeps the upstream's headroom; one that shows no requests (or tokens) left until its
     * window resets holds the deployment until then, as a retry-after would, instead of letting
     * the next calls earn their 429s.
     */
    const reportRateLimit = (d: Deployment, info: RateLimitInfo): Effect.Effect<void> => {
      const recorded = state.recordRateLimit(d, info)
      const resetMs = Math.max(
        info.remainingRequests === 0 ? info.resetRequestsMs ?? 0 : 0,
        info.remainingTokens === 0 ? info.resetTokensMs ?? 0 : 0
      )
      if (resetMs <= 0) return recorded
      return Effect.zipRight(
        recorded,
        Effect.clockWith((clock) => {
          const now = clock.unsafeCurrentTimeMillis()
          return cooldown.onRetryAfter(d, now + resetMs, now)
        })
      )
    }

    const hasTags = (d: Deployment, tags: ReadonlyArray<string>) => {
      for (let i = 0; i < tags.length; i++) if (!d.tags.includes(tags[i])) return false
      return true
    }

    // ---------------------------------------------------------------------------------------
    // Candidates and selection
    // ---------------------------------------------------------------------------------------

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
      // error instead of this one (see `route`), so the reason is moot.
      const reason = counts.full > 0 ? "over_limits" : counts.cooling > 0 ? "cooling_down" : "none_fits"
      return new NoDeploymentAvailable({
        group,
        reason,
        message: `no deployment of "${group}" available: ${parts.join(", ")}`,
        retryAfter: reason === "cooling_down" && back !== undefined ? Duration.millis(back) : undefined
      })
    }

    /** Picks, claims and acquires a deployment of `group`, or says why none can take the request. */
    type Restore = <A, E>(effect: Effect.Effect<A, E>) => Effect.Effect<A, E>

    /**
     * Runs inside the caller's uninterruptible region, so that a slot it acquires is always
     * handed over to the caller's release; only the selector's own pick stays interruptible.
     */
    const choose = (
      group: string,
      pool: ReadonlyArray<Deployment>,
      selection: SelectionRequest,
      ctx: RequestContext,
      restore: Restore
    ): Effect.Effect<Candidate, NoDeploymentAvailable> =>
      Effect.suspend(() => {
        const now = ctx.clock.unsafeCurrentTimeMillis()
        return Effect.flatMap(state.snapshot(pool, now), (stats) => {
          const candidates: Array<Candidate> = []
          const counts: Unavailable = { untagged: 0, excluded: 0, cooling: 0, full: 0, firstBack: Infinity, size: pool.length }
          let lastFailed: Candidate | undefined
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
            if (d.id === ctx.lastFailed) lastFailed = candidate
            else candidates.push(candidate)
          }
          // A retry avoids the deployment that just failed, unless it is the only one left.
          if (candidates.length === 0 && lastFailed !== undefined) candidates.push(lastFailed)
          return pickFrom(group, candidates, selection, ctx, restore, now, counts)
        })
      })

    const pickFrom = (
      group: string,
      candidates: Array<Candidate>,
      selection: SelectionRequest,
      ctx: RequestContext,
      restore: Restore,
      now: number,
      counts: Unavailable
    ): Effect.Effect<Candidate, NoDeploymentAvailable> => {
      if (candidates.length === 0) return Effect.fail(unavailable(group, counts, ctx, now))
      return Effect.flatMap(restore(selector.pick(candidates, selection)), (picked) => {
        const d = picked.deployment
        const closed = picked.stats.cooldown.status === "closed"
        const take = Effect.flatMap(state.acquire(d, now), (acquired) => {
          if (acquired) return Effect.succeed(picked)
          counts.full++
          return Effect.zipRight(
            closed ? Effect.void : cooldown.onInterrupt(d, now),
            pickFrom(group, candidates.filter((c) => c !== picked), selection, ctx, restore, now, counts)
          )
        })
        // A closed circuit needs no claim; an expired one is claimed for its single probe.
        if (closed) return take
        return Effect.flatMap(cooldown.claim(d, now), (ok) => {
          if (ok) return take
          counts.cooling++
          return pickFrom(group, candidates.filter((c) => c !== picked), selection, ctx, restore, now, counts)
        })
      })
    }

    // ---------------------------------------------------------------------------------------
    // One attempt
    // ---------------------------------------------------------------------------------------

    const timeoutError = (d: Deployment, timeout: Duration.Duration) => () =>
      new Timeout({
        provider: d.provider.name,
        deploymentId: d.id,
        message: `no answer from ${d.id} within ${Duration.format(timeout)}`
      })

    const withTimeout = <A>(d: Deployment, call: Effect.Effect<A, ProviderError>) => {
      const duration = raceTimeouts[d.index]
      return duration === undefined ? call : Effect.timeoutFail(call, { duration, onTimeout: timeoutError(d, duration) })
    }

    /** Records a finished call everywhere it counts. */
    const settle = (
      d: Deployment,
      ctx: RequestContext,
      startedMs: number,
      exit: Exit.Exit<unknown, ProviderError>,
      tokens: number,
      circuitClosed: boolean
    ): Effect.Effect<void> => {
      const latencyMs = nowMs(ctx.clock) - startedMs
      const now = ctx.clock.unsafeCurrentTimeMillis()
      ctx.providerMs += latencyMs
      ctx.groupAttempts++
      if (Exit.isSuccess(exit)) {
        ctx.attempts.push({ deploymentId: d.id, group: d.group, latencyMs })
        const recorded = state.recordOutcome(d, now, { result: "success", latencyMs, tokens })
        // A success only changes a circuit that was not closed when the attempt began.
        return circuitClosed ? recorded : Effect.zipRight(recorded, cooldown.onSuccess(d, now))
      }
      const failure = Cause.failureOption(exit.cause)
      if (Option.isNone(failure)) return cooldown.onInterrupt(d, now)
      const error = failure.value
      const classification = table[error._tag]
      ctx.attempts.push({ deploymentId: d.id, group: d.group, error: error._tag, latencyMs })
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
        state.recordOutcome(d, now, { result, latencyMs: undefined, tokens: 0 }),
        cooldown.onFailure(d, { error, classification, group: pools.get(d.group)!, now })
      )
    }

    /** Routes one request-response call (chat or embed) to one deployment of `group`. */
    const attemptCall = <A>(
      group: string,
      selection: SelectionRequest,
      ctx: RequestContext,
      invoke: (d: Deployment) => Effect.Effect<A, ProviderError>,
      usageOf: (a: A) => { readonly prompt_tokens: number; readonly completion_tokens?: number; readonly total_tokens: number } | undefined
    ): Effect.Effect<readonly [A, Deployment], RouterError> => {
      const pool = pools.get(group)!
      return Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(choose(group, pool, selection, ctx, restore), (picked) => {
          const d = picked.deployment
          const startedMs = nowMs(ctx.clock)
          const closed = picked.stats.cooldown.status === "closed"
          const done = (exit: Exit.Exit<A, ProviderError>, tokens: number) =>
            Effect.zipRight(
              Effect.zipRight(state.release(d), settle(d, ctx, startedMs, exit, tokens, closed)),
              Exit.map(exit, (a) => [a, d] as const)
            )
          return Effect.matchCauseEffect(restore(withTimeout(d, invoke(d))), {
            onSuccess: (a) => done(Exit.succeed(a), usageOf(a)?.total_tokens ?? 0),
            onFailure: (cause) => done(Exit.failCause(cause), 0)
          })
        }))
    }

    // ---------------------------------------------------------------------------------------
    // Retries per group, fallbacks across groups
    // ---------------------------------------------------------------------------------------

    /**
     * What a retry in `group` could do now: go to another deployment than `failedId` at once
     * (`others`), or else how long until the first deployment of the group it may go to returns
     * (`backInMs`, 0 when one is available or when nothing says).
     */
    const groupView = (group: string, failedId: string | undefined, ctx: RequestContext) => {
      const pool = pools.get(group)!
      const now = ctx.clock.unsafeCurrentTimeMillis()
      return Effect.map(state.snapshot(pool, now), (stats) => {
        let firstBack = Infinity
        for (let i = 0; i < pool.length; i++) {
          const d = pool[i]
          if (ctx.tags.length > 0 && !hasTags(d, ctx.tags)) continue
          if (ctx.excluded !== undefined && ctx.excluded.has(d.id)) continue
          const record = stats[i].cooldown
          if (!cooldown.isAvailable(record, now)) {
            if (record.status === "open" && record.until < firstBack) firstBack = record.until
            continue
          }
          const notBefore = ctx.notBefore?.get(d.id)
          if (notBefore !== undefined && notBefore > now) {
            if (notBefore < firstBack) firstBack = notBefore
            continue
          }
          if (d.id !== failedId && (d.maxConcurrent === undefined || stats[i].inFlight < d.maxConcurrent)) {
            return { others: true, backInMs: 0 }
          }
          firstBack = now
        }
        return { others: false, backInMs: firstBack === Infinity ? 0 : Math.max(0, firstBack - now) }
      })
    }

    const route = <A>(
      ctx: RequestContext,
      attemptGroup: (group: string) => Effect.Effect<A, RouterError>
    ): Effect.Effect<A, RouterError> => {
      const schedule = retry.schedule
      // Groups tried by this request: only needed once a group failed.
      let visited: Set<string> | undefined

      /**
       * After a group's first attempt failed with `first`: its retries, then its fallbacks. The
       * retry schedule is only stepped once an attempt failed and the classification retries its
       * error; a retry that can go to another deployment goes at once, one that can only go back
       * waits the longer of the backoff and the time until a deployment returns.
       */
      const retryGroup = (group: string, depth: number, first: RouterError): Effect.Effect<A, RouterError> => {
        let scheduleState = schedule.initial
        // The group's last upstream error: what it ends with if it then runs out of deployments.
        let upstream: ProviderError | undefined
        const onError = (error: RouterError): Effect.Effect<A, RouterError> => {
          if (isProviderError(error)) upstream = error
          const retryKind = table[error._tag].retry
          if (retryKind === "never") {
            return exhausted(group, depth, error._tag === "NoDeploymentAvailable" && upstream !== undefined ? upstream : error)
          }
          return Effect.flatMap(groupView(group, isProviderError(error) ? error.deploymentId : undefined, ctx), (view) => {
            if (retryKind === "elsewhere" && !view.others) return exhausted(group, depth, error)
            const now = ctx.clock.unsafeCurrentTimeMillis()
            return Effect.flatMap(schedule.step(now, error, scheduleState), ([next, , decision]) => {
              if (ScheduleDecision.isDone(decision)) return exhausted(group, depth, error)
              scheduleState = next
              const again = Effect.catchAll(attemptGroup(group), onError)
              if (view.others) return again
              const wait = Math.max(Intervals.start(decision.intervals) - now, view.backInMs)
              if (wait > maxWaitMs) return exhausted(group, depth, error)
              if (wait <= 0) return again
              ctx.waitedMs += wait
              return Effect.zipRight(Effect.sleep(Duration.millis(wait)), again)
            })
          })
        }
        return onError(first)
      }

      /** A group is done with `error`: its fallbacks for that kind of error, if any. */
      const exhausted = (group: string, depth: number, error: RouterError): Effect.Effect<A, RouterError> => {
        const kind = table[error._tag].fallback
        if (kind === "none" || depth >= fallback.maxDepth) return Effect.fail(error)
        return tryList(fallback.groupsFor(group, kind), 0, error, depth)
      }

      const fromGroup = (group: string, depth: number): Effect.Effect<A, RouterError> =>
        Effect.suspend(() => {
          ctx.groupAttempts = 0
          return Effect.catchAll(attemptGroup(group), (first) => retryGroup(group, depth, first))
        })

      const tryList = (
        list: ReadonlyArray<string>,
        index: number,
        lastError: RouterError,
        depth: number
      ): Effect.Effect<A, RouterError> => {
        if (index >= list.length) return Effect.fail(lastError)
        const next = list[index]
        visited ??= new Set([ctx.requestedGroup])
        if (visited.has(next) || !pools.has(next)) return tryList(list, index + 1, lastError, depth)
        visited.add(next)
        return Effect.catchAll(fromGroup(next, depth + 1), (error) =>
          table[error._tag].fallback === "none" ? Effect.fail(error) : tryList(list, index + 1, error, depth))
      }

      // The first attempt runs alone: nothing else is allocated on the success path.
      return Effect.catchAll(attemptGroup(ctx.requestedGroup), (first) =>
        Effect.mapError(retryGroup(ctx.requestedGroup, 0, first), (error) =>
          // Out of deployments after upstream failures: the caller gets what the upstream said.
          withAttempts(
            error._tag === "NoDeploymentAvailable" && ctx.lastUpstream !== undefined ? ctx.lastUpstream : error,
            ctx.attempts
          )))
    }

    /** Runs `f` with a fresh request context (on the fiber's clock, so TestClock drives it). */
    const withRequest = <A, E, R>(
      group: string,
      tags: ReadonlyArray<string> | undefined,
      f: (ctx: RequestContext) => Effect.Effect<A, E, R>
    ) =>
      Effect.clockWith((clock) =>
        f({
          requestedGroup: group,
          tags: tags ?? noTags,
          clock,
          startedMs: nowMs(clock),
          attempts: [],
          lastFailed: undefined,
          excluded: undefined,
          lastUpstream: undefined,
          notBefore: undefined,
          groupAttempts: 0,
          providerMs: 0,
          waitedMs: 0
        })
      )

    const unknownGroup = (group: string) =>
      new UnknownGroup({
        group,
        knownGroups: groups,
        message: `unknown model group "${group}"; known groups: ${groups.join(", ")}`
      })

    const routeInfo = (
      ctx: RequestContext,
      d: Deployment,
      usage: Usage | undefined,
      cost: number
    ): RouteInfo => {
      const latencyMs = nowMs(ctx.clock) - ctx.startedMs
      return {
        deploymentId: d.id,
        group: d.group,
        requestedGroup: ctx.requestedGroup,
        model: d.model,
        attempts: ctx.attempts,
        latencyMs,
        overheadMs: Math.max(0, latencyMs - ctx.providerMs - ctx.waitedMs),
        cost,
        usage
      }
    }

    const meterCall = (ctx: RequestContext, d: Deployment, usage: Usage | undefined) => {
      const cost = usage === undefined ? 0 : meter.cost(d, usage)
      return Effect.as(meter.record(d, ctx.tags, cost), cost)
    }

    // ---------------------------------------------------------------------------------------
    // chat, embed
    // ---------------------------------------------------------------------------------------

    const chat: Service["chat"] = (request: ChatRequest) => {
      if (!pools.has(request.model)) return Effect.fail(unknownGroup(request.model))
      return withRequest(request.model, request.metadata?.tags, (ctx) =>
        Effect.flatMap(
          route(ctx, (group) =>
            attemptCall(
              group,
              { kind: "chat", group, request, attempt: ctx.groupAttempts },
              ctx,
              (d) => d.provider.chat({ ...request, model: d.model }, targets[d.index]),
              (response) => response.usage
            )),
          ([response, d]) =>
            Effect.map(meterCall(ctx, d, response.usage), (cost) => ({
              ...response,
              route: routeInfo(ctx, d, response.usage, cost)
            }))
        ))
    }

    const embed: Service["embed"] = (request: EmbeddingRequest) => {
      if (!pools.has(request.model)) return Effect.fail(unknownGroup(request.model))
      return withRequest(request.model, request.metadata?.tags, (ctx) =>
        Effect.flatMap(
          route(ctx, (group) =>
            attemptCall(
              group,
              { kind: "embed", group, request, attempt: ctx.groupAttempts },
              ctx,
              (d) => d.provider.embed({ ...request, model: d.model }, targets[d.index]),
              (response) => response.usage
            )),
          ([response, d]) => {
            const usage: Usage | undefined = response.usage === undefined ? undefined : {
              prompt_tokens: response.usage.prompt_tokens,
              completion_tokens: 0,
              total_tokens: response.usage.total_tokens
            }
            return Effect.map(meterCall(ctx, d, usage), (cost) => ({
              ...response,
              route: routeInfo(ctx, d, usage, cost)
            }))
          }
        ))
    }

    // ---------------------------------------------------------------------------------------
    // stream
    // ---------------------------------------------------------------------------------------

    interface OpenStream {
      readonly deployment: Deployment
      readonly ctx: RequestContext
      /** The deployment's circuit was closed when it was picked. */
      readonly circuitClosed: boolean
      first: Chunk.Chunk<RoutedChunk> | undefined
      pull: Effect.Effect<Chunk.Chunk<RoutedChunk>, Option.Option<ProviderError>>
      readonly startedMs: number
      /** Holds the provider's stream. */
      readonly scope: Scope.CloseableScope
      /** Set once the stream's outcome is settled, so closing it does not settle it again. */
      settled: boolean
    }

    /** The attempt a routed stream is on: the stream's release closes it if it is still open. */
    interface Current {
      open: OpenStream | undefined
    }

    /**
     * Ends an attempt: the provider's stream, then its slot. An attempt never settled (the
     * consumer left, or an interrupt) counts as interrupted.
     */
    const closeAttempt = (open: OpenStream, exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> =>
      Effect.zipRight(
        Scope.close(open.scope, exit),
        Effect.suspend(() =>
          Effect.zipRight(
            state.release(open.deployment),
            open.settled ? Effect.void : cooldown.onInterrupt(open.deployment, open.ctx.clock.unsafeCurrentTimeMillis())
          )
        )
      )

    /** One stream attempt: pick a deployment and wait for its first chunk. */
    const openStream = (
      group: string,
      request: ChatRequest,
      ctx: RequestContext,
      current: Current
    ): Effect.Effect<OpenStream, RouterError> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(choose(group, pools.get(group)!, { kind: "stream", group, request, attempt: ctx.groupAttempts }, ctx, restore), (picked) =>
          Effect.flatMap(Scope.make(), (scope) => {
            const d = picked.deployment
            const open: OpenStream = {
              deployment: d,
              ctx,
              circuitClosed: picked.stats.cooldown.status === "closed",
              first: undefined,
              pull: Effect.fail(Option.none()),
              startedMs: nowMs(ctx.clock),
              scope,
              settled: false
            }
            // From here, whatever ends the stream (its end, an error, the consumer leaving, an
            // interrupt) releases the slot.
            current.open = open
            const first = restore(
              Effect.flatMap(Scope.extend(Stream.toPull(d.provider.stream({ ...request, model: d.model }, targets[d.index])), scope), (pull) =>
                withTimeout(
                  d,
                  Effect.map(
                    Effect.catchAll(pull, (e) => Option.isSome(e) ? Effect.fail(e.value) : Effect.succeed(undefined)),
                    (first) => ({ pull, first })
                  )
                ))
            )
            return Effect.flatMap(Effect.exit(first), (firstExit) => {
              if (Exit.isSuccess(firstExit)) {
                open.pull = firstExit.value.pull
                open.first = firstExit.value.first
                return Effect.succeed(open)
              }
              open.settled = true
              current.open = undefined
              return Effect.zipRight(
                Effect.zipRight(settle(d, ctx, open.startedMs, firstExit, 0, open.circuitClosed), closeAttempt(open, Exit.void)),
                Effect.failCause(firstExit.cause)
              )
            })
          })
        ))

    const stream: Service["stream"] = (request: ChatRequest) => {
      if (!pools.has(request.model)) return Stream.fail(unknownGroup(request.model))
      // A channel whose release closes the attempt it is on, rather than
      // `Stream.unwrapScopedWith` with a child scope per attempt and a repeated pull: less than
      // half the Effect ops added per routed stream (bench/overhead.ts).
      return Stream.fromChannel(Channel.acquireUseRelease(
        Effect.sync((): Current => ({ open: undefined })),
        (current) => Channel.unwrap(Effect.gen(function*() {
          const ctx = yield* withRequest(request.model, request.metadata?.tags, Effect.succeed)
          const open = yield* route(ctx, (group) => openStream(group, request, ctx, current))
          const d = open.deployment
          // Chunks are forwarded as they arrive, except one that may be the last (it has a
          // finish reason or usage): it is held until the next one, so that the route can ride on it.
          let held: RoutedChunk | undefined
          let lastSeen: RoutedChunk | undefined
          let first = open.first
          let usage: Usage | undefined
          let pendingError: RouterError | undefined
          let done = false

          const forward = (chunks: Chunk.Chunk<RoutedChunk>): Chunk.Chunk<RoutedChunk> | undefined => {
            const out: Array<RoutedChunk> = []
            if (held !== undefined) out.push(held)
            held = undefined
            for (const chunk of chunks) {
              if (chunk.usage != null) usage = chunk.usage
              out.push(chunk)
            }
            const last = out[out.length - 1]
            if (last !== undefined) {
              lastSeen = last
              if (last.usage != null || last.choices.some((c) => c.finish_reason !== null)) held = out.pop()
            }
            return out.length === 0 ? undefined : Chunk.unsafeFromArray(out)
          }

          // The stream ended: settle the attempt, meter it, and put the route on the last chunk
          // (an empty-choices chunk when the upstream's last one was already forwarded).
          const finish = Effect.suspend(() => {
            open.settled = true
            done = true
            return Effect.map(
              Effect.zipRight(settle(d, ctx, open.startedMs, Exit.void, usage?.total_tokens ?? 0, open.circuitClosed), meterCall(ctx, d, usage)),
              (cost) => {
                const route = routeInfo(ctx, d, usage, cost)
                const last: RoutedChunk = held !== undefined
                  ? { ...held, route }
                  : {
                    id: lastSeen?.id ?? "",
                    object: "chat.completion.chunk",
                    created: lastSeen?.created ?? 0,
                    model: lastSeen?.model ?? d.model,
                    choices: [],
                    route
                  }
                held = undefined
                return Chunk.of(last)
              }
            )
          })

          const fail = (error: ProviderError) =>
            Effect.suspend(() => {
              open.settled = true
              return Effect.map(settle(d, ctx, open.startedMs, Exit.fail(error), 0, open.circuitClosed), () => withAttempts(error, ctx.attempts))
            })

          const pull: Effect.Effect<Chunk.Chunk<RoutedChunk>, Option.Option<RouterError>> = Effect.suspend(() => {
            if (pendingError !== undefined) {
              const error = pendingError
              pendingError = undefined
              return Effect.fail(Option.some(error))
            }
            if (done) return Effect.fail(Option.none())
            if (first !== undefined) {
              const out = forward(first)
              first = undefined
              if (out !== undefined) return Effect.succeed(out)
            }
            return Effect.matchCauseEffect(open.pull, {
              onSuccess: (chunks) => {
                const out = forward(chunks)
                return out === undefined ? pull : Effect.succeed(out)
              },
              onFailure: (cause) => {
                const failure = Cause.failureOption(cause)
                if (Option.isNone(failure)) return Effect.failCause(cause as Cause.Cause<never>)
                if (Option.isNone(failure.value)) return finish
                done = true
                // A chunk held back is still delivered before the error.
                return Effect.flatMap(fail(failure.value.value), (error) => {
                  if (held === undefined) return Effect.fail(Option.some(error))
                  pendingError = error
                  const last = held
                  held = undefined
                  return Effect.succeed(Chunk.of(last))
                })
              }
            })
          })
          return pullChannel(pull)
        })),
        (current, exit) => current.open === undefined ? Effect.void : closeAttempt(current.open, exit)
      ))
    }

    const service: Service = { chat, stream, embed, deployments, groups }
    return service
  })

/** The chunks of a pull (`Option.none()` ends it), as a channel. */
const pullChannel = <A, E>(
  pull: Effect.Effect<Chunk.Chunk<A>, Option.Option<E>>
): Channel.Channel<Chunk.Chunk<A>, unknown, E, unknown, void, unknown> => {
  const next = Effect.catchAll(pull, (error) => Option.isNone(error) ? Effect.succeed(undefined) : Effect.fail(error.value))
  const loop: Channel.Channel<Chunk.Chunk<A>, unknown, E, unknown, void, unknown> = Channel.flatMap(
    Channel.fromEffect(next),
    (chunk) => chunk === undefined ? Channel.void : Channel.zipRight(Channel.write(chunk), loop)
  )
  return loop
}
