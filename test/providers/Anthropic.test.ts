import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, it } from "@effect/vitest"
import AnthropicSdk from "@anthropic-ai/sdk"
import { Cause, Chunk, ConfigProvider, Duration, Effect, Either, Exit, Fiber, Option, Redacted, Stream } from "effect"
import { readFileSync } from "node:fs"
import * as util from "node:util"
import type * as Errors from "../../src/Errors.js"
import type { ChatChunk, ChatRequest, RateLimitInfo, Target } from "../../src/Provider.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as ErrorMapping from "../../src/ErrorMapping.js"
import * as Loopback from "../support/loopback.js"

const KEY = "sk-ant-api03-SECRET-key-0123456789"
const NOW = Date.parse("2026-11-25T12:00:00Z")

const right = <A, E>(either: Either.Either<A, E>): A => {
  if (Either.isLeft(either)) throw new Error(`expected Right, got Left: ${String(either.left)}`)
  return either.right
}
const left = <A, E>(either: Either.Either<A, E>): E => {
  if (Either.isRight(either)) throw new Error("expected Left, got Right")
  return either.left
}

// ---------------------------------------------------------------------------
// Recorded wire data
// ---------------------------------------------------------------------------

const wireMessage = {
  id: "msg_01",
  type: "message",
  role: "assistant",
  model: "claude-sonnet-4-5-20250929",
  content: [
    { type: "thinking", thinking: "hmm", signature: "sig" },
    { type: "text", text: "Let me check ", citations: null },
    { type: "text", text: "the weather." },
    { type: "tool_use", id: "toolu_01", name: "weather", input: { city: "Oslo", days: 2 } }
  ],
  stop_reason: "tool_use",
  stop_sequence: null,
  usage: {
    input_tokens: 100,
    output_tokens: 30,
    cache_creation_input_tokens: 20,
    cache_read_input_tokens: 1000,
    service_tier: "standard"
  }
}

/** A recorded stream: text, then a tool call whose input arrives in pieces. */
const streamEvents: ReadonlyArray<readonly [string, unknown]> = [
  ["message_start", {
    type: "message_start",
    message: {
      id: "msg_02",
      type: "message",
      role: "assistant",
      model: "claude-sonnet-4-5-20250929",
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: 50, output_tokens: 1, cache_creation_input_tokens: 0, cache_read_input_tokens: 200 }
    }
  }],
  ["content_block_start", { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } }],
  ["ping", { type: "ping" }],
  ["content_block_delta", { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Checking" } }],
  ["content_block_delta", { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: " now." } }],
  ["content_block_stop", { type: "content_block_stop", index: 0 }],
  ["content_block_start", {
    type: "content_block_start",
    index: 1,
    content_block: { type: "tool_use", id: "toolu_02", name: "weather", input: {} }
  }],
  ["content_block_delta", { type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: "" } }],
  ["content_block_delta", { type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: "{\"city\": \"Os" } }],
  ["content_block_delta", { type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: "lo\"}" } }],
  ["content_block_stop", { type: "content_block_stop", index: 1 }],
  ["message_delta", {
    type: "message_delta",
    delta: { stop_reason: "tool_use", stop_sequence: null },
    usage: { output_tokens: 42 }
  }],
  ["message_stop", { type: "message_stop" }]
]

const textStream = (texts: ReadonlyArray<string>, stopReason = "end_turn"): Array<readonly [string, unknown]> => [
  streamEvents[0],
  ["content_block_start", { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } }],
  ...texts.map((text) =>
    ["content_block_delta", { type: "content_block_delta", index: 0, delta: { type: "text_delta", text } }] as const
  ),
  ["content_block_stop", { type: "content_block_stop", index: 0 }],
  ["message_delta", { type: "message_delta", delta: { stop_reason: stopReason, stop_sequence: null }, usage: { output_tokens: 7 } }],
  ["message_stop", { type: "message_stop" }]
]

const contentOf = (chunks: ReadonlyArray<ChatChunk>) =>
  chunks.map((c) => c.choices[0]?.delta.content ?? "").join("")

const argumentsOf = (chunks: ReadonlyArray<ChatChunk>, index: number) =>
  chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []).filter((t) => t.index === index)
    .map((t) => t.function?.arguments ?? "").join("")

// ---------------------------------------------------------------------------
// Pure mapping
// ---------------------------------------------------------------------------

describe("Anthropic.toWireRequest", () => {
  it("maps a full conversation: system, images, tool calls, merged tool results, tools, options", () => {
    const request: ChatRequest = {
      model: "claude-sonnet-4-5",
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: [
          { type: "text", text: "What is this, and the weather in Oslo and Bergen?" },
          { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
          { type: "image_url", image_url: { url: "https://example.com/cat.jpg", detail: "low" } }
        ] },
        { role: "system", content: [{ type: "text", text: "Use metric units." }] },
        {
          role: "assistant",
          content: "Checking.",
          tool_calls: [
            { id: "toolu_1", type: "function", function: { name: "weather", arguments: "{\"city\":\"Oslo\"}" } },
            { id: "toolu_2", type: "function", function: { name: "weather", arguments: "{\"city\":\"Bergen\"}" } },
            { id: "toolu_3", type: "function", function: { name: "now", arguments: "" } }
          ]
        },
        { role: "tool", tool_call_id: "toolu_1", content: "12°C" },
        { role: "tool", tool_call_id: "toolu_2", content: [{ type: "text", text: "9°C, rain" }] },
        { role: "tool", tool_call_id: "toolu_3", content: "noon" },
        { role: "assistant", content: "Oslo 12°C, Bergen 9°C." },
        { role: "user", content: "And tomorrow?", name: "ann" },
        { role: "tool", tool_call_id: "toolu_4", content: "late" }
      ],
      tools: [
        {
          type: "function",
          function: {
            name: "weather",
            description: "Weather in a city",
            parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }
          }
        },
        { type: "function", function: { name: "now" } }
      ],
      tool_choice: "required",
      temperature: 0.3,
      top_p: 0.8,
      stop: ["END", "STOP"],
      seed: 7,
      user: "user-42",
      metadata: { tags: ["team-a"] }
    }
    expect(right(Anthropic.toWireRequest(request))).toEqual({
      model: "claude-sonnet-4-5",
      max_tokens: 4096,
      system: [{ type: "text", text: "Be brief." }, { type: "text", text: "Use metric units." }],
      messages: [
        { role: "user", content: [
          { type: "text", text: "What is this, and the weather in Oslo and Bergen?" },
          { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" } },
          { type: "image", source: { type: "url", url: "https://example.com/cat.jpg" } }
        ] },
        { role: "assistant", content: [
          { type: "text", text: "Checking." },
          { type: "tool_use", id: "toolu_1", name: "weather", input: { city: "Oslo" } },
          { type: "tool_use", id: "toolu_2", name: "weather", input: { city: "Bergen" } },
          { type: "tool_use", id: "toolu_3", name: "now", input: {} }
        ] },
        { role: "user", content: [
          { type: "tool_result", tool_use_id: "toolu_1", content: "12°C" },
          { type: "tool_result", tool_use_id: "toolu_2", content: [{ type: "text", text: "9°C, rain" }] },
          { type: "tool_result", tool_use_id: "toolu_3", content: "noon" }
        ] },
        { role: "assistant", content: "Oslo 12°C, Bergen 9°C." },
        { role: "user", content: "And tomorrow?" },
        { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_4", content: "late" }] }
      ],
      tools: [
        {
          name: "weather",
          description: "Weather in a city",
          input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }
        },
        { name: "now", input_schema: { type: "object", properties: {} } }
      ],
      tool_choice: { type: "any" },
      temperature: 0.3,
      top_p: 0.8,
      stop_sequences: ["END", "STOP"],
      metadata: { user_id: "user-42" }
    })
  })

  it("keeps a single system prompt a string, takes max_tokens, clamps temperature, wraps a single stop", () => {
    const body = right(Anthropic.toWireRequest({
      model: "m",
      messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }],
      max_tokens: 100,
      temperature: 1.7,
      stop: "END"
    }))
    expect(body).toEqual({
      model: "m",
      max_tokens: 100,
      system: "Be brief.",
      messages: [{ role: "user", content: "Hi" }],
      temperature: 1,
      stop_sequences: ["END"]
    })
    expect("stream" in body).toBe(false)
    const streamed = right(Anthropic.toWireRequest({ model: "m", messages: [{ role: "user", content: "Hi" }] }, {
      stream: true,
      defaultMaxTokens: 512
    }))
    expect(streamed).toEqual({ model: "m", max_tokens: 512, messages: [{ role: "user", content: "Hi" }], stream: true })
  })

  it("maps tool_choice auto / required / none / a named function, and only with tools", () => {
    const tools = [{ type: "function" as const, function: { name: "f", parameters: { type: "object" } } }]
    const choice = (tool_choice: ChatRequest["tool_choice"]) =>
      right(Anthropic.toWireRequest({ model: "m", messages: [{ role: "user", content: "x" }], tools, tool_choice })).tool_choice
    expect(choice("auto")).toEqual({ type: "auto" })
    expect(choice("required")).toEqual({ type: "any" })
    expect(choice("none")).toEqual({ type: "none" })
    expect(choice({ type: "function", function: { name: "f" } })).toEqual({ type: "tool", name: "f" })
    expect(choice(undefined)).toBeUndefined()
    const withoutTools = right(Anthropic.toWireRequest({ model: "m", messages: [{ role: "user", content: "x" }], tool_choice: "none" }))
    expect(withoutTools.tool_choice).toBeUndefined()
    expect(withoutTools.tools).toBeUndefined()
  })

  it("maps parallel_tool_calls: false to disable_parallel_tool_use, max_completion_tokens to max_tokens; drops what Anthropic lacks", () => {
    const tools = [{ type: "function" as const, function: { name: "f", parameters: { type: "object" } } }]
    const base: ChatRequest = { model: "m", messages: [{ role: "user", content: "x" }], tools }
    const wire = (extra: Partial<ChatRequest>) => right(Anthropic.toWireRequest({ ...base, ...extra }))
    expect(wire({ parallel_tool_calls: false }).tool_choice).toEqual({ type: "auto", disable_parallel_tool_use: true })
    expect(wire({ parallel_tool_calls: false, tool_choice: "required" }).tool_choice).toEqual({ type: "any", disable_parallel_tool_use: true })
    expect(wire({ parallel_tool_calls: false, tool_choice: { type: "function", function: { name: "f" } } }).tool_choice)
      .toEqual({ type: "tool", name: "f", disable_parallel_tool_use: true })
    expect(wire({ parallel_tool_calls: false, tool_choice: "none" }).tool_choice).toEqual({ type: "none" })
    expect(wire({ parallel_tool_calls: true }).tool_choice).toBeUndefined()
    expect(wire({ max_completion_tokens: 300 }).max_tokens).toBe(300)
    expect(wire({ max_completion_tokens: 300, max_tokens: 200 }).max_tokens).toBe(200)
    const dropped = wire({ reasoning_effort: "high", presence_penalty: 1, frequency_penalty: 1, seed: 7 })
    for (const key of ["reasoning_effort", "presence_penalty", "frequency_penalty", "seed", "parallel_tool_calls"]) {
      expect(dropped).not.toHaveProperty(key)
    }
  })

  it("puts cache breakpoints on the blocks they mark: parts, a message's last block, tool results, tools", () => {
    const cache = { type: "ephemeral" as const }
    const hour = { type: "ephemeral" as const, ttl: "1h" as const }
    const body = right(Anthropic.toWireRequest({
      model: "m",
      messages: [
        { role: "system", content: "Long instructions", cache_control: hour },
        { role: "user", content: [{ type: "text", text: "Document", cache_control: cache }, { type: "text", text: "Question" }] },
        {
          role: "assistant",
          content: "Checking.",
          tool_calls: [{ id: "t1", type: "function", function: { name: "f", arguments: "{}" } }],
          cache_control: cache
        },
        { role: "tool", tool_call_id: "t1", content: "result", cache_control: cache },
        { role: "user", content: "Go on", cache_control: cache }
      ],
      tools: [{ type: "function", function: { name: "f" }, cache_control: cache }]
    }))
    expect(body.system).toEqual([{ type: "text", text: "Long instructions", cache_control: { type: "ephemeral", ttl: "1h" } }])
    expect(body.messages).toEqual([
      { role: "user", content: [{ type: "text", text: "Document", cache_control: cache }, { type: "text", text: "Question" }] },
      {
        role: "assistant",
        content: [{ type: "text", text: "Checking." }, { type: "tool_use", id: "t1", name: "f", input: {}, cache_control: cache }]
      },
      { role: "user", content: [{ type: "tool_result", tool_use_id: "t1", content: "result", cache_control: cache }] },
      { role: "user", content: [{ type: "text", text: "Go on", cache_control: cache }] }
    ])
    expect(body.tools?.[0]).toMatchObject({ name: "f", cache_control: cache })
    // without breakpoints, plain strings stay strings
    const plain = right(Anthropic.toWireRequest({ model: "m", messages: [{ role: "system", content: "S" }, { role: "user", content: "U" }] }))
    expect(plain.system).toBe("S")
    expect(plain.messages).toEqual([{ role: "user", content: "U" }])
  })

  it("maps file parts to document blocks (PDF, plain text), and refuses what Anthropic cannot take", () => {
    const user = (file: { file_data?: string; file_id?: string; filename?: string }) =>
      Anthropic.toWireRequest({ model: "m", messages: [{ role: "user", content: [{ type: "file", file }, { type: "text", text: "Summarize" }] }] })
    expect(right(user({ filename: "r.pdf", file_data: "data:application/pdf;base64,JVBERi0x" })).messages[0].content).toEqual([
      { type: "document", source: { type: "base64", media_type: "application/pdf", data: "JVBERi0x" }, title: "r.pdf" },
      { type: "text", text: "Summarize" }
    ])
    const first = (r: ReturnType<typeof user>) => (right(r).messages[0].content as ReadonlyArray<unknown>)[0]
    expect(first(user({ file_data: "data:text/plain;base64,aMOpbGxv" }))).toEqual(
      { type: "document", source: { type: "text", media_type: "text/plain", data: "héllo" } }
    )
    expect(first(user({ file_data: "data:text/plain,a%20b" }))).toEqual(
      { type: "document", source: { type: "text", media_type: "text/plain", data: "a b" } }
    )
    expect(left(user({ file_id: "file-abc" }))).toMatch(/messages\[0\]: file file-abc was uploaded to OpenAI/)
    expect(left(user({ file_data: "data:application/zip;base64,UEs=" }))).toMatch(/application\/zip is not supported/)
    expect(left(user({ file_data: "data:application/pdf,raw" }))).toMatch(/base64/)
    expect(left(user({ file_data: "https://example.com/r.pdf" }))).toMatch(/data URL/)
    expect(left(user({}))).toMatch(/needs file_data/)
  })

  it("honours response_format: native structured outputs, or an instruction in the system prompt", () => {
    const schema = { type: "object", properties: { answer: { type: "string" } }, required: ["answer"], additionalProperties: false }
    const base: ChatRequest = {
      model: "m",
      messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "x" }],
      response_format: { type: "json_schema", json_schema: { name: "answer", schema } }
    }
    const native = right(Anthropic.toWireRequest(base))
    expect(native.output_config).toEqual({ format: { type: "json_schema", schema } })
    expect(native.system).toBe("Be brief.")

    const prompted = right(Anthropic.toWireRequest(base, { jsonMode: "prompt" }))
    expect(prompted.output_config).toBeUndefined()
    expect(Array.isArray(prompted.system)).toBe(true)
    const [first, second] = prompted.system as Array<Anthropic.TextBlock>
    expect(first).toEqual({ type: "text", text: "Be brief." })
    expect(second.text).toContain("JSON")
    expect(second.text).toContain(JSON.stringify(schema))

    const object = right(Anthropic.toWireRequest({
      model: "m",
      messages: [{ role: "user", content: "x" }],
      response_format: { type: "json_object" }
    }))
    expect(object.output_config).toBeUndefined()
    expect(object.system).toMatch(/single valid JSON object/)

    const text = right(Anthropic.toWireRequest({ ...base, response_format: { type: "text" } }))
    expect(text.output_config).toBeUndefined()
    expect(text.system).toBe("Be brief.")
  })

  it("refuses what Anthropic cannot take, with a reason", () => {
    const user = (url: string): ChatRequest => ({
      model: "m",
      messages: [{ role: "user", content: [{ type: "image_url", image_url: { url } }] }]
    })
    expect(left(Anthropic.toWireRequest(user("data:image/svg+xml;base64,PHN2Zz4=")))).toMatch(/messages\[0\].*image\/svg\+xml/)
    expect(left(Anthropic.toWireRequest(user("data:image/png,notbase64")))).toMatch(/base64/)
    expect(left(Anthropic.toWireRequest(user("ftp://example.com/a.png")))).toMatch(/http/)
    expect(right(Anthropic.toWireRequest(user("data:image/jpg;base64,AAAA"))).messages[0].content).toEqual([
      { type: "image", source: { type: "base64", media_type: "image/jpeg", data: "AAAA" } }
    ])
    expect(left(Anthropic.toWireRequest({
      model: "m",
      messages: [{
        role: "assistant",
        tool_calls: [{ id: "t1", type: "function", function: { name: "f", arguments: "{not json" } }]
      }]
    }))).toMatch(/t1.*not valid JSON/)
    expect(left(Anthropic.toWireRequest({
      model: "m",
      messages: [{ role: "assistant", tool_calls: [{ id: "t2", type: "function", function: { name: "f", arguments: "[1]" } }] }]
    }))).toMatch(/t2.*JSON object/)
    expect(left(Anthropic.toWireRequest({
      model: "m",
      messages: [{ role: "system", content: [{ type: "image_url", image_url: { url: "https://example.com/a.png" } }] }]
    }))).toMatch(/system/)
  })

  it("drops empty assistant turns and empty text parts", () => {
    const body = right(Anthropic.toWireRequest({
      model: "m",
      messages: [
        { role: "user", content: [{ type: "text", text: "" }, { type: "text", text: "hi" }] },
        { role: "assistant", content: null },
        { role: "assistant", content: "" },
        { role: "user", content: "again" }
      ]
    }))
    expect(body.messages).toEqual([
      { role: "user", content: [{ type: "text", text: "hi" }] },
      { role: "user", content: "again" }
    ])
  })
})

describe("Anthropic.fromWireResponse", () => {
  it("maps text, tool use, stop reason and usage with cache counts", () => {
    const response = right(Anthropic.fromWireResponse(wireMessage, NOW))
    expect(response).toEqual({
      id: "msg_01",
      object: "chat.completion",
      created: NOW / 1000,
      model: "claude-sonnet-4-5-20250929",
      choices: [{
        index: 0,
        message: {
          role: "assistant",
          content: "Let me check the weather.",
          tool_calls: [{ id: "toolu_01", type: "function", function: { name: "weather", arguments: "{\"city\":\"Oslo\",\"days\":2}" } }]
        },
        finish_reason: "tool_calls"
      }],
      usage: {
        prompt_tokens: 1120,
        completion_tokens: 30,
        total_tokens: 1150,
        prompt_tokens_details: { cached_tokens: 1000 },
        cache_read_input_tokens: 1000,
        cache_creation_input_tokens: 20
      }
    })
  })

  it("gives null content when there is no text, and reads usage without cache fields", () => {
    const response = right(Anthropic.fromWireResponse({
      id: "m", model: "x", content: [], stop_reason: "max_tokens", usage: { input_tokens: 3, output_tokens: 4 }
    }, NOW))
    expect(response.choices[0].message).toEqual({ role: "assistant", content: null })
    expect(response.choices[0].finish_reason).toBe("length")
    expect(response.usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 })
  })

  it("maps every stop reason", () => {
    const cases: Array<[string | null, string | null]> = [
      ["end_turn", "stop"], ["stop_sequence", "stop"], ["pause_turn", "stop"], ["max_tokens", "length"],
      ["model_context_window_exceeded", "length"], ["tool_use", "tool_calls"], ["refusal", "content_filter"],
      ["something_new", "stop"], [null, null]
    ]
    for (const [reason, finish] of cases) expect([reason, Anthropic.toFinishReason(reason)]).toEqual([reason, finish])
  })

  it("refuses a body that is not a message", () => {
    expect(Either.isLeft(Anthropic.fromWireResponse({ hello: "world" }, NOW))).toBe(true)
    expect(Either.isLeft(Anthropic.fromWireResponse(null, NOW))).toBe(true)
    expect(Either.isLeft(Anthropic.fromWireResponse({ id: "m", model: "x", content: "text" }, NOW))).toBe(true)
  })
})

describe("Anthropic.makeChunkMapper", () => {
  const run = (events: ReadonlyArray<readonly [string, unknown]>) => {
    const mapper = Anthropic.makeChunkMapper({ createdMs: NOW, model: "claude-test" })
    const chunks: Array<ChatChunk> = []
    for (const [name, data] of events) {
      chunks.push(...right(mapper.push(name, typeof data === "string" ? data : JSON.stringify(data))))
    }
    return { chunks, done: mapper.done() }
  }

  it("maps a recorded stream: role, text deltas, tool-call deltas by index, finish reason and usage", () => {
    const { chunks, done } = run(streamEvents)
    expect(done).toBe(true)
    expect(chunks.map((c) => c.choices[0]?.delta)).toEqual([
      { role: "assistant", content: "" },
      { content: "Checking" },
      { content: " now." },
      { tool_calls: [{ index: 0, id: "toolu_02", type: "function", function: { name: "weather", arguments: "" } }] },
      { tool_calls: [{ index: 0, function: { arguments: "{\"city\": \"Os" } }] },
      { tool_calls: [{ index: 0, function: { arguments: "lo\"}" } }] },
      {}
    ])
    for (const chunk of chunks) {
      expect(chunk).toMatchObject({ id: "msg_02", object: "chat.completion.chunk", created: NOW / 1000, model: "claude-sonnet-4-5-20250929" })
    }
    expect(chunks.map((c) => c.choices[0]?.finish_reason)).toEqual([null, null, null, null, null, null, "tool_calls"])
    expect(chunks.slice(0, -1).every((c) => c.usage === undefined)).toBe(true)
    expect(chunks[chunks.length - 1].usage).toEqual({
      prompt_tokens: 250,
      completion_tokens: 42,
      total_tokens: 292,
      prompt_tokens_details: { cached_tokens: 200 },
      cache_read_input_tokens: 200,
      cache_creation_input_tokens: 0
    })
    expect(JSON.parse(argumentsOf(chunks, 0))).toEqual({ city: "Oslo" })
  })

  it("numbers tool calls from 0 whatever their block index, and skips thinking and unknown events", () => {
    const { chunks } = run([
      streamEvents[0],
      ["content_block_start", { type: "content_block_start", index: 0, content_block: { type: "thinking", thinking: "" } }],
      ["content_block_delta", { type: "content_block_delta", index: 0, delta: { type: "thinking_delta", thinking: "hm" } }],
      ["content_block_delta", { type: "content_block_delta", index: 0, delta: { type: "signature_delta", signature: "s" } }],
      ["content_block_stop", { type: "content_block_stop", index: 0 }],
      ["something_new", { type: "something_new", foo: 1 }],
      ["content_block_start", { type: "content_block_start", index: 1, content_block: { type: "tool_use", id: "a", name: "f", input: {} } }],
      ["content_block_delta", { type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: "{}" } }],
      ["content_block_start", { type: "content_block_start", index: 2, content_block: { type: "tool_use", id: "b", name: "g", input: {} } }],
      ["content_block_delta", { type: "content_block_delta", index: 2, delta: { type: "input_json_delta", partial_json: "{\"x\":1}" } }],
      ["message_delta", { type: "message_delta", delta: { stop_reason: "tool_use" }, usage: { output_tokens: 5 } }],
      ["message_stop", { type: "message_stop" }]
    ])
    const calls = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? [])
    expect(calls.filter((c) => c.id !== undefined).map((c) => [c.index, c.id, c.function?.name])).toEqual([[0, "a", "f"], [1, "b", "g"]])
    expect(argumentsOf(chunks, 0)).toBe("{}")
    expect(argumentsOf(chunks, 1)).toBe("{\"x\":1}")
    expect(contentOf(chunks)).toBe("")
  })

  it("skips server-tool blocks (mcp_tool_use, server_tool_use) and their input deltas: only client tool_use blocks are tool calls", () => {
    const { chunks, done } = run([
      streamEvents[0],
      ["content_block_start", {
        type: "content_block_start",
        index: 0,
        content_block: { type: "mcp_tool_use", id: "mcptoolu_1", name: "search", server_name: "docs", input: {} }
      }],
      ["content_block_delta", { type: "content_block_delta", index: 0, delta: { type: "input_json_delta", partial_json: "{\"q\":" } }],
      ["content_block_delta", { type: "content_block_delta", index: 0, delta: { type: "input_json_delta", partial_json: "\"tides\"}" } }],
      ["content_block_stop", { type: "content_block_stop", index: 0 }],
      ["content_block_start", {
        type: "content_block_start",
        index: 1,
        content_block: { type: "mcp_tool_result", tool_use_id: "mcptoolu_1", is_error: false, content: [{ type: "text", text: "found" }] }
      }],
      ["content_block_stop", { type: "content_block_stop", index: 1 }],
      ["content_block_start", { type: "content_block_start", index: 2, content_block: { type: "server_tool_use", id: "srvtoolu_1", name: "web_search", input: {} } }],
      ["content_block_delta", { type: "content_block_delta", index: 2, delta: { type: "input_json_delta", partial_json: "{\"query\":\"x\"}" } }],
      ["content_block_stop", { type: "content_block_stop", index: 2 }],
      ["content_block_start", { type: "content_block_start", index: 3, content_block: { type: "tool_use", id: "toolu_9", name: "weather", input: {} } }],
      ["content_block_delta", { type: "content_block_delta", index: 3, delta: { type: "input_json_delta", partial_json: "{\"city\":\"Oslo\"}" } }],
      ["content_block_stop", { type: "content_block_stop", index: 3 }],
      ["message_delta", { type: "message_delta", delta: { stop_reason: "tool_use" }, usage: { output_tokens: 5 } }],
      ["message_stop", { type: "message_stop" }]
    ])
    expect(done).toBe(true)
    const calls = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? [])
    expect(calls.filter((c) => c.id !== undefined).map((c) => [c.index, c.id, c.function?.name])).toEqual([[0, "toolu_9", "weather"]])
    expect(argumentsOf(chunks, 0)).toBe("{\"city\":\"Oslo\"}")
    expect(calls.every((c) => c.index === 0)).toBe(true)
  })

  it("an input_json_delta for a block that never started is malformed", () => {
    const mapper = Anthropic.makeChunkMapper({ createdMs: NOW, model: "m" })
    right(mapper.push("message_start", JSON.stringify(streamEvents[0][1])))
    const delta = { type: "content_block_delta", index: 4, delta: { type: "input_json_delta", partial_json: "{}" } }
    expect(left(mapper.push("content_block_delta", JSON.stringify(delta))))
      .toEqual({ _tag: "Malformed", message: "input_json_delta for block 4, which never started" })
  })

  it("reports an error event, malformed JSON, and events out of order", () => {
    const mapper = Anthropic.makeChunkMapper({ createdMs: NOW, model: "m" })
    right(mapper.push("message_start", JSON.stringify(streamEvents[0][1])))
    const body = JSON.stringify({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } })
    expect(left(mapper.push("error", body))).toEqual({ _tag: "UpstreamError", errorType: "overloaded_error", message: "Overloaded", body })

    expect(left(Anthropic.makeChunkMapper({ createdMs: NOW, model: "m" }).push("message_start", "{\"type\":\"message_st"))).toMatchObject({
      _tag: "Malformed"
    })
    expect(left(Anthropic.makeChunkMapper({ createdMs: NOW, model: "m" }).push("content_block_delta", JSON.stringify(streamEvents[3][1]))))
      .toMatchObject({ _tag: "Malformed", message: expect.stringMatching(/before message_start/) })
    expect(left(Anthropic.makeChunkMapper({ createdMs: NOW, model: "m" }).push("message_start", "{\"type\":\"message_start\"}")))
      .toMatchObject({ _tag: "Malformed", message: expect.stringMatching(/unexpected shape/) })
  })
})

describe("Anthropic error mapping", () => {
  const map = (status: number, type: string, message: string, headers: Record<string, string> = {}) =>
    ErrorMapping.fromResponse({
      provider: "anthropic",
      deploymentId: "claude-a",
      status,
      headers,
      body: JSON.stringify({ type: "error", error: { type, message } }),
      now: NOW
    }, Anthropic.rules)

  it("maps Anthropic's documented errors", () => {
    const cases: Array<[number, string, string, Errors.ProviderError["_tag"]]> = [
      [400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum", "ContextWindowExceeded"],
      [400, "invalid_request_error", "max_tokens: Field required", "BadRequest"],
      [401, "authentication_error", "invalid x-api-key", "Authentication"],
      [402, "billing_error", "Your credit balance is too low", "QuotaExceeded"],
      [403, "permission_error", "Your API key does not have permission", "Authentication"],
      [404, "not_found_error", "model: claude-9", "ModelNotFound"],
      [413, "request_too_large", "Request exceeds the maximum allowed number of bytes.", "BadRequest"],
      [429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit", "RateLimited"],
      [500, "api_error", "Internal server error", "ServerError"],
      [504, "timeout_error", "Request timed out", "ServerError"],
      [529, "overloaded_error", "Overloaded", "ServerError"]
    ]
    for (const [status, type, message, tag] of cases) {
      expect([status, type, map(status, type, message)._tag]).toEqual([status, type, tag])
    }
  })

  it("reads retry-after and the anthropic-ratelimit reset headers", () => {
    const error = map(429, "rate_limit_error", "slow down", {
      "retry-after": "7",
      "anthropic-ratelimit-requests-reset": "2026-11-25T12:00:30Z"
    })
    expect(Duration.toMillis(error.retryAfter!)).toBe(7000)
    const reset = map(429, "rate_limit_error", "slow down", { "anthropic-ratelimit-tokens-reset": "2026-11-25T12:00:30Z" })
    expect(Duration.toMillis(reset.retryAfter!)).toBe(30_000)
  })

  it("maps error events of a stream by their type", () => {
    const context = { provider: "anthropic", deploymentId: "claude-a", now: NOW }
    const event = (type: string, message: string) => ({
      errorType: type,
      message,
      body: JSON.stringify({ type: "error", error: { type, message } })
    })
    const overloaded = Anthropic.errorFromStreamEvent(event("overloaded_error", "Overloaded"), context)
    expect(overloaded._tag).toBe("ServerError")
    expect(overloaded.status).toBe(529)
    expect(overloaded.message).toBe("anthropic stream error overloaded_error: Overloaded")
    expect(Anthropic.errorFromStreamEvent(event("rate_limit_error", "x"), context)._tag).toBe("RateLimited")
    expect(Anthropic.errorFromStreamEvent(event("api_error", "x"), context)._tag).toBe("ServerError")
    expect(Anthropic.errorFromStreamEvent(event("invalid_request_error", "prompt is too long"), context)._tag)
      .toBe("ContextWindowExceeded")
    expect(Anthropic.errorFromStreamEvent(event("brand_new_error", "x"), context)._tag).toBe("ServerError")
  })
})

// ---------------------------------------------------------------------------
// Over HTTP, against the loopback server
// ---------------------------------------------------------------------------

const PATH = "/v1/messages"

const makeTarget = (server: Loopback.Loopback, overrides: Partial<Target> = {}): Target => ({
  deploymentId: "claude-a",
  model: "claude-test",
  apiBase: server.url,
  apiKey: Redacted.make(KEY),
  timeout: undefined,
  ...overrides
})

const chatRequest: ChatRequest = {
  model: "claude-fast",
  messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }],
  max_tokens: 64
}

const withClient = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, NodeHttpClient.layerUndici)

const sseOf = (
  events: ReadonlyArray<readonly [string, unknown]>,
  options: { readonly delay?: Duration.DurationInput; readonly then?: "end" | "stall" | "cut" } = {}
) =>
  Loopback.sse(
    events.map(([name, data]) => Loopback.event(data, { event: name, ...(options.delay !== undefined ? { delay: options.delay } : {}) })),
    options.then !== undefined ? { then: options.then } : {}
  )

const failureOf = <A>(exit: Exit.Exit<A, Errors.ProviderError>): Errors.ProviderError => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) throw new Error(`expected a typed failure, got ${Cause.pretty(exit.cause)}`)
  return failure.value
}

const expectNoKey = (error: Errors.ProviderError) => {
  for (const text of [
    String(error),
    error.message,
    JSON.stringify(error),
    util.inspect(error, { depth: 10 }),
    Cause.pretty(Cause.fail(error)),
    error.stack ?? ""
  ]) {
    expect(text).not.toContain(KEY)
    expect(text).not.toContain("SECRET")
  }
}

describe("Anthropic.make over HTTP", () => {
  it.scopedLive("sends a JSON request with its headers and maps the reply; reports rate limits", () =>
    withClient(Effect.gen(function*() {
      const server = yield* Loopback.make({
        [PATH]: Loopback.json(wireMessage, {
          headers: {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-tokens-limit": "40000",
            "anthropic-ratelimit-tokens-remaining": "39000"
          }
        })
      })
      const provider = yield* Anthropic.make({
        beta: ["prompt-caching-2024-07-31", "token-efficient-tools-2025-02-19"],
        headers: { "x-custom": "yes" }
      })
      const reported: Array<RateLimitInfo> = []
      const response = yield* provider.chat(chatRequest, makeTarget(server, {
        reportRateLimit: (info) => Effect.sync(() => void reported.push(info))
      }))
      expect(provider.name).toBe("anthropic")
      expect(response.choices[0].message.content).toBe("Let me check the weather.")
      expect(response.choices[0].finish_reason).toBe("tool_calls")
      expect(response.usage).toMatchObject({ prompt_tokens: 1120, completion_tokens: 30, total_tokens: 1150 })

      const [received] = yield* server.requests
      expect(received.method).toBe("POST")
      expect(received.path).toBe(PATH)
      expect(received.headers["x-api-key"]).toBe(KEY)
      expect(received.headers["anthropic-version"]).toBe("2023-06-01")
      expect(received.headers["anthropic-beta"]).toBe("prompt-caching-2024-07-31,token-efficient-tools-2025-02-19")
      expect(received.headers["x-custom"]).toBe("yes")
      expect(received.headers["content-type"]).toMatch(/application\/json/)
      expect(received.headers.authorization).toBeUndefined()
      expect(received.body).toEqual({
        model: "claude-test",
        max_tokens: 64,
        system: "Be brief.",
        messages: [{ role: "user", content: "Hi" }]
      })
      expect(reported).toEqual([{ remainingRequests: 49, remainingTokens: 39000, limitRequests: 50, limitTokens: 40000 }])
    })))

  it.scopedLive("accepts a base URL ending in /v1, an apiVersion, and no beta header by default", () =>
    withClient(Effect.gen(function*() {
      const server = yield* Loopback.make({ [PATH]: Loopback.json(wireMessage) })
      const provider = yield* Anthropic.make({ apiVersion: "2099-01-01" })
      yield* provider.chat(chatRequest, makeTarget(server, { apiBase: `${server.url}/v1/` }))
      const [received] = yield* server.requests
      expect(received.path).toBe(PATH)
      expect(received.headers["anthropic-version"]).toBe("2099-01-01")
      expect(received.headers["anthropic-beta"]).toBeUndefined()
    })))

  it.scopedLive("takes the key from the target, else the option, else ANTHROPIC_API_KEY; none is a typed error", () =>
    withClient(Effect.gen(function*() {
      const server = yield* Loopback.make({ [PATH]: Loopback.json(wireMessage) })
      const fromOption = yield* Anthropic.make({ apiKey: Redacted.make("sk-option") })
      yield* fromOption.chat(chatRequest, makeTarget(server, { apiKey: undefined }))
      yield* fromOption.chat(chatRequest, makeTarget(server))
      const fromEnv = yield* Anthropic.make().pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["ANTHROPIC_API_KEY", "sk-env"]])))
      )
      yield* fromEnv.chat(chatRequest, makeTarget(server, { apiKey: undefined }))
      const keys = (yield* server.requests).map((r) => r.headers["x-api-key"])
      expect(keys).toEqual(["sk-option", KEY, "sk-env"])

      const none = yield* Anthropic.make().pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map())))
      const error = failureOf(yield* Effect.exit(none.chat(chatRequest, makeTarget(server, { apiKey: undefined }))))
      expect(error._tag).toBe("Authentication")
      expect(error.message).toMatch(/no API key/)
      expect((yield* server.requests).length).toBe(3)
    })))

  it.scopedLive("streams events written with delays into chunks", () =>
    withClient(Effect.gen(function*() {
      const reply = sseOf(streamEvents, { delay: "5 millis" })
      const server = yield* Loopback.make({
        [PATH]: reply._tag === "Sse"
          ? { ...reply, options: { headers: { "anthropic-ratelimit-requests-remaining": "9", "anthropic-ratelimit-requests-limit": "10" } } }
          : reply
      })
      const provider = yield* Anthropic.make({ beta: ["fine-grained-tool-streaming-2025-05-14"] })
      const reported: Array<RateLimitInfo> = []
      const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(provider.stream(chatRequest, makeTarget(server, {
        reportRateLimit: (info) => Effect.sync(() => void reported.push(info))
      }))))
      expect(reported).toEqual([{ remainingRequests: 9, remainingTokens: undefined, limitRequests: 10, limitTokens: undefined }])
      expect(contentOf(chunks)).toBe("Checking now.")
      expect(JSON.parse(argumentsOf(chunks, 0))).toEqual({ city: "Oslo" })
      expect(chunks[chunks.length - 1].choices[0].finish_reason).toBe("tool_calls")
      expect(chunks[chunks.length - 1].usage).toMatchObject({ prompt_tokens: 250, completion_tokens: 42, total_tokens: 292 })
      const [received] = yield* server.requests
      expect(received.body).toMatchObject({ model: "claude-test", stream: true, max_tokens: 64 })
      expect(received.headers.accept).toBe("text/event-stream")
      expect(received.headers["anthropic-beta"]).toBe("fine-grained-tool-streaming-2025-05-14")
    })))

  it.scopedLive("streams a reply with a server tool (the SDK's fixture) to the text, tool calls and finish reason chat gives for it", () =>
    withClient(Effect.gen(function*() {
      const fixture = readFileSync(new URL("./fixtures/anthropic/stream-a-toolrefusal.sse", import.meta.url), "utf8")
      const server = yield* Loopback.make({ [PATH]: Loopback.sse([Loopback.raw(fixture)]) })
      const provider = yield* Anthropic.make()
      const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(provider.stream(chatRequest, makeTarget(server))))

      // The official SDK reads the same bytes into a message: `chat` is given that message.
      const sdk = new AnthropicSdk({ apiKey: KEY, baseURL: server.url, maxRetries: 0 })
      const message = yield* Effect.promise(() =>
        sdk.messages.stream({ model: "claude-test", max_tokens: 64, messages: [{ role: "user", content: "Hi" }] }).finalMessage()
      )
      expect(message.content.map((block) => block.type)).toEqual(["server_tool_use", "web_search_tool_result", "text"])
      yield* server.route(PATH, Loopback.json(message))
      const response = yield* provider.chat(chatRequest, makeTarget(server))
      const choice = response.choices[0]

      expect(contentOf(chunks)).toBe("Here's a summary of this year's solar eclipses and how")
      expect(contentOf(chunks)).toBe(choice.message.content)
      expect(chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? [])).toEqual([])
      expect(choice.message.tool_calls).toBeUndefined()
      expect(chunks[chunks.length - 1].choices[0].finish_reason).toBe("content_filter")
      expect(choice.finish_reason).toBe("content_filter")
      expect(chunks[chunks.length - 1].usage).toEqual(response.usage)
      expect(chunks.every((c) => c.id === response.id && c.model === response.model)).toBe(true)
    })))

  it.scopedLive("fails a stream with the typed error of a mid-stream error event, after the chunks before it", () =>
    withClient(Effect.gen(function*() {
      const events = textStream(["Hel", "lo"]).slice(0, 4)
      const server = yield* Loopback.make({
        [PATH]: sseOf([
          ...events,
          ["error", { type: "error", error: { type: "overloaded_error", message: "Overloaded" } }]
        ], { delay: "2 millis", then: "stall" })
      })
      const provider = yield* Anthropic.make()
      const seen: Array<ChatChunk> = []
      const exit = yield* Effect.exit(Stream.runForEach(provider.stream(chatRequest, makeTarget(server)), (c) =>
        Effect.sync(() => void seen.push(c))))
      const error = failureOf(exit)
      expect(error._tag).toBe("ServerError")
      expect(error.status).toBe(529)
      expect(error.provider).toBe("anthropic")
      expect(error.deploymentId).toBe("claude-a")
      expect(error.message).toMatch(/overloaded_error: Overloaded/)
      expect(contentOf(seen)).toBe("Hello")
      // the stalled connection is released
      const [received] = yield* server.requests
      yield* Loopback.awaitClosed(received) // fails on timeout
    })))

  it.scopedLive("a cut connection or a stream ending before message_stop is a typed error", () =>
    withClient(Effect.gen(function*() {
      const server = yield* Loopback.make({
        "/cut/v1/messages": sseOf(textStream(["a", "b"]).slice(0, 4), { then: "cut" }),
        "/early/v1/messages": sseOf(textStream(["a", "b"]).slice(0, 4))
      })
      const provider = yield* Anthropic.make()
      const cut = failureOf(yield* Effect.exit(Stream.runDrain(
        provider.stream(chatRequest, makeTarget(server, { apiBase: `${server.url}/cut` }))
      )))
      expect(["NetworkError", "MalformedResponse"]).toContain(cut._tag)
      const early = failureOf(yield* Effect.exit(Stream.runDrain(
        provider.stream(chatRequest, makeTarget(server, { apiBase: `${server.url}/early` }))
      )))
      expect(early._tag).toBe("MalformedResponse")
      expect(early.message).toMatch(/message_stop/)
    })))

  it.scopedLive("malformed event JSON is a MalformedResponse", () =>
    withClient(Effect.gen(function*() {
      const server = yield* Loopback.make({
        [PATH]: Loopback.sse([
          Loopback.event(streamEvents[0][1], { event: "message_start" }),
          Loopback.raw("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\n\n")
        ], { then: "stall" })
      })
      const provider = yield* Anthropic.make()
      const error = failureOf(yield* Effect.exit(Stream.runDrain(provider.stream(chatRequest, makeTarget(server)))))
      expect(error._tag).toBe("MalformedResponse")
      expect(error.message).toMatch(/not JSON/)
    })))

  it.scopedLive("a stalled stream fails with the idle timeout; no answer at all with the first-byte timeout", () =>
    withClient(Effect.gen(function*() {
      const server = yield* Loopback.make({
        "/idle/v1/messages": sseOf(textStream(["a"]).slice(0, 3), { then: "stall" }),
        "/silent/v1/messages": Loopback.stall
      })
      const provider = yield* Anthropic.make({ idleTimeout: "150 millis", firstByteTimeout: "150 millis" })
      const started = Date.now()
      const idle = failureOf(yield* Effect.exit(Stream.runDrain(
        provider.stream(chatRequest, makeTarget(server, { apiBase: `${server.url}/idle` }))
      )))
      expect(idle._tag).toBe("Timeout")
      expect(idle.message).toMatch(/idle/)
      const silent = failureOf(yield* Effect.exit(Stream.runDrain(
        provider.stream(chatRequest, makeTarget(server, { apiBase: `${server.url}/silent` }))
      )))
      expect(silent._tag).toBe("Timeout")
      expect(silent.message).toMatch(/first byte/)
      expect(Date.now() - started).toBeLessThan(5000)
      for (const received of yield* server.requests) {
        yield* Loopback.awaitClosed(received) // fails on timeout
      }
    })))

  it.scopedLive("a slow JSON reply fails with the request timeout (the target's, else the option's)", () =>
    withClient(Effect.gen(function*() {
      const server = yield* Loopback.make({ [PATH]: Loopback.json(wireMessage, { delay: "2 seconds" }) })
      const provider = yield* Anthropic.make({ timeout: "100 millis" })
      const error = failureOf(yield* Effect.exit(provider.chat(chatRequest, makeTarget(server))))
      expect(error._tag).toBe("Timeout")
      const byTarget = failureOf(yield* Effect.exit(
        (yield* Anthropic.make()).chat(chatRequest, makeTarget(server, { timeout: Duration.millis(100) }))
      ))
      expect(byTarget._tag).toBe("Timeout")
      for (const received of yield* server.requests) {
        yield* Loopback.awaitClosed(received) // fails on timeout
        expect(received.aborted()).toBe(true)
      }
    })))

  it.scopedLive("interrupting a call aborts the request", () =>
    withClient(Effect.gen(function*() {
      const server = yield* Loopback.make({ [PATH]: Loopback.stall })
      const provider = yield* Anthropic.make()
      const fiber = yield* Effect.fork(provider.chat(chatRequest, makeTarget(server)))
      const streamFiber = yield* Effect.fork(Stream.runDrain(provider.stream(chatRequest, makeTarget(server))))
      while ((yield* server.requests).length < 2) yield* Effect.sleep("10 millis")
      yield* Fiber.interrupt(fiber)
      yield* Fiber.interrupt(streamFiber)
      for (const received of yield* server.requests) {
        yield* Loopback.awaitClosed(received) // fails on timeout
        expect(received.aborted()).toBe(true)
      }
    })))

  it.scopedLive("maps every error status, for chat and stream, with retry-after", () =>
    withClient(Effect.gen(function*() {
      const anthropicError = (type: string, message: string) => ({ type: "error", error: { type, message } })
      const cases: Array<[number, unknown, Errors.ProviderError["_tag"], Record<string, string>?]> = [
        [400, anthropicError("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"), "ContextWindowExceeded"],
        [400, anthropicError("invalid_request_error", "temperature: range"), "BadRequest"],
        [401, anthropicError("authentication_error", "invalid x-api-key"), "Authentication"],
        [402, anthropicError("billing_error", "Your credit balance is too low"), "QuotaExceeded"],
        [403, anthropicError("permission_error", "not allowed"), "Authentication"],
        [404, anthropicError("not_found_error", "model: claude-test"), "ModelNotFound"],
        [413, anthropicError("request_too_large", "Request exceeds the maximum allowed number of bytes."), "BadRequest"],
        [429, anthropicError("rate_limit_error", "rate limited"), "RateLimited", {
          "retry-after": "3",
          "anthropic-ratelimit-requests-reset": new Date(Date.now() + 60_000).toISOString()
        }],
        [500, anthropicError("api_error", "Internal server error"), "ServerError"],
        [529, anthropicError("overloaded_error", "Overloaded"), "ServerError"]
      ]
      const server = yield* Loopback.make()
      const provider = yield* Anthropic.make()
      for (const [i, [status, body, tag, headers]] of cases.entries()) {
        const base = `/case${i}`
        yield* server.route(`${base}${PATH}`, Loopback.json(body, { status, headers: headers ?? {} }))
        const target = makeTarget(server, { apiBase: `${server.url}${base}` })
        const chatError = failureOf(yield* Effect.exit(provider.chat(chatRequest, target)))
        const streamError = failureOf(yield* Effect.exit(Stream.runDrain(provider.stream(chatRequest, target))))
        for (const error of [chatError, streamError]) {
          expect([status, error._tag]).toEqual([status, tag])
          expect(error.status).toBe(status)
          expect(error.provider).toBe("anthropic")
          expect(error.deploymentId).toBe("claude-a")
          expect(error.message).toContain(((body as { error: { message: string } }).error.message))
          expectNoKey(error)
        }
        if (status === 429) {
          expect(Duration.toMillis(chatError.retryAfter!)).toBe(3000)
          expect(Duration.toMillis(streamError.retryAfter!)).toBe(3000)
        }
      }
    })))

  it.scopedLive("uses the anthropic-ratelimit reset headers when there is no retry-after", () =>
    withClient(Effect.gen(function*() {
      const server = yield* Loopback.make({
        [PATH]: Loopback.json({ type: "error", error: { type: "rate_limit_error", message: "slow" } }, {
          status: 429,
          headers: { "anthropic-ratelimit-tokens-reset": new Date(Date.now() + 30_000).toISOString() }
        })
      })
      const provider = yield* Anthropic.make()
      const error = failureOf(yield* Effect.exit(provider.chat(chatRequest, makeTarget(server))))
      expect(error._tag).toBe("RateLimited")
      const ms = Duration.toMillis(error.retryAfter!)
      expect(ms).toBeGreaterThan(25_000)
      expect(ms).toBeLessThanOrEqual(30_000)
    })))

  it.scopedLive("non-JSON bodies and bodies of the wrong shape are typed errors", () =>
    withClient(Effect.gen(function*() {
      const server = yield* Loopback.make({
        "/html/v1/messages": Loopback.text("<html>Bad gateway</html>", { status: 502, contentType: "text/html" }),
        "/notjson/v1/messages": Loopback.text("{\"id\": \"msg_", { contentType: "application/json" }),
        "/shape/v1/messages": Loopback.json({ hello: "world" }),
        "/errorbody/v1/messages": Loopback.json({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } })
      })
      const provider = yield* Anthropic.make()
      const at = (base: string) => makeTarget(server, { apiBase: `${server.url}${base}` })
      const html = failureOf(yield* Effect.exit(provider.chat(chatRequest, at("/html"))))
      expect(html._tag).toBe("ServerError")
      expect(html.message).toContain("Bad gateway")
      expect(failureOf(yield* Effect.exit(provider.chat(chatRequest, at("/notjson"))))._tag).toBe("MalformedResponse")
      expect(failureOf(yield* Effect.exit(provider.chat(chatRequest, at("/shape"))))._tag).toBe("MalformedResponse")
      expect(failureOf(yield* Effect.exit(provider.chat(chatRequest, at("/errorbody"))))._tag).toBe("ServerError")
      // a JSON error where an event stream was asked for
      expect(failureOf(yield* Effect.exit(Stream.runDrain(provider.stream(chatRequest, at("/errorbody")))))._tag)
        .toBe("ServerError")
    })))

  it.scopedLive("requests Anthropic cannot take fail as BadRequest before anything is sent", () =>
    withClient(Effect.gen(function*() {
      const server = yield* Loopback.make({ [PATH]: Loopback.json(wireMessage) })
      const provider = yield* Anthropic.make()
      const bad: ChatRequest = {
        model: "m",
        messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "data:image/bmp;base64,AAAA" } }] }]
      }
      const chatError = failureOf(yield* Effect.exit(provider.chat(bad, makeTarget(server))))
      const streamError = failureOf(yield* Effect.exit(Stream.runDrain(provider.stream(bad, makeTarget(server)))))
      for (const error of [chatError, streamError]) {
        expect(error._tag).toBe("BadRequest")
        expect(error.message).toMatch(/image\/bmp/)
      }
      expect((yield* server.requests).length).toBe(0)
    })))

  it.scopedLive("embeddings fail with a typed BadRequest", () =>
    withClient(Effect.gen(function*() {
      const server = yield* Loopback.make()
      const provider = yield* Anthropic.make()
      const error = failureOf(yield* Effect.exit(provider.embed({ model: "x", input: "hello" }, makeTarget(server))))
      expect(error._tag).toBe("BadRequest")
      expect(error.message).toBe("anthropic: anthropic has no embeddings endpoint")
      expect((yield* server.requests).length).toBe(0)
    })))

  it.scopedLive("never shows the API key in an error, even when the upstream echoes it", () =>
    withClient(Effect.gen(function*() {
      const server = yield* Loopback.make({
        [PATH]: Loopback.json({ type: "error", error: { type: "authentication_error", message: `invalid x-api-key: ${KEY}` } }, {
          status: 401
        }),
        "/stream/v1/messages": sseOf([
          streamEvents[0],
          ["error", { type: "error", error: { type: "api_error", message: `boom ${KEY}` } }]
        ])
      })
      const refused = yield* Loopback.closedPortUrl
      const provider = yield* Anthropic.make({ timeout: "100 millis" })
      const errors: Array<Errors.ProviderError> = [
        failureOf(yield* Effect.exit(provider.chat(chatRequest, makeTarget(server)))),
        failureOf(yield* Effect.exit(Stream.runDrain(provider.stream(chatRequest, makeTarget(server, { apiBase: `${server.url}/stream` }))))),
        failureOf(yield* Effect.exit(provider.chat(chatRequest, makeTarget(server, { apiBase: refused })))),
        failureOf(yield* Effect.exit(Stream.runDrain(provider.stream(chatRequest, makeTarget(server, { apiBase: refused })))))
      ]
      expect(errors.map((e) => e._tag)).toEqual(["Authentication", "ServerError", "NetworkError", "NetworkError"])
      expect(errors[0].message).toContain("<redacted>")
      for (const error of errors) expectNoKey(error)
      // a key given as an option and as extra Redacted header
      const viaOption = yield* Anthropic.make({ apiKey: Redacted.make(KEY), headers: { "x-proxy-auth": Redacted.make(`proxy-${KEY}`) } })
      const error = failureOf(yield* Effect.exit(viaOption.chat(chatRequest, makeTarget(server, { apiKey: undefined }))))
      expectNoKey(error)
      const [, , received] = yield* server.requests
      expect(received?.headers["x-proxy-auth"]).toBe(`proxy-${KEY}`)
    })))
})
