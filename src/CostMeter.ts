/**
 * Cost metering: turns each call's usage into dollars (cached prompt tokens at the cache
 * prices when the pricing has them) from the deployment's pricing, keeps
 * spend per deployment, group and request tag (in {@link RouterState}), and puts the cost on
 * every response's route info.
 *
 * Price lookup, first match wins: the deployment's own `pricing`; the `prices` given to
 * {@link layer} (keyed by upstream model); the built-in table; else 0.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import type { Deployment } from "./Deployment.js"
import type { InvalidConfig } from "./Errors.js"
import * as internal from "./internal/costMeter.js"
import type { Pricing } from "./internal/pricing.js"
import { builtinPrices as builtin } from "./internal/prices.js"
import type { BudgetCharge, BudgetPeriod, RouterState, StoreError } from "./RouterState.js"

/**
 * A price per token, in dollars (LiteLLM's unit), with optional cache read and write prices.
 *
 * @category Models
 * @since 0.1.0
 */
export type { Pricing } from "./internal/pricing.js"

/**
 * Where spend is kept.
 *
 * @category Models
 * @since 0.1.0
 */
export type SpendScope =
  | { readonly deployment: string }
  | { readonly group: string }
  | { readonly tag: string }
  | "total"

/**
 * The usage a cost is computed from (a chat `Usage` or an embedding's). Cached prompt tokens
 * (`prompt_tokens_details.cached_tokens` or `cache_read_input_tokens`) and cache writes
 * (`cache_creation_input_tokens`) are priced at the pricing's cache prices when it has them.
 *
 * @category Models
 * @since 0.1.0
 */
export interface MeteredUsage {
  readonly prompt_tokens: number
  readonly completion_tokens?: number | undefined
  readonly prompt_tokens_details?: { readonly cached_tokens?: number | null | undefined } | null | undefined
  readonly cache_read_input_tokens?: number | undefined
  readonly cache_creation_input_tokens?: number | undefined
}

/**
 * The cost meter's operations.
 *
 * @category Models
 * @since 0.1.0
 */
export interface Service {
  /** The price the meter uses for a deployment, if it knows one. */
  readonly pricing: (deployment: Deployment) => Pricing | undefined
  /** Dollars for a call's usage on a deployment. */
  readonly cost: (deployment: Deployment, usage: MeteredUsage) => number
  /** Adds a call's cost to the deployment's, its group's, each tag's and the total spend. */
  readonly record: (deployment: Deployment, tags: ReadonlyArray<string>, cost: number) => Effect.Effect<void, StoreError>
  /**
   * The spend keys `record` adds a call's cost to, when they are keys of the router's store: the
   * router then adds the cost as the call completes, in the same store step (no round trip of its
   * own). A meter without it is sent `record`.
   */
  readonly spendKeys?: ((deployment: Deployment, tags: ReadonlyArray<string>) => ReadonlyArray<string>) | undefined
  /** Dollars spent so far in a scope. */
  readonly spend: (scope: SpendScope) => Effect.Effect<number, StoreError>
  /** The budgets the meter holds calls to (none: no budget is checked). */
  readonly budgets?: ReadonlyArray<ResolvedBudget> | undefined
  /**
   * The budgets a call on `deployment` with the request's `tags` charges, each with the call's
   * estimated cost (from the request's estimated tokens); `undefined` when none applies.
   */
  readonly charges?: ((deployment: Deployment, tags: ReadonlyArray<string>, estimate: TokenEstimate) => ReadonlyArray<BudgetCharge> | undefined) | undefined
}

/**
 * A request's estimated tokens, as budgets price it: its prompt, and the most it may generate
 * (`max_tokens`; `undefined`: the meter's `assumedOutputTokens`).
 *
 * @category Models
 * @since 0.1.0
 */
export interface TokenEstimate {
  readonly promptTokens: number
  readonly outputTokens: number | undefined
}

/**
 * What a budget covers: a spend scope, or every deployment of a provider (by its name).
 *
 * @category Models
 * @since 0.1.0
 */
export type BudgetScope = SpendScope | { readonly provider: string }

/**
 * A spend limit: at most `limit` dollars per calendar `period` (UTC) in `scope`. `name` (unique;
 * default: the scope and period, `"group:fast per day"`) is what a refusal names.
 *
 * @example
 * import type { CostMeter } from "effect-llm-router"
 * const budgets: ReadonlyArray<CostMeter.Budget> = [
 *   { scope: "total", limit: 100, period: "day" },
 *   { scope: { tag: "team-a" }, limit: 20, period: "month", name: "team A" },
 *   { scope: { provider: "openai" }, limit: 1, period: "minute" }
 * ]
 * @category Models
 * @since 0.1.0
 */
export interface Budget {
  readonly name?: string | undefined
  readonly scope: BudgetScope
  readonly limit: number
  readonly period: BudgetPeriod
}

/**
 * A budget as the meter holds it: named.
 *
 * @category Models
 * @since 0.1.0
 */
export interface ResolvedBudget extends Budget {
  readonly name: string
}

/**
 * The cost meter tag.
 *
 * @example
 * import { Effect } from "effect"
 * import { CostMeter } from "effect-llm-router"
 * const spentByTeam = Effect.flatMap(CostMeter.CostMeter, (meter) => meter.spend({ tag: "team-a" }))
 * @category Tags
 * @since 0.1.0
 */
export class CostMeter extends Context.Tag("effect-llm-router/CostMeter")<CostMeter, Service>() {}

/**
 * Options of the default meter.
 *
 * - `prices`: per upstream model, in our form or LiteLLM's (`input_cost_per_token`, ...);
 *   overrides the built-in table
 * - `budgets`: spend limits per deployment, provider, group, tag or in total, per minute, hour,
 *   day or month (see {@link Budget}). A deployment a budget has no room for is skipped like a
 *   cooling one; when none is left the request fails with `NoDeploymentAvailable`
 *   (`over_budget`, naming the budget, `retryAfter` its reset). A call in flight holds its
 *   estimated cost (prompt tokens and `max_tokens` at the deployment's price) against every
 *   budget it charges until it ends, then its actual cost counts: concurrent calls cannot
 *   overshoot together. A call that costs more than its estimate can pass the limit by the
 *   difference. Budgets are kept in the router's state store (shared when the store is)
 * - `assumedOutputTokens`: the output tokens a request without `max_tokens` is estimated at,
 *   for budgets (default 500)
 *
 * @example
 * import { CostMeter } from "effect-llm-router"
 * const CostLive = CostMeter.layer({ budgets: [{ scope: { group: "smart" }, limit: 50, period: "day" }] })
 * @category Options
 * @since 0.1.0
 */
export interface Options {
  readonly prices?: Readonly<Record<string, unknown>>
  readonly budgets?: ReadonlyArray<Budget> | undefined
  readonly assumedOutputTokens?: number | undefined
}

/**
 * The built-in price table (USD per token, vendors' list prices for common models).
 *
 * @example
 * import { CostMeter } from "effect-llm-router"
 * CostMeter.builtinPrices["gpt-4o-mini"].inputCostPerToken // 1.5e-7
 * @category Constants
 * @since 0.1.0
 */
export const builtinPrices: Readonly<Record<string, Pricing>> = builtin

/**
 * Reads a price table in LiteLLM's `model_prices_and_context_window.json` format, keeping the
 * entries that have both token prices (others, such as image models, are skipped).
 *
 * @example
 * import { CostMeter } from "effect-llm-router"
 * const table = CostMeter.fromLiteLLM({
 *   "my-model": { input_cost_per_token: 0.000001, output_cost_per_token: 0.000002, max_input_tokens: 128000 }
 * })
 * @category Constructors
 * @since 0.1.0
 */
export const fromLiteLLM: (json: unknown) => Either.Either<Record<string, Pricing>, InvalidConfig> = internal.fromLiteLLM

/**
 * Builds the default meter.
 *
 * @example
 * import { CostMeter } from "effect-llm-router"
 * const meter = CostMeter.make({ prices: { "my-model": { inputCostPerToken: 1e-6, outputCostPerToken: 2e-6 } } })
 * @category Constructors
 * @since 0.1.0
 */
export const make: (options?: Options) => Effect.Effect<Service, InvalidConfig, RouterState> = internal.make

/**
 * The default meter as a Layer.
 *
 * @example
 * import { CostMeter } from "effect-llm-router"
 * const CostLive = CostMeter.layer({ prices: { "llama3": { input_cost_per_token: 0, output_cost_per_token: 0 } } })
 * @category Layers
 * @since 0.1.0
 */
export const layer = (options?: Options): Layer.Layer<CostMeter, InvalidConfig, RouterState> =>
  Layer.effect(CostMeter, make(options))

/**
 * Dollars spent in a scope, read from the meter in context.
 *
 * @example
 * import { Effect } from "effect"
 * import { CostMeter } from "effect-llm-router"
 * const program = CostMeter.spend({ group: "fast" }).pipe(Effect.tap((usd) => Effect.log(usd)))
 * @category Accessors
 * @since 0.1.0
 */
export const spend = (scope: SpendScope): Effect.Effect<number, StoreError, CostMeter> =>
  Effect.flatMap(CostMeter, (meter) => meter.spend(scope))
