/**
 * The latency-aware selectors: `Selector.lowestLatency` and `Selector.peakEwma`. Unit checks on
 * scripted stats (what a pick sees, at TestClock times), then whole routers over fake providers
 * on TestClock: slow deployments get less traffic, near-equals share it, unseen deployments are
 * explored, a stuck deployment with calls in flight is avoided, estimates decay; bad options
 * are refused with `InvalidConfig` naming the field.
 */
import { describe, expect, it } from "@effect/vitest"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as TestClock from "effect/TestClock"
import * as TestContext from "effect/TestContext"
import * as fc from "fast-check"
import { Deployment, type Errors, type Provider, RetrySchedule, Router, type RouterState, Selector } from "../src/index.js"
import { FakeProvider } from "../src/testing.js"
import { pickCounts } from "./support/picks.js"

// -------------------------------------------------------------------------------------------
// Scripted stats
// -------------------------------------------------------------------------------------------

/** A deployment's stats, as fields a test changes between picks. */
interface Script {
  inFlight: number
  inFlightAgeMs: number
  latencyMs: number | undefined
  firstTokenMs: number | undefined
  perTokenMs: number | undefined
  /** Samples in the state's window (calls and streams alike). */
  samples: number
  /** Their median (default: the average). */
  recentMs: number | undefined
  consecutiveFailures: number
}

const script = (latencyMs: number | undefined, more: Partial<Script> = {}): Script => ({
  inFlight: 0,
  inFlightAgeMs: 0,
  latencyMs,
  firstTokenMs: undefined,
  perTokenMs: undefined,
  samples: latencyMs === undefined ? 0 : 100,
  recentMs: undefined,
  consecutiveFailures: 0,
  ...more
})

/** A live view of a script, as the store hands it (read at the pick). */
const view = (s: Script): RouterState.DeploymentStats => {
  const quantiles = (ms: () => number | undefined): RouterState.LatencyQuantiles => ({
    count: () => s.samples,
    quantile: () => (s.samples > 0 ? ms() : undefined)
  })
  const calls = quantiles(() => s.recentMs ?? s.latencyMs)
  const streams = quantiles(() => s.recentMs ?? s.firstTokenMs)
  return {
    get inFlight() {
      return s.inFlight
    },
    get inFlightAgeMs() {
      return s.inFlightAgeMs
    },
    get latencyMs() {
      return s.latencyMs
    },
    get firstTokenMs() {
      return s.firstTokenMs
    },
    get perTokenMs() {
      return s.perTokenMs
    },
    latency: { calls, streams },
    requests: 0,
    tokens: 0,
    completed: 0,
    failures: 0,
    get consecutiveFailures() {
      return s.consecutiveFailures
    },
    cooldown: { status: "closed", until: 0, ejections: 0, reason: "failures" },
    upstream: undefined
  }
}

const fake = FakeProvider.unsafeMake()

/** Candidates d0, d1, ... over the scripts, as one frozen array (as the memory store hands them). */
const candidatesOf = (scripts: ReadonlyArray<Script>): ReadonlyArray<Selector.Candidate> => {
  const result = Deployment.fromConfig(scripts.map((_, i) => ({ id: `d${i}`, group: "g", provider: fake, model: `m${i}` })), {})
  if (Either.isLeft(result)) throw new Error(result.left.message)
  return Object.freeze(result.right.map((deployment, i) => Object.freeze({ deployment, stats: view(scripts[i]) })))
}

const selection = (kind: "chat" | "stream" | "embed" = "chat", attempt = 0): Selector.SelectionRequest =>
  kind === "embed"
    ? { kind, group: "g", request: { model: "g", input: "hi" }, attempt }
    : { kind, group: "g", request: { model: "g", messages: [{ role: "user", content: "hi" }] }, attempt }

/** `n` picks by the selector in context, as counts by candidate index. */
const counts = (cs: ReadonlyArray<Selector.Candidate>, n: number, request = selection()) => pickCounts(cs, n, request)

const seeded = <A, E, R>(effect: Effect.Effect<A, E, R>, seed = 7) => Effect.withRandom(effect, Random.make(seed))

// -------------------------------------------------------------------------------------------
// lowestLatency on scripted stats
// -------------------------------------------------------------------------------------------

describe("Selector.lowestLatency (scripted stats)", () => {
  it.effect("takes the fastest; near-equals within the buffer share the traffic", () =>
    Effect.gen(function*() {
      // 100 and 105 are within 10% of each other; 300 is not
      const cs = candidatesOf([script(100), script(300), script(105)])
      const c = yield* counts(cs, 2_000)
      expect(c[1]).toBe(0)
      expect(c[0] / 2_000).toBeGreaterThan(0.45)
      expect(c[2] / 2_000).toBeGreaterThan(0.45)
    }).pipe(Effect.provide(Selector.lowestLatency()), seeded))

  it.effect("a wider buffer spreads further; buffer 0 takes the fastest only", () =>
    Effect.gen(function*() {
      const cs = candidatesOf([script(100), script(140), script(105)])
      const wide = yield* counts(cs, 3_000).pipe(Effect.provide(Selector.lowestLatency({ buffer: 0.5 })))
      for (const x of wide) expect(x / 3_000).toBeGreaterThan(0.28)
      const none = yield* counts(cs, 1_000).pipe(Effect.provide(Selector.lowestLatency({ buffer: 0 })))
      expect(none).toEqual([1_000, 0, 0])
    }).pipe(seeded))

  it.effect("streams compare time to first content, chat the whole call", () =>
    Effect.gen(function*() {
      const cs = candidatesOf([
        script(1_000, { firstTokenMs: 300 }),
        script(500, { firstTokenMs: 900 })
      ])
      expect(yield* counts(cs, 200, selection("stream"))).toEqual([200, 0])
      expect(yield* counts(cs, 200, selection("chat"))).toEqual([0, 200])
      expect(yield* counts(cs, 200, selection("embed"))).toEqual([0, 200])
    }).pipe(Effect.provide(Selector.lowestLatency()), seeded))

  it.effect("chat compares time per output token when every candidate knows it", () =>
    Effect.gen(function*() {
      // d0 wrote long answers (1000 ms for 100 tokens: 10 ms/token), d1 short ones (400 ms for
      // 20 tokens: 20 ms/token): per token, d0 is the faster
      const cs = candidatesOf([script(1_000, { perTokenMs: 10 }), script(400, { perTokenMs: 20 })])
      expect(yield* counts(cs, 200)).toEqual([200, 0])
      const byTime = yield* counts(cs, 200).pipe(Effect.provide(Selector.lowestLatency({ perOutputToken: false })))
      expect(byTime).toEqual([0, 200])
      // one candidate without a per-token time: back to time for all
      const mixed = candidatesOf([script(1_000, { perTokenMs: 10 }), script(400)])
      expect(yield* counts(mixed, 200)).toEqual([0, 200])
    }).pipe(Effect.provide(Selector.lowestLatency()), seeded))

  it.effect("a deployment never seen is explored while nothing is in flight on it, then waits for its first answer", () =>
    Effect.gen(function*() {
      const fresh = script(undefined)
      const cs = candidatesOf([script(100), script(300), fresh])
      const c = yield* counts(cs, 2_000)
      expect(c[1]).toBe(0)
      expect(c[2] / 2_000).toBeGreaterThan(0.4) // as good as the best
      fresh.inFlight = 1
      fresh.inFlightAgeMs = 50
      expect(yield* counts(cs, 500)).toEqual([500, 0, 0])
    }).pipe(Effect.provide(Selector.lowestLatency()), seeded))

  it.effect("when no candidate was ever seen: at random among those with nothing in flight", () =>
    Effect.gen(function*() {
      const busy = script(undefined, { inFlight: 2 })
      const cs = candidatesOf([script(undefined), busy, script(undefined)])
      const c = yield* counts(cs, 2_000)
      expect(c[1]).toBe(0)
      expect(Math.min(c[0], c[2]) / 2_000).toBeGreaterThan(0.45)
    }).pipe(Effect.provide(Selector.lowestLatency()), seeded))

  it.effect("a stuck deployment (calls in flight far older than its usual call) looks slow before they end", () =>
    Effect.gen(function*() {
      const stuck = script(100, { inFlight: 3, inFlightAgeMs: 90 })
      const cs = candidatesOf([stuck, script(130)])
      // calls in flight for 90 ms on average: under one usual call, still the fastest
      expect(yield* counts(cs, 100)).toEqual([100, 0])
      stuck.inFlightAgeMs = 200 // twice its usual call: looks like 200 ms
      expect(yield* counts(cs, 100)).toEqual([0, 100])
      // with stuckAfter 2, 200 ms is just 1 x (2 usual calls): still the fastest
      expect(yield* counts(cs, 100).pipe(Effect.provide(Selector.lowestLatency({ stuckAfter: 2 })))).toEqual([100, 0])
    }).pipe(Effect.provide(Selector.lowestLatency()), seeded))

  it.effect("failures in a row count as slow", () =>
    Effect.gen(function*() {
      const failing = script(100, { consecutiveFailures: 1 })
      const cs = candidatesOf([failing, script(150)])
      expect(yield* counts(cs, 100)).toEqual([0, 100])
      failing.consecutiveFailures = 0
      expect(yield* counts(cs, 100)).toEqual([100, 0])
    }).pipe(Effect.provide(Selector.lowestLatency()), seeded))

  it.effect("a deployment without news for `exploreAfter` gets one probe, on a first attempt only", () =>
    Effect.gen(function*() {
      const cs = candidatesOf([script(100), script(500)])
      expect(yield* counts(cs, 100)).toEqual([100, 0])
      yield* TestClock.adjust("29 seconds")
      expect(yield* counts(cs, 100)).toEqual([100, 0])
      yield* TestClock.adjust("1 second")
      // retries never probe
      expect(yield* counts(cs, 50, selection("chat", 1))).toEqual([50, 0])
      // the next first attempt does, once
      expect(yield* counts(cs, 100)).toEqual([99, 1])
      yield* TestClock.adjust("29 seconds")
      expect(yield* counts(cs, 100)).toEqual([100, 0])
      yield* TestClock.adjust("1 second")
      expect(yield* counts(cs, 100)).toEqual([99, 1])
    }).pipe(Effect.provide(Selector.lowestLatency()), seeded))

  it.effect("an estimate without news decays toward the prior (the candidates' median)", () =>
    Effect.gen(function*() {
      // exploration off, to see the decay alone
      const cs = candidatesOf([script(100), script(100), script(300)])
      expect((yield* counts(cs, 300))[2]).toBe(0)
      // 300 decays toward the median 100 with time constant 1 minute: within 10% (110) after
      // 60 * ln(200 / 10) = 180 s; d0 and d1 had news meanwhile (a sample each)
      yield* TestClock.adjust("170 seconds")
      const scripts = cs.map((c) => c.stats)
      void scripts
      const again = yield* counts(cs, 300)
      expect(again[2]).toBe(0)
      yield* TestClock.adjust("20 seconds")
      // picked once: the pick is news, its estimate is back to 300 until it decays again
      const after = yield* counts(cs, 300)
      expect(after[2]).toBe(1)
    }).pipe(Effect.provide(Selector.lowestLatency({ exploreAfter: "1 hour" })), seeded))

  it.effect("a deployment back from a quiet spell is judged by its samples since, not its old average", () =>
    Effect.gen(function*() {
      const busy = script(300)
      const recovering = script(3_000, { samples: 50 })
      const cs = candidatesOf([busy, recovering])
      const news = () => void busy.samples++
      expect((yield* counts(cs, 100))[1]).toBe(0)
      // 30 s without news (busy has some every second): the probe
      for (let t = 1; t <= 31; t++) {
        yield* TestClock.adjust("1 second")
        news()
        expect((yield* counts(cs, 1))[1]).toBe(t === 30 ? 1 : 0)
      }
      // its answer, fast: the engine's average barely moves (0.8 x 3000 + 0.2 x 250), while the
      // state's window, its old samples gone, holds just that one
      yield* TestClock.adjust("1 second")
      recovering.latencyMs = 2_450
      recovering.recentMs = 250
      recovering.samples = 1
      news()
      expect(yield* counts(cs, 100)).toEqual([0, 100])
    }).pipe(Effect.provide(Selector.lowestLatency()), seeded))

  it.effect("...but not while the window still holds samples from before the quiet spell", () =>
    Effect.gen(function*() {
      const busy = script(300)
      const slow = script(3_000, { samples: 50 })
      const cs = candidatesOf([busy, slow])
      for (let i = 0; i < 31; i++) {
        yield* TestClock.adjust("1 second")
        busy.samples++
        yield* counts(cs, 1)
      }
      yield* TestClock.adjust("1 second")
      // one new sample (fast), but the window still holds the 50 slow ones: its median says slow
      slow.latencyMs = 2_450
      slow.recentMs = 3_000
      slow.samples = 51
      busy.samples++
      expect(yield* counts(cs, 100)).toEqual([100, 0])
    }).pipe(Effect.provide(Selector.lowestLatency()), seeded))

  it.effect("a large group (evaluated in full at most every 100 ms): the same choices, and a drawn candidate that got slow is not taken", () =>
    Effect.gen(function*() {
      // 200 candidates: d7 and d120 the fastest (100 and 105 ms), the others 200 ms and more
      const scripts = Array.from({ length: 200 }, (_, i) => script(i === 7 ? 100 : i === 120 ? 105 : 200 + i))
      const cs = candidatesOf(scripts)
      const c = yield* counts(cs, 2_000)
      expect(c[7] + c[120]).toBe(2_000)
      expect(Math.min(c[7], c[120])).toBeGreaterThan(800)
      // d7 gets stuck: its calls in flight for 400 ms look like 400 ms, at once (no wait for
      // the next full evaluation)
      scripts[7].inFlight = 2
      scripts[7].inFlightAgeMs = 400
      expect((yield* counts(cs, 500))[120]).toBe(500)
      // a never-seen deployment is drawn at most once while its first call is out
      yield* TestClock.adjust("1 second")
      scripts[7].inFlight = 0
      scripts[50].latencyMs = undefined
      scripts[50].samples = 0
      const selector = yield* Selector.Selector
      let fresh = 0
      for (let i = 0; i < 300; i++) {
        const picked = yield* selector.pick(cs, selection())
        if (picked === cs[50]) {
          fresh++
          scripts[50].inFlight = 1
        }
      }
      expect(fresh).toBe(1)
    }).pipe(Effect.provide(Selector.lowestLatency()), seeded))

  it("property: the pick is a candidate within the buffer of the fastest, the candidates untouched", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 100_000 }), { minLength: 1, maxLength: 100 }),
        fc.double({ min: 0, max: 2, noNaN: true }),
        fc.integer(),
        (latencies, buffer, seed) => {
          const cs = candidatesOf(latencies.map((ms) => script(ms)))
          const picks = Effect.runSync(
            Effect.gen(function*() {
              const selector = yield* Selector.Selector
              const out: Array<Selector.Candidate> = []
              for (let i = 0; i < 20; i++) out.push(yield* selector.pick(cs, selection()))
              return out
            }).pipe(
              Effect.provide(Selector.lowestLatency({ buffer })),
              Effect.withRandom(Random.make(seed)),
              // on a TestClock: the selector's time-based memory must not move between picks
              Effect.provide(TestContext.TestContext)
            )
          )
          const best = Math.min(...latencies)
          for (const picked of picks) {
            expect(cs).toContain(picked)
            expect(picked.stats.latencyMs!).toBeLessThanOrEqual(best * (1 + buffer) * (1 + 1e-12))
          }
        }
      ),
      { numRuns: 300 }
    )
  })
})

// -------------------------------------------------------------------------------------------
// peakEwma on scripted stats
// -------------------------------------------------------------------------------------------

describe("Selector.peakEwma (scripted stats)", () => {
  it.effect("of two, the lower latency x (in flight + 1)", () =>
    Effect.gen(function*() {
      const a = script(100)
      const cs = candidatesOf([a, script(250)])
      expect(yield* counts(cs, 50)).toEqual([50, 0])
      a.inFlight = 2 // 100 x 3 > 250 x 1
      a.inFlightAgeMs = 10
      expect(yield* counts(cs, 50)).toEqual([0, 50])
    }).pipe(Effect.provide(Selector.peakEwma()), seeded))

  it.effect("peak-sensitive: a slower estimate counts at once, a faster one only over `decay`", () =>
    Effect.gen(function*() {
      const a = script(100)
      const b = script(250)
      const cs = candidatesOf([a, b])
      /** b gets news at every pick: its cost stays 250 */
      const news = () => void b.samples++
      const pick = Effect.gen(function*() {
        news()
        return (yield* counts(cs, 1))[0] === 1 ? "a" : "b"
      })
      expect(yield* pick).toBe("a")
      yield* TestClock.adjust("1 second")
      a.latencyMs = 1_000
      a.samples++
      expect(yield* pick).toBe("b") // at once
      yield* TestClock.adjust("1 second")
      a.latencyMs = 100
      a.samples++
      // the cost comes down over the decay (10 s): 1000 e^(-1/10) + 100 (1 - e^(-1/10)) = 914
      expect(yield* pick).toBe("b")
      yield* TestClock.adjust("10 seconds")
      a.samples++ // 914 e^(-1) + 100 (1 - e^(-1)) = 400
      expect(yield* pick).toBe("b")
      yield* TestClock.adjust("10 seconds")
      a.samples++ // 400 e^(-1) + 100 (1 - e^(-1)) = 210
      expect(yield* pick).toBe("a")
    }).pipe(Effect.provide(Selector.peakEwma()), seeded))

  it.effect("a deployment without news sees its cost decay toward 0 and gets tried again", () =>
    Effect.gen(function*() {
      const a = script(1_000)
      const b = script(250, { inFlight: 1, inFlightAgeMs: 10 })
      const cs = candidatesOf([a, b])
      expect(yield* counts(cs, 1)).toEqual([0, 1]) // 1000 vs 500
      for (let t = 0; t < 60; t++) {
        yield* TestClock.adjust("1 second")
        b.samples++ // b busy, its cost steady
        const c = yield* counts(cs, 1)
        // 1000 e^(-t/10) < 500 from t = 10 ln 2 = 6.9 s
        expect(c[0]).toBe(t + 1 >= 7 ? 1 : 0)
        if (c[0] === 1) break
      }
    }).pipe(Effect.provide(Selector.peakEwma()), seeded))

  it.effect("never seen: wins while nothing is in flight on it, then waits for its first answer", () =>
    Effect.gen(function*() {
      const fresh = script(undefined)
      const cs = candidatesOf([script(100), fresh])
      expect(yield* counts(cs, 20)).toEqual([0, 20])
      fresh.inFlight = 1
      expect(yield* counts(cs, 20)).toEqual([20, 0])
    }).pipe(Effect.provide(Selector.peakEwma()), seeded))

  it.effect("draws two distinct candidates at random: every pair gets compared", () =>
    Effect.gen(function*() {
      // equal latencies, d0 busiest: it loses every pair it is in; the others split the rest
      const cs = candidatesOf([script(100, { inFlight: 5, inFlightAgeMs: 1 }), script(100), script(100), script(100)])
      const c = yield* counts(cs, 3_000)
      expect(c[0]).toBe(0)
      for (const x of c.slice(1)) expect(x / 3_000).toBeGreaterThan(0.28)
    }).pipe(Effect.provide(Selector.peakEwma()), seeded))

  it("property: the pick is a candidate, never the one with the strictly highest load", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ ms: fc.integer({ min: 1, max: 10_000 }), inFlight: fc.integer({ min: 0, max: 5 }) }), {
          minLength: 2,
          maxLength: 20
        }),
        fc.integer(),
        (xs, seed) => {
          const cs = candidatesOf(xs.map((x) => script(x.ms, { inFlight: x.inFlight, inFlightAgeMs: x.inFlight > 0 ? 1 : 0 })))
          const loads = xs.map((x) => x.ms * (x.inFlight + 1))
          const worst = Math.max(...loads)
          const strict = loads.filter((l) => l === worst).length === 1 ? loads.indexOf(worst) : -1
          const picks = Effect.runSync(
            counts(cs, 30).pipe(Effect.provide(Selector.peakEwma()), Effect.withRandom(Random.make(seed)), Effect.provide(TestContext.TestContext))
          )
          if (strict >= 0) expect(picks[strict]).toBe(0)
          expect(picks.reduce((a, b) => a + b, 0)).toBe(30)
        }
      ),
      { numRuns: 300 }
    )
  })
})

// -------------------------------------------------------------------------------------------
// Options
// -------------------------------------------------------------------------------------------

const buildError = (layer: Layer.Layer<Selector.Selector, Errors.InvalidConfig>) =>
  Effect.flip(Effect.provide(Selector.Selector, layer))

describe("latency selectors: options", () => {
  it.effect("bad options are refused with InvalidConfig naming the field", () =>
    Effect.gen(function*() {
      const e1 = yield* buildError(Selector.lowestLatency({ buffer: -0.1 }))
      expect(e1._tag).toBe("InvalidConfig")
      expect(e1.issues.map((i) => i.path)).toEqual(["Selector.lowestLatency.buffer"])
      const e2 = yield* buildError(Selector.lowestLatency({ window: "soon" as Duration.DurationInput, stuckAfter: 0.5 }))
      expect(e2.issues.map((i) => i.path).sort()).toEqual(["Selector.lowestLatency.stuckAfter", "Selector.lowestLatency.window"])
      expect(e2.message).toContain("Selector.lowestLatency.window")
      const e3 = yield* buildError(Selector.lowestLatency({ exploreAfter: 0 }))
      expect(e3.issues[0].path).toBe("Selector.lowestLatency.exploreAfter")
      const e4 = yield* buildError(Selector.peakEwma({ decay: -5 }))
      expect(e4.issues[0].path).toBe("Selector.peakEwma.decay")
      // an unknown option is a mistake, not ignored
      const e5 = yield* buildError(Selector.peakEwma({ decayy: "1 second" } as Selector.PeakEwmaOptions))
      expect(e5.issues[0].path).toBe("Selector.peakEwma.decayy")
    }))

  it.effect("good options build", () =>
    Effect.gen(function*() {
      yield* Effect.provide(Selector.Selector, Selector.lowestLatency({ buffer: 0.5, window: "2 minutes", exploreAfter: 10_000, stuckAfter: 3, perOutputToken: false }))
      yield* Effect.provide(Selector.Selector, Selector.peakEwma({ decay: "10 seconds", stuckAfter: 1 }))
      yield* Effect.provide(Selector.Selector, Selector.lowestLatency())
    }))
})

// -------------------------------------------------------------------------------------------
// Whole routers on TestClock
// -------------------------------------------------------------------------------------------

const body: Provider.ChatRequest = { model: "g", messages: [{ role: "user", content: "hi" }] }

const routerOf = (
  provider: FakeProvider.FakeProvider,
  ids: ReadonlyArray<string>,
  selector: Layer.Layer<Selector.Selector, Errors.InvalidConfig>
) =>
  Router.layer({ deployments: ids.map((id) => ({ id, group: "g", provider, model: "m" })) }).pipe(
    Layer.provide(selector),
    Layer.provide(RetrySchedule.layer({ base: 0 })),
    Layer.provideMerge(Router.defaults)
  )

/**
 * Starts `n` requests `gapMs` apart (each in its own fiber) and lets them run for `tailMs` more;
 * returns the calls the fake saw: deployment and start time.
 */
const drive = (provider: FakeProvider.FakeProvider, n: number, gapMs: number, tailMs = 5_000) =>
  Effect.gen(function*() {
    for (let i = 0; i < n; i++) {
      yield* Effect.fork(Effect.ignore(Router.chat(body)))
      yield* TestClock.adjust(gapMs)
    }
    yield* TestClock.adjust(tailMs)
    return (yield* provider.calls).map((c) => ({ id: c.deploymentId, at: c.startedAt }))
  })

const shareOf = (calls: ReadonlyArray<{ readonly id: string; readonly at: number }>, id: string, from = 0, to = Infinity) => {
  const window = calls.filter((c) => c.at >= from && c.at < to)
  return window.filter((c) => c.id === id).length / window.length
}

const both = [
  ["lowestLatency", () => Selector.lowestLatency()],
  ["peakEwma", () => Selector.peakEwma()]
] as const

describe("latency selectors in a router (TestClock, fake providers)", () => {
  for (const [name, make] of both) {
    it.effect(`${name}: a slow deployment gets little traffic`, () => {
      const provider = FakeProvider.unsafeMake({
        byDeployment: { a: { latency: "100 millis" }, b: { latency: "800 millis" }, c: { latency: "120 millis" } }
      })
      return Effect.gen(function*() {
        const calls = yield* drive(provider, 300, 50)
        // after the first second (each deployment seen), b gets next to nothing
        expect(shareOf(calls, "b", 1_000)).toBeLessThan(0.03)
      }).pipe(Effect.provide(routerOf(provider, ["a", "b", "c"], make())), seeded)
    })

    it.effect(`${name}: a deployment that gets stuck (calls never answer) is avoided while its calls are in flight`, () => {
      // a answers in 100 ms until t = 5 s, then never; b always in 150 ms
      const provider = FakeProvider.unsafeMake({
        byDeployment: {
          a: { latency: (_i, context) => (context.now < 5_000 ? 100 : 3_600_000) },
          b: { latency: "150 millis" }
        }
      })
      return Effect.gen(function*() {
        const calls = yield* drive(provider, 400, 25, 0) // 10 s, 40 requests a second
        const stuck = calls.filter((c) => c.id === "a" && c.at >= 5_000).length
        // a few go to a before its calls look old (2 usual calls: 200 ms), then none
        expect(stuck).toBeLessThan(15)
        expect(shareOf(calls, "a", 6_000)).toBe(0)
        expect(shareOf(calls, "b", 6_000)).toBe(1)
      }).pipe(Effect.provide(routerOf(provider, ["a", "b"], make())), seeded)
    })

    it.effect(`${name}: traffic moves off a deployment that becomes 10x slower within seconds`, () => {
      const provider = FakeProvider.unsafeMake({
        byDeployment: {
          a: { latency: (_i, context) => (context.now < 10_000 ? 100 : 1_000) },
          b: { latency: "130 millis" },
          c: { latency: "200 millis" }
        }
      })
      return Effect.gen(function*() {
        const calls = yield* drive(provider, 600, 50) // 30 s, 20 requests a second
        expect(shareOf(calls, "a", 2_000, 10_000)).toBeGreaterThan(0.4)
        expect(shareOf(calls, "a", 13_000)).toBeLessThan(0.05)
      }).pipe(Effect.provide(routerOf(provider, ["a", "b", "c"], make())), seeded)
    })
  }

  it.effect("lowestLatency: near-equals share the traffic (no herding)", () => {
    const provider = FakeProvider.unsafeMake({
      byDeployment: { a: { latency: "100 millis" }, b: { latency: "104 millis" }, c: { latency: "400 millis" } }
    })
    return Effect.gen(function*() {
      const calls = yield* drive(provider, 400, 50)
      expect(shareOf(calls, "a", 1_000)).toBeGreaterThan(0.35)
      expect(shareOf(calls, "b", 1_000)).toBeGreaterThan(0.35)
    }).pipe(Effect.provide(routerOf(provider, ["a", "b", "c"], Selector.lowestLatency())), seeded)
  })

  it.effect("lowestLatency: a deployment that recovers gets its traffic back after a probe or two", () => {
    // a is 10x slower from 5 s to 40 s, then fast again
    const provider = FakeProvider.unsafeMake({
      byDeployment: {
        a: { latency: (_i, context) => (context.now >= 5_000 && context.now < 40_000 ? 1_000 : 100) },
        b: { latency: "150 millis" }
      }
    })
    return Effect.gen(function*() {
      const calls = yield* drive(provider, 2_400, 50) // 120 s
      expect(shareOf(calls, "a", 10_000, 40_000)).toBeLessThan(0.02)
      // probes every 30 s without news: back within about two of them
      expect(shareOf(calls, "a", 110_000)).toBeGreaterThan(0.9)
    }).pipe(Effect.provide(routerOf(provider, ["a", "b"], Selector.lowestLatency())), seeded)
  })
})
