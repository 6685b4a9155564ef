/**
 * The timers of the HTTP core through `OpenAiCompatible`: the body reader of the streaming path
 * (`src/internal/body.ts`) with its limits on `TestClock` (a controlled web `ReadableStream` as
 * the body), the general `response.stream` path, draining after `[DONE]`; request timeouts on
 * `TestClock` (a client that only answers its abort signal); and no timer left behind (live,
 * over undici).
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as fc from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { Readable } from "node:stream"
import type * as Errors from "../../src/Errors.js"
import type { ChatChunk, ChatRequest, Target } from "../../src/Provider.js"
import * as OpenAiCompatible from "../../src/providers/OpenAiCompatible.js"
import * as Loopback from "../support/loopback.js"

const request: ChatRequest = { model: "m", messages: [{ role: "user", content: "hi" }] }
const target: Target = { deploymentId: "d", model: "m", apiBase: "http://upstream.test/v1", apiKey: undefined, timeout: undefined }

const event = (content: string) =>
  `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`
const done = "data: [DONE]\n\n"

/** A response body the test writes to, as the server would, and whether the client cancelled it. */
const controlledBody = () => {
  const encoder = new TextEncoder()
  let controller!: ReadableStreamDefaultController<Uint8Array>
  const state = { cancelled: false }
  const stream = new ReadableStream<Uint8Array>({
    start: (c) => {
      controller = c
    },
    cancel: () => {
      state.cancelled = true
    }
  })
  return {
    stream,
    state,
    write: (text: string) => controller.enqueue(encoder.encode(text)),
    end: () => controller.close()
  }
}

/**
 * A client answering every request with `body`; `hideSource` hides the fetch `Response` (as a
 * client that keeps no readable source would), so the reader takes the `response.stream` path.
 */
const clientOf = (body: ReadableStream<Uint8Array>, hideSource = false) =>
  Layer.succeed(
    HttpClient.HttpClient,
    HttpClient.make((req) =>
      Effect.sync(() => {
        const response = HttpClientResponse.fromWeb(req, new Response(body, { headers: { "content-type": "text/event-stream" } }))
        return hideSource
          ? new Proxy(response, { get: (t, p) => (p === "source" ? undefined : Reflect.get(t, p, t)) })
          : response
      })
    )
  )

/** Lets promise callbacks and the fibers they resume run (no clock involved). */
const settle = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve))).pipe(Effect.repeatN(3))

const collect = (stream: Stream.Stream<ChatChunk, Errors.ProviderError>) =>
  Effect.map(Stream.runCollect(Stream.either(stream)), (items) => {
    const all = Chunk.toReadonlyArray(items)
    return {
      text: all.flatMap((e) => (Either.isRight(e) ? [e.right.choices[0]?.delta.content ?? ""] : [])).join(""),
      error: all.flatMap((e) => (Either.isLeft(e) ? [e.left] : []))[0]
    }
  })

const streamWith = (options: OpenAiCompatible.Options) =>
  Effect.flatMap(OpenAiCompatible.make({ apiKeyEnv: false, ...options }), (openai) => collect(openai.stream(request, target)))

describe.each([
  ["the web stream of the source", false],
  ["response.stream (no source)", true]
] as const)("stream body read through %s", (_, hideSource) => {
  it.effect("an idle limit fails the stream when it runs out, not before, after the chunks that came", () =>
    Effect.gen(function*() {
      const body = controlledBody()
      const fiber = yield* Effect.fork(Effect.provide(streamWith({ idleTimeout: "10 seconds" }), clientOf(body.stream, hideSource)))
      yield* settle
      body.write(event("Hel"))
      yield* settle
      yield* TestClock.adjust("9 seconds")
      yield* settle
      expect(fiber.unsafePoll()).toBeNull()
      body.write(event("lo"))
      yield* settle
      yield* TestClock.adjust("9 seconds") // 18 s since the start, 9 s since the last bytes
      yield* settle
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 second")
      yield* settle
      const { text, error } = yield* Fiber.join(fiber)
      expect(text).toBe("Hello")
      expect(error?._tag).toBe("Timeout")
      expect(error?.message).toMatch(/idle/)
      expect(body.state.cancelled).toBe(true)
    }))

  it.effect("a first-byte limit fails a stream that sends nothing", () =>
    Effect.gen(function*() {
      const body = controlledBody()
      const fiber = yield* Effect.fork(
        Effect.provide(streamWith({ firstByteTimeout: "5 seconds", idleTimeout: "1 minute" }), clientOf(body.stream, hideSource))
      )
      yield* settle
      yield* TestClock.adjust("4999 millis")
      yield* settle
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 milli")
      yield* settle
      const { text, error } = yield* Fiber.join(fiber)
      expect(text).toBe("")
      expect(error?._tag).toBe("Timeout")
      expect(error?.message).toMatch(/first byte/)
      expect(body.state.cancelled).toBe(true)
    }))

  it.effect("a slow consumer is not an idle server: the limit counts while a read waits", () =>
    Effect.gen(function*() {
      const body = controlledBody()
      const slowly = Effect.flatMap(OpenAiCompatible.make({ apiKeyEnv: false, idleTimeout: "10 seconds" }), (openai) =>
        collect(Stream.tap(openai.stream(request, target), () => Effect.sleep("30 seconds"))))
      const fiber = yield* Effect.fork(Effect.provide(slowly, clientOf(body.stream, hideSource)))
      yield* settle
      body.write(event("a"))
      body.write(event("b"))
      body.write(event("c"))
      body.write(done)
      body.end()
      for (let i = 0; i < 6; i++) {
        yield* settle
        yield* TestClock.adjust("30 seconds")
      }
      const { text, error } = yield* Fiber.join(fiber)
      expect(error).toBeUndefined()
      expect(text).toBe("abc")
    }))

  /** A stream whose body has sent one event and `[DONE]`, but has not ended. */
  const afterDone = Effect.gen(function*() {
    const body = controlledBody()
    const fiber = yield* Effect.fork(Effect.provide(streamWith({}), clientOf(body.stream, hideSource)))
    yield* settle
    body.write(event("ok") + done)
    yield* settle
    return { body, fiber }
  })

  it.effect("after [DONE] the rest of the body is read to its end, without cancelling it", () =>
    Effect.gen(function*() {
      const { body, fiber } = yield* afterDone
      body.end()
      yield* settle
      const { text, error } = yield* Fiber.join(fiber)
      expect([text, error]).toEqual(["ok", undefined])
      expect(body.state.cancelled).toBe(false)
    }))

  it.effect("a body that goes on after [DONE] is released after 250 ms; the stream still succeeds", () =>
    Effect.gen(function*() {
      const { body, fiber } = yield* afterDone
      yield* TestClock.adjust("249 millis")
      yield* settle
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 milli")
      yield* settle
      const { text, error } = yield* Fiber.join(fiber)
      expect([text, error]).toEqual(["ok", undefined])
      expect(body.state.cancelled).toBe(true)
    }))

  it.effect("leaving early releases the body", () =>
    Effect.gen(function*() {
      const body = controlledBody()
      body.write(event("a"))
      const first = Effect.flatMap(OpenAiCompatible.make({ apiKeyEnv: false }), (openai) =>
        Stream.runCollect(Stream.take(openai.stream(request, target), 1)))
      const chunks = yield* Effect.provide(first, clientOf(body.stream, hideSource))
      expect(chunks.length).toBe(1)
      yield* settle
      expect(body.state.cancelled).toBe(true)
    }))
})

/** A client whose requests never answer; each fails as soon as its abort signal fires. */
const silentClient = (aborted: Array<string>) =>
  Layer.succeed(
    HttpClient.HttpClient,
    HttpClient.make((req, _url, signal) =>
      Effect.async<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError>((resume) => {
        signal.addEventListener("abort", () => {
          aborted.push(req.url)
          resume(Effect.fail(new HttpClientError.RequestError({ request: req, reason: "Transport", cause: new Error("aborted") })))
        })
      })
    )
  )

describe("request timeouts (TestClock)", () => {
  it.effect("a chat call is aborted at its timeout, not before, and fails with Timeout", () =>
    Effect.gen(function*() {
      const aborted: Array<string> = []
      const openai = yield* Effect.provide(OpenAiCompatible.make({ apiKeyEnv: false, timeout: "30 seconds" }), silentClient(aborted))
      const fiber = yield* Effect.fork(Effect.flip(openai.chat(request, target)))
      yield* settle
      yield* TestClock.adjust("29999 millis")
      yield* settle
      expect(fiber.unsafePoll()).toBeNull()
      expect(aborted).toEqual([])
      yield* TestClock.adjust("1 milli")
      const error = yield* Fiber.join(fiber)
      expect(error._tag).toBe("Timeout")
      expect(error.message).toMatch(/no complete response within 30s/)
      expect(aborted).toEqual(["http://upstream.test/v1/chat/completions"])
    }))

  it.effect("a stream request with no answer is aborted at its first-byte limit", () =>
    Effect.gen(function*() {
      const aborted: Array<string> = []
      const openai = yield* Effect.provide(
        OpenAiCompatible.make({ apiKeyEnv: false, firstByteTimeout: "5 seconds" }),
        silentClient(aborted)
      )
      const fiber = yield* Effect.fork(collect(openai.stream(request, target)))
      yield* settle
      yield* TestClock.adjust("5 seconds")
      const { text, error } = yield* Fiber.join(fiber)
      expect(text).toBe("")
      expect(error?._tag).toBe("Timeout")
      expect(error?.message).toMatch(/first byte/)
      expect(aborted.length).toBe(1)
    }))

  it.effect("interrupting a call aborts its request", () =>
    Effect.gen(function*() {
      const aborted: Array<string> = []
      const openai = yield* Effect.provide(OpenAiCompatible.make({ apiKeyEnv: false }), silentClient(aborted))
      const chat = yield* Effect.fork(openai.chat(request, target))
      const stream = yield* Effect.fork(collect(openai.stream(request, target)))
      yield* settle
      yield* Fiber.interrupt(chat)
      yield* Fiber.interrupt(stream)
      expect(aborted.length).toBe(2)
    }))
})

/** A client answering with `pieces` as the body, read the way `kind` says. */
const piecesClient = (pieces: ReadonlyArray<Uint8Array>, kind: "web" | "node" | "pull") =>
  Layer.succeed(
    HttpClient.HttpClient,
    HttpClient.make((req) =>
      Effect.sync(() => {
        const web = new ReadableStream<Uint8Array>({
          start: (controller) => {
            for (const piece of pieces) controller.enqueue(piece)
            controller.close()
          }
        })
        const response = HttpClientResponse.fromWeb(req, new Response(web, { headers: { "content-type": "text/event-stream" } }))
        if (kind === "web") return response
        const node = new Readable({ read() {} })
        for (const piece of pieces) node.push(piece)
        node.push(null)
        return new Proxy(response, {
          get: (t, p) => (p === "source" ? (kind === "node" ? { body: node } : undefined) : Reflect.get(t, p, t))
        })
      })
    )
  )

describe("stream body, any split into reads", () => {
  const contents = fc.array(fc.string({ unit: fc.constantFrom("a", "b", " ", "é", "€", "😀", "\\", "\"", "\n") }), {
    minLength: 1,
    maxLength: 8
  })
  it.effect.prop(
    "every event arrives once and in order, however the bytes are cut (CRLF or LF, comments, multi-byte characters)",
    {
      texts: contents,
      crlf: fc.boolean(),
      comments: fc.boolean(),
      cuts: fc.array(fc.nat(), { maxLength: 12 }),
      kind: fc.constantFrom("web" as const, "node" as const, "pull" as const)
    },
    ({ comments, crlf, cuts, kind, texts }) => {
      const eol = crlf ? "\r\n" : "\n"
      const sse = texts.map((t) => (comments ? `: keep-alive${eol}${eol}` : "") + event(t).replaceAll("\n", eol)).join("") +
        done.replaceAll("\n", eol)
      const bytes = new TextEncoder().encode(sse)
      const points = [...new Set(cuts.map((c) => c % bytes.length))].sort((a, b) => a - b)
      const pieces = [...points, bytes.length].map((end, i) => bytes.slice(i === 0 ? 0 : points[i - 1], end)).filter((p) => p.length > 0)
      return Effect.gen(function*() {
        const openai = yield* OpenAiCompatible.make({ apiKeyEnv: false })
        const chunks = yield* Stream.runCollect(openai.stream(request, target))
        expect(Chunk.toReadonlyArray(chunks).map((c) => c.choices[0]?.delta.content)).toEqual(texts)
      }).pipe(Effect.provide(piecesClient(pieces, kind)))
    },
    { fastCheck: { numRuns: 150 } }
  )
})

describe("stream body over undici (live)", () => {
  it.scopedLive("streams that end, fail on their idle limit or are left early leave no timer running", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({
        "/ok/v1/chat/completions": Loopback.sse([Loopback.event({ id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: { content: "x" }, finish_reason: null }] }), Loopback.done]),
        "/stall/v1/chat/completions": Loopback.sse([], { then: "stall" })
      })
      const openai = yield* OpenAiCompatible.make({ apiKeyEnv: false, idleTimeout: "100 millis", firstByteTimeout: "100 millis" })
      const timers = () => process.getActiveResourcesInfo().filter((name) => name === "Timeout").length
      const at = (path: string): Target => ({ ...target, apiBase: `${server.url}/${path}/v1` })
      // warm the connection pool (its own timers) first
      yield* collect(openai.stream(request, at("ok")))
      const before = timers()
      for (let i = 0; i < 5; i++) {
        expect((yield* collect(openai.stream(request, at("ok")))).error).toBeUndefined()
        expect((yield* collect(openai.stream(request, at("stall")))).error?._tag).toBe("Timeout")
        yield* Stream.runDrain(Stream.take(openai.stream(request, at("ok")), 1))
      }
      expect(timers()).toBeLessThanOrEqual(before)
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
})
