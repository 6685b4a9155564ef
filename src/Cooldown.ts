/**
 * Cooldown: a circuit breaker per deployment, shaped like a load balancer's outlier detection
 * (Envoy's). A deployment that fails is taken out of rotation for a while; when the while is
 * over, one probe request (half-open) decides whether it is back. Its circuit lives in
 * {@link RouterState}, so a shared store shares it too.
 *
 * What takes a deployment out, by the error's row in `Errors.classification`:
 *
 * - transient failures (`cooldown: "count"`: 5xx, timeouts, network, 429 without a
 *   retry-after): `consecutiveFailures` in a row, or, over the last minute, more than
 *   `failureRatio` of its calls once it had `minRequests` calls (`allowedFails` failures while
 *   it had fewer). At most `maxEjectionPercent` of a group may be out for transient failures at
 *   once (at least one deployment), and never its last available one: a group cannot be taken
 *   out entirely by noise (this is the panic threshold: the last deployment stays in rotation
 *   and the request's retries and the caller see its real errors);
 * - a rate limit with a retry-after: the deployment is held until that time for every
 *   request, not counted as a failure, not capped, and back without a probe;
 * - unusable (`"immediate"`: a refused key, an unknown model; `"long"`: out of credit): out at
 *   once for `duration` (`longDuration`), not capped;
 * - the request's own faults (`"none"`: bad request, context window, content policy) say the
 *   deployment is alive.
 *
 * A failed probe doubles the cooldown (up to `maxDuration` / `maxLongDuration`); a failure that
 * lands while the deployment is already out (a call that started before) extends the deadline
 * to at least that failure's own cooldown, without doubling; deadlines never shorten.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Deployment } from "./Deployment.js"
import type { Classification, InvalidConfig, RouterError } from "./Errors.js"
import * as internal from "./internal/cooldown.js"
import type { CooldownRecord, StoreError } from "./RouterState.js"
import { RouterState } from "./RouterState.js"

/**
 * A failed attempt, as the router reports it to the cooldown policy.
 *
 * @category Models
 * @since 0.1.0
 */
export interface Failure {
  readonly error: RouterError
  /** The error's row in the router's classification table. */
  readonly classification: Classification
  /** Every deployment of the failed one's group (the ejection cap counts over them). */
  readonly group: ReadonlyArray<Deployment>
}

/**
 * The cooldown policy's operations, called by the router around every attempt.
 *
 * @category Models
 * @since 0.1.0
 */
export interface Service {
  /** Whether a deployment with this circuit can be picked at `now` (pure). */
  readonly isAvailable: (record: CooldownRecord, now: number) => boolean
  /**
   * The circuit once a deployment with this one is taken for an attempt at `now`, `undefined`
   * when it cannot be (another request holds its half-open probe). Pure: the store applies it
   * atomically with the slot (`RouterState.Reservation.claim`).
   */
  readonly claim: (record: CooldownRecord, now: number) => CooldownRecord | undefined
  /** The attempt succeeded. */
  readonly onSuccess: (deployment: Deployment) => Effect.Effect<void, StoreError>
  /** The attempt failed (its outcome is already recorded in the state). */
  readonly onFailure: (deployment: Deployment, failure: Failure) => Effect.Effect<void, StoreError>
  /** The attempt was interrupted: releases a probe it held, judging nothing. */
  readonly onInterrupt: (deployment: Deployment) => Effect.Effect<void, StoreError>
  /**
   * The upstream said it takes no calls for `afterMs`: a retry-after, or rate-limit headers
   * showing no requests or tokens left until the window resets.
   */
  readonly onRetryAfter: (deployment: Deployment, afterMs: number) => Effect.Effect<void, StoreError>
}

/**
 * The cooldown service tag.
 *
 * @example
 * import { Cooldown } from "effect-llm-router"
 * const CooldownLive = Cooldown.layer({ allowedFails: 5, duration: "10 seconds" })
 * @category Tags
 * @since 0.1.0
 */
export class Cooldown extends Context.Tag("effect-llm-router/Cooldown")<Cooldown, Service>() {}

/**
 * Options of the default circuit breaker (see the module docs for how they combine).
 *
 * - `consecutiveFailures`: transient failures in a row that take a deployment out. Default 5.
 * - `failureRatio`, `minRequests`: take it out when more than `failureRatio` of its calls in the
 *   last minute failed, once it had at least `minRequests` calls. Defaults 0.5 and 10.
 * - `allowedFails`: below `minRequests` calls, this many failures in the last minute take it
 *   out. Default 3.
 * - `maxEjectionPercent`: the most of a group (in %) out for transient failures at once; at
 *   least one deployment, never the group's last available one. Default 50.
 * - `duration`: first cooldown for transient failures and unusable deployments. Default 5 seconds.
 * - `maxDuration`: the cooldown doubles after each failed probe up to this. Default 5 minutes.
 * - `longDuration`: first cooldown for errors classed `long` (out of credit). Default 10 minutes.
 * - `maxLongDuration`: their cap when doubling. Default 1 hour.
 *
 * @category Options
 * @since 0.1.0
 */
export interface Options {
  readonly consecutiveFailures?: number
  readonly failureRatio?: number
  readonly minRequests?: number
  readonly allowedFails?: number
  readonly maxEjectionPercent?: number
  readonly duration?: Duration.DurationInput
  readonly maxDuration?: Duration.DurationInput
  readonly longDuration?: Duration.DurationInput
  readonly maxLongDuration?: Duration.DurationInput
}

/**
 * Builds the default circuit breaker over the state service.
 *
 * @example
 * import { Cooldown } from "effect-llm-router"
 * const cooldown = Cooldown.make({ consecutiveFailures: 3 }) // Effect<Service, InvalidConfig, RouterState>
 * @category Constructors
 * @since 0.1.0
 */
export const make: (options?: Options) => Effect.Effect<Service, InvalidConfig, RouterState> = internal.make

/**
 * The default circuit breaker as a Layer (Envoy-like outlier detection and growing ejection).
 *
 * @example
 * import { Cooldown } from "effect-llm-router"
 * const CooldownLive = Cooldown.layer({ allowedFails: 3, duration: "30 seconds" })
 * @category Layers
 * @since 0.1.0
 */
export const layer = (options?: Options): Layer.Layer<Cooldown, InvalidConfig, RouterState> =>
  Layer.effect(Cooldown, make(options))

/**
 * Never cools a deployment down: every deployment stays in rotation whatever it does.
 *
 * @example
 * import { Cooldown } from "effect-llm-router"
 * const NoCooldown = Cooldown.disabled
 * @category Layers
 * @since 0.1.0
 */
export const disabled: Layer.Layer<Cooldown> = Layer.succeed(Cooldown, internal.disabled)
