/**
 * Latency sketch micro-benchmark: nanoseconds per `add` and per `quantile` / `count` of the
 * per-deployment `LatencySketch` (src/internal/sketch.ts), default options (1 minute window in
 * 4 sub-windows, 2 % relative accuracy, 0.1 ms to 10 minutes: 393 buckets per sub-window).
 *
 *   npx tsx bench/sketch.ts              (about 5 s; BENCH_ROUNDS=n for more or fewer rounds)
 *
 * Method. One sample is one batch of `K` calls in a plain `for` loop, timed with
 * `performance.now()`; the sample is the batch time / K in ns (the loop's own cost included,
 * about 1 ns). Variants are interleaved round-robin, the starting one rotating, so machine noise,
 * GC and JIT state hit them alike; median (and p99 of the batch means) over the rounds.
 *
 * - `add`: `now` advances 1 ms per sample (a sub-window rotation every 15 000 adds, whose clear
 *   is amortized in), latencies lognormal around 300 ms.
 * - `quantile` / `count`, two fillings of the whole window (samples spread over its 4 sub-windows,
 *   so every query merges 4 arrays): `typical`, 20 000 lognormal samples (median 300 ms, σ 0.6,
 *   about 140 buckets in use); `full range`, log-uniform over 0.1 ms .. 10 min (all 393 buckets in
 *   use: the worst case of the walk).
 *
 * Times depend on the machine and its load (the header prints the load average).
 */
import { performance } from "node:perf_hooks"
import { mulberry32, normal } from "../src/internal/prng.js"
import { LatencySketch } from "../src/internal/sketch.js"
import { describeMachine, fmt, log, lpad, machine, pad, statsOf } from "./harness.js"

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 41)
const T0 = 1_700_000_040_000 // epoch ms, on a sub-window boundary

// Seeded samples (mulberry32), so every run times the same samples.

const lognormal = (n: number, median: number, sigma: number, seed: number): Float64Array => {
  const u = mulberry32(seed)
  const out = new Float64Array(n)
  for (let i = 0; i < n; i++) out[i] = median * Math.exp(sigma * normal(u))
  return out
}

const logUniform = (n: number, min: number, max: number, seed: number): Float64Array => {
  const u = mulberry32(seed)
  const out = new Float64Array(n)
  for (let i = 0; i < n; i++) out[i] = min * Math.exp(u() * Math.log(max / min))
  return out
}

/** A sketch holding `values` spread evenly over the last minute before `T0 + 60 s`. */
const filled = (values: Float64Array): LatencySketch => {
  const sketch = new LatencySketch()
  for (let i = 0; i < values.length; i++) sketch.add(T0 + (i * 60_000) / values.length, values[i])
  return sketch
}

let sink = 0

interface Variant {
  readonly label: string
  readonly batch: number
  /** Runs the batch, returns ns per call. */
  readonly run: () => number
}

const addVariant = (): Variant => {
  const sketch = new LatencySketch()
  const values = lognormal(1 << 16, 300, 0.6, 1)
  const mask = values.length - 1
  const batch = 200_000
  let now = T0
  return {
    label: "add (1 ms apart, rotating)",
    batch,
    run: () => {
      const started = performance.now()
      for (let i = 0; i < batch; i++) sketch.add(now + i, values[i & mask])
      const ns = ((performance.now() - started) * 1e6) / batch
      now += batch
      return ns
    }
  }
}

const queryVariant = (label: string, sketch: LatencySketch, q: number | "count"): Variant => {
  const now = T0 + 59_999 // the filled window's last ms: all 4 sub-windows live
  const batch = 20_000
  return {
    label,
    batch,
    run: () => {
      let acc = 0
      const started = performance.now()
      if (q === "count") for (let i = 0; i < batch; i++) acc += sketch.count(now)
      else for (let i = 0; i < batch; i++) acc += sketch.quantile(now, q)!
      const ns = ((performance.now() - started) * 1e6) / batch
      sink += acc
      return ns
    }
  }
}

const main = (): void => {
  log(`# LatencySketch micro-benchmark`)
  log(describeMachine(machine()))
  const typical = filled(lognormal(20_000, 300, 0.6, 2))
  const full = filled(logUniform(20_000, 0.1, 600_000, 3))
  log(
    `defaults: ${typical.buckets} buckets × ${typical.subwindows} sub-windows, ` +
      `${typical.byteLength} B of arrays per sketch; ${ROUNDS} rounds`
  )
  const variants: ReadonlyArray<Variant> = [
    addVariant(),
    queryVariant("quantile p50, typical", typical, 0.5),
    queryVariant("quantile p95, typical", typical, 0.95),
    queryVariant("quantile p99, typical", typical, 0.99),
    queryVariant("count, typical", typical, "count"),
    queryVariant("quantile p50, full range", full, 0.5),
    queryVariant("quantile p95, full range", full, 0.95),
    queryVariant("quantile p99, full range", full, 0.99)
  ]
  // Warm-up: JIT every variant before timing.
  for (let r = 0; r < 5; r++) for (const v of variants) v.run()
  const samples = variants.map(() => [] as Array<number>)
  const n = variants.length
  for (let r = 0; r < ROUNDS; r++) {
    for (let j = 0; j < n; j++) {
      const i = (r + j) % n
      samples[i].push(variants[i].run())
    }
  }
  log()
  log(`${pad("variant", 30)} ${lpad("median ns", 10)} ${lpad("p99 ns", 10)} ${lpad("min ns", 10)} ${lpad("batch", 8)}`)
  variants.forEach((v, i) => {
    const s = statsOf(samples[i])
    const cells = [s.median, s.p99, s.min].map((x) => lpad(fmt(x, 1), 10)).join(" ")
    log(`${pad(v.label, 30)} ${cells} ${lpad(String(v.batch), 8)}`)
  })
  log()
  log(`(sink ${sink > 0 ? "ok" : "?"})`)
}

main()
