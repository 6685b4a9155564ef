/**
 * A loopback HTTP server for provider tests: started inside the test's scope on 127.0.0.1 with a
 * random port (HttpServer from @effect/platform-node), answering by path with scripted replies,
 * and recording every request it received.
 *
 * Replies (build them with the helpers below):
 * - `json(body, { status, headers, delay })`: a JSON body (default status 200)
 * - `text(body, { status, headers, delay, contentType })`: a raw body (not JSON, truncated JSON...)
 * - `sse(items, { status, headers, delay, then })`: an event stream, written item by item;
 *   an item is `event(data, { event, delay })` (objects are JSON-encoded) or `raw(text, { delay })`
 *   (written verbatim: comments, half events, "data: [DONE]\n\n" is `done`). `then` says how the
 *   stream ends: `"end"` (default), `"stall"` (keeps the connection open, sends nothing more) or
 *   `"cut"` (destroys the connection)
 * - `stall`: never answers; `cut`: destroys the connection without answering
 *
 * A route is one reply, a list (the n-th request gets the n-th reply, the last one repeats) or a
 * function of the recorded request and its index. Unknown paths answer 404.
 *
 * Delays use `Effect.sleep`: run these tests with `it.live` / `it.scopedLive`.
 *
 * @example
 * it.scopedLive("chat", () => Effect.gen(function*() {
 *   const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.json(reply) })
 *   // call `${server.url}/v1` ...
 *   const [request] = yield* server.requests
 *   expect(request.headers.authorization).toBe("Bearer sk-test")
 * }))
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Http from "node:http"
import * as Net from "node:net"

// ---------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------

/** Status, headers and a delay before answering. */
export interface ReplyOptions {
  readonly status?: number | undefined
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** Wait this long before sending the status line. */
  readonly delay?: Duration.DurationInput | undefined
}

/** One item of an event stream. */
export type SseItem =
  | { readonly _tag: "Event"; readonly data: unknown; readonly event?: string | undefined; readonly delay?: Duration.DurationInput | undefined }
  | { readonly _tag: "Raw"; readonly text: string; readonly delay?: Duration.DurationInput | undefined }

/** A scripted reply. */
export type Reply =
  | { readonly _tag: "Json"; readonly body: unknown; readonly options: ReplyOptions }
  | { readonly _tag: "Text"; readonly body: string; readonly contentType: string; readonly options: ReplyOptions }
  | {
    readonly _tag: "Sse"
    readonly items: ReadonlyArray<SseItem>
    readonly then: "end" | "stall" | "cut"
    readonly options: ReplyOptions
  }
  | { readonly _tag: "Stall" }
  | { readonly _tag: "Cut" }

/** A JSON reply. */
export const json = (body: unknown, options: ReplyOptions = {}): Reply => ({ _tag: "Json", body, options })

/** A raw text reply (default content type `text/plain`). */
export const text = (body: string, options: ReplyOptions & { readonly contentType?: string | undefined } = {}): Reply => ({
  _tag: "Text",
  body,
  contentType: options.contentType ?? "text/plain",
  options
})

/** An event-stream reply. */
export const sse = (
  items: ReadonlyArray<SseItem>,
  options: ReplyOptions & { readonly then?: "end" | "stall" | "cut" | undefined } = {}
): Reply => ({ _tag: "Sse", items, then: options.then ?? "end", options })

/** An SSE event; `data` that is not a string is JSON-encoded. */
export const event = (
  data: unknown,
  options: { readonly event?: string | undefined; readonly delay?: Duration.DurationInput | undefined } = {}
): SseItem => ({ _tag: "Event", data, event: options.event, delay: options.delay })

/** Text written to an event stream verbatim. */
export const raw = (text: string, options: { readonly delay?: Duration.DurationInput | undefined } = {}): SseItem => ({
  _tag: "Raw",
  text,
  delay: options.delay
})

/** OpenAI's end-of-stream marker. */
export const done: SseItem = raw("data: [DONE]\n\n")

/** An OpenAI chat completion answering `content` (5 + 2 tokens). */
export const chatReply = (content: string) => ({
  id: "chatcmpl-1",
  object: "chat.completion",
  created: 1_700_000_000,
  model: "gpt-test",
  choices: [{ index: 0, message: { role: "assistant", content, refusal: null }, logprobs: null, finish_reason: "stop" }],
  usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 }
})

/** An OpenAI stream chunk carrying `delta`. */
export const chunk = (delta: Record<string, unknown>, finish_reason: string | null = null) => ({
  id: "chatcmpl-s",
  object: "chat.completion.chunk",
  created: 1_700_000_000,
  model: "gpt-test",
  choices: [{ index: 0, delta, logprobs: null, finish_reason }]
})

/** Never answers (the connection stays open until the client leaves). */
export const stall: Reply = { _tag: "Stall" }

/** Destroys the connection without answering. */
export const cut: Reply = { _tag: "Cut" }

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

/** A request as the server received it. */
export interface RecordedRequest {
  readonly method: string
  /** Path without the query string. */
  readonly path: string
  readonly query: Readonly<Record<string, string>>
  /** Lower-case names. */
  readonly headers: Readonly<Record<string, string>>
  /** The raw body. */
  readonly text: string
  /** The body parsed as JSON (`undefined` when it is not JSON). */
  readonly body: any
  /** Completes when the server side of this exchange closes (finished, or the client left). */
  readonly closed: Deferred.Deferred<void>
  /** Whether the client left before the reply was complete (read after `closed`). */
  readonly aborted: () => boolean
}

/** A route: one reply, a reply per request (the last repeats), or a function of the request. */
export type Route = Reply | ReadonlyArray<Reply> | ((request: RecordedRequest, index: number) => Reply)

/** A running loopback server. */
export interface Loopback {
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  readonly port: number
  /** Every request received so far, in order. */
  readonly requests: Effect.Effect<ReadonlyArray<RecordedRequest>>
  /** Sets (or replaces) the route of a path. */
  readonly route: (path: string, route: Route) => Effect.Effect<void>
}

const encoder = new TextEncoder()

const formatEvent = (item: SseItem): string => {
  if (item._tag === "Raw") return item.text
  const data = typeof item.data === "string" ? item.data : JSON.stringify(item.data)
  const lines = data.split("\n").map((line) => `data: ${line}\n`).join("")
  return `${item.event !== undefined ? `event: ${item.event}\n` : ""}${lines}\n`
}

const sleepFor = (delay: Duration.DurationInput | undefined) =>
  delay === undefined ? Effect.void : Effect.sleep(delay)

/**
 * Starts a loopback server in the current scope; it stops (closing every connection) when the
 * scope closes.
 */
export const make = (routes: Readonly<Record<string, Route>> = {}): Effect.Effect<Loopback, never, Scope.Scope> =>
  Effect.gen(function*() {
    const table = new Map<string, Route>(Object.entries(routes))
    const counts = new Map<string, number>()
    const recorded: Array<RecordedRequest> = []
    let nodeServer: Http.Server | undefined
    const server = yield* NodeHttpServer.make(() => (nodeServer = Http.createServer()), { port: 0, host: "127.0.0.1" })
      .pipe(Effect.orDie)
    // Runs before the server's own finalizer: a stalled or kept-alive connection must not hold close().
    yield* Effect.addFinalizer(() => Effect.sync(() => nodeServer?.closeAllConnections()))
    if (server.address._tag !== "TcpAddress") return yield* Effect.die("expected a TCP address")
    const port = server.address.port

    const respond = (reply: Reply, socket: Net.Socket): Effect.Effect<HttpServerResponse.HttpServerResponse> => {
      switch (reply._tag) {
        case "Stall":
          return Effect.never
        case "Cut":
          return Effect.zipRight(Effect.sync(() => socket.destroy()), Effect.never)
        case "Json":
          return Effect.as(
            sleepFor(reply.options.delay),
            HttpServerResponse.text(JSON.stringify(reply.body), {
              status: reply.options.status ?? 200,
              headers: reply.options.headers ?? {},
              contentType: "application/json"
            })
          )
        case "Text":
          return Effect.as(
            sleepFor(reply.options.delay),
            HttpServerResponse.text(reply.body, {
              status: reply.options.status ?? 200,
              headers: reply.options.headers ?? {},
              contentType: reply.contentType
            })
          )
        case "Sse": {
          const items = Stream.fromIterable(reply.items).pipe(
            Stream.mapEffect((item) => Effect.as(sleepFor(item.delay), encoder.encode(formatEvent(item))))
          )
          const ending: Stream.Stream<Uint8Array> = reply.then === "end"
            ? Stream.empty
            : reply.then === "stall"
            ? Stream.never
            : Stream.fromEffect(
              // let the written events reach the client, then drop the connection
              Effect.zipRight(Effect.sleep("20 millis"), Effect.sync(() => socket.destroy()))
            ).pipe(Stream.drain, Stream.concat(Stream.never))
          return Effect.as(
            sleepFor(reply.options.delay),
            HttpServerResponse.stream(Stream.concat(items, ending), {
              status: reply.options.status ?? 200,
              headers: { "cache-control": "no-cache", ...reply.options.headers },
              contentType: "text/event-stream"
            })
          )
        }
      }
    }

    const app = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const nodeRequest = NodeHttpServerRequest.toIncomingMessage(request)
      const nodeResponse = NodeHttpServerRequest.toServerResponse(request)
      const body = yield* Effect.orElseSucceed(request.text, () => "")
      const url = new URL(request.url, `http://127.0.0.1:${port}`)
      let parsed: unknown = undefined
      try {
        parsed = JSON.parse(body)
      } catch {
        // not JSON
      }
      const closed = yield* Deferred.make<void>()
      let aborted = false
      nodeResponse.on("close", () => {
        aborted = !nodeResponse.writableFinished
        Deferred.unsafeDone(closed, Effect.void)
      })
      const entry: RecordedRequest = {
        method: request.method,
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        headers: { ...request.headers },
        text: body,
        body: parsed,
        closed,
        aborted: () => aborted
      }
      recorded.push(entry)
      const route = table.get(url.pathname)
      const index = counts.get(url.pathname) ?? 0
      counts.set(url.pathname, index + 1)
      const reply: Reply = route === undefined
        ? json({ error: { message: `no route for ${url.pathname}`, type: "invalid_request_error", code: "not_found" } }, { status: 404 })
        : typeof route === "function"
        ? route(entry, index)
        : Array.isArray(route)
        ? route[Math.min(index, route.length - 1)]
        : route as Reply
      return yield* respond(reply, nodeRequest.socket)
    })

    yield* server.serve(app)

    return {
      url: `http://127.0.0.1:${port}`,
      port,
      requests: Effect.sync(() => recorded.slice()),
      route: (path, route) => Effect.sync(() => void table.set(path, route))
    }
  })

/**
 * The URL of a loopback port nothing listens on (a connection to it is refused).
 */
export const closedPortUrl: Effect.Effect<string> = Effect.async<string>((resume) => {
  const probe = Net.createServer()
  probe.listen(0, "127.0.0.1", () => {
    const address = probe.address() as Net.AddressInfo
    probe.close(() => resume(Effect.succeed(`http://127.0.0.1:${address.port}`)))
  })
})

/**
 * Waits until `request`'s exchange closed on the server side; fails with a
 * `TimeoutException` when it has not within `timeout`.
 */
export const awaitClosed = (
  request: RecordedRequest,
  timeout: Duration.DurationInput = "2 seconds"
): Effect.Effect<void, Cause.TimeoutException> => Deferred.await(request.closed).pipe(Effect.timeout(timeout))
