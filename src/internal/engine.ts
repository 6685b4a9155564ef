/**
 * What a router holds for its lifetime, built once by `Router.make`: its deployments by group
 * and id, what each provider is called with, the classification table, the state store, and
 * the policies it was built with (a request may bring its own, see `request.ts`).
 *
 * @internal
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import { Cooldown } from "../Cooldown.js"
import { CostMeter } from "../CostMeter.js"
import type { Deployment } from "../Deployment.js"
import type { ClassificationTable } from "../Errors.js"
import { Fallback } from "../Fallback.js"
import type { GroupTraits } from "./filters.js"
import type { Service as HedgeService } from "../Hedge.js"
import type { Target } from "../Provider.js"
import { RetrySchedule } from "../RetrySchedule.js"
import type * as Effect from "effect/Effect"
import type * as RouterState from "../RouterState.js"
import { Selector } from "../Selector.js"

/**
 * A `RouterState` store that never fails: the in-memory one, or any store wrapped so that a
 * failure is served from a local view (`resilient.ts`).
 *
 * @internal
 */
export type Store = {
  readonly [K in keyof RouterState.Service]: RouterState.Service[K] extends (...args: infer P) => Effect.Effect<infer A, infer E, infer R>
    ? (...args: P) => Effect.Effect<A, Exclude<E, RouterState.StoreError>, R>
    : RouterState.Service[K] extends Effect.Effect<infer A, infer _E, infer R> ? Effect.Effect<A, never, R>
    : RouterState.Service[K]
}

/**
 * The routing policies a request runs under.
 *
 * @internal
 */
export interface Policies {
  readonly selector: Context.Tag.Service<Selector>
  readonly retry: Context.Tag.Service<RetrySchedule>
  readonly cooldown: Context.Tag.Service<Cooldown>
  readonly fallback: Context.Tag.Service<Fallback>
  readonly meter: Context.Tag.Service<CostMeter>
}

/** @internal */
export interface Engine {
  readonly deployments: ReadonlyArray<Deployment>
  readonly groups: ReadonlyArray<string>
  readonly pools: ReadonlyMap<string, ReadonlyArray<Deployment>>
  readonly byId: ReadonlyMap<string, Deployment>
  /** What each deployment's provider is called with, by `Deployment.index`. */
  readonly targets: ReadonlyArray<Target>
  /**
   * The timeout the router enforces itself on each deployment (by index), for providers that do
   * not enforce `target.timeout`; `undefined` when the provider does.
   */
  readonly raceTimeouts: ReadonlyArray<Duration.Duration | undefined>
  /** How long a lease lasts per group: its longest call timeout and a margin (ms). */
  readonly leaseTtlMs: ReadonlyMap<string, number>
  /** How long a lease outlives its call's timeout (`Config.leaseMargin`, ms). */
  readonly leaseMarginMs: number
  readonly table: ClassificationTable
  /** The store, as the engine sees it: it never fails (see `resilient.ts`). */
  readonly state: Store
  /** Whether the store serves from its local view (the shared one failed). */
  readonly degraded: () => boolean
  /** The policies the router was built with. */
  readonly policies: Policies
  /** Its hedging, when it was built with any. */
  readonly hedge: HedgeService | undefined
  readonly maxWaitMs: number
  readonly contentFilterIsError: boolean
  /** Groups with a deployment that has a `tpm` limit (reservations there carry the request's estimated tokens). */
  readonly rated: ReadonlySet<string>
  /** What each group brings to the pre-call filters (`filters.ts`); no entry for a group where none applies. */
  readonly traits: ReadonlyMap<string, GroupTraits>
}

/**
 * The policies `Router.policies` (and so `Router.defaults`) build: they are a router's defaults,
 * never a request's override. Without this, `Layer.provideMerge(Router.defaults)`, which puts
 * them in the app's context, would override at every request the policies the router was
 * built with.
 *
 * @internal
 */
export const defaultPolicies = new WeakSet<object>()

/**
 * Marks the policies of a context as defaults.
 *
 * @internal
 */
export const markDefaults = (context: Context.Context<never>): void => {
  for (const tag of [Selector, RetrySchedule, Cooldown, Fallback, CostMeter] as const) {
    const service = Context.getOrElse(context, tag as Context.Tag<unknown, object>, () => undefined)
    if (service !== undefined) defaultPolicies.add(service)
  }
}

const override = <A extends object>(found: A, own: A): A => found === own || defaultPolicies.has(found) ? own : found

/**
 * The policies of a request: those in the request's context when it brings its own (an
 * `Effect.provide` around the call, or around a tenant's calls), else the router's.
 * Allocates only when one differs.
 *
 * @internal
 */
export const policiesIn = (engine: Engine, context: Context.Context<never>): Policies => {
  const own = engine.policies
  const selector = override(Context.getOrElse(context, Selector, () => own.selector), own.selector)
  const retry = override(Context.getOrElse(context, RetrySchedule, () => own.retry), own.retry)
  const cooldown = override(Context.getOrElse(context, Cooldown, () => own.cooldown), own.cooldown)
  const fallback = override(Context.getOrElse(context, Fallback, () => own.fallback), own.fallback)
  const meter = override(Context.getOrElse(context, CostMeter, () => own.meter), own.meter)
  return selector === own.selector && retry === own.retry && cooldown === own.cooldown &&
      fallback === own.fallback && meter === own.meter
    ? own
    : { selector, retry, cooldown, fallback, meter }
}
