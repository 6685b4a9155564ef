/**
 * The Anthropic Messages provider (`POST /v1/messages`), mapped from and to our OpenAI-shaped
 * chat schemas.
 *
 * Requests:
 *
 * - system messages (wherever they are) become the top-level `system` prompt;
 * - text and image parts become content blocks (images from base64 data URLs of jpeg, png, gif
 *   or webp, or from http(s) URLs); file parts become document blocks (PDF as a base64 data URL,
 *   plain text as a data URL; a `file_id` uploaded to OpenAI is refused);
 * - assistant `tool_calls` become `tool_use` blocks (their JSON `arguments` parsed into `input`;
 *   empty arguments are `{}`); `tool` messages become `tool_result` blocks of a user message,
 *   consecutive ones merged into one message;
 * - `tools` become `{ name, description, input_schema }`; `tool_choice` `"auto"`, `"required"`,
 *   `"none"` and a named function become `auto`, `any`, `none` and `tool`;
 *   `parallel_tool_calls: false` becomes `disable_parallel_tool_use`;
 * - `stop` becomes `stop_sequences`, `user` `metadata.user_id`; `temperature` is clamped to
 *   Anthropic's range [0, 1]; `top_p` is passed on; `seed`, `presence_penalty` and
 *   `frequency_penalty` are dropped (Anthropic has none), and so is `reasoning_effort`
 *   (extended thinking is not mapped yet); a deployment's `dropParams` list drops the
 *   parameters it names too (`["top_p", "stop"]`);
 * - `cache_control` on a content part, a message (its last block, or the tool result) or a tool
 *   is put on the matching block (system prompts with one become a list of blocks);
 * - `max_tokens` is required by Anthropic: the request's `max_tokens`, else its
 *   `max_completion_tokens`, else `defaultMaxTokens` (4096);
 * - `response_format`: Anthropic has no JSON mode. A `json_schema` format is sent as
 *   `output_config.format` (structured outputs) unless `jsonMode: "prompt"`, which asks for JSON
 *   conforming to the schema in the system prompt instead (for models without structured
 *   outputs). `json_object` is always asked for in the system prompt. The reply text is passed
 *   on unchanged either way.
 *
 * Responses: text blocks are joined into `content`, `tool_use` blocks become `tool_calls`;
 * thinking and server-tool blocks are dropped. Stop reasons: `end_turn`, `stop_sequence`,
 * `pause_turn` → `stop`; `max_tokens`, `model_context_window_exceeded` → `length`; `tool_use` →
 * `tool_calls`; `refusal` → `content_filter`. Usage counts every input token in `prompt_tokens`
 * (`input_tokens + cache_read_input_tokens + cache_creation_input_tokens`) and keeps the cache
 * counts visible (see {@link Usage}).
 *
 * Streams: `message_start` gives the first chunk (role), text deltas give content chunks, a
 * `tool_use` block gives a tool-call delta with its id and name and its `input_json_delta`s
 * give argument deltas (indexed by tool call, from 0), `message_delta` gives the last chunk
 * with the finish reason and the usage; the stream ends at `message_stop`. `ping`, thinking,
 * server-tool blocks (`server_tool_use`, `mcp_tool_use` and their input deltas, results) and
 * unknown events are skipped, as `chat` drops them. An `error` event is a typed error (`overloaded_error` →
 * `ServerError`); a stream cut before `message_stop`, or an event that is not JSON, is a
 * `MalformedResponse`.
 *
 * Errors go through the `errorRules` option, then {@link rules} (Anthropic's rules, then the
 * shared `ErrorMapping` table): 529 overloaded → `ServerError`, "prompt is too long" →
 * `ContextWindowExceeded`, 429 → `RateLimited` with `retry-after` /
 * `anthropic-ratelimit-*-reset`. The API key never appears in an error, not even in part.
 *
 * Health checks (the router's probes, `Router.Config.healthCheck`): `GET /v1/models/{model}`
 * with the deployment's key, which proves the server up, the key accepted and the model id
 * known (an alias resolves), at no token cost; judged as a call is (a refused key is
 * `Authentication`, an unknown model `ModelNotFound`). See the `healthCheck` option.
 *
 * @example
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Effect } from "effect"
 * import { Anthropic } from "effect-llm-router"
 *
 * // the key comes from the deployment, the apiKey option or ANTHROPIC_API_KEY
 * const program = Effect.gen(function*() {
 *   const anthropic = yield* Anthropic.make({ defaultMaxTokens: 1024 })
 *   return yield* anthropic.chat(
 *     { model: "claude-sonnet-4-5", messages: [{ role: "user", content: "Hello" }] },
 *     { deploymentId: "claude-a", model: "claude-sonnet-4-5", apiBase: undefined, apiKey: undefined, timeout: undefined }
 *   )
 * }).pipe(Effect.provide(NodeHttpClient.layerUndici))
 * @since 0.1.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import type * as Redacted from "effect/Redacted"
import * as internal from "../internal/anthropic.js"
import type * as Errors from "../Errors.js"
import type { InvalidConfig } from "../Errors.js"
import type { ChatChunk, ChatRequest, ChatResponse, FinishReason, Provider, Usage as ChatUsage } from "../Provider.js"
import type * as ErrorMapping from "../ErrorMapping.js"

/**
 * Options of {@link make}. Every one is optional.
 *
 * - `apiKey`: the key when the deployment has none; else the `ANTHROPIC_API_KEY` config
 *   (environment) is read once, by `make`. Without any key, calls fail with `Authentication`.
 * - `apiBase`: the base URL when the deployment has none (default `https://api.anthropic.com`;
 *   a base ending in `/v1` is accepted too).
 * - `apiVersion`: the `anthropic-version` header (default `"2023-06-01"`).
 * - `beta`: `anthropic-beta` features, sent comma-separated.
 * - `headers`: extra headers on every request (`Redacted` values are kept out of errors and
 *   spans); they may override `anthropic-version` and `anthropic-beta`, never `x-api-key`.
 * - `defaultMaxTokens`: `max_tokens` when a request has none (default 4096).
 * - `jsonMode`: how a `json_schema` response format is honoured, see the module docs.
 * - `timeout`: bounds a whole non-streamed call when the deployment sets no timeout (default
 *   10 minutes).
 * - `firstByteTimeout`: bounds a stream's wait from sending until the first bytes of the body
 *   (default: the call timeout above).
 * - `idleTimeout`: bounds every later wait for stream data (default 2 minutes; Anthropic sends
 *   `ping` events while the model thinks, so a silent stream is a stuck one).
 * - `name`: the provider name put on errors (default `"anthropic"`).
 * - `errorRules`: your own error rules, tried before {@link rules} (first match wins): for a
 *   proxy with error codes of its own, or to change what a status means (`{ status: 409,
 *   error: "BadRequest" }` makes a 409 not retryable). They apply to error statuses, error
 *   objects in a 2xx body and `error` events in a stream alike (a stream's error event is
 *   matched with the status Anthropic documents for its type: `overloaded_error` is 529). Each
 *   rule needs a `status` (a code from 100 to 599, or a range `[from, to]`), a `code` list or a
 *   `message` pattern (no `g` or `y` flag), and an `error` tag; `make` fails with
 *   `InvalidConfig` naming each bad field otherwise.
 * - `healthCheck`: what the router's health checks call. `"models"` (default): `GET
 *   {apiBase}/v1/models/{model}`. `"chat"`: a message of at most one token to the deployment's
 *   model (`Provider.healthCheckRequest`), for Anthropic-compatible servers without the models
 *   endpoint, or to prove the model answers; it costs a few tokens per probe. `false`: no
 *   health check (the router does not probe these deployments).
 *
 * @example
 * import { Redacted } from "effect"
 * import type { Anthropic } from "effect-llm-router"
 *
 * const options: Anthropic.Options = {
 *   apiKey: Redacted.make("sk-ant-..."),
 *   beta: ["prompt-caching-2024-07-31"],
 *   defaultMaxTokens: 8192,
 *   idleTimeout: "30 seconds",
 *   // overloaded: wait like a rate limit rather than count as a server failure
 *   errorRules: [{ code: ["overloaded_error"], error: "RateLimited" }]
 * }
 * @category Options
 * @since 0.1.0
 */
export interface Options {
  readonly name?: string | undefined
  readonly apiKey?: Redacted.Redacted<string> | undefined
  readonly apiBase?: string | undefined
  readonly apiVersion?: string | undefined
  readonly beta?: ReadonlyArray<string> | undefined
  readonly headers?: Readonly<Record<string, string | Redacted.Redacted<string>>> | undefined
  readonly defaultMaxTokens?: number | undefined
  readonly jsonMode?: "native" | "prompt" | undefined
  readonly timeout?: Duration.DurationInput | undefined
  readonly firstByteTimeout?: Duration.DurationInput | undefined
  readonly idleTimeout?: Duration.DurationInput | undefined
  readonly errorRules?: ReadonlyArray<ErrorMapping.Rule> | undefined
  readonly healthCheck?: "models" | "chat" | false | undefined
}

/**
 * Builds the Anthropic provider over the `HttpClient` in context. Embeddings fail with a
 * `BadRequest` (Anthropic has no embeddings endpoint). Fails with `InvalidConfig` when
 * `errorRules` holds a rule that cannot work.
 *
 * @example
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Effect } from "effect"
 * import { Anthropic } from "effect-llm-router"
 *
 * const provider = Anthropic.make({ defaultMaxTokens: 1024 }).pipe(Effect.provide(NodeHttpClient.layerUndici))
 * @category Constructors
 * @since 0.1.0
 */
export const make: (options?: Options) => Effect.Effect<Provider, InvalidConfig, HttpClient.HttpClient> = internal.make

/**
 * A text content block of a request.
 *
 * @example
 * import type { Anthropic } from "effect-llm-router"
 * const block: Anthropic.TextBlock = { type: "text", text: "Hello" }
 * @category Models
 * @since 0.1.0
 */
export type TextBlock = internal.WireTextBlock

/**
 * An image content block of a request (base64 or URL source).
 *
 * @example
 * import type { Anthropic } from "effect-llm-router"
 * const block: Anthropic.ImageBlock = { type: "image", source: { type: "url", url: "https://example.com/cat.png" } }
 * @category Models
 * @since 0.1.0
 */
export type ImageBlock = internal.WireImageBlock

/**
 * A `tool_use` block of an assistant turn.
 *
 * @example
 * import type { Anthropic } from "effect-llm-router"
 * const block: Anthropic.ToolUseBlock = { type: "tool_use", id: "toolu_1", name: "weather", input: { city: "Oslo" } }
 * @category Models
 * @since 0.1.0
 */
export type ToolUseBlock = internal.WireToolUseBlock

/**
 * A `tool_result` block of a user turn.
 *
 * @example
 * import type { Anthropic } from "effect-llm-router"
 * const block: Anthropic.ToolResultBlock = { type: "tool_result", tool_use_id: "toolu_1", content: "12°C" }
 * @category Models
 * @since 0.1.0
 */
export type ToolResultBlock = internal.WireToolResultBlock

/**
 * One message of a Messages request.
 *
 * @example
 * import type { Anthropic } from "effect-llm-router"
 * const message: Anthropic.MessageParam = { role: "user", content: "Hello" }
 * @category Models
 * @since 0.1.0
 */
export type MessageParam = internal.WireMessage

/**
 * A tool definition of a Messages request.
 *
 * @example
 * import type { Anthropic } from "effect-llm-router"
 * const tool: Anthropic.ToolParam = { name: "weather", input_schema: { type: "object", properties: { city: { type: "string" } } } }
 * @category Models
 * @since 0.1.0
 */
export type ToolParam = internal.WireTool

/**
 * The `tool_choice` of a Messages request.
 *
 * @example
 * import type { Anthropic } from "effect-llm-router"
 * const choice: Anthropic.ToolChoiceParam = { type: "tool", name: "weather" }
 * @category Models
 * @since 0.1.0
 */
export type ToolChoiceParam = internal.WireToolChoice

/**
 * The body of `POST /v1/messages` as {@link toWireRequest} builds it (a subset of the SDK's
 * `MessageCreateParams`, assignable to it).
 *
 * @example
 * import type { Anthropic } from "effect-llm-router"
 * const body: Anthropic.MessagesRequest = { model: "claude-sonnet-4-5", max_tokens: 1024, messages: [{ role: "user", content: "Hi" }] }
 * @category Models
 * @since 0.1.0
 */
export type MessagesRequest = internal.WireRequest

/**
 * Options of {@link toWireRequest}: `defaultMaxTokens` and `jsonMode`, as in {@link Options}.
 *
 * @example
 * import type { Anthropic } from "effect-llm-router"
 * const options: Anthropic.WireOptions = { defaultMaxTokens: 1024, jsonMode: "prompt" }
 * @category Options
 * @since 0.1.0
 */
export type WireOptions = internal.WireOptions

/**
 * Builds the Messages request body from a chat request (`stream: true` adds the flag). Fails
 * with the reason when the request holds something Anthropic cannot take: an image format it
 * does not read, tool-call arguments that are not a JSON object, an image in a system message.
 * The provider turns that reason into a `BadRequest`.
 *
 * @example
 * import { Anthropic } from "effect-llm-router"
 * const body = Anthropic.toWireRequest({
 *   model: "claude-sonnet-4-5",
 *   messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }]
 * })
 * // Either.right({ model: "claude-sonnet-4-5", max_tokens: 4096, system: "Be brief.", messages: [{ role: "user", content: "Hi" }] })
 * @category Mapping
 * @since 0.1.0
 */
export const toWireRequest: {
  (request: ChatRequest, options: WireOptions & { readonly stream: true }): Either.Either<MessagesRequest & { stream: true }, string>
  (request: ChatRequest, options?: WireOptions & { readonly stream?: false | undefined }): Either.Either<MessagesRequest, string>
} = internal.toWireRequest

/**
 * Maps a Messages response body (parsed JSON) to a chat response; `createdMs` becomes
 * `created` (Anthropic sends no timestamp). Fails with a reason when the body is not a message.
 *
 * @example
 * import { Anthropic } from "effect-llm-router"
 * const response = Anthropic.fromWireResponse({
 *   id: "msg_1", type: "message", role: "assistant", model: "claude-sonnet-4-5",
 *   content: [{ type: "text", text: "Hi!" }], stop_reason: "end_turn",
 *   usage: { input_tokens: 5, output_tokens: 2 }
 * }, Date.now())
 * @category Mapping
 * @since 0.1.0
 */
export const fromWireResponse: (body: unknown, createdMs: number) => Either.Either<ChatResponse, string> =
  internal.fromWireResponse

/**
 * Anthropic's stop reason as our finish reason.
 *
 * @example
 * import { Anthropic } from "effect-llm-router"
 * Anthropic.toFinishReason("max_tokens") // "length"
 * @category Mapping
 * @since 0.1.0
 */
export const toFinishReason: (reason: string | null | undefined) => FinishReason | null = internal.toFinishReason

/**
 * Why a stream could not go on: an event we could not read, or an `error` event.
 *
 * @example
 * import type { Anthropic } from "effect-llm-router"
 * const failure: Anthropic.StreamFailure = { _tag: "Malformed", message: "event content_block_delta carries data that is not JSON" }
 * @category Errors
 * @since 0.1.0
 */
export type StreamFailure = internal.StreamFailure

/**
 * Turns one stream's server-sent events, in order, into chat chunks.
 *
 * @example
 * import { Anthropic } from "effect-llm-router"
 * const mapper = Anthropic.makeChunkMapper({ createdMs: Date.now(), model: "claude-sonnet-4-5" })
 * mapper.push("message_start", JSON.stringify({ type: "message_start", message: { id: "msg_1", model: "claude-sonnet-4-5" } }))
 * mapper.push("content_block_delta", JSON.stringify({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Hi" } }))
 * // Either.right([{ ..., choices: [{ index: 0, delta: { content: "Hi" }, finish_reason: null }] }])
 * @category Models
 * @since 0.1.0
 */
export interface ChunkMapper {
  /** Maps one event (its SSE name and data). */
  readonly push: (event: string, data: string) => Either.Either<ReadonlyArray<ChatChunk>, StreamFailure>
  /** Whether `message_stop` arrived. */
  readonly done: () => boolean
}

/**
 * Makes a {@link ChunkMapper}; `createdMs` becomes every chunk's `created`, `model` their
 * model until `message_start` names it. `redact` is applied to the upstream text a failure
 * keeps (an `error` event's message and data) before that text is cut to length: pass one that
 * takes your API key out, so that no part of it survives the cut.
 *
 * @example
 * import { Anthropic } from "effect-llm-router"
 * const key = "sk-ant-..."
 * const mapper = Anthropic.makeChunkMapper({
 *   createdMs: 0,
 *   model: "claude-sonnet-4-5",
 *   redact: (text) => text.split(key).join("<redacted>")
 * })
 * @category Mapping
 * @since 0.1.0
 */
export const makeChunkMapper: (options: {
  readonly createdMs: number
  readonly model: string
  readonly redact?: ((text: string) => string) | undefined
}) => ChunkMapper = internal.makeChunkMapper

/**
 * Usage as this provider reports it: our usage plus the prompt-cache counts.
 * `prompt_tokens` counts every input token (`input_tokens + cache_read_input_tokens +
 * cache_creation_input_tokens`), `prompt_tokens_details.cached_tokens` the tokens read from the
 * cache (OpenAI's field), and Anthropic's two cache counts are copied as they came.
 *
 * @example
 * import type { Anthropic } from "effect-llm-router"
 * const usage: Anthropic.Usage = {
 *   prompt_tokens: 1100, completion_tokens: 20, total_tokens: 1120,
 *   prompt_tokens_details: { cached_tokens: 1000 },
 *   cache_read_input_tokens: 1000, cache_creation_input_tokens: 0
 * }
 * @category Models
 * @since 0.1.0
 */
export interface Usage extends ChatUsage {
  readonly prompt_tokens_details: { readonly cached_tokens: number }
  readonly cache_read_input_tokens: number
  readonly cache_creation_input_tokens: number
}

/**
 * Anthropic's error rules, ahead of the shared `ErrorMapping.rules`: `overloaded_error` →
 * `ServerError` at any status; `billing_error` and "credit balance is too low" become
 * `QuotaExceeded` (shared table): the deployment leaves rotation for long.
 *
 * @example
 * import { Anthropic, ErrorMapping } from "effect-llm-router"
 * ErrorMapping.fromResponse({
 *   provider: "anthropic", deploymentId: "a", status: 529, headers: {}, now: Date.now(),
 *   body: '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
 * }, Anthropic.rules)._tag // "ServerError"
 * @category Mapping
 * @since 0.1.0
 */
export const rules: ReadonlyArray<ErrorMapping.Rule> = internal.rules

/**
 * Maps an `error` event of a stream to its typed error. The HTTP status was 200; the error's
 * `status` is the one Anthropic documents for its type (`overloaded_error` → 529). `table`
 * defaults to {@link rules}.
 *
 * @example
 * import { Anthropic } from "effect-llm-router"
 * Anthropic.errorFromStreamEvent(
 *   { errorType: "overloaded_error", message: "Overloaded", body: '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}' },
 *   { provider: "anthropic", deploymentId: "a", now: Date.now() }
 * )._tag // "ServerError"
 * @category Mapping
 * @since 0.1.0
 */
export const errorFromStreamEvent: (
  failure: { readonly errorType: string; readonly message: string; readonly body: string },
  context: { readonly provider: string; readonly deploymentId: string; readonly now: number },
  table?: ReadonlyArray<ErrorMapping.Rule>
) => Errors.ProviderError = internal.errorFromStreamEvent

/**
 * The default base URL, `https://api.anthropic.com`.
 *
 * @example
 * import { Anthropic } from "effect-llm-router"
 * Anthropic.defaultApiBase // "https://api.anthropic.com"
 * @category Constants
 * @since 0.1.0
 */
export const defaultApiBase: string = internal.DEFAULT_API_BASE

/**
 * The default `anthropic-version` header, `"2023-06-01"`.
 *
 * @example
 * import { Anthropic } from "effect-llm-router"
 * Anthropic.defaultApiVersion // "2023-06-01"
 * @category Constants
 * @since 0.1.0
 */
export const defaultApiVersion: string = internal.DEFAULT_API_VERSION

/**
 * The default `max_tokens`, 4096.
 *
 * @example
 * import { Anthropic } from "effect-llm-router"
 * Anthropic.defaultMaxTokens // 4096
 * @category Constants
 * @since 0.1.0
 */
export const defaultMaxTokens: number = internal.DEFAULT_MAX_TOKENS
