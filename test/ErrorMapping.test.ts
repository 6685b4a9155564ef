import { describe, expect, it } from "@effect/vitest"
import { Duration } from "effect"
import * as ErrorMapping from "../src/ErrorMapping.js"

const now = Date.parse("2026-11-25T12:00:00Z")
const map = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  ErrorMapping.fromResponse({
    provider: "p",
    deploymentId: "d",
    status,
    headers,
    body: typeof body === "string" ? body : JSON.stringify(body),
    now
  })
const ms = (d: Duration.Duration | undefined) => (d === undefined ? undefined : Duration.toMillis(d))

describe("ErrorMapping.fromResponse", () => {
  it("maps statuses to tags", () => {
    const cases: Array<[number, string]> = [
      [401, "Authentication"], [402, "QuotaExceeded"], [403, "Authentication"], [413, "BadRequest"], [404, "ModelNotFound"], [408, "Timeout"],
      [409, "ServerError"], [429, "RateLimited"], [500, "ServerError"], [502, "ServerError"],
      [503, "ServerError"], [529, "ServerError"], [400, "BadRequest"], [422, "BadRequest"], [302, "MalformedResponse"]
    ]
    for (const [status, tag] of cases) {
      const error = map(status, { error: { message: "x" } })
      expect([status, error._tag]).toEqual([status, tag])
      expect(error.status).toBe(status)
      expect(error.provider).toBe("p")
      expect(error.deploymentId).toBe("d")
    }
  })

  it("recognises context-window errors by code and by message (OpenAI, Anthropic, vLLM)", () => {
    expect(map(400, { error: { code: "context_length_exceeded", message: "too long" } })._tag).toBe("ContextWindowExceeded")
    expect(
      map(400, { error: { message: "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens." } })._tag
    ).toBe("ContextWindowExceeded")
    expect(
      map(400, { type: "error", error: { type: "invalid_request_error", message: "prompt is too long: 210000 tokens > 200000 maximum" } })._tag
    ).toBe("ContextWindowExceeded")
    expect(map(400, { object: "error", message: "This model's maximum context length is 4096 tokens", type: "BadRequestError" })._tag)
      .toBe("ContextWindowExceeded")
  })

  it("recognises out-of-credit errors as QuotaExceeded, not as a rate limit or a bad request (OpenAI, Anthropic, 402)", () => {
    // OpenAI documents this 429 as not retryable: the account is out of credit.
    const openai = map(429, {
      error: {
        message: "You exceeded your current quota, please check your plan and billing details.",
        type: "insufficient_quota",
        param: null,
        code: "insufficient_quota"
      }
    }, { "x-ratelimit-reset-requests": "1s" })
    expect(openai._tag).toBe("QuotaExceeded")
    expect(openai.status).toBe(429)
    expect(map(402, { type: "error", error: { type: "billing_error", message: "Payment required" } })._tag).toBe("QuotaExceeded")
    expect(
      map(400, {
        type: "error",
        error: {
          type: "invalid_request_error",
          message: "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."
        }
      })._tag
    ).toBe("QuotaExceeded")
    expect(map(402, { error: { message: "Insufficient credits" } })._tag).toBe("QuotaExceeded")
    // rate limits stay rate limits
    expect(map(429, { error: { message: "Rate limit reached for gpt-4o on tokens per min (TPM)", code: "rate_limit_exceeded" } })._tag)
      .toBe("RateLimited")
    expect(map(429, { error: { message: "Requests have exceeded token rate limit of your current OpenAI S0 pricing tier" } })._tag)
      .toBe("RateLimited")
  })

  it("reads rate-limit reset headers as a retry-after only on a 429", () => {
    const headers = { "x-ratelimit-reset-requests": "2s" }
    expect(ms(map(429, { error: { message: "slow down" } }, headers).retryAfter)).toBe(2000)
    expect(map(500, { error: { message: "boom" } }, headers).retryAfter).toBeUndefined()
    expect(ms(map(503, { error: { message: "busy" } }, { "retry-after": "3" }).retryAfter)).toBe(3000)
  })

  it("recognises content-policy errors (OpenAI, Azure)", () => {
    expect(map(400, { error: { code: "content_filter", message: "The response was filtered" } })._tag).toBe("ContentPolicy")
    expect(
      map(400, {
        error: {
          code: "content_filter",
          message: "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
          innererror: { code: "ResponsibleAIPolicyViolation" }
        }
      })._tag
    ).toBe("ContentPolicy")
    expect(map(400, { error: { message: "Your request was rejected as a result of our safety system." } })._tag).toBe("ContentPolicy")
  })

  it("keeps a plain bad request a bad request", () => {
    const error = map(400, { error: { message: "temperature must be at most 2", code: "invalid_value" } })
    expect(error._tag).toBe("BadRequest")
    expect(error.message).toBe("p 400: temperature must be at most 2")
  })

  it("reads bodies that are not JSON and empty bodies", () => {
    expect(map(502, "<html>Bad gateway</html>").message).toBe("p 502: <html>Bad gateway</html>")
    expect(map(503, "").message).toBe("p 503: (empty body)")
    expect(map(500, "x".repeat(5000)).message.length).toBeLessThan(600)
  })

  it("reads retry-after in every documented form", () => {
    expect(ms(map(429, {}, { "retry-after-ms": "1500" }).retryAfter)).toBe(1500)
    expect(ms(map(429, {}, { "retry-after": "3" }).retryAfter)).toBe(3000)
    expect(ms(map(429, {}, { "retry-after": "Wed, 25 Nov 2026 12:00:10 GMT" }).retryAfter)).toBe(10_000)
    expect(ms(map(429, {}, { "x-ratelimit-reset-requests": "6m0s", "x-ratelimit-reset-tokens": "20ms" }).retryAfter)).toBe(360_000)
    expect(ms(map(429, {}, { "anthropic-ratelimit-tokens-reset": "2026-11-25T12:00:30Z" }).retryAfter)).toBe(30_000)
    expect(map(429, {}).retryAfter).toBeUndefined()
    // retry-after-ms wins over retry-after
    expect(ms(map(429, {}, { "retry-after-ms": "250", "retry-after": "9" }).retryAfter)).toBe(250)
  })
})

describe("ErrorMapping headers", () => {
  it("parses Go-style durations", () => {
    expect(ErrorMapping.parseGoDuration("1s")).toBe(1000)
    expect(ErrorMapping.parseGoDuration("1h2m3.5s")).toBe(3_723_500)
    expect(ErrorMapping.parseGoDuration("20ms")).toBe(20)
    expect(ErrorMapping.parseGoDuration("soon")).toBeUndefined()
    expect(ErrorMapping.parseGoDuration("5s later")).toBeUndefined()
  })

  it("reads rate-limit headroom from OpenAI and Anthropic headers", () => {
    expect(ErrorMapping.parseRateLimit({ "x-ratelimit-remaining-requests": "59", "x-ratelimit-limit-tokens": "1000" }, now)).toEqual({
      remainingRequests: 59,
      remainingTokens: undefined,
      limitRequests: undefined,
      limitTokens: 1000,
      resetRequestsMs: undefined,
      resetTokensMs: undefined
    })
    expect(ErrorMapping.parseRateLimit({ "anthropic-ratelimit-tokens-remaining": "7" }, now)?.remainingTokens).toBe(7)
    expect(ErrorMapping.parseRateLimit({ "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s" }, now)?.resetRequestsMs)
      .toBe(360_000)
    expect(
      ErrorMapping.parseRateLimit({
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2026-11-25T12:00:30Z"
      }, now)?.resetRequestsMs
    ).toBe(30_000)
    expect(ErrorMapping.parseRateLimit({ "content-type": "application/json" }, now)).toBeUndefined()
  })
})
