/**
 * The driver: runs a routed request's attempts as its plan says, for chat, embed and stream
 * alike. An attempt is an Effect that ends with the deployment's answer (for a stream: its
 * first content, see `stream.ts`) or fails; the first runs alone, and only a failure builds the
 * plan (`plan.ts`), which then says where and when the next attempt goes, or with which error
 * the request ends. With hedging, an attempt that runs long gets company, and a race sends the
 * first attempt to several deployments or groups at once (`spread`): several attempts of one
 * request then run at once, each with its own deployment and slot, and the losers are
 * interrupted. A request's `deadline` bounds the whole run.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import { type NoDeploymentAvailable, type RouterError, Timeout } from "../Errors.js"
import type * as Hedge from "../Hedge.js"
import { poolOf } from "./attempt.js"
import * as Plan from "./plan.js"
import { finalError, type RequestContext, timeLeft } from "./request.js"

/**
 * Runs `attempt` in the requested group, then as the plan says after each failure; each
 * attempt is hedged when the request's hedging covers its group.
 *
 * @internal
 */
export const run = <A>(
  ctx: RequestContext,
  kind: "call" | "stream",
  attemptOnce: (group: string) => Effect.Effect<A, RouterError>,
  discard: (loser: A) => Effect.Effect<void>
): Effect.Effect<A, RouterError> => {
  const capacityWait = ctx.options?.waitForCapacity
  const once = capacityWait === undefined ? attemptOnce : waitingForCapacity(ctx, Duration.toMillis(capacityWait), attemptOnce)
  const hedge = ctx.hedge
  const attempt = hedge === undefined ? once : (group: string): Effect.Effect<A, RouterError> => {
    const policy = hedge.policyFor(group)
    return policy === undefined ? once(group) : spread(hedgeOf(ctx, hedge, policy, kind, group), once, discard)
  }
  const follow = (plan: Plan.Plan, step: Plan.Step): Effect.Effect<A, RouterError> => {
    if (step._tag === "Fail") return Effect.fail(step.error)
    const tried = Effect.catchAll(attempt(step.group), (error) => Effect.flatMap(Plan.next(ctx, plan, error), (s) => follow(plan, s)))
    if (step.waitMs <= 0) return tried
    ctx.waitedMs += step.waitMs
    return Effect.zipRight(Effect.sleep(Duration.millis(step.waitMs)), tried)
  }
  const race = ctx.options?.race
  const firstAttempt = race === undefined ? attempt(ctx.requestedGroup) : spread(raceOf(race), once, discard)
  // The hedging budget grows once per request (not per attempt: retries do not earn hedges).
  const first = hedge === undefined ? firstAttempt : Effect.zipRight(hedge.onRequest, firstAttempt)
  const routed = Effect.catchAll(first, (error) => {
    const plan = Plan.make(ctx)
    return Effect.mapError(Effect.flatMap(Plan.next(ctx, plan, error), (s) => follow(plan, s)), (e) => finalError(ctx, e))
  })
  const deadline = ctx.options?.deadline
  if (deadline === undefined) return routed
  return Effect.catchTag(Effect.timeout(routed, deadline), "TimeoutException", () =>
    Effect.fail(finalError(
      ctx,
      new Timeout({
        provider: "router",
        deploymentId: ctx.attempts.at(-1)?.deploymentId ?? "",
        message: `no answer within the request's deadline of ${Duration.format(deadline)}`
      })
    )))
}

/** How often a request waiting for a concurrency slot looks again (nothing says when one frees). */
const slotPollMs = 50

/**
 * `once`, which waits for room when every deployment of its group is at its limits, as long as
 * the request's `waitForCapacity` (in all) and its deadline allow: until the first has room
 * under its rpm or tpm limit, or a poll interval for a concurrency slot.
 */
const waitingForCapacity = <A>(
  ctx: RequestContext,
  budgetMs: number,
  once: (group: string) => Effect.Effect<A, RouterError>
) => {
  let leftMs = budgetMs
  const attempt = (group: string): Effect.Effect<A, RouterError> =>
    Effect.catchIf(
      once(group),
      (error) => error._tag === "NoDeploymentAvailable" && error.reason === "over_limits",
      (error) => {
        const { limits, retryAfter } = error as NoDeploymentAvailable
        // rpm or tpm limits only, and no time: the request alone is over their tpm, never served
        if (retryAfter === undefined && limits?.includes("maxConcurrent") !== true) return Effect.fail(error)
        const waitMs = Math.max(1, retryAfter === undefined ? slotPollMs : Duration.toMillis(retryAfter))
        if (waitMs > leftMs || waitMs >= timeLeft(ctx)) return Effect.fail(error)
        leftMs -= waitMs
        ctx.waitedMs += waitMs
        return Effect.zipRight(Effect.sleep(Duration.millis(waitMs)), attempt(group))
      }
    )
  return attempt
}

/**
 * Several attempts of one request at once: the first, then more while all still run (after a
 * delay: a hedge; at once: a race), within a budget.
 */
interface Spread {
  /** The group of the k-th attempt (k = 0 for the first). */
  readonly groupOf: (k: number) => string
  /** How long after the previous start the next one starts, while every attempt still runs. */
  readonly delay: Effect.Effect<number>
  /** The most attempts beyond the first. */
  readonly extra: number
  /** The budget for one more attempt: `false` sends no more. */
  readonly take: Effect.Effect<boolean>
}

/** Hedges of an attempt in `group`: more attempts in the group while it runs past the policy's delay. */
const hedgeOf = (ctx: RequestContext, hedge: Hedge.Service, policy: Hedge.Policy, kind: "call" | "stream", group: string): Spread => ({
  groupOf: () => group,
  delay: Effect.flatMap(Clock.currentTimeMillis, (now) =>
    // at least 1 ms: a budget that refuses is asked again after a delay, never in a loop
    Effect.map(ctx.engine.state.snapshot(poolOf(ctx, group)), (stats) => Math.max(1, policy.delayMs(stats, kind, now)))),
  extra: policy.maxHedges,
  take: hedge.take
})

const now0 = Effect.succeed(0)
const always = Effect.succeed(true)

/** A race: the same request to every racer at once (deployments of a group, or groups). */
const raceOf = (racers: ReadonlyArray<string>): Spread => ({
  groupOf: (k) => racers[k],
  delay: now0,
  extra: racers.length - 1,
  take: always
})

/**
 * Runs a {@link Spread}: the first success wins and the other attempts are interrupted (their
 * attempts are recorded as cancelled) before it returns; one that succeeded too before it could
 * be stopped is `discard`ed. A failure does not stop the others; when all have failed, the last
 * failure is the attempt's, and the plan goes on from it.
 */
const spread = <A>(
  how: Spread,
  once: (group: string) => Effect.Effect<A, RouterError>,
  discard: (loser: A) => Effect.Effect<void>
): Effect.Effect<A, RouterError> =>
  Effect.flatMap(Queue.unbounded<Exit.Exit<A, RouterError>>(), (finished) => {
    const fibers: Array<Fiber.RuntimeFiber<boolean>> = []
    let launched = 0
    let running = 0
    const launch = Effect.suspend(() => {
      const group = how.groupOf(launched)
      launched++
      running++
      return Effect.map(
        Effect.fork(Effect.flatMap(Effect.exit(once(group)), (exit) => Queue.offer(finished, exit))),
        (fiber) => {
          fibers.push(fiber)
        }
      )
    })
    let more = how.extra
    const next: Effect.Effect<A, RouterError> = Effect.suspend(() => {
      const wait: Effect.Effect<Option.Option<Exit.Exit<A, RouterError>>> = more > 0
        ? Effect.flatMap(how.delay, (ms) => ms <= 0 ? Effect.succeedNone : Effect.timeoutOption(Queue.take(finished), Duration.millis(ms)))
        : Effect.map(Queue.take(finished), Option.some)
      return Effect.flatMap(wait, (taken) => {
        if (Option.isNone(taken)) {
          // Every attempt still runs at the delay: one more, if the budget allows; if not, the
          // budget is asked again after another delay (a stalled request is still worth a
          // hedge once the budget has refilled).
          return Effect.flatMap(how.take, (allowed) => {
            if (!allowed) return next
            more--
            return Effect.zipRight(launch, next)
          })
        }
        running--
        const exit = taken.value
        return Exit.isSuccess(exit) || running === 0 ? exit : next
      })
    })
    const stopOthers = Effect.zipRight(
      Fiber.interruptAll(fibers),
      Effect.flatMap(Queue.takeAll(finished), (late) =>
        Effect.forEach(late, (exit) => (Exit.isSuccess(exit) ? discard(exit.value) : Effect.void), { discard: true }))
    )
    return Effect.ensuring(Effect.zipRight(launch, next), stopOthers)
  })
