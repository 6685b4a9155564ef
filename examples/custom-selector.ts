/**
 * Custom selection policies, offline (fake deployments, no network, no keys):
 *
 *   npx tsx examples/custom-selector.ts
 *
 * A custom policy is a `Selector` layer. The two below narrow the candidates the router offers
 * (already filtered: healthy, below their limits, carrying the request's tags) by what the
 * request says, then hand the rest to a built-in strategy, provided to them as their own
 * `Selector`, so they stay one pass over the candidates:
 *
 * 1. By a request tag: deployments tagged "batch" are spare capacity. Requests tagged "batch"
 *    go there (the router's tag filter does that), and untagged, interactive requests stay off
 *    them unless every other deployment is busy (at its `maxConcurrent`), cooling down or over
 *    a limit. The least busy of what is left wins.
 * 2. By user tier, from `request.metadata.tier`: "enterprise" only on deployments tagged
 *    "premium", "pro" on premium first and standard when no premium one is available, everyone
 *    else never on premium. The cheapest of what is left wins (the CostMeter's prices). When
 *    nothing fits, the policy says so with `Selector.NoFit`: the request fails with
 *    `NoDeploymentAvailable` (reason "none_fits") instead of quietly running elsewhere.
 */
import { Effect, Layer } from "effect"
import { Cooldown, Router, Selector } from "../src/index.js"
import { FakeProvider } from "../src/testing.js"

// -------------------------------------------------------------------------------------------
// The policies
// -------------------------------------------------------------------------------------------

const isBatch = (c: Selector.Candidate) => c.deployment.tags.includes("batch")

/** 1. Interactive requests stay off the batch deployments while others are available. */
const ByRequestTag: Layer.Layer<Selector.Selector> = Selector.fromEffect(
  Effect.map(Selector.Selector, (inner) => ({
    pick: (candidates, selection) => {
      const tags = selection.request.metadata?.tags ?? []
      if (tags.includes("batch")) return inner.pick(candidates, selection)
      const interactive = candidates.filter((c) => !isBatch(c))
      return inner.pick(interactive.length > 0 ? interactive : candidates, selection)
    }
  }))
).pipe(Layer.provide(Selector.leastBusy)) // the strategy among those left

type Tier = "enterprise" | "pro" | "free"
const tierOf = (metadata: Readonly<Record<string, unknown>> | undefined): Tier => {
  const tier = metadata?.tier
  return tier === "enterprise" || tier === "pro" ? tier : "free"
}
const isPremium = (c: Selector.Candidate) => c.deployment.tags.includes("premium")

/** 2. Premium deployments by user tier. */
const ByUserTier = Selector.fromEffect(
  Effect.map(Selector.Selector, (inner) => ({
    pick: (candidates, selection) => {
      const tier = tierOf(selection.request.metadata)
      const premium = candidates.filter(isPremium)
      const standard = candidates.filter((c) => !isPremium(c))
      const allowed = tier === "enterprise"
        ? premium
        : tier === "pro"
        ? (premium.length > 0 ? premium : standard)
        : standard
      return allowed.length > 0
        ? inner.pick(allowed, selection)
        : Effect.fail(new Selector.NoFit({ message: `no ${tier === "free" ? "standard" : "premium"} deployment available for ${tier} users` }))
    }
  }))
).pipe(Layer.provide(Selector.lowestCost())) // needs the CostMeter: Router.defaults has it

// -------------------------------------------------------------------------------------------
// Demo 1: by request tag
// -------------------------------------------------------------------------------------------

const failures: Array<string> = []
const check = (ok: boolean, what: string) => {
  console.log(`   ${ok ? "ok  " : "FAIL"} ${what}`)
  if (!ok) failures.push(what)
}

const countBy = (ids: ReadonlyArray<string>) => {
  const counts: Record<string, number> = {}
  for (const id of ids) counts[id] = (counts[id] ?? 0) + 1
  return counts
}

const ask = (content: string, metadata?: Record<string, unknown>) =>
  Effect.map(
    Router.chat({ model: "chat", messages: [{ role: "user", content }], ...(metadata === undefined ? {} : { metadata }) }),
    (reply) => reply.route.deploymentId
  )

const upstream = FakeProvider.unsafeMake({ name: "fake-openai", latency: "100 millis" })

const TagRouter = Router.layer({
  deployments: [
    { id: "rt-1", group: "chat", provider: upstream, model: "gpt-4o-mini", maxConcurrent: 2 },
    { id: "rt-2", group: "chat", provider: upstream, model: "gpt-4o-mini", maxConcurrent: 2 },
    { id: "batch-1", group: "chat", provider: upstream, model: "gpt-4o-mini", tags: ["batch"] }
  ]
}).pipe(Layer.provide(ByRequestTag), Layer.provideMerge(Router.defaults))

const byTagDemo = Effect.gen(function*() {
  console.log("1. By request tag: batch deployments are spare capacity for interactive traffic")
  const oneByOne: Array<string> = []
  for (let i = 0; i < 6; i++) oneByOne.push(yield* ask(`question ${i}`))
  console.log(`   6 interactive requests, one at a time: ${JSON.stringify(countBy(oneByOne))}`)
  check(!oneByOne.includes("batch-1"), "interactive requests stay off batch-1 while rt-1 and rt-2 have room")

  const atOnce = yield* Effect.all(Array.from({ length: 6 }, (_, i) => ask(`burst ${i}`)), { concurrency: "unbounded" })
  console.log(`   6 interactive requests at once (rt-1 and rt-2 take 2 each): ${JSON.stringify(countBy(atOnce))}`)
  const burst = countBy(atOnce)
  check(burst["rt-1"] === 2 && burst["rt-2"] === 2 && burst["batch-1"] === 2, "the 2 that do not fit spill onto batch-1")

  const batch: Array<string> = []
  for (let i = 0; i < 3; i++) batch.push(yield* ask(`report ${i}`, { tags: ["batch"] }))
  console.log(`   3 requests tagged "batch": ${JSON.stringify(countBy(batch))}`)
  check(batch.every((id) => id === "batch-1"), "batch requests go to batch-1")
})

// -------------------------------------------------------------------------------------------
// Demo 2: by user tier
// -------------------------------------------------------------------------------------------

let premiumDown = false
const tiered = FakeProvider.unsafeMake({
  name: "fake-openai",
  // a refused key (401) takes a deployment out of rotation at once
  failure: (_callIndex, _now, call) => (premiumDown && call.target.deploymentId.startsWith("premium") ? 401 : undefined)
})

const TierRouter = Router.layer({
  deployments: [
    { id: "premium-big", group: "chat", provider: tiered, model: "big", tags: ["premium"], pricing: { inputCostPerToken: 5e-6, outputCostPerToken: 15e-6 } },
    { id: "premium-mid", group: "chat", provider: tiered, model: "mid", tags: ["premium"], pricing: { inputCostPerToken: 2.5e-6, outputCostPerToken: 10e-6 } },
    { id: "standard-a", group: "chat", provider: tiered, model: "small", pricing: { inputCostPerToken: 0.6e-6, outputCostPerToken: 2.4e-6 } },
    { id: "standard-b", group: "chat", provider: tiered, model: "tiny", pricing: { inputCostPerToken: 0.15e-6, outputCostPerToken: 0.6e-6 } }
  ]
}).pipe(Layer.provide(ByUserTier), Layer.provide(Cooldown.layer()), Layer.provideMerge(Router.defaults))

const byTierDemo = Effect.gen(function*() {
  console.log("\n2. By user tier (request.metadata.tier), the cheapest allowed deployment")
  for (const tier of ["enterprise", "pro", "free"] as const) {
    const id = yield* ask("hello", { tier })
    console.log(`   ${tier.padEnd(10)} -> ${id}`)
    check(id === (tier === "free" ? "standard-b" : "premium-mid"), `${tier}: ${tier === "free" ? "the cheapest standard" : "the cheapest premium"} deployment`)
  }

  console.log("   the premium deployments go down (their key is refused):")
  premiumDown = true
  const pro = yield* ask("hello", { tier: "pro" })
  console.log(`   pro        -> ${pro} (after both premium deployments failed and left rotation)`)
  check(pro === "standard-b", "pro: falls back on standard when no premium deployment is available")
  const enterprise = yield* Effect.either(ask("hello", { tier: "enterprise" }))
  const refusal = enterprise._tag === "Left" ? enterprise.left : undefined
  console.log(`   enterprise -> ${refusal === undefined ? enterprise : `${refusal._tag}: ${refusal.message}`}`)
  check(
    refusal?._tag === "NoDeploymentAvailable" && refusal.reason === "none_fits",
    "enterprise: NoDeploymentAvailable (none_fits), never a standard deployment"
  )
  const free = yield* ask("hello", { tier: "free" })
  console.log(`   free       -> ${free}`)
  check(free === "standard-b", "free: unaffected")
})

// -------------------------------------------------------------------------------------------

const program = Effect.gen(function*() {
  // the fake's latency runs on the real clock here: the burst overlaps for 100 ms
  yield* byTagDemo.pipe(Effect.provide(TagRouter))
  yield* byTierDemo.pipe(Effect.provide(TierRouter))
  console.log(failures.length === 0 ? "\nall checks passed" : `\n${failures.length} checks FAILED`)
  if (failures.length > 0) process.exitCode = 1
})

Effect.runPromise(program).catch((error) => {
  console.error(String(error))
  process.exitCode = 1
})
