/**
 * The default circuit breaker behind `Cooldown.make` and `Cooldown.disabled`: its options and its
 * outlier detection over the circuits in `RouterState`.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { Failure, Options, Service } from "../Cooldown.js"
import type { Deployment } from "../Deployment.js"
import { InvalidConfig } from "../Errors.js"
import { type CircuitChange, type CooldownRecord, type DeploymentStats, RouterState } from "../RouterState.js"
import { PositiveDuration, PositiveInt, validateConfig } from "./schemas.js"
import { storeOf, viewOf } from "./state.js"

const Percent = Schema.Number.pipe(
  Schema.filter((n) => n > 0 && n <= 100, { message: () => "expected a percentage in (0, 100]" })
)

const OptionsSchema = Schema.Struct({
  consecutiveFailures: Schema.optional(PositiveInt),
  failureRatio: Schema.optional(
    Schema.Number.pipe(Schema.filter((n) => n > 0 && n <= 1, { message: () => "expected a number in (0, 1]" }))
  ),
  minRequests: Schema.optional(PositiveInt),
  allowedFails: Schema.optional(PositiveInt),
  maxEjectionPercent: Schema.optional(Percent),
  duration: Schema.optional(PositiveDuration),
  maxDuration: Schema.optional(PositiveDuration),
  longDuration: Schema.optional(PositiveDuration),
  maxLongDuration: Schema.optional(PositiveDuration)
})
const validate = validateConfig(OptionsSchema, "Cooldown.layer")

const closed: CooldownRecord = { status: "closed", until: 0, ejections: 0, reason: "failures" }

/** Whether a circuit keeps its deployment out of rotation at `now`. */
const isOut = (record: CooldownRecord, now: number) =>
  record.status === "probing" || (record.status === "open" && record.until > now)

/** A cooldown's first duration and its cap when it doubles. */
interface Ladder {
  readonly baseMs: number
  readonly maxMs: number
}

const durationAt = (ladder: Ladder, level: number) => Math.min(ladder.baseMs * 2 ** Math.max(0, level), ladder.maxMs)

export const make = (input: Options = {}): Effect.Effect<Service, InvalidConfig, RouterState> =>
  Effect.gen(function*() {
    const options = yield* validate(input)
    const shared = yield* RouterState
    // Written through the router's view of the store, so a failing store loses nothing.
    const state = (yield* viewOf(shared)).store
    const consecutiveFailures = options.consecutiveFailures ?? 5
    const failureRatio = options.failureRatio ?? 0.5
    const minRequests = options.minRequests ?? 10
    const allowedFails = options.allowedFails ?? 3
    const maxEjectionShare = (options.maxEjectionPercent ?? 50) / 100
    const transient: Ladder = {
      baseMs: Duration.toMillis(options.duration ?? Duration.seconds(5)),
      maxMs: Duration.toMillis(options.maxDuration ?? Duration.minutes(5))
    }
    const long: Ladder = {
      baseMs: Duration.toMillis(options.longDuration ?? Duration.minutes(10)),
      maxMs: Duration.toMillis(options.maxLongDuration ?? Duration.hours(1))
    }
    const issues: Array<{ path: string; message: string }> = []
    if (transient.maxMs < transient.baseMs) {
      issues.push({ path: "Cooldown.layer.maxDuration", message: "expected a duration no shorter than duration" })
    }
    if (long.maxMs < long.baseMs) {
      issues.push({ path: "Cooldown.layer.maxLongDuration", message: "expected a duration no shorter than longDuration" })
    }
    if (issues.length > 0) return yield* Effect.fail(InvalidConfig.fromIssues(issues))

    const change = (record: CooldownRecord, resetOutcomes: boolean): CircuitChange => ({ record, resetOutcomes })

    /**
     * Takes a deployment out for `ladder` at its next level. A failure while it is already out
     * (a call that started before) only extends the deadline to this failure's own cooldown,
     * without doubling; a failed probe doubles it.
     */
    const eject = (
      record: CooldownRecord,
      now: number,
      ladder: Ladder,
      reason: CooldownRecord["reason"],
      retryAfterMs: number | undefined
    ): CircuitChange | undefined => {
      if (record.status === "open") {
        const own = now + Math.max(retryAfterMs ?? 0, durationAt(ladder, record.ejections - 1))
        if (own <= record.until && (reason !== "unusable" || record.reason === "unusable")) return undefined
        // An unusable deployment needs a probe to come back, whatever it was out for before.
        return change({ ...record, until: Math.max(record.until, own), reason: reason === "unusable" ? reason : record.reason }, false)
      }
      const durationMs = Math.max(retryAfterMs ?? 0, durationAt(ladder, record.ejections))
      return change({ status: "open", until: now + durationMs, ejections: record.ejections + 1, reason }, true)
    }

    /** Whether one more deployment of the group may go out for transient failures. */
    const capAllows = (stats: ReadonlyArray<DeploymentStats>, index: number, now: number) => {
      let outForFailures = 0
      let available = 0
      for (let i = 0; i < stats.length; i++) {
        if (i === index) continue
        const record = stats[i].cooldown
        if (isOut(record, now)) {
          if (record.reason === "failures") outForFailures++
        } else {
          available++
        }
      }
      return available > 0 && outForFailures < Math.max(1, Math.floor(stats.length * maxEjectionShare))
    }

    const tripped = (stats: DeploymentStats) =>
      stats.consecutiveFailures >= consecutiveFailures ||
      (stats.completed >= minRequests ? stats.failures / stats.completed > failureRatio : stats.failures >= allowedFails)

    const onTransient = (deployment: Deployment, failure: Failure) => {
      const { group } = failure
      const index = group.indexOf(deployment)
      const retryAfterMs = "retryAfter" in failure.error && failure.error.retryAfter !== undefined
        ? Duration.toMillis(failure.error.retryAfter)
        : undefined
      return state.modifyCooldown(index < 0 ? [deployment] : group, Math.max(0, index), (stats, now) => {
        const self = stats[Math.max(0, index)]
        const record = self.cooldown
        // A failed probe (or a failure while one runs) sends it back out; it is counted already.
        if (record.status !== "closed") return [undefined, eject(record, now, transient, record.reason, retryAfterMs)]
        if (!tripped(self) || !capAllows(stats, Math.max(0, index), now)) return [undefined, undefined]
        return [undefined, eject(record, now, transient, "failures", retryAfterMs)]
      })
    }

    const onUnusable = (deployment: Deployment, ladder: Ladder) =>
      state.modifyCooldown([deployment], 0, ([self], now) => [
        undefined,
        eject(self.cooldown, now, ladder, "unusable", undefined)
      ])

    const onRetryAfter = (deployment: Deployment, afterMs: number) =>
      state.modifyCooldown([deployment], 0, ([self], now) => {
        const until = now + afterMs
        const record = self.cooldown
        if (record.status === "open" && record.until >= until) return [undefined, undefined]
        // The upstream said when: the deployment is out until then for every request. A circuit
        // already out for another reason keeps it (it still needs its probe).
        return [undefined, change({
          status: "open",
          until: record.status === "open" ? Math.max(record.until, until) : until,
          ejections: record.ejections,
          reason: record.status === "closed" ? "retry_after" : record.reason
        }, false)]
      })

    // The deployment answered: a probe succeeded (or the request was at fault), so the circuit
    // closes, but only once its cooldown is over: a call that started before the cooldown and
    // answers during it does not cut the cooldown (or the upstream's retry-after) short.
    const onAlive = (deployment: Deployment) =>
      state.modifyCooldown([deployment], 0, ([self], now) => {
        const record = self.cooldown
        return record.status === "probing" || (record.status === "open" && record.until <= now)
          ? [undefined, change(closed, true)]
          : [undefined, undefined]
      })

    const service: Service = {
      isAvailable: (record, now) => record.status === "closed" || (record.status === "open" && record.until <= now),
      claim: (record, now) => {
        if (record.status === "closed") return record
        if (record.status !== "open" || record.until > now) return undefined
        // After a retry-after the upstream said it is back: no probe needed.
        return record.reason === "retry_after" ? { ...closed, ejections: record.ejections } : { ...record, status: "probing" }
      },
      onSuccess: onAlive,
      onFailure: (deployment, failure) => {
        switch (failure.classification.cooldown) {
          case "none":
            return onAlive(deployment)
          case "immediate":
            return onUnusable(deployment, transient)
          case "long":
            return onUnusable(deployment, long)
          case "count": {
            const error = failure.error
            // A rate limit that says when to come back is a fact about the deployment, not a failure.
            if (error._tag === "RateLimited" && error.retryAfter !== undefined) {
              return onRetryAfter(deployment, Duration.toMillis(error.retryAfter))
            }
            return onTransient(deployment, failure)
          }
        }
      },
      onInterrupt: (deployment) =>
        state.modifyCooldown([deployment], 0, ([self], now) =>
          self.cooldown.status === "probing"
            ? [undefined, change({ ...self.cooldown, status: "open", until: now }, false)]
            : [undefined, undefined]),
      onRetryAfter
    }
    storeOf.set(service, shared)
    return service
  })

export const disabled: Service = {
  isAvailable: () => true,
  claim: (record) => record,
  onSuccess: () => Effect.void,
  onFailure: () => Effect.void,
  onInterrupt: () => Effect.void,
  onRetryAfter: () => Effect.void
}
