/**
 * How an upstream HTTP failure becomes a typed error, the same for every HTTP provider, as
 * data: an ordered table of rules over status, error code/type and message; plus the readers
 * of retry-after and rate-limit headers (OpenAI's `x-ratelimit-*`, Anthropic's
 * `anthropic-ratelimit-*`, and the standard `retry-after` / `retry-after-ms`).
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Errors from "./Errors.js"
import type { RateLimitInfo } from "./Provider.js"

/**
 * What an upstream answered with, as the mapping sees it.
 *
 * @category Models
 * @since 0.1.0
 */
export interface HttpFailure {
  readonly provider: string
  readonly deploymentId: string
  readonly status: number
  /** Response headers, lower-case names. */
  readonly headers: Readonly<Record<string, string | undefined>>
  /** The raw body text (may be empty or not JSON). */
  readonly body: string
  /** Epoch ms the response arrived (for reset timestamps). */
  readonly now: number
}

/**
 * One rule of the table. A rule matches when every condition it sets holds: `status` (one
 * code, or an inclusive range), `code` (the body's error code or type, exact), `message`
 * (a pattern over the body's error message).
 *
 * @category Models
 * @since 0.1.0
 */
export interface Rule {
  readonly status?: number | readonly [number, number]
  readonly code?: ReadonlyArray<string>
  readonly message?: RegExp
  readonly error: Errors.ProviderError["_tag"]
}

const quotaCodes = ["insufficient_quota", "billing_error", "billing_hard_limit_reached", "insufficient_balance"]
const quotaMessage = /exceeded your current quota|credit balance is too low|insufficient (credits?|balance|funds)|billing hard limit/i
const contextWindowCodes = ["context_length_exceeded", "string_above_max_length", "context_window_exceeded"]
const contextWindowMessage =
  /maximum context length|context (window|length)|too many tokens|prompt is too long|input is too long|exceeds? the (model's )?(maximum|max)|reduce the length of the messages/i
const contentPolicyCodes = ["content_filter", "content_policy_violation", "content_management_policy", "responsible_ai_policy_violation"]
const contentPolicyMessage = /content (management )?policy|content filter|safety system|flagged by|violat(es|ing) (our|the) (usage|content) polic/i

/**
 * The table, first match wins. Quota, context-window and content-policy failures are
 * recognised from the documented error codes first, then from the messages OpenAI, Azure
 * OpenAI, Anthropic, vLLM and llama.cpp servers are known to send.
 *
 * @example
 * import { ErrorMapping } from "effect-llm-router"
 * ErrorMapping.rules.find((r) => r.status === 429)?.error // "RateLimited"
 * @category Mapping
 * @since 0.1.0
 */
export const rules: ReadonlyArray<Rule> = [
  // Out of credit or over a spending quota (OpenAI's 429 insufficient_quota, Anthropic's
  // billing_error and its 400 "credit balance is too low", 402 Payment Required): waiting
  // does not help, unlike a rate limit.
  { code: quotaCodes, error: "QuotaExceeded" },
  { status: 402, error: "QuotaExceeded" },
  { status: [400, 429], message: quotaMessage, error: "QuotaExceeded" },
  // Payload too large in bytes (Anthropic's request_too_large): a larger context will not help.
  { status: 413, error: "BadRequest" },
  { status: [400, 499], code: contextWindowCodes, error: "ContextWindowExceeded" },
  { status: [400, 499], code: contentPolicyCodes, error: "ContentPolicy" },
  { status: [400, 422], message: contextWindowMessage, error: "ContextWindowExceeded" },
  { status: [400, 422], message: contentPolicyMessage, error: "ContentPolicy" },
  { status: 401, error: "Authentication" },
  { status: 403, error: "Authentication" },
  { status: 404, error: "ModelNotFound" },
  { status: 408, error: "Timeout" },
  { status: 409, error: "ServerError" },
  { status: 429, error: "RateLimited" },
  { status: 499, error: "ServerError" },
  { status: [500, 599], error: "ServerError" },
  { status: [400, 499], error: "BadRequest" }
]

const MAX_MESSAGE = 500

/**
 * Reads the error code and message out of an OpenAI-style (`{ error: { message, code, type } }`),
 * Anthropic-style (`{ type: "error", error: { type, message } }`) or plain-text body. The
 * message is cut to 500 characters: take secrets out of `body` before (a secret cut in half can
 * no longer be found and replaced).
 *
 * @example
 * import { ErrorMapping } from "effect-llm-router"
 * ErrorMapping.parseBody('{"error":{"message":"bad key","code":"invalid_api_key"}}')
 * // { codes: ["invalid_api_key"], message: "bad key" }
 * @category Mapping
 * @since 0.1.0
 */
export const parseBody = (body: string): { readonly codes: ReadonlyArray<string>; readonly message: string } => {
  let parsed: unknown
  try {
    parsed = JSON.parse(body)
  } catch {
    return { codes: [], message: body.trim().slice(0, MAX_MESSAGE) }
  }
  const codes: Array<string> = []
  let message = ""
  const visit = (node: unknown) => {
    if (typeof node !== "object" || node === null) return
    const record = node as Record<string, unknown>
    for (const key of ["code", "type"] as const) {
      const value = record[key]
      if (typeof value === "string" && value !== "error") codes.push(value)
    }
    if (message === "" && typeof record.message === "string") message = record.message
    if (typeof record.error === "object") visit(record.error)
    else if (message === "" && typeof record.error === "string") message = record.error
    // Azure OpenAI nests the content filter verdict under innererror.
    if (typeof record.innererror === "object") visit(record.innererror)
  }
  visit(parsed)
  return { codes, message: (message === "" ? body.trim() : message).slice(0, MAX_MESSAGE) }
}

const matches = (rule: Rule, status: number, codes: ReadonlyArray<string>, message: string): boolean => {
  if (rule.status !== undefined) {
    if (typeof rule.status === "number" ? status !== rule.status : status < rule.status[0] || status > rule.status[1]) {
      return false
    }
  }
  if (rule.code !== undefined && !codes.some((c) => rule.code!.includes(c))) return false
  if (rule.message !== undefined && !rule.message.test(message)) return false
  return true
}

/**
 * Maps a failed HTTP response to its typed error with the table, reading retry-after from the
 * headers. Statuses the table does not cover (e.g. 3xx) are malformed responses. The error's
 * message quotes the body's, cut to 500 characters: `body` must already be free of secrets (the
 * HTTP providers replace their keys in it first).
 *
 * @example
 * import { ErrorMapping } from "effect-llm-router"
 * const error = ErrorMapping.fromResponse({
 *   provider: "openai", deploymentId: "gpt-a", status: 429,
 *   headers: { "retry-after": "2" }, body: '{"error":{"message":"Rate limit reached"}}', now: Date.now()
 * })
 * error._tag // "RateLimited"; error.retryAfter: 2 seconds
 * @category Mapping
 * @since 0.1.0
 */
export const fromResponse = (failure: HttpFailure, table: ReadonlyArray<Rule> = rules): Errors.ProviderError => {
  const { codes, message } = parseBody(failure.body)
  const rule = table.find((r) => matches(r, failure.status, codes, message))
  const tag = rule?.error ?? "MalformedResponse"
  // Rate-limit reset headers come on every response; only on a 429 do they say when to come back.
  const retryAfter = parseRetryAfter(failure.headers, failure.now, failure.status === 429)
  return Errors.makeProviderError(tag, {
    provider: failure.provider,
    deploymentId: failure.deploymentId,
    status: failure.status,
    message: `${failure.provider} ${failure.status}: ${message === "" ? "(empty body)" : message}`,
    retryAfter
  })
}

/**
 * Parses a duration as OpenAI's rate-limit reset headers write it: `"1s"`, `"6m0s"`, `"20ms"`,
 * `"1h2m3.5s"`. Returns milliseconds, or `undefined` when it is not one.
 *
 * @example
 * import { ErrorMapping } from "effect-llm-router"
 * ErrorMapping.parseGoDuration("6m0s") // 360000
 * @category Mapping
 * @since 0.1.0
 */
export const parseGoDuration = (text: string): number | undefined => {
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g
  let total = 0
  let consumed = 0
  for (let match = re.exec(text); match !== null; match = re.exec(text)) {
    const value = Number(match[1])
    total += match[2] === "h" ? value * 3_600_000 : match[2] === "m" ? value * 60_000 : match[2] === "s" ? value * 1000 : value
    consumed += match[0].length
  }
  return consumed > 0 && consumed === text.trim().length ? total : undefined
}

const parseSeconds = (text: string): number | undefined => {
  const n = Number(text)
  return text.trim() !== "" && Number.isFinite(n) && n >= 0 ? n * 1000 : undefined
}

const parseDate = (text: string, now: number): number | undefined => {
  const at = Date.parse(text)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}

/**
 * How long the upstream asked us to wait, from (in order) `retry-after-ms`, `retry-after`
 * (seconds or an HTTP date), then, unless `resets` is false, OpenAI's `x-ratelimit-reset-requests`
 * / `-tokens` and Anthropic's `anthropic-ratelimit-*-reset` (RFC 3339), the longest of them.
 *
 * @example
 * import { ErrorMapping } from "effect-llm-router"
 * ErrorMapping.parseRetryAfter({ "retry-after-ms": "1500" }, Date.now()) // Duration 1500 millis
 * @category Mapping
 * @since 0.1.0
 */
export const parseRetryAfter = (
  headers: Readonly<Record<string, string | undefined>>,
  now: number,
  resets = true
): Duration.Duration | undefined => {
  const ms = headers["retry-after-ms"]
  if (ms !== undefined) {
    const value = Number(ms)
    if (Number.isFinite(value) && value >= 0) return Duration.millis(value)
  }
  const after = headers["retry-after"]
  if (after !== undefined) {
    const value = parseSeconds(after) ?? parseDate(after, now)
    if (value !== undefined) return Duration.millis(value)
  }
  if (!resets) return undefined
  let longest: number | undefined
  const consider = (value: number | undefined) => {
    if (value !== undefined && (longest === undefined || value > longest)) longest = value
  }
  for (const name of ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"]) {
    const value = headers[name]
    if (value !== undefined) consider(parseGoDuration(value) ?? parseSeconds(value))
  }
  for (const name of ["anthropic-ratelimit-requests-reset", "anthropic-ratelimit-tokens-reset", "anthropic-ratelimit-input-tokens-reset", "anthropic-ratelimit-output-tokens-reset"]) {
    const value = headers[name]
    if (value !== undefined) consider(parseDate(value, now))
  }
  return longest === undefined ? undefined : Duration.millis(longest)
}

const numberHeader = (headers: Readonly<Record<string, string | undefined>>, names: ReadonlyArray<string>) => {
  for (const name of names) {
    const value = headers[name]
    if (value !== undefined && value.trim() !== "") {
      const n = Number(value)
      if (Number.isFinite(n)) return n
    }
  }
  return undefined
}

/**
 * The upstream's rate-limit view from a response's headers (OpenAI's `x-ratelimit-*`,
 * Anthropic's `anthropic-ratelimit-*`), or `undefined` when it sent none. `now` (epoch ms)
 * turns Anthropic's reset timestamps into durations.
 *
 * @example
 * import { ErrorMapping } from "effect-llm-router"
 * ErrorMapping.parseRateLimit({ "x-ratelimit-remaining-requests": "59", "x-ratelimit-limit-requests": "60" }, Date.now())
 * // { remainingRequests: 59, limitRequests: 60, ... }
 * @category Mapping
 * @since 0.1.0
 */
export const parseRateLimit = (
  headers: Readonly<Record<string, string | undefined>>,
  now: number
): RateLimitInfo | undefined => {
  const info: RateLimitInfo = {
    remainingRequests: numberHeader(headers, ["x-ratelimit-remaining-requests", "anthropic-ratelimit-requests-remaining"]),
    remainingTokens: numberHeader(headers, ["x-ratelimit-remaining-tokens", "anthropic-ratelimit-tokens-remaining"]),
    limitRequests: numberHeader(headers, ["x-ratelimit-limit-requests", "anthropic-ratelimit-requests-limit"]),
    limitTokens: numberHeader(headers, ["x-ratelimit-limit-tokens", "anthropic-ratelimit-tokens-limit"]),
    resetRequestsMs: resetHeader(headers, "x-ratelimit-reset-requests", "anthropic-ratelimit-requests-reset", now),
    resetTokensMs: resetHeader(headers, "x-ratelimit-reset-tokens", "anthropic-ratelimit-tokens-reset", now)
  }
  return info.remainingRequests === undefined && info.remainingTokens === undefined &&
      info.limitRequests === undefined && info.limitTokens === undefined
    ? undefined
    : info
}

const resetHeader = (
  headers: Readonly<Record<string, string | undefined>>,
  openai: string,
  anthropic: string,
  now: number
): number | undefined => {
  const relative = headers[openai]
  if (relative !== undefined) return parseGoDuration(relative) ?? parseSeconds(relative)
  const absolute = headers[anthropic]
  return absolute === undefined ? undefined : parseDate(absolute, now)
}
