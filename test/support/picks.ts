/**
 * What a selector picks, counted, for the selector tests: `n` picks by the selector in context
 * among fixed candidates, and shares compared with a tolerance.
 */
import { expect } from "@effect/vitest"
import { Effect } from "effect"
import { Selector } from "../../src/index.js"

/** `n` picks among `cs` by the selector in context, as counts by candidate index. */
export const pickCounts = (cs: ReadonlyArray<Selector.Candidate>, n: number, request: Selector.SelectionRequest) =>
  Effect.gen(function*() {
    const selector = yield* Selector.Selector
    const counts = cs.map(() => 0)
    for (let i = 0; i < n; i++) {
      const picked = yield* selector.pick(cs, request)
      const at = cs.indexOf(picked)
      if (at < 0) throw new Error("picked something that is not a candidate")
      counts[at]++
    }
    return counts
  })

/** Shares of `n` picks among `cs` by the selector in context, by candidate index. */
export const pickShares = (cs: ReadonlyArray<Selector.Candidate>, n: number, request: Selector.SelectionRequest) =>
  Effect.map(pickCounts(cs, n, request), (counts) => counts.map((c) => c / n))

/** Each observed share within `tolerance` of the expected one (the error lists them all). */
export const expectClose = (observed: ReadonlyArray<number>, expected: ReadonlyArray<number>, tolerance = 0.02) => {
  expect(observed.length).toBe(expected.length)
  observed.forEach((o, i) => {
    if (Math.abs(o - expected[i]) > tolerance) {
      throw new Error(`share ${i}: observed ${o.toFixed(4)}, expected ${expected[i]} ± ${tolerance} (all: ${observed.map((x) => x.toFixed(4)).join(", ")})`)
    }
  })
}
