import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import * as Util from "node:util"
import type * as Errors from "../../src/Errors.js"
import type { ChatChunk, ChatRequest, Provider, RateLimitInfo, Target } from "../../src/Provider.js"
import * as OpenAiCompatible from "../../src/providers/OpenAiCompatible.js"
import * as RetrySchedule from "../../src/RetrySchedule.js"
import * as Router from "../../src/Router.js"
import * as Selector from "../../src/Selector.js"
import * as Loopback from "../support/loopback.js"

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

const KEY = "sk-test-SECRET-do-not-leak-0123456789"
const Undici = NodeHttpClient.layerUndici
const Fetch = FetchHttpClient.layer

const target = (server: Loopback.Loopback, overrides: Partial<Target> = {}): Target => ({
  deploymentId: "dep-1",
  model: "gpt-test",
  apiBase: `${server.url}/v1`,
  apiKey: Redacted.make(KEY),
  timeout: undefined,
  ...overrides
})

const request: ChatRequest = {
  model: "gpt-test",
  messages: [
    { role: "system", content: "Be brief." },
    { role: "user", content: [{ type: "text", text: "Weather in Oslo?" }, { type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } }] }
  ],
  temperature: 0.1,
  tools: [{
    type: "function",
    function: { name: "weather", parameters: { type: "object", properties: { city: { type: "string" } } } }
  }],
  tool_choice: "auto",
  response_format: { type: "json_object" },
  metadata: { tags: ["team-a"], traceId: "t-1" }
}

const chatReply = {
  id: "chatcmpl-1",
  object: "chat.completion",
  created: 1_700_000_000,
  model: "gpt-test-2024-08-06",
  system_fingerprint: "fp_1",
  choices: [{
    index: 0,
    message: {
      role: "assistant",
      content: null,
      refusal: null,
      tool_calls: [{ id: "call_1", type: "function", function: { name: "weather", arguments: "{\"city\":\"Oslo\"}" } }]
    },
    logprobs: null,
    finish_reason: "tool_calls"
  }],
  usage: { prompt_tokens: 42, completion_tokens: 7, total_tokens: 49, prompt_tokens_details: { cached_tokens: 0 } }
}

const chunk = (delta: Record<string, unknown>, finish_reason: string | null = null, extra: Record<string, unknown> = {}) => ({
  id: "chatcmpl-s",
  object: "chat.completion.chunk",
  created: 1_700_000_000,
  model: "gpt-test-2024-08-06",
  choices: [{ index: 0, delta, logprobs: null, finish_reason }],
  ...extra
})

const usageChunk = {
  id: "chatcmpl-s",
  object: "chat.completion.chunk",
  created: 1_700_000_000,
  model: "gpt-test-2024-08-06",
  choices: [],
  usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 }
}

const textStream = (delay: Duration.DurationInput = "15 millis") => [
  Loopback.event(chunk({ role: "assistant", content: "" })),
  Loopback.event(chunk({ content: "Hel" }), { delay }),
  Loopback.raw(": keep-alive comment\n\n", { delay }),
  Loopback.event(chunk({ content: "lo" }), { delay }),
  Loopback.event(chunk({}, "stop"), { delay }),
  Loopback.event(usageChunk),
  Loopback.done
]

/** The provider under test; no key from the environment unless asked. */
const provider = (options: OpenAiCompatible.Options = {}) => OpenAiCompatible.make({ apiKeyEnv: false, ...options })

/** Collects a stream's chunks and the error it ended with, if any. */
const collect = <A, E>(stream: Stream.Stream<A, E>) =>
  Stream.runCollect(Stream.either(stream)).pipe(Effect.map((items) => {
    const all = Chunk.toReadonlyArray(items)
    const chunks = all.flatMap((e) => (Either.isRight(e) ? [e.right] : []))
    const error = all.flatMap((e) => (Either.isLeft(e) ? [e.left] : []))[0]
    return { chunks, error }
  }))

const text = (chunks: ReadonlyArray<ChatChunk>) => chunks.map((c) => c.choices[0]?.delta.content ?? "").join("")

/** A live, scoped test run with a client layer. */
const live = (
  name: string,
  body: () => Effect.Effect<void, unknown, Scope.Scope | HttpClient.HttpClient>,
  client: Layer.Layer<HttpClient.HttpClient> = Undici
) => it.scopedLive(name, () => Effect.provide(body(), client))

const expectError = (
  error: unknown,
  tag: Errors.ProviderError["_tag"],
  fields: { readonly status?: number | undefined; readonly provider?: string } = {}
) => {
  const e = error as Errors.ProviderError
  expect(e._tag).toBe(tag)
  expect(e.provider).toBe(fields.provider ?? "openai")
  expect(e.deploymentId).toBe("dep-1")
  if ("status" in fields) expect(e.status).toBe(fields.status)
  return e
}

// ---------------------------------------------------------------------------
// Chat
// ---------------------------------------------------------------------------

describe("OpenAiCompatible chat", () => {
  live("maps a JSON reply (tool calls, usage) and sends the documented request", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.json(chatReply) })
      const openai = yield* provider({
        organization: "org-1",
        project: "proj-1",
        headers: { "X-Extra": "yes", "X-Portkey-Key": Redacted.make("pk-secret-9999") }
      })
      const response = yield* openai.chat(request, target(server))
      expect(response).toEqual({
        id: "chatcmpl-1",
        object: "chat.completion",
        created: 1_700_000_000,
        model: "gpt-test-2024-08-06",
        choices: [{
          index: 0,
          message: {
            role: "assistant",
            content: null,
            refusal: null,
            tool_calls: [{ id: "call_1", type: "function", function: { name: "weather", arguments: "{\"city\":\"Oslo\"}" } }]
          },
          finish_reason: "tool_calls"
        }],
        usage: { prompt_tokens: 42, completion_tokens: 7, total_tokens: 49, prompt_tokens_details: { cached_tokens: 0 } }
      })
      const [received] = yield* server.requests
      expect(received.method).toBe("POST")
      expect(received.path).toBe("/v1/chat/completions")
      expect(received.query).toEqual({})
      expect(received.headers.authorization).toBe(`Bearer ${KEY}`)
      expect(received.headers["openai-organization"]).toBe("org-1")
      expect(received.headers["openai-project"]).toBe("proj-1")
      expect(received.headers["x-extra"]).toBe("yes")
      expect(received.headers["x-portkey-key"]).toBe("pk-secret-9999")
      expect(received.headers["content-type"]).toBe("application/json")
      expect(received.headers.accept).toBe("application/json")
      const { metadata: _metadata, ...wire } = request
      expect(received.body).toEqual(wire)
      expect(received.body).not.toHaveProperty("metadata")
      expect(received.body).not.toHaveProperty("stream")
      expect(received.body.model).toBe("gpt-test")
    }))

  live("sends max_tokens as max_completion_tokens to OpenAI's reasoning models; passes the newer fields through", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.json(chatReply) })
      const openai = yield* provider()
      const ask = (model: string, extra: Partial<ChatRequest>) =>
        openai.chat({ model, messages: [{ role: "user", content: "Hi" }], ...extra }, target(server))
      yield* ask("gpt-4o-mini", { max_tokens: 100 })
      yield* ask("o3-mini", { max_tokens: 100, reasoning_effort: "low" })
      yield* ask("openai/gpt-5-mini", { max_tokens: 50 })
      // penalties at the only value gpt-5 takes (others are refused: see DropParams.test.ts)
      yield* ask("gpt-5", { max_completion_tokens: 64, parallel_tool_calls: false, presence_penalty: 0, frequency_penalty: 0 })
      yield* ask("llama3.2", { max_tokens: 10 })
      const bodies = (yield* server.requests).map((r) => r.body)
      expect(bodies[0]).toMatchObject({ model: "gpt-4o-mini", max_tokens: 100 })
      expect(bodies[0]).not.toHaveProperty("max_completion_tokens")
      expect(bodies[1]).toEqual({ model: "o3-mini", messages: [{ role: "user", content: "Hi" }], max_completion_tokens: 100, reasoning_effort: "low" })
      expect(bodies[2]).toMatchObject({ max_completion_tokens: 50 })
      expect(bodies[2]).not.toHaveProperty("max_tokens")
      expect(bodies[3]).toMatchObject({ max_completion_tokens: 64, parallel_tool_calls: false, presence_penalty: 0, frequency_penalty: 0 })
      expect(bodies[4]).toMatchObject({ max_tokens: 10 })
      expect(bodies[4]).not.toHaveProperty("max_completion_tokens")
    }))

  live("sends only max_completion_tokens to OpenAI's reasoning models when a request gives both limits", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.json(chatReply) })
      const openai = yield* provider()
      const both = { max_tokens: 100, max_completion_tokens: 64 }
      for (const model of ["o3-mini", "o1", "gpt-5", "openai/gpt-5-nano", "gpt-4o-mini"]) {
        yield* openai.chat({ model, messages: [{ role: "user", content: "Hi" }], ...both }, target(server, { model }))
      }
      yield* Stream.runDrain(openai.stream({ model: "o4-mini", messages: [{ role: "user", content: "Hi" }], ...both }, target(server)))
        .pipe(Effect.ignore)
      const bodies = (yield* server.requests).map((r) => r.body)
      for (const body of [...bodies.slice(0, 4), bodies[5]]) {
        expect(body).toMatchObject({ max_completion_tokens: 64 })
        expect(body, body.model).not.toHaveProperty("max_tokens")
      }
      // models that take both get both
      expect(bodies[4]).toMatchObject({ model: "gpt-4o-mini", max_tokens: 100, max_completion_tokens: 64 })
    }))

  live("does not send cache breakpoints (Anthropic's cache_control) to OpenAI-compatible servers", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.json(chatReply) })
      const openai = yield* provider()
      const cache = { type: "ephemeral" as const }
      yield* openai.chat({
        model: "gpt-4o-mini",
        messages: [
          { role: "system", content: "S", cache_control: cache },
          { role: "user", content: [{ type: "text", text: "Doc", cache_control: cache }, { type: "text", text: "Q" }] }
        ],
        tools: [{ type: "function", function: { name: "f" }, cache_control: cache }]
      }, target(server))
      const [received] = yield* server.requests
      expect(received.text).not.toContain("cache_control")
      expect(received.body.messages).toEqual([
        { role: "system", content: "S" },
        { role: "user", content: [{ type: "text", text: "Doc" }, { type: "text", text: "Q" }] }
      ])
      expect(received.body.tools).toEqual([{ type: "function", function: { name: "f" } }])
    }))

  live("passes file parts of user messages through; refuses them elsewhere before sending", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.json(chatReply) })
      const openai = yield* provider()
      const file = { type: "file" as const, file: { filename: "r.pdf", file_data: "data:application/pdf;base64,JVBERi0x" } }
      yield* openai.chat({ model: "gpt-4o", messages: [{ role: "user", content: [file, { type: "text", text: "Summarize" }] }] }, target(server))
      const refused = yield* Effect.flip(openai.chat({ model: "gpt-4o", messages: [{ role: "system", content: [file] }] }, target(server)))
      expect(refused._tag).toBe("BadRequest")
      expect(refused.message).toMatch(/system messages take text parts only, got file/)
      const received = yield* server.requests
      expect(received.length).toBe(1)
      expect(received[0].body.messages[0].content[0]).toEqual(file)
    }))

  live("uses Azure's URL form, api-version and api-key header", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({
        "/openai/deployments/my-gpt4o/chat/completions": Loopback.json({ ...chatReply, prompt_filter_results: [] }),
        "/openai/deployments/my-embed/embeddings": Loopback.json({
          object: "list",
          model: "text-embedding-3-small",
          data: [{ object: "embedding", index: 0, embedding: [0.5, 0.25] }],
          usage: { prompt_tokens: 1, total_tokens: 1 }
        })
      })
      const azure = yield* provider({ azure: { apiVersion: "2024-10-21" } })
      expect(azure.name).toBe("azure")
      const t = target(server, { apiBase: `${server.url}/`, model: "my-gpt4o" })
      yield* azure.chat({ ...request, model: "my-gpt4o" }, t)
      yield* azure.embed({ model: "my-embed", input: "hi" }, target(server, { apiBase: server.url, model: "my-embed" }))
      const [chat, embed] = yield* server.requests
      expect(chat.path).toBe("/openai/deployments/my-gpt4o/chat/completions")
      expect(chat.query).toEqual({ "api-version": "2024-10-21" })
      expect(chat.headers["api-key"]).toBe(KEY)
      expect(chat.headers.authorization).toBeUndefined()
      expect(embed.path).toBe("/openai/deployments/my-embed/embeddings")
      expect(embed.query).toEqual({ "api-version": "2024-10-21" })
    }))

  live("sends no Authorization without a key, and reads OPENAI_API_KEY through Config otherwise", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.json(chatReply) })
      const local = yield* provider()
      yield* local.chat(request, target(server, { apiKey: undefined }))
      const fromEnv = yield* OpenAiCompatible.make().pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["OPENAI_API_KEY", "sk-from-env-123"]])))
      )
      yield* fromEnv.chat(request, target(server, { apiKey: undefined }))
      // a deployment's own key wins over the environment's
      yield* fromEnv.chat(request, target(server))
      const [none, env, own] = yield* server.requests
      expect(none.headers.authorization).toBeUndefined()
      expect(env.headers.authorization).toBe("Bearer sk-from-env-123")
      expect(own.headers.authorization).toBe(`Bearer ${KEY}`)
    }))

  live("the options' apiBase and apiKey apply when the deployment sets none", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/api/v1/chat/completions": Loopback.json(chatReply) })
      const openai = yield* provider({ name: "together", apiBase: `${server.url}/api/v1/`, apiKey: Redacted.make("tg-key-1234") })
      expect(openai.name).toBe("together")
      yield* openai.chat(request, target(server, { apiBase: undefined, apiKey: undefined }))
      const [received] = yield* server.requests
      expect(received.path).toBe("/api/v1/chat/completions")
      expect(received.headers.authorization).toBe("Bearer tg-key-1234")
    }))

  live("maps finish reasons of loosely compatible servers onto OpenAI's", () =>
    Effect.gen(function*() {
      const reply = { ...chatReply, choices: [{ index: 0, message: { role: "assistant", content: "hi" }, finish_reason: "eos" }] }
      const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.json(reply) })
      const openai = yield* provider()
      const response = yield* openai.chat(request, target(server))
      expect(response.choices[0].finish_reason).toBe("stop")
    }))

  live("refuses image parts outside user messages without calling the server", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.json(chatReply) })
      const openai = yield* provider()
      const error = yield* Effect.flip(openai.chat({
        model: "m",
        messages: [{ role: "system", content: [{ type: "image_url", image_url: { url: "https://x/y.png" } }] }]
      }, target(server)))
      expectError(error, "BadRequest")
      expect(error.message).toContain("messages[0]")
      expect(yield* server.requests).toHaveLength(0)
    }))
})

// ---------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------

describe("OpenAiCompatible embed", () => {
  live("posts to /embeddings without our metadata and decodes the reply", () =>
    Effect.gen(function*() {
      const reply = {
        object: "list",
        model: "text-embedding-3-small",
        data: [
          { object: "embedding", index: 0, embedding: [0.1, 0.2, 0.3] },
          { object: "embedding", index: 1, embedding: [0.4, 0.5, 0.6] }
        ],
        usage: { prompt_tokens: 4, total_tokens: 4 }
      }
      const server = yield* Loopback.make({ "/v1/embeddings": Loopback.json(reply) })
      const openai = yield* provider()
      const response = yield* openai.embed(
        { model: "text-embedding-3-small", input: ["a", "b"], dimensions: 3, metadata: { tags: ["x"] } },
        target(server, { model: "text-embedding-3-small" })
      )
      expect(response).toEqual(reply)
      const [received] = yield* server.requests
      expect(received.path).toBe("/v1/embeddings")
      expect(received.headers.authorization).toBe(`Bearer ${KEY}`)
      expect(received.body).toEqual({ model: "text-embedding-3-small", input: ["a", "b"], dimensions: 3 })
    }))
})

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

describe("OpenAiCompatible stream", () => {
  live("reads Groq's x_groq.usage when a stream has no usage chunk (and the usage chunk when it has one)", () =>
    Effect.gen(function*() {
      const groqUsage = { queue_time: 0.01, prompt_tokens: 23, prompt_time: 0.006, completion_tokens: 19, completion_time: 0.02, total_tokens: 42 }
      const server = yield* Loopback.make({
        "/v1/chat/completions": [
          Loopback.sse([
            Loopback.event(chunk({ role: "assistant", content: "Hi" })),
            Loopback.event(chunk({}, "stop", { x_groq: { id: "req_1", usage: groqUsage } })),
            Loopback.done
          ]),
          Loopback.sse([
            Loopback.event(chunk({ role: "assistant", content: "Hi" })),
            Loopback.event(chunk({}, "stop", { x_groq: { id: "req_2", usage: groqUsage } })),
            Loopback.event(usageChunk),
            Loopback.done
          ])
        ]
      })
      const openai = yield* provider()
      const onlyGroq = yield* collect(openai.stream(request, target(server)))
      expect(onlyGroq.error).toBeUndefined()
      expect(onlyGroq.chunks.at(-1)?.usage).toEqual({ prompt_tokens: 23, completion_tokens: 19, total_tokens: 42 })
      const both = yield* collect(openai.stream(request, target(server)))
      expect(both.chunks.map((c) => c.usage?.total_tokens ?? null)).toEqual([null, 42, 12])
    }))

  live("streams text deltas, usage in the last chunk, up to [DONE]", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.sse(textStream()) })
      const openai = yield* provider()
      const { chunks, error } = yield* collect(openai.stream(request, target(server)))
      expect(error).toBeUndefined()
      expect(text(chunks)).toBe("Hello")
      expect(chunks).toHaveLength(5)
      expect(chunks[0].choices[0].delta.role).toBe("assistant")
      expect(chunks[3].choices[0].finish_reason).toBe("stop")
      expect(chunks[4].choices).toEqual([])
      expect(chunks[4].usage).toEqual({ prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 })
      const [received] = yield* server.requests
      expect(received.path).toBe("/v1/chat/completions")
      expect(received.headers.accept).toBe("text/event-stream")
      expect(received.body.stream).toBe(true)
      expect(received.body.stream_options).toEqual({ include_usage: true })
      expect(received.body).not.toHaveProperty("metadata")
    }))

  live("leaves stream_options out when includeUsageInStream is false", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.sse(textStream(0)) })
      const openai = yield* provider({ includeUsageInStream: false })
      yield* collect(openai.stream(request, target(server)))
      const [received] = yield* server.requests
      expect(received.body.stream).toBe(true)
      expect(received.body).not.toHaveProperty("stream_options")
    }))

  live("streams tool-call deltas", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({
        "/v1/chat/completions": Loopback.sse([
          Loopback.event(chunk({
            role: "assistant",
            content: null,
            tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "weather", arguments: "" } }]
          })),
          Loopback.event(chunk({ tool_calls: [{ index: 0, function: { arguments: "{\"ci" } }] }), { delay: "10 millis" }),
          Loopback.event(chunk({ tool_calls: [{ index: 0, function: { arguments: "ty\":\"Oslo\"}" } }] }), { delay: "10 millis" }),
          Loopback.event(chunk({
            tool_calls: [{ index: 1, id: "call_2", type: "function", function: { name: "time", arguments: "{}" } }]
          })),
          Loopback.event(chunk({}, "tool_calls")),
          Loopback.done
        ])
      })
      const openai = yield* provider()
      const { chunks, error } = yield* collect(openai.stream(request, target(server)))
      expect(error).toBeUndefined()
      const calls = new Map<number, { id?: string; name?: string; arguments: string }>()
      for (const c of chunks) {
        for (const delta of c.choices[0]?.delta.tool_calls ?? []) {
          const call = calls.get(delta.index) ?? { arguments: "" }
          if (delta.id !== undefined) call.id = delta.id
          if (delta.function?.name !== undefined) call.name = delta.function.name
          call.arguments += delta.function?.arguments ?? ""
          calls.set(delta.index, call)
        }
      }
      expect([...calls.values()]).toEqual([
        { id: "call_1", name: "weather", arguments: "{\"city\":\"Oslo\"}" },
        { id: "call_2", name: "time", arguments: "{}" }
      ])
      expect(chunks.at(-1)?.choices[0].finish_reason).toBe("tool_calls")
    }))

  live("skips Azure's prompt-filter-only first chunk", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({
        "/v1/chat/completions": Loopback.sse([
          Loopback.event({ choices: [], created: 0, id: "", model: "", object: "", prompt_filter_results: [{ prompt_index: 0 }] }),
          ...textStream(0)
        ])
      })
      const openai = yield* provider()
      const { chunks, error } = yield* collect(openai.stream(request, target(server)))
      expect(error).toBeUndefined()
      expect(text(chunks)).toBe("Hello")
    }))
})

// ---------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------

interface ErrorCase {
  readonly name: string
  readonly reply: Loopback.Reply
  readonly tag: Errors.ProviderError["_tag"]
  readonly status?: number | undefined
  readonly retryAfterMs?: number
  readonly message?: RegExp
}

const openAiError = (message: string, type: string, code: string | null = null) => ({ error: { message, type, param: null, code } })

const errorCases: ReadonlyArray<ErrorCase> = [
  {
    name: "429 with retry-after (seconds)",
    reply: Loopback.json(openAiError("Rate limit reached for requests", "requests", "rate_limit_exceeded"), { status: 429, headers: { "retry-after": "2" } }),
    tag: "RateLimited",
    status: 429,
    retryAfterMs: 2000
  },
  {
    name: "429 with retry-after-ms",
    reply: Loopback.json(openAiError("Rate limit reached", "requests"), { status: 429, headers: { "retry-after-ms": "1500" } }),
    tag: "RateLimited",
    status: 429,
    retryAfterMs: 1500
  },
  {
    name: "429 with x-ratelimit-reset-* (the longest wins)",
    reply: Loopback.json(openAiError("Rate limit reached for tokens", "tokens"), {
      status: 429,
      headers: { "x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s" }
    }),
    tag: "RateLimited",
    status: 429,
    retryAfterMs: 360_000
  },
  { name: "408", reply: Loopback.json(openAiError("Request timed out", "timeout"), { status: 408 }), tag: "Timeout", status: 408 },
  { name: "500", reply: Loopback.json(openAiError("The server had an error", "server_error"), { status: 500 }), tag: "ServerError", status: 500 },
  {
    name: "503 with retry-after",
    reply: Loopback.json(openAiError("The engine is currently overloaded", "server_error"), { status: 503, headers: { "retry-after": "1" } }),
    tag: "ServerError",
    status: 503,
    retryAfterMs: 1000
  },
  {
    name: "529 overloaded",
    reply: Loopback.json({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } }, { status: 529 }),
    tag: "ServerError",
    status: 529
  },
  {
    name: "401",
    reply: Loopback.json(openAiError("Incorrect API key provided: sk-test***6789.", "invalid_request_error", "invalid_api_key"), { status: 401 }),
    tag: "Authentication",
    status: 401
  },
  {
    name: "403",
    reply: Loopback.json(openAiError("You are not allowed to sample from this model", "invalid_request_error"), { status: 403 }),
    tag: "Authentication",
    status: 403
  },
  {
    name: "404 model not found",
    reply: Loopback.json(openAiError("The model `gpt-9` does not exist or you do not have access to it.", "invalid_request_error", "model_not_found"), { status: 404 }),
    tag: "ModelNotFound",
    status: 404
  },
  {
    name: "400 context_length_exceeded by code",
    reply: Loopback.json(openAiError("Too long.", "invalid_request_error", "context_length_exceeded"), { status: 400 }),
    tag: "ContextWindowExceeded",
    status: 400
  },
  {
    name: "400 context length by message",
    reply: Loopback.json({
      object: "error",
      message: "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens.",
      type: "BadRequestError",
      code: 400
    }, { status: 400 }),
    tag: "ContextWindowExceeded",
    status: 400
  },
  {
    name: "400 content_filter (Azure)",
    reply: Loopback.json({
      error: {
        message: "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
        type: null,
        param: "prompt",
        code: "content_filter",
        status: 400,
        innererror: { code: "ResponsibleAIPolicyViolation", content_filter_result: { hate: { filtered: true, severity: "high" } } }
      }
    }, { status: 400 }),
    tag: "ContentPolicy",
    status: 400
  },
  {
    name: "400 other",
    reply: Loopback.json(openAiError("'temperature' must be <= 2", "invalid_request_error"), { status: 400 }),
    tag: "BadRequest",
    status: 400,
    message: /temperature/
  },
  {
    name: "502 with a body that is not JSON",
    reply: Loopback.text("<html><body>502 Bad Gateway</body></html>", { status: 502, contentType: "text/html" }),
    tag: "ServerError",
    status: 502,
    message: /Bad Gateway/
  },
  {
    name: "200 with a body that is not JSON",
    reply: Loopback.text("{\"id\":\"chatcmpl-1\",\"object\":\"chat.comp", { contentType: "application/json" }),
    tag: "MalformedResponse",
    status: 200,
    message: /not JSON/
  },
  {
    name: "200 with JSON of the wrong shape",
    reply: Loopback.json({ id: "x", object: "chat.completion", choices: "none" }),
    tag: "MalformedResponse",
    status: 200,
    message: /unexpected response body/
  },
  {
    name: "200 with an error object",
    reply: Loopback.json(openAiError("context too long", "invalid_request_error", "context_length_exceeded")),
    tag: "ContextWindowExceeded"
  },
  {
    name: "a connection closed without an answer",
    reply: Loopback.cut,
    tag: "NetworkError",
    status: undefined
  }
]

describe("OpenAiCompatible error mapping", () => {
  for (const c of errorCases) {
    live(`chat: ${c.name} → ${c.tag}`, () =>
      Effect.gen(function*() {
        const server = yield* Loopback.make({ "/v1/chat/completions": c.reply })
        const openai = yield* provider()
        const error = expectError(yield* Effect.flip(openai.chat(request, target(server))), c.tag, { status: c.status })
        if (c.retryAfterMs !== undefined) expect(error.retryAfter && Duration.toMillis(error.retryAfter)).toBe(c.retryAfterMs)
        if (c.message !== undefined) expect(error.message).toMatch(c.message)
        expect(error.message).not.toContain(KEY)
      }))
  }

  // The same table applies before a stream starts (statuses other than 200 and the cut connection).
  for (const c of errorCases.filter((c) => c.status !== 200 && c.name !== "200 with an error object")) {
    live(`stream: ${c.name} → ${c.tag}`, () =>
      Effect.gen(function*() {
        const server = yield* Loopback.make({ "/v1/chat/completions": c.reply })
        const openai = yield* provider()
        const { chunks, error } = yield* collect(openai.stream(request, target(server)))
        expect(chunks).toEqual([])
        const e = expectError(error, c.tag, { status: c.status })
        if (c.retryAfterMs !== undefined) expect(e.retryAfter && Duration.toMillis(e.retryAfter)).toBe(c.retryAfterMs)
      }))
  }

  live("stream: a 200 JSON reply instead of an event stream is mapped (error object) or malformed", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({
        "/v1/chat/completions": [
          Loopback.json(openAiError("context too long", "invalid_request_error", "context_length_exceeded")),
          Loopback.json(chatReply)
        ]
      })
      const openai = yield* provider()
      expectError((yield* collect(openai.stream(request, target(server)))).error, "ContextWindowExceeded")
      expect(expectError((yield* collect(openai.stream(request, target(server)))).error, "MalformedResponse").message)
        .toMatch(/expected an event stream/)
    }))

  live("embed: 429 → RateLimited", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/v1/embeddings": errorCases[0].reply })
      const openai = yield* provider()
      expectError(yield* Effect.flip(openai.embed({ model: "e", input: "x" }, target(server))), "RateLimited", { status: 429 })
    }))
})

// ---------------------------------------------------------------------------
// Broken streams and timeouts (both clients)
// ---------------------------------------------------------------------------

for (const [clientName, client] of [["undici", Undici], ["fetch", Fetch]] as const) {
  describe(`OpenAiCompatible transport failures (${clientName})`, () => {
    live("a request past its timeout is a Timeout, and the request is aborted", () =>
      Effect.gen(function*() {
        const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.json(chatReply, { delay: "5 seconds" }) })
        const openai = yield* provider({ timeout: "150 millis" })
        const error = expectError(yield* Effect.flip(openai.chat(request, target(server))), "Timeout")
        expect(error.message).toContain("150ms")
        const [received] = yield* server.requests
        yield* Loopback.awaitClosed(received) // fails on timeout
        expect(received.aborted()).toBe(true)
      }), client)

    live("a JSON body that stops half-way is a Timeout at the call's timeout, and the request is aborted", () =>
      Effect.gen(function*() {
        const server = yield* Loopback.make({
          "/v1/chat/completions": Loopback.sse([Loopback.raw('{"id":"chatcmpl-1","object":"chat.completion",')], {
            then: "stall",
            headers: { "content-type": "application/json" }
          })
        })
        const openai = yield* provider({ timeout: "200 millis" })
        const started = Date.now()
        const error = expectError(yield* Effect.flip(openai.chat(request, target(server))), "Timeout")
        expect(Date.now() - started).toBeLessThan(2000)
        expect(error.message).toMatch(/no complete response within 200ms/)
        const [received] = yield* server.requests
        yield* Loopback.awaitClosed(received) // fails on timeout
        expect(received.aborted()).toBe(true)
      }), client)

    live("the deployment's timeout wins over the option", () =>
      Effect.gen(function*() {
        const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.json(chatReply, { delay: "5 seconds" }) })
        const openai = yield* provider({ timeout: "10 seconds" })
        const started = Date.now()
        expectError(yield* Effect.flip(openai.chat(request, target(server, { timeout: Duration.millis(100) }))), "Timeout")
        expect(Date.now() - started).toBeLessThan(2000)
      }), client)

    live("a stream that stalls mid-way ends with an idle Timeout after the chunks it sent", () =>
      Effect.gen(function*() {
        const server = yield* Loopback.make({
          "/v1/chat/completions": Loopback.sse(textStream(0).slice(0, 2), { then: "stall" })
        })
        const openai = yield* provider({ idleTimeout: "150 millis" })
        const started = Date.now()
        const { chunks, error } = yield* collect(openai.stream(request, target(server)))
        expect(Date.now() - started).toBeLessThan(3000)
        expect(text(chunks)).toBe("Hel")
        const e = expectError(error, "Timeout")
        expect(e.message).toMatch(/idle/)
        const [received] = yield* server.requests
        yield* Loopback.awaitClosed(received) // fails on timeout
      }), client)

    live("a stream whose first byte does not come in time is a Timeout", () =>
      Effect.gen(function*() {
        const server = yield* Loopback.make({
          "/v1/chat/completions": [
            Loopback.stall,
            Loopback.sse([Loopback.event(chunk({ content: "late" }), { delay: "3 seconds" }), Loopback.done])
          ]
        })
        const openai = yield* provider({ firstByteTimeout: "150 millis", idleTimeout: "10 seconds" })
        for (let i = 0; i < 2; i++) {
          const { chunks, error } = yield* collect(openai.stream(request, target(server)))
          expect(chunks).toEqual([])
          expect(expectError(error, "Timeout").message).toMatch(/first byte/)
        }
      }), client)

    live("a stream that sends only keep-alive comments times out at its first-byte limit (before: open for over 6 s with 500 ms)", () =>
      Effect.gen(function*() {
        const pings = Array.from({ length: 40 }, () => Loopback.raw(": ping\n\n", { delay: "100 millis" }))
        const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.sse([...pings, Loopback.event(chunk({ content: "late" })), Loopback.done]) })
        const openai = yield* provider({ firstByteTimeout: "500 millis", idleTimeout: "10 seconds" })
        const started = Date.now()
        const { chunks, error } = yield* collect(openai.stream(request, target(server)))
        const elapsed = Date.now() - started
        expect(chunks).toEqual([])
        expect(expectError(error, "Timeout").message).toMatch(/no first event/)
        // at the first ping after the limit: a ping interval late at most (and some slack for a busy machine)
        expect(elapsed).toBeGreaterThanOrEqual(500)
        expect(elapsed).toBeLessThan(1_500)
      }), client)

    live("comments before the first event do not fail a stream whose event comes in time", () =>
      Effect.gen(function*() {
        const server = yield* Loopback.make({
          "/v1/chat/completions": Loopback.sse([Loopback.raw(": ping\n\n"), Loopback.raw(": ping\n\n", { delay: "50 millis" }), ...textStream(0)])
        })
        const openai = yield* provider({ firstByteTimeout: "2 seconds" })
        const { chunks, error } = yield* collect(openai.stream(request, target(server)))
        expect(error).toBeUndefined()
        expect(text(chunks)).toBe("Hello")
      }), client)

    live("a stream cut mid-way is a typed error after the chunks it sent", () =>
      Effect.gen(function*() {
        const server = yield* Loopback.make({
          "/v1/chat/completions": Loopback.sse(textStream(0).slice(0, 2), { then: "cut" })
        })
        const openai = yield* provider()
        const { chunks, error } = yield* collect(openai.stream(request, target(server)))
        expect(text(chunks)).toBe("Hel")
        expect(["NetworkError", "MalformedResponse"]).toContain((error as Errors.ProviderError)._tag)
        expectError(error, (error as Errors.ProviderError)._tag)
      }), client)

    live("after [DONE] the rest of the body is read, not aborted (the connection can be reused)", () =>
      Effect.gen(function*() {
        const server = yield* Loopback.make({
          "/v1/chat/completions": Loopback.sse([...textStream(0), Loopback.raw(": tail\n\n", { delay: "20 millis" })])
        })
        const openai = yield* provider()
        const { chunks, error } = yield* collect(openai.stream(request, target(server)))
        expect(error).toBeUndefined()
        expect(chunks.length).toBeGreaterThan(0)
        const [received] = yield* server.requests
        yield* Loopback.awaitClosed(received)
        expect(received.aborted()).toBe(false)
      }), client)

    live("a stream that ends without [DONE] is a MalformedResponse", () =>
      Effect.gen(function*() {
        const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.sse(textStream(0).slice(0, 4)) })
        const openai = yield* provider()
        const { chunks, error } = yield* collect(openai.stream(request, target(server)))
        expect(text(chunks)).toBe("Hello")
        expect(expectError(error, "MalformedResponse").message).toContain("[DONE]")
      }), client)

    live("malformed JSON in an event is a MalformedResponse", () =>
      Effect.gen(function*() {
        const server = yield* Loopback.make({
          "/v1/chat/completions": Loopback.sse([
            Loopback.event(chunk({ content: "ok" })),
            Loopback.raw("data: {\"id\":\"chatcmpl-s\",\"object\":\n\n"),
            Loopback.done
          ])
        })
        const openai = yield* provider()
        const { chunks, error } = yield* collect(openai.stream(request, target(server)))
        expect(text(chunks)).toBe("ok")
        expect(expectError(error, "MalformedResponse").message).toMatch(/not JSON/)
      }), client)

    live("an error object mid-stream is mapped", () =>
      Effect.gen(function*() {
        const server = yield* Loopback.make({
          "/v1/chat/completions": [
            Loopback.sse([
              Loopback.event(chunk({ content: "ok" })),
              Loopback.event(openAiError("The server is overloaded", "server_error")),
              Loopback.done
            ]),
            Loopback.sse([
              Loopback.event({ type: "error", error: { type: "rate_limit_error", message: "slow down" } }, { event: "error" })
            ])
          ]
        })
        const openai = yield* provider()
        const first = yield* collect(openai.stream(request, target(server)))
        expect(text(first.chunks)).toBe("ok")
        expect(expectError(first.error, "ServerError").message).toContain("overloaded")
        const second = yield* collect(openai.stream(request, target(server)))
        expectError(second.error, "RateLimited")
      }), client)

    live("a closed port is a NetworkError (chat, stream, embed)", () =>
      Effect.gen(function*() {
        const url = yield* Loopback.closedPortUrl
        const openai = yield* provider()
        const t: Target = { deploymentId: "dep-1", model: "m", apiBase: url, apiKey: Redacted.make(KEY), timeout: undefined }
        expect(expectError(yield* Effect.flip(openai.chat(request, t)), "NetworkError").message).toMatch(/connection failed/)
        expectError((yield* collect(openai.stream(request, t))).error, "NetworkError")
        expectError(yield* Effect.flip(openai.embed({ model: "m", input: "x" }, t)), "NetworkError")
      }), client)

    live("interrupting a stream aborts the request (the server sees the connection close)", () =>
      Effect.gen(function*() {
        const server = yield* Loopback.make({
          "/v1/chat/completions": Loopback.sse([Loopback.event(chunk({ content: "first" }))], { then: "stall" })
        })
        const openai = yield* provider()
        const seen = yield* Effect.makeLatch(false)
        const fiber = yield* openai.stream(request, target(server)).pipe(
          Stream.tap(() => seen.open),
          Stream.runDrain,
          Effect.fork
        )
        yield* seen.await
        yield* Fiber.interrupt(fiber)
        const [received] = yield* server.requests
        yield* Loopback.awaitClosed(received) // fails on timeout
        expect(received.aborted()).toBe(true)
      }), client)

    live("interrupting a chat call aborts the request", () =>
      Effect.gen(function*() {
        const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.stall })
        const openai = yield* provider()
        const fiber = yield* Effect.fork(openai.chat(request, target(server)))
        while ((yield* server.requests).length === 0) yield* Effect.sleep("5 millis")
        yield* Fiber.interrupt(fiber)
        const [received] = yield* server.requests
        yield* Loopback.awaitClosed(received) // fails on timeout
      }), client)

    live("happy path: chat and stream", () =>
      Effect.gen(function*() {
        const server = yield* Loopback.make({
          "/v1/chat/completions": (req) => (req.body?.stream === true ? Loopback.sse(textStream()) : Loopback.json(chatReply))
        })
        const openai = yield* provider()
        const response = yield* openai.chat(request, target(server))
        expect(response.choices[0].message.tool_calls?.[0].function.name).toBe("weather")
        const { chunks, error } = yield* collect(openai.stream(request, target(server)))
        expect(error).toBeUndefined()
        expect(text(chunks)).toBe("Hello")
        expect(chunks.at(-1)?.usage?.total_tokens).toBe(12)
      }), client)
  })
}

// ---------------------------------------------------------------------------
// Rate-limit headers
// ---------------------------------------------------------------------------

describe("OpenAiCompatible rate-limit headers", () => {
  const rateHeaders = {
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-requests": "499",
    "x-ratelimit-limit-tokens": "30000",
    "x-ratelimit-remaining-tokens": "29950"
  }

  live("reach target.reportRateLimit on success (chat, stream) and on a 429", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({
        "/v1/chat/completions": [
          Loopback.json(chatReply, { headers: rateHeaders }),
          Loopback.sse(textStream(0), { headers: { ...rateHeaders, "x-ratelimit-remaining-requests": "498" } }),
          Loopback.json(openAiError("limit", "requests"), { status: 429, headers: { ...rateHeaders, "x-ratelimit-remaining-requests": "0" } }),
          Loopback.json(chatReply)
        ]
      })
      const reported: Array<RateLimitInfo> = []
      const t = target(server, { reportRateLimit: (info) => Effect.sync(() => void reported.push(info)) })
      const openai = yield* provider()
      yield* openai.chat(request, t)
      yield* collect(openai.stream(request, t))
      yield* Effect.flip(openai.chat(request, t))
      yield* openai.chat(request, t) // no rate-limit headers: nothing reported
      expect(reported).toEqual([
        { remainingRequests: 499, remainingTokens: 29950, limitRequests: 500, limitTokens: 30000 },
        { remainingRequests: 498, remainingTokens: 29950, limitRequests: 500, limitTokens: 30000 },
        { remainingRequests: 0, remainingTokens: 29950, limitRequests: 500, limitTokens: 30000 }
      ])
    }))
})

// ---------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------

describe("OpenAiCompatible secrets", () => {
  const forms = (error: Errors.ProviderError): ReadonlyArray<string> => [
    String(error),
    error.message,
    JSON.stringify(error),
    Util.inspect(error, { depth: 10 }),
    error.stack ?? "",
    Cause.pretty(Cause.fail(error)),
    `${error.toString()}`
  ]

  const expectNoSecret = (error: Errors.ProviderError, secrets: ReadonlyArray<string>) => {
    for (const form of forms(error)) {
      for (const secret of secrets) expect(form).not.toContain(secret)
    }
  }

  live("the key is in no string form of any error, even when the server echoes it", () =>
    Effect.gen(function*() {
      // a hostile upstream echoing the credentials it received
      const echo = (req: Loopback.RecordedRequest) =>
        Loopback.json(
          openAiError(`bad credentials: ${req.headers.authorization ?? req.headers["api-key"]} / ${req.headers["x-proxy-key"]}`, "invalid_request_error"),
          { status: 401 }
        )
      const server = yield* Loopback.make({
        "/v1/chat/completions": echo,
        "/openai/deployments/gpt-test/chat/completions": echo
      })
      const secrets = [KEY, "proxy-secret-777"]
      const errors: Array<Errors.ProviderError> = []
      const openai = yield* provider({ headers: { "x-proxy-key": Redacted.make("proxy-secret-777") } })
      const azure = yield* provider({ azure: { apiVersion: "2024-10-21" } })
      errors.push(yield* Effect.flip(openai.chat(request, target(server))))
      errors.push(yield* Effect.flip(azure.chat(request, target(server, { apiBase: server.url }))))
      errors.push((yield* collect(openai.stream(request, target(server)))).error as Errors.ProviderError)
      // transport failures and timeouts too
      const closed = yield* Loopback.closedPortUrl
      errors.push(yield* Effect.flip(openai.chat(request, target(server, { apiBase: closed }))))
      const slow = yield* Loopback.make({ "/v1/chat/completions": Loopback.stall })
      errors.push(yield* Effect.flip(openai.chat(request, target(slow, { timeout: Duration.millis(50) }))))
      // the key from the environment
      const fromEnv = yield* OpenAiCompatible.make().pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["OPENAI_API_KEY", "sk-env-secret-4242"]])))
      )
      errors.push(yield* Effect.flip(fromEnv.chat(request, target(server, { apiKey: undefined }))))
      secrets.push("sk-env-secret-4242")

      expect(errors.map((e) => e._tag)).toEqual([
        "Authentication", "Authentication", "Authentication", "NetworkError", "Timeout", "Authentication"
      ])
      expect(errors[0].message).toContain("<redacted>")
      for (const error of errors) expectNoSecret(error, secrets)
    }))

  live("the key is in no tracing span attribute (Authorization, Azure's api-key, Redacted extra headers)", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({
        "/v1/chat/completions": Loopback.json(chatReply),
        "/openai/deployments/gpt-test/chat/completions": Loopback.json(chatReply)
      })
      const spans: Array<{ name: string; attributes: Map<string, unknown> }> = []
      const tracer = Tracer.make({
        span: (name, parent, context, links, startTime, kind) => {
          const attributes = new Map<string, unknown>()
          spans.push({ name, attributes })
          const span: Tracer.Span = {
            _tag: "Span", name, spanId: `s${spans.length}`, traceId: "t", parent, context, links, sampled: true, kind,
            status: { _tag: "Started", startTime }, attributes,
            end: () => {}, attribute: (key, value) => void attributes.set(key, value), event: () => {}, addLinks: () => {}
          }
          return span
        },
        context: (f) => f()
      })
      const openai = yield* provider({ headers: { "x-proxy-key": Redacted.make("proxy-secret-777") } })
      const azure = yield* provider({ azure: { apiVersion: "2024-10-21" } })
      yield* openai.chat(request, target(server)).pipe(Effect.withTracer(tracer))
      yield* azure.chat(request, target(server, { apiBase: server.url })).pipe(Effect.withTracer(tracer))
      const attributes = spans.flatMap((s) => [...s.attributes.entries()])
      expect(attributes.some(([key]) => key === "http.request.header.api-key")).toBe(true)
      expect(attributes.some(([key]) => key === "http.request.header.x-proxy-key")).toBe(true)
      for (const [key, value] of attributes) {
        expect(`${key}=${String(value)}`).not.toContain(KEY)
        expect(`${key}=${String(value)}`).not.toContain("proxy-secret-777")
      }
    }))

  live("with Effect's built-in tracer (spans exported nowhere) a request has no span and sends no traceparent; with a tracer installed it has both", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.json(chatReply) })
      const names: Array<string> = []
      const tracer = Tracer.make({
        span: (name, parent, context, links, startTime, kind) => {
          names.push(name)
          return {
            _tag: "Span", name, spanId: `s${names.length}`, traceId: "t1", parent, context, links, sampled: true, kind,
            status: { _tag: "Started", startTime }, attributes: new Map(),
            end: () => {}, attribute: () => {}, event: () => {}, addLinks: () => {}
          }
        },
        context: (f) => f()
      })
      const openai = yield* provider()
      yield* openai.chat(request, target(server))
      yield* Stream.runDrain(openai.stream(request, target(server))).pipe(Effect.ignore)
      yield* openai.chat(request, target(server)).pipe(Effect.withTracer(tracer))
      const received = yield* server.requests
      expect(received.map((r) => r.headers["traceparent"] !== undefined)).toEqual([false, false, true])
      expect(names.length).toBe(1)
    }))
})

// ---------------------------------------------------------------------------
// Routed
// ---------------------------------------------------------------------------

describe("OpenAiCompatible behind the router", () => {
  live("the first deployment answers 503, the second serves the request", () =>
    Effect.gen(function*() {
      const down = yield* Loopback.make({ "/v1/chat/completions": Loopback.json(openAiError("overloaded", "server_error"), { status: 503 }) })
      const up = yield* Loopback.make({ "/v1/chat/completions": Loopback.json(chatReply) })
      const RouterLive = Layer.unwrapEffect(Effect.gen(function*() {
        const openai = yield* provider()
        return Router.layer({
          deployments: [
            { id: "a", group: "gpt", provider: openai, model: "gpt-a", apiBase: `${down.url}/v1`, apiKey: "sk-a-1234" },
            { id: "b", group: "gpt", provider: openai, model: "gpt-b", apiBase: `${up.url}/v1`, apiKey: "sk-b-1234" }
          ]
        })
      })).pipe(
        Layer.provide(Selector.make((cs) => Effect.succeed(cs.find((c) => c.deployment.id === "a") ?? cs[0]))),
        Layer.provide(RetrySchedule.layer({ retries: 1, base: "10 millis" })),
        Layer.provide(Router.defaults)
      )
      const response = yield* Router.chat({ ...request, model: "gpt", metadata: { traceId: "t-1" } }).pipe(Effect.provide(RouterLive))
      expect(response.route.deploymentId).toBe("b")
      expect(response.route.attempts.map((a) => [a.deploymentId, a.error])).toEqual([["a", "ServerError"], ["b", undefined]])
      const [toDown] = yield* down.requests
      const [toUp] = yield* up.requests
      expect(toDown.body.model).toBe("gpt-a")
      expect(toDown.headers.authorization).toBe("Bearer sk-a-1234")
      expect(toUp.body.model).toBe("gpt-b")
      expect(toUp.headers.authorization).toBe("Bearer sk-b-1234")
      expect(toUp.body).not.toHaveProperty("metadata")
    }))
})

// keep the Provider type import used for readers of this file
export type { Provider }
