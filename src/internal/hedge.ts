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
// A delay given as an object (not a Duration) is a quantile delay: only that form's issues are told.
const isQuantileForm = (u: unknown) => typeof u === "object" && u !== null && !Duration.isDuration(u)
const OptionsSchema = Schema.Struct({
  delay: Schema.Unknown,
  maxHedges: Schema.optional(PositiveInt),
  maxExtraPercent: Schema.optional(
    Schema.Number.pipe(Schema.filter((n) => n > 0 && n <= 100, { message: () => "expected a percentage in (0, 100]" }))
  ),
  burst: Schema.optional(PositiveInt),
  groups: Schema.optional(Schema.Array(NonEmptyString))
})
const decodeRest = decodeConfig(OptionsSchema, "Hedge.layer")
const decodeQuantileDelay = decodeConfig(QuantileDelay, "Hedge.layer.delay")
const decodeFixedDelay = decodeConfig(PositiveDuration, "Hedge.layer.delay")

/** The options, every issue told at once (the delay's only in the form it was given). */
const validate = (input: Options) => {
  const rest = decodeRest(input)
  const delay: Either.Either<Duration.Duration | typeof QuantileDelay.Type, InvalidConfig> = isQuantileForm(input?.delay)
    ? decodeQuantileDelay(input.delay)
    : decodeFixedDelay(input?.delay)
  if (Either.isRight(rest) && Either.isRight(delay)) return Effect.succeed({ ...rest.right, delay: delay.right })
  return Effect.fail(InvalidConfig.fromIssues([
    ...(Either.isLeft(rest) ? rest.left.issues : []),
    ...(Either.isLeft(delay) ? delay.left.issues : [])
  ]))
}

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

export const make = (input: Options): Effect.Effect<Service, InvalidConfig> =>
  Effect.map(validate(input), (options) => {
    const maxHedges = options.maxHedges ?? 1
    const burst = options.burst ?? 10
    const refill = (options.maxExtraPercent ?? 5) / 100
    const delay = options.delay
    const delayMs: Policy["delayMs"] = Duration.isDuration(delay)
      ? (() => {
        const ms = Duration.toMillis(delay)
        return () => ms
      })()
      : (() => {
        const { quantile } = delay
        const minSamples = delay.minSamples ?? 20
        const fallbackMs = Duration.toMillis(delay.fallback ?? Duration.seconds(1))
        // Recomputed at most every 250 ms of clock time per group and kind (keyed by the first
        // deployment's sketch, which is the group's and the kind's own), so that a request does
        // not pay for a walk over its group's sketches.
        const cached = new WeakMap<LatencyQuantiles, { at: number; ms: number }>()
        return (stats, kind, now) => {
          if (stats.length === 0) return fallbackMs
          const views = stats.map((s) => (kind === "stream" ? s.latency.streams : s.latency.calls))
          const hit = cached.get(views[0])
          if (hit !== undefined && now - hit.at < 250 && now >= hit.at) return hit.ms
          const { count, value } = groupQuantile(views, now, quantile)
          const ms = value === undefined || count < minSamples ? fallbackMs : value
          cached.set(views[0], { at: now, ms })
          return ms
        }
      })()
    const policy: Policy = { delayMs, maxHedges }
    const groups = options.groups === undefined ? undefined : new Set(options.groups)
    let tokens = burst
    const service: Service = {
      policyFor: (group) => (groups === undefined || groups.has(group) ? policy : undefined),
      onRequest: Effect.sync(() => {
        tokens = Math.min(burst, tokens + refill)
      }),
      take: Effect.sync(() => {
        if (tokens < 1) return false
        tokens -= 1
        return true
      })
    }
    return service
  })

export const none: Service = {
  policyFor: () => undefined,
  onRequest: Effect.void,
  take: Effect.succeed(false)
}
