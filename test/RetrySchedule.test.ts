import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as TestClock from "effect/TestClock"
import { Cooldown, Errors, RetrySchedule, Router, Selector } from "../src/index.js"
import { FakeProvider } from "../src/testing.js"

const fields = { provider: "p", deploymentId: "d", message: "boom" }

const errors: { readonly [K in Errors.ErrorTag]: Errors.RouterError } = {
  RateLimited: new Errors.RateLimited({ ...fields, status: 429 }),
  Timeout: new Errors.Timeout(fields),
  ServerError: new Errors.ServerError({ ...fields, status: 500 }),
  NetworkError: new Errors.NetworkError(fields),
  MalformedResponse: new Errors.MalformedResponse(fields),
  BadRequest: new Errors.BadRequest({ ...fields, status: 400 }),
  Authentication: new Errors.Authentication({ ...fields, status: 401 }),
  ModelNotFound: new Errors.ModelNotFound({ ...fields, status: 404 }),
  ContextWindowExceeded: new Errors.ContextWindowExceeded({ ...fields, status: 400 }),
  ContentPolicy: new Errors.ContentPolicy({ ...fields, status: 400 }),
  QuotaExceeded: new Errors.QuotaExceeded({ ...fields, status: 429 }),
  NoDeploymentAvailable: new Errors.NoDeploymentAvailable({ group: "g", reason: "cooling_down", message: "none" }),
  UnknownGroup: new Errors.UnknownGroup({ group: "x", knownGroups: ["g"], message: "unknown" }),
  InvalidRequest: Errors.InvalidRequest.fromIssues([{ path: "options.retries", message: "expected a non-negative integer" }])
}

/**
 * Runs an effect failing with `sequence[i]` on attempt i (the last one repeating) under
 * `Effect.retry(schedule)`, on the TestClock; returns how many attempts were made and when.
 */
const drive = (
  schedule: Schedule.Schedule<unknown, RetrySchedule.AttemptFailure>,
  sequence: ReadonlyArray<Errors.RouterError>
) =>
  Effect.gen(function*() {
    const times: Array<number> = []
    const attempt = Effect.flatMap(Clock.currentTimeMillis, (t) => {
      const error = sequence[Math.min(times.length, sequence.length - 1)]
      times.push(t)
      return Effect.fail(error)
    })
    const asFailure = (error: Errors.RouterError): RetrySchedule.AttemptFailure => ({
      error,
      deployment: undefined,
      attempt: times.length,
      othersAvailable: false
    })
    const fiber = yield* Effect.fork(Effect.retry(attempt, Schedule.mapInput(schedule, asFailure)))
    yield* TestClock.adjust("1 hour")
    const exit = yield* Fiber.await(fiber)
    expect(Exit.isFailure(exit)).toBe(true)
    return { attempts: times.length, times, delays: times.slice(1).map((t, i) => t - times[i]) }
  })

const defaultSchedule = Effect.map(RetrySchedule.make(), (s) => s.schedule)
const scheduleOf = (layer: Layer.Layer<RetrySchedule.RetrySchedule, Errors.InvalidConfig>) =>
  Effect.map(Effect.provide(RetrySchedule.RetrySchedule, layer), (s) => s.schedule)

const retryable = ["RateLimited", "ServerError", "Timeout", "NetworkError", "MalformedResponse"] as const
const final = [
  "BadRequest",
  "ContextWindowExceeded",
  "ContentPolicy",
  "NoDeploymentAvailable",
  "UnknownGroup"
] as const
const elsewhere = ["QuotaExceeded", "Authentication", "ModelNotFound"] as const

describe("RetrySchedule.layer (default policy)", () => {
  for (const tag of retryable) {
    it.effect(`retries ${tag} exactly 2 times`, () =>
      Effect.gen(function*() {
        const { attempts } = yield* drive(yield* defaultSchedule, [errors[tag]])
        expect(attempts).toBe(3)
      }))
  }

  it.effect("the layer and Router.defaults give the same policy", () =>
    Effect.gen(function*() {
      const fromLayer = yield* scheduleOf(RetrySchedule.layer())
      expect((yield* drive(fromLayer, [errors.ServerError])).attempts).toBe(3)
      const fromDefaults = yield* Effect.provide(RetrySchedule.RetrySchedule, Router.defaults)
      expect((yield* drive(fromDefaults.schedule, [errors.Timeout])).attempts).toBe(3)
    }))

  it.effect("kinds share the retry count", () =>
    Effect.gen(function*() {
      const { attempts } = yield* drive(yield* defaultSchedule, [errors.RateLimited, errors.ServerError, errors.Timeout, errors.NetworkError])
      expect(attempts).toBe(3)
    }))

  it.effect("backs off exponentially from 500 ms with jitter, as the official clients", () =>
    Effect.gen(function*() {
      const firsts = new Set<number>()
      for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
        const { delays } = yield* drive(yield* defaultSchedule, [errors.ServerError]).pipe(
          Effect.withRandom(Random.make(seed))
        )
        expect(delays).toHaveLength(2)
        // 500 ms then 1 s, each jittered by ±20%
        expect(delays[0]).toBeGreaterThanOrEqual(400)
        expect(delays[0]).toBeLessThanOrEqual(600)
        expect(delays[1]).toBeGreaterThanOrEqual(800)
        expect(delays[1]).toBeLessThanOrEqual(1200)
        expect(delays[1]).toBeGreaterThan(delays[0])
        firsts.add(delays[0])
      }
      // jittered: not the same delay every time
      expect(firsts.size).toBeGreaterThan(1)
    }))

  it.effect("one delay is capped at 8 seconds by default", () =>
    Effect.gen(function*() {
      const schedule = yield* scheduleOf(RetrySchedule.layer({ retries: 7 }))
      const { delays } = yield* drive(schedule, [errors.ServerError])
      expect(delays).toHaveLength(7)
      // 0.5, 1, 2, 4, 8 s (jittered), then capped
      expect(Math.max(...delays)).toBeCloseTo(8000, 6)
      for (const d of delays.slice(5)) expect(d).toBeCloseTo(8000, 6)
    }))

  it.effect("the delays keep growing with more retries and `factor`", () =>
    Effect.gen(function*() {
      const schedule = yield* scheduleOf(RetrySchedule.layer({ retries: 5, base: "100 millis", factor: 3 }))
      const { attempts, delays } = yield* drive(schedule, [errors.ServerError])
      expect(attempts).toBe(6)
      const nominal = [100, 300, 900, 2700, 8100]
      delays.forEach((d, i) => {
        expect(d).toBeGreaterThanOrEqual(nominal[i] * 0.8)
        expect(d).toBeLessThanOrEqual(nominal[i] * 1.2)
        if (i > 0) expect(d).toBeGreaterThan(delays[i - 1])
      })
    }))

  it.effect("maxDelay caps one delay", () =>
    Effect.gen(function*() {
      const schedule = yield* scheduleOf(RetrySchedule.layer({ retries: 4, base: "1 second", factor: 10, maxDelay: "2 seconds" }))
      const { delays } = yield* drive(schedule, [errors.ServerError])
      expect(delays[0]).toBeGreaterThanOrEqual(800)
      expect(delays[0]).toBeLessThanOrEqual(1200)
      expect(delays).toHaveLength(4)
      for (const d of delays.slice(1)) expect(d).toBeCloseTo(2000, 6)
    }))

  it.effect("`retries` and `base: 0` make counts exact and immediate", () =>
    Effect.gen(function*() {
      const schedule = yield* scheduleOf(RetrySchedule.layer({ retries: 5, base: 0 }))
      const { attempts, times } = yield* drive(schedule, [errors.RateLimited])
      expect(attempts).toBe(6)
      expect(times.every((t) => t === 0)).toBe(true)
      const none = yield* scheduleOf(RetrySchedule.layer({ retries: 0 }))
      expect((yield* drive(none, [errors.RateLimited])).attempts).toBe(1)
    }))

  it.effect("`retryOn` narrows the kinds the schedule continues on", () =>
    Effect.gen(function*() {
      const schedule = yield* scheduleOf(RetrySchedule.layer({ retryOn: ["BadRequest"], base: 0 }))
      expect((yield* drive(schedule, [errors.BadRequest])).attempts).toBe(3)
      expect((yield* drive(schedule, [errors.ServerError])).attempts).toBe(1)
    }))

  it.effect("each run of the schedule starts afresh", () =>
    Effect.gen(function*() {
      const schedule = yield* defaultSchedule
      expect((yield* drive(schedule, [errors.ServerError])).attempts).toBe(3)
      expect((yield* drive(schedule, [errors.ServerError])).attempts).toBe(3)
    }))
})

describe("RetrySchedule.byError", () => {
  const policies = {
    RateLimited: Schedule.spaced("1 second").pipe(Schedule.intersect(Schedule.recurs(3))),
    ServerError: Schedule.spaced("100 millis").pipe(Schedule.intersect(Schedule.recurs(1)))
  }

  it.effect("gives each kind its own schedule", () =>
    Effect.gen(function*() {
      const schedule = yield* scheduleOf(RetrySchedule.byError(policies))
      const limited = yield* drive(schedule, [errors.RateLimited])
      expect(limited.attempts).toBe(4)
      expect(limited.delays).toEqual([1000, 1000, 1000])
      const server = yield* drive(schedule, [errors.ServerError])
      expect(server.attempts).toBe(2)
      expect(server.delays).toEqual([100])
    }))

  it.effect("kinds without a schedule are not retried", () =>
    Effect.gen(function*() {
      const schedule = yield* scheduleOf(RetrySchedule.byError(policies))
      for (const tag of ["Timeout", "NetworkError", "BadRequest", "Authentication"] as const) {
        expect((yield* drive(schedule, [errors[tag]])).attempts).toBe(1)
      }
      // ... also after retries of a listed kind
      expect((yield* drive(schedule, [errors.RateLimited, errors.RateLimited, errors.Timeout])).attempts).toBe(3)
    }))

  it.effect("each kind keeps its own state", () =>
    Effect.gen(function*() {
      const schedule = yield* scheduleOf(RetrySchedule.byError(policies))
      // R, S, R, R, then the 2nd S exceeds ServerError's single retry: 5 attempts
      const mixed = yield* drive(schedule, [errors.RateLimited, errors.ServerError, errors.RateLimited, errors.RateLimited, errors.ServerError])
      expect(mixed.attempts).toBe(5)
      expect(mixed.delays).toEqual([1000, 100, 1000, 1000])
    }))

  it.effect("maxRetries caps the total across kinds", () =>
    Effect.gen(function*() {
      const many = {
        RateLimited: Schedule.recurs(10),
        ServerError: Schedule.recurs(10),
        Timeout: Schedule.recurs(10)
      }
      const capped = yield* scheduleOf(RetrySchedule.byError(many, { maxRetries: 3 }))
      expect((yield* drive(capped, [errors.RateLimited, errors.ServerError, errors.Timeout, errors.RateLimited, errors.ServerError])).attempts)
        .toBe(4)
      expect((yield* drive(capped, [errors.RateLimited])).attempts).toBe(4)
      // without the cap: R, S, then Timeout until its own 10 retries are spent: 2 + 11 attempts
      const uncapped = yield* scheduleOf(RetrySchedule.byError(many))
      expect((yield* drive(uncapped, [errors.RateLimited, errors.ServerError, errors.Timeout])).attempts).toBe(13)
    }))

  it.effect("maxRetries of 0 never retries", () =>
    Effect.gen(function*() {
      const schedule = yield* scheduleOf(RetrySchedule.byError(policies, { maxRetries: 0 }))
      expect((yield* drive(schedule, [errors.RateLimited])).attempts).toBe(1)
    }))
})

describe("RetrySchedule.none and fromSchedule", () => {
  it.effect("none never retries", () =>
    Effect.gen(function*() {
      const schedule = yield* scheduleOf(RetrySchedule.none)
      for (const tag of [...retryable, ...final]) expect((yield* drive(schedule, [errors[tag]])).attempts).toBe(1)
    }))

  it.effect("fromSchedule uses any schedule", () =>
    Effect.gen(function*() {
      const schedule = yield* scheduleOf(RetrySchedule.fromSchedule(Schedule.recurs(4)))
      expect((yield* drive(schedule, [errors.BadRequest])).attempts).toBe(5)
    }))
})

describe("RetrySchedule in the router", () => {
  const messages = [{ role: "user" as const, content: "hi" }]

  const routed = (
    fake: FakeProvider.FakeProvider,
    retry: Layer.Layer<RetrySchedule.RetrySchedule, Errors.InvalidConfig>,
    classification?: Errors.ClassificationOverrides
  ) =>
    Router.layer({
      deployments: [{ id: "a", group: "g", provider: fake, model: "m" }],
      ...(classification === undefined ? {} : { classification })
    }).pipe(
      Layer.provide(retry),
      Layer.provide(Cooldown.disabled),
      Layer.provideMerge(Router.defaults)
    )

  /** Always picks "a" when it is a candidate. */
  const preferA = Selector.make((cs) => Effect.succeed(cs.find((c) => c.deployment.id === "a") ?? cs[0]))

  const routedPair = (
    fake: FakeProvider.FakeProvider,
    retry: Layer.Layer<RetrySchedule.RetrySchedule, Errors.InvalidConfig>,
    selector: Layer.Layer<Selector.Selector> = Selector.roundRobin
  ) =>
    Router.layer({
      deployments: [{ id: "a", group: "g", provider: fake, model: "m" }, { id: "b", group: "g", provider: fake, model: "m" }]
    }).pipe(
      Layer.provide(selector),
      Layer.provide(retry),
      Layer.provide(Cooldown.disabled),
      Layer.provideMerge(Router.defaults)
    )

  const run = Effect.gen(function*() {
    const fiber = yield* Effect.fork(Effect.either(Router.chat({ model: "g", messages })))
    yield* TestClock.adjust("1 hour")
    return yield* Fiber.join(fiber)
  })

  it.effect("the default policy makes 3 attempts on a 503", () => {
    const fake = FakeProvider.unsafeMake({ failure: 503 })
    return Effect.gen(function*() {
      const result = yield* run
      expect(result._tag).toBe("Left")
      expect(yield* fake.callCount).toBe(3)
      if (result._tag === "Left") {
        expect(result.left._tag).toBe("ServerError")
        expect(result.left.attempts).toHaveLength(3)
      }
    }).pipe(Effect.provide(routed(fake, RetrySchedule.layer())))
  })

  it.effect("the default policy makes 1 attempt on a 400", () => {
    const fake = FakeProvider.unsafeMake({ failure: 400 })
    return Effect.gen(function*() {
      yield* run
      expect(yield* fake.callCount).toBe(1)
    }).pipe(Effect.provide(routed(fake, RetrySchedule.layer())))
  })

  it.effect("a retry succeeds", () => {
    const fake = FakeProvider.unsafeMake({ failure: { first: 2, error: 503 } })
    return Effect.gen(function*() {
      const result = yield* run
      expect(result._tag).toBe("Right")
      if (result._tag === "Right") {
        expect(result.right.route.attempts.map((a) => a.error)).toEqual(["ServerError", "ServerError", undefined])
      }
    }).pipe(Effect.provide(routed(fake, RetrySchedule.layer())))
  })

  it.effect("RetrySchedule.none makes one attempt", () => {
    const fake = FakeProvider.unsafeMake({ failure: 503 })
    return Effect.gen(function*() {
      yield* run
      expect(yield* fake.callCount).toBe(1)
    }).pipe(Effect.provide(routed(fake, RetrySchedule.none)))
  })

  it.effect("byError in the router", () => {
    const fake = FakeProvider.unsafeMake({ failure: { schedule: [429, 429, 500, 500] } })
    return Effect.gen(function*() {
      const result = yield* run
      // R, R (RateLimited: 3 retries), S, then S exceeds ServerError's single retry
      expect(result._tag).toBe("Left")
      expect(yield* fake.callCount).toBe(4)
    }).pipe(Effect.provide(routed(
      fake,
      RetrySchedule.byError({ RateLimited: Schedule.recurs(3), ServerError: Schedule.recurs(1) })
    )))
  })

  it.effect("backoff is spent between the attempts that go back to the same deployment", () => {
    const fake = FakeProvider.unsafeMake({ failure: 503 })
    return Effect.gen(function*() {
      yield* run
      const calls = yield* fake.calls
      const starts = calls.map((c) => c.startedAt)
      expect(starts[1] - starts[0]).toBeGreaterThanOrEqual(400)
      expect(starts[1] - starts[0]).toBeLessThanOrEqual(600)
      expect(starts[2] - starts[1]).toBeGreaterThanOrEqual(800)
      expect(starts[2] - starts[1]).toBeLessThanOrEqual(1200)
    }).pipe(Effect.provide(routed(fake, RetrySchedule.layer())), Effect.withRandom(Random.make(3)))
  })

  it.effect("a retry back to the same deployment waits at least its retry-after, on every attempt", () => {
    const fake = FakeProvider.unsafeMake({ failure: { status: 429, retryAfter: "2 seconds" } })
    return Effect.gen(function*() {
      yield* run
      const starts = (yield* fake.calls).map((c) => c.startedAt)
      expect(starts).toHaveLength(3)
      expect(starts[1] - starts[0]).toBeGreaterThanOrEqual(2000)
      expect(starts[2] - starts[1]).toBeGreaterThanOrEqual(2000)
    }).pipe(Effect.provide(routed(fake, RetrySchedule.layer())))
  })

  for (const tag of final.filter((t) => t !== "NoDeploymentAvailable" && t !== "UnknownGroup")) {
    it.effect(`never retries ${tag}, on the same deployment or another`, () => {
      const fake = FakeProvider.unsafeMake({ failure: tag })
      return Effect.gen(function*() {
        yield* run
        expect(yield* fake.callCount).toBe(1)
      }).pipe(Effect.provide(routedPair(fake, RetrySchedule.layer())))
    })
  }

  for (const tag of elsewhere) {
    it.effect(`retries ${tag} only on another deployment: once on a pair, never on a single deployment`, () => {
      const single = FakeProvider.unsafeMake({ failure: tag })
      const pair = FakeProvider.unsafeMake({ byDeployment: { a: { failure: tag } } })
      return Effect.gen(function*() {
        const alone = yield* run.pipe(Effect.provide(routed(single, RetrySchedule.layer())))
        expect(alone._tag).toBe("Left")
        expect(yield* single.callCount).toBe(1)
        const two = yield* run.pipe(Effect.provide(routedPair(pair, RetrySchedule.layer(), preferA)))
        expect(two._tag).toBe("Right")
        expect((yield* pair.calls).map((c) => c.deploymentId)).toEqual(["a", "b"])
      })
    })
  }

  it.effect("a retry that can go to another deployment than the one that just failed starts at once", () => {
    const fake = FakeProvider.unsafeMake({ failure: 503 })
    return Effect.gen(function*() {
      yield* run
      const calls = yield* fake.calls
      expect(calls.map((c) => c.deploymentId)).toEqual(["a", "b", "a"])
      expect(calls.map((c) => c.startedAt)).toEqual([0, 0, 0])
    }).pipe(Effect.provide(routedPair(fake, RetrySchedule.layer(), preferA)))
  })

  it.effect("the router's classification decides what is retried: overrides per router", () => {
    const server = FakeProvider.unsafeMake({ failure: 503 })
    const bad = FakeProvider.unsafeMake({ failure: 400 })
    return Effect.gen(function*() {
      yield* run.pipe(Effect.provide(routed(server, RetrySchedule.layer(), { ServerError: { retry: "never" } })))
      expect(yield* server.callCount).toBe(1)
      yield* run.pipe(Effect.provide(routed(bad, RetrySchedule.layer(), { BadRequest: { retry: "any" } })))
      expect(yield* bad.callCount).toBe(3)
    })
  })

  it.effect("a bad classification override is refused with InvalidConfig naming its path", () =>
    Effect.gen(function*() {
      const fake = FakeProvider.unsafeMake()
      const build = (classification: unknown) =>
        Effect.flip(Layer.build(routed(fake, RetrySchedule.layer(), classification as Errors.ClassificationOverrides)).pipe(Effect.scoped))
      const unknownTag = yield* build({ Teapot: { retry: "never" } })
      expect(unknownTag.issues.map((i) => i.path)).toEqual(["classification.Teapot"])
      const badValue = yield* build({ ServerError: { retry: "sometimes" } })
      expect(badValue.issues.map((i) => i.path)).toEqual(["classification.ServerError.retry"])
    }))

  it.effect("a wait longer than maxWait gives the group up instead of waiting", () => {
    const fake = FakeProvider.unsafeMake({ failure: { status: 429, retryAfter: "2 minutes" } })
    return Effect.gen(function*() {
      const result = yield* run
      expect(result._tag === "Left" && result.left._tag).toBe("RateLimited")
      expect(yield* fake.callCount).toBe(1)
    }).pipe(Effect.provide(routed(fake, RetrySchedule.layer({ maxWait: "1 minute" }))))
  })
})
