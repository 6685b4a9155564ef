import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Fiber, Layer, Stream, TestClock } from "effect"
import { CostMeter, Deployment, type Provider, RetrySchedule, Router, RouterState } from "../src/index.js"
import { FakeProvider, StoreContract } from "../src/testing.js"

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
      const before = yield* state.snapshot(router.deployments)
      expect(before[0].upstream).toBeUndefined()
      yield* Router.chat({ model: "g", messages: [{ role: "user", content: "hi" }] })
      const [after] = yield* state.snapshot(router.deployments)
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

})

describe("RouterState.makeMemory keeps the store contract", () => {
  for (const check of StoreContract.checks(RouterState.makeMemory())) {
    it.scoped(check.name, () => check.run)
  }
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
        const [down] = yield* store.snapshot(router.deployments)
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

describe("RouterState: latency samples", () => {
  const fake = FakeProvider.unsafeMake()
  const [deployment] = Either.getOrThrow(Deployment.fromConfig([{ id: "d", group: "g", provider: fake, model: "m" }], {}))
  const take: RouterState.Reservation = {
    deployments: [deployment],
    admit: () => "take",
    pick: (candidates) => Effect.succeed(candidates[0]),
    claim: (record) => record,
    ttlMs: 60_000
  }
  const record = (state: RouterState.Service, outcome: RouterState.Outcome) =>
    Effect.flatMap(state.reserve(take), (lease) => state.complete(lease, outcome))

  it.effect("time to first content and whole calls are kept apart; failures count as slow; per output token", () =>
    Effect.gen(function*() {
      const state = yield* RouterState.makeMemory()
      yield* TestClock.adjust("1 second")
      for (let i = 0; i < 10; i++) {
        yield* record(state, { result: "success", kind: "call", latencyMs: 100, outputTokens: 50, tokens: 60 })
        yield* record(state, { result: "success", kind: "stream", latencyMs: 2_000, firstTokenMs: 10, outputTokens: 199, tokens: 210 })
      }
      const [stats] = yield* state.snapshot([deployment])
      expect(stats.latencyMs).toBeCloseTo(100, 6)
      // a stream's time to first content (10 ms), not its whole 2 s (before: 204 ms was recorded for 10 ms)
      expect(stats.firstTokenMs).toBeCloseTo(10, 6)
      // both 2 ms (100 / 50) and 10 ms ((2000 - 10) / 199) per token seen
      expect(stats.perTokenMs).toBeGreaterThan(2)
      expect(stats.perTokenMs).toBeLessThan(10)
      expect(stats.latency.calls.count(1_000)).toBe(10)
      expect(stats.latency.calls.quantile(1_000, 0.95)).toBeCloseTo(100, -1)
      expect(stats.latency.streams.quantile(1_000, 0.5)).toBeCloseTo(10, 0)
      // a fast failure counts as at least twice the average: failing fast does not look fast
      yield* record(state, { result: "failure", kind: "call", latencyMs: 5, tokens: 0 })
      const [after] = yield* state.snapshot([deployment])
      expect(after.latencyMs).toBeGreaterThan(100)
      expect(after.latency.calls.quantile(1_000, 1)).toBeGreaterThanOrEqual(196)
    }))

  it.effect("the mean age of the calls in flight shows a stuck deployment before any call ends", () =>
    Effect.gen(function*() {
      const state = yield* RouterState.makeMemory()
      const first = yield* state.reserve(take)
      yield* TestClock.adjust("10 seconds")
      const second = yield* state.reserve(take)
      yield* TestClock.adjust("10 seconds")
      const [stats] = yield* state.snapshot([deployment])
      expect(stats.inFlight).toBe(2)
      expect(stats.inFlightAgeMs).toBe(15_000)
      yield* state.complete(first, undefined)
      const [one] = yield* state.snapshot([deployment])
      expect(one.inFlightAgeMs).toBe(10_000)
      yield* state.complete(second, undefined)
      expect((yield* state.snapshot([deployment]))[0].inFlightAgeMs).toBe(0)
    }))

  it.effect("through the router: a stream's first content and a timeout's slowness reach the stats", () => {
    const slow = FakeProvider.unsafeMake({ latency: "10 millis", stream: { chunks: 5, chunkDelay: "50 millis" } })
    return Effect.gen(function*() {
      const router = yield* Router.Router
      const state = yield* RouterState.RouterState
      const fiber = yield* Effect.fork(Stream.runDrain(Router.stream({ model: "g", messages: [{ role: "user", content: "hi" }] })))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
      const [stats] = yield* state.snapshot(router.deployments)
      expect(stats.firstTokenMs).toBe(10)
      expect(stats.latencyMs).toBeUndefined()
    }).pipe(Effect.provide(Router.layer({ deployments: [{ id: "a", group: "g", provider: slow, model: "m" }] }).pipe(Layer.provideMerge(Router.defaults))))
  })
})
