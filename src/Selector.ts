/**
 * The selector picks one deployment from the healthy candidates of a group. The router has
 * already removed deployments that are cooling down, at their concurrency limit, refused by the
 * request's pre-call filters (tags, region, context window), or that this request must not go
 * back to (the one a retry just failed on, when others remain); in a group with priority tiers
 * (`order`), the candidates are those of the lowest tier with any available (a `NoFit` there
 * moves the pick to the next tier).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import type { DurationInput } from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Deployment } from "./Deployment.js"
import * as internal from "./internal/selector.js"
import * as latencySelectors from "./internal/latencySelectors.js"
import * as load from "./internal/loadSelectors.js"
import type { CostMeter } from "./CostMeter.js"
import type { InvalidConfig } from "./Errors.js"
import type { ChatRequest, EmbeddingRequest } from "./Provider.js"
import type { DeploymentStats } from "./RouterState.js"

/**
 * A deployment the selector may pick, with its live stats.
 *
 * @category Models
 * @since 0.1.0
 */
export interface Candidate {
  readonly deployment: Deployment
  readonly stats: DeploymentStats
}

/**
 * What is being routed. `attempt` counts the attempts this request already made in this group:
 * 0 for its first pick there, more for a retry's pick.
 *
 * @category Models
 * @since 0.1.0
 */
export type SelectionRequest =
  | { readonly kind: "chat" | "stream"; readonly group: string; readonly request: ChatRequest; readonly attempt: number }
  | { readonly kind: "embed"; readonly group: string; readonly request: EmbeddingRequest; readonly attempt: number }

/**
 * A selector's answer when no candidate fits the request (a tier the request may not use, a
 * region it must stay in...). The router turns it into `NoDeploymentAvailable` with reason
 * `"none_fits"` and this message.
 *
 * @example
 * import { Selector } from "effect-llm-router"
 * new Selector.NoFit({ message: "no candidate in the EU region" })
 * @category Errors
 * @since 0.1.0
 */
export class NoFit extends Data.TaggedError("NoFit")<{ readonly message: string }> {}

/**
 * A selection policy. `candidates` is never empty; `pick` returns one of them, or fails with
 * {@link NoFit} when none fits. `candidates` may be shared between requests and frozen: read
 * it, do not change it (sort a copy: `[...candidates].sort(...)`).
 *
 * @category Models
 * @since 0.1.0
 */
export interface Service {
  readonly pick: (candidates: ReadonlyArray<Candidate>, request: SelectionRequest) => Effect.Effect<Candidate, NoFit>
}

/**
 * The selector service tag.
 *
 * @example
 * import { Layer } from "effect"
 * import { Selector } from "effect-llm-router"
 * const SelectorLive: Layer.Layer<Selector.Selector> = Selector.roundRobin
 * @category Tags
 * @since 0.1.0
 */
export class Selector extends Context.Tag("effect-llm-router/Selector")<Selector, Service>() {}

/**
 * A typed custom policy: a function of the candidates (with their live stats) and the request.
 * It may fail with {@link NoFit}.
 *
 * @example
 * import { Effect } from "effect"
 * import { Selector } from "effect-llm-router"
 *
 * // primary / secondary: the first available deployment in config order
 * const firstListed = Selector.make((candidates) =>
 *   Effect.succeed(candidates.reduce((best, c) => (c.deployment.index < best.deployment.index ? c : best)))
 * )
 * // premium requests only on deployments tagged "premium"
 * const byTier = Selector.make((candidates, { request }) => {
 *   const premium = request.metadata?.tier === "premium"
 *   const fitting = candidates.filter((c) => c.deployment.tags.includes("premium") === premium)
 *   return fitting.length > 0
 *     ? Effect.succeed(fitting[0])
 *     : Effect.fail(new Selector.NoFit({ message: `no ${premium ? "premium" : "standard"} deployment available` }))
 * })
 * @category Layers
 * @since 0.1.0
 */
export const make = (
  pick: (candidates: ReadonlyArray<Candidate>, request: SelectionRequest) => Effect.Effect<Candidate, NoFit>
): Layer.Layer<Selector> => Layer.succeed(Selector, { pick })

/**
 * A policy built by an Effect: one that uses services (a tenant directory, a feature flag
 * client...) reads them while it is built.
 *
 * @example
 * import { Context, Effect } from "effect"
 * import { Selector } from "effect-llm-router"
 *
 * class Regions extends Context.Tag("Regions")<Regions, { readonly allowed: ReadonlyArray<string> }>() {}
 *
 * const SelectorLive = Selector.fromEffect(Effect.gen(function*() {
 *   const regions = yield* Regions
 *   return {
 *     pick: (candidates) => {
 *       const fitting = candidates.filter((c) => c.deployment.tags.some((t) => regions.allowed.includes(t)))
 *       return fitting.length > 0 ? Effect.succeed(fitting[0]) : Effect.fail(new Selector.NoFit({ message: "no deployment in an allowed region" }))
 *     }
 *   }
 * })) // Layer<Selector, never, Regions>
 * @category Layers
 * @since 0.1.0
 */
export const fromEffect = <E, R>(build: Effect.Effect<Service, E, R>): Layer.Layer<Selector, E, R> => Layer.effect(Selector, build)

/**
 * The default: weighted random. Each candidate's share is its `weight` when any candidate of
 * the group sets one (unset counts as 1), else its `rpm`, else its `tpm`, else all are equal.
 * A zero weight is never picked unless every share is zero.
 *
 * @example
 * import { Selector } from "effect-llm-router"
 * const SelectorLive = Selector.weighted
 * @category Layers
 * @since 0.1.0
 */
export const weighted: Layer.Layer<Selector> = Layer.succeed(Selector, { pick: internal.weightedPick })

/**
 * Round robin per group, over the candidates available at each pick. The turn advances once per
 * request, on its first pick in the group; a retry's pick takes the current turn without moving
 * it, so a failing deployment does not get the first attempt of every request.
 *
 * @example
 * import { Selector } from "effect-llm-router"
 * const SelectorLive = Selector.roundRobin
 * @category Layers
 * @since 0.1.0
 */
export const roundRobin: Layer.Layer<Selector> = Layer.effect(
  Selector,
  Effect.sync(() => ({ pick: internal.makeRoundRobin() }))
)

/**
 * Options of {@link lowestLatency}; every field has a default.
 *
 * - `buffer`: picks at random among the candidates whose estimate is within this fraction of
 *   the best (`0.1`: within 10%), so traffic does not herd onto one deployment. Default 0.1.
 * - `window`: an estimate that has had no news (no new sample, no pick) decays back toward the
 *   prior (the median of the candidates' estimates) with this time constant. Default 1 minute.
 * - `exploreAfter`: a deployment that has had no news for this long, with nothing in flight,
 *   gets the next request's first attempt (one probe; retries never probe), so a deployment
 *   that was slow or went unused is measured again. Default 30 seconds.
 * - `stuckAfter`: a deployment whose calls in flight are on average older than this many times
 *   its usual call looks slower in proportion to their age, before any of them ends. With the
 *   default 1, its estimate is at least the mean age of its calls in flight (a call running
 *   for 5 s says the deployment takes at least 5 s now). Default 1.
 * - `perOutputToken`: chat requests compare time per output token (each deployment's time
 *   over its own average output tokens per call) when every candidate with samples knows it,
 *   so a deployment that happened to write long answers does not look slow. Default true.
 *
 * @category Options
 * @since 0.1.0
 */
export interface LowestLatencyOptions {
  readonly buffer?: number | undefined
  readonly window?: import("effect/Duration").DurationInput | undefined
  readonly exploreAfter?: import("effect/Duration").DurationInput | undefined
  readonly stuckAfter?: number | undefined
  readonly perOutputToken?: boolean | undefined
}

/**
 * Lowest latency, from the engine's samples of each candidate: time to first content for
 * streams, the whole call for chat (per output token where known, see `perOutputToken`) and
 * embeddings. Picks at random among the candidates within `buffer` of the best.
 *
 * - Failures count as slow: the engine records each failed call as a slow sample (at least
 *   twice the average), and an estimate is multiplied by 1 + the deployment's failures in a row.
 * - A stuck deployment looks slow before its calls end: once the mean age of its calls in
 *   flight passes `stuckAfter` usual calls, its estimate grows with that age. A deployment's
 *   usual call is its call average, or for streams its time to first content plus the
 *   generation of an average call's tokens.
 * - A deployment never seen is as good as the best while nothing is in flight on it (so it is
 *   explored at once), then waits out of the running for its first answer.
 * - Estimates without news decay toward the prior with time constant `window`; a deployment
 *   without news for `exploreAfter` gets one probe. A deployment just back from a quiet spell is
 *   judged by the median of its samples since (while the state's window holds only those) until
 *   it has 20 new ones, so a recovered deployment is not held back by its old average.
 *
 * It remembers, per deployment, when it last saw news of it: build the layer once, not per
 * request. Bad options fail the layer with `InvalidConfig` naming the field
 * (`Selector.lowestLatency.buffer`).
 *
 * Cost: a pick reads every candidate's stats (a median and a few passes, no sort). A group of
 * 64 or more whose deployments are all admitted (the same frozen candidates array each time)
 * is read in full at most every 100 ms; the picks in between draw among that reading's
 * eligible candidates, each draw checked against its candidate's current stats (a full
 * reading again when it fails), so a deployment that gets stuck or takes its first call is
 * not drawn again meanwhile.
 *
 * @example
 * import { Layer } from "effect"
 * import { Router, Selector } from "effect-llm-router"
 * declare const config: Router.Config
 * const RouterLive = Router.layer(config).pipe(
 *   Layer.provide(Selector.lowestLatency({ buffer: 0.2, window: "1 minute" })),
 *   Layer.provide(Router.defaults)
 * )
 * @category Layers
 * @since 0.1.0
 */
export const lowestLatency = (options?: LowestLatencyOptions): Layer.Layer<Selector, import("./Errors.js").InvalidConfig> =>
  Layer.effect(Selector, latencySelectors.lowestLatency(options))

/**
 * Options of {@link peakEwma}; every field has a default.
 *
 * - `decay`: the time constant of the peak EWMA: a faster estimate pulls the cost down over
 *   about this long, and a deployment without news sees its cost decay toward 0 (so it gets
 *   tried again). Default 10 seconds (as Finagle and Linkerd).
 * - `stuckAfter`: as in {@link LowestLatencyOptions}. Default 1.
 *
 * @category Options
 * @since 0.1.0
 */
export interface PeakEwmaOptions {
  readonly decay?: import("effect/Duration").DurationInput | undefined
  readonly stuckAfter?: number | undefined
}

/**
 * Power of two choices with peak-EWMA load, the balancer of Finagle and Linkerd: draws two
 * distinct candidates at random and takes the one with the lower latency estimate × (calls in
 * flight + 1). O(1) per pick, whatever the group's size.
 *
 * The estimate is peak-sensitive: it follows the engine's samples of the deployment (time to
 * first content for streams, the whole call otherwise; failures count as slow, as in
 * {@link lowestLatency}), jumping up at once when they get slower and coming down over `decay`
 * when they get faster. A deployment never seen wins while nothing is in flight on it, then
 * loses until its first call answers; calls in flight older than `stuckAfter` usual calls raise
 * the estimate.
 *
 * When to pick it: it balances load (the term in flight + 1 assumes a deployment's latency
 * grows with its queue) at O(1) per pick, for large groups of similar deployments. It does not
 * concentrate traffic on the fastest: each candidate is only in some pairs (the fastest of 4 gets
 * at most half the picks), and a 10x slower deployment with nothing in flight still beats a
 * fast one with 9 in flight. For the lowest latency, use {@link lowestLatency}.
 *
 * @example
 * import { Layer } from "effect"
 * import { Router, Selector } from "effect-llm-router"
 * declare const config: Router.Config
 * const RouterLive = Router.layer(config).pipe(
 *   Layer.provide(Selector.peakEwma({ decay: "30 seconds" })),
 *   Layer.provide(Router.defaults)
 * )
 * @category Layers
 * @since 0.1.0
 */
export const peakEwma = (options?: PeakEwmaOptions): Layer.Layer<Selector, import("./Errors.js").InvalidConfig> =>
  Layer.effect(Selector, latencySelectors.peakEwma(options))

/**
 * The share {@link weighted} gives each candidate, in order (exposed for custom policies and
 * for checking a config's traffic split).
 *
 * @example
 * import { Selector } from "effect-llm-router"
 * declare const candidates: ReadonlyArray<Selector.Candidate> // two deployments, weights 3 and 1
 * Selector.shares(candidates) // [0.75, 0.25]
 * @category Mapping
 * @since 0.1.0
 */
export const shares: (candidates: ReadonlyArray<Candidate>) => ReadonlyArray<number> = internal.shares

/**
 * Least busy: the candidate with the fewest calls in flight, ties (an idle group) broken
 * uniformly at random (Effect's `Random`). The choice is made inside the store's atomic
 * reserve, so concurrent requests spread evenly: 40 at once over 4 idle deployments end 10 on
 * each. LiteLLM's `least-busy`. Picks in O(candidates), no parameters.
 *
 * @example
 * import { Layer } from "effect"
 * import { type Deployment, Router, Selector } from "effect-llm-router"
 * declare const deployments: ReadonlyArray<Deployment.DeploymentConfig>
 * const RouterLive = Router.layer({ deployments }).pipe(
 *   Layer.provide(Selector.leastBusy),
 *   Layer.provide(Router.defaults)
 * )
 * @category Layers
 * @since 0.1.0
 */
export const leastBusy: Layer.Layer<Selector> = Layer.succeed(Selector, { pick: load.leastBusyPick })

/**
 * Options of {@link usageBased}.
 *
 * - `upstream` (default `true`): also go by the rate-limit headers the upstream last sent
 *   (`x-ratelimit-remaining-*`, `anthropic-ratelimit-*`): they count every client of the key,
 *   not only this process
 * - `upstreamMaxAge` (default `"1 minute"`): a report is used until this long after the
 *   selector first saw it, and never past the reset the upstream announced with it
 *   (`resetRequestsMs`, `resetTokensMs`): an upstream no longer called sends no fresher one,
 *   and its headroom has come back by then
 * - `sample` (default 32): in a group with more candidates than this, a pick reads this many,
 *   in a row from a random position (each candidate is read with the same probability), and
 *   takes the one with the most headroom among them, as Envoy's least-request balancer
 *   samples its hosts. The cost of a pick stays bounded (reading a deployment's usage windows
 *   from memory not in cache costs up to a quarter of a microsecond in the in-memory store),
 *   at the price of sometimes missing the single best deployment of a large group; traffic
 *   still spreads by headroom, since every deployment is in 32 of the group's windows.
 *   `"all"` reads every candidate, whatever the group's size
 *
 * @category Options
 * @since 0.1.0
 */
export interface UsageBasedOptions {
  readonly upstream?: boolean | undefined
  readonly upstreamMaxAge?: DurationInput | undefined
  readonly sample?: number | "all" | undefined
}

/**
 * Usage based: the candidate with the most headroom left against its limits in the current
 * window, as a fraction of the limit, ties at random. A deployment's headroom is the tightest of
 *
 * - rpm: `(rpm - requests in the window - 1) / rpm`
 * - tpm: `(tpm - tokens in the window - this request's tokens) / tpm`, the request's tokens
 *   estimated by `Tokens` (prompt, plus `max_tokens` when set)
 * - the upstream's own last report, while fresh (see {@link UsageBasedOptions}):
 *   `(remaining requests - calls in flight - 1) / request limit` and
 *   `(remaining tokens - this request's tokens) / token limit`, each limit from the report,
 *   else the deployment's `rpm` / `tpm`. The report is global (other processes and apps on the
 *   same key) but a step old (calls in flight are not in it): taking the tighter of it and the
 *   local count covers both
 *
 * Going by fractions fills deployments in proportion to their limits. A deployment with no
 * limit known (no `rpm`, no `tpm`, no report) counts as untouched (headroom 1): it wins over
 * every limited one that has any usage, so set limits on every deployment of a group routed
 * this way. LiteLLM's `usage-based-routing` / `usage-based-routing-v2`. A pick reads each
 * candidate once (at most `sample` of them in a larger group), no sort. Fails with
 * `InvalidConfig` on bad options.
 *
 * @example
 * import { Layer } from "effect"
 * import { Router, Selector } from "effect-llm-router"
 * const RouterLive = Router.layer({
 *   deployments: [
 *     { group: "fast", provider: "openai", model: "gpt-4o-mini", apiKey: "sk-a", rpm: 500, tpm: 200_000 },
 *     { group: "fast", provider: "openai", model: "gpt-4o-mini", apiBase: "https://eu.example.com/v1", apiKey: "sk-b", rpm: 1_000, tpm: 400_000 }
 *   ]
 * }).pipe(
 *   Layer.provide(Selector.usageBased({ upstreamMaxAge: "30 seconds" })),
 *   Layer.provide(Router.defaults)
 * )
 * @category Layers
 * @since 0.1.0
 */
export const usageBased = (options?: UsageBasedOptions): Layer.Layer<Selector, InvalidConfig> =>
  Layer.effect(Selector, Effect.map(load.makeUsageBased(options), (pick) => ({ pick })))

/**
 * Options of {@link lowestCost}.
 *
 * - `outputTokens` (default 256, a typical chat reply): the output tokens assumed for a request
 *   that sets no `max_tokens` / `max_completion_tokens` (one that sets it is costed at it, the
 *   most it can cost)
 * - `unpriced` (default `"last"`): where a deployment the CostMeter has no price for ranks:
 *   after every priced one (its cost is unknown, not zero), or as free (`"free"`: a local model
 *   with no price configured). A deployment priced at 0 is free either way
 *
 * @category Options
 * @since 0.1.0
 */
export interface LowestCostOptions {
  readonly outputTokens?: number | undefined
  readonly unpriced?: "last" | "free" | undefined
}

/**
 * Lowest cost: the candidate cheapest for this request by the `CostMeter`'s prices (a
 * deployment's `pricing`, the meter's `prices`, the built-in table): estimated prompt tokens at
 * the input price plus the expected output tokens (see {@link LowestCostOptions}) at the output
 * price; ties (same prices) at random. Prices are read once per deployment. LiteLLM's
 * `cost-based-routing`. Needs the `CostMeter` (`Router.defaults` has one); fails with
 * `InvalidConfig` on bad options.
 *
 * @example
 * import { Layer } from "effect"
 * import { type Deployment, Router, Selector } from "effect-llm-router"
 * declare const deployments: ReadonlyArray<Deployment.DeploymentConfig>
 * const RouterLive = Router.layer({ deployments }).pipe(
 *   Layer.provide(Selector.lowestCost({ outputTokens: 500 })),
 *   Layer.provideMerge(Router.defaults) // the CostMeter it reads prices from
 * )
 * @category Layers
 * @since 0.1.0
 */
export const lowestCost = (options?: LowestCostOptions): Layer.Layer<Selector, InvalidConfig, CostMeter> =>
  fromEffect(load.makeLowestCost(options).pipe(Effect.map((pick) => ({ pick }))))
