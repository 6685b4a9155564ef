/**
 * The built-in selection policies: weighted random (`shares`, `weightedPick`) and round robin
 * (`makeRoundRobin`).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import type { Candidate, SelectionRequest } from "../Selector.js"

type Basis = "weight" | "rpm" | "tpm" | "uniform"

const basisOf = (candidates: ReadonlyArray<Candidate>): Basis => {
  let rpm = false
  let tpm = false
  for (let i = 0; i < candidates.length; i++) {
    const d = candidates[i].deployment
    if (d.weight !== undefined) return "weight"
    if (d.rpm !== undefined) rpm = true
    if (d.tpm !== undefined) tpm = true
  }
  return rpm ? "rpm" : tpm ? "tpm" : "uniform"
}

// A deployment without a value on the chosen basis counts as 1 (weight) or as the smallest
// limit seen (rpm, tpm): never silently starved, never dominant.
const shareOf = (candidate: Candidate, basis: Basis, fallback: number): number => {
  const d = candidate.deployment
  switch (basis) {
    case "weight":
      return d.weight ?? 1
    case "rpm":
      return d.rpm ?? fallback
    case "tpm":
      return d.tpm ?? fallback
    case "uniform":
      return 1
  }
}

const fallbackShare = (candidates: ReadonlyArray<Candidate>, basis: Basis): number => {
  if (basis !== "rpm" && basis !== "tpm") return 1
  let min = Infinity
  for (let i = 0; i < candidates.length; i++) {
    const v = basis === "rpm" ? candidates[i].deployment.rpm : candidates[i].deployment.tpm
    if (v !== undefined && v < min) min = v
  }
  return min
}

export const shares = (candidates: ReadonlyArray<Candidate>): ReadonlyArray<number> => {
  const basis = basisOf(candidates)
  const fallback = fallbackShare(candidates, basis)
  const raw = candidates.map((c) => shareOf(c, basis, fallback))
  const total = raw.reduce((a, b) => a + b, 0)
  return total > 0 ? raw.map((r) => r / total) : raw.map(() => 1 / candidates.length)
}

/**
 * What `weightedPick` derives from a set of candidates, once: uniform, the running sums of the
 * shares (the last is the total) and the last candidate with a share (where floating-point
 * leftovers land), or nothing to gain (`scan`: shares a running sum cannot order).
 */
type Prepared =
  | { readonly kind: "uniform" }
  | { readonly kind: "sums"; readonly sums: Float64Array; readonly last: number }
  | { readonly kind: "scan" }

/**
 * Candidates arrays from this size on are prepared once when frozen: a frozen array and its
 * candidates' deployments (immutable config) never change, so neither do their shares. The
 * memory store hands a kept pool's candidates as one frozen array while it admits them all.
 */
const PREPARE_FROM = 32
const prepared = new WeakMap<ReadonlyArray<Candidate>, Prepared>()
const uniform: Prepared = { kind: "uniform" }
const scan: Prepared = { kind: "scan" }

const prepare = (candidates: ReadonlyArray<Candidate>): Prepared => {
  const basis = basisOf(candidates)
  if (basis === "uniform") return uniform
  const fallback = fallbackShare(candidates, basis)
  const sums = new Float64Array(candidates.length)
  let total = 0
  let last = -1
  for (let i = 0; i < candidates.length; i++) {
    const share = shareOf(candidates[i], basis, fallback)
    if (!(share >= 0)) return scan
    total += share
    sums[i] = total
    if (share > 0) last = i
  }
  if (!Number.isFinite(total)) return scan
  // every share 0: uniform, as in the scan
  return total > 0 ? { kind: "sums", sums, last } : uniform
}

/**
 * The scan's pick for `r`: the first candidate whose running sum passes `r * total` (it has a
 * share: a 0 share adds nothing to the sum), found by bisection.
 */
const pickBySums = (candidates: ReadonlyArray<Candidate>, sums: Float64Array, last: number, r: number): Candidate => {
  const point = r * sums[sums.length - 1]
  let lo = 0
  let hi = sums.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (point < sums[mid]) hi = mid
    else lo = mid + 1
  }
  return candidates[lo < sums.length ? lo : last]
}

/**
 * Weighted random: by `weight`, else `rpm`, else `tpm`, else uniform (see `shareOf`). A large
 * frozen candidates array is prepared once (`prepare`), then each pick is one random number and
 * a bisection; any other array is scanned.
 */
export const weightedPick = (candidates: ReadonlyArray<Candidate>, request: SelectionRequest): Effect.Effect<Candidate> => {
  if (candidates.length >= PREPARE_FROM && Object.isFrozen(candidates)) {
    let found = prepared.get(candidates)
    if (found === undefined) prepared.set(candidates, found = prepare(candidates))
    switch (found.kind) {
      case "uniform":
        return Effect.map(Random.nextIntBetween(0, candidates.length), (i) => candidates[i])
      case "sums": {
        const { last, sums } = found
        return Effect.map(Random.next, (r) => pickBySums(candidates, sums, last, r))
      }
    }
  }
  return scanPick(candidates, request)
}

const scanPick = (candidates: ReadonlyArray<Candidate>, _request: SelectionRequest): Effect.Effect<Candidate> => {
  if (candidates.length === 1) return Effect.succeed(candidates[0])
  const basis = basisOf(candidates)
  if (basis === "uniform") return Effect.map(Random.nextIntBetween(0, candidates.length), (i) => candidates[i])
  const fallback = fallbackShare(candidates, basis)
  let total = 0
  for (let i = 0; i < candidates.length; i++) total += shareOf(candidates[i], basis, fallback)
  if (total <= 0) return Effect.map(Random.nextIntBetween(0, candidates.length), (i) => candidates[i])
  return Effect.map(Random.next, (r) => {
    let point = r * total
    for (let i = 0; i < candidates.length; i++) {
      const share = shareOf(candidates[i], basis, fallback)
      if (share > 0 && point < share) return candidates[i]
      point -= share
    }
    // Floating-point leftovers land on the last candidate with a share.
    for (let i = candidates.length - 1; i >= 0; i--) {
      if (shareOf(candidates[i], basis, fallback) > 0) return candidates[i]
    }
    return candidates[candidates.length - 1]
  })
}

export const makeRoundRobin = () => {
  const counters = new Map<string, number>()
  return (candidates: ReadonlyArray<Candidate>, request: SelectionRequest): Effect.Effect<Candidate> =>
    Effect.sync(() => {
      const n = counters.get(request.group) ?? 0
      if (request.attempt === 0) counters.set(request.group, n + 1 >= Number.MAX_SAFE_INTEGER ? 0 : n + 1)
      return candidates[n % candidates.length]
    })
}
