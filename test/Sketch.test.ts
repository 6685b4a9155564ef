import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { PerformanceObserver } from "node:perf_hooks"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import { mulberry32, normal } from "../src/internal/prng.js"
import { LatencySketch } from "../src/internal/sketch.js"

const QS = [0, 0.5, 0.9, 0.95, 0.99, 1] as const

/** The nearest-rank q-quantile of ascending `sorted`: the r-th smallest, r = max(1, ceil(q·n)). */
const nearestRank = (sorted: ReadonlyArray<number>, q: number): number =>
  sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1]

const clampTo = (sketch: LatencySketch) => (x: number): number => Math.min(sketch.maxMs, Math.max(sketch.minMs, x))

/**
 * The sketch's guarantee for one q: within `a` of the nearest-rank quantile of the clamped
 * samples, up to floating-point rounding (relative 1e-12).
 */
const expectWithin = (sketch: LatencySketch, now: number, samples: ReadonlyArray<number>, q: number): void => {
  const sorted = samples.map(clampTo(sketch)).sort((a, b) => a - b)
  const exact = nearestRank(sorted, q)
  const got = sketch.quantile(now, q)
  expect(got).toBeDefined()
  const error = Math.abs(got! - exact)
  if (error > sketch.relativeAccuracy * exact * (1 + 1e-12)) {
    expect.fail(`q=${q}: got ${got}, exact ${exact}, relative error ${error / exact} > ${sketch.relativeAccuracy}`)
  }
}

type Kind = "uniform" | "wide-uniform" | "lognormal" | "outliers" | "bimodal" | "constant"

/**
 * `n` samples (ms) of one latency-like distribution, drawn with mulberry32 from `seed`: large
 * sample sets from a seed, so fast-check runs stay fast.
 */
const samplesOf = (kind: Kind, n: number, seed: number): Array<number> => {
  const u = mulberry32(seed)
  const mu = Math.log(20 + u() * 2000)
  const sigma = 0.05 + u() * 1.5
  const logNormal = () => Math.exp(mu + sigma * normal(u))
  const constant = 0.1 + u() * 1000
  const out = new Array<number>(n)
  for (let i = 0; i < n; i++) {
    switch (kind) {
      case "uniform":
        out[i] = 50 + u() * 5_000
        break
      case "wide-uniform":
        out[i] = u() * 700_000 // reaches below minMs and above maxMs
        break
      case "lognormal":
        out[i] = logNormal()
        break
      case "outliers": {
        const r = u()
        // 2 % timeouts (some past maxMs), 1 % cache hits below minMs or zero
        out[i] = r < 0.02 ? 30_000 + u() * 900_000 : r < 0.03 ? u() * 0.1 : logNormal()
        break
      }
      case "bimodal":
        out[i] = u() < 0.8 ? 80 + u() * 40 : 8_000 + u() * 4_000
        break
      case "constant":
        out[i] = constant
        break
    }
  }
  return out
}

/** Within 2 % (the default accuracy) of `target`. */
const expectNear = (got: number | undefined, target: number): void => {
  expect(got).toBeDefined()
  expect(Math.abs(got! - target)).toBeLessThanOrEqual(0.02 * target)
}

const kinds = fc.constantFrom<Kind>("uniform", "wide-uniform", "lognormal", "outliers", "bimodal", "constant")
const accuracies = fc.constantFrom(0.005, 0.01, 0.02, 0.05)

describe("LatencySketch", () => {
  describe("accuracy", () => {
    it("every quantile is within the relative accuracy of the exact nearest-rank quantile", () => {
      fc.assert(
        fc.property(
          kinds,
          fc.integer({ min: 1, max: 3_000 }),
          fc.integer(),
          accuracies,
          fc.double({ min: 0, max: 1, noNaN: true }),
          (kind, n, seed, a, q) => {
            const sketch = new LatencySketch({ relativeAccuracy: a })
            const samples = samplesOf(kind, n, seed)
            const now = 1_700_000_000_000
            for (const x of samples) sketch.add(now, x)
            expect(sketch.count(now)).toBe(n)
            for (const q of QS) expectWithin(sketch, now, samples, q)
            expectWithin(sketch, now, samples, q)
          }
        ),
        { numRuns: 300 }
      )
    })

    it("holds for arbitrary doubles too, out-of-range and infinite ones clamped", () => {
      fc.assert(
        fc.property(
          fc.array(fc.double({ noNaN: true }), { minLength: 1, maxLength: 200 }),
          fc.double({ min: 0, max: 1, noNaN: true }),
          (samples, q) => {
            const sketch = new LatencySketch()
            for (const x of samples) sketch.add(0, x)
            for (const q of QS) expectWithin(sketch, 0, samples, q)
            expectWithin(sketch, 0, samples, q)
          }
        ),
        { numRuns: 500 }
      )
    })

    it("every value of the range, bucket edges included, comes back within the accuracy", () => {
      // A geometric sweep finer than the buckets (about 25 points per bucket) plus every bucket's
      // lower edge and the doubles next to it: where rounding in the bucket index would show.
      const sketch = new LatencySketch()
      const gamma = (1 + sketch.relativeAccuracy) / (1 - sketch.relativeAccuracy)
      const values: Array<number> = []
      for (let x = sketch.minMs; x < sketch.maxMs; x *= 1.0016) values.push(x)
      for (let j = 0; j < sketch.buckets - 2; j++) {
        const edge = sketch.minMs * gamma ** j
        values.push(edge, edge * (1 - 1e-15), edge * (1 + 1e-15))
      }
      values.push(sketch.maxMs * (1 - 1e-15))
      for (const x of values) {
        sketch.reset()
        sketch.add(0, x)
        expectWithin(sketch, 0, [x], 0.5)
      }
    })

    it("quantiles are monotone in q", () => {
      fc.assert(
        fc.property(kinds, fc.integer({ min: 1, max: 500 }), fc.integer(), (kind, n, seed) => {
          const sketch = new LatencySketch()
          for (const x of samplesOf(kind, n, seed)) sketch.add(0, x)
          let previous = 0
          for (let q = 0; q <= 1; q += 0.01) {
            const y = sketch.quantile(0, q)!
            expect(y).toBeGreaterThanOrEqual(previous)
            previous = y
          }
        }),
        { numRuns: 100 }
      )
    })
  })

  describe("range", () => {
    it("clamps out-of-range samples to exactly minMs / maxMs and ignores NaN", () => {
      const sketch = new LatencySketch({ minMs: 1, maxMs: 1_000 })
      for (const x of [0, -5, 0.5, -Infinity]) sketch.add(0, x)
      expect(sketch.quantile(0, 0)).toBe(1)
      expect(sketch.quantile(0, 1)).toBe(1)
      for (const x of [1_000, 5_000, Infinity]) sketch.add(0, x)
      expect(sketch.count(0)).toBe(7)
      expect(sketch.quantile(0, 1)).toBe(1_000)
      expect(sketch.quantile(0, 4 / 7)).toBe(1) // rank 4: the last of the low ones
      expect(sketch.quantile(0, 5 / 7)).toBe(1_000) // rank 5: the first of the high ones
      sketch.add(0, NaN)
      expect(sketch.count(0)).toBe(7)
    })

    it("the default range is 0.1 ms to 10 minutes", () => {
      const sketch = new LatencySketch()
      sketch.add(0, 0.01)
      expect(sketch.quantile(0, 0.5)).toBe(0.1)
      sketch.reset()
      sketch.add(0, 3_600_000)
      expect(sketch.quantile(0, 0.5)).toBe(600_000)
      sketch.reset()
      sketch.add(0, 599_999)
      expectNear(sketch.quantile(0, 0.5), 599_999)
    })
  })

  describe("window", () => {
    it("forgets: a sample is never counted once windowMs old, always while younger than windowMs·(N-1)/N", () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 20_000 }),
          fc.integer({ min: 1, max: 8 }),
          fc.integer({ min: 0, max: 2 ** 44 }),
          fc.integer({ min: 0, max: 200_000 }),
          (subMs, subwindows, t, age) => {
            const windowMs = subMs * subwindows
            const sketch = new LatencySketch({ windowMs, subwindows })
            sketch.add(t, 100)
            const counted = sketch.count(t + age)
            // The exact rule: counted while its sub-window is one of the last `subwindows`.
            expect(counted).toBe(Math.floor((t + age) / subMs) - Math.floor(t / subMs) < subwindows ? 1 : 0)
            if (age >= windowMs) expect(counted).toBe(0)
            if (age * subwindows < windowMs * (subwindows - 1)) expect(counted).toBe(1)
            expect(sketch.quantile(t + age, 0.5)).toBe(counted === 1 ? sketch.quantile(t, 0.5) : undefined)
          }
        ),
        { numRuns: 1_000 }
      )
    })

    it("rotates exactly at sub-window boundaries (defaults: 4 × 15 s)", () => {
      const sketch = new LatencySketch()
      const t0 = 1_700_000_040_000 // a multiple of 15 000
      sketch.add(t0, 100) // sub-window [t0, t0 + 15 s)
      sketch.add(t0 + 14_999, 200) // same sub-window, its last ms
      sketch.add(t0 + 15_000, 300) // the next one
      expect(sketch.count(t0 + 15_000)).toBe(3)
      expect(sketch.count(t0 + 59_999)).toBe(3)
      expect(sketch.count(t0 + 60_000)).toBe(1) // the first sub-window is out, both its samples
      expectNear(sketch.quantile(t0 + 60_000, 0), 300)
      expect(sketch.count(t0 + 74_999)).toBe(1)
      expect(sketch.count(t0 + 75_000)).toBe(0)
      expect(sketch.quantile(t0 + 75_000, 0.5)).toBeUndefined()
      // An add that reuses a slot clears what it held: t0 + 60 s lands in t0's slot.
      sketch.add(t0 + 60_000, 400)
      expect(sketch.count(t0 + 60_000)).toBe(2)
      expectNear(sketch.quantile(t0 + 60_000, 0), 300)
      expectNear(sketch.quantile(t0 + 60_000, 1), 400)
    })

    it("a single sub-window is a tumbling window", () => {
      const sketch = new LatencySketch({ windowMs: 1_000, subwindows: 1 })
      sketch.add(0, 5)
      sketch.add(999, 5)
      expect(sketch.count(999)).toBe(2)
      expect(sketch.count(1_000)).toBe(0)
    })

    it("matches the exact quantiles of the samples in the window over time", () => {
      fc.assert(
        fc.property(
          fc.array(
            fc.tuple(fc.integer({ min: 0, max: 300_000 }), fc.double({ min: 0.05, max: 700_000, noNaN: true })),
            { minLength: 1, maxLength: 400 }
          ),
          fc.integer({ min: 0, max: 100_000 }),
          fc.integer({ min: 1, max: 6 }),
          (timed, after, subwindows) => {
            const windowMs = 60_000
            const subMs = windowMs / subwindows
            const sketch = new LatencySketch({ windowMs, subwindows })
            const sorted = [...timed].sort((x, y) => x[0] - y[0])
            for (const [t, x] of sorted) sketch.add(t, x)
            const now = sorted[sorted.length - 1][0] + after
            const first = Math.floor(now / subMs) - subwindows + 1
            const inWindow = sorted.filter(([t]) => Math.floor(t / subMs) >= first).map(([, x]) => x)
            expect(sketch.count(now)).toBe(inWindow.length)
            if (inWindow.length === 0) expect(sketch.quantile(now, 0.5)).toBeUndefined()
            else for (const q of QS) expectWithin(sketch, now, inWindow, q)
          }
        ),
        { numRuns: 300 }
      )
    })

    it("a deployment that got slow shows it within a sub-window in p95 and within the window in p50", () => {
      const sketch = new LatencySketch()
      const latency = (t: number) => (t < 120_000 ? 100 : 2_000)
      const run = (from: number, to: number) => {
        for (let t = from; t < to; t += 100) sketch.add(t, latency(t))
      }
      run(0, 120_000)
      expectNear(sketch.quantile(119_999, 0.95), 100)
      run(120_000, 135_000)
      // Window [75 s, 135 s): 450 fast samples, 150 slow ones.
      expectNear(sketch.quantile(134_999, 0.5), 100)
      expectNear(sketch.quantile(134_999, 0.95), 2_000)
      run(135_000, 180_000)
      // Window [120 s, 180 s): the fast samples have all left it, down to its minimum.
      expectNear(sketch.quantile(179_999, 0.5), 2_000)
      expectNear(sketch.quantile(179_999, 0), 2_000)
    })

    it("queries are read-only: a query far ahead forgets nothing for a later query at an earlier time", () => {
      const sketch = new LatencySketch()
      sketch.add(1_000, 50)
      expect(sketch.count(10_000_000)).toBe(0)
      expect(sketch.quantile(10_000_000, 0.5)).toBeUndefined()
      expect(sketch.count(1_000)).toBe(1)
      expectNear(sketch.quantile(1_000, 0.5), 50)
    })

    it("reads a clock that steps back (or NaN) as the latest time: nothing wiped, nothing misfiled", () => {
      const sketch = new LatencySketch()
      sketch.add(100_000, 10)
      sketch.add(40_000, 20) // 60 s back: a naive ring would reuse, and wipe, the current slot
      sketch.add(NaN, 30)
      expect(sketch.count(100_000)).toBe(3)
      expect(sketch.count(0)).toBe(3) // an earlier query time reads as the latest add's too
      // All three are filed under the sub-window of 100 000 and leave with it.
      expect(sketch.count(119_999)).toBe(3)
      expect(sketch.count(150_000)).toBe(0)
      // With nothing filed yet, an add with no usable time is dropped rather than misfiled.
      const fresh = new LatencySketch()
      fresh.add(NaN, 1)
      fresh.add(Infinity, 1)
      expect(fresh.count(0)).toBe(0)
    })

    it("reset forgets every sample and the latest time", () => {
      const sketch = new LatencySketch()
      sketch.add(1_000_000, 100)
      sketch.reset()
      expect(sketch.count(1_000_000)).toBe(0)
      expect(sketch.quantile(1_000_000, 0.5)).toBeUndefined()
      sketch.add(0, 7) // not read as 1 000 000 any more
      expect(sketch.count(0)).toBe(1)
      expect(sketch.count(60_000)).toBe(0)
    })
  })

  describe("options and arguments", () => {
    it("rejects nonsense options at construction with a clear Error", () => {
      const bad = [
        { windowMs: 0 },
        { windowMs: -1 },
        { windowMs: NaN },
        { windowMs: Infinity },
        { subwindows: 0 },
        { subwindows: 2.5 },
        { subwindows: 65 },
        { relativeAccuracy: 0 },
        { relativeAccuracy: 1 },
        { relativeAccuracy: -0.1 },
        { relativeAccuracy: NaN },
        { minMs: 0 },
        { minMs: -1 },
        { minMs: Infinity },
        { maxMs: 0.1 },
        { maxMs: 0.05 },
        { maxMs: Infinity },
        { maxMs: NaN },
        { relativeAccuracy: 1e-5 } // millions of buckets
      ]
      for (const options of bad) {
        expect(() => new LatencySketch(options), JSON.stringify(options)).toThrow(/^LatencySketch: /)
      }
      expect(() => new LatencySketch({ relativeAccuracy: 1e-5 })).toThrow(/buckets per sub-window/)
      expect(() => new LatencySketch({ windowMs: 1, subwindows: 64, relativeAccuracy: 0.5, minMs: 1e-9, maxMs: 1e12 }))
        .not.toThrow()
    })

    it("throws a RangeError for q outside [0, 1] or NaN, even when empty", () => {
      const sketch = new LatencySketch()
      for (const q of [-0.01, 1.01, NaN, Infinity]) {
        expect(() => sketch.quantile(0, q)).toThrow(RangeError)
      }
      sketch.add(0, 10)
      expect(() => sketch.quantile(0, 2)).toThrow(RangeError)
      expect(sketch.quantile(0, 0)).toBeDefined()
      expect(sketch.quantile(0, 1)).toBeDefined()
    })
  })

  describe("cost", () => {
    it("memory with the defaults: 393 buckets × 4 sub-windows of Uint32, 6 408 bytes of arrays in all", () => {
      const sketch = new LatencySketch()
      // ceil(ln(600 000 / 0.1) / ln(1.02 / 0.98)) = 391 log buckets, plus the min and max buckets.
      expect(sketch.buckets).toBe(393)
      expect(sketch.subwindows).toBe(4)
      // counts 4 × 393 × 4 B, ids and totals 4 × 8 B each, lo / hi / live 4 × 4 B each, latest 8 B.
      expect(sketch.byteLength).toBe(4 * 393 * 4 + 2 * 4 * 8 + 3 * 4 * 4 + 8)
      expect(sketch.byteLength).toBe(6_408)
      // Two sub-windows (the smallest rotating setup) halve it.
      expect(new LatencySketch({ subwindows: 2 }).byteLength).toBe(2 * 393 * 4 + 2 * 2 * 8 + 3 * 2 * 4 + 8)
    })

    it("add allocates nothing: no garbage collection during millions of adds", async () => {
      // Any per-add allocation (even one boxed double, 16 B) would fill the young generation many
      // times over in 4 million adds and trigger scavenges; none may happen.
      v8.setFlagsFromString("--expose-gc")
      const gc = vm.runInNewContext("gc") as () => void
      const sketch = new LatencySketch()
      const values = new Float64Array(4_096)
      const u = mulberry32(1)
      for (let i = 0; i < values.length; i++) values[i] = Math.exp(Math.log(300) + 1.2 * (u() - 0.5) * 4)
      // Starts on a multiple of the sub-window so the run rotates the same way each time.
      const loop = (n: number, start: number) => {
        for (let i = 0; i < n; i++) sketch.add(start + i * 0.25, values[i & 4_095])
      }
      // Warm up the same function so the measured run is optimized code from its first iteration.
      for (let r = 0; r < 20; r++) loop(100_000, 0)
      const collections: Array<{ readonly start: number }> = []
      const observer = new PerformanceObserver((list) => {
        for (const e of list.getEntries()) collections.push({ start: e.startTime })
      })
      observer.observe({ entryTypes: ["gc"] })
      gc()
      const started = performance.now()
      const t0 = 1_700_000_040_000 // epoch ms, a multiple of the 15 s sub-window
      loop(4_000_000, t0) // 1 000 s of samples: 66 rotations
      const ended = performance.now()
      await new Promise((resolve) => setTimeout(resolve, 50))
      observer.disconnect()
      expect(collections.filter((c) => c.start >= started && c.start <= ended)).toEqual([])
      expect(sketch.count(t0 + 4_000_000 * 0.25)).toBeGreaterThan(0)
    })
  })
})

describe("LatencySketch.quantileAcross", () => {
  it("is the quantile of the union of the sketches' samples, within the accuracy", () => {
    const a = new LatencySketch()
    const b = new LatencySketch()
    const all: Array<number> = []
    for (let i = 1; i <= 900; i++) {
      a.add(1_000, i)
      all.push(i)
    }
    for (let i = 0; i < 100; i++) {
      b.add(1_000, 20_000)
      all.push(20_000)
    }
    all.sort((x, y) => x - y)
    for (const q of [0.5, 0.9, 0.95, 0.99]) {
      const exact = all[Math.max(1, Math.ceil(q * all.length)) - 1]
      const got = LatencySketch.quantileAcross([a, b], 1_000, q)!
      expect(Math.abs(got - exact)).toBeLessThanOrEqual(0.02 * exact * (1 + 1e-12))
    }
    expect(LatencySketch.quantileAcross([new LatencySketch(), new LatencySketch()], 1_000, 0.5)).toBeUndefined()
    expect(() => LatencySketch.quantileAcross([a, new LatencySketch({ relativeAccuracy: 0.05 })], 1_000, 0.5)).toThrow(/same options/)
  })
})
