/**
 * Compile-time check (no test runs here): the bodies `Anthropic.toWireRequest` builds are
 * assignable to the official SDK's request types, for requests with a system prompt, images,
 * tools, tool calls and tool results, tool choice, stop sequences, cache breakpoints and a JSON
 * schema format.
 * `tsc --noEmit` fails if our wire shape drifts from Anthropic's.
 */
import type AnthropicSdk from "@anthropic-ai/sdk"
import * as Either from "effect/Either"
import type { ChatRequest } from "../../src/Provider.js"
import * as Anthropic from "../../src/providers/Anthropic.js"

const request: ChatRequest = {
  model: "claude-sonnet-4-5",
  messages: [
    { role: "system", content: "Be brief." },
    { role: "system", content: [{ type: "text", text: "Answer in English.", cache_control: { type: "ephemeral", ttl: "1h" } }] },
    {
      role: "user",
      content: [
        { type: "text", text: "What is in these pictures, and what is the weather in Oslo?" },
        { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
        { type: "image_url", image_url: { url: "https://example.com/cat.jpg", detail: "high" } },
        { type: "file", file: { filename: "report.pdf", file_data: "data:application/pdf;base64,JVBERi0x" } },
        { type: "file", file: { filename: "notes.txt", file_data: "data:text/plain;base64,aGk=" } }
      ]
    },
    {
      role: "assistant",
      content: "Let me check.",
      tool_calls: [{ id: "toolu_1", type: "function", function: { name: "weather", arguments: "{\"city\":\"Oslo\"}" } }]
    },
    { role: "tool", tool_call_id: "toolu_1", content: "12°C", cache_control: { type: "ephemeral" } },
    { role: "tool", tool_call_id: "toolu_2", content: [{ type: "text", text: "rain" }] },
    { role: "user", content: "Thanks", cache_control: { type: "ephemeral" } }
  ],
  tools: [{
    type: "function",
    function: {
      name: "weather",
      description: "Weather in a city",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }
    },
    cache_control: { type: "ephemeral" }
  }],
  tool_choice: { type: "function", function: { name: "weather" } },
  stop: ["\n\nHuman:"],
  temperature: 0.2,
  top_p: 0.9,
  user: "user-1",
  response_format: { type: "json_schema", json_schema: { name: "answer", schema: { type: "object" } } }
}

export const nonStreaming: AnthropicSdk.MessageCreateParamsNonStreaming = Either.getOrThrow(
  Anthropic.toWireRequest(request)
)

export const streaming: AnthropicSdk.MessageCreateParamsStreaming = Either.getOrThrow(
  Anthropic.toWireRequest(request, { stream: true })
)

export const either: AnthropicSdk.MessageCreateParams = Either.getOrThrow(
  Anthropic.toWireRequest({ ...request, response_format: { type: "json_object" } }, { jsonMode: "prompt" })
)

// each of our wire types on its own is assignable to the SDK's
declare const ours: {
  text: Anthropic.TextBlock
  image: Anthropic.ImageBlock
  toolUse: Anthropic.ToolUseBlock
  toolResult: Anthropic.ToolResultBlock
  message: Anthropic.MessageParam
  tool: Anthropic.ToolParam
  toolChoice: Anthropic.ToolChoiceParam
  body: Anthropic.MessagesRequest
}
export const sdk: {
  text: AnthropicSdk.TextBlockParam
  image: AnthropicSdk.ImageBlockParam
  toolUse: AnthropicSdk.ToolUseBlockParam
  toolResult: AnthropicSdk.ToolResultBlockParam
  message: AnthropicSdk.MessageParam
  tool: AnthropicSdk.Tool
  toolChoice: AnthropicSdk.ToolChoice
  body: AnthropicSdk.MessageCreateParamsNonStreaming
} = ours

// the other direction: a wire message the SDK types as its response maps to a chat response
declare const sdkMessage: AnthropicSdk.Message
export const fromSdk = Anthropic.fromWireResponse(sdkMessage, 0)
