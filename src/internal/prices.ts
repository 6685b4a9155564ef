/**
 * The built-in price table (`CostMeter.builtinPrices`): vendors' list prices of common models.
 *
 * @internal
 */
import type { Pricing } from "./pricing.js"

const perMillion = (input: number, output: number, cacheRead?: number, cacheWrite?: number): Pricing => ({
  inputCostPerToken: input / 1_000_000,
  outputCostPerToken: output / 1_000_000,
  ...(cacheRead === undefined ? {} : { cacheReadCostPerToken: cacheRead / 1_000_000 }),
  ...(cacheWrite === undefined ? {} : { cacheWriteCostPerToken: cacheWrite / 1_000_000 })
})

/**
 * List prices (USD per million tokens, standard tier: input, output, cache read, cache write) of common models, as their vendors
 * published them. Config overrides these; check them against your contract.
 */
export const builtinPrices: Readonly<Record<string, Pricing>> = {
  "gpt-4o": perMillion(2.5, 10, 1.25),
  "gpt-4o-mini": perMillion(0.15, 0.6, 0.075),
  "gpt-4.1": perMillion(2, 8, 0.5),
  "gpt-4.1-mini": perMillion(0.4, 1.6, 0.1),
  "gpt-4.1-nano": perMillion(0.1, 0.4, 0.025),
  "o3-mini": perMillion(1.1, 4.4, 0.55),
  "o4-mini": perMillion(1.1, 4.4, 0.275),
  "gpt-3.5-turbo": perMillion(0.5, 1.5),
  "text-embedding-3-small": perMillion(0.02, 0),
  "text-embedding-3-large": perMillion(0.13, 0),
  "claude-3-5-sonnet-latest": perMillion(3, 15, 0.3, 3.75),
  "claude-3-5-haiku-latest": perMillion(0.8, 4, 0.08, 1),
  "claude-3-7-sonnet-latest": perMillion(3, 15, 0.3, 3.75),
  "claude-sonnet-4-0": perMillion(3, 15, 0.3, 3.75),
  "claude-opus-4-0": perMillion(15, 75, 1.5, 18.75),
  "claude-3-opus-latest": perMillion(15, 75, 1.5, 18.75),
  "claude-3-haiku-20240307": perMillion(0.25, 1.25, 0.03, 0.3)
}
