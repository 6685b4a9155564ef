import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as TestClock from "effect/TestClock"
import * as fc from "fast-check"
import { Cooldown, Deployment, RetrySchedule, Router, RouterState, Selector } from "../src/index.js"
import { FakeProvider } from "../src/testing.js"
import { expectClose, pickShares } from "./support/picks.js"

const fake = FakeProvider.unsafeMake()

const idle = {
  inFlight: 0,
  latencyMs: undefined,
  requests: 0,
  tokens: 0,
  completed: 0,
  failures: 0,
  cooldown: { status: "closed", until: 0, ejections: 0 }
} as RouterState.DeploymentStats

type Limits = { readonly weight?: number; readonly rpm?: number; readonly tpm?: number }

/** Real deployments (validated by `fromConfig`) as candidates with idle stats, ids d0, d1, ... */
const candidates = (limits: ReadonlyArray<Limits>, group = "g"): ReadonlyArray<Selector.Candidate> => {
  const result = Deployment.fromConfig(
    limits.map((l, i) => ({ id: `${group}${i}`, group, provider: fake, model: `m${i}`, ...l })),
    {}
  )
  if (Either.isLeft(result)) throw new Error(result.left.message)
  return result.right.map((deployment) => ({ deployment, stats: idle }))
}

const selection = (group = "g", attempt = 0): Selector.SelectionRequest => ({
  kind: "chat",
  group,
  request: { model: group, messages: [{ role: "user", content: "hi" }] },
  attempt
})

/** Shares of `n` picks by the selector in context, by candidate, in order. */
const observe = (cs: ReadonlyArray<Selector.Candidate>, n: number) => pickShares(cs, n, selection(cs[0].deployment.group))

const weightedShares = (cs: ReadonlyArray<Selector.Candidate>, n = 20_000, seed = 42) =>
  observe(cs, n).pipe(Effect.provide(Selector.weighted), Effect.withRandom(Random.make(seed)))

const ask = (model = "g", tags?: ReadonlyArray<string>) =>
  Router.chat({
    model,
    messages: [{ role: "user", content: "hi" }],
    ...(tags === undefined ? {} : { metadata: { tags: [...tags] } })
  })

const servedBy = (model = "g", tags?: ReadonlyArray<string>) => Effect.map(ask(model, tags), (r) => r.route.deploymentId)

describe("Selector.weighted", () => {
  it.effect("weights 3:1 give shares 75% / 25% (±2 pp over 20,000 picks)", () =>
    Effect.gen(function*() {
      expectClose(yield* weightedShares(candidates([{ weight: 3 }, { weight: 1 }])), [0.75, 0.25])
    }))

  it.effect("weights 1:2:7 give shares 10% / 20% / 70%", () =>
    Effect.gen(function*() {
      expectClose(yield* weightedShares(candidates([{ weight: 1 }, { weight: 2 }, { weight: 7 }])), [0.1, 0.2, 0.7])
    }))

  it.effect("the shares hold for other seeds too", () =>
    Effect.gen(function*() {
      for (const seed of [1, 7, 2024]) {
        expectClose(yield* weightedShares(candidates([{ weight: 3 }, { weight: 1 }]), 20_000, seed), [0.75, 0.25])
      }
    }))

  it.effect("a deployment without a weight counts as 1 when others set one", () =>
    Effect.gen(function*() {
      expectClose(yield* weightedShares(candidates([{ weight: 3 }, {}])), [0.75, 0.25])
    }))

  it.effect("uses rpm when no weight is set", () =>
    Effect.gen(function*() {
      expectClose(yield* weightedShares(candidates([{ rpm: 100, tpm: 100_000 }, { rpm: 300, tpm: 1_000 }])), [0.25, 0.75])
    }))

  it.effect("uses tpm when neither weight nor rpm is set", () =>
    Effect.gen(function*() {
      expectClose(yield* weightedShares(candidates([{ tpm: 90_000 }, { tpm: 10_000 }])), [0.9, 0.1])
    }))

  it.effect("weight wins over rpm", () =>
    Effect.gen(function*() {
      expectClose(yield* weightedShares(candidates([{ weight: 1, rpm: 1000 }, { weight: 1, rpm: 10 }])), [0.5, 0.5])
    }))

  it.effect("is uniform when nothing is set", () =>
    Effect.gen(function*() {
      expectClose(yield* weightedShares(candidates([{}, {}, {}, {}])), [0.25, 0.25, 0.25, 0.25])
    }))

  it.effect("never picks a zero weight", () =>
    Effect.gen(function*() {
      const shares = yield* weightedShares(candidates([{ weight: 0 }, { weight: 1 }, { weight: 0 }, { weight: 1 }]), 5_000)
      expect(shares[0]).toBe(0)
      expect(shares[2]).toBe(0)
      expectClose(shares, [0, 0.5, 0, 0.5], 0.03)
    }))

  it.effect("falls back to uniform when every weight is zero", () =>
    Effect.gen(function*() {
      expectClose(yield* weightedShares(candidates([{ weight: 0 }, { weight: 0 }])), [0.5, 0.5])
    }))

  it.effect("a single candidate is always picked", () =>
    Effect.gen(function*() {
      expect(yield* weightedShares(candidates([{ weight: 0 }]), 100)).toEqual([1])
    }))

  it.effect("is reproducible for a seed", () =>
    Effect.gen(function*() {
      const cs = candidates([{ weight: 1 }, { weight: 2 }, { weight: 7 }])
      const run = () => Effect.gen(function*() {
        const selector = yield* Selector.Selector
        const ids: Array<string> = []
        for (let i = 0; i < 50; i++) ids.push((yield* selector.pick(cs, selection())).deployment.id)
        return ids
      }).pipe(Effect.provide(Selector.weighted), Effect.withRandom(Random.make(99)))
      const first = yield* run()
      expect(yield* run()).toEqual(first)
      expect(new Set(first).size).toBeGreaterThan(1)
    }))

  it("property: zero weights are never picked and the pick is one of the candidates", () => {
    const base = candidates([{}])[0].deployment
    const weight = fc.oneof(
      fc.constant(0),
      fc.integer({ min: 0, max: 1000 }),
      fc.double({ min: 0, max: 1e9, noNaN: true, noDefaultInfinity: true })
    )
    fc.assert(
      fc.property(
        fc.array(weight, { minLength: 1, maxLength: 8 }).filter((ws) => ws.some((w) => w > 0)),
        fc.integer(),
        (weights, seed) => {
          const cs: ReadonlyArray<Selector.Candidate> = weights.map((w, i) => ({
            deployment: { ...base, id: `d${i}`, index: i, weight: w },
            stats: idle
          }))
          const picks = Effect.runSync(
            Effect.gen(function*() {
              const selector = yield* Selector.Selector
              const out: Array<Selector.Candidate> = []
              for (let i = 0; i < 25; i++) out.push(yield* selector.pick(cs, selection()))
              return out
            }).pipe(Effect.provide(Selector.weighted), Effect.withRandom(Random.make(seed)))
          )
          for (const picked of picks) {
            expect(cs).toContain(picked)
            expect(picked.deployment.weight).toBeGreaterThan(0)
          }
        }
      ),
      { numRuns: 300 }
    )
  })

  it("property: Selector.shares are non-negative, sum to 1 and give zero weights nothing", () => {
    const base = candidates([{}])[0].deployment
    const limits = fc.record(
      {
        weight: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 1e6, noNaN: true, noDefaultInfinity: true })),
        rpm: fc.integer({ min: 1, max: 100_000 }),
        tpm: fc.integer({ min: 1, max: 10_000_000 })
      },
      { requiredKeys: [] }
    )
    fc.assert(
      fc.property(fc.array(limits, { minLength: 1, maxLength: 8 }), (ls) => {
        const cs: ReadonlyArray<Selector.Candidate> = ls.map((l, i) => ({
          deployment: { ...base, id: `d${i}`, index: i, weight: l.weight, rpm: l.rpm, tpm: l.tpm },
          stats: idle
        }))
        const shares = Selector.shares(cs)
        expect(shares.length).toBe(cs.length)
        for (const s of shares) expect(s).toBeGreaterThanOrEqual(0)
        expect(Math.abs(shares.reduce((a, b) => a + b, 0) - 1)).toBeLessThan(1e-9)
        const anyWeight = ls.some((l) => l.weight !== undefined)
        const anyPositive = ls.some((l) => (l.weight ?? 1) > 0)
        if (anyWeight && anyPositive) {
          ls.forEach((l, i) => {
            if (l.weight === 0) expect(shares[i]).toBe(0)
          })
        }
      }),
      { numRuns: 500 }
    )
  })

  it("Selector.shares gives the documented splits", () => {
    const near = (actual: ReadonlyArray<number>, expected: ReadonlyArray<number>) =>
      actual.forEach((a, i) => expect(a).toBeCloseTo(expected[i], 10))
    near(Selector.shares(candidates([{ weight: 3 }, { weight: 1 }])), [0.75, 0.25])
    near(Selector.shares(candidates([{ weight: 1 }, { weight: 2 }, { weight: 7 }])), [0.1, 0.2, 0.7])
    near(Selector.shares(candidates([{ rpm: 100 }, { rpm: 300 }])), [0.25, 0.75])
    near(Selector.shares(candidates([{ tpm: 10 }, { tpm: 30 }])), [0.25, 0.75])
    near(Selector.shares(candidates([{}, {}, {}])), [1 / 3, 1 / 3, 1 / 3])
    near(Selector.shares(candidates([{ weight: 0 }, { weight: 0 }])), [0.5, 0.5])
  })

  it.effect("is the router's default and splits real traffic by weight", () =>
    Effect.gen(function*() {
      const counts: Record<string, number> = { a: 0, b: 0 }
      const n = 4_000
      for (let i = 0; i < n; i++) counts[yield* servedBy()]++
      expectClose([counts.a / n, counts.b / n], [0.75, 0.25], 0.03)
    }).pipe(
      Effect.provide(
        Router.layer({
          deployments: [
            { id: "a", group: "g", provider: FakeProvider.unsafeMake(), model: "m", weight: 3 },
            { id: "b", group: "g", provider: FakeProvider.unsafeMake(), model: "m", weight: 1 }
          ]
        }).pipe(Layer.provideMerge(Router.defaults))
      ),
      Effect.withRandom(Random.make(5))
    ))
})

describe("Selector.roundRobin", () => {
  it.effect("cycles through the candidates in order, per group", () =>
    Effect.gen(function*() {
      const selector = yield* Selector.Selector
      const g = candidates([{}, {}, {}], "g")
      const h = candidates([{}, {}], "h")
      const picks: Array<string> = []
      for (const group of ["g", "h", "g", "h", "g", "h", "g", "g"]) {
        const cs = group === "g" ? g : h
        picks.push((yield* selector.pick(cs, selection(group))).deployment.id)
      }
      expect(picks).toEqual(["g0", "h0", "g1", "h1", "g2", "h0", "g0", "g1"])
    }).pipe(Effect.provide(Selector.roundRobin)))

  it.effect("each layer build has its own counters", () =>
    Effect.gen(function*() {
      const first = (yield* Effect.provide(Selector.Selector, Selector.roundRobin))
      const second = (yield* Effect.provide(Selector.Selector, Selector.roundRobin))
      const cs = candidates([{}, {}])
      expect((yield* first.pick(cs, selection())).deployment.id).toBe("g0")
      expect((yield* first.pick(cs, selection())).deployment.id).toBe("g1")
      expect((yield* second.pick(cs, selection())).deployment.id).toBe("g0")
    }))

  it.effect("a retry's pick takes the current turn without moving it", () =>
    Effect.gen(function*() {
      const selector = yield* Selector.Selector
      const cs = candidates([{}, {}, {}])
      expect((yield* selector.pick(cs, selection("g", 0))).deployment.id).toBe("g0")
      expect((yield* selector.pick(cs, selection("g", 1))).deployment.id).toBe("g1")
      expect((yield* selector.pick(cs, selection("g", 2))).deployment.id).toBe("g1")
      expect((yield* selector.pick(cs, selection("g", 0))).deployment.id).toBe("g1")
      expect((yield* selector.pick(cs, selection("g", 0))).deployment.id).toBe("g2")
    }).pipe(Effect.provide(Selector.roundRobin)))

  it.effect("in the router, the turn advances per request: a failing deployment does not get every first attempt", () => {
    const flaky = FakeProvider.unsafeMake({ byDeployment: { a: { failure: 500 } } })
    return Effect.gen(function*() {
      for (let i = 0; i < 6; i++) yield* Router.chat({ model: "g", messages: [{ role: "user", content: "hi" }] })
      const firstAttempts = (yield* flaky.calls).filter((c) => c.deploymentId === "a").length
      // requests alternate their first pick: a, b, a, b... (a retry after a goes to b)
      expect(firstAttempts).toBe(3)
      expect(yield* flaky.callCount).toBe(9)
    }).pipe(
      Effect.provide(
        Router.layer({
          deployments: [
            { id: "a", group: "g", provider: flaky, model: "m" },
            { id: "b", group: "g", provider: flaky, model: "m" }
          ]
        }).pipe(Layer.provide(Selector.roundRobin), Layer.provide(Cooldown.disabled), Layer.provideMerge(Router.defaults))
      )
    )
  })

  it.effect("the router serves groups in turn", () =>
    Effect.gen(function*() {
      const served: Array<string> = []
      for (const group of ["g", "h", "g", "g", "h", "g", "h"]) served.push(yield* servedBy(group))
      expect(served).toEqual(["a", "x", "b", "c", "y", "a", "x"])
    }).pipe(
      Effect.provide(
        Router.layer({
          deployments: [
            { id: "a", group: "g", provider: fake, model: "m" },
            { id: "x", group: "h", provider: fake, model: "m" },
            { id: "b", group: "g", provider: fake, model: "m" },
            { id: "y", group: "h", provider: fake, model: "m" },
            { id: "c", group: "g", provider: fake, model: "m" }
          ]
        }).pipe(Layer.provide(Selector.roundRobin), Layer.provideMerge(Router.defaults))
      )
    ))
})

describe("Selector.make", () => {
  const leastBusy = Selector.make((cs) =>
    Effect.succeed(cs.reduce((best, c) => (c.stats.inFlight < best.stats.inFlight ? c : best)))
  )

  it.effect("a custom policy sees live stats: least in-flight first", () =>
    Effect.gen(function*() {
      const fibers: Array<Fiber.RuntimeFiber<string, unknown>> = []
      // Start 5 slow requests one after another; each sees the earlier ones in flight.
      for (let i = 0; i < 5; i++) {
        fibers.push(yield* Effect.fork(servedBy()))
        yield* TestClock.adjust("1 millis")
      }
      yield* TestClock.adjust("10 seconds")
      const served = yield* Effect.forEach(fibers, Fiber.join)
      expect(served).toEqual(["a", "b", "c", "a", "b"])
      // Once they are done, nothing is in flight again: the first listed wins.
      const last = yield* Effect.fork(servedBy())
      yield* TestClock.adjust("5 seconds")
      expect(yield* Fiber.join(last)).toBe("a")
    }).pipe(
      Effect.provide(
        Router.layer({
          deployments: ["a", "b", "c"].map((id) => ({
            id,
            group: "g",
            provider: FakeProvider.unsafeMake({ latency: "5 seconds" }),
            model: "m"
          }))
        }).pipe(Layer.provide(leastBusy), Layer.provideMerge(Router.defaults))
      )
    ))

  it.effect("a custom policy reads the request (its tags) and the candidates' stats", () =>
    Effect.gen(function*() {
      seen.length = 0
      expect(yield* servedBy("g", ["team"])).toBe("cheap")
      expect(yield* servedBy("g", ["team", "premium"])).toBe("big")
      expect(yield* servedBy("g")).toBe("cheap")
      expect(seen.map((s) => s.tags)).toEqual([["team"], ["team", "premium"], []])
      // candidates carry stats: "cheap" has served one request by the third pick
      const third = seen[2].candidates.find((c) => c.id === "cheap")!
      expect(third.requests).toBe(1)
      expect(third.completed).toBe(1)
      expect(seen[0].candidates.map((c) => c.id)).toEqual(["cheap", "big"])
    }).pipe(
      Effect.provide(
        Router.layer({
          deployments: [
            { id: "cheap", group: "g", provider: fake, model: "small", tags: ["team", "premium"] },
            { id: "big", group: "g", provider: fake, model: "large", tags: ["team", "premium"] }
          ]
        }).pipe(Layer.provide(byTags), Layer.provideMerge(Router.defaults))
      )
    ))

  it.effect("the router only offers healthy candidates to a custom policy", () =>
    Effect.gen(function*() {
      seen.length = 0
      // "bad" always fails with 401: it cools down at once and is no longer offered
      const first = yield* Effect.either(ask())
      expect(Either.isLeft(first)).toBe(true)
      expect(yield* servedBy()).toBe("good")
      expect(seen.map((s) => s.candidates.map((c) => c.id))).toEqual([["bad", "good"], ["good"]])
    }).pipe(
      Effect.provide(
        Router.layer({
          deployments: [
            { id: "bad", group: "g", provider: FakeProvider.unsafeMake({ failure: 401 }), model: "m" },
            { id: "good", group: "g", provider: fake, model: "m" }
          ]
        }).pipe(
          Layer.provide(recordingFirst),
          Layer.provide(RetrySchedule.none),
          Layer.provide(Cooldown.layer()),
          Layer.provideMerge(Router.defaults)
        )
      )
    ))
})

interface Seen {
  readonly tags: ReadonlyArray<string>
  readonly candidates: ReadonlyArray<{ readonly id: string; readonly requests: number; readonly completed: number }>
}
const seen: Array<Seen> = []
const record = (cs: ReadonlyArray<Selector.Candidate>, request: Selector.SelectionRequest) =>
  seen.push({
    tags: request.request.metadata?.tags ?? [],
    candidates: cs.map((c) => ({ id: c.deployment.id, requests: c.stats.requests, completed: c.stats.completed }))
  })

const byTags = Selector.make((cs, request) =>
  Effect.sync(() => {
    record(cs, request)
    const premium = request.request.metadata?.tags?.includes("premium") ?? false
    return cs.find((c) => c.deployment.model === (premium ? "large" : "small")) ?? cs[0]
  })
)

const recordingFirst = Selector.make((cs, request) =>
  Effect.sync(() => {
    record(cs, request)
    return cs[0]
  })
)
