import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer } from "effect"
import { CostMeter, Deployment, RouterState } from "../src/index.js"
import { FakeProvider } from "../src/testing.js"

const fake = FakeProvider.unsafeMake()
const deployment = (pricing?: unknown, model = "m"): Deployment.Deployment => {
  const result = Deployment.fromConfig([{ group: "g", provider: fake, model, ...(pricing === undefined ? {} : { pricing }) }], {})
  return Either.getOrThrow(result)[0]
}
const MeterLive = CostMeter.layer().pipe(Layer.provide(RouterState.memory()))

describe("CostMeter.cost", () => {
  it.effect("prices cached prompt tokens and cache writes apart when the pricing says so", () =>
    Effect.gen(function*() {
      const meter = yield* CostMeter.CostMeter
      const d = deployment({ inputCostPerToken: 1, outputCostPerToken: 10, cacheReadCostPerToken: 0.1, cacheWriteCostPerToken: 1.25 })
      // 1000 prompt tokens: 600 from the cache, 100 written to it, 300 plain; 50 completion tokens
      const anthropicStyle = { prompt_tokens: 1000, completion_tokens: 50, total_tokens: 1050, cache_read_input_tokens: 600, cache_creation_input_tokens: 100 }
      expect(meter.cost(d, anthropicStyle)).toBeCloseTo(300 * 1 + 600 * 0.1 + 100 * 1.25 + 50 * 10, 9)
      const openAiStyle = { prompt_tokens: 1000, completion_tokens: 50, total_tokens: 1050, prompt_tokens_details: { cached_tokens: 600 } }
      expect(meter.cost(d, openAiStyle)).toBeCloseTo(400 * 1 + 600 * 0.1 + 50 * 10, 9)
    }).pipe(Effect.provide(MeterLive)))

  it.effect("charges cached tokens at the input price when the pricing has no cache price", () =>
    Effect.gen(function*() {
      const meter = yield* CostMeter.CostMeter
      const d = deployment({ input_cost_per_token: 2, output_cost_per_token: 3 })
      expect(meter.cost(d, { prompt_tokens: 10, completion_tokens: 1, cache_read_input_tokens: 4 })).toBe(10 * 2 + 3)
    }).pipe(Effect.provide(MeterLive)))

  it.effect("reads LiteLLM's cache price keys", () =>
    Effect.gen(function*() {
      const meter = yield* CostMeter.CostMeter
      const d = deployment({ input_cost_per_token: 2, output_cost_per_token: 3, cache_read_input_token_cost: 0.5 })
      expect(meter.pricing(d)).toEqual({ inputCostPerToken: 2, outputCostPerToken: 3, cacheReadCostPerToken: 0.5 })
      const table = Either.getOrThrow(CostMeter.fromLiteLLM({
        "claude-x": { input_cost_per_token: 3e-6, output_cost_per_token: 1.5e-5, cache_read_input_token_cost: 3e-7, cache_creation_input_token_cost: 3.75e-6 }
      }))
      expect(table["claude-x"]).toEqual({ inputCostPerToken: 3e-6, outputCostPerToken: 1.5e-5, cacheReadCostPerToken: 3e-7, cacheWriteCostPerToken: 3.75e-6 })
    }).pipe(Effect.provide(MeterLive)))

  it.effect("uses the built-in table's cache prices", () =>
    Effect.gen(function*() {
      const meter = yield* CostMeter.CostMeter
      const d = deployment(undefined, "anthropic/claude-sonnet-4-0")
      expect(meter.cost(d, { prompt_tokens: 1_000_000, completion_tokens: 0, cache_read_input_tokens: 1_000_000 })).toBeCloseTo(0.3, 9)
    }).pipe(Effect.provide(MeterLive)))
})
