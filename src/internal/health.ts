/**
 * Health checks (`Router.Config.healthCheck`): one background fiber per deployment whose
 * provider has a `healthCheck`, probing it every interval, forked in the router's scope (closing
 * the router's layer interrupts them, an in-flight probe included).
 *
 * A probe is recorded as a call would be (`Attempt.recordOutcome`): its time is a latency
 * sample, a failure counts toward the breaker as a call's would (same classification), a
 * success closes a circuit that was open. To be recorded at all it takes a lease through the
 * store's atomic reserve, on its deployment alone, like a call:
 *
 * - only when the breaker lets a call through (`Cooldown.isAvailable`): a deployment cooling
 *   down is left to its cooldown (a probe does not cut it short, as no call does); once the
 *   cooldown is over the probe takes the half-open slot (`Cooldown.claim`), so the deployment
 *   comes back on the probe's success rather than on a live request's risk;
 * - only when the deployment has no call in flight: a busy deployment is known from its own
 *   traffic, and a probe would take one of its `maxConcurrent` slots from it;
 * - only within its limits: the store refuses the lease at `maxConcurrent` or `rpm` as it refuses
 *   a call's (a probe is a request to the upstream, and counts as one in the rpm window).
 *
 * A probe skipped for any of these is simply not run at that tick.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { Deployment } from "../Deployment.js"
import { type InvalidConfig, type ProviderError, Timeout } from "../Errors.js"
import type { Target } from "../Provider.js"
import type { Admission, DeploymentStats, Reservation } from "../RouterState.js"
import { recordOutcome } from "./attempt.js"
import type { Engine } from "./engine.js"
import { nowMs } from "./request.js"
import { PositiveDuration, validateConfig } from "./schemas.js"

const Options = Schema.Struct({
  interval: PositiveDuration,
  timeout: Schema.optional(PositiveDuration)
})
const validateOptions = validateConfig(Options, "healthCheck")

/** The longest default probe timeout. */
const maxDefaultTimeout = Duration.seconds(30)

/** @internal */
export interface Settings {
  readonly interval: Duration.Duration
  readonly timeout: Duration.Duration
}

/**
 * The validated `healthCheck` config, `undefined` when health checks are off. The timeout
 * defaults to the interval, at most 30 seconds.
 *
 * @internal
 */
export const settings = (input: unknown): Effect.Effect<Settings | undefined, InvalidConfig> =>
  input === undefined ? Effect.succeed(undefined) : Effect.map(validateOptions(input), (options) => ({
    interval: options.interval,
    timeout: options.timeout ?? Duration.min(options.interval, maxDefaultTimeout)
  }))

const busy: Admission = { refused: "full" }

/** How long after its timeout the router cuts a probe whose provider enforces the timeout itself. */
const backstopGrace = Duration.seconds(1)

/**
 * When probes run: at once, then at a fixed rate from there (a probe that overruns a tick is
 * followed at once by the next, never by a pile of them). `Schedule.fixed` alone would set its
 * rate from the end of the first probe.
 */
const ticks = (interval: Duration.Duration) => Schedule.union(Schedule.once, Schedule.fixed(interval))

/**
 * Starts the probes of every deployment whose provider has a `healthCheck`, in the current
 * scope.
 *
 * @internal
 */
export const start = (engine: Engine, settings: Settings): Effect.Effect<void, never, Scope.Scope> =>
  Effect.forEach(
    engine.deployments,
    (d) => {
      const check = d.provider.healthCheck
      if (check === undefined) return Effect.void
      return Effect.forkScoped(Effect.schedule(probe(engine, settings, d, check), ticks(settings.interval)))
    },
    { discard: true }
  )

/**
 * One probe of `d`: a lease when the deployment can take one (see the module docs), the
 * provider's health check bounded by the timeout, and its outcome recorded. Never fails.
 */
const probe = (
  engine: Engine,
  settings: Settings,
  d: Deployment,
  check: (target: Target) => Effect.Effect<void, ProviderError>
): Effect.Effect<void> => {
  const cooldown = engine.policies.cooldown
  // the deployment's target (its key, base URL, rate-limit listener) with the probe's timeout
  const target: Target = { ...engine.targets[d.index], timeout: settings.timeout }
  const reservation: Reservation = {
    deployments: [d],
    admit: (_d, stats: DeploymentStats, now) => {
      if (!cooldown.isAvailable(stats.cooldown, now)) {
        return { refused: "cooling", until: stats.cooldown.status === "open" ? stats.cooldown.until : undefined }
      }
      return stats.inFlight > 0 ? busy : "take"
    },
    pick: (candidates) => Effect.succeed(candidates[0]),
    claim: cooldown.claim,
    ttlMs: Duration.toMillis(settings.timeout) + Duration.toMillis(backstopGrace) + engine.leaseMarginMs
  }
  // The router bounds the probe itself: at the timeout when the provider does not enforce
  // `target.timeout`, else a little later, as a backstop (the provider's own error comes first).
  const cutAfter = d.provider.enforcesTimeout === true ? Duration.sum(settings.timeout, backstopGrace) : settings.timeout
  const onTimeout = () =>
    new Timeout({
      provider: d.provider.name,
      deploymentId: d.id,
      message: `no health check answer from ${d.id} within ${Duration.format(cutAfter)}`
    })
  const timed = Effect.timeoutFail(Effect.suspend(() => check(target)), { duration: cutAfter, onTimeout })
  return Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Effect.either(engine.state.reserve(reservation)), (reserved) => {
      // cooling down, busy or at a limit: nothing to probe at this tick
      if (Either.isLeft(reserved)) return Effect.void
      const lease = reserved.right
      // read at once: the store's stats are a live view
      const closed = lease.stats.cooldown.status === "closed"
      return Effect.clockWith((clock) => {
        const startedMs = nowMs(clock)
        return Effect.flatMap(Effect.exit(restore(timed)), (exit) => {
          const latencyMs = nowMs(clock) - startedMs
          if (Exit.isSuccess(exit)) {
            return recordOutcome(engine, cooldown, lease, closed, "success", "call", latencyMs, undefined)
          }
          const failure = Cause.failureOption(exit.cause)
          if (Option.isSome(failure)) {
            const error = failure.value
            return Effect.zipRight(
              recordOutcome(engine, cooldown, lease, closed, error, "call", latencyMs, undefined),
              // provider errors never carry the key (the providers scrub it from upstream text)
              Effect.logDebug(`health check of ${d.id} failed: ${error._tag}: ${error.message}`)
            )
          }
          // interrupted (the router is closing), or a defect in the provider's health check:
          // it judges nothing, as an interrupted call
          const recorded = recordOutcome(engine, cooldown, lease, closed, "cancelled", "call", latencyMs, undefined)
          return Cause.isInterruptedOnly(exit.cause)
            ? recorded
            : Effect.zipRight(recorded, Effect.logWarning(`health check of ${d.id} died (a defect in ${d.provider.name}'s healthCheck)`))
        })
      })
    })
  )
}
