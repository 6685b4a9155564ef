/**
 * The built-in token estimator behind `Tokens`: no tokenizer, no network. English text runs about
 * 4 characters per token in the GPT and Claude tokenizers; other scripts (CJK, Cyrillic...) about
 * one token per character, so a non-ASCII code point counts as one token.
 *
 * @internal
 */
import type { ChatRequest, Content, EmbeddingRequest } from "../Provider.js"

/** OpenAI's accounting: each message costs 3 tokens besides its content, a reply is primed with 3. */
const perMessage = 3
const replyPriming = 3
/** A 1024x1024 image at high detail (OpenAI: 85 + 4 tiles x 170); low detail is 85. */
const imageTokens = 765
const lowDetailImageTokens = 85

/** @internal */
export const textTokens = (text: string): number => {
  let ascii = 0
  let other = 0
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x80) ascii++
    // a surrogate pair is one code point: count its high half only
    else if (code < 0xdc00 || code > 0xdfff) other++
  }
  return Math.ceil(ascii / 4) + other
}

const contentTokens = (content: Content | null | undefined): number => {
  if (content === undefined || content === null) return 0
  if (typeof content === "string") return textTokens(content)
  let tokens = 0
  for (const part of content) {
    switch (part.type) {
      case "text":
        tokens += textTokens(part.text)
        break
      case "image_url":
        tokens += part.image_url.detail === "low" ? lowDetailImageTokens : imageTokens
        break
      case "file": {
        // base64 carries 3 bytes in 4 characters; a document's bytes run about 4 per token
        const data = part.file.file_data
        tokens += data === undefined ? 0 : Math.ceil((data.length * 3) / 4 / 4)
      }
    }
  }
  return tokens
}

/** @internal */
export const promptTokens = (request: ChatRequest | EmbeddingRequest): number => {
  if ("input" in request) {
    const input = request.input
    if (typeof input === "string") return textTokens(input)
    let tokens = 0
    for (const text of input) tokens += textTokens(text)
    return tokens
  }
  let tokens = replyPriming
  for (const message of request.messages) {
    tokens += perMessage + contentTokens(message.content)
    if (message.role === "assistant" && message.tool_calls !== undefined) {
      for (const call of message.tool_calls) tokens += textTokens(call.function.name) + textTokens(call.function.arguments)
    }
  }
  if (request.tools !== undefined && request.tools.length > 0) tokens += textTokens(JSON.stringify(request.tools))
  if (request.response_format !== undefined && request.response_format.type === "json_schema") {
    tokens += textTokens(JSON.stringify(request.response_format.json_schema))
  }
  return tokens
}

/** @internal */
export const maxOutputTokens = (request: ChatRequest | EmbeddingRequest): number | undefined =>
  "input" in request ? 0 : request.max_completion_tokens ?? request.max_tokens
