/**
 * Redis round trips per routed call on the happy path (what `npm run bench:redis` counts), seen
 * with MONITOR on another connection: a reservation on a current cache is one `take`, a
 * completion one `complete`; the breaker writes nothing while circuits stay closed. A priced
 * call adds its spend with one more round trip (`addSpend`, after `complete`): folding it into
 * `complete` would make it 2 (see the issue 10 notes).
 */
import { createHash } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { Redis } from "ioredis"
import { Router } from "../src/index.js"
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

  it.live("sequential calls: take + complete per call, and addSpend when the call has a cost", () => {
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
        const perCall = model === "unpriced" ? ["take", "complete"] : ["take", "complete", "addSpend"]
        expect(commands).toEqual(Array.from({ length: 20 }, () => perCall).flat())
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
})
