import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { Cooldown, Errors, RetrySchedule, Router, RouterState, Selector } from "../src/index.js"
import { FakeProvider } from "../src/testing.js"

type Fake = FakeProvider.FakeProvider

const messages = [{ role: "user" as const, content: "hi" }]
const ask = (model = "g") => Router.chat({ model, messages })

/** Which deployment served the request, or the tag of the error it ended with. */
const outcome = (model = "g") =>
  ask(model).pipe(Effect.match({ onFailure: (e) => e._tag as string, onSuccess: (r) => r.route.deploymentId }))

/** Always picks "a" when it is a candidate: makes "who serves" deterministic. */
const preferA = Selector.make((cs) => Effect.succeed(cs.find((c) => c.deployment.id === "a") ?? cs[0]))

/** The deployment's circuit, read from the `RouterState` snapshot. */
const circuit = (id: string) =>
  Effect.gen(function*() {
    const router = yield* Router.Router
    const state = yield* RouterState.RouterState
    const d = router.deployments.find((d) => d.id === id)!
    const now = yield* Clock.currentTimeMillis
    const [stats] = yield* state.snapshot([d], now)
    return stats.cooldown
  })

const now = Clock.currentTimeMillis

interface Options {
  readonly cooldown?: Layer.Layer<Cooldown.Cooldown, Errors.InvalidConfig, RouterState.RouterState> | Layer.Layer<Cooldown.Cooldown>
  readonly retry?: Layer.Layer<RetrySchedule.RetrySchedule, Errors.InvalidConfig>
  readonly selector?: Layer.Layer<Selector.Selector>
}

/** A router over `fakes` (one deployment each, id = key, all in group "g"). No retries unless asked. */
const routerOf = (fakes: Record<string, Fake>, options: Options = {}) =>
  Router.layer({
    deployments: Object.entries(fakes).map(([id, provider]) => ({ id, group: "g", provider, model: `model-${id}` }))
  }).pipe(
    Layer.provide(options.selector ?? preferA),
    Layer.provide(options.retry ?? RetrySchedule.none),
    Layer.provide(options.cooldown ?? Cooldown.layer()),
    Layer.provideMerge(Router.defaults)
  )

/** A fake whose health is switched from the test. */
const switchable = (options: { readonly latency?: FakeProvider.Latency; readonly failure?: FakeProvider.FailureInput } = {}) => {
  const control = { failing: true }
  const fake = FakeProvider.unsafeMake({
    ...(options.latency === undefined ? {} : { latency: options.latency }),
    failure: () => (control.failing ? (options.failure ?? 500) : undefined)
  })
  return { fake, control }
}

describe("Cooldown: failure count", () => {
  it.effect("3 failures within a minute cool the deployment down: it stops receiving calls", () => {
    const a = FakeProvider.unsafeMake({ failure: 500 })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      expect(yield* outcome()).toBe("ServerError")
      yield* TestClock.adjust("20 seconds")
      expect(yield* outcome()).toBe("ServerError")
      expect((yield* circuit("a")).status).toBe("closed")
      yield* TestClock.adjust("30 seconds")
      expect(yield* outcome()).toBe("ServerError")
      expect(yield* circuit("a")).toEqual({ status: "open", until: 55_000, ejections: 1 })
      for (let i = 0; i < 5; i++) expect(yield* outcome()).toBe("b")
      yield* TestClock.adjust("4 seconds")
      expect(yield* outcome()).toBe("b")
      expect(yield* a.callCount).toBe(3)
      expect(yield* b.callCount).toBe(6)
    }).pipe(Effect.provide(routerOf({ a, b })))
  })

  it.effect("2 failures do not", () => {
    const a = FakeProvider.unsafeMake({ failure: { first: 2, error: 500 } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      expect(yield* outcome()).toBe("ServerError")
      yield* TestClock.adjust("10 seconds")
      expect(yield* outcome()).toBe("ServerError")
      expect(yield* circuit("a")).toEqual({ status: "closed", until: 0, ejections: 0 })
      expect(yield* outcome()).toBe("a")
      expect(yield* outcome()).toBe("a")
      expect(yield* b.callCount).toBe(0)
    }).pipe(Effect.provide(routerOf({ a, b })))
  })

  it.effect("3 failures spread over more than the window (0 s, 40 s, 90 s) do not", () => {
    const a = FakeProvider.unsafeMake({ failure: 500 })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      expect(yield* outcome()).toBe("ServerError")
      yield* TestClock.adjust("40 seconds")
      expect(yield* outcome()).toBe("ServerError")
      yield* TestClock.adjust("50 seconds")
      expect(yield* outcome()).toBe("ServerError")
      expect((yield* circuit("a")).status).toBe("closed")
      // still in rotation: the next call goes to "a" (and, being the 3rd failure within the window, cools it)
      expect(yield* outcome()).toBe("ServerError")
      expect(yield* a.callCount).toBe(4)
      expect((yield* circuit("a")).status).toBe("open")
      expect(yield* outcome()).toBe("b")
    }).pipe(Effect.provide(routerOf({ a, b })))
  })

  it.effect("allowedFails sets the threshold", () => {
    const a = FakeProvider.unsafeMake({ failure: 503 })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      expect(yield* outcome()).toBe("ServerError")
      expect(yield* outcome()).toBe("ServerError")
      expect(yield* outcome()).toBe("ServerError")
      expect(yield* outcome()).toBe("ServerError")
      expect((yield* circuit("a")).status).toBe("closed")
      expect(yield* outcome()).toBe("ServerError")
      expect((yield* circuit("a")).status).toBe("open")
      expect(yield* outcome()).toBe("b")
    }).pipe(Effect.provide(routerOf({ a, b }, { cooldown: Cooldown.layer({ allowedFails: 5, minRequests: 100 }) })))
  })

  it.effect("every countable error kind counts (429, timeout, network, malformed response)", () => {
    const a = FakeProvider.unsafeMake({ failure: { schedule: [429, "Timeout", "NetworkError", "MalformedResponse"] } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      expect(yield* outcome()).toBe("RateLimited")
      expect(yield* outcome()).toBe("Timeout")
      expect((yield* circuit("a")).status).toBe("closed")
      expect(yield* outcome()).toBe("NetworkError")
      expect((yield* circuit("a")).status).toBe("open")
      expect(yield* outcome()).toBe("b")
    }).pipe(Effect.provide(routerOf({ a, b })))
  })
})

describe("Cooldown: failure ratio", () => {
  it.effect("over 50% of at least 5 requests failed cools down, below the count threshold", () => {
    const a = FakeProvider.unsafeMake({ failure: { schedule: ["ok", "ok", "fail", "fail", "fail"], error: 500 } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      expect(yield* outcome()).toBe("a")
      expect(yield* outcome()).toBe("a")
      expect(yield* outcome()).toBe("ServerError")
      expect(yield* outcome()).toBe("ServerError")
      // 2 of 4: too few requests to judge
      expect((yield* circuit("a")).status).toBe("closed")
      expect(yield* outcome()).toBe("ServerError")
      // 3 of 5 = 60% > 50%, although 3 < allowedFails (10)
      expect(yield* circuit("a")).toEqual({ status: "open", until: 5_000, ejections: 1 })
      expect(yield* outcome()).toBe("b")
      expect(yield* a.callCount).toBe(5)
    }).pipe(Effect.provide(routerOf({ a, b }, { cooldown: Cooldown.layer({ allowedFails: 10 }) })))
  })

  it.effect("exactly 50% does not", () => {
    const a = FakeProvider.unsafeMake({ failure: { schedule: ["ok", "ok", "ok", "fail", "fail", "fail"], error: 500 } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      for (const expected of ["a", "a", "a", "ServerError", "ServerError", "ServerError"]) {
        expect(yield* outcome()).toBe(expected)
      }
      expect((yield* circuit("a")).status).toBe("closed")
      expect(yield* outcome()).toBe("a")
    }).pipe(Effect.provide(routerOf({ a, b }, { cooldown: Cooldown.layer({ allowedFails: 10 }) })))
  })

  it.effect("failureRatio and minRequests are configurable", () => {
    const a = FakeProvider.unsafeMake({ failure: { schedule: ["ok", "ok", "ok", "fail"], error: 500 } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      for (const expected of ["a", "a", "a", "ServerError"]) expect(yield* outcome()).toBe(expected)
      // 1 of 4 = 25% > 20%, with 4 >= minRequests
      expect((yield* circuit("a")).status).toBe("open")
      expect(yield* outcome()).toBe("b")
    }).pipe(
      Effect.provide(routerOf({ a, b }, { cooldown: Cooldown.layer({ allowedFails: 10, failureRatio: 0.2, minRequests: 4 }) }))
    )
  })
})

describe("Cooldown: by error kind", () => {
  for (const [status, tag] of [[401, "Authentication"], [403, "Authentication"], [404, "ModelNotFound"]] as const) {
    it.effect(`${tag} (${status}) cools down at once`, () => {
      const a = FakeProvider.unsafeMake({ failure: { first: 1, error: status } })
      const b = FakeProvider.unsafeMake()
      return Effect.gen(function*() {
        expect(yield* outcome()).toBe(tag)
        expect(yield* circuit("a")).toEqual({ status: "open", until: 5_000, ejections: 1 })
        expect(yield* outcome()).toBe("b")
        expect(yield* a.callCount).toBe(1)
      }).pipe(Effect.provide(routerOf({ a, b })))
    })
  }

  it.effect("BadRequest never cools down", () => {
    const a = FakeProvider.unsafeMake({ failure: 400 })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      for (let i = 0; i < 10; i++) expect(yield* outcome()).toBe("BadRequest")
      expect(yield* circuit("a")).toEqual({ status: "closed", until: 0, ejections: 0 })
      expect(yield* a.callCount).toBe(10)
      expect(yield* b.callCount).toBe(0)
    }).pipe(Effect.provide(routerOf({ a, b })))
  })

  it.effect("ContextWindowExceeded and ContentPolicy never cool down", () => {
    const a = FakeProvider.unsafeMake({ failure: { schedule: ["ContextWindowExceeded", "ContentPolicy"], repeat: true } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      for (let i = 0; i < 3; i++) {
        expect(yield* outcome()).toBe("ContextWindowExceeded")
        expect(yield* outcome()).toBe("ContentPolicy")
      }
      expect((yield* circuit("a")).status).toBe("closed")
    }).pipe(Effect.provide(routerOf({ a, b })))
  })

  it.effect("the request's own faults do not count toward the thresholds", () => {
    // Errors classed cooldown "none" are the request's fault (and a sign of life): two bad
    // requests plus two server errors are two failures of the deployment, not four.
    const a = FakeProvider.unsafeMake({ failure: { schedule: [400, "ContextWindowExceeded", 500, 500] } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      for (const expected of ["BadRequest", "ContextWindowExceeded", "ServerError", "ServerError"]) {
        expect(yield* outcome()).toBe(expected)
      }
      expect((yield* circuit("a")).status).toBe("closed")
      expect(yield* outcome()).toBe("a")
    }).pipe(Effect.provide(routerOf({ a, b })))
  })
})

describe("Cooldown: duration", () => {
  it.effect("is the upstream's retry-after when given: 429 with retryAfter 12 s is back after 12 s", () => {
    const a = FakeProvider.unsafeMake({ failure: { first: 3, error: { status: 429, retryAfter: "12 seconds" } } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      for (let i = 0; i < 3; i++) expect(yield* outcome()).toBe("RateLimited")
      expect(yield* circuit("a")).toEqual({ status: "open", until: 12_000, ejections: 1 })
      yield* TestClock.adjust(Duration.millis(11_999))
      expect(yield* outcome()).toBe("b")
      yield* TestClock.adjust("1 millis")
      expect(yield* outcome()).toBe("a")
      expect((yield* circuit("a")).status).toBe("closed")
    }).pipe(Effect.provide(routerOf({ a, b })))
  })

  it.effect("is 5 s by default", () => {
    const a = FakeProvider.unsafeMake({ failure: { first: 3, error: 503 } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      yield* TestClock.adjust("1 second")
      for (let i = 0; i < 3; i++) expect(yield* outcome()).toBe("ServerError")
      expect(yield* circuit("a")).toEqual({ status: "open", until: 6_000, ejections: 1 })
      yield* TestClock.adjust(Duration.millis(4_999))
      expect(yield* outcome()).toBe("b")
      yield* TestClock.adjust("1 millis")
      expect(yield* outcome()).toBe("a")
    }).pipe(Effect.provide(routerOf({ a, b })))
  })

  it.effect("`duration` sets the first cooldown", () => {
    const a = FakeProvider.unsafeMake({ failure: { first: 1, error: 401 } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      expect(yield* outcome()).toBe("Authentication")
      expect((yield* circuit("a")).until).toBe(30_000)
    }).pipe(Effect.provide(routerOf({ a, b }, { cooldown: Cooldown.layer({ duration: "30 seconds" }) })))
  })

  /** Trips "a" (always failing) and then lets a probe fail each time it comes back; returns the cooldown lengths. */
  const cooldownLengths = (probes: number) =>
    Effect.gen(function*() {
      for (let i = 0; i < 3; i++) expect(yield* outcome()).toBe("ServerError")
      let record = yield* circuit("a")
      const lengths = [record.until - (yield* now)]
      for (let i = 0; i < probes; i++) {
        // Before the deadline the only deployment is cooling: the group fails fast.
        yield* TestClock.adjust(Duration.millis(record.until - (yield* now) - 1))
        expect(yield* outcome()).toBe("NoDeploymentAvailable")
        yield* TestClock.adjust("1 millis")
        expect(yield* outcome()).toBe("ServerError") // the probe
        const next = yield* circuit("a")
        expect(next.status).toBe("open")
        expect(next.ejections).toBe(record.ejections + 1)
        lengths.push(next.until - (yield* now))
        record = next
      }
      return lengths
    })

  it.effect("doubles after each failed probe, capped at 5 minutes", () => {
    const a = FakeProvider.unsafeMake({ failure: 500 })
    return Effect.gen(function*() {
      const seconds = (yield* cooldownLengths(8)).map((ms) => ms / 1000)
      expect(seconds).toEqual([5, 10, 20, 40, 80, 160, 300, 300, 300])
    }).pipe(Effect.provide(routerOf({ a })))
  })

  it.effect("the cap is maxDuration", () => {
    const a = FakeProvider.unsafeMake({ failure: 500 })
    return Effect.gen(function*() {
      const seconds = (yield* cooldownLengths(5)).map((ms) => ms / 1000)
      expect(seconds).toEqual([5, 10, 20, 30, 30, 30])
    }).pipe(Effect.provide(routerOf({ a }, { cooldown: Cooldown.layer({ maxDuration: "30 seconds" }) })))
  })

  it.effect("a failed probe with a retry-after waits that long", () => {
    const a = FakeProvider.unsafeMake({
      failure: { schedule: [500, 500, 500, { status: 429, retryAfter: "42 seconds" }] }
    })
    return Effect.gen(function*() {
      for (let i = 0; i < 3; i++) expect(yield* outcome()).toBe("ServerError")
      yield* TestClock.adjust("5 seconds")
      expect(yield* outcome()).toBe("RateLimited")
      expect(yield* circuit("a")).toEqual({ status: "open", until: 47_000, ejections: 2 })
    }).pipe(Effect.provide(routerOf({ a })))
  })

  it.effect("a successful probe resets the doubling", () => {
    const { control, fake: a } = switchable()
    return Effect.gen(function*() {
      const lengths = yield* cooldownLengths(2)
      expect(lengths).toEqual([5_000, 10_000, 20_000])
      control.failing = false
      yield* TestClock.adjust("20 seconds")
      expect(yield* outcome()).toBe("a") // the probe succeeds
      expect(yield* circuit("a")).toEqual({ status: "closed", until: 0, ejections: 0 })
      control.failing = true
      // the failure window was reset too: it takes 3 new failures, and the cooldown is 5 s again
      expect(yield* outcome()).toBe("ServerError")
      expect(yield* outcome()).toBe("ServerError")
      expect((yield* circuit("a")).status).toBe("closed")
      expect(yield* outcome()).toBe("ServerError")
      const record = yield* circuit("a")
      expect(record.status).toBe("open")
      expect(record.until - (yield* now)).toBe(5_000)
    }).pipe(Effect.provide(routerOf({ a })))
  })
})

describe("Cooldown: deadlines", () => {
  it.effect("re-cooling extends a deadline and never shortens it", () => {
    // Three calls in flight at once; they fail at 1 s, 2 s and 3 s asking for 60 s, 5 s and 120 s.
    const asks = ["60 seconds", "5 seconds", "120 seconds"] as const
    const a = FakeProvider.unsafeMake({
      failure: (i) => ({ status: 429, retryAfter: asks[i % 3], latency: `${i + 1} seconds` })
    })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Effect.all([outcome(), outcome(), outcome()], { concurrency: "unbounded" }))
      yield* TestClock.adjust("1 second")
      expect(yield* circuit("a")).toMatchObject({ status: "open", until: 61_000 })
      yield* TestClock.adjust("1 second")
      expect(yield* circuit("a")).toMatchObject({ status: "open", until: 61_000 })
      yield* TestClock.adjust("1 second")
      expect(yield* circuit("a")).toMatchObject({ status: "open", until: 123_000 })
      expect(yield* Fiber.join(fiber)).toEqual(["RateLimited", "RateLimited", "RateLimited"])
      expect(yield* a.callCount).toBe(3)
    }).pipe(Effect.provide(routerOf({ a }, { cooldown: Cooldown.layer({ allowedFails: 1 }) })))
  })

  it.effect("an immediate cooldown during a long one keeps the longer deadline", () => {
    const a = FakeProvider.unsafeMake({
      failure: (i) => i === 0 ? { status: 429, retryAfter: "90 seconds", latency: "1 second" } : { status: 401, latency: "2 seconds" }
    })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Effect.all([outcome(), outcome()], { concurrency: "unbounded" }))
      yield* TestClock.adjust("2 seconds")
      expect(yield* Fiber.join(fiber)).toEqual(["RateLimited", "Authentication"])
      expect(yield* circuit("a")).toMatchObject({ status: "open", until: 91_000 })
    }).pipe(Effect.provide(routerOf({ a }, { cooldown: Cooldown.layer({ allowedFails: 1 }) })))
  })

  it.effect("failures of calls already in flight when it cooled down do not double the cooldown", () => {
    // 9 concurrent requests to a dying deployment all fail at 1 s. The 3rd failure cools it
    // down for 5 s; the 6 others belong to the same outage, not to failed probes.
    const a = FakeProvider.unsafeMake({ failure: { status: 500, latency: "1 second" } })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Effect.all(Array.from({ length: 9 }, () => outcome()), { concurrency: "unbounded" }))
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(fiber)).toEqual(Array.from({ length: 9 }, () => "ServerError"))
      expect(yield* circuit("a")).toMatchObject({ status: "open", until: 6_000 })
      yield* TestClock.adjust("5 seconds")
      const probe = yield* Effect.fork(outcome())
      yield* TestClock.adjust("1 millis")
      expect((yield* circuit("a")).status).toBe("probing")
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(probe)).toBe("ServerError")
      // the failed probe doubles it once: 10 s
      expect(yield* circuit("a")).toMatchObject({ status: "open", until: 17_000 })
    }).pipe(Effect.provide(routerOf({ a })))
  })

  it.effect("a call that started before the cooldown and succeeds later does not end it early", () => {
    // Only the half-open probe decides that a deployment is back: the upstream asked for 60 s.
    const a = FakeProvider.unsafeMake({
      latency: "10 seconds",
      failure: (i) => (i >= 1 && i <= 3 ? { status: 429, retryAfter: "60 seconds", latency: 0 } : undefined)
    })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      const slow = yield* Effect.fork(outcome())
      yield* TestClock.adjust("1 millis")
      for (let i = 0; i < 3; i++) expect(yield* outcome()).toBe("RateLimited")
      expect(yield* circuit("a")).toEqual({ status: "open", until: 60_001, ejections: 1 })
      yield* TestClock.adjust("10 seconds")
      expect(yield* Fiber.join(slow)).toBe("a")
      expect(yield* circuit("a")).toEqual({ status: "open", until: 60_001, ejections: 1 })
      expect(yield* outcome()).toBe("b")
    }).pipe(Effect.provide(routerOf({ a, b })))
  })
})

describe("Cooldown: half-open", () => {
  /** "a" fails once with 401 at 0 s (cooling it until 5 s), then answers after `probeLatency`. */
  const setup = (probe: FakeProvider.FailureInput | undefined, probeLatency: Duration.DurationInput = "1 second") => {
    const a = FakeProvider.unsafeMake({
      latency: probeLatency,
      failure: (i) => (i === 0 ? { status: 401, latency: 0 } : probe === undefined ? undefined : probe)
    })
    const b = FakeProvider.unsafeMake()
    return { a, b }
  }

  it.effect("after the cooldown exactly one probe goes to the deployment; a success closes the circuit", () => {
    const { a, b } = setup(undefined)
    return Effect.gen(function*() {
      expect(yield* outcome()).toBe("Authentication")
      yield* TestClock.adjust("5 seconds")
      expect((yield* circuit("a")).status).toBe("open")
      const fiber = yield* Effect.fork(
        Effect.all(Array.from({ length: 6 }, () => outcome()), { concurrency: "unbounded" })
      )
      yield* TestClock.adjust("1 millis")
      expect((yield* circuit("a")).status).toBe("probing")
      // more requests while the probe runs: none goes to "a"
      expect(yield* outcome()).toBe("b")
      yield* TestClock.adjust("1 second")
      const served = yield* Fiber.join(fiber)
      expect(served.filter((s) => s === "a")).toHaveLength(1)
      expect(served.filter((s) => s === "b")).toHaveLength(5)
      expect(yield* a.callCount).toBe(2)
      expect(yield* circuit("a")).toEqual({ status: "closed", until: 0, ejections: 0 })
      // back in rotation
      const next = yield* Effect.fork(outcome())
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(next)).toBe("a")
    }).pipe(Effect.provide(routerOf({ a, b })))
  })

  it.effect("a failed probe re-opens the circuit for twice as long", () => {
    const { a, b } = setup({ status: 500, latency: "1 second" })
    return Effect.gen(function*() {
      expect(yield* outcome()).toBe("Authentication")
      yield* TestClock.adjust("5 seconds")
      const probe = yield* Effect.fork(outcome())
      yield* TestClock.adjust("1 millis")
      expect((yield* circuit("a")).status).toBe("probing")
      yield* TestClock.adjust("999 millis")
      expect(yield* Fiber.join(probe)).toBe("ServerError")
      expect(yield* circuit("a")).toEqual({ status: "open", until: 16_000, ejections: 2 })
      expect(yield* outcome()).toBe("b")
      expect(yield* a.callCount).toBe(2)
    }).pipe(Effect.provide(routerOf({ a, b })))
  })

  it.effect("with a retry schedule, the failed probe's request is retried elsewhere", () => {
    const { a, b } = setup({ status: 500, latency: "1 second" })
    return Effect.gen(function*() {
      expect(yield* outcome()).toBe("Authentication")
      yield* TestClock.adjust("5 seconds")
      const probe = yield* Effect.fork(ask())
      yield* TestClock.adjust("1 second")
      const reply = yield* Fiber.join(probe)
      expect(reply.route.deploymentId).toBe("b")
      expect(reply.route.attempts.map((x) => [x.deploymentId, x.error])).toEqual([["a", "ServerError"], ["b", undefined]])
      expect((yield* circuit("a")).status).toBe("open")
    }).pipe(Effect.provide(routerOf({ a, b }, { retry: RetrySchedule.layer({ retries: 2, base: 0 }) })))
  })

  it.effect("while the only deployment is being probed, other requests fail fast", () => {
    const { a } = setup(undefined)
    return Effect.gen(function*() {
      expect(yield* outcome()).toBe("Authentication")
      yield* TestClock.adjust("5 seconds")
      const probe = yield* Effect.fork(outcome())
      yield* TestClock.adjust("1 millis")
      const error = yield* Effect.flip(ask())
      expect(error._tag).toBe("NoDeploymentAvailable")
      if (error._tag === "NoDeploymentAvailable") expect(error.reason).toBe("cooling_down")
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(probe)).toBe("a")
    }).pipe(Effect.provide(routerOf({ a })))
  })

  it.effect("an interrupted probe releases the probe: a later request can probe", () => {
    const { a, b } = setup(undefined, "10 seconds")
    return Effect.gen(function*() {
      expect(yield* outcome()).toBe("Authentication")
      yield* TestClock.adjust("5 seconds")
      const probe = yield* Effect.fork(outcome())
      yield* TestClock.adjust("1 second")
      expect((yield* circuit("a")).status).toBe("probing")
      yield* Fiber.interrupt(probe)
      const record = yield* circuit("a")
      expect(record.status).not.toBe("probing")
      expect(record.status === "closed" || record.until <= (yield* now)).toBe(true)
      const calls = yield* a.calls
      expect(calls.map((c) => c.outcome)).toEqual(["Authentication", "interrupted"])
      // the next request probes "a"
      const next = yield* Effect.fork(outcome())
      yield* TestClock.adjust("1 millis")
      expect((yield* circuit("a")).status).toBe("probing")
      yield* TestClock.adjust("10 seconds")
      expect(yield* Fiber.join(next)).toBe("a")
      expect(yield* circuit("a")).toEqual({ status: "closed", until: 0, ejections: 0 })
      expect(yield* b.callCount).toBe(0)
    }).pipe(Effect.provide(routerOf({ a, b })))
  })
})

describe("Cooldown: the whole group cooling down", () => {
  it.effect("fails fast with NoDeploymentAvailable \"cooling_down\" and retryAfter until the first returns", () => {
    const a = FakeProvider.unsafeMake({ failure: 401 })
    const b = FakeProvider.unsafeMake({ failure: 401 })
    return Effect.gen(function*() {
      expect(yield* outcome()).toBe("Authentication") // a, until 5 s
      yield* TestClock.adjust("2 seconds")
      expect(yield* outcome()).toBe("Authentication") // b, until 7 s
      yield* TestClock.adjust("1 second")
      const started = yield* now
      const fiber = yield* Effect.fork(Effect.flip(ask()))
      // no clock advance needed: it must not wait
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow()
      const polled = yield* Fiber.poll(fiber)
      expect(Option.isSome(polled)).toBe(true)
      const error = yield* Fiber.join(fiber)
      expect(yield* now).toBe(started)
      expect(error._tag).toBe("NoDeploymentAvailable")
      if (error._tag !== "NoDeploymentAvailable") return
      expect(error.reason).toBe("cooling_down")
      expect(error.group).toBe("g")
      expect(error.retryAfter).toBeDefined()
      expect(Duration.toMillis(error.retryAfter!)).toBe(2_000)
      expect(yield* a.callCount).toBe(1)
      expect(yield* b.callCount).toBe(1)
      // once the first is back it serves again (a probe)
      yield* TestClock.adjust("2 seconds")
      expect(yield* outcome()).toBe("Authentication")
      expect(yield* a.callCount).toBe(2)
    }).pipe(Effect.provide(routerOf({ a, b }, { retry: RetrySchedule.layer() })))
  })
})

describe("Cooldown.disabled", () => {
  it.effect("never cools a deployment down", () => {
    const a = FakeProvider.unsafeMake({ failure: { schedule: [500, 500, 500, 500, 401, 404, 429, 500, 500, 500] } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      const outcomes: Array<string> = []
      for (let i = 0; i < 10; i++) outcomes.push(yield* outcome())
      expect(outcomes.every((o) => o !== "b")).toBe(true)
      expect(yield* a.callCount).toBe(10)
      expect(yield* circuit("a")).toEqual({ status: "closed", until: 0, ejections: 0 })
      expect(yield* outcome()).toBe("a")
      expect(yield* b.callCount).toBe(0)
    }).pipe(Effect.provide(routerOf({ a, b }, { cooldown: Cooldown.disabled })))
  })
})
