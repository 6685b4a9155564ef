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

export const weightedPick = (candidates: ReadonlyArray<Candidate>, _request: SelectionRequest): Effect.Effect<Candidate> => {
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
