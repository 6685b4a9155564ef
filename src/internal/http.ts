/**
 * The HTTP core every HTTP provider shares (OpenAI-compatible, Anthropic): send a JSON POST,
 * read a JSON reply or a server-sent-event stream, and turn every way that can go wrong into a
 * typed {@link ProviderError} carrying the provider name and deployment id, never the key.
 *
 * API (kept small and stable; providers build on nothing else):
 *
 * - `Endpoint`: what one target needs on the wire, built once per target with `makeEndpoint`:
 *   provider name, deployment id, prepared headers, the secrets to keep out of spans and
 *   errors, and the rate-limit sink (`target.reportRateLimit`).
 * - `makeEndpoint({ provider, target, headers })`: header values may be `Redacted` (API keys):
 *   they are unwrapped into the request headers once, their header names are redacted from
 *   tracing spans and their values are scrubbed from every error message.
 * - `postJson(client, endpoint, { url, urlParams?, body, timeout, decode })`:
 *   `Effect<A, ProviderError>`. Non-2xx goes through `ErrorMapping.fromResponse`; a 2xx body
 *   that is not JSON, is an error object, or does not `decode` is a typed error; `timeout`
 *   bounds the whole exchange.
 * - `postSse(client, endpoint, { url, urlParams?, body, firstByteTimeout, idleTimeout, isEnd,
 *   read, endName })`: `Stream<A, ProviderError>`. Each body chunk (read from the client's
 *   own source by `Body.open`, see `body.ts`) is decoded, parsed by `Sse.makeParser`
 *   (`@effect/experimental/Sse`) and every event handed to the synchronous `read(event, out)`,
 *   which pushes values to `out` or returns a typed error, in one step. `firstByteTimeout`
 *   bounds the wait from sending until the first bytes of the body, `idleTimeout` every later
 *   wait for more bytes (kept by one timer per stream, not a race per read). The stream ends
 *   after (and including) the event for which `isEnd` holds; the rest of the body is then read
 *   and dropped (up to 64 KB or 250 ms) so the connection can be reused. A body that ends
 *   before such an event is a `MalformedResponse` ("stream ended before <endName>").
 * - `parseJson(endpoint, text, what)`, `decoder(schema)`, `isErrorPayload(json)`,
 *   `errorFromPayload(endpoint, raw, status?)`: helpers for reading events and bodies.
 * - `fromHttpClientError(endpoint, error)`, `timeoutError(endpoint, what, duration)`,
 *   `fail(endpoint, tag, message, status?)`: typed errors, scrubbed of secrets.
 * - `scrub(endpoint, text)`, `clip(endpoint, text, max)`: upstream text with the endpoint's
 *   secrets replaced. Every piece of upstream text an error keeps is scrubbed before it is cut
 *   to length (`clip`): cut first, a key straddling the cut would survive in part.
 * - `checkRules(rules, path)`: the issues of user-given error rules (`errorRules` options).
 *
 * Rate-limit headers of every response (success or failure) go to `endpoint.reportRateLimit`.
 * Each request runs in a scope of its own (`HttpClient.withScope`): a timeout, an interrupt,
 * leaving a stream early or a body that goes on too long after its end event closes it, which
 * aborts the request and releases its socket; a response read to its end is left alone.
 * Timeouts are timers on the `Clock`, not races. Nothing here retries.
 *
 * @internal
 */
import * as Sse from "@effect/experimental/Sse"
import * as Headers from "@effect/platform/Headers"
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Channel from "effect/Channel"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as DefaultServices from "effect/DefaultServices"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import * as Errors from "../Errors.js"
import type { RateLimitInfo, Target } from "../Provider.js"
import * as ErrorMapping from "../ErrorMapping.js"
import * as Body from "./body.js"

type ProviderError = Errors.ProviderError
type ErrorTag = ProviderError["_tag"]

// ---------------------------------------------------------------------------
// Endpoint
// ---------------------------------------------------------------------------

/**
 * What one target needs on the wire, prepared once.
 *
 * @internal
 */
export interface Endpoint {
  readonly provider: string
  readonly deploymentId: string
  /** Every request's headers (secrets already unwrapped). */
  readonly headers: Headers.Headers
  /** Lower-case names of headers holding secrets: redacted from tracing spans. */
  readonly secretNames: ReadonlyArray<string>
  /** Secret values: scrubbed from every error message. */
  readonly secretValues: ReadonlyArray<string>
  readonly reportRateLimit: ((info: RateLimitInfo) => Effect.Effect<void>) | undefined
  /** The error table this provider's failures are mapped with. */
  readonly rules: ReadonlyArray<ErrorMapping.Rule>
}

/**
 * Header values as providers give them: `Redacted` for secrets, `undefined` to leave one out.
 *
 * @internal
 */
export type HeaderInput = Readonly<Record<string, string | Redacted.Redacted<string> | undefined>>

/**
 * Builds the {@link Endpoint} of a target.
 *
 * @internal
 */
export const makeEndpoint = (options: {
  readonly provider: string
  readonly target: Target
  readonly headers: HeaderInput
  /** The provider's error table; the shared `ErrorMapping.rules` by default. */
  readonly rules?: ReadonlyArray<ErrorMapping.Rule> | undefined
}): Endpoint => {
  const record: Record<string, string> = {}
  const secretNames: Array<string> = []
  const secretValues: Array<string> = []
  for (const [name, value] of Object.entries(options.headers)) {
    if (value === undefined) continue
    const key = name.toLowerCase()
    if (Redacted.isRedacted(value)) {
      const secret = Redacted.value(value)
      record[key] = secret
      secretNames.push(key)
      if (secret.length >= 4) secretValues.push(secret)
      // the bare key too, when the header wraps it ("Bearer <key>")
      const bare = secret.replace(/^(Bearer|Basic|Token)\s+/i, "")
      if (bare !== secret && bare.length >= 4) secretValues.push(bare)
    } else {
      record[key] = value
    }
  }
  if (options.target.apiKey !== undefined) {
    const key = Redacted.value(options.target.apiKey)
    if (key.length >= 4 && !secretValues.includes(key)) secretValues.push(key)
  }
  return {
    provider: options.provider,
    deploymentId: options.target.deploymentId,
    headers: Headers.fromInput(record),
    secretNames,
    secretValues,
    reportRateLimit: options.target.reportRateLimit ?? undefined,
    rules: options.rules ?? ErrorMapping.rules
  }
}

// ---------------------------------------------------------------------------
// User-given error rules
// ---------------------------------------------------------------------------

// A record, not a list, so that a new error tag in Errors.ts fails to compile here until added.
const errorTags: { readonly [K in ErrorTag]: true } = {
  RateLimited: true,
  Timeout: true,
  ContextWindowExceeded: true,
  ContentPolicy: true,
  QuotaExceeded: true,
  Authentication: true,
  ModelNotFound: true,
  BadRequest: true,
  ServerError: true,
  NetworkError: true,
  MalformedResponse: true
}
const ruleFields: ReadonlySet<string> = new Set(["status", "code", "message", "error"])

const isStatus = (u: unknown): u is number => typeof u === "number" && Number.isInteger(u) && u >= 100 && u <= 599

const show = (u: unknown): string =>
  typeof u === "string" ? JSON.stringify(u) : Array.isArray(u) ? "an array" : u === null ? "null" : typeof u

/**
 * What is wrong with user-given error rules (a provider's `errorRules` option), one issue per
 * bad field with its path under `path` (`errorRules[1].status`); empty when they are fine.
 * Besides types, it refuses what would silently misbehave: a field name the table does not
 * read (a misspelt `status` would leave a rule matching every failure), a rule with no
 * condition, a `RegExp` with the `g` or `y` flag (its `test` depends on the previous call).
 *
 * @internal
 */
export const checkRules = (
  rules: unknown,
  path: string
): Array<{ readonly path: string; readonly message: string }> => {
  if (!Array.isArray(rules)) return [{ path, message: `expected an array of rules, got ${show(rules)}` }]
  const issues: Array<{ readonly path: string; readonly message: string }> = []
  rules.forEach((rule: unknown, index) => {
    const at = `${path}[${index}]`
    if (typeof rule !== "object" || rule === null || Array.isArray(rule)) {
      issues.push({ path: at, message: `expected a rule { status?, code?, message?, error }, got ${show(rule)}` })
      return
    }
    const record = rule as Record<string, unknown>
    for (const key of Object.keys(record)) {
      if (!ruleFields.has(key)) issues.push({ path: `${at}.${key}`, message: "unknown field: a rule has status, code, message and error" })
    }
    const { code, error, message, status } = record
    if (typeof error !== "string" || !Object.prototype.hasOwnProperty.call(errorTags, error)) {
      issues.push({ path: `${at}.error`, message: `expected one of ${Object.keys(errorTags).join(", ")}; got ${show(error)}` })
    }
    if (
      status !== undefined &&
      !(isStatus(status) ||
        (Array.isArray(status) && status.length === 2 && isStatus(status[0]) && isStatus(status[1]) && status[0] <= status[1]))
    ) {
      issues.push({
        path: `${at}.status`,
        message: `expected an HTTP status (an integer from 100 to 599) or a range [from, to] of them with from <= to; got ${
          Array.isArray(status) ? JSON.stringify(status) : show(status)
        }`
      })
    }
    if (code !== undefined && !(Array.isArray(code) && code.every((c) => typeof c === "string" && c !== ""))) {
      issues.push({ path: `${at}.code`, message: `expected an array of error codes or types (non-empty strings); got ${show(code)}` })
    }
    if (message !== undefined) {
      if (!(message instanceof RegExp)) {
        issues.push({ path: `${at}.message`, message: `expected a RegExp; got ${show(message)}` })
      } else if (message.global || message.sticky) {
        issues.push({
          path: `${at}.message`,
          message: `${String(message)}: drop the g and y flags (with them, test() starts where the previous match ended)`
        })
      }
    }
    if (status === undefined && code === undefined && message === undefined) {
      issues.push({ path: at, message: "a rule needs a status, code or message: without any it would match every failure" })
    }
  })
  return issues
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/**
 * `text` with every secret of the endpoint replaced by `<redacted>`. Run on error paths only.
 *
 * @internal
 */
export const scrub = (endpoint: Endpoint, text: string): string => {
  let out = text
  for (const secret of endpoint.secretValues) {
    if (out.includes(secret)) out = out.split(secret).join("<redacted>")
  }
  return out
}

/**
 * Upstream text scrubbed, then cut to `max` characters: in that order, since a secret cut in
 * half can no longer be found.
 *
 * @internal
 */
export const clip = (endpoint: Endpoint, text: string, max: number): string => {
  const scrubbed = scrub(endpoint, text)
  return scrubbed.length > max ? scrubbed.slice(0, max) : scrubbed
}

/**
 * A typed error of the endpoint, its message scrubbed of secrets.
 *
 * @internal
 */
export const fail = (
  endpoint: Endpoint,
  tag: ErrorTag,
  message: string,
  status?: number | undefined,
  retryAfter?: Duration.Duration | undefined
): ProviderError =>
  Errors.makeProviderError(tag, {
    provider: endpoint.provider,
    deploymentId: endpoint.deploymentId,
    message: scrub(endpoint, message),
    status,
    retryAfter
  })

/**
 * A `Timeout` for a wait that took too long.
 *
 * @internal
 */
export const timeoutError = (endpoint: Endpoint, what: string, duration: Duration.Duration): ProviderError =>
  fail(endpoint, "Timeout", `${endpoint.provider}: ${what} within ${Duration.format(duration)}`)

const networkCodes = new Set([
  "ECONNREFUSED", "ECONNRESET", "EPIPE", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH",
  "ECONNABORTED", "UND_ERR_SOCKET", "UND_ERR_CLOSED", "UND_ERR_ABORTED", "ERR_STREAM_PREMATURE_CLOSE"
])
const timeoutCodes = new Set(["ETIMEDOUT", "UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"])
const networkMessage = /terminated|other side closed|socket hang up|fetch failed|network|ECONN|EPIPE/i

/**
 * Codes and messages along an error's cause chain (never its request, which holds headers),
 * each message scrubbed, then cut.
 */
const describeCause = (
  endpoint: Endpoint,
  cause: unknown
): { readonly code: string | undefined; readonly text: string } => {
  let code: string | undefined
  const texts: Array<string> = []
  let node: unknown = cause
  for (let depth = 0; depth < 6 && typeof node === "object" && node !== null; depth++) {
    const record = node as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown }
    if (code === undefined && typeof record.code === "string") code = record.code
    if (typeof record.message === "string" && record.message !== "") texts.push(clip(endpoint, record.message, 200))
    node = record.cause ?? (Array.isArray(record.errors) ? record.errors[0] : undefined)
  }
  return { code, text: texts.join(": ") }
}

/**
 * Maps an HttpClient failure: transport failures (refused, reset, DNS) are `NetworkError`,
 * transport timeouts `Timeout`, a body that cannot be read `NetworkError` when the connection
 * broke and `MalformedResponse` otherwise.
 *
 * @internal
 */
export const fromHttpClientError = (endpoint: Endpoint, error: HttpClientError.HttpClientError): ProviderError => {
  if (error._tag === "ResponseError") return fromBodyError(endpoint, error.cause, error.response.status, error.reason)
  const { code, text } = describeCause(endpoint, error.cause)
  const detail = code ?? (text === "" ? error.reason : text)
  if (code !== undefined && timeoutCodes.has(code)) {
    return fail(endpoint, "Timeout", `${endpoint.provider}: transport timeout (${detail})`)
  }
  if (error.reason === "Encode") return fail(endpoint, "BadRequest", `${endpoint.provider}: could not encode the request`)
  if (error.reason === "InvalidUrl") return fail(endpoint, "NetworkError", `${endpoint.provider}: invalid URL`)
  return fail(endpoint, "NetworkError", `${endpoint.provider}: connection failed (${detail})`)
}

/**
 * Maps a failure to read a response body (`cause` as the client's source raised it): a broken
 * connection is a `NetworkError`, a transport timeout a `Timeout`, anything else a
 * `MalformedResponse`.
 *
 * @internal
 */
export const fromBodyError = (
  endpoint: Endpoint,
  cause: unknown,
  status: number | undefined,
  reason = "Decode"
): ProviderError => {
  const { code, text } = describeCause(endpoint, cause)
  const detail = code ?? (text === "" ? reason : text)
  if (code !== undefined && timeoutCodes.has(code)) {
    return fail(endpoint, "Timeout", `${endpoint.provider}: transport timeout (${detail})`, status)
  }
  if ((code !== undefined && networkCodes.has(code)) || networkMessage.test(text)) {
    return fail(endpoint, "NetworkError", `${endpoint.provider}: connection lost while reading the response (${detail})`, status)
  }
  return fail(endpoint, "MalformedResponse", `${endpoint.provider}: could not read the response body (${detail})`, status)
}

/**
 * Whether a JSON value is an error object rather than a result: OpenAI's `{ error: {...} }`,
 * Anthropic's `{ type: "error", error }`, vLLM's `{ object: "error", message }`.
 *
 * @internal
 */
export const isErrorPayload = (json: unknown): boolean => {
  if (typeof json !== "object" || json === null) return false
  const record = json as { error?: unknown; type?: unknown; object?: unknown }
  return (record.error !== undefined && record.error !== null) || record.type === "error" || record.object === "error"
}

/** Status for error payloads that come without one (inside a stream or a 2xx body). */
const statusOfCode: Readonly<Record<string, number>> = {
  invalid_request_error: 400,
  request_too_large: 413,
  authentication_error: 401,
  invalid_api_key: 401,
  permission_error: 403,
  not_found_error: 404,
  model_not_found: 404,
  rate_limit_error: 429,
  rate_limit_exceeded: 429,
  insufficient_quota: 429,
  overloaded_error: 529,
  api_error: 500,
  server_error: 500,
  timeout_error: 408
}

/**
 * Maps an error object found in a 2xx body or a stream (`raw` is its JSON text). The status is
 * the payload's own numeric `code`/`status` or, failing that, derived from its error type.
 *
 * @internal
 */
export const errorFromPayload = (endpoint: Endpoint, payload: string, status?: number | undefined): ProviderError => {
  // before parseBody, which cuts the message
  const raw = scrub(endpoint, payload)
  const { codes, message } = ErrorMapping.parseBody(raw)
  let derived = status ?? numericStatus(raw)
  if (derived === undefined) {
    for (const code of codes) {
      const s = statusOfCode[code]
      if (s !== undefined) {
        derived = s
        break
      }
    }
  }
  const mapped = ErrorMapping.fromResponse({
    provider: endpoint.provider,
    deploymentId: endpoint.deploymentId,
    status: derived ?? (codes.some((c) => /context|content|filter|policy/.test(c)) ? 400 : 500),
    headers: {},
    body: raw,
    now: 0
  }, endpoint.rules)
  return fail(endpoint, mapped._tag, `${endpoint.provider} error: ${message === "" ? "(no message)" : message}`, status ?? numericStatus(raw))
}

const numericStatus = (raw: string): number | undefined => {
  try {
    const json = JSON.parse(raw) as { code?: unknown; status?: unknown; error?: { code?: unknown; status?: unknown } }
    for (const value of [json.code, json.status, json.error?.code, json.error?.status]) {
      const n = typeof value === "number" ? value : typeof value === "string" && /^\d{3}$/.test(value) ? Number(value) : NaN
      if (n >= 400 && n <= 599) return n
    }
  } catch {
    // not JSON
  }
  return undefined
}

// ---------------------------------------------------------------------------
// Decoding helpers
// ---------------------------------------------------------------------------

const preview = (endpoint: Endpoint, text: string) => {
  const trimmed = clip(endpoint, text.trim(), 81)
  return trimmed === "" ? "(empty)" : trimmed.length > 80 ? `${JSON.stringify(trimmed.slice(0, 80))}...` : JSON.stringify(trimmed)
}

/**
 * Parses JSON text, or a `MalformedResponse` naming `what` was being read.
 *
 * @internal
 */
export const parseJson = (
  endpoint: Endpoint,
  text: string,
  what: string,
  status?: number | undefined
): Either.Either<unknown, ProviderError> => {
  try {
    return Either.right(JSON.parse(text))
  } catch {
    return Either.left(fail(endpoint, "MalformedResponse", `${endpoint.provider}: ${what} is not JSON: ${preview(endpoint, text)}`, status))
  }
}

/**
 * A decoder of a schema whose failure is a message (the first issue and its path). The message
 * may quote upstream values at any length: put it in an error through `clip`.
 *
 * @internal
 */
export const decoder = <A, I>(schema: Schema.Schema<A, I>): (u: unknown) => Either.Either<A, string> => {
  const decode = Schema.decodeUnknownEither(schema, { errors: "first" })
  return (u) => {
    const result = decode(u)
    if (Either.isRight(result)) return Either.right(result.right)
    const issues = ParseResult.ArrayFormatter.formatErrorSync(result.left)
    const first = issues[0]
    const message = first === undefined
      ? "does not match the expected shape"
      : `${first.path.length > 0 ? `at ${first.path.join(".")}: ` : ""}${first.message}`
    return Either.left(message)
  }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

interface RequestOptions {
  readonly url: string
  readonly urlParams?: Readonly<Record<string, string>> | undefined
  /** Sent as JSON. */
  readonly body: unknown
}

const buildRequest = (
  endpoint: Endpoint,
  options: RequestOptions,
  accept: string
): Either.Either<HttpClientRequest.HttpClientRequest, ProviderError> => {
  let text: string
  try {
    text = JSON.stringify(options.body)
  } catch {
    return Either.left(fail(endpoint, "BadRequest", `${endpoint.provider}: the request body cannot be encoded as JSON`))
  }
  return Either.right(HttpClientRequest.post(options.url, {
    headers: endpoint.headers,
    urlParams: options.urlParams,
    accept,
    body: HttpBody.text(text, "application/json")
  }))
}

/**
 * Effect's own tracer (it exports spans nowhere), read from the default services: a lookup, so
 * importing this module runs no Effect.
 */
const builtinTracer = Context.get(DefaultServices.liveServices, Tracer.Tracer)

/**
 * Runs the request. With a tracer installed, the client's span has the endpoint's secret header
 * names redacted; with Effect's built-in tracer (spans recorded nowhere) the request has no span
 * (and sends no `traceparent`), which saves about 30 µs per request.
 */
const execute = (
  client: HttpClient.HttpClient,
  endpoint: Endpoint,
  request: HttpClientRequest.HttpClientRequest,
  flight: Flight
): Effect.Effect<HttpClientResponse.HttpClientResponse, ProviderError> =>
  Effect.withFiberRuntime((fiber) => {
    const run = Effect.mapError(
      Effect.provideService(scopedClient(client).execute(request), Scope.Scope, flight.scope),
      (e) => fromHttpClientError(endpoint, e)
    )
    if (!fiber.getFiberRef(FiberRef.currentTracerEnabled)) return run
    if (fiber.currentTracer === builtinTracer) return Effect.withTracerEnabled(run, false)
    const names = fiber.getFiberRef(Headers.currentRedactedNames)
    return endpoint.secretNames.every((name) => names.includes(name))
      ? run
      : Effect.locally(run, Headers.currentRedactedNames, [...names, ...endpoint.secretNames])
  })

const reportRateLimit = (
  endpoint: Endpoint,
  response: HttpClientResponse.HttpClientResponse,
  clock: Clock.Clock
): Effect.Effect<void> => {
  if (endpoint.reportRateLimit === undefined) return Effect.void
  const info = ErrorMapping.parseRateLimit(response.headers, clock.unsafeCurrentTimeMillis())
  return info === undefined ? Effect.void : endpoint.reportRateLimit(info)
}

/** A non-2xx response, mapped with the table from its status, headers and raw body. */
const failedResponse = (
  endpoint: Endpoint,
  response: HttpClientResponse.HttpClientResponse
): Effect.Effect<never, ProviderError> =>
  Effect.flatMap(
    Effect.zip(Effect.orElseSucceed(response.text, () => ""), Clock.currentTimeMillis),
    ([body, now]) =>
      Effect.fail(ErrorMapping.fromResponse({
        provider: endpoint.provider,
        deploymentId: endpoint.deploymentId,
        status: response.status,
        headers: response.headers,
        // before the mapping, which cuts the message
        body: scrub(endpoint, body),
        now
      }, endpoint.rules))
  )

const isOk = (status: number) => status >= 200 && status < 300

/**
 * One request's lifetime. The request runs through `HttpClient.withScope` in a scope of its own,
 * so closing the scope aborts it (and its body); a timer (not a race: no fibers per call)
 * closes it after `limitMillis` on the clock, and the failure that follows becomes
 * `onTimeout()`.
 */
class Flight {
  timedOut = false
  /** The body reader, once the response came (released with the flight). */
  body: Body.BodyReader<ProviderError> | undefined = undefined
  private cancelTimer: (() => void) | undefined = undefined
  readonly startedAt: number
  private readonly deadline: number
  private readonly schedule: Body.Schedule
  constructor(readonly scope: Scope.CloseableScope, readonly clock: Clock.Clock, limitMillis: number) {
    this.startedAt = clock.unsafeCurrentTimeMillis()
    this.deadline = this.startedAt + limitMillis
    this.schedule = Body.scheduleOn(clock)
    if (limitMillis !== Infinity) this.cancelTimer = this.schedule(this.expire, limitMillis)
  }
  private readonly expire = () => {
    // a timer can come early (the live one is capped at 2^31 - 1 ms): set it again
    const left = this.deadline - this.clock.unsafeCurrentTimeMillis()
    if (left > 0) {
      this.cancelTimer = this.schedule(this.expire, left)
      return
    }
    this.cancelTimer = undefined
    this.timedOut = true
    Effect.runFork(Scope.close(this.scope, Exit.void))
  }
  /** Stops the timer (the request goes on). */
  disarm(): void {
    if (this.cancelTimer === undefined) return
    this.cancelTimer()
    this.cancelTimer = undefined
  }
  /** The response was read to its end: the request is over, there is nothing to abort. */
  complete = false
  /**
   * Stops the timer, releases the body and ends the request: aborts it unless it completed (an
   * abort costs a `DOMException` and, with fetch, its handlers run even after the end).
   */
  readonly close: Effect.Effect<void> = Effect.suspend(() => {
    this.disarm()
    const body = this.body
    if (this.complete || (body !== undefined && body.complete)) return body === undefined ? Effect.void : body.close
    const closeScope = Scope.close(this.scope, Exit.void)
    return body === undefined ? closeScope : Effect.zipRight(body.close, closeScope)
  })
  /** A failure of the request, or `onTimeout()` when the timer ended it. */
  failure(error: ProviderError, onTimeout: () => ProviderError): ProviderError {
    return this.timedOut ? onTimeout() : error
  }
}

const scopedClients = new WeakMap<HttpClient.HttpClient, HttpClient.HttpClient.With<HttpClientError.HttpClientError, Scope.Scope>>()

/** The client with its requests tied to a scope (`HttpClient.withScope`), made once per client. */
const scopedClient = (client: HttpClient.HttpClient) => {
  let scoped = scopedClients.get(client)
  if (scoped === undefined) {
    scoped = HttpClient.withScope(client)
    scopedClients.set(client, scoped)
  }
  return scoped
}

/** A new {@link Flight}, its timer started. */
const startFlight = (limit: Duration.Duration): Effect.Effect<Flight> =>
  Effect.clockWith((clock) =>
    Effect.map(
      Scope.make(),
      (scope) => new Flight(scope, clock, Duration.isFinite(limit) ? Math.max(0, Duration.toMillis(limit)) : Infinity)
    )
  )

/**
 * A JSON exchange.
 *
 * @internal
 */
export interface JsonCall<A> extends RequestOptions {
  /** Bounds the whole exchange, body included. */
  readonly timeout: Duration.Duration
  readonly decode: (json: unknown) => Either.Either<A, string>
}

/**
 * POSTs a JSON body and decodes the JSON reply.
 *
 * @internal
 */
export const postJson = <A>(
  client: HttpClient.HttpClient,
  endpoint: Endpoint,
  call: JsonCall<A>
): Effect.Effect<A, ProviderError> => {
  const request = buildRequest(endpoint, call, "application/json")
  if (Either.isLeft(request)) return Effect.fail(request.left)
  const exchange = (flight: Flight) => Effect.flatMap(execute(client, endpoint, request.right, flight), (response) =>
    Effect.zipRight(
      reportRateLimit(endpoint, response, flight.clock),
      !isOk(response.status)
        ? failedResponse(endpoint, response)
        : Effect.flatMap(
          Effect.mapError(response.text, (e) => fromHttpClientError(endpoint, e)),
          (text) => {
            flight.complete = true
            const json = parseJson(endpoint, text, "the response body", response.status)
            if (Either.isLeft(json)) return Effect.fail(json.left)
            if (isErrorPayload(json.right)) return Effect.fail(errorFromPayload(endpoint, text))
            const decoded = call.decode(json.right)
            return Either.isRight(decoded)
              ? Effect.succeed(decoded.right)
              : Effect.fail(fail(
                endpoint,
                "MalformedResponse",
                `${endpoint.provider}: unexpected response body: ${clip(endpoint, decoded.left, 200)}`,
                response.status
              ))
          }
        )
    ))
  const onTimeout = () => timeoutError(endpoint, "no complete response", call.timeout)
  return Effect.acquireUseRelease(
    startFlight(call.timeout),
    (flight) => Effect.mapError(exchange(flight), (error) => flight.failure(error, onTimeout)),
    (flight) => flight.close
  )
}

/**
 * A server-sent-event exchange whose events are read into values of type `A`.
 *
 * @internal
 */
export interface SseCall<A> extends RequestOptions {
  /** From sending the request until the first bytes of the body. */
  readonly firstByteTimeout: Duration.Duration
  /** Between later reads of the body. */
  readonly idleTimeout: Duration.Duration
  /** The event that ends the stream normally (it is read, then later events are dropped). */
  readonly isEnd: (event: Sse.Event) => boolean
  /**
   * Reads one event (the end event included), pushing what it yields to `out`, or returns the
   * typed error that fails the stream (after the values of the events before it). Synchronous.
   */
  readonly read: (event: Sse.Event, out: Array<A>) => ProviderError | undefined
  /** How the end event is called in errors ("[DONE]", "message_stop"). */
  readonly endName: string
}

/** After the end event, how much of the rest of the body is read (and dropped) so the connection can be reused. */
const drainBytes = 64 * 1024
const drainMillis = 250

/**
 * POSTs a JSON body and streams the values `call.read` makes of the server-sent events of the
 * reply: one synchronous step per body chunk (decode, parse with `Sse.makeParser`, read).
 *
 * @internal
 */
export const postSse = <A>(
  client: HttpClient.HttpClient,
  endpoint: Endpoint,
  call: SseCall<A>
): Stream.Stream<A, ProviderError> =>
  // A channel, not `Stream.unwrapScoped`: no `Scope` of the stream's (the request and its body
  // are released by `acquireUseRelease`), which measured about 100 µs less per stream.
  Stream.fromChannel(Channel.unwrap(Effect.suspend(() => {
    const request = buildRequest(endpoint, call, "text/event-stream")
    if (Either.isLeft(request)) return Effect.fail(request.left)
    const firstByteTimeout = () => timeoutError(endpoint, "no first byte", call.firstByteTimeout)
    const exchange = (flight: Flight) =>
      Effect.flatMap(execute(client, endpoint, request.right, flight), (response) =>
        Effect.zipRight(
          reportRateLimit(endpoint, response, flight.clock),
          !isOk(response.status)
            ? failedResponse(endpoint, response)
            : isJson(response)
            ? jsonInsteadOfStream(endpoint, response)
            : Effect.succeed(response)
        ))
    const open = (flight: Flight) =>
      Effect.flatMap(Effect.mapError(exchange(flight), (error) => flight.failure(error, firstByteTimeout)), (response) => {
        // The body's own limits take over from here; the request stays open until released.
        flight.disarm()
        const elapsed = flight.clock.unsafeCurrentTimeMillis() - flight.startedAt
        return Effect.map(
          Body.open(response, {
            firstByte: Duration.isFinite(call.firstByteTimeout)
              ? Duration.millis(Math.max(0, Duration.toMillis(call.firstByteTimeout) - elapsed))
              : call.firstByteTimeout,
            idle: call.idleTimeout,
            onFirstByteTimeout: firstByteTimeout,
            onIdleTimeout: () => timeoutError(endpoint, "stream idle: no data", call.idleTimeout),
            onError: (cause) => fromBodyError(endpoint, cause, response.status),
            onStreamError: (e) => fromHttpClientError(endpoint, e)
          }),
          (body) => {
            flight.body = body
            const firstEventBy = Duration.isFinite(call.firstByteTimeout)
              ? flight.startedAt + Duration.toMillis(call.firstByteTimeout)
              : Infinity
            return readEvents(endpoint, call, body, flight.clock, firstEventBy, () =>
              timeoutError(endpoint, "no first event (only comments or keep-alives)", call.firstByteTimeout))
          }
        )
      })
    // Whatever ends the stream (its end, a failure, the consumer leaving, an interrupt at any
    // point) closes the flight: the body is released and the request aborted unless complete.
    return Effect.succeed(Channel.acquireUseRelease(
      startFlight(call.firstByteTimeout),
      (flight) => Channel.unwrap(open(flight)),
      (flight) => flight.close
    ))
  })))

/**
 * The events of a body, read into values: a chunk of them per body chunk that yields any. Bytes
 * that are no event (SSE comments, keep-alive pings) do not count as the stream's start: with
 * no event by `firstEventBy` (clock ms) the stream fails with `onNoEvent()` when the next such
 * bytes come (a server that sends nothing at all is the body reader's first-byte limit).
 */
const readEvents = <A>(
  endpoint: Endpoint,
  call: SseCall<A>,
  body: Body.BodyReader<ProviderError>,
  clock: Clock.Clock,
  firstEventBy: number,
  onNoEvent: () => ProviderError
): Channel.Channel<Chunk.Chunk<A>, unknown, ProviderError, unknown, void, unknown> => {
  const decoder = new TextDecoder()
  let ended = false
  let started = false
  let failure: ProviderError | undefined
  let out: Array<A> = []
  const parser = Sse.makeParser((event) => {
    if (ended || failure !== undefined || event._tag !== "Event") return
    started = true
    const end = call.isEnd(event)
    failure = call.read(event, out)
    if (end) ended = true
  })
  // The parser rescans its buffer from the start for every line it finds (quadratic in the
  // lines of one feed), so the text is fed a line at a time (split after "\n", which keeps
  // "\r\n" whole): the same events, in linear time.
  const feedText = (text: string): void => {
    let start = 0
    while (start < text.length && failure === undefined && !ended) {
      const newline = text.indexOf("\n", start)
      const end = newline < 0 ? text.length : newline + 1
      const tooLarge = parser.feed(start === 0 && end === text.length ? text : text.slice(start, end))
      if (tooLarge !== undefined && failure === undefined) {
        failure = fail(endpoint, "MalformedResponse", `${endpoint.provider}: ${tooLarge.message}`)
      }
      start = end
    }
  }
  const cutOff = () =>
    fail(endpoint, "MalformedResponse", `${endpoint.provider}: stream ended before ${call.endName} (cut off)`)

  // The next values; `undefined` once the stream is over (after the end event, the rest of the
  // body is drained so the connection goes back to the pool instead of being aborted).
  const next: Effect.Effect<Chunk.Chunk<A> | undefined, ProviderError> = Effect.flatMap(body.read, (bytes) => {
    if (bytes === undefined) return Effect.fail(cutOff())
    feedText(decoder.decode(bytes, { stream: true }))
    if (out.length === 0) {
      if (failure !== undefined) return Effect.fail(failure)
      if (!started && clock.unsafeCurrentTimeMillis() >= firstEventBy) return Effect.fail(onNoEvent())
      return ended ? Effect.as(body.drain(drainBytes, drainMillis), undefined) : next
    }
    const emitted = Chunk.unsafeFromArray(out)
    out = []
    return Effect.succeed(emitted)
  })
  const loop: Channel.Channel<Chunk.Chunk<A>, unknown, ProviderError, unknown, void, unknown> = Channel.flatMap(
    Channel.fromEffect(Effect.suspend(() =>
      failure !== undefined ? Effect.fail(failure) : ended ? Effect.as(body.drain(drainBytes, drainMillis), undefined) : next
    )),
    (chunk) => chunk === undefined ? Channel.void : Channel.zipRight(Channel.write(chunk), loop)
  )
  return loop
}

const isJson = (response: HttpClientResponse.HttpClientResponse) =>
  (response.headers["content-type"] ?? "").toLowerCase().includes("application/json")

/** A 2xx JSON body where an event stream was asked for: an error object, or malformed. */
const jsonInsteadOfStream = (
  endpoint: Endpoint,
  response: HttpClientResponse.HttpClientResponse
): Effect.Effect<never, ProviderError> =>
  Effect.flatMap(Effect.mapError(response.text, (e) => fromHttpClientError(endpoint, e)), (text) => {
    const json = parseJson(endpoint, text, "the response body", response.status)
    if (Either.isLeft(json)) return Effect.fail(json.left)
    return Effect.fail(
      isErrorPayload(json.right)
        ? errorFromPayload(endpoint, text)
        : fail(endpoint, "MalformedResponse", `${endpoint.provider}: expected an event stream, got JSON`, response.status)
    )
  })
