/**
 * The router: `chat`, `stream` and `embed` across the deployments of a model group, with
 * selection, retries, cooldowns, fallbacks and cost metering supplied by their own services.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as Cooldown from "./Cooldown.js"
import * as CostMeter from "./CostMeter.js"
import type { Deployment, DeploymentConfig } from "./Deployment.js"
import type { Attempt, ClassificationOverrides, InvalidConfig, RouterError } from "./Errors.js"
import type { RequestHedge } from "./Hedge.js"
import * as Fallback from "./Fallback.js"
import * as Engine from "./internal/engine.js"
import * as internal from "./internal/router.js"
import type { ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, Provider, Usage } from "./Provider.js"
import * as RetrySchedule from "./RetrySchedule.js"
import * as RouterState from "./RouterState.js"
import * as Selector from "./Selector.js"

/**
 * One call to one deployment, as recorded on a route (the same type as `Errors.Attempt`).
 *
 * @category Models
 * @since 0.1.0
 */
export type { Attempt } from "./Errors.js"

/**
 * How a request was served.
 *
 * @category Models
 * @since 0.1.0
 */
export interface RouteInfo {
  /** The deployment that answered. */
  readonly deploymentId: string
  /** The group that answered: the requested one or a fallback. */
  readonly group: string
  /** The group the caller asked for. */
  readonly requestedGroup: string
  /** The upstream model that answered. */
  readonly model: string
  /** Every attempt, in the order they ended, each with its outcome (won, failed, cancelled). */
  readonly attempts: ReadonlyArray<Attempt>
  /** From the call to the router until the response (or, for streams, the last chunk). */
  readonly latencyMs: number
  /** Time spent in the router itself: total minus provider calls minus retry waits. */
  readonly overheadMs: number
  /** Dollars this request cost: every attempt that reported usage, at its deployment's price. */
  readonly cost: number
  /** The usage of the answer. */
  readonly usage: Usage | undefined
  /**
   * Present when the router's state store was failing during the request: it was served from
   * the router's local view (limits, circuits and spend of this process only).
   */
  readonly storeFailed?: true | undefined
}

/**
 * A response with its route info.
 *
 * @category Models
 * @since 0.1.0
 */
export type Routed<A> = A & { readonly route: RouteInfo }

/**
 * A streamed chunk. The stream's last chunk carries `route` (with the cost from the final usage).
 *
 * @category Models
 * @since 0.1.0
 */
export type RoutedChunk = ChatChunk & { readonly route?: RouteInfo | undefined }

/**
 * Options of one request, beside its body. Each overrides the router's policy for this request
 * only; an option that cannot work fails the request with `InvalidRequest` before anything is
 * sent.
 *
 * - `retries`: the most retries per group (the policy's backoff stays)
 * - `fallbacks`: the groups to try, in order, after the requested one is exhausted (any error
 *   that falls back); their own fallbacks are not followed. `false`: no fallback
 * - `timeout`: per attempt (for streams: until the first content chunk)
 * - `deadline`: the whole request, retries, waits and fallbacks included (for streams: until
 *   the first content chunk); when it passes the request fails with `Timeout`
 * - `tags`: tags the deployment must carry, on top of `metadata.tags`
 * - `deployment`: only this deployment (by id); the request's `model` must be its group
 * - `hedge`: `false` turns the router's hedging off for this request; `{ delay, maxHedges? }`
 *   hedges this request (see `Hedge.RequestHedge`: its hedges draw on the budget of the
 *   context's or the router's `Hedge` when there is one)
 * - `race`: send the first attempt to several deployments of the group at once (a number), or
 *   to the requested group and other groups at once (their names), and take the first success
 *   (LiteLLM's "fastest response"); the other attempts are interrupted, recorded as cancelled.
 *   When every racer fails, the requested group's retries and fallbacks go on as usual
 * - `contentFilterIsError`: a reply that finishes with `content_filter` is a `ContentPolicy`
 *   error, so it takes the content-policy fallback (default: the router's config)
 *
 * Policies (`RetrySchedule`, `Fallback`, `Cooldown`, `Selector`, `CostMeter`, `Hedge`) are also
 * read from the context of each request: `Effect.provide(RetrySchedule.none)` around one call (or a
 * tenant's calls) changes its policy.
 *
 * @example
 * import { Effect } from "effect"
 * import { Router } from "effect-llm-router"
 * const program = Router.chat(
 *   { model: "fast", messages: [{ role: "user", content: "Hi" }] },
 *   { retries: 0, fallbacks: ["smart"], deadline: "20 seconds", tags: ["eu"] }
 * )
 * // the fastest of two deployments, or of two groups
 * const fastest = Router.chat({ model: "fast", messages: [{ role: "user", content: "Hi" }] }, { race: 2 })
 * const fastestGroup = Router.chat({ model: "fast", messages: [{ role: "user", content: "Hi" }] }, { race: ["smart"] })
 * // a hedge after 400 ms if the first attempt has not answered
 * const hedged = Router.chat({ model: "fast", messages: [{ role: "user", content: "Hi" }] }, { hedge: { delay: "400 millis" } })
 * @category Options
 * @since 0.1.0
 */
export interface RequestOptions {
  readonly retries?: number | undefined
  readonly fallbacks?: ReadonlyArray<string> | false | undefined
  readonly timeout?: Duration.DurationInput | undefined
  readonly deadline?: Duration.DurationInput | undefined
  readonly tags?: ReadonlyArray<string> | undefined
  readonly deployment?: string | undefined
  readonly hedge?: boolean | RequestHedge | undefined
  readonly race?: number | ReadonlyArray<string> | undefined
  readonly contentFilterIsError?: boolean | undefined
}

/**
 * The router's operations.
 *
 * @category Models
 * @since 0.1.0
 */
export interface Service {
  readonly chat: (request: ChatRequest, options?: RequestOptions) => Effect.Effect<Routed<ChatResponse>, RouterError>
  /**
   * Retries and fallbacks happen until the first chunk with content (text, a tool call or a
   * finish): a role-only first chunk is held back until content follows. Once content has been
   * emitted, an error ends the stream. The deployment's concurrency slot is held until the
   * stream ends.
   */
  readonly stream: (request: ChatRequest, options?: RequestOptions) => Stream.Stream<RoutedChunk, RouterError>
  readonly embed: (request: EmbeddingRequest, options?: RequestOptions) => Effect.Effect<Routed<EmbeddingResponse>, RouterError>
  readonly deployments: ReadonlyArray<Deployment>
  readonly groups: ReadonlyArray<string>
}

/**
 * The router service tag.
 *
 * @example
 * import { Effect } from "effect"
 * import { Router } from "effect-llm-router"
 * const groups = Effect.map(Router.Router, (router) => router.groups)
 * @category Tags
 * @since 0.1.0
 */
export class Router extends Context.Tag("effect-llm-router/Router")<Router, Service>() {}

/**
 * The router's own config.
 *
 * - `deployments`: validated when the layer is built; a bad field fails with `InvalidConfig`
 *   naming its path
 * - `providers`: providers that deployments name by string
 * - `timeout`: per attempt (for streams: until the first chunk), when a deployment sets none.
 *   Default 10 minutes
 * - `classification`: rows of `Errors.classification` to override for this router, each in
 *   part: whether an error kind is retried (`retry`), how it counts against a deployment
 *   (`cooldown`) and which fallback list it takes (`fallback`). To change which kind an upstream
 *   answer maps to (say, a 409 that should not be retried), give the provider `errorRules`
 * - `contentFilterIsError`: a reply that finishes with `content_filter` is a `ContentPolicy`
 *   error (it takes the content-policy fallback, as LiteLLM does). Default false
 *
 * @example
 * import { Router } from "effect-llm-router"
 * import { FakeProvider } from "effect-llm-router/testing"
 *
 * const config: Router.Config = {
 *   deployments: [{ group: "fast", provider: FakeProvider.unsafeMake(), model: "m" }],
 *   timeout: "30 seconds",
 *   // timeouts here are never worth a retry, and do not count against a deployment
 *   classification: { Timeout: { retry: "never", cooldown: "none" } }
 * }
 * @category Options
 * @since 0.1.0
 */
export interface Config {
  readonly deployments: ReadonlyArray<DeploymentConfig>
  readonly providers?: Readonly<Record<string, Provider>>
  readonly timeout?: Duration.DurationInput
  readonly classification?: ClassificationOverrides
  readonly contentFilterIsError?: boolean
}

/**
 * Builds the router from its config and the routing services in context.
 *
 * @example
 * import { Router } from "effect-llm-router"
 * declare const config: Router.Config
 * const router = Router.make(config) // Effect<Service, InvalidConfig, Selector | RetrySchedule | ...>
 * @category Constructors
 * @since 0.1.0
 */
export const make: (
  config: Config
) => Effect.Effect<
  Service,
  InvalidConfig,
  | Selector.Selector
  | RetrySchedule.RetrySchedule
  | Cooldown.Cooldown
  | Fallback.Fallback
  | CostMeter.CostMeter
  | RouterState.RouterState
> = internal.make

/**
 * The router as a Layer. Provide the routing services, usually `Router.defaults` after any
 * you want to replace.
 *
 * @example
 * import { Layer } from "effect"
 * import { Cooldown, Router, Selector } from "effect-llm-router"
 * import { FakeProvider } from "effect-llm-router/testing"
 *
 * const RouterLive = Router.layer({
 *   deployments: [
 *     { group: "fast", provider: FakeProvider.unsafeMake({ name: "a" }), model: "a-1" },
 *     { group: "fast", provider: FakeProvider.unsafeMake({ name: "b" }), model: "b-1" }
 *   ]
 * }).pipe(
 *   Layer.provide(Selector.roundRobin),
 *   Layer.provide(Cooldown.layer({ allowedFails: 3, duration: "30 seconds" })),
 *   Layer.provide(Router.defaults)
 * )
 * @category Layers
 * @since 0.1.0
 */
export const layer = (
  config: Config
): Layer.Layer<
  Router,
  InvalidConfig,
  | Selector.Selector
  | RetrySchedule.RetrySchedule
  | Cooldown.Cooldown
  | Fallback.Fallback
  | CostMeter.CostMeter
  | RouterState.RouterState
> => Layer.effect(Router, make(config))

/**
 * LiteLLM-like routing policies over the `RouterState` store in context: weighted random
 * selection, 2 retries (at once on another deployment, else jittered backoff from 500 ms), the
 * default breaker, no fallbacks, the built-in price table. Provide your own store after it to
 * share state (the breaker's circuits and the spend live in the store). These policies are
 * defaults: in a request's context they never override the policies a router was built with.
 *
 * @example
 * import { Layer } from "effect"
 * import { Router, RouterState } from "effect-llm-router"
 * declare const config: Router.Config
 * const RouterLive = Router.layer(config).pipe(
 *   Layer.provide(Router.policies),
 *   Layer.provideMerge(RouterState.memory({ window: "2 minutes" })) // or any other store
 * )
 * @category Layers
 * @since 0.1.0
 */
export const policies: Layer.Layer<
  | Selector.Selector
  | RetrySchedule.RetrySchedule
  | Cooldown.Cooldown
  | Fallback.Fallback
  | CostMeter.CostMeter,
  InvalidConfig,
  RouterState.RouterState
> = Layer.mergeAll(
  // a selector of its own (not the shared `Selector.weighted` value), so that marking it as a
  // default does not mark a `Selector.weighted` provided around a request
  Selector.fromEffect(Effect.map(Selector.Selector.pipe(Effect.provide(Selector.weighted)), (selector) => ({ ...selector }))),
  RetrySchedule.layer(),
  Fallback.none,
  Cooldown.layer(),
  CostMeter.layer()
).pipe(Layer.tap((context) => Effect.sync(() => Engine.markDefaults(context))))

/**
 * {@link policies} over an in-memory store of their own: every routing service, ready to use.
 * To use another store, provide `Router.policies` and that store instead: the router refuses
 * (with `InvalidConfig`) to run with a store other than the one its policies write to.
 *
 * @example
 * import { Layer } from "effect"
 * import { Router } from "effect-llm-router"
 * declare const config: Router.Config
 * const RouterLive = Router.layer(config).pipe(Layer.provide(Router.defaults))
 * @category Layers
 * @since 0.1.0
 */
export const defaults: Layer.Layer<
  | Selector.Selector
  | RetrySchedule.RetrySchedule
  | Cooldown.Cooldown
  | Fallback.Fallback
  | CostMeter.CostMeter
  | RouterState.RouterState,
  InvalidConfig
> = policies.pipe(Layer.provideMerge(RouterState.memory()))

/**
 * Routes a chat request through the router in context.
 *
 * @example
 * import { Effect } from "effect"
 * import { Router } from "effect-llm-router"
 * const program = Effect.gen(function*() {
 *   const reply = yield* Router.chat({ model: "fast", messages: [{ role: "user", content: "Hi" }] })
 *   console.log(reply.choices[0].message.content, reply.route.deploymentId, reply.route.cost)
 * })
 * @category Accessors
 * @since 0.1.0
 */
export const chat = (request: ChatRequest, options?: RequestOptions): Effect.Effect<Routed<ChatResponse>, RouterError, Router> =>
  Effect.flatMap(Router, (router) => router.chat(request, options))

/**
 * Routes a streaming chat request through the router in context.
 *
 * @example
 * import { Effect, Stream } from "effect"
 * import { Router } from "effect-llm-router"
 * const program = Router.stream({ model: "fast", messages: [{ role: "user", content: "Hi" }] }).pipe(
 *   Stream.runForEach((chunk) => Effect.sync(() => process.stdout.write(chunk.choices[0]?.delta.content ?? "")))
 * )
 * @category Accessors
 * @since 0.1.0
 */
export const stream = (request: ChatRequest, options?: RequestOptions): Stream.Stream<RoutedChunk, RouterError, Router> =>
  Stream.unwrap(Effect.map(Router, (router) => router.stream(request, options)))

/**
 * Routes an embedding request through the router in context.
 *
 * @example
 * import { Router } from "effect-llm-router"
 * const program = Router.embed({ model: "embed", input: ["hello"] })
 * @category Accessors
 * @since 0.1.0
 */
export const embed = (request: EmbeddingRequest, options?: RequestOptions): Effect.Effect<Routed<EmbeddingResponse>, RouterError, Router> =>
  Effect.flatMap(Router, (router) => router.embed(request, options))
