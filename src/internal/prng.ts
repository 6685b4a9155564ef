/**
 * Seeded pseudo-random numbers, the same on every run: murmur3's 32-bit finalizer (to mix seeds,
 * salts and indexes into a seed), the mulberry32 generator and Box-Muller normals. The fake
 * provider's latency and failure draws, the usage-based selector's second draw, and the benches'
 * and tests' seeded samples (bench/sim.ts, bench/sketch.ts, test/Sketch.test.ts) use these.
 *
 * @internal
 */

/** murmur3's 32-bit finalizer: an integer hash of the 32 bits of `h`, as an unsigned integer. */
export const fmix32 = (h: number): number => {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** mulberry32 from a 32-bit seed: uniforms in [0, 1). */
export const mulberry32 = (seed: number) => {
  let s = seed >>> 0
  return (): number => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A standard normal from two uniforms of `u` (Box-Muller). */
export const normal = (u: () => number): number => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u())
