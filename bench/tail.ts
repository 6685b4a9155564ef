/**
 * Tail latency with and without hedging (issue 8): a simulated pool of 4 deployments in one
 * group, on a TestClock, under a steady Poisson stream of requests.
 *
 *   npm run bench:tail             (100,000 requests per mode; BENCH_QUICK=1 for 10,000)
 *
 * The pool. Every call's latency is a pure function of `(deployment, callIndex)`: a mulberry32
 * PRNG seeded from both gives a uniform that decides whether the call stalls (1 call in 100,
 * for 20 s: an overloaded or cold replica), and two more for a lognormal draw (Box-Muller):
 * median 200 ms, sigma 0.4, like an LLM's time to first token. Stalls are slow successes:
 * nothing fails, so retries never trigger and the breaker has nothing to count. The fake
 * (`FakeProvider`, `record: false`) sleeps on Effect's Clock, here a TestClock.
 *
 * The load. Requests arrive as a Poisson process of 50 per simulated second (seeded), so about
 * 10 are in flight at once besides the ~10 stalled ones and hedges compete for the budget as
 * in production. 100,000 requests cover about 33 simulated minutes.
 *
 * Modes (`Router.defaults` for every other policy: weighted random selection on a seeded
 * `Random`, 2 retries, cooldowns, cost, in-memory state):
 * - `none`: no Hedge layer;
 * - `fixed`: `Hedge.layer({ delay: "386 millis", maxExtraPercent: 5 })`, the lognormal's p95
 *   (200 * e^(1.645 * 0.4) = 386.2 ms);
 * - `adaptive`: `Hedge.layer({ delay: { quantile: 0.95 }, maxExtraPercent: 5 })`;
 * - `oracle`: no router; each request goes at once to a deployment whose next call does not
 *   stall, from the same seeded draws (the stalled call is never made): the floor.
 * The hedging layers are `Hedge.make(options)` behind a pass-through that counts the budget's
 * answers and records the delays the policy computes (nothing else changes).
 *
 * Latency is clock time from the request's start to its answer, read on the TestClock in the
 * request's fiber (checked against `route.latencyMs`). Extra attempts = (upstream calls -
 * requests) / requests, the calls counted by the fake.
 *
 * How the TestClock is driven: see bench/sim.ts (a drain-first scheduler; the stock TestClock's
 * sleeps and adjust loop). The stock `TestClock.adjust`, which waits for every fiber to suspend
 * with real timers before each wake-up, would take about 10 ms per simulated request here, a
 * quarter of an hour or more per mode of 100,000: the calibration at the start measures it on
 * the `none` mode (2 wake-ups per request; hedged requests have more). Runs are reproducible:
 * the same figures on every run.
 *
 * The last line printed is one JSON object: `modes` (p50, p99, p99.9 and extra attempts of
 * each), `target` (the issue's: adaptive hedging cuts p99.9 at least 10x for at most 5% extra
 * attempts), and the diagnostics.
 */
import { performance } from "node:perf_hooks"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import * as TestContext from "effect/TestContext"
import { Hedge, type Provider, Router } from "../src/index.js"
import { normal } from "../src/internal/prng.js"
import { FakeProvider } from "../src/testing.js"
import { describeMachine, fmt, log, lpad, machine as machineInfo, pad, quantile, round2, runFields } from "./harness.js"
import { DrainFirstScheduler, drawsFor, driveArrivals, poissonGaps, runSimulation } from "./sim.js"

// -------------------------------------------------------------------------------------------
// Settings (issue 8's parameters: keep them, they are the comparison)
// -------------------------------------------------------------------------------------------

const QUICK = process.env.BENCH_QUICK === "1" || process.env.BENCH_QUICK === "true"
const REQUESTS = QUICK ? 10_000 : 100_000
const DEPLOYMENTS = 4
const MEDIAN_MS = 200
const SIGMA = 0.4
const STALL_PROBABILITY = 0.01
const STALL_MS = 20_000
const ARRIVALS_PER_SEC = 50
/** The lognormal's p95, 200 * e^(1.645 * 0.4) = 386.2 ms, rounded. */
const FIXED_DELAY_MS = Math.round(MEDIAN_MS * Math.exp(1.645 * SIGMA))
const MAX_EXTRA_PERCENT = 5
const SEED = 0x7a11
/** Simulated time per `TestClock.adjust`. */
const STEP_MS = 10_000
/** Requests timed on the stock TestClock (default scheduler, stock `adjust`) for the calibration. */
const CALIBRATION_REQUESTS = QUICK ? 50 : 100
const TARGET_CUT_X = 10

const GROUP = "pool"
const body: Provider.ChatRequest = { model: GROUP, messages: [{ role: "user", content: "hi" }] }
const deploymentIds = Array.from({ length: DEPLOYMENTS }, (_, i) => `d${i}`)
const deploymentIndex = new Map(deploymentIds.map((id, i) => [id, i]))

// -------------------------------------------------------------------------------------------
// Seeded draws (bench/sim.ts)
// -------------------------------------------------------------------------------------------

interface Draw {
  readonly stall: boolean
  /** The lognormal draw (what the call takes when it does not stall). */
  readonly lognormalMs: number
  /** What the call takes. */
  readonly latencyMs: number
}

/** The call `callIndex` of deployment `deployment`: the same in every mode and every run. */
const draw = (deployment: number, callIndex: number): Draw => {
  const u = drawsFor(SEED, deployment, callIndex)
  const stall = u() < STALL_PROBABILITY
  const z = normal(u)
  // Whole milliseconds, as the fake's own distributions draw them: clock arithmetic stays exact.
  const lognormalMs = Math.max(1, Math.round(MEDIAN_MS * Math.exp(SIGMA * z)))
  return { stall, lognormalMs, latencyMs: stall ? STALL_MS : lognormalMs }
}

/** Poisson arrivals: the gap before each request, in whole ms (the first at 1 ms). */
const arrivalGaps = poissonGaps(SEED, REQUESTS, ARRIVALS_PER_SEC)
const lastArrivalMs = arrivalGaps.reduce((a, b) => a + b, 0)

// -------------------------------------------------------------------------------------------
// Modes
// -------------------------------------------------------------------------------------------

interface HedgeProbe {
  granted: number
  denied: number
  /** When the budget granted / refused a hedge (simulated ms). */
  readonly grantedAt: Array<number>
  readonly deniedAt: Array<number>
  /** Every delay the policy computed, and when (simulated ms). */
  readonly delays: Array<number>
  readonly delayAt: Array<number>
}

const newProbe = (): HedgeProbe => ({ granted: 0, denied: 0, grantedAt: [], deniedAt: [], delays: [], delayAt: [] })

/** `Hedge.make(options)` behind a pass-through that counts the budget's answers and records the delays. */
const probedHedge = (options: Hedge.Options, probe: HedgeProbe): Layer.Layer<Hedge.Hedge, unknown> =>
  Layer.effect(
    Hedge.Hedge,
    Effect.map(Hedge.make(options), (service): Hedge.Service => {
      const policies = new Map<string, Hedge.Policy | undefined>()
      return {
        policyFor: (group) => {
          if (policies.has(group)) return policies.get(group)
          const policy = service.policyFor(group)
          const probed: Hedge.Policy | undefined = policy === undefined ? undefined : {
            maxHedges: policy.maxHedges,
            delayMs: (stats, kind, now) => {
              const ms = policy.delayMs(stats, kind, now)
              probe.delays.push(ms)
              probe.delayAt.push(now)
              return ms
            }
          }
          policies.set(group, probed)
          return probed
        },
        onRequest: service.onRequest,
        take: Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.map(service.take, (allowed) => {
            if (allowed) {
              probe.granted++
              probe.grantedAt.push(now)
            } else {
              probe.denied++
              probe.deniedAt.push(now)
            }
            return allowed
          }))
      }
    })
  )

interface Mode {
  readonly name: "none" | "fixed" | "adaptive"
  readonly label: string
  readonly hedge: Hedge.Options | undefined
}

const modes: ReadonlyArray<Mode> = [
  { name: "none", label: "none (no hedging)", hedge: undefined },
  {
    name: "fixed",
    label: `fixed ${FIXED_DELAY_MS} ms`,
    hedge: { delay: `${FIXED_DELAY_MS} millis`, maxExtraPercent: MAX_EXTRA_PERCENT }
  },
  {
    name: "adaptive",
    label: "adaptive p95",
    hedge: { delay: { quantile: 0.95 }, maxExtraPercent: MAX_EXTRA_PERCENT }
  }
]

interface Figures {
  readonly name: string
  readonly label: string
  readonly p50Ms: number
  readonly p99Ms: number
  readonly p999Ms: number
  readonly maxMs: number
  readonly meanMs: number
  readonly extraAttemptsPct: number
}

interface RunResult extends Figures {
  readonly calls: number
  readonly stalledCalls: number
  /** Requests that took a whole stall (no hedge rescued them). */
  readonly stalledRequests: number
  /** ... of which a hedge was launched (and stalled too). */
  readonly stalledHedged: number
  readonly hedgesLaunched: number
  /** Requests a hedge answered (the winner started after the request). */
  readonly hedgesWon: number
  /** When the winning hedge started, after the request (ms), for each request a hedge answered. */
  readonly hedgeOffsets: ReadonlyArray<number>
  /** Requests with one attempt only that took longer than the fixed delay. */
  readonly slowUnhedged: number
  readonly failedAttempts: number
  readonly probe: HedgeProbe | undefined
  readonly failures: number
  readonly latencyMismatches: number
  readonly simulatedSec: number
  readonly wallSec: number
  readonly schedulerTasks: number
}

const figuresOf = (name: string, label: string, latencies: Float64Array, calls: number): Figures => {
  const sorted = Array.from(latencies).sort((a, b) => a - b)
  let sum = 0
  for (const x of sorted) sum += x
  return {
    name,
    label,
    p50Ms: quantile(sorted, 0.5),
    p99Ms: quantile(sorted, 0.99),
    p999Ms: quantile(sorted, 0.999),
    maxMs: sorted[sorted.length - 1],
    meanMs: sum / sorted.length,
    extraAttemptsPct: ((calls - latencies.length) / latencies.length) * 100
  }
}

// -------------------------------------------------------------------------------------------
// One mode through the router
// -------------------------------------------------------------------------------------------

const runMode = async (mode: Mode): Promise<RunResult> => {
  const started = performance.now()
  let stalledCalls = 0
  const fake = FakeProvider.unsafeMake({
    record: false,
    latency: (callIndex, context) => {
      const d = draw(deploymentIndex.get(context.target.deploymentId)!, callIndex)
      if (d.stall) stalledCalls++
      return d.latencyMs
    }
  })
  const probe = mode.hedge === undefined ? undefined : newProbe()
  const base = Router.layer({
    deployments: deploymentIds.map((id) => ({ id, group: GROUP, provider: fake, model: "fake-model" }))
  })
  const RouterLive = (probe === undefined ? base : base.pipe(Layer.provide(probedHedge(mode.hedge!, probe)))).pipe(
    Layer.provide(Router.defaults)
  )

  const latencies = new Float64Array(REQUESTS)
  let done = 0
  let failures = 0
  let firstFailure: string | undefined
  let mismatches = 0
  let hedgesLaunched = 0
  let hedgesWon = 0
  let stalledRequests = 0
  let stalledHedged = 0
  let slowUnhedged = 0
  let failedAttempts = 0
  const hedgeOffsets: Array<number> = []
  const scheduler = new DrainFirstScheduler()

  const simulate = (clock: TestClock.TestClock) =>
    Effect.gen(function*() {
      const router = yield* Router.Router
      const request = (i: number) =>
        Effect.suspend(() => {
          const t0 = clock.unsafeCurrentTimeMillis()
          return Effect.matchCauseEffect(router.chat(body), {
            onFailure: (cause) =>
              Effect.sync(() => {
                if (failures === 0) firstFailure = Cause.pretty(cause)
                failures++
                latencies[i] = clock.unsafeCurrentTimeMillis() - t0
                done++
              }),
            onSuccess: (reply) =>
              Effect.sync(() => {
                const ms = clock.unsafeCurrentTimeMillis() - t0
                latencies[i] = ms
                // (route.latencyMs is read in nanoseconds, floored: a microsecond apart at most)
                if (Math.abs(reply.route.latencyMs - ms) > 1e-3) mismatches++
                const attempts = reply.route.attempts
                for (const a of attempts) if (a.outcome === "failed") failedAttempts++
                if (ms >= STALL_MS) {
                  stalledRequests++
                  if (attempts.length > 1) stalledHedged++
                }
                if (attempts.length === 1 && ms > FIXED_DELAY_MS) slowUnhedged++
                if (attempts.length > 1) {
                  hedgesLaunched += attempts.length - 1
                  // A hedge won when the winner started after the request did (attempts are
                  // listed as they ended, so the order does not tell).
                  const winner = attempts.find((a) => a.outcome === "won")
                  if (winner !== undefined && winner.latencyMs < ms) {
                    hedgesWon++
                    hedgeOffsets.push(ms - winner.latencyMs)
                  }
                }
                done++
              })
          })
        })
      // The Poisson arrivals, and the clock in steps until every request has answered.
      yield* driveArrivals(clock, {
        gaps: arrivalGaps,
        request,
        stepMs: STEP_MS,
        horizonMs: lastArrivalMs + 10 * 60_000,
        finished: () => done >= REQUESTS
      })
      return { simulatedSec: clock.unsafeCurrentTimeMillis() / 1000 }
    })

  const outcome = await runSimulation(scheduler, SEED, (clock) => Effect.provide(simulate(clock), RouterLive))
  if (done < REQUESTS) throw new Error(`bench: ${mode.name}: only ${done} of ${REQUESTS} requests answered`)
  // Nothing here fails (stalls are slow successes): a failed request is a broken run.
  if (firstFailure !== undefined) throw new Error(`bench: ${mode.name}: ${failures} requests failed; the first:\n${firstFailure}`)
  const calls = await Effect.runPromise(fake.callCount)
  return {
    ...figuresOf(mode.name, mode.label, latencies, calls),
    calls,
    stalledCalls,
    stalledRequests,
    stalledHedged,
    hedgesLaunched,
    hedgesWon,
    hedgeOffsets,
    slowUnhedged,
    failedAttempts,
    probe,
    failures,
    latencyMismatches: mismatches,
    simulatedSec: outcome.simulatedSec,
    wallSec: (performance.now() - started) / 1000,
    schedulerTasks: scheduler.tasks
  }
}

// -------------------------------------------------------------------------------------------
// The oracle: the same draws, no router
// -------------------------------------------------------------------------------------------

/**
 * Request `r` goes to deployment `r mod 4`, or, when that deployment's next call would stall, to
 * the next deployment whose next call does not (a stalled call is never made: the oracle knows
 * it in advance). Its latency is that call's lognormal draw; no extra attempts.
 */
const oracle = (): Figures => {
  const next = new Array<number>(DEPLOYMENTS).fill(0)
  const latencies = new Float64Array(REQUESTS)
  for (let r = 0; r < REQUESTS; r++) {
    for (let k = 0;; k++) {
      const d = (r + k) % DEPLOYMENTS
      const x = draw(d, next[d]++)
      if (!x.stall) {
        latencies[r] = x.lognormalMs
        break
      }
    }
  }
  return figuresOf("oracle", "oracle (no stalls)", latencies, REQUESTS)
}

// -------------------------------------------------------------------------------------------
// Calibration: the stock TestClock
// -------------------------------------------------------------------------------------------

/**
 * `CALIBRATION_REQUESTS` requests of mode `none`, one every 20 ms, on the stock TestClock and
 * the default scheduler, the clock advanced by `TestClock.adjust` in steps of 1 s: wall ms per
 * simulated request.
 */
const calibrateStockClock = async (): Promise<{ readonly msPerRequest: number; readonly wakeUps: number }> => {
  const fake = FakeProvider.unsafeMake({
    record: false,
    latency: (callIndex, context) => draw(deploymentIndex.get(context.target.deploymentId)!, callIndex).lognormalMs
  })
  const RouterLive = Router.layer({
    deployments: deploymentIds.map((id) => ({ id, group: GROUP, provider: fake, model: "fake-model" }))
  }).pipe(Layer.provide(Router.defaults))
  let done = 0
  let failed = 0
  const program = Effect.gen(function*() {
    const router = yield* Router.Router
    yield* TestClock.adjust(0) // no "not advancing the clock" warning
    for (let i = 0; i < CALIBRATION_REQUESTS; i++) {
      yield* Effect.forkDaemon(
        Effect.zipRight(
          Effect.sleep(20 * (i + 1)),
          Effect.ensuring(
            Effect.catchAllCause(router.chat(body), () => Effect.sync(() => void failed++)),
            Effect.sync(() => done++)
          )
        )
      )
    }
    while (done < CALIBRATION_REQUESTS) yield* TestClock.adjust("1 second")
  })
  const started = performance.now()
  await Effect.runPromise(program.pipe(Effect.provide(RouterLive), Effect.provide(TestContext.TestContext)))
  const ms = performance.now() - started
  if (failed > 0) throw new Error(`bench: calibration: ${failed} of ${CALIBRATION_REQUESTS} requests failed`)
  // Wake-ups: one arrival sleep and one call sleep per request.
  return { msPerRequest: ms / CALIBRATION_REQUESTS, wakeUps: 2 }
}

// -------------------------------------------------------------------------------------------
// Main
// -------------------------------------------------------------------------------------------

const row = (cells: ReadonlyArray<string>, widths: ReadonlyArray<number>) =>
  cells.map((c, i) => (i === 0 ? pad(c, widths[i]) : lpad(c, widths[i]))).join(" ")

const main = async () => {
  const startedAll = performance.now()
  const machine = machineInfo()
  log("effect-llm-router: tail latency with hedged requests (simulated pool on a TestClock)")
  log(describeMachine(machine))
  log(
    `mode ${QUICK ? "QUICK" : "full"}: ${REQUESTS.toLocaleString("en-US")} requests per mode, Poisson arrivals ` +
      `${ARRIVALS_PER_SEC}/s (~${fmt(lastArrivalMs / 60_000, 1)} simulated min); ${DEPLOYMENTS} deployments, one group; ` +
      `latency lognormal (median ${MEDIAN_MS} ms, sigma ${SIGMA}), 1 call in ${Math.round(1 / STALL_PROBABILITY)} ` +
      `stalls ${STALL_MS / 1000} s; seed ${SEED}`
  )
  log()

  const calibration = await calibrateStockClock()
  log(
    `stock TestClock.adjust + default scheduler: ${fmt(calibration.msPerRequest, 1)} ms wall per simulated request ` +
      `(${CALIBRATION_REQUESTS} requests, ${calibration.wakeUps} sleeps each; awaitSuspended waits 3 x setTimeout(0) per wake-up) ` +
      `-> ~${fmt((calibration.msPerRequest * REQUESTS) / 60_000, 0)} min per mode; this bench drives it with a drain-first scheduler instead`
  )
  log()

  const results: Array<RunResult> = []
  for (const mode of modes) {
    const result = await runMode(mode)
    results.push(result)
    log(
      `  ${pad(mode.name, 8)} ${fmt(result.wallSec, 1)} s wall, ${fmt(result.simulatedSec / 60, 1)} simulated min, ` +
        `${fmt((result.wallSec * 1e6) / REQUESTS, 0)} us per request, ${fmt(result.schedulerTasks / REQUESTS, 1)} scheduler tasks per request`
    )
  }
  const oracleFigures = oracle()
  log()

  const widths = [20, 9, 9, 10, 9, 9, 8, 8, 8, 8, 10]
  const header = row(
    ["mode", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "mean ms", "extra %", "hedges", "denied", "won", ">=20 s"],
    widths
  )
  log(header)
  log("-".repeat(header.length))
  for (const r of results) {
    log(row([
      r.label,
      fmt(r.p50Ms, 0),
      fmt(r.p99Ms, 0),
      fmt(r.p999Ms, 0),
      fmt(r.maxMs, 0),
      fmt(r.meanMs, 0),
      fmt(r.extraAttemptsPct, 2),
      String(r.hedgesLaunched),
      r.probe === undefined ? "" : String(r.probe.denied),
      r.probe === undefined ? "" : String(r.hedgesWon),
      String(r.stalledRequests)
    ], widths))
  }
  const o = oracleFigures
  log(row([o.label, fmt(o.p50Ms, 0), fmt(o.p99Ms, 0), fmt(o.p999Ms, 0), fmt(o.maxMs, 0), fmt(o.meanMs, 0), fmt(0, 2), "", "", "", "0"], widths))
  log(
    "hedges: attempts launched after the first; denied: hedges the budget refused; won: requests a hedge answered; " +
      ">=20 s: requests that took a whole stall"
  )
  log()

  // Diagnostics
  const byName = new Map(results.map((r) => [r.name, r]))
  const none = byName.get("none")!
  const adaptive = byName.get("adaptive")!
  const quantiles = (xs: ReadonlyArray<number>, qs: ReadonlyArray<number>, digits = 0) => {
    if (xs.length === 0) return "-"
    const sorted = [...xs].sort((x, y) => x - y)
    return qs.map((q) => fmt(q === 1 ? sorted[sorted.length - 1] : q === 0 ? sorted[0] : quantile(sorted, q), digits)).join("/")
  }
  /** For each refused hedge, the time until the budget next granted one (ms). */
  const refillGaps = (p: HedgeProbe): Array<number> => {
    const gaps: Array<number> = []
    let j = 0
    for (const at of p.deniedAt) {
      while (j < p.grantedAt.length && p.grantedAt[j] <= at) j++
      if (j < p.grantedAt.length) gaps.push(p.grantedAt[j] - at)
    }
    return gaps
  }
  for (const r of results) {
    log(
      `${pad(r.name, 8)} ${r.calls} calls, ${r.stalledCalls} stalled (${fmt((100 * r.stalledCalls) / r.calls, 2)}%); ` +
        `failed attempts ${r.failedAttempts}, failed requests ${r.failures} (the breaker had nothing to count); ` +
        `route.latencyMs != clock ${r.latencyMismatches}; requests >= 20 s: ${r.stalledRequests} ` +
        `(${r.stalledHedged} with a hedge that stalled too)`
    )
    const p = r.probe
    if (p === undefined) continue
    log(
      `         budget: ${p.granted} hedges granted, ${p.denied} refused (${fmt((100 * p.denied) / Math.max(1, p.granted + p.denied), 1)}% of ` +
        `those wanted); after a refusal the next grant came ${quantiles(refillGaps(p), [0.5, 0.95])} ms later (p50/p95); ` +
        `single-attempt requests slower than ${FIXED_DELAY_MS} ms: ${r.slowUnhedged}`
    )
    log(
      `         delay computed min/p5/p50/p95/max ${quantiles(p.delays, [0, 0.05, 0.5, 0.95, 1])} ms; ` +
        `winning hedges started min/p50/max ${quantiles(r.hedgeOffsets, [0, 0.5, 1])} ms after their request (${r.hedgesWon} requests)`
    )
  }
  // The adaptive delay over time: its median per simulated 5 minutes.
  const series = (() => {
    const p = adaptive.probe
    if (p === undefined) return []
    const windowMs = 5 * 60_000
    const buckets = new Map<number, Array<number>>()
    for (let i = 0; i < p.delays.length; i++) {
      const k = Math.floor(p.delayAt[i] / windowMs)
      let b = buckets.get(k)
      if (b === undefined) buckets.set(k, b = [])
      b.push(p.delays[i])
    }
    return [...buckets.entries()].sort(([a], [b]) => a - b).map(([k, b]) => ({
      fromMin: (k * windowMs) / 60_000,
      medianMs: quantile(b.sort((x, y) => x - y), 0.5)
    }))
  })()
  const firstDelays = adaptive.probe?.delays.slice(0, 5) ?? []
  log(
    `adaptive delay, median per 5 simulated min: ${series.map((s) => `${s.fromMin}': ${fmt(s.medianMs, 0)}`).join(", ")} ms ` +
      `(first delays ${firstDelays.map((x) => fmt(x, 0)).join(", ")} ms; the lognormal's p95 is ${fmt(MEDIAN_MS * Math.exp(1.645 * SIGMA), 0)} ms, ` +
      `the calls' (stalls included) ${fmt(MEDIAN_MS * Math.exp(1.7456 * SIGMA), 0)} ms)`
  )
  const cut = none.p999Ms / adaptive.p999Ms
  const met = cut >= TARGET_CUT_X && adaptive.extraAttemptsPct <= MAX_EXTRA_PERCENT
  log(
    `target: adaptive cuts p99.9 ${fmt(cut, 1)}x (>= ${TARGET_CUT_X}x) for ${fmt(adaptive.extraAttemptsPct, 2)}% extra attempts ` +
      `(<= ${MAX_EXTRA_PERCENT}%): ${met ? "met" : "NOT met"}`
  )
  const seconds = (performance.now() - startedAll) / 1000
  log(`wall time ${fmt(seconds, 1)} s`)

  const result = {
    modes: [...results, oracleFigures].map((r) => ({
      name: r.name,
      p50Ms: round2(r.p50Ms),
      p99Ms: round2(r.p99Ms),
      p999Ms: round2(r.p999Ms),
      extraAttemptsPct: round2(r.extraAttemptsPct)
    })),
    target: { p999CutX: round2(cut), adaptiveExtraPct: round2(adaptive.extraAttemptsPct), met },
    diagnostics: Object.fromEntries(results.map((r) => [r.name, {
      maxMs: round2(r.maxMs),
      meanMs: round2(r.meanMs),
      calls: r.calls,
      stalledCalls: r.stalledCalls,
      stalledRequests: r.stalledRequests,
      hedgesLaunched: r.hedgesLaunched,
      hedgesWon: r.hedgesWon,
      hedgesGranted: r.probe?.granted,
      hedgesDenied: r.probe?.denied,
      stalledHedged: r.stalledHedged,
      slowUnhedged: r.slowUnhedged,
      failedAttempts: r.failedAttempts,
      failures: r.failures,
      latencyMismatches: r.latencyMismatches,
      wallSec: round2(r.wallSec),
      usPerRequest: round2((r.wallSec * 1e6) / REQUESTS)
    }])),
    adaptiveDelayMedianBy5Min: series.map((s) => round2(s.medianMs)),
    stockTestClockMsPerRequest: round2(calibration.msPerRequest),
    requests: REQUESTS,
    arrivalsPerSec: ARRIVALS_PER_SEC,
    fixedDelayMs: FIXED_DELAY_MS,
    seed: SEED,
    quick: QUICK,
    ...runFields(machine, seconds)
  }
  log(JSON.stringify(result))
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
