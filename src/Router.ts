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
import type * as Scope from "effect/Scope"
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
 * - `tags`: tags the deployment must carry, on top of `metadata.tags` (a list: all of them), or
 *   `{ all?, any?, exclude? }` (see {@link TagFilter}): every tag of `all`, at least one of
 *   `any`, none of `exclude`. A request with no tag to carry (neither `metadata.tags`, `all` nor
 *   `any`) goes, in a group where some deployment is tagged `"default"`, only to those
 * - `region`: a region or a list of them: only deployments whose `region` is one of them (a
 *   deployment without a `region` is never in one). Takes the place of `metadata.region`
 * - `deployment`: only this deployment (by id); the request's `model` must be its group
 * - `waitForCapacity`: when every deployment of a group is at its limits (rpm, tpm,
 *   `maxConcurrent`), wait for room, at most this long in all, instead of failing at once with
 *   `NoDeploymentAvailable` (`over_limits`): until the rpm or tpm window has room, or for a
 *   concurrency slot, 50 ms at a time. Waits count against the `deadline`
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
 * // an EU deployment, tagged "gpu" or "tpu", never one tagged "preview"
 * const placed = Router.chat(
 *   { model: "fast", messages: [{ role: "user", content: "Hi" }] },
 *   { region: ["eu-west-1", "eu-central-1"], tags: { any: ["gpu", "tpu"], exclude: ["preview"] } }
 * )
 * @category Options
 * @since 0.1.0
 */
export interface RequestOptions {
  readonly retries?: number | undefined
  readonly fallbacks?: ReadonlyArray<string> | false | undefined
  readonly timeout?: Duration.DurationInput | undefined
  readonly deadline?: Duration.DurationInput | undefined
  readonly tags?: ReadonlyArray<string> | TagFilter | undefined
  readonly region?: string | ReadonlyArray<string> | undefined
  readonly deployment?: string | undefined
  readonly hedge?: boolean | RequestHedge | undefined
  readonly race?: number | ReadonlyArray<string> | undefined
  readonly contentFilterIsError?: boolean | undefined
  readonly waitForCapacity?: Duration.DurationInput | undefined
}

/**
 * The tags a request asks of a deployment (`options.tags`), each part optional and all of them
 * applying together:
 *
 * - `all`: the deployment carries every one (what a plain list of tags means); they join
 *   `metadata.tags`, and they are the tags the request's spend is kept under
 * - `any`: the deployment carries at least one
 * - `exclude`: the deployment carries none
 *
 * @example
 * import type { Router } from "effect-llm-router"
 * // an EU deployment, on a GPU or a TPU, and not a preview one
 * const tags: Router.TagFilter = { all: ["eu"], any: ["gpu", "tpu"], exclude: ["preview"] }
 * @category Options
 * @since 0.1.0
 */
export interface TagFilter {
  readonly all?: ReadonlyArray<string> | undefined
  readonly any?: ReadonlyArray<string> | undefined
  readonly exclude?: ReadonlyArray<string> | undefined
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
 * - `healthCheck`: background probes of every deployment, every `interval` (see
 *   {@link HealthCheck}). Off by default
 * - `leaseMargin`: how long a lease (an attempt's slot in the store) outlives its call's
 *   timeout: with a shared store, how long the slots of an instance that died (SIGKILL, a lost
 *   host) stay taken before the others get them back. Streams renew their lease as chunks come
 *   (at most every minute, and at least twice per lease). Default 1 minute
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
  readonly healthCheck?: HealthCheck
  readonly leaseMargin?: Duration.DurationInput
}

/**
 * Health checks: a background probe of each deployment every `interval`, so that deployments
 * without traffic stay known and one that recovered comes back without waiting for a live
 * request to find out.
 *
 * - `interval`: between two probes of a deployment (probes of a deployment run at a fixed
 *   rate; a probe that overruns delays the next, never stacks up)
 * - `timeout`: a probe that has not answered by then fails with `Timeout` (for a provider that
 *   `enforcesTimeout`, the router's own cut comes a second later). Default: the interval, at
 *   most 30 seconds
 *
 * A probe is the provider's `healthCheck` (OpenAI-compatible: `GET {apiBase}/models`;
 * Anthropic: `GET /v1/models/{model}`; a provider without one, say your own, is not probed:
 * see `Provider.withChatHealthCheck`), with the deployment's key and base URL. The first runs
 * when the router is built. Each is recorded as a call would be: its time is a latency sample
 * for the selector (a model listing answers faster than a generation: a deployment known only
 * from its probes looks as fast as its server answers), a failure counts toward the breaker
 * (`Cooldown`) under the error classification calls use, and a success closes a circuit that
 * was open: once a deployment's cooldown is over, the next probe takes its half-open probe, so
 * it comes back without a live request taking the risk. A probe takes a lease like a call, but
 * only on a deployment with nothing in flight (a busy deployment is known from its traffic, and
 * keeps its `maxConcurrent` slots), whose circuit lets calls through (a probe never cuts a
 * cooldown short) and that is below its `rpm` (a probe counts as a request there); otherwise
 * that tick is skipped.
 *
 * The probes run in the scope the router is built in: closing `Router.layer`'s scope (or the
 * `Scope` given to `Router.make`) interrupts them, a probe in flight included.
 * Every router (every app instance) probes on its own, also over a shared store. Failed probes
 * are logged at debug level (never with the key).
 *
 * @example
 * import { Router } from "effect-llm-router"
 * declare const deployments: Router.Config["deployments"]
 * const config: Router.Config = { deployments, healthCheck: { interval: "30 seconds", timeout: "5 seconds" } }
 * @category Options
 * @since 0.1.0
 */
export interface HealthCheck {
  readonly interval: Duration.DurationInput
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * Builds the router from its config and the routing services in context. Its health checks,
 * when configured, run in the given scope (closing it stops them).
 *
 * @example
 * import { Router } from "effect-llm-router"
 * declare const config: Router.Config
 * const router = Router.make(config) // Effect<Service, InvalidConfig, Selector | RetrySchedule | ... | Scope>
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
  | Scope.Scope
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
> => Layer.scoped(Router, make(config))

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
