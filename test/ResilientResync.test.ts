/**
 * The router's policy for a failing store (src/internal/resilient.ts): the spend made while the
 * shared store failed is added back when it answers again, and spend made locally while that
 * is under way (the store failing again meanwhile) is not dropped.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, TestClock } from "effect"
import { RouterState } from "../src/index.js"
import { resilient } from "../src/internal/resilient.js"

describe("resilient store: spend added back", () => {
  it.effect("spend made locally while the outage's spend is being added back is kept for the next switch back", () =>
    Effect.gen(function*() {
      const shared = yield* RouterState.makeMemory()
      const local = yield* RouterState.makeMemory()
      const control: { down: boolean; gate: Deferred.Deferred<void> | undefined } = { down: false, gate: undefined }
      const primary: RouterState.Service = {
        ...shared,
        addSpend: (keys, amount) =>
          Effect.suspend(() => {
            if (control.down) return Effect.fail(new RouterState.StoreError({ operation: "addSpend", message: "down" }))
            const gate = control.gate
            return gate === undefined ? shared.addSpend(keys, amount) : Effect.zipRight(Deferred.await(gate), shared.addSpend(keys, amount))
          }),
        spend: (key) =>
          Effect.suspend(() => control.down ? Effect.fail(new RouterState.StoreError({ operation: "spend", message: "down" })) : shared.spend(key))
      }
      const { degraded, store } = resilient(primary, local, 5_000)

      // the store fails: 1 spent locally
      control.down = true
      yield* store.addSpend(["total"], 1)
      expect(degraded()).toBe(true)

      // 5 s on, it answers: the first operation switches back and adds the 1 (held up here)
      yield* TestClock.adjust("5 seconds")
      control.down = false
      const gate = yield* Deferred.make<void>()
      control.gate = gate
      const switching = yield* Effect.fork(store.spend("total"))
      yield* Effect.yieldNow()
      expect(degraded()).toBe(false)
      // meanwhile the store fails again: 2 spent locally
      control.down = true
      yield* store.addSpend(["total"], 2)
      control.down = false
      control.gate = undefined
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(switching)
      expect(yield* shared.spend("total")).toBe(1)

      // the next switch back adds the 2: nothing lost
      yield* TestClock.adjust("5 seconds")
      yield* store.spend("total")
      expect(degraded()).toBe(false)
      expect(yield* shared.spend("total")).toBe(3)
    }))
})
