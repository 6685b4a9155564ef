/**
 * Integration tests of the router engine: every routing concern (selection, retries, retry-after,
 * fallbacks, tags, concurrency limits, streams, embeddings, cost metering, interruption, config
 * validation) exercised through `Router.chat` / `Router.stream` / `Router.embed` against
 * `FakeProvider`s on the `TestClock`.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as fc from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Stream from "effect/Stream"
import * as Supervisor from "effect/Supervisor"
import * as TestClock from "effect/TestClock"
import {
  Cooldown,
  CostMeter,
  type Deployment,
  Errors,
  Fallback,
  Hedge,
  type Provider,
  RetrySchedule,
  Router,
  RouterState,
  Selector
} from "../src/index.js"
import { FakeProvider } from "../src/testing.js"

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

type Fake = FakeProvider.FakeProvider

/** Fixed usage most fakes report, so costs are exact. */
const usage: Provider.Usage = { prompt_tokens: 1234, completion_tokens: 567, total_tokens: 1801 }

/** A price with distinct input and output rates (dollars per token). */
const price = { inputCostPerToken: 3e-6, outputCostPerToken: 7e-6 }
const costOf = (p: { readonly inputCostPerToken: number; readonly outputCostPerToken: number }, u = usage) =>
  u.prompt_tokens * p.inputCostPerToken + u.completion_tokens * p.outputCostPerToken

/** A deployment whose id is `id` and whose upstream model is `<id>-model`. */
const dep = (
  id: string,
  group: string,
  provider: Provider.Provider | string,
  extra: Partial<Deployment.DeploymentConfig> = {}
): Deployment.DeploymentConfig => ({ id, group, provider, model: `${id}-model`, ...extra })

/** A one-message chat request to `model`, with routing tags when given. */
const ask = (model: string, tags?: ReadonlyArray<string>): Provider.ChatRequest => ({
  model,
  messages: [{ role: "user", content: "hello there" }],
  ...(tags === undefined ? {} : { metadata: { tags } })
})

/** Always picks the first candidate: makes the engine's own filtering (exclusions, limits) observable. */
const firstCandidate = Selector.make((candidates) => Effect.succeed(candidates[0]))

/** Retries as the default policy (2 retries, same kinds) but without backoff waits. */
const instantRetries = RetrySchedule.layer({ base: 0 })

interface Setup {
  readonly deployments: ReadonlyArray<Deployment.DeploymentConfig>
  readonly providers?: Readonly<Record<string, Provider.Provider>>
  readonly timeout?: Duration.DurationInput
  readonly selector?: Layer.Layer<Selector.Selector>
  /** Default: {@link instantRetries}. */
  readonly retry?: Layer.Layer<RetrySchedule.RetrySchedule, Errors.InvalidConfig>
  readonly fallback?: Fallback.Options
  readonly cooldown?: Layer.Layer<Cooldown.Cooldown, Errors.InvalidConfig, RouterState.RouterState>
}

/**
 * The router plus every routing service it was built with (so tests can read `RouterState`
 * and `CostMeter`), composed as a user would: overrides first, then `Router.defaults`.
 */
const routerLayer = (setup: Setup) =>
  Router.layer({
    deployments: setup.deployments,
    ...(setup.providers === undefined ? {} : { providers: setup.providers }),
    ...(setup.timeout === undefined ? {} : { timeout: setup.timeout })
  }).pipe(
    Layer.provide(
      Layer.mergeAll(
        setup.selector ?? Selector.weighted,
        setup.retry ?? instantRetries,
        Fallback.layer(setup.fallback ?? {}),
        setup.cooldown ?? Cooldown.layer()
      )
    ),
    Layer.provideMerge(Router.defaults)
  )

/** Runs `effect` in a fiber while the TestClock advances by `duration`; it must be done by then. */
const runFor = <A, E, R>(effect: Effect.Effect<A, E, R>, duration: Duration.DurationInput = "1 hour") =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    yield* TestClock.adjust(duration)
    const exit = yield* Fiber.poll(fiber)
    if (Option.isNone(exit)) {
      return yield* Effect.dieMessage(`still running after ${Duration.format(Duration.decode(duration))} of TestClock`)
    }
    return yield* exit.value
  })

/** `deploymentId` of each attempt, suffixed with `!ErrorTag` when it failed. */
const trail = (attempts: ReadonlyArray<Router.Attempt> | undefined) =>
  (attempts ?? []).map((a) => a.error === undefined ? a.deploymentId : `${a.deploymentId}!${a.error}`)

/** The fake's recorded calls as `[deploymentId, startedAt, outcome]`. */
const callLog = (fake: Fake) =>
  Effect.map(fake.calls, (calls) => calls.map((c) => [c.deploymentId, c.startedAt, c.outcome] as const))

/** The deployment id of each recorded call, in order. */
const calledIds = (fake: Fake) => Effect.map(fake.calls, (calls) => calls.map((c) => c.deploymentId))

/** In-flight count per deployment id, read from the router's state store. */
const inFlight = Effect.gen(function*() {
  const router = yield* Router.Router
  const state = yield* RouterState.RouterState
  const stats = yield* state.snapshot(router.deployments)
  return Object.fromEntries(router.deployments.map((d, i) => [d.id, stats[i].inFlight]))
})

const allIdle = (ids: ReadonlyArray<string>) => Object.fromEntries(ids.map((id) => [id, 0]))

const collect = <A, E, R>(stream: Stream.Stream<A, E, R>) =>
  Effect.map(Stream.runCollect(stream), Chunk.toReadonlyArray)

const contents = (chunks: ReadonlyArray<Router.RoutedChunk>) => chunks.map((c) => c.choices[0]?.delta.content)

const textOf = (response: Provider.ChatResponse) => response.choices[0].message.content

const knownErrorTags: ReadonlySet<string> = new Set(Object.keys(Errors.classification))

/** Builds a layer and returns the error it fails with. */
const buildError = <ROut, E>(layer: Layer.Layer<ROut, E>) => Effect.flip(Effect.scoped(Layer.build(layer)))

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

describe("Router", () => {
  describe("failover", () => {
    it.effect("a 503 fails over to the healthy deployment; the route lists the failed attempt, then the success", () => {
      const fake = FakeProvider.unsafeMake({ latency: "1 second", usage, byDeployment: { bad: { failure: 503 } } })
      return Effect.gen(function*() {
        const reply = yield* runFor(Router.chat(ask("g")))
        expect(reply.route.deploymentId).toBe("good")
        expect(reply.route.group).toBe("g")
        expect(reply.route.requestedGroup).toBe("g")
        expect(reply.route.model).toBe("good-model")
        expect(reply.route.attempts).toEqual([
          { deploymentId: "bad", group: "g", outcome: "failed", error: "ServerError", latencyMs: 1000 },
          { deploymentId: "good", group: "g", outcome: "won", latencyMs: 1000 }
        ])
        expect(reply.route.latencyMs).toBe(2000)
        expect(reply.route.usage).toEqual(usage)
        expect(textOf(reply)).toBe("ok")
        expect(yield* callLog(fake)).toEqual([["bad", 0, "ServerError"], ["good", 1000, "success"]])
        // the provider is asked for the deployment's upstream model, not the group name
        const calls = yield* fake.calls
        expect(calls.map((c) => c.kind === "embed" ? "" : c.request.model)).toEqual(["bad-model", "good-model"])
      }).pipe(Effect.provide(routerLayer({ deployments: [dep("bad", "g", fake), dep("good", "g", fake)], selector: firstCandidate })))
    })

    it.effect("a deployment's timeout ends its attempt with Timeout and the retry goes to another", () => {
      const fake = FakeProvider.unsafeMake({ latency: "1 second", byDeployment: { slow: { latency: "1 minute" } } })
      // A provider that leaves timeouts to the router: the router races the call and interrupts it.
      const unenforcing: Provider.Provider = { ...fake, enforcesTimeout: false }
      return Effect.gen(function*() {
        const reply = yield* runFor(Router.chat(ask("g")))
        expect(reply.route.attempts).toEqual([
          { deploymentId: "slow", group: "g", outcome: "failed", error: "Timeout", latencyMs: 2000 },
          { deploymentId: "fast", group: "g", outcome: "won", latencyMs: 1000 }
        ])
        expect(reply.route.latencyMs).toBe(3000)
        expect(yield* callLog(fake)).toEqual([["slow", 0, "interrupted"], ["fast", 2000, "success"]])
      }).pipe(Effect.provide(routerLayer({
        deployments: [dep("slow", "g", unenforcing, { timeout: "2 seconds" }), dep("fast", "g", unenforcing)],
        selector: firstCandidate
      })))
    })

    it.effect("the router-wide timeout reaches providers that enforce it themselves (the fake does)", () => {
      const fake = FakeProvider.unsafeMake({ latency: "1 minute" })
      return Effect.gen(function*() {
        const error = yield* Effect.flip(runFor(Router.chat(ask("g"))))
        expect(error._tag).toBe("Timeout")
        expect(trail(error.attempts)).toEqual(["only!Timeout", "only!Timeout", "only!Timeout"])
        expect(yield* callLog(fake)).toEqual([["only", 0, "Timeout"], ["only", 5000, "Timeout"], ["only", 10000, "Timeout"]])
      }).pipe(Effect.provide(routerLayer({ deployments: [dep("only", "g", fake)], timeout: "5 seconds" })))
    })

    it.effect("a deployment that trips its cooldown is skipped until the cooldown ends, then probed again", () => {
      const fake = FakeProvider.unsafeMake({ byDeployment: { bad: { failure: { first: 1, error: 503 } } } })
      return Effect.gen(function*() {
        const first = yield* Router.chat(ask("g"))
        expect(trail(first.route.attempts)).toEqual(["bad!ServerError", "good"])
        // cooling down: the first candidate is now "good" without a failed attempt
        const second = yield* Router.chat(ask("g"))
        expect(trail(second.route.attempts)).toEqual(["good"])
        yield* TestClock.adjust("30 seconds")
        const third = yield* Router.chat(ask("g"))
        expect(trail(third.route.attempts)).toEqual(["bad"])
        expect(yield* calledIds(fake)).toEqual(["bad", "good", "good", "bad"])
      }).pipe(Effect.provide(routerLayer({
        deployments: [dep("bad", "g", fake), dep("good", "g", fake)],
        selector: firstCandidate,
        cooldown: Cooldown.layer({ allowedFails: 1, duration: "30 seconds" })
      })))
    })
  })

  describe("retries", () => {
    it.effect("a retry never goes straight back to the deployment that just failed when another is available", () => {
      const fake = FakeProvider.unsafeMake({ failure: 503 })
      return Effect.gen(function*() {
        const error = yield* Effect.flip(Router.chat(ask("g")))
        expect(error._tag).toBe("ServerError")
        // the selector always wants "a": the engine steers each retry away from the last failure
        expect(trail(error.attempts)).toEqual(["a!ServerError", "b!ServerError", "a!ServerError"])
        expect(yield* calledIds(fake)).toEqual(["a", "b", "a"])
      }).pipe(Effect.provide(routerLayer({ deployments: [dep("a", "g", fake), dep("b", "g", fake)], selector: firstCandidate })))
    })

    it.effect("with the default weighted selector, the retry after a failure goes to the other deployment", () => {
      const fake = FakeProvider.unsafeMake({ byDeployment: { a: { failure: 503 } } })
      return Effect.gen(function*() {
        // whatever the random draws, every request that hits "a" continues on "b" and succeeds
        for (let i = 0; i < 20; i++) {
          const reply = yield* Router.chat(ask("g"))
          expect(reply.route.deploymentId).toBe("b")
          expect(["a!ServerError,b", "b"]).toContain(trail(reply.route.attempts).join(","))
        }
        const ids = yield* calledIds(fake)
        expect(ids.some((id, i) => id === "a" && ids[i + 1] !== "b")).toBe(false)
      }).pipe(
        Effect.withRandom(Random.make(7)),
        Effect.provide(routerLayer({
          deployments: [dep("a", "g", fake), dep("b", "g", fake)],
          cooldown: Cooldown.disabled
        }))
      )
    })

    it.effect("a retry goes back to the same deployment when it is the only one", () => {
      const fake = FakeProvider.unsafeMake({ failure: { first: 2, error: 503 } })
      return Effect.gen(function*() {
        const reply = yield* Router.chat(ask("g"))
        expect(trail(reply.route.attempts)).toEqual(["solo!ServerError", "solo!ServerError", "solo"])
        expect(yield* calledIds(fake)).toEqual(["solo", "solo", "solo"])
      }).pipe(Effect.provide(routerLayer({ deployments: [dep("solo", "g", fake)] })))
    })

    it.effect("a retry goes back to the failed deployment when the others are at their concurrency limit", () => {
      const fake = FakeProvider.unsafeMake({
        byDeployment: { busy: { latency: "10 seconds" }, flaky: { failure: { first: 1, error: 503 } } }
      })
      return Effect.gen(function*() {
        const hog = yield* Effect.fork(Router.chat(ask("g")))
        yield* TestClock.adjust("1 second")
        const reply = yield* Router.chat(ask("g"))
        expect(trail(reply.route.attempts)).toEqual(["flaky!ServerError", "flaky"])
        yield* TestClock.adjust("10 seconds")
        expect((yield* Fiber.join(hog)).route.deploymentId).toBe("busy")
      }).pipe(Effect.provide(routerLayer({
        deployments: [dep("busy", "g", fake, { maxConcurrent: 1 }), dep("flaky", "g", fake)],
        selector: firstCandidate
      })))
    })

    it.effect("retry-after is honoured on every retry to the same deployment: calls at 0 s, 10 s, 20 s", () => {
      const fake = FakeProvider.unsafeMake({ failure: { first: 2, error: { status: 429, retryAfter: "10 seconds" } } })
      return Effect.gen(function*() {
        const fiber = yield* Effect.fork(Router.chat(ask("g")))
        const steps: Array<readonly [number, boolean]> = []
        for (const ms of [9_999, 1, 9_999, 1]) {
          yield* TestClock.adjust(ms)
          steps.push([yield* fake.callCount, Option.isSome(yield* Fiber.poll(fiber))])
        }
        expect(steps).toEqual([[1, false], [2, false], [2, false], [3, true]])
        const reply = yield* Fiber.join(fiber)
        expect(trail(reply.route.attempts)).toEqual(["only!RateLimited", "only!RateLimited", "only"])
        expect(yield* callLog(fake)).toEqual([
          ["only", 0, "RateLimited"],
          ["only", 10_000, "RateLimited"],
          ["only", 20_000, "success"]
        ])
        expect(reply.route.latencyMs).toBe(20_000)
      }).pipe(
        Effect.withRandom(Random.make(1)),
        // the library's default policy: jittered exponential backoff from 100 ms
        Effect.provide(routerLayer({ deployments: [dep("only", "g", fake)], retry: RetrySchedule.layer() }))
      )
    })

    it.effect("retry-after may exceed the backoff cap", () => {
      const fake = FakeProvider.unsafeMake({ failure: { first: 1, error: { status: 429, retryAfter: "1 minute" } } })
      return Effect.gen(function*() {
        yield* runFor(Router.chat(ask("g")), "2 minutes")
        expect(yield* callLog(fake)).toEqual([["only", 0, "RateLimited"], ["only", 60_000, "success"]])
      }).pipe(Effect.provide(routerLayer({
        deployments: [dep("only", "g", fake)],
        retry: RetrySchedule.layer({ base: 0, maxDelay: "1 second" })
      })))
    })

    it.effect("a rate-limited deployment's retry-after does not delay a retry that can go elsewhere", () => {
      const fake = FakeProvider.unsafeMake({
        byDeployment: { limited: { failure: { status: 429, retryAfter: "10 seconds" } } }
      })
      return Effect.gen(function*() {
        const reply = yield* runFor(Router.chat(ask("g")), "1 minute")
        expect(trail(reply.route.attempts)).toEqual(["limited!RateLimited", "free"])
        expect(yield* callLog(fake)).toEqual([["limited", 0, "RateLimited"], ["free", 0, "success"]])
      }).pipe(Effect.provide(routerLayer({
        deployments: [dep("limited", "g", fake), dep("free", "g", fake)],
        selector: firstCandidate
      })))
    })

    it.effect.each(["Authentication", "ModelNotFound", "QuotaExceeded"] as const)(
      "%s is retried only on another deployment: one call to each, never back",
      (tag) => {
        const fake = FakeProvider.unsafeMake({ failure: tag })
        return Effect.gen(function*() {
          const error = yield* Effect.flip(runFor(Router.chat(ask("g")), "10 minutes"))
          expect(error._tag).toBe(tag)
          expect(trail(error.attempts)).toEqual([`a!${tag}`, `b!${tag}`])
          expect(yield* fake.callCount).toBe(2)
        }).pipe(
          Effect.withRandom(Random.make(3)),
          Effect.provide(routerLayer({
            deployments: [dep("a", "g", fake), dep("b", "g", fake)],
            selector: firstCandidate,
            retry: RetrySchedule.layer({ retries: 5 })
          }))
        )
      }
    )

    it.effect.each(["BadRequest", "ContextWindowExceeded", "ContentPolicy"] as const)(
      "%s is not retried: exactly one call to the group",
      (tag) => {
        const fake = FakeProvider.unsafeMake({ failure: tag })
        return Effect.gen(function*() {
          const error = yield* Effect.flip(runFor(Router.chat(ask("g")), "10 minutes"))
          expect(error._tag).toBe(tag)
          expect(trail(error.attempts)).toEqual([`a!${tag}`])
          expect(yield* fake.callCount).toBe(1)
        }).pipe(
          Effect.withRandom(Random.make(3)),
          Effect.provide(routerLayer({
            deployments: [dep("a", "g", fake), dep("b", "g", fake)],
            selector: firstCandidate,
            retry: RetrySchedule.layer()
          }))
        )
      }
    )
  })

  describe("fallbacks", () => {
    /** One deployment per group, id `<group>-1`, all served by `fake`. */
    const fallbackLayer = (fake: Fake, groups: ReadonlyArray<string>, fallback: Fallback.Options) =>
      routerLayer({ deployments: groups.map((g) => dep(`${g}-1`, g, fake)), fallback })

    const groupsOf = (attempts: ReadonlyArray<Router.Attempt> | undefined) => (attempts ?? []).map((a) => a.group)

    const policy: Fallback.Options = {
      fallbacks: { a: ["b", "c"] },
      contextWindowFallbacks: { a: ["long"] },
      contentPolicyFallbacks: { a: ["safe"] },
      defaultFallbacks: ["dflt"]
    }
    const policyGroups = ["a", "b", "c", "long", "safe", "dflt"]

    it.effect("a generic failure in a goes to b, then c, in order, each with its own retries", () => {
      const fake = FakeProvider.unsafeMake({ failure: 503, byDeployment: { "c-1": { failure: "none" } } })
      return Effect.gen(function*() {
        const reply = yield* Router.chat(ask("a"))
        expect(reply.route.group).toBe("c")
        expect(reply.route.requestedGroup).toBe("a")
        expect(reply.route.deploymentId).toBe("c-1")
        expect(groupsOf(reply.route.attempts)).toEqual(["a", "a", "a", "b", "b", "b", "c"])
      }).pipe(Effect.provide(fallbackLayer(fake, ["a", "b", "c"], { fallbacks: { a: ["b", "c"] } })))
    })

    it.effect("the first fallback that answers ends the request: c is never called when b answers", () => {
      const fake = FakeProvider.unsafeMake({ byDeployment: { "a-1": { failure: "NetworkError" } } })
      return Effect.gen(function*() {
        const reply = yield* Router.chat(ask("a"))
        expect(reply.route.group).toBe("b")
        expect(yield* calledIds(fake)).toEqual(["a-1", "a-1", "a-1", "b-1"])
      }).pipe(Effect.provide(fallbackLayer(fake, policyGroups, policy)))
    })

    it.effect("a ContextWindowExceeded goes to the context-window list, not the generic one", () => {
      const fake = FakeProvider.unsafeMake({ byDeployment: { "a-1": { failure: "ContextWindowExceeded" } } })
      return Effect.gen(function*() {
        const reply = yield* Router.chat(ask("a"))
        expect(reply.route.group).toBe("long")
        expect(trail(reply.route.attempts)).toEqual(["a-1!ContextWindowExceeded", "long-1"])
      }).pipe(Effect.provide(fallbackLayer(fake, policyGroups, policy)))
    })

    it.effect("a ContentPolicy goes to the content-policy list", () => {
      const fake = FakeProvider.unsafeMake({ byDeployment: { "a-1": { failure: "ContentPolicy" } } })
      return Effect.gen(function*() {
        const reply = yield* Router.chat(ask("a"))
        expect(reply.route.group).toBe("safe")
        expect(trail(reply.route.attempts)).toEqual(["a-1!ContentPolicy", "safe-1"])
      }).pipe(Effect.provide(fallbackLayer(fake, policyGroups, policy)))
    })

    it.effect("a special kind without its own list for the group uses the group's generic list", () => {
      const fake = FakeProvider.unsafeMake({ byDeployment: { "x-1": { failure: "ContextWindowExceeded" } } })
      return Effect.gen(function*() {
        const reply = yield* Router.chat(ask("x"))
        expect(reply.route.group).toBe("y")
      }).pipe(Effect.provide(fallbackLayer(fake, ["x", "y"], { fallbacks: { x: ["y"] } })))
    })

    it.effect("a BadRequest does not fall back", () => {
      const fake = FakeProvider.unsafeMake({ byDeployment: { "a-1": { failure: "BadRequest" } } })
      return Effect.gen(function*() {
        const error = yield* Effect.flip(Router.chat(ask("a")))
        expect(error._tag).toBe("BadRequest")
        expect(trail(error.attempts)).toEqual(["a-1!BadRequest"])
        expect(yield* fake.callCount).toBe(1)
      }).pipe(Effect.provide(fallbackLayer(fake, policyGroups, policy)))
    })

    it.effect("a BadRequest in a fallback group stops the walk", () => {
      const fake = FakeProvider.unsafeMake({
        byDeployment: { "a-1": { failure: 503 }, "b-1": { failure: "BadRequest" } }
      })
      return Effect.gen(function*() {
        const error = yield* Effect.flip(Router.chat(ask("a")))
        expect(error._tag).toBe("BadRequest")
        expect(groupsOf(error.attempts)).toEqual(["a", "a", "a", "b"])
      }).pipe(Effect.provide(fallbackLayer(fake, ["a", "b", "c"], { fallbacks: { a: ["b", "c"] } })))
    })

    it.effect("a group without a list of its own uses defaultFallbacks", () => {
      const fake = FakeProvider.unsafeMake({ byDeployment: { "b-1": { failure: 500 } } })
      return Effect.gen(function*() {
        const reply = yield* Router.chat(ask("b"))
        expect(reply.route.group).toBe("dflt")
        expect(reply.route.requestedGroup).toBe("b")
        expect(groupsOf(reply.route.attempts)).toEqual(["b", "b", "b", "dflt"])
      }).pipe(Effect.provide(fallbackLayer(fake, policyGroups, policy)))
    })

    it.effect("a group listed twice, or reached twice through chained lists, is tried once", () => {
      const fake = FakeProvider.unsafeMake({ failure: 503 })
      return Effect.gen(function*() {
        const error = yield* Effect.flip(Router.chat(ask("a")))
        expect(error._tag).toBe("ServerError")
        expect(groupsOf(error.attempts)).toEqual(["a", "a", "a", "b", "b", "b", "c", "c", "c"])
        expect(yield* fake.callCount).toBe(9)
      }).pipe(Effect.provide(fallbackLayer(fake, ["a", "b", "c"], { fallbacks: { a: ["b", "b", "c"], b: ["c"] } })))
    })

    it.effect("maxDepth limits chained fallbacks", () => {
      const chain = { a: ["b"], b: ["c"], c: ["d"] }
      const run = (maxDepth: number) => {
        const fake = FakeProvider.unsafeMake({ failure: 503, byDeployment: { "d-1": { failure: "none" } } })
        return Effect.gen(function*() {
          const result = yield* Effect.either(Router.chat(ask("a")))
          return [result, yield* calledIds(fake)] as const
        }).pipe(Effect.provide(fallbackLayer(fake, ["a", "b", "c", "d"], { fallbacks: chain, maxDepth })))
      }
      return Effect.gen(function*() {
        const [shallow, shallowCalls] = yield* run(2)
        expect(Either.isLeft(shallow)).toBe(true)
        if (Either.isLeft(shallow)) expect(groupsOf(shallow.left.attempts)).toEqual(["a", "a", "a", "b", "b", "b", "c", "c", "c"])
        expect(shallowCalls).not.toContain("d-1")

        const [deep] = yield* run(3)
        expect(Either.isRight(deep)).toBe(true)
        if (Either.isRight(deep)) {
          expect(deep.right.route.group).toBe("d")
          expect(deep.right.route.requestedGroup).toBe("a")
        }
      })
    })
  })

  describe("unknown group", () => {
    const fake = FakeProvider.unsafeMake()
    const layer = routerLayer({ deployments: [dep("c1", "chat", fake), dep("e1", "embed", fake), dep("c2", "chat", fake)] })
    const expectUnknown = (error: Errors.RouterError) => {
      expect(error._tag).toBe("UnknownGroup")
      if (error._tag === "UnknownGroup") {
        expect(error.group).toBe("gpt-9")
        expect(error.knownGroups).toEqual(["chat", "embed"])
        expect(error.message).toContain("chat, embed")
      }
    }

    it.effect("chat, stream and embed fail with UnknownGroup listing the known groups", () =>
      Effect.gen(function*() {
        expectUnknown(yield* Effect.flip(Router.chat(ask("gpt-9"))))
        expectUnknown(yield* Effect.flip(collect(Router.stream(ask("gpt-9")))))
        expectUnknown(yield* Effect.flip(Router.embed({ model: "gpt-9", input: "x" })))
        expect(yield* fake.callCount).toBe(0)
      }).pipe(Effect.provide(layer)))
  })

  describe("cost", () => {
    it.effect("route.cost is prompt × input price + completion × output price of the deployment's pricing", () => {
      const fake = FakeProvider.unsafeMake({ usage })
      return Effect.gen(function*() {
        const reply = yield* Router.chat(ask("g"))
        expect(reply.route.cost).toBeCloseTo(1234 * 3e-6 + 567 * 7e-6, 12)
        expect(reply.route.usage).toEqual(usage)
      }).pipe(Effect.provide(routerLayer({ deployments: [dep("priced", "g", fake, { pricing: price })] })))
    })

    it.effect("LiteLLM-format pricing (input_cost_per_token, output_cost_per_token) is accepted", () => {
      const fake = FakeProvider.unsafeMake({ usage })
      return Effect.gen(function*() {
        const reply = yield* Router.chat(ask("g"))
        expect(reply.route.cost).toBeCloseTo(1234 * 2e-6 + 567 * 5e-6, 12)
      }).pipe(Effect.provide(routerLayer({
        deployments: [dep("litellm", "g", fake, { pricing: { input_cost_per_token: 2e-6, output_cost_per_token: 5e-6 } })]
      })))
    })

    it.effect("the built-in table prices gpt-4o-mini when the deployment has no pricing; unknown models cost 0", () => {
      const fake = FakeProvider.unsafeMake({ usage })
      return Effect.gen(function*() {
        const mini = yield* Router.chat(ask("mini"))
        expect(mini.route.cost).toBeCloseTo(1234 * 0.15e-6 + 567 * 0.6e-6, 12)
        const mystery = yield* Router.chat(ask("mystery"))
        expect(mystery.route.cost).toBe(0)
      }).pipe(Effect.provide(routerLayer({
        deployments: [
          dep("mini-1", "mini", fake, { model: "gpt-4o-mini" }),
          dep("mystery-1", "mystery", fake, { model: "no-such-model" })
        ]
      })))
    })

    it.effect("failed attempts cost nothing: the cost is the answering deployment's", () => {
      const fake = FakeProvider.unsafeMake({ usage, byDeployment: { bad: { failure: 503 } } })
      return Effect.gen(function*() {
        const reply = yield* Router.chat(ask("g"))
        expect(reply.route.deploymentId).toBe("good")
        expect(reply.route.cost).toBeCloseTo(costOf({ inputCostPerToken: 1e-6, outputCostPerToken: 1e-6 }), 12)
        expect(yield* CostMeter.spend({ deployment: "bad" })).toBe(0)
      }).pipe(Effect.provide(routerLayer({
        deployments: [
          dep("bad", "g", fake, { pricing: { inputCostPerToken: 1, outputCostPerToken: 1 } }),
          dep("good", "g", fake, { pricing: { inputCostPerToken: 1e-6, outputCostPerToken: 1e-6 } })
        ],
        selector: firstCandidate
      })))
    })

    it.effect("spend is kept per deployment, group, request tag and in total", () => {
      const fake = FakeProvider.unsafeMake({ usage })
      const px = { inputCostPerToken: 1e-6, outputCostPerToken: 2e-6 }
      const py = { inputCostPerToken: 3e-6, outputCostPerToken: 4e-6 }
      const pz = { inputCostPerToken: 5e-6, outputCostPerToken: 6e-6 }
      return Effect.gen(function*() {
        const r1 = yield* Router.chat(ask("g", ["team-b"])) // only y carries team-b
        const r2 = yield* Router.chat(ask("g", ["team-a"])) // x and y carry team-a: x is first
        const r3 = yield* Router.chat(ask("h"))
        const r4 = yield* Router.chat(ask("g", ["team-a"]))
        expect([r1, r2, r3, r4].map((r) => r.route.deploymentId)).toEqual(["y", "x", "z", "x"])
        const [cx, cy, cz] = [costOf(px), costOf(py), costOf(pz)]
        expect(r1.route.cost).toBeCloseTo(cy, 12)
        const spend = {
          x: yield* CostMeter.spend({ deployment: "x" }),
          y: yield* CostMeter.spend({ deployment: "y" }),
          z: yield* CostMeter.spend({ deployment: "z" }),
          g: yield* CostMeter.spend({ group: "g" }),
          h: yield* CostMeter.spend({ group: "h" }),
          teamA: yield* CostMeter.spend({ tag: "team-a" }),
          teamB: yield* CostMeter.spend({ tag: "team-b" }),
          other: yield* CostMeter.spend({ tag: "other" }),
          total: yield* CostMeter.spend("total")
        }
        expect(spend.x).toBeCloseTo(2 * cx, 12)
        expect(spend.y).toBeCloseTo(cy, 12)
        expect(spend.z).toBeCloseTo(cz, 12)
        expect(spend.g).toBeCloseTo(2 * cx + cy, 12)
        expect(spend.h).toBeCloseTo(cz, 12)
        expect(spend.teamA).toBeCloseTo(2 * cx, 12)
        expect(spend.teamB).toBeCloseTo(cy, 12)
        expect(spend.other).toBe(0)
        expect(spend.total).toBeCloseTo(2 * cx + cy + cz, 12)
      }).pipe(Effect.provide(routerLayer({
        deployments: [
          dep("x", "g", fake, { pricing: px, tags: ["team-a"] }),
          dep("y", "g", fake, { pricing: py, tags: ["team-a", "team-b"] }),
          dep("z", "h", fake, { pricing: pz })
        ],
        selector: firstCandidate
      })))
    })
  })

  describe("tags", () => {
    const fake = () =>
      FakeProvider.unsafeMake({ byDeployment: { "eu-fast": { failure: { first: 1, error: 503 } } } })
    const layerFor = (f: Fake) =>
      routerLayer({
        deployments: [
          dep("eu-slow", "g", f, { tags: ["eu"] }),
          dep("eu-fast", "g", f, { tags: ["eu", "fast"] }),
          dep("us", "g", f, { tags: ["us"] })
        ]
      })

    it.effect("metadata.tags restricts the request to deployments carrying every tag", () => {
      const f = fake()
      return Effect.gen(function*() {
        const served = new Set<string>()
        for (let i = 0; i < 30; i++) served.add((yield* Router.chat(ask("g", ["eu"]))).route.deploymentId)
        expect([...served].sort()).toEqual(["eu-fast", "eu-slow"])
        for (let i = 0; i < 10; i++) {
          expect((yield* Router.chat(ask("g", ["eu", "fast"]))).route.deploymentId).toBe("eu-fast")
        }
      }).pipe(Effect.withRandom(Random.make(11)), Effect.provide(layerFor(f)))
    })

    it.effect("retries stay within the tagged deployments", () => {
      const f = fake()
      return Effect.gen(function*() {
        const reply = yield* Router.chat(ask("g", ["fast"]))
        expect(trail(reply.route.attempts)).toEqual(["eu-fast!ServerError", "eu-fast"])
      }).pipe(Effect.withRandom(Random.make(5)), Effect.provide(layerFor(f)))
    })

    it.effect("no deployment carrying the tags → NoDeploymentAvailable \"none_fits\", no call made", () => {
      const f = fake()
      return Effect.gen(function*() {
        for (const tags of [["asia"], ["eu", "us"]]) {
          const error = yield* Effect.flip(Router.chat(ask("g", tags)))
          expect(error._tag).toBe("NoDeploymentAvailable")
          if (error._tag === "NoDeploymentAvailable") {
            expect(error.reason).toBe("none_fits")
            expect(error.group).toBe("g")
          }
        }
        expect(yield* f.callCount).toBe(0)
      }).pipe(Effect.provide(layerFor(f)))
    })
  })

  describe("concurrency limits", () => {
    it.effect("a deployment at maxConcurrent is skipped: the second concurrent request goes to the other", () => {
      const fake = FakeProvider.unsafeMake({ latency: "1 second" })
      return Effect.gen(function*() {
        const both = yield* Effect.fork(Effect.all([Router.chat(ask("g")), Router.chat(ask("g"))], { concurrency: 2 }))
        yield* TestClock.adjust("500 millis")
        expect(yield* inFlight).toEqual({ p: 1, q: 1 })
        yield* TestClock.adjust("500 millis")
        const replies = yield* Fiber.join(both)
        expect(replies.map((r) => r.route.deploymentId).sort()).toEqual(["p", "q"])
        expect(yield* inFlight).toEqual({ p: 0, q: 0 })
        // the slot is free again: the first candidate serves the next request
        const next = yield* runFor(Router.chat(ask("g")), "1 second")
        expect(next.route.deploymentId).toBe("p")
      }).pipe(Effect.provide(routerLayer({
        deployments: [dep("p", "g", fake, { maxConcurrent: 1 }), dep("q", "g", fake, { maxConcurrent: 1 })],
        selector: firstCandidate
      })))
    })

    it.effect("a single deployment at its limit fails the second request with NoDeploymentAvailable \"over_limits\"", () => {
      const fake = FakeProvider.unsafeMake({ latency: "1 second" })
      return Effect.gen(function*() {
        const first = yield* Effect.fork(Router.chat(ask("g")))
        yield* TestClock.adjust("100 millis")
        const error = yield* Effect.flip(Router.chat(ask("g")))
        expect(error._tag).toBe("NoDeploymentAvailable")
        if (error._tag === "NoDeploymentAvailable") expect(error.reason).toBe("over_limits")
        expect(error.attempts).toEqual([])
        expect(yield* inFlight).toEqual({ solo: 1 })
        yield* TestClock.adjust("900 millis")
        expect((yield* Fiber.join(first)).route.deploymentId).toBe("solo")
        expect(yield* inFlight).toEqual({ solo: 0 })
        expect((yield* runFor(Router.chat(ask("g")), "1 second")).route.deploymentId).toBe("solo")
        expect(yield* fake.callCount).toBe(2)
      }).pipe(Effect.provide(routerLayer({ deployments: [dep("solo", "g", fake, { maxConcurrent: 1 })] })))
    })

    it.effect("failed calls give their slot back", () => {
      const fake = FakeProvider.unsafeMake({ latency: "1 second", failure: 503 })
      return Effect.gen(function*() {
        yield* Effect.flip(runFor(Router.chat(ask("g"))))
        expect(yield* inFlight).toEqual({ solo: 0 })
        expect(yield* fake.callCount).toBe(3)
      }).pipe(Effect.provide(routerLayer({ deployments: [dep("solo", "g", fake, { maxConcurrent: 1 })] })))
    })
  })

  describe("streams", () => {
    const words = ["Hel", "lo", " world"]
    const streamingFake = (extra: FakeProvider.Options = {}) =>
      FakeProvider.unsafeMake({ usage, latency: "1 second", stream: { chunks: words, chunkDelay: "100 millis" }, ...extra })

    it.effect("chunks arrive in order; the last carries the route with the cost of the final usage", () => {
      const fake = streamingFake()
      return Effect.gen(function*() {
        const chunks = yield* runFor(collect(Router.stream(ask("s"))))
        expect(contents(chunks)).toEqual([...words, undefined])
        expect(chunks.slice(0, -1).every((c) => c.route === undefined)).toBe(true)
        const last = chunks[chunks.length - 1]
        expect(last.choices[0]?.finish_reason).toBe("stop")
        expect(last.route).toBeDefined()
        const route = last.route!
        expect(route.deploymentId).toBe("s1")
        expect(route.group).toBe("s")
        expect(route.requestedGroup).toBe("s")
        expect(route.model).toBe("s1-model")
        // the whole stream, and its first content after the 1 s latency
        expect(route.attempts).toEqual([{ deploymentId: "s1", group: "s", outcome: "won", latencyMs: 1200, firstContentMs: 1000 }])
        expect(route.latencyMs).toBe(1200)
        expect(route.usage).toEqual(usage)
        expect(route.cost).toBeCloseTo(costOf(price), 12)
        expect(yield* CostMeter.spend({ deployment: "s1" })).toBeCloseTo(costOf(price), 12)
        expect(yield* callLog(fake)).toEqual([["s1", 0, "success"]])
      }).pipe(Effect.provide(routerLayer({ deployments: [dep("s1", "s", fake, { pricing: price })] })))
    })

    it.effect("chunks are forwarded as they arrive: the router adds no latency to a chunk", () => {
      const fake = streamingFake()
      return Effect.gen(function*() {
        const timed = yield* runFor(collect(
          Router.stream(ask("s")).pipe(
            Stream.mapEffect((chunk) => Effect.map(Clock.currentTimeMillis, (t) => [t, chunk.choices[0]?.delta.content] as const))
          )
        ))
        // the provider emits "Hel" at 1 s, "lo" at 1.1 s, " world" and the final chunk at 1.2 s
        expect(timed).toEqual([[1000, "Hel"], [1100, "lo"], [1200, " world"], [1200, undefined]])
      }).pipe(Effect.provide(routerLayer({ deployments: [dep("s1", "s", fake)] })))
    })

    it.effect("a failure before the first chunk is retried on another deployment", () => {
      const fake = streamingFake({ byDeployment: { broken: { failure: 503 } } })
      return Effect.gen(function*() {
        const chunks = yield* runFor(collect(Router.stream(ask("s"))))
        expect(contents(chunks)).toEqual([...words, undefined])
        const route = chunks[chunks.length - 1].route!
        expect(route.deploymentId).toBe("healthy")
        expect(trail(route.attempts)).toEqual(["broken!ServerError", "healthy"])
        expect(yield* callLog(fake)).toEqual([["broken", 0, "ServerError"], ["healthy", 1000, "success"]])
        expect(yield* inFlight).toEqual({ broken: 0, healthy: 0 })
      }).pipe(Effect.provide(routerLayer({
        deployments: [dep("broken", "s", fake), dep("healthy", "s", fake)],
        selector: firstCandidate
      })))
    })

    it.effect("a mid-stream failure ends the stream with a typed error carrying the attempts; no retry", () => {
      const fake = FakeProvider.unsafeMake({
        stream: { chunks: ["a", "b", "c"], failAfterChunks: 2, midStreamError: "NetworkError" }
      })
      return Effect.gen(function*() {
        const items = yield* runFor(collect(Stream.either(Router.stream(ask("s")))))
        // every chunk the provider produced reaches the consumer, then the error
        expect(items.map(Either.map((c) => c.choices[0]?.delta.content))).toEqual([
          Either.right("a"),
          Either.right("b"),
          expect.objectContaining({ _tag: "Left" })
        ])
        const last = items[items.length - 1]
        expect(Either.isLeft(last)).toBe(true)
        if (Either.isLeft(last)) {
          expect(last.left._tag).toBe("NetworkError")
          expect(trail(last.left.attempts)).toEqual(["first!NetworkError"])
        }
        expect(yield* calledIds(fake)).toEqual(["first"])
        expect(yield* inFlight).toEqual({ first: 0, second: 0 })
      }).pipe(Effect.provide(routerLayer({
        deployments: [dep("first", "s", fake), dep("second", "s", fake)],
        selector: firstCandidate
      })))
    })

    describe("a provider that leaves timeouts to the router", () => {
      const chunkOf = (content: string): Provider.ChatChunk => ({
        id: "c",
        object: "chat.completion.chunk",
        created: 0,
        model: "m",
        choices: [{ index: 0, delta: { content }, finish_reason: null }]
      })
      /** "silent" never sends anything; "stalls" sends "a" then nothing; the others send "ok" and end. */
      const scripted: Provider.Provider = {
        name: "scripted",
        chat: (_request, target) => Effect.die(`not used (${target.deploymentId})`),
        embed: (_request, target) => Effect.die(`not used (${target.deploymentId})`),
        stream: (_request, target) =>
          target.deploymentId === "silent"
            ? Stream.never
            : target.deploymentId === "stalls"
            ? Stream.concat(Stream.make(chunkOf("a")), Stream.never)
            : Stream.make(chunkOf("ok"))
      }
      const deployments = [dep("silent", "s", scripted), dep("stalls", "s", scripted), dep("steady", "s", scripted)]
      /** Picks `id` when it is a candidate, else "steady". */
      const pick = (id: string) =>
        Selector.make((cs) => Effect.succeed(cs.find((c) => c.deployment.id === id) ?? cs.find((c) => c.deployment.id === "steady") ?? cs[0]))

      it.effect("no first chunk within the timeout: Timeout, and the retry goes elsewhere", () =>
        Effect.gen(function*() {
          const chunks = yield* runFor(collect(Router.stream(ask("s"))))
          expect(contents(chunks)).toEqual(["ok", undefined])
          expect(trail(chunks.at(-1)?.route?.attempts)).toEqual(["silent!Timeout", "steady"])
          expect(chunks.at(-1)?.route?.attempts[0].latencyMs).toBe(5000)
        }).pipe(Effect.provide(routerLayer({ deployments, timeout: "5 seconds", selector: pick("silent") }))))

      it.effect("a stall after content ends the stream with Timeout after the chunks that came", () =>
        Effect.gen(function*() {
          const items = yield* runFor(collect(Stream.either(Router.stream(ask("s")))))
          expect(items.map(Either.map((c) => c.choices[0]?.delta.content))).toEqual([Either.right("a"), expect.objectContaining({ _tag: "Left" })])
          const error = items[1]
          if (Either.isLeft(error)) {
            expect(error.left._tag).toBe("Timeout")
            expect(error.left.message).toContain("no data from stalls within 5s")
          }
          expect(yield* inFlight).toEqual({ silent: 0, stalls: 0, steady: 0 })
        }).pipe(Effect.provide(routerLayer({ deployments, timeout: "5 seconds", selector: pick("stalls") }))))

      it.effect("the same on the hedged path: a stall after content ends the stream with Timeout", () =>
        Effect.gen(function*() {
          const items = yield* runFor(collect(Stream.either(Router.stream(ask("s")))))
          expect(items.map(Either.map((c) => c.choices[0]?.delta.content))).toEqual([Either.right("a"), expect.objectContaining({ _tag: "Left" })])
          expect(Either.isLeft(items[1]) && items[1].left._tag).toBe("Timeout")
          expect(yield* inFlight).toEqual({ silent: 0, stalls: 0, steady: 0 })
        }).pipe(
          Effect.provide(Hedge.layer({ delay: "1 minute" })),
          Effect.provide(routerLayer({ deployments, timeout: "5 seconds", selector: pick("stalls") }))
        ))
    })

    it.effect("the concurrency slot is held while the consumer is mid-stream and freed at the end", () => {
      const fake = FakeProvider.unsafeMake({ stream: { chunks: ["a", "b", "c"], chunkDelay: "1 second" } })
      return Effect.gen(function*() {
        const consumer = yield* Effect.fork(collect(Router.stream(ask("s"))))
        yield* TestClock.adjust("1500 millis")
        expect(yield* inFlight).toEqual({ solo: 1 })
        const busy = yield* Effect.flip(Router.chat(ask("s")))
        expect(busy._tag === "NoDeploymentAvailable" && busy.reason).toBe("over_limits")
        yield* TestClock.adjust("1 second")
        expect(contents(yield* Fiber.join(consumer))).toEqual(["a", "b", "c", undefined])
        expect(yield* inFlight).toEqual({ solo: 0 })
      }).pipe(Effect.provide(routerLayer({ deployments: [dep("solo", "s", fake, { maxConcurrent: 1 })] })))
    })

    it.effect("a consumer that stops early (Stream.take(1)) frees the slot and ends the upstream call", () => {
      const fake = FakeProvider.unsafeMake({ stream: { chunks: ["a", "b", "c"], chunkDelay: "1 second" } })
      return Effect.gen(function*() {
        const chunks = yield* runFor(collect(Router.stream(ask("s")).pipe(Stream.take(1))), "1 minute")
        expect(contents(chunks)).toEqual(["a"])
        expect(yield* inFlight).toEqual({ solo: 0 })
        expect((yield* fake.calls).map((c) => c.outcome)).toEqual(["interrupted"])
        // the slot can be taken again
        const again = yield* runFor(collect(Router.stream(ask("s"))), "1 minute")
        expect(again[again.length - 1].route?.deploymentId).toBe("solo")
      }).pipe(Effect.provide(routerLayer({ deployments: [dep("solo", "s", fake, { maxConcurrent: 1 })] })))
    })
  })

  describe("embeddings", () => {
    it.effect("embed is routed, with failover and the cost of its prompt tokens", () => {
      const fake = FakeProvider.unsafeMake({ dimensions: 4, byDeployment: { "emb-down": { failure: 503 } } })
      return Effect.gen(function*() {
        const reply = yield* Router.embed({ model: "emb", input: ["hello world", "abcd"] })
        expect(reply.data.map((d) => d.index)).toEqual([0, 1])
        expect(reply.data.every((d) => Array.isArray(d.embedding) && d.embedding.length === 4)).toBe(true)
        expect(reply.route.deploymentId).toBe("emb-up")
        expect(trail(reply.route.attempts)).toEqual(["emb-down!ServerError", "emb-up"])
        // "hello world" → 3 tokens, "abcd" → 1 token
        expect(reply.route.usage).toEqual({ prompt_tokens: 4, completion_tokens: 0, total_tokens: 4 })
        expect(reply.route.cost).toBeCloseTo(4 * 0.02e-6, 12)
        expect(yield* CostMeter.spend({ group: "emb" })).toBeCloseTo(4 * 0.02e-6, 12)
        const calls = yield* fake.calls
        expect(calls.map((c) => [c.kind, c.model])).toEqual([
          ["embed", "text-embedding-3-small"],
          ["embed", "text-embedding-3-small"]
        ])
      }).pipe(Effect.provide(routerLayer({
        deployments: [
          dep("emb-down", "emb", fake, { model: "text-embedding-3-small" }),
          dep("emb-up", "emb", fake, { model: "text-embedding-3-small" })
        ],
        selector: firstCandidate
      })))
    })
  })

  describe("interruption", () => {
    it.effect("interrupting a request mid-call frees the slot, interrupts the call, leaves no fiber behind", () => {
      const fake = FakeProvider.unsafeMake({ latency: "10 seconds" })
      return Effect.gen(function*() {
        const supervisor = yield* Supervisor.track
        const fiber = yield* Effect.fork(Effect.supervised(Router.chat(ask("g")), supervisor))
        yield* TestClock.adjust("1 second")
        expect(yield* inFlight).toEqual({ solo: 1, other: 0 })
        const exit = yield* Fiber.interrupt(fiber)
        expect(Exit.isInterrupted(exit)).toBe(true)
        expect(yield* inFlight).toEqual({ solo: 0, other: 0 })
        expect(yield* callLog(fake)).toEqual([["solo", 0, "interrupted"]])
        expect((yield* fake.calls)[0].endedAt).toBe(1000)
        expect(yield* supervisor.value).toEqual([])
        // nothing keeps going: no retry, no late call
        yield* TestClock.adjust("1 hour")
        expect(yield* fake.callCount).toBe(1)
      }).pipe(Effect.provide(routerLayer({
        deployments: [dep("solo", "g", fake), dep("other", "g", fake)],
        selector: firstCandidate
      })))
    })

    it.effect("interrupting a request while it waits to retry makes no further call", () => {
      const fake = FakeProvider.unsafeMake({ failure: 503 })
      return Effect.gen(function*() {
        const fiber = yield* Effect.fork(Router.chat(ask("g")))
        yield* TestClock.adjust("1 millis")
        expect(yield* fake.callCount).toBe(1)
        yield* Fiber.interrupt(fiber)
        yield* TestClock.adjust("1 hour")
        expect(yield* fake.callCount).toBe(1)
        expect(yield* inFlight).toEqual({ solo: 0 })
      }).pipe(
        Effect.withRandom(Random.make(2)),
        Effect.provide(routerLayer({ deployments: [dep("solo", "g", fake)], retry: RetrySchedule.layer() }))
      )
    })

    it.effect("interrupting a stream consumer mid-stream frees the slot and interrupts the upstream stream", () => {
      const fake = FakeProvider.unsafeMake({ stream: { chunks: ["a", "b", "c"], chunkDelay: "1 second" } })
      return Effect.gen(function*() {
        const consumer = yield* Effect.fork(Stream.runDrain(Router.stream(ask("s"))))
        yield* TestClock.adjust("1500 millis")
        expect(yield* inFlight).toEqual({ solo: 1 })
        yield* Fiber.interrupt(consumer)
        expect(yield* inFlight).toEqual({ solo: 0 })
        expect((yield* fake.calls).map((c) => c.outcome)).toEqual(["interrupted"])
      }).pipe(Effect.provide(routerLayer({ deployments: [dep("solo", "s", fake, { maxConcurrent: 1 })] })))
    })

    it.effect("an interruption right after the state store granted the slot does not leak it", () => {
      // A shared store (Redis...) answers asynchronously: the slot is taken in the store before
      // the router gets the answer. An interruption in that window must still give the slot back.
      const fake = FakeProvider.unsafeMake()
      return Effect.gen(function*() {
        const granted = yield* Deferred.make<void>()
        const state = Layer.effect(
          RouterState.RouterState,
          Effect.map(RouterState.makeMemory(), (inner): RouterState.Service => ({
            ...inner,
            reserve: (reservation) =>
              inner.reserve(reservation).pipe(
                Effect.tap(() => Deferred.succeed(granted, undefined)),
                Effect.zipLeft(Effect.sleep("5 millis")) // the store's reply on its way back
              )
          }))
        )
        const services = Layer.mergeAll(
          Selector.weighted,
          instantRetries,
          Fallback.none,
          Cooldown.layer(),
          CostMeter.layer()
        ).pipe(Layer.provideMerge(state))
        const layer = Router.layer({ deployments: [dep("solo", "g", fake, { maxConcurrent: 1 })] }).pipe(
          Layer.provideMerge(services)
        )
        yield* Effect.gen(function*() {
          const fiber = yield* Effect.fork(Router.chat(ask("g")))
          yield* Deferred.await(granted)
          // interrupt from another fiber: a router that (rightly) masks the slot hand-over waits
          // for the store's reply, which needs the clock to move
          const interrupter = yield* Effect.fork(Fiber.interrupt(fiber))
          yield* TestClock.adjust("5 millis")
          yield* Fiber.join(interrupter)
          expect(yield* inFlight).toEqual({ solo: 0 })
          expect((yield* fake.calls).filter((c) => c.outcome === "pending")).toEqual([])
        }).pipe(Effect.provide(layer))
      })
    })
  })

  describe("no request lost", () => {
    const poolIds = ["p1", "p2", "p3"]

    /** A pool of 3 deployments with seeded-random failures and latencies. */
    const loadSetup = (failureProbability: number, seed: number) => {
      const fake = FakeProvider.unsafeMake({
        latency: { uniform: ["10 millis", "2 seconds"], seed },
        failure: { probability: failureProbability, seed, error: 503 },
        stream: { chunks: 2 }
      })
      const layer = routerLayer({ deployments: poolIds.map((id) => dep(id, "pool", fake)), retry: RetrySchedule.layer() })
      return { fake, layer }
    }

    type Outcome = Either.Either<{ readonly route: Router.RouteInfo }, Errors.RouterError>

    /** Request `i`: a chat, an embedding or a stream, by `i % 3`. */
    const request = (i: number): Effect.Effect<{ readonly route: Router.RouteInfo }, Errors.RouterError, Router.Router> => {
      switch (i % 3) {
        case 0:
          return Router.chat(ask("pool"))
        case 1:
          return Router.embed({ model: "pool", input: "some text" })
        default:
          return Effect.flatMap(collect(Router.stream(ask("pool"))), (chunks) => {
            const route = chunks[chunks.length - 1]?.route
            return route === undefined ? Effect.dieMessage("a completed stream without route") : Effect.succeed({ route })
          })
      }
    }

    /** Runs `n` concurrent requests to completion and checks that each is accounted for. */
    const runLoad = (fake: Fake, n: number, seed: number) =>
      Effect.gen(function*() {
        const outcomes: ReadonlyArray<Outcome> = yield* runFor(
          Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) => Effect.either(request(i)), {
            concurrency: "unbounded"
          }),
          "1 hour"
        )
        expect(outcomes.length).toBe(n)
        const unknownTags = outcomes.flatMap((o) => Either.isLeft(o) && !knownErrorTags.has(o.left._tag) ? [o.left._tag] : [])
        expect(unknownTags).toEqual([])
        const calls = yield* fake.calls
        expect(calls.filter((c) => c.outcome === "pending" || c.outcome === "interrupted")).toEqual([])
        // every upstream call is one attempt of exactly one request
        const attempts = outcomes.reduce(
          (sum, o) => sum + (Either.isRight(o) ? o.right.route.attempts.length : (o.left.attempts?.length ?? 0)),
          0
        )
        expect(attempts).toBe(yield* fake.callCount)
        const successes = outcomes.filter(Either.isRight)
        expect(successes.length).toBe(calls.filter((c) => c.outcome === "success").length)
        for (const s of successes) {
          const last = s.right.route.attempts[s.right.route.attempts.length - 1]
          expect(last.error).toBeUndefined()
          expect(last.deploymentId).toBe(s.right.route.deploymentId)
        }
        expect(yield* inFlight).toEqual(allIdle(poolIds))
        return outcomes
      }).pipe(Effect.withRandom(Random.make(seed)))

    it.effect("1,000 concurrent requests over a flaky pool all end in a response or a typed error", () => {
      const { fake, layer } = loadSetup(0.3, 42)
      return Effect.gen(function*() {
        const outcomes = yield* runLoad(fake, 1000, 42)
        // the seeded failures do happen and most requests still succeed
        expect(outcomes.filter(Either.isLeft).length).toBeGreaterThan(0)
        expect(outcomes.filter(Either.isRight).length).toBeGreaterThan(500)
      }).pipe(Effect.provide(layer))
    }, 60_000)

    it.effect.prop(
      "for any failure probability and seed, no request is lost and in-flight returns to 0",
      {
        probability: fc.double({ min: 0, max: 1, noNaN: true }),
        seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        n: fc.integer({ min: 1, max: 40 })
      },
      ({ n, probability, seed }) => {
        const { fake, layer } = loadSetup(probability, seed)
        // fast-check reads any returned value other than `true`/`undefined` as a failure
        return runLoad(fake, n, seed).pipe(Effect.asVoid, Effect.provide(layer))
      },
      { timeout: 60_000, fastCheck: { numRuns: 25 } }
    )
  })

  describe("config validation", () => {
    const fake = FakeProvider.unsafeMake()

    it.effect("a bad field fails the layer with InvalidConfig naming its path", () =>
      Effect.gen(function*() {
        const error = yield* buildError(routerLayer({
          deployments: [dep("a", "g", fake), dep("b", "g", fake), dep("c", "g", fake, { weight: -1 })]
        }))
        expect(error._tag).toBe("InvalidConfig")
        expect(error.issues).toContainEqual({ path: "deployments[2].weight", message: "expected a non-negative number" })
        expect(error.message).toContain("deployments[2].weight: expected a non-negative number")
      }))

    it.effect("a fallback cycle is rejected when the router is built", () =>
      Effect.gen(function*() {
        const error = yield* buildError(routerLayer({
          deployments: [dep("a-1", "a", fake), dep("b-1", "b", fake)],
          fallback: { fallbacks: { a: ["b"], b: ["a"] } }
        }))
        expect(error._tag).toBe("InvalidConfig")
        expect(error.issues).toContainEqual({ path: "Fallback", message: "fallback cycle: a -> b -> a" })
      }))

    it.effect("a fallback to an unknown group is rejected with its path", () =>
      Effect.gen(function*() {
        const error = yield* buildError(routerLayer({
          deployments: [dep("a-1", "a", fake)],
          fallback: { fallbacks: { a: ["nowhere"] } }
        }))
        expect(error.issues.map((i) => i.path)).toContain("Fallback.fallbacks.a[0]")
      }))

    it.effect("an unknown provider name is rejected with its path; a known one is resolved", () =>
      Effect.gen(function*() {
        const error = yield* buildError(routerLayer({
          deployments: [dep("a", "g", "fake"), dep("b", "g", "nope")],
          providers: { fake }
        }))
        const issue = error.issues.find((i) => i.path === "deployments[1].provider")
        expect(issue?.message).toContain("unknown provider \"nope\"")
        expect(error.issues.map((i) => i.path)).not.toContain("deployments[0].provider")

        const reply = yield* Router.chat(ask("g")).pipe(
          Effect.provide(routerLayer({ deployments: [dep("a", "g", "fake")], providers: { fake } }))
        )
        expect(reply.route.deploymentId).toBe("a")
      }))

    it.effect("duplicate deployment ids are rejected", () =>
      Effect.gen(function*() {
        const error = yield* buildError(routerLayer({ deployments: [dep("same", "g", fake), dep("same", "h", fake)] }))
        expect(error.issues.map((i) => i.path)).toContain("deployments[1].id")
      }))
  })
})
