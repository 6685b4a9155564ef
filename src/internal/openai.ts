/**
 * The OpenAI-compatible provider: chat completions, streaming and embeddings in OpenAI's wire
 * format, over the shared HTTP core (`internal/http.ts`).
 *
 * @internal
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import type * as Sse from "@effect/experimental/Sse"
import * as ErrorMapping from "../ErrorMapping.js"
import * as Errors from "../Errors.js"
import {
  ChatChunk,
  type ChatRequest,
  ChatResponse,
  type EmbeddingRequest,
  EmbeddingResponse,
  healthCheckRequest,
  type Message,
  type Provider,
  type Target,
  type TextPart
} from "../Provider.js"
import * as HealthHttp from "./healthHttp.js"
import * as Http from "./http.js"

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

import type { Options } from "../providers/OpenAiCompatible.js"

/** @internal */
export const defaultApiBase = "https://api.openai.com/v1"
/** @internal */
export const defaultTimeout = Duration.minutes(10)
/** @internal */
export const defaultIdleTimeout = Duration.minutes(2)

// ---------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------

// Our schema types never hold an explicit `undefined` (optional means absent), so it is dropped
// from property types: under exactOptionalPropertyTypes the SDK's optional fields reject it.
type Mutable<T> = T extends string | number | boolean | null | undefined ? T
  : T extends ReadonlyArray<infer U> ? Array<Mutable<U>>
  : { -readonly [K in keyof T]: Mutable<Exclude<T[K], undefined>> }

/** Content that OpenAI accepts in system, assistant and tool messages: text parts only. */
type TextOnly<C> = C extends ReadonlyArray<unknown> ? Array<Mutable<TextPart>> : C

type NarrowContent<M> = {
  -readonly [K in keyof M]: K extends "content" ? TextOnly<Exclude<M[K], undefined>> : Mutable<Exclude<M[K], undefined>>
}

/**
 * A message as sent: our `Message`, with text-only content outside user messages (OpenAI takes
 * images in user messages only).
 *
 * @internal
 */
export type WireMessage =
  | Mutable<Extract<Message, { readonly role: "user" }>>
  | NarrowContent<Extract<Message, { readonly role: "system" }>>
  | NarrowContent<Extract<Message, { readonly role: "assistant" }>>
  | NarrowContent<Extract<Message, { readonly role: "tool" }>>

/**
 * A chat completion request body as sent (our `ChatRequest` without our routing `metadata`).
 *
 * @internal
 */
export type WireChatRequest = Mutable<Omit<ChatRequest, "metadata" | "messages">> & {
  messages: Array<WireMessage>
  stream?: false
}

/**
 * A streaming chat completion request body as sent.
 *
 * @internal
 */
export type WireChatStreamRequest = Mutable<Omit<ChatRequest, "metadata" | "messages">> & {
  messages: Array<WireMessage>
  stream: true
  stream_options?: { include_usage: boolean }
}

/**
 * An embedding request body as sent.
 *
 * @internal
 */
export type WireEmbeddingRequest = Mutable<Omit<EmbeddingRequest, "metadata">>

/** A message list OpenAI would refuse: image parts outside user messages. */
const checkMessages = (messages: ReadonlyArray<Message>): string | undefined => {
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i]
    if (message.role === "user") continue
    const content = message.content
    if (Array.isArray(content)) {
      for (const part of content as ReadonlyArray<{ readonly type: string }>) {
        if (part.type !== "text") return `messages[${i}]: ${message.role} messages take text parts only, got ${part.type}`
      }
    }
  }
  return undefined
}

/**
 * Builds the wire body of a chat request: our request without `metadata` (ours, for routing;
 * OpenAI's `metadata` means something else), plus `stream` and `stream_options` for streams.
 * Fails with a message when OpenAI would refuse the messages (images outside user messages).
 *
 * Messages are passed through, not copied: the wire types differ from ours only in being
 * mutable (the SDK's arrays are not readonly) and, after the check, in text-only content.
 *
 * @internal
 */
export function toWireChatRequest(
  request: ChatRequest,
  options: { readonly stream: true; readonly includeUsage?: boolean | undefined }
): Either.Either<WireChatStreamRequest, string>
export function toWireChatRequest(
  request: ChatRequest,
  options?: { readonly stream?: false | undefined }
): Either.Either<WireChatRequest, string>
export function toWireChatRequest(
  request: ChatRequest,
  options?: { readonly stream?: boolean | undefined; readonly includeUsage?: boolean | undefined }
): Either.Either<WireChatRequest | WireChatStreamRequest, string> {
  const problem = checkMessages(request.messages)
  if (problem !== undefined) return Either.left(problem)
  const { metadata: _metadata, ...rest } = request
  const body = rest as unknown as WireChatStreamRequest
  if (hasCacheControl(request)) {
    body.messages = request.messages.map(withoutCacheControl) as Array<WireMessage>
    if (request.tools !== undefined) body.tools = request.tools.map(withoutCacheControl) as NonNullable<WireChatStreamRequest["tools"]>
  }
  if (body.max_tokens !== undefined && refusesMaxTokens(request.model)) {
    // refused even beside max_completion_tokens, which then wins
    if (body.max_completion_tokens === undefined) body.max_completion_tokens = body.max_tokens
    delete body.max_tokens
  }
  if (options?.stream === true) {
    body.stream = true
    if (options.includeUsage !== false) body.stream_options = { include_usage: true }
  }
  return Either.right(body)
}

/** Whether a request carries a cache breakpoint anywhere (Anthropic's; not sent here). */
const hasCacheControl = (request: ChatRequest): boolean => {
  for (const message of request.messages) {
    if (message.cache_control !== undefined) return true
    const content = message.content
    if (Array.isArray(content) && content.some((part) => part.cache_control !== undefined)) return true
  }
  return request.tools !== undefined && request.tools.some((tool) => tool.cache_control !== undefined)
}

/** A message or tool without `cache_control` (its content parts too). */
const withoutCacheControl = <A extends { readonly cache_control?: unknown; readonly content?: unknown }>(item: A): A => {
  const { cache_control: _cache, ...rest } = item
  const content = rest.content
  if (Array.isArray(content)) {
    return {
      ...rest,
      content: content.map((part: { readonly cache_control?: unknown }) => {
        const { cache_control: _partCache, ...plain } = part
        return plain
      })
    } as unknown as A
  }
  return rest as unknown as A
}

/**
 * OpenAI's reasoning models (o1, o3, o4-mini, gpt-5...), which reject `max_tokens` in favour of
 * `max_completion_tokens`; also under an `openai/` prefix (OpenRouter).
 */
const refusesMaxTokens = (model: string): boolean => /^(openai\/)?(o\d|gpt-5)/i.test(model)

// ---------------------------------------------------------------------------
// Parameters a model refuses
// ---------------------------------------------------------------------------

/** A request parameter a model refuses: unless it has the one value the model takes, if any. */
interface Refusal {
  readonly param: "temperature" | "top_p" | "presence_penalty" | "frequency_penalty" | "stop"
  readonly only?: number
}

const temperature: Refusal = { param: "temperature", only: 1 }
const topP: Refusal = { param: "top_p", only: 1 }
const sampling: ReadonlyArray<Refusal> = [
  temperature,
  topP,
  { param: "presence_penalty", only: 0 },
  { param: "frequency_penalty", only: 0 }
]
const withStop: ReadonlyArray<Refusal> = [...sampling, { param: "stop" }]
const noRefusals: ReadonlyArray<Refusal> = []

/** The refused parameters a request carries. */
type RefusalCheck = (request: ChatRequest) => ReadonlyArray<Refusal>

const carrying = (refusals: ReadonlyArray<Refusal>): RefusalCheck => (request) => {
  let out: Array<Refusal> | undefined
  for (const refusal of refusals) {
    const value = request[refusal.param]
    if (value !== undefined && value !== refusal.only) (out ??= []).push(refusal)
  }
  return out ?? noRefusals
}

/**
 * What OpenAI's reasoning models are known to refuse (OpenAI's reasoning guide and the 400s
 * its API answers, `unsupported_value` / `unsupported_parameter`), by model id, also after
 * `openai/`; `undefined` for models that refuse none of our parameters:
 *
 * - o-series (o1, o3-mini, o3, o4-mini...) and gpt-5, gpt-5-mini, gpt-5-nano: `temperature`
 *   and `top_p` other than 1, `presence_penalty` and `frequency_penalty` other than 0;
 * - o3, o4-mini and gpt-5 (not 5.x): `stop` too;
 * - gpt-5.1 and later: `temperature` and `top_p` other than 1 only with a `reasoning_effort`
 *   (their default effort is `none`, under which they sample like chat models);
 * - gpt-5-chat models are chat models: nothing.
 *
 * Not listed, being accepted or unproven: `seed`, `parallel_tool_calls`.
 *
 * @internal
 */
export const refusalsOf = (model: string): RefusalCheck | undefined => {
  const id = model.toLowerCase().replace(/^openai\//, "")
  if (/^gpt-5(\.\d+)?-chat/.test(id)) return undefined
  if (/^gpt-5\.\d/.test(id)) {
    const check = carrying([temperature, topP])
    return (request) => request.reasoning_effort === undefined ? noRefusals : check(request)
  }
  if (/^gpt-5(?![.\d])/.test(id) || /^(o3(?!-mini)|o4)(?!\d)/.test(id)) return carrying(withStop)
  if (/^o\d/.test(id)) return carrying(sampling)
  return undefined
}

/**
 * What a target drops from requests (its `dropParams`), prepared once: `known` drops the
 * refused parameters instead of failing, `named` are dropped whatever the model.
 *
 * @internal
 */
export interface Dropping {
  readonly known: boolean
  readonly named: ReadonlyArray<keyof ChatRequest> | undefined
}

// never dropped, whatever a list says: without them there is no request
const essential: ReadonlySet<string> = new Set(["model", "messages"])

/** @internal */
export const droppingOf = (dropParams: Target["dropParams"]): Dropping => ({
  known: dropParams !== undefined && dropParams !== false,
  named: namedOf(dropParams)
})

const namedOf = (dropParams: Target["dropParams"]): ReadonlyArray<keyof ChatRequest> | undefined => {
  if (!Array.isArray(dropParams)) return undefined
  const named = (dropParams as ReadonlyArray<string>).filter((name) => !essential.has(name))
  // none: the fast path (no copy, no loop) stays open
  return named.length === 0 ? undefined : named as ReadonlyArray<keyof ChatRequest>
}

const describeRefusal = (refusal: Refusal, request: ChatRequest): string =>
  refusal.only === undefined
    ? refusal.param
    : `${refusal.param} ${JSON.stringify(request[refusal.param])} (it takes only ${refusal.only})`

/**
 * The request without the parameters the target drops, or why it cannot be sent: a parameter
 * the model refuses, which the target does not drop. The request is copied only when something
 * is dropped.
 *
 * @internal
 */
export const dropRefused = (
  request: ChatRequest,
  refusals: RefusalCheck | undefined,
  dropping: Dropping
): Either.Either<ChatRequest, string> => {
  const refused = refusals === undefined ? noRefusals : refusals(request)
  if (refused.length === 0 && dropping.named === undefined) return Either.right(request)
  if (refused.length > 0 && !dropping.known) {
    return Either.left(
      `${request.model} does not accept ${refused.map((r) => describeRefusal(r, request)).join(", ")}; ` +
        `set dropParams: true on the deployment to drop ${refused.length === 1 ? "it" : "them"}, or leave ${
          refused.length === 1 ? "it" : "them"
        } out of the request`
    )
  }
  let out: Record<string, unknown> | undefined
  for (const refusal of refused) {
    out ??= { ...request }
    delete out[refusal.param]
  }
  for (const name of dropping.named ?? []) {
    if (request[name] === undefined) continue
    out ??= { ...request }
    delete out[name]
  }
  return Either.right(out === undefined ? request : out as ChatRequest)
}

/**
 * Builds the wire body of an embedding request (without our `metadata`).
 *
 * @internal
 */
export const toWireEmbeddingRequest = (request: EmbeddingRequest): WireEmbeddingRequest => {
  const { metadata: _metadata, ...rest } = request
  return rest as WireEmbeddingRequest
}

// ---------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------

const finishReasons: Readonly<Record<string, string>> = {
  stop: "stop",
  length: "length",
  tool_calls: "tool_calls",
  content_filter: "content_filter",
  function_call: "function_call",
  // what other OpenAI-compatible servers are known to send
  max_tokens: "length",
  model_length: "length",
  tool_use: "tool_calls",
  end_turn: "stop",
  stop_sequence: "stop",
  eos: "stop",
  abort: "stop"
}

/**
 * Servers that speak the dialect loosely send finish reasons outside OpenAI's set; they are
 * mapped onto it (unknown ones become "stop") rather than failing the whole reply. Groq also
 * reports usage as `x_groq.usage` (on a stream's last chunk, and only there when the server
 * ignores `stream_options`): it stands in for a missing `usage`. The parsed JSON is ours to
 * mutate.
 */
const normalizeFinishReasons = (json: unknown): unknown => {
  const groq = (json as { x_groq?: { usage?: unknown } } | null)?.x_groq
  if (groq != null && typeof groq === "object" && groq.usage != null && (json as { usage?: unknown }).usage == null) {
    ;(json as { usage?: unknown }).usage = groq.usage
  }
  const choices = (json as { choices?: unknown } | null)?.choices
  if (Array.isArray(choices)) {
    for (const choice of choices) {
      if (typeof choice === "object" && choice !== null) {
        const reason = (choice as { finish_reason?: unknown }).finish_reason
        if (typeof reason === "string" && finishReasons[reason] !== reason) {
          ;(choice as { finish_reason?: unknown }).finish_reason = finishReasons[reason] ?? "stop"
        }
      }
    }
  }
  return json
}

const decodeChatResponse = Http.decoder(ChatResponse)
const decodeChat = (json: unknown) => decodeChatResponse(normalizeFinishReasons(json))
const decodeEmbedding = Http.decoder(EmbeddingResponse)
const decodeChunk = Http.decoder(ChatChunk)

/** Azure's first chunk carries only prompt filter results (`object: ""`, no choices). */
const isAnnotationOnly = (json: unknown): boolean => {
  const record = json as { object?: unknown; choices?: unknown; usage?: unknown }
  return record.object !== "chat.completion.chunk" && Array.isArray(record.choices) &&
    record.choices.length === 0 && (record.usage === undefined || record.usage === null)
}

const isDone = (event: Sse.Event) => event.data.trim() === "[DONE]"

/** Reads one stream event into `out` (nothing for `[DONE]`, blank data or annotations), or fails. */
const readEvent = (endpoint: Http.Endpoint, event: Sse.Event, out: Array<ChatChunk>): Errors.ProviderError | undefined => {
  const data = event.data
  const trimmed = data.trim()
  if (trimmed === "" || trimmed === "[DONE]") return undefined
  const json = Http.parseJson(endpoint, data, "a stream event")
  if (Either.isLeft(json)) return event.event === "error" ? Http.errorFromPayload(endpoint, data) : json.left
  if (event.event === "error" || Http.isErrorPayload(json.right)) return Http.errorFromPayload(endpoint, data)
  if (isAnnotationOnly(json.right)) return undefined
  const chunk = decodeChunk(normalizeFinishReasons(json.right))
  if (Either.isLeft(chunk)) {
    return Http.fail(endpoint, "MalformedResponse", `${endpoint.provider}: unexpected stream chunk: ${Http.clip(endpoint, chunk.left, 200)}`)
  }
  out.push(chunk.right)
  return undefined
}

// ---------------------------------------------------------------------------
// Provider
// ---------------------------------------------------------------------------

interface Prepared {
  readonly endpoint: Http.Endpoint
  /** The target's model and what it refuses (requests name it: the router sets it). */
  readonly model: string
  readonly refusals: RefusalCheck | undefined
  readonly dropping: Dropping
  readonly chatUrl: string
  readonly embedUrl: string
  /** The model listing the health check GETs. */
  readonly modelsUrl: string
  readonly urlParams: Readonly<Record<string, string>> | undefined
  readonly timeout: Duration.Duration
  readonly firstByteTimeout: Duration.Duration
}

const trimSlash = (url: string) => url.replace(/\/+$/, "")

/**
 * The provider over a given client; `envKey` is the key read from the environment, if any.
 *
 * @internal
 */
export const makeWith = (
  client: HttpClient.HttpClient,
  options: Options,
  envKey: Redacted.Redacted<string> | undefined
): Provider => {
  const name = options.name ?? (options.azure !== undefined ? "azure" : "openai")
  const optionTimeout = options.timeout === undefined ? undefined : Duration.decode(options.timeout)
  const optionFirstByte = options.firstByteTimeout === undefined ? undefined : Duration.decode(options.firstByteTimeout)
  const idleTimeout = options.idleTimeout === undefined ? defaultIdleTimeout : Duration.decode(options.idleTimeout)
  const includeUsage = options.includeUsageInStream !== false
  const azure = options.azure
  const rules = options.errorRules === undefined || options.errorRules.length === 0
    ? ErrorMapping.rules
    : [...options.errorRules, ...ErrorMapping.rules]

  const prepare = (target: Target): Prepared => {
    const apiKey = target.apiKey ?? options.apiKey ?? envKey
    const base = trimSlash(target.apiBase ?? options.apiBase ?? defaultApiBase)
    let chatUrl: string
    let embedUrl: string
    let modelsUrl: string
    const headers: Record<string, string | Redacted.Redacted<string> | undefined> = {}
    if (azure !== undefined) {
      const resource = base.endsWith("/openai") ? base : `${base}/openai`
      const root = `${resource}/deployments/${encodeURIComponent(target.model)}`
      chatUrl = `${root}/chat/completions`
      embedUrl = `${root}/embeddings`
      modelsUrl = `${resource}/models`
      headers["api-key"] = apiKey
    } else {
      chatUrl = `${base}/chat/completions`
      embedUrl = `${base}/embeddings`
      modelsUrl = `${base}/models`
      headers["authorization"] = apiKey === undefined ? undefined : Redacted.make(`Bearer ${Redacted.value(apiKey)}`)
      headers["openai-organization"] = options.organization
      headers["openai-project"] = options.project
    }
    if (options.headers !== undefined) {
      for (const [key, value] of Object.entries(options.headers)) headers[key.toLowerCase()] = value
    }
    const endpoint = Http.makeEndpoint({ provider: name, target, headers, rules })
    // the key of the call may come from the options or the environment: scrub it too
    const secretValues = apiKey !== undefined && !endpoint.secretValues.includes(Redacted.value(apiKey))
      ? [...endpoint.secretValues, Redacted.value(apiKey)]
      : endpoint.secretValues
    const timeout = target.timeout ?? optionTimeout ?? defaultTimeout
    return {
      endpoint: { ...endpoint, secretValues },
      model: target.model,
      refusals: refusalsOf(target.model),
      dropping: droppingOf(target.dropParams),
      chatUrl,
      embedUrl,
      modelsUrl,
      urlParams: azure === undefined ? undefined : { "api-version": azure.apiVersion },
      timeout,
      firstByteTimeout: optionFirstByte ?? timeout
    }
  }

  // Built once per target: the router keeps its targets for its lifetime.
  const cache = new WeakMap<Target, Prepared>()
  const prepared = (target: Target): Prepared => {
    let out = cache.get(target)
    if (out === undefined) {
      out = prepare(target)
      cache.set(target, out)
    }
    return out
  }

  /** The request as the target takes it (its dropped parameters left out), or why not. */
  const adapt = (p: Prepared, request: ChatRequest) =>
    dropRefused(request, request.model === p.model ? p.refusals : refusalsOf(request.model), p.dropping)

  const chat: Provider["chat"] = (request, target) => {
    const p = prepared(target)
    const adapted = adapt(p, request)
    if (Either.isLeft(adapted)) return Effect.fail(Http.fail(p.endpoint, "BadRequest", `${name}: ${adapted.left}`))
    const body = toWireChatRequest(adapted.right)
    if (Either.isLeft(body)) return Effect.fail(Http.fail(p.endpoint, "BadRequest", `${name}: ${body.left}`))
    return Http.postJson(client, p.endpoint, {
      url: p.chatUrl,
      urlParams: p.urlParams,
      body: body.right,
      timeout: p.timeout,
      decode: decodeChat
    })
  }

  const stream: Provider["stream"] = (request, target) =>
    Stream.suspend(() => {
      const p = prepared(target)
      const adapted = adapt(p, request)
      if (Either.isLeft(adapted)) return Stream.fail(Http.fail(p.endpoint, "BadRequest", `${name}: ${adapted.left}`))
      const body = toWireChatRequest(adapted.right, { stream: true, includeUsage })
      if (Either.isLeft(body)) return Stream.fail(Http.fail(p.endpoint, "BadRequest", `${name}: ${body.left}`))
      return Http.postSse(client, p.endpoint, {
        url: p.chatUrl,
        urlParams: p.urlParams,
        body: body.right,
        firstByteTimeout: p.firstByteTimeout,
        idleTimeout,
        isEnd: isDone,
        read: (event, out) => readEvent(p.endpoint, event, out),
        endName: "[DONE]"
      })
    })

  const embed: Provider["embed"] = (request, target) => {
    const p = prepared(target)
    return Http.postJson(client, p.endpoint, {
      url: p.embedUrl,
      urlParams: p.urlParams,
      body: toWireEmbeddingRequest(request),
      timeout: p.timeout,
      decode: decodeEmbedding
    })
  }

  // The model listing (the key and the server, cheaply), a one-token chat, or none.
  const healthCheck: Provider["healthCheck"] = options.healthCheck === false
    ? undefined
    : options.healthCheck === "chat"
    ? (target) => Effect.asVoid(chat(healthCheckRequest(target.model), target))
    : (target) => {
      const p = prepared(target)
      return HealthHttp.get(client, p.endpoint, { url: p.modelsUrl, urlParams: p.urlParams, timeout: p.timeout })
    }

  return healthCheck === undefined
    ? { name, enforcesTimeout: true, chat, stream, embed }
    : { name, enforcesTimeout: true, chat, stream, embed, healthCheck }
}

/**
 * Reads the key from the environment (through `Config`, so a `ConfigProvider` can supply it).
 *
 * @internal
 */
const envKeyOf = (options: Options): Effect.Effect<Redacted.Redacted<string> | undefined> => {
  if (options.apiKey !== undefined || options.apiKeyEnv === false) return Effect.succeed(undefined)
  const variable = options.apiKeyEnv ?? (options.azure !== undefined ? "AZURE_OPENAI_API_KEY" : "OPENAI_API_KEY")
  return Config.option(Config.redacted(variable)).pipe(
    Effect.map(Option.getOrUndefined),
    Effect.orElseSucceed(() => undefined)
  )
}

/** @internal */
export const make = (options: Options = {}): Effect.Effect<Provider, Errors.InvalidConfig, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const issues = [
      ...(options.errorRules === undefined ? [] : Http.checkRules(options.errorRules, "errorRules")),
      ...HealthHttp.checkOption(options.healthCheck)
    ]
    if (issues.length > 0) return yield* Effect.fail(Errors.InvalidConfig.fromIssues(issues))
    const client = yield* HttpClient.HttpClient
    const envKey = yield* envKeyOf(options)
    return makeWith(client, options, envKey)
  })
