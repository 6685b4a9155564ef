/**
 * Hedged requests on TestClock: the first success wins, losers are interrupted and observed as
 * aborted at the provider, recorded as cancelled, with their slots returned; a failure does not
 * cancel the others; the extra load is capped; delays are fixed or a quantile of the group's
 * recent latency; streams hedge until their first content.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Clock, type Duration, Effect, Fiber, Layer, Stream, TestClock } from "effect"
import * as fc from "effect/FastCheck"
import { Hedge, type Provider, RetrySchedule, Router, RouterState, Selector } from "../src/index.js"
import { FakeProvider } from "../src/testing.js"

const messages = [{ role: "user" as const, content: "hi" }]
const body: Provider.ChatRequest = { model: "g", messages }

/** Always picks "a" when it is a candidate: the first attempt goes to "a". */
const preferA = Selector.make((cs) => Effect.succeed(cs.find((c) => c.deployment.id === "a") ?? cs[0]))

const routerOf = (
  fake: FakeProvider.FakeProvider,
  hedge: Layer.Layer<Hedge.Hedge, unknown> | undefined,
  ids: ReadonlyArray<string> = ["a", "b"]
) => {
  const base = Router.layer({ deployments: ids.map((id) => ({ id, group: "g", provider: fake, model: "m" })) }).pipe(
    Layer.provide(preferA),
    Layer.provide(RetrySchedule.layer({ base: 0 }))
  )
  return (hedge === undefined ? base : base.pipe(Layer.provide(hedge))).pipe(Layer.provideMerge(Router.defaults)) as Layer.Layer<
    Router.Router | RouterState.RouterState,
    never
  >
}

const inFlight = Effect.gen(function*() {
  const router = yield* Router.Router
  const state = yield* RouterState.RouterState
  const stats = yield* state.snapshot(router.deployments)
  return stats.map((s) => s.inFlight)
})

const trail = (attempts: ReadonlyArray<Router.Attempt> | undefined) =>
  (attempts ?? []).map((a) => `${a.deploymentId}:${a.outcome}${a.error === undefined ? "" : `:${a.error}`}`)

describe("Hedge: fixed delay", () => {
  it.effect("a stalled attempt gets a hedge on the other deployment after the delay; the winner's answer returns and the loser is aborted", () => {
    const fake = FakeProvider.unsafeMake({ byDeployment: { a: { latency: "20 seconds" }, b: { latency: "100 millis" } } })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Router.chat(body))
      yield* TestClock.adjust("299 millis")
      expect(yield* fake.callCount).toBe(1)
      yield* TestClock.adjust("1 millis")
      expect(yield* fake.callCount).toBe(2)
      yield* TestClock.adjust("100 millis")
      const reply = yield* Fiber.join(fiber)
      expect(reply.route.deploymentId).toBe("b")
      expect(reply.route.latencyMs).toBe(400)
      expect(trail(reply.route.attempts)).toEqual(["b:won", "a:cancelled"])
      // the loser is observed as aborted at the provider, at once, and its slot is back
      const calls = yield* fake.calls
      expect(calls.map((c) => [c.deploymentId, c.outcome, c.endedAt])).toEqual([["a", "interrupted", 400], ["b", "success", 400]])
      expect(yield* inFlight).toEqual([0, 0])
      // a cancelled attempt is not a failure: no cooldown, no failure counted
      const router = yield* Router.Router
      const state = yield* RouterState.RouterState
      const [a] = yield* state.snapshot(router.deployments)
      expect(a.failures).toBe(0)
      expect(a.cooldown.status).toBe("closed")
    }).pipe(Effect.provide(routerOf(fake, Hedge.layer({ delay: "300 millis" }))))
  })

  it.effect("an attempt that answers before the delay is never hedged", () => {
    const fake = FakeProvider.unsafeMake({ latency: "200 millis" })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Router.chat(body))
      yield* TestClock.adjust("1 second")
      const reply = yield* Fiber.join(fiber)
      expect(trail(reply.route.attempts)).toEqual(["a:won"])
      expect(yield* fake.callCount).toBe(1)
    }).pipe(Effect.provide(routerOf(fake, Hedge.layer({ delay: "300 millis" }))))
  })

  it.effect("a failure before the delay is retried at once, as without hedging", () => {
    const fake = FakeProvider.unsafeMake({ byDeployment: { a: { failure: { status: 503, latency: "50 millis" } } } })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Router.chat(body))
      yield* TestClock.adjust("50 millis")
      const reply = yield* Fiber.join(fiber)
      expect(trail(reply.route.attempts)).toEqual(["a:failed:ServerError", "b:won"])
    }).pipe(Effect.provide(routerOf(fake, Hedge.layer({ delay: "300 millis" }))))
  })

  it.effect("a failure of one attempt does not cancel the others: the hedge goes on and wins", () => {
    const fake = FakeProvider.unsafeMake({
      byDeployment: { a: { failure: { status: 503, latency: "500 millis" } }, b: { latency: "400 millis" } }
    })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Router.chat(body))
      yield* TestClock.adjust("700 millis")
      const reply = yield* Fiber.join(fiber)
      expect(reply.route.deploymentId).toBe("b")
      expect(trail(reply.route.attempts)).toEqual(["a:failed:ServerError", "b:won"])
    }).pipe(Effect.provide(routerOf(fake, Hedge.layer({ delay: "300 millis" }))))
  })

  it.effect("maxHedges: 2 runs three attempts at once, on three deployments", () => {
    const fake = FakeProvider.unsafeMake({ byDeployment: { a: { latency: "20 seconds" }, b: { latency: "20 seconds" }, c: { latency: "50 millis" } } })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Router.chat(body))
      yield* TestClock.adjust("650 millis")
      const reply = yield* Fiber.join(fiber)
      expect(reply.route.deploymentId).toBe("c")
      expect((yield* fake.calls).map((c) => [c.deploymentId, c.startedAt])).toEqual([["a", 0], ["b", 300], ["c", 600]])
      expect(reply.route.attempts.filter((x) => x.outcome === "cancelled").map((x) => x.deploymentId).sort()).toEqual(["a", "b"])
    }).pipe(Effect.provide(routerOf(fake, Hedge.layer({ delay: "300 millis", maxHedges: 2 }), ["a", "b", "c"])))
  })

  it.effect("interrupting a hedged request interrupts every attempt and returns every slot", () => {
    const fake = FakeProvider.unsafeMake({ latency: "20 seconds" })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Router.chat(body))
      yield* TestClock.adjust("1 second")
      expect(yield* inFlight).toEqual([1, 1])
      yield* Fiber.interrupt(fiber)
      expect((yield* fake.calls).map((c) => c.outcome)).toEqual(["interrupted", "interrupted"])
      expect(yield* inFlight).toEqual([0, 0])
    }).pipe(Effect.provide(routerOf(fake, Hedge.layer({ delay: "300 millis" }))))
  })

  it.effect("both answering at once: one wins, the other is cancelled and its usage still counted", () => {
    const fake = FakeProvider.unsafeMake({
      byDeployment: { a: { latency: "1 second" }, b: { latency: "700 millis" } },
      usage: { prompt_tokens: 1000, completion_tokens: 0, total_tokens: 1000 }
    })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Router.chat(body))
      yield* TestClock.adjust("1 second")
      const reply = yield* Fiber.join(fiber)
      const outcomes = reply.route.attempts.map((x) => x.outcome).sort()
      expect(outcomes).toEqual(["cancelled", "won"])
      // The loser either was stopped before its answer was read, or answered too: then its
      // answer is dropped but its usage paid (gpt-4o-mini: 1000 prompt tokens are $0.00015).
      const answered = (yield* fake.calls).filter((c) => c.outcome === "success").length
      expect(reply.route.cost).toBeCloseTo(answered * 1000 * 1.5e-7, 12)
    }).pipe(Effect.provide(
      Router.layer({
        deployments: [{ id: "a", group: "g", provider: fake, model: "gpt-4o-mini" }, { id: "b", group: "g", provider: fake, model: "gpt-4o-mini" }]
      }).pipe(Layer.provide(preferA), Layer.provide(Hedge.layer({ delay: "300 millis" })), Layer.provide(Router.defaults))
    ))
  })
})

describe("Hedge: per request", () => {
  it.effect("Effect.provide(Hedge.layer(...)) around one call hedges that call; hedge: false turns a router's hedging off", () => {
    const fake = FakeProvider.unsafeMake({ byDeployment: { a: { latency: "20 seconds" }, b: { latency: "100 millis" } } })
    return Effect.gen(function*() {
      const hedged = yield* Effect.fork(Router.chat(body).pipe(Effect.provide(Hedge.layer({ delay: "300 millis" }))))
      yield* TestClock.adjust("400 millis")
      expect((yield* Fiber.join(hedged)).route.deploymentId).toBe("b")
      const plain = yield* Effect.fork(Router.chat(body))
      yield* TestClock.adjust("20 seconds")
      expect((yield* Fiber.join(plain)).route.deploymentId).toBe("a")
    }).pipe(Effect.provide(routerOf(fake, undefined)))
  })

  it.effect("hedge: false on a hedging router", () => {
    const fake = FakeProvider.unsafeMake({ byDeployment: { a: { latency: "2 seconds" } } })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Router.chat(body, { hedge: false }))
      yield* TestClock.adjust("2 seconds")
      expect(trail((yield* Fiber.join(fiber)).route.attempts)).toEqual(["a:won"])
    }).pipe(Effect.provide(routerOf(fake, Hedge.layer({ delay: "300 millis" }))))
  })
})

describe("Hedge: a request's own hedging (options.hedge)", () => {
  it.effect("{ delay } hedges this request on a router that does not hedge; other requests are not hedged", () => {
    const fake = FakeProvider.unsafeMake({ byDeployment: { a: { latency: "20 seconds" }, b: { latency: "100 millis" } } })
    return Effect.gen(function*() {
      const hedged = yield* Effect.fork(Router.chat(body, { hedge: { delay: "300 millis" } }))
      yield* TestClock.adjust("400 millis")
      const reply = yield* Fiber.join(hedged)
      expect(trail(reply.route.attempts)).toEqual(["b:won", "a:cancelled"])
      expect(reply.route.latencyMs).toBe(400)
      const plain = yield* Effect.fork(Router.chat(body))
      yield* TestClock.adjust("20 seconds")
      expect(trail((yield* Fiber.join(plain)).route.attempts)).toEqual(["a:won"])
    }).pipe(Effect.provide(routerOf(fake, undefined)))
  })

  it.effect("its delay and maxHedges replace the router's; its hedges draw on the router's budget", () => {
    const fake = FakeProvider.unsafeMake({ byDeployment: { a: { latency: "20 seconds" }, b: { latency: "20 seconds" }, c: { latency: "100 millis" } } })
    return Effect.gen(function*() {
      // two hedges at 100 ms intervals, where the router would send one after 10 s
      const first = yield* Effect.fork(Router.chat(body, { hedge: { delay: "100 millis", maxHedges: 2 } }))
      yield* TestClock.adjust("300 millis")
      const reply = yield* Fiber.join(first)
      expect(reply.route.deploymentId).toBe("c")
      expect(reply.route.latencyMs).toBe(300)
      // the budget (a burst of 2) is spent: the next request's hedges are refused
      const second = yield* Effect.fork(Router.chat(body, { hedge: { delay: "100 millis", maxHedges: 2 } }))
      yield* TestClock.adjust("20 seconds")
      expect(trail((yield* Fiber.join(second)).route.attempts)).toEqual(["a:won"])
    }).pipe(Effect.provide(routerOf(fake, Hedge.layer({ delay: "10 seconds", burst: 2, maxExtraPercent: 1 }), ["a", "b", "c"])))
  })

  it.effect("bad hedging options are InvalidRequest naming each, before anything is sent", () => {
    const fake = FakeProvider.unsafeMake({})
    return Effect.gen(function*() {
      const error = yield* Effect.flip(Router.chat(body, { hedge: { delay: "soon" as never, maxHedges: 0 } }))
      expect(error._tag === "InvalidRequest" && error.issues.map((i) => i.path).sort()).toEqual(["options.hedge.delay", "options.hedge.maxHedges"])
      const quantile = yield* Effect.flip(Router.chat(body, { hedge: { delay: { quantile: 1.5 } } }))
      expect(quantile._tag === "InvalidRequest" && quantile.issues.map((i) => i.path)).toEqual(["options.hedge.delay.quantile"])
      const wrongType = yield* Effect.flip(Router.chat(body, { hedge: 3 as never }))
      expect(wrongType._tag === "InvalidRequest" && wrongType.message).toContain("options.hedge")
      expect(yield* fake.callCount).toBe(0)
    }).pipe(Effect.provide(routerOf(fake, undefined)))
  })
})

describe("Hedge: the load cap", () => {
  it.effect.prop(
    "hedges never exceed the burst plus maxExtraPercent of the requests",
    { requests: fc.integer({ min: 1, max: 60 }), percent: fc.integer({ min: 1, max: 50 }), burst: fc.integer({ min: 1, max: 5 }) },
    ({ burst, percent, requests }) => {
      // every call is slow: every request wants a hedge
      const fake = FakeProvider.unsafeMake({ latency: "1 second" })
      return Effect.gen(function*() {
        for (let i = 0; i < requests; i++) {
          const fiber = yield* Effect.fork(Router.chat(body))
          yield* TestClock.adjust("1 second")
          yield* Fiber.join(fiber)
        }
        const hedges = (yield* fake.callCount) - requests
        expect(hedges).toBeLessThanOrEqual(burst + Math.floor((requests * percent) / 100))
        // and the budget is spent, not left unused, when every request wants one
        expect(hedges).toBeGreaterThanOrEqual(Math.min(requests, burst))
      }).pipe(Effect.provide(routerOf(fake, Hedge.layer({ delay: "300 millis", maxExtraPercent: percent, burst }))))
    },
    { fastCheck: { numRuns: 25 } }
  )
})

describe("Hedge: adaptive delay", () => {
  it.effect("after the group's observed p95 (here ~100 ms), not before; the fallback until there are samples", () => {
    // 30 calls between 10 and 100 ms teach the sketch; then "a" stalls
    let stall = false
    const fake = FakeProvider.unsafeMake({
      latency: (i, context) => (stall && context.target.deploymentId === "a" ? "20 seconds" : `${10 + (i % 10) * 10} millis`)
    })
    return Effect.gen(function*() {
      // no samples yet: the fallback (2 s)
      const cold = yield* Effect.fork(Router.chat(body))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(cold)
      for (let i = 0; i < 30; i++) {
        const fiber = yield* Effect.fork(Router.chat(body))
        yield* TestClock.adjust("100 millis")
        yield* Fiber.join(fiber)
      }
      stall = true
      const start = yield* Clock.currentTimeMillis
      const fiber = yield* Effect.fork(Router.chat(body))
      yield* TestClock.adjust("1 second")
      const reply = yield* Fiber.join(fiber)
      expect(reply.route.deploymentId).toBe("b")
      const hedgeStart = (yield* fake.calls).find((c) => c.deploymentId === "b" && c.startedAt >= start)!.startedAt - start
      // the p95 of 10..100 ms samples, within 2%
      expect(hedgeStart).toBeGreaterThanOrEqual(98)
      expect(hedgeStart).toBeLessThanOrEqual(103)
    }).pipe(Effect.provide(routerOf(fake, Hedge.layer({ delay: { quantile: 0.95, minSamples: 20, fallback: "2 seconds" }, maxExtraPercent: 100 }))))
  })

  it.effect("bad options are refused with InvalidConfig naming the path", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Hedge.make({ delay: { quantile: 1.5 }, maxHedges: 0 }))
      expect(error.issues.map((i) => i.path).sort()).toEqual(["Hedge.layer.delay.quantile", "Hedge.layer.maxHedges"])
      const fixed = yield* Effect.flip(Hedge.make({ delay: "soon" as Duration.DurationInput }))
      expect(fixed.issues.map((i) => i.path)).toEqual(["Hedge.layer.delay"])
    }))
})

describe("Hedge: streams", () => {
  it.effect("a stream hedges until its first content; the loser's stream is aborted, the winner's chunks alone arrive", () => {
    const fake = FakeProvider.unsafeMake({
      byDeployment: { a: { latency: "20 seconds" }, b: { latency: "100 millis" } },
      stream: { chunks: ["one ", "two"], chunkDelay: "10 millis" }
    })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Stream.runCollect(Router.stream(body)))
      yield* TestClock.adjust("1 second")
      const chunks = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
      expect(chunks.map((c) => c.choices[0]?.delta.content ?? "").join("")).toBe("one two")
      const route = chunks.at(-1)!.route!
      expect(route.deploymentId).toBe("b")
      expect(trail(route.attempts)).toEqual(["a:cancelled", "b:won"])
      expect((yield* fake.calls).map((c) => [c.deploymentId, c.outcome])).toEqual([["a", "interrupted"], ["b", "success"]])
      expect(yield* inFlight).toEqual([0, 0])
    }).pipe(Effect.provide(routerOf(fake, Hedge.layer({ delay: "300 millis" }))))
  })
})

describe("Hedge: no fiber outlives its request", () => {
  it.effect("after a hedged request returns, every attempt has ended (none pending)", () => {
    const fake = FakeProvider.unsafeMake({ byDeployment: { a: { latency: "20 seconds" }, b: { latency: "20 seconds" }, c: { latency: "10 millis" } } })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Router.chat(body))
      yield* TestClock.adjust("700 millis")
      yield* Fiber.join(fiber)
      // checked at the instant it returned: nothing still runs
      expect((yield* fake.calls).filter((c) => c.outcome === "pending")).toEqual([])
    }).pipe(Effect.provide(routerOf(fake, Hedge.layer({ delay: "300 millis", maxHedges: 2 }), ["a", "b", "c"])))
  })
})




describe("Race", () => {
  const racing = (fake: FakeProvider.FakeProvider) =>
    Router.layer({
      deployments: [
        { id: "a", group: "g", provider: fake, model: "m" },
        { id: "b", group: "g", provider: fake, model: "m" },
        { id: "s", group: "smart", provider: fake, model: "m" }
      ]
    }).pipe(Layer.provide(preferA), Layer.provide(RetrySchedule.layer({ base: 0 })), Layer.provideMerge(Router.defaults))

  it.effect("race: 2 sends the first attempt to two deployments at once; the faster wins, the other is aborted", () => {
    const fake = FakeProvider.unsafeMake({ byDeployment: { a: { latency: "900 millis" }, b: { latency: "200 millis" } } })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Router.chat(body, { race: 2 }))
      yield* TestClock.adjust("200 millis")
      const reply = yield* Fiber.join(fiber)
      expect(reply.route.deploymentId).toBe("b")
      expect((yield* fake.calls).map((c) => [c.deploymentId, c.startedAt, c.outcome])).toEqual([
        ["a", 0, "interrupted"],
        ["b", 0, "success"]
      ])
      expect(yield* inFlight).toEqual([0, 0, 0])
    }).pipe(Effect.provide(racing(fake)))
  })

  it.effect("race: [groups] sends it to the requested group and the others at once (fastest response)", () => {
    const fake = FakeProvider.unsafeMake({ byDeployment: { a: { latency: "2 seconds" }, s: { latency: "300 millis" } } })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Router.chat(body, { race: ["smart"] }))
      yield* TestClock.adjust("300 millis")
      const reply = yield* Fiber.join(fiber)
      expect(reply.route.group).toBe("smart")
      expect(reply.route.requestedGroup).toBe("g")
      expect(trail(reply.route.attempts)).toEqual(["s:won", "a:cancelled"])
    }).pipe(Effect.provide(racing(fake)))
  })

  it.effect("when every racer fails, the requested group's retries go on", () => {
    const fake = FakeProvider.unsafeMake({ byDeployment: { a: { failure: { first: 1, error: 503 } }, s: { failure: 503 } } })
    return Effect.gen(function*() {
      const reply = yield* Router.chat(body, { race: ["smart"] })
      expect(reply.route.group).toBe("g")
      const outcomes = reply.route.attempts.map((x) => `${x.deploymentId}:${x.outcome}`)
      expect(outcomes.slice(0, 2).sort()).toEqual(["a:failed", "s:failed"])
      expect(outcomes.at(-1)).toMatch(/^[ab]:won$/)
    }).pipe(Effect.provide(racing(fake)))
  })

  it.effect("bad race options are InvalidRequest", () => {
    const fake = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      const one = yield* Effect.flip(Router.chat(body, { race: 1 }))
      expect(one._tag === "InvalidRequest" && one.issues.map((i) => i.path)).toEqual(["options.race"])
      const unknown = yield* Effect.flip(Router.chat(body, { race: ["atlantis"] }))
      expect(unknown._tag === "InvalidRequest" && unknown.issues.map((i) => i.path)).toEqual(["options.race[0]"])
      expect(yield* fake.callCount).toBe(0)
    }).pipe(Effect.provide(racing(fake)))
  })

  it.effect("streams race until their first content", () => {
    const fake = FakeProvider.unsafeMake({
      byDeployment: { a: { latency: "900 millis" }, b: { latency: "100 millis" } },
      stream: { chunks: ["x", "y"] }
    })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Stream.runCollect(Router.stream(body, { race: 2 })))
      yield* TestClock.adjust("100 millis")
      const chunks = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
      expect(chunks.at(-1)?.route?.deploymentId).toBe("b")
      expect((yield* fake.calls).map((c) => c.outcome)).toEqual(["interrupted", "success"])
    }).pipe(Effect.provide(racing(fake)))
  })
})
