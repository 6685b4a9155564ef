/**
 * No piece of an API key survives in an error, wherever upstream text is cut to length: the
 * key is scrubbed before each cut (a key straddling a cut used to survive in part). Each case
 * puts the key across one cut, triggers the error through the provider, and looks for every
 * 8-character piece of the key in every string form of the error.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Option, Redacted, Stream } from "effect"
import * as Util from "node:util"
import type * as Errors from "../../src/Errors.js"
import type { ChatRequest, Provider, Target } from "../../src/Provider.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as OpenAiCompatible from "../../src/providers/OpenAiCompatible.js"
import * as Loopback from "../support/loopback.js"

// An OpenAI project key is longer; 57 characters is the length a leak was seen with.
const KEY = "sk-proj-Zq8vN3xK7pL2mW9rT4yH6jF1dS5aG0bC8eU3iO7nM2lK4hJ6w"
const pieces = Array.from({ length: KEY.length - 7 }, (_, i) => KEY.slice(i, i + 8))

/** Filler of `n` characters that shares no 8-character piece with the key. */
const filler = (n: number) => "~".repeat(n)

const forms = (error: Errors.ProviderError): ReadonlyArray<readonly [string, string]> => [
  ["String(error)", String(error)],
  ["error.message", error.message],
  ["JSON.stringify(error)", JSON.stringify(error)],
  ["Cause.pretty", Cause.pretty(Cause.fail(error))],
  ["util.inspect", Util.inspect(error, { depth: 10 })],
  ["error.stack", error.stack ?? ""],
  ...Object.entries(error).map(([name, value]) =>
    [`error.${name}`, typeof value === "string" ? value : Util.inspect(value, { depth: 10 })] as const
  )
]

const expectNoPieceOfKey = (error: Errors.ProviderError) => {
  for (const [where, text] of forms(error)) {
    const leaked = pieces.find((piece) => text.includes(piece))
    expect(leaked, `${where} holds ${leaked} of the key: ${text}`).toBeUndefined()
  }
}

const failureOf = <A>(exit: Exit.Exit<A, Errors.ProviderError>): Errors.ProviderError => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) throw new Error(`expected a typed failure, got ${Cause.pretty(exit.cause)}`)
  return failure.value
}

const callOf = (
  provider: Provider,
  kind: "chat" | "stream",
  request: ChatRequest,
  target: Target
): Effect.Effect<Exit.Exit<unknown, Errors.ProviderError>> =>
  kind === "chat"
    ? Effect.exit(provider.chat(request, target))
    : Effect.exit(Stream.runDrain(provider.stream(request, target)))

/** A client whose requests fail in transport, with `message` as their cause's message. */
const transportFailure = (message: string) =>
  Layer.succeed(
    HttpClient.HttpClient,
    HttpClient.make((request) =>
      Effect.fail(new HttpClientError.RequestError({ request, reason: "Transport", cause: new Error(message) }))
    )
  )

/** A client whose response body fails while read, with `message` as the error's message. */
const bodyFailure = (message: string) =>
  Layer.succeed(
    HttpClient.HttpClient,
    HttpClient.make((request) =>
      Effect.succeed(HttpClientResponse.fromWeb(
        request,
        new Response(new ReadableStream({ start: (controller) => controller.error(new Error(message)) }), {
          status: 200,
          headers: { "content-type": "application/json" }
        })
      ))
    )
  )

interface Case {
  readonly name: string
  /** What the server answers; absent when `client` fails before any server. */
  readonly reply?: Loopback.Reply
  readonly client?: Layer.Layer<HttpClient.HttpClient>
  readonly kinds: ReadonlyArray<"chat" | "stream">
  readonly tag: Errors.ProviderError["_tag"]
  /** Whether the scrubbed key is expected in the message (it falls inside the cut). */
  readonly redacted: boolean
}

/** One test per case and kind of call, the server answering `path` with the case's reply. */
const runCases = (
  path: string,
  make: () => Effect.Effect<Provider, unknown, HttpClient.HttpClient>,
  target: (server: Loopback.Loopback) => Target,
  request: ChatRequest,
  cases: ReadonlyArray<Case>
) => {
  for (const c of cases) {
    for (const kind of c.kinds) {
      it.scopedLive(`${kind}: ${c.name}`, () =>
        Effect.gen(function*() {
          const server = yield* Loopback.make(c.reply === undefined ? {} : { [path]: c.reply })
          const provider = yield* make()
          const error = failureOf(yield* callOf(provider, kind, request, target(server)))
          expect(error._tag).toBe(c.tag)
          expectNoPieceOfKey(error)
          // the key was there, inside what is kept: the test would see it unscrubbed
          if (c.redacted) expect(error.message).toContain("<redacted>")
        }).pipe(Effect.provide(c.client ?? NodeHttpClient.layerUndici)))
    }
  }
}

const cutBody = (make: (message: string) => unknown) => make(`${filler(480)}${KEY} and what follows`)

describe("OpenAiCompatible: no piece of the key in any error", () => {
  const target = (server: Loopback.Loopback): Target => ({
    deploymentId: "dep-1",
    model: "gpt-4o-mini",
    apiBase: `${server.url}/v1`,
    apiKey: Redacted.make(KEY),
    timeout: undefined
  })
  const request: ChatRequest = { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hi" }] }
  const openAiError = (message: string) => ({ error: { message, type: "invalid_request_error", param: null, code: null } })
  const chunk = { id: "c", object: "chat.completion.chunk", created: 0, model: "m", choices: [{ index: 0, delta: { content: "a" }, finish_reason: null }] }
  runCases("/v1/chat/completions", () => OpenAiCompatible.make({ apiKeyEnv: false }), target, request, [
    {
      name: "an error status whose message is cut at 500 characters",
      reply: Loopback.json(cutBody(openAiError), { status: 400 }),
      kinds: ["chat", "stream"],
      tag: "BadRequest",
      redacted: true
    },
    {
      name: "an error object in a 2xx body, its message cut at 500 characters",
      reply: Loopback.json(cutBody(openAiError)),
      kinds: ["chat", "stream"],
      tag: "BadRequest",
      redacted: true
    },
    {
      name: "an error event in a stream, its message cut at 500 characters",
      reply: Loopback.sse([Loopback.event(chunk), Loopback.event(cutBody(openAiError))]),
      kinds: ["stream"],
      tag: "BadRequest",
      redacted: true
    },
    {
      name: "an error event in a stream whose data is not JSON, cut at 500 characters",
      reply: Loopback.sse([Loopback.event(chunk), Loopback.event(`${filler(480)}${KEY}`, { event: "error" })]),
      kinds: ["stream"],
      tag: "ServerError",
      redacted: true
    },
    {
      name: "a 2xx body that is not JSON, previewed in 80 characters",
      reply: Loopback.text(`${filler(70)}${KEY} and more`, { contentType: "application/json" }),
      kinds: ["chat", "stream"],
      tag: "MalformedResponse",
      redacted: true
    },
    {
      name: "a stream event that is not JSON, previewed in 80 characters",
      reply: Loopback.sse([Loopback.event(chunk), Loopback.event(`${filler(70)}${KEY} and more`)]),
      kinds: ["stream"],
      tag: "MalformedResponse",
      redacted: true
    },
    {
      // "at id: Expected string, actual {"note":"" is 40 characters: the key starts at 190
      name: "a 2xx body of the wrong shape, the decoder's message cut at 200 characters",
      reply: Loopback.json({ id: { note: `${filler(150)}${KEY}` }, object: "chat.completion", created: 0, model: "m", choices: [] }),
      kinds: ["chat"],
      tag: "MalformedResponse",
      redacted: true
    },
    {
      name: "a stream chunk of the wrong shape, the decoder's message cut at 200 characters",
      reply: Loopback.sse([Loopback.event({ ...chunk, id: { note: `${filler(150)}${KEY}` } }), Loopback.done]),
      kinds: ["stream"],
      tag: "MalformedResponse",
      redacted: true
    },
    {
      name: "a transport failure whose cause's message is cut at 200 characters",
      client: transportFailure(`${filler(190)}${KEY} and more`),
      kinds: ["chat", "stream"],
      tag: "NetworkError",
      redacted: true
    },
    {
      name: "a body that fails while read, its cause's message cut at 200 characters",
      client: bodyFailure(`${filler(190)}${KEY} and more`),
      kinds: ["chat"],
      tag: "MalformedResponse",
      redacted: true
    }
  ])
})

describe("Anthropic: no piece of the key in any error", () => {
  const target = (server: Loopback.Loopback): Target => ({
    deploymentId: "claude-a",
    model: "claude-test",
    apiBase: `${server.url}/v1`,
    apiKey: Redacted.make(KEY),
    timeout: undefined
  })
  const request: ChatRequest = { model: "claude-test", messages: [{ role: "user", content: "Hi" }], max_tokens: 16 }
  const anthropicError = (message: string) => ({ type: "error", error: { type: "invalid_request_error", message } })
  const messageStart = Loopback.event(
    { type: "message_start", message: { id: "msg_1", model: "claude-test", usage: { input_tokens: 1, output_tokens: 1 } } },
    { event: "message_start" }
  )
  const cases: ReadonlyArray<Case> = [
    {
      name: "an error status whose message is cut at 500 characters",
      reply: Loopback.json(cutBody(anthropicError), { status: 400 }),
      kinds: ["chat", "stream"],
      tag: "BadRequest",
      redacted: true
    },
    {
      name: "an error object in a 2xx body, its message cut at 500 characters",
      reply: Loopback.json(cutBody(anthropicError)),
      kinds: ["chat", "stream"],
      tag: "BadRequest",
      redacted: true
    },
    {
      name: "an error event in a stream",
      reply: Loopback.sse([messageStart, Loopback.event(cutBody(anthropicError), { event: "error" })]),
      kinds: ["stream"],
      tag: "BadRequest",
      redacted: true
    },
    {
      name: "an error event whose data is not JSON, cut at 500 characters",
      reply: Loopback.sse([messageStart, Loopback.event(`${filler(480)}${KEY} and more`, { event: "error" })]),
      kinds: ["stream"],
      tag: "ServerError",
      redacted: true
    },
    {
      name: "a 2xx body that is not JSON, previewed in 80 characters",
      reply: Loopback.text(`${filler(70)}${KEY} and more`, { contentType: "application/json" }),
      kinds: ["chat", "stream"],
      tag: "MalformedResponse",
      redacted: true
    },
    {
      // Anthropic's decode failure quotes nothing of the body: no key to scrub
      name: "a 2xx body of the wrong shape",
      reply: Loopback.json({ id: { note: `${filler(150)}${KEY}` }, model: "m", content: [] }),
      kinds: ["chat"],
      tag: "MalformedResponse",
      redacted: false
    },
    {
      name: "a transport failure whose cause's message is cut at 200 characters",
      client: transportFailure(`${filler(190)}${KEY} and more`),
      kinds: ["chat", "stream"],
      tag: "NetworkError",
      redacted: true
    },
    {
      name: "a body that fails while read, its cause's message cut at 200 characters",
      client: bodyFailure(`${filler(190)}${KEY} and more`),
      kinds: ["chat"],
      tag: "MalformedResponse",
      redacted: true
    }
  ]
  runCases("/v1/messages", () => Anthropic.make(), target, request, cases)
})
