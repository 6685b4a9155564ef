/**
 * What the Redis store costs a routed call: the time routing adds over a direct provider call
 * with the in-memory store and with the Redis store (`RedisState`) on loopback, timed in the same
 * run, and the Redis round trips per routed call.
 *
 *   npm run bench:redis                  (about 30 s on a 2-core machine)
 *   BENCH_QUICK=1 npm run bench:redis    shorter, noisier
 *   BENCH_SRC=1 / BENCH_NO_BUILD=1       as bench/overhead.ts (harness.ts): src/ through tsx / dist/ as it is
 *
 * The bench starts its own `redis-server` (test/support/redis.ts: a free loopback port, a
 * temporary directory, no persistence) and stops it at the end; without `redis-server` on PATH
 * it says so and exits 1.
 *
 * Subjects, on one zero-latency fake provider (so only the router and the store are timed), the
 * same router config (3 deployments of one group, a priced model so cost metering does its work,
 * `Router.policies`: weighted selection, retries, cooldown/breaker, cost meter), no failures:
 * - `direct`: `provider.chat(request, target)` (the baseline)
 * - `memory`: `router.chat` over `RouterState.memory()` (`Router.defaults`)
 * - `redis`: `router.chat` over `RedisState.layer({ url })`, Redis on 127.0.0.1
 * - `redisUnpriced`: the same router, to a group whose model has no price: no spend to add (one
 *   round trip less: what folding the spend into `complete` would save)
 * Interleaved round-robin (bench/harness.ts `runInterleaved`), sequential calls: one request at
 * a time, so a Redis figure is the latency a call sees, round trips included.
 *
 * Round trips: a separate phase of sequential routed calls with `MONITOR` on another connection:
 * every command Redis receives from the store's connection (commands run inside a script are
 * not round trips and are not counted), named by script (`EVALSHA <sha>` mapped back to the
 * scripts of src/internal/redisScripts.ts). `INFO commandstats` (EVALSHA + EVAL calls) is printed
 * as a cross-check.
 *
 * Target (issue 10): at most 2 round trips per successful call. The last line is one JSON
 * object: `{memoryAddedUs, redisAddedUs, redisRoundTripsPerCall, ...}`.
 */
import { createHash } from "node:crypto"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import { pathToFileURL } from "node:url"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { Redis } from "ioredis"
import * as scripts from "../src/internal/redisScripts.js"
import type { Provider } from "../src/index.js"
import { missingNotice, redisServerPath, startRedis } from "../test/support/redis.js"
import {
  describeMachine,
  ensureBuilt,
  fmt,
  loadLibrary,
  log,
  lpad,
  machine as machineInfo,
  measureSrc,
  pad,
  pairedMedian,
  printTable,
  root,
  round2,
  runInterleaved,
  type Variant,
  runFields
} from "./harness.js"

const QUICK = process.env.BENCH_QUICK === "1" || process.env.BENCH_QUICK === "true"
const BATCH = QUICK ? 20 : 50
const SAMPLES = QUICK ? 100 : 300
const WARMUP = QUICK ? 1_000 : 3_000
const COUNTED_CALLS = QUICK ? 200 : 1_000
const TARGET_ROUND_TRIPS = 2
const MODEL = "gpt-4o-mini" // priced in the built-in table: every call is metered (spend added)

const messages: Provider.ChatRequest["messages"] = [{ role: "user", content: "Say hello in one word." }]
const request: Provider.ChatRequest = { model: "g3", messages }
/** The same, to a group whose model has no price: cost 0, no spend to record. */
const unpricedRequest: Provider.ChatRequest = { model: "unpriced", messages }

/** Script names by the SHA1 ioredis sends them as (EVALSHA). */
const scriptNames = new Map(
  Object.entries(scripts).filter(([, v]) => typeof v === "string").map(([name, lua]) => [createHash("sha1").update(lua as string).digest("hex"), name])
)

const main = async () => {
  if (redisServerPath() === undefined) {
    process.stderr.write(`bench:redis: ${missingNotice}\n`)
    process.exit(1)
  }
  ensureBuilt()
  const startedAll = performance.now()
  const machine = machineInfo()
  const library = await loadLibrary()
  const RedisState = (await import(
    pathToFileURL(measureSrc ? path.join(root, "src", "RedisState.ts") : path.join(root, "dist", "RedisState.js")).href
  )) as typeof import("../src/RedisState.js")
  const { Router } = library.index
  const { FakeProvider } = library.testing

  const server = await startRedis()
  const inspector = new Redis(server.url, { maxRetriesPerRequest: 1 })
  try {
    log("effect-llm-router: the Redis store's cost per routed call (zero-latency fake provider, Redis on loopback)")
    log(describeMachine(machine))
    log(`measured: ${library.description}`)
    log(`redis-server: ${(await inspector.info("server")).match(/redis_version:(\S+)/)?.[1] ?? "?"} on 127.0.0.1:${server.port}`)
    log(`mode ${QUICK ? "QUICK" : "full"}: ${SAMPLES} samples x ${BATCH} calls per variant, ${WARMUP} warm-up calls each; round trips over ${COUNTED_CALLS} calls`)
    log()

    const fake = FakeProvider.unsafeMake({ record: false })
    const deployments = ["a", "b", "c"].map((id) => ({ id, group: "g3", provider: fake, model: MODEL }))
    const memoryRuntime = ManagedRuntime.make(Router.layer({ deployments }).pipe(Layer.provide(Router.defaults)))
    const unpricedDeployments = ["x", "y", "z"].map((id) => ({ id, group: "unpriced", provider: fake, model: "no-price-model" }))
    const redisRuntime = ManagedRuntime.make(
      Router.layer({ deployments: [...deployments, ...unpricedDeployments] }).pipe(
        Layer.provideMerge(Router.policies),
        Layer.provideMerge(RedisState.layer({ url: server.url, keyPrefix: "bench" }))
      )
    )
    const memoryRouter = await memoryRuntime.runPromise(Router.Router)
    const redisRouter = await redisRuntime.runPromise(Router.Router)
    const target = FakeProvider.target("direct", { model: MODEL })

    // Sanity: every subject answers; the routed calls are metered; the Redis one went through Redis.
    const check = await Effect.runPromise(Effect.all([memoryRouter.chat(request), redisRouter.chat(request)]))
    for (const response of check) {
      if (!(response.route.cost > 0) || response.route.attempts.length !== 1 || response.route.storeFailed === true) {
        throw new Error(`bench:redis: unexpected route ${JSON.stringify(response.route)}`)
      }
    }
    if ((await inspector.exists("{bench}:spend")) !== 1) throw new Error("bench:redis: the Redis router did not write to Redis")

    const variants: ReadonlyArray<Variant> = [
      { key: "direct", label: "direct provider.chat", call: Effect.suspend(() => fake.chat(request, target)) },
      { key: "memory", label: "routed, in-memory store", call: Effect.suspend(() => memoryRouter.chat(request)) },
      { key: "redis", label: "routed, Redis store (loopback)", call: Effect.suspend(() => redisRouter.chat(request)) },
      {
        key: "redisUnpriced",
        label: "routed, Redis, unpriced (no spend)",
        call: Effect.suspend(() => redisRouter.chat(unpricedRequest))
      }
    ]
    const { samples, seconds } = await runInterleaved(variants, { samples: SAMPLES, batch: BATCH, warmup: WARMUP })
    log(`per-call time, microseconds (median and p99 of ${SAMPLES} batch means of ${BATCH} sequential calls; ${fmt(seconds, 1)} s)`)
    const stats = printTable(variants, samples, "direct", new Set(["direct"]))
    log()
    const memoryAddedUs = stats.get("memory")!.median - stats.get("direct")!.median
    const redisAddedUs = stats.get("redis")!.median - stats.get("direct")!.median

    // Round trips: sequential routed calls with MONITOR on another connection.
    const monitor = await inspector.monitor()
    const seen = new Map<string, number>()
    /** The store's connection: the one that runs the scripts (MONITOR also shows this bench's own commands). */
    let store: string | undefined
    monitor.on("monitor", (_time: string, args: ReadonlyArray<string>, source: string) => {
      if (source === "lua") return // run inside a script: not a round trip
      const command = args[0]?.toLowerCase() ?? "?"
      if (store === undefined && command === "evalsha") store = source
      if (source !== store) return
      const name = command === "evalsha" ? `evalsha ${scriptNames.get(args[1]) ?? args[1]}` : command
      seen.set(name, (seen.get(name) ?? 0) + 1)
    })
    const statsClient = new Redis(server.url, { maxRetriesPerRequest: 1 })
    const scriptCalls = async () => {
      const info = await statsClient.info("commandstats")
      const calls = (name: string) => Number(info.match(new RegExp(`cmdstat_${name}:calls=(\\d+)`))?.[1] ?? 0)
      return calls("evalsha") + calls("eval")
    }
    const settle = () => new Promise((r) => setTimeout(r, 200))
    /** Commands the store sent per call over `COUNTED_CALLS` sequential calls of `req`, by command. */
    const countRoundTrips = async (req: Provider.ChatRequest) => {
      await settle()
      const scriptsBefore = await scriptCalls()
      seen.clear()
      const responses = await Effect.runPromise(
        Effect.forEach(Array.from({ length: COUNTED_CALLS }), () => redisRouter.chat(req), { concurrency: 1 })
      )
      await settle()
      const scriptsPerCall = ((await scriptCalls()) - scriptsBefore) / COUNTED_CALLS
      const offPath = responses.filter((r) => r.route.storeFailed === true || r.route.attempts.length !== 1).length
      const perCall = Array.from(seen.values()).reduce((a, b) => a + b, 0) / COUNTED_CALLS
      const byCommand = new Map(Array.from(seen, ([k, n]) => [k, n / COUNTED_CALLS] as const).sort((x, y) => y[1] - x[1]))
      const spent = responses.some((r) => r.route.cost > 0)
      return { perCall, byCommand, scriptsPerCall, offPath, spent }
    }
    const printCount = (label: string, c: Awaited<ReturnType<typeof countRoundTrips>>) => {
      log(`Redis round trips per routed call, ${label} (${COUNTED_CALLS} sequential calls${c.offPath > 0 ? `, ${c.offPath} NOT on the happy path` : ""}): ${fmt(c.perCall)}`)
      for (const [name, n] of c.byCommand) log(`  ${pad(name, 28)} ${lpad(fmt(n), 6)} per call`)
      log(`  cross-check, INFO commandstats: ${fmt(c.scriptsPerCall)} script calls (EVALSHA + EVAL) per call`)
    }
    const priced = await countRoundTrips(request)
    const unpriced = await countRoundTrips(unpricedRequest)
    monitor.disconnect()
    statsClient.disconnect()
    if (!priced.spent || unpriced.spent) throw new Error("bench:redis: the priced calls should be metered, the unpriced ones not")
    printCount(`priced model (${MODEL}: spend recorded)`, priced)
    printCount("unpriced model (no spend to record)", unpriced)
    const redisRoundTripsPerCall = priced.perCall
    const met = redisRoundTripsPerCall <= TARGET_ROUND_TRIPS
    log()
    log(`target (issue 10): at most ${TARGET_ROUND_TRIPS} Redis round trips per successful call: ${fmt(redisRoundTripsPerCall)} -> ${met ? "met" : "NOT met"}` +
      (met ? "" : ` (${fmt(unpriced.perCall)} without spend: the spend is added by a round trip of its own, addSpend, after complete)`))
    log(
      `added over a direct call at the median: in-memory store ${fmt(memoryAddedUs)} us, Redis store ${fmt(redisAddedUs)} us ` +
        `(${fmt(stats.get("redisUnpriced")!.median - stats.get("direct")!.median)} us without a spend to add)`
    )

    await Promise.all([memoryRuntime.dispose(), redisRuntime.dispose()])
    const result = {
      memoryAddedUs: round2(memoryAddedUs),
      redisAddedUs: round2(redisAddedUs),
      redisRoundTripsPerCall: round2(redisRoundTripsPerCall),
      metRoundTrips: met,
      targetRoundTrips: TARGET_ROUND_TRIPS,
      roundTripsByCommand: Object.fromEntries(Array.from(priced.byCommand, ([k, n]) => [k, round2(n)])),
      redisRoundTripsPerCallUnpriced: round2(unpriced.perCall),
      redisUnpricedAddedUs: round2(stats.get("redisUnpriced")!.median - stats.get("direct")!.median),
      memoryAddedPairedUs: round2(pairedMedian(samples.get("memory")!, samples.get("direct")!)),
      redisAddedPairedUs: round2(pairedMedian(samples.get("redis")!, samples.get("direct")!)),
      directMedianUs: round2(stats.get("direct")!.median),
      memoryMedianUs: round2(stats.get("memory")!.median),
      redisMedianUs: round2(stats.get("redis")!.median),
      redisP99Us: round2(stats.get("redis")!.p99),
      measured: library.measured,
      commit: library.revision?.commit,
      srcModified: library.revision?.srcModified,
      samples: SAMPLES,
      batch: BATCH,
      quick: QUICK,
      ...runFields(machine, (performance.now() - startedAll) / 1000)
    }
    log(JSON.stringify(result))
  } finally {
    inspector.disconnect()
    await server.remove()
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
