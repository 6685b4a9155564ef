/**
 * Policies that compose per request: options beside the body, policies read from the request's
 * context, per-group retry policies, what a retry policy and a selector can see and say, a
 * content-filtered reply as a content-policy error, and streams that commit only at their first
 * content.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Context, Duration, Effect, Fiber, Layer, Schedule, Stream, TestClock } from "effect"
import { Cooldown, Errors, Fallback, type Provider, RetrySchedule, Router, Selector } from "../src/index.js"
import { FakeProvider } from "../src/testing.js"

const messages = [{ role: "user" as const, content: "hi" }]
const body = (model = "g"): Provider.ChatRequest => ({ model, messages })

/** Always picks "a" when it is a candidate. */
const preferA = Selector.make((cs) => Effect.succeed(cs.find((c) => c.deployment.id === "a") ?? cs[0]))

/** Runs `effect` while the TestClock advances an hour. */
const settled = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(Effect.either(effect))
    yield* TestClock.adjust("1 hour")
    return yield* Fiber.join(fiber)
  })

/** a, b in group g; z in group backup; the router as an app would compose it. */
const routerOf = (fake: FakeProvider.FakeProvider, extra: Partial<Router.Config> = {}) =>
  Router.layer({
    deployments: [
      { id: "a", group: "g", provider: fake, model: "m", tags: ["eu"] },
      { id: "b", group: "g", provider: fake, model: "m" },
      { id: "z", group: "backup", provider: fake, model: "m" }
    ],
    ...extra
  }).pipe(
    Layer.provide(preferA),
    Layer.provide(Fallback.layer({ fallbacks: { g: ["backup"] } })),
    Layer.provide(Cooldown.disabled),
    Layer.provideMerge(Router.defaults)
  )

const trail = (attempts: ReadonlyArray<Router.Attempt> | undefined) =>
  (attempts ?? []).map((a) => a.error === undefined ? a.deploymentId : `${a.deploymentId}!${a.error}`)

describe("per-request options", () => {
  it.effect("retries: 0 makes one attempt per group; retries: 4 makes five", () => {
    const fake = FakeProvider.unsafeMake({ byDeployment: { a: { failure: 503 }, b: { failure: 503 }, z: { failure: 503 } } })
    return Effect.gen(function*() {
      const none = yield* settled(Router.chat(body(), { retries: 0, fallbacks: false }))
      expect(none._tag === "Left" && trail(none.left.attempts)).toEqual(["a!ServerError"])
      const five = yield* settled(Router.chat(body(), { retries: 4, fallbacks: false }))
      expect(five._tag === "Left" && five.left.attempts).toHaveLength(5)
    }).pipe(Effect.provide(routerOf(fake)))
  })

  it.effect("fallbacks replaces the group's list for this request; false turns fallbacks off", () => {
    const fake = FakeProvider.unsafeMake({ byDeployment: { a: { failure: 503 }, b: { failure: 503 } } })
    return Effect.gen(function*() {
      const withList = yield* Router.chat(body(), { fallbacks: ["backup"] })
      expect(withList.route.group).toBe("backup")
      const off = yield* settled(Router.chat(body(), { fallbacks: false }))
      expect(off._tag).toBe("Left")
      expect(off._tag === "Left" && off.left.attempts?.every((x) => x.group === "g")).toBe(true)
    }).pipe(Effect.provide(routerOf(fake)))
  })

  it.effect("timeout bounds each attempt of this request", () => {
    const fake = FakeProvider.unsafeMake({ byDeployment: { a: { latency: "5 seconds" } } })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Router.chat(body(), { timeout: "1 second" }))
      yield* TestClock.adjust("1 second")
      const reply = yield* Fiber.join(fiber)
      expect(trail(reply.route.attempts)).toEqual(["a!Timeout", "b"])
    }).pipe(Effect.provide(routerOf(fake)))
  })

  it.effect("deadline bounds the whole request, retries and waits included", () => {
    const fake = FakeProvider.unsafeMake({ failure: { status: 503, latency: "2 seconds" } })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Effect.flip(Router.chat(body(), { deadline: "5 seconds", fallbacks: false })))
      yield* TestClock.adjust("5 seconds")
      const error = yield* Fiber.join(fiber)
      expect(error._tag).toBe("Timeout")
      expect(error.message).toContain("deadline")
      // a (0-2 s), b (2-4 s), a again (4 s, cancelled at 5 s)
      expect(error.attempts?.map((x) => x.outcome)).toEqual(["failed", "failed", "cancelled"])
      expect((yield* fake.calls).map((c) => c.outcome)).toEqual(["ServerError", "ServerError", "interrupted"])
    }).pipe(Effect.provide(routerOf(fake)))
  })

  it.effect("tags restrict this request to deployments carrying them", () => {
    const fake = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      const reply = yield* Router.chat({ ...body(), metadata: { tags: [] } }, { tags: ["eu"] })
      expect(reply.route.deploymentId).toBe("a")
      const none = yield* Effect.flip(Router.chat(body(), { tags: ["us"], fallbacks: false }))
      expect(none._tag).toBe("NoDeploymentAvailable")
    }).pipe(Effect.provide(routerOf(fake)))
  })

  it.effect("deployment pins the request to one deployment", () => {
    const fake = FakeProvider.unsafeMake({ byDeployment: { b: { failure: { first: 1, error: 503 } } } })
    return Effect.gen(function*() {
      const reply = yield* settled(Router.chat(body(), { deployment: "b", retries: 1 }))
      expect(reply._tag === "Right" && trail(reply.right.route.attempts)).toEqual(["b!ServerError", "b"])
    }).pipe(Effect.provide(routerOf(fake)))
  })

  it.effect("bad options fail with InvalidRequest naming each, before anything is sent", () => {
    const fake = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      const error = yield* Effect.flip(
        Router.chat(body(), { retries: -1, deployment: "nope", fallbacks: ["atlantis"], timeout: "soon" } as unknown as Router.RequestOptions)
      )
      expect(error._tag).toBe("InvalidRequest")
      if (error._tag !== "InvalidRequest") return
      expect(error.issues.map((i) => i.path).sort()).toEqual(["options.retries", "options.timeout"])
      const semantic = yield* Effect.flip(Router.chat(body(), { deployment: "z", fallbacks: ["atlantis"] }))
      expect(semantic._tag === "InvalidRequest" && semantic.issues.map((i) => i.path)).toEqual([
        "options.deployment",
        "options.fallbacks[0]"
      ])
      const stream = yield* Effect.flip(Stream.runDrain(Router.stream(body(), { retries: 1.5 })))
      expect(stream._tag).toBe("InvalidRequest")
      expect(yield* fake.callCount).toBe(0)
    }).pipe(Effect.provide(routerOf(fake)))
  })
})

describe("policies read at request time", () => {
  it.effect("Effect.provide(RetrySchedule.none) around one call makes one attempt (before: 3)", () => {
    const fake = FakeProvider.unsafeMake({ failure: 503 })
    return Effect.gen(function*() {
      const once = yield* settled(Router.chat(body(), { fallbacks: false }).pipe(Effect.provide(RetrySchedule.none)))
      expect(once._tag === "Left" && once.left.attempts).toHaveLength(1)
      // the next call, outside, has the router's policy again
      const thrice = yield* settled(Router.chat(body(), { fallbacks: false }))
      expect(thrice._tag === "Left" && thrice.left.attempts).toHaveLength(3)
    }).pipe(Effect.provide(routerOf(fake)))
  })

  it.effect("a tenant's policies apply to every call inside its provide", () => {
    const fake = FakeProvider.unsafeMake({ byDeployment: { a: { failure: 503 }, b: { failure: 503 } } })
    const tenant = Layer.mergeAll(RetrySchedule.none, Fallback.layer({ fallbacks: {} }))
    return Effect.gen(function*() {
      const results = yield* Effect.forEach([1, 2], () => settled(Router.chat(body()))).pipe(Effect.provide(tenant))
      for (const result of results) {
        expect(result._tag === "Left" && trail(result.left.attempts)).toEqual(["a!ServerError"])
      }
    }).pipe(Effect.provide(routerOf(fake)))
  })

  it.effect("the defaults Router.defaults puts in the app's context never override the router's own policies", () => {
    const fake = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      // routerOf provides preferA to the router and merges Router.defaults (weighted) into the context
      for (let i = 0; i < 20; i++) expect((yield* Router.chat(body())).route.deploymentId).toBe("a")
    }).pipe(Effect.provide(routerOf(fake)))
  })

  it.effect("per-group retry policies (RetrySchedule.byGroup); an unknown group is refused when built", () => {
    const fake = FakeProvider.unsafeMake({ failure: 503 })
    const byGroup = RetrySchedule.byGroup({ backup: RetrySchedule.make({ retries: 4, base: 0 }) }, RetrySchedule.make({ retries: 0 }))
    return Effect.gen(function*() {
      const error = yield* Effect.flip(Router.chat(body()).pipe(Effect.provide(byGroup)))
      expect(trail("attempts" in error ? error.attempts : undefined)).toEqual(["a!ServerError", ...Array.from({ length: 5 }, () => "z!ServerError")])
      const refused = yield* Effect.flip(
        Layer.build(
          Router.layer({ deployments: [{ id: "a", group: "g", provider: fake, model: "m" }] }).pipe(
            Layer.provide(RetrySchedule.byGroup({ atlantis: RetrySchedule.make() })),
            Layer.provide(Router.defaults)
          )
        ).pipe(Effect.scoped)
      )
      expect(refused.issues.map((i) => i.path)).toEqual(["RetrySchedule.byGroup.atlantis"])
    }).pipe(Effect.provide(routerOf(fake)))
  })

  it.effect("a retry policy sees the attempt: its error, deployment, number, and whether others remain", () => {
    const fake = FakeProvider.unsafeMake({ failure: 503 })
    const seen: Array<RetrySchedule.AttemptFailure> = []
    const recording = RetrySchedule.fromSchedule(
      Schedule.recurs(3).pipe(Schedule.whileInput((failure: RetrySchedule.AttemptFailure) => {
        seen.push(failure)
        return failure.othersAvailable
      }))
    )
    return Effect.gen(function*() {
      yield* settled(Router.chat(body(), { fallbacks: false }).pipe(Effect.provide(recording)))
      // a, b, a, b: each failure is seen, numbered, with another deployment to go to (the 4th
      // ends the 3 retries before the predicate is asked)
      expect(seen.map((f) => [f.error._tag, f.deployment?.id, f.attempt, f.othersAvailable])).toEqual([
        ["ServerError", "a", 1, true],
        ["ServerError", "b", 2, true],
        ["ServerError", "a", 3, true]
      ])
      expect(yield* fake.callCount).toBe(4)
      // pinned to one deployment, no other can take the retry: the policy above stops at once
      seen.length = 0
      yield* settled(Router.chat(body(), { fallbacks: false, deployment: "a" }).pipe(Effect.provide(recording)))
      expect(seen.map((f) => [f.deployment?.id, f.attempt, f.othersAvailable])).toEqual([["a", 1, false]])
      expect(yield* fake.callCount).toBe(5)
    }).pipe(Effect.provide(routerOf(fake)))
  })
})

describe("selectors that say no, and that use services", () => {
  class Region extends Context.Tag("test/Region")<Region, string>() {}

  const regional = Selector.fromEffect(Effect.gen(function*() {
    const region = yield* Region
    return {
      pick: (candidates) => {
        const fitting = candidates.filter((c) => c.deployment.tags.includes(region))
        return fitting.length > 0 ? Effect.succeed(fitting[0]) : Effect.fail(new Selector.NoFit({ message: `nothing in ${region}` }))
      }
    }
  }))

  const routed = (region: string) =>
    Router.layer({
      deployments: [
        { id: "a", group: "g", provider: FakeProvider.unsafeMake(), model: "m", tags: ["eu"] },
        { id: "b", group: "g", provider: FakeProvider.unsafeMake(), model: "m", tags: ["us"] }
      ]
    }).pipe(Layer.provide(regional), Layer.provide(Layer.succeed(Region, region)), Layer.provide(Router.defaults))

  it.effect("a selector built from a service picks with it", () =>
    Effect.gen(function*() {
      expect((yield* Router.chat(body())).route.deploymentId).toBe("b")
    }).pipe(Effect.provide(routed("us"))))

  it.effect("NoFit becomes NoDeploymentAvailable \"none_fits\" with the selector's reason", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Router.chat(body()))
      expect(error._tag).toBe("NoDeploymentAvailable")
      if (error._tag !== "NoDeploymentAvailable") return
      expect(error.reason).toBe("none_fits")
      expect(error.message).toContain("nothing in ap")
    }).pipe(Effect.provide(routed("ap"))))
})

describe("content_filter as a content-policy error (opt-in)", () => {
  const filteredReply = (text: string): Provider.ChatResponse => ({
    id: "r",
    object: "chat.completion",
    created: 0,
    model: "m",
    choices: [{ index: 0, message: { role: "assistant", content: text }, finish_reason: "content_filter" }],
    usage: { prompt_tokens: 10, completion_tokens: 0, total_tokens: 10 }
  })

  const layer = (fake: FakeProvider.FakeProvider, contentFilterIsError?: boolean) =>
    Router.layer({
      deployments: [
        { id: "a", group: "g", provider: fake, model: "m", pricing: { inputCostPerToken: 0.001, outputCostPerToken: 0.001 } },
        { id: "lenient", group: "lenient", provider: fake, model: "m" }
      ],
      ...(contentFilterIsError === undefined ? {} : { contentFilterIsError })
    }).pipe(Layer.provide(Fallback.layer({ contentPolicyFallbacks: { g: ["lenient"] } })), Layer.provide(Router.defaults))

  const fake = () => FakeProvider.unsafeMake({ byDeployment: { a: { reply: filteredReply("") }, lenient: { reply: "fine" } } })

  it.effect("off by default: the filtered reply is returned", () =>
    Effect.gen(function*() {
      const reply = yield* Router.chat(body())
      expect(reply.route.deploymentId).toBe("a")
      expect(reply.choices[0].finish_reason).toBe("content_filter")
    }).pipe(Effect.provide(layer(fake()))))

  it.effect("on: it takes the content-policy fallback; its usage is still paid", () =>
    Effect.gen(function*() {
      const reply = yield* Router.chat(body())
      expect(reply.route.group).toBe("lenient")
      expect(trail(reply.route.attempts)).toEqual(["a!ContentPolicy", "lenient"])
      expect(reply.route.cost).toBeCloseTo(0.01, 10)
    }).pipe(Effect.provide(layer(fake(), true))))

  it.effect("per request: contentFilterIsError overrides the router's setting", () =>
    Effect.gen(function*() {
      const reply = yield* Router.chat(body(), { contentFilterIsError: true })
      expect(reply.route.group).toBe("lenient")
    }).pipe(Effect.provide(layer(fake()))))
})

describe("streams commit at their first content", () => {
  const chunk = (delta: Provider.ChatChunk["choices"][number]["delta"]): Provider.ChatChunk => ({
    id: "c",
    object: "chat.completion.chunk",
    created: 0,
    model: "m",
    choices: [{ index: 0, delta, finish_reason: null }]
  })

  const finish: Provider.ChatChunk = { ...chunk({}), choices: [{ index: 0, delta: {}, finish_reason: "stop" }] }

  /** A provider whose deployment "flaky" sends a role-only chunk, then fails; others stream "hello". */
  const roleThenError: Provider.Provider = {
    name: "scripted",
    enforcesTimeout: true,
    chat: (_request, target) => Effect.die(`not used (${target.deploymentId})`),
    embed: (_request, target) => Effect.die(`not used (${target.deploymentId})`),
    stream: (_request, target) =>
      target.deploymentId === "flaky"
        ? Stream.concat(
          Stream.make(chunk({ role: "assistant", content: "" })),
          Stream.fail(new Errors.ServerError({ provider: "scripted", deploymentId: target.deploymentId, message: "boom" }))
        )
        : Stream.make(chunk({ role: "assistant", content: "" }), chunk({ content: "hello" }), finish)
  }

  it.effect("an error right after a role-only first chunk still fails over (before: a ServerError with no text)", () =>
    Effect.gen(function*() {
      const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(Router.stream(body())))
      expect(chunks.map((c) => c.choices[0]?.delta.content ?? "").join("")).toBe("hello")
      const route = chunks.at(-1)?.route
      expect(trail(route?.attempts)).toEqual(["flaky!ServerError", "steady"])
      // the held role-only chunk of the winner is delivered, once
      expect(chunks.filter((c) => c.choices[0]?.delta.role === "assistant")).toHaveLength(1)
    }).pipe(
      Effect.provide(
        Router.layer({
          deployments: [
            { id: "flaky", group: "g", provider: roleThenError, model: "m" },
            { id: "steady", group: "g", provider: roleThenError, model: "m" }
          ]
        }).pipe(
          Layer.provide(Selector.make((cs) => Effect.succeed(cs.find((c) => c.deployment.id === "flaky") ?? cs[0]))),
          Layer.provide(Router.defaults)
        )
      )
    ))

  it.effect("a stream that failed before content is closed before the next attempt opens (and the retried stream ends with every upstream closed)", () => {
    const log: Array<string> = []
    const logged: Provider.Provider = {
      ...roleThenError,
      stream: (request, target) =>
        Stream.acquireRelease(
          Effect.sync(() => log.push(`${target.deploymentId} open`)),
          () => Effect.sync(() => log.push(`${target.deploymentId} closed`))
        ).pipe(Stream.flatMap(() => roleThenError.stream(request, target)))
    }
    return Effect.gen(function*() {
      const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(Router.stream(body())))
      expect(chunks.map((c) => c.choices[0]?.delta.content ?? "").join("")).toBe("hello")
      expect(log).toEqual(["flaky open", "flaky closed", "steady open", "steady closed"])
    }).pipe(
      Effect.provide(
        Router.layer({
          deployments: [
            { id: "flaky", group: "g", provider: logged, model: "m" },
            { id: "steady", group: "g", provider: logged, model: "m" }
          ]
        }).pipe(
          Layer.provide(Selector.make((cs) => Effect.succeed(cs.find((c) => c.deployment.id === "flaky") ?? cs[0]))),
          Layer.provide(Router.defaults)
        )
      )
    )
  })

  it.effect("a stream with deadline fails with Timeout when no content came in time", () => {
    const fake = FakeProvider.unsafeMake({ latency: "10 seconds" })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Effect.flip(Stream.runDrain(Router.stream(body(), { deadline: Duration.seconds(3) }))))
      yield* TestClock.adjust("3 seconds")
      expect((yield* Fiber.join(fiber))._tag).toBe("Timeout")
    }).pipe(Effect.provide(routerOf(fake)))
  })
})
