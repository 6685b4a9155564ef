/**
 * The `Pricing` schema, the price inputs config accepts (ours or LiteLLM's fields), and LiteLLM's
 * entries converted.
 *
 * @internal
 */
import * as Schema from "effect/Schema"
import { NonNegativeNumber } from "./schemas.js"

/** Price per token, in dollars (LiteLLM's unit). */
export const Pricing = Schema.Struct({
  inputCostPerToken: NonNegativeNumber,
  outputCostPerToken: NonNegativeNumber,
  /** Prompt tokens read from the cache; the input price when absent. */
  cacheReadCostPerToken: Schema.optional(NonNegativeNumber),
  /** Prompt tokens written to the cache; the input price when absent. */
  cacheWriteCostPerToken: Schema.optional(NonNegativeNumber)
})
export type Pricing = typeof Pricing.Type

/** One entry of LiteLLM's `model_prices_and_context_window.json`; unknown keys are kept out of the way. */
export const LiteLLMPriceEntry = Schema.Struct({
  input_cost_per_token: Schema.optional(NonNegativeNumber),
  output_cost_per_token: Schema.optional(NonNegativeNumber),
  cache_read_input_token_cost: Schema.optional(NonNegativeNumber),
  cache_creation_input_token_cost: Schema.optional(NonNegativeNumber)
}, Schema.Record({ key: Schema.String, value: Schema.Unknown }))
export type LiteLLMPriceEntry = typeof LiteLLMPriceEntry.Type

/** LiteLLM's price keys to ours. */
export const fromLiteLLMEntry = (entry: {
  readonly input_cost_per_token: number
  readonly output_cost_per_token: number
  readonly cache_read_input_token_cost?: number | undefined
  readonly cache_creation_input_token_cost?: number | undefined
}): Pricing => ({
  inputCostPerToken: entry.input_cost_per_token,
  outputCostPerToken: entry.output_cost_per_token,
  ...(entry.cache_read_input_token_cost === undefined ? {} : { cacheReadCostPerToken: entry.cache_read_input_token_cost }),
  ...(entry.cache_creation_input_token_cost === undefined ? {} : { cacheWriteCostPerToken: entry.cache_creation_input_token_cost })
})

/** Deployment pricing as config accepts it: our camelCase form or LiteLLM's snake_case keys. */
export const PricingInput = Schema.Union(
  Pricing,
  Schema.transform(
    Schema.Struct({
      input_cost_per_token: NonNegativeNumber,
      output_cost_per_token: NonNegativeNumber,
      cache_read_input_token_cost: Schema.optional(NonNegativeNumber),
      cache_creation_input_token_cost: Schema.optional(NonNegativeNumber)
    }),
    Schema.typeSchema(Pricing),
    {
      strict: true,
      decode: (p) => fromLiteLLMEntry(p),
      encode: (p) => ({
        input_cost_per_token: p.inputCostPerToken,
        output_cost_per_token: p.outputCostPerToken,
        ...(p.cacheReadCostPerToken === undefined ? {} : { cache_read_input_token_cost: p.cacheReadCostPerToken }),
        ...(p.cacheWriteCostPerToken === undefined ? {} : { cache_creation_input_token_cost: p.cacheWriteCostPerToken })
      })
    }
  )
).annotations({
  message: () =>
    "expected { inputCostPerToken, outputCostPerToken } or LiteLLM's { input_cost_per_token, output_cost_per_token }, in dollars per token"
})
