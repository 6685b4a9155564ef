/**
 * A `RouterState` store on Redis 7, for many app instances with one view: every instance sees
 * the same leases in flight, rpm/tpm windows, circuits, budgets, spend and policy state, and the
 * limits hold across all of them. Imported on its own (`effect-llm-router/RedisState`), so the
 * Redis client (ioredis) is loaded only by apps that use it.
 *
 * - Shared (in Redis): leases (with their expiry: a crashed holder's slots come back), the rpm
 *   and tpm rolling minutes, the requests/tokens/completed/failures windows, consecutive
 *   failures, each deployment's circuit, budget spend and holds, spend per key, `modify` state.
 * - Local (per process): latency averages and quantile sketches, and the upstream's reported
 *   rate-limit headroom (`upstream`).
 * - Clock: the store's clock is the Effect `Clock` of each process (not Redis `TIME`), so tests
 *   run it on `TestClock`; the instances' clocks must agree (NTP), as leases, windows and budget
 *   periods are stamped with them.
 * - Atomicity: `reserve` runs the selector in the process over the pool's shared state as of the
 *   last reply, then one Lua script checks nothing changed, re-checks maxConcurrent, rpm, tpm,
 *   budgets and the circuit, and takes the slot: one round trip when the pool did not change
 *   elsewhere (one more per conflict; after 5 conflicts the take accepts a one-step-stale choice,
 *   the limits still holding). `complete` is one round trip. `modifyCooldown` and `modify` are
 *   compare-and-set on a version.
 * - Keys: all under one hash tag, `{keyPrefix}` (one Redis Cluster slot per store, so every
 *   script is atomic on a Cluster too); windows expire when idle, leases are swept as they
 *   expire, budgets' periods expire an hour after they end.
 * - Every operation fails with `RouterState.StoreError` (never a credential in its message) when
 *   Redis is unreachable, times out (`commandTimeout`) or errs; the router then serves from its
 *   local view (`Router.Config.onStoreFailure`). Reservations of one pool are taken one at a time
 *   in a process: those queued behind one that failed fail with it, so a stalled Redis costs
 *   every waiting request one `commandTimeout`, not one per request ahead of it.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type { InvalidConfig } from "./Errors.js"
import * as internal from "./internal/redisState.js"
import { RouterState, type Service } from "./RouterState.js"

/**
 * How to reach Redis, and the store's settings. Give a `url` (`redis://user:pass@host:6379/0`,
 * `rediss://` for TLS) or `host`/`port`/`password`, or, for Redis Cluster, `cluster` (with
 * `password`/`username`/`tls`); a password or a URL carrying one is best passed `Redacted`.
 *
 * @category Options
 * @since 0.1.0
 */
export interface Options {
  /**
   * A Redis Cluster to use instead of one server: its seed nodes (`"host:port"` or
   * `{ host, port }`; the client discovers the others). `password`, `username`, `tls` and
   * `commandTimeout` apply to every node; `url`, `host`, `port` and `db` are refused with it
   * (`InvalidConfig`). The store's keys all share the hash tag `{keyPrefix}`, so a store lives
   * on one slot (one master) and each of its scripts runs atomically there; stores with
   * different prefixes spread over the masters.
   *
   * @example
   * import { Redacted } from "effect"
   * import * as RedisState from "effect-llm-router/RedisState"
   * const layer = RedisState.layer({
   *   cluster: { nodes: ["10.0.0.1:6379", { host: "10.0.0.2", port: 6379 }] },
   *   password: Redacted.make("s3cret"),
   *   keyPrefix: "my-app"
   * })
   * @since 0.1.0
   */
  readonly cluster?: { readonly nodes: ReadonlyArray<string | { readonly host: string; readonly port: number }> } | undefined
  readonly url?: string | Redacted.Redacted<string> | undefined
  readonly host?: string | undefined
  readonly port?: number | undefined
  readonly username?: string | undefined
  readonly password?: string | Redacted.Redacted<string> | undefined
  readonly db?: number | undefined
  readonly tls?: boolean | undefined
  /** Prefix (and hash tag) of every key. Routers sharing a prefix share their state. Default `"llm-router"`. */
  readonly keyPrefix?: string | undefined
  /** How long an operation may take before it fails with `StoreError`. Default 1 second. */
  readonly commandTimeout?: Duration.DurationInput | undefined
  /** Length of the usage and failure windows (the same on every instance). Default 1 minute. */
  readonly window?: Duration.DurationInput | undefined
  /** Weight of the newest sample in the (local) latency moving average, in (0, 1]. Default 0.2. */
  readonly latencyAlpha?: number | undefined
}

/**
 * Creates a Redis store; closing the scope closes its connection. A Redis that is down when it is
 * made does not fail it: its operations fail (`StoreError`) until Redis answers.
 *
 * @example
 * import { Effect, Redacted } from "effect"
 * import * as RedisState from "effect-llm-router/RedisState"
 * const store = RedisState.make({ url: Redacted.make("redis://localhost:6379"), keyPrefix: "my-app" })
 * const total = Effect.scoped(Effect.flatMap(store, (state) => state.spend("total")))
 * @category Constructors
 * @since 0.1.0
 */
export const make: (options: Options) => Effect.Effect<Service, InvalidConfig, Scope.Scope> = internal.make

/**
 * The Redis store as a scoped Layer, in place of `RouterState.memory` (with `Router.policies`).
 *
 * @example
 * import { Layer, Redacted } from "effect"
 * import { Router } from "effect-llm-router"
 * import * as RedisState from "effect-llm-router/RedisState"
 * declare const deployments: Parameters<typeof Router.layer>[0]["deployments"]
 * const RouterLive = Router.layer({ deployments }).pipe(
 *   Layer.provideMerge(Router.policies),
 *   Layer.provideMerge(RedisState.layer({ url: Redacted.make("redis://localhost:6379") }))
 * )
 * @category Layers
 * @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<RouterState, InvalidConfig> => Layer.scoped(RouterState, make(options))
