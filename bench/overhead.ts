/**
 * Router overhead benchmark: what routing adds on top of a provider call, measured on a
 * zero-latency fake provider so that only the router (and the Effect runtime under it) is timed.
 *
 *   npm run bench:overhead            full run (about 1.5 to 2 minutes on a 2-core machine)
 *   BENCH_QUICK=1 npm run bench:overhead   short run (15-30 s; noisier figures, 100k calls for the heap)
 *
 * Times depend on the machine and on its load (the header prints the load average; other
 * processes on a 2-core machine inflate every figure). The `ops / fibers / async` columns do
 * not: they count, with op supervision, the primitive effects evaluated, fibers started and
 * fiber suspensions per call, so they compare across machines and catch regressions exactly.
 * `bench/overhead-breakdown.ts` times the building blocks of the routed call one by one.
 *
 * Variants, all timed in the same run and interleaved round-robin (the starting variant rotates
 * every round) so that machine noise, GC and JIT state hit them alike:
 *
 * - `loop floor`: `Effect.void` in the same batch loop (what the harness itself costs per call)
 * - `direct`: `provider.chat(request, target)` (the baseline)
 * - `routed (3 deployments)` / `routed (1 deployment)`: `router.chat(request)` on a router built
 *   from `Router.layer(...)` with `Router.defaults` (weighted selection, retries, cooldown,
 *   cost metering, in-memory state); no failures
 * - `ExecutionPlan fallback`: Effect's own `ExecutionPlan` with two `Layer` steps wrapping the same
 *   fake; the first step fails (503), the second succeeds
 * - `ExecutionPlan first ok`: the same plan shape whose first step succeeds
 * - `direct stream`: `provider.stream(request, target)` drained (the fake streams the reply as
 *   3 chunks: 2 words, then the finish chunk with usage)
 * - `routed stream, 3 deployments`: `router.stream(request)` drained (route info on the last
 *   chunk, slot held until the end)
 *
 * Method. One sample is one batch of `K` sequential calls run in a tight `Effect.whileLoop`,
 * timed with `performance.now()` inside the Effect program; the sample is the batch time / K,
 * in microseconds. Median and p99 are over the samples, so p99 is the 99th percentile of
 * K-call means, not of single calls (single calls are far below the timer's resolution). The
 * distribution is skewed (GC pauses land in a few batches), so the mean, which is what
 * throughput sees, sits above the median.
 * Each round of samples (one batch of every variant) runs in its own `Effect.runPromise`: that
 * call is outside the timed region, and a fresh fiber per round keeps the default scheduler's
 * occasional `setTimeout(0)` yield (after 2048 consecutive microtask yields of one fiber) out
 * of the samples, where it would add ~1 ms to a random batch.
 *
 * "added" = variant minus direct: of the medians (`addedMedianUs`), of the p99s (`addedP99Us`),
 * and, as a cross-check, the median of the per-round paired differences (`addedPairedMedianUs`).
 *
 * Throughput and heap: 1,000,000 routed calls (3-deployment group) in one long-lived fiber, in
 * 10 chunks of 100,000; after each chunk a full GC (`--expose-gc`; the script re-executes itself
 * with that flag when needed) and `heapUsed`. `routedPerSec` is calls / time spent calling (GC
 * pauses between chunks excluded). `heapGrowthMB` is heapUsed after the last chunk minus before
 * the first; the per-chunk figures and their slope show whether live state is bounded.
 *
 * The last line printed is one JSON object with every figure (`metTarget`: the routed call adds
 * at most `targetAddedMedianUs` at the median).
 */
import { spawnSync } from "node:child_process"
import { performance } from "node:perf_hooks"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as ExecutionPlan from "effect/ExecutionPlan"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Stream from "effect/Stream"
import { type Errors, type Provider, Router } from "../src/index.js"
import { FakeProvider } from "../src/testing.js"
import {
  describeMachine,
  fmt,
  log,
  machine as machineInfo,
  pairedMedian,
  printTable,
  repeat,
  round2,
  runInterleaved,
  type Variant,
  type Work,
  workPerCall
} from "./harness.js"

// -------------------------------------------------------------------------------------------
// --expose-gc: re-execute with the flag (keeping tsx's loader flags from execArgv)
// -------------------------------------------------------------------------------------------

const CHILD_ENV = "EFFECT_LLM_ROUTER_BENCH_CHILD"

const gcFunction = (): (() => void) | undefined => {
  const g = (globalThis as { gc?: () => void }).gc
  return typeof g === "function" ? g : undefined
}

if (gcFunction() === undefined && process.env[CHILD_ENV] !== "1") {
  const child = spawnSync(process.execPath, [...process.execArgv, "--expose-gc", ...process.argv.slice(1)], {
    stdio: "inherit",
    env: { ...process.env, [CHILD_ENV]: "1" }
  })
  if (child.error !== undefined) {
    console.error(`bench: could not re-execute with --expose-gc: ${child.error.message}`)
    process.exit(1)
  }
  process.exit(child.status ?? 1)
}

/** `global.gc`; as a last resort, the flag set at run time (works on Node 20, not guaranteed). */
const gc: () => void = gcFunction() ?? (() => {
  v8.setFlagsFromString("--expose-gc")
  return vm.runInNewContext("gc") as () => void
})()

// -------------------------------------------------------------------------------------------
// Settings
// -------------------------------------------------------------------------------------------

const QUICK = process.env.BENCH_QUICK === "1" || process.env.BENCH_QUICK === "true"
const BATCH = QUICK ? 50 : 100
const SAMPLES = QUICK ? 200 : 400
const WARMUP = QUICK ? 5_000 : 20_000
const HEAP_CHUNKS = 10
const HEAP_CHUNK_CALLS = QUICK ? 10_000 : 100_000
const WORK_CALLS = 1_000
const TARGET_ADDED_MEDIAN_US = 15

// -------------------------------------------------------------------------------------------
// Subjects
// -------------------------------------------------------------------------------------------

const messages: Provider.ChatRequest["messages"] = [{ role: "user", content: "Say hello in one word." }]
const MODEL = "gpt-4o-mini" // priced in the built-in table, so cost metering does its work

/** One zero-latency fake for everything; `ep-down` is the deployment that always fails. */
const fake = FakeProvider.unsafeMake({ record: false, byDeployment: { "ep-down": { failure: 503 } } })

const directRequest: Provider.ChatRequest = { model: MODEL, messages }
const directTarget = FakeProvider.target("direct", { model: MODEL })

const RouterLive = Router.layer({
  deployments: [
    { id: "g3-a", group: "g3", provider: fake, model: MODEL },
    { id: "g3-b", group: "g3", provider: fake, model: MODEL },
    { id: "g3-c", group: "g3", provider: fake, model: MODEL },
    { id: "g1-a", group: "g1", provider: fake, model: MODEL }
  ]
}).pipe(Layer.provide(Router.defaults))
const routed3Request: Provider.ChatRequest = { model: "g3", messages }
const routed1Request: Provider.ChatRequest = { model: "g1", messages }

/** The service the ExecutionPlan steps provide: a chat function bound to one deployment of the fake. */
class Chat extends Context.Tag("bench/Chat")<Chat, {
  readonly chat: (request: Provider.ChatRequest) => Effect.Effect<Provider.ChatResponse, Errors.ProviderError>
}>() {}

const chatVia = (deploymentId: string) =>
  Layer.succeed(Chat, {
    chat: (request) => fake.chat(request, FakeProvider.target(deploymentId, { model: MODEL }))
  })
const downLayer = chatVia("ep-down")
const upLayer = chatVia("ep-up")
const viaChat = Effect.flatMap(Chat, (service) => service.chat(directRequest))
const planFallback = ExecutionPlan.make({ provide: downLayer, attempts: 1 }, { provide: upLayer })
const planFirstOk = ExecutionPlan.make({ provide: upLayer, attempts: 1 }, { provide: downLayer })

const mb = (bytes: number) => bytes / (1024 * 1024)

// -------------------------------------------------------------------------------------------
// Main
// -------------------------------------------------------------------------------------------

const main = async () => {
  const startedAll = performance.now()
  const machine = machineInfo()
  log("effect-llm-router: router overhead on a zero-latency fake provider")
  log(describeMachine(machine))
  log(
    `mode ${QUICK ? "QUICK" : "full"}: ${SAMPLES} samples x ${BATCH} calls per variant, ` +
      `${WARMUP} warm-up calls each, heap over ${HEAP_CHUNKS} x ${HEAP_CHUNK_CALLS} routed calls`
  )
  log()

  const runtime = ManagedRuntime.make(RouterLive)
  const router = await runtime.runPromise(Router.Router)

  // Every call builds its effect anew (`Effect.suspend`), as a caller making one request would.
  const variants: ReadonlyArray<Variant> = [
    { key: "floor", label: "loop floor (Effect.void)", call: Effect.suspend(() => Effect.void) },
    { key: "direct", label: "direct provider.chat", call: Effect.suspend(() => fake.chat(directRequest, directTarget)) },
    { key: "routed3", label: "routed, 3 deployments", call: Effect.suspend(() => router.chat(routed3Request)) },
    { key: "routed1", label: "routed, 1 deployment", call: Effect.suspend(() => router.chat(routed1Request)) },
    {
      key: "epFallback",
      label: "ExecutionPlan, 1st fails",
      call: Effect.suspend(() => Effect.withExecutionPlan(viaChat, planFallback))
    },
    {
      key: "epFirstOk",
      label: "ExecutionPlan, 1st ok",
      call: Effect.suspend(() => Effect.withExecutionPlan(viaChat, planFirstOk))
    },
    {
      key: "directStream",
      label: "direct stream",
      call: Effect.suspend(() => Stream.runDrain(fake.stream(directRequest, directTarget)))
    },
    {
      key: "routedStream",
      label: "routed stream, 3 deployments",
      call: Effect.suspend(() => Stream.runDrain(router.stream(routed3Request)))
    }
  ]

  // Sanity: every subject answers, from where it should.
  const check = await Effect.runPromise(
    Effect.all({
      direct: fake.chat(directRequest, directTarget),
      routed3: router.chat(routed3Request),
      routed1: router.chat(routed1Request),
      epFallback: Effect.withExecutionPlan(viaChat, planFallback),
      epFirstOk: Effect.withExecutionPlan(viaChat, planFirstOk)
    })
  )
  if (!check.routed3.route.deploymentId.startsWith("g3-") || check.routed1.route.deploymentId !== "g1-a") {
    throw new Error(`bench: unexpected route ${JSON.stringify(check.routed3.route)}`)
  }
  if (check.routed3.route.attempts.length !== 1) throw new Error("bench: the routed call should take one attempt")
  if (check.epFallback.choices[0]?.message.content !== "ok") throw new Error("bench: the plan should fall back to ep-up")
  if (!(check.routed3.route.cost > 0)) throw new Error("bench: the routed call should be metered")

  const { samples, seconds: timedSeconds } = await runInterleaved(variants, {
    samples: SAMPLES,
    batch: BATCH,
    warmup: WARMUP
  })
  const work = new Map<string, Work>()
  for (const v of variants) work.set(v.key, await workPerCall(v.call, WORK_CALLS))
  log(`per-call time, microseconds (median and p99 of ${SAMPLES} batch means of ${BATCH} calls; ${fmt(timedSeconds, 1)} s)`)
  const stats = printTable(variants, samples, "direct", new Set(["floor", "direct", "directStream", "routedStream"]), work)
  const direct = stats.get("direct")!
  const addedPaired = (key: string) => pairedMedian(samples.get(key)!, samples.get("direct")!)
  log("+median / +p99: variant minus direct (medians / p99s); +paired: median of per-round (variant - direct)")
  const directStream = stats.get("directStream")!
  const routedStream = stats.get("routedStream")!
  const streamAddedMedianUs = routedStream.median - directStream.median
  log(
    `streams: routed adds ${fmt(streamAddedMedianUs)} us at the median over a direct stream ` +
      `(${fmt(work.get("routedStream")!.ops - work.get("directStream")!.ops)} ops)`
  )
  log("ops / fibers / async: primitive effects evaluated, fibers started, fiber suspensions, per call (load-independent)")
  log()

  // Throughput and heap: 1M routed calls in one long-lived fiber, GC + heapUsed after each chunk.
  const heapAfterGc = () => {
    gc()
    gc()
    return process.memoryUsage().heapUsed
  }
  const routedCall = variants.find((v) => v.key === "routed3")!.call
  const heap = await Effect.runPromise(
    Effect.gen(function*() {
      const before = heapAfterGc()
      const after: Array<number> = []
      let callingMs = 0
      let cpuUs = 0
      for (let c = 0; c < HEAP_CHUNKS; c++) {
        const started = performance.now()
        const cpuStarted = process.cpuUsage()
        yield* repeat(routedCall, HEAP_CHUNK_CALLS)
        const cpu = process.cpuUsage(cpuStarted)
        callingMs += performance.now() - started
        cpuUs += cpu.user + cpu.system
        after.push(heapAfterGc())
      }
      return { before, after, callingMs, cpuUs }
    })
  )
  const totalCalls = HEAP_CHUNKS * HEAP_CHUNK_CALLS
  const routedPerSec = totalCalls / (heap.callingMs / 1000)
  // Process CPU time (all threads, so V8's GC helper threads too) per call: less sensitive to
  // other processes competing for the cores than wall time.
  const routedCpuUsPerCall = heap.cpuUs / totalCalls
  const heapGrowthMB = mb(heap.after[heap.after.length - 1] - heap.before)
  // Least-squares slope of heapUsed after GC, in bytes per call: over all chunks, and over the
  // second half only (after warm-up effects such as JIT code and inline caches have settled).
  const slope = (ys: ReadonlyArray<number>, firstChunk: number) => {
    const xs = ys.map((_, i) => (firstChunk + i + 1) * HEAP_CHUNK_CALLS)
    const xMean = xs.reduce((a, b) => a + b, 0) / xs.length
    const yMean = ys.reduce((a, b) => a + b, 0) / ys.length
    let num = 0
    let den = 0
    for (let i = 0; i < xs.length; i++) {
      num += (xs[i] - xMean) * (ys[i] - yMean)
      den += (xs[i] - xMean) ** 2
    }
    return den === 0 ? 0 : num / den
  }
  const bytesPerCall = slope(heap.after, 0)
  const half = Math.floor(HEAP_CHUNKS / 2)
  const lateBytesPerCall = slope(heap.after.slice(half), half)
  // Steady growth: the second half still grows by more than 1 MB per million calls.
  const heapBounded = lateBytesPerCall * 1_000_000 <= 1024 * 1024

  log(`throughput and heap: ${totalCalls.toLocaleString("en-US")} routed calls (3 deployments), one fiber, sequential`)
  log(
    `  routed calls per second (one core): ${Math.round(routedPerSec).toLocaleString("en-US")} ` +
      `(${fmt(1e6 / routedPerSec)} us wall, ${fmt(routedCpuUsPerCall)} us process CPU per call)`
  )
  log(`  heapUsed after GC, MB: before ${fmt(mb(heap.before))} | after each ${HEAP_CHUNK_CALLS.toLocaleString("en-US")}: ${heap.after.map((b) => fmt(mb(b))).join(" ")}`)
  log(
    `  growth ${fmt(heapGrowthMB, 3)} MB; slope ${fmt(bytesPerCall, 3)} bytes/call overall, ` +
      `${fmt(lateBytesPerCall, 3)} bytes/call over the second half -> ` +
      (heapBounded ? "bounded (no steady growth)" : "GROWING: live state is not bounded")
  )
  log()

  await runtime.dispose()

  const routed = stats.get("routed3")!
  const routed1 = stats.get("routed1")!
  const epFallback = stats.get("epFallback")!
  const epFirstOk = stats.get("epFirstOk")!
  const addedMedianUs = routed.median - direct.median
  const result = {
    addedMedianUs: round2(addedMedianUs),
    addedP99Us: round2(routed.p99 - direct.p99),
    addedPairedMedianUs: round2(addedPaired("routed3")),
    routedPerSec: Math.round(routedPerSec),
    routedCpuUsPerCall: round2(routedCpuUsPerCall),
    heapGrowthMB: Math.round(heapGrowthMB * 1000) / 1000,
    heapBytesPerCall: round2(bytesPerCall),
    heapLateBytesPerCall: round2(lateBytesPerCall),
    heapBounded,
    executionPlanAddedMedianUs: round2(epFallback.median - direct.median),
    executionPlanFirstOkAddedMedianUs: round2(epFirstOk.median - direct.median),
    directMedianUs: round2(direct.median),
    directP99Us: round2(direct.p99),
    routedMedianUs: round2(routed.median),
    routedP99Us: round2(routed.p99),
    routedMeanUs: round2(routed.mean),
    routed1MedianUs: round2(routed1.median),
    routed1AddedMedianUs: round2(routed1.median - direct.median),
    executionPlanMedianUs: round2(epFallback.median),
    loopFloorMedianUs: round2(stats.get("floor")!.median),
    directMinUs: round2(direct.min),
    routedMinUs: round2(routed.min),
    executionPlanMinUs: round2(epFallback.min),
    directOpsPerCall: round2(work.get("direct")!.ops),
    routedOpsPerCall: round2(work.get("routed3")!.ops),
    routedFibersPerCall: round2(work.get("routed3")!.fibers),
    routedSuspensionsPerCall: round2(work.get("routed3")!.suspensions),
    executionPlanOpsPerCall: round2(work.get("epFallback")!.ops),
    streamAddedMedianUs: round2(streamAddedMedianUs),
    directStreamMedianUs: round2(directStream.median),
    routedStreamMedianUs: round2(routedStream.median),
    directStreamOpsPerCall: round2(work.get("directStream")!.ops),
    routedStreamOpsPerCall: round2(work.get("routedStream")!.ops),
    targetAddedMedianUs: TARGET_ADDED_MEDIAN_US,
    metTarget: addedMedianUs <= TARGET_ADDED_MEDIAN_US,
    samples: SAMPLES,
    batch: BATCH,
    quick: QUICK,
    node: machine.node,
    cpu: machine.cpu,
    cores: machine.cores,
    loadAverageAtStart: machine.loadAverage[0],
    seconds: round2((performance.now() - startedAll) / 1000)
  }
  log(
    `routed (3 deployments) adds ${fmt(addedMedianUs)} us at the median over a direct call ` +
      `(target <= ${TARGET_ADDED_MEDIAN_US} us: ${result.metTarget ? "met" : "NOT met"}); ` +
      `ExecutionPlan fallback adds ${fmt(result.executionPlanAddedMedianUs)} us`
  )
  log(JSON.stringify(result))
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
