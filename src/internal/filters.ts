/**
 * Pre-call filters: what a request asks of a deployment before any selector sees it. Static
 * ones (the request's tags against the deployment's, with the `"default"` rule for untagged
 * requests; its regions; its estimated tokens against the deployment's context window) refuse a
 * deployment in `admit` (as `"untagged"`, the store's count of filtered-out deployments);
 * priority tiers (`order`) narrow the selector's pick to the lowest tier among the admitted
 * candidates.
 *
 * Cheap when nothing applies: a request asks nothing (`ctx.filter` undefined) and its group
 * has no trait (no entry in `engine.traits`), so `filterIn` answers `undefined` with one map
 * lookup and the store keeps its fast path. Explanations are only built for the error, on the
 * failure path.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { Deployment } from "../Deployment.js"
import type { FilteredDeployment, NoDeploymentAvailable, PreCallFilter } from "../Errors.js"
import type { Candidate, NoFit } from "../Selector.js"
import type { RequestContext } from "./request.js"
import { maxOutputTokens, promptTokens } from "./tokens.js"

/**
 * What a group's deployments bring to the filters, computed once when the router is built. A
 * group where none applies has no entry.
 *
 * @internal
 */
export interface GroupTraits {
  /** Some deployment is tagged `"default"`: requests without tags go only to those. */
  readonly defaults: boolean
  /** The smallest `contextWindow` of the group (`undefined`: none has one); a request within it fits everywhere. */
  readonly minWindow: number | undefined
  /** Some deployment sets `order`: picks go to the lowest tier available. */
  readonly tiers: boolean
}

/** @internal */
export const defaultTag = "default"

/**
 * The traits of each group of `pools`, for the groups that have any.
 *
 * @internal
 */
export const traitsOf = (pools: ReadonlyMap<string, ReadonlyArray<Deployment>>): ReadonlyMap<string, GroupTraits> => {
  const traits = new Map<string, GroupTraits>()
  for (const [group, pool] of pools) {
    let defaults = false
    let minWindow: number | undefined
    let tiers = false
    for (const d of pool) {
      if (d.tags.includes(defaultTag)) defaults = true
      if (d.contextWindow !== undefined && (minWindow === undefined || d.contextWindow < minWindow)) minWindow = d.contextWindow
      if (d.order !== undefined) tiers = true
    }
    if (defaults || minWindow !== undefined || tiers) traits.set(group, { defaults, minWindow, tiers })
  }
  return traits
}

/**
 * The request's estimated tokens: its prompt and the most output it allows
 * (`Tokens.prompt`, `Tokens.maxOutput`), counted once per request (the tpm limits share it).
 *
 * @internal
 */
export const tokensOf = (ctx: RequestContext): number =>
  ctx.tokens ??= promptTokens(ctx.request) + (maxOutputTokens(ctx.request) ?? 0)

/**
 * What a request asks of a deployment in one group. A deployment fits when it carries every
 * tag of `all`, one of `any` (when given) and none of `exclude` (when given), is in one of
 * `regions` (when given), and its context window (when it has one) holds `tokens` (when given).
 *
 * @internal
 */
export interface Filter {
  readonly all: ReadonlyArray<string>
  /** `all` is `["default"]` because the request has no tags and its group has default-tagged deployments. */
  readonly defaultOnly: boolean
  readonly any: ReadonlyArray<string> | undefined
  readonly exclude: ReadonlyArray<string> | undefined
  readonly regions: ReadonlyArray<string> | undefined
  /** The request's estimated tokens, when some deployment's context window may not hold them. */
  readonly tokens: number | undefined
}

const noFilter: Filter = { all: [], defaultOnly: false, any: undefined, exclude: undefined, regions: undefined, tokens: undefined }
const onlyDefaults: Filter = { ...noFilter, all: [defaultTag], defaultOnly: true }

/**
 * The filter a request's own asks make, when it makes any (`undefined`: it asks nothing).
 *
 * @internal
 */
export const requestFilter = (
  all: ReadonlyArray<string>,
  any: ReadonlyArray<string> | undefined,
  exclude: ReadonlyArray<string> | undefined,
  regions: ReadonlyArray<string> | undefined
): Filter | undefined => {
  const anyOf = any !== undefined && any.length > 0 ? any : undefined
  const excluded = exclude !== undefined && exclude.length > 0 ? exclude : undefined
  return all.length === 0 && anyOf === undefined && excluded === undefined && regions === undefined
    ? undefined
    : { all, defaultOnly: false, any: anyOf, exclude: excluded, regions, tokens: undefined }
}

/**
 * The request's filter in `group`: its own asks, the `"default"` rule when it has no tags (not
 * for a request pinned to a deployment of the group: the pin names it), and its estimated
 * tokens when they exceed the group's smallest context window. `undefined`: nothing can refuse
 * a deployment (the store's fast path stays open).
 *
 * @internal
 */
export const filterIn = (
  ctx: RequestContext,
  group: string,
  traits: GroupTraits | undefined = ctx.engine.traits.get(group)
): Filter | undefined => {
  const own = ctx.filter
  if (traits === undefined) return own
  let filter = own
  if (traits.defaults && (own === undefined || (own.all.length === 0 && own.any === undefined)) && ctx.options?.deployment?.group !== group) {
    filter = own === undefined ? onlyDefaults : { ...own, all: onlyDefaults.all, defaultOnly: true }
  }
  if (traits.minWindow !== undefined) {
    const tokens = tokensOf(ctx)
    if (tokens > traits.minWindow) filter = { ...(filter ?? noFilter), tokens }
  }
  return filter
}

const carriesAll = (d: Deployment, tags: ReadonlyArray<string>): boolean => {
  for (let i = 0; i < tags.length; i++) if (!d.tags.includes(tags[i])) return false
  return true
}

const carriesAny = (d: Deployment, tags: ReadonlyArray<string>): boolean => {
  for (let i = 0; i < tags.length; i++) if (d.tags.includes(tags[i])) return true
  return false
}

/**
 * Whether `d` passes `filter`.
 *
 * @internal
 */
export const fits = (filter: Filter, d: Deployment): boolean =>
  (filter.all.length === 0 || carriesAll(d, filter.all)) &&
  (filter.any === undefined || carriesAny(d, filter.any)) &&
  (filter.exclude === undefined || !carriesAny(d, filter.exclude)) &&
  (filter.regions === undefined || (d.region !== undefined && filter.regions.includes(d.region))) &&
  (filter.tokens === undefined || d.contextWindow === undefined || filter.tokens <= d.contextWindow)

const listed = (items: ReadonlyArray<string>) => items.join(", ")

/**
 * Why `filter` refuses `d` (`undefined`: it does not). Built on the failure path only.
 *
 * @internal
 */
export const explain = (filter: Filter, d: Deployment): FilteredDeployment | undefined => {
  const filters: Array<PreCallFilter> = []
  const reasons: Array<string> = []
  const missing = filter.all.filter((tag) => !d.tags.includes(tag))
  if (missing.length > 0) {
    filters.push("tags")
    reasons.push(
      filter.defaultOnly
        ? `not tagged "${defaultTag}" (the request has no tags)`
        : `lacks tag${missing.length > 1 ? "s" : ""} ${listed(missing)}`
    )
  }
  if (filter.any !== undefined && !carriesAny(d, filter.any)) {
    if (missing.length === 0) filters.push("tags")
    reasons.push(filter.any.length === 1 ? `lacks tag ${filter.any[0]}` : `carries none of ${listed(filter.any)}`)
  }
  if (filter.exclude !== undefined) {
    const carried = filter.exclude.filter((tag) => d.tags.includes(tag))
    if (carried.length > 0) {
      if (!filters.includes("tags")) filters.push("tags")
      reasons.push(`carries excluded tag${carried.length > 1 ? "s" : ""} ${listed(carried)}`)
    }
  }
  if (filter.regions !== undefined && (d.region === undefined || !filter.regions.includes(d.region))) {
    filters.push("region")
    const asked = filter.regions.length === 1 ? filter.regions[0] : `one of ${listed(filter.regions)}`
    reasons.push(`${d.region === undefined ? "no region" : `region ${d.region}`}, asked ${asked}`)
  }
  const tokens = filter.tokens
  if (tokens !== undefined && d.contextWindow !== undefined && tokens > d.contextWindow) {
    filters.push("context_window")
    reasons.push(`context window ${d.contextWindow} < ${tokens} estimated tokens`)
  }
  return filters.length === 0 ? undefined : { deploymentId: d.id, filters, reason: reasons.join("; ") }
}

/** The most deployments an error message names (its `filtered` has them all). */
const namedInMessage = 20

/**
 * Each deployment of `pool` that `filter` refuses, and why; with the text the error's message
 * gives for them.
 *
 * @internal
 */
export const explainAll = (
  filter: Filter,
  pool: ReadonlyArray<Deployment>
): { readonly filtered: ReadonlyArray<FilteredDeployment>; readonly text: string } => {
  const filtered: Array<FilteredDeployment> = []
  for (const d of pool) {
    const why = explain(filter, d)
    if (why !== undefined) filtered.push(why)
  }
  const named = filtered.slice(0, namedInMessage).map((f) => `${f.deploymentId} (${f.reason})`)
  if (filtered.length > namedInMessage) named.push(`and ${filtered.length - namedInMessage} more`)
  return { filtered, text: named.join(", ") }
}

/**
 * Whether a group that had nothing for the request had nothing because of the request's size:
 * every deployment left out was left out by its context window (the context-window fallbacks
 * then apply, as after the upstream's own `ContextWindowExceeded`).
 *
 * @internal
 */
export const tooLarge = (error: NoDeploymentAvailable): boolean =>
  error.reason === "none_fits" && error.filtered !== undefined && error.filtered.length > 0 &&
  error.filtered.every((f) => f.filters.includes("context_window"))

const tierOf = (d: Deployment): number => d.order ?? Infinity

/**
 * The selector's pick over the lowest tier (`order`) among `candidates`; when it finds nothing
 * there that fits (`NoFit`), over the next tier, and so on. Candidates all of one tier go to the
 * selector as they are.
 *
 * @internal
 */
export const byTier = (
  pick: (candidates: ReadonlyArray<Candidate>) => Effect.Effect<Candidate, NoFit>
) =>
(candidates: ReadonlyArray<Candidate>): Effect.Effect<Candidate, NoFit> => {
  const first = tierOf(candidates[0].deployment)
  let lowest = first
  let mixed = false
  for (let i = 1; i < candidates.length; i++) {
    const tier = tierOf(candidates[i].deployment)
    if (tier !== first) mixed = true
    if (tier < lowest) lowest = tier
  }
  if (!mixed) return pick(candidates)
  const tier: Array<Candidate> = []
  const higher: Array<Candidate> = []
  for (const c of candidates) (tierOf(c.deployment) === lowest ? tier : higher).push(c)
  return Effect.catchTag(
    pick(tier),
    "NoFit",
    (noFit) => Effect.catchTag(byTier(pick)(higher), "NoFit", () => Effect.fail(noFit))
  )
}
