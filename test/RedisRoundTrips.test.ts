/**
 * Redis round trips per routed call on the happy path (what `npm run bench:redis` counts), seen
 * with MONITOR on another connection: a reservation on a current cache is one `take`, a
 * completion one `complete`; the breaker writes nothing while circuits stay closed, and a
 * priced call's spend goes with its `complete` (before: one more round trip, `addSpend`).
 */
import { createHash } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { Redis } from "ioredis"
import { CostMeter, Router } from "../src/index.js"
import * as scripts from "../src/internal/redisScripts.js"
import * as RedisState from "../src/RedisState.js"
import { FakeProvider } from "../src/testing.js"
import { type RedisServer, redisAvailable, startRedis } from "./support/redis.js"

const available = redisAvailable()
/** Script names by the SHA1 ioredis sends (EVALSHA). */
const scriptNames = new Map(Object.entries(scripts).map(([name, lua]) => [createHash("sha1").update(lua).digest("hex"), name]))
let server: RedisServer

describe.runIf(available)("Redis round trips per routed call (redis-server on loopback)", () => {
  beforeAll(async () => {
    server = await startRedis()
  }, 20_000)
  afterAll(async () => {
    await server?.remove()
  })

  it.live("sequential calls: take + complete per call, priced or not (the spend goes with complete)", () => {
    const fake = FakeProvider.unsafeMake({ record: false })
    const deployments = [
      ...["a", "b", "c"].map((id) => ({ id, group: "priced", provider: fake, model: "gpt-4o-mini" })),
      ...["x", "y", "z"].map((id) => ({ id, group: "unpriced", provider: fake, model: "no-price-model" }))
    ]
    return Effect.scoped(Effect.gen(function*() {
      const inspector = yield* Effect.acquireRelease(
        Effect.sync(() => new Redis(server.url, { maxRetriesPerRequest: 1 })),
        (r) => Effect.sync(() => r.disconnect())
      )
      const monitor = yield* Effect.acquireRelease(Effect.promise(() => inspector.monitor()), (m) => Effect.sync(() => m.disconnect()))
      const commands: Array<string> = []
      monitor.on("monitor", (_time: string, args: ReadonlyArray<string>, source: string) => {
        if (source === "lua") return
        const command = String(args[0]).toLowerCase()
        commands.push(command === "evalsha" ? scriptNames.get(args[1]) ?? args[1] : command)
      })
      const calls = (model: string, n: number) =>
        Effect.gen(function*() {
          for (let i = 0; i < n; i++) yield* Router.chat({ model, messages: [{ role: "user", content: "hi" }] })
          yield* Effect.sleep("100 millis") // the last commands reach MONITOR
        })
      for (const model of ["unpriced", "priced"]) {
        yield* calls(model, 3) // the pool's first read
        commands.length = 0
        yield* calls(model, 20)
        expect(commands).toEqual(Array.from({ length: 20 }, () => ["take", "complete"]).flat())
      }
    })).pipe(
      Effect.provide(
        Router.layer({ deployments }).pipe(
          Layer.provideMerge(Router.policies),
          Layer.provideMerge(RedisState.layer({ url: Redacted.make(server.url), keyPrefix: "round-trips" }))
        )
      )
    )
  }, 20_000)

  it.live("the spend that goes with complete is in Redis: 20 priced calls, their cost in total and per key", () => {
    const fake = FakeProvider.unsafeMake({ record: false })
    return Effect.gen(function*() {
      let cost = 0
      for (let i = 0; i < 20; i++) {
        cost += (yield* Router.chat({ model: "priced", messages: [{ role: "user", content: "hi" }] }, { tags: ["t"] })).route.cost
      }
      expect(cost).toBeGreaterThan(0)
      for (const key of ["total", "group:priced", "deployment:a", "tag:t"]) {
        expect(yield* CostMeter.spend(key === "total" ? "total" : key.startsWith("group") ? { group: "priced" } : key.startsWith("tag") ? { tag: "t" } : { deployment: "a" })).toBeCloseTo(cost, 12)
      }
    }).pipe(
      Effect.provide(
        Router.layer({ deployments: [{ id: "a", group: "priced", provider: fake, model: "gpt-4o-mini", tags: ["t"] }] }).pipe(
          Layer.provideMerge(Router.policies),
          Layer.provideMerge(RedisState.layer({ url: Redacted.make(server.url), keyPrefix: "spend-with-complete" }))
        )
      )
    )
  }, 20_000)
})
