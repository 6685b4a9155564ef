/**
 * The `Provider` interface and the request/response schemas every provider speaks.
 *
 * The wire shape is OpenAI's chat completions, the lingua franca of LLM APIs: a provider for
 * another dialect (Anthropic Messages, say) maps from and to these schemas.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Stream from "effect/Stream"
import type { ProviderError } from "./Errors.js"

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/**
 * A prompt-cache breakpoint: the prompt up to and including the part, message or tool that
 * carries it may be cached (Anthropic's `cache_control`; `ttl` 5 minutes by default, or 1 hour).
 * Providers that cache on their own or not at all (OpenAI-compatible servers) do not send it.
 *
 * @example
 * import type { Provider } from "effect-llm-router"
 * declare const longDocument: string
 * const part: Provider.TextPart = { type: "text", text: longDocument, cache_control: { type: "ephemeral" } }
 * @category Schemas
 * @since 0.1.0
 */
export const CacheControl = Schema.Struct({
  type: Schema.Literal("ephemeral"),
  ttl: Schema.optional(Schema.Literal("5m", "1h"))
})
/**
 * @category Schemas
 * @since 0.1.0
 */
export type CacheControl = typeof CacheControl.Type

/**
 * A text part of a message's content.
 *
 * @example
 * import type { Provider } from "effect-llm-router"
 * const part: Provider.TextPart = { type: "text", text: "Hello" }
 * @category Schemas
 * @since 0.1.0
 */
export const TextPart = Schema.Struct({
  type: Schema.Literal("text"),
  text: Schema.String,
  cache_control: Schema.optional(CacheControl)
})
/**
 * @category Schemas
 * @since 0.1.0
 */
export type TextPart = typeof TextPart.Type

/**
 * An image part of a message's content (URL or data URL).
 *
 * @example
 * import type { Provider } from "effect-llm-router"
 * const part: Provider.ImagePart = { type: "image_url", image_url: { url: "https://example.com/cat.png" } }
 * @category Schemas
 * @since 0.1.0
 */
export const ImagePart = Schema.Struct({
  type: Schema.Literal("image_url"),
  image_url: Schema.Struct({
    url: Schema.String,
    detail: Schema.optional(Schema.Literal("auto", "low", "high"))
  }),
  cache_control: Schema.optional(CacheControl)
})
/**
 * @category Schemas
 * @since 0.1.0
 */
export type ImagePart = typeof ImagePart.Type

/**
 * A file part (OpenAI's shape): a document inline as a data URL in `file_data`
 * (`data:application/pdf;base64,...`), or the id of a file uploaded to OpenAI in `file_id`.
 * The Anthropic provider takes PDF and plain-text data URLs.
 *
 * @example
 * import type { Provider } from "effect-llm-router"
 * const part: Provider.FilePart = { type: "file", file: { filename: "report.pdf", file_data: "data:application/pdf;base64,JVBERi0x" } }
 * @category Schemas
 * @since 0.1.0
 */
export const FilePart = Schema.Struct({
  type: Schema.Literal("file"),
  file: Schema.Struct({
    file_data: Schema.optional(Schema.String),
    file_id: Schema.optional(Schema.String),
    filename: Schema.optional(Schema.String)
  }),
  cache_control: Schema.optional(CacheControl)
})
/**
 * @category Schemas
 * @since 0.1.0
 */
export type FilePart = typeof FilePart.Type

/**
 * One part of a message's content.
 *
 * @category Schemas
 * @since 0.1.0
 */
export const ContentPart = Schema.Union(TextPart, ImagePart, FilePart)
/**
 * @category Schemas
 * @since 0.1.0
 */
export type ContentPart = typeof ContentPart.Type

/**
 * A message's content: a plain string or a list of parts.
 *
 * @category Schemas
 * @since 0.1.0
 */
export const Content = Schema.Union(Schema.String, Schema.Array(ContentPart))
/**
 * @category Schemas
 * @since 0.1.0
 */
export type Content = typeof Content.Type

/**
 * A tool call made by the assistant (OpenAI function-call shape; `arguments` is a JSON string).
 *
 * @example
 * import type { Provider } from "effect-llm-router"
 * const call: Provider.ToolCall = { id: "call_1", type: "function", function: { name: "weather", arguments: "{\"city\":\"Oslo\"}" } }
 * @category Schemas
 * @since 0.1.0
 */
export const ToolCall = Schema.Struct({
  id: Schema.String,
  type: Schema.Literal("function"),
  function: Schema.Struct({ name: Schema.String, arguments: Schema.String })
})
/**
 * @category Schemas
 * @since 0.1.0
 */
export type ToolCall = typeof ToolCall.Type

/**
 * A system message.
 *
 * @category Schemas
 * @since 0.1.0
 */
export const SystemMessage = Schema.Struct({
  role: Schema.Literal("system"),
  content: Content,
  name: Schema.optional(Schema.String),
  /** A cache breakpoint after this message (on its last content block). */
  cache_control: Schema.optional(CacheControl)
})
/**
 * A system message (the schema's type).
 *
 * @category Schemas
 * @since 0.1.0
 */
export type SystemMessage = typeof SystemMessage.Type

/**
 * A user message.
 *
 * @category Schemas
 * @since 0.1.0
 */
export const UserMessage = Schema.Struct({
  role: Schema.Literal("user"),
  content: Content,
  name: Schema.optional(Schema.String),
  /** A cache breakpoint after this message (on its last content block). */
  cache_control: Schema.optional(CacheControl)
})
/**
 * A user message (the schema's type).
 *
 * @category Schemas
 * @since 0.1.0
 */
export type UserMessage = typeof UserMessage.Type

/**
 * An assistant message: text, tool calls, or both.
 *
 * @category Schemas
 * @since 0.1.0
 */
export const AssistantMessage = Schema.Struct({
  role: Schema.Literal("assistant"),
  content: Schema.optional(Schema.NullOr(Content)),
  name: Schema.optional(Schema.String),
  tool_calls: Schema.optional(Schema.Array(ToolCall)),
  refusal: Schema.optional(Schema.NullOr(Schema.String)),
  /** A cache breakpoint after this message (on its last content block). */
  cache_control: Schema.optional(CacheControl)
})
/**
 * @category Schemas
 * @since 0.1.0
 */
export type AssistantMessage = typeof AssistantMessage.Type

/**
 * The result of a tool call, sent back to the model.
 *
 * @category Schemas
 * @since 0.1.0
 */
export const ToolMessage = Schema.Struct({
  role: Schema.Literal("tool"),
  content: Content,
  tool_call_id: Schema.String,
  /** A cache breakpoint after this tool result. */
  cache_control: Schema.optional(CacheControl)
})
/**
 * A tool message (the schema's type).
 *
 * @category Schemas
 * @since 0.1.0
 */
export type ToolMessage = typeof ToolMessage.Type

/**
 * Any chat message.
 *
 * @example
 * import type { Provider } from "effect-llm-router"
 * const messages: ReadonlyArray<Provider.Message> = [
 *   { role: "system", content: "Be brief." },
 *   { role: "user", content: "Hi" }
 * ]
 * @category Schemas
 * @since 0.1.0
 */
export const Message = Schema.Union(SystemMessage, UserMessage, AssistantMessage, ToolMessage)
/**
 * @category Schemas
 * @since 0.1.0
 */
export type Message = typeof Message.Type

// ---------------------------------------------------------------------------
// Chat request
// ---------------------------------------------------------------------------

/**
 * A tool (function) the model may call; `parameters` is a JSON Schema object.
 *
 * @category Schemas
 * @since 0.1.0
 */
export const Tool = Schema.Struct({
  type: Schema.Literal("function"),
  function: Schema.Struct({
    name: Schema.String,
    description: Schema.optional(Schema.String),
    parameters: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
    strict: Schema.optional(Schema.Boolean)
  }),
  /** A cache breakpoint after the tool definitions up to this one. */
  cache_control: Schema.optional(CacheControl)
})
/**
 * @category Schemas
 * @since 0.1.0
 */
export type Tool = typeof Tool.Type

/**
 * Whether and which tool the model must call.
 *
 * @category Schemas
 * @since 0.1.0
 */
export const ToolChoice = Schema.Union(
  Schema.Literal("none", "auto", "required"),
  Schema.Struct({ type: Schema.Literal("function"), function: Schema.Struct({ name: Schema.String }) })
)
/**
 * @category Schemas
 * @since 0.1.0
 */
export type ToolChoice = typeof ToolChoice.Type

/**
 * The format the model must answer in.
 *
 * @category Schemas
 * @since 0.1.0
 */
export const ResponseFormat = Schema.Union(
  Schema.Struct({ type: Schema.Literal("text") }),
  Schema.Struct({ type: Schema.Literal("json_object") }),
  Schema.Struct({
    type: Schema.Literal("json_schema"),
    json_schema: Schema.Struct({
      name: Schema.String,
      description: Schema.optional(Schema.String),
      schema: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
      strict: Schema.optional(Schema.Boolean)
    })
  })
)
/**
 * @category Schemas
 * @since 0.1.0
 */
export type ResponseFormat = typeof ResponseFormat.Type

/**
 * Routing metadata of a request (never sent upstream). `tags` restrict the request to
 * deployments carrying every listed tag and are the keys spend is kept under; `region` (one or
 * a list) restricts it to deployments whose `region` is one of them, unless `options.region`
 * says otherwise.
 *
 * @example
 * import type { Provider } from "effect-llm-router"
 * const metadata: Provider.RequestMetadata = { tags: ["team-a"], region: "eu-west-1" }
 * @category Schemas
 * @since 0.1.0
 */
export const RequestMetadata = Schema.Struct(
  {
    tags: Schema.optional(Schema.Array(Schema.String)),
    region: Schema.optional(Schema.Union(Schema.String, Schema.Array(Schema.String)))
  },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
)
/**
 * @category Schemas
 * @since 0.1.0
 */
export type RequestMetadata = typeof RequestMetadata.Type

/**
 * A chat completion request. `model` is the model group the caller asks for; the router
 * replaces it with the chosen deployment's upstream model before calling the provider.
 *
 * @example
 * import type { Provider } from "effect-llm-router"
 * const request: Provider.ChatRequest = {
 *   model: "claude-fast",
 *   messages: [{ role: "user", content: "Hello" }],
 *   max_tokens: 100,
 *   metadata: { tags: ["team-a"] }
 * }
 * @category Schemas
 * @since 0.1.0
 */
export const ChatRequest = Schema.Struct({
  model: Schema.String,
  messages: Schema.Array(Message),
  tools: Schema.optional(Schema.Array(Tool)),
  tool_choice: Schema.optional(ToolChoice),
  /** Whether the model may call several tools in one turn (`false`: at most one). */
  parallel_tool_calls: Schema.optional(Schema.Boolean),
  temperature: Schema.optional(Schema.Number),
  top_p: Schema.optional(Schema.Number),
  presence_penalty: Schema.optional(Schema.Number),
  frequency_penalty: Schema.optional(Schema.Number),
  /**
   * The most tokens to generate. For OpenAI's reasoning models (o-series, gpt-5), which refuse
   * `max_tokens`, the OpenAI-compatible provider sends it as `max_completion_tokens`.
   */
  max_tokens: Schema.optional(Schema.Number),
  /** The most tokens to generate, reasoning tokens included (OpenAI's newer name for the limit). */
  max_completion_tokens: Schema.optional(Schema.Number),
  /** How hard a reasoning model thinks before it answers (OpenAI's reasoning models). */
  reasoning_effort: Schema.optional(Schema.Literal("minimal", "low", "medium", "high")),
  stop: Schema.optional(Schema.Union(Schema.String, Schema.Array(Schema.String))),
  response_format: Schema.optional(ResponseFormat),
  seed: Schema.optional(Schema.Number),
  user: Schema.optional(Schema.String),
  metadata: Schema.optional(RequestMetadata)
})
/**
 * @category Schemas
 * @since 0.1.0
 */
export type ChatRequest = typeof ChatRequest.Type

// ---------------------------------------------------------------------------
// Chat response
// ---------------------------------------------------------------------------

/**
 * Token usage of one call. `prompt_tokens` counts every input token, cached or not; the
 * optional cache counts say how many of them were read from or written to a prompt cache
 * (priced apart when the deployment's pricing says so).
 *
 * @example
 * import type { Provider } from "effect-llm-router"
 * const usage: Provider.Usage = { prompt_tokens: 12, completion_tokens: 30, total_tokens: 42 }
 * @category Schemas
 * @since 0.1.0
 */
export const Usage = Schema.Struct({
  prompt_tokens: Schema.Number,
  completion_tokens: Schema.Number,
  total_tokens: Schema.Number,
  /** OpenAI's breakdown: `cached_tokens` of the prompt were read from the prompt cache. */
  prompt_tokens_details: Schema.optional(
    Schema.NullOr(Schema.Struct({ cached_tokens: Schema.optional(Schema.NullOr(Schema.Number)) }, Schema.Record({ key: Schema.String, value: Schema.Unknown })))
  ),
  completion_tokens_details: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.Unknown }))),
  /** Prompt tokens read from the cache (Anthropic's name; included in `prompt_tokens`). */
  cache_read_input_tokens: Schema.optional(Schema.Number),
  /** Prompt tokens written to the cache (Anthropic's name; included in `prompt_tokens`). */
  cache_creation_input_tokens: Schema.optional(Schema.Number)
})
/**
 * @category Schemas
 * @since 0.1.0
 */
export type Usage = typeof Usage.Type

/**
 * Why the model stopped.
 *
 * @category Schemas
 * @since 0.1.0
 */
export const FinishReason = Schema.Literal("stop", "length", "tool_calls", "content_filter", "function_call")
/**
 * @category Schemas
 * @since 0.1.0
 */
export type FinishReason = typeof FinishReason.Type

/**
 * One choice of a chat response.
 *
 * @category Schemas
 * @since 0.1.0
 */
export const Choice = Schema.Struct({
  index: Schema.Number,
  message: AssistantMessage,
  finish_reason: Schema.NullOr(FinishReason)
})
/**
 * @category Schemas
 * @since 0.1.0
 */
export type Choice = typeof Choice.Type

/**
 * A chat completion response.
 *
 * @example
 * import type { Provider } from "effect-llm-router"
 * const response: Provider.ChatResponse = {
 *   id: "chatcmpl-1",
 *   object: "chat.completion",
 *   created: 0,
 *   model: "gpt-4o-mini",
 *   choices: [{ index: 0, message: { role: "assistant", content: "Hi!" }, finish_reason: "stop" }],
 *   usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 }
 * }
 * @category Schemas
 * @since 0.1.0
 */
export const ChatResponse = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("chat.completion"),
  created: Schema.Number,
  model: Schema.String,
  choices: Schema.Array(Choice),
  usage: Schema.optional(Usage)
})
/**
 * @category Schemas
 * @since 0.1.0
 */
export type ChatResponse = typeof ChatResponse.Type

/**
 * A streamed piece of a tool call: the first delta of a call carries `id` and the function
 * name, later ones append to `arguments`.
 *
 * @category Schemas
 * @since 0.1.0
 */
export const ToolCallDelta = Schema.Struct({
  index: Schema.Number,
  id: Schema.optional(Schema.String),
  type: Schema.optional(Schema.Literal("function")),
  function: Schema.optional(
    Schema.Struct({ name: Schema.optional(Schema.String), arguments: Schema.optional(Schema.String) })
  )
})
/**
 * @category Schemas
 * @since 0.1.0
 */
export type ToolCallDelta = typeof ToolCallDelta.Type

/**
 * One chunk of a streamed chat response (OpenAI `chat.completion.chunk`). The last chunk
 * may carry `usage` and no choices.
 *
 * @example
 * import type { Provider } from "effect-llm-router"
 * const chunk: Provider.ChatChunk = {
 *   id: "chatcmpl-1",
 *   object: "chat.completion.chunk",
 *   created: 0,
 *   model: "gpt-4o-mini",
 *   choices: [{ index: 0, delta: { content: "Hel" }, finish_reason: null }]
 * }
 * @category Schemas
 * @since 0.1.0
 */
export const ChatChunk = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("chat.completion.chunk"),
  created: Schema.Number,
  model: Schema.String,
  choices: Schema.Array(
    Schema.Struct({
      index: Schema.Number,
      delta: Schema.Struct({
        role: Schema.optional(Schema.Literal("assistant")),
        content: Schema.optional(Schema.NullOr(Schema.String)),
        tool_calls: Schema.optional(Schema.Array(ToolCallDelta)),
        refusal: Schema.optional(Schema.NullOr(Schema.String))
      }),
      finish_reason: Schema.NullOr(FinishReason)
    })
  ),
  usage: Schema.optional(Schema.NullOr(Usage))
})
/**
 * @category Schemas
 * @since 0.1.0
 */
export type ChatChunk = typeof ChatChunk.Type

// ---------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------

/**
 * An embedding request. `model` is the model group.
 *
 * @example
 * import type { Provider } from "effect-llm-router"
 * const request: Provider.EmbeddingRequest = { model: "embed", input: ["hello", "world"] }
 * @category Schemas
 * @since 0.1.0
 */
export const EmbeddingRequest = Schema.Struct({
  model: Schema.String,
  input: Schema.Union(Schema.String, Schema.Array(Schema.String)),
  dimensions: Schema.optional(Schema.Number),
  encoding_format: Schema.optional(Schema.Literal("float", "base64")),
  user: Schema.optional(Schema.String),
  metadata: Schema.optional(RequestMetadata)
})
/**
 * @category Schemas
 * @since 0.1.0
 */
export type EmbeddingRequest = typeof EmbeddingRequest.Type

/**
 * An embedding response.
 *
 * @category Schemas
 * @since 0.1.0
 */
export const EmbeddingResponse = Schema.Struct({
  object: Schema.Literal("list"),
  model: Schema.String,
  data: Schema.Array(
    Schema.Struct({
      object: Schema.Literal("embedding"),
      index: Schema.Number,
      embedding: Schema.Union(Schema.Array(Schema.Number), Schema.String)
    })
  ),
  usage: Schema.optional(
    Schema.Struct({ prompt_tokens: Schema.Number, total_tokens: Schema.Number })
  )
})
/**
 * @category Schemas
 * @since 0.1.0
 */
export type EmbeddingResponse = typeof EmbeddingResponse.Type

// ---------------------------------------------------------------------------
// Provider
// ---------------------------------------------------------------------------

/**
 * The upstream's own view of its rate limits, read from a response's headers.
 *
 * @category Models
 * @since 0.1.0
 */
export interface RateLimitInfo {
  readonly remainingRequests: number | undefined
  readonly remainingTokens: number | undefined
  readonly limitRequests: number | undefined
  readonly limitTokens: number | undefined
  /** Milliseconds until the request window resets, when the upstream says. */
  readonly resetRequestsMs?: number | undefined
  /** Milliseconds until the token window resets, when the upstream says. */
  readonly resetTokensMs?: number | undefined
}

/**
 * Where one call goes: the deployment the router chose, as the provider needs it.
 *
 * @category Models
 * @since 0.1.0
 */
export interface Target {
  /** The deployment's stable id; providers put it on every error they raise. */
  readonly deploymentId: string
  /** The upstream model id (the request's `model` is already set to it). */
  readonly model: string
  readonly apiBase: string | undefined
  readonly apiKey: Redacted.Redacted<string> | undefined
  /**
   * The deployment's timeout, else the router's when one was configured; `undefined` lets the
   * provider apply its own default.
   */
  readonly timeout: Duration.Duration | undefined
  /**
   * The deployment's `dropParams`: `true` drops the parameters the provider knows the model
   * refuses (instead of failing with a `BadRequest`), a list drops the parameters it names too.
   */
  readonly dropParams?: boolean | ReadonlyArray<string> | undefined
  /**
   * Where a provider reports the rate-limit headers of a successful response; the router
   * keeps them in its state for usage-based routing. Absent when nobody listens.
   */
  readonly reportRateLimit?: ((info: RateLimitInfo) => Effect.Effect<void>) | undefined
}

/**
 * One upstream API dialect. A deployment binds a provider to an endpoint (base URL, key,
 * upstream model); the router calls it with the request and that {@link Target}.
 *
 * Providers map every failure to a {@link ProviderError} carrying `provider` (the provider's
 * `name`) and `deploymentId` (from the target). They do not retry: the router owns retries.
 *
 * @example
 * import { Effect, Stream } from "effect"
 * import { Errors, type Provider } from "effect-llm-router"
 *
 * const echo: Provider.Provider = {
 *   name: "echo",
 *   chat: (request, target) => Effect.succeed({
 *     id: "1", object: "chat.completion", created: 0, model: target.model,
 *     choices: [{ index: 0, message: { role: "assistant", content: "echo" }, finish_reason: "stop" }]
 *   }),
 *   stream: (_request, target) => Stream.fail(new Errors.BadRequest({
 *     provider: "echo", deploymentId: target.deploymentId, message: "streaming not supported"
 *   })),
 *   embed: (_request, target) => Effect.fail(new Errors.BadRequest({
 *     provider: "echo", deploymentId: target.deploymentId, message: "embeddings not supported"
 *   }))
 * }
 * @category Models
 * @since 0.1.0
 */
export interface Provider {
  readonly name: string
  /**
   * `true` when the provider itself ends a call that runs past `target.timeout` with a
   * `Timeout` error (for streams: until the first chunk). The router then skips its own timeout
   * race, which costs a forked fiber and a timer per attempt. Leave it out and the router
   * enforces the timeout.
   */
  readonly enforcesTimeout?: boolean | undefined
  readonly chat: (request: ChatRequest, target: Target) => Effect.Effect<ChatResponse, ProviderError>
  readonly stream: (request: ChatRequest, target: Target) => Stream.Stream<ChatChunk, ProviderError>
  readonly embed: (request: EmbeddingRequest, target: Target) => Effect.Effect<EmbeddingResponse, ProviderError>
  /**
   * The cheapest call that says whether the target's deployment is up: the router's health
   * checks (`Router.Config.healthCheck`, off by default) run it every interval per deployment.
   * It succeeds when the deployment answered; it fails with the {@link ProviderError} a call
   * would get (mapped the same way: a refused key is `Authentication`, a 5xx `ServerError`),
   * since the router judges a failed probe as it judges a failed call; its errors never carry
   * the key. It uses the target's key and base URL. `target.timeout` is the probe's timeout: the
   * router cuts the probe then (a second later, as a backstop, when the provider says it
   * `enforcesTimeout`: it should then end the probe by `target.timeout` itself, with a
   * `Timeout`). The built-in providers define one (OpenAI-compatible: `GET {apiBase}/models`;
   * Anthropic: `GET /v1/models/{model}`); a provider without one is not probed (wrap it with
   * {@link withChatHealthCheck} to probe it with a one-token chat).
   */
  readonly healthCheck?: ((target: Target) => Effect.Effect<void, ProviderError>) | undefined
}

/**
 * The request of a chat health check: one short user message, at most one token of answer.
 *
 * @example
 * import { Provider } from "effect-llm-router"
 * Provider.healthCheckRequest("gpt-4o-mini") // { model: "gpt-4o-mini", messages: [{ role: "user", content: "ping" }], max_tokens: 1 }
 * @category Health checks
 * @since 0.1.0
 */
export const healthCheckRequest = (model: string): ChatRequest => ({
  model,
  messages: [{ role: "user", content: "ping" }],
  max_tokens: 1
})

/**
 * A health check made of the provider's own chat: {@link healthCheckRequest} (one token of
 * answer) to the target's model. It costs a few tokens per probe; in exchange it proves the
 * model itself answers, not only the server. An answer the upstream refuses as a bad request
 * still proves the deployment alive (the router judges it so, as it does for calls).
 *
 * @example
 * import { Provider } from "effect-llm-router"
 * declare const custom: Provider.Provider
 * const probed: Provider.Provider = { ...custom, healthCheck: Provider.chatHealthCheck(custom) }
 * @category Health checks
 * @since 0.1.0
 */
export const chatHealthCheck = (provider: Provider) => (target: Target): Effect.Effect<void, ProviderError> =>
  Effect.asVoid(provider.chat(healthCheckRequest(target.model), target))

/**
 * The provider, with a {@link chatHealthCheck} as its `healthCheck` (replacing any it had): for
 * providers that define none, so that the router's health checks probe their deployments.
 * The provider's methods are called on the provider itself.
 *
 * @example
 * import { Provider } from "effect-llm-router"
 * declare const custom: Provider.Provider
 * const probed = Provider.withChatHealthCheck(custom)
 * @category Health checks
 * @since 0.1.0
 */
export const withChatHealthCheck = (provider: Provider): Provider => ({
  name: provider.name,
  enforcesTimeout: provider.enforcesTimeout,
  chat: (request, target) => provider.chat(request, target),
  stream: (request, target) => provider.stream(request, target),
  embed: (request, target) => provider.embed(request, target),
  healthCheck: chatHealthCheck(provider)
})

/**
 * Whether a value is a {@link Provider} (used to validate deployment config).
 *
 * @example
 * import { Provider } from "effect-llm-router"
 * Provider.isProvider({ name: "x", chat: () => {}, stream: () => {}, embed: () => {} }) // true
 * @category Guards
 * @since 0.1.0
 */
export const isProvider = (u: unknown): u is Provider =>
  typeof u === "object" && u !== null &&
  typeof (u as Provider).name === "string" &&
  typeof (u as Provider).chat === "function" &&
  typeof (u as Provider).stream === "function" &&
  typeof (u as Provider).embed === "function" &&
  ((u as Provider).healthCheck === undefined || typeof (u as Provider).healthCheck === "function")
