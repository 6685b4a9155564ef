/**
 * Routing quality (issue 9): how each selection strategy routes a simulated pool of 4
 * deployments in one group, on a TestClock, when one deployment degrades to 10x its latency and
 * another fails for a while; next to an oracle that always knows the fastest healthy one.
 *
 *   npm run bench:routing          (5 simulated minutes, 20 requests a second, per strategy)
 *
 * Knobs for tuning (the defaults are the published run): `BENCH_SEED=<n>` another seed;
 * `BENCH_DEBUG=1` each strategy's traffic split and latency per 10 simulated seconds;
 * `BENCH_VARIANTS='ll={"buffer":0.2};pe={"decay":"30 seconds"}'` extra rows of lowest latency
 * (`ll`) or peak EWMA (`pe`) with those options; `BENCH_ONLY=oracle,lowestLatency` only those rows.
 *
 * The pool. Every call's latency is a lognormal draw (Box-Muller over a mulberry32 stream seeded
 * from the deployment and its call index: the same draws in every run), in whole ms, times a
 * load factor: a deployment serves `CAPACITY` calls at once at full speed, and beyond that
 * slows down in proportion (latency x (calls in flight, this one included) / CAPACITY), so
 * herding every request onto one deployment has a cost, as with a real replica.
 *
 *   a  median 300 ms, sigma 0.35   the fastest; from 120 s to 240 s every call takes 10x
 *   b  median 450 ms, sigma 0.40
 *   c  median 550 ms, sigma 0.60   a heavy tail
 *   d  median 380 ms, sigma 0.30   from 160 s to 190 s every call fails (503 after 100 ms)
 *
 * So while a is degraded, d is the fastest healthy deployment, except while it fails: then b.
 *
 * The load. Requests arrive as a Poisson process of 20 per simulated second (seeded), for 5
 * simulated minutes (about 6,000 requests per strategy), each `router.chat` in its own fiber.
 *
 * The strategies: every `Selector` strategy the package exports, each provided to an otherwise
 * default router (`Router.defaults`: 2 retries, at once on another deployment; the default
 * breaker; in-memory state), all on the same seeded `Random`. The oracle is a `Selector.make`
 * that knows the simulation: it picks the candidate with the lowest expected latency at that
 * instant (its lognormal's mean, times 10 while degraded, times its load factor with this call)
 * among those not failing at that instant. It runs through the same router.
 *
 * Figures, per strategy:
 * - p50 / p99: latency of the successful requests, from arrival to answer (retries included);
 * - error rate: failed requests / requests;
 * - degraded share: the share of the calls made while a was degraded (120 s to 240 s) that
 *   went to a;
 * - shift: how long after a degraded until 90% of its traffic had moved off it for good: the
 *   first time s (to 0.1 s) from which a's share of the calls in every 5 s window up to 240 s is
 *   at most 10% of its share in the minute before it degraded ("a before"). "never" when that
 *   does not happen (a strategy that keeps sending a its share, or probes it too often).
 * Targets (issue 9): the latency-aware strategies (lowest latency, peak EWMA) keep p99 within
 * 1.5x of the oracle's and shift within 10 simulated seconds.
 *
 * How the TestClock is driven: see bench/sim.ts (a drain-first scheduler; the stock TestClock's
 * sleeps and adjust loop). The whole run is deterministic: the same figures on every run.
 *
 * The last line printed is one JSON object: `{"strategies":[{"name","p50Ms","p99Ms","errorRate",
 * "degradedShare","shiftSeconds"}...]}` (the oracle as `"oracle"`; `shiftSeconds` null for
 * never), plus `targets`, `machine` and the scenario.
 */
import { performance } from "node:perf_hooks"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as TestClock from "effect/TestClock"
import { type Provider, Router, Selector } from "../src/index.js"
import { normal } from "../src/internal/prng.js"
import { FakeProvider } from "../src/testing.js"
import { describeMachine, fmt, log, lpad, machine as machineInfo, pad, quantile, round2 } from "./harness.js"
import { DrainFirstScheduler, drawsFor, driveArrivals, poissonGaps, runSimulation } from "./sim.js"

// -------------------------------------------------------------------------------------------
// The scenario
// -------------------------------------------------------------------------------------------

const SEED = process.env.BENCH_SEED === undefined ? 0x5e1ec7 : Number(process.env.BENCH_SEED)
const ARRIVALS_PER_SEC = 20
const DURATION_MS = 300_000
const REQUESTS = Math.round((ARRIVALS_PER_SEC * DURATION_MS) / 1000)
/** Calls a deployment serves at once at full speed. */
const CAPACITY = 16
const DEGRADE_FROM_MS = 120_000
const DEGRADE_TO_MS = 240_000
const DEGRADE_FACTOR = 10
const FAIL_FROM_MS = 160_000
const FAIL_TO_MS = 190_000
const FAIL_LATENCY_MS = 100
/** The minute before the degradation: the degraded deployment's share to compare with. */
const BEFORE_MS = 60_000
const SHIFT_FRACTION = 0.1
const SHIFT_STEP_MS = 100
const SHIFT_WINDOW_MS = 5_000
const TARGET_P99_X = 1.5
const TARGET_SHIFT_S = 10
const STEP_MS = 1_000
/** `BENCH_DEBUG=1`: each strategy's traffic split and latency per 10 simulated seconds too. */
const DEBUG = process.env.BENCH_DEBUG === "1"

interface Spec {
  readonly id: string
  readonly medianMs: number
  readonly sigma: number
}

const specs: ReadonlyArray<Spec> = [
  { id: "a", medianMs: 300, sigma: 0.35 },
  { id: "b", medianMs: 450, sigma: 0.4 },
  { id: "c", medianMs: 550, sigma: 0.6 },
  { id: "d", medianMs: 380, sigma: 0.3 }
]
const DEGRADED = 0 // a
const FAILING = 3 // d
const indexOf = new Map(specs.map((s, i) => [s.id, i]))
const GROUP = "pool"
const body: Provider.ChatRequest = { model: GROUP, messages: [{ role: "user", content: "hi" }] }

const degraded = (d: number, now: number) => d === DEGRADED && now >= DEGRADE_FROM_MS && now < DEGRADE_TO_MS
const failing = (d: number, now: number) => d === FAILING && now >= FAIL_FROM_MS && now < FAIL_TO_MS

/** The lognormal draw of call `callIndex` of deployment `d`, in whole ms (at least 1). */
const drawMs = (d: number, callIndex: number): number => {
  const s = specs[d]
  return Math.max(1, Math.round(s.medianMs * Math.exp(s.sigma * normal(drawsFor(SEED, d, callIndex)))))
}

const loadFactor = (withThisCall: number) => Math.max(1, withThisCall / CAPACITY)

/** The lognormal's mean. */
const meanMs = (d: number) => specs[d].medianMs * Math.exp((specs[d].sigma * specs[d].sigma) / 2)

// -------------------------------------------------------------------------------------------
// One run
// -------------------------------------------------------------------------------------------

/** The calls in flight on each deployment, from the ends of the calls the fake started. */
class InFlight {
  private readonly ends: Array<Array<number>> = specs.map(() => [])
  count(d: number, now: number): number {
    const ends = this.ends[d]
    let k = 0
    for (let i = 0; i < ends.length; i++) if (ends[i] > now) ends[k++] = ends[i]
    ends.length = k
    return k
  }
  add(d: number, end: number): void {
    this.ends[d].push(end)
  }
}

interface Strategy {
  readonly name: string
  readonly latencyAware: boolean
  readonly layer: (world: InFlight) => Layer.Layer<Selector.Selector, unknown, any>
}

const oracle: Strategy = {
  name: "oracle",
  latencyAware: false,
  layer: (world) =>
    Selector.make((candidates) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        let best = candidates[0]
        let bestMs = Infinity
        for (const c of candidates) {
          const d = indexOf.get(c.deployment.id)!
          if (failing(d, now)) continue
          const ms = meanMs(d) * (degraded(d, now) ? DEGRADE_FACTOR : 1) * loadFactor(world.count(d, now) + 1)
          if (ms < bestMs) {
            bestMs = ms
            best = c
          }
        }
        return best
      })
    )
}

/** Every strategy the package exports (the load and cost ones when they are there). */
const strategies = (): ReadonlyArray<Strategy> => {
  const out: Array<Strategy> = [
    { name: "weighted", latencyAware: false, layer: () => Selector.weighted },
    { name: "roundRobin", latencyAware: false, layer: () => Selector.roundRobin },
    { name: "lowestLatency", latencyAware: true, layer: () => Selector.lowestLatency() },
    { name: "peakEwma", latencyAware: true, layer: () => Selector.peakEwma() }
  ]
  for (const variant of (process.env.BENCH_VARIANTS ?? "").split(";").filter((v) => v !== "")) {
    const at = variant.indexOf("=")
    const kind = variant.slice(0, at)
    const json = variant.slice(at + 1)
    const options = JSON.parse(json)
    out.push({
      name: `${kind}${json}`,
      latencyAware: true,
      layer: () => (kind === "ll" ? Selector.lowestLatency(options) : Selector.peakEwma(options))
    })
  }
  const more = Selector as unknown as Record<string, unknown>
  for (const name of ["leastBusy", "usageBased", "lowestCost"]) {
    const found = more[name]
    if (found === undefined) continue
    out.push({
      name,
      latencyAware: false,
      layer: () =>
        (typeof found === "function" ? (found as () => unknown)() : found) as Layer.Layer<Selector.Selector, unknown, any>
    })
  }
  out.push(oracle)
  const only = process.env.BENCH_ONLY
  return only === undefined ? out : out.filter((s) => only.split(",").includes(s.name))
}

interface Result {
  readonly name: string
  readonly latencyAware: boolean
  readonly p50Ms: number
  readonly p99Ms: number
  readonly meanMs: number
  readonly errorRate: number
  readonly beforeShare: number
  readonly degradedShare: number
  readonly shiftSeconds: number | null
  /** The degraded deployment's share per period (see `PERIODS`). */
  readonly timeline: ReadonlyArray<number>
  readonly callsPerRequest: number
  readonly wallSec: number
  /** Per 10 s: each deployment's share of the calls, and the p50 / p99 of the requests that arrived then. */
  readonly detail: ReadonlyArray<string>
}

/** Periods of the timeline printed for each strategy: a's share of the calls in each. */
const PERIODS: ReadonlyArray<readonly [number, number]> = [
  [60_000, 120_000],
  [120_000, 121_000],
  [121_000, 122_000],
  [122_000, 125_000],
  [125_000, 130_000],
  [130_000, 240_000],
  [245_000, 300_000]
]

const gaps = poissonGaps(SEED, REQUESTS, ARRIVALS_PER_SEC)

const run = async (strategy: Strategy): Promise<Result> => {
  const started = performance.now()
  const world = new InFlight()
  const callAt: Array<number> = []
  const callOn: Array<number> = []
  const fake = FakeProvider.unsafeMake({
    record: false,
    latency: (callIndex, context) => {
      const d = indexOf.get(context.target.deploymentId)!
      const now = context.now
      callAt.push(now)
      callOn.push(d)
      const ms = failing(d, now)
        ? FAIL_LATENCY_MS
        : Math.max(1, Math.round(drawMs(d, callIndex) * (degraded(d, now) ? DEGRADE_FACTOR : 1) * loadFactor(world.count(d, now) + 1)))
      world.add(d, now + ms)
      return ms
    },
    failure: (_callIndex, now, context) => (failing(indexOf.get(context.target.deploymentId)!, now) ? 503 : undefined)
  })
  const RouterLive = Router.layer({
    deployments: specs.map((s) => ({ id: s.id, group: GROUP, provider: fake, model: `model-${s.id}` }))
  }).pipe(Layer.provide(strategy.layer(world)), Layer.provide(Router.defaults))

  const latencies: Array<number> = []
  const arrivedAt: Array<number> = []
  let failures = 0
  let done = 0
  const scheduler = new DrainFirstScheduler()
  const simulate = (clock: TestClock.TestClock) =>
    Effect.gen(function*() {
      const router = yield* Router.Router
      const request = Effect.suspend(() => {
        const t0 = clock.unsafeCurrentTimeMillis()
        return Effect.matchEffect(router.chat(body), {
          onFailure: () =>
            Effect.sync(() => {
              failures++
              done++
            }),
          onSuccess: () =>
            Effect.sync(() => {
              latencies.push(clock.unsafeCurrentTimeMillis() - t0)
              arrivedAt.push(t0)
              done++
            })
        })
      })
      yield* driveArrivals(clock, {
        gaps,
        request: () => request,
        stepMs: STEP_MS,
        horizonMs: DURATION_MS + 10 * 60_000,
        finished: () => done >= REQUESTS
      })
    })
  await runSimulation(scheduler, SEED, (clock) => Effect.provide(simulate(clock), RouterLive) as Effect.Effect<void, unknown>)
  if (done < REQUESTS) throw new Error(`bench: ${strategy.name}: only ${done} of ${REQUESTS} requests answered`)

  // a's share of the calls started in [from, to)
  const share = (from: number, to: number) => {
    let all = 0
    let onA = 0
    for (let i = 0; i < callAt.length; i++) {
      if (callAt[i] < from || callAt[i] >= to) continue
      all++
      if (callOn[i] === DEGRADED) onA++
    }
    return all === 0 ? 0 : onA / all
  }
  const beforeShare = share(DEGRADE_FROM_MS - BEFORE_MS, DEGRADE_FROM_MS)
  // The shift: the first time from which every 5 s window up to the end of the degradation
  // sends a at most 10% of its share before.
  let shiftSeconds: number | null = null
  if (beforeShare > 0) {
    let lastOver = -1
    for (let t = DEGRADE_FROM_MS; t + SHIFT_WINDOW_MS <= DEGRADE_TO_MS; t += SHIFT_STEP_MS) {
      if (share(t, t + SHIFT_WINDOW_MS) > SHIFT_FRACTION * beforeShare) lastOver = t
    }
    if (lastOver < 0) shiftSeconds = 0
    else if (lastOver + SHIFT_STEP_MS + SHIFT_WINDOW_MS <= DEGRADE_TO_MS) {
      shiftSeconds = Math.round((lastOver + SHIFT_STEP_MS - DEGRADE_FROM_MS) / SHIFT_STEP_MS) / (1000 / SHIFT_STEP_MS)
    }
  }
  const detail: Array<string> = []
  if (DEBUG) {
    for (let from = 0; from < DURATION_MS; from += 10_000) {
      const counts = specs.map(() => 0)
      let all = 0
      for (let i = 0; i < callAt.length; i++) {
        if (callAt[i] >= from && callAt[i] < from + 10_000) {
          counts[callOn[i]]++
          all++
        }
      }
      const window = latencies.filter((_, i) => arrivedAt[i] >= from && arrivedAt[i] < from + 10_000).sort((x, y) => x - y)
      detail.push(
        `${lpad(String(from / 1000), 4)} s ${specs.map((sp, d) => `${sp.id} ${lpad(pct(counts[d] / Math.max(1, all), 0), 4)}`).join(" ")}` +
          `  p50 ${lpad(fmt(quantile(window, 0.5), 0), 6)} p99 ${lpad(fmt(quantile(window, 0.99), 0), 6)}`
      )
    }
  }
  const sorted = latencies.sort((x, y) => x - y)
  return {
    name: strategy.name,
    latencyAware: strategy.latencyAware,
    p50Ms: quantile(sorted, 0.5),
    p99Ms: quantile(sorted, 0.99),
    meanMs: sorted.reduce((a, b) => a + b, 0) / sorted.length,
    errorRate: failures / REQUESTS,
    beforeShare,
    degradedShare: share(DEGRADE_FROM_MS, DEGRADE_TO_MS),
    shiftSeconds,
    timeline: PERIODS.map(([from, to]) => share(from, to)),
    callsPerRequest: callAt.length / REQUESTS,
    wallSec: (performance.now() - started) / 1000,
    detail
  }
}

// -------------------------------------------------------------------------------------------
// Main
// -------------------------------------------------------------------------------------------

const row = (cells: ReadonlyArray<string>, widths: ReadonlyArray<number>) =>
  cells.map((c, i) => (i === 0 ? pad(c, widths[i]) : lpad(c, widths[i]))).join(" ")
const pct = (x: number, digits = 1) => `${fmt(100 * x, digits)}%`

const main = async () => {
  const startedAll = performance.now()
  const machine = machineInfo()
  log("effect-llm-router: routing quality (simulated pool on a TestClock)")
  log(describeMachine(machine))
  log(
    `${REQUESTS.toLocaleString("en-US")} requests per strategy, Poisson ${ARRIVALS_PER_SEC}/s over ${DURATION_MS / 1000} simulated s; ` +
      `4 deployments, lognormal latency (${specs.map((s) => `${s.id} ${s.medianMs} ms/${s.sigma}`).join(", ")}), ` +
      `full speed up to ${CAPACITY} calls at once each; a x${DEGRADE_FACTOR} from ${DEGRADE_FROM_MS / 1000} s to ${DEGRADE_TO_MS / 1000} s; ` +
      `d fails (503) from ${FAIL_FROM_MS / 1000} s to ${FAIL_TO_MS / 1000} s; seed ${SEED}`
  )
  log()
  const results: Array<Result> = []
  for (const strategy of strategies()) {
    const result = await run(strategy)
    results.push(result)
    log(`  ${pad(strategy.name, 14)} ${fmt(result.wallSec, 1)} s wall, ${fmt(result.callsPerRequest, 3)} calls per request`)
  }
  log()
  const o = results.find((r) => r.name === "oracle")!
  const widths = [14, 8, 8, 8, 8, 10, 10, 9, 9]
  const header = row(["strategy", "p50 ms", "p99 ms", "p99/or", "errors", "a before", "a during", "shift s", "targets"], widths)
  log(header)
  log("-".repeat(header.length))
  const verdicts: Array<{ name: string; p99Met: boolean; shiftMet: boolean }> = []
  for (const r of results) {
    const p99x = r.p99Ms / o.p99Ms
    const p99Met = p99x <= TARGET_P99_X
    const shiftMet = r.shiftSeconds !== null && r.shiftSeconds <= TARGET_SHIFT_S
    if (r.latencyAware) verdicts.push({ name: r.name, p99Met, shiftMet })
    log(row([
      r.name,
      fmt(r.p50Ms, 0),
      fmt(r.p99Ms, 0),
      `${fmt(p99x, 2)}x`,
      pct(r.errorRate, 2),
      pct(r.beforeShare),
      pct(r.degradedShare),
      r.shiftSeconds === null ? "never" : fmt(r.shiftSeconds, 1),
      r.latencyAware ? (p99Met && shiftMet ? "met" : "NOT met") : ""
    ], widths))
  }
  log(
    "p99/or: p99 over the oracle's; a before: a's share of the calls in the minute before it degraded; a during: while degraded " +
      "(120-240 s); shift: seconds until a's share in every 5 s window to 240 s is at most 10% of its share before"
  )
  log()
  log(`a's share of the calls, by period (s): ${PERIODS.map(([f, t]) => `${f / 1000}-${t / 1000}`).join(" | ")}`)
  for (const r of results) log(`  ${pad(r.name, 14)} ${r.timeline.map((x) => lpad(pct(x), 6)).join(" ")}`)
  log()
  if (DEBUG) {
    for (const r of results) {
      log(r.name)
      for (const line of r.detail) log(`  ${line}`)
    }
    log()
  }
  for (const v of verdicts) {
    const r = results.find((x) => x.name === v.name)!
    log(
      `target: ${pad(v.name, 14)} p99 ${fmt(r.p99Ms, 0)} ms <= ${TARGET_P99_X}x oracle (${fmt(TARGET_P99_X * o.p99Ms, 0)} ms): ` +
        `${v.p99Met ? "met" : "NOT met"}; 90% of traffic off the degraded deployment within ${TARGET_SHIFT_S} s ` +
        `(${r.shiftSeconds === null ? "never" : `${fmt(r.shiftSeconds, 1)} s`}): ${v.shiftMet ? "met" : "NOT met"}`
    )
  }
  const seconds = (performance.now() - startedAll) / 1000
  log(`wall time ${fmt(seconds, 1)} s`)
  log(JSON.stringify({
    strategies: results.map((r) => ({
      name: r.name,
      p50Ms: round2(r.p50Ms),
      p99Ms: round2(r.p99Ms),
      errorRate: Number(r.errorRate.toFixed(4)),
      degradedShare: Number(r.degradedShare.toFixed(4)),
      shiftSeconds: r.shiftSeconds
    })),
    targets: {
      p99WithinX: TARGET_P99_X,
      shiftWithinSeconds: TARGET_SHIFT_S,
      results: verdicts.map((v) => ({ name: v.name, p99: v.p99Met, shift: v.shiftMet }))
    },
    scenario: {
      requests: REQUESTS,
      arrivalsPerSec: ARRIVALS_PER_SEC,
      durationSec: DURATION_MS / 1000,
      capacity: CAPACITY,
      degraded: { id: specs[DEGRADED].id, fromSec: DEGRADE_FROM_MS / 1000, toSec: DEGRADE_TO_MS / 1000, factor: DEGRADE_FACTOR },
      failing: { id: specs[FAILING].id, fromSec: FAIL_FROM_MS / 1000, toSec: FAIL_TO_MS / 1000 },
      seed: SEED
    },
    machine: { node: machine.node, cpu: machine.cpu, cores: machine.cores, loadAverageAtStart: machine.loadAverage[0] },
    seconds: round2(seconds)
  }))
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
