/**
 * The README's example, kept here so that the type checker sees it.
 *
 *   npx tsx examples/readme.ts
 */
import { Effect, Layer } from "effect"
import { Fallback, Router } from "../src/index.js"
import { FakeProvider } from "../src/testing.js"

const fake = FakeProvider.unsafeMake({ reply: "hello", latency: "20 millis" })

const RouterLive = Router.layer({
  deployments: [
    { id: "a", group: "fast", provider: fake, model: "gpt-4o-mini", weight: 3 },
    { id: "b", group: "fast", provider: fake, model: "gpt-4o-mini", weight: 1, maxConcurrent: 10 },
    { id: "c", group: "smart", provider: fake, model: "gpt-4o" }
  ]
}).pipe(
  Layer.provide(Fallback.layer({ fallbacks: { fast: ["smart"] } })),
  Layer.provide(Router.defaults) // weighted selection, 2 retries, cooldowns, cost, in-memory state
)

const program = Effect.gen(function*() {
  const reply = yield* Router.chat({ model: "fast", messages: [{ role: "user", content: "Hi" }] })
  console.log(reply.choices[0].message.content, reply.route.deploymentId, reply.route.cost)
})

Effect.runPromise(program.pipe(Effect.provide(RouterLive)))
