/**
 * The fixed payloads of `bench/providers.ts`, shared by the clients and the loopback server:
 * the chat request both clients send, and the replies (shaped like api.openai.com's, extra
 * fields included) the server answers with.
 */

export const model = "gpt-4o-mini"

/** The request both clients send (the SDK with `stream: true` and usage for streams). */
export const messages = [
  { role: "system" as const, content: "You are a terse assistant. Answer in one short paragraph." },
  { role: "user" as const, content: "Summarize why connection reuse matters for HTTP client latency." }
]
export const maxTokens = 128
export const temperature = 0

export const replyContent =
  "Reusing a connection skips the TCP and TLS handshakes, so each request pays only for its own round trip."

export const chatReply = {
  id: "chatcmpl-BENCH000000000000000000000001",
  object: "chat.completion",
  created: 1_750_000_000,
  model: "gpt-4o-mini-2024-07-18",
  choices: [
    {
      index: 0,
      message: { role: "assistant", content: replyContent, refusal: null, annotations: [] },
      logprobs: null,
      finish_reason: "stop"
    }
  ],
  usage: {
    prompt_tokens: 31,
    completion_tokens: 22,
    total_tokens: 53,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0
    }
  },
  service_tier: "default",
  system_fingerprint: "fp_0000000000"
}

export const chatReplyBody = JSON.stringify(chatReply)

/** Content chunks in the stream (then a finish chunk and a usage chunk). */
export const contentChunks = 20

const words = (() => {
  const all = replyContent.split(" ")
  const out: Array<string> = []
  for (let i = 0; i < contentChunks; i++) out.push((i === 0 ? "" : " ") + (all[i % all.length] ?? "x"))
  return out
})()

/** The streamed text, as a client should reassemble it. */
export const streamedContent = words.join("")

const chunk = (delta: Record<string, unknown>, finish: string | null) =>
  JSON.stringify({
    id: "chatcmpl-BENCH000000000000000000000002",
    object: "chat.completion.chunk",
    created: 1_750_000_000,
    model: "gpt-4o-mini-2024-07-18",
    service_tier: "default",
    system_fingerprint: "fp_0000000000",
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    usage: null
  })

/**
 * The SSE events, each a complete `data: ...\n\n` block: `contentChunks` content chunks (the
 * first also carries the role), a finish chunk, a usage chunk (no choices), `[DONE]`.
 */
export const sseEvents: ReadonlyArray<string> = [
  ...words.map((w, i) => chunk(i === 0 ? { role: "assistant", content: w, refusal: null } : { content: w }, null)),
  chunk({}, "stop"),
  JSON.stringify({
    id: "chatcmpl-BENCH000000000000000000000002",
    object: "chat.completion.chunk",
    created: 1_750_000_000,
    model: "gpt-4o-mini-2024-07-18",
    service_tier: "default",
    system_fingerprint: "fp_0000000000",
    choices: [],
    usage: chatReply.usage
  }),
  "[DONE]"
].map((data) => `data: ${data}\n\n`)

/** Chunks a client yields per stream (content chunks, the finish chunk, the usage chunk). */
export const chunksPerStream = contentChunks + 2

/** What api.openai.com sends besides the content headers (rate limits included). */
export const rateLimitHeaders: Readonly<Record<string, string>> = {
  "openai-organization": "bench",
  "openai-processing-ms": "1",
  "openai-version": "2020-10-01",
  "x-ratelimit-limit-requests": "10000",
  "x-ratelimit-limit-tokens": "10000000",
  "x-ratelimit-remaining-requests": "9999",
  "x-ratelimit-remaining-tokens": "9999950",
  "x-ratelimit-reset-requests": "6ms",
  "x-ratelimit-reset-tokens": "0s",
  "x-request-id": "req_bench0000000000000000000000"
}
