/**
 * Two router instances, one view: both keep their state in one Redis, so a deployment's
 * `maxConcurrent` and `rpm` hold across them, and a deployment one instance takes out is out
 * for the other. Here both instances run in one process (in production: one per app instance).
 *
 *   redis-server --port 6379 --save "" &                # or: docker run -p 6379:6379 redis:7
 *   REDIS_URL=redis://127.0.0.1:6379 npx tsx examples/redis-instances.ts
 */
import { Effect, Fiber, Layer, Redacted } from "effect"
import { Router, RouterState } from "../src/index.js"
import * as RedisState from "../src/RedisState.js"
import { FakeProvider } from "../src/testing.js"

const url = Redacted.make(process.env.REDIS_URL ?? "redis://127.0.0.1:6379")
// a fresh prefix per run, so that runs do not see each other's state
const keyPrefix = `example-${Date.now()}`

let bDown = false
const upstream = FakeProvider.unsafeMake({ latency: "1 second", byDeployment: { b: { failure: () => (bDown ? 503 : undefined) } } })
const deployments = [
  { id: "a", group: "fast", provider: upstream, model: "m", maxConcurrent: 1 },
  { id: "b", group: "fast", provider: upstream, model: "m", maxConcurrent: 1 }
]

/** One app instance: a router over the shared Redis store (its own connection). */
const instance = Router.layer({ deployments }).pipe(
  Layer.provideMerge(Router.policies),
  Layer.provideMerge(RedisState.layer({ url, keyPrefix }))
)
const ask = { model: "fast", messages: [{ role: "user" as const, content: "hi" }] }

const program = Effect.gen(function*() {
  const one = yield* Layer.build(instance)
  const two = yield* Layer.build(instance)
  const via = (ctx: typeof one) => Effect.either(Router.chat(ask)).pipe(Effect.provide(ctx))

  // maxConcurrent 1 on each: two calls in flight on instance one fill both deployments...
  const busy = yield* Effect.all([via(one), via(one)], { concurrency: "unbounded" }).pipe(Effect.fork)
  yield* Effect.sleep("200 millis")
  // ...so instance two finds none free: the limit holds across instances
  const third = yield* via(two)
  console.log("instance two while one holds both slots:", third._tag === "Left" ? `${third.left._tag}: ${third.left.message}` : "served?!")
  yield* Fiber.join(busy)

  // b starts failing: instance one sees it fail until the breaker takes it out, in Redis...
  bDown = true
  for (let i = 0; i < 8; i++) yield* via(one)
  const stats = yield* Effect.gen(function*() {
    const router = yield* Router.Router
    return yield* (yield* RouterState.RouterState).snapshot(router.deployments)
  }).pipe(Effect.provide(one))
  console.log("b's circuit, as Redis holds it:", stats[1].cooldown.status)
  // ...and instance two sends nothing to b
  const served = yield* Effect.forEach([1, 2, 3], () => via(two))
  console.log("instance two now serves from:", served.map((r) => (r._tag === "Right" ? r.right.route.deploymentId : r.left._tag)).join(", "))
})

Effect.runPromise(Effect.scoped(program)).catch((error) => {
  console.error(`failed (is Redis running at ${Redacted.value(url)}?):`, error)
  process.exitCode = 1
})
