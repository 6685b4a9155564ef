/**
 * Deployments: one concrete endpoint each (provider + base URL + key + upstream model) with its
 * limits, weight, tags, price and context window. Deployments sharing a `group` form the pool a
 * caller addresses by that group name.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { InvalidConfig } from "./Errors.js"
import { type Pricing, PricingInput } from "./internal/pricing.js"
import { decodeConfig, formatIssues, NonEmptyString, NonNegativeNumber, PositiveDuration, PositiveInt } from "./internal/schemas.js"
import { ChatRequest, isProvider, type Provider, type Target } from "./Provider.js"

const ProviderRef = Schema.Union(
  NonEmptyString,
  Schema.declare(isProvider, { identifier: "Provider" })
).annotations({ message: () => "expected a provider name or a Provider object" })

const ApiKey = Schema.Union(Schema.RedactedFromSelf(Schema.String), Schema.Redacted(Schema.String)).annotations({
  // Never echo the value: it may be a key given with the wrong type.
  message: () => ({ message: "expected a string or a Redacted string", override: true })
})

// What a request can do without: every parameter but the model and the messages (and our
// routing metadata, never sent).
const droppable = Object.keys(ChatRequest.fields).filter((k) => k !== "model" && k !== "messages" && k !== "metadata")
const NonNegativeInt = Schema.Number.pipe(
  Schema.int({ message: () => "expected a non-negative integer" }),
  Schema.nonNegative({ message: () => "expected a non-negative integer" })
)

const DropParams = Schema.Union(Schema.Boolean, Schema.Array(Schema.String)).pipe(
  Schema.filter((value) => {
    const unknown = typeof value === "boolean" ? [] : value.filter((name) => !droppable.includes(name))
    return unknown.length === 0 ||
      `${unknown.map((name) => JSON.stringify(name)).join(", ")}: expected request parameters (${droppable.join(", ")})`
  })
)

/**
 * The config of one deployment, as the router accepts it.
 *
 * - `id`: stable id; derived from the config (group, provider, model, base URL, tags) when absent
 * - `group`: the model group callers ask for
 * - `provider`: a {@link Provider} or the name of one given to `Router.layer({ providers })`
 * - `model`: the upstream model id
 * - `apiKey`: a string or a `Redacted` string; kept `Redacted` from here on
 * - `weight`: share of traffic under the default selector (else `rpm`, else `tpm`, else uniform)
 * - `rpm`, `tpm`: the upstream's limits per rolling minute, enforced: calls started, and tokens
 *   of the calls started (each counted at its estimate, `Tokens.prompt` plus `Tokens.maxOutput`,
 *   until it answers with its usage). A deployment at a limit is skipped; when every one is,
 *   the request fails with `NoDeploymentAvailable` (`over_limits`, `limits`, `retryAfter`) or
 *   waits for room (`options.waitForCapacity`). They also weigh the default selector
 * - `maxConcurrent`: in-flight calls allowed at once (enforced)
 * - `tags`: requests with `metadata.tags` (or `options.tags`) only go to deployments carrying
 *   all of them (`options.tags` also takes `{ all, any, exclude }`). In a group where some
 *   deployment is tagged `"default"`, requests without tags go only to those (LiteLLM's rule)
 * - `pricing`: dollars per token; else the built-in table by model; else cost is 0
 * - `contextWindow`: the model's context window in tokens (prompt and output). A request whose
 *   estimated prompt tokens plus `max_tokens` (`Tokens.prompt`, `Tokens.maxOutput`) exceed it
 *   is not sent here (a pre-call filter); absent: no check, the upstream's own error and the
 *   context-window fallbacks catch a prompt that does not fit
 * - `order`: priority tier, a non-negative integer, lower first: a request goes to the lowest
 *   tier that has a deployment available (not cooling down, not at its limits), to higher
 *   tiers only when none is. Deployments without `order` come after every ordered one
 * - `region`: where the deployment runs (`"eu-west-1"`); a request that asks for regions
 *   (`options.region`, `metadata.region`) only goes to deployments in one of them
 * - `timeout`: per call; the router's default when absent
 * - `dropParams`: request parameters the model refuses (OpenAI's reasoning models refuse
 *   `temperature` other than 1, for one). Absent or `false`: such a request fails with a
 *   `BadRequest` naming the parameter, before anything is sent; `true`: they are dropped from
 *   the request; a list of parameter names (`["seed", "stop"]`): those are dropped whatever the
 *   model, and the refused ones too
 *
 * @example
 * import { Deployment } from "effect-llm-router"
 * const config: Deployment.DeploymentConfig = {
 *   group: "fast",
 *   provider: "openai",
 *   model: "gpt-4o-mini",
 *   apiKey: "sk-...",
 *   rpm: 500,
 *   maxConcurrent: 20,
 *   tags: ["eu"],
 *   timeout: "30 seconds",
 *   contextWindow: 128_000, // requests estimated larger are not sent here
 *   order: 1, // tier 1: used only when no tier-0 deployment of "fast" is available
 *   region: "eu-west-1"
 * }
 * @category Schemas
 * @since 0.1.0
 */
export const DeploymentConfig = Schema.Struct({
  id: Schema.optional(NonEmptyString),
  group: NonEmptyString,
  provider: ProviderRef,
  model: NonEmptyString,
  apiBase: Schema.optional(NonEmptyString),
  apiKey: Schema.optional(ApiKey),
  weight: Schema.optional(NonNegativeNumber),
  rpm: Schema.optional(PositiveInt),
  tpm: Schema.optional(PositiveInt),
  maxConcurrent: Schema.optional(PositiveInt),
  tags: Schema.optional(Schema.Array(Schema.String)),
  pricing: Schema.optional(PricingInput),
  contextWindow: Schema.optional(PositiveInt),
  order: Schema.optional(NonNegativeInt),
  region: Schema.optional(NonEmptyString),
  timeout: Schema.optional(PositiveDuration),
  dropParams: Schema.optional(DropParams)
})

/**
 * The config of one deployment, as written by a user.
 *
 * @category Schemas
 * @since 0.1.0
 */
export type DeploymentConfig = typeof DeploymentConfig.Encoded

/**
 * A deployment as the router holds it: validated, with its provider resolved and its id fixed.
 *
 * @category Models
 * @since 0.1.0
 */
export interface Deployment {
  readonly id: string
  /** Position in the router's deployment list; state stores index by it. */
  readonly index: number
  readonly group: string
  readonly provider: Provider
  readonly model: string
  readonly apiBase: string | undefined
  readonly apiKey: Redacted.Redacted<string> | undefined
  readonly weight: number | undefined
  readonly rpm: number | undefined
  readonly tpm: number | undefined
  readonly maxConcurrent: number | undefined
  readonly tags: ReadonlyArray<string>
  readonly pricing: Pricing | undefined
  readonly contextWindow: number | undefined
  /** Priority tier, lower first (`undefined`: after every ordered tier). */
  readonly order?: number | undefined
  /** Where it runs, for requests that ask for a region. */
  readonly region?: string | undefined
  readonly timeout: Duration.Duration | undefined
  readonly dropParams?: boolean | ReadonlyArray<string> | undefined
  /** What the provider is called with; built once. */
  readonly target: Target
}

const decodeList = decodeConfig(Schema.Array(Schema.Unknown), "deployments")
const decodeOne = Schema.decodeUnknownEither(DeploymentConfig, { errors: "all", onExcessProperty: "error" })

/**
 * The id a deployment gets when its config names none: readable, and stable across restarts,
 * reorderings and upgrades because it hashes (FNV-1a) the config's identity, never its secrets.
 *
 * @example
 * import { Deployment } from "effect-llm-router"
 * Deployment.deriveId({ group: "fast", provider: "openai", model: "gpt-4o-mini" }) // "fast/gpt-4o-mini#fdae5fe8"
 * @category Constructors
 * @since 0.1.0
 */
export const deriveId = (config: {
  readonly group: string
  readonly provider: string | Provider
  readonly model: string
  readonly apiBase?: string | undefined
  readonly tags?: ReadonlyArray<string> | undefined
}): string => {
  const providerName = typeof config.provider === "string" ? config.provider : config.provider.name
  const identity = [config.group, providerName, config.model, config.apiBase ?? "", ...(config.tags ?? [])].join("\u0000")
  return `${config.group}/${config.model}#${fnv1a(identity).toString(16).padStart(8, "0")}`
}

/**
 * 32-bit FNV-1a over UTF-16 code units: our own, so that derived ids stay the same across
 * versions of this package's dependencies (ids end up in stores, logs and dashboards).
 */
const fnv1a = (text: string): number => {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  return hash >>> 0
}

/**
 * Validates deployment configs and resolves provider names against `providers`. Every problem
 * is reported at once, each with its path (`deployments[2].weight: expected a non-negative number`).
 *
 * @example
 * import { Either } from "effect"
 * import { Deployment } from "effect-llm-router"
 * const result = Deployment.fromConfig([{ group: "fast", provider: "fake", model: "m", weight: -1 }], {})
 * Either.isLeft(result) // true: deployments[0].provider (unknown provider "fake"), deployments[0].weight
 * @category Constructors
 * @since 0.1.0
 */
export const fromConfig = (
  configs: unknown,
  providers: Readonly<Record<string, Provider>>
): Either.Either<ReadonlyArray<Deployment>, InvalidConfig> => {
  const list = decodeList(configs)
  if (list._tag === "Left") return Either.left(list.left)
  const issues: Array<{ path: string; message: string }> = []
  const seen = new Map<string, number>()
  const deployments: Array<Deployment> = []
  if (list.right.length === 0) {
    issues.push({ path: "deployments", message: "expected at least one deployment" })
  }
  // Each deployment is checked on its own, so that one bad field does not hide the others' issues.
  list.right.forEach((input, index) => {
    const decoded = decodeOne(input)
    const providerRef = decoded._tag === "Right"
      ? decoded.right.provider
      : typeof input === "object" && input !== null ? (input as { provider?: unknown }).provider : undefined
    let provider: Provider | undefined
    if (typeof providerRef === "string" && providerRef !== "") {
      provider = Object.prototype.hasOwnProperty.call(providers, providerRef) ? providers[providerRef] : undefined
      if (provider === undefined) {
        const known = Object.keys(providers)
        issues.push({
          path: `deployments[${index}].provider`,
          message: `unknown provider "${providerRef}"; known: ${known.length === 0 ? "(none given)" : known.join(", ")}`
        })
      }
    } else if (isProvider(providerRef)) {
      provider = providerRef
    }
    if (decoded._tag === "Left") {
      issues.push(...formatIssues(decoded.left, `deployments[${index}]`))
      return
    }
    if (provider === undefined) return
    const config = decoded.right
    const id = config.id ?? deriveId(config)
    const previous = seen.get(id)
    if (previous !== undefined) {
      issues.push({
        path: `deployments[${index}].id`,
        message: `duplicate deployment id "${id}" (also deployments[${previous}]); give one an explicit id`
      })
      return
    }
    seen.set(id, index)
    deployments.push({
      id,
      index: deployments.length,
      group: config.group,
      provider,
      model: config.model,
      apiBase: config.apiBase,
      apiKey: config.apiKey,
      weight: config.weight,
      rpm: config.rpm,
      tpm: config.tpm,
      maxConcurrent: config.maxConcurrent,
      tags: config.tags ?? [],
      pricing: config.pricing,
      contextWindow: config.contextWindow,
      order: config.order,
      region: config.region,
      timeout: config.timeout,
      dropParams: config.dropParams,
      target: {
        deploymentId: id,
        model: config.model,
        apiBase: config.apiBase,
        apiKey: config.apiKey,
        timeout: config.timeout,
        dropParams: config.dropParams
      }
    })
  })
  return issues.length > 0 ? Either.left(InvalidConfig.fromIssues(issues)) : Either.right(deployments)
}
