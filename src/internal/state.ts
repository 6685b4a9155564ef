/**
 * The in-memory `RouterState` store behind `RouterState.makeMemory`: per-deployment counters,
 * windows and circuits, and spend per key.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { Deployment } from "../Deployment.js"
import type { InvalidConfig } from "../Errors.js"
import type { RateLimitInfo } from "../Provider.js"
import {
  type CooldownRecord,
  type DeploymentStats,
  type LatencyQuantiles,
  type Lease,
  type MemoryOptions,
  type Outcome,
  type Reservation,
  type BudgetCharge,
  type BudgetPeriod,
  type Admission,
  type Service,
  Unreserved
} from "../RouterState.js"
import type { Candidate, NoFit } from "../Selector.js"
import { infallible, type Resilient, resilient } from "./resilient.js"
import { PositiveDuration, validateConfig } from "./schemas.js"
import { LatencySketch } from "./sketch.js"
import { BUCKETS, MinuteWindow, WindowCounter } from "./window.js"

const closed: CooldownRecord = { status: "closed", until: 0, ejections: 0, reason: "failures" }

/**
 * The store each policy built by this package keeps its state in (`Cooldown.make`,
 * `CostMeter.make`), so the router can refuse to run over a different one: the policies would
 * write where the router never reads.
 */
export const storeOf = new WeakMap<object, Service>()

/** How often a store that failed is tried again. */
const storeRetryMs = 5_000
const views = new WeakMap<Service, Resilient>()

/**
 * The one view of `primary` that the router and the policies built by this package all go
 * through: when the store fails, all of them serve from the same local view (`resilient.ts`), so
 * circuits and spend written meanwhile are not lost, and the router knows it is degraded.
 */
export const viewOf = (primary: Service): Effect.Effect<Resilient> =>
  Effect.suspend(() => {
    const found = views.get(primary)
    if (found !== undefined) return Effect.succeed(found)
    return Effect.map(Effect.orDie(makeMemory()), (local) => {
      // Layers are built concurrently: the first view made wins.
      const made = views.get(primary) ?? resilient(primary, local, storeRetryMs)
      views.set(primary, made)
      return made
    })
  })

/**
 * The key under which a reservation built by this package (`attempt.ts`) can say more than the
 * contract asks, for the in-memory store's fast path (other stores ignore it: `admit` stays the
 * whole truth). Its value, a circuit predicate (the cooldown policy, called as
 * `policy.isAvailable(record, now)`), is a promise about `admit`:
 *
 *   admit(d, stats, now) === "take" whenever policy.isAvailable(stats.cooldown, now) is true
 *   and d is below its limit (d.maxConcurrent === undefined || stats.inFlight < d.maxConcurrent).
 *
 * The router's admission keeps that promise exactly for a request without pre-call filters,
 * exclusions, retry-after holds, a last failure or attempts in flight (then nothing but the
 * circuit and the limit can refuse a deployment, and nothing makes it a `"fallback"`); it sets
 * no key otherwise. The store's own checks (rpm, tpm) still run on the fast path; a reservation
 * with budget `charges` does not take it.
 *
 * @internal
 */
export const takesAvailable: unique symbol = Symbol("effect-llm-router/takesAvailable")

/** A reservation that may carry the {@link takesAvailable} promise. @internal */
export interface FastReservation extends Reservation {
  readonly [takesAvailable]?: { readonly isAvailable: (record: CooldownRecord, now: number) => boolean } | undefined
}

/** A lease as its slot holds it. */
interface HeldLease {
  readonly at: number
  expiresAt: number
  /** Tokens held against tpm. */
  readonly tokens: number
  /** Budget holds, released when the lease ends. */
  readonly holds: ReadonlyArray<BudgetHold> | undefined
}

/** A budget's spend in its current period, and what calls in flight hold of it. */
interface BudgetState {
  periodStart: number
  spent: number
  held: number
}

/** What one lease holds of one budget, in the period it was taken in. */
interface BudgetHold {
  readonly budget: BudgetState
  readonly periodStart: number
  readonly amount: number
}

const releaseHolds = (holds: ReadonlyArray<BudgetHold>): void => {
  for (const hold of holds) {
    if (hold.budget.periodStart === hold.periodStart) hold.budget.held = Math.max(0, hold.budget.held - hold.amount)
  }
}

/** When the calendar `period` (UTC) that `now` is in starts and ends, epoch ms. */
export const periodOf = (period: BudgetPeriod, now: number): readonly [start: number, end: number] => {
  switch (period) {
    case "minute":
    case "hour":
    case "day": {
      const length = period === "minute" ? 60_000 : period === "hour" ? 3_600_000 : 86_400_000
      const start = Math.floor(now / length) * length
      return [start, start + length]
    }
    case "month": {
      const date = new Date(now)
      return [Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1), Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1)]
    }
  }
}

/**
 * A deployment's state, and its live `DeploymentStats` as selectors see it (read at `now`,
 * computed as read: no copy per reservation, and one object less to reach per candidate).
 */
class Slot implements DeploymentStats {
  // First the fields a reservation reads of every deployment of its pool (one cache line).
  /** The earliest expiry among `leases`: nothing to sweep before it. */
  nextExpiry = Infinity
  /** When the view is read (epoch ms): the time of the last reservation or read that swept it. */
  now = 0
  inFlight = 0
  cooldown: CooldownRecord = closed
  /** The leases held, by id, with their expiry (epoch ms) and the tokens they hold against tpm. */
  readonly leases = new Map<number, HeldLease>()
  /** Calls started over the rolling minute, kept when the deployment has an `rpm` limit. */
  rpm: MinuteWindow | undefined = undefined
  /** Tokens of the calls started over the rolling minute, kept when it has a `tpm` limit. */
  tpm: MinuteWindow | undefined = undefined
  /** Sum of the start times of the calls in flight (their mean age without a list of them). */
  startedSum = 0
  consecutiveFailures = 0
  latencyMs: number | undefined = undefined
  firstTokenMs: number | undefined = undefined
  perTokenMs: number | undefined = undefined
  readonly calls: LatencySketch
  readonly streams: LatencySketch
  readonly latency: { readonly calls: LatencyQuantiles; readonly streams: LatencyQuantiles }
  upstream: RateLimitInfo | undefined = undefined
  readonly requestCount: WindowCounter
  readonly tokenCount: WindowCounter
  readonly completedCount: WindowCounter
  readonly failureCount: WindowCounter
  /** The deployment's candidate for selectors, made once. */
  candidate: Candidate | undefined = undefined
  constructor(bucketMs: number, windowMs: number) {
    this.calls = new LatencySketch({ windowMs })
    this.streams = new LatencySketch({ windowMs })
    this.latency = { calls: this.calls, streams: this.streams }
    this.requestCount = new WindowCounter(bucketMs)
    this.tokenCount = new WindowCounter(bucketMs)
    this.completedCount = new WindowCounter(bucketMs)
    this.failureCount = new WindowCounter(bucketMs)
  }
  get inFlightAgeMs() {
    return this.inFlight === 0 ? 0 : Math.max(0, this.now - this.startedSum / this.inFlight)
  }
  get requests() {
    return this.requestCount.sum(this.now)
  }
  get tokens() {
    return this.tokenCount.sum(this.now)
  }
  get completed() {
    return this.completedCount.sum(this.now)
  }
  get failures() {
    return this.failureCount.sum(this.now)
  }
  /** Drops the leases that expired by `now` (their holders are gone or late). */
  sweep(now: number): void {
    if (now < this.nextExpiry) return
    let next = Infinity
    for (const [id, lease] of this.leases) {
      if (lease.expiresAt <= now) this.drop(id, lease.at)
      else if (lease.expiresAt < next) next = lease.expiresAt
    }
    this.nextExpiry = next
  }
  drop(id: number, at: number): void {
    const lease = this.leases.get(id)
    if (lease === undefined) return
    this.leases.delete(id)
    if (lease.holds !== undefined) releaseHolds(lease.holds)
    this.inFlight--
    this.startedSum = this.inFlight === 0 ? 0 : this.startedSum - at
  }
}

/**
 * Whether the `i`th deployment of a pool (its slot swept at `now`) is one a reservation's
 * {@link takesAvailable} promise covers: below its limit, its circuit available to `policy`.
 */
const passes = (
  slot: Slot,
  limits: Float64Array | undefined,
  i: number,
  policy: NonNullable<FastReservation[typeof takesAvailable]>,
  now: number
): boolean => (limits === undefined || slot.inFlight < limits[i]) && policy.isAvailable(slot.cooldown, now)

/** Which rolling-minute limit of `d` one more call of `tokens` would pass, if any (its slot read at `now`). */
const overRate = (slot: Slot, d: Deployment, tokens: number, now: number): "rpm" | "tpm" | undefined =>
  slot.rpm !== undefined && slot.rpm.sum(now) + 1 > d.rpm!
    ? "rpm"
    : slot.tpm !== undefined && slot.tpm.sum(now) + tokens > d.tpm!
    ? "tpm"
    : undefined

/** When `d` has room under both its rolling-minute limits for one more call of `tokens` (`undefined`: never). */
const rateRoomAt = (slot: Slot, d: Deployment, tokens: number, now: number): number | undefined => {
  const rpm = slot.rpm === undefined ? now : slot.rpm.fitsAt(now, 1, d.rpm!)
  const tpm = slot.tpm === undefined ? now : slot.tpm.fitsAt(now, tokens, d.tpm!)
  return rpm === undefined || tpm === undefined ? undefined : Math.max(rpm, tpm)
}

/** A pool's slots, and for a kept pool its candidates and its deployments' `maxConcurrent`, in pool order. */
interface Pool {
  readonly slots: ReadonlyArray<Slot>
  readonly all: ReadonlyArray<Candidate> | undefined
  /** Each deployment's `maxConcurrent` (`Infinity`: none); `undefined` when none has one. */
  readonly limits: Float64Array | undefined
  /** Whether any deployment has an `rpm` or `tpm` limit. */
  readonly rated: boolean
}

/**
 * What a reservation refused, by reason, and when the first cooling deployment returns or the
 * first limited one has room (every store built by this package counts them so).
 *
 * @internal
 */
export class Refusals {
  untagged = 0
  excluded = 0
  cooling = 0
  full = 0
  rpm = 0
  tpm = 0
  budget = 0
  budgetRefusal: { readonly key: string; readonly resetsAt: number } | undefined = undefined
  firstBack = Infinity
  capacityBack = Infinity
  /** Counts a deployment refused by a budget (the one that resets first is the one told). */
  overBudget(key: string, resetsAt: number): void {
    this.budget++
    if (this.budgetRefusal === undefined || resetsAt < this.budgetRefusal.resetsAt) this.budgetRefusal = { key, resetsAt }
  }
  /** Counts a deployment over a rolling-minute limit, and when it has room again (`undefined`: never). */
  overRate(which: "rpm" | "tpm", back: number | undefined): void {
    this[which]++
    if (back !== undefined && back < this.capacityBack) this.capacityBack = back
  }
  /** Counts what `admit` refused. */
  refuse(admission: Exclude<Admission, "take" | "fallback">): void {
    switch (admission.refused) {
      case "untagged":
        this.untagged++
        break
      case "excluded":
        this.excluded++
        break
      case "full":
        this.full++
        break
      case "cooling":
        this.cooling++
        if (admission.until !== undefined && admission.until < this.firstBack) this.firstBack = admission.until
    }
  }
  unreserved(): Unreserved {
    const firstBack = this.firstBack
    const capacityBack = this.capacityBack
    return new Unreserved({
      untagged: this.untagged,
      excluded: this.excluded,
      cooling: this.cooling,
      full: this.full,
      rpm: this.rpm,
      tpm: this.tpm,
      firstBack: firstBack === Infinity ? undefined : firstBack,
      capacityBack: capacityBack === Infinity ? undefined : capacityBack,
      budget: this.budget,
      budgetRefusal: this.budgetRefusal
    })
  }
}

/** The options every store built by this package takes for its windows and latency averages. @internal */
export const WindowOptions = {
  window: Schema.optional(PositiveDuration),
  latencyAlpha: Schema.optional(
    Schema.Number.pipe(Schema.filter((n) => n > 0 && n <= 1, { message: () => "expected a number in (0, 1]" }))
  )
}
const validate = validateConfig(Schema.Struct(WindowOptions), "RouterState.memory")

/** A deployment's latency averages and sketches, as `sample` feeds them. @internal */
export interface LatencySamples {
  latencyMs: number | undefined
  firstTokenMs: number | undefined
  perTokenMs: number | undefined
  readonly calls: LatencySketch
  readonly streams: LatencySketch
}

const ewma = (average: number | undefined, sample: number, alpha: number) =>
  average === undefined ? sample : average + alpha * (sample - average)

/**
 * Feeds a call's latency to the deployment's averages and sketches: time to first content for
 * streams, the whole call otherwise; a failure counts as at least twice the average, so a
 * deployment that fails fast does not look fast; the generation time per output token when the
 * usage says how many.
 */
export const sample = (slot: LatencySamples, now: number, outcome: Outcome, alpha: number): void => {
  const stream = outcome.kind === "stream"
  let ms = stream ? outcome.firstTokenMs ?? outcome.latencyMs : outcome.latencyMs
  const average = stream ? slot.firstTokenMs : slot.latencyMs
  if (outcome.result === "failure" && average !== undefined) ms = Math.max(ms, 2 * average)
  if (stream) {
    slot.firstTokenMs = ewma(slot.firstTokenMs, ms, alpha)
    slot.streams.add(now, ms)
  } else {
    slot.latencyMs = ewma(slot.latencyMs, ms, alpha)
    slot.calls.add(now, ms)
  }
  const generated = outcome.outputTokens
  if (outcome.result === "success" && generated !== undefined && generated > 0) {
    const generationMs = outcome.latencyMs - (stream ? outcome.firstTokenMs ?? 0 : 0)
    slot.perTokenMs = ewma(slot.perTokenMs, Math.max(0, generationMs) / generated, alpha)
  }
}


export const makeMemory = (input: MemoryOptions = {}): Effect.Effect<Service, InvalidConfig> =>
  Effect.map(validate(input), (options) => {
    const windowMs = Duration.toMillis(options.window ?? Duration.minutes(1))
    const alpha = options.latencyAlpha ?? 0.2
    const bucketMs = windowMs / BUCKETS
    // Keyed by deployment id, so one store can serve several routers over the same deployments.
    const slots = new Map<string, Slot>()
    const spend = new Map<string, number>()
    const policyState = new Map<string, unknown>()
    const budgets = new Map<string, BudgetState>()
    let nextLease = 0
    /** A budget's state in the period `now` is in (a new period starts from nothing). */
    const budgetAt = (charge: BudgetCharge, now: number): BudgetState => {
      const [start] = periodOf(charge.period, now)
      const key = `${charge.key}/${charge.period}`
      let budget = budgets.get(key)
      if (budget === undefined) {
        budget = { periodStart: start, spent: 0, held: 0 }
        budgets.set(key, budget)
      } else if (budget.periodStart !== start) {
        budget.periodStart = start
        budget.spent = 0
        budget.held = 0
      }
      return budget
    }
    /** The first of `charges` its budget has no room for. */
    const refusingCharge = (charges: ReadonlyArray<BudgetCharge>, now: number): BudgetCharge | undefined => {
      for (const charge of charges) {
        const budget = budgetAt(charge, now)
        if (budget.spent + budget.held + charge.amount > charge.limit) return charge
      }
      return undefined
    }
    const slotOf = (deployment: Deployment): Slot => {
      let slot = slots.get(deployment.id)
      if (slot === undefined) {
        slot = new Slot(bucketMs, windowMs)
        if (deployment.rpm !== undefined) slot.rpm = new MinuteWindow()
        if (deployment.tpm !== undefined) slot.tpm = new MinuteWindow()
        slots.set(deployment.id, slot)
      }
      return slot
    }
    /** The slot, its expired leases swept, its view read at `now`. */
    const liveSlot = (deployment: Deployment, now: number): Slot => live(slotOf(deployment), now)
    const live = (slot: Slot, now: number): Slot => {
      slot.sweep(now)
      slot.now = now
      return slot
    }
    // A router's pools are stable arrays: their slots are found once, not by id at every
    // reservation (at 1,000 deployments the lookups were most of a reservation's time), and so
    // are their candidates, in pool order: `all` (frozen) is what a reservation that admits
    // every deployment hands the selector, the same array each time (a selector may keep what
    // it derives from it: `weightedPick` does for large ones). A candidate's deployment and
    // stats (the slot's live view) never change, whatever the slot's state.
    const pools = new WeakMap<ReadonlyArray<Deployment>, Pool>()
    const poolOf = (pool: ReadonlyArray<Deployment>): Pool => {
      let found = pools.get(pool)
      if (found === undefined) {
        const slots = pool.map(slotOf)
        // A pinned request's pool is a new array at each reservation: kept nowhere, no `all`.
        const rated = pool.some((d) => d.rpm !== undefined || d.tpm !== undefined)
        if (pool.length <= 1) return { slots, all: undefined, limits: undefined, rated }
        const all = Object.freeze(slots.map((slot, i): Candidate => Object.freeze({ deployment: pool[i], stats: slot })))
        const limits = pool.some((d) => d.maxConcurrent !== undefined)
          ? Float64Array.from(pool, (d) => d.maxConcurrent ?? Infinity)
          : undefined
        found = { slots, all, limits, rated }
        pools.set(pool, found)
      }
      return found
    }
    const copyOf = (view: DeploymentStats): DeploymentStats => ({
      inFlight: view.inFlight,
      inFlightAgeMs: view.inFlightAgeMs,
      latencyMs: view.latencyMs,
      firstTokenMs: view.firstTokenMs,
      perTokenMs: view.perTokenMs,
      latency: view.latency,
      requests: view.requests,
      tokens: view.tokens,
      completed: view.completed,
      failures: view.failures,
      consecutiveFailures: view.consecutiveFailures,
      cooldown: view.cooldown,
      upstream: view.upstream
    })
    const now = Clock.currentTimeMillis

    /**
     * The take at the end of a reservation, re-checked: a selector that suspended may have let
     * another request take the last slot or the probe meanwhile.
     */
    const take = (reservation: Reservation, candidate: Candidate, at: number): Lease | "full" | "cooling" | "rpm" | "tpm" | "budget" => {
      const d = candidate.deployment
      const slot = liveSlot(d, at)
      if (d.maxConcurrent !== undefined && slot.inFlight >= d.maxConcurrent) return "full"
      const tokens = reservation.tokens ?? 0
      const over = overRate(slot, d, tokens, at)
      if (over !== undefined) return over
      const charges = reservation.charges?.(d)
      if (charges !== undefined && charges.length > 0 && refusingCharge(charges, at) !== undefined) return "budget"
      const circuit = reservation.claim(slot.cooldown, at)
      if (circuit === undefined) return "cooling"
      slot.cooldown = circuit
      const id = ++nextLease
      let holds: Array<BudgetHold> | undefined
      if (charges !== undefined && charges.length > 0) {
        holds = []
        for (const charge of charges) {
          const budget = budgetAt(charge, at)
          budget.held += charge.amount
          holds.push({ budget, periodStart: budget.periodStart, amount: charge.amount })
        }
      }
      slot.leases.set(id, { at, expiresAt: at + reservation.ttlMs, tokens, holds })
      slot.rpm?.add(at, 1)
      slot.tpm?.add(at, tokens)
      if (at + reservation.ttlMs < slot.nextExpiry) slot.nextExpiry = at + reservation.ttlMs
      slot.inFlight++
      slot.startedSum += at
      slot.requestCount.add(at, 1)
      return { id, deployment: d, at, stats: slot }
    }

    /**
     * Admission, in pool order. With the {@link takesAvailable} promise (and a kept pool), the
     * store checks each deployment's circuit and limit itself (`passes`) and admits those that
     * pass as `admit` would, without calling it; only the others go through `admit`. While
     * every deployment passes, which is the steady state, the candidates are the pool's `all`
     * (nothing built per reservation); from the first that does not, they are collected anew.
     */
    const reserve: Service["reserve"] = (reservation: FastReservation) =>
      Effect.flatMap(now, (at) => {
        const pool = reservation.deployments
        const { all, limits, rated, slots: poolSlots } = poolOf(pool)
        const charges = reservation.charges
        // budgets are checked per deployment: no fast admission with them
        const policy = all !== undefined && charges === undefined ? reservation[takesAvailable] : undefined
        const tokens = reservation.tokens ?? 0
        let i = 0
        if (policy !== undefined) {
          for (; i < pool.length; i++) {
            const slot = poolSlots[i]
            if (at >= slot.nextExpiry) slot.sweep(at)
            slot.now = at
            if (!passes(slot, limits, i, policy, at) || (rated && overRate(slot, pool[i], tokens, at) !== undefined)) break
          }
          if (i === pool.length) return pickFrom(reservation, all!, at, undefined)
        }
        const candidates = new Array<Candidate>(pool.length)
        for (let j = 0; j < i; j++) candidates[j] = all![j]
        let admitted = i
        let fallbacks: Array<Candidate> | undefined
        const refusals = new Refusals()
        for (; i < pool.length; i++) {
          const d = pool[i]
          const slot = live(poolSlots[i], at)
          const over = rated ? overRate(slot, d, tokens, at) : undefined
          if (policy !== undefined && over === undefined && passes(slot, limits, i, policy, at)) {
            candidates[admitted++] = all![i]
            continue
          }
          const admission = reservation.admit(d, slot, at)
          if ((admission === "take" || admission === "fallback") && over !== undefined) {
            refusals.overRate(over, rateRoomAt(slot, d, tokens, at))
            continue
          }
          if ((admission === "take" || admission === "fallback") && charges !== undefined) {
            const owed = charges(d)
            const refusing = owed === undefined || owed.length === 0 ? undefined : refusingCharge(owed, at)
            if (refusing !== undefined) {
              refusals.overBudget(refusing.key, periodOf(refusing.period, at)[1])
              continue
            }
          }
          if (admission === "take" || admission === "fallback") {
            // a kept pool's own; else made once per slot (and again only for another router's
            // object of the same id)
            let candidate = all !== undefined ? all[i] : slot.candidate
            if (candidate === undefined || candidate.deployment !== d) candidate = slot.candidate = { deployment: d, stats: slot }
            if (admission === "take") candidates[admitted++] = candidate
            else (fallbacks ??= []).push(candidate)
            continue
          }
          refusals.refuse(admission)
        }
        candidates.length = admitted
        return pickFrom(reservation, admitted > 0 ? candidates : fallbacks ?? candidates, at, refusals)
      })

    /**
     * The selector's pick among `options`, taken; the next pick among the others if it cannot be
     * (`refusals`: what admission refused, `undefined` for none).
     */
    const pickFrom = (
      reservation: Reservation,
      options: ReadonlyArray<Candidate>,
      at: number,
      refusals: Refusals | undefined
    ): Effect.Effect<Lease, Unreserved | NoFit> => {
      if (options.length === 0) return Effect.fail((refusals ?? new Refusals()).unreserved())
      return Effect.flatMap(reservation.pick(options), (picked) => {
        const taken = take(reservation, picked, at)
        if (typeof taken !== "string") return Effect.succeed(taken)
        const counts = refusals ?? new Refusals()
        if (taken === "full") counts.full++
        else if (taken === "cooling") counts.cooling++
        else if (taken === "budget") {
          const refusing = refusingCharge(reservation.charges!(picked.deployment)!, at)!
          counts.overBudget(refusing.key, periodOf(refusing.period, at)[1])
        } else {
          const tokens = reservation.tokens ?? 0
          counts.overRate(taken, rateRoomAt(liveSlot(picked.deployment, at), picked.deployment, tokens, at))
        }
        return pickFrom(reservation, options.filter((c) => c !== picked), at, counts)
      })
    }

    const service: Service = {
      now,
      snapshot: (deployments) =>
        Effect.map(now, (at) => {
          const out = new Array<DeploymentStats>(deployments.length)
          for (let i = 0; i < deployments.length; i++) out[i] = copyOf(liveSlot(deployments[i], at))
          return out
        }),
      reserve,
      renew: (lease, ttlMs) =>
        Effect.map(now, (at) => {
          const slot = slotOf(lease.deployment)
          const held = slot.leases.get(lease.id)
          if (held === undefined) return
          held.expiresAt = at + ttlMs
          if (held.expiresAt < slot.nextExpiry) slot.nextExpiry = held.expiresAt
        }),
      complete: (lease, outcome) =>
        Effect.map(now, (at) => {
          const slot = slotOf(lease.deployment)
          const held = slot.leases.get(lease.id)
          slot.drop(lease.id, lease.at)
          if (outcome === undefined) return
          if (outcome.spend !== undefined && outcome.cost !== undefined && outcome.cost > 0) {
            for (const key of outcome.spend) spend.set(key, (spend.get(key) ?? 0) + outcome.cost)
          }
          // the budgets it held are charged what it cost, in the period it was taken in
          if (held?.holds !== undefined && outcome.cost !== undefined && outcome.cost > 0) {
            for (const hold of held.holds) if (hold.budget.periodStart === hold.periodStart) hold.budget.spent += outcome.cost
          }
          // the estimate held against tpm gives way to the actual count (a failure keeps it)
          if (held !== undefined && slot.tpm !== undefined && outcome.result === "success" && outcome.tokens > 0) {
            slot.tpm.adjust(lease.at, outcome.tokens - held.tokens)
          }
          if (outcome.tokens > 0) slot.tokenCount.add(at, outcome.tokens)
          if (outcome.result === "ignored") return
          slot.completedCount.add(at, 1)
          if (outcome.result === "success") {
            slot.consecutiveFailures = 0
          } else {
            slot.failureCount.add(at, 1)
            slot.consecutiveFailures++
          }
          sample(slot, at, outcome, alpha)
        }),
      recordRateLimit: (deployment, info) =>
        Effect.sync(() => {
          slotOf(deployment).upstream = info
        }),
      modifyCooldown: (deployments, index, f) =>
        Effect.map(now, (at) => {
          const stats = new Array<DeploymentStats>(deployments.length)
          for (let i = 0; i < deployments.length; i++) stats[i] = liveSlot(deployments[i], at)
          const [result, change] = f(stats, at)
          if (change !== undefined) {
            const slot = slotOf(deployments[index])
            slot.cooldown = change.record
            if (change.resetOutcomes) {
              slot.completedCount.reset()
              slot.failureCount.reset()
              slot.consecutiveFailures = 0
            }
          }
          return result
        }),
      modify: <S, A>(key: string, initial: S, f: (state: S, now: number) => readonly [A, S]) =>
        Effect.map(now, (at) => {
          const [result, next] = f((policyState.has(key) ? policyState.get(key) : initial) as S, at)
          policyState.set(key, next)
          return result
        }),
      addSpend: (keys, amount) =>
        Effect.sync(() => {
          for (const key of keys) spend.set(key, (spend.get(key) ?? 0) + amount)
        }),
      spend: (key) => Effect.sync(() => spend.get(key) ?? 0)
    }
    infallible.add(service)
    return service
  })
