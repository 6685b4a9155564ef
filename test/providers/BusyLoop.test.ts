/**
 * Time limits against a busy event loop (issue 7, item 10): a consumer that computes
 * synchronously for longer than a limit must not turn healthy calls into timeouts. After such a
 * block Node runs the overdue timers before it polls the sockets, and a timer that decided there
 * failed reads whose bytes had come in time. Live clock, real HTTP over loopback, through
 * `OpenAiCompatible` with undici, fetch and the general `response.stream` path:
 *
 * - a soak on `Loopback` (on this thread): rounds of 30 concurrent streams whose server writes
 *   every 20 ms, one consumer per round blocking the loop for 300 ms, past the 200 ms idle limit.
 *   None may time out; a stream that really stalls still must. The server's writes that fell
 *   due during the block run in the same timer phase as the client's overdue timers;
 * - a server on a thread of its own, which the block does not hold up (as a remote server): calls
 *   waiting for a response head, first bytes or a chat reply, and a cold start of 50 streams.
 *   The block lasts past every limit and until that server has written every reply in full, so
 *   the replies are all waiting in the sockets when it ends, however late that thread ran;
 * - real stalls still fail at their limit, not much later.
 *
 * The loop is blocked with `Atomics.wait` (the thread sleeps: no core is taken from the server
 * thread or other test files). The assertion is no false timeout at all.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { Worker } from "node:worker_threads"
import type * as Errors from "../../src/Errors.js"
import type { ChatChunk, ChatRequest, Target } from "../../src/Provider.js"
import * as OpenAiCompatible from "../../src/providers/OpenAiCompatible.js"
import * as Loopback from "../support/loopback.js"

const request: ChatRequest = { model: "m", messages: [{ role: "user", content: "hi" }] }
const targetAt = (apiBase: string): Target => ({ deploymentId: "d", model: "m", apiBase, apiKey: undefined, timeout: undefined })
const chunk = (content: string) => ({
  id: "c",
  object: "chat.completion.chunk",
  created: 1,
  model: "m",
  choices: [{ index: 0, delta: { content }, finish_reason: null }]
})
const chatReply = {
  id: "c",
  object: "chat.completion",
  created: 1,
  model: "m",
  choices: [{ index: 0, message: { role: "assistant", content: "hi" }, finish_reason: "stop" }]
}

const sleeper = new Int32Array(new SharedArrayBuffer(4))
/** Blocks the event loop, as a consumer computing on a chunk would: for `millis`, then until `done()` (5 s at most). */
const block = (millis: number, done: () => boolean = () => true): void => {
  const start = Date.now()
  for (let left = millis; left > 0 || (!done() && Date.now() - start < 5000); left = millis - (Date.now() - start)) {
    Atomics.wait(sleeper, 0, 0, Math.min(Math.max(left, 2), 5))
  }
}

interface Outcome {
  readonly text: string
  readonly error: Errors.ProviderError | undefined
}

const outcome = (stream: Stream.Stream<ChatChunk, Errors.ProviderError>): Effect.Effect<Outcome> =>
  Effect.map(Stream.runCollect(Stream.either(stream)), (items) => {
    const all = Chunk.toReadonlyArray(items)
    return {
      text: all.flatMap((e) => (Either.isRight(e) ? [e.right.choices[0]?.delta.content ?? ""] : [])).join(""),
      error: all.flatMap((e) => (Either.isLeft(e) ? [e.left] : []))[0]
    }
  })

const chatOutcome = (call: Effect.Effect<unknown, Errors.ProviderError>): Effect.Effect<Outcome> =>
  Effect.match(call, { onSuccess: () => ({ text: "hi", error: undefined }), onFailure: (error) => ({ text: "", error }) })

/** How many outcomes are not `expected` in full ("3 of 90 failed: <their errors>"). */
const failures = (outcomes: ReadonlyArray<Outcome>, expected: string): string => {
  const bad = outcomes.filter((o) => o.error !== undefined || o.text !== expected)
  const messages = [...new Set(bad.map((o) => o.error?.message ?? `text ${JSON.stringify(o.text)}`))]
  return `${bad.length} of ${outcomes.length} failed${bad.length === 0 ? "" : `: ${messages.join("; ")}`}`
}

const until = (done: () => boolean) => Effect.repeat(Effect.sleep("2 millis"), { until: done })

/** The client with the body source hidden, so bodies are read through `response.stream`. */
const generalPath = (layer: Layer.Layer<HttpClient.HttpClient>) =>
  Layer.effect(
    HttpClient.HttpClient,
    Effect.map(HttpClient.HttpClient, (client) =>
      HttpClient.transformResponse(
        client,
        Effect.map((response) => new Proxy(response, { get: (t, p) => (p === "source" ? undefined : Reflect.get(t, p, t)) }))
      ))
  ).pipe(Layer.provide(layer))

const clients = [
  ["undici", NodeHttpClient.layerUndici],
  ["fetch", FetchHttpClient.layer],
  ["response.stream (undici, source hidden)", generalPath(NodeHttpClient.layerUndici)]
] as const

// ---------------------------------------------------------------------------
// A server on a thread of its own
// ---------------------------------------------------------------------------

/**
 * The worker's code: `/{head}/{first}/{gap}/{n}/{kind}/...` answers `head` ms after reading the
 * request: `json` with a chat reply, `sse` with its head at once, `n` events (the first after
 * `first` ms, then every `gap` ms) and `[DONE]`. It counts the requests it has read and the
 * replies it has written in full.
 */
const threadServerCode = `
const http = require("node:http")
const { workerData, parentPort } = require("node:worker_threads")
const counts = new Int32Array(workerData)
const event = (i) => "data: " + JSON.stringify(${JSON.stringify(chunk("@"))}).replace('"@"', JSON.stringify(String(i))) + "\\n\\n"
const server = http.createServer((req, res) => {
  const [, head, first, gap, n, kind] = req.url.split("/")
  let closed = false
  res.on("close", () => { closed = true })
  req.resume()
  req.on("end", () => {
    Atomics.add(counts, 0, 1)
    const end = (text) => res.end(text, () => Atomics.add(counts, 1, 1))
    setTimeout(() => {
      if (closed) return
      if (kind === "json") {
        res.writeHead(200, { "content-type": "application/json" })
        return end(${JSON.stringify(JSON.stringify(chatReply))})
      }
      res.writeHead(200, { "content-type": "text/event-stream" })
      res.flushHeaders()
      let i = 0
      const next = () => {
        if (closed) return
        if (i === Number(n)) return end("data: [DONE]\\n\\n")
        res.write(event(i++))
        setTimeout(next, Number(gap))
      }
      setTimeout(next, Number(first))
    }, Number(head))
  })
})
server.listen(0, "127.0.0.1", () => parentPort.postMessage(server.address().port))
`

interface ThreadServer {
  readonly url: string
  /** Requests read so far. */
  readonly received: () => number
  /** Replies written in full so far. */
  readonly written: () => number
}

const threadServer: Effect.Effect<ThreadServer, never, Scope.Scope> = Effect.map(
  Effect.acquireRelease(
    Effect.async<{ readonly worker: Worker; readonly server: ThreadServer }>((resume) => {
      const counts = new Int32Array(new SharedArrayBuffer(8))
      const worker = new Worker(threadServerCode, { eval: true, workerData: counts.buffer })
      worker.once("message", (port: number) =>
        resume(Effect.succeed({
          worker,
          server: {
            url: `http://127.0.0.1:${port}`,
            received: () => Atomics.load(counts, 0),
            written: () => Atomics.load(counts, 1)
          }
        })))
    }),
    ({ worker }) => Effect.promise(() => worker.terminate())
  ),
  ({ server }) => server
)

const path = (server: ThreadServer, reply: { head: number; first: number; gap: number; n: number; kind: "sse" | "json" }) =>
  targetAt(`${server.url}/${reply.head}/${reply.first}/${reply.gap}/${reply.n}/${reply.kind}/v1`)

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

describe.each(clients)("a busy event loop, %s", (_, client) => {
  it.scopedLive("healthy streams do not time out while a consumer blocks the loop; a stalled one still does", () =>
    Effect.gen(function*() {
      const rounds = 2
      const streams = 30
      const chunks = 6
      const server = yield* Loopback.make({
        "/ok/v1/chat/completions": Loopback.sse([
          ...Array.from({ length: chunks }, (_, i) => Loopback.event(chunk(String(i)), { delay: "20 millis" })),
          Loopback.done
        ]),
        "/stall/v1/chat/completions": Loopback.sse([Loopback.event(chunk("s"))], { then: "stall" })
      })
      const openai = yield* OpenAiCompatible.make({ apiKeyEnv: false, idleTimeout: "200 millis" })
      const healthy: Array<Outcome> = []
      const stalled: Array<Outcome> = []
      let blocks = 0
      for (let round = 0; round < rounds; round++) {
        // the consumer of stream `round` computes for 300 ms on the third chunk
        const consume = (i: number) =>
          outcome(Stream.tap(openai.stream(request, targetAt(`${server.url}/ok/v1`)), (c) =>
            Effect.sync(() => {
              if (i === round && c.choices[0]?.delta.content === "2") {
                blocks++
                block(300)
              }
            })))
        const [ok, stall] = yield* Effect.all([
          Effect.forEach(Array.from({ length: streams }, (_, i) => i), consume, { concurrency: "unbounded" }),
          outcome(openai.stream(request, targetAt(`${server.url}/stall/v1`)))
        ], { concurrency: "unbounded" })
        healthy.push(...ok)
        stalled.push(stall)
      }
      expect(blocks).toBe(rounds)
      expect(failures(healthy, "012345")).toBe(`0 of ${rounds * streams} failed`)
      for (const s of stalled) {
        expect(s.text).toBe("s")
        expect(s.error?.message).toBe("openai: stream idle: no data within 200ms")
      }
    }).pipe(Effect.provide(client)))

  it.scopedLive("a stream that stalls, a stream with no answer and a chat with no answer time out at their limits, not much later", () =>
    Effect.gen(function*() {
      const limit = 400
      const server = yield* Loopback.make({
        "/stall/v1/chat/completions": Loopback.sse([Loopback.event(chunk("s"))], { then: "stall" }),
        "/silent/v1/chat/completions": Loopback.stall
      })
      const openai = yield* OpenAiCompatible.make({
        apiKeyEnv: false,
        timeout: `${limit} millis`,
        firstByteTimeout: `${limit} millis`,
        idleTimeout: `${limit} millis`
      })
      /** Millis from `from()` (read when the call ends) to the end of `call`, and its error. */
      const timed = (call: Effect.Effect<Outcome>, from: () => number) =>
        Effect.map(call, (o) => ({ elapsed: Date.now() - from(), error: o.error?.message }))
      const start = Date.now()
      let lastChunk = Infinity
      const results = yield* Effect.all([
        timed(
          outcome(Stream.tap(openai.stream(request, targetAt(`${server.url}/stall/v1`)), () =>
            Effect.sync(() => {
              lastChunk = Date.now()
            }))),
          () => lastChunk
        ),
        timed(outcome(openai.stream(request, targetAt(`${server.url}/silent/v1`))), () => start),
        timed(chatOutcome(openai.chat(request, targetAt(`${server.url}/silent/v1`))), () => start)
      ], { concurrency: "unbounded" })
      expect(results.map((r) => r.error)).toEqual([
        `openai: stream idle: no data within ${limit}ms`,
        `openai: no first byte within ${limit}ms`,
        `openai: no complete response within ${limit}ms`
      ])
      for (const { elapsed } of results) {
        expect(elapsed).toBeGreaterThanOrEqual(limit)
        // a timer that waited a whole limit more (or for ever) would be 2x
        expect(elapsed).toBeLessThan(limit + 300)
      }
    }).pipe(Effect.provide(client)))
})

describe.each(clients.slice(0, 2))("a busy event loop, a server on a thread of its own, %s", (_, client) => {
  it.scopedLive("calls waiting for a response head, first bytes or a chat reply do not time out while a consumer blocks the loop", () =>
    Effect.gen(function*() {
      const server = yield* threadServer
      const openai = yield* OpenAiCompatible.make({
        apiKeyEnv: false,
        timeout: "250 millis",
        firstByteTimeout: "250 millis",
        idleTimeout: "250 millis"
      })
      const head = path(server, { head: 80, first: 0, gap: 5, n: 3, kind: "sse" })
      const firstBytes = path(server, { head: 0, first: 80, gap: 5, n: 3, kind: "sse" })
      const chat = path(server, { head: 80, first: 0, gap: 0, n: 0, kind: "json" })
      const ticker = path(server, { head: 0, first: 0, gap: 5, n: 1000, kind: "sse" })
      // The consumer of another stream blocks the loop 30 ms after the server has read the 30
      // requests (time for the heads sent at once to come in; the rest comes 80 ms after the
      // requests): for 350 ms, past every limit, and until every reply is written in full.
      let blockAt = Infinity
      let allReceivedAt = Infinity
      let blocks = 0
      const blocker = yield* Effect.fork(Stream.runDrain(Stream.takeUntil(openai.stream(request, ticker), () => {
        if (server.received() < blockAt) return false
        allReceivedAt = Math.min(allReceivedAt, Date.now())
        if (Date.now() - allReceivedAt < 30) return false
        blocks++
        block(350, () => server.written() >= 30)
        return true
      })))
      yield* until(() => server.received() === 1)
      blockAt = 31
      const [heads, firsts, chats] = yield* Effect.all([
        Effect.all(Array.from({ length: 10 }, () => outcome(openai.stream(request, head))), { concurrency: "unbounded" }),
        Effect.all(Array.from({ length: 10 }, () => outcome(openai.stream(request, firstBytes))), { concurrency: "unbounded" }),
        Effect.all(Array.from({ length: 10 }, () => chatOutcome(openai.chat(request, chat))), { concurrency: "unbounded" })
      ], { concurrency: "unbounded" })
      yield* Fiber.join(blocker)
      expect(blocks).toBe(1)
      expect(`heads: ${failures(heads, "012")}, first bytes: ${failures(firsts, "012")}, chats: ${failures(chats, "hi")}`)
        .toBe("heads: 0 of 10 failed, first bytes: 0 of 10 failed, chats: 0 of 10 failed")
    }).pipe(Effect.provide(client)))

  it.scopedLive("a cold start of 50 streams does not time out while a consumer blocks the loop", () =>
    Effect.gen(function*() {
      const streams = 50
      // a new server: every stream opens a new connection
      const server = yield* threadServer
      const openai = yield* OpenAiCompatible.make({ apiKeyEnv: false, firstByteTimeout: "250 millis", idleTimeout: "250 millis" })
      const target = path(server, { head: 0, first: 0, gap: 20, n: 4, kind: "sse" })
      // the first consumer to get a chunk once the server has read every request blocks the
      // loop for 350 ms and until the server has written every reply in full
      let blocks = 0
      const consume = outcome(Stream.tap(openai.stream(request, target), () =>
        Effect.sync(() => {
          if (blocks > 0 || server.received() < streams) return
          blocks++
          block(350, () => server.written() >= streams)
        })))
      const outcomes = yield* Effect.all(Array.from({ length: streams }, () => consume), { concurrency: "unbounded" })
      expect(blocks).toBe(1)
      expect(failures(outcomes, "0123")).toBe(`0 of ${streams} failed`)
    }).pipe(Effect.provide(client)))
})
