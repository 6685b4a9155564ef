/**
 * Whether and when a failed attempt is tried again, by error kind, as Effect `Schedule`s.
 *
 * The router adds two things on top of any schedule: a retry goes to another deployment of the
 * group than the one that just failed when the group has one, and when it can only go back to
 * the same deployment it waits at least the retry-after that deployment asked for (on every
 * attempt, not only the first).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import type { ErrorTag, InvalidConfig, RouterError } from "./Errors.js"
import * as internal from "./internal/retry.js"

/**
 * A retry policy: a schedule fed with each attempt's error. When it stops, the group is
 * exhausted and the router moves on to fallbacks.
 *
 * @since 0.1.0
 */
export interface Service {
  readonly schedule: Schedule.Schedule<unknown, RouterError>
}

/**
 * The retry policy tag.
 *
 * @example
 * import { RetrySchedule } from "effect-llm-router"
 * const RetryLive = RetrySchedule.layer({ retries: 3, base: "200 millis" })
 * @since 0.1.0
 */
export class RetrySchedule extends Context.Tag("effect-llm-router/RetrySchedule")<RetrySchedule, Service>() {}

/**
 * Options of the default policy.
 *
 * - `retries`: most retries per group (attempts = retries + 1). Default 2.
 * - `base`, `factor`: exponential backoff, jittered. Defaults 100 ms and 2.
 * - `maxDelay`: cap on one backoff delay (retry-after may ask for more). Default 30 seconds.
 * - `retryOn`: the error tags retried. Default: those `Errors.classification` marks retryable
 *   (rate limited, server, timeout, network, malformed response).
 *
 * @since 0.1.0
 */
export interface Options {
  readonly retries?: number
  readonly base?: Duration.DurationInput
  readonly factor?: number
  readonly maxDelay?: Duration.DurationInput
  readonly retryOn?: ReadonlyArray<ErrorTag>
}

/**
 * A per-error-kind policy: each kind listed gets its own schedule (with its own state); kinds
 * not listed are not retried; `maxRetries` caps the total across kinds.
 *
 * @example
 * import { Schedule } from "effect"
 * import { RetrySchedule } from "effect-llm-router"
 * const RetryLive = RetrySchedule.byError({
 *   RateLimited: Schedule.exponential("1 second").pipe(Schedule.intersect(Schedule.recurs(5))),
 *   ServerError: Schedule.spaced("200 millis").pipe(Schedule.intersect(Schedule.recurs(1)))
 * }, { maxRetries: 5 })
 * @since 0.1.0
 */
export const byError = (
  policies: { readonly [K in ErrorTag]?: Schedule.Schedule<unknown, any> },
  options?: { readonly maxRetries?: number }
): Layer.Layer<RetrySchedule> => Layer.succeed(RetrySchedule, { schedule: internal.byError(policies, options?.maxRetries) })

/**
 * Builds the default policy's schedule.
 *
 * @example
 * import { Effect } from "effect"
 * import { RetrySchedule } from "effect-llm-router"
 * const schedule = RetrySchedule.make({ retries: 1 }) // Effect<Service, InvalidConfig>
 * @since 0.1.0
 */
export const make: (options?: Options) => import("effect/Effect").Effect<Service, InvalidConfig> = internal.make

/**
 * The default policy: up to `retries` (2) retries with jittered exponential backoff for the
 * retryable kinds; none for bad request, authentication, context window or content policy.
 *
 * @example
 * import { RetrySchedule } from "effect-llm-router"
 * const RetryLive = RetrySchedule.layer({ retries: 3 })
 * @since 0.1.0
 */
export const layer = (options?: Options): Layer.Layer<RetrySchedule, InvalidConfig> =>
  Layer.effect(RetrySchedule, make(options))

/**
 * Any schedule over errors as the policy.
 *
 * @example
 * import { Schedule } from "effect"
 * import { RetrySchedule } from "effect-llm-router"
 * const RetryLive = RetrySchedule.fromSchedule(Schedule.recurs(1))
 * @since 0.1.0
 */
export const fromSchedule = (schedule: Schedule.Schedule<unknown, RouterError>): Layer.Layer<RetrySchedule> =>
  Layer.succeed(RetrySchedule, { schedule })

/**
 * Never retries: each group gets one attempt (fallbacks still apply).
 *
 * @example
 * import { RetrySchedule } from "effect-llm-router"
 * const RetryLive = RetrySchedule.none
 * @since 0.1.0
 */
export const none: Layer.Layer<RetrySchedule> = fromSchedule(Schedule.stop)
