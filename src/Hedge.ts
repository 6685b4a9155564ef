/**
 * Hedged requests: while an attempt is still running after a delay, start another one (on
 * another deployment of the group when it has one); the first success wins and every other
 * attempt is interrupted at once (its HTTP request aborted), recorded as `cancelled`: not a
 * failure, no cooldown. A failure of one attempt does not cancel the others; when every
 * attempt has failed, the request's retries and fallbacks go on as usual. Streams hedge until
 * their first content.
 *
 * Hedging trades load for tail latency: as "The Tail at Scale" reports, hedging after the p95
 * cuts the p99.9 of a service with rare stalls by an order of magnitude for a few percent more
 * calls (`npm run bench:tail`: 20 s to 1.4 s for 5% more calls, on a pool where 1 call in 100
 * stalls). A budget that refuses a hedge is asked again after another delay. It costs money with LLM providers (a cancelled call may still be billed for the tokens
 * it generated before the abort), so it is off by default, its extra load is capped by a
 * budget (a token bucket, as gRPC throttles its hedges), and it suits short, latency-critical
 * calls more than long generations. `npm run bench:tail` measures it.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { InvalidConfig } from "./Errors.js"
import * as internal from "./internal/hedge.js"
import type { DeploymentStats } from "./RouterState.js"

/**
 * When to start the next hedge of a request in a group: a fixed delay, or a quantile of the
 * group's recent latency (calls for chat and embed, time to first content for streams).
 *
 * @category Models
 * @since 0.1.0
 */
export interface Policy {
  /** Milliseconds after the previous attempt started, given the group's live stats at `now`. */
  readonly delayMs: (stats: ReadonlyArray<DeploymentStats>, kind: "call" | "stream", now: number) => number
  /** The most hedges per request and group (attempts at once = hedges + 1). */
  readonly maxHedges: number
}

/**
 * The hedging service: the policy of each group (`undefined`: no hedging there), and the
 * budget that caps the extra load.
 *
 * @category Models
 * @since 0.1.0
 */
export interface Service {
  readonly policyFor: (group: string) => Policy | undefined
  /** A request (in a hedged group) started: the budget grows by its share. */
  readonly onRequest: Effect.Effect<void>
  /** Takes the budget for one hedge; `false` when the cap is reached (the hedge is not sent). */
  readonly take: Effect.Effect<boolean>
}

/**
 * The hedging tag. Optional: a router without it (the default) never hedges; it is read when
 * the router is built and from each request's context, so `Effect.provide(Hedge.layer(...))`
 * around a call hedges that call.
 *
 * @example
 * import { Hedge } from "effect-llm-router"
 * const HedgeLive = Hedge.layer({ delay: { quantile: 0.95 }, maxExtraPercent: 5 })
 * @category Tags
 * @since 0.1.0
 */
export class Hedge extends Context.Tag("effect-llm-router/Hedge")<Hedge, Service>() {}

/**
 * When to start a hedge: a fixed duration (`"300 millis"`), or `{ quantile, minSamples?,
 * fallback? }`: the group's observed `quantile` (e.g. 0.95) of recent latency, once it has
 * `minSamples` samples (default 20; `fallback`, default 1 second, until then).
 *
 * @example
 * import type { Hedge } from "effect-llm-router"
 * const fixed: Hedge.Delay = "300 millis"
 * const adaptive: Hedge.Delay = { quantile: 0.95, minSamples: 50 }
 * @category Options
 * @since 0.1.0
 */
export type Delay =
  | Duration.DurationInput
  | { readonly quantile: number; readonly minSamples?: number; readonly fallback?: Duration.DurationInput }

/**
 * Hedging asked for by one request (`Router.chat(body, { hedge: { ... } })`): its `delay` and
 * `maxHedges` (default 1) in every group the request tries. Its hedges draw on the budget of
 * the `Hedge` service in the request's context or the router's when there is one; without
 * one they are bounded only by `maxHedges`.
 *
 * @example
 * import { Router } from "effect-llm-router"
 * const hedged = Router.chat(
 *   { model: "fast", messages: [{ role: "user", content: "Hi" }] },
 *   { hedge: { delay: "400 millis", maxHedges: 1 } }
 * )
 * @category Options
 * @since 0.1.0
 */
export interface RequestHedge {
  readonly delay: Delay
  readonly maxHedges?: number
}

/**
 * Options of {@link layer}.
 *
 * - `delay`: a fixed duration (`"300 millis"`), or `{ quantile, minSamples?, fallback? }`: the
 *   group's observed `quantile` (e.g. 0.95) of recent latency, once it has `minSamples`
 *   samples (default 20; `fallback`, default 1 second, until then)
 * - `maxHedges`: hedges per request and group. Default 1
 * - `maxExtraPercent`: hedges at most this share of requests, in % (a token bucket refilled by
 *   `maxExtraPercent / 100` per request). Default 5
 * - `burst`: the bucket's size: hedges allowed in a burst before the share applies. Default 10
 * - `groups`: the groups to hedge. Default: every group
 *
 * @category Options
 * @since 0.1.0
 */
export interface Options {
  readonly delay: Delay
  readonly maxHedges?: number
  readonly maxExtraPercent?: number
  readonly burst?: number
  readonly groups?: ReadonlyArray<string>
}

/**
 * Builds the hedging service; bad options fail with `InvalidConfig`.
 *
 * @example
 * import { Hedge } from "effect-llm-router"
 * const hedge = Hedge.make({ delay: "250 millis", maxHedges: 2 }) // Effect<Service, InvalidConfig>
 * @category Constructors
 * @since 0.1.0
 */
export const make: (options: Options) => Effect.Effect<Service, InvalidConfig> = internal.make

/**
 * Hedging as a Layer: provide it to the router (or around calls) to hedge.
 *
 * @example
 * import { Layer } from "effect"
 * import { Hedge, Router } from "effect-llm-router"
 * declare const config: Router.Config
 * const RouterLive = Router.layer(config).pipe(
 *   Layer.provide(Hedge.layer({ delay: { quantile: 0.95 }, maxExtraPercent: 5 })),
 *   Layer.provide(Router.defaults)
 * )
 * @category Layers
 * @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<Hedge, InvalidConfig> => Layer.effect(Hedge, make(options))

/**
 * No hedging (what a router without the `Hedge` service does): provide it around a call to
 * turn a router's hedging off for that call.
 *
 * @example
 * import { Effect } from "effect"
 * import { Hedge, Router } from "effect-llm-router"
 * const unhedged = Router.chat({ model: "fast", messages: [] }).pipe(Effect.provide(Hedge.none))
 * @category Layers
 * @since 0.1.0
 */
export const none: Layer.Layer<Hedge> = Layer.succeed(Hedge, internal.none)
