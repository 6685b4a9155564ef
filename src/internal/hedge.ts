/**
 * The default hedging policy: fixed or quantile delays, and a token bucket that caps the share
 * of requests that get hedged.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { InvalidConfig } from "../Errors.js"
import type { Options, Policy, Service } from "../Hedge.js"
import type { LatencyQuantiles } from "../RouterState.js"
import { decodeConfig, NonEmptyString, PositiveDuration, PositiveInt } from "./schemas.js"
import { LatencySketch } from "./sketch.js"

const Quantile = Schema.Number.pipe(Schema.filter((n) => n > 0 && n < 1, { message: () => "expected a number in (0, 1)" }))
const QuantileDelay = Schema.Struct({
  quantile: Quantile,
  minSamples: Schema.optional(PositiveInt),
  fallback: Schema.optional(PositiveDuration)
})
type Delay = Duration.Duration | typeof QuantileDelay.Type
// A delay given as an object (not a Duration) is a quantile delay: only that form's issues are told.
const isQuantileForm = (u: unknown) => typeof u === "object" && u !== null && !Duration.isDuration(u)
const MaxExtraPercent = Schema.Number.pipe(Schema.filter((n) => n > 0 && n <= 100, { message: () => "expected a percentage in (0, 100]" }))
const OptionsSchema = Schema.Struct({
  delay: Schema.Unknown,
  maxHedges: Schema.optional(PositiveInt),
  maxExtraPercent: Schema.optional(MaxExtraPercent),
  burst: Schema.optional(PositiveInt),
  groups: Schema.optional(Schema.Array(NonEmptyString))
})
const RequestHedgeSchema = Schema.Struct({ delay: Schema.Unknown, maxHedges: Schema.optional(PositiveInt) })

/** Decodes options whose `delay` is checked in the form it was given; every issue told at once. */
const decoderOf = <A extends { readonly delay: unknown }, I>(schema: Schema.Schema<A, I, never>, root: string) => {
  const decodeRest = decodeConfig(schema, root)
  const decodeQuantileDelay = decodeConfig(QuantileDelay, `${root}.delay`)
  const decodeFixedDelay = decodeConfig(PositiveDuration, `${root}.delay`)
  return (input: unknown): Either.Either<Omit<A, "delay"> & { readonly delay: Delay }, InvalidConfig> => {
    const given = (input as { readonly delay?: unknown } | undefined)?.delay
    const rest = decodeRest(input)
    const delay: Either.Either<Delay, InvalidConfig> = isQuantileForm(given) ? decodeQuantileDelay(given) : decodeFixedDelay(given)
    if (Either.isRight(rest) && Either.isRight(delay)) return Either.right({ ...rest.right, delay: delay.right })
    return Either.left(InvalidConfig.fromIssues([
      ...(Either.isLeft(rest) ? rest.left.issues : []),
      ...(Either.isLeft(delay) ? delay.left.issues : [])
    ]))
  }
}
const decodeOptions = decoderOf(OptionsSchema, "Hedge.layer")
const decodeRequestHedge = decoderOf(RequestHedgeSchema, "options.hedge")

/**
 * The q-quantile of a group's recent samples: of the union of its deployments' samples when the
 * store keeps them in this package's sketches, else a count-weighted mean of their quantiles.
 */
const groupQuantile = (views: ReadonlyArray<LatencyQuantiles>, now: number, q: number): { readonly value: number | undefined; readonly count: number } => {
  let count = 0
  for (const view of views) count += view.count(now)
  if (count === 0) return { value: undefined, count }
  if (views.every((view) => view instanceof LatencySketch)) {
    return { value: LatencySketch.quantileAcross(views as ReadonlyArray<LatencySketch>, now, q), count }
  }
  let weighted = 0
  for (const view of views) {
    const n = view.count(now)
    if (n > 0) weighted += n * (view.quantile(now, q) ?? 0)
  }
  return { value: weighted / count, count }
}

/** When to hedge: after a fixed delay, or after the group's observed quantile (cached briefly). */
const policyOf = (delay: Delay, maxHedges: number): Policy => {
  if (Duration.isDuration(delay)) {
    const ms = Duration.toMillis(delay)
    return { delayMs: () => ms, maxHedges }
  }
  const { quantile } = delay
  const minSamples = delay.minSamples ?? 20
  const fallbackMs = Duration.toMillis(delay.fallback ?? Duration.seconds(1))
  // Recomputed at most every 250 ms of clock time per group and kind (keyed by the first
  // deployment's sketch, which is the group's and the kind's own), so that a request does
  // not pay for a walk over its group's sketches.
  const cached = new WeakMap<LatencyQuantiles, { at: number; ms: number }>()
  const delayMs: Policy["delayMs"] = (stats, kind, now) => {
    if (stats.length === 0) return fallbackMs
    const views = stats.map((s) => (kind === "stream" ? s.latency.streams : s.latency.calls))
    const hit = cached.get(views[0])
    if (hit !== undefined && now - hit.at < 250 && now >= hit.at) return hit.ms
    const { count, value } = groupQuantile(views, now, quantile)
    const ms = value === undefined || count < minSamples ? fallbackMs : value
    cached.set(views[0], { at: now, ms })
    return ms
  }
  return { delayMs, maxHedges }
}

export const make = (input: Options): Effect.Effect<Service, InvalidConfig> =>
  Effect.suspend(() => {
  const decoded = decodeOptions(input)
  if (Either.isLeft(decoded)) return Effect.fail(decoded.left)
  const options = decoded.right
  const policy = policyOf(options.delay, options.maxHedges ?? 1)
  const burst = options.burst ?? 10
  const refill = (options.maxExtraPercent ?? 5) / 100
  const groups = options.groups === undefined ? undefined : new Set(options.groups)
  let tokens = burst
  return Effect.succeed({
    policyFor: (group) => (groups === undefined || groups.has(group) ? policy : undefined),
    onRequest: Effect.sync(() => {
      tokens = Math.min(burst, tokens + refill)
    }),
    take: Effect.sync(() => {
      if (tokens < 1) return false
      tokens -= 1
      return true
    })
  })
  })

/**
 * The policy of one request that asks for its own hedging (`options.hedge`), or every issue
 * with it.
 */
export const requestPolicy = (input: unknown): Either.Either<Policy, InvalidConfig> =>
  Either.map(decodeRequestHedge(input), (options) => policyOf(options.delay, options.maxHedges ?? 1))

/**
 * The hedging of one request with its own policy: in every group the request tries, under the
 * budget of the hedging in its context (`base`) when there is one, else bounded only by the
 * policy's `maxHedges`.
 */
export const forRequest = (policy: Policy, base: Service | undefined): Service => ({
  policyFor: () => policy,
  onRequest: base?.onRequest ?? Effect.void,
  take: base?.take ?? Effect.succeed(true)
})

export const none: Service = {
  policyFor: () => undefined,
  onRequest: Effect.void,
  take: Effect.succeed(false)
}
