/**
 * Where the time of our streaming call goes, and what a cheaper stream path would save: the
 * companion of `bench/providers.ts` (which found our `provider.stream` slower than the openai
 * SDK's). Not part of `npm run bench:providers`; run it by hand:
 *
 *   npx tsx bench/providers-breakdown.ts               (about 60-90 s on a 2-core machine)
 *   BENCH_QUICK=1 npx tsx bench/providers-breakdown.ts (about 20-30 s)
 *
 * Part 1, in memory (no network): the stages of our stream path (`Http.postSse` in
 * `src/internal/http.ts` and `stream` in `src/internal/openai.ts`) built up one at a time over
 * the fixed event stream of `providers-fixtures.ts`, as one body chunk (burst) and as one chunk
 * per event (paced), µs per stream. `withReadTimeouts` is copied from `http.ts` (not exported);
 * the other stages are the library calls `http.ts` makes. Then the SSE parser of
 * `@effect/experimental/Sse` (`makeParser`) alone, per event, for reads holding 1 to 88 events:
 * its time per event grows with the number of events in one read (it rescans the read buffer
 * from its start for every line).
 *
 * Part 2, against the loopback server of `providers.ts` (child process): our `provider.stream`,
 * a prototype of a cheaper path (`protoStream` below: one synchronous stage that decodes text,
 * parses SSE linearly, parses and decodes chunks, and keeps reading to the end of the body after
 * `[DONE]`), with and without the read timeouts of `http.ts`, and the openai SDK; interleaved
 * batches, µs per call. Then connection reuse when the end of the body arrives 2 ms after
 * `[DONE]` (new TCP connections per call).
 *
 * The prototype handles the success path only (error events, JSON-instead-of-stream and
 * non-2xx replies are left out); it is a measurement, not a replacement for `http.ts`.
 *
 * Since this was written, `http.ts` / `openai.ts` took two rounds of fixes: first one synchronous
 * step per body chunk (`Sse.makeParser` fed a line at a time, reading to the end of the body
 * after `[DONE]`); then the body read from the client's own source by `body.ts` (no
 * `response.stream`, no `Stream.toPull`), read limits and request timeouts kept by timers instead
 * of races, and the stream built as a channel without a `Scope`. "ours (provider.stream)" in
 * part 2 is the current path; the stages of part 1 (and their `http.ts:<line>` labels) describe
 * the path before both. `npm run bench:providers` has the current figures.
 */
import { fork } from "node:child_process"
import { once } from "node:events"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import * as Sse from "@effect/experimental/Sse"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import OpenAI from "openai"
import { type Errors, OpenAiCompatible, type Provider } from "../src/index.js"
import * as Http from "../src/internal/http.js"
import { ChatChunk as ChatChunkSchema } from "../src/Provider.js"
import * as ErrorMapping from "../src/ErrorMapping.js"
import * as Fixtures from "./providers-fixtures.js"

const QUICK = process.env.BENCH_QUICK === "1"
const log = (line = ""): void => void process.stdout.write(line + "\n")
const fmt = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toFixed(digits) : "-")
const lpad = (s: string, n: number): string => (s.length >= n ? s : " ".repeat(n - s.length) + s)
const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

type ProviderError = Errors.ProviderError
type ChatChunk = Provider.ChatChunk

const decodeChunk = Http.decoder(ChatChunkSchema)
const target: Provider.Target = {
  deploymentId: "bench",
  model: Fixtures.model,
  apiBase: undefined,
  apiKey: undefined,
  timeout: undefined,
  reportRateLimit: () => Effect.void
}
const endpoint = Http.makeEndpoint({
  provider: "openai",
  target,
  headers: { authorization: Redacted.make("Bearer sk-bench-0000000000000000") }
})
const idle = Duration.minutes(2)
const first = Duration.minutes(10)

// ---------------------------------------------------------------------------
// The stages of http.ts / openai.ts
// ---------------------------------------------------------------------------

/** Copied from `src/internal/http.ts` (`withReadTimeouts`, not exported). */
const withReadTimeouts = <A>(
  firstTimeout: Duration.Duration,
  idleTimeout: Duration.Duration,
  onFirst: () => ProviderError,
  onIdle: () => ProviderError
) =>
(self: Stream.Stream<A, ProviderError>): Stream.Stream<A, ProviderError> =>
  Stream.unwrapScoped(Effect.map(Stream.toPull(self), (pull) => {
    let started = false
    const next = Effect.suspend(() => {
      const duration = started ? idleTimeout : firstTimeout
      const timed = Duration.isFinite(duration)
        ? Effect.timeoutFail(pull, { duration, onTimeout: () => Option.some(started ? onIdle() : onFirst()) })
        : pull
      return Effect.tap(timed, (chunk) => {
        if (chunk.length > 0) started = true
      })
    })
    return Stream.repeatEffectChunkOption(next)
  }))

const timeoutsOf = <A>() =>
  withReadTimeouts<A>(first, idle, () => Http.timeoutError(endpoint, "no first byte", first), () =>
    Http.timeoutError(endpoint, "stream idle: no data", idle))

/** As `readEvent` in `openai.ts` (without the Azure annotation and finish-reason cases). */
const readData = (data: string): Either.Either<Option.Option<ChatChunk>, ProviderError> => {
  if (data.trim() === "" || data.trim() === "[DONE]") return Either.right(Option.none())
  const json = Http.parseJson(endpoint, data, "a stream event")
  if (Either.isLeft(json)) return Either.left(json.left)
  if (Http.isErrorPayload(json.right)) return Either.left(Http.errorFromPayload(endpoint, data))
  const chunk = decodeChunk(json.right)
  return Either.isRight(chunk)
    ? Either.right(Option.some(chunk.right))
    : Either.left(Http.fail(endpoint, "MalformedResponse", chunk.left))
}

const bytesOf = (chunks: ReadonlyArray<Uint8Array>): Stream.Stream<Uint8Array, ProviderError> =>
  Stream.fromIterable(chunks)
const textOf = (chunks: ReadonlyArray<Uint8Array>) => bytesOf(chunks).pipe(Stream.decodeText())
const timedOf = (chunks: ReadonlyArray<Uint8Array>) => textOf(chunks).pipe(timeoutsOf<string>())
const eventsOf = (chunks: ReadonlyArray<Uint8Array>) =>
  timedOf(chunks).pipe(
    Stream.pipeThroughChannel(Sse.makeChannel<ProviderError, unknown>()),
    Stream.catchAllCause((cause) => {
      const defect = Cause.dieOption(cause)
      return Option.isSome(defect) && defect.value instanceof Sse.SseError
        ? Stream.fail(Http.fail(endpoint, "MalformedResponse", defect.value.message))
        : Stream.failCause(cause)
    })
  )
const endedOf = (chunks: ReadonlyArray<Uint8Array>) =>
  Stream.suspend(() => {
    let ended = false
    return eventsOf(chunks).pipe(
      Stream.takeUntil((event) => (ended = event.data.trim() === "[DONE]")),
      Stream.concat(Stream.suspend(() => ended ? Stream.empty : Stream.fail(Http.fail(endpoint, "MalformedResponse", "cut off"))))
    )
  })
const oursOf = (chunks: ReadonlyArray<Uint8Array>) =>
  endedOf(chunks).pipe(Stream.mapEffect((event) => readData(event.data)), Stream.filterMap((chunk) => chunk))

// ---------------------------------------------------------------------------
// A linear SSE parser and the one-stage path (the suggested fix)
// ---------------------------------------------------------------------------

/**
 * A server-sent-event parser, linear in its input: `feed(text)` returns the `data` of every
 * event completed by `text` (lines `data:`, `event:`, comments; CR, LF or CRLF line ends).
 */
const makeLinearSse = () => {
  let buffer = ""
  let data = ""
  let hasData = false
  let event = ""
  let skipLf = false
  const feed = (text: string, onEvent: (data: string, event: string) => void): void => {
    buffer = buffer === "" ? text : buffer + text
    let start = 0
    if (skipLf && buffer.charCodeAt(0) === 10) start = 1
    skipLf = false
    const length = buffer.length
    for (;;) {
      let end = start
      while (end < length) {
        const c = buffer.charCodeAt(end)
        if (c === 10 || c === 13) break
        end++
      }
      if (end >= length) break
      const line = buffer.slice(start, end)
      if (buffer.charCodeAt(end) === 13) {
        if (end + 1 < length) {
          if (buffer.charCodeAt(end + 1) === 10) end++
        } else {
          skipLf = true
        }
      }
      start = end + 1
      if (line === "") {
        if (hasData) onEvent(data, event === "" ? "message" : event)
        data = ""
        hasData = false
        event = ""
        continue
      }
      const colon = line.indexOf(":")
      if (colon === 0) continue // comment
      const field = colon < 0 ? line : line.slice(0, colon)
      const value = colon < 0 ? "" : line.slice(line.charCodeAt(colon + 1) === 32 ? colon + 2 : colon + 1)
      if (field === "data") {
        data = hasData ? `${data}\n${value}` : value
        hasData = true
      } else if (field === "event") {
        event = value
      }
    }
    buffer = start >= length ? "" : buffer.slice(start)
  }
  return { feed }
}

/**
 * The body, from bytes to chat chunks in one synchronous stage per body chunk; after `[DONE]`
 * it keeps reading (and drops anything more) to the end of the body, so the connection stays
 * reusable; a body that ends before `[DONE]` fails as in `http.ts`.
 */
const parseBody = (bytes: Stream.Stream<Uint8Array, ProviderError>): Stream.Stream<ChatChunk, ProviderError> =>
  Stream.suspend(() => {
    const decoder = new TextDecoder()
    const sse = makeLinearSse()
    let ended = false
    let failure: ProviderError | undefined
    let out: Array<ChatChunk> = []
    const onEvent = (data: string, event: string) => {
      if (ended || failure !== undefined) return
      if (data.trim() === "[DONE]") {
        ended = true
        return
      }
      if (event === "error") {
        failure = Http.errorFromPayload(endpoint, data)
        return
      }
      const chunk = readData(data)
      if (Either.isLeft(chunk)) failure = chunk.left
      else if (Option.isSome(chunk.right)) out.push(chunk.right.value)
    }
    return bytes.pipe(
      Stream.mapChunksEffect((chunk) => {
        for (const piece of chunk) sse.feed(decoder.decode(piece, { stream: true }), onEvent)
        if (failure !== undefined) return Effect.fail(failure)
        const emitted = out
        out = []
        return Effect.succeed(Chunk.unsafeFromArray(emitted))
      }),
      Stream.concat(Stream.suspend(() =>
        ended ? Stream.empty : Stream.fail(Http.fail(endpoint, "MalformedResponse", "stream ended before [DONE] (cut off)"))
      ))
    )
  })

/** The request and response handling of `http.ts` (success path), then `parseBody`. */
const protoStream = (
  client: HttpClient.HttpClient,
  url: string,
  body: unknown,
  readTimeouts: boolean
): Stream.Stream<ChatChunk, ProviderError> =>
  Stream.unwrap(Effect.suspend(() => {
    const request = HttpClientRequest.post(url, {
      headers: endpoint.headers,
      accept: "text/event-stream",
      body: HttpBody.text(JSON.stringify(body), "application/json")
    })
    const exchange = Effect.flatMap(
      Effect.mapError(client.execute(request), (e) => Http.fromHttpClientError(endpoint, e)),
      (response) => {
        const info = endpoint.reportRateLimit === undefined ? undefined : ErrorMapping.parseRateLimit(response.headers, Date.now())
        return info === undefined || endpoint.reportRateLimit === undefined
          ? Effect.succeed(response)
          : Effect.as(endpoint.reportRateLimit(info), response)
      }
    )
    return Effect.map(
      Effect.timeoutFail(exchange, { duration: first, onTimeout: () => Http.timeoutError(endpoint, "no first byte", first) }),
      (response) => {
        const bytes = Stream.mapError(response.stream, (e) => Http.fromHttpClientError(endpoint, e))
        return parseBody(readTimeouts ? timeoutsOf<Uint8Array>()(bytes) : bytes)
      }
    )
  }))

// ---------------------------------------------------------------------------
// Part 1: in memory
// ---------------------------------------------------------------------------

const encoder = new TextEncoder()
const burst = [encoder.encode(Fixtures.sseEvents.join(""))]
const paced = Fixtures.sseEvents.map((e) => encoder.encode(e))

const countChunks = <A, E>(s: Stream.Stream<A, E>) => Stream.runFold(s, 0, (n) => n + 1)

const inMemory = async () => {
  const rounds = QUICK ? 6 : 14
  const perRound = QUICK ? 60 : 150
  const stages: ReadonlyArray<readonly [string, (c: ReadonlyArray<Uint8Array>) => Effect.Effect<unknown, unknown>]> = [
    ["JSON.parse of the 22 chunks (no Effect)", () =>
      Effect.sync(() => {
        for (const e of Fixtures.sseEvents) if (!e.startsWith("data: [DONE]")) JSON.parse(e.slice(6, -2))
      })],
    ["JSON.parse + schema decode (readEvent's work, no Effect)", () =>
      Effect.sync(() => {
        for (const e of Fixtures.sseEvents) readData(e.slice(6, -2))
      })],
    ["1 Stream.fromIterable(body chunks) + runFold", (c) => countChunks(bytesOf(c))],
    ["2 + Stream.decodeText", (c) => countChunks(textOf(c))],
    ["3 + withReadTimeouts (http.ts:569)", (c) => countChunks(timedOf(c))],
    ["4 + Sse.makeChannel + catchAllCause (http.ts:526)", (c) => countChunks(eventsOf(c))],
    ["5 + takeUntil [DONE] + concat (http.ts:538)", (c) => countChunks(endedOf(c))],
    ["6 + mapEffect(readEvent) + filterMap (openai.ts:334) = ours", (c) => countChunks(oursOf(c))],
    ["fix: parseBody (one stage) + withReadTimeouts", (c) => countChunks(parseBody(bytesOf(c).pipe(timeoutsOf<Uint8Array>())))],
    ["fix: parseBody (one stage), no read timeouts", (c) => countChunks(parseBody(bytesOf(c)))]
  ]
  for (const [mode, chunks] of [["burst: 1 body chunk", burst], [`paced: ${paced.length} body chunks`, paced]] as const) {
    // check: every stream path yields the 22 chunks
    for (const [name, f] of stages.slice(7)) {
      const n = await Effect.runPromise(f(chunks))
      if (n !== Fixtures.chunksPerStream) throw new Error(`${name}: ${String(n)} chunks`)
    }
    const samples = new Map<string, Array<number>>(stages.map(([name]) => [name, []]))
    for (let r = 0; r < rounds; r++) {
      for (let j = 0; j < stages.length; j++) {
        const [name, f] = stages[(r + j) % stages.length]
        const effect = f(chunks)
        const started = performance.now()
        await Effect.runPromise(Effect.repeatN(effect, perRound - 1))
        if (r > 0) samples.get(name)!.push(((performance.now() - started) * 1000) / perRound)
      }
    }
    log(`in memory, ${mode}: µs per stream (median of ${rounds - 1} rounds of ${perRound})`)
    for (const [name] of stages) log(`  ${lpad(fmt(median(samples.get(name)!)), 7)}  ${name}`)
    log()
  }

  log("SSE parser alone, µs per event, by events per read (@effect/experimental Sse.makeParser vs linear):")
  const one = Fixtures.sseEvents[1]
  for (const n of [1, 22, 88]) {
    const text = one.repeat(n)
    const reps = Math.max(4, Math.round((QUICK ? 2_000 : 6_000) / n))
    const time = (feed: () => void) => {
      for (let i = 0; i < 3; i++) feed()
      const started = performance.now()
      for (let i = 0; i < reps; i++) feed()
      return ((performance.now() - started) * 1000) / reps / n
    }
    const experimental = time(() => {
      let count = 0
      const parser = Sse.makeParser(() => void count++)
      parser.feed(text)
    })
    const linear = time(() => {
      let count = 0
      makeLinearSse().feed(text, () => void count++)
    })
    log(`  ${lpad(String(n), 3)} events per read: Sse.makeParser ${lpad(fmt(experimental, 2), 8)}   linear ${lpad(fmt(linear, 2), 6)}`)
  }
  log()
}

// ---------------------------------------------------------------------------
// Part 2: loopback
// ---------------------------------------------------------------------------

const loopback = async () => {
  const child = fork(fileURLToPath(new URL("./providers-server.ts", import.meta.url)), [], {
    execArgv: process.execArgv,
    stdio: ["ignore", "inherit", "inherit", "ipc"]
  })
  const [message] = (await once(child, "message")) as [{ port: number }]
  const connections = async () => {
    child.send("connections")
    const [reply] = (await once(child, "message")) as [{ connections: number }]
    return reply.connections
  }
  const runtime = ManagedRuntime.make(NodeHttpClient.layerUndici)
  const client = await runtime.runPromise(HttpClient.HttpClient)
  const request: Provider.ChatRequest = {
    model: Fixtures.model,
    messages: Fixtures.messages,
    max_tokens: Fixtures.maxTokens,
    temperature: Fixtures.temperature
  }
  const body = { ...request, stream: true, stream_options: { include_usage: true } }

  const clientsFor = async (mode: string) => {
    const base = `http://127.0.0.1:${message.port}/${mode}/v1`
    const provider = await runtime.runPromise(
      OpenAiCompatible.make({ apiBase: base, apiKey: Redacted.make("sk-bench-0000000000000000") })
    )
    const sdk = new OpenAI({ apiKey: "sk-bench-0000000000000000", baseURL: base, maxRetries: 0 })
    const variants: ReadonlyArray<readonly [string, () => Promise<number>]> = [
      ["ours (provider.stream)", () => runtime.runPromise(countChunks(provider.stream(request, target)))],
      ["fix: one stage + read timeouts", () =>
        runtime.runPromise(countChunks(protoStream(client, `${base}/chat/completions`, body, true)))],
      ["fix: one stage, no read timeouts", () =>
        runtime.runPromise(countChunks(protoStream(client, `${base}/chat/completions`, body, false)))],
      ["openai SDK", async () => {
        const stream = await sdk.chat.completions.create({
          model: Fixtures.model,
          messages: Fixtures.messages,
          max_tokens: Fixtures.maxTokens,
          temperature: Fixtures.temperature,
          stream: true,
          stream_options: { include_usage: true }
        })
        let n = 0
        for await (const _ of stream) n++
        return n
      }]
    ]
    return variants
  }

  const batch = 20
  const rounds = QUICK ? 8 : 25
  for (const mode of ["burst", "paced"]) {
    const variants = await clientsFor(mode)
    for (const [name, f] of variants) {
      for (let i = 0; i < (QUICK ? 60 : 200); i++) {
        const n = await f()
        if (n !== Fixtures.chunksPerStream) throw new Error(`${mode} / ${name}: ${n} chunks`)
      }
    }
    const samples = new Map<string, Array<number>>(variants.map(([name]) => [name, []]))
    for (let r = 0; r < rounds; r++) {
      for (let j = 0; j < variants.length; j++) {
        const [name, f] = variants[(r + j) % variants.length]
        const out = samples.get(name)!
        for (let i = 0; i < batch; i++) {
          const started = performance.now()
          await f()
          out.push((performance.now() - started) * 1000)
        }
      }
    }
    const sdk = median(samples.get("openai SDK")!)
    log(`loopback, stream ${mode}: µs per call, median of ${rounds * batch} calls per variant (ratio to the SDK)`)
    for (const [name] of variants) {
      const m = median(samples.get(name)!)
      log(`  ${lpad(fmt(m), 7)}  ${lpad(fmt(m / sdk, 2), 5)}  ${name}`)
    }
    log()
  }

  const variants = await clientsFor("tail")
  const calls = QUICK ? 20 : 50
  log(`connection reuse, body ending 2 ms after [DONE]: new connections per call (${calls} calls each)`)
  for (const [name, f] of variants) {
    await f()
    await new Promise((resolve) => setTimeout(resolve, 20))
    const before = await connections()
    for (let i = 0; i < calls; i++) await f()
    await new Promise((resolve) => setTimeout(resolve, 20))
    log(`  ${lpad(fmt(((await connections()) - before) / calls, 2), 5)}  ${name}`)
  }
  await runtime.dispose()
  child.disconnect()
  child.kill()
}

const main = async () => {
  log(`node ${process.version}, ${QUICK ? "quick" : "full"} run`)
  log()
  await inMemory()
  await loopback()
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack ?? error.message : String(error)}\n`)
  process.exit(1)
})
