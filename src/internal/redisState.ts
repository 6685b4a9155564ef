/**
 * The Redis `RouterState` store behind `RedisState.make` (see `redisScripts.ts` for the keys and
 * scripts). Shared in Redis: leases, rpm/tpm minute windows, usage and failure windows,
 * consecutive failures, circuits, budgets, spend and policy state. Kept in this process: latency
 * averages and sketches, and the upstream's rate-limit headroom.
 *
 * A reservation runs `admit`, `pick` and `claim` here, over the pool's shared state as of the
 * last script reply (its groups' versions with it), then one `take` script checks that no
 * version moved, re-checks the limits and takes the slot: one round trip. When another process
 * changed the pool meanwhile, the reply carries the fresh state and the reservation runs again
 * on it. Reservations of one pool are serialized within a process, so a process never conflicts
 * with itself.
 *
 * @internal
 */
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from "ioredis"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { Deployment } from "../Deployment.js"
import type { InvalidConfig } from "../Errors.js"
import type { RateLimitInfo } from "../Provider.js"
import {
  type Admission,
  type BudgetCharge,
  type CooldownRecord,
  type DeploymentStats,
  type LatencyQuantiles,
  type Lease,
  type Service,
  StoreError,
  Unreserved
} from "../RouterState.js"
import type { Candidate, NoFit } from "../Selector.js"
import type { Options } from "../RedisState.js"
import * as scripts from "./redisScripts.js"
import { NonEmptyString, PositiveDuration, validateConfig } from "./schemas.js"
import { LatencySketch } from "./sketch.js"
import { periodOf, Refusals, sample, WindowOptions } from "./state.js"

const Secret = Schema.Union(NonEmptyString, Schema.RedactedFromSelf(NonEmptyString))
const Port = Schema.Number.pipe(Schema.int(), Schema.between(1, 65535, { message: () => "expected a port (1-65535)" }))
/**
 * A Cluster node: `"host:port"` (no scheme, so no credentials in it: they go in
 * `password`/`username`) or `{ host, port }`. One schema with one message, which never echoes the
 * value (a URL given by mistake may carry a password).
 */
const isPort = (n: unknown) => typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= 65535
const ClusterNode = Schema.declare(
  (u: unknown): u is string | { readonly host: string; readonly port: number } => {
    if (typeof u === "string") {
      const match = /^([^\s/@:]+|\[[0-9a-fA-F:.]+\]):(\d+)$/.exec(u)
      return match !== null && isPort(Number(match[2]))
    }
    if (typeof u !== "object" || u === null) return false
    const { host, port, ...rest } = u as Record<string, unknown>
    return typeof host === "string" && host.length > 0 && isPort(port) && Object.keys(rest).length === 0
  },
  { message: () => "expected \"host:port\" or { host, port } with a port 1-65535 (credentials go in password/username)" }
)
const ClusterSchema = Schema.Struct({
  nodes: Schema.Array(ClusterNode).pipe(Schema.minItems(1, { message: () => "expected at least one node" }))
})
const OptionsSchema = Schema.Struct({
  cluster: Schema.optional(ClusterSchema),
  url: Schema.optional(Secret.pipe(Schema.filter((u) => {
    const text = typeof u === "string" ? u : Redacted.value(u)
    return /^rediss?:\/\//.test(text) || "expected a redis:// or rediss:// URL"
  }))),
  host: Schema.optional(NonEmptyString),
  port: Schema.optional(Port),
  username: Schema.optional(NonEmptyString),
  password: Schema.optional(Secret),
  db: Schema.optional(Schema.Number.pipe(Schema.int(), Schema.between(0, 15, { message: () => "expected a database index (0-15)" }))),
  tls: Schema.optional(Schema.Boolean),
  keyPrefix: Schema.optional(NonEmptyString.pipe(Schema.filter((p) => !/[{}]/.test(p) || "expected no braces (the prefix is the hash tag)"))),
  commandTimeout: Schema.optional(PositiveDuration),
  ...WindowOptions
}).pipe(Schema.filter((o) => {
  if (o.cluster === undefined) return true
  // a Cluster is reached through its nodes, on database 0: the single-server fields are refused
  const clashes = (["url", "host", "port", "db"] as const).filter((k) => o[k] !== undefined)
  return clashes.length === 0 || [
    { path: ["cluster"], message: `expected either cluster or ${clashes.join("/")}, not both` },
    ...clashes.map((k) => ({
      path: [k],
      message: k === "db" ? "not with cluster: Redis Cluster has database 0 only" : "not with cluster: give the nodes in cluster.nodes"
    }))
  ]
}))
const validate = validateConfig(OptionsSchema, "RedisState")

const closed: CooldownRecord = { status: "closed", until: 0, ejections: 0, reason: "failures" }
/** Conflicts with other processes before a take stops insisting on a fresh choice (limits still hold). */
const freshTries = 5
/** Attempts of one operation before it fails with a StoreError. */
const maxTries = 50

/** One deployment's shared state as a script returned it. */
interface Row {
  readonly inFlight: number
  readonly startedSum: number
  readonly consecutiveFailures: number
  readonly cooldown: CooldownRecord
  readonly nextExpiry: number
  /** Window buckets: kind (r t c f R T) -> [bucket id, amount][]. */
  readonly buckets: Map<string, Array<readonly [number, number]>>
}

const parseRow = (raw: ReadonlyArray<unknown>): Row => {
  const flat = raw[8] as ReadonlyArray<string>
  const buckets = new Map<string, Array<readonly [number, number]>>()
  for (let i = 0; i < flat.length; i += 2) {
    const kind = flat[i][0]
    let list = buckets.get(kind)
    if (list === undefined) buckets.set(kind, list = [])
    list.push([Number(flat[i].slice(1)), Number(flat[i + 1])])
  }
  const status = String(raw[3])
  const reason = String(raw[6])
  return {
    inFlight: Number(raw[0]),
    startedSum: Number(raw[1]),
    consecutiveFailures: Number(raw[2]),
    cooldown: status === "closed" && Number(raw[4]) === 0 && Number(raw[5]) === 0 && reason === "failures"
      ? closed
      : { status: status as CooldownRecord["status"], until: Number(raw[4]), ejections: Number(raw[5]), reason: reason as CooldownRecord["reason"] },
    nextExpiry: Number(raw[7]),
    buckets
  }
}

/** Per-process latency samples of a deployment. */
class Local {
  latencyMs: number | undefined = undefined
  firstTokenMs: number | undefined = undefined
  perTokenMs: number | undefined = undefined
  upstream: RateLimitInfo | undefined = undefined
  readonly calls: LatencySketch
  readonly streams: LatencySketch
  readonly latency: { readonly calls: LatencyQuantiles; readonly streams: LatencyQuantiles }
  constructor(windowMs: number) {
    this.calls = new LatencySketch({ windowMs })
    this.streams = new LatencySketch({ windowMs })
    this.latency = { calls: this.calls, streams: this.streams }
  }
}

/** Sum of a rolling-minute window (R/T) at `now`: every second overlapping the last 60 s. */
const minuteSum = (row: Row, kind: "R" | "T", now: number): number => {
  const oldest = Math.floor((now - 60_000) / 1000)
  let total = 0
  for (const [id, n] of row.buckets.get(kind) ?? []) if (id >= oldest) total += n
  return total
}
/** As `MinuteWindow.fitsAt` (window.ts). */
const minuteFitsAt = (row: Row, kind: "R" | "T", now: number, need: number, limit: number): number | undefined => {
  if (need > limit) return undefined
  let over = minuteSum(row, kind, now) + need - limit
  if (over <= 0) return now
  const oldest = Math.floor((now - 60_000) / 1000)
  const list = (row.buckets.get(kind) ?? []).filter(([id]) => id >= oldest).sort((a, b) => a[0] - b[0])
  for (const [id, n] of list) {
    over -= n
    if (over <= 0) return (id + 1) * 1000 + 60_000
  }
  return undefined
}

/** A pool's state as of the last reply, with the versions of its groups. */
interface Cached {
  versions: string
  rows: Array<Row>
  budgets: Map<string, { spent: number; held: number }>
}

const budgetKey = (prefix: string, charge: BudgetCharge, now: number) => {
  const [start, end] = periodOf(charge.period, now)
  return { key: `${prefix}b:${charge.key}/${charge.period}@${start}`, end, ttlMs: end - start + 3_600_000 }
}

type Commands = (Redis | Cluster) & Record<"llmRead" | "llmTake" | "llmComplete" | "llmRenew" | "llmCircuit" | "llmCas" | "llmSpend", (...args: Array<string | number>) => Promise<unknown>>

/** @internal */
export const make = (input: Options): Effect.Effect<Service, InvalidConfig, Scope.Scope> =>
  Effect.flatMap(validate(input), (options) => {
    const url = options.url === undefined ? undefined : typeof options.url === "string" ? options.url : Redacted.value(options.url)
    const password = options.password === undefined ? undefined : typeof options.password === "string" ? options.password : Redacted.value(options.password)
    const secrets = [url, password, url === undefined ? undefined : safeUrlPassword(url)].filter((s): s is string => s !== undefined && s !== "")
    const scrub = (text: string) => secrets.reduce((out, secret) => out.split(secret).join("<redacted>"), text)
    const base = `{${options.keyPrefix ?? "llm-router"}}:`
    const routeKey = `${base}seq`
    const windowMs = Duration.toMillis(options.window ?? Duration.minutes(1))
    const bucketMs = windowMs / 6
    const alpha = options.latencyAlpha ?? 0.2
    const clientOptions: RedisOptions = {
      lazyConnect: true,
      commandTimeout: Duration.toMillis(options.commandTimeout ?? Duration.seconds(1)),
      connectTimeout: 2_000,
      maxRetriesPerRequest: 1,
      retryStrategy: (times) => Math.min(times * 100, 2_000),
      ...(options.host === undefined ? {} : { host: options.host }),
      ...(options.port === undefined ? {} : { port: options.port }),
      ...(options.username === undefined ? {} : { username: options.username }),
      ...(password === undefined ? {} : { password }),
      ...(options.db === undefined ? {} : { db: options.db }),
      ...(options.tls === true ? { tls: {} } : {})
    }
    const cluster = options.cluster
    const makeClient = (): Redis | Cluster => {
      if (cluster === undefined) return url === undefined ? new Redis(clientOptions) : new Redis(url, clientOptions)
      const { lazyConnect: _lazy, retryStrategy, ...nodeOptions } = clientOptions
      const clusterOptions: ClusterOptions = {
        lazyConnect: true,
        // the per-node options: auth, TLS, commandTimeout and maxRetriesPerRequest hold on every node
        redisOptions: nodeOptions,
        clusterRetryStrategy: retryStrategy ?? null,
        // a lost slot map (failover, resharding) is refreshed quickly, within the command timeout
        slotsRefreshTimeout: Math.min(clientOptions.commandTimeout ?? 1_000, 1_000)
      }
      // "host:port" (or "[v6]:port") is split here, not left to the client's URL parsing
      const nodes = cluster.nodes.map((n) => {
        if (typeof n !== "string") return { host: n.host, port: n.port }
        const colon = n.lastIndexOf(":")
        return { host: n.slice(0, colon).replace(/^\[(.*)\]$/, "$1"), port: Number(n.slice(colon + 1)) }
      })
      return new Cluster(nodes, clusterOptions)
    }
    const acquire = Effect.sync(() => {
      const redis = makeClient() as Commands
      // errors reach the operations that meet them (StoreError); the event must be listened to
      redis.on("error", () => {})
      const define = (name: string, lua: string) => redis.defineCommand(name, { numberOfKeys: 1, lua })
      define("llmRead", scripts.read)
      define("llmTake", scripts.take)
      define("llmComplete", scripts.complete)
      define("llmRenew", scripts.renew)
      define("llmCircuit", scripts.setCircuit)
      define("llmCas", scripts.casState)
      define("llmSpend", scripts.addSpend)
      // connects in the background: a store whose Redis is down fails its operations, not its layer
      redis.connect().catch(() => {})
      return redis
    })
    const release = (redis: Commands) =>
      Effect.promise(() =>
        Promise.race([redis.quit().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 1_000))]).finally(() => redis.disconnect())
      )
    // a Cluster queues a command while it has no node for its slot (commandTimeout starts only on
    // a node): the store bounds the wait itself, so a Cluster that is down is a timeout too
    const backstopMs = cluster === undefined ? undefined : clientOptions.commandTimeout
    return Effect.map(Effect.acquireRelease(acquire, release), (redis) => build(redis, { base, routeKey, bucketMs, windowMs, alpha, scrub, backstopMs }))
  })

/** The password in a URL as it may appear percent-decoded in an error. */
const safeUrlPassword = (url: string): string | undefined => {
  try {
    const parsed = new URL(url)
    return parsed.password === "" ? undefined : decodeURIComponent(parsed.password)
  } catch {
    return undefined
  }
}

interface Settings {
  readonly base: string
  readonly routeKey: string
  readonly bucketMs: number
  readonly windowMs: number
  readonly alpha: number
  readonly scrub: (text: string) => string
  /** When set, an operation not answered within it fails (`StoreError`) even if the client still holds it. */
  readonly backstopMs?: number | undefined
}

const build = (redis: Commands, settings: Settings): Service => {
  const { alpha, backstopMs, base, bucketMs, routeKey, scrub, windowMs } = settings
  /** Failures so far, and the last: a reservation queued behind one that failed fails at once (see `serialized`). */
  let failures = 0
  let lastFailure = ""
  const fail = (operation: string, error: unknown) => {
    failures++
    lastFailure = `Redis: ${scrub(error instanceof Error ? error.message : String(error))}`
    return new StoreError({ operation, message: lastFailure })
  }
  const call = <A>(operation: string, f: () => Promise<unknown>): Effect.Effect<A, StoreError> => {
    const attempt = Effect.tryPromise({ try: () => f() as Promise<A>, catch: (error) => fail(operation, error) })
    return backstopMs === undefined ? attempt : attempt.pipe(
      Effect.timeoutFail({
        // a little past commandTimeout, so a command that reached a node times out there as usual
        duration: Duration.millis(backstopMs + 50),
        onTimeout: () => fail(operation, `Command timed out: no Cluster node took it within ${backstopMs} ms`)
      })
    )
  }
  /**
   * Runs `effect` holding `key`'s lock. When Redis failed while it waited for the lock (a timeout,
   * a lost connection), it fails at once instead of trying in turn: N reservations queued behind
   * a stalled Redis then fail after one `commandTimeout`, not N of them.
   */
  const serialized = <A, E>(operation: string, key: string, effect: Effect.Effect<A, E>): Effect.Effect<A, E | StoreError> =>
    Effect.suspend(() => {
      const seen = failures
      return lockOf(key).withPermits(1)(
        Effect.suspend((): Effect.Effect<A, E | StoreError> =>
          failures === seen ? effect : Effect.fail(new StoreError({ operation, message: `${lastFailure} (while this ${operation} waited for its turn)` }))
        )
      )
    })
  const now = Clock.currentTimeMillis
  const locals = new Map<string, Local>()
  const localOf = (d: Deployment) => {
    let found = locals.get(d.id)
    if (found === undefined) locals.set(d.id, found = new Local(windowMs))
    return found
  }
  const cache = new Map<string, Cached>()
  /** Pools (cache keys) each deployment is in. */
  const poolsOf = new Map<string, Set<string>>()
  const semaphores = new Map<string, Effect.Semaphore>()
  const lockOf = (key: string) => {
    let found = semaphores.get(key)
    if (found === undefined) semaphores.set(key, found = Effect.unsafeMakeSemaphore(1))
    return found
  }
  const poolKey = (ds: ReadonlyArray<Deployment>) => ds.map((d) => `${d.group}\u0000${d.id}`).join("\u0001")
  const poolArgs = (ds: ReadonlyArray<Deployment>): Array<string | number> => [ds.length, ...ds.flatMap((d) => [d.id, d.group])]

  const remember = (key: string, ds: ReadonlyArray<Deployment>, versions: string, rawRows: ReadonlyArray<ReadonlyArray<unknown>>, rawBudgets: ReadonlyArray<ReadonlyArray<string>>, old?: Cached): Cached => {
    const budgets = new Map(old?.budgets ?? [])
    for (const [k, spent, held] of rawBudgets) budgets.set(k, { spent: Number(spent), held: Number(held) })
    const entry: Cached = { versions, rows: rawRows.map(parseRow), budgets }
    cache.set(key, entry)
    for (const d of ds) {
      let set = poolsOf.get(d.id)
      if (set === undefined) poolsOf.set(d.id, set = new Set())
      set.add(key)
    }
    return entry
  }

  const statsOf = (d: Deployment, row: Row, at: number): DeploymentStats => {
    const local = localOf(d)
    const current = Math.floor(at / bucketMs)
    const windowSum = (kind: string) => {
      let total = 0
      for (const [id, n] of row.buckets.get(kind) ?? []) if (id > current - 6) total += n
      return total
    }
    return {
      inFlight: row.inFlight,
      inFlightAgeMs: row.inFlight === 0 ? 0 : Math.max(0, at - row.startedSum / row.inFlight),
      latencyMs: local.latencyMs,
      firstTokenMs: local.firstTokenMs,
      perTokenMs: local.perTokenMs,
      latency: local.latency,
      requests: windowSum("r"),
      tokens: windowSum("t"),
      completed: windowSum("c"),
      failures: windowSum("f"),
      consecutiveFailures: row.consecutiveFailures,
      cooldown: row.cooldown,
      upstream: local.upstream
    }
  }

  const read = (ds: ReadonlyArray<Deployment>, at: number, budgetKeys: ReadonlyArray<string>) =>
    Effect.map(
      call<[string, Array<Array<unknown>>, Array<Array<string>>]>("snapshot", () =>
        redis.llmRead(routeKey, base, at, bucketMs, ...poolArgs(ds), budgetKeys.length, ...budgetKeys)),
      ([versions, rows, budgets]) => remember(poolKey(ds), ds, versions, rows, budgets, cache.get(poolKey(ds)))
    )

  const reserve: Service["reserve"] = (reservation) => {
    const ds = reservation.deployments
    const key = poolKey(ds)
    const tokens = reservation.tokens ?? 0
    return serialized("reserve", key, Effect.flatMap(now, (at) => {
      const charged = ds.map((d) => {
        const charges = reservation.charges?.(d)
        return charges === undefined || charges.length === 0 ? undefined : charges.map((c) => ({ charge: c, ...budgetKey(base, c, at) }))
      })
      const budgetKeys = [...new Set(charged.flatMap((cs) => cs?.map((c) => c.key) ?? []))]
      const attempt = (entry: Cached, tries: number, verified: boolean): Effect.Effect<Lease, StoreError | Unreserved | NoFit> => {
        if (tries >= maxTries) return Effect.fail(new StoreError({ operation: "reserve", message: `no reservation after ${maxTries} tries: the pool kept changing` }))
        const stats = ds.map((d, i) => statsOf(d, entry.rows[i], at))
        const refusals = new Refusals()
        const overBudget = (i: number) =>
          charged[i]?.find(({ charge, key }) => {
            const b = entry.budgets.get(key) ?? { spent: 0, held: 0 }
            return b.spent + b.held + charge.amount > charge.limit
          })
        const overRate = (i: number): "rpm" | "tpm" | undefined => {
          const d = ds[i]
          return d.rpm !== undefined && minuteSum(entry.rows[i], "R", at) + 1 > d.rpm
            ? "rpm"
            : d.tpm !== undefined && minuteSum(entry.rows[i], "T", at) + tokens > d.tpm
            ? "tpm"
            : undefined
        }
        const countRate = (which: "rpm" | "tpm", i: number) => {
          const d = ds[i]
          const row = entry.rows[i]
          const rpm = d.rpm === undefined ? at : minuteFitsAt(row, "R", at, 1, d.rpm)
          const tpm = d.tpm === undefined ? at : minuteFitsAt(row, "T", at, tokens, d.tpm)
          refusals.overRate(which, rpm === undefined || tpm === undefined ? undefined : Math.max(rpm, tpm))
        }
        const takes: Array<number> = []
        const fallbacks: Array<number> = []
        for (let i = 0; i < ds.length; i++) {
          const admission: Admission = reservation.admit(ds[i], stats[i], at)
          if (admission === "take" || admission === "fallback") {
            const over = overRate(i)
            if (over !== undefined) {
              countRate(over, i)
              continue
            }
            const refusing = overBudget(i)
            if (refusing !== undefined) {
              refusals.overBudget(refusing.charge.key, refusing.end)
              continue
            }
            ;(admission === "take" ? takes : fallbacks).push(i)
            continue
          }
          refusals.refuse(admission)
        }
        const candidatesOf = (indices: ReadonlyArray<number>) => indices.map((i): Candidate => ({ deployment: ds[i], stats: stats[i] }))
        const pickFrom = (options: ReadonlyArray<number>): Effect.Effect<Lease, StoreError | Unreserved | NoFit> => {
          if (options.length === 0) {
            // a refusal is never decided on cached state: another process may have freed it
            return verified ? Effect.fail(refusals.unreserved()) : Effect.flatMap(read(ds, at, budgetKeys), (e) => attempt(e, tries + 1, true))
          }
          const candidates = candidatesOf(options)
          return Effect.flatMap(reservation.pick(candidates), (picked) => {
            const j = candidates.indexOf(picked)
            const i = j >= 0 ? options[j] : ds.findIndex((d) => d.id === picked.deployment.id)
            const rest = options.filter((o) => o !== i)
            const d = ds[i]
            const row = entry.rows[i]
            if (d.maxConcurrent !== undefined && row.inFlight >= d.maxConcurrent) {
              refusals.full++
              return pickFrom(rest)
            }
            const circuit = reservation.claim(row.cooldown, at)
            if (circuit === undefined) {
              refusals.cooling++
              return pickFrom(rest)
            }
            const charges = charged[i] ?? []
            const same = circuit === row.cooldown ||
              (circuit.status === row.cooldown.status && circuit.until === row.cooldown.until && circuit.ejections === row.cooldown.ejections && circuit.reason === row.cooldown.reason)
            const args: Array<string | number> = [
              base, at, bucketMs, ...poolArgs(ds), budgetKeys.length, ...budgetKeys,
              tries < freshTries ? entry.versions : "", i + 1,
              d.maxConcurrent ?? -1, d.rpm ?? -1, d.tpm ?? -1, tokens, reservation.ttlMs,
              row.cooldown.status, row.cooldown.until, row.cooldown.ejections, row.cooldown.reason,
              ...(same ? ["same", 0, 0, "failures"] : [circuit.status, circuit.until, circuit.ejections, circuit.reason]),
              charges.length, ...charges.flatMap((c) => [c.key, c.charge.limit, c.charge.amount, c.ttlMs])
            ]
            return Effect.flatMap(
              call<[string, number, string, Array<Array<unknown>>, Array<Array<string>>]>("reserve", () => redis.llmTake(routeKey, ...args)),
              ([status, leaseId, versions, rows, budgets]) => {
                const fresh = remember(key, ds, versions, rows, budgets, entry)
                if (status === "ok") return Effect.succeed<Lease>({ id: Number(leaseId), deployment: d, at, stats: stats[i] })
                // another process changed the pool, or (unversioned) took what we saw: run again on the reply's state
                return attempt(fresh, tries + 1, true)
              }
            )
          })
        }
        return pickFrom(takes.length > 0 ? takes : fallbacks)
      }
      const entry = cache.get(key)
      const fresh = entry !== undefined && budgetKeys.every((k) => entry.budgets.has(k)) &&
        entry.rows.every((row) => row.nextExpiry < 0 || row.nextExpiry > at)
      return fresh ? attempt(entry, 0, false) : Effect.flatMap(read(ds, at, budgetKeys), (e) => attempt(e, 0, true))
    }))
  }

  const complete: Service["complete"] = (lease, outcome) =>
    Effect.flatMap(now, (at) => {
      const d = lease.deployment
      const result = outcome?.result ?? "none"
      return Effect.map(
        call<[number, number, Array<unknown>]>("complete", () =>
          redis.llmComplete(
            routeKey, base, at, bucketMs, d.id, d.group, lease.id, result, outcome?.tokens ?? 0, outcome?.cost ?? 0, d.tpm === undefined ? 0 : 1,
            ...(outcome?.spend ?? [])
          )),
        ([before, after, raw]) => {
          if (outcome !== undefined && outcome.result !== "ignored") sample(localOf(d), at, outcome, alpha)
          // keep the cached pools this process is the only writer of since their last reply current
          const row = parseRow(raw)
          for (const key of poolsOf.get(d.id) ?? []) {
            const entry = cache.get(key)
            if (entry === undefined) continue
            const mark = `${d.group}=${before}`
            const parts = entry.versions.split(",")
            const at = parts.indexOf(mark)
            if (at < 0) {
              cache.delete(key)
              continue
            }
            parts[at] = `${d.group}=${after}`
            entry.versions = parts.join(",")
            const ids = key.split("\u0001")
            const index = ids.indexOf(`${d.group}\u0000${d.id}`)
            if (index >= 0) entry.rows[index] = row
          }
        }
      )
    })

  const modifyCooldown: Service["modifyCooldown"] = (ds, index, f) => {
    const key = poolKey(ds)
    return serialized("modifyCooldown", key, Effect.flatMap(now, (at) => {
      const attempt = (entry: Cached, tries: number): Effect.Effect<any, StoreError> => {
        if (tries >= maxTries) return Effect.fail(new StoreError({ operation: "modifyCooldown", message: `no update after ${maxTries} tries: the group kept changing` }))
        const [value, change] = f(ds.map((d, i) => statsOf(d, entry.rows[i], at)), at)
        if (change === undefined) return Effect.succeed(value)
        const { record } = change
        return Effect.flatMap(
          call<[string, string, Array<Array<unknown>>]>("modifyCooldown", () =>
            redis.llmCircuit(routeKey, base, at, bucketMs, ...poolArgs(ds), entry.versions, index + 1, record.status, record.until, record.ejections, record.reason, change.resetOutcomes ? 1 : 0)),
          ([status, versions, rows]) => {
            const fresh = remember(key, ds, versions, rows, [], entry)
            return status === "ok" ? Effect.succeed(value) : attempt(fresh, tries + 1)
          }
        )
      }
      // a circuit is decided on the group as it is now, not as cached
      return Effect.flatMap(read(ds, at, []), (entry) => attempt(entry, 0))
    }))
  }

  const states = new Map<string, { version: number; json: string }>()
  const modify: Service["modify"] = <S, A>(key: string, initial: S, f: (state: S, now: number) => readonly [A, S]) =>
    serialized("modify", `state\u0000${key}`, Effect.flatMap(now, (at) => {
      const attempt = (known: { version: number; json: string }, tries: number): Effect.Effect<A, StoreError> => {
        if (tries >= maxTries) return Effect.fail(new StoreError({ operation: "modify", message: `no update of ${key} after ${maxTries} tries` }))
        const [result, next] = f(known.json === "" ? initial : JSON.parse(known.json) as S, at)
        const json = JSON.stringify(next)
        return Effect.flatMap(
          call<[string, number, string]>("modify", () => redis.llmCas(routeKey, base, key, known.version, json)),
          ([status, version, current]) => {
            if (status === "ok") {
              states.set(key, { version: Number(version), json })
              return Effect.succeed(result)
            }
            const fresh = { version: Number(version), json: current }
            states.set(key, fresh)
            return attempt(fresh, tries + 1)
          }
        )
      }
      return attempt(states.get(key) ?? { version: 0, json: "" }, 0)
    }))

  return {
    now,
    snapshot: (ds) =>
      Effect.flatMap(now, (at) => Effect.map(read(ds, at, []), (entry) => ds.map((d, i) => statsOf(d, entry.rows[i], at)))),
    reserve,
    renew: (lease, ttlMs) =>
      Effect.flatMap(now, (at) => Effect.asVoid(call("renew", () => redis.llmRenew(routeKey, base, lease.deployment.id, lease.id, at + ttlMs)))),
    complete,
    recordRateLimit: (deployment, info) =>
      Effect.sync(() => {
        localOf(deployment).upstream = info
      }),
    modifyCooldown,
    modify,
    addSpend: (keys, amount) =>
      keys.length === 0 ? Effect.void : Effect.asVoid(call("addSpend", () => redis.llmSpend(routeKey, base, String(amount), ...keys))),
    spend: (key) => Effect.map(call<string | null>("spend", () => redis.hget(`${base}spend`, key)), (v) => (v === null ? 0 : Number(v)))
  }
}

