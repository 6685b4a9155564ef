/**
 * The load-, usage- and price-aware selection policies behind `Selector.leastBusy`,
 * `Selector.usageBased` and `Selector.lowestCost`.
 *
 * All three run inside the store's atomic reserve, on every routed attempt, so each pick is one
 * pass over the candidates with no allocation of its own and no sort: the best score so far is
 * kept with the positions tied for it (the module's `tally`), and one random number from
 * Effect's `Random` service picks among the tied, uniformly. The whole pass is synchronous
 * inside that one `Random.next` callback, so nothing runs between scoring and choosing, and the
 * tally is never used by two picks at once.
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import * as Schema from "effect/Schema"
import { CostMeter } from "../CostMeter.js"
import type { Deployment } from "../Deployment.js"
import type { InvalidConfig } from "../Errors.js"
import type { ChatRequest, EmbeddingRequest, RateLimitInfo } from "../Provider.js"
import type { Candidate, SelectionRequest } from "../Selector.js"
import { fmix32 } from "./prng.js"
import { PositiveDuration, PositiveInt, validateConfig } from "./schemas.js"
import { maxOutputTokens, promptTokens } from "./tokens.js"

type Pick = (candidates: ReadonlyArray<Candidate>, request: SelectionRequest) => Effect.Effect<Candidate>

// -------------------------------------------------------------------------------------------
// Shared: the tally of the best score, token estimates
// -------------------------------------------------------------------------------------------

/**
 * The lowest score of the pass under way and the positions tied for it (a pass that wants the
 * highest offers the score negated). One for the module, reused by every pass (`start` resets
 * it): a pass runs from start to end in one synchronous callback, so two never overlap.
 */
class Tally {
  /** The lowest score offered so far (Infinity: none yet). */
  best = Infinity
  private tied = new Int32Array(64)
  private ties = 0

  /** Starts a pass over `n` candidates. */
  start(n: number): Tally {
    if (this.tied.length < n) this.tied = new Int32Array(Math.max(n, this.tied.length * 2))
    this.best = Infinity
    this.ties = 0
    return this
  }

  /** Position `i` scores `score`: it takes the lead when lower than the best, ties when equal. */
  offer(i: number, score: number): void {
    if (score < this.best) {
      this.best = score
      this.tied[0] = i
      this.ties = 1
    } else if (score === this.best) {
      this.tied[this.ties++] = i
    }
  }

  /** The `r`-th (r in [0, 1)) of the tied positions' candidates, the first candidate when none. */
  choose(candidates: ReadonlyArray<Candidate>, r: number): Candidate {
    const ties = this.ties
    return ties === 0 ? candidates[0] : candidates[this.tied[ties === 1 ? 0 : Math.floor(r * ties)]]
  }
}

const tally = new Tally()

/**
 * The request's estimated prompt tokens, computed once per request object (a retry's pick, a
 * hedge's, a fallback group's read the same body): the estimate walks every character of the
 * prompt, which for a long one costs more than the whole pick.
 */
const promptCache = new WeakMap<object, number>()
const estimatedPrompt = (request: ChatRequest | EmbeddingRequest): number => {
  let found = promptCache.get(request)
  if (found === undefined) promptCache.set(request, found = promptTokens(request))
  return found
}

// -------------------------------------------------------------------------------------------
// Least busy
// -------------------------------------------------------------------------------------------

/**
 * Fewest calls in flight; ties (the common case for an idle group) uniformly at random. One
 * pass reading `inFlight` (a counter), one random number.
 */
export const leastBusyPick: Pick = (candidates) => {
  if (candidates.length === 1) return Effect.succeed(candidates[0])
  return Effect.map(Random.next, (r) => {
    const n = candidates.length
    const t = tally.start(n)
    for (let i = 0; i < n; i++) t.offer(i, candidates[i].stats.inFlight)
    return t.choose(candidates, r)
  })
}

// -------------------------------------------------------------------------------------------
// Usage based
// -------------------------------------------------------------------------------------------

const UsageBasedOptions = Schema.Struct({
  upstream: Schema.optional(Schema.Boolean.annotations({ message: () => "expected true or false" })),
  upstreamMaxAge: Schema.optional(PositiveDuration),
  sample: Schema.optional(
    Schema.Union(PositiveInt, Schema.Literal("all")).annotations({
      message: () => ({ message: "expected a positive integer or \"all\"", override: true })
    })
  )
})

/** @internal */
export interface UsageBasedOptions {
  readonly upstream?: boolean | undefined
  readonly upstreamMaxAge?: Duration.DurationInput | undefined
  readonly sample?: number | "all" | undefined
}

/** How many candidates a usage-based pick reads at most by default (all of a smaller group). */
export const defaultUsageSample = 32

const validateUsageBased = validateConfig(UsageBasedOptions, "Selector.usageBased")

/**
 * When the selector first saw each deployment's latest upstream rate-limit report, by
 * deployment index (one array read per candidate), with a by-object map behind it for two
 * deployments of one index (two routers sharing the selector), so that neither makes the
 * other's report look new.
 */
class FirstSeen {
  private infos: Array<RateLimitInfo | undefined> = []
  private at: Array<number> = []
  private readonly byInfo = new WeakMap<RateLimitInfo, number>()
  of(index: number, info: RateLimitInfo, now: number): number {
    if (this.infos[index] === info) return this.at[index]
    let at = this.byInfo.get(info)
    if (at === undefined) this.byInfo.set(info, at = now)
    this.infos[index] = info
    this.at[index] = at
    return at
  }
}

/**
 * Candidates arrays from this size on are prepared once when frozen (as `weightedPick` does): a
 * frozen array and its candidates' deployments (immutable config) never change, so neither do
 * their limits or prices, and a pass then reads them from typed arrays instead of from each
 * deployment. The memory store hands a group's candidates as one frozen array while it admits
 * them all.
 */
const PREPARE_FROM = 32

const isPrepared = (candidates: ReadonlyArray<Candidate>): boolean =>
  candidates.length >= PREPARE_FROM && Object.isFrozen(candidates)

/** Each candidate's `rpm` and `tpm` (NaN: none) and deployment index, in order. */
interface Limits {
  readonly rpm: Float64Array
  readonly tpm: Float64Array
  readonly index: Int32Array
}
const preparedLimits = new WeakMap<ReadonlyArray<Candidate>, Limits>()
const limitsOf = (candidates: ReadonlyArray<Candidate>): Limits => {
  let found = preparedLimits.get(candidates)
  if (found === undefined) {
    const n = candidates.length
    found = { rpm: new Float64Array(n), tpm: new Float64Array(n), index: new Int32Array(n) }
    for (let i = 0; i < n; i++) {
      const d = candidates[i].deployment
      found.rpm[i] = d.rpm ?? NaN
      found.tpm[i] = d.tpm ?? NaN
      found.index[i] = d.index
    }
    preparedLimits.set(candidates, found)
  }
  return found
}

/**
 * Most headroom, ties at random. A candidate's headroom, as a fraction of its limit (1:
 * untouched, 0: the request would use the last of it, below 0: over it), is the tightest of
 *
 * - the upstream's report, while it is fresh: (remaining requests - calls in flight - 1) / the
 *   request limit, (remaining tokens - the request's tokens) / the token limit; each limit from
 *   the report, else the deployment's `rpm` / `tpm`
 * - `rpm`: (rpm - requests in the window - 1) / rpm
 * - `tpm`: (tpm - tokens in the window - the request's tokens) / tpm
 *
 * and 1 when none of them is known (no limits, no report). The request's tokens: prompt plus
 * `max_tokens` when set (what OpenAI counts against tpm at admission), else the prompt alone,
 * estimated once per request.
 *
 * One pass, in that order: the report first, then the window counters (the costly reads: each
 * sums its buckets), each skipped as soon as the headroom so far is below the best one already
 * seen (the candidate cannot win or tie).
 *
 * A group larger than `sample` is sampled: the pass reads `sample` candidates in a row from a
 * random position (wrapping around), so each candidate is read with the same probability,
 * `sample / n`, and the candidates read sit next to each other in the store's memory (a run of
 * neighbours costs about half as much as as many scattered ones, measured: the reads from
 * memory not in cache are the pick's cost). Position and tie-break both come from the pick's
 * one random number. A report is dated from when the selector first reads it: in a sampled
 * group, a report may be read a little after it arrived.
 */
export const makeUsageBased = (input: UsageBasedOptions | undefined): Effect.Effect<Pick, InvalidConfig> =>
  Effect.map(validateUsageBased(input ?? {}), (options) => {
    const upstream = options.upstream ?? true
    const maxAgeMs = Duration.toMillis(options.upstreamMaxAge ?? Duration.minutes(1))
    const sample = options.sample === "all" ? Infinity : options.sample ?? defaultUsageSample
    const seen = new FirstSeen()
    const pass = (candidates: ReadonlyArray<Candidate>, request: SelectionRequest, now: number, r: number): Candidate => {
      const n = candidates.length
      const limits = isPrepared(candidates) ? limitsOf(candidates) : undefined
      // the tally keeps the lowest: it is offered the headroom negated, so -t.best is the best headroom
      const t = tally.start(n)
      const body = request.request
      // the positions read: all, or `sample` of them in a row from a random one (wrapping)
      let count = n
      let i = 0
      let tieDraw = r
      if (sample < n) {
        count = sample
        i = Math.floor(r * n)
        // a second draw from the bits of the first (hashed: murmur3's finalizer)
        tieDraw = fmix32((r * 4294967296) >>> 0) / 4294967296
      }
      let estimate = -1
      for (let j = 0; j < count; j++, i = i + 1 < n ? i + 1 : 0) {
        const c = candidates[i]
        let rpm: number
        let tpm: number
        let index: number
        if (limits !== undefined) {
          rpm = limits.rpm[i]
          tpm = limits.tpm[i]
          index = limits.index[i]
        } else {
          const d = c.deployment
          rpm = d.rpm ?? NaN
          tpm = d.tpm ?? NaN
          index = d.index
        }
        const stats = c.stats
        let score = Infinity
        if (upstream) {
          const info = stats.upstream
          if (info !== undefined) {
            const age = now - seen.of(index, info, now)
            if (age < maxAgeMs) {
              const remainingRequests = info.remainingRequests
              if (remainingRequests !== undefined && (info.resetRequestsMs === undefined || age < info.resetRequestsMs)) {
                const limit = info.limitRequests ?? rpm
                // NaN (no limit known) fails the test
                if (limit > 0) score = (remainingRequests - stats.inFlight - 1) / limit
              }
              const remainingTokens = info.remainingTokens
              if (remainingTokens !== undefined && (info.resetTokensMs === undefined || age < info.resetTokensMs)) {
                const limit = info.limitTokens ?? tpm
                if (limit > 0) {
                  if (estimate < 0) estimate = estimatedPrompt(body) + (maxOutputTokens(body) ?? 0)
                  const u = (remainingTokens - estimate) / limit
                  if (u < score) score = u
                }
              }
              if (score < -t.best) continue
            }
          }
        }
        if (rpm === rpm) {
          const u = (rpm - stats.requests - 1) / rpm
          if (u < score) {
            score = u
            if (score < -t.best) continue
          }
        }
        if (tpm === tpm) {
          if (estimate < 0) estimate = estimatedPrompt(body) + (maxOutputTokens(body) ?? 0)
          const u = (tpm - stats.tokens - estimate) / tpm
          if (u < score) score = u
        }
        if (score === Infinity) score = 1
        t.offer(i, -score)
      }
      return t.choose(candidates, tieDraw)
    }
    const withClock = (candidates: ReadonlyArray<Candidate>, request: SelectionRequest) => (clock: Clock.Clock) =>
      Effect.map(Random.next, (r) => pass(candidates, request, clock.unsafeCurrentTimeMillis(), r))
    return (candidates, request) => {
      if (candidates.length === 1) return Effect.succeed(candidates[0])
      return upstream
        ? Effect.clockWith(withClock(candidates, request))
        : Effect.map(Random.next, (r) => pass(candidates, request, 0, r))
    }
  })

// -------------------------------------------------------------------------------------------
// Lowest cost
// -------------------------------------------------------------------------------------------

const LowestCostOptions = Schema.Struct({
  outputTokens: Schema.optional(
    Schema.Number.pipe(
      Schema.int({ message: () => "expected a non-negative integer" }),
      Schema.nonNegative({ message: () => "expected a non-negative integer" })
    )
  ),
  unpriced: Schema.optional(Schema.Literal("last", "free"))
})

/** @internal */
export interface LowestCostOptions {
  readonly outputTokens?: number | undefined
  readonly unpriced?: "last" | "free" | undefined
}

const validateLowestCost = validateConfig(LowestCostOptions, "Selector.lowestCost")

/** The output tokens assumed for a request that sets no `max_tokens` (a typical chat reply). */
export const defaultOutputTokens = 256

/** Each candidate's input and output price per token (NaN: unpriced), in order. */
interface Prices {
  readonly input: Float64Array
  readonly output: Float64Array
}

/**
 * Cheapest for the request's estimated tokens: prompt tokens at the input price plus `max_tokens`
 * (else `outputTokens`) at the output price, from the CostMeter's prices, read once per
 * deployment (a prepared frozen array: two typed arrays; else by deployment index, one array
 * read per candidate). Unpriced deployments rank last (`unpriced: "last"`: their cost is
 * unknown, not zero) or as free (`"free"`). Ties at random.
 */
export const makeLowestCost = (input: LowestCostOptions | undefined): Effect.Effect<Pick, InvalidConfig, CostMeter> =>
  Effect.gen(function*() {
    const options = yield* validateLowestCost(input ?? {})
    const meter = yield* CostMeter
    const assumedOutput = options.outputTokens ?? defaultOutputTokens
    const unpricedCost = options.unpriced === "free" ? 0 : Infinity
    // Prices by deployment index; `owners` says which deployment object they are of.
    const owners: Array<Deployment | undefined> = []
    const inputPrice: Array<number> = []
    const outputPrice: Array<number> = []
    const priced = (d: Deployment): number => {
      const i = d.index
      if (owners[i] !== d) {
        const pricing = meter.pricing(d)
        // NaN marks unpriced (a price is never NaN: the schema wants a finite number)
        inputPrice[i] = pricing === undefined ? NaN : pricing.inputCostPerToken
        outputPrice[i] = pricing === undefined ? NaN : pricing.outputCostPerToken
        owners[i] = d
      }
      return i
    }
    // Per selector: the prices are this meter's.
    const prepared = new WeakMap<ReadonlyArray<Candidate>, Prices>()
    const pricesOf = (candidates: ReadonlyArray<Candidate>): Prices => {
      let found = prepared.get(candidates)
      if (found === undefined) {
        const n = candidates.length
        found = { input: new Float64Array(n), output: new Float64Array(n) }
        for (let i = 0; i < n; i++) {
          const at = priced(candidates[i].deployment)
          found.input[i] = inputPrice[at]
          found.output[i] = outputPrice[at]
        }
        prepared.set(candidates, found)
      }
      return found
    }
    const pick: Pick = (candidates, request) => {
      if (candidates.length === 1) return Effect.succeed(candidates[0])
      return Effect.map(Random.next, (r) => {
        const body = request.request
        const prompt = estimatedPrompt(body)
        const output = maxOutputTokens(body) ?? assumedOutput
        const n = candidates.length
        const t = tally.start(n)
        const unknown = unpricedCost
        if (isPrepared(candidates)) {
          // typed arrays only: the candidates themselves are not read
          const prices = pricesOf(candidates)
          const inputs = prices.input
          const outputs = prices.output
          for (let i = 0; i < n; i++) {
            const inPrice = inputs[i]
            t.offer(i, inPrice === inPrice ? inPrice * prompt + outputs[i] * output : unknown)
          }
        } else {
          for (let i = 0; i < n; i++) {
            const at = priced(candidates[i].deployment)
            const inPrice = inputPrice[at]
            t.offer(i, inPrice === inPrice ? inPrice * prompt + outputPrice[at] * output : unknown)
          }
        }
        return t.choose(candidates, r)
      })
    }
    return pick
  })
