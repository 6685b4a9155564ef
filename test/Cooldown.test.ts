import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { Cooldown, Errors, Fallback, type Provider, RetrySchedule, Router, RouterState, Selector } from "../src/index.js"
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
    const [stats] = yield* state.snapshot([d])
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

const closedRecord = { status: "closed", until: 0, ejections: 0, reason: "failures" }

describe("Cooldown: failure count, below the minimum volume", () => {
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
      expect(yield* circuit("a")).toEqual({ status: "open", until: 55_000, ejections: 1, reason: "failures" })
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
      expect(yield* circuit("a")).toEqual(closedRecord)
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
      for (let i = 0; i < 4; i++) expect(yield* outcome()).toBe("ServerError")
      expect((yield* circuit("a")).status).toBe("closed")
      expect(yield* outcome()).toBe("ServerError")
      expect((yield* circuit("a")).status).toBe("open")
      expect(yield* outcome()).toBe("b")
    }).pipe(Effect.provide(routerOf({ a, b }, { cooldown: Cooldown.layer({ allowedFails: 5, consecutiveFailures: 100 }) })))
  })

  it.effect("every countable error kind counts (429 without retry-after, timeout, network, malformed response)", () => {
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

describe("Cooldown: failure ratio, from the minimum volume", () => {
  it.effect("over 50% of at least minRequests calls failed cools down; below it, the count decides", () => {
    const a = FakeProvider.unsafeMake({ failure: { schedule: ["ok", "ok", "fail", "fail", "fail"], error: 500 } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      expect(yield* outcome()).toBe("a")
      expect(yield* outcome()).toBe("a")
      expect(yield* outcome()).toBe("ServerError")
      expect(yield* outcome()).toBe("ServerError")
      // 2 of 4: too few requests to judge by ratio, fewer than allowedFails
      expect((yield* circuit("a")).status).toBe("closed")
      expect(yield* outcome()).toBe("ServerError")
      // 3 of 5 = 60% > 50%, although 3 < allowedFails (10)
      expect(yield* circuit("a")).toEqual({ status: "open", until: 5_000, ejections: 1, reason: "failures" })
      expect(yield* outcome()).toBe("b")
      expect(yield* a.callCount).toBe(5)
    }).pipe(Effect.provide(routerOf({ a, b }, { cooldown: Cooldown.layer({ allowedFails: 10, minRequests: 5 }) })))
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
    }).pipe(Effect.provide(routerOf({ a, b }, { cooldown: Cooldown.layer({ allowedFails: 10, minRequests: 5 }) })))
  })

  it.effect("at volume, the count alone no longer trips: 4 failures in 20 calls leave it in rotation", () => {
    const a = FakeProvider.unsafeMake({ failure: { schedule: ["fail", "ok", "ok", "ok", "ok"], error: 500, repeat: true } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      for (let i = 0; i < 20; i++) yield* outcome()
      expect(yield* a.callCount).toBe(20)
      expect((yield* circuit("a")).status).toBe("closed")
      expect(yield* b.callCount).toBe(0)
    }).pipe(Effect.provide(routerOf({ a, b })))
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

describe("Cooldown: consecutive failures", () => {
  it.effect("N failures in a row take a deployment out whatever their spacing", () => {
    const a = FakeProvider.unsafeMake({ failure: 500 })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      // one failure every 2 minutes: never 3 in a window, but 5 in a row
      for (let i = 0; i < 4; i++) {
        expect(yield* outcome()).toBe("ServerError")
        yield* TestClock.adjust("2 minutes")
      }
      expect((yield* circuit("a")).status).toBe("closed")
      expect(yield* outcome()).toBe("ServerError")
      expect((yield* circuit("a")).status).toBe("open")
      expect(yield* outcome()).toBe("b")
    }).pipe(Effect.provide(routerOf({ a, b })))
  })

  it.effect("a success, or an answer that is the request's fault, breaks the run", () => {
    const a = FakeProvider.unsafeMake({ failure: { schedule: [500, 500, 500, 500, "ok", 500, 500, 500, 500, 400, 500] } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      for (let i = 0; i < 11; i++) {
        yield* outcome()
        yield* TestClock.adjust("2 minutes")
      }
      expect(yield* a.callCount).toBe(11)
      expect((yield* circuit("a")).status).toBe("closed")
    }).pipe(Effect.provide(routerOf({ a, b })))
  })

  it.effect("low traffic: one request every 30 s, round robin over two, one always failing: it is taken out", () => {
    const fake = FakeProvider.unsafeMake({ byDeployment: { a: { failure: 500 } } })
    return Effect.gen(function*() {
      let failed = 0
      for (let i = 0; i < 150; i++) {
        const fiber = yield* Effect.fork(Effect.either(ask()))
        yield* TestClock.adjust("30 seconds")
        if ((yield* Fiber.join(fiber))._tag === "Left") failed++
      }
      const callsToA = (yield* fake.calls).filter((c) => c.deploymentId === "a").length
      // before: "a" was called on all 150 requests. Now 5 in a row take it out; it is probed
      // again after 5, 10, 20... seconds, at most 5 minutes apart.
      expect(failed).toBe(0)
      expect(callsToA).toBeLessThan(30)
      expect((yield* circuit("a")).status).not.toBe("closed")
    }).pipe(
      Effect.provide(
        Router.layer({
          deployments: [{ id: "a", group: "g", provider: fake, model: "m" }, { id: "b", group: "g", provider: fake, model: "m" }]
        }).pipe(Layer.provide(Selector.roundRobin), Layer.provideMerge(Router.defaults))
      )
    )
  })
})

describe("Cooldown: the ejection cap", () => {
  /** Deployments d0..d{n-1}, all failing with `failure`; returns how many are out after 200 requests. */
  const outAfterStorm = (n: number, failure: FakeProvider.FailureInput) => {
    const fake = FakeProvider.unsafeMake({ failure })
    const ids = Array.from({ length: n }, (_, i) => `d${i}`)
    return Effect.gen(function*() {
      for (let i = 0; i < 200; i++) yield* Effect.either(ask())
      const router = yield* Router.Router
      const state = yield* RouterState.RouterState
      const stats = yield* state.snapshot(router.deployments)
      return stats.filter((s) => s.cooldown.status !== "closed").length
    }).pipe(
      Effect.provide(
        Router.layer({ deployments: ids.map((id) => ({ id, group: "g", provider: fake, model: "m" })) }).pipe(
          Layer.provide(Selector.roundRobin),
          Layer.provide(RetrySchedule.none),
          Layer.provideMerge(Router.defaults)
        )
      )
    )
  }

  it.effect("transient failures take out at most half a group, at least one, never its last available deployment", () =>
    Effect.gen(function*() {
      expect(yield* outAfterStorm(1, 500)).toBe(0)
      expect(yield* outAfterStorm(2, 500)).toBe(1)
      expect(yield* outAfterStorm(3, 500)).toBe(1)
      expect(yield* outAfterStorm(4, 500)).toBe(2)
      expect(yield* outAfterStorm(10, 500)).toBe(5)
    }))

  it.effect("maxEjectionPercent sets the share", () => {
    const fake = FakeProvider.unsafeMake({ failure: 500 })
    return Effect.gen(function*() {
      for (let i = 0; i < 200; i++) yield* Effect.either(ask())
      const router = yield* Router.Router
      const state = yield* RouterState.RouterState
      const stats = yield* state.snapshot(router.deployments)
      expect(stats.filter((s) => s.cooldown.status !== "closed")).toHaveLength(3)
    }).pipe(
      Effect.provide(
        Router.layer({ deployments: ["a", "b", "c", "d"].map((id) => ({ id, group: "g", provider: fake, model: "m" })) }).pipe(
          Layer.provide(Selector.roundRobin),
          Layer.provide(RetrySchedule.none),
          Layer.provide(Cooldown.layer({ maxEjectionPercent: 75 })),
          Layer.provideMerge(Router.defaults)
        )
      )
    )
  })

  it.effect("errors that mean the deployment is unusable are not capped: every deployment of the group can go", () =>
    Effect.gen(function*() {
      expect(yield* outAfterStorm(1, 401)).toBe(1)
      expect(yield* outAfterStorm(3, 401)).toBe(3)
      expect(yield* outAfterStorm(2, "QuotaExceeded")).toBe(2)
    }))

  it.effect("a single-deployment group keeps its configured retries: ServerError after 5 calls, not NoDeploymentAvailable", () => {
    const a = FakeProvider.unsafeMake({ failure: 500 })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Effect.flip(ask()))
      yield* TestClock.adjust("1 minute")
      const error = yield* Fiber.join(fiber)
      expect(error._tag).toBe("ServerError")
      expect(error.attempts).toHaveLength(5)
      expect(yield* a.callCount).toBe(5)
    }).pipe(Effect.provide(routerOf({ a }, { retry: RetrySchedule.layer({ retries: 4 }) })))
  })

  it.effect("a request that runs out of deployments after upstream failures gets the last upstream error, with every attempt", () => {
    // b is out (a refused key); a fails with 503 and the request runs out of deployments
    const a = FakeProvider.unsafeMake({ failure: 503 })
    const b = FakeProvider.unsafeMake({ failure: 401 })
    return Effect.gen(function*() {
      expect(yield* outcome()).toBe("Authentication")
      const error = yield* Effect.flip(ask())
      expect(error._tag).toBe("ServerError")
      expect(error.attempts?.map((x) => [x.deploymentId, x.error])).toEqual([["a", "ServerError"]])
    }).pipe(Effect.provide(routerOf({ a, b }, { selector: Selector.make((cs) => Effect.succeed(cs.find((c) => c.deployment.id === "b") ?? cs[0])) })))
  })
})

describe("Cooldown under load", () => {
  /** 1,000 concurrent requests over 3 deployments answering 30% of calls with a 500. */
  const storm = (cooldown?: Layer.Layer<Cooldown.Cooldown>) =>
    Effect.gen(function*() {
      const fake = yield* FakeProvider.make({
        latency: { uniform: ["50 millis", "150 millis"], seed: 1 },
        failure: { probability: 0.3, seed: 7, error: 500 }
      })
      const layer = Router.layer({ deployments: ["a", "b", "c"].map((id) => ({ id, group: "g", provider: fake, model: "m" })) }).pipe(
        cooldown === undefined ? (l) => l : Layer.provide(cooldown),
        Layer.provide(Router.defaults)
      )
      return yield* Effect.gen(function*() {
        const fibers = yield* Effect.forEach(Array.from({ length: 1000 }), () => Effect.fork(Effect.either(ask())))
        yield* TestClock.adjust("5 minutes")
        const results = yield* Effect.forEach(fibers, Fiber.join)
        const failed = results.filter((r) => r._tag === "Left")
        return {
          failed: failed.length,
          calls: yield* fake.callCount,
          unavailable: failed.filter((r) => r._tag === "Left" && r.left._tag === "NoDeploymentAvailable").length
        }
      }).pipe(Effect.provide(layer))
    })

  it.effect("with Router.defaults, fewer than 10% fail and retries happen (before: 305 failed after exactly 1,000 calls)", () =>
    Effect.gen(function*() {
      const withBreaker = yield* storm()
      const without = yield* storm(Cooldown.disabled)
      expect(withBreaker.failed).toBeLessThan(100)
      expect(withBreaker.unavailable).toBe(0)
      expect(withBreaker.calls).toBeGreaterThan(1300)
      // about 0.3³ of requests fail after their two retries, breaker or not
      expect(without.failed).toBeLessThan(100)
    }))
})

describe("Cooldown: by error kind", () => {
  for (const [status, tag] of [[401, "Authentication"], [403, "Authentication"], [404, "ModelNotFound"]] as const) {
    it.effect(`${tag} (${status}) cools down at once`, () => {
      const a = FakeProvider.unsafeMake({ failure: { first: 1, error: status } })
      const b = FakeProvider.unsafeMake()
      return Effect.gen(function*() {
        expect(yield* outcome()).toBe(tag)
        expect(yield* circuit("a")).toEqual({ status: "open", until: 5_000, ejections: 1, reason: "unusable" })
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
      expect(yield* circuit("a")).toEqual(closedRecord)
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

  it.effect("a router's classification can change how an error counts", () => {
    const a = FakeProvider.unsafeMake({ failure: 503 })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      expect(yield* outcome()).toBe("ServerError")
      expect(yield* circuit("a")).toMatchObject({ status: "open", reason: "unusable" })
    }).pipe(
      Effect.provide(
        Router.layer({
          deployments: [{ id: "a", group: "g", provider: a, model: "m" }, { id: "b", group: "g", provider: b, model: "m" }],
          classification: { ServerError: { cooldown: "immediate" } }
        }).pipe(Layer.provide(preferA), Layer.provide(RetrySchedule.none), Layer.provideMerge(Router.defaults))
      )
    )
  })
})

describe("Cooldown: out of credit (QuotaExceeded)", () => {
  const quota = { status: 429, tag: "QuotaExceeded", message: "You exceeded your current quota" } as const

  it.effect("single deployment: one call, no retry, out of rotation for 10 minutes, then probed", () => {
    const a = FakeProvider.unsafeMake({ failure: { first: 1, error: quota } })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Effect.flip(ask()))
      yield* TestClock.adjust("1 minute")
      const error = yield* Fiber.join(fiber)
      expect(error._tag).toBe("QuotaExceeded")
      expect(yield* a.callCount).toBe(1)
      expect(yield* circuit("a")).toEqual({ status: "open", until: 60_000 + 600_000 - 60_000, ejections: 1, reason: "unusable" })
      const meanwhile = yield* Effect.flip(ask())
      expect(meanwhile._tag).toBe("NoDeploymentAvailable")
      yield* TestClock.adjust("9 minutes")
      expect(yield* outcome()).toBe("a") // the probe
      expect(yield* circuit("a")).toEqual(closedRecord)
    }).pipe(Effect.provide(routerOf({ a }, { retry: RetrySchedule.layer() })))
  })

  it.effect("two deployments: fails over at once to the other, which then takes the traffic", () => {
    const a = FakeProvider.unsafeMake({ failure: quota })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      const reply = yield* ask()
      expect(reply.route.attempts.map((x) => [x.deploymentId, x.error, x.latencyMs])).toEqual([
        ["a", "QuotaExceeded", 0],
        ["b", undefined, 0]
      ])
      for (let i = 0; i < 5; i++) expect(yield* outcome()).toBe("b")
      expect(yield* a.callCount).toBe(1)
    }).pipe(Effect.provide(routerOf({ a, b }, { retry: RetrySchedule.layer() })))
  })

  it.effect("never goes back to the deployment within the request, even with the breaker off", () => {
    const a = FakeProvider.unsafeMake({ failure: quota })
    const b = FakeProvider.unsafeMake({ failure: 503 })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Effect.flip(ask()))
      yield* TestClock.adjust("1 minute")
      const error = yield* Fiber.join(fiber)
      expect(error._tag).toBe("ServerError")
      expect(error.attempts?.map((x) => x.deploymentId)).toEqual(["a", "b", "b"])
    }).pipe(Effect.provide(routerOf({ a, b }, { retry: RetrySchedule.layer(), cooldown: Cooldown.disabled })))
  })

  it.effect("falls back to another group", () => {
    const a = FakeProvider.unsafeMake({ failure: quota })
    const backup = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      const reply = yield* ask()
      expect(reply.route.group).toBe("backup")
      expect(yield* a.callCount).toBe(1)
    }).pipe(
      Effect.provide(
        Router.layer({
          deployments: [{ id: "a", group: "g", provider: a, model: "m" }, { id: "z", group: "backup", provider: backup, model: "m" }]
        }).pipe(
          Layer.provide(Fallback.layer({ fallbacks: { g: ["backup"] } })),
          Layer.provideMerge(Router.defaults)
        )
      )
    )
  })

  it.effect("longDuration sets how long", () => {
    const a = FakeProvider.unsafeMake({ failure: { first: 1, error: quota } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      expect(yield* outcome()).toBe("QuotaExceeded")
      expect((yield* circuit("a")).until).toBe(3_600_000)
    }).pipe(Effect.provide(routerOf({ a, b }, { cooldown: Cooldown.layer({ longDuration: "1 hour" }) })))
  })
})

describe("Cooldown: retry-after is a fact about the deployment", () => {
  it.effect("a 429 with Retry-After 90 s at t=30 s keeps every request away until t=120 s; then it is back without a probe", () => {
    const a = FakeProvider.unsafeMake({ failure: (_i, now) => (now === 30_000 ? { status: 429, retryAfter: "90 seconds" } : undefined) })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      yield* TestClock.adjust("30 seconds")
      expect(yield* outcome()).toBe("RateLimited")
      expect(yield* circuit("a")).toEqual({ status: "open", until: 120_000, ejections: 0, reason: "retry_after" })
      yield* TestClock.adjust("1 second")
      expect(yield* outcome()).toBe("b")
      yield* TestClock.adjust(Duration.millis(88_999))
      expect(yield* outcome()).toBe("b")
      yield* TestClock.adjust("1 millis")
      const back = yield* Effect.all([outcome(), outcome()], { concurrency: "unbounded" })
      // no single probe: both concurrent requests may go to "a" again
      expect(back).toEqual(["a", "a"])
      expect(yield* circuit("a")).toEqual(closedRecord)
    }).pipe(Effect.provide(routerOf({ a, b })))
  })

  it.effect("does not count toward the breaker: 10 such 429s leave the failure counts at 0", () => {
    const a = FakeProvider.unsafeMake({ failure: { status: 429, retryAfter: "1 second" } })
    return Effect.gen(function*() {
      for (let i = 0; i < 10; i++) {
        yield* TestClock.adjust("1 second")
        expect(yield* outcome()).toBe("RateLimited")
      }
      const router = yield* Router.Router
      const state = yield* RouterState.RouterState
      const [stats] = yield* state.snapshot(router.deployments)
      expect(stats).toMatchObject({ failures: 0, consecutiveFailures: 0, completed: 0 })
      expect(stats.cooldown.reason).toBe("retry_after")
    }).pipe(Effect.provide(routerOf({ a })))
  })

  it.effect("is not capped: the only deployment of a group is held, and other requests learn when it returns", () => {
    const a = FakeProvider.unsafeMake({ failure: { first: 1, error: { status: 429, retryAfter: "10 seconds" } } })
    return Effect.gen(function*() {
      expect(yield* outcome()).toBe("RateLimited")
      const error = yield* Effect.flip(ask())
      expect(error._tag).toBe("NoDeploymentAvailable")
      if (error._tag === "NoDeploymentAvailable") expect(Duration.toMillis(error.retryAfter!)).toBe(10_000)
    }).pipe(Effect.provide(routerOf({ a })))
  })

  it.effect("a request never returns early: two deployments both asking for 10 s, 5 retries: 2 calls before 10 s", () => {
    const fake = FakeProvider.unsafeMake({ failure: { status: 429, retryAfter: "10 seconds" } })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Effect.flip(ask()))
      yield* TestClock.adjust("1 minute")
      const error = yield* Fiber.join(fiber)
      expect(error._tag).toBe("RateLimited")
      const starts = (yield* fake.calls).map((c) => [c.deploymentId, c.startedAt])
      expect(starts).toEqual([["a", 0], ["b", 0], ["a", 10_000], ["b", 10_000], ["a", 20_000], ["b", 20_000]])
    }).pipe(
      Effect.provide(
        Router.layer({
          deployments: [{ id: "a", group: "g", provider: fake, model: "m" }, { id: "b", group: "g", provider: fake, model: "m" }]
        }).pipe(
          Layer.provide(preferA),
          Layer.provide(RetrySchedule.layer({ retries: 5 })),
          Layer.provideMerge(Router.defaults)
        )
      )
    )
  })

  it.effect("rate-limit headers showing nothing left hold the deployment until their reset", () => {
    const fake = FakeProvider.unsafeMake()
    const reporting: Provider.Provider = {
      ...fake,
      chat: (request, target) =>
        Effect.zipRight(
          target.reportRateLimit?.({
            remainingRequests: 0,
            remainingTokens: 5000,
            limitRequests: 60,
            limitTokens: 10000,
            resetRequestsMs: 20_000,
            resetTokensMs: 1_000
          }) ?? Effect.void,
          fake.chat(request, target)
        )
    }
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      expect(yield* outcome()).toBe("a")
      expect(yield* circuit("a")).toEqual({ status: "open", until: 20_000, ejections: 0, reason: "retry_after" })
      expect(yield* outcome()).toBe("b")
      yield* TestClock.adjust("20 seconds")
      expect(yield* outcome()).toBe("a")
    }).pipe(Effect.provide(routerOf({ a: reporting as Fake, b })))
  })
})

describe("Cooldown: duration", () => {
  it.effect("is 5 s by default", () => {
    const a = FakeProvider.unsafeMake({ failure: { first: 3, error: 503 } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      yield* TestClock.adjust("1 second")
      for (let i = 0; i < 3; i++) expect(yield* outcome()).toBe("ServerError")
      expect(yield* circuit("a")).toEqual({ status: "open", until: 6_000, ejections: 1, reason: "failures" })
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
        // Before the deadline "a" is out: "b" serves.
        yield* TestClock.adjust(Duration.millis(record.until - (yield* now) - 1))
        expect(yield* outcome()).toBe("b")
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
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      const seconds = (yield* cooldownLengths(8)).map((ms) => ms / 1000)
      expect(seconds).toEqual([5, 10, 20, 40, 80, 160, 300, 300, 300])
    }).pipe(Effect.provide(routerOf({ a, b })))
  })

  it.effect("the cap is maxDuration", () => {
    const a = FakeProvider.unsafeMake({ failure: 500 })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      const seconds = (yield* cooldownLengths(5)).map((ms) => ms / 1000)
      expect(seconds).toEqual([5, 10, 20, 30, 30, 30])
    }).pipe(Effect.provide(routerOf({ a, b }, { cooldown: Cooldown.layer({ maxDuration: "30 seconds" }) })))
  })

  it.effect("a failed probe answered with a retry-after is held that long, and probed again after", () => {
    const a = FakeProvider.unsafeMake({
      failure: { schedule: [500, 500, 500, { status: 429, retryAfter: "42 seconds" }] }
    })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      for (let i = 0; i < 3; i++) expect(yield* outcome()).toBe("ServerError")
      yield* TestClock.adjust("5 seconds")
      expect(yield* outcome()).toBe("RateLimited")
      expect(yield* circuit("a")).toEqual({ status: "open", until: 47_000, ejections: 1, reason: "failures" })
    }).pipe(Effect.provide(routerOf({ a, b })))
  })

  it.effect("a successful probe resets the doubling", () => {
    const { control, fake: a } = switchable()
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      const lengths = yield* cooldownLengths(2)
      expect(lengths).toEqual([5_000, 10_000, 20_000])
      control.failing = false
      yield* TestClock.adjust("20 seconds")
      expect(yield* outcome()).toBe("a") // the probe succeeds
      expect(yield* circuit("a")).toEqual(closedRecord)
      control.failing = true
      // the failure window was reset too: it takes 3 new failures, and the cooldown is 5 s again
      expect(yield* outcome()).toBe("ServerError")
      expect(yield* outcome()).toBe("ServerError")
      expect((yield* circuit("a")).status).toBe("closed")
      expect(yield* outcome()).toBe("ServerError")
      const record = yield* circuit("a")
      expect(record.status).toBe("open")
      expect(record.until - (yield* now)).toBe(5_000)
    }).pipe(Effect.provide(routerOf({ a, b })))
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
    }).pipe(Effect.provide(routerOf({ a })))
  })

  it.effect("an immediate cooldown during a long hold keeps the longer deadline, and needs a probe", () => {
    const a = FakeProvider.unsafeMake({
      failure: (i) => i === 0 ? { status: 429, retryAfter: "90 seconds", latency: "1 second" } : { status: 401, latency: "2 seconds" }
    })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Effect.all([outcome(), outcome()], { concurrency: "unbounded" }))
      yield* TestClock.adjust("2 seconds")
      expect(yield* Fiber.join(fiber)).toEqual(["RateLimited", "Authentication"])
      expect(yield* circuit("a")).toMatchObject({ status: "open", until: 91_000, reason: "unusable" })
    }).pipe(Effect.provide(routerOf({ a })))
  })

  it.effect("failures of calls already in flight when it cooled down do not double the cooldown", () => {
    // 9 concurrent requests to a dying deployment all fail at 1 s. The 3rd failure cools it
    // down for 5 s; the 6 others belong to the same outage, not to failed probes.
    const a = FakeProvider.unsafeMake({ failure: { status: 500, latency: "1 second" } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Effect.all(Array.from({ length: 9 }, () => outcome()), { concurrency: "unbounded" }))
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(fiber)).toEqual(Array.from({ length: 9 }, () => "ServerError"))
      expect(yield* circuit("a")).toMatchObject({ status: "open", until: 6_000, ejections: 1 })
      yield* TestClock.adjust("5 seconds")
      const probe = yield* Effect.fork(outcome())
      yield* TestClock.adjust("1 millis")
      expect((yield* circuit("a")).status).toBe("probing")
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(probe)).toBe("ServerError")
      // the failed probe doubles it once: 10 s
      expect(yield* circuit("a")).toMatchObject({ status: "open", until: 17_000, ejections: 2 })
    }).pipe(Effect.provide(routerOf({ a, b })))
  })

  it.effect("a failure that lands while it is out extends the deadline to that failure's own cooldown, without doubling", () => {
    // Four calls start at 0 s: three fail at 1 ms (out until 5.001 s), a straggler at 3 s.
    const a = FakeProvider.unsafeMake({ failure: (i) => ({ status: 500, latency: i < 3 ? "1 millis" : "3 seconds" }) })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      const straggler = yield* Effect.fork(Effect.all([outcome(), outcome(), outcome(), outcome()], { concurrency: "unbounded" }))
      yield* TestClock.adjust("1 millis")
      expect(yield* circuit("a")).toMatchObject({ status: "open", until: 5_001, ejections: 1 })
      yield* TestClock.adjust(Duration.millis(2_999))
      expect(yield* Fiber.join(straggler)).toEqual(["ServerError", "ServerError", "ServerError", "ServerError"])
      // its own cooldown (5 s from 3 s) reaches further: 8 s, still the first ejection
      expect(yield* circuit("a")).toMatchObject({ status: "open", until: 8_000, ejections: 1 })
    }).pipe(Effect.provide(routerOf({ a, b })))
  })

  it.effect("a call that started before the cooldown and succeeds later does not end it early", () => {
    // Only the half-open probe (or the retry-after's time) decides that a deployment is back.
    const a = FakeProvider.unsafeMake({
      latency: "10 seconds",
      failure: (i) => (i >= 1 && i <= 3 ? { status: 429, retryAfter: "60 seconds", latency: 0 } : undefined)
    })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      const slow = yield* Effect.fork(outcome())
      yield* TestClock.adjust("1 millis")
      expect(yield* outcome()).toBe("RateLimited")
      expect(yield* circuit("a")).toEqual({ status: "open", until: 60_001, ejections: 0, reason: "retry_after" })
      yield* TestClock.adjust("10 seconds")
      expect(yield* Fiber.join(slow)).toBe("a")
      expect(yield* circuit("a")).toEqual({ status: "open", until: 60_001, ejections: 0, reason: "retry_after" })
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
      expect(yield* circuit("a")).toEqual(closedRecord)
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
      expect(yield* circuit("a")).toEqual({ status: "open", until: 16_000, ejections: 2, reason: "unusable" })
      expect(yield* outcome()).toBe("b")
      expect(yield* a.callCount).toBe(2)
    }).pipe(Effect.provide(routerOf({ a, b })))
  })

  it.effect("with a retry schedule, the failed probe's request is retried elsewhere", () => {
    const { a, b } = setup({ status: 500, latency: "1 second" })
    return Effect.gen(function*() {
      // the refused key is retried on b at once
      expect(yield* outcome()).toBe("b")
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
      expect(yield* circuit("a")).toEqual(closedRecord)
      expect(yield* b.callCount).toBe(0)
    }).pipe(Effect.provide(routerOf({ a, b })))
  })
})

describe("Cooldown: the whole group cooling down", () => {
  it.effect("fails fast with NoDeploymentAvailable \"cooling_down\" and retryAfter until the first returns", () => {
    const a = FakeProvider.unsafeMake({ failure: 401 })
    const b = FakeProvider.unsafeMake({ failure: 401 })
    return Effect.gen(function*() {
      // a refused key on a, then (a retry elsewhere) on b: both out until 5 s
      const first = yield* Effect.flip(ask())
      expect(first.attempts?.map((x) => x.deploymentId)).toEqual(["a", "b"])
      yield* TestClock.adjust("3 seconds")
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
      // once they are back they are probed
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
      expect(yield* circuit("a")).toEqual(closedRecord)
      expect(yield* outcome()).toBe("a")
      expect(yield* b.callCount).toBe(0)
    }).pipe(Effect.provide(routerOf({ a, b }, { cooldown: Cooldown.disabled })))
  })
})

describe("Cooldown: config", () => {
  it.effect("bad options fail with InvalidConfig naming each path", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Cooldown.make({ consecutiveFailures: 0, maxEjectionPercent: 120, failureRatio: 2 }).pipe(
          Effect.provideServiceEffect(RouterState.RouterState, RouterState.makeMemory())
        )
      )
      expect(error.issues.map((i) => i.path).sort()).toEqual([
        "Cooldown.layer.consecutiveFailures",
        "Cooldown.layer.failureRatio",
        "Cooldown.layer.maxEjectionPercent"
      ])
      const long = yield* Effect.flip(
        Cooldown.make({ longDuration: "2 hours" }).pipe(Effect.provideServiceEffect(RouterState.RouterState, RouterState.makeMemory()))
      )
      expect(long.issues.map((i) => i.path)).toEqual(["Cooldown.layer.maxLongDuration"])
    }))
})
