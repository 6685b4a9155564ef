/**
 * One routed request: its options (checked before anything is sent), the policies it runs
 * under, and what it accumulates across its attempts (attempts, exclusions, time spent), from
 * which its route info is made.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import type { MeteredUsage } from "../CostMeter.js"
import type { Deployment } from "../Deployment.js"
import { type Attempt, InvalidConfig, InvalidRequest, type ProviderError, type RouterError, UnknownGroup } from "../Errors.js"
import { Hedge, type Policy as HedgePolicy, type Service as HedgeService } from "../Hedge.js"
import type { ChatRequest, EmbeddingRequest, Usage } from "../Provider.js"
import type { RequestOptions, RouteInfo, TagFilter } from "../Router.js"
import { type Engine, type Policies, policiesIn } from "./engine.js"
import { type Filter, requestFilter } from "./filters.js"
import * as HedgeInternal from "./hedge.js"
import { decodeConfig, DurationInput, formatIssues, NonEmptyString, PositiveDuration } from "./schemas.js"

/**
 * A request's options, checked and resolved.
 *
 * @internal
 */
export interface Options {
  readonly retries: number | undefined
  readonly fallbacks: ReadonlyArray<string> | false | undefined
  readonly timeout: Duration.Duration | undefined
  readonly deadline: Duration.Duration | undefined
  /** The deployment the request is pinned to. */
  readonly deployment: Deployment | undefined
  /** `false`: no hedging; `true`: the context's or the router's; else this request's own policy. */
  readonly hedge: boolean | HedgePolicy
  /** The groups the first attempt is sent to at once (the requested one first), when racing. */
  readonly race: ReadonlyArray<string> | undefined
  /** How long in all the request may wait for room under its deployments' limits. */
  readonly waitForCapacity?: Duration.Duration | undefined
}

/**
 * What one routed request accumulates across its attempts.
 *
 * @internal
 */
export interface RequestContext {
  readonly engine: Engine
  readonly policies: Policies
  readonly requestedGroup: string
  /** The request's tags: `metadata.tags` and `options.tags` (its all-of ones); deployments must carry them all. */
  readonly tags: ReadonlyArray<string>
  /** The request's body. */
  readonly request: ChatRequest | EmbeddingRequest
  /** What its own asks filter (`tags`, `options.tags`, regions: `filters.ts`); `undefined`: it asks nothing. */
  readonly filter: Filter | undefined
  readonly clock: Clock.Clock
  readonly startedMs: number
  readonly options: Options | undefined
  readonly contentFilterIsError: boolean
  /** The request's hedging: its context's, else the router's; `undefined`: none. */
  readonly hedge: HedgeService | undefined
  /** Whether several attempts may run at once (hedging, a race): they keep `inFlight`. */
  readonly concurrent: boolean
  readonly attempts: Array<Attempt>
  /** The deployment the last attempt failed on: the next retry avoids it when it can. */
  lastFailed: string | undefined
  /** Deployments this request never goes back to (they failed with an error retried only elsewhere). */
  excluded: Set<string> | undefined
  /** The last error an upstream answered with: what the caller gets if the request then runs out of deployments. */
  lastUpstream: ProviderError | undefined
  /**
   * When each deployment that answered with a retry-after takes this request again (epoch ms):
   * the request never goes back earlier, whatever the cooldown policy does.
   */
  notBefore: Map<string, number> | undefined
  /** Attempts made in the group being tried. */
  groupAttempts: number
  /** Deployments with an attempt of this request running (a hedge goes elsewhere when it can). */
  inFlight: Set<string> | undefined
  providerMs: number
  waitedMs: number
  /** Dollars of attempts that reported usage but did not win (a reply refused as content-filtered). */
  otherCost: number
  /** The request's estimated tokens, once a group with tpm limits asked (`attempt.ts`). */
  tokens: number | undefined
}

const noTags: ReadonlyArray<string> = []

/** @internal */
export const nowMs = (clock: Clock.Clock): number => Number(clock.unsafeCurrentTimeNanos()) / 1e6

const Tags = Schema.Array(Schema.String)
// `tags` and a region are each checked in the form they were given in: only its issues are told.
const decodeTagList = decodeConfig(Tags, "options.tags")
const decodeTagFilter = decodeConfig(
  Schema.Struct({
    all: Schema.optional(Schema.UndefinedOr(Tags)),
    any: Schema.optional(Schema.UndefinedOr(Tags.pipe(Schema.minItems(1, { message: () => "expected at least one tag (leave `any` out for none)" })))),
    exclude: Schema.optional(Schema.UndefinedOr(Tags))
  }),
  "options.tags"
)
const tagsOf = (input: unknown): Either.Either<TagFilter, InvalidConfig> =>
  input === undefined
    ? Either.right({})
    : Array.isArray(input)
    ? Either.map(decodeTagList(input), (all) => ({ all }))
    : typeof input === "object" && input !== null
    ? decodeTagFilter(input)
    : Either.left(InvalidConfig.fromIssues([{ path: "options.tags", message: "expected a list of tags or { all?, any?, exclude? }" }]))

/** A region, or a list of them (one of which the deployment must be in), checked at `path`. */
const regionsAt = (path: string) => {
  const one = decodeConfig(NonEmptyString, path)
  const list = decodeConfig(Schema.Array(NonEmptyString).pipe(Schema.minItems(1, { message: () => "expected at least one region" })), path)
  return (input: unknown): Either.Either<ReadonlyArray<string> | undefined, InvalidConfig> =>
    input === undefined
      ? Either.right(undefined)
      : typeof input === "string"
      ? Either.map(one(input), (region) => [region])
      : Array.isArray(input)
      ? list(input)
      : Either.left(InvalidConfig.fromIssues([{ path, message: "expected a region or a non-empty list of regions" }]))
}
const decodeRegion = regionsAt("options.region")
const decodeMetadataRegion = regionsAt("metadata.region")

/** What a request asks of a deployment besides its all-of tags. */
interface Asks {
  readonly any: ReadonlyArray<string> | undefined
  readonly exclude: ReadonlyArray<string> | undefined
  readonly regions: ReadonlyArray<string> | undefined
}

const RequestOptionsSchema = Schema.Struct({
  retries: Schema.optional(
    Schema.UndefinedOr(Schema.Number.pipe(Schema.int(), Schema.nonNegative({ message: () => "expected a non-negative integer" })))
  ),
  fallbacks: Schema.optional(Schema.UndefinedOr(Schema.Union(Schema.Array(NonEmptyString), Schema.Literal(false)))),
  timeout: Schema.optional(Schema.UndefinedOr(PositiveDuration)),
  deadline: Schema.optional(Schema.UndefinedOr(DurationInput)),
  tags: Schema.optional(Schema.Unknown),
  region: Schema.optional(Schema.Unknown),
  deployment: Schema.optional(Schema.UndefinedOr(NonEmptyString)),
  hedge: Schema.optional(Schema.Unknown),
  race: Schema.optional(Schema.Unknown),
  contentFilterIsError: Schema.optional(Schema.UndefinedOr(Schema.Boolean)),
  waitForCapacity: Schema.optional(Schema.UndefinedOr(PositiveDuration))
})
const decodeOptions = Schema.decodeUnknownEither(RequestOptionsSchema, { errors: "all", onExcessProperty: "error" })
// `race` is a count or a list of groups: only the issues of the form it was given in are told.
const decodeRaceCount = decodeConfig(
  Schema.Number.pipe(Schema.int({ message: () => "expected an integer of at least 2" }), Schema.greaterThanOrEqualTo(2, { message: () => "expected an integer of at least 2" })),
  "options.race"
)
const decodeRaceGroups = decodeConfig(Schema.NonEmptyArray(NonEmptyString), "options.race")

const resolveOptions = (
  engine: Engine,
  group: string,
  input: RequestOptions
): Either.Either<
  { readonly options: Options; readonly tags: ReadonlyArray<string> | undefined; readonly asks: Asks; readonly contentFilterIsError: boolean | undefined },
  InvalidRequest
> => {
  const decoded = decodeOptions(input)
  const hedgeInput = (input as { readonly hedge?: unknown }).hedge
  // `hedge` is a switch or a request's own hedging: checked in the form it was given in.
  const hedged: Either.Either<boolean | HedgePolicy, InvalidConfig> = hedgeInput === undefined || typeof hedgeInput === "boolean"
    ? Either.right(hedgeInput !== false)
    : typeof hedgeInput === "object" && hedgeInput !== null
    ? HedgeInternal.requestPolicy(hedgeInput)
    : Either.left(InvalidConfig.fromIssues([{ path: "options.hedge", message: "expected a boolean or { delay, maxHedges? }" }]))
  const raceInput = (input as { readonly race?: unknown }).race
  const raced: Either.Either<number | ReadonlyArray<string> | undefined, InvalidConfig> = raceInput === undefined
    ? Either.right(undefined)
    : typeof raceInput === "number"
    ? decodeRaceCount(raceInput)
    : decodeRaceGroups(raceInput)
  const tagFilter = tagsOf((input as { readonly tags?: unknown }).tags)
  const regions = decodeRegion((input as { readonly region?: unknown }).region)
  if (Either.isLeft(decoded) || Either.isLeft(raced) || Either.isLeft(hedged) || Either.isLeft(tagFilter) || Either.isLeft(regions)) {
    return Either.left(InvalidRequest.fromIssues([
      ...(Either.isLeft(decoded) ? formatIssues(decoded.left, "options") : []),
      ...(Either.isLeft(raced) ? raced.left.issues : []),
      ...(Either.isLeft(hedged) ? hedged.left.issues : []),
      ...(Either.isLeft(tagFilter) ? tagFilter.left.issues : []),
      ...(Either.isLeft(regions) ? regions.left.issues : [])
    ]))
  }
  const o = { ...decoded.right, race: raced.right, hedge: hedged.right }
  const issues: Array<{ path: string; message: string }> = []
  let deployment: Deployment | undefined
  if (o.deployment !== undefined) {
    deployment = engine.byId.get(o.deployment)
    if (deployment === undefined) {
      issues.push({ path: "options.deployment", message: `unknown deployment "${o.deployment}"` })
    } else if (deployment.group !== group) {
      issues.push({
        path: "options.deployment",
        message: `deployment "${o.deployment}" serves group "${deployment.group}", not the requested "${group}"`
      })
    }
  }
  if (o.fallbacks !== undefined && o.fallbacks !== false) {
    o.fallbacks.forEach((name, i) => {
      if (!engine.pools.has(name)) {
        issues.push({ path: `options.fallbacks[${i}]`, message: `unknown model group "${name}"; known: ${engine.groups.join(", ")}` })
      }
    })
  }
  if (o.race !== undefined && typeof o.race !== "number") {
    o.race.forEach((name, i) => {
      if (!engine.pools.has(name)) {
        issues.push({ path: `options.race[${i}]`, message: `unknown model group "${name}"; known: ${engine.groups.join(", ")}` })
      }
    })
  }
  if (issues.length > 0) return Either.left(InvalidRequest.fromIssues(issues))
  const race = o.race === undefined
    ? undefined
    : typeof o.race === "number"
    ? Array.from({ length: o.race }, () => group)
    : [group, ...o.race.filter((name) => name !== group)]
  return Either.right({
    options: {
      retries: o.retries,
      fallbacks: o.fallbacks,
      timeout: o.timeout,
      deadline: o.deadline,
      deployment,
      hedge: o.hedge,
      race,
      waitForCapacity: o.waitForCapacity
    },
    tags: tagFilter.right.all,
    asks: { any: tagFilter.right.any, exclude: tagFilter.right.exclude, regions: regions.right },
    contentFilterIsError: o.contentFilterIsError
  })
}

/** The request's hedging: none, the context's or the router's, or its own (under their budget). */
const hedgeOf = (engine: Engine, fiber: Fiber.RuntimeFiber<unknown, unknown>, option: boolean | HedgePolicy | undefined): HedgeService | undefined => {
  if (option === false) return undefined
  const base = Context.getOrElse(fiber.currentContext, Hedge, () => engine.hedge)
  return option === undefined || option === true ? base : HedgeInternal.forRequest(option, base)
}

/**
 * A new request on `fiber`'s clock (so `TestClock` drives it), under the policies of its
 * context, or why it cannot be routed.
 *
 * @internal
 */
export const start = (
  engine: Engine,
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  request: ChatRequest | EmbeddingRequest,
  input: RequestOptions | undefined
): Either.Either<RequestContext, UnknownGroup | InvalidRequest> => {
  const group = request.model
  if (!engine.pools.has(group)) {
    return Either.left(
      new UnknownGroup({
        group,
        knownGroups: engine.groups,
        message: `unknown model group "${group}"; known groups: ${engine.groups.join(", ")}`
      })
    )
  }
  let options: Options | undefined
  const metadata = request.metadata
  let tags = metadata?.tags ?? noTags
  let contentFilterIsError = engine.contentFilterIsError
  let asks: Asks | undefined
  if (metadata?.region !== undefined) {
    const region = decodeMetadataRegion(metadata.region)
    if (Either.isLeft(region)) return Either.left(InvalidRequest.fromIssues(region.left.issues))
    asks = { any: undefined, exclude: undefined, regions: region.right }
  }
  if (input !== undefined) {
    const resolved = resolveOptions(engine, group, input)
    if (Either.isLeft(resolved)) return Either.left(resolved.left)
    options = resolved.right.options
    if (resolved.right.tags !== undefined && resolved.right.tags.length > 0) tags = [...tags, ...resolved.right.tags]
    const own = resolved.right.asks
    if (own.any !== undefined || own.exclude !== undefined || own.regions !== undefined) {
      asks = { any: own.any, exclude: own.exclude, regions: own.regions ?? asks?.regions }
    }
    if (resolved.right.contentFilterIsError !== undefined) contentFilterIsError = resolved.right.contentFilterIsError
  }
  const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
  const hedge = hedgeOf(engine, fiber, options?.hedge)
  return Either.right({
    engine,
    policies: policiesIn(engine, fiber.currentContext),
    requestedGroup: group,
    tags,
    request,
    filter: tags.length === 0 && asks === undefined ? undefined : requestFilter(tags, asks?.any, asks?.exclude, asks?.regions),
    clock,
    startedMs: nowMs(clock),
    options,
    contentFilterIsError,
    hedge,
    concurrent: hedge !== undefined || options?.race !== undefined,
    attempts: [],
    lastFailed: undefined,
    excluded: undefined,
    lastUpstream: undefined,
    notBefore: undefined,
    groupAttempts: 0,
    inFlight: undefined,
    providerMs: 0,
    waitedMs: 0,
    otherCost: 0,
    tokens: undefined
  })
}

/** Re-creates an error with the request's attempts on it (errors are immutable). */
const withAttempts = (error: RouterError, attempts: ReadonlyArray<Attempt>): RouterError => {
  const Ctor = error.constructor as new(args: object) => RouterError
  return new Ctor({ ...error, message: error.message, attempts: attempts.slice() })
}

/**
 * The error a failed request ends with: out of deployments after upstream failures, the last
 * upstream error rather than `NoDeploymentAvailable`; with every attempt.
 *
 * @internal
 */
export const finalError = (ctx: RequestContext, error: RouterError): RouterError =>
  withAttempts(error._tag === "NoDeploymentAvailable" && ctx.lastUpstream !== undefined ? ctx.lastUpstream : error, ctx.attempts)

/**
 * The cost of `usage` on `d`, recorded as spend.
 *
 * @internal
 */
export const meter = (ctx: RequestContext, d: Deployment, usage: MeteredUsage | undefined): Effect.Effect<number> => {
  const cost = costOf(ctx, d, usage)
  return cost === 0 ? Effect.succeed(0) : Effect.as(record(ctx, d, cost), cost)
}

/**
 * Records `cost` as spend with the meter's `record` (a call settled with its usage carries its
 * spend to the store itself when the meter says its keys: `Attempt.settle`).
 *
 * @internal
 */
export const record = (ctx: RequestContext, d: Deployment, cost: number): Effect.Effect<void> =>
  // A store that cannot take the spend loses it (logged); the answer is not lost for it.
  Effect.catchTag(ctx.policies.meter.record(d, ctx.tags, cost), "StoreError", (error) =>
    Effect.logWarning(`router store: spend not recorded (${error.message})`))

/**
 * The cost of `usage` on `d`, at the meter's price (nothing recorded).
 *
 * @internal
 */
export const costOf = (ctx: RequestContext, d: Deployment, usage: MeteredUsage | undefined): number =>
  usage === undefined ? 0 : ctx.policies.meter.cost(d, usage)

/** @internal */
export const routeInfo = (ctx: RequestContext, d: Deployment, usage: Usage | undefined, cost: number): RouteInfo => {
  const latencyMs = nowMs(ctx.clock) - ctx.startedMs
  return {
    deploymentId: d.id,
    group: d.group,
    requestedGroup: ctx.requestedGroup,
    model: d.model,
    attempts: ctx.attempts,
    latencyMs,
    overheadMs: Math.max(0, latencyMs - ctx.providerMs - ctx.waitedMs),
    cost: cost + ctx.otherCost,
    usage,
    ...(ctx.engine.degraded() ? { storeFailed: true } : undefined)
  }
}

/**
 * Milliseconds left before the request's deadline (`Infinity` without one).
 *
 * @internal
 */
export const timeLeft = (ctx: RequestContext): number => {
  const deadline = ctx.options?.deadline
  return deadline === undefined ? Infinity : ctx.startedMs + Duration.toMillis(deadline) - nowMs(ctx.clock)
}
