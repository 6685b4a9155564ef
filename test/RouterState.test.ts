import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Layer, TestClock } from "effect"
import { CostMeter, type Provider, RetrySchedule, Router, RouterState } from "../src/index.js"
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
      // headroom left: the deployment stays in rotation
      expect(after.cooldown.status).toBe("closed")
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
      yield* state.recordOutcome(deployment, 1_000, { result: "success", latencyMs: 100, tokens: 50 })
      yield* state.release(deployment)
      const [now] = yield* state.snapshot([deployment], 1_000)
      expect(now).toMatchObject({ inFlight: 0, requests: 1, tokens: 50, completed: 1, failures: 0, latencyMs: 100 })
      const [later] = yield* state.snapshot([deployment], 61_000)
      expect(later).toMatchObject({ requests: 0, tokens: 0, completed: 0, latencyMs: 100 })
    }))
})

describe("RouterState: a store of your own", () => {
  const alwaysDown = FakeProvider.unsafeMake({ byDeployment: { down: { failure: 503 } } })
  const deployments = [
    { id: "down", group: "g", provider: alwaysDown, model: "gpt-4o-mini" },
    { id: "up", group: "g", provider: alwaysDown, model: "gpt-4o-mini" }
  ]
  const traffic = Effect.gen(function*() {
    for (let i = 0; i < 100; i++) {
      const fiber = yield* Effect.fork(Router.chat({ model: "g", messages: [{ role: "user", content: "hi" }] }))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
    }
  })

  it.effect("under Router.policies, the store in context sees the cooldowns and the spend", () =>
    Effect.gen(function*() {
      const store = yield* RouterState.makeMemory()
      yield* Effect.gen(function*() {
        yield* traffic
        const router = yield* Router.Router
        const [down] = yield* store.snapshot(router.deployments, 100_000)
        // the breaker wrote its circuit to our store, and the router read it: "down" left rotation
        expect(down.cooldown.status).not.toBe("closed")
        expect(yield* store.spend("total")).toBeGreaterThan(0)
        expect(yield* CostMeter.spend("total")).toBe(yield* store.spend("total"))
      }).pipe(
        Effect.provide(
          Router.layer({ deployments }).pipe(
            Layer.provideMerge(Router.policies),
            Layer.provideMerge(Layer.succeed(RouterState.RouterState, store))
          )
        )
      )
      const callsToDown = (yield* alwaysDown.calls).filter((c) => c.deploymentId === "down").length
      // before: 57 of 157 calls went to the always-503 deployment with a swapped store
      expect(callsToDown).toBeLessThan(20)
    }))

  it.effect("Router.defaults with another store before it is refused with a clear InvalidConfig", () =>
    Effect.gen(function*() {
      const store = yield* RouterState.makeMemory()
      const error = yield* Effect.flip(
        Layer.build(
          Router.layer({ deployments }).pipe(
            Layer.provide(Layer.succeed(RouterState.RouterState, store)),
            Layer.provide(Router.defaults)
          )
        ).pipe(Effect.scoped)
      )
      expect(error._tag).toBe("InvalidConfig")
      expect(error.issues.map((i) => i.path)).toEqual(["RouterState", "RouterState"])
      expect(error.message).toContain("Router.policies")
    }))
})
