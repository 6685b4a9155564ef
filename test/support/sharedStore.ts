/**
 * Checks every Redis-backed store's tests run (test/RedisState.test.ts, test/RedisCluster.test.ts),
 * kept apart from test/support/redis.ts, which the benches import too (this one needs vitest).
 */
import { expect } from "@effect/vitest"
import { Effect, Either, Layer } from "effect"
import { Deployment, Router, RouterState } from "../../src/index.js"
import { FakeProvider } from "../../src/testing.js"

/**
 * Two stores over one shared state (two connections, one prefix) see each other's leases,
 * refusals, circuits, spend and policy state.
 */
export const expectOneView = (one: RouterState.Service, two: RouterState.Service) =>
  Effect.gen(function*() {
    const fake = FakeProvider.unsafeMake()
    const ds = Either.getOrThrow(Deployment.fromConfig([
      { id: "x", group: "g", provider: fake, model: "m", maxConcurrent: 1 },
      { id: "y", group: "g", provider: fake, model: "m", maxConcurrent: 1 }
    ], {}))
    const reservation: RouterState.Reservation = {
      deployments: ds,
      admit: (d, stats) => (d.maxConcurrent !== undefined && stats.inFlight >= d.maxConcurrent ? { refused: "full" } : "take"),
      pick: (cs) => Effect.succeed(cs[0]),
      claim: (r) => r,
      ttlMs: 60_000
    }
    const a = yield* one.reserve(reservation)
    const b = yield* two.reserve(reservation)
    expect([a.deployment.id, b.deployment.id]).toEqual(["x", "y"])
    const full = yield* Effect.flip(one.reserve(reservation))
    expect(full._tag === "Unreserved" && full.full).toBe(2)
    yield* two.complete(a, { result: "success", kind: "call", latencyMs: 5, tokens: 3 })
    const c = yield* one.reserve(reservation)
    expect(c.deployment.id).toBe("x")
    yield* one.modifyCooldown(ds, 1, () => [undefined, { record: { status: "open", until: 123, ejections: 1, reason: "failures" }, resetOutcomes: false }])
    const [, y] = yield* two.snapshot(ds)
    expect(y.cooldown).toEqual({ status: "open", until: 123, ejections: 1, reason: "failures" })
    yield* one.addSpend(["total"], 0.5)
    yield* two.addSpend(["total"], 0.25)
    expect(yield* two.spend("total")).toBe(0.75)
    expect(yield* one.modify("k", 0, (n: number) => [n, n + 1] as const)).toBe(0)
    expect(yield* two.modify("k", 0, (n: number) => [n, n + 1] as const)).toBe(1)
    expect(yield* one.modify("k", 0, (n: number) => [n, n + 1] as const)).toBe(2)
  })

/** A router over `Router.policies` and `store` serves 20 requests end to end; the store counts them. */
export const routesEndToEnd = <E>(store: Layer.Layer<RouterState.RouterState, E>) => {
  const fake = FakeProvider.unsafeMake({ reply: "hello" })
  return Effect.gen(function*() {
    for (let i = 0; i < 20; i++) {
      const reply = yield* Router.chat({ model: "g", messages: [{ role: "user", content: "hi" }] })
      expect(JSON.stringify(reply)).toContain("hello")
    }
    const router = yield* Router.Router
    const state = yield* RouterState.RouterState
    const stats = yield* state.snapshot(router.deployments)
    expect(stats.reduce((n, s) => n + s.requests, 0)).toBe(20)
    expect(stats.every((s) => s.inFlight === 0)).toBe(true)
    expect(stats.reduce((n, s) => n + s.completed, 0)).toBe(20)
  }).pipe(
    Effect.provide(
      Router.layer({
        deployments: [
          { id: "a", group: "g", provider: fake, model: "m", maxConcurrent: 5 },
          { id: "b", group: "g", provider: fake, model: "m", maxConcurrent: 5 }
        ]
      }).pipe(Layer.provideMerge(Router.policies), Layer.provideMerge(store))
    )
  )
}
