/**
 * Pre-call filters: context window, tags (all, any, exclude, the "default" rule), region and
 * priority tiers, alone and combined; the error that explains each filtered-out deployment; the
 * store's fast path kept when no filter applies; bad config and options refused with their
 * paths; and a property: a request never goes to a deployment a filter refuses.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, Fiber, Layer, Option, Random, Stream, TestClock } from "effect"
import * as fc from "effect/FastCheck"
import { Cooldown, Deployment, type Errors, Fallback, type Provider, RetrySchedule, Router, RouterState, Selector, Tokens } from "../src/index.js"
import { FakeProvider } from "../src/testing.js"
import { watchFastPath } from "./support/fastPath.js"

const fake = FakeProvider.unsafeMake()

/** A one-message chat request to `model`: `words` words of prose (about 5 characters each). */
const ask = (model: string, extra: Partial<Provider.ChatRequest> = {}, words = 2): Provider.ChatRequest => ({
  model,
  messages: [{ role: "user", content: Array.from({ length: words }, () => "word").join(" ") }],
  ...extra
})

/** Picks the first candidate and records, for each pick, the ids it was offered. */
const spying = () => {
  const offered: Array<ReadonlyArray<string>> = []
  const layer = Selector.make((candidates) => {
    offered.push(candidates.map((c) => c.deployment.id).sort())
    return Effect.succeed(candidates[0])
  })
  return { offered, layer }
}

const routerOf = (
  deployments: ReadonlyArray<Deployment.DeploymentConfig>,
  options: {
    readonly selector?: Layer.Layer<Selector.Selector>
    readonly fallback?: Fallback.Options
    readonly cooldown?: Layer.Layer<Cooldown.Cooldown, Errors.InvalidConfig, RouterState.RouterState>
  } = {}
) =>
  Router.layer({ deployments }).pipe(
    Layer.provide(
      Layer.mergeAll(
        options.selector ?? Selector.make((candidates) => Effect.succeed(candidates[0])),
        RetrySchedule.layer({ base: 0 }),
        Fallback.layer(options.fallback ?? {}),
        options.cooldown ?? Cooldown.disabled
      )
    ),
    Layer.provideMerge(Router.defaults)
  )

const dep = (id: string, group: string, extra: Partial<Deployment.DeploymentConfig> = {}): Deployment.DeploymentConfig => ({
  id,
  group,
  provider: fake,
  model: `${id}-model`,
  ...extra
})

/** The deployment ids a request may go to: those its selector was offered on its first pick. */
const candidatesFor = (offered: Array<ReadonlyArray<string>>, request: Effect.Effect<unknown, unknown, Router.Router>) =>
  Effect.gen(function*() {
    offered.length = 0
    yield* request
    return offered[0]
  })

const noneFits = (error: Errors.RouterError) => {
  expect(error._tag).toBe("NoDeploymentAvailable")
  if (error._tag !== "NoDeploymentAvailable") throw new Error("unreachable")
  expect(error.reason).toBe("none_fits")
  return error
}

/** Opens `id`'s circuit for `ms` from now. */
const cool = (id: string, ms: number) =>
  Effect.gen(function*() {
    const router = yield* Router.Router
    const store = yield* RouterState.RouterState
    const d = router.deployments.find((x) => x.id === id)!
    const now = yield* store.now
    yield* store.modifyCooldown([d], 0, () =>
      [undefined, { record: { status: "open", until: now + ms, ejections: 1, reason: "failures" }, resetOutcomes: false }] as const)
  })

describe("context window", () => {
  const deployments = [
    dep("small", "g", { contextWindow: 100 }),
    dep("large", "g", { contextWindow: 10_000 }),
    dep("unknown", "g")
  ]

  it.effect("a request whose estimated prompt plus max_tokens exceeds a deployment's window never goes there", () => {
    const { offered, layer } = spying()
    return Effect.gen(function*() {
      // about 20 tokens: fits everywhere
      expect(yield* candidatesFor(offered, Router.chat(ask("g", {}, 16)))).toEqual(["large", "small", "unknown"])
      // a long prompt: not "small"
      const long = ask("g", {}, 400)
      expect(Tokens.prompt(long)).toBeGreaterThan(100)
      expect(yield* candidatesFor(offered, Router.chat(long))).toEqual(["large", "unknown"])
      // a short prompt, but max_tokens pushes it over (and max_completion_tokens takes precedence)
      expect(yield* candidatesFor(offered, Router.chat(ask("g", { max_tokens: 95 }, 1)))).toEqual(["large", "unknown"])
      expect(yield* candidatesFor(offered, Router.chat(ask("g", { max_tokens: 95, max_completion_tokens: 10 }, 1)))).toEqual([
        "large",
        "small",
        "unknown"
      ])
      // exactly at the window fits
      const exact = ask("g", {}, 1)
      expect(yield* candidatesFor(offered, Router.chat({ ...exact, max_tokens: 100 - Tokens.prompt(exact) }))).toContain("small")
      // beyond every window: only the one without a window is left
      expect(yield* candidatesFor(offered, Router.chat(ask("g", { max_tokens: 20_000 })))).toEqual(["unknown"])
    }).pipe(Effect.provide(routerOf(deployments, { selector: layer })))
  })

  it.effect("embeddings and streams are filtered too (an embedding's input, no output)", () => {
    const { offered, layer } = spying()
    return Effect.gen(function*() {
      const input = Array.from({ length: 600 }, () => "word").join(" ")
      yield* candidatesFor(offered, Router.embed({ model: "g", input }))
      expect(offered[0]).toEqual(["large", "unknown"])
      offered.length = 0
      const chunks = yield* Stream.runCollect(Router.stream(ask("g", {}, 400)))
      expect(Chunk.last(chunks).pipe(Option.map((c) => c.route?.deploymentId))).toEqual(Option.some("large"))
      expect(offered[0]).toEqual(["large", "unknown"])
    }).pipe(Effect.provide(routerOf(deployments, { selector: layer })))
  })

  it.effect("nothing fits: none_fits, each deployment explained, no call made; the context-window fallbacks apply", () => {
    const counted = FakeProvider.unsafeMake()
    const d = (id: string, group: string, contextWindow?: number) => ({ ...dep(id, group, contextWindow === undefined ? {} : { contextWindow }), provider: counted })
    return Effect.gen(function*() {
      const request = ask("small", { max_tokens: 9000 })
      const tokens = Tokens.prompt(request) + 9000
      const error = noneFits(yield* Effect.flip(Router.chat(request, { fallbacks: false })))
      expect(error.filtered).toEqual([
        { deploymentId: "s1", filters: ["context_window"], reason: `context window 8192 < ${tokens} estimated tokens` },
        { deploymentId: "s2", filters: ["context_window"], reason: `context window 4096 < ${tokens} estimated tokens` }
      ])
      expect(error.message).toContain(`s1 (context window 8192 < ${tokens} estimated tokens)`)
      expect(error.message).toContain(`s2 (context window 4096 < ${tokens} estimated tokens)`)
      expect(yield* counted.callCount).toBe(0)
      // with the group's lists: the context-window one, not the generic one
      const reply = yield* Router.chat(request)
      expect(reply.route.group).toBe("large")
      expect(reply.route.requestedGroup).toBe("small")
      // a request that fits stays
      expect((yield* Router.chat(ask("small"))).route.group).toBe("small")
    }).pipe(Effect.provide(routerOf([d("s1", "small", 8192), d("s2", "small", 4096), d("l", "large", 200_000), d("o", "other")], {
      fallback: { fallbacks: { small: ["other"] }, contextWindowFallbacks: { small: ["large"] } }
    })))
  })

  it.effect("filtered for another reason than size: the generic fallbacks", () =>
    Effect.gen(function*() {
      const reply = yield* Router.chat(ask("small", { max_tokens: 9000 }), { region: "eu" })
      expect(reply.route.group).toBe("other")
    }).pipe(Effect.provide(routerOf([
      dep("s1", "small", { contextWindow: 8192 }),
      dep("s2", "small", { contextWindow: 100_000, region: "us" }),
      dep("l", "large", { region: "eu" }),
      dep("o", "other", { region: "eu" })
    ], { fallback: { fallbacks: { small: ["other"] }, contextWindowFallbacks: { small: ["large"] } } }))))
})

describe("tags", () => {
  const deployments = [
    dep("a", "g", { tags: ["eu", "gpu"] }),
    dep("b", "g", { tags: ["eu", "tpu"] }),
    dep("c", "g", { tags: ["us", "gpu"] }),
    dep("d", "g", { tags: ["eu", "gpu", "preview"] })
  ]

  it.effect("all (a list, the default meaning), any, exclude, alone and together, with metadata.tags", () => {
    const { offered, layer } = spying()
    const body = ask("g")
    const routed = (options: Router.RequestOptions, metadataTags?: ReadonlyArray<string>) =>
      candidatesFor(offered, Router.chat(metadataTags === undefined ? body : { ...body, metadata: { tags: metadataTags } }, options))
    return Effect.gen(function*() {
      expect(yield* routed({ tags: ["eu", "gpu"] })).toEqual(["a", "d"])
      expect(yield* routed({ tags: { all: ["eu", "gpu"] } })).toEqual(["a", "d"])
      expect(yield* routed({ tags: { any: ["tpu", "preview"] } })).toEqual(["b", "d"])
      expect(yield* routed({ tags: { exclude: ["preview", "us"] } })).toEqual(["a", "b"])
      expect(yield* routed({ tags: { all: ["eu"], exclude: ["preview"] } })).toEqual(["a", "b"])
      expect(yield* routed({ tags: { all: ["eu"], any: ["gpu"], exclude: ["preview"] } })).toEqual(["a"])
      // metadata.tags are all-of, joined by the options' all
      expect(yield* routed({ tags: { any: ["gpu"] } }, ["eu"])).toEqual(["a", "d"])
      expect(yield* routed({ tags: ["gpu"] }, ["eu"])).toEqual(["a", "d"])
      expect(yield* routed({ tags: { exclude: [] } }, ["us"])).toEqual(["c"])
    }).pipe(Effect.provide(routerOf(deployments, { selector: layer })))
  })

  it.effect("nothing left: each deployment explained", () =>
    Effect.gen(function*() {
      const error = noneFits(yield* Effect.flip(Router.chat(ask("g"), { tags: { all: ["eu"], any: ["fpga", "preview"], exclude: ["gpu"] } })))
      expect(error.filtered).toEqual([
        { deploymentId: "a", filters: ["tags"], reason: "carries none of fpga, preview; carries excluded tag gpu" },
        { deploymentId: "b", filters: ["tags"], reason: "carries none of fpga, preview" },
        { deploymentId: "c", filters: ["tags"], reason: "lacks tag eu; carries none of fpga, preview; carries excluded tag gpu" },
        { deploymentId: "d", filters: ["tags"], reason: "carries excluded tag gpu" }
      ])
      expect(error.message).toBe(
        "no deployment of \"g\" fits the request: a (carries none of fpga, preview; carries excluded tag gpu), " +
          "b (carries none of fpga, preview), c (lacks tag eu; carries none of fpga, preview; carries excluded tag gpu), " +
          "d (carries excluded tag gpu)"
      )
      const one = noneFits(yield* Effect.flip(Router.chat(ask("g", { metadata: { tags: ["asia", "eu"] } }))))
      expect(one.filtered!.map((f) => f.reason)).toEqual(["lacks tag asia", "lacks tag asia", "lacks tags asia, eu", "lacks tag asia"])
    }).pipe(Effect.provide(routerOf(deployments))))

  it.effect("bad options: InvalidRequest naming the path, nothing sent", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        [{ tags: "eu" }, "options.tags"],
        [{ tags: { any: [] } }, "options.tags.any"],
        [{ tags: { all: [1] } }, "options.tags.all[0]"],
        [{ tags: { alll: ["eu"] } }, "options.tags.alll"],
        [{ region: "" }, "options.region"],
        [{ region: [] }, "options.region"],
        [{ region: 7 }, "options.region"]
      ]
      for (const [options, path] of cases) {
        const error = yield* Effect.flip(Router.chat(ask("g"), options as Router.RequestOptions))
        expect(error._tag).toBe("InvalidRequest")
        if (error._tag === "InvalidRequest") expect(error.issues.map((i) => i.path)).toEqual([path])
      }
      const meta = yield* Effect.flip(Router.chat(ask("g", { metadata: { region: [""] } })))
      expect(meta._tag === "InvalidRequest" && meta.issues.map((i) => i.path)).toEqual(["metadata.region[0]"])
    }).pipe(Effect.provide(routerOf(deployments))))
})

describe("untagged requests and \"default\"", () => {
  const deployments = [
    dep("x", "g", { tags: ["default"] }),
    dep("x2", "g", { tags: ["default", "beta"] }),
    dep("y", "g"),
    dep("z", "g", { tags: ["eu"] }),
    dep("p", "plain"),
    dep("q", "plain", { tags: ["eu"] })
  ]

  it.effect("go to the deployments tagged default when the group has any, else to all", () => {
    const { offered, layer } = spying()
    return Effect.gen(function*() {
      expect(yield* candidatesFor(offered, Router.chat(ask("g")))).toEqual(["x", "x2"])
      expect(yield* candidatesFor(offered, Router.chat(ask("g", { metadata: { tags: [] } })))).toEqual(["x", "x2"])
      // a request with tags is matched on them
      expect(yield* candidatesFor(offered, Router.chat(ask("g"), { tags: ["eu"] }))).toEqual(["z"])
      expect(yield* candidatesFor(offered, Router.chat(ask("g"), { tags: { any: ["eu", "beta"] } }))).toEqual(["x2", "z"])
      // excluding is not asking for tags: still the default ones, less the excluded
      expect(yield* candidatesFor(offered, Router.chat(ask("g"), { tags: { exclude: ["beta"] } }))).toEqual(["x"])
      // no default-tagged deployment in "plain": all
      expect(yield* candidatesFor(offered, Router.chat(ask("plain")))).toEqual(["p", "q"])
      // a pin names its deployment: the rule does not apply to it
      expect((yield* Router.chat(ask("g"), { deployment: "y" })).route.deploymentId).toBe("y")
    }).pipe(Effect.provide(routerOf(deployments, { selector: layer })))
  })

  it.effect("no default deployment available: none_fits explains the rule", () =>
    Effect.gen(function*() {
      const error = noneFits(yield* Effect.flip(Router.chat(ask("g"), { tags: { exclude: ["default"] } })))
      expect(error.filtered!.map((f) => [f.deploymentId, f.reason])).toEqual([
        ["x", "carries excluded tag default"],
        ["y", "not tagged \"default\" (the request has no tags)"]
      ])
    }).pipe(Effect.provide(routerOf([dep("x", "g", { tags: ["default"] }), dep("y", "g")]))))
})

describe("region", () => {
  const deployments = [
    dep("eu1", "g", { region: "eu-west-1" }),
    dep("eu2", "g", { region: "eu-central-1" }),
    dep("us", "g", { region: "us-east-1" }),
    dep("nowhere", "g")
  ]

  it.effect("options.region (one or a list), else metadata.region; deployments elsewhere or without a region are left out", () => {
    const { offered, layer } = spying()
    return Effect.gen(function*() {
      expect(yield* candidatesFor(offered, Router.chat(ask("g")))).toEqual(["eu1", "eu2", "nowhere", "us"])
      expect(yield* candidatesFor(offered, Router.chat(ask("g"), { region: "eu-west-1" }))).toEqual(["eu1"])
      expect(yield* candidatesFor(offered, Router.chat(ask("g"), { region: ["eu-west-1", "eu-central-1"] }))).toEqual(["eu1", "eu2"])
      expect(yield* candidatesFor(offered, Router.chat(ask("g", { metadata: { region: "us-east-1" } })))).toEqual(["us"])
      expect(yield* candidatesFor(offered, Router.chat(ask("g", { metadata: { region: ["us-east-1", "eu-west-1"] } })))).toEqual(["eu1", "us"])
      // the option takes the place of the metadata
      expect(yield* candidatesFor(offered, Router.chat(ask("g", { metadata: { region: "us-east-1" } }), { region: "eu-central-1" }))).toEqual([
        "eu2"
      ])
      // options without a region keep the metadata's
      expect(yield* candidatesFor(offered, Router.chat(ask("g", { metadata: { region: "us-east-1" } }), { tags: { exclude: ["x"] } })))
        .toEqual(["us"])
    }).pipe(Effect.provide(routerOf(deployments, { selector: layer })))
  })

  it.effect("nowhere to go: each deployment explained", () =>
    Effect.gen(function*() {
      const error = noneFits(yield* Effect.flip(Router.chat(ask("g"), { region: "ap-south-1" })))
      expect(error.filtered!.map((f) => `${f.deploymentId}: ${f.reason}`)).toEqual([
        "eu1: region eu-west-1, asked ap-south-1",
        "eu2: region eu-central-1, asked ap-south-1",
        "us: region us-east-1, asked ap-south-1",
        "nowhere: no region, asked ap-south-1"
      ])
      const two = noneFits(yield* Effect.flip(Router.chat(ask("g"), { region: ["ap-south-1", "sa-east-1"] })))
      expect(two.filtered![0].reason).toBe("region eu-west-1, asked one of ap-south-1, sa-east-1")
      expect(two.message).toContain("us (region us-east-1, asked one of ap-south-1, sa-east-1)")
    }).pipe(Effect.provide(routerOf(deployments))))
})

describe("filters combined", () => {
  it.effect("tags, region and context window together; the error names every reason of every deployment", () => {
    const { offered, layer } = spying()
    return Effect.gen(function*() {
      const big = ask("g", { max_tokens: 5000 })
      expect(yield* candidatesFor(offered, Router.chat(big, { region: "eu", tags: ["gpu"] }))).toEqual(["ok"])
      const error = noneFits(yield* Effect.flip(Router.chat(ask("g", { max_tokens: 50_000 }), { region: "eu", tags: ["gpu"] })))
      const tokens = Tokens.prompt(ask("g")) + 50_000
      expect(error.filtered).toEqual([
        { deploymentId: "ok", filters: ["context_window"], reason: `context window 32000 < ${tokens} estimated tokens` },
        { deploymentId: "small", filters: ["context_window"], reason: `context window 4096 < ${tokens} estimated tokens` },
        { deploymentId: "us", filters: ["region"], reason: "region us, asked eu" },
        {
          deploymentId: "bad",
          filters: ["tags", "region", "context_window"],
          reason: `lacks tag gpu; region us, asked eu; context window 1000 < ${tokens} estimated tokens`
        }
      ])
      expect(error.message).toMatch(/^no deployment of "g" fits the request: ok \(context window 32000 < \d+ estimated tokens\), small/)
    }).pipe(Effect.provide(routerOf([
      dep("ok", "g", { region: "eu", tags: ["gpu"], contextWindow: 32_000 }),
      dep("small", "g", { region: "eu", tags: ["gpu"], contextWindow: 4096 }),
      dep("us", "g", { region: "us", tags: ["gpu"] }),
      dep("bad", "g", { region: "us", contextWindow: 1000 })
    ], { selector: layer })))
  })

  it.effect("some filtered out, the others cooling: cooling_down, and the filtered ones named", () =>
    Effect.gen(function*() {
      yield* cool("eu", 10_000)
      const error = yield* Effect.flip(Router.chat(ask("g"), { region: "eu", fallbacks: false }))
      expect(error._tag === "NoDeploymentAvailable" && error.reason).toBe("cooling_down")
      if (error._tag !== "NoDeploymentAvailable") return
      expect(error.filtered).toEqual([{ deploymentId: "us", filters: ["region"], reason: "region us, asked eu" }])
      expect(error.message).toContain("1 filtered out: us (region us, asked eu)")
    }).pipe(Effect.provide(routerOf([dep("eu", "g", { region: "eu" }), dep("us", "g", { region: "us" })], { cooldown: Cooldown.layer() }))))
})

describe("priority tiers (order)", () => {
  it.effect("the lowest tier with an available deployment; the next when it is cooling; back when it returns", () => {
    const { offered, layer } = spying()
    return Effect.gen(function*() {
      expect(yield* candidatesFor(offered, Router.chat(ask("g")))).toEqual(["p0", "q0"])
      yield* cool("p0", 10_000)
      expect(yield* candidatesFor(offered, Router.chat(ask("g")))).toEqual(["q0"])
      yield* cool("q0", 20_000)
      expect(yield* candidatesFor(offered, Router.chat(ask("g")))).toEqual(["r1"])
      yield* cool("r1", 5_000)
      // deployments without order come after every ordered tier
      expect(yield* candidatesFor(offered, Router.chat(ask("g")))).toEqual(["s"])
      yield* TestClock.adjust("5 seconds")
      expect(yield* candidatesFor(offered, Router.chat(ask("g")))).toEqual(["r1"])
      yield* TestClock.adjust("5 seconds")
      expect(yield* candidatesFor(offered, Router.chat(ask("g")))).toEqual(["p0"])
      yield* TestClock.adjust("10 seconds")
      expect(yield* candidatesFor(offered, Router.chat(ask("g")))).toEqual(["p0", "q0"])
    }).pipe(Effect.provide(routerOf([
      dep("s", "g"),
      dep("r1", "g", { order: 1 }),
      dep("p0", "g", { order: 0 }),
      dep("q0", "g", { order: 0 })
    ], { selector: layer, cooldown: Cooldown.layer() })))
  })

  it.effect("the next tier while the lower one is full; back once its slot is free", () => {
    const slow = FakeProvider.unsafeMake({ latency: "1 second" })
    return Effect.gen(function*() {
      const first = yield* Effect.fork(Router.chat(ask("g")))
      yield* TestClock.adjust("100 millis")
      const second = yield* Effect.fork(Router.chat(ask("g")))
      yield* TestClock.adjust("1 second")
      expect((yield* Fiber.join(first)).route.deploymentId).toBe("primary")
      expect((yield* Fiber.join(second)).route.deploymentId).toBe("backup")
      const third = yield* Effect.fork(Router.chat(ask("g")))
      yield* TestClock.adjust("1 second")
      expect((yield* Fiber.join(third)).route.deploymentId).toBe("primary")
    }).pipe(Effect.provide(routerOf([
      { ...dep("backup", "g", { order: 2 }), provider: slow },
      { ...dep("primary", "g", { order: 1, maxConcurrent: 1 }), provider: slow }
    ], { selector: Selector.weighted })))
  })

  it.effect("retries stay in the tier while it has a deployment the request may use, then go up", () => {
    // 401: retried elsewhere only, so the request never goes back to a0 or b0
    const failing = FakeProvider.unsafeMake({ byDeployment: { a0: { failure: 401 }, b0: { failure: 401 } } })
    return Effect.gen(function*() {
      const reply = yield* Router.chat(ask("g"))
      expect(reply.route.attempts.map((a) => `${a.deploymentId}:${a.outcome}`)).toEqual(["a0:failed", "b0:failed", "c1:won"])
    }).pipe(Effect.provide(routerOf([
      { ...dep("c1", "g", { order: 1 }), provider: failing },
      { ...dep("a0", "g", { order: 0 }), provider: failing },
      { ...dep("b0", "g", { order: 0 }), provider: failing }
    ])))
  })

  it.effect("a selector's NoFit in a tier moves the pick to the next tier; in every tier: the lowest tier's reason", () => {
    const refusing = Selector.make((candidates) => {
      const fitting = candidates.filter((c) => !c.deployment.id.startsWith("no"))
      return fitting.length > 0 ? Effect.succeed(fitting[0]) : Effect.fail(new Selector.NoFit({ message: `none in ${candidates[0].deployment.order}` }))
    })
    return Effect.gen(function*() {
      expect((yield* Router.chat(ask("g"))).route.deploymentId).toBe("yes2")
      const error = noneFits(yield* Effect.flip(Router.chat(ask("h"), { fallbacks: false })))
      expect(error.message).toContain("none in 0")
    }).pipe(Effect.provide(routerOf([
      dep("no0", "g", { order: 0 }),
      dep("no1", "g", { order: 1 }),
      dep("yes2", "g", { order: 2 }),
      dep("no-h0", "h", { order: 0 }),
      dep("no-h1", "h", { order: 1 })
    ], { selector: refusing })))
  })

  it.effect("filters come first: a tier whose deployments are all filtered out is skipped", () => {
    const { offered, layer } = spying()
    return Effect.gen(function*() {
      expect(yield* candidatesFor(offered, Router.chat(ask("g"), { region: "eu" }))).toEqual(["eu1"])
      expect(yield* candidatesFor(offered, Router.chat(ask("g")))).toEqual(["us0"])
    }).pipe(Effect.provide(routerOf([dep("us0", "g", { order: 0, region: "us" }), dep("eu1", "g", { order: 1, region: "eu" })], { selector: layer })))
  })
})

describe("the store's fast path", () => {
  it.effect("kept where no filter applies (tiers, windows the request fits); left where one does", () =>
    Effect.gen(function*() {
      const { promised, routerOf } = yield* watchFastPath
      yield* Effect.gen(function*() {
        const promise = (request: Effect.Effect<unknown, unknown, Router.Router>) =>
          Effect.gen(function*() {
            promised.length = 0
            yield* Effect.either(request)
            return promised
          })
        expect(yield* promise(Router.chat(ask("plain")))).toEqual([true])
        expect(yield* promise(Router.chat(ask("tiered")))).toEqual([true])
        expect(yield* promise(Router.chat(ask("windows")))).toEqual([true])
        expect(yield* promise(Router.chat(ask("windows", { max_tokens: 5000 })))).toEqual([false])
        expect(yield* promise(Router.chat(ask("defaults")))).toEqual([false])
        expect(yield* promise(Router.chat(ask("plain"), { region: "eu" }))).toEqual([false])
        expect(yield* promise(Router.chat(ask("plain"), { tags: { exclude: ["x"] } }))).toEqual([false])
        expect(yield* promise(Router.chat(ask("plain"), { tags: { exclude: [] } }))).toEqual([true])
      }).pipe(
        Effect.provide(
          routerOf({
            deployments: [
              dep("p", "plain", { region: "eu" }),
              dep("t0", "tiered", { order: 0 }),
              dep("t1", "tiered", { order: 1 }),
              dep("w", "windows", { contextWindow: 4096 }),
              dep("w2", "windows"),
              dep("d", "defaults", { tags: ["default"] }),
              dep("d2", "defaults")
            ]
          })
        ),
        Effect.withRandom(Random.make(3))
      )
    }))
})

describe("config", () => {
  const fromConfig = (fields: Record<string, unknown>) => Deployment.fromConfig([{ group: "g", provider: fake, model: "m", ...fields }], {})

  it("order is a non-negative integer, region a non-empty string: InvalidConfig naming the path", () => {
    for (
      const [fields, path] of [
        [{ order: -1 }, "deployments[0].order"],
        [{ order: 1.5 }, "deployments[0].order"],
        [{ order: "1" }, "deployments[0].order"],
        [{ region: "" }, "deployments[0].region"],
        [{ region: ["eu"] }, "deployments[0].region"],
        [{ contextWindow: 0 }, "deployments[0].contextWindow"]
      ] as const
    ) {
      const result = fromConfig(fields)
      expect(Either.isLeft(result) && result.left.issues.map((i) => i.path)).toEqual([path])
    }
    const [d] = Either.getOrThrow(fromConfig({ order: 0, region: "eu-west-1", contextWindow: 8192 }))
    expect(d).toMatchObject({ order: 0, region: "eu-west-1", contextWindow: 8192 })
    const [plain] = Either.getOrThrow(fromConfig({}))
    expect(plain.order).toBeUndefined()
    expect(plain.region).toBeUndefined()
  })

  it.effect("the router refuses a bad one when its layer is built", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.asVoid(Router.Router).pipe(
        Effect.provide(Router.layer({ deployments: [{ group: "g", provider: fake, model: "m", order: -2 }] }).pipe(Layer.provide(Router.defaults)))
      ))
      expect(error.issues).toEqual([{ path: "deployments[0].order", message: "expected a non-negative integer" }])
    }))
})

describe("property: a request never goes to a deployment a filter refuses", () => {
  const tagPool = ["a", "b", "c", "default"] as const
  const regionPool = ["r1", "r2"] as const
  const deploymentSpec = fc.record({
    tags: fc.subarray<string>([...tagPool]),
    region: fc.option(fc.constantFrom(...regionPool), { nil: undefined }),
    contextWindow: fc.option(fc.constantFrom(40, 400, 4000), { nil: undefined }),
    order: fc.option(fc.integer({ min: 0, max: 2 }), { nil: undefined })
  })
  const tagList = fc.subarray(["a", "b", "c"])
  const requestSpec = fc.record({
    all: tagList,
    any: fc.option(fc.subarray(["a", "b", "c"], { minLength: 1 }), { nil: undefined }),
    exclude: fc.option(tagList, { nil: undefined }),
    region: fc.option(fc.oneof(fc.constantFrom(...regionPool), fc.subarray([...regionPool], { minLength: 1 })), { nil: undefined }),
    words: fc.integer({ min: 1, max: 1500 }),
    maxTokens: fc.option(fc.integer({ min: 1, max: 3000 }), { nil: undefined })
  })

  type D = typeof deploymentSpec extends fc.Arbitrary<infer T> ? T : never
  type Q = typeof requestSpec extends fc.Arbitrary<infer T> ? T : never

  /** The filters as the docs state them, written independently of the router's code. */
  const allowed = (pool: ReadonlyArray<D>, q: Q, d: D, tokens: number): boolean => {
    const untagged = q.all.length === 0 && q.any === undefined
    if (untagged && pool.some((x) => x.tags.includes("default")) && !d.tags.includes("default")) return false
    if (!q.all.every((t) => d.tags.includes(t))) return false
    if (q.any !== undefined && !q.any.some((t) => d.tags.includes(t))) return false
    if (q.exclude !== undefined && q.exclude.some((t) => d.tags.includes(t))) return false
    const regions = q.region === undefined ? undefined : typeof q.region === "string" ? [q.region] : q.region
    if (regions !== undefined && (d.region === undefined || !regions.includes(d.region))) return false
    if (d.contextWindow !== undefined && tokens > d.contextWindow) return false
    return true
  }

  it("holds for any pool and request; the tier is the lowest that fits; none_fits names exactly the refused", () => {
    let run = 0
    fc.assert(
      fc.property(fc.array(deploymentSpec, { minLength: 1, maxLength: 8 }), fc.array(requestSpec, { minLength: 1, maxLength: 6 }), (specs, requests) => {
        const id = (i: number) => `r${run}-d${i}`
        run++
        const deployments = specs.map((s, i) =>
          dep(id(i), "g", {
            tags: s.tags,
            ...(s.region === undefined ? {} : { region: s.region }),
            ...(s.contextWindow === undefined ? {} : { contextWindow: s.contextWindow }),
            ...(s.order === undefined ? {} : { order: s.order })
          })
        )
        const program = Effect.gen(function*() {
          for (const q of requests) {
            const request = ask("g", q.maxTokens === undefined ? {} : { max_tokens: q.maxTokens }, q.words)
            const tokens = Tokens.prompt(request) + (q.maxTokens ?? 0)
            const tags = q.any === undefined && q.exclude === undefined ? q.all : { all: q.all, any: q.any, exclude: q.exclude }
            const fitting = specs.map((s, i) => allowed(specs, q, s, tokens) ? i : -1).filter((i) => i >= 0)
            const result = yield* Effect.either(Router.chat(request, { tags, ...(q.region === undefined ? {} : { region: q.region }), fallbacks: false }))
            if (fitting.length === 0) {
              expect(Either.isLeft(result)).toBe(true)
              if (Either.isRight(result)) return
              const error = noneFits(result.left)
              expect(error.filtered!.map((f) => f.deploymentId)).toEqual(specs.map((_, i) => id(i)))
            } else {
              expect(Either.isRight(result)).toBe(true)
              if (Either.isLeft(result)) return
              const chosen = Number(result.right.route.deploymentId.split("-d")[1])
              expect(fitting).toContain(chosen)
              const tier = (i: number) => specs[i].order ?? Infinity
              expect(tier(chosen)).toBe(Math.min(...fitting.map(tier)))
            }
          }
        })
        Effect.runSync(program.pipe(Effect.provide(routerOf(deployments, { selector: Selector.weighted })), Effect.withRandom(Random.make(run))))
      }),
      { numRuns: 150 }
    )
  })
})
