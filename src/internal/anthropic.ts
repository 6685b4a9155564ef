/**
 * Anthropic Messages: the mapping between our OpenAI-shaped schemas and Anthropic's wire format
 * (request body, response, stream events, error bodies), all pure, and the provider built on the
 * shared HTTP core (`make`).
 *
 * @internal
 */
import type * as Sse from "@effect/experimental/Sse"
import * as HttpClient from "@effect/platform/HttpClient"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Errors from "../Errors.js"
import type {
  CacheControl,
  ChatChunk,
  ChatRequest,
  ChatResponse,
  Content,
  FilePart,
  EmbeddingRequest,
  EmbeddingResponse,
  FinishReason,
  Message,
  Provider,
  Target,
  ToolCall,
  ToolCallDelta,
  Usage
} from "../Provider.js"
import { healthCheckRequest } from "../Provider.js"
import * as ErrorMapping from "../ErrorMapping.js"
import * as HealthHttp from "./healthHttp.js"
import * as Http from "./http.js"

// ---------------------------------------------------------------------------
// Wire types (the subset of Anthropic's request we build). Arrays are mutable so that a body
// is assignable to the SDK's `MessageCreateParams` (see test/providers/wire-types.anthropic.ts).
// ---------------------------------------------------------------------------

export interface WireCacheControl {
  type: "ephemeral"
  ttl?: "5m" | "1h"
}

export interface WireTextBlock {
  type: "text"
  text: string
  cache_control?: WireCacheControl
}

export type WireImageMediaType = "image/jpeg" | "image/png" | "image/gif" | "image/webp"

export interface WireImageBlock {
  type: "image"
  source:
    | { type: "base64"; media_type: WireImageMediaType; data: string }
    | { type: "url"; url: string }
  cache_control?: WireCacheControl
}

export interface WireToolUseBlock {
  type: "tool_use"
  id: string
  name: string
  input: Record<string, unknown>
  cache_control?: WireCacheControl
}

export interface WireToolResultBlock {
  type: "tool_result"
  tool_use_id: string
  content: string | Array<WireInputBlock>
  cache_control?: WireCacheControl
}

export interface WireDocumentBlock {
  type: "document"
  source:
    | { type: "base64"; media_type: "application/pdf"; data: string }
    | { type: "text"; media_type: "text/plain"; data: string }
  title?: string
  cache_control?: WireCacheControl
}

/** Blocks a user message or a tool result can hold. */
export type WireInputBlock = WireTextBlock | WireImageBlock | WireDocumentBlock

export type WireContentBlock = WireInputBlock | WireToolUseBlock | WireToolResultBlock

export interface WireMessage {
  role: "user" | "assistant"
  content: string | Array<WireContentBlock>
}

export interface WireTool {
  name: string
  description?: string
  input_schema: { type: "object"; [key: string]: unknown }
  strict?: boolean
  cache_control?: WireCacheControl
}

export type WireToolChoice =
  | { type: "auto"; disable_parallel_tool_use?: boolean }
  | { type: "any"; disable_parallel_tool_use?: boolean }
  | { type: "none" }
  | { type: "tool"; name: string; disable_parallel_tool_use?: boolean }

export interface WireRequest {
  model: string
  max_tokens: number
  messages: Array<WireMessage>
  system?: string | Array<WireTextBlock>
  temperature?: number
  top_p?: number
  stop_sequences?: Array<string>
  tools?: Array<WireTool>
  tool_choice?: WireToolChoice
  metadata?: { user_id: string }
  output_config?: { format: { type: "json_schema"; schema: { [key: string]: unknown } } }
}

export interface WireOptions {
  /** `max_tokens` when the request has none (Anthropic requires it). Default 4096. */
  readonly defaultMaxTokens?: number | undefined
  /**
   * How `response_format` is honoured: `"native"` (default) sends a JSON schema as
   * `output_config.format` (structured outputs); `"prompt"` asks for JSON in the system prompt.
   * `json_object` (no schema) is always asked for in the system prompt.
   */
  readonly jsonMode?: "native" | "prompt" | undefined
}

export const DEFAULT_MAX_TOKENS = 4096

export const JSON_OBJECT_INSTRUCTION =
  "Respond with a single valid JSON object and nothing else: no prose before or after it, no Markdown code fences."

const jsonSchemaInstruction = (schema: unknown, name: string) =>
  `Respond with a single valid JSON value (${name}) that conforms to this JSON Schema, and nothing else: ` +
  `no prose before or after it, no Markdown code fences.\n${JSON.stringify(schema)}`

// ---------------------------------------------------------------------------
// Request → wire
// ---------------------------------------------------------------------------

const mediaTypes: ReadonlySet<string> = new Set(["image/jpeg", "image/png", "image/gif", "image/webp"])

const imageBlock = (url: string): Either.Either<WireImageBlock, string> => {
  if (url.startsWith("data:")) {
    const match = /^data:([^;,]+)((?:;[^;,]*)*),(.*)$/s.exec(url)
    if (match === null) return Either.left("image data URL is malformed")
    const mediaType = match[1].toLowerCase() === "image/jpg" ? "image/jpeg" : match[1].toLowerCase()
    if (!mediaTypes.has(mediaType)) {
      return Either.left(`image media type ${match[1]} is not supported by Anthropic (jpeg, png, gif, webp)`)
    }
    if (!match[2].split(";").includes("base64")) return Either.left("image data URL must be base64-encoded")
    return Either.right({
      type: "image",
      source: { type: "base64", media_type: mediaType as WireImageMediaType, data: match[3] }
    })
  }
  if (/^https?:\/\//i.test(url)) return Either.right({ type: "image", source: { type: "url", url } })
  return Either.left("image URL must be an http(s) URL or a base64 data URL")
}

/** A document block from a file part's data URL (PDF, or plain text). */
const documentBlock = (file: FilePart["file"]): Either.Either<WireDocumentBlock, string> => {
  const data = file.file_data
  if (data === undefined) {
    return Either.left(
      file.file_id !== undefined
        ? `file ${file.file_id} was uploaded to OpenAI; Anthropic takes documents as data URLs (file_data)`
        : "a file part needs file_data"
    )
  }
  const match = /^data:([^;,]+)((?:;[^;,]*)*),(.*)$/s.exec(data)
  if (match === null) return Either.left("file_data must be a data URL (data:application/pdf;base64,...)")
  const mediaType = match[1].toLowerCase()
  const base64 = match[2].split(";").includes("base64")
  const title = file.filename === undefined ? {} : { title: file.filename }
  if (mediaType === "application/pdf") {
    if (!base64) return Either.left("a PDF data URL must be base64-encoded")
    return Either.right({ type: "document", source: { type: "base64", media_type: "application/pdf", data: match[3] }, ...title })
  }
  if (mediaType === "text/plain") {
    let text: string
    try {
      text = base64
        ? new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(atob(match[3]), (c) => c.charCodeAt(0)))
        : decodeURIComponent(match[3])
    } catch {
      return Either.left("file_data is not valid text")
    }
    return Either.right({ type: "document", source: { type: "text", media_type: "text/plain", data: text }, ...title })
  }
  return Either.left(`document media type ${match[1]} is not supported by Anthropic (application/pdf, text/plain)`)
}

const contentBlocks = (
  content: Content,
  where: string
): Either.Either<Array<WireInputBlock>, string> => {
  if (typeof content === "string") return Either.right(content === "" ? [] : [{ type: "text", text: content }])
  const out: Array<WireInputBlock> = []
  for (const part of content) {
    if (part.type === "text") {
      if (part.text !== "") out.push(cached<WireTextBlock>({ type: "text", text: part.text }, part.cache_control))
    } else {
      const block: Either.Either<WireInputBlock, string> = part.type === "image_url"
        ? imageBlock(part.image_url.url)
        : documentBlock(part.file)
      if (Either.isLeft(block)) return Either.left(`${where}: ${block.left}`)
      out.push(cached<WireInputBlock>(block.right, part.cache_control))
    }
  }
  return Either.right(out)
}

/** `block` with the breakpoint, when there is one. */
const cached = <B extends { cache_control?: WireCacheControl }>(block: B, cache: CacheControl | undefined): B => {
  if (cache !== undefined) block.cache_control = cache.ttl === undefined ? { type: cache.type } : { type: cache.type, ttl: cache.ttl }
  return block
}

/** Puts a message's breakpoint on its last block (content with one becomes a list of blocks). */
const cachedContent = (
  content: string | Array<WireInputBlock>,
  cache: CacheControl | undefined
): string | Array<WireInputBlock> => {
  if (cache === undefined) return content
  const blocks: Array<WireInputBlock> = typeof content === "string"
    ? (content === "" ? [] : [{ type: "text", text: content }])
    : content
  const last = blocks[blocks.length - 1]
  if (last !== undefined) cached(last, cache)
  return blocks
}

/** Plain string content stays a string (the common case); parts become blocks. */
const messageContent = (
  content: Content,
  where: string
): Either.Either<string | Array<WireInputBlock>, string> =>
  typeof content === "string" ? Either.right(content) : contentBlocks(content, where)

const parseArguments = (call: ToolCall, where: string): Either.Either<Record<string, unknown>, string> => {
  const text = call.function.arguments
  if (text.trim() === "") return Either.right({})
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return Either.left(`${where}: arguments of tool call ${call.id} are not valid JSON`)
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return Either.left(`${where}: arguments of tool call ${call.id} must be a JSON object`)
  }
  return Either.right(parsed as Record<string, unknown>)
}

const systemBlocks = (messages: ReadonlyArray<Message>): Either.Either<Array<WireTextBlock>, string> => {
  const out: Array<WireTextBlock> = []
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i]
    if (message.role !== "system") continue
    const content = message.content
    const before = out.length
    if (typeof content === "string") {
      if (content !== "") out.push({ type: "text", text: content })
    } else {
      for (const part of content) {
        if (part.type !== "text") return Either.left(`messages[${i}]: Anthropic system prompts take text only`)
        if (part.text !== "") out.push(cached<WireTextBlock>({ type: "text", text: part.text }, part.cache_control))
      }
    }
    const last = out[out.length - 1]
    if (out.length > before && last !== undefined) cached(last, message.cache_control)
  }
  return Either.right(out)
}

const clamp = (value: number, min: number, max: number) => Math.min(max, Math.max(min, value))

/**
 * Builds the body of `POST /v1/messages` from a chat request. Fails (with a reason) on input
 * Anthropic cannot take: image formats it does not read, tool-call arguments that are not a JSON
 * object, images in a system prompt.
 */
export function toWireRequest(
  request: ChatRequest,
  options: WireOptions & { readonly stream: true }
): Either.Either<WireRequest & { stream: true }, string>
export function toWireRequest(
  request: ChatRequest,
  options?: WireOptions & { readonly stream?: false | undefined }
): Either.Either<WireRequest, string>
export function toWireRequest(
  request: ChatRequest,
  options: WireOptions & { readonly stream?: boolean | undefined } = {}
): Either.Either<WireRequest & { stream?: true }, string> {
  const system = systemBlocks(request.messages)
  if (Either.isLeft(system)) return Either.left(system.left)
  const systemParts = system.right

  const messages: Array<WireMessage> = []
  // consecutive tool results go into one user message
  let toolResults: Array<WireContentBlock> | undefined
  for (let i = 0; i < request.messages.length; i++) {
    const message = request.messages[i]
    const where = `messages[${i}]`
    if (message.role !== "tool") toolResults = undefined
    switch (message.role) {
      case "system":
        break
      case "user": {
        const content = messageContent(message.content, where)
        if (Either.isLeft(content)) return Either.left(content.left)
        messages.push({ role: "user", content: cachedContent(content.right, message.cache_control) })
        break
      }
      case "assistant": {
        const calls = message.tool_calls ?? []
        const content = message.content
        if (calls.length === 0) {
          const mapped = messageContent(content ?? "", where)
          if (Either.isLeft(mapped)) return Either.left(mapped.left)
          // Anthropic refuses empty turns; an empty assistant message says nothing anyway
          if (mapped.right.length > 0) {
            messages.push({ role: "assistant", content: cachedContent(mapped.right, message.cache_control) })
          }
          break
        }
        const blocks: Array<WireContentBlock> = []
        if (content !== undefined && content !== null) {
          const mapped = contentBlocks(content, where)
          if (Either.isLeft(mapped)) return Either.left(mapped.left)
          blocks.push(...mapped.right)
        }
        for (const call of calls) {
          const input = parseArguments(call, where)
          if (Either.isLeft(input)) return Either.left(input.left)
          blocks.push({ type: "tool_use", id: call.id, name: call.function.name, input: input.right })
        }
        cached(blocks[blocks.length - 1]!, message.cache_control)
        messages.push({ role: "assistant", content: blocks })
        break
      }
      case "tool": {
        const content = messageContent(message.content, where)
        if (Either.isLeft(content)) return Either.left(content.left)
        const block = cached<WireToolResultBlock>(
          { type: "tool_result", tool_use_id: message.tool_call_id, content: content.right },
          message.cache_control
        )
        if (toolResults === undefined) {
          toolResults = [block]
          messages.push({ role: "user", content: toolResults })
        } else {
          toolResults.push(block)
        }
        break
      }
    }
  }

  const body: WireRequest & { stream?: true } = {
    model: request.model,
    max_tokens: request.max_tokens ?? request.max_completion_tokens ?? options.defaultMaxTokens ?? DEFAULT_MAX_TOKENS,
    messages
  }

  // response_format
  const format = request.response_format
  if (format !== undefined && format.type !== "text") {
    const schema = format.type === "json_schema" ? format.json_schema.schema : undefined
    if (schema !== undefined && (options.jsonMode ?? "native") === "native") {
      body.output_config = { format: { type: "json_schema", schema: { ...schema } } }
    } else {
      const text = schema !== undefined && format.type === "json_schema"
        ? jsonSchemaInstruction(schema, format.json_schema.name)
        : JSON_OBJECT_INSTRUCTION
      systemParts.push({ type: "text", text })
    }
  }

  if (systemParts.length === 1 && systemParts[0].cache_control === undefined) body.system = systemParts[0].text
  else if (systemParts.length > 0) body.system = systemParts
  // Anthropic's temperature range is [0, 1]; OpenAI's is [0, 2]
  if (request.temperature !== undefined) body.temperature = clamp(request.temperature, 0, 1)
  if (request.top_p !== undefined) body.top_p = request.top_p
  if (request.stop !== undefined) {
    const stops = typeof request.stop === "string" ? [request.stop] : [...request.stop]
    if (stops.length > 0) body.stop_sequences = stops
  }
  if (request.tools !== undefined && request.tools.length > 0) {
    body.tools = request.tools.map((tool) => {
      const out: WireTool = {
        name: tool.function.name,
        input_schema: { ...(tool.function.parameters ?? { properties: {} }), type: "object" }
      }
      if (tool.function.description !== undefined) out.description = tool.function.description
      if (tool.function.strict !== undefined) out.strict = tool.function.strict
      return cached(out, tool.cache_control)
    })
    const choice = request.tool_choice
    const oneTool = request.parallel_tool_calls === false
    if (choice !== undefined) {
      body.tool_choice = choice === "auto"
        ? { type: "auto" }
        : choice === "required"
        ? { type: "any" }
        : choice === "none"
        ? { type: "none" }
        : { type: "tool", name: choice.function.name }
    } else if (oneTool) {
      body.tool_choice = { type: "auto" }
    }
    if (oneTool && body.tool_choice !== undefined && body.tool_choice.type !== "none") {
      body.tool_choice.disable_parallel_tool_use = true
    }
  }
  if (request.user !== undefined) body.metadata = { user_id: request.user }
  if (options.stream === true) body.stream = true
  return Either.right(body)
}

// ---------------------------------------------------------------------------
// Wire → response
// ---------------------------------------------------------------------------

const NullableNumber = Schema.optional(Schema.NullOr(Schema.Number))

const WireUsage = Schema.Struct({
  input_tokens: NullableNumber,
  output_tokens: NullableNumber,
  cache_creation_input_tokens: NullableNumber,
  cache_read_input_tokens: NullableNumber
})
type WireUsage = typeof WireUsage.Type

const WireResponseBlock = Schema.Union(
  Schema.Struct({ type: Schema.Literal("text"), text: Schema.String }),
  Schema.Struct({ type: Schema.Literal("tool_use"), id: Schema.String, name: Schema.String, input: Schema.Unknown }),
  Schema.Struct({ type: Schema.String })
)

const WireResponse = Schema.Struct({
  id: Schema.String,
  model: Schema.String,
  content: Schema.Array(WireResponseBlock),
  stop_reason: Schema.optional(Schema.NullOr(Schema.String)),
  usage: Schema.optional(WireUsage)
})

const decodeWireResponse = Schema.decodeUnknownEither(WireResponse)

/**
 * Our usage with Anthropic's prompt-cache counts kept visible: `prompt_tokens` counts every
 * input token (`input_tokens + cache_read_input_tokens + cache_creation_input_tokens`),
 * `prompt_tokens_details.cached_tokens` the ones read from the cache (as OpenAI reports them),
 * and Anthropic's two cache counts are copied as they came.
 */
export interface AnthropicUsage extends Usage {
  readonly prompt_tokens_details: { readonly cached_tokens: number }
  readonly cache_read_input_tokens: number
  readonly cache_creation_input_tokens: number
}

interface UsageCounts {
  input: number
  output: number
  cacheRead: number
  cacheCreation: number
}

const toUsage = (counts: UsageCounts): AnthropicUsage => {
  const prompt = counts.input + counts.cacheRead + counts.cacheCreation
  return {
    prompt_tokens: prompt,
    completion_tokens: counts.output,
    total_tokens: prompt + counts.output,
    prompt_tokens_details: { cached_tokens: counts.cacheRead },
    cache_read_input_tokens: counts.cacheRead,
    cache_creation_input_tokens: counts.cacheCreation
  }
}

const mergeUsage = (counts: UsageCounts, usage: WireUsage | undefined): void => {
  if (usage === undefined) return
  if (typeof usage.input_tokens === "number") counts.input = usage.input_tokens
  if (typeof usage.output_tokens === "number") counts.output = usage.output_tokens
  if (typeof usage.cache_read_input_tokens === "number") counts.cacheRead = usage.cache_read_input_tokens
  if (typeof usage.cache_creation_input_tokens === "number") counts.cacheCreation = usage.cache_creation_input_tokens
}

/**
 * Anthropic's stop reason as ours: `end_turn`, `stop_sequence` and `pause_turn` → `stop`;
 * `max_tokens` and `model_context_window_exceeded` → `length`; `tool_use` → `tool_calls`;
 * `refusal` → `content_filter`. Unknown reasons are `stop`; `null` stays `null`.
 */
export const toFinishReason = (reason: string | null | undefined): FinishReason | null => {
  switch (reason) {
    case null:
    case undefined:
      return null
    case "max_tokens":
    case "model_context_window_exceeded":
      return "length"
    case "tool_use":
      return "tool_calls"
    case "refusal":
      return "content_filter"
    default:
      return "stop"
  }
}

/**
 * Maps a Messages API response body (parsed JSON) to a chat response. Text blocks are joined
 * into `content`; `tool_use` blocks become `tool_calls` (input serialised as the JSON string
 * OpenAI's `arguments` is); other blocks (thinking, server tools) are dropped.
 */
export const fromWireResponse = (body: unknown, createdMs: number): Either.Either<ChatResponse, string> => {
  const decoded = decodeWireResponse(body)
  if (Either.isLeft(decoded)) return Either.left("response is not an Anthropic message")
  const wire = decoded.right
  let text: string | undefined
  const toolCalls: Array<ToolCall> = []
  for (const block of wire.content) {
    if (block.type === "text" && "text" in block) text = (text ?? "") + block.text
    else if (block.type === "tool_use" && "id" in block) {
      toolCalls.push({
        id: block.id,
        type: "function",
        function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) }
      })
    }
  }
  const message: { role: "assistant"; content: string | null; tool_calls?: ReadonlyArray<ToolCall> } = {
    role: "assistant",
    content: text ?? null
  }
  if (toolCalls.length > 0) message.tool_calls = toolCalls
  const response: { -readonly [K in keyof ChatResponse]: ChatResponse[K] } = {
    id: wire.id,
    object: "chat.completion",
    created: Math.floor(createdMs / 1000),
    model: wire.model,
    choices: [{ index: 0, message, finish_reason: toFinishReason(wire.stop_reason) ?? "stop" }]
  }
  if (wire.usage !== undefined) {
    const counts: UsageCounts = { input: 0, output: 0, cacheRead: 0, cacheCreation: 0 }
    mergeUsage(counts, wire.usage)
    response.usage = toUsage(counts)
  }
  return Either.right(response)
}

// ---------------------------------------------------------------------------
// Stream events → chunks
// ---------------------------------------------------------------------------

const WireStreamEvent = Schema.Union(
  Schema.Struct({
    type: Schema.Literal("message_start"),
    message: Schema.Struct({
      id: Schema.String,
      model: Schema.String,
      usage: Schema.optional(WireUsage)
    })
  }),
  Schema.Struct({
    type: Schema.Literal("content_block_start"),
    index: Schema.Number,
    content_block: Schema.Struct({
      type: Schema.String,
      id: Schema.optional(Schema.String),
      name: Schema.optional(Schema.String),
      text: Schema.optional(Schema.String)
    })
  }),
  Schema.Struct({
    type: Schema.Literal("content_block_delta"),
    index: Schema.Number,
    delta: Schema.Struct({
      type: Schema.String,
      text: Schema.optional(Schema.String),
      partial_json: Schema.optional(Schema.String)
    })
  }),
  Schema.Struct({ type: Schema.Literal("content_block_stop"), index: Schema.Number }),
  Schema.Struct({
    type: Schema.Literal("message_delta"),
    delta: Schema.Struct({ stop_reason: Schema.optional(Schema.NullOr(Schema.String)) }),
    usage: Schema.optional(WireUsage)
  }),
  Schema.Struct({ type: Schema.Literal("message_stop") }),
  Schema.Struct({ type: Schema.Literal("ping") }),
  Schema.Struct({
    type: Schema.Literal("error"),
    error: Schema.Struct({ type: Schema.optional(Schema.String), message: Schema.optional(Schema.String) })
  })
)

const decodeStreamEvent = Schema.decodeUnknownEither(WireStreamEvent)

const knownEvents: ReadonlySet<string> = new Set([
  "message_start", "content_block_start", "content_block_delta", "content_block_stop",
  "message_delta", "message_stop", "ping", "error"
])

/** Why a stream could not go on. */
export type StreamFailure =
  | { readonly _tag: "Malformed"; readonly message: string }
  | { readonly _tag: "UpstreamError"; readonly errorType: string; readonly message: string; readonly body: string }

/**
 * The state of one stream: turns Anthropic's server-sent events, in order, into chat chunks.
 * Feed it each event's name and data; `done` says whether `message_stop` arrived.
 */
export interface ChunkMapper {
  readonly push: (event: string, data: string) => Either.Either<ReadonlyArray<ChatChunk>, StreamFailure>
  readonly done: () => boolean
}

type MutableChunk = { -readonly [K in keyof ChatChunk]: ChatChunk[K] }
type Delta = ChatChunk["choices"][number]["delta"]

export const makeChunkMapper = (options: {
  readonly createdMs: number
  readonly model: string
  /** Applied to upstream text a failure keeps, before it is cut (to take secrets out whole). */
  readonly redact?: ((text: string) => string) | undefined
}): ChunkMapper => {
  const created = Math.floor(options.createdMs / 1000)
  const redact = options.redact ?? ((text: string) => text)
  let id = ""
  let model = options.model
  let started = false
  let stopped = false
  const toolIndex = new Map<number, number>()
  // Blocks whose input deltas are not ours to pass on: server tools (server_tool_use,
  // mcp_tool_use) run on Anthropic's side, and `chat` drops them too.
  const otherBlocks = new Set<number>()
  const counts: UsageCounts = { input: 0, output: 0, cacheRead: 0, cacheCreation: 0 }

  const chunk = (delta: Delta, finishReason: FinishReason | null = null, usage?: Usage): ChatChunk => {
    const out: MutableChunk = {
      id,
      object: "chat.completion.chunk",
      created,
      model,
      choices: [{ index: 0, delta, finish_reason: finishReason }]
    }
    if (usage !== undefined) out.usage = usage
    return out
  }
  const toolDelta = (delta: ToolCallDelta): Delta => ({ tool_calls: [delta] })
  const malformed = (message: string) => Either.left<StreamFailure>({ _tag: "Malformed", message })
  const none: ReadonlyArray<ChatChunk> = []

  const push = (event: string, data: string): Either.Either<ReadonlyArray<ChatChunk>, StreamFailure> => {
    if (stopped) return Either.right(none)
    let json: unknown
    try {
      json = JSON.parse(data)
    } catch {
      if (event === "error") {
        const body = redact(data)
        return Either.left({ _tag: "UpstreamError", errorType: "api_error", message: body.slice(0, 500), body })
      }
      return malformed(`event ${event === "" ? "(unnamed)" : event} carries data that is not JSON`)
    }
    const type = typeof json === "object" && json !== null && typeof (json as { type?: unknown }).type === "string"
      ? (json as { type: string }).type
      : event
    if (!knownEvents.has(type)) return Either.right(none) // forward compatible: unknown events are skipped
    const decoded = decodeStreamEvent(json)
    if (Either.isLeft(decoded)) return malformed(`event ${type} has an unexpected shape`)
    const ev = decoded.right
    if (ev.type === "error") {
      return Either.left({
        _tag: "UpstreamError",
        errorType: ev.error.type ?? "api_error",
        message: redact(ev.error.message ?? ""),
        body: redact(data)
      })
    }
    if (ev.type === "ping") return Either.right(none)
    if (ev.type === "message_start") {
      started = true
      id = ev.message.id
      model = ev.message.model
      mergeUsage(counts, ev.message.usage)
      return Either.right([chunk({ role: "assistant", content: "" })])
    }
    if (!started) return malformed(`event ${ev.type} arrived before message_start`)
    switch (ev.type) {
      case "content_block_start": {
        const block = ev.content_block
        if (block.type === "tool_use") {
          const index = toolIndex.size
          toolIndex.set(ev.index, index)
          return Either.right([
            chunk(toolDelta({
              index,
              id: block.id ?? "",
              type: "function",
              function: { name: block.name ?? "", arguments: "" }
            }))
          ])
        }
        otherBlocks.add(ev.index)
        if (block.type === "text" && block.text !== undefined && block.text !== "") {
          return Either.right([chunk({ content: block.text })])
        }
        return Either.right(none)
      }
      case "content_block_delta": {
        const delta = ev.delta
        if (delta.type === "text_delta" && delta.text !== undefined) {
          return Either.right(delta.text === "" ? none : [chunk({ content: delta.text })])
        }
        if (delta.type === "input_json_delta" && delta.partial_json !== undefined) {
          const index = toolIndex.get(ev.index)
          if (index === undefined) {
            return otherBlocks.has(ev.index)
              ? Either.right(none)
              : malformed(`input_json_delta for block ${ev.index}, which never started`)
          }
          return Either.right(
            delta.partial_json === "" ? none : [chunk(toolDelta({ index, function: { arguments: delta.partial_json } }))]
          )
        }
        return Either.right(none) // thinking, signature, citations
      }
      case "content_block_stop":
        return Either.right(none)
      case "message_delta": {
        mergeUsage(counts, ev.usage)
        const finish = toFinishReason(ev.delta.stop_reason)
        return Either.right([chunk({}, finish ?? "stop", toUsage(counts))])
      }
      case "message_stop":
        stopped = true
        return Either.right(none)
    }
  }
  return { push, done: () => stopped }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/**
 * Anthropic's own rules, ahead of the shared table: `overloaded_error` is a server error
 * whatever the status (529, or none mid-stream). `billing_error` (402) and the 400 "credit
 * balance is too low" are `QuotaExceeded` by the shared table.
 * `request_too_large` (413, the 32 MB body limit) stays a bad request (shared table): a model
 * with a larger context window would refuse the same bytes.
 */
export const rules: ReadonlyArray<ErrorMapping.Rule> = [
  { code: ["overloaded_error"], error: "ServerError" },
  ...ErrorMapping.rules
]

/** The HTTP status Anthropic documents for each error type (used for mid-stream errors). */
export const statusOfErrorType: Readonly<Record<string, number>> = {
  invalid_request_error: 400,
  authentication_error: 401,
  billing_error: 402,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  timeout_error: 504,
  overloaded_error: 529
}

/** A failed HTTP response as a typed error. */
export const errorFromResponse = (failure: ErrorMapping.HttpFailure): Errors.ProviderError =>
  ErrorMapping.fromResponse(failure, rules)

/**
 * An `error` event in the middle of a stream (HTTP status was 200) as a typed error: the error
 * type picks the status Anthropic documents for it, which the table (Anthropic's `rules` unless
 * given) then maps.
 */
export const errorFromStreamEvent = (
  failure: { readonly errorType: string; readonly message: string; readonly body: string },
  context: { readonly provider: string; readonly deploymentId: string; readonly now: number },
  table: ReadonlyArray<ErrorMapping.Rule> = rules
): Errors.ProviderError => {
  const status = statusOfErrorType[failure.errorType] ?? 500
  const mapped = ErrorMapping.fromResponse(
    { ...context, status, headers: {}, body: failure.body },
    table
  )
  return Errors.makeProviderError(mapped._tag, {
    provider: context.provider,
    deploymentId: context.deploymentId,
    status,
    message: `${context.provider} stream error ${failure.errorType}: ${failure.message === "" ? "(no message)" : failure.message}`
  })
}

// ---------------------------------------------------------------------------
// Provider
// ---------------------------------------------------------------------------

import type { Options } from "../providers/Anthropic.js"

export const DEFAULT_API_BASE = "https://api.anthropic.com"
export const DEFAULT_API_VERSION = "2023-06-01"
export const DEFAULT_TIMEOUT = Duration.minutes(10)
export const DEFAULT_IDLE_TIMEOUT = Duration.minutes(2)

/** `<base>/v1/messages`, accepting a base that already ends with `/v1`. */
export const messagesUrl = (base: string): string => {
  const trimmed = base.replace(/\/+$/, "")
  return /\/v1$/.test(trimmed) ? `${trimmed}/messages` : `${trimmed}/v1/messages`
}

/** `<base>/v1/models/<model>` (Anthropic's "get a model"), accepting a base that ends with `/v1`. */
export const modelUrl = (base: string, model: string): string => {
  const trimmed = base.replace(/\/+$/, "")
  return `${/\/v1$/.test(trimmed) ? trimmed : `${trimmed}/v1`}/models/${encodeURIComponent(model)}`
}

const isEnd = (event: Sse.Event): boolean =>
  event.event === "message_stop" || (event.event === "message" && /"type"\s*:\s*"message_stop"/.test(event.data))

/** A target as this provider uses it, built once per target. */
interface Prepared {
  readonly endpoint: Http.Endpoint
  readonly url: string
  /** The deployment's model, which the health check GETs. */
  readonly modelUrl: string
  /** Parameters the deployment drops (its `dropParams` list), whatever the request. */
  readonly dropped: ReadonlyArray<keyof ChatRequest> | undefined
}

// never dropped, whatever a list says: without them there is no request
const essential: ReadonlySet<string> = new Set(["model", "messages"])

/**
 * The request with the target's model, without the parameters it drops. Anthropic refuses none
 * of ours: those it lacks (seed, penalties, reasoning_effort) are left out by `toWireRequest`.
 */
const adapt = (request: ChatRequest, target: Target, dropped: Prepared["dropped"]): ChatRequest => {
  const out: Record<string, unknown> = { ...request, model: target.model }
  if (dropped !== undefined) for (const name of dropped) delete out[name]
  return out as ChatRequest
}

export const make = (options: Options = {}): Effect.Effect<Provider, Errors.InvalidConfig, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const issues = [
      ...(options.errorRules === undefined ? [] : Http.checkRules(options.errorRules, "errorRules")),
      ...HealthHttp.checkOption(options.healthCheck)
    ]
    if (issues.length > 0) return yield* Effect.fail(Errors.InvalidConfig.fromIssues(issues))
    const client = yield* HttpClient.HttpClient
    const name = options.name ?? "anthropic"
    const envKey = options.apiKey !== undefined ? undefined : yield* Config.redacted("ANTHROPIC_API_KEY").pipe(
      Config.option,
      Effect.map(Option.filter((key) => Redacted.value(key).trim() !== "")),
      Effect.map(Option.getOrUndefined),
      Effect.orElseSucceed(() => undefined)
    )
    const defaultKey = options.apiKey ?? envKey
    const optionTimeout = options.timeout === undefined ? undefined : Duration.decode(options.timeout)
    const firstByteTimeout = options.firstByteTimeout === undefined ? undefined : Duration.decode(options.firstByteTimeout)
    const idleTimeout = Duration.decode(options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT)
    const beta = options.beta ?? []
    const wireOptions: WireOptions = { defaultMaxTokens: options.defaultMaxTokens, jsonMode: options.jsonMode }
    const table = options.errorRules === undefined || options.errorRules.length === 0
      ? rules
      : [...options.errorRules, ...rules]

    const prepare = (target: Target): Either.Either<Prepared, Errors.ProviderError> => {
      const apiKey = target.apiKey ?? defaultKey
      if (apiKey === undefined) {
        return Either.left(Errors.makeProviderError("Authentication", {
          provider: name,
          deploymentId: target.deploymentId,
          message: `${name}: no API key (set the deployment's apiKey, the apiKey option or ANTHROPIC_API_KEY)`
        }))
      }
      const headers: Record<string, string | Redacted.Redacted<string> | undefined> = {
        "anthropic-version": options.apiVersion ?? DEFAULT_API_VERSION,
        "anthropic-beta": beta.length > 0 ? beta.join(",") : undefined,
        ...options.headers,
        "x-api-key": apiKey
      }
      const endpoint = Http.makeEndpoint({ provider: name, target, headers, rules: table })
      const dropped = Array.isArray(target.dropParams)
        ? (target.dropParams as ReadonlyArray<string>).filter((param) => !essential.has(param)) as ReadonlyArray<keyof ChatRequest>
        : undefined
      const base = target.apiBase ?? options.apiBase ?? DEFAULT_API_BASE
      return Either.right({
        endpoint,
        url: messagesUrl(base),
        modelUrl: modelUrl(base, target.model),
        dropped: dropped !== undefined && dropped.length > 0 ? dropped : undefined
      })
    }

    // Built once per target: the router keeps its targets for its lifetime.
    const cache = new WeakMap<Target, Either.Either<Prepared, Errors.ProviderError>>()
    const prepared = (target: Target) => {
      let out = cache.get(target)
      if (out === undefined) {
        out = prepare(target)
        cache.set(target, out)
      }
      return out
    }

    const badRequest = (target: Target, reason: string) =>
      Errors.makeProviderError("BadRequest", {
        provider: name,
        deploymentId: target.deploymentId,
        message: `${name}: ${reason}`
      })

    const chat = (request: ChatRequest, target: Target): Effect.Effect<ChatResponse, Errors.ProviderError> =>
      Effect.suspend(() => {
        const p = prepared(target)
        if (Either.isLeft(p)) return Effect.fail(p.left)
        const { dropped, endpoint, url } = p.right
        const body = toWireRequest(adapt(request, target, dropped), wireOptions)
        if (Either.isLeft(body)) return Effect.fail(badRequest(target, body.left))
        return Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Http.postJson(client, endpoint, {
            url,
            body: body.right,
            timeout: target.timeout ?? optionTimeout ?? DEFAULT_TIMEOUT,
            decode: (json) => fromWireResponse(json, now)
          }))
      })

    const stream = (request: ChatRequest, target: Target): Stream.Stream<ChatChunk, Errors.ProviderError> =>
      Stream.suspend(() => {
        const p = prepared(target)
        if (Either.isLeft(p)) return Stream.fail(p.left)
        const { dropped, endpoint, url } = p.right
        const body = toWireRequest(adapt(request, target, dropped), { ...wireOptions, stream: true })
        if (Either.isLeft(body)) return Stream.fail(badRequest(target, body.left))
        return Stream.unwrap(Effect.map(Clock.currentTimeMillis, (now) => {
          const mapper = makeChunkMapper({
            createdMs: now,
            model: target.model,
            redact: (text) => Http.scrub(endpoint, text)
          })
          return Http.postSse<ChatChunk>(client, endpoint, {
            url,
            body: body.right,
            firstByteTimeout: firstByteTimeout ?? target.timeout ?? optionTimeout ?? DEFAULT_TIMEOUT,
            idleTimeout,
            isEnd,
            read: (event, out) => {
              const pushed = mapper.push(event.event, event.data)
              if (Either.isRight(pushed)) {
                for (const chunk of pushed.right) out.push(chunk)
                return undefined
              }
              const failure = pushed.left
              if (failure._tag === "Malformed") return Http.fail(endpoint, "MalformedResponse", `${name}: ${failure.message}`)
              const e = errorFromStreamEvent(failure, { provider: name, deploymentId: target.deploymentId, now }, table)
              return Http.fail(endpoint, e._tag, e.message, e.status)
            },
            endName: "message_stop"
          })
        }))
      })

    const embed = (_request: EmbeddingRequest, target: Target): Effect.Effect<EmbeddingResponse, Errors.ProviderError> =>
      Effect.fail(badRequest(target, "anthropic has no embeddings endpoint"))

    // The deployment's model (the key, the server and the model id, cheaply), a one-token chat, or none.
    const healthCheck: Provider["healthCheck"] = options.healthCheck === false
      ? undefined
      : options.healthCheck === "chat"
      ? (target) => Effect.asVoid(chat(healthCheckRequest(target.model), target))
      : (target) =>
        Effect.suspend(() => {
          const p = prepared(target)
          if (Either.isLeft(p)) return Effect.fail(p.left)
          return HealthHttp.get(client, p.right.endpoint, {
            url: p.right.modelUrl,
            timeout: target.timeout ?? optionTimeout ?? DEFAULT_TIMEOUT
          })
        })

    return healthCheck === undefined
      ? { name, enforcesTimeout: true, chat, stream, embed } satisfies Provider
      : { name, enforcesTimeout: true, chat, stream, embed, healthCheck } satisfies Provider
  })
