/**
 * The retry schedules behind `RetrySchedule.make` and `RetrySchedule.byError`, and the validation
 * of their options.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as ScheduleDecision from "effect/ScheduleDecision"
import * as Schema from "effect/Schema"
import { classification, type ErrorTag, type InvalidConfig } from "../Errors.js"
import type { AttemptFailure, Options, Policy, Service } from "../RetrySchedule.js"
import { DurationInput, PositiveDuration, validateConfig } from "./schemas.js"

const errorTags = Object.keys(classification) as Array<ErrorTag>

const OptionsSchema = Schema.Struct({
  retries: Schema.optional(
    Schema.Number.pipe(Schema.int(), Schema.nonNegative({ message: () => "expected a non-negative integer" }))
  ),
  base: Schema.optional(DurationInput),
  factor: Schema.optional(Schema.Number.pipe(Schema.greaterThanOrEqualTo(1, { message: () => "expected a number >= 1" }))),
  maxDelay: Schema.optional(PositiveDuration),
  maxWait: Schema.optional(DurationInput),
  retryOn: Schema.optional(Schema.Array(Schema.Literal(...errorTags)))
})
const validate = validateConfig(OptionsSchema, "RetrySchedule.layer")

/** Runs each error kind's schedule with its own state; kinds without one stop the retries. */
export const byError = (
  policies: { readonly [K in ErrorTag]?: Schedule.Schedule<unknown, any> },
  maxRetries?: number
): Schedule.Schedule<unknown, AttemptFailure> => {
  const initial: Record<string, unknown> = {}
  for (const tag of Object.keys(policies)) initial[tag] = policies[tag as ErrorTag]!.initial
  const dispatch = Schedule.makeWithState<Record<string, unknown>, AttemptFailure, unknown>(
    initial,
    (now, failure, state) => {
      const tag = failure.error._tag
      const policy = policies[tag]
      if (policy === undefined) return Effect.succeed([state, undefined, ScheduleDecision.done] as const)
      return Effect.map(
        policy.step(now, failure, state[tag]),
        ([next, out, decision]) => [{ ...state, [tag]: next }, out, decision] as const
      )
    }
  )
  return maxRetries === undefined ? dispatch : Schedule.intersect(dispatch, Schedule.recurs(maxRetries))
}

export const make = (input: Options = {}): Effect.Effect<Service, InvalidConfig> =>
  Effect.map(validate(input), (options) => {
    const maxDelay = options.maxDelay ?? Duration.seconds(8)
    // As the official OpenAI and Anthropic clients: 0.5 s doubling, jittered, capped at 8 s.
    const backoff = Schedule.exponential(options.base ?? Duration.millis(500), options.factor ?? 2).pipe(
      Schedule.jittered,
      Schedule.modifyDelay((_, delay) => Duration.min(delay, maxDelay))
    )
    const retryOn: ReadonlySet<string> | undefined = options.retryOn === undefined ? undefined : new Set(options.retryOn)
    // One backoff sequence for the whole group: kinds share the retry count. Which kinds are
    // retried at all is the router's classification; `retryOn` narrows it further.
    const withRetries = (retries: number): Schedule.Schedule<unknown, AttemptFailure> => {
      const counted = Schedule.intersect(backoff, Schedule.recurs(retries)) as Schedule.Schedule<unknown, AttemptFailure>
      return retryOn === undefined ? counted : Schedule.whileInput(counted, (failure: AttemptFailure) => retryOn.has(failure.error._tag))
    }
    return { schedule: withRetries(options.retries ?? 2), maxWait: options.maxWait, withRetries }
  })

export const byGroup = (
  groups: Readonly<Record<string, Effect.Effect<Policy, InvalidConfig>>>,
  otherwise?: Effect.Effect<Policy, InvalidConfig>
): Effect.Effect<Service, InvalidConfig> =>
  Effect.gen(function*() {
    const fallback = yield* (otherwise ?? make())
    const policies: Record<string, Policy> = {}
    for (const [group, policy] of Object.entries(groups)) policies[group] = yield* policy
    return { ...fallback, groups: policies }
  })
