/**
 * The Redis store on a Redis Cluster (test/support/redis.ts starts three masters): the store
 * contract's checks unchanged with their prefixes spread over the masters, a router end to end,
 * two instances with one prefix seeing each other's leases, and the Cluster options' validation.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { spawn } from "node:child_process"
import { Cluster } from "ioredis"
import * as RedisState from "../src/RedisState.js"
import { StoreContract } from "../src/testing.js"
import { type RedisCluster, redisClusterAvailable, startRedisCluster } from "./support/redis.js"
import { expectOneView, routesEndToEnd } from "./support/sharedStore.js"

const available = redisClusterAvailable()
let cluster: RedisCluster
let prefixes = 0
/** A fresh prefix whose slot (`{prefix}`, the store's hash tag) is served by the master `ports[node % 3]`. */
const freshOn = (node: number) => {
  const port = cluster.ports[node % cluster.ports.length]
  for (;;) {
    const prefix = `cluster-${process.pid}-${++prefixes}`
    if (cluster.nodeOf(`{${prefix}}:seq`) === port) return prefix
  }
}
const options = (keyPrefix: string) => ({ cluster: { nodes: cluster.nodes.map((n) => `${n.host}:${n.port}`) }, keyPrefix })

describe.runIf(available)("RedisState on Redis Cluster (3 masters on loopback)", () => {
  beforeAll(async () => {
    cluster = await startRedisCluster()
  }, 60_000)
  afterAll(async () => {
    await cluster?.remove()
  })

  describe("keeps the store contract, each check on a fresh prefix, the prefixes spread over the masters", () => {
    const used: Array<{ readonly prefix: string; readonly port: number }> = []
    let index = 0
    const make = Effect.suspend(() => {
      const prefix = freshOn(index++)
      used.push({ prefix, port: cluster.nodeOf(`{${prefix}}:seq`) })
      return RedisState.make(options(prefix))
    })
    for (const check of StoreContract.checks(make)) {
      it.scoped(check.name, () => check.run, 20_000)
    }
    it.live("the checks' stores were on every master, and their keys stayed in their prefix's slot", () =>
      Effect.gen(function*() {
        expect(used.length).toBe(StoreContract.checks(make).length)
        expect(new Set(used.map((u) => u.port)).size).toBe(3)
        // every key a check wrote is on its prefix's master (one slot per store)
        const client = new Cluster(cluster.nodes.map((n) => ({ ...n })), { lazyConnect: true })
        yield* Effect.addFinalizer(() => Effect.promise(() => client.quit().catch(() => undefined)))
        yield* Effect.promise(() => client.connect())
        let keys = 0
        for (const { port, prefix } of used) {
          const node = client.nodes("master").find((n) => n.options.port === port)!
          const found = yield* Effect.promise(() => node.keys(`{${prefix}}:*`))
          keys += found.length
          for (const key of found) expect(cluster.nodeOf(key)).toBe(port)
        }
        expect(keys).toBeGreaterThan(0)
        // ioredis sent each script (EVALSHA, routed by its first key) straight to the slot's master:
        // the scripts ran on every master, and no node ever answered MOVED or CROSSSLOT
        for (const node of client.nodes("master")) {
          const info = yield* Effect.promise(() => node.info("all"))
          expect(info).toMatch(/cmdstat_evalsha:calls=[1-9]/)
          expect(info).not.toMatch(/errorstat_(MOVED|ASK|CROSSSLOT)/)
        }
      }).pipe(Effect.scoped), 20_000)
  })

  it.effect("refuses cluster together with url/host/port/db, and bad nodes, with InvalidConfig and their paths", () =>
    Effect.gen(function*() {
      const both = yield* Effect.flip(Effect.scoped(RedisState.make({
        cluster: { nodes: ["127.0.0.1:7000"] },
        url: Redacted.make("redis://:pw@127.0.0.1:6379"),
        host: "127.0.0.1",
        port: 6379,
        db: 1
      })))
      expect(both._tag).toBe("InvalidConfig")
      expect(both.issues.map((i) => i.path).sort()).toEqual(["RedisState.cluster", "RedisState.db", "RedisState.host", "RedisState.port", "RedisState.url"])
      expect(JSON.stringify(both)).not.toContain("pw@")
      const nodes = yield* Effect.flip(Effect.scoped(RedisState.make({ cluster: { nodes: ["redis://:pw@h:1", { host: "h", port: 0 }, "h", "[::1]:7000", "a.b:1"] } })))
      expect(nodes.message).not.toContain("pw")
      expect(nodes.issues.map((i) => i.path).sort()).toEqual(["RedisState.cluster.nodes[0]", "RedisState.cluster.nodes[1]", "RedisState.cluster.nodes[2]"])
      const none = yield* Effect.flip(Effect.scoped(RedisState.make({ cluster: { nodes: [] } })))
      expect(none.issues.map((i) => i.path)).toEqual(["RedisState.cluster.nodes"])
    }))

  it.live("a router over Router.policies and the Cluster store routes requests end to end", () => routesEndToEnd(RedisState.layer(options(freshOn(1)))), 20_000)

  it.live("two instances (two Cluster clients, one prefix) see each other's leases, circuits and spend", () =>
    Effect.scoped(Effect.gen(function*() {
      const keyPrefix = freshOn(2)
      // one seeded with every node, the other with one node only (it discovers the rest)
      const one = yield* RedisState.make(options(keyPrefix))
      const two = yield* RedisState.make({ cluster: { nodes: [{ host: "127.0.0.1", port: cluster.ports[0] }] }, keyPrefix })
      yield* expectOneView(one, two)
    })), 20_000)

  it.live("a stalled master (a long script): a store timeout, not a stuck request; then the store answers again", () =>
    Effect.scoped(Effect.gen(function*() {
      const keyPrefix = freshOn(0)
      const state = yield* RedisState.make({ ...options(keyPrefix), commandTimeout: "300 millis" })
      yield* state.addSpend(["total"], 1)
      // a script busy for 1.5 s on the prefix's master holds every other client of that node
      const stall = spawn("redis-cli", [
        "-p", String(cluster.nodeOf(`{${keyPrefix}}:seq`)), "EVAL",
        "local t = redis.call('TIME'); local e = t[1] * 1000000 + t[2] + 1500000; repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= e; return 1",
        "0"
      ], { stdio: "ignore" })
      const done = new Promise((resolve) => stall.once("exit", resolve))
      yield* Effect.sleep("200 millis")
      const started = Date.now()
      const error = yield* Effect.flip(state.spend("total"))
      expect(error._tag).toBe("StoreError")
      expect(error.message).toMatch(/timed out/i)
      expect(Date.now() - started).toBeLessThan(1_000)
      yield* Effect.promise(() => done)
      expect(yield* state.spend("total")).toBe(1)
    })), 20_000)

  it.live("a Cluster that is unreachable: operations fail with a typed StoreError within the command timeout", () =>
    Effect.scoped(Effect.gen(function*() {
      // a seed node nobody listens on (port 1): the client never gets a slot map
      const state = yield* RedisState.make({ cluster: { nodes: ["127.0.0.1:1"] }, password: Redacted.make("pa55-word"), commandTimeout: "300 millis" })
      const started = Date.now()
      const error = yield* Effect.flip(state.spend("total"))
      expect(error._tag).toBe("StoreError")
      expect(error.message).toMatch(/Redis/)
      expect(error.message).not.toContain("pa55-word")
      expect(Date.now() - started).toBeLessThan(2_000)
    })), 20_000)
})
