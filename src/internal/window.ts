/**
 * The sliding-window counter the in-memory state keeps its usage and failure windows in.
 *
 * @internal
 */
/**
 * A sliding-window counter over fixed buckets: `BUCKETS` buckets of `bucketMs` each, so the
 * window is `BUCKETS * bucketMs` and ends in the current bucket. Constant memory, no allocation
 * per update, O(BUCKETS) to read.
 */
export const BUCKETS = 6

export class WindowCounter {
  private readonly ids = new Float64Array(BUCKETS).fill(-1)
  private readonly counts = new Float64Array(BUCKETS)
  // The last sum and the bucket it was read in: selectors read every candidate's windows at
  // every pick, and most have not changed since (the arrays are then not touched).
  private sumBucket = -1
  private lastSum = 0
  constructor(readonly bucketMs: number) {}

  add(now: number, amount: number): void {
    const id = Math.floor(now / this.bucketMs)
    const slot = id % BUCKETS
    if (this.ids[slot] !== id) {
      this.ids[slot] = id
      this.counts[slot] = 0
    }
    this.counts[slot] += amount
    this.sumBucket = -1
  }

  sum(now: number): number {
    const current = Math.floor(now / this.bucketMs)
    if (current === this.sumBucket) return this.lastSum
    const oldest = current - BUCKETS
    let total = 0
    for (let i = 0; i < BUCKETS; i++) if (this.ids[i] > oldest) total += this.counts[i]
    this.sumBucket = current
    this.lastSum = total
    return total
  }

  reset(): void {
    this.ids.fill(-1)
    this.counts.fill(0)
    this.sumBucket = -1
  }
}

/**
 * A rolling-minute counter for rpm and tpm limits: 61 buckets of a second, and a read counts
 * every bucket that overlaps the last 60 s, so what it reports is never less than what a strict
 * rolling minute holds (a limit held on it is never exceeded on any 60 s interval; the price is
 * at most a second of capacity). Constant memory, no allocation per update, and a read is O(1)
 * amortized: a running total, and buckets leave it as the window passes them.
 */
export class MinuteWindow {
  private readonly ids = new Float64Array(SPAN).fill(-1)
  private readonly counts = new Float64Array(SPAN)
  private total = 0
  /** The oldest bucket id still in the total. */
  private head = 0

  /** Drops the buckets the window at `now` no longer overlaps. */
  private advance(now: number): void {
    const oldest = Math.floor((now - 60_000) / SECOND)
    if (oldest <= this.head) return
    if (oldest - this.head >= SPAN) {
      let total = 0
      for (let i = 0; i < SPAN; i++) {
        if (this.ids[i] >= oldest) total += this.counts[i]
        else this.clear(i)
      }
      this.total = total
    } else {
      for (let id = this.head; id < oldest; id++) {
        const i = id % SPAN
        if (this.ids[i] === id) {
          this.total -= this.counts[i]
          this.clear(i)
        }
      }
      if (this.total < 0) this.total = 0
    }
    this.head = oldest
  }

  private clear(i: number): void {
    this.ids[i] = -1
    this.counts[i] = 0
  }

  add(now: number, amount: number): void {
    this.advance(now)
    const id = Math.floor(now / SECOND)
    const i = id % SPAN
    if (this.ids[i] !== id) {
      // a second that already left the window, or one the clock went back to
      if (this.ids[i] > id || id < this.head) return
      this.ids[i] = id
      this.counts[i] = 0
    }
    this.counts[i] += amount
    this.total += amount
  }

  /** Corrects what was added at `at` (a call's estimate by its actual tokens); nothing once that second has left the window. */
  adjust(at: number, delta: number): void {
    const id = Math.floor(at / SECOND)
    const i = id % SPAN
    if (this.ids[i] !== id || id < this.head) return
    const next = Math.max(0, this.counts[i] + delta)
    this.total = Math.max(0, this.total + next - this.counts[i])
    this.counts[i] = next
  }

  sum(now: number): number {
    this.advance(now)
    return this.total
  }

  /**
   * The first time from `now` at which `need` more fits under `limit` (`now` when it does
   * already; `undefined` when it never can: `need` alone is over the limit).
   */
  fitsAt(now: number, need: number, limit: number): number | undefined {
    if (need > limit) return undefined
    let over = this.sum(now) + need - limit
    if (over <= 0) return now
    // buckets in the window, oldest first: each leaves it 60 s after its second ends
    for (let id = this.head; id <= Math.floor(now / SECOND); id++) {
      const i = id % SPAN
      if (this.ids[i] === id) over -= this.counts[i]
      if (over <= 0) return (id + 1) * SECOND + 60_000
    }
    return undefined
  }
}

const SECOND = 1_000
const SPAN = 61
