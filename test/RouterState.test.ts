import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { type Provider, RetrySchedule, Router, RouterState } from "../src/index.js"
import { FakeProvider } from "../src/testing.js"

describe("RouterState", () => {
  it.effect("keeps the rate-limit headroom a provider reports through its target", () => {
    const fake = FakeProvider.unsafeMake()
    // A provider that reports rate-limit headers, as the HTTP providers do on every response.
    const reporting: Provider.Provider = {
      ...fake,
      chat: (request, target) =>
        Effect.zipRight(
          target.reportRateLimit?.({ remainingRequests: 7, remainingTokens: 900, limitRequests: 10, limitTokens: 1000 }) ?? Effect.void,
          fake.chat(request, target)
        )
    }
    return Effect.gen(function*() {
      const router = yield* Router.Router
      const state = yield* RouterState.RouterState
      const before = yield* state.snapshot(router.deployments, 0)
      expect(before[0].upstream).toBeUndefined()
      yield* Router.chat({ model: "g", messages: [{ role: "user", content: "hi" }] })
      const [after] = yield* state.snapshot(router.deployments, 0)
      expect(after.upstream).toEqual({ remainingRequests: 7, remainingTokens: 900, limitRequests: 10, limitTokens: 1000 })
      expect(after.inFlight).toBe(0)
    }).pipe(
      Effect.provide(
        Router.layer({ deployments: [{ id: "a", group: "g", provider: reporting, model: "m" }] }).pipe(
          Layer.provide(RetrySchedule.none),
          Layer.provideMerge(Router.defaults)
        )
      )
    )
  })

  it.effect("bounds its window: usage older than the window is forgotten", () =>
    Effect.gen(function*() {
      const state = yield* RouterState.makeMemory({ window: "1 minute" })
      const fake = FakeProvider.unsafeMake()
      const deployment = {
        id: "d", index: 0, group: "g", provider: fake, model: "m", apiBase: undefined, apiKey: undefined,
        weight: undefined, rpm: undefined, tpm: undefined, maxConcurrent: 1, tags: [], pricing: undefined,
        contextWindow: undefined, timeout: undefined,
        target: FakeProvider.target("d")
      }
      expect(yield* state.acquire(deployment, 0)).toBe(true)
      expect(yield* state.acquire(deployment, 0)).toBe(false) // maxConcurrent 1
      yield* state.recordOutcome(deployment, 1_000, { success: true, latencyMs: 100, tokens: 50 })
      yield* state.release(deployment)
      const [now] = yield* state.snapshot([deployment], 1_000)
      expect(now).toMatchObject({ inFlight: 0, requests: 1, tokens: 50, completed: 1, failures: 0, latencyMs: 100 })
      const [later] = yield* state.snapshot([deployment], 61_000)
      expect(later).toMatchObject({ requests: 0, tokens: 0, completed: 0, latencyMs: 100 })
    }))
})
