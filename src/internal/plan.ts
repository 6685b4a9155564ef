/**
 * The plan of a request: the requested group, then fallback groups chosen by the kind of error
 * a group ends with, each group with its retries. It is a small state machine that the driver
 * feeds with each failure and that answers with the next step: another attempt in a group
 * (after a wait, or at once), or the error the request ends with. It is made only once an
 * attempt failed: a request whose first attempt succeeds never builds one.
 *
 * Within a group, the router's classification decides whether an error is retried at all
 * (`any`, `elsewhere`: only on another deployment, `never`), the group's retry policy how many
 * times and the backoff; a retry that can go to another deployment goes at once, one that can
 * only go back waits the longer of the backoff and the time until a deployment returns. A group
 * exhausted with an error that falls back continues with its fallback list for that kind (depth
 * first: a fallback group's own list, up to `maxDepth` hops, before the next group of the
 * list); each group is tried once per request.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as ScheduleDecision from "effect/ScheduleDecision"
import * as Intervals from "effect/ScheduleIntervals"
import type { Deployment } from "../Deployment.js"
import { isProviderError, type ProviderError, type RouterError } from "../Errors.js"
import type { AttemptFailure, Policy } from "../RetrySchedule.js"
import { poolOf } from "./attempt.js"
import { filterIn, fits, tooLarge } from "./filters.js"
import { type RequestContext, timeLeft } from "./request.js"

/**
 * What the request does next.
 *
 * @internal
 */
export type Step =
  | { readonly _tag: "Attempt"; readonly group: string; readonly waitMs: number }
  | { readonly _tag: "Fail"; readonly error: RouterError }

/** A fallback list being walked. */
interface Frame {
  readonly list: ReadonlyArray<string>
  index: number
  /** The depth of the group whose list it is. */
  readonly depth: number
}

/** @internal */
export interface Plan {
  group: string
  depth: number
  /** Groups from the request's own `fallbacks` option: their own lists are not followed. */
  flat: boolean
  schedule: Schedule.Schedule<unknown, AttemptFailure>
  scheduleState: unknown
  maxWaitMs: number
  /** The group's last upstream error: what it ends with if it then runs out of deployments. */
  upstream: ProviderError | undefined
  lastError: RouterError | undefined
  readonly stack: Array<Frame>
  visited: Set<string> | undefined
}

const defaultMaxWaitMs = 60_000

/** The retry policy of `group` for this request. */
const policyOf = (ctx: RequestContext, group: string): { readonly schedule: Schedule.Schedule<unknown, AttemptFailure>; readonly maxWaitMs: number } => {
  const retry = ctx.policies.retry
  const policy: Policy = retry.groups?.[group] ?? retry
  const retries = ctx.options?.retries
  const schedule = retries === undefined
    ? policy.schedule
    : policy.withRetries?.(retries) ?? Schedule.intersect(policy.schedule, Schedule.recurs(retries))
  const maxWait = policy.maxWait ?? retry.maxWait
  return { schedule, maxWaitMs: maxWait === undefined ? defaultMaxWaitMs : Duration.toMillis(maxWait) }
}

/**
 * The plan of a request whose first attempt, in the requested group, just failed.
 *
 * @internal
 */
export const make = (ctx: RequestContext): Plan => {
  const { schedule, maxWaitMs } = policyOf(ctx, ctx.requestedGroup)
  return {
    group: ctx.requestedGroup,
    depth: 0,
    flat: false,
    schedule,
    scheduleState: schedule.initial,
    maxWaitMs,
    upstream: undefined,
    lastError: undefined,
    stack: [],
    visited: undefined
  }
}

const enter = (ctx: RequestContext, plan: Plan, group: string, depth: number, flat: boolean): Step => {
  const { schedule, maxWaitMs } = policyOf(ctx, group)
  plan.group = group
  plan.depth = depth
  plan.flat = flat
  plan.schedule = schedule
  plan.scheduleState = schedule.initial
  plan.maxWaitMs = maxWaitMs
  plan.upstream = undefined
  ctx.groupAttempts = 0
  return { _tag: "Attempt", group, waitMs: 0 }
}

/** The group is done with `error`: on to its fallbacks for that kind of error, if any. */
const exhausted = (ctx: RequestContext, plan: Plan, error: RouterError): Step => {
  let kind = ctx.engine.table[error._tag].fallback
  // Nothing fitted the request's size: as after an upstream's ContextWindowExceeded.
  if (kind === "generic" && error._tag === "NoDeploymentAvailable" && tooLarge(error)) kind = "context_window"
  if (kind === "none") return { _tag: "Fail", error }
  plan.lastError = error
  const own = ctx.options?.fallbacks
  if (plan.depth === 0 && own !== undefined) {
    if (own !== false) plan.stack.push({ list: own, index: 0, depth: 0 })
  } else if (!plan.flat && plan.depth < ctx.policies.fallback.maxDepth) {
    plan.stack.push({ list: ctx.policies.fallback.groupsFor(plan.group, kind), index: 0, depth: plan.depth })
  }
  const flat = plan.depth === 0 && own !== undefined
  while (plan.stack.length > 0) {
    const frame = plan.stack[plan.stack.length - 1]
    if (frame.index >= frame.list.length) {
      plan.stack.pop()
      continue
    }
    const next = frame.list[frame.index++]
    plan.visited ??= new Set([ctx.requestedGroup])
    if (plan.visited.has(next) || !ctx.engine.pools.has(next)) continue
    plan.visited.add(next)
    return enter(ctx, plan, next, frame.depth + 1, flat || plan.flat)
  }
  return { _tag: "Fail", error: plan.lastError }
}

/**
 * What a retry in `group` could do now: go to another deployment than `failedId` at once
 * (`others`), or else how long until the first deployment of the group it may go to returns
 * (`backInMs`, 0 when one is available or when nothing says).
 */
const groupView = (ctx: RequestContext, group: string, failedId: string | undefined) => {
  const pool = poolOf(ctx, group)
  const filter = filterIn(ctx, group)
  const now = ctx.clock.unsafeCurrentTimeMillis()
  const cooldown = ctx.policies.cooldown
  return Effect.map(ctx.engine.state.snapshot(pool), (stats) => {
    let firstBack = Infinity
    for (let i = 0; i < pool.length; i++) {
      const d = pool[i]
      if (filter !== undefined && !fits(filter, d)) continue
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

/**
 * The step after an attempt of the plan's group failed with `error`.
 *
 * @internal
 */
export const next = (ctx: RequestContext, plan: Plan, error: RouterError): Effect.Effect<Step> => {
  if (isProviderError(error)) plan.upstream = error
  const retryKind = ctx.engine.table[error._tag].retry
  if (retryKind === "never") {
    return Effect.succeed(
      exhausted(ctx, plan, error._tag === "NoDeploymentAvailable" && plan.upstream !== undefined ? plan.upstream : error)
    )
  }
  const failed: Deployment | undefined = isProviderError(error) ? ctx.engine.byId.get(error.deploymentId) : undefined
  return Effect.flatMap(groupView(ctx, plan.group, failed?.id), (view): Effect.Effect<Step> => {
    if (retryKind === "elsewhere" && !view.others) return Effect.succeed(exhausted(ctx, plan, error))
    const now = ctx.clock.unsafeCurrentTimeMillis()
    const failure: AttemptFailure = { error, deployment: failed, attempt: ctx.groupAttempts, othersAvailable: view.others }
    return Effect.map(plan.schedule.step(now, failure, plan.scheduleState), ([state, , decision]): Step => {
      if (ScheduleDecision.isDone(decision)) return exhausted(ctx, plan, error)
      plan.scheduleState = state
      if (view.others) return { _tag: "Attempt", group: plan.group, waitMs: 0 }
      const wait = Math.max(0, Intervals.start(decision.intervals) - now, view.backInMs)
      // A wait the request cannot afford gives the group up: its fallbacks take over.
      if (wait > plan.maxWaitMs || wait >= timeLeft(ctx)) return exhausted(ctx, plan, error)
      return { _tag: "Attempt", group: plan.group, waitMs: wait }
    })
  })
}
