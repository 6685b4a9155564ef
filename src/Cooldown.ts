/**
 * Cooldown: a circuit breaker per deployment. A failing deployment is taken out of rotation
 * for a while; when the while is over, one probe request (half-open) decides whether it is
 * back. Its circuit lives in {@link RouterState}, so a shared store shares it too.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Deployment } from "./Deployment.js"
import type { InvalidConfig, RouterError } from "./Errors.js"
import * as internal from "./internal/cooldown.js"
import type { CooldownRecord } from "./RouterState.js"
import { RouterState } from "./RouterState.js"

/**
 * The cooldown policy's operations, called by the router around every attempt.
 *
 * @since 0.1.0
 */
export interface Service {
  /** Whether a deployment with this circuit can be picked at `now` (pure: reads the snapshot). */
  readonly isAvailable: (record: CooldownRecord, now: number) => boolean
  /**
   * Called once a deployment whose circuit is not closed was picked: takes the half-open probe.
   * `false` means another request holds the probe; the router then picks again without it.
   */
  readonly claim: (deployment: Deployment, now: number) => Effect.Effect<boolean>
  /** The attempt succeeded. */
  readonly onSuccess: (deployment: Deployment, now: number) => Effect.Effect<void>
  /** The attempt failed with `error` (its outcome is already recorded in the state). */
  readonly onFailure: (deployment: Deployment, error: RouterError, now: number) => Effect.Effect<void>
  /** The attempt was interrupted: releases a probe it held, judging nothing. */
  readonly onInterrupt: (deployment: Deployment, now: number) => Effect.Effect<void>
}

/**
 * The cooldown service tag.
 *
 * @example
 * import { Cooldown } from "effect-llm-router"
 * const CooldownLive = Cooldown.layer({ allowedFails: 5, duration: "10 seconds" })
 * @since 0.1.0
 */
export class Cooldown extends Context.Tag("effect-llm-router/Cooldown")<Cooldown, Service>() {}

/**
 * Options of the default circuit breaker.
 *
 * - `allowedFails`: failures within the state window (1 minute) that cool a deployment down. Default 3.
 * - `failureRatio` / `minRequests`: also cool down when more than `failureRatio` of at least
 *   `minRequests` calls in the window failed. Defaults 0.5 and 5.
 * - `duration`: first cooldown when the upstream gave no retry-after. Default 5 seconds.
 * - `maxDuration`: the cooldown doubles after each failed probe up to this. Default 5 minutes.
 *
 * Errors classed `immediate` in `Errors.classification` (authentication, model not found) cool
 * down at once; errors classed `none` (bad request, context window, content policy) are the
 * request's fault and count as a sign of life.
 *
 * @since 0.1.0
 */
export interface Options {
  readonly allowedFails?: number
  readonly failureRatio?: number
  readonly minRequests?: number
  readonly duration?: Duration.DurationInput
  readonly maxDuration?: Duration.DurationInput
}

/**
 * Builds the default circuit breaker over the state service.
 *
 * @example
 * import { Effect } from "effect"
 * import { Cooldown } from "effect-llm-router"
 * const cooldown = Cooldown.make({ allowedFails: 2 }) // Effect<Service, InvalidConfig, RouterState>
 * @since 0.1.0
 */
export const make: (options?: Options) => Effect.Effect<Service, InvalidConfig, RouterState> = internal.make

/**
 * The default circuit breaker as a Layer (LiteLLM-like thresholds, Envoy-like growing ejection).
 *
 * @example
 * import { Cooldown } from "effect-llm-router"
 * const CooldownLive = Cooldown.layer({ allowedFails: 3, duration: "30 seconds" })
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
 * @since 0.1.0
 */
export const disabled: Layer.Layer<Cooldown> = Layer.succeed(Cooldown, internal.disabled)
