/**
 * The memory store's fast admission (`takesAvailable` in src/internal/state.ts): a reservation
 * that promises its `admit` takes every deployment with an available circuit below its limit
 * has those admitted by the store itself; the candidates are the pool's one frozen array while
 * every deployment passes. Checked here: it is the same admission as `admit`'s, a deployment
 * that becomes full, cooling or probing is left out at once, and the router makes the promise
 * only for requests it holds for.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Fiber, Random, TestClock, TestContext } from "effect"
import * as fc from "fast-check"
import { type Deployment, Deployment as Deployments, Router, RouterState, Selector } from "../src/index.js"
import { type FastReservation, takesAvailable } from "../src/internal/state.js"
import { FakeProvider } from "../src/testing.js"
import { watchFastPath } from "./support/fastPath.js"

const fake = FakeProvider.unsafeMake()

const deploymentsOf = (limits: ReadonlyArray<number | undefined>, prefix = "d"): ReadonlyArray<Deployment.Deployment> =>
  Either.getOrThrow(Deployments.fromConfig(
    limits.map((maxConcurrent, i) => ({
      id: `${prefix}${i}`,
      group: "g",
      provider: fake,
      model: "m",
      ...(maxConcurrent === undefined ? {} : { maxConcurrent })
    })),
    {}
  ))

/** The built-in breaker's availability: closed, or open with its cooldown over. */
const policy = {
  isAvailable: (record: RouterState.CooldownRecord, now: number) =>
    record.status === "closed" || (record.status === "open" && record.until <= now)
}

/** The router's admission for a request without tags, exclusions, holds or failures; counts its calls. */
const admitting = () => {
  const calls: Array<string> = []
  const admit = (d: Deployment.Deployment, stats: RouterState.DeploymentStats, now: number): RouterState.Admission => {
    calls.push(d.id)
    const circuit = stats.cooldown
    if (!policy.isAvailable(circuit, now)) return { refused: "cooling", until: circuit.status === "open" ? circuit.until : undefined }
    if (d.maxConcurrent !== undefined && stats.inFlight >= d.maxConcurrent) return { refused: "full" }
    return "take"
  }
  return { admit, calls }
}

const keep = (record: RouterState.CooldownRecord) => record

/** A reservation whose pick records what it was offered, then takes `choose` of it (or fails: nothing taken). */
const reservationOf = (
  deployments: ReadonlyArray<Deployment.Deployment>,
  options: { readonly fast: boolean; readonly choose?: (candidates: ReadonlyArray<Selector.Candidate>) => Selector.Candidate | undefined }
) => {
  const { admit, calls } = admitting()
  const offered: Array<ReadonlyArray<Selector.Candidate>> = []
  const reservation: FastReservation = {
    deployments,
    admit,
    pick: (candidates) => {
      offered.push(candidates)
      const chosen = (options.choose ?? ((cs) => cs[0]))(candidates)
      return chosen === undefined ? Effect.fail(new Selector.NoFit({ message: "look only" })) : Effect.succeed(chosen)
    },
    claim: keep,
    ttlMs: 60_000,
    [takesAvailable]: options.fast ? policy : undefined
  }
  return { reservation, admitCalls: calls, offered }
}

const ids = (candidates: ReadonlyArray<Selector.Candidate>) => candidates.map((c) => c.deployment.id)

const setCircuit = (store: RouterState.Service, d: Deployment.Deployment, record: RouterState.CooldownRecord) =>
  store.modifyCooldown([d], 0, () => [undefined, { record, resetOutcomes: false }] as const)

const closed: RouterState.CooldownRecord = { status: "closed", until: 0, ejections: 0, reason: "failures" }

describe("RouterState.makeMemory: fast admission (takesAvailable)", () => {
  it.effect("while every deployment passes, the selector gets the pool's one frozen array, in pool order, and admit is not called", () =>
    Effect.gen(function*() {
      const store = yield* RouterState.makeMemory()
      const pool = deploymentsOf([undefined, 2, undefined, 3])
      const first = reservationOf(pool, { fast: true })
      const a = yield* store.reserve(first.reservation)
      const b = yield* store.reserve(first.reservation)
      expect(first.admitCalls).toEqual([])
      expect(first.offered[0]).toBe(first.offered[1])
      expect(Object.isFrozen(first.offered[0])).toBe(true)
      expect(ids(first.offered[0])).toEqual(["d0", "d1", "d2", "d3"])
      // the candidates' stats are live: the two leases just taken on d0 show
      expect(first.offered[0][0].stats.inFlight).toBe(2)
      yield* store.complete(a, undefined)
      yield* store.complete(b, undefined)
      // without the promise: the same candidates, through admit
      const slow = reservationOf(pool, { fast: false })
      yield* Effect.flatMap(store.reserve(slow.reservation), (lease) => store.complete(lease, undefined))
      expect(slow.admitCalls).toEqual(["d0", "d1", "d2", "d3"])
      expect(ids(slow.offered[0])).toEqual(["d0", "d1", "d2", "d3"])
    }))

  it.effect("a deployment that becomes full, cooling or probing is left out at once, and comes back", () =>
    Effect.gen(function*() {
      const store = yield* RouterState.makeMemory()
      const pool = deploymentsOf([undefined, 1, undefined])
      const [d0, d1, d2] = pool
      const fast = () => reservationOf(pool, { fast: true })
      const look = () => reservationOf(pool, { fast: true, choose: () => undefined })
      // a slot taken on d1 fills it
      const onD1 = reservationOf(pool, { fast: true, choose: (cs) => cs.find((c) => c.deployment === d1) })
      const held = yield* store.reserve(onD1.reservation)
      const full = look()
      yield* Effect.flip(store.reserve(full.reservation))
      expect(ids(full.offered[0])).toEqual(["d0", "d2"])
      expect(full.admitCalls).toEqual(["d1"])
      // d2 cooling down
      const now = yield* store.now
      yield* setCircuit(store, d2, { status: "open", until: now + 10_000, ejections: 1, reason: "failures" })
      const cooling = look()
      yield* Effect.flip(store.reserve(cooling.reservation))
      expect(ids(cooling.offered[0])).toEqual(["d0"])
      expect(cooling.admitCalls).toEqual(["d1", "d2"])
      // d0 being probed: nothing left, each refusal counted
      yield* setCircuit(store, d0, { status: "probing", until: now, ejections: 1, reason: "failures" })
      const none = fast()
      const refused = yield* Effect.flip(store.reserve(none.reservation))
      expect(none.offered).toEqual([])
      expect(refused).toEqual(new RouterState.Unreserved({ untagged: 0, excluded: 0, cooling: 2, full: 1, rpm: 0, tpm: 0, firstBack: now + 10_000, capacityBack: undefined, budget: 0, budgetRefusal: undefined }))
      // d2's cooldown runs out, d1's slot is given back: both are admitted again (d0 still probing)
      yield* TestClock.adjust("10 seconds")
      yield* store.complete(held, undefined)
      const back = look()
      yield* Effect.flip(store.reserve(back.reservation))
      expect(ids(back.offered[0])).toEqual(["d1", "d2"])
      expect(back.admitCalls).toEqual(["d0"])
      // every circuit closed again: the pool's frozen array, admit not called
      yield* setCircuit(store, d0, closed)
      yield* setCircuit(store, d2, closed)
      const again = look()
      yield* Effect.flip(store.reserve(again.reservation))
      expect(again.admitCalls).toEqual([])
      expect(Object.isFrozen(again.offered[0])).toBe(true)
      expect(ids(again.offered[0])).toEqual(["d0", "d1", "d2"])
    }))

  it("property: with or without the promise, a reservation admits the same candidates, in the same order, with the same refusals", () => {
    const circuit = fc.oneof(
      fc.constant<RouterState.CooldownRecord>(closed),
      fc.constant<RouterState.CooldownRecord>({ status: "probing", until: 0, ejections: 1, reason: "failures" }),
      fc.integer({ min: -5_000, max: 5_000 }).map((dt): RouterState.CooldownRecord => ({ status: "open", until: dt, ejections: 1, reason: "failures" }))
    )
    const deployment = fc.record({
      limit: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
      inFlight: fc.integer({ min: 0, max: 3 }),
      circuit
    })
    let run = 0
    fc.assert(
      fc.property(fc.array(deployment, { minLength: 2, maxLength: 12 }), (spec) => {
        const pool = deploymentsOf(spec.map((s) => s.limit), `p${run++}-`)
        const program = Effect.gen(function*() {
          const store = yield* RouterState.makeMemory()
          const now = yield* store.now
          for (let i = 0; i < spec.length; i++) {
            // slots taken directly (a pinned pool of one: no admission in the way)
            for (let k = 0; k < Math.min(spec[i].inFlight, spec[i].limit ?? Infinity); k++) {
              yield* store.reserve({ deployments: [pool[i]], admit: () => "take", pick: (cs) => Effect.succeed(cs[0]), claim: keep, ttlMs: 60_000 })
            }
            const record = spec[i].circuit
            yield* setCircuit(store, pool[i], record.status === "open" ? { ...record, until: now + record.until } : record)
          }
          const outcome = (fast: boolean) =>
            Effect.gen(function*() {
              const r = reservationOf(pool, { fast, choose: () => undefined })
              const result = yield* Effect.either(store.reserve(r.reservation))
              return {
                offered: r.offered.map(ids),
                refused: Either.isLeft(result) && result.left._tag === "Unreserved" ? { ...result.left } : undefined
              }
            })
          const withPromise = yield* outcome(true)
          const without = yield* outcome(false)
          expect(withPromise).toEqual(without)
        })
        // on a TestClock: time must not move between the two reservations (an open circuit a
        // millisecond from its end would be available to one and not to the other)
        Effect.runSync(program.pipe(Effect.provide(TestContext.TestContext)))
      }),
      { numRuns: 300 }
    )
  })
})

describe("the router's promise (attempt.ts)", () => {
  const failing = FakeProvider.unsafeMake({ byDeployment: { "x-a": { failure: 503 }, "x-b": { failure: 503 } } })
  const deployments = [
    { id: "x-a", group: "x", provider: failing, model: "gpt-4o-mini" },
    { id: "x-b", group: "x", provider: failing, model: "gpt-4o-mini" },
    { id: "ok-a", group: "ok", provider: failing, model: "gpt-4o-mini", tags: ["eu"] },
    { id: "ok-b", group: "ok", provider: failing, model: "gpt-4o-mini" }
  ]
  const chat = (model: string, tags?: Array<string>) =>
    Router.chat({ model, messages: [{ role: "user", content: "hi" }], ...(tags === undefined ? {} : { metadata: { tags } }) })

  it.effect("made for a plain request, not for one with tags nor for a retry after a failure", () =>
    Effect.gen(function*() {
      const { promised, routerOf } = yield* watchFastPath
      yield* Effect.gen(function*() {
        yield* chat("ok")
        expect(promised).toEqual([true])
        yield* chat("ok", ["eu"])
        expect(promised).toEqual([true, false])
        // both of "x" fail: the first attempt is plain, the retries know where it failed
        promised.length = 0
        const fiber = yield* Effect.fork(Effect.either(chat("x")))
        yield* TestClock.adjust("1 minute")
        const result = yield* Fiber.join(fiber)
        expect(Either.isLeft(result)).toBe(true)
        expect(promised.length).toBeGreaterThan(1)
        expect(promised[0]).toBe(true)
        expect(promised.slice(1).every((p) => !p)).toBe(true)
      }).pipe(
        Effect.provide(
          routerOf({ deployments })
        ),
        Effect.withRandom(Random.make(7))
      )
    }))
})

describe("Selector.weighted over a frozen candidates array (prepared once)", () => {
  const candidatesOf = (limits: ReadonlyArray<{ readonly weight?: number; readonly rpm?: number }>) =>
    Either.getOrThrow(Deployments.fromConfig(
      limits.map((l, i) => ({ id: `w${i}`, group: "w", provider: fake, model: "m", ...l })),
      {}
    )).map((deployment): Selector.Candidate => ({ deployment, stats: {} as RouterState.DeploymentStats }))
  const request: Selector.SelectionRequest = { kind: "chat", group: "w", request: { model: "w", messages: [] }, attempt: 0 }
  const picks = (candidates: ReadonlyArray<Selector.Candidate>, seed: number) =>
    Effect.gen(function*() {
      const selector = yield* Selector.Selector
      const out: Array<string> = []
      for (let i = 0; i < 2_000; i++) out.push((yield* selector.pick(candidates, request)).deployment.id)
      return out
    }).pipe(Effect.provide(Selector.weighted), Effect.withRandom(Random.make(seed)))

  it.effect("picks what the scan picks, for the same random numbers (weights, zero weights, rpm, uniform)", () =>
    Effect.gen(function*() {
      const shapes: ReadonlyArray<ReadonlyArray<{ readonly weight?: number; readonly rpm?: number }>> = [
        Array.from({ length: 40 }, (_, i) => ({ weight: i % 5 })),
        Array.from({ length: 64 }, (_, i) => (i % 3 === 0 ? { rpm: 100 * (i + 1) } : {})),
        Array.from({ length: 50 }, () => ({})),
        Array.from({ length: 33 }, (_, i) => ({ weight: i === 32 ? 0 : 1 }))
      ]
      for (const shape of shapes) {
        const scanned = candidatesOf(shape)
        const frozen = Object.freeze([...scanned])
        for (const seed of [1, 2, 3]) {
          const expected = yield* picks(scanned, seed)
          expect(yield* picks(frozen, seed)).toEqual(expected)
        }
      }
    }))

  it.effect("never picks a zero weight; every weight zero: uniform", () =>
    Effect.gen(function*() {
      const zeros = Object.freeze(candidatesOf(Array.from({ length: 40 }, (_, i) => ({ weight: i === 39 ? 1 : 0 }))))
      expect(new Set(yield* picks(zeros, 5))).toEqual(new Set(["w39"]))
      const allZero = Object.freeze(candidatesOf(Array.from({ length: 40 }, () => ({ weight: 0 }))))
      expect(new Set(yield* picks(allZero, 5)).size).toBe(40)
    }))
})
