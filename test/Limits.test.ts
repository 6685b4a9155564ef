/**
 * rpm, tpm and maxConcurrent held in the store's atomic reserve: a deployment at a limit is
 * skipped, a request that finds every deployment at one fails with `over_limits` (which limit,
 * when there is room), or waits for room when it asks to; no limit is ever exceeded under
 * concurrency, and no request is lost.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Either, Fiber, Layer, Stream, TestClock, TestContext } from "effect"
import * as fc from "fast-check"
import { MinuteWindow } from "../src/internal/window.js"
import { Router, Tokens } from "../src/index.js"
import type { Deployment } from "../src/index.js"
import { FakeProvider } from "../src/testing.js"
import { replayArrivals } from "./support/arrivals.js"

const request = (content = "hi", max_tokens?: number) =>
  ({ model: "g", messages: [{ role: "user" as const, content }], ...(max_tokens === undefined ? {} : { max_tokens }) })

const routerOf = (deployments: ReadonlyArray<Deployment.DeploymentConfig>) =>
  Router.layer({ deployments }).pipe(Layer.provideMerge(Router.defaults))

describe("MinuteWindow", () => {
  it("counts every second that overlaps the last minute, and says when room returns", () => {
    const w = new MinuteWindow()
    w.add(500, 1) // second 0
    w.add(30_200, 2) // second 30
    expect(w.sum(30_200)).toBe(3)
    // second 0 overlaps [now - 60 s, now] until 61 s
    expect(w.sum(60_999)).toBe(3)
    expect(w.sum(61_000)).toBe(2)
    const v = new MinuteWindow()
    v.add(500, 1)
    v.add(30_200, 2)
    expect(v.fitsAt(30_200, 1, 3)).toBe(61_000)
    expect(v.fitsAt(30_200, 2, 3)).toBe(91_000)
    expect(v.fitsAt(30_200, 4, 3)).toBeUndefined()
    v.adjust(30_200, -2)
    expect(v.sum(30_300)).toBe(1)
    expect(v.sum(200_000)).toBe(0)
  })

  it("property: the sum is never less than what a strict rolling minute holds", () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 2_000 }), fc.integer({ min: 1, max: 5 })), { maxLength: 200 }), (steps) => {
      const w = new MinuteWindow()
      const events: Array<[number, number]> = []
      let now = 0
      for (const [dt, n] of steps) {
        now += dt * 100
        w.add(now, n)
        events.push([now, n])
        const strict = events.filter(([t]) => t > now - 60_000).reduce((a, [, k]) => a + k, 0)
        const loose = events.filter(([t]) => t > now - 62_000).reduce((a, [, k]) => a + k, 0)
        const sum = w.sum(now)
        if (sum < strict || sum > loose) return false
      }
      return true
    }))
  })
})

describe("limits", () => {
  it.effect("rpm: a deployment at its limit is skipped; when all are, over_limits says rpm and when room returns", () => {
    const fake = FakeProvider.unsafeMake({})
    return Effect.gen(function*() {
      const served: Array<string> = []
      for (let i = 0; i < 5; i++) served.push((yield* Router.chat(request())).route.deploymentId)
      expect(served.filter((id) => id === "a")).toHaveLength(3)
      expect(served.filter((id) => id === "b")).toHaveLength(2)
      yield* TestClock.adjust("10 seconds")
      const refused = yield* Effect.flip(Router.chat(request()))
      expect(refused._tag).toBe("NoDeploymentAvailable")
      if (refused._tag !== "NoDeploymentAvailable") return
      expect(refused.reason).toBe("over_limits")
      expect(refused.limits).toEqual(["rpm"])
      expect(refused.message).toContain("2 at their rpm limit")
      // the calls started in second 0 leave the window at 61 s
      expect(Duration.toMillis(refused.retryAfter!)).toBe(51_000)
      yield* TestClock.adjust("51 seconds")
      expect((yield* Router.chat(request())).route.deploymentId).toBeDefined()
    }).pipe(Effect.provide(routerOf([
      { id: "a", group: "g", provider: fake, model: "m", rpm: 3 },
      { id: "b", group: "g", provider: fake, model: "m", rpm: 2 }
    ])))
  })

  it.effect("tpm: the request's estimated tokens are held until its usage says how many it took", () => {
    // the usage says 10 tokens whatever was asked
    const fake = FakeProvider.unsafeMake({ latency: "1 second", usage: { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 } })
    return Effect.gen(function*() {
      const asked = request("hi", 40)
      const estimate = Tokens.prompt(asked) + 40
      expect(estimate).toBe(47)
      // two fit in 100 at once (94), a third does not while they run
      const running = yield* Effect.forEach([1, 2], () => Effect.fork(Router.chat(asked)))
      yield* TestClock.adjust("10 millis")
      const refused = yield* Effect.flip(Router.chat(asked))
      expect(refused._tag === "NoDeploymentAvailable" && refused.limits).toEqual(["tpm"])
      expect(refused.message).toContain("~47 tokens")
      yield* TestClock.adjust("1 second")
      yield* Effect.forEach(running, Fiber.join)
      // they took 10 each: 80 left, one more of 47 fits, then not a second
      const third = yield* Effect.fork(Router.chat(asked))
      yield* TestClock.adjust("10 millis")
      const fourth = yield* Effect.flip(Router.chat(asked))
      expect(fourth._tag).toBe("NoDeploymentAvailable")
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(third)
      // a request over the limit by itself is never served, and says so
      const huge = yield* Effect.flip(Router.chat(request("hi", 500)))
      expect(huge._tag === "NoDeploymentAvailable" && huge.retryAfter).toBeUndefined()
      expect(huge.message).toContain("none of them will ever have room")
    }).pipe(Effect.provide(routerOf([{ id: "a", group: "g", provider: fake, model: "m", tpm: 100 }])))
  })

  it.effect("waitForCapacity: a request waits for room under rpm, within its bound; beyond it, fails at once", () => {
    const fake = FakeProvider.unsafeMake({})
    return Effect.gen(function*() {
      yield* Router.chat(request())
      const short = yield* Effect.flip(Router.chat(request(), { waitForCapacity: "10 seconds" }))
      expect(short._tag).toBe("NoDeploymentAvailable")
      const waiting = yield* Effect.fork(Router.chat(request(), { waitForCapacity: "2 minutes" }))
      yield* TestClock.adjust("60 seconds")
      expect(waiting.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 second")
      const answer = yield* Fiber.join(waiting)
      expect(answer.route.deploymentId).toBe("a")
      expect(answer.route.overheadMs).toBeGreaterThanOrEqual(0)
    }).pipe(Effect.provide(routerOf([{ id: "a", group: "g", provider: fake, model: "m", rpm: 1 }])))
  })

  it.effect("waitForCapacity: a request waits for a concurrency slot", () => {
    const fake = FakeProvider.unsafeMake({ latency: "1 second" })
    return Effect.gen(function*() {
      const first = yield* Effect.fork(Router.chat(request()))
      yield* TestClock.adjust("10 millis")
      const second = yield* Effect.fork(Router.chat(request(), { waitForCapacity: "5 seconds" }))
      yield* TestClock.adjust("500 millis")
      expect(second.unsafePoll()).toBeNull()
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(first)
      const answer = yield* Fiber.join(second)
      expect(answer.route.deploymentId).toBe("a")
      const calls = yield* fake.calls
      // the second call started only once the first had ended
      expect(calls[1].startedAt).toBeGreaterThanOrEqual(calls[0].endedAt!)
    }).pipe(Effect.provide(routerOf([{ id: "a", group: "g", provider: fake, model: "m", maxConcurrent: 1 }])))
  })

  it.effect("maxConcurrent: a stream holds its slot until it ends, not until its first chunk", () => {
    const fake = FakeProvider.unsafeMake({ stream: { chunks: ["one ", "two ", "three"], chunkDelay: "1 second" } })
    return Effect.gen(function*() {
      const streaming = yield* Effect.fork(Stream.runDrain(Router.stream(request())))
      yield* TestClock.adjust("1500 millis")
      // the first chunk is out, the stream still runs: no slot for another call
      const refused = yield* Effect.flip(Router.chat(request()))
      expect(refused._tag === "NoDeploymentAvailable" && refused.limits).toEqual(["maxConcurrent"])
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(streaming)
      expect((yield* Router.chat(request())).route.deploymentId).toBe("a")
    }).pipe(Effect.provide(routerOf([{ id: "a", group: "g", provider: fake, model: "m", maxConcurrent: 1 }])))
  })

  it.effect("a bad waitForCapacity is refused with the option's path", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Router.chat(request(), { waitForCapacity: "soon" as never }))
      expect(error._tag).toBe("InvalidRequest")
      expect(error.message).toContain("options.waitForCapacity")
    }).pipe(Effect.provide(routerOf([{ id: "a", group: "g", provider: FakeProvider.unsafeMake({}), model: "m" }]))))
})

describe("limits under concurrency (property)", () => {
  it.effect("no rpm, tpm or maxConcurrent limit is ever exceeded, and every request is answered or refused for a limit", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(
          fc.array(fc.record({
            rpm: fc.option(fc.integer({ min: 1, max: 20 }), { nil: undefined }),
            tpm: fc.option(fc.integer({ min: 60, max: 600 }), { nil: undefined }),
            maxConcurrent: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined })
          }), { minLength: 1, maxLength: 3 }),
          fc.array(fc.record({ at: fc.integer({ min: 0, max: 90_000 }), maxTokens: fc.integer({ min: 1, max: 100 }), wait: fc.boolean() }), { minLength: 1, maxLength: 80 }),
          fc.integer({ min: 10, max: 3_000 }),
          (limits, arrivals, latencyMs) =>
            Effect.runPromise(simulate(limits, arrivals, latencyMs).pipe(Effect.provide(TestContext.TestContext)) as Effect.Effect<boolean>)
        ),
        { numRuns: 25 }
      )).pipe(Effect.map((result) => expect(result).toBeUndefined())))
})

const simulate = (
  limits: ReadonlyArray<{ rpm: number | undefined; tpm: number | undefined; maxConcurrent: number | undefined }>,
  arrivals: ReadonlyArray<{ at: number; maxTokens: number; wait: boolean }>,
  latencyMs: number
) => {
  const fake = FakeProvider.unsafeMake({
    latency: Duration.millis(latencyMs),
    // usage as estimated: the tpm window then holds exactly what was sent
    usage: (req) => {
      const total = Tokens.prompt(req) + (Tokens.maxOutput(req) ?? 0)
      return { prompt_tokens: total, completion_tokens: 0, total_tokens: total }
    }
  })
  const deployments = limits.map((l, i) => ({
    id: `d${i}`,
    group: "g",
    provider: fake,
    model: "m",
    ...(l.rpm === undefined ? {} : { rpm: l.rpm }),
    ...(l.tpm === undefined ? {} : { tpm: l.tpm }),
    ...(l.maxConcurrent === undefined ? {} : { maxConcurrent: l.maxConcurrent })
  }))
  return Effect.gen(function*() {
    const results = yield* replayArrivals(
      arrivals,
      (a) => Router.chat(request("x".repeat(a.maxTokens), a.maxTokens), a.wait ? { waitForCapacity: "20 seconds" } : {}),
      "10 minutes"
    )
    // nothing lost: each answered, or refused for a limit
    for (const r of results) {
      if (Either.isLeft(r) && !(r.left._tag === "NoDeploymentAvailable" && r.left.reason === "over_limits")) return false
    }
    const calls = yield* fake.calls
    if (calls.length !== results.filter(Either.isRight).length) return false
    for (const [i, l] of limits.entries()) {
      const mine = calls.filter((c) => c.deploymentId === `d${i}`)
      for (const c of mine) {
        const windowStart = c.startedAt - 60_000
        const inMinute = mine.filter((o) => o.startedAt > windowStart && o.startedAt <= c.startedAt)
        if (l.rpm !== undefined && inMinute.length > l.rpm) return false
        const tokens = inMinute.reduce((sum, o) => sum + Tokens.prompt(o.request as never) + (Tokens.maxOutput(o.request as never) ?? 0), 0)
        if (l.tpm !== undefined && tokens > l.tpm) return false
        const concurrent = mine.filter((o) => o.startedAt <= c.startedAt && (o.endedAt ?? Infinity) > c.startedAt)
        if (l.maxConcurrent !== undefined && concurrent.length > l.maxConcurrent) return false
      }
    }
    return true
  }).pipe(Effect.provide(routerOf(deployments)))
}
