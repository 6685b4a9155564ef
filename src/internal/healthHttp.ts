/**
 * The HTTP providers' health checks: one GET (a model listing, or one model) on the target's
 * `Http.Endpoint` (its headers and key, its secrets, its error rules), judged as a call's reply
 * is: a non-2xx status goes through the same `ErrorMapping` table (with the body scrubbed of
 * secrets first), a transport failure through `Http.fromHttpClientError`, a 2xx body must be
 * JSON and not an error object. The body is read to its end (the connection can be reused) and
 * otherwise ignored; rate-limit headers are not reported (they would speak of another endpoint
 * than the calls'). A timer (`Effect.timeoutFail`) bounds the whole exchange: the interrupted
 * request is aborted by the client.
 *
 * @internal
 */
import * as Headers from "@effect/platform/Headers"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberRef from "effect/FiberRef"
import * as ErrorMapping from "../ErrorMapping.js"
import type { ProviderError } from "../Errors.js"
import * as Http from "./http.js"

/** @internal */
export interface Probe {
  readonly url: string
  readonly urlParams?: Readonly<Record<string, string>> | undefined
  readonly timeout: Duration.Duration
}

/**
 * GETs `probe.url` with the endpoint's headers: succeeds on a 2xx JSON reply, else fails with
 * the typed error a call would get.
 *
 * @internal
 */
export const get = (client: HttpClient.HttpClient, endpoint: Http.Endpoint, probe: Probe): Effect.Effect<void, ProviderError> => {
  const request = HttpClientRequest.get(probe.url, {
    headers: endpoint.headers,
    urlParams: probe.urlParams,
    acceptJson: true
  })
  const exchange = Effect.flatMap(
    Effect.mapError(client.execute(request), (e) => Http.fromHttpClientError(endpoint, e)),
    (response) =>
      Effect.flatMap(Effect.mapError(response.text, (e) => Http.fromHttpClientError(endpoint, e)), (text) => {
        if (response.status < 200 || response.status >= 300) {
          return Effect.flatMap(Clock.currentTimeMillis, (now) =>
            Effect.fail(ErrorMapping.fromResponse({
              provider: endpoint.provider,
              deploymentId: endpoint.deploymentId,
              status: response.status,
              headers: response.headers,
              body: Http.scrub(endpoint, text),
              now
            }, endpoint.rules)))
        }
        const json = Http.parseJson(endpoint, text, "the health check's response body", response.status)
        if (Either.isLeft(json)) return Effect.fail(json.left)
        return Http.isErrorPayload(json.right) ? Effect.fail(Http.errorFromPayload(endpoint, text)) : Effect.void
      })
  )
  // the secret headers stay out of tracing spans, as for calls
  const redacted = Effect.flatMap(
    FiberRef.get(Headers.currentRedactedNames),
    (names) => Effect.locally(exchange, Headers.currentRedactedNames, [...names, ...endpoint.secretNames])
  )
  return Effect.timeoutFail(redacted, {
    duration: probe.timeout,
    onTimeout: () => Http.timeoutError(endpoint, "no health check answer", probe.timeout)
  })
}

/**
 * The issue of a provider's `healthCheck` option, if it is not one of `"models"`, `"chat"`,
 * `false` (or absent).
 *
 * @internal
 */
export const checkOption = (value: unknown): ReadonlyArray<{ readonly path: string; readonly message: string }> =>
  value === undefined || value === "models" || value === "chat" || value === false
    ? []
    : [{ path: "healthCheck", message: `expected "models", "chat" or false, got ${JSON.stringify(value) ?? String(value)}` }]
