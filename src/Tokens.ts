/**
 * Token estimates for a request before it is sent, with no tokenizer and no network: what the
 * context-window filter, tpm limits, budgets and the lowest-cost selector go by. English text
 * runs about 4 characters per token in the GPT and Claude tokenizers, other scripts about one
 * token per character; messages cost OpenAI's 3 tokens each, an image 765 (85 at low detail).
 * Expect an estimate within about 20% of the upstream's count for prose; the upstream's usage
 * is what is metered.
 *
 * @since 0.1.0
 */
import * as internal from "./internal/tokens.js"
import type { ChatRequest, EmbeddingRequest } from "./Provider.js"

/**
 * The estimated tokens of a piece of text.
 *
 * @example
 * import { Tokens } from "effect-llm-router"
 * Tokens.text("Hello, world!") // 4
 * @category Estimates
 * @since 0.1.0
 */
export const text: (text: string) => number = internal.textTokens

/**
 * The estimated input tokens of a request: messages, tools and response schema for a chat, the
 * inputs of an embedding.
 *
 * @example
 * import { Tokens } from "effect-llm-router"
 * Tokens.prompt({ model: "fast", messages: [{ role: "user", content: "Hello, world!" }] }) // 10
 * @category Estimates
 * @since 0.1.0
 */
export const prompt: (request: ChatRequest | EmbeddingRequest) => number = internal.promptTokens

/**
 * The most output tokens the request allows (`max_completion_tokens`, else `max_tokens`):
 * `undefined` when it sets neither, 0 for an embedding.
 *
 * @example
 * import { Tokens } from "effect-llm-router"
 * Tokens.maxOutput({ model: "fast", messages: [], max_tokens: 256 }) // 256
 * @category Estimates
 * @since 0.1.0
 */
export const maxOutput: (request: ChatRequest | EmbeddingRequest) => number | undefined = internal.maxOutputTokens
