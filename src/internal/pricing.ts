import * as Schema from "effect/Schema"
import { NonNegativeNumber } from "./schemas.js"

/** Price per token, in dollars (LiteLLM's unit). */
export const Pricing = Schema.Struct({
  inputCostPerToken: NonNegativeNumber,
  outputCostPerToken: NonNegativeNumber
})
export type Pricing = typeof Pricing.Type

/** One entry of LiteLLM's `model_prices_and_context_window.json`; unknown keys are kept out of the way. */
export const LiteLLMPriceEntry = Schema.Struct({
  input_cost_per_token: Schema.optional(NonNegativeNumber),
  output_cost_per_token: Schema.optional(NonNegativeNumber)
}, Schema.Record({ key: Schema.String, value: Schema.Unknown }))
export type LiteLLMPriceEntry = typeof LiteLLMPriceEntry.Type

/** Deployment pricing as config accepts it: our camelCase form or LiteLLM's snake_case keys. */
export const PricingInput = Schema.Union(
  Pricing,
  Schema.transform(
    Schema.Struct({ input_cost_per_token: NonNegativeNumber, output_cost_per_token: NonNegativeNumber }),
    Schema.typeSchema(Pricing),
    {
      strict: true,
      decode: (p) => ({ inputCostPerToken: p.input_cost_per_token, outputCostPerToken: p.output_cost_per_token }),
      encode: (p) => ({ input_cost_per_token: p.inputCostPerToken, output_cost_per_token: p.outputCostPerToken })
    }
  )
).annotations({
  message: () =>
    "expected { inputCostPerToken, outputCostPerToken } or LiteLLM's { input_cost_per_token, output_cost_per_token }, in dollars per token"
})
