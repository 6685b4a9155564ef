/**
 * Several processes, one view (issue 10, part 3): Node processes (test/support/redisWorker.ts,
 * run with `tsx`), each a router over one Redis (test/support/redis.ts) and the OpenAI-compatible
 * provider, calling fake upstreams on a loopback HTTP server in this process. The server records
 * when each request arrived and ended, by deployment and by worker, and the checks are made on
 * what it saw:
 *
 * - 4 processes x 250 concurrent requests: maxConcurrent and rpm hold in total (the largest
 *   number of requests open at once, the most calls in any 60 s window); the requests refused
 *   for the limits come back as `NoDeploymentAvailable` `over_limits`, and nothing is lost;
 * - a deployment that starts failing is avoided by every process within 1 s of its circuit
 *   tripping (the circuit is in Redis): no process other than the one whose failure tripped it
 *   sends it a request more than 1 s after the trip;
 * - a process killed with SIGKILL in the middle of streams (streams that outlived their first
 *   lease, so renewed) holds its slots no longer than its leases' expiry: the shared in-flight
 *   count is back to 0 by then and another process takes every slot. A `leaseMargin` of 1 s
 *   (the default is a minute) keeps this short.
 *
 * Real time and real processes; the bounds are generous against a loaded 2-core machine.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Either, Exit, Redacted, Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as Http from "node:http"
import type * as Net from "node:net"
import * as path from "node:path"
import * as readline from "node:readline"
import { Deployment, type RouterState } from "../src/index.js"
import * as RedisState from "../src/RedisState.js"
import { FakeProvider } from "../src/testing.js"
import { chatReply, chunk } from "./support/loopback.js"
import { type RedisServer, redisAvailable, startRedis } from "./support/redis.js"
import type { WorkerConfig, WorkerResult } from "./support/redisWorker.js"

const available = redisAvailable()
const root = path.resolve(__dirname, "..")
// one process per worker (the `tsx` CLI would run the script in a child of its own, out of reach of a SIGKILL)
const tsxLoader = ["--import", "tsx"]
const workerScript = path.join(root, "test", "support", "redisWorker.ts")

// ---------------------------------------------------------------------------
// The upstreams: one loopback server, a path per deployment
// ---------------------------------------------------------------------------

/** What a deployment answers (per worker). */
type Behavior =
  | { readonly kind: "ok"; readonly delayMs: number }
  | { readonly kind: "fail"; readonly status: number }
  | { readonly kind: "sse"; readonly chunks: number; readonly everyMs: number }

/** A request as the server saw it. */
interface Seen {
  readonly deployment: string
  readonly worker: number
  readonly stream: boolean
  readonly arrivedAt: number
  endedAt: number | undefined
  status: number | undefined
}


const startUpstreams = async () => {
  const seen: Array<Seen> = []
  let behavior: (deployment: string, worker: number, stream: boolean) => Behavior = () => ({ kind: "ok", delayMs: 10 })
  const server = Http.createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => {
      const match = /^\/d\/([^/]+)\/v1\/chat\/completions$/.exec(req.url ?? "")
      let body: any = {}
      try {
        body = JSON.parse(Buffer.concat(chunks).toString())
      } catch {
        // not JSON
      }
      if (match === null) {
        res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "no route" } }))
        return
      }
      const content = String(body?.messages?.[0]?.content ?? "")
      const entry: Seen = {
        deployment: match[1],
        worker: Number(content.replace(/^w/, "")),
        stream: body?.stream === true,
        arrivedAt: Date.now(),
        endedAt: undefined,
        status: undefined
      }
      seen.push(entry)
      const timers: Array<NodeJS.Timeout> = []
      res.on("close", () => {
        entry.endedAt = Date.now()
        for (const t of timers) clearTimeout(t)
      })
      const how = behavior(entry.deployment, entry.worker, entry.stream)
      if (how.kind === "fail") {
        entry.status = how.status
        res.writeHead(how.status, { "content-type": "application/json" })
          .end(JSON.stringify({ error: { message: "upstream down", type: "server_error", code: null } }))
      } else if (how.kind === "ok" && !entry.stream) {
        timers.push(setTimeout(() => {
          entry.status = 200
          res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(chatReply("hello")))
        }, how.delayMs))
      } else {
        const count = how.kind === "sse" ? how.chunks : 3
        const everyMs = how.kind === "sse" ? how.everyMs : how.delayMs
        entry.status = 200
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
        res.write(`data: ${JSON.stringify(chunk({ role: "assistant", content: "" }))}\n\n`)
        let sent = 0
        const next = () => {
          if (sent++ < count) {
            res.write(`data: ${JSON.stringify(chunk({ content: "x" }))}\n\n`)
            timers.push(setTimeout(next, everyMs))
          } else {
            res.end(`data: ${JSON.stringify(chunk({}, "stop"))}\n\ndata: [DONE]\n\n`)
          }
        }
        next()
      }
    })
  })
  const sockets = new Set<Net.Socket>()
  server.on("connection", (s) => {
    sockets.add(s)
    s.on("close", () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as Net.AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    setBehavior: (f: typeof behavior) => void (behavior = f),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      })
  }
}

type Upstreams = Awaited<ReturnType<typeof startUpstreams>>

/** The largest number of `deployment`'s requests open at once, as the server saw them. */
const maxConcurrency = (seen: ReadonlyArray<Seen>, deployment: string) => {
  const events: Array<[number, number]> = []
  for (const s of seen) {
    if (s.deployment !== deployment) continue
    events.push([s.arrivedAt, 1], [s.endedAt ?? Infinity, -1])
  }
  // at the same millisecond, ends before arrivals (a slot freed, then taken)
  events.sort((x, y) => x[0] - y[0] || x[1] - y[1])
  let open = 0
  let max = 0
  for (const [, delta] of events) max = Math.max(max, (open += delta))
  return max
}

/** The most of `deployment`'s requests that arrived within any 60 s. */
const maxPerMinute = (seen: ReadonlyArray<Seen>, deployment: string) => {
  const times = seen.filter((s) => s.deployment === deployment).map((s) => s.arrivedAt).sort((a, b) => a - b)
  let max = 0
  for (let i = 0, j = 0; i < times.length; i++) {
    while (times[i] - times[j] >= 60_000) j++
    max = Math.max(max, i - j + 1)
  }
  return max
}

// ---------------------------------------------------------------------------
// The workers
// ---------------------------------------------------------------------------

interface Worker {
  readonly child: ChildProcess
  readonly send: (word: string) => void
  /** Resolves when the worker printed `line`. */
  readonly printed: (line: string) => Promise<void>
  /** Its result (rejects when it exits without one). */
  readonly result: Promise<WorkerResult>
  readonly kill: () => Promise<void>
}

const startWorker = (config: WorkerConfig): Worker => {
  const child = spawn(process.execPath, [...tsxLoader, workerScript], {
    cwd: root,
    env: { ...process.env, WORKER_CONFIG: JSON.stringify(config) },
    stdio: ["pipe", "pipe", "pipe"]
  })
  const lines: Array<string> = []
  const listeners: Array<() => void> = []
  let stderr = ""
  child.stderr!.on("data", (d) => void (stderr += d.toString()))
  readline.createInterface({ input: child.stdout! }).on("line", (line) => {
    lines.push(line.trim())
    for (const l of listeners.slice()) l()
  })
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  const printed = (line: string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => lines.includes(line) && resolve()
      listeners.push(check)
      check()
      void exited.then((code) => reject(new Error(`worker ${config.worker} exited (${code}) before "${line}": ${stderr}`)))
    })
  const result = exited.then((code) => {
    const line = lines.find((l) => l.startsWith("{\"result\""))
    if (line === undefined) throw new Error(`worker ${config.worker} exited (${code}) without a result: ${stderr}`)
    return (JSON.parse(line) as { result: WorkerResult }).result
  })
  result.catch(() => undefined)
  return {
    child,
    send: (word) => void child.stdin!.write(`${word}\n`),
    printed,
    result,
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill("SIGKILL")
      await exited
    }
  }
}

const sum = (results: ReadonlyArray<WorkerResult>, f: (r: WorkerResult) => number) => results.reduce((n, r) => n + f(r), 0)

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

describe.runIf(available)("several processes, one Redis (real processes, real time)", () => {
  let redis: RedisServer
  let upstreams: Upstreams
  const workers: Array<Worker> = []
  let prefixes = 0
  const fresh = () => `procs-${process.pid}-${++prefixes}`

  beforeAll(async () => {
    redis = await startRedis()
    upstreams = await startUpstreams()
  }, 20_000)
  afterAll(async () => {
    await Promise.all(workers.map((w) => w.kill()))
    await upstreams?.close()
    await redis?.remove()
  })

  const spawnWorkers = async (configs: ReadonlyArray<WorkerConfig>) => {
    const started = configs.map(startWorker)
    workers.push(...started)
    await Promise.all(started.map((w) => w.printed("ready")))
    return started
  }

  it("4 processes x 250 concurrent requests: maxConcurrent and rpm hold in total", async () => {
    const keyPrefix = fresh()
    const deployments = [{ id: "a", maxConcurrent: 8 }, { id: "b", maxConcurrent: 12, rpm: 120 }]
    upstreams.setBehavior(() => ({ kind: "ok", delayMs: 250 }))
    const from = upstreams.seen.length
    const ws = await spawnWorkers([0, 1, 2, 3].map((worker) => ({
      worker,
      redisUrl: redis.url,
      keyPrefix,
      server: upstreams.url,
      deployments,
      mode: "chat" as const,
      concurrency: 250,
      untilMs: 8_000,
      retryMs: 300
    })))
    const started = Date.now()
    for (const w of ws) w.send("go")
    const results = await Promise.all(ws.map((w) => w.result))
    const elapsed = Date.now() - started
    const seen = upstreams.seen.slice(from)

    const figures = {
      elapsedMs: elapsed,
      maxConcurrentA: maxConcurrency(seen, "a"),
      maxConcurrentB: maxConcurrency(seen, "b"),
      callsA: seen.filter((s) => s.deployment === "a").length,
      maxPerMinuteB: maxPerMinute(seen, "b"),
      served: sum(results, (r) => r.served),
      overLimits: sum(results, (r) => r.overLimits),
      gaveUp: sum(results, (r) => r.gaveUp),
      servedByWorker: results.map((r) => r.served)
    }
    console.log("limits across 4 processes:", JSON.stringify(figures))

    // the limits hold in total, and they bound (the load is far above them)
    expect(figures.maxConcurrentA).toBeLessThanOrEqual(8)
    expect(figures.maxConcurrentB).toBeLessThanOrEqual(12)
    expect(figures.maxPerMinuteB).toBeLessThanOrEqual(120)
    expect(figures.maxConcurrentA).toBeGreaterThanOrEqual(6)
    expect(figures.maxPerMinuteB).toBeGreaterThanOrEqual(100)
    // every request is accounted for: served (the server answered it) or refused for the limits
    for (const r of results) expect(r.errors).toEqual({})
    expect(figures.served).toBe(seen.filter((s) => s.status === 200).length)
    expect(figures.served).toBe(seen.length)
    expect(figures.served + figures.gaveUp).toBe(1000)
    expect(figures.overLimits).toBeGreaterThan(0)
    // every process had its share
    for (const r of results) expect(r.served).toBeGreaterThan(0)
    // nothing left in flight
    expect(seen.every((s) => s.endedAt !== undefined)).toBe(true)
  }, 60_000)

  it("a deployment that starts failing is avoided by every process within 1 s of its circuit tripping", async () => {
    const keyPrefix = fresh()
    const consecutiveFailures = 3
    let flippedAt = Infinity
    upstreams.setBehavior((deployment) =>
      deployment === "b" && Date.now() >= flippedAt ? { kind: "fail", status: 503 } : { kind: "ok", delayMs: 20 }
    )
    const from = upstreams.seen.length
    const ws = await spawnWorkers([0, 1, 2, 3].map((worker) => ({
      worker,
      redisUrl: redis.url,
      keyPrefix,
      server: upstreams.url,
      deployments: [{ id: "a" }, { id: "b" }, { id: "c" }],
      mode: "traffic" as const,
      concurrency: 8,
      // a long cooldown: no half-open probe within the test
      cooldown: { consecutiveFailures, duration: "60 seconds" }
    })))
    for (const w of ws) w.send("go")
    await new Promise((r) => setTimeout(r, 1_500))
    flippedAt = Date.now()
    await new Promise((r) => setTimeout(r, 3_500))
    const stoppedAt = Date.now()
    for (const w of ws) w.send("stop")
    const results = await Promise.all(ws.map((w) => w.result))
    const seen = upstreams.seen.slice(from)
    const toB = seen.filter((s) => s.deployment === "b")

    // b was in use by every process before it failed
    for (const worker of [0, 1, 2, 3]) {
      expect(toB.filter((s) => s.worker === worker && s.arrivedAt < flippedAt).length).toBeGreaterThan(0)
    }
    // the trip: at the earliest, once the server had answered `consecutiveFailures` failures
    const failures = toB.filter((s) => s.status === 503).sort((x, y) => x.endedAt! - y.endedAt!)
    expect(failures.length).toBeGreaterThanOrEqual(consecutiveFailures)
    const tripping = failures[consecutiveFailures - 1]
    const trippedAt = tripping.endedAt!
    const others = toB.filter((s) => s.worker !== tripping.worker)
    const lastOther = Math.max(...others.map((s) => s.arrivedAt))
    const lastAny = Math.max(...toB.map((s) => s.arrivedAt))
    const figures = {
      tripAfterFlipMs: trippedAt - flippedAt,
      trippedBy: tripping.worker,
      lastOtherAfterTripMs: lastOther - trippedAt,
      lastAnyAfterTripMs: lastAny - trippedAt,
      failuresSeen: failures.length,
      callsToBAfterTrip: toB.filter((s) => s.arrivedAt > trippedAt).length,
      observedAfterTripMs: stoppedAt - trippedAt,
      served: sum(results, (r) => r.served),
      errors: results.map((r) => r.errors)
    }
    console.log("failing deployment across 4 processes:", JSON.stringify(figures))
    expect(figures.observedAfterTripMs).toBeGreaterThan(2_000)
    expect(figures.lastOtherAfterTripMs).toBeLessThanOrEqual(1_000)
    expect(figures.lastAnyAfterTripMs).toBeLessThanOrEqual(1_000)
    // the others kept being served (by a and c)
    for (const r of results) expect(r.served).toBeGreaterThan(0)
    expect(seen.filter((s) => s.arrivedAt > trippedAt + 1_000 && s.deployment !== "b").length).toBeGreaterThan(0)
  }, 60_000)

  it("a process killed (SIGKILL) in the middle of streams holds no slot past its leases' expiry", async () => {
    const keyPrefix = fresh()
    const maxConcurrent = 6
    // the lease lives timeout + leaseMargin = 3 s; streams renew theirs as they go
    const leaseTtlMs = 3_000
    const deployments = [{ id: "s", maxConcurrent, timeout: "2 seconds" }]
    upstreams.setBehavior((_d, _w, stream) => (stream ? { kind: "sse", chunks: 400, everyMs: 100 } : { kind: "ok", delayMs: 1_000 }))
    const base = { redisUrl: redis.url, keyPrefix, server: upstreams.url, deployments, leaseMargin: "1 second" }
    const from = upstreams.seen.length
    const [streamer, taker] = await spawnWorkers([
      { ...base, worker: 0, mode: "streams", concurrency: maxConcurrent },
      { ...base, worker: 1, mode: "chat", concurrency: maxConcurrent + 1, untilMs: 0 }
    ])

    const scope = Effect.runSync(Scope.make())
    try {
      const store = await Effect.runPromise(Scope.extend(RedisState.make({ url: Redacted.make(redis.url), keyPrefix }), scope))
      const ds = Either.getOrThrow(Deployment.fromConfig([{ id: "s", group: "g", provider: FakeProvider.unsafeMake(), model: "m", maxConcurrent }], {}))
      const inFlight = () => Effect.runPromise(Effect.map(store.snapshot(ds), ([s]: ReadonlyArray<RouterState.DeploymentStats>) => s.inFlight))

      streamer.send("go")
      await streamer.printed("streaming")
      // the streams outlive their first lease: renewed, they keep their slots
      await new Promise((r) => setTimeout(r, leaseTtlMs + 1_000))
      const streams = upstreams.seen.slice(from).filter((s) => s.stream)
      expect(streams.length).toBe(maxConcurrent)
      expect(streams.every((s) => s.endedAt === undefined)).toBe(true)
      const beforeKill = await inFlight()
      expect(beforeKill).toBe(maxConcurrent)

      const killedAt = Date.now()
      await streamer.kill()
      const justAfter = await inFlight()
      let freedAt: number | undefined
      while (Date.now() - killedAt < leaseTtlMs + 5_000) {
        if ((await inFlight()) === 0) {
          freedAt = Date.now()
          break
        }
        await new Promise((r) => setTimeout(r, 50))
      }
      const figures = { beforeKill, justAfterKill: justAfter, freedAfterKillMs: freedAt === undefined ? undefined : freedAt - killedAt, leaseTtlMs }
      console.log("SIGKILL in the middle of streams:", JSON.stringify(figures))
      // the streams were cut (the process is gone) and their slots came back by the leases' expiry
      expect(streams.every((s) => s.endedAt !== undefined)).toBe(true)
      expect(freedAt).toBeDefined()
      expect(freedAt! - killedAt).toBeLessThanOrEqual(leaseTtlMs + 1_000)

      // another process gets every slot, and no more
      taker.send("go")
      const took = await taker.result
      console.log("after the kill, 7 concurrent requests:", JSON.stringify(took))
      expect(took.served).toBe(maxConcurrent)
      expect(took.overLimits).toBe(1)
      expect(took.errors).toEqual({})
      expect(await inFlight()).toBe(0)
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }, 60_000)
})
