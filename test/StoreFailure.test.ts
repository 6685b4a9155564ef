/**
 * The router's policy for a failing state store: it keeps serving from a local view, says so in
 * the route info and the logs, and goes back to the shared store when it answers again. A
 * test store that fails on demand stands in for Redis going down.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Layer, Logger, Stream, TestClock } from "effect"
import { CostMeter, Router, RouterState, Selector } from "../src/index.js"
import { FakeProvider } from "../src/testing.js"

/** A memory store whose every operation fails while `control.down`. */
const flaky = (inner: RouterState.Service, control: { down: boolean; calls: number }): RouterState.Service => {
  const guard = <A, E, R>(operation: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | RouterState.StoreError, R> =>
    Effect.suspend((): Effect.Effect<A, E | RouterState.StoreError, R> => {
      control.calls++
      return control.down ? Effect.fail(new RouterState.StoreError({ operation, message: "connection refused" })) : effect
    })
  return {
    now: guard("now", inner.now),
    snapshot: (ds) => guard("snapshot", inner.snapshot(ds)),
    reserve: (r) => guard("reserve", inner.reserve(r)),
    renew: (l, t) => guard("renew", inner.renew(l, t)),
    complete: (l, o) => guard("complete", inner.complete(l, o)),
    recordRateLimit: (d, i) => guard("recordRateLimit", inner.recordRateLimit(d, i)),
    modifyCooldown: (ds, i, f) => guard("modifyCooldown", inner.modifyCooldown(ds, i, f)),
    modify: (k, init, f) => guard("modify", inner.modify(k, init, f)),
    addSpend: (k, a) => guard("addSpend", inner.addSpend(k, a)),
    spend: (k) => guard("spend", inner.spend(k))
  }
}

describe("a failing store", () => {
  it.effect("requests keep being served from the local view, the route says so, and the shared store is used again once it answers", () => {
    const control = { down: false, calls: 0 }
    const fake = FakeProvider.unsafeMake({ latency: "100 millis" })
    const logs: Array<string> = []
    const logger = Logger.make(({ message }) => {
      logs.push(String(Array.isArray(message) ? message.join(" ") : message))
    })
    return Effect.gen(function*() {
      const shared = yield* RouterState.makeMemory()
      const store = flaky(shared, control)
      const layer = Router.layer({
        deployments: [
          { id: "a", group: "g", provider: fake, model: "gpt-4o-mini", maxConcurrent: 2 },
          { id: "b", group: "g", provider: fake, model: "gpt-4o-mini", maxConcurrent: 2 }
        ]
      }).pipe(Layer.provide(Router.policies), Layer.provide(Layer.succeed(RouterState.RouterState, store)))
      const ask = () => {
        const call = Router.chat({ model: "g", messages: [{ role: "user", content: "hi" }] })
        return Effect.gen(function*() {
          const fiber = yield* Effect.fork(Effect.either(call))
          yield* TestClock.adjust("100 millis")
          return yield* Fiber.join(fiber)
        })
      }
      yield* Effect.gen(function*() {
        const before = yield* ask()
        expect(before._tag === "Right" && before.right.route.storeFailed).toBeUndefined()

        control.down = true
        const during = yield* Effect.forEach(Array.from({ length: 20 }), () => ask())
        // nothing lost: every request answered, each saying the store failed
        expect(during.every((r) => r._tag === "Right" && r.right.route.storeFailed === true)).toBe(true)
        expect(logs.filter((l) => l.includes("serving from the local view"))).toHaveLength(1)
        // limits still hold in the local view: 5 concurrent requests over 2 deployments of 2
        const fibers = yield* Effect.forEach(Array.from({ length: 5 }), () =>
          Effect.fork(Effect.either(Router.chat({ model: "g", messages: [{ role: "user", content: "hi" }] }))))
        yield* TestClock.adjust("100 millis")
        const concurrent = yield* Effect.forEach(fibers, Fiber.join)
        expect(concurrent.filter((r) => r._tag === "Left").map((r) => r._tag === "Left" && r.left._tag)).toEqual(["NoDeploymentAvailable"])

        control.down = false
        yield* TestClock.adjust("5 seconds")
        const after = yield* ask()
        expect(after._tag === "Right" && after.right.route.storeFailed).toBeUndefined()
        expect(logs.filter((l) => l.includes("store is back"))).toHaveLength(1)
        // the shared store has the traffic again
        const callsBefore = control.calls
        yield* ask()
        expect(control.calls).toBeGreaterThan(callsBefore)
        const stats = yield* shared.snapshot((yield* Router.Router).deployments)
        expect(stats.map((s) => s.inFlight)).toEqual([0, 0])
      }).pipe(Effect.provide(layer))
    }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
  })

  it.effect("spend is not lost: what was spent while the store failed is added to it when it is back", () => {
    const control = { down: false, calls: 0 }
    const fake = FakeProvider.unsafeMake({ latency: "100 millis" })
    return Effect.gen(function*() {
      const shared = yield* RouterState.makeMemory()
      const layer = Router.layer({ deployments: [{ id: "a", group: "g", provider: fake, model: "gpt-4o-mini" }] }).pipe(
        Layer.provideMerge(Router.policies),
        Layer.provide(Layer.succeed(RouterState.RouterState, flaky(shared, control)))
      )
      yield* Effect.gen(function*() {
        const meter = yield* CostMeter.CostMeter
        const ask = Effect.gen(function*() {
          const fiber = yield* Effect.fork(Router.chat({ model: "g", messages: [{ role: "user", content: "hi" }] }))
          yield* TestClock.adjust("100 millis")
          return (yield* Fiber.join(fiber)).route.cost
        })
        const before = yield* ask
        expect(before).toBeGreaterThan(0)
        expect(yield* meter.spend("total")).toBeCloseTo(before, 12)

        control.down = true
        const during = (yield* ask) + (yield* ask)
        // read meanwhile: the last shared figure plus this process's spend since
        expect(yield* meter.spend("total")).toBeCloseTo(before + during, 12)
        expect(yield* shared.spend("total")).toBeCloseTo(before, 12)

        control.down = false
        yield* TestClock.adjust("5 seconds")
        const after = yield* ask
        expect(yield* shared.spend("total")).toBeCloseTo(before + during + after, 12)
        expect(yield* shared.spend("deployment:a")).toBeCloseTo(before + during + after, 12)
        expect(yield* meter.spend("total")).toBeCloseTo(before + during + after, 12)
      }).pipe(Effect.provide(layer))
    }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none)))
  })

  it.effect("the breaker keeps working while the store fails: an always-failing deployment is taken out in the local view", () => {
    const control = { down: true, calls: 0 }
    const fake = FakeProvider.unsafeMake({ byDeployment: { a: { failure: 500 } } })
    return Effect.gen(function*() {
      const shared = yield* RouterState.makeMemory()
      const layer = Router.layer({
        deployments: [{ id: "a", group: "g", provider: fake, model: "m" }, { id: "b", group: "g", provider: fake, model: "m" }]
      }).pipe(
        Layer.provide(Layer.merge(Selector.roundRobin, Router.policies)),
        Layer.provide(Layer.succeed(RouterState.RouterState, flaky(shared, control)))
      )
      yield* Effect.gen(function*() {
        let failed = 0
        for (let i = 0; i < 60; i++) {
          const fiber = yield* Effect.fork(Effect.either(Router.chat({ model: "g", messages: [{ role: "user", content: "hi" }] })))
          yield* TestClock.adjust("1 second")
          if ((yield* Fiber.join(fiber))._tag === "Left") failed++
        }
        const callsToA = (yield* fake.calls).filter((c) => c.deploymentId === "a").length
        expect(failed).toBe(0)
        // before: the circuits could not be written, so round robin sent every other request to "a" (30 calls)
        expect(callsToA).toBeLessThan(15)
      }).pipe(Effect.provide(layer))
    }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none)))
  })

  it.effect("a stream started on the shared store finishes while it fails; its lease expires there", () => {
    const control = { down: false, calls: 0 }
    const fake = FakeProvider.unsafeMake({ stream: { chunks: ["one ", "two ", "three ", "four"], chunkDelay: "1 second" } })
    return Effect.gen(function*() {
      const shared = yield* RouterState.makeMemory()
      const layer = Router.layer({ deployments: [{ id: "a", group: "g", provider: fake, model: "m" }] }).pipe(
        Layer.provide(Router.policies),
        Layer.provide(Layer.succeed(RouterState.RouterState, flaky(shared, control)))
      )
      yield* Effect.gen(function*() {
        const fiber = yield* Effect.fork(Stream.runCollect(Router.stream({ model: "g", messages: [{ role: "user", content: "hi" }] })))
        yield* TestClock.adjust("1 second")
        control.down = true
        yield* TestClock.adjust("3 seconds")
        const chunks = yield* Fiber.join(fiber)
        expect(Chunk.toReadonlyArray(chunks).map((c) => c.choices[0]?.delta.content ?? "").join("")).toBe("one two three four")
        const [held] = yield* shared.snapshot((yield* Router.Router).deployments)
        // the completion could not reach the shared store: its slot is held until the lease expires
        expect(held.inFlight).toBe(1)
        yield* TestClock.adjust("11 minutes")
        const [expired] = yield* shared.snapshot((yield* Router.Router).deployments)
        expect(expired.inFlight).toBe(0)
      }).pipe(Effect.provide(layer))
    }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none)))
  })
})
