/**
 * The per-deployment latency sketch: relative-error quantiles of the recent samples, in fixed memory.
 *
 * @internal
 */

/** Options of a {@link LatencySketch}; every field has a default. */
export interface LatencySketchOptions {
  /** How far back the sketch remembers, in ms. Default 60_000 (1 minute). */
  readonly windowMs?: number
  /**
   * How many sub-windows of `windowMs / subwindows` each the window rotates through. More
   * sub-windows forget more smoothly (at most `1 / subwindows` of the window drops at once) at
   * the cost of memory and of query time, both linear in it. Integer in [1, 64]; default 4.
   */
  readonly subwindows?: number
  /** The relative accuracy `a` of every quantile, in (0, 1). Default 0.02 (2 %). */
  readonly relativeAccuracy?: number
  /** The smallest latency told apart, in ms; smaller samples count as `minMs`. Default 0.1. */
  readonly minMs?: number
  /** The largest latency told apart, in ms; larger samples count as `maxMs`. Default 600_000 (10 minutes). */
  readonly maxMs?: number
}

/** Above this many buckets per sub-window the options are taken for a mistake (4 × 65 536 × 4 B = 1 MiB). */
const MAX_BUCKETS = 65_536
const MAX_SUBWINDOWS = 64

const fail = (message: string): never => {
  throw new Error(`LatencySketch: ${message}`)
}

/**
 * Latency quantiles (p50, p95, p99, any q) of the samples of the last `windowMs`, each within a
 * relative accuracy `a` of the exact one: a DDSketch over logarithmic buckets, kept in rotating
 * sub-windows so that a deployment that got slow, or recovered, shows it within one window.
 *
 * Buckets. Log bucket `j` covers `[minMs·γ^j, minMs·γ^(j+1))` with `γ = (1 + a) / (1 - a)` (the
 * DDSketch buckets `[γ^(i-1), γ^i)`, anchored at `minMs` instead of 1) and answers
 * `minMs·γ^j·(1 + a)`, which is within `a·x` of any `x` in the bucket. Two more buckets take the
 * samples out of range: samples below `minMs` (zero and negative ones too) go to the min bucket,
 * which answers exactly `minMs`; samples at or above `maxMs` (`Infinity` too) go to the last
 * bucket, which answers exactly `maxMs`. NaN samples are ignored (not counted).
 *
 * Guarantee. With `n` samples in the window and `x` the nearest-rank q-quantile of the samples
 * clamped to `[minMs, maxMs]`, i.e. the `r`-th smallest for `r = max(1, ceil(q·n))` (`ceil`
 * over the double `q·n`), `quantile(now, q)` returns `y` with `|y - x| <= a·x`, up to
 * floating-point rounding (relative 1e-12). The rank is exact, not approximate: the sketch finds
 * the bucket holding the `r`-th sample, only the value inside the bucket is approximated.
 *
 * Window. Time is cut into sub-windows of `windowMs / subwindows` (sub-window `k` is
 * `[k·w, (k+1)·w)`); the window at `now` is the sub-window holding `now` and the `subwindows - 1`
 * before it. So a sample is never counted once it is `windowMs` old or older, and always counted
 * while younger than `windowMs·(subwindows - 1) / subwindows` (45 s of the default minute); in
 * between, it drops with the whole sub-window it was added in.
 *
 * Clock. The sketch never reads a clock: `now` (epoch ms, or any ms timeline, e.g. a `TestClock`'s)
 * is passed in. Time is taken as non-decreasing: a `now` earlier than the latest `add`'s, or
 * NaN, is read as that latest one, so a wall clock stepping back neither wipes nor misfiles
 * samples; an `add` with no usable `now` at all (non-finite and no earlier add, or `+Infinity`)
 * is ignored.
 *
 * Cost. Memory is fixed at construction: one `Uint32Array` of `subwindows × buckets` counts
 * (393 buckets with the defaults, so 4 × 393 × 4 B = 6 288 B) plus a few per-sub-window words;
 * see {@link LatencySketch.byteLength}. `add` is O(1) and allocates nothing. `quantile` and
 * `count` only read (they rotate nothing) and allocate nothing; `quantile` is
 * O(subwindows × occupied buckets), walking the live sub-windows' arrays together between the
 * lowest and highest bucket in use (from the top for q > 0.5). A bucket counts up to 2^32 - 1
 * samples per sub-window.
 *
 * Not thread-safe in any sense beyond JavaScript's: one sketch per deployment, updated from
 * synchronous code.
 */
export class LatencySketch {
  /** The window, in ms. */
  readonly windowMs: number
  /** How many sub-windows the window rotates through. */
  readonly subwindows: number
  /** The relative accuracy `a`. */
  readonly relativeAccuracy: number
  /** The smallest latency told apart, in ms. */
  readonly minMs: number
  /** The largest latency told apart, in ms. */
  readonly maxMs: number
  /** Buckets per sub-window: the min bucket, the log buckets, the max bucket. */
  readonly buckets: number

  private readonly subMs: number
  private readonly logGamma: number
  private readonly invLogGamma: number
  /** Counts, sub-window `s` at `[s·buckets, (s+1)·buckets)`. */
  private readonly counts: Uint32Array
  /** Which sub-window (`floor(now / subMs)`) each slot holds; -Infinity when none. */
  private readonly ids: Float64Array
  /** Samples per slot. */
  private readonly totals: Float64Array
  /** Lowest and highest bucket in use per slot (`buckets` and -1 when empty): bounds the walks and the clears. */
  private readonly lo: Int32Array
  private readonly hi: Int32Array
  /** Scratch for `quantile`: the offsets of the live slots. */
  private readonly live: Int32Array
  /** `[0]`: the latest sub-window id an `add` saw (kept in a typed array: no boxed double to update). */
  private readonly latest: Float64Array

  constructor(options: LatencySketchOptions = {}) {
    const windowMs = options.windowMs ?? 60_000
    const subwindows = options.subwindows ?? 4
    const a = options.relativeAccuracy ?? 0.02
    const minMs = options.minMs ?? 0.1
    const maxMs = options.maxMs ?? 600_000
    // `!(x > 0)` also catches NaN, which every plain comparison lets through.
    if (!(windowMs > 0) || !Number.isFinite(windowMs)) fail(`windowMs must be a finite number > 0, got ${windowMs}`)
    if (!Number.isInteger(subwindows) || subwindows < 1 || subwindows > MAX_SUBWINDOWS) {
      fail(`subwindows must be an integer in [1, ${MAX_SUBWINDOWS}], got ${subwindows}`)
    }
    if (!(a > 0 && a < 1)) fail(`relativeAccuracy must be a number in (0, 1), got ${a}`)
    if (!(minMs > 0) || !Number.isFinite(minMs)) fail(`minMs must be a finite number > 0, got ${minMs}`)
    if (!(maxMs > minMs) || !Number.isFinite(maxMs)) {
      fail(`maxMs must be a finite number > minMs (${minMs}), got ${maxMs}`)
    }
    const logGamma = Math.log((1 + a) / (1 - a))
    // Enough log buckets to reach maxMs: minMs·γ^logBuckets >= maxMs.
    const logBuckets = Math.max(1, Math.ceil(Math.log(maxMs / minMs) / logGamma))
    const buckets = logBuckets + 2
    if (buckets > MAX_BUCKETS) {
      fail(
        `relativeAccuracy ${a} over [${minMs}, ${maxMs}] ms needs ${buckets} buckets per sub-window, ` +
          `more than ${MAX_BUCKETS}: raise relativeAccuracy or narrow the range`
      )
    }
    this.windowMs = windowMs
    this.subwindows = subwindows
    this.relativeAccuracy = a
    this.minMs = minMs
    this.maxMs = maxMs
    this.buckets = buckets
    this.subMs = windowMs / subwindows
    this.logGamma = logGamma
    this.invLogGamma = 1 / logGamma
    this.counts = new Uint32Array(subwindows * buckets)
    this.ids = new Float64Array(subwindows).fill(-Infinity)
    this.totals = new Float64Array(subwindows)
    this.lo = new Int32Array(subwindows).fill(buckets)
    this.hi = new Int32Array(subwindows).fill(-1)
    this.live = new Int32Array(subwindows)
    this.latest = new Float64Array(1).fill(-Infinity)
  }

  /** Bytes held in the sketch's typed arrays (fixed at construction). */
  get byteLength(): number {
    return this.counts.byteLength + this.ids.byteLength + this.totals.byteLength + this.lo.byteLength +
      this.hi.byteLength + this.live.byteLength + this.latest.byteLength
  }

  /** Records one latency of `ms` milliseconds at time `now` (ms). O(1), allocates nothing. */
  add(now: number, ms: number): void {
    if (ms !== ms) return // NaN: there is no latency to record
    const latest = this.latest[0]
    let id = Math.floor(now / this.subMs)
    if (!(id >= latest)) id = latest // earlier than the latest add, or NaN
    if (id === Infinity || id === -Infinity) return // no usable time: nothing to file the sample under
    this.latest[0] = id
    const n = this.subwindows
    const slot = ((id % n) + n) % n // `%` keeps the sign: a negative `now` is still a timeline
    const buckets = this.buckets
    const base = slot * buckets
    if (this.ids[slot] !== id) {
      // The slot holds a sub-window that has left the window (ids only grow): start it afresh,
      // clearing only the buckets it used.
      if (this.hi[slot] >= 0) this.counts.fill(0, base + this.lo[slot], base + this.hi[slot] + 1)
      this.ids[slot] = id
      this.totals[slot] = 0
      this.lo[slot] = buckets
      this.hi[slot] = -1
    }
    let k: number
    if (ms < this.minMs) k = 0
    else if (ms >= this.maxMs) k = buckets - 1
    else {
      k = 1 + Math.floor(Math.log(ms / this.minMs) * this.invLogGamma)
      // Rounding can push a sample just under maxMs one bucket too far.
      if (k > buckets - 2) k = buckets - 2
    }
    this.counts[base + k]++
    this.totals[slot]++
    if (k < this.lo[slot]) this.lo[slot] = k
    if (k > this.hi[slot]) this.hi[slot] = k
  }

  /** Samples in the window at `now`. */
  count(now: number): number {
    const first = this.firstLiveId(now)
    let total = 0
    for (let s = 0; s < this.subwindows; s++) if (this.ids[s] >= first) total += this.totals[s]
    return total
  }

  /**
   * The q-quantile of the samples in the window at `now`, within the relative accuracy (see the
   * class doc for the exact guarantee and rank convention); `undefined` when the window is empty.
   *
   * @throws RangeError when `q` is not a number in [0, 1]: a quantile outside it is a bug at the
   * call site, not a state of the data, so it does not read as "no samples".
   */
  quantile(now: number, q: number): number | undefined {
    if (!(q >= 0 && q <= 1)) throw new RangeError(`LatencySketch: q must be a number in [0, 1], got ${q}`)
    const first = this.firstLiveId(now)
    const buckets = this.buckets
    const live = this.live
    let m = 0
    let n = 0
    let lo = buckets
    let hi = -1
    for (let s = 0; s < this.subwindows; s++) {
      if (this.ids[s] >= first && this.totals[s] > 0) {
        live[m++] = s * buckets
        n += this.totals[s]
        if (this.lo[s] < lo) lo = this.lo[s]
        if (this.hi[s] > hi) hi = this.hi[s]
      }
    }
    if (n === 0) return undefined
    const rank = Math.max(1, Math.ceil(q * n))
    const counts = this.counts
    if (q <= 0.5) {
      // The bucket holding the rank-th smallest: the first whose running count reaches it.
      let seen = 0
      for (let k = lo; k < hi; k++) {
        for (let j = 0; j < m; j++) seen += counts[live[j] + k]
        if (seen >= rank) return this.valueOf(k)
      }
      return this.valueOf(hi)
    }
    // From the top: the rank-th smallest is the (n - rank + 1)-th largest.
    const fromTop = n - rank + 1
    let seen = 0
    for (let k = hi; k > lo; k--) {
      for (let j = 0; j < m; j++) seen += counts[live[j] + k]
      if (seen >= fromTop) return this.valueOf(k)
    }
    return this.valueOf(lo)
  }

  /**
   * The q-quantile of the union of the samples of several sketches in their windows at `now`
   * (a group's deployments, say), with the same guarantee as {@link quantile}; `undefined` when
   * all are empty. The sketches must share their options (the same buckets): a sketch built
   * otherwise makes it throw.
   */
  static quantileAcross(sketches: ReadonlyArray<LatencySketch>, now: number, q: number): number | undefined {
    if (!(q >= 0 && q <= 1)) throw new RangeError(`LatencySketch: q must be a number in [0, 1], got ${q}`)
    if (sketches.length === 0) return undefined
    const first = sketches[0]
    let n = 0
    let lo = first.buckets
    let hi = -1
    for (const sketch of sketches) {
      if (sketch.buckets !== first.buckets || sketch.minMs !== first.minMs || sketch.relativeAccuracy !== first.relativeAccuracy) {
        fail("quantileAcross needs sketches built with the same options")
      }
      const live = sketch.firstLiveId(now)
      for (let s = 0; s < sketch.subwindows; s++) {
        if (sketch.ids[s] >= live && sketch.totals[s] > 0) {
          n += sketch.totals[s]
          if (sketch.lo[s] < lo) lo = sketch.lo[s]
          if (sketch.hi[s] > hi) hi = sketch.hi[s]
        }
      }
    }
    if (n === 0) return undefined
    const rank = Math.max(1, Math.ceil(q * n))
    let seen = 0
    for (let k = lo; k < hi; k++) {
      for (const sketch of sketches) seen += sketch.countAt(now, k)
      if (seen >= rank) return first.valueOf(k)
    }
    return first.valueOf(hi)
  }

  /** Samples of bucket `k` in the window at `now`. */
  private countAt(now: number, k: number): number {
    const live = this.firstLiveId(now)
    let total = 0
    for (let s = 0; s < this.subwindows; s++) if (this.ids[s] >= live) total += this.counts[s * this.buckets + k]
    return total
  }

  /** Forgets every sample (and the latest time seen). */
  reset(): void {
    this.counts.fill(0)
    this.ids.fill(-Infinity)
    this.totals.fill(0)
    this.lo.fill(this.buckets)
    this.hi.fill(-1)
    this.latest[0] = -Infinity
  }

  /** The oldest sub-window id in the window at `now`, reading `now` as `add` does. */
  private firstLiveId(now: number): number {
    const latest = this.latest[0]
    let id = Math.floor(now / this.subMs)
    if (!(id >= latest)) id = latest
    return id - this.subwindows + 1
  }

  /** What bucket `k` answers: its lower bound × (1 + a), within `a` of all it holds; the range's ends exactly. */
  private valueOf(k: number): number {
    if (k === 0) return this.minMs
    if (k === this.buckets - 1) return this.maxMs
    const y = this.minMs * Math.exp((k - 1) * this.logGamma) * (1 + this.relativeAccuracy)
    // The last log bucket reaches past maxMs; all it holds is below maxMs, so maxMs is closer.
    return y > this.maxMs ? this.maxMs : y
  }
}
