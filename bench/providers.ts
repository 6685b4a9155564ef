/**
 * Provider overhead benchmark: our OpenAI-compatible provider against the official `openai`
 * SDK, the same calls to the same loopback server, timed per call in one run.
 *
 *   npm run bench:providers                full run (about 60-80 s)
 *   BENCH_QUICK=1 npm run bench:providers  short run (about 20-30 s; noisier figures)
 *
 * Server. A plain `node:http` server in a child process (`bench/providers-server.ts`, forked
 * with the same tsx loader), serving fixed OpenAI-format replies (`bench/providers-fixtures.ts`)
 * over keep-alive connections. A child process rather than a server in this process: the
 * server's parsing and writing would otherwise run on the event loop the clients are timed on,
 * interleaved with the call being timed and charged to it; in a child it runs on another core,
 * so a call's time is the client's own work plus the loopback round trip, alike for every
 * client. The server also counts the TCP connections it accepts (asked over IPC between
 * batches, outside the timed region): `conn/100` shows whether a client reuses its connections.
 *
 * Calls (same request body, same replies):
 * - chat: `provider.chat(request, target)` / `client.chat.completions.create(body)` (JSON reply)
 * - stream: `provider.stream(request, target)` drained / `create({ ...body, stream: true,
 *   stream_options: { include_usage: true } })` iterated to the end; the reply is 20 content
 *   chunks, a finish chunk, a usage chunk and `[DONE]` (22 chunks yielded, checked). Server modes:
 *   - `burst`: the whole event stream in one write (the client reads one or two body chunks:
 *     mostly parsing cost). The primary stream figure.
 *   - `paced`: one write per event, one event-loop turn apart, and the end of the body in a write
 *     of its own, as servers that flush every event do (one read per event: per-read cost too)
 *   - `tail`: as `paced`, the end of the body 2 ms after `[DONE]` (a remote server's last packet
 *     arrives a moment later): not timed, only new connections per call are counted
 *
 * Clients:
 * - `ours (undici)`: `OpenAiCompatible.make({ apiBase, apiKey })` with
 *   `NodeHttpClient.layerUndici` (@effect/platform-node, the `undici` package's own `Agent`).
 *   The primary figures.
 * - `ours (fetch)`: the same with `FetchHttpClient.layer` (global `fetch`, Node's bundled undici)
 * - `routed (undici)`: `Router.chat` / `Router.stream` on a router (`Router.defaults`) over one
 *   deployment of `ours (undici)`: what routing adds, as a caller of the router sees it
 * - `openai SDK`: `new OpenAI({ apiKey, baseURL, maxRetries: 0 })` (global `fetch`)
 * Our calls run inside one Effect program per batch (as the router runs them), with a target
 * like the router's (its `reportRateLimit` listens, so rate-limit headers are parsed); the SDK's
 * in a plain async loop. `ours (undici) runPromise` is `Effect.runPromise(provider.chat(...))`
 * per call: what a Promise caller pays for the same call.
 *
 * Method. Per kind (chat, stream burst, stream paced): a warm-up (every variant, interleaved),
 * then rounds until the kind's time budget is spent: each round runs one batch of `BATCH`
 * sequential calls (concurrency 1) of every variant, the starting variant rotating every round,
 * so noise, GC and JIT state hit all variants alike. Every call is timed alone with
 * `performance.now()` (calls take hundreds of µs, far above its resolution): median and p99 are
 * over single calls. "ratio" is ours / openai SDK (< 1: ours is faster) of the medians and of
 * the p99s; "paired" is the median over rounds of the per-round ratio of batch means (a
 * cross-check insensitive to drift during the run).
 *
 * Concurrency 16: rounds of `C16_CALLS` calls made by 16 workers (fibers / async functions)
 * sharing one counter, variants interleaved the same way; the figure is wall time / calls (µs
 * per call, i.e. 1e6 / throughput), median over rounds. With 2 cores the server's core is busy
 * too, so this is the client's throughput against a server that is not free.
 *
 * Times depend on the machine and its load (the header prints the load average); ratios hold
 * better. `bench/providers-breakdown.ts` splits our stream path into its stages.
 *
 * The last line printed is one JSON object with every figure (`metTarget`: ours, median, is not
 * slower than the SDK for chat and both stream modes).
 */
import { fork } from "node:child_process"
import { readFileSync } from "node:fs"
import { once } from "node:events"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Effect from "effect/Effect"
import { machine } from "./harness.js"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import OpenAI from "openai"
import { VERSION as openaiVersion } from "openai/version"
import { OpenAiCompatible, type Provider, Router } from "../src/index.js"
import * as Fixtures from "./providers-fixtures.js"

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

const QUICK = process.env.BENCH_QUICK === "1"
/** Sequential calls per batch (one batch per variant per round). */
const BATCH = 40
/** Warm-up per variant: calls, and a cap on the seconds per kind. */
const WARMUP = { calls: QUICK ? 120 : 600, seconds: QUICK ? 1.5 : 4 }
/** Timing budget per kind in seconds (rounds run until it is spent), and bounds on rounds. */
const BUDGET = { chat: QUICK ? 2 : 10, burst: QUICK ? 2.5 : 12, paced: QUICK ? 2.5 : 12 }
const MIN_ROUNDS = QUICK ? 3 : 10
const MAX_ROUNDS = 400
/** Concurrency phase: workers, calls per round, seconds per kind, bounds on rounds. */
const C16 = 16
const C16_CALLS = QUICK ? 160 : 320
const C16_BUDGET = QUICK ? 1.5 : 6
const C16_ROUNDS = { min: QUICK ? 1 : 3, max: 40 }
/** Stream calls per client in the connection-reuse check (`/tail/`). */
const TAIL_CALLS = QUICK ? 20 : 60

const log = (line = ""): void => void process.stdout.write(line + "\n")
const fmt = (n: number, digits = 1): string => (Number.isFinite(n) ? n.toFixed(digits) : "-")
const r1 = (n: number): number => Math.round(n * 10) / 10
const r3 = (n: number): number => Math.round(n * 1000) / 1000
const pad = (s: string, n: number): string => (s.length >= n ? s : s + " ".repeat(n - s.length))
const lpad = (s: string, n: number): string => (s.length >= n ? s : " ".repeat(n - s.length) + s)

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

interface Server {
  readonly url: string
  /** TCP connections the server accepted so far. */
  readonly connections: () => Promise<number>
  readonly stop: () => void
}

const startServer = async (): Promise<Server> => {
  const serverPath = fileURLToPath(new URL("./providers-server.ts", import.meta.url))
  // the same loader flags (tsx) as this process
  const child = fork(serverPath, [], { execArgv: process.execArgv, stdio: ["ignore", "inherit", "inherit", "ipc"] })
  const [message] = (await once(child, "message")) as [{ port: number }]
  return {
    url: `http://127.0.0.1:${message.port}`,
    connections: async () => {
      child.send("connections")
      const [reply] = (await once(child, "message")) as [{ connections: number }]
      return reply.connections
    },
    stop: () => {
      child.disconnect()
      child.kill()
    }
  }
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

const apiKey = "sk-bench-0000000000000000"

const ourRequest: Provider.ChatRequest = {
  model: Fixtures.model,
  messages: Fixtures.messages,
  max_tokens: Fixtures.maxTokens,
  temperature: Fixtures.temperature
}

// Like the router's targets: its `reportRateLimit` listens (the router records rate limits).
const target: Provider.Target = {
  deploymentId: "bench",
  model: Fixtures.model,
  apiBase: undefined,
  apiKey: undefined,
  timeout: undefined,
  reportRateLimit: () => Effect.void
}

type Runtime = ManagedRuntime.ManagedRuntime<HttpClient.HttpClient, never>

const makeOurs = async (layer: Layer.Layer<HttpClient.HttpClient>, apiBase: string) => {
  const runtime: Runtime = ManagedRuntime.make(layer)
  const provider = await runtime.runPromise(OpenAiCompatible.make({ apiBase, apiKey: Redacted.make(apiKey) }))
  return { runtime, provider }
}

/** A router over one deployment of our provider (undici), with `Router.defaults`. */
const makeRouted = (apiBase: string) =>
  ManagedRuntime.make(
    Layer.unwrapEffect(Effect.map(OpenAiCompatible.make({ apiBase, apiKey: Redacted.make(apiKey) }), (provider) =>
      Router.layer({ deployments: [{ id: "bench", group: "bench", provider, model: Fixtures.model }] }))).pipe(
        Layer.provide(Router.defaults),
        Layer.provide(NodeHttpClient.layerUndici)
      )
  )
const routedRequest: Provider.ChatRequest = { ...ourRequest, model: "bench" }

/** What one call returns, checked after the warm-up: chunks yielded and text reassembled. */
interface Outcome {
  chunks: number
  text: string
}

const ourChat = (provider: Provider.Provider): Effect.Effect<Outcome, unknown> =>
  Effect.map(provider.chat(ourRequest, target), (r) => {
    const content = r.choices[0]?.message.content
    return { chunks: 1, text: typeof content === "string" ? content : "" }
  })

const routedChat: Effect.Effect<Outcome, unknown, Router.Router> = Effect.map(Router.chat(routedRequest), (r) => {
  const content = r.choices[0]?.message.content
  return { chunks: 1, text: typeof content === "string" ? content : "" }
})

/** Drains a stream, counting chunks and reassembling the text (a fresh tally per run). */
const countChunks = <E, R>(stream: Stream.Stream<Provider.ChatChunk, E, R>): Effect.Effect<Outcome, E, R> =>
  Effect.suspend(() =>
    Stream.runFold(stream, { chunks: 0, text: "" } as Outcome, (acc, chunk) => {
      acc.chunks++
      const content = chunk.choices[0]?.delta.content
      if (typeof content === "string") acc.text += content
      return acc
    })
  )

const routedStream: Effect.Effect<Outcome, unknown, Router.Router> = countChunks(Router.stream(routedRequest))

const ourStream = (provider: Provider.Provider): Effect.Effect<Outcome, unknown> =>
  countChunks(provider.stream(ourRequest, target))

const sdkBody = {
  model: Fixtures.model,
  messages: Fixtures.messages,
  max_tokens: Fixtures.maxTokens,
  temperature: Fixtures.temperature
}

const sdkChat = async (client: OpenAI): Promise<Outcome> => {
  const r = await client.chat.completions.create(sdkBody)
  return { chunks: 1, text: r.choices[0]?.message.content ?? "" }
}

const sdkStream = async (client: OpenAI): Promise<Outcome> => {
  const stream = await client.chat.completions.create({
    ...sdkBody,
    stream: true,
    stream_options: { include_usage: true }
  })
  const acc: Outcome = { chunks: 0, text: "" }
  for await (const chunk of stream) {
    acc.chunks++
    const content = chunk.choices[0]?.delta.content
    if (typeof content === "string") acc.text += content
  }
  return acc
}

// ---------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------

/** A thing to time: `batch(k, out)` makes k sequential calls and pushes each one's µs onto `out`. */
interface Variant {
  readonly key: string
  readonly label: string
  readonly ours: boolean
  readonly batch: (k: number, out: Array<number>) => Promise<void>
  /** One call (checking replies). */
  readonly once: () => Promise<Outcome>
  /** `calls` calls by `workers` concurrent workers. */
  readonly concurrent: (calls: number, workers: number) => Promise<void>
}

const effectVariant = <R>(
  key: string,
  label: string,
  runtime: ManagedRuntime.ManagedRuntime<R, unknown>,
  call: Effect.Effect<Outcome, unknown, R>
): Variant => {
  const timedLoop = (k: number, out: Array<number>) =>
    Effect.suspend(() => {
      let i = 0
      let started = 0
      return Effect.whileLoop({
        while: () => i < k,
        body: () =>
          Effect.suspend(() => {
            started = performance.now()
            return call
          }),
        step: () => {
          out.push((performance.now() - started) * 1000)
          i++
        }
      })
    })
  const concurrentLoop = (calls: number, workers: number) =>
    Effect.suspend(() => {
      let next = 0
      const worker = Effect.whileLoop({ while: () => next++ < calls, body: () => call, step: () => {} })
      return Effect.all(Array.from({ length: workers }, () => worker), { concurrency: "unbounded", discard: true })
    })
  return {
    key,
    label,
    ours: true,
    batch: (k, out) => runtime.runPromise(timedLoop(k, out)),
    once: () => runtime.runPromise(call),
    concurrent: (calls, workers) => runtime.runPromise(concurrentLoop(calls, workers))
  }
}

/** `Effect.runPromise` per call: what a Promise caller pays. */
const runPromiseVariant = <R>(
  key: string,
  label: string,
  runtime: ManagedRuntime.ManagedRuntime<R, unknown>,
  call: Effect.Effect<Outcome, unknown, R>
): Variant =>
  promiseVariant(key, label, true, () => runtime.runPromise(call))

const promiseVariant = (key: string, label: string, ours: boolean, call: () => Promise<Outcome>): Variant => ({
  key,
  label,
  ours,
  batch: async (k, out) => {
    for (let i = 0; i < k; i++) {
      const started = performance.now()
      await call()
      out.push((performance.now() - started) * 1000)
    }
  },
  once: call,
  concurrent: async (calls, workers) => {
    let next = 0
    const worker = async () => {
      while (next++ < calls) await call()
    }
    await Promise.all(Array.from({ length: workers }, worker))
  }
})

const quantile = (sorted: ReadonlyArray<number>, q: number): number => {
  if (sorted.length === 0) return NaN
  if (q === 0.5) {
    const mid = sorted.length >> 1
    return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
  }
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
}

interface Stats {
  readonly median: number
  readonly p99: number
  readonly p90: number
  readonly min: number
  readonly mean: number
  readonly n: number
}

const statsOf = (samples: ReadonlyArray<number>): Stats => {
  const sorted = Float64Array.from(samples).sort()
  const arr = Array.from(sorted)
  return {
    median: quantile(arr, 0.5),
    p90: quantile(arr, 0.9),
    p99: quantile(arr, 0.99),
    min: arr[0] ?? NaN,
    mean: samples.reduce((a, b) => a + b, 0) / samples.length,
    n: samples.length
  }
}

interface KindResult {
  readonly stats: ReadonlyMap<string, Stats>
  /** Per-round batch means, per variant (same index = same round). */
  readonly roundMeans: ReadonlyMap<string, ReadonlyArray<number>>
  /** New TCP connections per 100 timed calls, per variant. */
  readonly connectionsPer100: ReadonlyMap<string, number>
  readonly rounds: number
  readonly seconds: number
}

/** Warms every variant up (interleaved batches) until `calls` each or `seconds` spent. */
const warmUp = async (variants: ReadonlyArray<Variant>, calls: number, seconds: number) => {
  const sink: Array<number> = []
  const started = performance.now()
  for (let done = 0; done < calls && performance.now() - started < seconds * 1000; done += BATCH) {
    for (const v of variants) {
      sink.length = 0
      await v.batch(Math.min(BATCH, calls - done), sink)
    }
  }
}

/** Rounds of one batch per variant (starting variant rotating) until the budget is spent. */
const runKind = async (variants: ReadonlyArray<Variant>, budgetSeconds: number, server: Server): Promise<KindResult> => {
  const samples = new Map<string, Array<number>>(variants.map((v) => [v.key, []]))
  const roundMeans = new Map<string, Array<number>>(variants.map((v) => [v.key, []]))
  const connections = new Map<string, number>(variants.map((v) => [v.key, 0]))
  const n = variants.length
  const started = performance.now()
  let rounds = 0
  while (
    rounds < MAX_ROUNDS && (rounds < MIN_ROUNDS || performance.now() - started < budgetSeconds * 1000)
  ) {
    for (let j = 0; j < n; j++) {
      const v = variants[(rounds + j) % n]
      const out = samples.get(v.key)!
      const before = out.length
      const opened = await server.connections()
      await v.batch(BATCH, out)
      connections.set(v.key, connections.get(v.key)! + (await server.connections()) - opened)
      let sum = 0
      for (let i = before; i < out.length; i++) sum += out[i]
      roundMeans.get(v.key)!.push(sum / (out.length - before))
    }
    rounds++
  }
  const stats = new Map<string, Stats>()
  for (const v of variants) stats.set(v.key, statsOf(samples.get(v.key)!))
  const connectionsPer100 = new Map<string, number>(
    variants.map((v) => [v.key, (connections.get(v.key)! * 100) / samples.get(v.key)!.length])
  )
  return { stats, roundMeans, connectionsPer100, rounds, seconds: (performance.now() - started) / 1000 }
}

/** Rounds of `C16_CALLS` calls by `C16` workers per variant; µs per call = wall time / calls. */
const runConcurrent = async (variants: ReadonlyArray<Variant>) => {
  const perRound = new Map<string, Array<number>>(variants.map((v) => [v.key, []]))
  for (const v of variants) await v.concurrent(C16 * 8, C16) // opens the pools' connections
  const started = performance.now()
  let rounds = 0
  while (
    rounds < C16_ROUNDS.max &&
    (rounds < C16_ROUNDS.min || performance.now() - started < C16_BUDGET * 1000)
  ) {
    for (let j = 0; j < variants.length; j++) {
      const v = variants[(rounds + j) % variants.length]
      const t = performance.now()
      await v.concurrent(C16_CALLS, C16)
      perRound.get(v.key)!.push(((performance.now() - t) * 1000) / C16_CALLS)
    }
    rounds++
  }
  return { stats: new Map(variants.map((v) => [v.key, statsOf(perRound.get(v.key)!)])), rounds }
}

/** New connections per call over `calls` sequential calls (after one call to open one). */
const connectionsPerCall = async (variant: Variant, calls: number, server: Server) => {
  // the server counts a connection when it accepts it: let the counts settle before reading them
  const settle = () => new Promise((resolve) => setTimeout(resolve, 20))
  await variant.once()
  await settle()
  const opened = await server.connections()
  for (let i = 0; i < calls; i++) await variant.once()
  await settle()
  return ((await server.connections()) - opened) / calls
}

const pairedRatio = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): number =>
  statsOf(a.map((x, i) => x / b[i])).median

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------


const packageVersion = (name: string): string => {
  try {
    const text = readFileSync(new URL(`../node_modules/${name}/package.json`, import.meta.url), "utf8")
    return (JSON.parse(text) as { version?: string }).version ?? "unknown"
  } catch {
    return "unknown"
  }
}
const versions = () => ({
  openai: openaiVersion,
  undici: packageVersion("undici"),
  nodeBundledUndici: process.versions.undici ?? "unknown",
  effect: packageVersion("effect"),
  platform: packageVersion("@effect/platform"),
  platformNode: packageVersion("@effect/platform-node"),
  experimental: packageVersion("@effect/experimental")
})

const main = async () => {
  const startedAt = performance.now()
  const m = machine()
  log(`provider overhead: ours (OpenAiCompatible) vs openai SDK ${openaiVersion}, loopback server in a child process`)
  log(`node ${m.node} | ${m.platform} | ${m.cpu} | ${m.cores} cores | ${m.memoryGB} GB | load average ${m.loadAverage.join(" ")}`)
  log(
    `mode ${QUICK ? "quick" : "full"}: batches of ${BATCH} sequential calls, warm-up ${WARMUP.calls} calls/variant ` +
      `(at most ${WARMUP.seconds} s per kind), about ${BUDGET.chat} / ${BUDGET.burst} / ${BUDGET.paced} s of rounds ` +
      `for chat / stream burst / stream paced; concurrency ${C16}: ${C16_CALLS} calls per round, about ${C16_BUDGET} s per kind`
  )

  const server = await startServer()
  const base = (mode: "burst" | "paced" | "tail") => `${server.url}/${mode}/v1`

  const undiciBurst = await makeOurs(NodeHttpClient.layerUndici, base("burst"))
  const undiciPaced = await makeOurs(NodeHttpClient.layerUndici, base("paced"))
  const undiciTail = await makeOurs(NodeHttpClient.layerUndici, base("tail"))
  const fetchBurst = await makeOurs(FetchHttpClient.layer, base("burst"))
  const fetchPaced = await makeOurs(FetchHttpClient.layer, base("paced"))
  const fetchTail = await makeOurs(FetchHttpClient.layer, base("tail"))
  const routedBurst = makeRouted(base("burst"))
  const routedPaced = makeRouted(base("paced"))
  const routedTail = makeRouted(base("tail"))
  const sdkBurst = new OpenAI({ apiKey, baseURL: base("burst"), maxRetries: 0 })
  const sdkPaced = new OpenAI({ apiKey, baseURL: base("paced"), maxRetries: 0 })
  const sdkTail = new OpenAI({ apiKey, baseURL: base("tail"), maxRetries: 0 })

  const chatVariants: Array<Variant> = [
    effectVariant("oursUndici", "ours (undici)", undiciBurst.runtime, ourChat(undiciBurst.provider)),
    effectVariant("oursFetch", "ours (fetch)", fetchBurst.runtime, ourChat(fetchBurst.provider)),
    runPromiseVariant("oursUndiciRunPromise", "ours (undici) runPromise", undiciBurst.runtime, ourChat(undiciBurst.provider)),
    effectVariant("oursRouted", "routed (undici)", routedBurst, routedChat),
    promiseVariant("openai", "openai SDK", false, () => sdkChat(sdkBurst))
  ]
  const streamVariants = (
    undici: typeof undiciBurst,
    fetch: typeof fetchBurst,
    routed: typeof routedBurst,
    sdk: OpenAI
  ): Array<Variant> => [
    effectVariant("oursUndici", "ours (undici)", undici.runtime, ourStream(undici.provider)),
    effectVariant("oursFetch", "ours (fetch)", fetch.runtime, ourStream(fetch.provider)),
    effectVariant("oursRouted", "routed (undici)", routed, routedStream),
    promiseVariant("openai", "openai SDK", false, () => sdkStream(sdk))
  ]
  const burstVariants = streamVariants(undiciBurst, fetchBurst, routedBurst, sdkBurst)
  const pacedVariants = streamVariants(undiciPaced, fetchPaced, routedPaced, sdkPaced)
  const tailVariants = streamVariants(undiciTail, fetchTail, routedTail, sdkTail)

  // Replies check: every client reads the same thing.
  for (const [kind, variants, chunks, text] of [
    ["chat", chatVariants, 1, Fixtures.replyContent],
    ["stream burst", burstVariants, Fixtures.chunksPerStream, Fixtures.streamedContent],
    ["stream paced", pacedVariants, Fixtures.chunksPerStream, Fixtures.streamedContent],
    ["stream tail", tailVariants, Fixtures.chunksPerStream, Fixtures.streamedContent]
  ] as const) {
    for (const v of variants) {
      const outcome = await v.once()
      if (outcome.chunks !== chunks || outcome.text !== text) {
        throw new Error(`${kind} / ${v.label}: got ${outcome.chunks} chunks, ${JSON.stringify(outcome.text)}`)
      }
    }
  }

  const kinds = [
    { key: "chat", label: "chat (JSON reply)", variants: chatVariants, budget: BUDGET.chat },
    {
      key: "burst",
      label: `stream, burst (${Fixtures.chunksPerStream} chunks + [DONE] in one write)`,
      variants: burstVariants,
      budget: BUDGET.burst
    },
    {
      key: "paced",
      label: "stream, paced (one write per event, end of body in a write of its own)",
      variants: pacedVariants,
      budget: BUDGET.paced
    }
  ] as const

  const results = new Map<string, KindResult>()
  for (const kind of kinds) {
    await warmUp(kind.variants, WARMUP.calls, WARMUP.seconds)
    const result = await runKind(kind.variants, kind.budget, server)
    results.set(kind.key, result)
    log()
    log(`${kind.label}: ${result.rounds} rounds x ${BATCH} calls per variant, ${fmt(result.seconds, 1)} s`)
    log(
      `  ${pad("variant", 26)}${lpad("median µs", 10)}${lpad("p90", 8)}${lpad("p99", 8)}${lpad("mean", 8)}` +
        `${lpad("min", 8)}${lpad("ratio med", 10)}${lpad("ratio p99", 10)}${lpad("paired", 8)}${lpad("conn/100", 9)}`
    )
    const ref = result.stats.get("openai")!
    const refMeans = result.roundMeans.get("openai")!
    for (const v of kind.variants) {
      const st = result.stats.get(v.key)!
      const ratios = v.ours
        ? [
          lpad(fmt(st.median / ref.median, 3), 10),
          lpad(fmt(st.p99 / ref.p99, 3), 10),
          lpad(fmt(pairedRatio(result.roundMeans.get(v.key)!, refMeans), 3), 8)
        ]
        : [lpad("", 10), lpad("", 10), lpad("", 8)]
      log(
        `  ${pad(v.label, 26)}${lpad(fmt(st.median), 10)}${lpad(fmt(st.p90), 8)}${lpad(fmt(st.p99), 8)}` +
          `${lpad(fmt(st.mean), 8)}${lpad(fmt(st.min), 8)}${ratios.join("")}` +
          `${lpad(fmt(result.connectionsPer100.get(v.key)!, 1), 9)}`
      )
    }
  }
  log("  (ratio: ours / openai SDK, < 1 is faster; paired: median over rounds of the ratio of batch means;")
  log("   conn/100: new TCP connections per 100 timed calls, 0 when connections are reused)")

  // Concurrency 16: chat and burst streams.
  const c16Chat = await runConcurrent(chatVariants.filter((v) => v.key !== "oursUndiciRunPromise"))
  const c16Stream = await runConcurrent(burstVariants)
  log()
  log(
    `concurrency ${C16}: ${c16Chat.rounds} / ${c16Stream.rounds} rounds of ${C16_CALLS} calls per variant ` +
      "(chat / stream burst); µs per call = wall time / calls, median over rounds"
  )
  log(`  ${pad("variant", 26)}${lpad("chat µs", 10)}${lpad("calls/s", 9)}${lpad("ratio", 8)}${lpad("stream µs", 11)}${lpad("calls/s", 9)}${lpad("ratio", 8)}`)
  for (const v of burstVariants) {
    const c = c16Chat.stats.get(v.key)!
    const st = c16Stream.stats.get(v.key)!
    const cr = v.ours ? fmt(c.median / c16Chat.stats.get("openai")!.median, 3) : ""
    const sr = v.ours ? fmt(st.median / c16Stream.stats.get("openai")!.median, 3) : ""
    log(
      `  ${pad(v.label, 26)}${lpad(fmt(c.median), 10)}${lpad(fmt(1e6 / c.median, 0), 9)}${lpad(cr, 8)}` +
        `${lpad(fmt(st.median), 11)}${lpad(fmt(1e6 / st.median, 0), 9)}${lpad(sr, 8)}`
    )
  }

  // Connection reuse when the end of the body comes a moment after [DONE].
  const tail = new Map<string, number>()
  for (const v of tailVariants) tail.set(v.key, await connectionsPerCall(v, TAIL_CALLS, server))
  log()
  log(`connection reuse, stream whose body ends 2 ms after [DONE] (${TAIL_CALLS} sequential calls per client):`)
  for (const v of tailVariants) {
    const per = tail.get(v.key)!
    log(`  ${pad(v.label, 26)}${lpad(fmt(per, 2), 6)} new connections per call${per > 0.5 ? "  <- drops its connection" : ""}`)
  }

  for (const o of [undiciBurst, undiciPaced, undiciTail, fetchBurst, fetchPaced, fetchTail]) await o.runtime.dispose()
  for (const r of [routedBurst, routedPaced, routedTail]) await r.dispose()
  server.stop()

  const get = (kind: string, key: string) => results.get(kind)!.stats.get(key)!
  const paired = (kind: string, key: string) =>
    pairedRatio(results.get(kind)!.roundMeans.get(key)!, results.get(kind)!.roundMeans.get("openai")!)
  const conn100 = (kind: string) =>
    Object.fromEntries([...results.get(kind)!.connectionsPer100].map(([k, v]) => [k, r1(v)]))
  const chatOurs = get("chat", "oursUndici")
  const chatSdk = get("chat", "openai")
  const burstOurs = get("burst", "oursUndici")
  const burstSdk = get("burst", "openai")
  const pacedOurs = get("paced", "oursUndici")
  const pacedSdk = get("paced", "openai")
  const c16 = (map: ReadonlyMap<string, Stats>, key: string) => r1(map.get(key)!.median)
  const summary = {
    bench: "providers",
    quick: QUICK,
    // primary figures: sequential calls, medians, µs per call; ours = NodeHttpClient.layerUndici;
    // stream = burst mode (the whole event stream in one write)
    oursUsPerCall: r1(chatOurs.median),
    openaiSdkUsPerCall: r1(chatSdk.median),
    ratio: r3(chatOurs.median / chatSdk.median),
    oursStreamUsPerCall: r1(burstOurs.median),
    openaiSdkStreamUsPerCall: r1(burstSdk.median),
    streamRatio: r3(burstOurs.median / burstSdk.median),
    oursStreamPacedUsPerCall: r1(pacedOurs.median),
    openaiSdkStreamPacedUsPerCall: r1(pacedSdk.median),
    streamPacedRatio: r3(pacedOurs.median / pacedSdk.median),
    p99: {
      oursUsPerCall: r1(chatOurs.p99),
      openaiSdkUsPerCall: r1(chatSdk.p99),
      ratio: r3(chatOurs.p99 / chatSdk.p99),
      oursStreamUsPerCall: r1(burstOurs.p99),
      openaiSdkStreamUsPerCall: r1(burstSdk.p99),
      streamRatio: r3(burstOurs.p99 / burstSdk.p99),
      oursStreamPacedUsPerCall: r1(pacedOurs.p99),
      openaiSdkStreamPacedUsPerCall: r1(pacedSdk.p99),
      streamPacedRatio: r3(pacedOurs.p99 / pacedSdk.p99)
    },
    pairedRatio: {
      chat: r3(paired("chat", "oursUndici")),
      stream: r3(paired("burst", "oursUndici")),
      streamPaced: r3(paired("paced", "oursUndici"))
    },
    fetch: {
      oursUsPerCall: r1(get("chat", "oursFetch").median),
      ratio: r3(get("chat", "oursFetch").median / chatSdk.median),
      oursStreamUsPerCall: r1(get("burst", "oursFetch").median),
      streamRatio: r3(get("burst", "oursFetch").median / burstSdk.median),
      oursStreamPacedUsPerCall: r1(get("paced", "oursFetch").median),
      streamPacedRatio: r3(get("paced", "oursFetch").median / pacedSdk.median)
    },
    oursRunPromiseUsPerCall: r1(get("chat", "oursUndiciRunPromise").median),
    // Router.chat / Router.stream over one deployment of ours (undici), Router.defaults
    routed: {
      usPerCall: r1(get("chat", "oursRouted").median),
      ratio: r3(get("chat", "oursRouted").median / chatSdk.median),
      streamUsPerCall: r1(get("burst", "oursRouted").median),
      streamRatio: r3(get("burst", "oursRouted").median / burstSdk.median),
      streamPacedUsPerCall: r1(get("paced", "oursRouted").median),
      streamPacedRatio: r3(get("paced", "oursRouted").median / pacedSdk.median)
    },
    concurrency16: {
      oursUsPerCall: c16(c16Chat.stats, "oursUndici"),
      oursFetchUsPerCall: c16(c16Chat.stats, "oursFetch"),
      openaiSdkUsPerCall: c16(c16Chat.stats, "openai"),
      ratio: r3(c16Chat.stats.get("oursUndici")!.median / c16Chat.stats.get("openai")!.median),
      oursStreamUsPerCall: c16(c16Stream.stats, "oursUndici"),
      oursFetchStreamUsPerCall: c16(c16Stream.stats, "oursFetch"),
      openaiSdkStreamUsPerCall: c16(c16Stream.stats, "openai"),
      streamRatio: r3(c16Stream.stats.get("oursUndici")!.median / c16Stream.stats.get("openai")!.median)
    },
    newConnectionsPer100Calls: { chat: conn100("chat"), stream: conn100("burst"), streamPaced: conn100("paced") },
    tailNewConnectionsPerCall: Object.fromEntries([...tail].map(([k, v]) => [k, r3(v)])),
    metTarget: chatOurs.median <= chatSdk.median && burstOurs.median <= burstSdk.median &&
      pacedOurs.median <= pacedSdk.median,
    samplesPerVariant: { chat: chatOurs.n, stream: burstOurs.n, streamPaced: pacedOurs.n },
    seconds: r1((performance.now() - startedAt) / 1000),
    machine: m,
    versions: versions()
  }
  log()
  log(JSON.stringify(summary))
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack ?? error.message : String(error)}\n`)
  process.exit(1)
})
