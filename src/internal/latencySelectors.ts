/**
 * The latency-aware selection policies behind `Selector.lowestLatency` and `Selector.peakEwma`.
 *
 * Both read the engine's live stats of each candidate (`DeploymentStats`) at the pick and keep,
 * per deployment id, a small memo of their own: what they last saw of its samples (to tell when
 * new ones arrived, and so how long an estimate has gone without news), when they last picked
 * it, and (peak-EWMA) its cost.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import * as Schema from "effect/Schema"
import type { InvalidConfig } from "../Errors.js"
import type { LatencyQuantiles } from "../RouterState.js"
import type { Candidate, LowestLatencyOptions, PeakEwmaOptions, SelectionRequest, Service } from "../Selector.js"
import { PositiveDuration, validateConfig } from "./schemas.js"

// -------------------------------------------------------------------------------------------
// Options
// -------------------------------------------------------------------------------------------

const finite = (n: number) => Number.isFinite(n)

const Buffer = Schema.Number.pipe(
  Schema.filter((n) => finite(n) && n >= 0 && n <= 10, {
    message: () => "expected a fraction in [0, 10] (0.1 is 10%)"
  })
)
const StuckAfter = Schema.Number.pipe(
  Schema.filter((n) => finite(n) && n >= 1, { message: () => "expected a finite number >= 1" })
)

const LowestLatencySchema = Schema.Struct({
  buffer: Schema.optional(Buffer),
  window: Schema.optional(PositiveDuration),
  exploreAfter: Schema.optional(PositiveDuration),
  stuckAfter: Schema.optional(StuckAfter),
  perOutputToken: Schema.optional(Schema.Boolean)
})

const PeakEwmaSchema = Schema.Struct({
  decay: Schema.optional(PositiveDuration),
  stuckAfter: Schema.optional(StuckAfter)
})

const validateLowestLatency = validateConfig(LowestLatencySchema, "Selector.lowestLatency")
const validatePeakEwma = validateConfig(PeakEwmaSchema, "Selector.peakEwma")

/** Defaults of `Selector.lowestLatency` (documented there). */
export const lowestLatencyDefaults = {
  buffer: 0.1,
  windowMs: 60_000,
  exploreAfterMs: 30_000,
  stuckAfter: 1,
  perOutputToken: true
} as const

/** Defaults of `Selector.peakEwma` (documented there). */
export const peakEwmaDefaults = {
  decayMs: 10_000,
  stuckAfter: 1
} as const

/**
 * Samples a deployment must show after a quiet spell (no news for `exploreAfter`, or `decay`
 * for peak-EWMA) before the engine's average is trusted again. Until then, while the state's
 * window holds only samples that arrived since the spell, their median stands for it: the
 * average may still be mostly old news (a deployment that was slow, went unused, recovered).
 * The engine's average moves 20% per sample (the default `latencyAlpha`): after 20 new ones,
 * about 1% of it is older.
 */
const FRESH_SAMPLES = 20

/**
 * How long lowest latency goes on with a deployment's window count before reading it again,
 * when its average has not moved (a sample equal to the average moves nothing): it notices such
 * news up to this late, and a pick over 1,000 deployments does not count 1,000 windows.
 */
const COUNT_REFRESH_MS = 250

/** How long lowest latency goes on with the prior it found for a candidates array. */
const PRIOR_REFRESH_MS = 100

/** The load of a deployment that has calls in flight but never answered: it waits for its first answer. */
const UNSEEN_PENALTY = 1e12

// -------------------------------------------------------------------------------------------
// What a selector remembers of a deployment
// -------------------------------------------------------------------------------------------

/** One kind of sample of a deployment: calls (chat, embed) or streams (time to first content). */
class Track {
  /** The engine's average when last seen (`latencyMs` or `firstTokenMs`). */
  ewma: number | undefined
  /** The samples in the state's window when last seen. */
  count = 0
  /** When new samples were last seen (ms). */
  changed: number
  /**
   * New samples seen since the deployment came out of its last quiet spell (counted up to
   * `FRESH_SAMPLES`: a deployment that goes quiet again before showing that many keeps counting).
   */
  fresh: number
  /** When `count` was read (ms). */
  countAt: number
  /** The median of the window's samples, kept until they change (`NaN`: to be found). */
  recentMs = NaN
  /** Peak-EWMA cost (ms) and when it was last updated (`-1`: none yet). */
  cost = 0
  costAt = -1
  constructor(ewma: number | undefined, count: number, now: number) {
    this.ewma = ewma
    this.count = count
    this.countAt = now
    this.changed = now
    // A selector built while the engine already knows the deployment trusts its average.
    this.fresh = ewma === undefined ? 0 : FRESH_SAMPLES
  }
  /**
   * Takes in what the stats show now; true when new samples arrived since last seen (the average
   * moved, or the window holds more samples).
   */
  observe(ewma: number | undefined, count: number, now: number, quietMs: number): boolean {
    const news = ewma !== this.ewma || count > this.count
    if (news || count !== this.count) this.recentMs = NaN
    if (news) {
      if (now - this.changed >= quietMs && this.fresh >= FRESH_SAMPLES) this.fresh = 0
      this.fresh += count > this.count ? count - this.count : 1
      this.changed = now
      this.ewma = ewma
    }
    this.count = count
    this.countAt = now
    return news
  }
}

class Memo {
  calls: Track | undefined = undefined
  streams: Track | undefined = undefined
  /** When this selector last picked the deployment (ms). */
  picked = -Infinity
  track(stream: boolean, ewma: number | undefined, sketch: LatencyQuantiles, now: number): Track {
    if (stream) return this.streams ??= new Track(ewma, sketch.count(now), now)
    return this.calls ??= new Track(ewma, sketch.count(now), now)
  }
}

class Memos {
  private readonly byId = new Map<string, Memo>()
  /**
   * The memos of a frozen candidates array, in its order, found once: a frozen array (the
   * memory store hands a kept pool's candidates as one) never changes, so at 1,000 deployments a
   * pick does not look 1,000 ids up.
   */
  private readonly byArray = new WeakMap<ReadonlyArray<Candidate>, ReadonlyArray<Memo>>()
  get(id: string): Memo {
    let memo = this.byId.get(id)
    if (memo === undefined) this.byId.set(id, memo = new Memo())
    return memo
  }
  /** The candidates' memos in order: kept for a frozen array, else written into `scratch`. */
  all(candidates: ReadonlyArray<Candidate>, scratch: Array<Memo | undefined>): ReadonlyArray<Memo | undefined> {
    if (Object.isFrozen(candidates)) {
      let found = this.byArray.get(candidates)
      if (found === undefined) this.byArray.set(candidates, found = candidates.map((c) => this.get(c.deployment.id)))
      return found
    }
    for (let i = 0; i < candidates.length; i++) scratch[i] = this.get(candidates[i].deployment.id)
    return scratch
  }
}

const sketchOf = (stats: Candidate["stats"], stream: boolean): LatencyQuantiles =>
  stream ? stats.latency.streams : stats.latency.calls

/**
 * The latency (ms) a deployment's samples show: the engine's moving average, or, while it has
 * shown fewer than `FRESH_SAMPLES` samples since its last quiet spell and the state's window
 * holds only those, their median. `NaN` without any sample.
 */
const baseMs = (track: Track, sketch: LatencyQuantiles, ewma: number | undefined, count: number, now: number): number => {
  if (ewma === undefined) return NaN
  if (track.fresh < FRESH_SAMPLES && count > 0 && count <= track.fresh) {
    let median = track.recentMs
    if (median !== median) median = track.recentMs = sketch.quantile(now, 0.5) ?? ewma
    return median
  }
  return ewma
}

/**
 * How long a call of this deployment usually takes (ms), to judge the age of its calls in
 * flight: its call average, or for streams the time to first content plus the generation time
 * of an average call's tokens (all tokens, prompt included: an overestimate, so the judgement is
 * lenient), whichever is longer. 0 when unknown.
 */
const expectedMs = (candidate: Candidate, latencyMs: number | undefined, firstTokenMs: number | undefined): number => {
  let d = latencyMs ?? 0
  if (firstTokenMs !== undefined) {
    const stats = candidate.stats
    let stream = firstTokenMs
    const perToken = stats.perTokenMs
    if (perToken !== undefined) {
      const done = stats.completed
      if (done > 0) stream += perToken * (stats.tokens / done)
    }
    if (stream > d) d = stream
  }
  return d
}

/**
 * How much slower a deployment with calls in flight looks: 1 until their mean age passes
 * `stuckAfter` times its usual call, then that age over `stuckAfter` usual calls (growing with
 * the age, before any of the calls ends).
 */
const ageFactor = (
  candidate: Candidate,
  latencyMs: number | undefined,
  firstTokenMs: number | undefined,
  stuckAfter: number
): number => {
  const age = candidate.stats.inFlightAgeMs
  if (!(age > 0)) return 1
  const usual = expectedMs(candidate, latencyMs, firstTokenMs)
  if (!(usual > 0)) return 1
  const limit = stuckAfter * usual
  return age > limit ? age / limit : 1
}

// -------------------------------------------------------------------------------------------
// Lowest latency
// -------------------------------------------------------------------------------------------

/** The k-th smallest (0-based) of `xs[0 .. n)`, reordering them (quickselect, O(n) on average). */
const select = (xs: Float64Array, n: number, k: number): number => {
  let lo = 0
  let hi = n - 1
  while (lo < hi) {
    const pivot = xs[(lo + hi) >>> 1]
    let i = lo
    let j = hi
    while (i <= j) {
      while (xs[i] < pivot) i++
      while (xs[j] > pivot) j--
      if (i <= j) {
        const t = xs[i]
        xs[i] = xs[j]
        xs[j] = t
        i++
        j--
      }
    }
    if (k <= j) hi = j
    else if (k >= i) lo = i
    else return xs[k]
  }
  return xs[k]
}

/** The median of `xs[0 .. n)` (n > 0), reordering them. */
const median = (xs: Float64Array, n: number): number =>
  n % 2 === 1 ? select(xs, n, n >> 1) : (select(xs, n, (n >> 1) - 1) + select(xs, n, n >> 1)) / 2

/** Marks a candidate that counts as the best: never seen and nothing in flight (explore it). */
const UNSEEN_IDLE = -1

interface LowestLatencyConfig {
  readonly buffer: number
  readonly windowMs: number
  readonly exploreAfterMs: number
  readonly stuckAfter: number
  readonly perOutputToken: boolean
}

/** A pick's basis: what its estimates measure (they compare only within one basis). */
const CALLS = 1
const STREAMS = 2
const PER_TOKEN = 3

/**
 * Large frozen candidates arrays (a big group whose every deployment is admitted: the memory
 * store hands the same array each time) are evaluated in full at most every `RANK_REFRESH_MS`;
 * the picks in between draw among the last evaluation's eligible ones, each draw checked
 * against its candidate's current stats (a full evaluation again when it fails the check). At
 * 1,000 deployments a full evaluation reads 1,000 live stats; a pick between reads one.
 */
const RANK_FROM = 64
const RANK_REFRESH_MS = 100

/** The last full evaluation of a large frozen candidates array. */
interface Ranking {
  readonly at: number
  readonly basis: number
  readonly prior: number
  readonly limit: number
  readonly eligible: Int32Array
}

const makeLowestLatencyPick = (config: LowestLatencyConfig) => {
  const memos = new Memos()
  const { buffer, exploreAfterMs, perOutputToken, stuckAfter, windowMs } = config
  // Scratch, grown as needed and reused by every pick (a pick runs synchronously to its end).
  let size = 0
  let score = new Float64Array(0)
  let unit = new Float64Array(0)
  let sorted = new Float64Array(0)
  let idle = new Float64Array(0)
  let chosen = new Int32Array(0)
  let memoAt: Array<Memo | undefined> = []
  const grow = (n: number) => {
    if (n <= size) return
    size = Math.max(n, size * 2, 16)
    score = new Float64Array(size)
    unit = new Float64Array(size)
    sorted = new Float64Array(size)
    idle = new Float64Array(size)
    chosen = new Int32Array(size)
    memoAt = new Array(size)
  }

  // The last prior found: for which candidates array and basis, when.
  let cachedPrior = 0
  let priorOf: ReadonlyArray<Candidate> | undefined = undefined
  let priorBasis = 0
  let priorAt = -Infinity
  /** By candidates array, the last ranking of each basis. */
  const rankings = new WeakMap<ReadonlyArray<Candidate>, Array<Ranking | undefined>>()

  /**
   * A candidate's estimate in ms (failures and calls in flight counted), `UNSEEN_IDLE` or `NaN`
   * (never seen, calls in flight), after taking in what its stats show; its time without news
   * into `idle[i]`.
   */
  const estimate = (c: Candidate, memo: Memo, stream: boolean, now: number, i: number): number => {
    const stats = c.stats
    const latencyMs = stats.latencyMs
    const ewma = stream ? stats.firstTokenMs : latencyMs
    let track = stream ? memo.streams : memo.calls
    if (track === undefined) track = memo.track(stream, ewma, sketchOf(stats, stream), now)
    // the window's count read again only when the average moved or COUNT_REFRESH_MS passed
    if (ewma !== track.ewma || now - track.countAt >= COUNT_REFRESH_MS) {
      track.observe(ewma, sketchOf(stats, stream).count(now), now, exploreAfterMs)
    }
    const inFlight = stats.inFlight
    // Never seen: as good as the best while nothing is in flight (explored), then out of the
    // running until its first call answers.
    if (ewma === undefined) return inFlight === 0 ? UNSEEN_IDLE : NaN
    idle[i] = now - (track.changed > memo.picked ? track.changed : memo.picked)
    let ms = track.fresh < FRESH_SAMPLES ? baseMs(track, sketchOf(stats, stream), ewma, track.count, now) : ewma
    const failures = stats.consecutiveFailures
    if (failures > 0) ms *= 1 + failures
    if (inFlight > 0) ms *= ageFactor(c, latencyMs, stats.firstTokenMs, stuckAfter)
    return ms
  }

  /** Per output token: a deployment's time over its own average output tokens per call (`NaN`: unknown). */
  const perTokenUnit = (c: Candidate): number => {
    const stats = c.stats
    const pt = stats.perTokenMs
    const latencyMs = stats.latencyMs
    return pt !== undefined && latencyMs !== undefined && latencyMs > 0 ? pt / latencyMs : NaN
  }

  /** An estimate without news decayed toward the prior. */
  const decay = (s: number, q: number, prior: number) => (q > 0 ? prior + (s - prior) * Math.exp(-q / windowMs) : s)

  /** Marks the pick in its memo and returns it. */
  const take = (candidates: ReadonlyArray<Candidate>, memo: Memo, i: number, now: number): Candidate => {
    memo.picked = now
    return candidates[i]
  }

  /** The `floor(r * count)`-th candidate whose score is in `[lo, hi]` (`count` of them). */
  const nth = (
    candidates: ReadonlyArray<Candidate>,
    memoOf: ReadonlyArray<Memo | undefined>,
    lo: number,
    hi: number,
    count: number,
    r: number,
    now: number
  ) => {
    let target = Math.min(count - 1, Math.floor(r * count))
    for (let i = 0; i < candidates.length; i++) {
      const s = score[i]
      if (s >= lo && s <= hi) {
        if (target === 0) return take(candidates, memoOf[i]!, i, now)
        target--
      }
    }
    const last = candidates.length - 1
    return take(candidates, memoOf[last]!, last, now)
  }

  /** Whether candidate `i`, drawn from the last ranking, still is within its limit now. */
  const stillEligible = (
    candidates: ReadonlyArray<Candidate>,
    memo: Memo,
    i: number,
    ranking: Ranking,
    stream: boolean,
    now: number
  ): boolean => {
    const c = candidates[i]
    let s = estimate(c, memo, stream, now, i)
    if (s === UNSEEN_IDLE) return true
    if (!(s >= 0)) return false
    if (ranking.basis === PER_TOKEN) {
      const u = perTokenUnit(c)
      if (u !== u) return false
      s *= u
    }
    return decay(s, idle[i], ranking.prior) <= ranking.limit
  }

  const choose = (candidates: ReadonlyArray<Candidate>, request: SelectionRequest, now: number, r: number): Candidate => {
    const n = candidates.length
    grow(n)
    const stream = request.kind === "stream"
    const memoOf = memos.all(candidates, memoAt)
    // 0. A large frozen array evaluated in full less than RANK_REFRESH_MS ago: a draw among the
    //    eligible ones then, checked.
    const wanted = stream ? STREAMS : perOutputToken && request.kind === "chat" ? PER_TOKEN : CALLS
    const ranked = n >= RANK_FROM ? rankings.get(candidates)?.[wanted] : undefined
    if (ranked !== undefined && now - ranked.at < RANK_REFRESH_MS && now >= ranked.at) {
      const eligible = ranked.eligible
      const i = eligible[Math.min(eligible.length - 1, Math.floor(r * eligible.length))]
      const memo = memoOf[i]!
      if (stillEligible(candidates, memo, i, ranked, stream, now)) return take(candidates, memo, i, now)
    }
    let perToken = perOutputToken && request.kind === "chat"
    let seen = 0
    let unseenIdle = 0
    let explore = -1
    let exploreIdle = -1
    // 1. What each candidate's samples say (ms), how long it went without news, who is due a probe.
    for (let i = 0; i < n; i++) {
      const c = candidates[i]
      const s = estimate(c, memoOf[i]!, stream, now, i)
      score[i] = s
      if (s === UNSEEN_IDLE) {
        unseenIdle++
        continue
      }
      if (!(s >= 0)) continue
      seen++
      if (perToken) {
        const u = perTokenUnit(c)
        if (u === u) unit[i] = u
        else perToken = false
      }
      const quiet = idle[i]
      if (quiet >= exploreAfterMs && quiet > exploreIdle && c.stats.inFlight === 0) {
        explore = i
        exploreIdle = quiet
      }
    }
    // 2. A first attempt probes the deployment longest without news, once it went `exploreAfter`
    //    without any and has nothing in flight.
    if (explore >= 0 && request.attempt === 0) return take(candidates, memoOf[explore]!, explore, now)
    if (seen === 0) {
      if (unseenIdle > 0) return nth(candidates, memoOf, UNSEEN_IDLE, UNSEEN_IDLE, unseenIdle, r, now)
      // every candidate waits for its first answer: the fewest in flight
      let min = Infinity
      let ties = 0
      for (let i = 0; i < n; i++) {
        const f = candidates[i].stats.inFlight
        score[i] = f
        if (f < min) {
          min = f
          ties = 1
        } else if (f === min) ties++
      }
      return nth(candidates, memoOf, min, min, ties, r, now)
    }
    // 3. The prior: the median of the seen candidates; an estimate without news decays toward it.
    //    (Found again at most every `PRIOR_REFRESH_MS` for the same candidates array and basis.)
    const basis = stream ? STREAMS : perToken ? PER_TOKEN : CALLS
    let prior = cachedPrior
    if (candidates !== priorOf || basis !== priorBasis || now - priorAt >= PRIOR_REFRESH_MS || now < priorAt) {
      let k = 0
      for (let i = 0; i < n; i++) if (score[i] >= 0) sorted[k++] = perToken ? score[i] * unit[i] : score[i]
      prior = cachedPrior = median(sorted, k)
      priorOf = candidates
      priorBasis = basis
      priorAt = now
    }
    let best = Infinity
    for (let i = 0; i < n; i++) {
      let s = score[i]
      if (!(s >= 0)) continue
      if (perToken) s *= unit[i]
      const decayed = decay(s, idle[i], prior)
      score[i] = decayed
      if (decayed < best) best = decayed
    }
    // 4. At random among the candidates within `buffer` of the best, and the unseen idle ones.
    const limit = best * (1 + buffer)
    let eligible = 0
    for (let i = 0; i < n; i++) {
      const s = score[i]
      if (s === UNSEEN_IDLE || (s >= 0 && s <= limit)) chosen[eligible++] = i
    }
    if (n >= RANK_FROM && Object.isFrozen(candidates)) {
      let kept = rankings.get(candidates)
      if (kept === undefined) rankings.set(candidates, kept = [])
      // kept under the basis asked for (a chat request may fall back from per token to time)
      kept[wanted] = { at: now, basis, prior, limit, eligible: chosen.slice(0, eligible) }
    }
    const i = chosen[Math.min(eligible - 1, Math.floor(r * eligible))]
    return take(candidates, memoOf[i]!, i, now)
  }

  return (candidates: ReadonlyArray<Candidate>, request: SelectionRequest): Effect.Effect<Candidate> => {
    if (candidates.length === 1) return Effect.succeed(candidates[0])
    return Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.map(Random.next, (r) => choose(candidates, request, now, r)))
  }
}

/** `Selector.lowestLatency`'s service, its options validated. */
export const lowestLatency = (options: LowestLatencyOptions = {}): Effect.Effect<Service, InvalidConfig> =>
  Effect.map(validateLowestLatency(options), (o) => ({
    pick: makeLowestLatencyPick({
      buffer: o.buffer ?? lowestLatencyDefaults.buffer,
      windowMs: o.window === undefined ? lowestLatencyDefaults.windowMs : Duration.toMillis(o.window),
      exploreAfterMs: o.exploreAfter === undefined ? lowestLatencyDefaults.exploreAfterMs : Duration.toMillis(o.exploreAfter),
      stuckAfter: o.stuckAfter ?? lowestLatencyDefaults.stuckAfter,
      perOutputToken: o.perOutputToken ?? lowestLatencyDefaults.perOutputToken
    })
  }))

// -------------------------------------------------------------------------------------------
// Power of two choices with peak-EWMA load
// -------------------------------------------------------------------------------------------

interface PeakEwmaConfig {
  readonly decayMs: number
  readonly stuckAfter: number
}

const makePeakEwmaPick = (config: PeakEwmaConfig) => {
  const memos = new Memos()
  const { decayMs, stuckAfter } = config

  /**
   * The candidate's load at `now`: its peak-EWMA cost (ms) times its calls in flight plus one,
   * the cost first brought up to date. New samples (the engine's average moved, or the window
   * grew): a slower estimate replaces the cost at once, a faster one pulls it down with time
   * constant `decay`; no news: the cost decays toward 0 with the same time constant, so a
   * deployment left alone after a slow spell gets tried again (Finagle's peak EWMA).
   */
  const load = (candidate: Candidate, stream: boolean, now: number): number => {
    const stats = candidate.stats
    const memo = memos.get(candidate.deployment.id)
    const latencyMs = stats.latencyMs
    const firstTokenMs = stats.firstTokenMs
    const ewma = stream ? firstTokenMs : latencyMs
    const sketch = stream ? stats.latency.streams : stats.latency.calls
    const count = sketch.count(now)
    const track = memo.track(stream, ewma, sketch, now)
    const news = track.observe(ewma, count, now, decayMs)
    const inFlight = stats.inFlight
    if (ewma === undefined) return inFlight === 0 ? 0 : UNSEEN_PENALTY + inFlight
    const observed = baseMs(track, sketch, ewma, count, now) * (1 + stats.consecutiveFailures)
    if (track.costAt < 0) {
      track.cost = observed
    } else {
      const elapsed = now - track.costAt
      const w = elapsed > 0 ? Math.exp(-elapsed / decayMs) : 1
      if (!news) track.cost *= w
      else if (observed > track.cost) track.cost = observed
      else track.cost = track.cost * w + observed * (1 - w)
    }
    track.costAt = now
    let cost = track.cost
    if (inFlight === 0) return cost
    if (cost === 0) return UNSEEN_PENALTY + inFlight
    cost *= ageFactor(candidate, latencyMs, firstTokenMs, stuckAfter)
    return cost * (inFlight + 1)
  }

  return (candidates: ReadonlyArray<Candidate>, request: SelectionRequest): Effect.Effect<Candidate> => {
    const n = candidates.length
    if (n === 1) return Effect.succeed(candidates[0])
    const stream = request.kind === "stream"
    return Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.map(Random.next, (r) => {
        // Two distinct candidates from one draw: i from its integer part over n, j from the rest.
        const x = r * n
        const i = Math.floor(x)
        let j = Math.min(n - 2, Math.floor((x - i) * (n - 1)))
        if (j >= i) j++
        const a = candidates[i]
        const b = candidates[j]
        const la = load(a, stream, now)
        const lb = load(b, stream, now)
        // ties (two idle deployments never seen, say) go to the first drawn: itself at random
        return lb < la ? b : a
      }))
  }
}

/** `Selector.peakEwma`'s service, its options validated. */
export const peakEwma = (options: PeakEwmaOptions = {}): Effect.Effect<Service, InvalidConfig> =>
  Effect.map(validatePeakEwma(options), (o) => ({
    pick: makePeakEwmaPick({
      decayMs: o.decay === undefined ? peakEwmaDefaults.decayMs : Duration.toMillis(o.decay),
      stuckAfter: o.stuckAfter ?? peakEwmaDefaults.stuckAfter
    })
  }))
