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
import type { CooldownRecord, DeploymentStats, MemoryOptions, Outcome, Service } from "../RouterState.js"
import { PositiveDuration, validateConfig } from "./schemas.js"
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
  consecutiveFailures = 0
  latencyMs: number | undefined = undefined
  cooldown: CooldownRecord = closed
  upstream: RateLimitInfo | undefined = undefined
  readonly requests: WindowCounter
  readonly tokens: WindowCounter
  readonly completed: WindowCounter
  readonly failures: WindowCounter
  constructor(bucketMs: number) {
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
        slot = new Slot(bucketMs)
        slots.set(deployment.id, slot)
      }
      return slot
    }
    const statsOf = (slot: Slot, now: number): DeploymentStats => ({
      inFlight: slot.inFlight,
      latencyMs: slot.latencyMs,
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
          slot.requests.add(now, 1)
          return true
        }),
      release: (deployment) =>
        Effect.sync(() => {
          const slot = slotOf(deployment)
          if (slot.inFlight > 0) slot.inFlight--
        }),
      recordOutcome: (deployment, now, outcome: Outcome) =>
        Effect.sync(() => {
          const slot = slotOf(deployment)
          if (outcome.tokens > 0) slot.tokens.add(now, outcome.tokens)
          if (outcome.latencyMs !== undefined) {
            slot.latencyMs = slot.latencyMs === undefined
              ? outcome.latencyMs
              : slot.latencyMs + alpha * (outcome.latencyMs - slot.latencyMs)
          }
          if (outcome.result === "ignored") return
          slot.completed.add(now, 1)
          if (outcome.result === "success") {
            slot.consecutiveFailures = 0
          } else {
            slot.failures.add(now, 1)
            slot.consecutiveFailures++
          }
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
