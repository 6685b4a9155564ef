/**
 * The driver: runs a routed request's attempts as its plan says, for chat, embed and stream
 * alike. An attempt is an Effect that ends with the deployment's answer (for a stream: its
 * first content, see `stream.ts`) or fails; the first runs alone, and only a failure builds the
 * plan (`plan.ts`), which then says where and when the next attempt goes, or with which error
 * the request ends. With hedging, an attempt that runs long gets company (`hedged`): several
 * attempts of one request then run at once, each with its own deployment and slot, and the
 * losers are interrupted. A request's `deadline` bounds the whole run.
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
import { type RouterError, Timeout } from "../Errors.js"
import type * as Hedge from "../Hedge.js"
import { poolOf } from "./attempt.js"
import * as Plan from "./plan.js"
import { finalError, type RequestContext } from "./request.js"

/**
 * Runs `attempt` in the requested group, then as the plan says after each failure; each
 * attempt is hedged when the request's hedging covers its group.
 *
 * @internal
 */
export const run = <A>(
  ctx: RequestContext,
  kind: "call" | "stream",
  once: (group: string) => Effect.Effect<A, RouterError>,
  discard: (loser: A) => Effect.Effect<void>
): Effect.Effect<A, RouterError> => {
  const hedge = ctx.hedge
  const attempt = hedge === undefined ? once : (group: string): Effect.Effect<A, RouterError> => {
    const policy = hedge.policyFor(group)
    return policy === undefined ? once(group) : hedged(ctx, hedge, policy, kind, group, once, discard)
  }
  const follow = (plan: Plan.Plan, step: Plan.Step): Effect.Effect<A, RouterError> => {
    if (step._tag === "Fail") return Effect.fail(step.error)
    const tried = Effect.catchAll(attempt(step.group), (error) => Effect.flatMap(Plan.next(ctx, plan, error), (s) => follow(plan, s)))
    if (step.waitMs <= 0) return tried
    ctx.waitedMs += step.waitMs
    return Effect.zipRight(Effect.sleep(Duration.millis(step.waitMs)), tried)
  }
  const routed = Effect.catchAll(attempt(ctx.requestedGroup), (first) => {
    const plan = Plan.make(ctx)
    return Effect.mapError(Effect.flatMap(Plan.next(ctx, plan, first), (s) => follow(plan, s)), (error) => finalError(ctx, error))
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

/**
 * One attempt, hedged: while it runs past the policy's delay, another starts (on another
 * deployment when the group has one), up to `maxHedges`, each within the budget. The first
 * success wins and the others are interrupted (their attempts are recorded as cancelled) before
 * it returns; one that succeeded too before it could be stopped is `discard`ed. A failure does
 * not stop the others; when all have failed, the last failure is the attempt's, and the plan
 * goes on from it.
 */
const hedged = <A>(
  ctx: RequestContext,
  hedge: Hedge.Service,
  policy: Hedge.Policy,
  kind: "call" | "stream",
  group: string,
  once: (group: string) => Effect.Effect<A, RouterError>,
  discard: (loser: A) => Effect.Effect<void>
): Effect.Effect<A, RouterError> =>
  Effect.zipRight(
    hedge.onRequest,
    Effect.flatMap(Queue.unbounded<Exit.Exit<A, RouterError>>(), (finished) => {
      const fibers: Array<Fiber.RuntimeFiber<boolean>> = []
      const launch = Effect.map(
        Effect.fork(Effect.flatMap(Effect.exit(once(group)), (exit) => Queue.offer(finished, exit))),
        (fiber) => {
          fibers.push(fiber)
        }
      )
      const delay = Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.map(ctx.engine.state.snapshot(poolOf(ctx, group), now), (stats) => Math.max(0, policy.delayMs(stats, kind, now))))
      let running = 0
      let hedges = 0
      const next: Effect.Effect<A, RouterError> = Effect.suspend(() => {
        const wait: Effect.Effect<Option.Option<Exit.Exit<A, RouterError>>> = hedges < policy.maxHedges
          ? Effect.flatMap(delay, (ms) => Effect.timeoutOption(Queue.take(finished), Duration.millis(ms)))
          : Effect.map(Queue.take(finished), Option.some)
        return Effect.flatMap(wait, (taken) => {
          if (Option.isNone(taken)) {
            // The delay passed with every attempt still running: a hedge, if the budget allows.
            hedges++
            return Effect.flatMap(hedge.take, (allowed) => {
              if (!allowed) {
                hedges = policy.maxHedges
                return next
              }
              running++
              return Effect.zipRight(launch, next)
            })
          }
          running--
          const exit = taken.value
          return Exit.isSuccess(exit) || running === 0 ? exit : next
        })
      })
      running = 1
      const stopOthers = Effect.zipRight(
        Fiber.interruptAll(fibers),
        Effect.flatMap(Queue.takeAll(finished), (late) =>
          Effect.forEach(late, (exit) => (Exit.isSuccess(exit) ? discard(exit.value) : Effect.void), { discard: true }))
      )
      return Effect.ensuring(Effect.zipRight(launch, next), stopOthers)
    })
  )
