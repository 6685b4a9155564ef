/**
 * Redis faults, against a real redis-server (test/support/redis.ts): Redis stopped in the middle
 * of a run of concurrent routed requests, then started again on the same port (empty: the tests'
 * server keeps nothing on disk); and a Redis that stalls (`CLIENT PAUSE`). The router's policy
 * for a failing store (src/internal/resilient.ts): serve from a local view, say so in the route
 * (`storeFailed: true`), try the shared store again every 5 s, add the spend made meanwhile back.
 * Real time: about 12 s in all.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Context, type Duration, Effect, Either, Fiber, Layer, Logger, Redacted } from "effect"
import { Redis } from "ioredis"
import { Router, RouterState } from "../src/index.js"
import * as RedisState from "../src/RedisState.js"
import { FakeProvider } from "../src/testing.js"
import { type RedisServer, redisAvailable, startRedis } from "./support/redis.js"

const available = redisAvailable()
let server: RedisServer
let prefixes = 0
const fresh = () => `faults-${process.pid}-${++prefixes}`

/** Every error a routed chat may fail with: typed, tagged. */
const typedErrors = new Set([
  "NoDeploymentAvailable",
  "UnknownGroup",
  "InvalidRequest",
  "RateLimited",
  "Timeout",
  "ServerError",
  "NetworkError",
  "QuotaExceeded",
  "BudgetExceeded"
])

/** A plain client of the test's own, to look at (and stall) Redis from outside the store. */
const inspector = () => {
  const client = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 100 })
  client.on("error", () => {})
  return Effect.acquireRelease(Effect.sync(() => client), (c) => Effect.sync(() => c.disconnect()))
}

const MODEL = "gpt-4o-mini" // priced: every answer has a cost, and the meter adds it to the spend

const routerOver = (keyPrefix: string, fake: FakeProvider.FakeProvider, commandTimeout: Duration.DurationInput) =>
  Router.layer({
    deployments: [
      { id: "a", group: "g", provider: fake, model: MODEL, maxConcurrent: 60 },
      { id: "b", group: "g", provider: fake, model: MODEL, maxConcurrent: 60 }
    ]
  }).pipe(
    Layer.provideMerge(Router.policies),
    Layer.provideMerge(RedisState.layer({ url: Redacted.make(server.url), keyPrefix, commandTimeout }))
  )

const ask = Effect.suspend(() => {
  const started = Date.now()
  return Effect.map(
    Effect.either(Router.chat({ model: "g", messages: [{ role: "user", content: "hi" }] })),
    (result) => ({ result, ms: Date.now() - started })
  )
})
type Outcome = Effect.Effect.Success<typeof ask>

/** Counts the outcomes: every one answered or failed with a typed error; nothing else. */
const tally = (outcomes: ReadonlyArray<Outcome>) => {
  let answered = 0
  let storeFailed = 0
  let cost = 0
  const failures = new Map<string, number>()
  for (const { result } of outcomes) {
    if (Either.isRight(result)) {
      answered++
      cost += result.right.route.cost
      if (result.right.route.storeFailed === true) storeFailed++
    } else {
      const tag = (result.left as { _tag?: string })._tag ?? "untyped"
      failures.set(tag, (failures.get(tag) ?? 0) + 1)
    }
  }
  const failed = Array.from(failures.values()).reduce((a, b) => a + b, 0)
  return { answered, failed, failures, storeFailed, cost }
}

const leasesHeld = (redis: Redis, keyPrefix: string) =>
  Effect.promise(async () => (await redis.zcard(`{${keyPrefix}}:l:a`)) + (await redis.zcard(`{${keyPrefix}}:l:b`)))

/** Waits (up to 400 ms) until `n` leases are held in Redis. */
const untilLeases = (redis: Redis, keyPrefix: string, n: number) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 400
    let held = yield* leasesHeld(redis, keyPrefix)
    while (held < n && Date.now() < deadline) {
      yield* Effect.sleep("10 millis")
      held = yield* leasesHeld(redis, keyPrefix)
    }
    return held
  })

const sharedSpend = (redis: Redis, keyPrefix: string, key: string) =>
  Effect.promise(async () => Number((await redis.hget(`{${keyPrefix}}:spend`, key)) ?? 0))

describe.runIf(available)("Redis faults (redis-server on loopback)", () => {
  beforeAll(async () => {
    server = await startRedis()
  }, 20_000)
  afterAll(async () => {
    await server?.remove()
  })

  it.live("Redis stopped mid-run under two instances: requests keep being served from each local view, nothing is lost; restarted: both reconnect and share one view again", () => {
    const keyPrefix = fresh()
    const fake = FakeProvider.unsafeMake({ reply: "hello", latency: 600 })
    const logs: Array<string> = []
    const logger = Logger.make(({ message }) => {
      logs.push(String(Array.isArray(message) ? message.join(" ") : message))
    })
    const logged = (text: string) => logs.filter((l) => l.includes(text)).length
    return Effect.scoped(Effect.gen(function*() {
      const redis = yield* inspector()
      // two app instances: two routers, two Redis stores (two connections), one key prefix
      const one = yield* Layer.build(routerOver(keyPrefix, fake, "300 millis"))
      const two = yield* Layer.build(routerOver(keyPrefix, fake, "300 millis"))
      const on = (instance: Context.Context<Router.Router>, n: number) => Array.from({ length: n }, () => Effect.provide(ask, instance))
      const both = (n: number) => Effect.all([...on(one, n), ...on(two, n)], { concurrency: "unbounded" })
      const stateOf = (instance: Context.Context<RouterState.RouterState>) => Context.get(instance, RouterState.RouterState)
      const inFlightSeenBy = (instance: Context.Context<RouterState.RouterState | Router.Router>) =>
        Effect.map(stateOf(instance).snapshot(Context.get(instance, Router.Router).deployments), (stats) => stats.reduce((n, s) => n + s.inFlight, 0))

      // 1. Healthy: 25 concurrent requests on each; their leases in Redis, each instance sees all 50
      const healthy = yield* Effect.fork(both(25))
      expect(yield* untilLeases(redis, keyPrefix, 50)).toBe(50)
      expect(yield* inFlightSeenBy(two)).toBe(50)
      const before = tally(yield* Fiber.join(healthy))
      expect(before).toMatchObject({ answered: 50, failed: 0, storeFailed: 0 })
      expect(yield* leasesHeld(redis, keyPrefix)).toBe(0)
      expect(yield* sharedSpend(redis, keyPrefix, "total")).toBeCloseTo(before.cost, 9)

      // 2. Redis stopped while 100 requests are in flight (50 per instance, reserved in Redis),
      // then 100 more arrive over the outage, 10 every 100 ms (5 per instance)
      const inFlight = yield* Effect.fork(both(50))
      expect(yield* untilLeases(redis, keyPrefix, 100)).toBe(100)
      yield* Effect.promise(() => server.stop())
      const stoppedAt = Date.now()
      const waves = yield* Effect.fork(Effect.all(
        Array.from({ length: 10 }, (_, w) => Effect.zipRight(Effect.sleep(`${w * 100} millis`), both(5))),
        { concurrency: "unbounded" }
      ))
      const first = yield* Fiber.join(inFlight)
      const during = (yield* Fiber.join(waves)).flat()
      // then a burst of 150 at once on one instance: its local view holds the limits
      // (2 x maxConcurrent 60), the 30 over them fail with a typed error
      const burst = yield* Effect.all(on(one, 150), { concurrency: "unbounded" })
      const outage = tally([...first, ...during, ...burst])
      // nothing lost: 350 requests, each answered or failed with a typed error
      expect(outage.answered + outage.failed).toBe(350)
      for (const tag of outage.failures.keys()) expect(typedErrors).toContain(tag)
      for (const { result } of burst) {
        if (Either.isLeft(result)) expect(result.left).toMatchObject({ _tag: "NoDeploymentAvailable", group: "g" })
      }
      expect(tally(first)).toMatchObject({ answered: 100, failed: 0 })
      expect(tally(during)).toMatchObject({ answered: 100, failed: 0 })
      expect(tally(burst)).toMatchObject({ answered: 120, failed: 30 })
      // every answer given while Redis was down says so
      expect(outage.storeFailed).toBe(320)
      // and none waited on Redis for long (fake latency 600 ms; a store timeout is 300 ms)
      expect(Math.max(...during.map((o) => o.ms), ...burst.map((o) => o.ms))).toBeLessThan(1_800)
      expect(logged("serving from the local view")).toBe(2) // once per instance

      // 3. Redis back on the same port (empty). The stores reconnect; each router tries the
      // shared store again 5 s after it failed, and switches back at the first operation that
      // succeeds.
      yield* Effect.promise(() => server.start())
      yield* Effect.sleep(`${Math.max(0, stoppedAt + 4_800 - Date.now())} millis`)
      const probes: Array<Outcome> = []
      const backAfter: Array<number> = []
      for (const instance of [one, two]) {
        const deadline = Date.now() + 10_000
        while (Date.now() < deadline) {
          const probe = yield* Effect.provide(ask, instance)
          probes.push(probe)
          if (Either.isRight(probe.result) && probe.result.right.route.storeFailed === undefined) {
            backAfter.push(Date.now() - stoppedAt)
            break
          }
          yield* Effect.sleep("200 millis")
        }
      }
      // not before the 5 s retry (Redis answered again well before it), and soon after it
      expect(backAfter).toHaveLength(2)
      for (const ms of backAfter) {
        expect(ms).toBeGreaterThanOrEqual(5_000)
        expect(ms).toBeLessThan(8_000)
      }
      const probed = tally(probes)
      expect(probed.failed).toBe(0)
      expect(probed.storeFailed).toBe(probes.length - 2) // the last one of each went through Redis
      expect(logged("store is back")).toBe(2)

      // the shared view is rebuilt: new requests' leases are in Redis, each instance sees the
      // other's, no storeFailed
      const back = yield* Effect.fork(both(25))
      expect(yield* untilLeases(redis, keyPrefix, 50)).toBe(50)
      expect(yield* inFlightSeenBy(one)).toBe(50)
      expect(yield* inFlightSeenBy(two)).toBe(50)
      const after = tally(yield* Fiber.join(back))
      expect(after).toMatchObject({ answered: 50, failed: 0, storeFailed: 0 })
      expect(yield* leasesHeld(redis, keyPrefix)).toBe(0)
      const stats = yield* stateOf(two).snapshot(Context.get(two, Router.Router).deployments)
      // the 50, and the last probe of each instance when its reservation (not only a later
      // step) went to Redis
      const requests = stats.reduce((n, s) => n + s.requests, 0)
      expect(requests).toBeGreaterThanOrEqual(50)
      expect(requests).toBeLessThanOrEqual(52)
      // spend made during the outage was added back: Redis (restarted empty) holds every cost
      // since the stop, the outage's included, from both instances
      const total = outage.cost + probed.cost + after.cost
      expect(outage.cost).toBeGreaterThan(0)
      expect(yield* sharedSpend(redis, keyPrefix, "total")).toBeCloseTo(total, 9)
      const perDeployment = (yield* sharedSpend(redis, keyPrefix, "deployment:a")) + (yield* sharedSpend(redis, keyPrefix, "deployment:b"))
      expect(perDeployment).toBeCloseTo(total, 9)
    })).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
  }, 30_000)

  it.live("Redis stalls (CLIENT PAUSE): a store operation fails with a store timeout after commandTimeout, and requests are served from the local view, not stuck", () => {
    const keyPrefix = fresh()
    const fake = FakeProvider.unsafeMake({ reply: "hello", latency: 20 })
    return Effect.scoped(Effect.gen(function*() {
      const redis = yield* inspector()
      const state = yield* RouterState.RouterState
      const router = yield* Router.Router
      const warm = tally(yield* Effect.all(Array.from({ length: 5 }, () => ask)))
      expect(warm).toMatchObject({ answered: 5, storeFailed: 0 })

      yield* Effect.promise(() => redis.call("CLIENT", "PAUSE", "2500", "ALL"))
      const pausedAt = Date.now()
      // a store operation: a typed StoreError after commandTimeout (300 ms), not a wait for Redis
      const started = Date.now()
      const error = yield* Effect.flip(state.snapshot(router.deployments))
      const waited = Date.now() - started
      expect(error._tag).toBe("StoreError")
      expect(error.message).toMatch(/timed out/i)
      expect(waited).toBeGreaterThanOrEqual(250)
      expect(waited).toBeLessThan(1_200)
      // requests, concurrent: served from the local view, each within the timeout plus the call
      const during = yield* Effect.all(Array.from({ length: 20 }, () => ask), { concurrency: "unbounded" })
      expect(Date.now() - pausedAt).toBeLessThan(2_500) // all of them answered while Redis was still paused
      const stalled = tally(during)
      expect(stalled).toMatchObject({ answered: 20, failed: 0, storeFailed: 20 })
      expect(Math.max(...during.map((o) => o.ms))).toBeLessThan(1_000)

      // once the pause is over, the store answers again. Redis ran the reservation that timed
      // out when the pause ended: its slot is held there by nobody until its lease expires
      // (documented: resilient.ts). Only one: the reservations queued behind it in this process
      // failed at once instead of being sent in turn.
      yield* Effect.sleep(`${Math.max(0, pausedAt + 2_600 - Date.now())} millis`)
      const stats = yield* state.snapshot(router.deployments)
      expect(stats.reduce((n, s) => n + s.inFlight, 0)).toBeLessThanOrEqual(1)
      for (const id of ["a", "b"]) {
        const expiries = (yield* Effect.promise(() => redis.zrange(`{${keyPrefix}}:l:${id}`, 0, -1, "WITHSCORES"))).filter((_, i) => i % 2 === 1)
        for (const expiry of expiries) expect(Number(expiry)).toBeLessThan(Date.now() + 15 * 60_000)
      }
    })).pipe(
      Effect.provide(routerOver(keyPrefix, fake, "300 millis")),
      Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none))
    )
  }, 20_000)
})
