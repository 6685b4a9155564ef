/**
 * Offline quickstart: routes chat requests across fake deployments (no network, no keys).
 *
 *   npm run example
 *
 * It shows weighted load balancing, a failover when one deployment goes down (with its
 * cooldown), a fallback to another model group, and the cost of every call.
 */
import { Effect, Layer } from "effect"
import { CostMeter, Fallback, RetrySchedule, Router } from "../src/index.js"
import { FakeProvider } from "../src/testing.js"

// One fake upstream serving every deployment; `eu-1` can be switched off to show a failover.
let euDown = false
let usDown = false
const upstream = FakeProvider.unsafeMake({
  name: "fake-openai",
  latency: { uniform: ["5 millis", "25 millis"], seed: 1 },
  reply: (request, target) => `${target.model} says hi to "${String(request.messages.at(-1)?.content)}"`,
  byDeployment: {
    "eu-1": { failure: () => (euDown ? 503 : undefined) },
    "us-1": { failure: () => (usDown ? 503 : undefined) }
  }
})

const RouterLive = Router.layer({
  deployments: [
    // "fast": two deployments, eu-1 takes 3/4 of the traffic
    {
      id: "eu-1",
      group: "fast",
      provider: upstream,
      model: "gpt-4o-mini",
      weight: 3,
      apiKey: "sk-demo-not-a-real-key"
    },
    { id: "us-1", group: "fast", provider: upstream, model: "gpt-4o-mini", weight: 1 },
    // "smart": a pricier group to fall back on
    {
      id: "smart-1",
      group: "smart",
      provider: upstream,
      model: "my-large-model",
      pricing: { inputCostPerToken: 0.000005, outputCostPerToken: 0.000015 }
    }
  ]
}).pipe(
  Layer.provide(Fallback.layer({ fallbacks: { fast: ["smart"] } })),
  Layer.provide(RetrySchedule.layer({ retries: 2, base: "10 millis" })),
  Layer.provideMerge(Router.defaults)
)

const ask = (label: string, model: string, content: string) =>
  Effect.gen(function*() {
    const reply = yield* Router.chat({ model, messages: [{ role: "user", content }] })
    const { route } = reply
    const path = route.attempts.map((a) => (a.error ? `${a.deploymentId} ✗ ${a.error}` : `${a.deploymentId} ✓`)).join(" → ")
    console.log(
      `${label.padEnd(10)} ${route.group.padEnd(6)} served by ${route.deploymentId.padEnd(8)}` +
        ` $${route.cost.toFixed(8)}  ${route.latencyMs.toFixed(1).padStart(5)} ms  [${path}]`
    )
  })

const program = Effect.gen(function*() {
  console.log("1. Load balancing across the 'fast' group (weights 3:1)")
  for (let i = 1; i <= 8; i++) yield* ask(`call ${i}`, "fast", `question ${i}`)

  console.log("\n2. eu-1 goes down: requests fail over to us-1 at once, and eu-1 soon leaves rotation (cooldown)")
  euDown = true
  for (let i = 9; i <= 18; i++) yield* ask(`call ${i}`, "fast", `question ${i}`)

  console.log("\n3. us-1 goes down too: it is the last one left, so it stays in rotation; once its retries")
  console.log("   are spent the 'fast' group is exhausted and requests fall back to 'smart'")
  usDown = true
  for (let i = 19; i <= 20; i++) yield* ask(`call ${i}`, "fast", `question ${i}`)

  console.log("\n4. Errors are typed values, not exceptions")
  const failed = yield* Effect.either(Router.chat({ model: "gpt-9", messages: [{ role: "user", content: "hi" }] }))
  if (failed._tag === "Left") console.log(`   ${failed.left._tag}: ${failed.left.message}`)

  console.log("\n5. Spend")
  for (const scope of ["total", { group: "fast" }, { deployment: "us-1" }, { deployment: "eu-1" }] as const) {
    const usd = yield* CostMeter.spend(scope)
    console.log(`   ${JSON.stringify(scope).padEnd(26)} $${usd.toFixed(8)}`)
  }
})

Effect.runPromise(program.pipe(Effect.provide(RouterLive))).catch((error) => {
  console.error(String(error))
  process.exitCode = 1
})
