/**
 * Router overhead benchmark: what routing adds on top of a provider call, measured on a
 * zero-latency fake provider so that only the router (and the Effect runtime under it) is timed.
 *
 *   npm run bench:overhead                   full run (about 2 minutes on a 2-core machine)
 *   BENCH_QUICK=1 npm run bench:overhead     short run (about 30 s; noisier, 100k calls for the heap)
 *   BENCH_SRC=1 npm run bench:overhead       src/ through tsx instead of the build (comparison only)
 *   BENCH_PROFILE=fallback,routed1000 npm run bench:overhead
 *                                            CPU profile of these variants instead (see below)
 *
 * What is measured: the BUILT package, dist/index.js and dist/testing.js (ESM), as an app that
 * imports `effect-llm-router` runs it. When dist/ is missing or older than src/ (or
 * package.json, tsup.config.ts, tsconfig.json) the script first runs `tsup` (= `npm run build`,
 * its output on stderr); a build whose declarations fail (a type error) but whose JavaScript
 * was written is still measured, with a warning; `BENCH_NO_BUILD=1` measures dist/ as it is.
 * `BENCH_SRC=1` imports src/ through tsx instead: esbuild's keepNames wraps every named
 * closure there, which adds ~40% to the router's figures, so those are not what users get.
 * The header and the JSON (`measured`) say which one was measured. Only the library is loaded
 * from dist/: this script itself and Effect run the same way in both modes.
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
 * - `floor` loop floor: `Effect.void` in the same batch loop (what the harness itself costs per call)
 * - `direct`: `provider.chat(request, target)` (the baseline)
 * - `routed3` / `routed1`: `router.chat(request)` on a router built from `Router.layer(...)` with
 *   `Router.defaults` (weighted selection, retries, cooldown, cost metering, in-memory state,
 *   no hedging), to a group of 3 deployments / of 1; no failures
 * - `routed1000`: the same, to a group of 1,000 deployments (a router of its own)
 * - `fallback`: `router.chat` to a group whose 3 deployments are all cooling down (each answered
 *   a 429 with a retry-after of a day once, before timing; `Router.defaults`' Cooldown holds
 *   them out), whose fallback (`Fallback.layer({ fallbacks: { cool: ["g3"] } })`) is the
 *   3-deployment group: no provider call to the cooling group, one attempt in the fallback
 * - `epCtxFirstOk` / `epCtxFallback`: Effect's own `ExecutionPlan` with two `Context` steps (nothing
 *   built per run) wrapping the same fake; the first step succeeds / fails (503) and the second
 *   succeeds. The like-for-like baselines: routed3 against epCtxFirstOk (success paths),
 *   fallback against epCtxFallback (failure paths)
 * - `epLayerFirstOk` / `epLayerFallback`: the same plans with `Layer` steps (built on every run),
 *   as earlier versions of this benchmark compared against (kept for their JSON fields)
 * - `directStream`: `provider.stream(request, target)` drained (the fake streams the reply as
 *   3 chunks: 2 words, then the finish chunk with usage)
 * - `routedStream`: `router.stream(request)` drained, 3 deployments (route info on the last
 *   chunk, slot held until the end); its `+` columns are over `directStream`
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
 * "added" = variant minus direct (the routed stream: minus the direct stream): of the medians
 * (`addedMedianUs`, ...), of the p99s (`addedP99Us`), and, as a cross-check, the median of the
 * per-round paired differences (`...PairedMedianUs`).
 *
 * Throughput and heap: 1,000,000 routed calls (3-deployment group) in one long-lived fiber, in
 * 10 chunks of 100,000; after each chunk a full GC (`--expose-gc`; the script re-executes itself
 * with that flag when needed) and `heapUsed`. `routedPerSec` is calls / time spent calling (GC
 * pauses between chunks excluded). `heapGrowthMB` is heapUsed after the last chunk minus before
 * the first; the per-chunk figures and their slope show whether live state is bounded.
 *
 * Targets (issue 8), printed with met / NOT met: at the median, a routed chat (hedging off)
 * adds at most 15 us over a direct call, a routed stream at most 50 us over a direct stream, a
 * routed chat among 1,000 deployments at most 30 us, the cooling-fallback path at most 25 us;
 * the heap stays flat over 1M calls (the second half grows by at most 1 MB per million calls).
 *
 * The last line printed is one JSON object with every figure: the fields of earlier versions
 * (`executionPlan*` still the Layer-step plans; `metTarget`: the routed chat's target), plus
 * `measured`, `routedStreamAddedMedianUs`, `routed1000AddedMedianUs`, `fallbackAddedMedianUs`,
 * the Context-step pairs (`executionPlanCtx*`, `successOverExecutionPlanUs`,
 * `fallbackOverExecutionPlanUs`), `work` (ops / fibers / async of every variant), `targets`,
 * `met` and `metAllTargets`.
 *
 * Profile mode (`BENCH_PROFILE=<variant keys>`, `BENCH_PROFILE_SECONDS`, default 8): no timing
 * table; each variant runs in a loop under V8's sampling profiler (in process, via
 * `node:inspector`, what `node --cpu-prof` records), the profile is written to the temp
 * directory (`effect-llm-router-<key>-<dist|src>.cpuprofile`, for Chrome DevTools or
 * speedscope), and the top functions and files by self time are printed in microseconds per
 * call, with dist/ lines mapped back to src/ through the build's source maps, followed by the
 * variant's ops per call by primitive.
 */
import { spawnSync } from "node:child_process"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as ExecutionPlan from "effect/ExecutionPlan"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Stream from "effect/Stream"
import type { Errors, Provider } from "../src/index.js"
import {
  describeMachine,
  ensureBuilt,
  fmt,
  type Library,
  loadLibrary,
  log,
  lpad,
  machine as machineInfo,
  pad,
  pairedMedian,
  printProfile,
  printTable,
  profileCall,
  repeat,
  round2,
  runInterleaved,
  type Variant,
  type Work,
  workPerCall,
  runFields
} from "./harness.js"

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
/** `BENCH_PROFILE=fallback,routed1000`: profile these variants instead of timing them all. */
const PROFILE = (process.env.BENCH_PROFILE ?? "").split(",").map((k) => k.trim()).filter((k) => k !== "")
const PROFILE_SECONDS = Number(process.env.BENCH_PROFILE_SECONDS ?? 8)

/** The targets, in microseconds added at the median (heap: flat over 1M calls). */
const TARGET_ADDED_MEDIAN_US = 15
const TARGET_STREAM_ADDED_MEDIAN_US = 50
const TARGET_ROUTED1000_ADDED_MEDIAN_US = 30
const TARGET_FALLBACK_ADDED_MEDIAN_US = 25

// -------------------------------------------------------------------------------------------
// The build first (in the parent, before anything is imported from it), then --expose-gc:
// re-execute with the flag (keeping tsx's loader flags from execArgv)
// -------------------------------------------------------------------------------------------

const CHILD_ENV = "EFFECT_LLM_ROUTER_BENCH_CHILD"

const gcFunction = (): (() => void) | undefined => {
  const g = (globalThis as { gc?: () => void }).gc
  return typeof g === "function" ? g : undefined
}

if (process.env[CHILD_ENV] !== "1") ensureBuilt()

if (gcFunction() === undefined && process.env[CHILD_ENV] !== "1" && PROFILE.length === 0) {
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
const gc = (): void => {
  const g = gcFunction() ?? (() => {
    v8.setFlagsFromString("--expose-gc")
    return vm.runInNewContext("gc") as () => void
  })()
  g()
}

// -------------------------------------------------------------------------------------------
// Subjects
// -------------------------------------------------------------------------------------------

const messages: Provider.ChatRequest["messages"] = [{ role: "user", content: "Say hello in one word." }]
const MODEL = "gpt-4o-mini" // priced in the built-in table, so cost metering does its work
const COOLING = ["cool-a", "cool-b", "cool-c"]
const BIG_GROUP_SIZE = 1_000

/** The service the ExecutionPlan steps provide: a chat function bound to one deployment of the fake. */
class Chat extends Context.Tag("bench/Chat")<Chat, {
  readonly chat: (request: Provider.ChatRequest) => Effect.Effect<Provider.ChatResponse, Errors.ProviderError>
}>() {}

const subjects = ({ index: { Fallback, Router }, testing: { FakeProvider } }: Library) => {
  /**
   * One zero-latency fake for everything: `ep-down` always fails (503); the deployments of the
   * `cool` group answer 429 with a retry-after of a day, which the default Cooldown holds them
   * out for (once each: see `coolDown`).
   */
  const fake = FakeProvider.unsafeMake({
    record: false,
    byDeployment: {
      "ep-down": { failure: 503 },
      ...Object.fromEntries(COOLING.map((id) => [id, { failure: { status: 429, retryAfter: "24 hours" } }]))
    }
  })
  const directRequest: Provider.ChatRequest = { model: MODEL, messages }
  const directTarget = FakeProvider.target("direct", { model: MODEL })

  // The router: groups g3 (3 deployments) and g1 as before, plus `cool`, whose deployments are
  // all cooling down during the run and which falls back to g3 (a Fallback policy of the
  // router; every other policy from Router.defaults, the Cooldown included).
  const RouterLive = Router.layer({
    deployments: [
      { id: "g3-a", group: "g3", provider: fake, model: MODEL },
      { id: "g3-b", group: "g3", provider: fake, model: MODEL },
      { id: "g3-c", group: "g3", provider: fake, model: MODEL },
      { id: "g1-a", group: "g1", provider: fake, model: MODEL },
      ...COOLING.map((id) => ({ id, group: "cool", provider: fake, model: MODEL }))
    ]
  }).pipe(Layer.provide(Fallback.layer({ fallbacks: { cool: ["g3"] } })), Layer.provide(Router.defaults))
  // A router of its own for the 1,000-deployment group, so that the figures of the others stay
  // comparable with earlier runs.
  const BigRouterLive = Router.layer({
    deployments: Array.from({ length: BIG_GROUP_SIZE }, (_, i) => ({
      id: `big-${String(i).padStart(4, "0")}`,
      group: "g1000",
      provider: fake,
      model: MODEL
    }))
  }).pipe(Layer.provide(Router.defaults))

  const chatVia = (deploymentId: string) => ({
    chat: (request: Provider.ChatRequest) => fake.chat(request, FakeProvider.target(deploymentId, { model: MODEL }))
  })
  const viaChat = Effect.flatMap(Chat, (service) => service.chat(directRequest))
  // ExecutionPlan with Context steps (the like-for-like baseline: nothing built per run) ...
  const down = Context.make(Chat, chatVia("ep-down"))
  const up = Context.make(Chat, chatVia("ep-up"))
  const planCtxFallback = ExecutionPlan.make({ provide: down, attempts: 1 }, { provide: up })
  const planCtxFirstOk = ExecutionPlan.make({ provide: up, attempts: 1 }, { provide: down })
  // ... and with Layer steps (built on every run), as earlier versions of this benchmark had it.
  const downLayer = Layer.succeed(Chat, chatVia("ep-down"))
  const upLayer = Layer.succeed(Chat, chatVia("ep-up"))
  const planLayerFallback = ExecutionPlan.make({ provide: downLayer, attempts: 1 }, { provide: upLayer })
  const planLayerFirstOk = ExecutionPlan.make({ provide: upLayer, attempts: 1 }, { provide: downLayer })

  return {
    fake,
    directRequest,
    directTarget,
    RouterLive,
    BigRouterLive,
    viaChat,
    planCtxFallback,
    planCtxFirstOk,
    planLayerFallback,
    planLayerFirstOk
  }
}

const routed3Request: Provider.ChatRequest = { model: "g3", messages }
const routed1Request: Provider.ChatRequest = { model: "g1", messages }
const routed1000Request: Provider.ChatRequest = { model: "g1000", messages }
const coolRequest: Provider.ChatRequest = { model: "cool", messages }

const mb = (bytes: number) => bytes / (1024 * 1024)

// -------------------------------------------------------------------------------------------
// Main
// -------------------------------------------------------------------------------------------

interface Target {
  readonly name: string
  readonly limit: string
  readonly value: string
  readonly met: boolean
}

const main = async () => {
  const startedAll = performance.now()
  const machine = machineInfo()
  const library = await loadLibrary()
  const { Router } = library.index
  const s = subjects(library)
  log("effect-llm-router: router overhead on a zero-latency fake provider")
  log(describeMachine(machine))
  log(`measured: ${library.description}`)
  if (PROFILE.length === 0) {
    log(
      `mode ${QUICK ? "QUICK" : "full"}: ${SAMPLES} samples x ${BATCH} calls per variant, ` +
        `${WARMUP} warm-up calls each, heap over ${HEAP_CHUNKS} x ${HEAP_CHUNK_CALLS} routed calls`
    )
  }
  log()

  const runtime = ManagedRuntime.make(s.RouterLive)
  const bigRuntime = ManagedRuntime.make(s.BigRouterLive)
  const router = await runtime.runPromise(Router.Router)
  const bigRouter = await bigRuntime.runPromise(Router.Router)

  // Every deployment of `cool` into cooldown: each call tries those still available (a 429 with
  // a day's retry-after holds each out) before falling back; once none is left, a call goes
  // straight to the fallback group, as every call of the `fallback` variant then does.
  let cooled = false
  for (let i = 0; i < 10 && !cooled; i++) {
    const response = await Effect.runPromise(router.chat(coolRequest))
    cooled = response.route.attempts.every((a) => a.group !== "cool")
  }
  if (!cooled) throw new Error("bench: the deployments of the cool group did not go into cooldown")

  // Every call builds its effect anew (`Effect.suspend`), as a caller making one request would.
  const variants: ReadonlyArray<Variant> = [
    { key: "floor", label: "loop floor (Effect.void)", call: Effect.suspend(() => Effect.void) },
    { key: "direct", label: "direct provider.chat", call: Effect.suspend(() => s.fake.chat(s.directRequest, s.directTarget)) },
    { key: "routed3", label: "routed, 3 deployments", call: Effect.suspend(() => router.chat(routed3Request)) },
    { key: "routed1", label: "routed, 1 deployment", call: Effect.suspend(() => router.chat(routed1Request)) },
    { key: "routed1000", label: "routed, 1,000 deployments", call: Effect.suspend(() => bigRouter.chat(routed1000Request)) },
    { key: "fallback", label: "routed, group cooling -> fallback", call: Effect.suspend(() => router.chat(coolRequest)) },
    {
      key: "epCtxFirstOk",
      label: "ExecutionPlan 1st ok (Context)",
      call: Effect.suspend(() => Effect.withExecutionPlan(s.viaChat, s.planCtxFirstOk))
    },
    {
      key: "epCtxFallback",
      label: "ExecutionPlan 1st fails (Context)",
      call: Effect.suspend(() => Effect.withExecutionPlan(s.viaChat, s.planCtxFallback))
    },
    {
      key: "epLayerFirstOk",
      label: "ExecutionPlan 1st ok (Layer)",
      call: Effect.suspend(() => Effect.withExecutionPlan(s.viaChat, s.planLayerFirstOk))
    },
    {
      key: "epLayerFallback",
      label: "ExecutionPlan 1st fails (Layer)",
      call: Effect.suspend(() => Effect.withExecutionPlan(s.viaChat, s.planLayerFallback))
    },
    {
      key: "directStream",
      label: "direct stream",
      call: Effect.suspend(() => Stream.runDrain(s.fake.stream(s.directRequest, s.directTarget)))
    },
    {
      key: "routedStream",
      label: "routed stream, 3 deployments",
      call: Effect.suspend(() => Stream.runDrain(router.stream(routed3Request))),
      reference: "directStream"
    }
  ]

  // Sanity: every subject answers, from where it should.
  const check = await Effect.runPromise(
    Effect.all({
      direct: s.fake.chat(s.directRequest, s.directTarget),
      routed3: router.chat(routed3Request),
      routed1: router.chat(routed1Request),
      routed1000: bigRouter.chat(routed1000Request),
      fallback: router.chat(coolRequest),
      epCtxFallback: Effect.withExecutionPlan(s.viaChat, s.planCtxFallback),
      epCtxFirstOk: Effect.withExecutionPlan(s.viaChat, s.planCtxFirstOk),
      epLayerFallback: Effect.withExecutionPlan(s.viaChat, s.planLayerFallback),
      streamed: Stream.runCollect(router.stream(routed3Request))
    })
  )
  const fail = (what: string, route: unknown) => {
    throw new Error(`bench: ${what}: ${JSON.stringify(route)}`)
  }
  if (!check.routed3.route.deploymentId.startsWith("g3-") || check.routed1.route.deploymentId !== "g1-a") {
    fail("unexpected route", check.routed3.route)
  }
  if (check.routed3.route.attempts.length !== 1) fail("the routed call should take one attempt", check.routed3.route)
  if (!(check.routed3.route.cost > 0)) fail("the routed call should be metered", check.routed3.route)
  if (!check.routed1000.route.deploymentId.startsWith("big-") || check.routed1000.route.attempts.length !== 1) {
    fail("the 1,000-deployment call should take one attempt in its group", check.routed1000.route)
  }
  const fb = check.fallback.route
  if (fb.requestedGroup !== "cool" || fb.group !== "g3" || fb.attempts.length !== 1) {
    fail("the cooling group's call should go straight to its fallback, g3", fb)
  }
  if (check.epCtxFallback.choices[0]?.message.content !== "ok" || check.epLayerFallback.choices[0]?.message.content !== "ok") {
    fail("the plans should fall back to ep-up", check.epCtxFallback)
  }
  const chunks = Array.from(check.streamed)
  if (chunks.length === 0 || chunks[chunks.length - 1].route === undefined) fail("the routed stream should end with its route", chunks)

  if (PROFILE.length > 0) {
    for (const key of PROFILE) {
      const v = variants.find((x) => x.key === key)
      if (v === undefined) throw new Error(`bench: BENCH_PROFILE: unknown variant "${key}"; known: ${variants.map((x) => x.key).join(", ")}`)
      const work = await workPerCall(v.call, WORK_CALLS, true)
      const file = path.join(os.tmpdir(), `effect-llm-router-${key}-${library.measured}.cpuprofile`)
      printProfile(v.label, await profileCall(v.call, { seconds: PROFILE_SECONDS, warmup: WARMUP, file }))
      log(
        `  ops per call: ${fmt(work.ops, 1)} (fibers ${fmt(work.fibers, 1)}, async ${fmt(work.suspensions, 1)}); by primitive: ` +
          work.byOp!.map(([op, n]) => `${op} ${fmt(n, 1)}`).join(", ")
      )
      log()
    }
    await Promise.all([runtime.dispose(), bigRuntime.dispose()])
    return
  }

  const { samples, seconds: timedSeconds } = await runInterleaved(variants, {
    samples: SAMPLES,
    batch: BATCH,
    warmup: WARMUP
  })
  const work = new Map<string, Work>()
  for (const v of variants) work.set(v.key, await workPerCall(v.call, WORK_CALLS))
  log(`per-call time, microseconds (median and p99 of ${SAMPLES} batch means of ${BATCH} calls; ${fmt(timedSeconds, 1)} s)`)
  const stats = printTable(variants, samples, "direct", new Set(["floor", "direct", "directStream"]), work)
  log("+median / +p99: variant minus direct (medians / p99s; the routed stream: minus the direct stream); +paired: median of per-round differences")
  log("ops / fibers / async: primitive effects evaluated, fibers started, fiber suspensions, per call (load-independent)")
  log()

  const med = (key: string) => stats.get(key)!.median
  const ops = (key: string) => work.get(key)!.ops
  const addedMedian = (key: string, reference = "direct") => med(key) - med(reference)
  const addedPaired = (key: string, reference = "direct") => pairedMedian(samples.get(key)!, samples.get(reference)!)
  const addedMedianUs = addedMedian("routed3")
  const streamAddedMedianUs = addedMedian("routedStream", "directStream")
  const routed1000AddedMedianUs = addedMedian("routed1000")
  const fallbackAddedMedianUs = addedMedian("fallback")
  const epCtxFirstOkAdded = addedMedian("epCtxFirstOk")
  const epCtxFallbackAdded = addedMedian("epCtxFallback")

  // Like with like: the success paths, then the failure paths, each over the same direct call.
  log("like with like (ExecutionPlan with Context steps), added over a direct call at the median:")
  const pair = (label: string, ours: string, theirs: string) => {
    const a = addedMedian(ours)
    const b = addedMedian(theirs)
    log(
      `  ${pad(label, 13)} ${pad(variants.find((v) => v.key === ours)!.label, 34)} ${lpad(fmt(a), 7)} us (${lpad(fmt(ops(ours) - ops("direct"), 0), 4)} ops) | ` +
        `${pad(variants.find((v) => v.key === theirs)!.label, 34)} ${lpad(fmt(b), 7)} us (${lpad(fmt(ops(theirs) - ops("direct"), 0), 4)} ops) | ` +
        `router ${a >= b ? "+" : ""}${fmt(a - b)} us, ${fmt(a / b, 1)}x`
    )
  }
  pair("success path", "routed3", "epCtxFirstOk")
  pair("failure path", "fallback", "epCtxFallback")
  log(
    "  (the router makes no provider call to the cooling group; ExecutionPlan's first step calls the provider and fails, " +
      "which builds one Error, with its stack: see `direct, failing (503)` in bench/overhead-breakdown.ts)"
  )
  log(
    `  fallback machinery over a routed call to the same group: ${fmt(med("fallback") - med("routed3"))} us ` +
      `(${fmt(ops("fallback") - ops("routed3"), 0)} ops); 1,000 deployments over 3: ${fmt(med("routed1000") - med("routed3"))} us ` +
      `(${fmt(ops("routed1000") - ops("routed3"), 0)} ops)`
  )
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

  await Promise.all([runtime.dispose(), bigRuntime.dispose()])

  const targets: Record<string, Target> = {
    chat: {
      name: "routed chat (3 deployments, hedging off) over a direct call",
      limit: `<= ${TARGET_ADDED_MEDIAN_US} us`,
      value: `${fmt(addedMedianUs)} us`,
      met: addedMedianUs <= TARGET_ADDED_MEDIAN_US
    },
    stream: {
      name: "routed stream (3 deployments) over a direct stream",
      limit: `<= ${TARGET_STREAM_ADDED_MEDIAN_US} us`,
      value: `${fmt(streamAddedMedianUs)} us`,
      met: streamAddedMedianUs <= TARGET_STREAM_ADDED_MEDIAN_US
    },
    routed1000: {
      name: "routed chat among 1,000 deployments over a direct call",
      limit: `<= ${TARGET_ROUTED1000_ADDED_MEDIAN_US} us`,
      value: `${fmt(routed1000AddedMedianUs)} us`,
      met: routed1000AddedMedianUs <= TARGET_ROUTED1000_ADDED_MEDIAN_US
    },
    fallback: {
      name: "requested group cooling, fallback answers, over a direct call",
      limit: `<= ${TARGET_FALLBACK_ADDED_MEDIAN_US} us`,
      value: `${fmt(fallbackAddedMedianUs)} us`,
      met: fallbackAddedMedianUs <= TARGET_FALLBACK_ADDED_MEDIAN_US
    },
    heap: {
      name: `heap flat over ${totalCalls.toLocaleString("en-US")} routed calls${QUICK ? " (QUICK: the target is over 1M, full mode)" : ""}`,
      limit: "<= 1 MB per 1M calls (2nd half)",
      value: `${fmt(lateBytesPerCall, 3)} B/call`,
      met: heapBounded
    }
  }
  log(`targets (issue 8), medians, measured on ${library.measured}:`)
  for (const t of Object.values(targets)) {
    log(`  ${pad(t.name, 70)} ${pad(t.limit, 32)} ${lpad(t.value, 12)}  ${t.met ? "met" : "NOT met"}`)
  }
  log()

  const direct = stats.get("direct")!
  const routed = stats.get("routed3")!
  const routed1 = stats.get("routed1")!
  const epLayerFallback = stats.get("epLayerFallback")!
  const directStream = stats.get("directStream")!
  const routedStream = stats.get("routedStream")!
  const opsOf = (key: string) => {
    const w = work.get(key)!
    return { ops: round2(w.ops), fibers: round2(w.fibers), async: round2(w.suspensions) }
  }
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
    // ExecutionPlan with Layer steps, as earlier versions measured it (kept for comparison)
    executionPlanAddedMedianUs: round2(epLayerFallback.median - direct.median),
    executionPlanFirstOkAddedMedianUs: round2(addedMedian("epLayerFirstOk")),
    directMedianUs: round2(direct.median),
    directP99Us: round2(direct.p99),
    routedMedianUs: round2(routed.median),
    routedP99Us: round2(routed.p99),
    routedMeanUs: round2(routed.mean),
    routed1MedianUs: round2(routed1.median),
    routed1AddedMedianUs: round2(routed1.median - direct.median),
    executionPlanMedianUs: round2(epLayerFallback.median),
    loopFloorMedianUs: round2(stats.get("floor")!.median),
    directMinUs: round2(direct.min),
    routedMinUs: round2(routed.min),
    executionPlanMinUs: round2(epLayerFallback.min),
    directOpsPerCall: round2(ops("direct")),
    routedOpsPerCall: round2(ops("routed3")),
    routedFibersPerCall: round2(work.get("routed3")!.fibers),
    routedSuspensionsPerCall: round2(work.get("routed3")!.suspensions),
    executionPlanOpsPerCall: round2(ops("epLayerFallback")),
    streamAddedMedianUs: round2(streamAddedMedianUs),
    directStreamMedianUs: round2(directStream.median),
    routedStreamMedianUs: round2(routedStream.median),
    directStreamOpsPerCall: round2(ops("directStream")),
    routedStreamOpsPerCall: round2(ops("routedStream")),
    targetAddedMedianUs: TARGET_ADDED_MEDIAN_US,
    metTarget: addedMedianUs <= TARGET_ADDED_MEDIAN_US,
    // new: what was measured, the other targets, like-for-like ExecutionPlan pairs
    measured: library.measured,
    commit: library.revision?.commit,
    srcModified: library.revision?.srcModified,
    routedStreamAddedMedianUs: round2(streamAddedMedianUs),
    routedStreamAddedPairedMedianUs: round2(addedPaired("routedStream", "directStream")),
    routed1000AddedMedianUs: round2(routed1000AddedMedianUs),
    routed1000AddedPairedMedianUs: round2(addedPaired("routed1000")),
    routed1000MedianUs: round2(med("routed1000")),
    fallbackAddedMedianUs: round2(fallbackAddedMedianUs),
    fallbackAddedPairedMedianUs: round2(addedPaired("fallback")),
    fallbackMedianUs: round2(med("fallback")),
    executionPlanCtxFirstOkAddedMedianUs: round2(epCtxFirstOkAdded),
    executionPlanCtxFallbackAddedMedianUs: round2(epCtxFallbackAdded),
    successOverExecutionPlanUs: round2(addedMedianUs - epCtxFirstOkAdded),
    fallbackOverExecutionPlanUs: round2(fallbackAddedMedianUs - epCtxFallbackAdded),
    work: Object.fromEntries(variants.map((v) => [v.key, opsOf(v.key)])),
    targets: {
      chatAddedMedianUs: TARGET_ADDED_MEDIAN_US,
      streamAddedMedianUs: TARGET_STREAM_ADDED_MEDIAN_US,
      routed1000AddedMedianUs: TARGET_ROUTED1000_ADDED_MEDIAN_US,
      fallbackAddedMedianUs: TARGET_FALLBACK_ADDED_MEDIAN_US,
      heapLateMBPerMillionCalls: 1
    },
    met: Object.fromEntries(Object.entries(targets).map(([k, t]) => [k, t.met])),
    metAllTargets: Object.values(targets).every((t) => t.met),
    samples: SAMPLES,
    batch: BATCH,
    quick: QUICK,
    ...runFields(machine, (performance.now() - startedAll) / 1000),
    loadAverageAtEnd: round2(os.loadavg()[0])
  }
  log(
    `routed (3 deployments) adds ${fmt(addedMedianUs)} us at the median over a direct call ` +
      `(target <= ${TARGET_ADDED_MEDIAN_US} us: ${result.metTarget ? "met" : "NOT met"}); ` +
      `ExecutionPlan first step ok (Context steps) adds ${fmt(epCtxFirstOkAdded)} us`
  )
  log(JSON.stringify(result))
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
