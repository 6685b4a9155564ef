/**
 * The default cost meter behind `CostMeter.make` and `CostMeter.fromLiteLLM`: price lookup, the
 * cost of a usage, and spend keys.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import type { Options, Service, SpendScope } from "../CostMeter.js"
import type { Deployment } from "../Deployment.js"
import type { InvalidConfig } from "../Errors.js"
import { RouterState } from "../RouterState.js"
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

const validate = validateConfig(
  Schema.Struct({ prices: Schema.optional(Schema.Record({ key: Schema.String, value: PricingInput })) }),
  "CostMeter.layer"
)

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
      record: (deployment, tags, cost) => {
        if (cost === 0) return Effect.void
        const keys = keysOf(deployment)
        return state.addSpend(tags.length === 0 ? keys : [...keys, ...tags.map((t) => `tag:${t}`)], cost)
      },
      spend: (scope) => state.spend(spendKey(scope))
    }
    storeOf.set(service, shared)
    return service
  })
