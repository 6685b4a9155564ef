/**
 * Leases are always given back or expire: random requests (chat and streams, hedged or raced or
 * not) interrupted at random times leave no slot held and no upstream call running.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Fiber, Layer, Stream, TestClock } from "effect"
import * as fc from "effect/FastCheck"
import { Hedge, Router, RouterState } from "../src/index.js"
import { FakeProvider } from "../src/testing.js"

const Plan = fc.record({
  requests: fc.array(
    fc.record({
      kind: fc.constantFrom("chat" as const, "stream" as const),
      startMs: fc.integer({ min: 0, max: 2_000 }),
      interruptAfterMs: fc.option(fc.integer({ min: 0, max: 3_000 }), { nil: undefined }),
      race: fc.boolean()
    }),
    { minLength: 1, maxLength: 25 }
  ),
  hedged: fc.boolean(),
  seed: fc.integer({ min: 0, max: 1_000 })
})

describe("leases under random interrupts", () => {
  it.effect.prop("every slot is back and no upstream call runs once the requests are over", { plan: Plan }, ({ plan }) => {
    const fake = FakeProvider.unsafeMake({
      latency: { uniform: ["0 millis", "1500 millis"], seed: plan.seed },
      failure: { probability: 0.2, seed: plan.seed, error: 503 },
      stream: { chunks: ["a", "b", "c"], chunkDelay: "200 millis" }
    })
    const base = Router.layer({
      deployments: ["a", "b", "c"].map((id) => ({ id, group: "g", provider: fake, model: "m", maxConcurrent: 4 }))
    })
    const layer = (plan.hedged ? base.pipe(Layer.provide(Hedge.layer({ delay: "300 millis", maxExtraPercent: 100 }))) : base).pipe(
      Layer.provideMerge(Router.defaults)
    )
    return Effect.gen(function*() {
      const body = { model: "g", messages: [{ role: "user" as const, content: "hi" }] }
      const fibers = yield* Effect.forEach(plan.requests, (r) =>
        Effect.fork(Effect.gen(function*() {
          yield* Effect.sleep(r.startMs)
          const options = r.race ? { race: 2 } : undefined
          const run = r.kind === "chat" ? Router.chat(body, options) : Stream.runDrain(Router.stream(body, options))
          const fiber = yield* Effect.fork(Effect.either(run))
          if (r.interruptAfterMs !== undefined) {
            yield* Effect.sleep(r.interruptAfterMs)
            yield* Fiber.interrupt(fiber)
          } else {
            yield* Fiber.await(fiber)
          }
        })))
      yield* TestClock.adjust("1 minute")
      yield* Effect.forEach(fibers, Fiber.join)
      const router = yield* Router.Router
      const state = yield* RouterState.RouterState
      const stats = yield* state.snapshot(router.deployments)
      expect(stats.map((s) => s.inFlight)).toEqual([0, 0, 0])
      expect((yield* fake.calls).filter((c) => c.outcome === "pending")).toEqual([])
      yield* Clock.currentTimeMillis
    }).pipe(Effect.provide(layer))
  }, { fastCheck: { numRuns: 40 } })
})
