/**
 * The in-memory `RouterState` store behind `RouterState.makeMemory`: per-deployment counters,
 * windows and circuits, and spend per key.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { Deployment } from "../Deployment.js"
import type { InvalidConfig } from "../Errors.js"
import type { RateLimitInfo } from "../Provider.js"
import type { CooldownRecord, DeploymentStats, LatencyQuantiles, MemoryOptions, Outcome, Service } from "../RouterState.js"
import { PositiveDuration, validateConfig } from "./schemas.js"
import { LatencySketch } from "./sketch.js"
import { BUCKETS, WindowCounter } from "./window.js"

const closed: CooldownRecord = { status: "closed", until: 0, ejections: 0, reason: "failures" }

/**
 * The store each policy built by this package keeps its state in (`Cooldown.make`,
 * `CostMeter.make`), so the router can refuse to run over a different one: the policies would
 * write where the router never reads.
 */
export const storeOf = new WeakMap<object, Service>()

class Slot {
  inFlight = 0
  /** Sum of the start times of the calls in flight (their mean age without a list of them). */
  startedSum = 0
  consecutiveFailures = 0
  latencyMs: number | undefined = undefined
  firstTokenMs: number | undefined = undefined
  perTokenMs: number | undefined = undefined
  readonly calls: LatencySketch
  readonly streams: LatencySketch
  readonly latency: { readonly calls: LatencyQuantiles; readonly streams: LatencyQuantiles }
  cooldown: CooldownRecord = closed
  upstream: RateLimitInfo | undefined = undefined
  readonly requests: WindowCounter
  readonly tokens: WindowCounter
  readonly completed: WindowCounter
  readonly failures: WindowCounter
  constructor(bucketMs: number, windowMs: number) {
    this.calls = new LatencySketch({ windowMs })
    this.streams = new LatencySketch({ windowMs })
    this.latency = { calls: this.calls, streams: this.streams }
    this.requests = new WindowCounter(bucketMs)
    this.tokens = new WindowCounter(bucketMs)
    this.completed = new WindowCounter(bucketMs)
    this.failures = new WindowCounter(bucketMs)
  }
}

const Options = Schema.Struct({
  window: Schema.optional(PositiveDuration),
  latencyAlpha: Schema.optional(
    Schema.Number.pipe(Schema.filter((n) => n > 0 && n <= 1, { message: () => "expected a number in (0, 1]" }))
  )
})
const validate = validateConfig(Options, "RouterState.memory")

const ewma = (average: number | undefined, sample: number, alpha: number) =>
  average === undefined ? sample : average + alpha * (sample - average)

/**
 * Feeds a call's latency to the deployment's averages and sketches: time to first content for
 * streams, the whole call otherwise; a failure counts as at least twice the average, so a
 * deployment that fails fast does not look fast; the generation time per output token when the
 * usage says how many.
 */
const sample = (slot: Slot, now: number, outcome: Outcome, alpha: number): void => {
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
    const slotOf = (deployment: Deployment): Slot => {
      let slot = slots.get(deployment.id)
      if (slot === undefined) {
        slot = new Slot(bucketMs, windowMs)
        slots.set(deployment.id, slot)
      }
      return slot
    }
    const statsOf = (slot: Slot, now: number): DeploymentStats => ({
      inFlight: slot.inFlight,
      inFlightAgeMs: slot.inFlight === 0 ? 0 : Math.max(0, now - slot.startedSum / slot.inFlight),
      latencyMs: slot.latencyMs,
      firstTokenMs: slot.firstTokenMs,
      perTokenMs: slot.perTokenMs,
      latency: slot.latency,
      requests: slot.requests.sum(now),
      tokens: slot.tokens.sum(now),
      completed: slot.completed.sum(now),
      failures: slot.failures.sum(now),
      consecutiveFailures: slot.consecutiveFailures,
      cooldown: slot.cooldown,
      upstream: slot.upstream
    })

    const service: Service = {
      snapshot: (deployments, now) =>
        Effect.sync(() => {
          const out = new Array<DeploymentStats>(deployments.length)
          for (let i = 0; i < deployments.length; i++) out[i] = statsOf(slotOf(deployments[i]), now)
          return out
        }),
      acquire: (deployment, now) =>
        Effect.sync(() => {
          const slot = slotOf(deployment)
          if (deployment.maxConcurrent !== undefined && slot.inFlight >= deployment.maxConcurrent) return false
          slot.inFlight++
          slot.startedSum += now
          slot.requests.add(now, 1)
          return true
        }),
      release: (deployment, startedAt) =>
        Effect.sync(() => {
          const slot = slotOf(deployment)
          if (slot.inFlight > 0) {
            slot.inFlight--
            slot.startedSum = slot.inFlight === 0 ? 0 : slot.startedSum - startedAt
          }
        }),
      recordOutcome: (deployment, now, outcome: Outcome) =>
        Effect.sync(() => {
          const slot = slotOf(deployment)
          if (outcome.tokens > 0) slot.tokens.add(now, outcome.tokens)
          if (outcome.result === "ignored") return
          slot.completed.add(now, 1)
          if (outcome.result === "success") {
            slot.consecutiveFailures = 0
          } else {
            slot.failures.add(now, 1)
            slot.consecutiveFailures++
          }
          sample(slot, now, outcome, alpha)
        }),
      recordRateLimit: (deployment, info) =>
        Effect.sync(() => {
          slotOf(deployment).upstream = info
        }),
      modifyCooldown: (deployments, index, now, f) =>
        Effect.sync(() => {
          const stats = new Array<DeploymentStats>(deployments.length)
          for (let i = 0; i < deployments.length; i++) stats[i] = statsOf(slotOf(deployments[i]), now)
          const [result, change] = f(stats)
          if (change !== undefined) {
            const slot = slotOf(deployments[index])
            slot.cooldown = change.record
            if (change.resetOutcomes) {
              slot.completed.reset()
              slot.failures.reset()
              slot.consecutiveFailures = 0
            }
          }
          return result
        }),
      addSpend: (keys, amount) =>
        Effect.sync(() => {
          for (const key of keys) spend.set(key, (spend.get(key) ?? 0) + amount)
        }),
      spend: (key) => Effect.sync(() => spend.get(key) ?? 0)
    }
    return service
  })
