/**
 * Selection cost benchmark: what one routed pick costs, per strategy, among 10, 100 and 1,000
 * deployments of a group (issue 9; LiteLLM's users report about 51 ms per pick at 1,000).
 *
 *   npm run bench:selection                   full run (under a minute on a 2-core machine, after the build)
 *   BENCH_QUICK=1 npm run bench:selection     short run (noisier)
 *   BENCH_SRC=1 npm run bench:selection       src/ through tsx instead of the build
 *   BENCH_PROFILE=leastBusy:1000,usageBased:1000 npm run bench:selection
 *                                             CPU profile of these rows instead (see below)
 *
 * What is measured: the BUILT package (dist/, rebuilt first when older than src/; see
 * bench/harness.ts), as an app importing `effect-llm-router` runs it.
 *
 * Method: what a routed call pays for its selection. For each strategy a router is built with
 * `Router.layer(...)`, that strategy's `Selector` layer and `Router.defaults` (in-memory store,
 * cooldown, retries, cost metering), over three groups of 10, 100 and 1,000 deployments of one
 * zero-latency fake provider. A row's call is `router.chat(request)` to one group: the whole
 * routed call, its reservation (admission of every deployment, the selector's pick inside the
 * store's atomic reserve, the take) included, as a user's request runs it. The BASELINE is the
 * same routed call on a router whose selector does no work at all (`Selector.make` answering
 * the first candidate), measured in the same run, interleaved round-robin with every other row
 * (the starting row rotating each round), so machine noise, GC and JIT state hit them alike.
 * A strategy's `us/pick` is the median over rounds of (its batch mean - the baseline's batch
 * mean for the same group size): the time selection adds to a routed call. It includes
 * everything the choice causes, nothing the routed call pays anyway: reading the live stats,
 * and spreading calls over many deployments, whose state is then colder in the CPU's caches
 * than the baseline's one deployment (the roundRobin row, whose pick reads nothing, shows that
 * part; a line under the table repeats it). The figure is conservative: a router that always
 * answers with one deployment is not a router anyone runs.
 *
 * The `pick alone` column times `selector.pick(candidates, request)` by itself, minus the
 * baseline selector's pick: the candidates are the frozen array of live stats views a router
 * hands its selector (captured from a router of the same deployments), read over and over, so
 * warm in cache: a lower bound, and a cross-check without the router around it.
 *
 * The deployments: the same `rpm` / `tpm` (large enough never to be reached in the run: the
 * store enforces them) and distinct prices (so lowest cost has one cheapest, not a tie). Worst
 * cases where a strategy has one:
 *
 * - least busy sees an idle group (calls are sequential): every pick breaks a tie among all;
 * - usage based (`usageBased`): a group of equal limits balances itself into large ties (the
 *   deployments with the fewest requests in the window), which the pass cannot cut short (it
 *   stops reading a candidate once it cannot win or tie), so it reads both window counters of
 *   each candidate it reads: a run of 32 by default (`sample`), every one of them with
 *   `usageBased (sample: all)`;
 * - `usageBased (+ headers)`: an upstream rate-limit report on every deployment, recorded before
 *   timing with distinct remaining counts (`upstreamMaxAge` of an hour, so it stays in force):
 *   the report of each candidate read, the counters of those still in the running.
 *
 * Strategies the package exports besides these (lowest latency, peak EWMA: other work on the
 * same issue) are timed when present, with their default options.
 *
 * Target (issue 9): under 20 us per pick at 1,000 deployments; every row prints met / NOT met
 * against it. Times depend on the machine and its load (the header prints the load average).
 *
 * The last line printed is one JSON object: `{"picks":[{"strategy","deployments","usPerPick"}...]}`,
 * plus `machine`, `measured`, `targetUs` and per row `pickAloneUs`, `routedMedianUs`, `met`.
 *
 * Profile mode (`BENCH_PROFILE=<strategy>:<size>,...`, `BENCH_PROFILE_SECONDS`, default 6): no
 * timing table; each row's routed call runs under V8's sampling profiler and the top functions
 * and files by self time are printed (see `profileCall` in bench/harness.ts).
 */
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import type { Provider, Router as RouterModule, RouterState as RouterStateModule, Selector as SelectorModule } from "../src/index.js"
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
  profileCall,
  round2,
  runInterleaved,
  statsOf,
  type Variant
} from "./harness.js"

// -------------------------------------------------------------------------------------------
// Settings
// -------------------------------------------------------------------------------------------

const QUICK = process.env.BENCH_QUICK === "1" || process.env.BENCH_QUICK === "true"
const SAMPLES = QUICK ? 80 : 250
const BATCH = QUICK ? 40 : 80
const WARMUP = QUICK ? 2_000 : 6_000
const PICK_SAMPLES = QUICK ? 60 : 150
const PICK_BATCH = QUICK ? 100 : 200
const PROFILE = (process.env.BENCH_PROFILE ?? "").split(",").map((k) => k.trim()).filter((k) => k !== "")
const PROFILE_SECONDS = Number(process.env.BENCH_PROFILE_SECONDS ?? 6)

const SIZES = [10, 100, 1_000] as const
const TARGET_US = 20
const MODEL = "gpt-4o-mini"

// -------------------------------------------------------------------------------------------
// Subjects
// -------------------------------------------------------------------------------------------

interface Strategy {
  readonly key: string
  readonly label: string
  readonly layer: Layer.Layer<SelectorModule.Selector, unknown, unknown>
  readonly baseline?: boolean
  /** Its router's store holds an upstream rate-limit report for every deployment. */
  readonly reports?: boolean
}

/** The strategies the loaded package exports: the built-ins, and the latency ones when present. */
const strategies = (library: Library): ReadonlyArray<Strategy> => {
  const { Selector } = library.index
  const list: Array<Strategy> = [
    {
      key: "baseline",
      label: "baseline (first candidate)",
      layer: Selector.make((candidates) => Effect.succeed(candidates[0])),
      baseline: true
    },
    { key: "weighted", label: "weighted", layer: Selector.weighted },
    { key: "roundRobin", label: "roundRobin", layer: Selector.roundRobin },
    { key: "leastBusy", label: "leastBusy", layer: Selector.leastBusy },
    { key: "usageBased", label: "usageBased", layer: Selector.usageBased() },
    { key: "usageBased+all", label: "usageBased (sample: all)", layer: Selector.usageBased({ sample: "all" }) },
    {
      key: "usageBased+headers",
      label: "usageBased (+ headers)",
      layer: Selector.usageBased({ upstreamMaxAge: "1 hour" }),
      reports: true
    },
    { key: "lowestCost", label: "lowestCost", layer: Selector.lowestCost() }
  ]
  // Added by other work on the same issue; timed when the build has them.
  const optional = Selector as unknown as Record<string, unknown>
  for (const key of ["lowestLatency", "peakEwma"]) {
    const found = optional[key]
    const layer = Layer.isLayer(found)
      ? found
      : typeof found === "function"
      ? (found as () => unknown)()
      : undefined
    if (Layer.isLayer(layer)) list.push({ key, label: key, layer: layer as Strategy["layer"] })
  }
  return list
}

/** Deployment `i` of a group of `size`: the same limits, distinct prices. */
const deploymentsOf = (fake: Provider.Provider, size: number) =>
  Array.from({ length: size }, (_, i) => {
    // a permutation of 0 .. size-1, so that the cheapest is not simply the first
    const rank = (i * 7919) % size
    return {
      id: `g${size}-${String(i).padStart(4, "0")}`,
      group: `g${size}`,
      provider: fake,
      model: MODEL,
      rpm: 100_000_000,
      tpm: 10_000_000_000,
      pricing: { inputCostPerToken: (1 + rank / size) * 1e-7, outputCostPerToken: (1 + rank / size) * 4e-7 }
    }
  })

const requestOf = (size: number): Provider.ChatRequest => ({
  model: `g${size}`,
  messages: [{ role: "user", content: "Say hello in one word." }],
  max_tokens: 16
})

/** An upstream rate-limit report on every deployment (distinct remaining counts), as headers would leave. */
const recordReports = async (state: RouterStateModule.Service, deployments: ReadonlyArray<{ readonly index: number }>) => {
  await Effect.runPromise(Effect.forEach(deployments as ReadonlyArray<Parameters<RouterStateModule.Service["recordRateLimit"]>[0]>, (d, i) =>
    state.recordRateLimit(d, {
      remainingRequests: 90_000_000 + ((i * 104_729) % 1_000_000),
      limitRequests: 100_000_000,
      remainingTokens: 9_000_000_000 + ((i * 15_485_863) % 1_000_000_000),
      limitTokens: 10_000_000_000
    }), { discard: true }))
  const stats = await Effect.runPromise(state.snapshot(deployments as never))
  if (stats.some((s) => s.upstream === undefined)) throw new Error("bench: the upstream reports were not recorded")
}

// -------------------------------------------------------------------------------------------
// Main
// -------------------------------------------------------------------------------------------

interface Row {
  readonly strategy: string
  readonly label: string
  readonly deployments: number
  readonly usPerPick: number
  readonly pickAloneUs: number
  readonly routedMedianUs: number
  readonly met: boolean
}

const main = async () => {
  ensureBuilt()
  const machine = machineInfo()
  const library = await loadLibrary()
  const { CostMeter, Router, RouterState, Selector } = library.index
  const { FakeProvider } = library.testing
  log("effect-llm-router: selection cost per routed pick, by strategy and group size")
  log(describeMachine(machine))
  log(`measured: ${library.description}`)

  const fake = FakeProvider.unsafeMake({ record: false })
  const deployments = SIZES.flatMap((size) => deploymentsOf(fake, size))
  const list = strategies(library)

  // One router per strategy, over the three groups.
  const routers = new Map<string, { runtime: ManagedRuntime.ManagedRuntime<any, any>; router: RouterModule.Service }>()
  for (const s of list) {
    const layer = Router.layer({ deployments }).pipe(
      Layer.provide(s.layer as Layer.Layer<SelectorModule.Selector, never, never>),
      Layer.provideMerge(Router.defaults)
    )
    const runtime = ManagedRuntime.make(layer as Layer.Layer<RouterModule.Router | RouterStateModule.RouterState>)
    const router = await runtime.runPromise(Router.Router)
    routers.set(s.key, { runtime, router })
  }

  // Upstream reports on every deployment where a strategy is timed with them.
  for (const s of list) {
    if (s.reports !== true) continue
    const { runtime, router } = routers.get(s.key)!
    await recordReports(await runtime.runPromise(RouterState.RouterState), router.deployments)
  }

  // Sanity: every router answers from the right group; lowest cost from the cheapest deployment.
  for (const s of list) {
    const { router } = routers.get(s.key)!
    for (const size of SIZES) {
      const reply = await Effect.runPromise(router.chat(requestOf(size)))
      if (reply.route.group !== `g${size}` || reply.route.attempts.length !== 1) {
        throw new Error(`bench: ${s.key} g${size}: unexpected route ${JSON.stringify(reply.route)}`)
      }
      if (s.key === "lowestCost") {
        const cheapest = deploymentsOf(fake, size).find((_, i) => (i * 7919) % size === 0)!.id
        if (reply.route.deploymentId !== cheapest) {
          throw new Error(`bench: lowestCost g${size} picked ${reply.route.deploymentId}, not the cheapest ${cheapest}`)
        }
      }
    }
  }

  const variants: Array<Variant> = []
  for (const size of SIZES) {
    const request = requestOf(size)
    for (const s of list) {
      const { router } = routers.get(s.key)!
      variants.push({ key: `${s.key}:${size}`, label: `${s.label}, ${size}`, call: Effect.suspend(() => router.chat(request)) })
    }
  }

  if (PROFILE.length > 0) {
    for (const key of PROFILE) {
      const v = variants.find((x) => x.key === key)
      if (v === undefined) throw new Error(`bench: BENCH_PROFILE: unknown row "${key}"; known: ${variants.map((x) => x.key).join(", ")}`)
      const file = path.join(os.tmpdir(), `effect-llm-router-selection-${key.replace(":", "-")}-${library.measured}.cpuprofile`)
      printProfile(v.label, await profileCall(v.call, { seconds: PROFILE_SECONDS, warmup: WARMUP, file }))
      log()
    }
    await Promise.all([...routers.values()].map((r) => r.runtime.dispose()))
    return
  }

  log(
    `mode ${QUICK ? "QUICK" : "full"}: routed calls ${SAMPLES} samples x ${BATCH} calls per row, ${WARMUP} warm-up calls each; ` +
      `pick alone ${PICK_SAMPLES} x ${PICK_BATCH}`
  )
  log()

  const { samples, seconds } = await runInterleaved(variants, { samples: SAMPLES, batch: BATCH, warmup: WARMUP })

  // The pick alone: each strategy's selector (a fresh build, with the CostMeter and store the
  // lowest-cost one needs) on the candidates a router hands its selector: the frozen array of a
  // group's live stats views, captured from a router of its own (same deployments, the same
  // upstream reports as the usage-based router's).
  const captures: Array<ManagedRuntime.ManagedRuntime<any, any>> = []
  const captureGroups = async (reports: boolean) => {
    const captured = new Map<string, ReadonlyArray<SelectorModule.Candidate>>()
    const runtime = ManagedRuntime.make(
      Router.layer({ deployments }).pipe(
        Layer.provide(Selector.make((candidates, selection) => {
          captured.set(selection.group, candidates)
          return Effect.succeed(candidates[0])
        })),
        Layer.provideMerge(Router.defaults)
      ) as Layer.Layer<RouterModule.Router | RouterStateModule.RouterState>
    )
    captures.push(runtime)
    const router = await runtime.runPromise(Router.Router)
    if (reports) await recordReports(await runtime.runPromise(RouterState.RouterState), router.deployments)
    for (const size of SIZES) await Effect.runPromise(router.chat(requestOf(size)))
    for (const size of SIZES) {
      const candidates = captured.get(`g${size}`)
      if (candidates?.length !== size || !Object.isFrozen(candidates)) throw new Error(`bench: g${size}: no frozen candidates captured`)
    }
    return captured
  }
  const plain = await captureGroups(false)
  const reported = await captureGroups(true)
  const alone: Array<Variant> = []
  for (const size of SIZES) {
    const selection: SelectorModule.SelectionRequest = { kind: "chat", group: `g${size}`, request: requestOf(size), attempt: 0 }
    for (const s of list) {
      const candidates = (s.reports === true ? reported : plain).get(`g${size}`)!
      const selector = await Effect.runPromise(
        Effect.provide(
          Selector.Selector,
          (s.layer as Layer.Layer<SelectorModule.Selector, never, any>).pipe(
            Layer.provide(CostMeter.layer()),
            Layer.provide(RouterState.memory())
          ) as Layer.Layer<SelectorModule.Selector>
        )
      )
      alone.push({ key: `${s.key}:${size}`, label: `${s.label}, ${size}`, call: Effect.suspend(() => selector.pick(candidates, selection)) })
    }
  }
  const { samples: aloneSamples } = await runInterleaved(alone, { samples: PICK_SAMPLES, batch: PICK_BATCH, warmup: WARMUP })

  const rows: Array<Row> = []
  const width = Math.max(...list.map((s) => s.label.length)) + 2
  log(
    `selection cost, us per pick (routed: median over ${SAMPLES} rounds of the batch-mean difference to the baseline ` +
      `router, same group size; ${fmt(seconds, 1)} s)`
  )
  const header = [
    pad("strategy", width),
    lpad("deployments", 11),
    lpad("us/pick", 9),
    lpad("pick alone", 11),
    lpad("routed med", 11),
    lpad("routed p99", 11),
    "  target"
  ].join(" ")
  log(header)
  log("-".repeat(header.length + 12))
  for (const size of SIZES) {
    const base = samples.get(`baseline:${size}`)!
    const baseAlone = aloneSamples.get(`baseline:${size}`)!
    for (const s of list) {
      const key = `${s.key}:${size}`
      const st = statsOf(samples.get(key)!)
      const us = s.baseline === true ? 0 : pairedMedian(samples.get(key)!, base)
      const pickAlone = s.baseline === true
        ? statsOf(aloneSamples.get(key)!).median
        : pairedMedian(aloneSamples.get(key)!, baseAlone)
      const met = s.baseline === true || us < TARGET_US
      if (s.baseline !== true) {
        rows.push({ strategy: s.key, label: s.label, deployments: size, usPerPick: us, pickAloneUs: pickAlone, routedMedianUs: st.median, met })
      }
      log(
        [
          pad(s.label, width),
          lpad(size.toLocaleString("en-US"), 11),
          lpad(s.baseline === true ? "(ref)" : fmt(us), 9),
          lpad(fmt(pickAlone), 11),
          lpad(fmt(st.median), 11),
          lpad(fmt(st.p99), 11),
          `  ${s.baseline === true ? "" : met ? `met (< ${TARGET_US} us)` : `NOT met (>= ${TARGET_US} us)`}`
        ].join(" ")
      )
    }
  }
  log(
    "us/pick: what selection adds to a routed call over the baseline router (whose selector answers the first candidate); " +
      "pick alone: selector.pick on a group's candidates (live stats views, as a router hands them) minus the baseline's pick (the baseline row: its own pick); " +
      "routed med / p99: the whole routed call"
  )
  const spread = SIZES.map((size) => {
    const rr = rows.find((r) => r.strategy === "roundRobin" && r.deployments === size)
    return rr === undefined ? "" : `${size.toLocaleString("en-US")}: ${fmt(rr.usPerPick)} us`
  }).filter((x) => x !== "")
  log(
    `of which spreading calls over the group's slots (colder memory than the baseline's one slot), as roundRobin ` +
      `shows (its pick alone reads nothing): ${spread.join(", ")}`
  )
  const at1000 = rows.filter((r) => r.deployments === 1_000)
  const missed = at1000.filter((r) => !r.met)
  log(
    `target (issue 9): under ${TARGET_US} us per pick at 1,000 deployments: ` +
      (missed.length === 0 ? "met by every strategy" : `NOT met by ${missed.map((r) => r.strategy).join(", ")}`)
  )
  log()

  await Promise.all([...routers.values()].map((r) => r.runtime.dispose()).concat(captures.map((r) => r.dispose())))

  log(JSON.stringify({
    picks: rows.map((r) => ({ strategy: r.strategy, deployments: r.deployments, usPerPick: round2(r.usPerPick) })),
    machine,
    measured: library.measured,
    targetUs: TARGET_US,
    rows: rows.map((r) => ({
      strategy: r.strategy,
      deployments: r.deployments,
      pickAloneUs: round2(r.pickAloneUs),
      routedMedianUs: round2(r.routedMedianUs),
      met: r.met
    }))
  }))
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
