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
  constructor(readonly bucketMs: number) {}

  add(now: number, amount: number): void {
    const id = Math.floor(now / this.bucketMs)
    const slot = id % BUCKETS
    if (this.ids[slot] !== id) {
      this.ids[slot] = id
      this.counts[slot] = 0
    }
    this.counts[slot] += amount
  }

  sum(now: number): number {
    const oldest = Math.floor(now / this.bucketMs) - BUCKETS
    let total = 0
    for (let i = 0; i < BUCKETS; i++) if (this.ids[i] > oldest) total += this.counts[i]
    return total
  }

  reset(): void {
    this.ids.fill(-1)
    this.counts.fill(0)
  }
}
