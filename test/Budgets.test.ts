/**
 * Budgets: spend limits per deployment, provider, group, tag or in total, per calendar period.
 * A deployment a budget has no room for is skipped; when none is left the request fails with
 * `over_budget`, naming the budget and when it resets. Calls in flight hold their estimated
 * cost, so concurrent calls cannot overshoot together.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Either, Fiber, Layer, TestClock, TestContext } from "effect"
import * as fc from "fast-check"
import { CostMeter, Router, RouterState, Tokens } from "../src/index.js"
import type { Deployment } from "../src/index.js"
import { FakeProvider } from "../src/testing.js"
import { replayArrivals } from "./support/arrivals.js"

// a dollar per prompt token, two per output token: costs are easy to count
const pricing = { inputCostPerToken: 1, outputCostPerToken: 2 }
const ask = (maxTokens = 10, tags?: ReadonlyArray<string>) => ({
  model: "g",
  messages: [{ role: "user" as const, content: "hi" }],
  max_tokens: maxTokens,
  ...(tags === undefined ? {} : { metadata: { tags } })
})
/** The estimate of `ask(maxTokens)`: 7 prompt tokens and `maxTokens` output tokens. */
const estimateOf = (maxTokens: number) => Tokens.prompt(ask(maxTokens)) * 1 + maxTokens * 2

/** A fake whose usage is exactly the estimate (prompt as estimated, output = max_tokens), plus `extra` output tokens. */
const exact = (options: { latency?: string; extra?: (callIndex: number) => number } = {}) => {
  let calls = 0
  return FakeProvider.unsafeMake({
    ...(options.latency === undefined ? {} : { latency: options.latency as Duration.DurationInput }),
    usage: (request) => {
      const output = (request.max_tokens ?? 0) + (options.extra?.(calls++) ?? 0)
      const prompt = Tokens.prompt(request)
      return { prompt_tokens: prompt, completion_tokens: output, total_tokens: prompt + output }
    }
  })
}

const routerWith = (deployments: ReadonlyArray<Deployment.DeploymentConfig>, budgets: ReadonlyArray<CostMeter.Budget>) =>
  Router.layer({ deployments }).pipe(
    Layer.provideMerge(CostMeter.layer({ budgets })),
    Layer.provideMerge(Router.policies),
    Layer.provideMerge(RouterState.memory())
  )

describe("budgets", () => {
  it.effect("a group's daily budget: requests until it is spent, then over_budget naming it and its reset; the next day it is back", () => {
    const fake = exact()
    const cost = estimateOf(10) // 27 dollars a call
    expect(cost).toBe(27)
    return Effect.gen(function*() {
      yield* TestClock.adjust("6 hours")
      for (let i = 0; i < 3; i++) yield* Router.chat(ask(10))
      const refused = yield* Effect.flip(Router.chat(ask(10)))
      expect(refused._tag).toBe("NoDeploymentAvailable")
      if (refused._tag !== "NoDeploymentAvailable") return
      expect(refused.reason).toBe("over_budget")
      expect(refused.budget).toEqual({ name: "group:g per day", resetsAt: 86_400_000 })
      expect(Duration.toMillis(refused.retryAfter!)).toBe(18 * 3_600_000)
      expect(refused.message).toContain("\"group:g per day\" resets at 1970-01-02T00:00:00.000Z")
      expect(yield* CostMeter.spend("total")).toBe(81)
      yield* TestClock.adjust("18 hours")
      expect((yield* Router.chat(ask(10))).route.cost).toBe(27)
    }).pipe(Effect.provide(routerWith([{ id: "a", group: "g", provider: fake, model: "m", pricing }], [{ scope: { group: "g" }, limit: 100, period: "day" }])))
  })

  it.effect("a deployment over its budget is skipped like a cooling one; the others serve", () => {
    const fake = exact()
    return Effect.gen(function*() {
      const served: Array<string> = []
      for (let i = 0; i < 10; i++) served.push((yield* Router.chat(ask(10))).route.deploymentId)
      expect(served.filter((id) => id === "a").length).toBeLessThanOrEqual(1)
      expect(served.filter((id) => id === "b").length).toBeGreaterThanOrEqual(9)
    }).pipe(Effect.provide(routerWith(
      [{ id: "a", group: "g", provider: fake, model: "m", pricing }, { id: "b", group: "g", provider: fake, model: "m", pricing }],
      [{ scope: { deployment: "a" }, limit: 30, period: "hour", name: "a hourly" }]
    )))
  })

  it.effect("a tag's budget charges only the requests with that tag", () => {
    const fake = exact()
    return Effect.gen(function*() {
      yield* Router.chat(ask(10, ["team-a"]))
      const refused = yield* Effect.flip(Router.chat(ask(10, ["team-a"])))
      expect(refused._tag === "NoDeploymentAvailable" && refused.budget?.name).toBe("team A")
      // untagged and other teams are not charged to it
      yield* Router.chat(ask(10))
      yield* Router.chat(ask(10, ["team-b"]))
    }).pipe(Effect.provide(routerWith(
      [{ id: "a", group: "g", provider: fake, model: "m", pricing, tags: ["team-a", "team-b"] }],
      [{ scope: { tag: "team-a" }, limit: 40, period: "month", name: "team A" }]
    )))
  })

  it.effect("concurrent calls hold their estimates: 20 at once under a budget for 5 start exactly 5", () => {
    const fake = exact({ latency: "1 second" })
    return Effect.gen(function*() {
      const fibers = yield* Effect.forEach(Array.from({ length: 20 }), () => Effect.fork(Effect.either(Router.chat(ask(10)))))
      yield* TestClock.adjust("1 second")
      const results = yield* Effect.forEach(fibers, Fiber.join)
      expect(results.filter(Either.isRight)).toHaveLength(5)
      expect(results.filter((r) => Either.isLeft(r) && r.left._tag === "NoDeploymentAvailable" && r.left.reason === "over_budget")).toHaveLength(15)
      expect(yield* fake.callCount).toBe(5)
      expect(yield* CostMeter.spend("total")).toBe(135)
    }).pipe(Effect.provide(routerWith([{ id: "a", group: "g", provider: fake, model: "m", pricing }], [{ scope: "total", limit: 140, period: "minute" }])))
  })

  it.effect("a provider's budget covers all of its deployments", () => {
    const fake = exact()
    return Effect.gen(function*() {
      yield* Router.chat(ask(10))
      const refused = yield* Effect.flip(Router.chat(ask(10)))
      expect(refused._tag === "NoDeploymentAvailable" && refused.reason).toBe("over_budget")
    }).pipe(Effect.provide(routerWith(
      [{ id: "a", group: "g", provider: fake, model: "m", pricing }, { id: "b", group: "g", provider: fake, model: "m", pricing }],
      [{ scope: { provider: fake.name }, limit: 50, period: "day" }]
    )))
  })

  it.effect("bad budgets are refused with their paths: unknown scope names, duplicate names, a limit that is not positive", () =>
    Effect.gen(function*() {
      const fake = exact()
      const d = [{ id: "a", group: "g", provider: fake, model: "m" }]
      const unknown = yield* Effect.flip(Layer.build(routerWith(d, [
        { scope: { group: "nope" }, limit: 1, period: "day" },
        { scope: { deployment: "zz" }, limit: 1, period: "day" }
      ])).pipe(Effect.scoped))
      expect(unknown.message).toContain("CostMeter.budgets[0].scope: unknown model group \"nope\"")
      expect(unknown.message).toContain("CostMeter.budgets[1].scope: unknown deployment \"zz\"")
      const twice = yield* Effect.flip(Layer.build(CostMeter.layer({
        budgets: [{ scope: "total", limit: 1, period: "day" }, { scope: "total", limit: 2, period: "day" }]
      }).pipe(Layer.provide(RouterState.memory()))).pipe(Effect.scoped))
      expect(twice.message).toContain("budget names must be unique: \"total per day\"")
      const negative = yield* Effect.flip(Layer.build(CostMeter.layer({
        budgets: [{ scope: "total", limit: -1, period: "week" as never }]
      }).pipe(Layer.provide(RouterState.memory()))).pipe(Effect.scoped))
      expect(negative.message).toContain("budgets[0].limit")
      expect(negative.message).toContain("budgets[0].period")
    }))
})

describe("budgets under concurrency (property)", () => {
  it.effect("spend never passes a budget by more than the calls in flight at once could cost over their estimates", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 30, max: 600 }),
          fc.integer({ min: 1, max: 4 }),
          fc.array(fc.record({ at: fc.integer({ min: 0, max: 5_000 }), maxTokens: fc.integer({ min: 1, max: 20 }), extra: fc.integer({ min: -5, max: 8 }) }), { minLength: 1, maxLength: 60 }),
          (limit, maxConcurrent, arrivals) =>
            Effect.runPromise(simulate(limit, maxConcurrent, arrivals).pipe(Effect.provide(TestContext.TestContext)) as Effect.Effect<boolean>)
        ),
        { numRuns: 30 }
      )).pipe(Effect.map((result) => expect(result).toBeUndefined())))
})

const simulate = (limit: number, maxConcurrent: number, arrivals: ReadonlyArray<{ at: number; maxTokens: number; extra: number }>) => {
  const sorted = [...arrivals].sort((a, b) => a.at - b.at)
  // the k-th call made gets the extra output tokens of the k-th arrival (never below zero output)
  const extras = sorted.map((a) => Math.max(-a.maxTokens, a.extra))
  const fake = exact({ latency: "300 millis", extra: (i) => extras[i] ?? 0 })
  return Effect.gen(function*() {
    const results = yield* replayArrivals(sorted, (a) => Router.chat(ask(a.maxTokens), { waitForCapacity: "1 second" }), "1 minute")
    for (const r of results) {
      if (Either.isLeft(r) && !(r.left._tag === "NoDeploymentAvailable" && (r.left.reason === "over_budget" || r.left.reason === "over_limits"))) return false
    }
    const spent = yield* CostMeter.spend("total")
    // at most `maxConcurrent` calls run at once, each over its estimate by at most its extra output tokens
    const worstGap = Math.max(0, ...extras) * 2
    if (spent > limit + maxConcurrent * worstGap + 1e-9) return false
    // with no call over its estimate, the budget holds exactly
    if (extras.every((e) => e <= 0) && spent > limit + 1e-9) return false
    return true
  }).pipe(Effect.provide(routerWith(
    [{ id: "a", group: "g", provider: fake, model: "m", pricing, maxConcurrent }],
    [{ scope: "total", limit, period: "hour" }]
  )))
}
