/**
 * The Redis store against a real redis-server (test/support/redis.ts starts one): the store
 * contract's checks unchanged, a router end to end, two instances with one view, and Redis down.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { Router, RouterState } from "../src/index.js"
import * as RedisState from "../src/RedisState.js"
import { FakeProvider, StoreContract } from "../src/testing.js"
import { type RedisServer, redisAvailable, startRedis } from "./support/redis.js"
import { expectOneView, routesEndToEnd } from "./support/sharedStore.js"

const available = redisAvailable()
const password = "s3cret-Pa55word"
let server: RedisServer
let prefixes = 0
const fresh = () => `test-${process.pid}-${++prefixes}`

describe.runIf(available)("RedisState (redis-server on loopback)", () => {
  beforeAll(async () => {
    server = await startRedis({ password })
  }, 20_000)
  afterAll(async () => {
    await server?.remove()
  })
  const options = (keyPrefix = fresh()) => ({ url: Redacted.make(server.url), keyPrefix })

  describe("keeps the store contract", () => {
    for (const check of StoreContract.checks(Effect.suspend(() => RedisState.make(options())))) {
      it.scoped(check.name, () => check.run, 20_000)
    }
  })

  it.effect("rejects bad options with InvalidConfig and their paths", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.scoped(RedisState.make({ url: "http://x", port: 0, keyPrefix: "{a}" } as never)))
      expect(error._tag).toBe("InvalidConfig")
      expect(error.issues.map((i) => i.path).sort()).toEqual(["RedisState.keyPrefix", "RedisState.port", "RedisState.url"])
    }))

  it.live("a router over Router.policies and the Redis store routes requests end to end", () => routesEndToEnd(RedisState.layer(options(fresh()))), 20_000)

  it.live("two instances (two connections, one prefix) see each other's leases, circuits and spend", () =>
    Effect.scoped(Effect.gen(function*() {
      const keyPrefix = fresh()
      const one = yield* RedisState.make(options(keyPrefix))
      const two = yield* RedisState.make(options(keyPrefix))
      yield* expectOneView(one, two)
    })), 20_000)

  it.live("Redis down: operations fail with a typed StoreError without credentials, and the router keeps serving", () => {
    const fake = FakeProvider.unsafeMake({ reply: "hello" })
    return Effect.gen(function*() {
      const state = yield* RouterState.RouterState
      const router = yield* Router.Router
      yield* Router.chat({ model: "g", messages: [{ role: "user", content: "hi" }] })
      yield* Effect.promise(() => server.stop())
      const error = yield* Effect.flip(state.snapshot(router.deployments))
      expect(error._tag).toBe("StoreError")
      expect(error.message).not.toContain(password)
      expect(error.message).toMatch(/Redis/)
      const spendError = yield* Effect.flip(state.spend("total"))
      expect(spendError._tag).toBe("StoreError")
      // the router serves from its local view
      for (let i = 0; i < 3; i++) {
        const reply = yield* Router.chat({ model: "g", messages: [{ role: "user", content: "hi" }] })
        expect(JSON.stringify(reply)).toContain("hello")
      }
      yield* Effect.promise(() => server.start())
    }).pipe(
      Effect.provide(
        Router.layer({ deployments: [{ id: "a", group: "g", provider: fake, model: "m" }] }).pipe(
          Layer.provideMerge(Router.policies),
          Layer.provideMerge(RedisState.layer({ ...options(), commandTimeout: "300 millis" }))
        )
      )
    )
  }, 30_000)
})
