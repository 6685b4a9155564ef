/**
 * The default cost meter behind `CostMeter.make` and `CostMeter.fromLiteLLM`: price lookup, the
 * cost of a usage, and spend keys.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import type { Budget, BudgetScope, Options, ResolvedBudget, Service, SpendScope, TokenEstimate } from "../CostMeter.js"
import type { Deployment } from "../Deployment.js"
import type { InvalidConfig } from "../Errors.js"
import { type BudgetCharge, RouterState } from "../RouterState.js"
import { fromLiteLLMEntry, LiteLLMPriceEntry, type Pricing, PricingInput } from "./pricing.js"
import { builtinPrices } from "./prices.js"
import { decodeConfig, validateConfig } from "./schemas.js"
import { storeOf, viewOf } from "./state.js"

const decodeLiteLLM = decodeConfig(Schema.Record({ key: Schema.String, value: LiteLLMPriceEntry }), "prices")

export const fromLiteLLM = (json: unknown): Either.Either<Record<string, Pricing>, InvalidConfig> =>
  Either.map(decodeLiteLLM(json), (entries) => {
    const table: Record<string, Pricing> = {}
    for (const [model, entry] of Object.entries(entries)) {
      if (entry.input_cost_per_token !== undefined && entry.output_cost_per_token !== undefined) {
        table[model] = fromLiteLLMEntry({ ...entry, input_cost_per_token: entry.input_cost_per_token, output_cost_per_token: entry.output_cost_per_token })
      }
    }
    return table
  })

const NonEmpty = Schema.String.pipe(Schema.minLength(1, { message: () => "expected a non-empty string" }))
const BudgetScope = Schema.Union(
  Schema.Literal("total"),
  Schema.Struct({ deployment: NonEmpty }),
  Schema.Struct({ group: NonEmpty }),
  Schema.Struct({ tag: NonEmpty }),
  Schema.Struct({ provider: NonEmpty })
).annotations({ message: () => "expected \"total\", { deployment }, { group }, { tag } or { provider }" })
const BudgetSchema = Schema.Struct({
  name: Schema.optional(NonEmpty),
  scope: BudgetScope,
  limit: Schema.Number.pipe(Schema.filter((n) => Number.isFinite(n) && n > 0, { message: () => "expected a positive number of dollars" })),
  period: Schema.Literal("minute", "hour", "day", "month")
})

const validate = validateConfig(
  Schema.Struct({
    prices: Schema.optional(Schema.Record({ key: Schema.String, value: PricingInput })),
    budgets: Schema.optional(Schema.Array(BudgetSchema)),
    assumedOutputTokens: Schema.optional(Schema.Number.pipe(Schema.int(), Schema.nonNegative({ message: () => "expected a non-negative integer" })))
  }).pipe(Schema.filter((options) => {
    const names = (options.budgets ?? []).map(nameOf)
    const twice = names.filter((name, i) => names.indexOf(name) !== i)
    return twice.length === 0 || { path: ["budgets"], message: `budget names must be unique: ${[...new Set(twice)].map((n) => JSON.stringify(n)).join(", ")} given twice` }
  })),
  "CostMeter.layer"
)

const scopeKey = (scope: BudgetScope): string =>
  scope !== "total" && "provider" in scope ? `provider:${scope.provider}` : spendKey(scope)

const nameOf = (budget: Budget): string => budget.name ?? `${scopeKey(budget.scope)} per ${budget.period}`

export const spendKey = (scope: SpendScope): string =>
  scope === "total"
    ? "total"
    : "deployment" in scope
    ? `deployment:${scope.deployment}`
    : "group" in scope
    ? `group:${scope.group}`
    : `tag:${scope.tag}`

export const make = (input: Options = {}): Effect.Effect<Service, InvalidConfig, RouterState> =>
  Effect.gen(function*() {
    const options = yield* validate(input)
    const shared = yield* RouterState
    // Written through the router's view of the store, so a failing store loses nothing.
    const state = (yield* viewOf(shared)).store
    const table: Record<string, Pricing> = { ...builtinPrices, ...options.prices }
    const budgets: ReadonlyArray<ResolvedBudget> = (options.budgets ?? []).map((budget) => ({ ...budget, name: nameOf(budget) }))
    const lookup = (model: string): Pricing | undefined => {
      if (Object.prototype.hasOwnProperty.call(table, model)) return table[model]
      // LiteLLM-style "provider/model" names fall back to the bare model.
      const slash = model.lastIndexOf("/")
      return slash >= 0 ? lookup(model.slice(slash + 1)) : undefined
    }
    const cache = new Map<string, Pricing | null>()
    const pricing = (deployment: Deployment): Pricing | undefined => {
      let found = cache.get(deployment.id)
      if (found === undefined) {
        found = deployment.pricing ?? lookup(deployment.model) ?? null
        cache.set(deployment.id, found)
      }
      return found ?? undefined
    }
    // Spend keys are built once per deployment, not per call.
    const keyCache = new Map<string, ReadonlyArray<string>>()
    const keysOf = (deployment: Deployment): ReadonlyArray<string> => {
      let keys = keyCache.get(deployment.id)
      if (keys === undefined) {
        keys = ["total", `deployment:${deployment.id}`, `group:${deployment.group}`]
        keyCache.set(deployment.id, keys)
      }
      return keys
    }
    const spendKeys = (deployment: Deployment, tags: ReadonlyArray<string>): ReadonlyArray<string> => {
      const keys = keysOf(deployment)
      return tags.length === 0 ? keys : [...keys, ...tags.map((t) => `tag:${t}`)]
    }
    const service: Service = {
      pricing,
      cost: (deployment, usage) => {
        const price = pricing(deployment)
        if (price === undefined) return 0
        const cacheRead = usage.prompt_tokens_details?.cached_tokens ?? usage.cache_read_input_tokens ?? 0
        const cacheWrite = usage.cache_creation_input_tokens ?? 0
        const uncached = usage.prompt_tokens - cacheRead - cacheWrite
        return uncached * price.inputCostPerToken +
          cacheRead * (price.cacheReadCostPerToken ?? price.inputCostPerToken) +
          cacheWrite * (price.cacheWriteCostPerToken ?? price.inputCostPerToken) +
          (usage.completion_tokens ?? 0) * price.outputCostPerToken
      },
      record: (deployment, tags, cost) => cost === 0 ? Effect.void : state.addSpend(spendKeys(deployment, tags), cost),
      spendKeys,
      spend: (scope) => state.spend(spendKey(scope))
    }
    if (budgets.length > 0) {
      const assumedOutput = options.assumedOutputTokens ?? 500
      // a deployment's own budgets (all but tags') are found once
      const fixed = new Map<string, ReadonlyArray<ResolvedBudget>>()
      const fixedOf = (d: Deployment): ReadonlyArray<ResolvedBudget> => {
        let found = fixed.get(d.id)
        if (found === undefined) {
          found = budgets.filter(({ scope }) =>
            scope === "total" ||
            ("deployment" in scope && scope.deployment === d.id) ||
            ("group" in scope && scope.group === d.group) ||
            ("provider" in scope && scope.provider === d.provider.name)
          )
          fixed.set(d.id, found)
        }
        return found
      }
      const tagged = budgets.filter(({ scope }) => scope !== "total" && "tag" in scope)
      const charge = (budget: ResolvedBudget, amount: number): BudgetCharge => ({ key: budget.name, limit: budget.limit, period: budget.period, amount })
      Object.assign(service, {
        budgets,
        charges: (d: Deployment, tags: ReadonlyArray<string>, estimate: TokenEstimate) => {
          const own = fixedOf(d)
          const byTag = tags.length === 0 || tagged.length === 0 ? [] : tagged.filter(({ scope }) => tags.includes((scope as { tag: string }).tag))
          if (own.length === 0 && byTag.length === 0) return undefined
          const amount = service.cost(d, { prompt_tokens: estimate.promptTokens, completion_tokens: estimate.outputTokens ?? assumedOutput })
          return [...own, ...byTag].map((budget) => charge(budget, amount))
        }
      })
    }
    storeOf.set(service, shared)
    return service
  })
