/**
 * Whether and when a failed attempt is tried again, as Effect `Schedule`s fed with each
 * attempt's error.
 *
 * Which errors are retried at all is the router's classification (`Errors.classification`,
 * overridable with `Router.layer({ classification })`): `"any"` kinds, and `"elsewhere"` kinds
 * when another deployment of the group can take the retry. The schedule decides how many
 * retries and the backoff. Around it, the router:
 *
 * - sends a retry at once to another deployment of the group when one is available (the
 *   backoff is for going back to the same deployment);
 * - never sends a request back to a deployment before the time it was given: when the retry can
 *   only go back (or the whole group is cooling down), it waits the longer of the backoff and
 *   the time until the first deployment returns, unless that is more than `maxWait`, in which
 *   case the group is given up and fallbacks take over.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import type * as Effect from "effect/Effect"
import type { Deployment } from "./Deployment.js"
import type { ErrorTag, InvalidConfig, RouterError } from "./Errors.js"
import * as internal from "./internal/retry.js"

/**
 * What a retry policy is fed with: one failed attempt of a request in a group.
 *
 * @example
 * import type { RetrySchedule } from "effect-llm-router"
 * import { Schedule } from "effect"
 * // retry timeouts only while another deployment can take the retry
 * const onlyElsewhere = Schedule.recurs(3).pipe(
 *   Schedule.whileInput((failure: RetrySchedule.AttemptFailure) =>
 *     failure.error._tag !== "Timeout" || failure.othersAvailable
 *   )
 * )
 * @category Models
 * @since 0.1.0
 */
export interface AttemptFailure {
  readonly error: RouterError
  /** The deployment the attempt went to; `undefined` when no deployment could take it. */
  readonly deployment: Deployment | undefined
  /** Attempts the request made in this group so far, the failed one included (1 for the first). */
  readonly attempt: number
  /** Whether another deployment of the group can take a retry right now. */
  readonly othersAvailable: boolean
}

/**
 * A retry policy: a schedule fed with each failed attempt. When it stops, the group is
 * exhausted and the router moves on to fallbacks.
 *
 * @category Models
 * @since 0.1.0
 */
export interface Policy {
  readonly schedule: Schedule.Schedule<unknown, AttemptFailure>
  /**
   * The longest a retry waits for a deployment of the group to come back (a retry-after, a
   * cooldown) before the group is given up. Default 60 seconds, as the official OpenAI client
   * bounds a retry-after.
   */
  readonly maxWait?: Duration.Duration | undefined
  /**
   * The policy's schedule with at most `retries` retries, for a request's `retries` option
   * (`Router.chat(request, { retries })`). Without it, that option can only lower the count.
   */
  readonly withRetries?: ((retries: number) => Schedule.Schedule<unknown, AttemptFailure>) | undefined
}

/**
 * The retry service: a policy, and the policies of groups that have their own (LiteLLM's
 * `model_group_retry_policy`).
 *
 * @category Models
 * @since 0.1.0
 */
export interface Service extends Policy {
  readonly groups?: Readonly<Record<string, Policy>> | undefined
}

/**
 * The retry policy tag.
 *
 * @example
 * import { RetrySchedule } from "effect-llm-router"
 * const RetryLive = RetrySchedule.layer({ retries: 3, base: "200 millis" })
 * @category Tags
 * @since 0.1.0
 */
export class RetrySchedule extends Context.Tag("effect-llm-router/RetrySchedule")<RetrySchedule, Service>() {}

/**
 * Options of the default policy.
 *
 * - `retries`: most retries per group (attempts = retries + 1). Default 2.
 * - `base`, `factor`: exponential backoff, jittered. Defaults 500 ms and 2 (as the official
 *   OpenAI and Anthropic clients).
 * - `maxDelay`: cap on one backoff delay (a retry-after may ask for more). Default 8 seconds.
 * - `maxWait`: see {@link Service}. Default 60 seconds.
 * - `retryOn`: narrows the retried kinds to these tags. Default: every kind the classification
 *   retries (rate limited, server, timeout, network, malformed response; quota, authentication
 *   and model not found on another deployment only).
 *
 * @category Options
 * @since 0.1.0
 */
export interface Options {
  readonly retries?: number
  readonly base?: Duration.DurationInput
  readonly factor?: number
  readonly maxDelay?: Duration.DurationInput
  readonly maxWait?: Duration.DurationInput
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
 * @category Layers
 * @since 0.1.0
 */
export const byError = (
  policies: { readonly [K in ErrorTag]?: Schedule.Schedule<unknown, any> },
  options?: { readonly maxRetries?: number }
): Layer.Layer<RetrySchedule> => Layer.succeed(RetrySchedule, { schedule: internal.byError(policies, options?.maxRetries) })

/**
 * Builds the default policy: its schedule and its `maxWait`.
 *
 * @example
 * import { RetrySchedule } from "effect-llm-router"
 * const schedule = RetrySchedule.make({ retries: 1 }) // Effect<Service, InvalidConfig>
 * @category Constructors
 * @since 0.1.0
 */
export const make: (options?: Options) => Effect.Effect<Service, InvalidConfig> = internal.make

/**
 * The default policy: up to `retries` (2) retries, jittered exponential backoff from 500 ms,
 * for the kinds the classification retries; none for bad request, context window or content
 * policy.
 *
 * @example
 * import { RetrySchedule } from "effect-llm-router"
 * const RetryLive = RetrySchedule.layer({ retries: 3 })
 * @category Layers
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
 * @category Layers
 * @since 0.1.0
 */
export const fromSchedule = (schedule: Schedule.Schedule<unknown, AttemptFailure>): Layer.Layer<RetrySchedule> =>
  Layer.succeed(RetrySchedule, { schedule })

/**
 * Policies per group: each group listed gets its own policy, the others `otherwise` (the
 * default policy when absent). Groups the router does not serve are refused when it is built.
 *
 * @example
 * import { RetrySchedule } from "effect-llm-router"
 * const RetryLive = RetrySchedule.byGroup(
 *   { "claude-fast": RetrySchedule.make({ retries: 4 }), batch: RetrySchedule.make({ retries: 0 }) },
 *   RetrySchedule.make({ retries: 2 })
 * )
 * @category Layers
 * @since 0.1.0
 */
export const byGroup = (
  groups: Readonly<Record<string, Effect.Effect<Policy, InvalidConfig>>>,
  otherwise?: Effect.Effect<Policy, InvalidConfig>
): Layer.Layer<RetrySchedule, InvalidConfig> => Layer.effect(RetrySchedule, internal.byGroup(groups, otherwise))

/**
 * Never retries: each group gets one attempt (fallbacks still apply).
 *
 * @example
 * import { RetrySchedule } from "effect-llm-router"
 * const RetryLive = RetrySchedule.none
 * @category Layers
 * @since 0.1.0
 */
export const none: Layer.Layer<RetrySchedule> = fromSchedule(Schedule.stop)
