/**
 * A {@link Provider} for every server speaking OpenAI's chat completions dialect: OpenAI, Azure
 * OpenAI, Groq, Together, Mistral, vLLM, Ollama, llama.cpp server, LM Studio... over
 * `HttpClient` from @effect/platform (provide `FetchHttpClient.layer` or, on Node,
 * `NodeHttpClient.layerUndici`).
 *
 * - chat (`POST {apiBase}/chat/completions`), streaming (server-sent events up to `[DONE]`, with
 *   usage in the last chunk through `stream_options.include_usage`), embeddings
 *   (`POST {apiBase}/embeddings`); tools, streamed tool-call deltas, `response_format`,
 *   `parallel_tool_calls`, penalties, `max_completion_tokens` and `reasoning_effort` pass
 *   through as OpenAI defines them. For OpenAI's reasoning models (a model id starting with
 *   `o1`-`o9` or `gpt-5`, also after `openai/`), which reject `max_tokens`, a request's
 *   `max_tokens` is sent as `max_completion_tokens` (and left out when the request gives both),
 *   so one request fits every deployment of a group. Cache breakpoints (`cache_control`,
 *   Anthropic's) are not sent
 * - parameters a model is known to refuse: OpenAI's o-series and gpt-5 models (not gpt-5-chat)
 *   refuse `temperature` and `top_p` other than 1 and penalties other than 0; o3, o4-mini and
 *   gpt-5 refuse `stop`; gpt-5.1 and later refuse `temperature` and `top_p` other than 1 when a
 *   `reasoning_effort` is set. By default such a request fails with a `BadRequest` naming the
 *   parameter, before anything is sent; a deployment with `dropParams: true` drops them from
 *   the body instead, and one with a list of parameters drops those too, whatever the model.
 *   The model is read from its id: an Azure deployment name says nothing, so nothing is known
 *   to be refused there
 * - Azure OpenAI with `azure: { apiVersion }`: `{apiBase}/openai/deployments/{model}/...?api-version=`
 *   and an `api-key` header
 * - every failure is a typed `ProviderError` (see `ErrorMapping`, and the `errorRules` option),
 *   carrying the provider name and the deployment id, never the key (not even a part of it);
 *   rate-limit headers go to `target.reportRateLimit`
 * - a health check for the router's probes (`Router.Config.healthCheck`): `GET {apiBase}/models`
 *   (Azure: `GET {apiBase}/openai/models?api-version=`) with the deployment's key, judged as a
 *   call is (a refused key is `Authentication`, a 5xx `ServerError`); see the `healthCheck` option
 * - no retries of its own: the router owns retries
 *
 * @since 0.1.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Redacted from "effect/Redacted"
import type * as ErrorMapping from "../ErrorMapping.js"
import type { InvalidConfig } from "../Errors.js"
import * as internal from "../internal/openai.js"
import type { Provider } from "../Provider.js"

/**
 * How the provider reaches its servers. A deployment's own `apiBase`, `apiKey` and `timeout`
 * take precedence over these.
 *
 * - `name`: the provider's name on errors and in config (default `"openai"`, `"azure"` with `azure`)
 * - `apiBase`: default `https://api.openai.com/v1`
 * - `apiKey`: used when a deployment has none. When neither is given the key is read once, when
 *   the provider is made, from the environment variable `apiKeyEnv` (default `OPENAI_API_KEY`,
 *   `AZURE_OPENAI_API_KEY` with `azure`) through Effect `Config`; `apiKeyEnv: false` never reads
 *   it (use that for providers pointed at third-party servers). No key at all is fine for local
 *   servers (Ollama, vLLM)
 * - `organization`, `project`: OpenAI's `OpenAI-Organization` / `OpenAI-Project` headers
 * - `headers`: extra headers on every request; `Redacted` values are treated as secrets (kept out
 *   of tracing spans and error messages)
 * - `azure`: Azure OpenAI's URL form and `api-key` header, with the `api-version` to send
 * - `timeout`: a whole chat or embedding call (default 10 minutes)
 * - `firstByteTimeout`: streams, from sending until the first bytes of the body (default: `timeout`)
 * - `idleTimeout`: streams, the longest wait for more data once it started (default 2 minutes)
 * - `includeUsageInStream`: send `stream_options: { include_usage: true }` (default true); turn it
 *   off for servers that reject `stream_options`
 * - `errorRules`: your own error rules, tried before the built-in table (`ErrorMapping.rules`),
 *   first match wins: for a server with error codes of its own, or to change what a status
 *   means (`{ status: 409, error: "BadRequest" }` makes a 409 not retryable). They apply to
 *   error statuses, error objects in a 2xx body and error events in a stream alike. Each rule
 *   needs a `status` (a code from 100 to 599, or a range `[from, to]`), a `code` list or a
 *   `message` pattern (no `g` or `y` flag), and an `error` tag; `make` fails with
 *   `InvalidConfig` naming each bad field otherwise
 * - `healthCheck`: what the router's health checks call. `"models"` (default): `GET
 *   {apiBase}/models` (Azure: `{apiBase}/openai/models`), which costs nothing and proves the
 *   server up and the key accepted, not that the model answers. `"chat"`: a chat completion of
 *   at most one token to the deployment's model (`Provider.healthCheckRequest`), for servers
 *   without a model listing (it answers 404 there, which would take the deployment out as
 *   `ModelNotFound`) or to prove the model itself; it costs a few tokens per probe. `false`:
 *   no health check (the router does not probe these deployments)
 *
 * @example
 * import { Duration, Redacted } from "effect"
 * import type { OpenAiCompatible } from "effect-llm-router"
 *
 * const groq: OpenAiCompatible.Options = {
 *   name: "groq",
 *   apiBase: "https://api.groq.com/openai/v1",
 *   apiKey: Redacted.make(process.env.GROQ_API_KEY ?? ""),
 *   idleTimeout: Duration.seconds(30)
 * }
 *
 * // a self-hosted server: its "engine_busy" code is a rate limit, and a 409 is not retryable
 * const vllm: OpenAiCompatible.Options = {
 *   name: "vllm",
 *   apiBase: "http://10.0.0.5:8000/v1",
 *   apiKeyEnv: false,
 *   errorRules: [
 *     { code: ["engine_busy"], error: "RateLimited" },
 *     { status: 409, error: "BadRequest" }
 *   ]
 * }
 * @category Options
 * @since 0.1.0
 */
export interface Options {
  readonly name?: string | undefined
  readonly apiBase?: string | undefined
  readonly apiKey?: Redacted.Redacted<string> | undefined
  readonly apiKeyEnv?: string | false | undefined
  readonly organization?: string | undefined
  readonly project?: string | undefined
  readonly headers?: Readonly<Record<string, string | Redacted.Redacted<string>>> | undefined
  readonly azure?: AzureOptions | undefined
  readonly timeout?: Duration.DurationInput | undefined
  readonly firstByteTimeout?: Duration.DurationInput | undefined
  readonly idleTimeout?: Duration.DurationInput | undefined
  readonly includeUsageInStream?: boolean | undefined
  readonly errorRules?: ReadonlyArray<ErrorMapping.Rule> | undefined
  readonly healthCheck?: "models" | "chat" | false | undefined
}

/**
 * Azure OpenAI: the `api-version` query parameter to send. A deployment's `apiBase` is the
 * resource URL (`https://<resource>.openai.azure.com`) and its `model` the Azure deployment name.
 *
 * @example
 * import type { OpenAiCompatible } from "effect-llm-router"
 * const azure: OpenAiCompatible.AzureOptions = { apiVersion: "2024-10-21" }
 * @category Options
 * @since 0.1.0
 */
export interface AzureOptions {
  readonly apiVersion: string
}

/**
 * The default `apiBase`.
 *
 * @example
 * import { OpenAiCompatible } from "effect-llm-router"
 * OpenAiCompatible.defaultApiBase // "https://api.openai.com/v1"
 * @category Constants
 * @since 0.1.0
 */
export const defaultApiBase: string = internal.defaultApiBase

/**
 * Makes the provider with the `HttpClient` in context (captured: calls need nothing more).
 * Fails with `InvalidConfig` when `errorRules` holds a rule that cannot work.
 *
 * @example
 * import { FetchHttpClient } from "@effect/platform"
 * import { Effect, Layer } from "effect"
 * import { OpenAiCompatible, Router } from "effect-llm-router"
 *
 * const RouterLive = Layer.unwrapEffect(
 *   Effect.gen(function*() {
 *     const openai = yield* OpenAiCompatible.make()
 *     const ollama = yield* OpenAiCompatible.make({ name: "ollama", apiBase: "http://localhost:11434/v1", apiKeyEnv: false })
 *     return Router.layer({
 *       deployments: [
 *         { group: "fast", provider: openai, model: "gpt-4o-mini" },
 *         { group: "fast", provider: ollama, model: "llama3.2" }
 *       ]
 *     })
 *   })
 * ).pipe(Layer.provide(Router.defaults), Layer.provide(FetchHttpClient.layer))
 * @category Constructors
 * @since 0.1.0
 */
export const make: (options?: Options) => Effect.Effect<Provider, InvalidConfig, HttpClient.HttpClient> = internal.make
