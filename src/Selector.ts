/**
 * The selector picks one deployment from the healthy candidates of a group. The router has
 * already removed deployments that are cooling down, at their concurrency limit, lacking the
 * request's tags, or that this request must not go back to (the one a retry just failed on,
 * when others remain).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Deployment } from "./Deployment.js"
import * as internal from "./internal/selector.js"
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
 * // least busy first, ties to the first listed
 * const leastBusy = Selector.make((candidates) =>
 *   Effect.succeed(candidates.reduce((best, c) => (c.stats.inFlight < best.stats.inFlight ? c : best)))
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
