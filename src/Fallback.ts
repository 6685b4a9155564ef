/**
 * Fallback: which other groups to try, in order, once a group is exhausted (its retries spent),
 * by the kind of error it ended with (`Errors.classification`): generic, context window or
 * content policy. Errors classed `none` (a bad request) never fall back.
 *
 * Each fallback group is tried at most once per request, with its own retries; a fallback
 * group's own fallbacks are followed up to `maxDepth` hops.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { FallbackKind, InvalidConfig } from "./Errors.js"
import * as internal from "./internal/fallback.js"

/**
 * A fallback policy.
 *
 * @category Models
 * @since 0.1.0
 */
export interface Service {
  /** The groups to try, in order, after `group` failed with an error of `kind`. */
  readonly groupsFor: (group: string, kind: FallbackKind) => ReadonlyArray<string>
  /** Most fallback hops from the requested group. */
  readonly maxDepth: number
  /** Problems with the policy for a router serving `groups` (unknown groups, cycles). */
  readonly check: (groups: ReadonlyArray<string>) => ReadonlyArray<{ readonly path: string; readonly message: string }>
}

/**
 * The fallback policy tag.
 *
 * @example
 * import { Fallback } from "effect-llm-router"
 * const FallbackLive = Fallback.layer({ fallbacks: { fast: ["smart"] } })
 * @category Tags
 * @since 0.1.0
 */
export class Fallback extends Context.Tag("effect-llm-router/Fallback")<Fallback, Service>() {}

/**
 * Options of the default policy. Lists are ordered.
 *
 * - `fallbacks`: per group, for generic failures (and for the other kinds when the group has no
 *   list of that kind, as LiteLLM does)
 * - `contextWindowFallbacks`: per group, when the prompt did not fit (usually larger-context groups)
 * - `contentPolicyFallbacks`: per group, when the upstream refused the content
 * - `defaultFallbacks`: for every group without a list of its own
 * - `maxDepth`: most hops (a fallback's fallback is 2). Default 3.
 *
 * A cycle among the per-group lists is rejected when the router is built.
 *
 * @category Options
 * @since 0.1.0
 */
export interface Options {
  readonly fallbacks?: Readonly<Record<string, ReadonlyArray<string>>>
  readonly contextWindowFallbacks?: Readonly<Record<string, ReadonlyArray<string>>>
  readonly contentPolicyFallbacks?: Readonly<Record<string, ReadonlyArray<string>>>
  readonly defaultFallbacks?: ReadonlyArray<string>
  readonly maxDepth?: number
}

/**
 * Builds the default policy.
 *
 * @example
 * import { Fallback } from "effect-llm-router"
 * const policy = Fallback.make({ fallbacks: { fast: ["smart"] }, maxDepth: 1 })
 * @category Constructors
 * @since 0.1.0
 */
export const make: (options?: Options) => Effect.Effect<Service, InvalidConfig> = internal.make

/**
 * The default policy as a Layer.
 *
 * @example
 * import { Fallback } from "effect-llm-router"
 * const FallbackLive = Fallback.layer({
 *   fallbacks: { fast: ["smart"] },
 *   contextWindowFallbacks: { fast: ["long-context"] },
 *   defaultFallbacks: ["backup"]
 * })
 * @category Layers
 * @since 0.1.0
 */
export const layer = (options?: Options): Layer.Layer<Fallback, InvalidConfig> => Layer.effect(Fallback, make(options))

/**
 * No fallbacks: a request ends with its group.
 *
 * @example
 * import { Fallback } from "effect-llm-router"
 * const FallbackLive = Fallback.none
 * @category Layers
 * @since 0.1.0
 */
export const none: Layer.Layer<Fallback> = Layer.effect(Fallback, Effect.orDie(make({})))
