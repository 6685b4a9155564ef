/**
 * The driver: runs a routed request's attempts as its plan says, for chat, embed and stream
 * alike. An attempt is an Effect that ends with the deployment's answer (for a stream: its
 * first content, see `stream.ts`) or fails; the first runs alone, and only a failure builds the
 * plan (`plan.ts`), which then says where and when the next attempt goes, or with which error
 * the request ends. A request's `deadline` bounds the whole run.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { type RouterError, Timeout } from "../Errors.js"
import * as Plan from "./plan.js"
import { finalError, type RequestContext } from "./request.js"

/**
 * Runs `attempt` in the requested group, then as the plan says after each failure.
 *
 * @internal
 */
export const run = <A>(
  ctx: RequestContext,
  attempt: (group: string) => Effect.Effect<A, RouterError>
): Effect.Effect<A, RouterError> => {
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
