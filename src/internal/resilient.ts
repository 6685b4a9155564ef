/**
 * The router's policy for a failing store: keep serving from a local view. A store that fails an
 * operation (`StoreError`) is set aside: the operation, and every one after it, goes to a local
 * in-memory store, and a warning is logged; every `retryMs` an operation tries the shared store
 * again, and the first that succeeds switches back (an info is logged). Spend is not lost: what
 * was spent meanwhile is added to the shared store when it is back, and a spend read meanwhile is
 * the last one read from the shared store plus what this process spent since. Circuits and
 * policy state written locally are not carried over: the shared view, which other processes kept
 * writing, is newer. A lease is completed and
 * renewed by the store that issued it; one the shared store issued and can no longer be reached
 * for simply expires there. The in-memory store never fails and is used as it is.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { Deployment } from "../Deployment.js"
import type { Lease, Service, StoreError } from "../RouterState.js"
import type { Store } from "./engine.js"

/** Stores known never to fail (the in-memory one). */
export const infallible = new WeakSet<object>()

/** @internal */
export interface Resilient {
  readonly store: Store
  readonly degraded: () => boolean
}

const never = (): boolean => false

/**
 * The store as the engine uses it: as it is when it never fails, else with the local fallback.
 *
 * @internal
 */
export const resilient = (primary: Service, local: Service, retryMs: number): Resilient => {
  if (infallible.has(primary)) return { store: primary as unknown as Store, degraded: never }
  const localLeases = new WeakSet<Lease>()
  let degraded = false
  let retryAt = 0
  /** Spend added while the shared store failed, per key, until it is added there. */
  const unsynced = new Map<string, number>()
  /** The last spend read from the shared store, per key. */
  const lastRead = new Map<string, number>()

  const fallBack = (error: StoreError) =>
    Effect.flatMap(local.now, (now) => {
      retryAt = now + retryMs
      if (degraded) return Effect.void
      degraded = true
      return Effect.logWarning(`router store failed (${error.operation}: ${error.message}); serving from the local view`)
    })

  // A store that fails while the spend is added back is set aside again; the rest is added at the
  // next switch back. Only the amount added is taken off: what other requests spent locally
  // meanwhile (the store failing again) stays to be added.
  const resync = Effect.suspend(() =>
    Effect.forEach(Array.from(unsynced), ([key, amount]) =>
      Effect.tap(primary.addSpend([key], amount), () =>
        Effect.sync(() => {
          const left = (unsynced.get(key) ?? 0) - amount
          if (left === 0) unsynced.delete(key)
          else unsynced.set(key, left)
        })), { discard: true })
  ).pipe(Effect.catchTag("StoreError", fallBack))

  /** Runs `op` on the shared store (when it is not set aside), else, or when it fails, locally. */
  const route = <A, E>(
    shared: () => Effect.Effect<A, E | StoreError>,
    fallback: () => Effect.Effect<A, E>
  ): Effect.Effect<A, Exclude<E, StoreError>> =>
    Effect.flatMap(local.now, (now) => {
      if (degraded && now < retryAt) return fallback()
      const tried = Effect.catchIf(
        shared(),
        (e): e is StoreError => typeof e === "object" && e !== null && (e as { _tag?: unknown })._tag === "StoreError",
        (error) => Effect.zipRight(fallBack(error), fallback())
      )
      if (!degraded) return tried
      return Effect.tap(tried, () => {
        if (!degraded) return Effect.void
        degraded = false
        return Effect.zipRight(Effect.logInfo("router store is back: using the shared view again"), resync)
      })
    }) as Effect.Effect<A, Exclude<E, StoreError>>

  const byIssuer = <A>(lease: Lease, shared: () => Effect.Effect<A, StoreError>, onLocal: () => Effect.Effect<A, StoreError>, lost: A) =>
    localLeases.has(lease)
      ? (onLocal() as Effect.Effect<A>)
      : Effect.catchTag(shared(), "StoreError", () => Effect.succeed(lost))

  const store: Store = {
    now: route(() => primary.now, () => local.now),
    snapshot: (deployments: ReadonlyArray<Deployment>) => route(() => primary.snapshot(deployments), () => local.snapshot(deployments)),
    reserve: (reservation) =>
      route(
        () => primary.reserve(reservation),
        () => Effect.tap(local.reserve(reservation), (lease) => Effect.sync(() => localLeases.add(lease)))
      ),
    renew: (lease, ttlMs) => byIssuer(lease, () => primary.renew(lease, ttlMs), () => local.renew(lease, ttlMs), undefined),
    // The spend a completion carries is kept to be added to the shared store when the lease is a
    // local one, or when the shared store does not take the completion (one whose answer was lost
    // after it was applied is then counted twice: spend errs on the side of budgets).
    complete: (lease, outcome) => {
      const spent = outcome?.spend !== undefined && outcome.cost !== undefined && outcome.cost > 0 ? outcome : undefined
      const keep = spent === undefined ? Effect.void : Effect.sync(() => {
        for (const key of spent.spend!) unsynced.set(key, (unsynced.get(key) ?? 0) + spent.cost!)
      })
      return localLeases.has(lease)
        ? Effect.zipRight(keep, local.complete(lease, spent === undefined ? outcome : { ...spent, spend: undefined }) as Effect.Effect<void>)
        : Effect.catchTag(primary.complete(lease, outcome), "StoreError", () => keep)
    },
    recordRateLimit: (deployment, info) =>
      route(() => primary.recordRateLimit(deployment, info), () => local.recordRateLimit(deployment, info)),
    modifyCooldown: (deployments, index, f) =>
      route(() => primary.modifyCooldown(deployments, index, f), () => local.modifyCooldown(deployments, index, f)),
    modify: (key, initial, f) => route(() => primary.modify(key, initial, f), () => local.modify(key, initial, f)),
    addSpend: (keys, amount) =>
      route(() => primary.addSpend(keys, amount), () =>
        Effect.sync(() => {
          for (const key of keys) unsynced.set(key, (unsynced.get(key) ?? 0) + amount)
        })),
    spend: (key) =>
      route(
        () => Effect.tap(primary.spend(key), (spent) => Effect.sync(() => lastRead.set(key, spent))),
        () => Effect.sync(() => (lastRead.get(key) ?? 0) + (unsynced.get(key) ?? 0))
      )
  }
  return { store, degraded: () => degraded }
}
