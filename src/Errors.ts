/**
 * Every failure a caller of the router can see, as tagged errors, and the one table that says
 * what the router does with each: retry it, cool the deployment down, fall back to which kind
 * of fallback group.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"

/**
 * One call to one deployment, as recorded on a route and on errors.
 *
 * @category Models
 * @since 0.1.0
 */
export interface Attempt {
  readonly deploymentId: string
  readonly group: string
  /**
   * `"won"`: its answer is the request's; `"failed"`: it ended with `error`; `"cancelled"`: it
   * was stopped because another attempt of the request won (a hedge or a race), or the request
   * itself was.
   */
  readonly outcome: "won" | "failed" | "cancelled"
  /** The tag of the error this attempt ended with; absent unless it failed. */
  readonly error?: ErrorTag | undefined
  /** From the call to the provider until its answer (a stream: its end), its failure, or its cancellation. */
  readonly latencyMs: number
  /** Streams: from the call until the first content chunk. */
  readonly firstContentMs?: number | undefined
}

/**
 * Facts every provider error carries.
 *
 * @category Models
 * @since 0.1.0
 */
export interface ProviderErrorFields {
  readonly provider: string
  readonly deploymentId: string
  readonly message: string
  /** HTTP status when the upstream answered with one. */
  readonly status?: number | undefined
  /** How long the upstream asked us to wait (retry-after headers). */
  readonly retryAfter?: Duration.Duration | undefined
  /** Every attempt the router made, on errors the router returns to a caller. */
  readonly attempts?: ReadonlyArray<Attempt> | undefined
}

/**
 * The upstream said 429: too many requests or tokens.
 *
 * @example
 * import { Duration } from "effect"
 * import { Errors } from "effect-llm-router"
 * new Errors.RateLimited({ provider: "openai", deploymentId: "gpt-a", status: 429, message: "slow down", retryAfter: Duration.seconds(2) })
 * @category Errors
 * @since 0.1.0
 */
export class RateLimited extends Data.TaggedError("RateLimited")<ProviderErrorFields> {}

/**
 * The call did not finish in time (ours or the upstream's 408).
 *
 * @example
 * import { Errors } from "effect-llm-router"
 * new Errors.Timeout({ provider: "openai", deploymentId: "gpt-a", message: "timed out after 30s" })
 * @category Errors
 * @since 0.1.0
 */
export class Timeout extends Data.TaggedError("Timeout")<ProviderErrorFields> {}

/**
 * The prompt does not fit the model's context window.
 *
 * @example
 * import { Errors } from "effect-llm-router"
 * new Errors.ContextWindowExceeded({ provider: "openai", deploymentId: "gpt-a", status: 400, message: "maximum context length is 8192 tokens" })
 * @category Errors
 * @since 0.1.0
 */
export class ContextWindowExceeded extends Data.TaggedError("ContextWindowExceeded")<ProviderErrorFields> {}

/**
 * The upstream refused the content (content policy / safety filter).
 *
 * @example
 * import { Errors } from "effect-llm-router"
 * new Errors.ContentPolicy({ provider: "azure", deploymentId: "gpt-a", status: 400, message: "content_filter" })
 * @category Errors
 * @since 0.1.0
 */
export class ContentPolicy extends Data.TaggedError("ContentPolicy")<ProviderErrorFields> {}

/**
 * The account behind the deployment is out of credit or over its spending quota (OpenAI's 429
 * `insufficient_quota`, a 402 Payment Required, Anthropic's `billing_error` and "credit balance
 * is too low"). Unlike a rate limit it does not pass by waiting: the deployment is taken out of
 * rotation for long (`Cooldown` option `longDuration`) and the request goes to another
 * deployment or group, never back to this one.
 *
 * @example
 * import { Errors } from "effect-llm-router"
 * new Errors.QuotaExceeded({ provider: "openai", deploymentId: "gpt-a", status: 429, message: "You exceeded your current quota" })
 * @category Errors
 * @since 0.1.0
 */
export class QuotaExceeded extends Data.TaggedError("QuotaExceeded")<ProviderErrorFields> {}

/**
 * The credentials were refused (401, 403).
 *
 * @example
 * import { Errors } from "effect-llm-router"
 * new Errors.Authentication({ provider: "openai", deploymentId: "gpt-a", status: 401, message: "invalid api key" })
 * @category Errors
 * @since 0.1.0
 */
export class Authentication extends Data.TaggedError("Authentication")<ProviderErrorFields> {}

/**
 * The upstream does not know the model (404).
 *
 * @example
 * import { Errors } from "effect-llm-router"
 * new Errors.ModelNotFound({ provider: "openai", deploymentId: "gpt-a", status: 404, message: "model gpt-9 does not exist" })
 * @category Errors
 * @since 0.1.0
 */
export class ModelNotFound extends Data.TaggedError("ModelNotFound")<ProviderErrorFields> {}

/**
 * The request itself is wrong (400 and other 4xx not covered elsewhere).
 *
 * @example
 * import { Errors } from "effect-llm-router"
 * new Errors.BadRequest({ provider: "openai", deploymentId: "gpt-a", status: 400, message: "temperature must be <= 2" })
 * @category Errors
 * @since 0.1.0
 */
export class BadRequest extends Data.TaggedError("BadRequest")<ProviderErrorFields> {}

/**
 * The upstream failed or is unavailable (5xx, overloaded).
 *
 * @example
 * import { Errors } from "effect-llm-router"
 * new Errors.ServerError({ provider: "anthropic", deploymentId: "claude-a", status: 529, message: "overloaded" })
 * @category Errors
 * @since 0.1.0
 */
export class ServerError extends Data.TaggedError("ServerError")<ProviderErrorFields> {}

/**
 * The connection failed (refused, reset, DNS).
 *
 * @example
 * import { Errors } from "effect-llm-router"
 * new Errors.NetworkError({ provider: "openai", deploymentId: "gpt-a", message: "ECONNRESET" })
 * @category Errors
 * @since 0.1.0
 */
export class NetworkError extends Data.TaggedError("NetworkError")<ProviderErrorFields> {}

/**
 * The upstream answered something we could not read (not JSON, wrong shape, cut stream).
 *
 * @example
 * import { Errors } from "effect-llm-router"
 * new Errors.MalformedResponse({ provider: "openai", deploymentId: "gpt-a", status: 200, message: "expected JSON" })
 * @category Errors
 * @since 0.1.0
 */
export class MalformedResponse extends Data.TaggedError("MalformedResponse")<ProviderErrorFields> {}

/**
 * Any error a provider call can end with.
 *
 * @category Errors
 * @since 0.1.0
 */
export type ProviderError =
  | RateLimited
  | Timeout
  | ContextWindowExceeded
  | ContentPolicy
  | QuotaExceeded
  | Authentication
  | ModelNotFound
  | BadRequest
  | ServerError
  | NetworkError
  | MalformedResponse

/**
 * The tag of a {@link ProviderError}: what an upstream answer can be classed as (the `error` of
 * an `ErrorMapping.Rule`, a fake provider's scripted failure).
 *
 * @example
 * import type { Errors } from "effect-llm-router"
 * const tag: Errors.ProviderErrorTag = "QuotaExceeded"
 * @category Models
 * @since 0.1.0
 */
export type ProviderErrorTag = ProviderError["_tag"]

const providerErrorClasses: {
  readonly [K in ProviderError["_tag"]]: new(fields: ProviderErrorFields) => ProviderError
} = {
  RateLimited,
  Timeout,
  ContextWindowExceeded,
  ContentPolicy,
  QuotaExceeded,
  Authentication,
  ModelNotFound,
  BadRequest,
  ServerError,
  NetworkError,
  MalformedResponse
}

/**
 * Builds a provider error from its tag (for providers whose error kind is data, such as a
 * mapping table).
 *
 * @example
 * import { Errors } from "effect-llm-router"
 * Errors.makeProviderError("ServerError", { provider: "p", deploymentId: "d", status: 503, message: "unavailable" })
 * @category Constructors
 * @since 0.1.0
 */
export const makeProviderError = (tag: ProviderError["_tag"], fields: ProviderErrorFields): ProviderError =>
  new providerErrorClasses[tag](fields)

/**
 * Why no deployment of a group could take a request.
 *
 * - `cooling_down`: every deployment is cooling down; `retryAfter` says when the first returns
 * - `over_budget`: every deployment is over a budget (`CostMeter` `budgets`): `budget` names the
 *   one that resets first, `retryAfter` says when
 * - `over_limits`: every deployment is at one of its limits (`limits` says which:
 *   `maxConcurrent`, `rpm`, `tpm`); for rpm and tpm, `retryAfter` says when the first has room
 *   for the request again (absent when none ever can: the request alone is over their tpm)
 * - `none_fits`: the pre-call filters left no deployment (tags, region, context window: see
 *   `filtered`), or the selector found none that fits (`Selector.NoFit`)
 *
 * A request that runs out of deployments after upstream failures ends with the last upstream
 * error instead (with every attempt), not with this error.
 *
 * @category Models
 * @since 0.1.0
 */
export type UnavailableReason = "cooling_down" | "over_limits" | "over_budget" | "none_fits"

/**
 * No deployment of the group could take the request right now.
 *
 * @example
 * import { Duration } from "effect"
 * import { Errors } from "effect-llm-router"
 * new Errors.NoDeploymentAvailable({ group: "fast", reason: "cooling_down", retryAfter: Duration.seconds(4), message: "every deployment of fast is cooling down" })
 * @category Errors
 * @since 0.1.0
 */
export class NoDeploymentAvailable extends Data.TaggedError("NoDeploymentAvailable")<{
  readonly group: string
  readonly reason: UnavailableReason
  readonly message: string
  /**
   * When the first cooling deployment returns (`cooling_down`), or the first deployment at its
   * rpm or tpm limit has room for the request (`over_limits`).
   */
  readonly retryAfter?: Duration.Duration | undefined
  /** The budget that refused deployments and resets first (`over_budget`), and when it resets (epoch ms). */
  readonly budget?: { readonly name: string; readonly resetsAt: number } | undefined
  /** The limits that refused deployments (`over_limits`). */
  readonly limits?: ReadonlyArray<"maxConcurrent" | "rpm" | "tpm"> | undefined
  readonly attempts?: ReadonlyArray<Attempt> | undefined
  /** Each deployment the pre-call filters left out, and why (also in `message`). */
  readonly filtered?: ReadonlyArray<FilteredDeployment> | undefined
}> {}

/**
 * A pre-call filter: the request's tags against the deployment's (`tags`, with the `"default"`
 * rule for untagged requests), the request's regions (`region`), its estimated tokens against
 * the deployment's `contextWindow` (`context_window`).
 *
 * @category Models
 * @since 0.1.0
 */
export type PreCallFilter = "tags" | "region" | "context_window"

/**
 * A deployment the pre-call filters left out of a request, and why.
 *
 * @example
 * import type { Errors } from "effect-llm-router"
 * const out: Errors.FilteredDeployment = {
 *   deploymentId: "gpt-small",
 *   filters: ["context_window"],
 *   reason: "context window 8192 < 9000 estimated tokens"
 * }
 * @category Models
 * @since 0.1.0
 */
export interface FilteredDeployment {
  readonly deploymentId: string
  /** The filters that refused it. */
  readonly filters: ReadonlyArray<PreCallFilter>
  /** Why, in words: `lacks tag eu`, `region us-east-1, asked eu-west-1`... (`; ` between several). */
  readonly reason: string
}

/**
 * The request asked for a model group the router does not know.
 *
 * @example
 * import { Errors } from "effect-llm-router"
 * new Errors.UnknownGroup({ group: "gpt-9", knownGroups: ["fast", "smart"], message: "unknown model group gpt-9; known: fast, smart" })
 * @category Errors
 * @since 0.1.0
 */
export class UnknownGroup extends Data.TaggedError("UnknownGroup")<{
  readonly group: string
  readonly knownGroups: ReadonlyArray<string>
  readonly message: string
  readonly attempts?: ReadonlyArray<Attempt> | undefined
}> {}

/**
 * The request itself cannot be routed as asked: bad per-request options (a negative number of
 * retries, an unknown deployment id, a fallback to an unknown group...). Each issue names the
 * option's path. Nothing was sent upstream.
 *
 * @example
 * import { Errors } from "effect-llm-router"
 * new Errors.InvalidRequest({
 *   issues: [{ path: "options.deployment", message: "unknown deployment \"gpt-z\"" }],
 *   message: "invalid request options: options.deployment: unknown deployment \"gpt-z\""
 * })
 * @category Errors
 * @since 0.1.0
 */
export class InvalidRequest extends Data.TaggedError("InvalidRequest")<{
  readonly issues: ReadonlyArray<{ readonly path: string; readonly message: string }>
  readonly message: string
  readonly attempts?: ReadonlyArray<Attempt> | undefined
}> {
  /**
   * Builds the error from its issues, with a message listing them.
   *
   * @since 0.1.0
   */
  static fromIssues(issues: ReadonlyArray<{ readonly path: string; readonly message: string }>): InvalidRequest {
    return new InvalidRequest({
      issues,
      message: `invalid request options: ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`
    })
  }
}

/**
 * Router configuration that cannot work. Raised when the router is built, never later.
 * Each issue names the path of the bad field, e.g. `deployments[2].weight`.
 *
 * @example
 * import { Errors } from "effect-llm-router"
 * Errors.InvalidConfig.fromIssues([{ path: "deployments[2].weight", message: "expected a non-negative number" }])
 * // message: "invalid router config:\n  deployments[2].weight: expected a non-negative number"
 * @category Errors
 * @since 0.1.0
 */
export class InvalidConfig extends Data.TaggedError("InvalidConfig")<{
  readonly issues: ReadonlyArray<{ readonly path: string; readonly message: string }>
  readonly message: string
}> {
  /**
   * Builds the error from its issues, with a message listing them one per line.
   *
   * @since 0.1.0
   */
  static fromIssues(issues: ReadonlyArray<{ readonly path: string; readonly message: string }>): InvalidConfig {
    return new InvalidConfig({
      issues,
      message: `invalid router config:\n${issues.map((i) => `  ${i.path}: ${i.message}`).join("\n")}`
    })
  }
}

/**
 * Any error `Router.chat`, `Router.stream` or `Router.embed` can end with.
 *
 * @category Errors
 * @since 0.1.0
 */
export type RouterError = ProviderError | NoDeploymentAvailable | UnknownGroup | InvalidRequest

/**
 * The tag of a {@link RouterError}.
 *
 * @category Models
 * @since 0.1.0
 */
export type ErrorTag = RouterError["_tag"]

/**
 * Which fallback list a failure moves on to once its group is exhausted.
 *
 * @category Classification
 * @since 0.1.0
 */
export type FallbackKind = "generic" | "context_window" | "content_policy" | "none"

/**
 * What the router does with an error.
 *
 * - `retry`: `"any"`: retried within the group (at once on another deployment when one is
 *   available, else on the same one after the retry schedule's backoff); `"elsewhere"`: retried
 *   only on another deployment of the group, never on the one that failed; `"never"`
 * - `cooldown`: `"count"`: a transient failure, counted by the breaker's outlier detection (see
 *   `Cooldown`); `"immediate"`: the deployment is unusable until someone acts (a refused key, an
 *   unknown model) and leaves rotation at once for the cooldown `duration`; `"long"`: the same for
 *   `longDuration` (out of credit); `"none"`: the request was at fault, a sign of life
 * - `fallback`: which fallback list applies once the group is exhausted
 *
 * @category Classification
 * @since 0.1.0
 */
export interface Classification {
  readonly retry: "any" | "elsewhere" | "never"
  readonly cooldown: "none" | "count" | "immediate" | "long"
  readonly fallback: FallbackKind
}

/**
 * The classification table: one row per error tag. Retry, cooldown and fallback policies read
 * it; none of them test error types on their own. A router can override rows with
 * `Router.layer({ classification })`.
 *
 * @example
 * import { Errors } from "effect-llm-router"
 * Errors.classification.RateLimited // { retry: "any", cooldown: "count", fallback: "generic" }
 * @category Classification
 * @since 0.1.0
 */
export const classification: ClassificationTable = {
  RateLimited: { retry: "any", cooldown: "count", fallback: "generic" },
  Timeout: { retry: "any", cooldown: "count", fallback: "generic" },
  ServerError: { retry: "any", cooldown: "count", fallback: "generic" },
  NetworkError: { retry: "any", cooldown: "count", fallback: "generic" },
  MalformedResponse: { retry: "any", cooldown: "count", fallback: "generic" },
  QuotaExceeded: { retry: "elsewhere", cooldown: "long", fallback: "generic" },
  Authentication: { retry: "elsewhere", cooldown: "immediate", fallback: "generic" },
  ModelNotFound: { retry: "elsewhere", cooldown: "immediate", fallback: "generic" },
  BadRequest: { retry: "never", cooldown: "none", fallback: "none" },
  ContextWindowExceeded: { retry: "never", cooldown: "none", fallback: "context_window" },
  ContentPolicy: { retry: "never", cooldown: "none", fallback: "content_policy" },
  NoDeploymentAvailable: { retry: "never", cooldown: "none", fallback: "generic" },
  UnknownGroup: { retry: "never", cooldown: "none", fallback: "none" },
  InvalidRequest: { retry: "never", cooldown: "none", fallback: "none" }
}

/**
 * A full classification table: a row for every error tag.
 *
 * @category Classification
 * @since 0.1.0
 */
export type ClassificationTable = { readonly [K in ErrorTag]: Classification }

/**
 * Overrides of some rows of the table, each row in part (`{ ServerError: { retry: "never" } }`).
 *
 * @category Classification
 * @since 0.1.0
 */
export type ClassificationOverrides = { readonly [K in ErrorTag]?: Partial<Classification> }

/**
 * Looks an error up in the default {@link classification} table.
 *
 * @example
 * import { Errors } from "effect-llm-router"
 * Errors.classify(new Errors.Timeout({ provider: "p", deploymentId: "d", message: "slow" })).retry // "any"
 * @category Classification
 * @since 0.1.0
 */
export const classify = (error: RouterError): Classification => classification[error._tag]

const providerErrorTags: ReadonlySet<string> = new Set(Object.keys(providerErrorClasses))

/**
 * Whether a string is the tag of a provider error.
 *
 * @example
 * import { Errors } from "effect-llm-router"
 * Errors.isProviderErrorTag("RateLimited") // true
 * @category Guards
 * @since 0.1.0
 */
export const isProviderErrorTag = (tag: string): tag is ProviderError["_tag"] => providerErrorTags.has(tag)

/**
 * Whether an error came from a provider call (as opposed to the router itself).
 *
 * @example
 * import { Errors } from "effect-llm-router"
 * Errors.isProviderError(new Errors.ServerError({ provider: "p", deploymentId: "d", message: "boom" })) // true
 * @category Guards
 * @since 0.1.0
 */
export const isProviderError = (error: RouterError): error is ProviderError => providerErrorTags.has(error._tag)
