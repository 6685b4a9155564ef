/**
 * Compile-time check (tsc runs over test/ in `npm test`; vitest does not run this file): the
 * request bodies the OpenAI-compatible provider sends type-check against the official `openai`
 * SDK's request types, so our dialect cannot drift from theirs unnoticed.
 *
 * Bodies are built by the provider's own functions (`toWireChatRequest`,
 * `toWireEmbeddingRequest`) from our `ChatRequest` / `EmbeddingRequest`.
 */
import * as Either from "effect/Either"
import type OpenAI from "openai"
import { toWireChatRequest, toWireEmbeddingRequest } from "../../src/internal/openai.js"
import type { ChatRequest, EmbeddingRequest } from "../../src/Provider.js"

declare const build: <A>(either: Either.Either<A, string>) => A

// -- plain text ---------------------------------------------------------------

const simple: ChatRequest = {
  model: "gpt-4o-mini",
  messages: [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Hello", name: "ada" }
  ],
  temperature: 0.2,
  top_p: 0.9,
  max_tokens: 100,
  stop: ["\n\n"],
  seed: 7,
  user: "user-1",
  metadata: { tags: ["team-a"] }
}

export const simpleBody: OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming = build(
  toWireChatRequest(simple)
)
export const simpleStreamBody: OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming = build(
  toWireChatRequest(simple, { stream: true, includeUsage: true })
)
// either of them is also a ChatCompletionCreateParams
export const anyBody: OpenAI.Chat.Completions.ChatCompletionCreateParams = build(toWireChatRequest(simple))

// -- content parts --------------------------------------------------------------

const parts: ChatRequest = {
  model: "gpt-4o",
  messages: [
    { role: "system", content: [{ type: "text", text: "You describe images." }] },
    {
      role: "user",
      content: [
        { type: "text", text: "What is this?" },
        { type: "image_url", image_url: { url: "https://example.com/cat.png", detail: "low" } },
        { type: "file", file: { filename: "report.pdf", file_data: "data:application/pdf;base64,JVBERi0x" } }
      ]
    },
    { role: "assistant", content: [{ type: "text", text: "A cat." }] },
    { role: "assistant", content: null, refusal: null }
  ],
  stop: "END"
}

export const partsBody: OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming = build(
  toWireChatRequest(parts)
)

// -- tools ----------------------------------------------------------------------

const tools: ChatRequest = {
  model: "gpt-4o",
  messages: [
    { role: "user", content: "Weather in Oslo?" },
    {
      role: "assistant",
      content: null,
      tool_calls: [{ id: "call_1", type: "function", function: { name: "weather", arguments: "{\"city\":\"Oslo\"}" } }]
    },
    { role: "tool", tool_call_id: "call_1", content: "{\"celsius\":4}" },
    { role: "tool", tool_call_id: "call_2", content: [{ type: "text", text: "sunny" }] }
  ],
  tools: [
    {
      type: "function",
      function: {
        name: "weather",
        description: "Current weather",
        parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
        strict: true
      }
    }
  ],
  tool_choice: { type: "function", function: { name: "weather" } }
}

export const toolsBody: OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming = build(
  toWireChatRequest(tools)
)
export const toolsStreamBody: OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming = build(
  toWireChatRequest({ ...tools, tool_choice: "required" }, { stream: true })
)

// -- response_format ------------------------------------------------------------------

const jsonSchema: ChatRequest = {
  model: "gpt-4o",
  messages: [{ role: "user", content: "A city as JSON" }],
  response_format: {
    type: "json_schema",
    json_schema: {
      name: "city",
      description: "A city",
      schema: { type: "object", properties: { name: { type: "string" } }, required: ["name"] },
      strict: true
    }
  }
}

export const jsonSchemaBody: OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming = build(
  toWireChatRequest(jsonSchema)
)
export const jsonObjectBody: OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming = build(
  toWireChatRequest({ ...jsonSchema, response_format: { type: "json_object" } })
)

// -- embeddings ---------------------------------------------------------------------

const embedding: EmbeddingRequest = {
  model: "text-embedding-3-small",
  input: ["hello", "world"],
  dimensions: 256,
  encoding_format: "float",
  user: "user-1",
  metadata: { tags: ["team-a"] }
}

export const embeddingBody: OpenAI.EmbeddingCreateParams = toWireEmbeddingRequest(embedding)
export const embeddingOneBody: OpenAI.EmbeddingCreateParams = toWireEmbeddingRequest({ model: "m", input: "hi" })

// -- the wire body never carries our routing metadata ------------------------------

type HasKey<T, K extends PropertyKey> = K extends keyof T ? true : false
export const noMetadata: HasKey<ReturnType<typeof toWireEmbeddingRequest>, "metadata"> = false
export const unused = Either.right
