/**
 * Health checks (`Router.Config.healthCheck`, issue 9 deliverable 5): a background probe per
 * deployment every interval, through the provider's `healthCheck`, fed to the store (latency
 * samples) and to the breaker (failures, recovery), forked in the router layer's scope.
 *
 * Fake providers on `TestClock`; the HTTP providers' health checks against the loopback server
 * (live clock), with a key that must never show in an error or a log.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, it } from "@effect/vitest"
import {
  Cause,
  Duration,
  Effect,
  Exit,
  Fiber,
  Layer,
  Logger,
  LogLevel,
  Redacted,
  Scope,
  Supervisor,
  TestClock
} from "effect"
import {
  Anthropic,
  Cooldown,
  Errors,
  OpenAiCompatible,
  Provider,
  RetrySchedule,
  Router,
  RouterState,
  Selector
} from "../src/index.js"
import { FakeProvider } from "../src/testing.js"
import * as Loopback from "./support/loopback.js"

type Fake = FakeProvider.FakeProvider

const messages = [{ role: "user" as const, content: "hi" }]

/** Which deployment served the request, or the tag of the error it ended with. */
const outcome = Router.chat({ model: "g", messages }).pipe(
  Effect.match({ onFailure: (e) => e._tag as string, onSuccess: (r) => r.route.deploymentId })
)

/** Always picks "a" when it is a candidate: makes "who serves" deterministic. */
const preferA = Selector.make((cs) => Effect.succeed(cs.find((c) => c.deployment.id === "a") ?? cs[0]))

/** A deployment's live stats. */
const stats = (id: string) =>
  Effect.gen(function*() {
    const router = yield* Router.Router
    const state = yield* RouterState.RouterState
    const [s] = yield* state.snapshot([router.deployments.find((d) => d.id === id)!])
    return s
  })

interface Options {
  readonly healthCheck?: Router.HealthCheck | undefined
  readonly cooldown?: Layer.Layer<Cooldown.Cooldown, Errors.InvalidConfig, RouterState.RouterState>
}

/** A router over `providers` (one deployment each, id = key, all in group "g"), no retries. */
const routerOf = (providers: Record<string, Provider.Provider>, options: Options = {}) =>
  Router.layer({
    deployments: Object.entries(providers).map(([id, provider]) => ({ id, group: "g", provider, model: `model-${id}` })),
    ...(options.healthCheck === undefined ? {} : { healthCheck: options.healthCheck })
  }).pipe(
    Layer.provide(preferA),
    Layer.provide(RetrySchedule.none),
    Layer.provide(options.cooldown ?? Cooldown.layer()),
    Layer.provideMerge(Router.defaults)
  )

/** When each recorded probe of `fake` to `id` started. */
const probeStarts = (fake: Fake, id: string) =>
  Effect.map(fake.probes, (probes) => probes.filter((p) => p.deploymentId === id).map((p) => p.startedAt))

/** Lets the forked probes run at the current time. */
const settle = TestClock.adjust(0)

describe("HealthCheck: schedule and scope", () => {
  it.effect("off by default: no probe at all, whatever the time", () => {
    const a = FakeProvider.unsafeMake()
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      yield* settle
      yield* TestClock.adjust("1 hour")
      expect(yield* a.probeCount).toBe(0)
      expect(yield* b.probeCount).toBe(0)
    }).pipe(Effect.provide(routerOf({ a, b })))
  })

  it.effect("a probe per deployment when the router is built, then one every interval", () => {
    const fake = FakeProvider.unsafeMake({ health: { latency: "200 millis" } })
    return Effect.gen(function*() {
      yield* settle
      expect(yield* probeStarts(fake, "a")).toEqual([0])
      expect(yield* probeStarts(fake, "b")).toEqual([0])
      yield* TestClock.adjust("35 seconds")
      // a fixed rate: the probe's own 200 ms do not push the next ones back
      expect(yield* probeStarts(fake, "a")).toEqual([0, 10_000, 20_000, 30_000])
      expect(yield* probeStarts(fake, "b")).toEqual([0, 10_000, 20_000, 30_000])
      const probes = yield* fake.probes
      expect(probes.every((p) => p.outcome === "success" && p.endedAt === p.startedAt + 200)).toBe(true)
      // probes are not calls
      expect(yield* fake.callCount).toBe(0)
    }).pipe(Effect.provide(routerOf({ a: fake, b: fake }, { healthCheck: { interval: "10 seconds" } })))
  })

  it.effect("probes reach the provider with the deployment's target and the probe's timeout", () => {
    const seen: Array<Provider.Target> = []
    const fake = FakeProvider.unsafeMake()
    const spy: Provider.Provider = {
      name: "spy",
      chat: fake.chat,
      stream: fake.stream,
      embed: fake.embed,
      healthCheck: (target) => Effect.sync(() => void seen.push(target))
    }
    return Effect.gen(function*() {
      yield* settle
      expect(seen).toHaveLength(1)
      expect(seen[0].deploymentId).toBe("a")
      expect(seen[0].model).toBe("m")
      expect(seen[0].apiBase).toBe("http://10.0.0.1/v1")
      expect(Redacted.value(seen[0].apiKey!)).toBe("sk-probe")
      expect(Duration.toMillis(seen[0].timeout!)).toBe(3000)
    }).pipe(Effect.provide(
      Router.layer({
        deployments: [{ id: "a", group: "g", provider: spy, model: "m", apiBase: "http://10.0.0.1/v1", apiKey: "sk-probe", timeout: "1 minute" }],
        healthCheck: { interval: "1 minute", timeout: "3 seconds" }
      }).pipe(Layer.provideMerge(Router.defaults))
    ))
  })

  it.effect("closing the router's scope stops the probes: no probe fiber left, none after", () => {
    const fake = FakeProvider.unsafeMake({ health: { latency: "4 seconds" } })
    return Effect.gen(function*() {
      const supervisor = yield* Supervisor.track
      const scope = yield* Scope.make()
      const state = yield* RouterState.makeMemory()
      const layer = Router.layer({
        deployments: [
          { id: "a", group: "g", provider: fake, model: "m" },
          { id: "b", group: "g", provider: fake, model: "m" }
        ],
        healthCheck: { interval: "10 seconds" }
      }).pipe(Layer.provide(Router.policies), Layer.provide(Layer.succeed(RouterState.RouterState, state)))
      const context = yield* Layer.buildWithScope(layer, scope).pipe(Effect.supervised(supervisor))
      const router = yield* Effect.provide(Router.Router, context)
      yield* settle
      expect((yield* supervisor.value).length).toBeGreaterThanOrEqual(2)
      yield* TestClock.adjust("12 seconds") // probes of 10 s are in flight (4 s each)
      expect(yield* fake.probeCount).toBe(4)
      expect((yield* state.snapshot(router.deployments)).map((s) => s.inFlight)).toEqual([1, 1])

      yield* Scope.close(scope, Exit.void)
      yield* settle
      expect(yield* supervisor.value).toEqual([])
      // the in-flight probes were interrupted, their leases given back, nothing judged
      const probes = yield* fake.probes
      expect(probes.slice(2).map((p) => p.outcome)).toEqual(["interrupted", "interrupted"])
      const after = yield* state.snapshot(router.deployments)
      expect(after.map((s) => s.inFlight)).toEqual([0, 0])
      expect(after.map((s) => s.failures)).toEqual([0, 0])
      yield* TestClock.adjust("10 minutes")
      expect(yield* fake.probeCount).toBe(4)
    })
  })
})

describe("HealthCheck: feeding latency", () => {
  it.effect("an idle deployment's latency becomes known from its probes alone", () => {
    const fake = FakeProvider.unsafeMake({
      byDeployment: { a: { health: { latency: "300 millis" } }, b: { health: { latency: "80 millis" } } }
    })
    return Effect.gen(function*() {
      yield* settle
      expect((yield* stats("a")).latencyMs).toBeUndefined()
      yield* TestClock.adjust("1 second")
      const a = yield* stats("a")
      const b = yield* stats("b")
      expect(a.latencyMs).toBe(300)
      expect(b.latencyMs).toBe(80)
      expect(a.latency.calls.count(1000)).toBe(1)
      expect(b.latency.calls.quantile(1000, 0.5)).toBeCloseTo(80, -1)
      expect(a.completed).toBe(1)
      expect(a.failures).toBe(0)
      expect(yield* fake.callCount).toBe(0)
    }).pipe(Effect.provide(routerOf({ a: fake, b: fake }, { healthCheck: { interval: "30 seconds" } })))
  })

  it.effect("a busy deployment is not probed (it is known from its traffic, and keeps its slots)", () => {
    const a = FakeProvider.unsafeMake({ latency: "25 seconds", health: { latency: "100 millis" } })
    return Effect.gen(function*() {
      yield* settle
      expect(yield* a.probeCount).toBe(1)
      const call = yield* Effect.fork(outcome)
      yield* TestClock.adjust("5 seconds") // the call runs from 0 to 25 s: probes at 10 and 20 are skipped
      yield* TestClock.adjust("25 seconds")
      expect(yield* Fiber.await(call)).toEqual(Exit.succeed("a"))
      expect(yield* probeStarts(a, "a")).toEqual([0, 30_000])
    }).pipe(Effect.provide(routerOf({ a }, { healthCheck: { interval: "10 seconds" } })))
  })
})

describe("HealthCheck: feeding the breaker", () => {
  it.effect("a failing deployment is taken out by its probes alone, before any live request", () => {
    const a = FakeProvider.unsafeMake({ health: { failure: 503 } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      yield* settle
      yield* TestClock.adjust("10 seconds") // probes at 0, 5, 10: three failures
      const circuit = (yield* stats("a")).cooldown
      expect(circuit.status).toBe("open")
      expect(circuit.reason).toBe("failures")
      // the first live request goes to b: a (preferred) is out
      expect(yield* outcome).toBe("b")
      expect(yield* a.callCount).toBe(0)
    }).pipe(Effect.provide(routerOf({ a, b }, { healthCheck: { interval: "5 seconds" } })))
  })

  it.effect("a probe refused for its key takes the deployment out at once (same classification as calls)", () => {
    const a = FakeProvider.unsafeMake({ health: { failure: 401 } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      yield* settle
      const circuit = (yield* stats("a")).cooldown
      expect(circuit.status).toBe("open")
      expect(circuit.reason).toBe("unusable")
      expect(yield* outcome).toBe("b")
    }).pipe(Effect.provide(routerOf({ a, b }, { healthCheck: { interval: "1 minute" } })))
  })

  it.effect("a probe the upstream refuses as a bad request counts as alive, not as a failure", () => {
    const a = FakeProvider.unsafeMake({ health: { failure: 400 } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      yield* settle
      yield* TestClock.adjust("1 minute")
      const s = yield* stats("a")
      expect(s.cooldown.status).toBe("closed")
      expect(s.failures).toBe(0)
    }).pipe(Effect.provide(routerOf({ a, b }, { healthCheck: { interval: "5 seconds" } })))
  })

  it.effect("a recovered deployment (circuit open) comes back on a successful probe, with no live traffic", () => {
    const control = { failing: true }
    const a = FakeProvider.unsafeMake({ failure: () => (control.failing ? 500 : undefined) })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      yield* settle // probe at 0: a's health check is fine
      yield* TestClock.adjust("1 second")
      // three live failures take a out for 30 s (from 1 s)
      for (let i = 0; i < 3; i++) expect(yield* outcome).toBe("ServerError")
      expect((yield* stats("a")).cooldown).toMatchObject({ status: "open", until: 31_000 })
      control.failing = false // a recovers; no request comes
      yield* TestClock.adjust("34 seconds") // 35 s: the cooldown is over, no probe yet (10, 20, 30 were skipped)
      expect(yield* probeStarts(a, "a")).toEqual([0])
      expect((yield* stats("a")).cooldown.status).toBe("open")
      yield* TestClock.adjust("5 seconds") // the probe at 40 s takes the half-open slot and succeeds
      expect(yield* probeStarts(a, "a")).toEqual([0, 40_000])
      expect((yield* stats("a")).cooldown).toEqual({ status: "closed", until: 0, ejections: 0, reason: "failures" })
      expect(yield* a.callCount).toBe(3)
      // back in rotation for live traffic
      expect(yield* outcome).toBe("a")
    }).pipe(Effect.provide(routerOf({ a, b }, {
      healthCheck: { interval: "10 seconds" },
      cooldown: Cooldown.layer({ duration: "30 seconds" })
    })))
  })

  it.effect("a failed half-open probe sends the deployment back out, for longer", () => {
    // down until 20 s, then up
    const a = FakeProvider.unsafeMake({ health: { failure: (_i, now) => (now < 20_000 ? 503 : undefined) } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      yield* settle
      yield* TestClock.adjust("10 seconds") // probes at 0, 5, 10 fail: out from 10 s to 15 s
      expect((yield* stats("a")).cooldown).toMatchObject({ status: "open", until: 15_000, ejections: 1 })
      yield* TestClock.adjust("5 seconds") // the probe at 15 s is the half-open one; it fails: out for 10 s
      expect((yield* stats("a")).cooldown).toMatchObject({ status: "open", until: 25_000, ejections: 2 })
      yield* TestClock.adjust("10 seconds") // 20 s skipped (cooling), 25 s succeeds
      expect((yield* stats("a")).cooldown.status).toBe("closed")
      expect(yield* probeStarts(a, "a")).toEqual([0, 5_000, 10_000, 15_000, 25_000])
    }).pipe(Effect.provide(routerOf({ a, b }, { healthCheck: { interval: "5 seconds" } })))
  })
})

describe("HealthCheck: timeouts", () => {
  it.effect("a probe that hangs is cut by its timeout and counts as a failure", () => {
    const a = FakeProvider.unsafeMake({ health: { latency: Duration.infinity } })
    const b = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      yield* settle
      yield* TestClock.adjust("2 seconds")
      const [probe] = yield* a.probes
      expect(probe).toMatchObject({ outcome: "Timeout", startedAt: 0, endedAt: 2000 })
      const s = yield* stats("a")
      expect(s.inFlight).toBe(0)
      expect(s.failures).toBe(1)
      expect(s.latencyMs).toBe(2000)
    }).pipe(Effect.provide(routerOf({ a, b }, { healthCheck: { interval: "1 minute", timeout: "2 seconds" } })))
  })

  it.effect("the router cuts a probe that ignores its timeout (a provider that does not enforce it)", () => {
    const fake = FakeProvider.unsafeMake()
    const hanging: Provider.Provider = { name: "hanging", chat: fake.chat, stream: fake.stream, embed: fake.embed, healthCheck: () => Effect.never }
    return Effect.gen(function*() {
      yield* settle
      yield* TestClock.adjust("5 seconds")
      const s = yield* stats("a")
      expect(s.inFlight).toBe(0)
      expect(s.consecutiveFailures).toBe(1)
    }).pipe(Effect.provide(routerOf({ a: hanging, b: fake }, { healthCheck: { interval: "1 minute", timeout: "2 seconds" } })))
  })

  it.effect("the timeout defaults to the interval, at most 30 seconds", () => {
    const slow = FakeProvider.unsafeMake({ health: { latency: Duration.infinity } })
    return Effect.gen(function*() {
      yield* settle
      yield* TestClock.adjust("40 seconds")
      const probes = yield* slow.probes
      expect(probes.map((p) => [p.deploymentId, p.endedAt])).toEqual([["a", 30_000], ["b", 30_000]])
    }).pipe(Effect.provide(routerOf({ a: slow, b: slow }, { healthCheck: { interval: "2 minutes" } })))
  })
})

describe("HealthCheck: providers without a health check", () => {
  const plain = (fake: Fake): Provider.Provider => ({ name: "plain", chat: fake.chat, stream: fake.stream, embed: fake.embed })

  it.effect("are not probed", () => {
    const fake = FakeProvider.unsafeMake()
    return Effect.gen(function*() {
      yield* settle
      yield* TestClock.adjust("10 minutes")
      expect(yield* fake.callCount).toBe(0)
      expect(yield* fake.probeCount).toBe(0)
    }).pipe(Effect.provide(routerOf({ a: plain(fake) }, { healthCheck: { interval: "10 seconds" } })))
  })

  it.effect("Provider.withChatHealthCheck probes them with a one-token chat", () => {
    const fake = FakeProvider.unsafeMake({ latency: "150 millis" })
    return Effect.gen(function*() {
      yield* settle
      yield* TestClock.adjust("15 seconds")
      const calls = yield* fake.calls
      expect(calls.map((c) => c.startedAt)).toEqual([0, 10_000])
      const [first] = calls
      expect(first.kind).toBe("chat")
      if (first.kind === "embed") return
      expect(first.request).toEqual({ model: "model-a", messages: [{ role: "user", content: "ping" }], max_tokens: 1 })
      expect((yield* stats("a")).latencyMs).toBe(150)
    }).pipe(Effect.provide(routerOf({ a: Provider.withChatHealthCheck(plain(fake)) }, { healthCheck: { interval: "10 seconds" } })))
  })
})

describe("HealthCheck: config", () => {
  const buildError = (healthCheck: unknown) =>
    Effect.flip(Effect.provide(
      Router.Router,
      Router.layer({
        deployments: [{ group: "g", provider: FakeProvider.unsafeMake(), model: "m" }],
        healthCheck: healthCheck as Router.HealthCheck
      }).pipe(Layer.provide(Router.defaults))
    ))

  it.effect("bad values fail the layer with InvalidConfig naming the path", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        [{ interval: "soon" }, "healthCheck.interval"],
        [{ interval: 0 }, "healthCheck.interval"],
        [{ interval: "10 seconds", timeout: -5 }, "healthCheck.timeout"],
        [{ interval: "10 seconds", every: 3 }, "healthCheck.every"],
        [{}, "healthCheck.interval"],
        ["30 seconds", "healthCheck"]
      ]
      for (const [input, path] of cases) {
        const error = yield* buildError(input)
        expect(error._tag).toBe("InvalidConfig")
        expect((error as Errors.InvalidConfig).issues.map((i) => i.path)).toEqual([path])
      }
    }))

  it.effect("the providers' healthCheck option is checked", () =>
    Effect.gen(function*() {
      const openai = yield* Effect.flip(OpenAiCompatible.make({ apiKeyEnv: false, healthCheck: "model" as never }))
      expect(openai.issues).toEqual([{ path: "healthCheck", message: `expected "models", "chat" or false, got "model"` }])
      const anthropic = yield* Effect.flip(Anthropic.make({ apiKey: Redacted.make("k"), healthCheck: true as never }))
      expect(anthropic.issues.map((i) => i.path)).toEqual(["healthCheck"])
      // false: no health check at all
      const none = yield* OpenAiCompatible.make({ apiKeyEnv: false, healthCheck: false })
      expect(none.healthCheck).toBeUndefined()
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
})

// ---------------------------------------------------------------------------
// HTTP providers, over the loopback server
// ---------------------------------------------------------------------------

const KEY = "sk-health-7f3a9c2e5b1d"

const target = (base: string, model = "gpt-test"): Provider.Target => ({
  deploymentId: "d1",
  model,
  apiBase: base,
  apiKey: Redacted.make(KEY),
  timeout: Duration.seconds(5)
})

/** Everything an error shows: its message, its string form and its fields. */
const shown = (error: unknown) => `${String(error)} ${JSON.stringify(error)} ${(error as Error).message}`

describe("HealthCheck: OpenAI-compatible over HTTP", () => {
  it.scopedLive("GET {apiBase}/models with the deployment's key", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/v1/models": Loopback.json({ object: "list", data: [{ id: "gpt-test", object: "model" }] }) })
      const openai = yield* OpenAiCompatible.make({ apiKeyEnv: false })
      yield* openai.healthCheck!(target(`${server.url}/v1`))
      const [request] = yield* server.requests
      expect(request.method).toBe("GET")
      expect(request.path).toBe("/v1/models")
      expect(request.headers.authorization).toBe(`Bearer ${KEY}`)
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

  it.scopedLive("Azure: GET {apiBase}/openai/models?api-version= with the api-key header", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/openai/models": Loopback.json({ data: [] }) })
      const azure = yield* OpenAiCompatible.make({ azure: { apiVersion: "2024-10-21" }, apiKeyEnv: false })
      yield* azure.healthCheck!(target(server.url, "my-deployment"))
      const [request] = yield* server.requests
      expect(request.method).toBe("GET")
      expect(request.path).toBe("/openai/models")
      expect(request.query["api-version"]).toBe("2024-10-21")
      expect(request.headers["api-key"]).toBe(KEY)
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

  it.scopedLive("failures are mapped as calls' are, and never show the key, even when the upstream echoes it", () =>
    Effect.gen(function*() {
      const echo = { error: { message: `Incorrect API key provided: ${KEY}`, type: "invalid_request_error", code: "invalid_api_key" } }
      const server = yield* Loopback.make({
        "/bad/models": Loopback.json(echo, { status: 401 }),
        "/down/models": Loopback.text(`upstream down (key ${KEY})`, { status: 503 }),
        "/html/models": Loopback.text("<html>hi</html>", { contentType: "text/html" }),
        "/error/models": Loopback.json({ error: { message: `quota for ${KEY}`, type: "insufficient_quota", code: "insufficient_quota" } }),
        "/slow/models": Loopback.stall
      })
      const openai = yield* OpenAiCompatible.make({ apiKeyEnv: false })
      const fail = (path: string, timeout = Duration.seconds(5)) =>
        Effect.flip(openai.healthCheck!({ ...target(`${server.url}${path}`), timeout }))
      const refused = yield* fail("/bad")
      expect(refused._tag).toBe("Authentication")
      expect(refused.status).toBe(401)
      expect(refused.deploymentId).toBe("d1")
      const down = yield* fail("/down")
      expect(down._tag).toBe("ServerError")
      const html = yield* fail("/html")
      expect(html._tag).toBe("MalformedResponse")
      const quota = yield* fail("/error")
      expect(quota._tag).toBe("QuotaExceeded")
      const slow = yield* fail("/slow", Duration.millis(300))
      expect(slow._tag).toBe("Timeout")
      for (const error of [refused, down, html, quota, slow]) expect(shown(error)).not.toContain(KEY)
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

  it.scopedLive("healthCheck: \"chat\" sends a one-token chat instead", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({
        "/v1/chat/completions": Loopback.json({
          id: "c1",
          object: "chat.completion",
          created: 1,
          model: "gpt-test",
          choices: [{ index: 0, message: { role: "assistant", content: "p" }, finish_reason: "length" }]
        })
      })
      const openai = yield* OpenAiCompatible.make({ apiKeyEnv: false, healthCheck: "chat" })
      yield* openai.healthCheck!(target(`${server.url}/v1`))
      const [request] = yield* server.requests
      expect(request.method).toBe("POST")
      expect(request.path).toBe("/v1/chat/completions")
      expect(request.body).toEqual({ model: "gpt-test", messages: [{ role: "user", content: "ping" }], max_tokens: 1 })
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

  it.scopedLive("a router probing a deployment whose key is refused: out at once, and the key in no log", () =>
    Effect.gen(function*() {
      const echo = { error: { message: `Incorrect API key provided: ${KEY}`, type: "invalid_request_error", code: "invalid_api_key" } }
      const server = yield* Loopback.make({ "/v1/models": Loopback.json(echo, { status: 401 }) })
      const logs: Array<string> = []
      const logger = Logger.make(({ cause, message }) => {
        logs.push(`${JSON.stringify(message)} ${Cause.pretty(cause)}`)
      })
      const openai = yield* OpenAiCompatible.make({ apiKeyEnv: false })
      const layer = Router.layer({
        deployments: [
          { id: "a", group: "g", provider: openai, model: "gpt-test", apiBase: `${server.url}/v1`, apiKey: KEY },
          { id: "b", group: "g", provider: FakeProvider.unsafeMake(), model: "m" }
        ],
        healthCheck: { interval: "1 minute", timeout: "5 seconds" }
      }).pipe(Layer.provideMerge(Router.defaults))
      const scope = yield* Effect.scope
      const context = yield* Layer.buildWithScope(layer, scope).pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
        Logger.withMinimumLogLevel(LogLevel.Debug)
      )
      // wait for the first probe's answer
      for (let i = 0; i < 100 && (yield* server.requests).length === 0; i++) yield* Effect.sleep("20 millis")
      yield* Effect.sleep("100 millis")
      const s = yield* stats("a").pipe(Effect.provide(context))
      expect(s.cooldown.status).toBe("open")
      expect(s.cooldown.reason).toBe("unusable")
      expect(logs.some((line) => line.includes("health check of a failed: Authentication"))).toBe(true)
      for (const line of logs) expect(line).not.toContain(KEY)
      const [request] = yield* server.requests
      expect(request.headers.authorization).toBe(`Bearer ${KEY}`)
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
})

describe("HealthCheck: Anthropic over HTTP", () => {
  it.scopedLive("GET /v1/models/{model} with x-api-key and anthropic-version", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({
        "/v1/models/claude-test": Loopback.json({ id: "claude-test", type: "model", display_name: "Claude", created_at: "2025-01-01T00:00:00Z" }),
        "/v1/models/claude-gone": Loopback.json(
          { type: "error", error: { type: "not_found_error", message: `model: claude-gone (key ${KEY})` } },
          { status: 404 }
        )
      })
      const anthropic = yield* Anthropic.make({ apiKey: Redacted.make("unused-default") })
      yield* anthropic.healthCheck!(target(server.url, "claude-test"))
      const [request] = yield* server.requests
      expect(request.method).toBe("GET")
      expect(request.path).toBe("/v1/models/claude-test")
      expect(request.headers["x-api-key"]).toBe(KEY)
      expect(request.headers["anthropic-version"]).toBe("2023-06-01")
      // a base that ends with /v1 too
      yield* anthropic.healthCheck!(target(`${server.url}/v1`, "claude-test"))
      expect((yield* server.requests)[1].path).toBe("/v1/models/claude-test")
      const gone = yield* Effect.flip(anthropic.healthCheck!(target(server.url, "claude-gone")))
      expect(gone._tag).toBe("ModelNotFound")
      expect(shown(gone)).not.toContain(KEY)
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
})

describe("FakeProvider: health checks", () => {
  it.effect("scripted by probe index, apart from calls; recorded, counted and reset", () =>
    Effect.gen(function*() {
      const fake = FakeProvider.unsafeMake({
        failure: { first: 1, error: 500 },
        health: { failure: { schedule: ["ok", 503] }, latency: "1 second" },
        byDeployment: { quick: { health: {} } }
      })
      const t = FakeProvider.target("a")
      yield* Effect.fork(fake.healthCheck(t))
      yield* settle
      expect((yield* fake.probes)[0]).toMatchObject({ deploymentId: "a", probeIndex: 0, outcome: "pending", endedAt: undefined })
      yield* TestClock.adjust("1 second")
      const second = yield* Effect.fork(Effect.flip(fake.healthCheck(t)))
      yield* TestClock.adjust("1 second")
      const error = yield* Fiber.join(second)
      expect(error._tag).toBe("ServerError")
      expect(error.status).toBe(503)
      // the call schedule is untouched by probes: the first call still fails
      expect((yield* Effect.exit(fake.chat(FakeProvider.chatRequest("hi"), t)))._tag).toBe("Failure")
      // another deployment's health: at once, up
      yield* fake.healthCheck(FakeProvider.target("quick"))
      expect((yield* fake.probes).map((p) => [p.deploymentId, p.probeIndex, p.outcome, p.startedAt, p.endedAt])).toEqual([
        ["a", 0, "success", 0, 1000],
        ["a", 1, "ServerError", 1000, 2000],
        ["quick", 0, "success", 2000, 2000]
      ])
      expect(yield* fake.probeCount).toBe(3)
      expect(yield* fake.callCount).toBe(1)
      yield* fake.reset
      expect(yield* fake.probes).toEqual([])
      expect(yield* fake.probeCount).toBe(0)
    }))

  it.effect("enforces the target's timeout, as for calls", () =>
    Effect.gen(function*() {
      const fake = FakeProvider.unsafeMake({ health: { latency: "10 seconds" } })
      const probe = yield* Effect.fork(Effect.flip(fake.healthCheck(FakeProvider.target("a", { timeout: Duration.seconds(2) }))))
      yield* TestClock.adjust("2 seconds")
      expect((yield* Fiber.join(probe))._tag).toBe("Timeout")
    }))
})
