/**
 * The load-, usage- and price-aware selectors: `Selector.leastBusy`, `Selector.usageBased`,
 * `Selector.lowestCost`, and the custom-policy example (examples/custom-selector.ts).
 */
import { execFile } from "node:child_process"
import * as path from "node:path"
import { promisify } from "node:util"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as TestClock from "effect/TestClock"
import * as fc from "fast-check"
import { CostMeter, Deployment, type Provider, Router, RouterState, Selector } from "../src/index.js"
import { FakeProvider } from "../src/testing.js"
import { expectClose, pickShares } from "./support/picks.js"

const fake = FakeProvider.unsafeMake()

const idle = {
  inFlight: 0,
  inFlightAgeMs: 0,
  latencyMs: undefined,
  firstTokenMs: undefined,
  perTokenMs: undefined,
  requests: 0,
  tokens: 0,
  completed: 0,
  failures: 0,
  consecutiveFailures: 0,
  cooldown: { status: "closed", until: 0, ejections: 0, reason: "failures" },
  upstream: undefined
} as unknown as RouterState.DeploymentStats

type Stats = Partial<Pick<RouterState.DeploymentStats, "inFlight" | "requests" | "tokens" | "upstream">>
type Spec = Partial<Deployment.DeploymentConfig> & { readonly stats?: Stats }

/** Real deployments (validated by `fromConfig`), ids d0, d1, ..., with the given stats (idle otherwise). */
const candidates = (specs: ReadonlyArray<Spec>): ReadonlyArray<Selector.Candidate> => {
  const result = Deployment.fromConfig(
    specs.map(({ stats: _stats, ...config }, i) => ({ id: `d${i}`, group: "g", provider: fake, model: `m${i}`, ...config })),
    {}
  )
  if (Either.isLeft(result)) throw new Error(result.left.message)
  // frozen, as the memory store hands them: a selector must not change them
  return Object.freeze(result.right.map((deployment, i) => Object.freeze({ deployment, stats: { ...idle, ...specs[i].stats } })))
}

const chatSelection = (request: Partial<Provider.ChatRequest> = {}, attempt = 0): Selector.SelectionRequest => ({
  kind: "chat",
  group: "g",
  request: { model: "g", messages: [{ role: "user", content: "hi" }], ...request },
  attempt
})

/** Shares of `n` picks by the selector in context, by candidate, in order. */
const observe = (cs: ReadonlyArray<Selector.Candidate>, n: number, request = chatSelection()) => pickShares(cs, n, request)

const pickOnce = (cs: ReadonlyArray<Selector.Candidate>, request = chatSelection()) =>
  Effect.flatMap(Selector.Selector, (selector) => selector.pick(cs, request))

const idOf = (cs: ReadonlyArray<Selector.Candidate>, request = chatSelection()) =>
  Effect.map(pickOnce(cs, request), (c) => c.deployment.id)

const servedBy = (request: Partial<Provider.ChatRequest> = {}) =>
  Effect.map(
    Router.chat({ model: "g", messages: [{ role: "user", content: "hi" }], ...request }),
    (r) => r.route.deploymentId
  )

/** A router over `deployments` picking with `selector`, on `Router.defaults` (kept in context). */
const routedWith = <E, R>(selector: Layer.Layer<Selector.Selector, E, R>, deployments: Router.Config["deployments"]) =>
  Router.layer({ deployments }).pipe(Layer.provide(selector), Layer.provideMerge(Router.defaults))

const countBy = (ids: ReadonlyArray<string>) => {
  const counts: Record<string, number> = {}
  for (const id of ids) counts[id] = (counts[id] ?? 0) + 1
  return counts
}

const rateLimit = (info: Partial<Provider.RateLimitInfo>): Provider.RateLimitInfo => ({
  remainingRequests: undefined,
  remainingTokens: undefined,
  limitRequests: undefined,
  limitTokens: undefined,
  ...info
})

// -------------------------------------------------------------------------------------------

describe("Selector.leastBusy", () => {
  it.effect("picks the candidate with the fewest calls in flight", () =>
    Effect.gen(function*() {
      const cs = candidates([{ stats: { inFlight: 3 } }, { stats: { inFlight: 1 } }, { stats: { inFlight: 2 } }])
      for (let i = 0; i < 50; i++) expect(yield* idOf(cs)).toBe("d1")
    }).pipe(Effect.provide(Selector.leastBusy)))

  it.effect("spreads ties uniformly at random and never picks a busier one (30,000 picks, several seeds)", () =>
    Effect.gen(function*() {
      const cs = candidates([
        { stats: { inFlight: 2 } },
        { stats: { inFlight: 0 } },
        { stats: { inFlight: 0 } },
        { stats: { inFlight: 5 } },
        { stats: { inFlight: 0 } }
      ])
      for (const seed of [1, 42, 2024]) {
        const shares = yield* observe(cs, 30_000).pipe(Effect.withRandom(Random.make(seed)))
        expect(shares[0]).toBe(0)
        expect(shares[3]).toBe(0)
        expectClose(shares, [0, 1 / 3, 1 / 3, 0, 1 / 3])
      }
    }).pipe(Effect.provide(Selector.leastBusy)))

  it.effect("an idle group is picked uniformly", () =>
    Effect.gen(function*() {
      const cs = candidates([{}, {}, {}, {}])
      expectClose(yield* observe(cs, 20_000).pipe(Effect.withRandom(Random.make(7))), [0.25, 0.25, 0.25, 0.25])
    }).pipe(Effect.provide(Selector.leastBusy)))

  it("property: the pick is a candidate with the fewest in flight; the candidates are left as they were", () => {
    const cs0 = candidates([{}])
    const base = cs0[0].deployment
    fc.assert(
      fc.property(fc.array(fc.nat({ max: 6 }), { minLength: 1, maxLength: 40 }), fc.integer(), (busy, seed) => {
        const cs: ReadonlyArray<Selector.Candidate> = Object.freeze(busy.map((inFlight, i) =>
          Object.freeze({ deployment: { ...base, id: `d${i}`, index: i }, stats: { ...idle, inFlight } })
        ))
        const fewest = Math.min(...busy)
        const picks = Effect.runSync(
          Effect.gen(function*() {
            const out: Array<Selector.Candidate> = []
            for (let i = 0; i < 20; i++) out.push(yield* pickOnce(cs))
            return out
          }).pipe(Effect.provide(Selector.leastBusy), Effect.withRandom(Random.make(seed)))
        )
        for (const picked of picks) {
          expect(cs).toContain(picked)
          expect(picked.stats.inFlight).toBe(fewest)
        }
      }),
      { numRuns: 300 }
    )
  })

  it.effect("40 concurrent requests over 4 deployments end up 10 / 10 / 10 / 10", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.fork(
        Effect.forEach(Array.from({ length: 40 }, () => servedBy()), (e) => e, { concurrency: "unbounded" })
      )
      yield* TestClock.adjust("500 millis")
      // all 40 are in flight at once, spread evenly
      const router = yield* Router.Router
      const state = yield* RouterState.RouterState
      expect((yield* state.snapshot(router.deployments)).map((s) => s.inFlight)).toEqual([10, 10, 10, 10])
      yield* TestClock.adjust("1 second")
      expect(countBy(yield* Fiber.join(fiber))).toEqual({ a: 10, b: 10, c: 10, d: 10 })
    }).pipe(
      Effect.provide(
        routedWith(Selector.leastBusy, ["a", "b", "c", "d"].map((id) => ({
          id,
          group: "g",
          provider: FakeProvider.unsafeMake({ latency: "1 second" }),
          model: "m"
        })))
      ),
      Effect.withRandom(Random.make(3))
    ))

  it.effect("a deployment that answers slowly gets fewer of a steady stream of requests", () =>
    Effect.gen(function*() {
      // one request every 100 ms; "slow" holds each for 2 s, the others for 100 ms
      const fibers: Array<Fiber.RuntimeFiber<string, unknown>> = []
      for (let i = 0; i < 60; i++) {
        fibers.push(yield* Effect.fork(servedBy()))
        yield* TestClock.adjust("100 millis")
      }
      yield* TestClock.adjust("5 seconds")
      const counts = countBy(yield* Effect.forEach(fibers, Fiber.join))
      expect(counts.slow ?? 0).toBeLessThan(counts.fast1)
      expect(counts.slow ?? 0).toBeLessThan(counts.fast2)
      expect((counts.slow ?? 0) + counts.fast1 + counts.fast2).toBe(60)
    }).pipe(
      Effect.provide(
        routedWith(Selector.leastBusy, [
          { id: "slow", group: "g", provider: FakeProvider.unsafeMake({ latency: "2 seconds" }), model: "m" },
          { id: "fast1", group: "g", provider: FakeProvider.unsafeMake({ latency: "100 millis" }), model: "m" },
          { id: "fast2", group: "g", provider: FakeProvider.unsafeMake({ latency: "100 millis" }), model: "m" }
        ])
      ),
      Effect.withRandom(Random.make(11))
    ))
})

// -------------------------------------------------------------------------------------------

describe("Selector.usageBased", () => {
  it.effect("prefers the most headroom as a fraction of rpm", () =>
    Effect.gen(function*() {
      // 50% of 100 used vs 40% of 1,000 used: the larger limit has more left as a fraction
      const cs = candidates([{ rpm: 100, stats: { requests: 50 } }, { rpm: 1_000, stats: { requests: 400 } }])
      for (let i = 0; i < 20; i++) expect(yield* idOf(cs)).toBe("d1")
      // 30% of 100 used vs 40% of 1,000: the smaller one
      const other = candidates([{ rpm: 100, stats: { requests: 30 } }, { rpm: 1_000, stats: { requests: 400 } }])
      for (let i = 0; i < 20; i++) expect(yield* idOf(other)).toBe("d0")
    }).pipe(Effect.provide(Selector.usageBased())))

  it.effect("counts the request's estimated tokens against tpm", () =>
    Effect.gen(function*() {
      const cs = candidates([{ tpm: 1_000 }, { tpm: 100_000, stats: { tokens: 10_000 } }])
      // a small request: 1,000 untouched has (1000 - ~10) / 1000 left, more than 90% of 100,000
      expect(yield* idOf(cs, chatSelection())).toBe("d0")
      // a request that may take 900 tokens fits the small one only barely: the large one wins
      expect(yield* idOf(cs, chatSelection({ max_tokens: 900 }))).toBe("d1")
      // and so does a long prompt (4,000 characters, about 1,000 tokens)
      expect(yield* idOf(cs, chatSelection({ messages: [{ role: "user", content: "a".repeat(4_000) }] }))).toBe("d1")
    }).pipe(Effect.provide(Selector.usageBased())))

  it.effect("takes the tighter of rpm and tpm", () =>
    Effect.gen(function*() {
      // d0: rpm nearly untouched but tpm 80% used; d1: both half used
      const cs = candidates([
        { rpm: 100, tpm: 10_000, stats: { requests: 1, tokens: 8_000 } },
        { rpm: 100, tpm: 10_000, stats: { requests: 50, tokens: 5_000 } }
      ])
      expect(yield* idOf(cs)).toBe("d1")
    }).pipe(Effect.provide(Selector.usageBased())))

  it.effect("follows the upstream's rate-limit headers: global usage the local counters cannot see", () =>
    Effect.gen(function*() {
      // locally both are untouched; the upstream says d0's key has 10 of 100 requests left
      const cs = candidates([
        { rpm: 100, stats: { upstream: rateLimit({ remainingRequests: 10, limitRequests: 100 }) } },
        { rpm: 100, stats: { upstream: rateLimit({ remainingRequests: 95, limitRequests: 100 }) } }
      ])
      for (let i = 0; i < 20; i++) expect(yield* idOf(cs)).toBe("d1")
      // tokens too, and the header's limit is used when the deployment sets none
      const tokens = candidates([
        { stats: { upstream: rateLimit({ remainingTokens: 50_000, limitTokens: 100_000 }) } },
        { stats: { upstream: rateLimit({ remainingTokens: 90_000, limitTokens: 100_000 }) } }
      ])
      expect(yield* idOf(tokens)).toBe("d1")
    }).pipe(Effect.provide(Selector.usageBased())))

  it.effect("the upstream's report counts the calls in flight since it was sent", () =>
    Effect.gen(function*() {
      const cs = candidates([
        { stats: { inFlight: 30, upstream: rateLimit({ remainingRequests: 50, limitRequests: 100 }) } },
        { stats: { inFlight: 0, upstream: rateLimit({ remainingRequests: 40, limitRequests: 100 }) } }
      ])
      expect(yield* idOf(cs)).toBe("d1")
    }).pipe(Effect.provide(Selector.usageBased())))

  it.effect("a report is dropped once its reset has passed, or once it is older than upstreamMaxAge", () =>
    Effect.gen(function*() {
      const withReset = candidates([
        { rpm: 100, stats: { upstream: rateLimit({ remainingRequests: 5, limitRequests: 100, resetRequestsMs: 2_000 }) } },
        { rpm: 100, stats: { requests: 10 } }
      ])
      expect(yield* idOf(withReset)).toBe("d1")
      yield* TestClock.adjust("2 seconds")
      // reset: d0's window is back to what the local count says (untouched)
      expect(yield* idOf(withReset)).toBe("d0")

      const noReset = candidates([
        { rpm: 100, stats: { upstream: rateLimit({ remainingRequests: 5, limitRequests: 100 }) } },
        { rpm: 100, stats: { requests: 10 } }
      ])
      expect(yield* idOf(noReset)).toBe("d1")
      yield* TestClock.adjust("29 seconds")
      expect(yield* idOf(noReset)).toBe("d1")
      yield* TestClock.adjust("1 second")
      expect(yield* idOf(noReset)).toBe("d0")
    }).pipe(Effect.provide(Selector.usageBased({ upstreamMaxAge: "30 seconds" }))))

  it.effect("upstream: false goes by the local counters only", () =>
    Effect.gen(function*() {
      const cs = candidates([
        { rpm: 100, stats: { upstream: rateLimit({ remainingRequests: 1, limitRequests: 100 }) } },
        { rpm: 100, stats: { requests: 10 } }
      ])
      expect(yield* idOf(cs)).toBe("d0")
    }).pipe(Effect.provide(Selector.usageBased({ upstream: false }))))

  it.effect("deployments without any limit count as untouched; ties at random", () =>
    Effect.gen(function*() {
      const mixed = candidates([{ rpm: 1_000 }, {}])
      expect(yield* idOf(mixed)).toBe("d1")
      const unlimited = candidates([{ stats: { requests: 500 } }, {}, {}])
      expectClose(yield* observe(unlimited, 9_000).pipe(Effect.withRandom(Random.make(5))), [1 / 3, 1 / 3, 1 / 3])
      const same = candidates([{ rpm: 60 }, { rpm: 60 }])
      expectClose(yield* observe(same, 8_000).pipe(Effect.withRandom(Random.make(9))), [0.5, 0.5])
    }).pipe(Effect.provide(Selector.usageBased())))

  it("property: the pick has the most headroom (a naive reference), frozen or not, large or small", () => {
    const base = candidates([{}])[0].deployment
    const spec = fc.record({
      rpm: fc.option(fc.integer({ min: 1, max: 200 }), { nil: undefined }),
      tpm: fc.option(fc.integer({ min: 1, max: 20_000 }), { nil: undefined }),
      requests: fc.nat({ max: 250 }),
      tokens: fc.nat({ max: 25_000 }),
      inFlight: fc.nat({ max: 5 }),
      upstream: fc.option(
        fc.record({
          remainingRequests: fc.option(fc.nat({ max: 200 }), { nil: undefined }),
          limitRequests: fc.option(fc.integer({ min: 1, max: 200 }), { nil: undefined }),
          remainingTokens: fc.option(fc.nat({ max: 20_000 }), { nil: undefined }),
          limitTokens: fc.option(fc.integer({ min: 1, max: 20_000 }), { nil: undefined })
        }),
        { nil: undefined }
      )
    })
    const request = chatSelection({ max_tokens: 50 })
    // prompt "hi": 3 + 3 + 1 tokens, plus max_tokens
    const tokens = 7 + 50
    const reference = (c: Selector.Candidate): number => {
      const d = c.deployment
      const s = c.stats
      const parts: Array<number> = []
      if (d.rpm !== undefined) parts.push((d.rpm - s.requests - 1) / d.rpm)
      if (d.tpm !== undefined) parts.push((d.tpm - s.tokens - tokens) / d.tpm)
      const u = s.upstream
      if (u !== undefined) {
        const rl = u.limitRequests ?? d.rpm
        if (u.remainingRequests !== undefined && rl !== undefined) parts.push((u.remainingRequests - s.inFlight - 1) / rl)
        const tl = u.limitTokens ?? d.tpm
        if (u.remainingTokens !== undefined && tl !== undefined) parts.push((u.remainingTokens - tokens) / tl)
      }
      return parts.length === 0 ? 1 : Math.min(...parts)
    }
    fc.assert(
      fc.property(fc.array(spec, { minLength: 1, maxLength: 70 }), fc.boolean(), fc.integer(), (specs, frozen, seed) => {
        const list = specs.map((x, i) => ({
          deployment: { ...base, id: `d${i}`, index: i, rpm: x.rpm, tpm: x.tpm },
          stats: {
            ...idle,
            requests: x.requests,
            tokens: x.tokens,
            inFlight: x.inFlight,
            upstream: x.upstream === undefined ? undefined : rateLimit(x.upstream)
          }
        }))
        const cs: ReadonlyArray<Selector.Candidate> = frozen ? Object.freeze(list.map((c) => Object.freeze(c))) : list
        const best = Math.max(...cs.map(reference))
        const picks = Effect.runSync(
          Effect.gen(function*() {
            const out: Array<Selector.Candidate> = []
            for (let i = 0; i < 10; i++) out.push(yield* pickOnce(cs, request))
            return out
          }).pipe(Effect.provide(Selector.usageBased({ sample: "all" })), Effect.withRandom(Random.make(seed)))
        )
        for (const picked of picks) {
          expect(cs).toContain(picked)
          expect(reference(picked)).toBeCloseTo(best, 12)
        }
      }),
      { numRuns: 300 }
    )
  })

  it.effect("a group larger than sample: the pick is the best of a random run of 32; every candidate is read as often", () =>
    Effect.gen(function*() {
      // one deployment with far more headroom than 999 others
      const specs: Array<Spec> = Array.from({ length: 1_000 }, (_, i) => ({ rpm: 100, stats: { requests: i === 617 ? 0 : 50 } }))
      const cs = candidates(specs)
      const sampled = yield* observe(cs, 10_000).pipe(Effect.provide(Selector.usageBased()), Effect.withRandom(Random.make(21)))
      // it is read (and then wins) in 32 of 1,000 picks: each candidate is in a sample with probability 32 / 1,000
      expect(sampled[617]).toBeGreaterThan(0.032 - 0.007)
      expect(sampled[617]).toBeLessThan(0.032 + 0.007)
      // the others share the rest evenly, but for its neighbours: a run of 32 that holds one of
      // them mostly holds it too (and then it wins, as it would in a full pass)
      const others = sampled.filter((_, i) => Math.abs(i - 617) >= 32)
      expect(others.filter((x) => x === 0).length).toBeLessThan(5)
      expect(Math.max(...others)).toBeLessThan(0.004)
      expect(sampled[616] + sampled[618]).toBeLessThan(sampled[500] + sampled[501])
      // sample: "all" reads every candidate
      const exact = yield* observe(cs, 200).pipe(Effect.provide(Selector.usageBased({ sample: "all" })))
      expect(exact[617]).toBe(1)
      // a group no larger than sample is read whole
      const small = yield* observe(cs.slice(600, 632), 200).pipe(Effect.provide(Selector.usageBased()))
      expect(small[17]).toBe(1)
    }))

  it.effect("through the router, traffic fills deployments in proportion to their rpm", () =>
    Effect.gen(function*() {
      const served: Array<string> = []
      for (let i = 0; i < 40; i++) served.push(yield* servedBy())
      const counts = countBy(served)
      expect(counts.small).toBeGreaterThanOrEqual(9)
      expect(counts.small).toBeLessThanOrEqual(11)
      expect(counts.small + counts.large).toBe(40)
    }).pipe(
      Effect.provide(
        routedWith(Selector.usageBased(), [
          { id: "small", group: "g", provider: fake, model: "m", rpm: 100 },
          { id: "large", group: "g", provider: fake, model: "m", rpm: 300 }
        ])
      )
    ))

  it.effect("in a group larger than sample, traffic still fills deployments in proportion to their rpm", () =>
    Effect.gen(function*() {
      const served: Array<string> = []
      for (let i = 0; i < 800; i++) served.push(yield* servedBy())
      const small = served.filter((id) => id.startsWith("small")).length
      // 50 x 100 rpm and 50 x 300 rpm, listed in two blocks: a quarter of the traffic on the small ones
      expect(small).toBeGreaterThan(200 - 30)
      expect(small).toBeLessThan(200 + 30)
      const counts = countBy(served)
      expect(Math.max(...Object.values(counts)) - Math.min(...Object.values(counts))).toBeLessThanOrEqual(12)
    }).pipe(
      Effect.provide(
        routedWith(Selector.usageBased(), Array.from({ length: 100 }, (_, i) => ({
          id: i < 50 ? `small-${i}` : `large-${i}`,
          group: "g",
          provider: fake,
          model: "m",
          rpm: i < 50 ? 100 : 300
        })))
      ),
      Effect.withRandom(Random.make(8))
    ))

  it.effect("through the router, the upstream's headers move traffic off a key other clients use", () => {
    // "shared" reports 20 of 1,000 requests left on its key at every answer (other apps use
    // it); "own" reports what this router's calls leave
    let ownUsed = 0
    const inner = FakeProvider.unsafeMake()
    const reporting: Provider.Provider = {
      ...inner,
      chat: (request, target) =>
        Effect.zipRight(
          target.reportRateLimit?.(
            target.deploymentId === "shared"
              ? rateLimit({ remainingRequests: 20, limitRequests: 1_000 })
              : rateLimit({ remainingRequests: 1_000 - ++ownUsed, limitRequests: 1_000 })
          ) ?? Effect.void,
          inner.chat(request, target)
        )
    }
    return Effect.gen(function*() {
      const served: Array<string> = []
      for (let i = 0; i < 30; i++) served.push(yield* servedBy())
      const counts = countBy(served)
      // the first call may go either way (no report yet); once "shared" reported, never again
      expect(counts.shared ?? 0).toBeLessThanOrEqual(1)
      expect(counts.own).toBeGreaterThanOrEqual(29)
    }).pipe(
      Effect.provide(
        routedWith(Selector.usageBased(), [
          { id: "shared", group: "g", provider: reporting, model: "m", rpm: 1_000 },
          { id: "own", group: "g", provider: reporting, model: "m", rpm: 1_000 }
        ])
      ),
      Effect.withRandom(Random.make(1))
    )
  })
})

// -------------------------------------------------------------------------------------------

const price = (input: number, output: number) => ({ inputCostPerToken: input, outputCostPerToken: output })

/** The selector with a default CostMeter over an in-memory store. */
const withMeter = (selector: Layer.Layer<Selector.Selector, unknown, CostMeter.CostMeter>, prices?: Record<string, unknown>) =>
  selector.pipe(
    Layer.provide(CostMeter.layer(prices === undefined ? {} : { prices })),
    Layer.provide(RouterState.memory())
  )

describe("Selector.lowestCost", () => {
  it("property: the pick is the cheapest (a naive reference), frozen or not, large or small", () => {
    const base = candidates([{}])[0].deployment
    const spec = fc.option(fc.record({ input: fc.integer({ min: 0, max: 20 }), output: fc.integer({ min: 0, max: 20 }) }), {
      nil: undefined
    })
    fc.assert(
      fc.property(
        fc.array(spec, { minLength: 1, maxLength: 70 }),
        fc.boolean(),
        fc.option(fc.nat({ max: 2_000 }), { nil: undefined }),
        fc.integer(),
        (specs, frozen, maxTokens, seed) => {
          const list = specs.map((p, i) => ({
            deployment: {
              ...base,
              id: `d${i}`,
              index: i,
              model: `unpriced-${i}`,
              pricing: p === undefined ? undefined : price(p.input * 1e-7, p.output * 1e-7)
            },
            stats: idle
          }))
          const cs: ReadonlyArray<Selector.Candidate> = frozen ? Object.freeze(list.map((c) => Object.freeze(c))) : list
          const request = chatSelection(maxTokens === undefined ? {} : { max_tokens: maxTokens })
          const output = maxTokens ?? 256
          const cost = (c: Selector.Candidate) =>
            c.deployment.pricing === undefined
              ? Infinity
              : c.deployment.pricing.inputCostPerToken * 7 + c.deployment.pricing.outputCostPerToken * output
          const cheapest = Math.min(...cs.map(cost))
          const picks = Effect.runSync(
            Effect.gen(function*() {
              const out: Array<Selector.Candidate> = []
              for (let i = 0; i < 10; i++) out.push(yield* pickOnce(cs, request))
              return out
            }).pipe(Effect.provide(withMeter(Selector.lowestCost())), Effect.withRandom(Random.make(seed)))
          )
          for (const picked of picks) {
            expect(cs).toContain(picked)
            expect(cost(picked)).toBe(cheapest)
          }
        }
      ),
      { numRuns: 200 }
    )
  })

  it.effect("picks the cheapest", () =>
    Effect.gen(function*() {
      const cs = candidates([
        { pricing: price(3e-6, 15e-6) },
        { pricing: price(0.15e-6, 0.6e-6) },
        { pricing: price(1e-6, 2e-6) }
      ])
      for (let i = 0; i < 20; i++) expect(yield* idOf(cs)).toBe("d1")
    }).pipe(Effect.provide(withMeter(Selector.lowestCost()))))

  it.effect("goes by the request's tokens: a long prompt favours cheap input, a long answer cheap output", () =>
    Effect.gen(function*() {
      // d0 is cheap to read, dear to write; d1 the other way round. d0 is cheaper iff prompt > 2 x output
      const cs = candidates([{ pricing: price(1e-6, 10e-6) }, { pricing: price(5e-6, 2e-6) }])
      const longPrompt = { messages: [{ role: "user" as const, content: "word ".repeat(2_000) }] }
      expect(yield* idOf(cs, chatSelection({ ...longPrompt, max_tokens: 100 }))).toBe("d0")
      expect(yield* idOf(cs, chatSelection({ max_tokens: 1_000 }))).toBe("d1")
      expect(yield* idOf(cs, chatSelection({ max_completion_tokens: 1_000 }))).toBe("d1")
      // no max_tokens: 256 output tokens assumed, a short prompt: output dominates
      expect(yield* idOf(cs, chatSelection())).toBe("d1")
      // embeddings have no output
      const embed: Selector.SelectionRequest = { kind: "embed", group: "g", request: { model: "g", input: "hello" }, attempt: 0 }
      expect(yield* idOf(cs, embed)).toBe("d0")
    }).pipe(Effect.provide(withMeter(Selector.lowestCost()))))

  it.effect("outputTokens sets what a request without max_tokens is assumed to generate", () =>
    Effect.gen(function*() {
      const cs = candidates([{ pricing: price(1e-6, 10e-6) }, { pricing: price(5e-6, 2e-6) }])
      expect(yield* idOf(cs, chatSelection())).toBe("d0")
      expect(yield* idOf(cs, chatSelection({ max_tokens: 1_000 }))).toBe("d1")
    }).pipe(Effect.provide(withMeter(Selector.lowestCost({ outputTokens: 0 })))))

  it.effect("ties at random; a dearer one never", () =>
    Effect.gen(function*() {
      const cs = candidates([{ pricing: price(1e-6, 2e-6) }, { pricing: price(2e-6, 2e-6) }, { pricing: price(1e-6, 2e-6) }])
      const shares = yield* observe(cs, 10_000).pipe(Effect.withRandom(Random.make(13)))
      expect(shares[1]).toBe(0)
      expectClose(shares, [0.5, 0, 0.5])
    }).pipe(Effect.provide(withMeter(Selector.lowestCost()))))

  it.effect("an unpriced deployment ranks last by default, as free with unpriced: \"free\"", () =>
    Effect.gen(function*() {
      // model names the built-in table does not know
      const cs = candidates([{ model: "local-llama" }, { pricing: price(5e-6, 15e-6) }])
      expect(yield* idOf(cs).pipe(Effect.provide(withMeter(Selector.lowestCost())))).toBe("d1")
      expect(yield* idOf(cs).pipe(Effect.provide(withMeter(Selector.lowestCost({ unpriced: "free" }))))).toBe("d0")
      // priced at 0 explicitly: free either way
      const zero = candidates([{ pricing: price(0, 0) }, { pricing: price(5e-6, 15e-6) }])
      expect(yield* idOf(zero).pipe(Effect.provide(withMeter(Selector.lowestCost())))).toBe("d0")
      // only unpriced ones: at random
      const none = candidates([{ model: "x" }, { model: "y" }])
      const shares = yield* observe(none, 4_000).pipe(
        Effect.provide(withMeter(Selector.lowestCost())),
        Effect.withRandom(Random.make(2))
      )
      expectClose(shares, [0.5, 0.5], 0.03)
    }))

  it.effect("uses the CostMeter's prices: its price table and the built-in one", () =>
    Effect.gen(function*() {
      // gpt-4o-mini is cheaper than gpt-4o in the built-in table; "house" is priced by the meter
      const cs = candidates([{ model: "gpt-4o" }, { model: "gpt-4o-mini" }, { model: "house" }])
      expect(yield* idOf(cs).pipe(Effect.provide(withMeter(Selector.lowestCost())))).toBe("d1")
      const priced = withMeter(Selector.lowestCost(), { house: { input_cost_per_token: 1e-9, output_cost_per_token: 1e-9 } })
      expect(yield* idOf(cs).pipe(Effect.provide(priced))).toBe("d2")
    }))

  it.effect("through the router (with Router.defaults' CostMeter), requests go to the cheapest available", () =>
    Effect.gen(function*() {
      expect(yield* servedBy()).toBe("cheap")
      expect(yield* servedBy({ max_tokens: 10 })).toBe("cheap")
    }).pipe(
      Effect.provide(
        routedWith(Selector.lowestCost(), [
          { id: "dear", group: "g", provider: fake, model: "m", pricing: price(10e-6, 30e-6) },
          { id: "cheap", group: "g", provider: fake, model: "m", pricing: price(0.1e-6, 0.4e-6) },
          { id: "mid", group: "g", provider: fake, model: "m", pricing: price(1e-6, 3e-6) }
        ])
      )
    ))
})

// -------------------------------------------------------------------------------------------

describe("options are validated", () => {
  const refused = <E>(layer: Layer.Layer<Selector.Selector, E, CostMeter.CostMeter>) =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Effect.provide(Selector.Selector, withMeter(layer)))
      if (!Exit.isFailure(exit)) throw new Error("expected the layer to fail")
      const error = yield* Effect.flip(Effect.provide(Selector.Selector, withMeter(layer)))
      expect((error as { _tag: string })._tag).toBe("InvalidConfig")
      return (error as unknown as { issues: ReadonlyArray<{ path: string; message: string }> }).issues
    })

  it.effect("bad usageBased options fail with InvalidConfig naming each field", () =>
    Effect.gen(function*() {
      const issues = yield* refused(
        Selector.usageBased({ upstream: "yes" as unknown as boolean, upstreamMaxAge: "soon" as never })
      )
      expect(issues.map((i) => i.path).sort()).toEqual(["Selector.usageBased.upstream", "Selector.usageBased.upstreamMaxAge"])
      expect((yield* refused(Selector.usageBased({ upstreamMaxAge: 0 })))[0].message).toMatch(/positive/)
      for (const sample of [0, 2.5, "some"]) {
        const bad = yield* refused(Selector.usageBased({ sample: sample as never }))
        expect(bad.map((i) => i.path)).toEqual(["Selector.usageBased.sample"])
      }
      const unknown = yield* refused(Selector.usageBased({ window: "1 minute" } as never))
      expect(unknown[0].path).toBe("Selector.usageBased.window")
    }))

  it.effect("bad lowestCost options fail with InvalidConfig naming each field", () =>
    Effect.gen(function*() {
      const issues = yield* refused(Selector.lowestCost({ outputTokens: -1, unpriced: "first" as never }))
      expect(issues.map((i) => i.path).sort()).toEqual(["Selector.lowestCost.outputTokens", "Selector.lowestCost.unpriced"])
      expect((yield* refused(Selector.lowestCost({ outputTokens: 1.5 })))[0].message).toMatch(/integer/)
    }))

  it.effect("good options and none at all are accepted", () =>
    Effect.gen(function*() {
      for (
        const layer of [
          Selector.usageBased(),
          Selector.usageBased({ upstream: false, upstreamMaxAge: "10 seconds", sample: 16 }),
          Selector.usageBased({ sample: "all" }),
          Selector.lowestCost(),
          Selector.lowestCost({ outputTokens: 0, unpriced: "free" })
        ]
      ) {
        yield* Effect.provide(Selector.Selector, withMeter(layer))
      }
    }))
})

// -------------------------------------------------------------------------------------------

describe("examples/custom-selector.ts", () => {
  it("runs, and its two policies route as it says", async () => {
    const root = path.resolve(__dirname, "..")
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", path.join(root, "examples", "custom-selector.ts")],
      { cwd: root, timeout: 60_000 }
    )
    expect(stdout).toContain("all checks passed")
  }, 60_000)
})
