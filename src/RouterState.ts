/**
 * The router's live state, in one store every routing concern reads and writes: per deployment
 * the leases in flight, latency samples, usage windows, failures and circuit; spend per key;
 * state policies keep of their own. Its contract (`Service`) is what a shared store (many app
 * instances, one view) implements; `effect-llm-router/testing` ships its checks.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Deployment } from "./Deployment.js"
import type { InvalidConfig } from "./Errors.js"
import type { RateLimitInfo } from "./Provider.js"
import type { Candidate, NoFit } from "./Selector.js"
import * as internal from "./internal/state.js"

/**
 * What the selector sees of a deployment. Windows cover the last `window` (default 1 minute).
 *
 * @category Models
 * @since 0.1.0
 */
export interface DeploymentStats {
  readonly inFlight: number
  /** Mean age of the calls in flight, in ms (0 when none): a stuck deployment shows it before any of them ends. */
  readonly inFlightAgeMs: number
  /**
   * Moving average of chat and embed call latency, in ms; failures count as slow (at least
   * twice the average). `undefined` before the first sample.
   */
  readonly latencyMs: number | undefined
  /** Moving average of streams' time to first content, in ms (failures count as slow). */
  readonly firstTokenMs: number | undefined
  /** Moving average of generation time per output token, in ms, where the usage said how many. */
  readonly perTokenMs: number | undefined
  /**
   * Quantiles of the recent samples behind `latencyMs` (`calls`) and `firstTokenMs` (`streams`),
   * within 2% (over the state window).
   */
  readonly latency: { readonly calls: LatencyQuantiles; readonly streams: LatencyQuantiles }
  /** Calls started in the window (what rpm limits count). */
  readonly requests: number
  /** Tokens used in the window (what tpm limits count). */
  readonly tokens: number
  /** Calls finished in the window (successes and failures; holds are not counted). */
  readonly completed: number
  /** Calls failed in the window. */
  readonly failures: number
  /** Failures in a row, whatever their time, since the last success (or reset). */
  readonly consecutiveFailures: number
  /** The deployment's circuit. */
  readonly cooldown: CooldownRecord
  /** The upstream's last reported rate-limit headroom, if its responses carry any. */
  readonly upstream: RateLimitInfo | undefined
}

/**
 * Latency quantiles of a deployment's recent samples.
 *
 * @example
 * import type { RouterState } from "effect-llm-router"
 * declare const stats: RouterState.DeploymentStats
 * declare const now: number
 * const p95 = stats.latency.calls.count(now) >= 20 ? stats.latency.calls.quantile(now, 0.95) : undefined
 * @category Models
 * @since 0.1.0
 */
export interface LatencyQuantiles {
  /** The q-quantile (q in [0, 1]) of the samples in the window at `now`, `undefined` without any. */
  readonly quantile: (now: number, q: number) => number | undefined
  /** How many samples the window holds at `now`. */
  readonly count: (now: number) => number
}

/**
 * A deployment's circuit: `closed` (healthy), `open` until `until` (cooling down), or
 * `probing` (the cooldown ran out and one probe request is deciding).
 *
 * `reason` says why it was taken out, which decides what counts toward the breaker's cap and
 * how it comes back: `"failures"` (transient failures: capped per group, back through a probe),
 * `"unusable"` (a refused key, an unknown model, no credit: not capped, back through a probe),
 * `"retry_after"` (the upstream said when to come back: not capped, back at that time without
 * a probe).
 *
 * @category Models
 * @since 0.1.0
 */
export interface CooldownRecord {
  readonly status: "closed" | "open" | "probing"
  /** Epoch ms the cooldown ends (meaningful when `open`). */
  readonly until: number
  /** Consecutive cooldowns without a successful probe in between. */
  readonly ejections: number
  readonly reason: "failures" | "unusable" | "retry_after"
}

/**
 * The outcome of one finished call: `"success"` (or an answer that says the deployment is
 * alive, such as a bad request), `"failure"` (counts against the deployment), `"ignored"`
 * (neither: a rate limit with a retry-after, which holds the deployment instead).
 *
 * - `latencyMs`: from the call to its answer, its failure, or (streams) its end
 * - `firstTokenMs`: streams only, from the call to the first content (absent when the stream
 *   failed before any: `latencyMs` is then its time to first content)
 * - `outputTokens`: tokens generated, when the usage said
 * - `tokens`: all tokens of the call (what tpm limits count)
 *
 * @category Models
 * @since 0.1.0
 */
export interface Outcome {
  readonly result: "success" | "failure" | "ignored"
  readonly kind: "call" | "stream"
  readonly latencyMs: number
  readonly firstTokenMs?: number | undefined
  readonly outputTokens?: number | undefined
  readonly tokens: number
  /** Dollars the call cost, for the budgets its lease charged (absent: nothing known, 0). */
  readonly cost?: number | undefined
  /**
   * Spend keys `cost` is added to in the same step, as `addSpend(spend, cost)` would (so a
   * metered call costs no round trip of its own to a shared store).
   */
  readonly spend?: ReadonlyArray<string> | undefined
}

/**
 * A new circuit for a deployment; `resetOutcomes` also forgets its success/failure window and
 * its consecutive failures (after an ejection or a recovery).
 *
 * @category Models
 * @since 0.1.0
 */
export interface CircuitChange {
  readonly record: CooldownRecord
  readonly resetOutcomes: boolean
}

/**
 * A store operation failed (the store is unreachable, timed out, or answered nonsense). The
 * router's policy for it is `Router.Config.onStoreFailure`.
 *
 * @example
 * import { RouterState } from "effect-llm-router"
 * new RouterState.StoreError({ operation: "reserve", message: "connection refused" })
 * @category Errors
 * @since 0.1.0
 */
export class StoreError extends Data.TaggedError("StoreError")<{
  readonly operation: string
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * What a reservation says of one deployment: take it (`"take"`), take it only when no other
 * can be (`"fallback"`: the deployment the request just failed on, one it already waits on),
 * or why not: `"untagged"` covers every pre-call filter (the request's tags, region, context
 * window), `"excluded"` a deployment the request must not go back to, `"full"` one at its
 * concurrency limit, `"cooling"` one cooling down or that asked the request to wait.
 *
 * @category Models
 * @since 0.1.0
 */
export type Admission =
  | "take"
  | "fallback"
  | { readonly refused: "untagged" | "excluded" | "full" }
  | { readonly refused: "cooling"; readonly until: number | undefined }

/**
 * One request's ask for a slot on a deployment of a group, as the store runs it atomically: it
 * admits each deployment on its current stats, lets the selector `pick` among those admitted,
 * takes the pick's half-open probe (`claim`) and its concurrency slot, all as one step.
 *
 * @category Models
 * @since 0.1.0
 */
export interface Reservation {
  readonly deployments: ReadonlyArray<Deployment>
  readonly admit: (deployment: Deployment, stats: DeploymentStats, now: number) => Admission
  /** The selector over the admitted candidates (never empty). */
  readonly pick: (candidates: ReadonlyArray<Candidate>) => Effect.Effect<Candidate, NoFit>
  /** The circuit once this deployment is taken, `undefined` when it cannot be (its probe is taken). */
  readonly claim: (record: CooldownRecord, now: number) => CooldownRecord | undefined
  /** How long the slot is held unless renewed, in ms. */
  readonly ttlMs: number
  /**
   * The request's estimated tokens (prompt and most output), held against the deployment's
   * `tpm` from the take until the call completes with its actual tokens. Absent: 0.
   */
  readonly tokens?: number | undefined
  /**
   * The budgets a call on `deployment` would charge, with its estimated cost (`undefined` or
   * empty: none). The store holds each charge from the take until the call completes: a
   * deployment is refused when a budget's spend in its current period, plus what calls in
   * flight hold, plus this charge, would pass the budget's limit.
   */
  readonly charges?: ((deployment: Deployment) => ReadonlyArray<BudgetCharge> | undefined) | undefined
}

/**
 * One budget a call charges: the budget's `key` (its name), its `limit` in dollars per
 * `period` (calendar periods in UTC, on the store's clock), and the call's estimated cost.
 *
 * @category Models
 * @since 0.1.0
 */
export interface BudgetCharge {
  readonly key: string
  readonly limit: number
  readonly period: BudgetPeriod
  readonly amount: number
}

/**
 * A budget's period: a calendar minute, hour, day or month, in UTC.
 *
 * @category Models
 * @since 0.1.0
 */
export type BudgetPeriod = "minute" | "hour" | "day" | "month"

/**
 * A slot taken on a deployment: held until completed, or until it expires (`ttlMs` after it
 * was taken or last renewed), so a holder that died cannot keep it.
 *
 * @category Models
 * @since 0.1.0
 */
export interface Lease {
  /** The store's handle. */
  readonly id: number
  readonly deployment: Deployment
  /** When it was taken (the store's clock, epoch ms). */
  readonly at: number
  /** The deployment's stats when it was taken (what the selector saw). */
  readonly stats: DeploymentStats
}

/**
 * Why a reservation took nothing: how many deployments were refused for each reason, and when
 * the first cooling one returns (epoch ms). A plain value, not an `Error`: it is the store's
 * answer to the router, which turns it into `NoDeploymentAvailable` (a stack trace here would
 * cost more than the whole routed call).
 *
 * @category Errors
 * @since 0.1.0
 */
export class Unreserved extends Data.TaggedClass("Unreserved")<{
  /** Deployments the request's pre-call filters refused (tags, region, context window). */
  readonly untagged: number
  readonly excluded: number
  readonly cooling: number
  readonly full: number
  /** Deployments at their `rpm` limit (calls started over the rolling minute). */
  readonly rpm: number
  /** Deployments whose `tpm` limit the request's tokens would pass. */
  readonly tpm: number
  readonly firstBack: number | undefined
  /**
   * When the first deployment refused for its rpm or tpm limit has room for the request (epoch
   * ms); `undefined` when none can ever (the request alone is over their tpm) or none was.
   */
  readonly capacityBack: number | undefined
  /** Deployments refused because a budget they charge has no room for the call. */
  readonly budget: number
  /** The budget that refused the first of them (its key), and when its period ends (epoch ms). */
  readonly budgetRefusal: { readonly key: string; readonly resetsAt: number } | undefined
}> {}

/**
 * The state store's operations: the contract every store keeps (the in-memory one, a shared
 * one such as Redis). `effect-llm-router/testing` ships its test suite (`StoreContract`).
 *
 * - The store owns the clock (`now`); no caller passes one.
 * - `reserve` is atomic: admission, the selector's choice, the probe and the slot are taken
 *   together, so limits and least-busy choices hold under concurrency (and, for a shared
 *   store, across processes). A selector that suspends is re-checked at the take: limits always
 *   hold, the choice may then be a step stale.
 * - The store holds each deployment's limits itself, after `admit` accepts it and again at the
 *   take: `maxConcurrent` (leases held), `rpm` (calls started over the rolling minute: any 60 s
 *   interval, never more) and `tpm` (tokens of the calls started over the rolling minute, each
 *   counted at its `reservation.tokens` estimate from the take, then at its outcome's actual
 *   `tokens` once it succeeds with a usage). A deployment at a limit is refused and counted in
 *   `Unreserved`, with when capacity returns.
 * - Budgets: a call's `reservation.charges` are held from the take (a deployment a budget has
 *   no room for is refused) until it completes, when the budgets are charged its
 *   `outcome.cost` instead; an expired lease's holds are released.
 * - A lease is held until `complete`d or until it expires; `renew` extends it.
 * - Every operation can fail with {@link StoreError}.
 *
 * @category Models
 * @since 0.1.0
 */
export interface Service {
  /** The store's clock, epoch ms. */
  readonly now: Effect.Effect<number, StoreError>
  /** Live stats of each given deployment, in order. */
  readonly snapshot: (deployments: ReadonlyArray<Deployment>) => Effect.Effect<ReadonlyArray<DeploymentStats>, StoreError>
  /** Takes a slot on a deployment of the reservation, or says why none (see {@link Reservation}). */
  readonly reserve: (reservation: Reservation) => Effect.Effect<Lease, StoreError | Unreserved | NoFit>
  /** Holds the lease `ttlMs` longer from now (a long stream renews its own). */
  readonly renew: (lease: Lease, ttlMs: number) => Effect.Effect<void, StoreError>
  /**
   * Gives the slot back and records how the call ended (`undefined`: cancelled, nothing to
   * record). A lease that expired already is not given back twice.
   */
  readonly complete: (lease: Lease, outcome: Outcome | undefined) => Effect.Effect<void, StoreError>
  /** Keeps the rate-limit headroom the upstream last reported. */
  readonly recordRateLimit: (deployment: Deployment, info: RateLimitInfo) => Effect.Effect<void, StoreError>
  /**
   * Atomically reads the stats of `deployments` (a group, or just one) and changes the circuit
   * of `deployments[index]`: `f` returns a value and the change, or `undefined` to leave it.
   * Reading the group and writing in one step is what lets the breaker cap how much of a group
   * is out at once under concurrent failures.
   */
  readonly modifyCooldown: <A>(
    deployments: ReadonlyArray<Deployment>,
    index: number,
    f: (stats: ReadonlyArray<DeploymentStats>, now: number) => readonly [A, CircuitChange | undefined]
  ) => Effect.Effect<A, StoreError>
  /**
   * State a policy keeps in the store (shared with other processes when the store is): the
   * value under `key` (`initial` when there is none) is replaced by what `f` returns, atomically.
   * Values must be plain JSON data.
   */
  readonly modify: <S, A>(key: string, initial: S, f: (state: S, now: number) => readonly [A, S]) => Effect.Effect<A, StoreError>
  /** Adds `amount` dollars to each key's spend. */
  readonly addSpend: (keys: ReadonlyArray<string>, amount: number) => Effect.Effect<void, StoreError>
  /** Dollars spent under a key (`deployment:<id>`, `group:<name>`, `tag:<tag>`, `total`). */
  readonly spend: (key: string) => Effect.Effect<number, StoreError>
}

/**
 * The state service tag.
 *
 * @example
 * import { Effect } from "effect"
 * import { RouterState } from "effect-llm-router"
 * const total = Effect.flatMap(RouterState.RouterState, (state) => state.spend("total"))
 * @category Tags
 * @since 0.1.0
 */
export class RouterState extends Context.Tag("effect-llm-router/RouterState")<RouterState, Service>() {}

/**
 * Options of the in-memory store.
 *
 * @category Options
 * @since 0.1.0
 */
export interface MemoryOptions {
  /** Length of the usage and failure windows. Default 1 minute. */
  readonly window?: Duration.DurationInput
  /** Weight of the newest sample in the latency moving average, in (0, 1]. Default 0.2. */
  readonly latencyAlpha?: number
}

/**
 * Creates an in-memory store (one process). Its memory is bounded: constant per deployment
 * (about 14 KB, mostly its two latency sketches), plus one number per spend key.
 *
 * @example
 * import { RouterState } from "effect-llm-router"
 * const state = RouterState.makeMemory({ window: "2 minutes" }) // Effect<Service, InvalidConfig>
 * @category Constructors
 * @since 0.1.0
 */
export const makeMemory: (options?: MemoryOptions) => Effect.Effect<Service, InvalidConfig> = internal.makeMemory

/**
 * The in-memory store as a Layer.
 *
 * @example
 * import { RouterState } from "effect-llm-router"
 * const StateLive = RouterState.memory({ window: "2 minutes" })
 * @category Layers
 * @since 0.1.0
 */
export const memory = (options?: MemoryOptions): Layer.Layer<RouterState, InvalidConfig> =>
  Layer.effect(RouterState, makeMemory(options))
