/**
 * The checks of the store contract (`StoreContract.checks`).
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { type Deployment, fromConfig } from "../Deployment.js"
import { BadRequest } from "../Errors.js"
import type { Provider } from "../Provider.js"
import type { Admission, CooldownRecord, Lease, Reservation, Service } from "../RouterState.js"
import { type Candidate, NoFit } from "../Selector.js"
import { ContractViolation } from "../StoreContract.js"

const unused = (name: string) => (_request: unknown, target: { readonly deploymentId: string }) =>
  new BadRequest({ provider: "contract", deploymentId: target.deploymentId, message: `${name} is not called by the store contract` })

const provider: Provider = {
  name: "contract",
  chat: (request, target) => Effect.fail(unused("chat")(request, target)),
  stream: (request, target) => Stream.fail(unused("stream")(request, target)),
  embed: (request, target) => Effect.fail(unused("embed")(request, target))
}

/** Deployments d0..d{n-1} of group "g" (`maxConcurrent` and rolling-minute limits on each when given). */
const deploymentsOf = (n: number, maxConcurrent?: number, limits: { readonly rpm?: number; readonly tpm?: number } = {}): ReadonlyArray<Deployment> =>
  Either.getOrThrow(fromConfig(
    Array.from({ length: n }, (_, i) => ({
      id: `contract-d${i}`,
      group: "g",
      provider,
      model: "m",
      ...(maxConcurrent === undefined ? {} : { maxConcurrent }),
      ...limits
    })),
    {}
  ))

const admitAll = (d: Deployment, stats: { readonly inFlight: number }): Admission =>
  d.maxConcurrent !== undefined && stats.inFlight >= d.maxConcurrent ? { refused: "full" } : "take"
const first = (candidates: ReadonlyArray<Candidate>) => Effect.succeed(candidates[0])
const leastBusy = (candidates: ReadonlyArray<Candidate>) =>
  Effect.succeed(candidates.reduce((best, c) => (c.stats.inFlight < best.stats.inFlight ? c : best)))
const keep = (record: CooldownRecord) => record

const reservation = (deployments: ReadonlyArray<Deployment>, overrides: Partial<Reservation> = {}): Reservation => ({
  deployments,
  admit: admitAll,
  pick: first,
  claim: keep,
  ttlMs: 60_000,
  ...overrides
})

export const checks = <E, R>(make: Effect.Effect<Service, E, R>) => {
  const check = (name: string, body: (store: Service, fail: (message: string) => Effect.Effect<never, ContractViolation>) => Effect.Effect<void, unknown, any>) => ({
    name,
    run: Effect.flatMap(make, (store) => body(store, (message) => Effect.fail(new ContractViolation({ check: name, message }))))
  })
  const expect = (fail: (message: string) => Effect.Effect<never, ContractViolation>, ok: boolean, message: string) =>
    ok ? Effect.void : fail(message)

  return [
    check("reserve takes a slot; complete gives it back and records the outcome", (store, fail) =>
      Effect.gen(function*() {
        const ds = deploymentsOf(1)
        const lease = yield* store.reserve(reservation(ds))
        const [during] = yield* store.snapshot(ds)
        yield* expect(fail, during.inFlight === 1, `inFlight ${during.inFlight} after a reservation, expected 1`)
        yield* expect(fail, during.requests === 1, `requests ${during.requests} after a reservation, expected 1`)
        yield* store.complete(lease, { result: "success", kind: "call", latencyMs: 100, tokens: 42 })
        const [after] = yield* store.snapshot(ds)
        yield* expect(fail, after.inFlight === 0, `inFlight ${after.inFlight} after completing, expected 0`)
        yield* expect(fail, after.tokens === 42 && after.completed === 1, `tokens ${after.tokens}, completed ${after.completed}: expected 42 and 1`)
        yield* expect(fail, after.latencyMs === 100, `latencyMs ${after.latencyMs}, expected 100`)
      })),

    check("maxConcurrent holds under 200 concurrent reservations", (store, fail) =>
      Effect.gen(function*() {
        const ds = deploymentsOf(2, 3)
        const results = yield* Effect.all(
          Array.from({ length: 200 }, () => Effect.either(store.reserve(reservation(ds)))),
          { concurrency: "unbounded" }
        )
        const taken = results.filter(Either.isRight).length
        yield* expect(fail, taken === 6, `${taken} slots taken over 2 deployments of maxConcurrent 3, expected 6`)
        const stats = yield* store.snapshot(ds)
        yield* expect(fail, stats.every((s) => s.inFlight === 3), `inFlight ${stats.map((s) => s.inFlight).join("/")}, expected 3/3`)
        const refused = results.filter(Either.isLeft).map((e) => e.left)
        yield* expect(fail, refused.every((e) => (e as { _tag?: string })._tag === "Unreserved" && (e as { full: number }).full === 2), "refusals must be Unreserved with full: 2")
      })),

    check("rpm holds under 50 concurrent reservations, over any 60 s, and says when room returns", (store, fail) =>
      Effect.gen(function*() {
        const ds = deploymentsOf(2, undefined, { rpm: 5 })
        const reserveAndComplete = Effect.flatMap(store.reserve(reservation(ds)), (lease) =>
          store.complete(lease, { result: "success", kind: "call", latencyMs: 1, tokens: 0 }))
        const results = yield* Effect.all(Array.from({ length: 50 }, () => Effect.either(reserveAndComplete)), { concurrency: "unbounded" })
        const taken = results.filter(Either.isRight).length
        yield* expect(fail, taken === 10, `${taken} calls started over 2 deployments of rpm 5 in one instant, expected 10`)
        const refused = results.find(Either.isLeft)?.left as { _tag?: string; rpm?: number; capacityBack?: number } | undefined
        yield* expect(fail, refused?._tag === "Unreserved" && refused.rpm === 2, `refusal ${JSON.stringify(refused)}, expected Unreserved with rpm: 2`)
        const back = refused?.capacityBack
        yield* expect(fail, back !== undefined && back >= 60_000 && back <= 61_000, `capacityBack ${back}, expected within 60-61 s of the calls`)
        yield* TestClock.adjust("59 seconds")
        const still = yield* Effect.either(store.reserve(reservation(ds)))
        yield* expect(fail, Either.isLeft(still), "a call was started 59 s after 5 others on a deployment of rpm 5")
        yield* TestClock.adjust("2 seconds")
        const again = yield* Effect.either(store.reserve(reservation(ds)))
        yield* expect(fail, Either.isRight(again), "no room 61 s later")
      })),

    check("tpm holds each call's estimated tokens until its outcome gives the actual count", (store, fail) =>
      Effect.gen(function*() {
        const ds = deploymentsOf(1, undefined, { tpm: 100 })
        const first = yield* store.reserve(reservation(ds, { tokens: 60 }))
        const second = yield* Effect.either(store.reserve(reservation(ds, { tokens: 60 })))
        const refused = Either.isLeft(second) ? second.left as { _tag?: string; tpm?: number } : undefined
        yield* expect(fail, refused?._tag === "Unreserved" && refused.tpm === 1, `second reservation of 60 under tpm 100: ${JSON.stringify(refused ?? "taken")}, expected Unreserved with tpm: 1`)
        yield* store.complete(first, { result: "success", kind: "call", latencyMs: 1, tokens: 20 })
        const third = yield* Effect.either(store.reserve(reservation(ds, { tokens: 60 })))
        yield* expect(fail, Either.isRight(third), "the actual 20 tokens did not replace the estimate of 60: no room for 60 more under 100")
        const huge = yield* Effect.flip(store.reserve(reservation(ds, { tokens: 101 })))
        const never = huge as unknown as { tpm?: number; capacityBack?: number }
        yield* expect(fail, never.tpm === 1 && never.capacityBack === undefined, `a call of 101 tokens under tpm 100: ${JSON.stringify(huge)}, expected no capacityBack`)
      })),

    check("a least-busy choice holds under concurrency: 40 reservations over 4 deployments land 10/10/10/10", (store, fail) =>
      Effect.gen(function*() {
        const ds = deploymentsOf(4)
        yield* Effect.all(Array.from({ length: 40 }, () => store.reserve(reservation(ds, { pick: leastBusy }))), { concurrency: "unbounded" })
        const stats = yield* store.snapshot(ds)
        yield* expect(fail, stats.every((s) => s.inFlight === 10), `in flight ${stats.map((s) => s.inFlight).join("/")}, expected 10/10/10/10`)
      })),

    check("a lease expires after its ttl unless renewed; completing it then frees nothing more", (store, fail) =>
      Effect.gen(function*() {
        const ds = deploymentsOf(1, 1)
        const expiring = yield* store.reserve(reservation(ds, { ttlMs: 1_000 }))
        yield* TestClock.adjust("999 millis")
        const held = yield* Effect.either(store.reserve(reservation(ds, { ttlMs: 1_000 })))
        yield* expect(fail, Either.isLeft(held), "a slot was taken twice before its lease expired")
        yield* TestClock.adjust("1 millis")
        const next = yield* store.reserve(reservation(ds, { ttlMs: 10_000 }))
        yield* store.complete(expiring, undefined)
        const [stats] = yield* store.snapshot(ds)
        yield* expect(fail, stats.inFlight === 1, `inFlight ${stats.inFlight} after completing an expired lease, expected 1 (the new one)`)
        // renewing keeps the new lease past its first expiry
        yield* TestClock.adjust("9 seconds")
        yield* store.renew(next, 10_000)
        yield* TestClock.adjust("5 seconds")
        const [renewed] = yield* store.snapshot(ds)
        yield* expect(fail, renewed.inFlight === 1, `inFlight ${renewed.inFlight} after renewing, expected 1`)
        yield* TestClock.adjust("6 seconds")
        const [gone] = yield* store.snapshot(ds)
        yield* expect(fail, gone.inFlight === 0, `inFlight ${gone.inFlight} after the renewed lease expired, expected 0`)
      })),

    check("refused deployments are counted by reason, with the earliest return", (store, fail) =>
      Effect.gen(function*() {
        const ds = deploymentsOf(4)
        const admit = (d: Deployment): Admission =>
          d.id.endsWith("0")
            ? { refused: "untagged" }
            : d.id.endsWith("1")
            ? { refused: "excluded" }
            : { refused: "cooling", until: d.id.endsWith("2") ? 5_000 : 3_000 }
        const refused = yield* Effect.flip(store.reserve(reservation(ds, { admit })))
        const counts = refused as unknown as { _tag: string; untagged: number; excluded: number; cooling: number; full: number; rpm: number; tpm: number; firstBack: number | undefined }
        yield* expect(
          fail,
          counts._tag === "Unreserved" && counts.untagged === 1 && counts.excluded === 1 && counts.cooling === 2 && counts.full === 0 &&
            counts.rpm === 0 && counts.tpm === 0 && counts.firstBack === 3_000,
          `got ${JSON.stringify(counts)}, expected Unreserved untagged 1, excluded 1, cooling 2, firstBack 3000`
        )
      })),

    check("\"fallback\" deployments are taken only when no \"take\" one is left", (store, fail) =>
      Effect.gen(function*() {
        const ds = deploymentsOf(2, 1)
        const admit = (d: Deployment, stats: { readonly inFlight: number }): Admission =>
          stats.inFlight >= 1 ? { refused: "full" } : d.id.endsWith("0") ? "fallback" : "take"
        const one = yield* store.reserve(reservation(ds, { admit }))
        const two = yield* store.reserve(reservation(ds, { admit }))
        yield* expect(fail, one.deployment.id.endsWith("1") && two.deployment.id.endsWith("0"), `took ${one.deployment.id} then ${two.deployment.id}`)
      })),

    check("the half-open claim is atomic with the slot: of 10 concurrent reservations exactly one probes", (store, fail) =>
      Effect.gen(function*() {
        const ds = deploymentsOf(1)
        yield* store.modifyCooldown(ds, 0, () => [undefined, { record: { status: "open", until: 0, ejections: 1, reason: "failures" }, resetOutcomes: false }])
        const claim = (record: CooldownRecord): CooldownRecord | undefined =>
          record.status === "open" ? { ...record, status: "probing" } : undefined
        const results = yield* Effect.all(
          Array.from({ length: 10 }, () => Effect.either(store.reserve(reservation(ds, { claim })))),
          { concurrency: "unbounded" }
        )
        const probes = results.filter(Either.isRight).length
        yield* expect(fail, probes === 1, `${probes} reservations took the probe, expected 1`)
        const [stats] = yield* store.snapshot(ds)
        yield* expect(fail, stats.cooldown.status === "probing", `circuit ${stats.cooldown.status}, expected probing`)
      })),

    check("a selector's NoFit fails the reservation with it, taking nothing", (store, fail) =>
      Effect.gen(function*() {
        const ds = deploymentsOf(2)
        const result = yield* Effect.flip(store.reserve(reservation(ds, { pick: () => Effect.fail(new NoFit({ message: "none in region" })) })))
        yield* expect(fail, (result as { _tag?: string })._tag === "NoFit", `failed with ${(result as { _tag?: string })._tag}, expected NoFit`)
        const stats = yield* store.snapshot(ds)
        yield* expect(fail, stats.every((s) => s.inFlight === 0), "a slot was taken by a reservation that failed")
      })),

    check("a selector that suspends cannot make a slot be taken over its limit", (store, fail) =>
      Effect.gen(function*() {
        const ds = deploymentsOf(1, 1)
        // the clock moves once a selector is inside its pick (a store may first do I/O)
        const entered = yield* Deferred.make<void>()
        const slow = (candidates: ReadonlyArray<Candidate>) =>
          Effect.zipRight(Deferred.succeed(entered, undefined), Effect.as(Effect.sleep("10 millis"), candidates[0]))
        const fibers = yield* Effect.forEach(Array.from({ length: 5 }), () => Effect.fork(Effect.either(store.reserve(reservation(ds, { pick: slow })))))
        yield* Deferred.await(entered)
        yield* TestClock.adjust("10 millis")
        const results = yield* Effect.forEach(fibers, Fiber.join)
        const taken = results.filter(Either.isRight).length
        yield* expect(fail, taken === 1, `${taken} slots taken through a suspending selector, limit 1`)
      })),

    check("usage windows forget what is older than the window", (store, fail) =>
      Effect.gen(function*() {
        const ds = deploymentsOf(1)
        const lease = yield* store.reserve(reservation(ds))
        yield* store.complete(lease, { result: "failure", kind: "call", latencyMs: 10, tokens: 7 })
        const [now] = yield* store.snapshot(ds)
        yield* expect(fail, now.requests === 1 && now.tokens === 7 && now.failures === 1, `requests ${now.requests}, tokens ${now.tokens}, failures ${now.failures}`)
        yield* TestClock.adjust("2 minutes")
        const [later] = yield* store.snapshot(ds)
        yield* expect(fail, later.requests === 0 && later.tokens === 0 && later.failures === 0, "usage older than the window is still counted")
        yield* expect(fail, later.consecutiveFailures === 1, `consecutiveFailures ${later.consecutiveFailures}, expected 1 (not windowed)`)
      })),

    check("modifyCooldown reads the group and writes one circuit atomically: no update is lost", (store, fail) =>
      Effect.gen(function*() {
        const ds = deploymentsOf(3)
        yield* Effect.all(
          Array.from({ length: 50 }, (_, i) =>
            store.modifyCooldown(ds, i % 3, (stats) => [undefined, { record: { ...stats[i % 3].cooldown, ejections: stats[i % 3].cooldown.ejections + 1 }, resetOutcomes: false }])),
          { concurrency: "unbounded" }
        )
        const stats = yield* store.snapshot(ds)
        const counts = stats.map((s) => s.cooldown.ejections)
        yield* expect(fail, counts.join() === "17,17,16", `ejections ${counts.join()}, expected 17,17,16`)
      })),

    check("policies keep state under a key, updated atomically", (store, fail) =>
      Effect.gen(function*() {
        const results = yield* Effect.all(
          Array.from({ length: 100 }, () => store.modify("contract:counter", 0, (n: number) => [n, n + 1] as const)),
          { concurrency: "unbounded" }
        )
        const last = yield* store.modify("contract:counter", 0, (n: number) => [n, n] as const)
        yield* expect(fail, last === 100 && new Set(results).size === 100, `counter ${last}, ${new Set(results).size} distinct reads: expected 100 and 100`)
      })),

    check("spend adds up per key", (store, fail) =>
      Effect.gen(function*() {
        yield* store.addSpend(["total", "group:g"], 0.25)
        yield* store.addSpend(["total"], 0.5)
        const total = yield* store.spend("total")
        const group = yield* store.spend("group:g")
        const none = yield* store.spend("tag:none")
        yield* expect(fail, total === 0.75 && group === 0.25 && none === 0, `total ${total}, group ${group}, unknown ${none}`)
      })),

    check("the store's clock follows the Clock (TestClock here)", (store, fail) =>
      Effect.gen(function*() {
        const before = yield* store.now
        yield* TestClock.adjust("1 minute")
        const after = yield* store.now
        yield* expect(fail, after - before === 60_000, `the store's clock moved ${after - before} ms for a minute of TestClock`)
      })),

    check("a lease knows its deployment, when it was taken, and the stats the selector saw", (store, fail) =>
      Effect.gen(function*() {
        const ds = deploymentsOf(2)
        yield* TestClock.adjust("3 seconds")
        const lease: Lease = yield* store.reserve(reservation(ds, { pick: (cs) => Effect.succeed(cs[1]) }))
        yield* expect(fail, lease.deployment.id === ds[1].id && lease.at === 3_000, `lease ${lease.deployment.id} at ${lease.at}`)
        yield* expect(fail, lease.stats.cooldown.status === "closed", "the lease's stats have no circuit")
      }))
  ]
}
