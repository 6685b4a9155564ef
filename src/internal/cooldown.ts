import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { Options, Service } from "../Cooldown.js"
import type { Deployment } from "../Deployment.js"
import { classify, InvalidConfig, type RouterError } from "../Errors.js"
import { type CooldownRecord, RouterState } from "../RouterState.js"
import { PositiveDuration, PositiveInt, validateConfig } from "./schemas.js"

const OptionsSchema = Schema.Struct({
  allowedFails: Schema.optional(PositiveInt),
  failureRatio: Schema.optional(
    Schema.Number.pipe(Schema.filter((n) => n > 0 && n <= 1, { message: () => "expected a number in (0, 1]" }))
  ),
  minRequests: Schema.optional(PositiveInt),
  duration: Schema.optional(PositiveDuration),
  maxDuration: Schema.optional(PositiveDuration)
})
const validate = validateConfig(OptionsSchema, "Cooldown.layer")

const closed: CooldownRecord = { status: "closed", until: 0, ejections: 0 }

export const make = (input: Options = {}): Effect.Effect<Service, InvalidConfig, RouterState> =>
  Effect.gen(function*() {
    const options = yield* validate(input)
    const state = yield* RouterState
    const allowedFails = options.allowedFails ?? 3
    const failureRatio = options.failureRatio ?? 0.5
    const minRequests = options.minRequests ?? 5
    const baseMs = Duration.toMillis(options.duration ?? Duration.seconds(5))
    const maxMs = Duration.toMillis(options.maxDuration ?? Duration.minutes(5))
    if (maxMs < baseMs) {
      return yield* Effect.fail(InvalidConfig.fromIssues([
        { path: "Cooldown.layer.maxDuration", message: "expected a duration no shorter than duration" }
      ]))
    }

    const eject = (record: CooldownRecord, now: number, retryAfter: Duration.Duration | undefined): CooldownRecord => {
      if (record.status === "open") {
        // Already cooling (failures of calls that started before it did): no escalation without
        // a probe, but a retry-after that reaches further extends the deadline. Never shortens it.
        const asked = retryAfter === undefined ? 0 : now + Duration.toMillis(retryAfter)
        return asked > record.until ? { ...record, until: asked } : record
      }
      const durationMs = retryAfter !== undefined
        ? Duration.toMillis(retryAfter)
        : Math.min(baseMs * 2 ** record.ejections, maxMs)
      return { status: "open", until: now + durationMs, ejections: record.ejections + 1 }
    }

    // Closes the circuit only once its cooldown is over: a call that started before the cooldown
    // and answers during it does not cut the cooldown (or the upstream's retry-after) short.
    const close = (now: number) => (record: CooldownRecord): readonly [boolean, CooldownRecord] =>
      record.status === "probing" || (record.status === "open" && record.until <= now) ? [true, closed] : [false, record]

    const onFailure = (deployment: Deployment, error: RouterError, now: number) => {
      const kind = classify(error).cooldown
      const retryAfter = "retryAfter" in error ? error.retryAfter : undefined
      if (kind === "none") return onAlive(deployment, now)
      if (kind === "immediate") {
        return Effect.zipRight(
          state.modifyCooldown(deployment, (r) => [undefined, eject(r, now, retryAfter)]),
          state.resetOutcomes(deployment)
        )
      }
      return Effect.flatMap(state.snapshot([deployment], now), ([stats]) => {
        const tripped = stats.cooldown.status === "probing" ||
          stats.failures >= allowedFails ||
          (stats.completed >= minRequests && stats.failures / stats.completed > failureRatio)
        if (!tripped) return Effect.void
        return Effect.zipRight(
          state.modifyCooldown(deployment, (r) => [undefined, eject(r, now, retryAfter)]),
          state.resetOutcomes(deployment)
        )
      })
    }

    // The deployment answered: a probe succeeded (or the request was at fault), so the circuit closes.
    const onAlive = (deployment: Deployment, now: number) =>
      Effect.flatMap(state.modifyCooldown(deployment, close(now)), (wasOpen) =>
        wasOpen ? state.resetOutcomes(deployment) : Effect.void)

    const service: Service = {
      isAvailable: (record, now) => record.status === "closed" || (record.status === "open" && record.until <= now),
      claim: (deployment, now) =>
        state.modifyCooldown(deployment, (r): readonly [boolean, CooldownRecord] => {
          if (r.status === "closed") return [true, r]
          if (r.status === "open" && r.until <= now) return [true, { ...r, status: "probing" }]
          return [false, r]
        }),
      onSuccess: onAlive,
      onFailure,
      onInterrupt: (deployment, now) =>
        state.modifyCooldown(deployment, (r) => [undefined, r.status === "probing" ? { ...r, status: "open", until: now } : r])
    }
    return service
  })

export const disabled: Service = {
  isAvailable: () => true,
  claim: () => Effect.succeed(true),
  onSuccess: () => Effect.void,
  onFailure: () => Effect.void,
  onInterrupt: () => Effect.void
}
