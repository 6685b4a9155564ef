/**
 * One app instance of test/RedisProcesses.test.ts, run as its own Node process (`tsx`): a router
 * over the Redis store (`RedisState`) and the OpenAI-compatible provider, whose deployments all
 * point at the test's loopback server (`{server}/d/{id}/v1`). Its settings come as JSON in
 * `WORKER_CONFIG`. It prints `ready` once the router is built, waits for `go` on stdin, runs
 * its part, and prints one JSON line `{"result": ...}` before exiting:
 *
 * - `chat`: `concurrency` loops at once; each routes one request, again after `retryMs` (with
 *   jitter) while it is refused for the deployments' limits, until it is served or `untilMs`
 *   has passed (`untilMs` 0: one try). Counts what came back.
 * - `traffic`: `concurrency` loops routing requests one after the other until `stop` comes on
 *   stdin. Counts what came back, by deployment.
 * - `streams`: `concurrency` streams at once; prints `streaming` once each has had its first
 *   content, then reads them to their end (the test kills the process before).
 *
 * Every request says which worker sent it in its message (`w<worker>`).
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { type Duration, Effect, Layer, Redacted, Stream } from "effect"
import * as readline from "node:readline"
import { Cooldown, OpenAiCompatible, RetrySchedule, Router } from "../../src/index.js"
import * as RedisState from "../../src/RedisState.js"

export interface WorkerDeployment {
  readonly id: string
  readonly maxConcurrent?: number
  readonly rpm?: number
  readonly timeout?: string
}

export interface WorkerConfig {
  readonly worker: number
  readonly redisUrl: string
  readonly keyPrefix: string
  readonly server: string
  readonly deployments: ReadonlyArray<WorkerDeployment>
  readonly mode: "chat" | "traffic" | "streams"
  readonly concurrency: number
  readonly untilMs?: number
  readonly retryMs?: number
  readonly leaseMargin?: string
  readonly cooldown?: Cooldown.Options
}

export interface WorkerResult {
  readonly served: number
  /** Refusals for the limits (`NoDeploymentAvailable` `over_limits`), every try counted. */
  readonly overLimits: number
  /** Requests given up: still refused at `untilMs`. */
  readonly gaveUp: number
  /** Other errors, by tag (and reason). */
  readonly errors: Record<string, number>
  /** Served requests by deployment. */
  readonly byDeployment: Record<string, number>
}

const config = JSON.parse(process.env.WORKER_CONFIG ?? "{}") as WorkerConfig

const lines = readline.createInterface({ input: process.stdin })
const waiting = new Map<string, () => void>()
const received = new Set<string>()
lines.on("line", (line) => {
  const word = line.trim()
  received.add(word)
  waiting.get(word)?.()
})
const heard = (word: string) =>
  Effect.async<void>((resume) => {
    if (received.has(word)) return resume(Effect.void)
    waiting.set(word, () => resume(Effect.void))
  })
const say = (line: string) => Effect.sync(() => void process.stdout.write(`${line}\n`))

const RouterLive = Layer.unwrapEffect(Effect.map(
  OpenAiCompatible.make({ apiKeyEnv: false, idleTimeout: "30 seconds" }),
  (openai) =>
    Router.layer({
      deployments: config.deployments.map((d) => ({
        id: d.id,
        group: "g",
        provider: openai,
        model: `model-${d.id}`,
        apiBase: `${config.server}/d/${d.id}/v1`,
        maxConcurrent: d.maxConcurrent,
        rpm: d.rpm,
        timeout: d.timeout
      })),
      ...(config.leaseMargin === undefined ? {} : { leaseMargin: config.leaseMargin as Duration.DurationInput })
    })
)).pipe(
  Layer.provide(NodeHttpClient.layerUndici),
  Layer.provide(RetrySchedule.none),
  Layer.provide(Cooldown.layer(config.cooldown)),
  Layer.provideMerge(Router.policies),
  Layer.provideMerge(RedisState.layer({ url: Redacted.make(config.redisUrl), keyPrefix: config.keyPrefix }))
)

const request = { model: "g", messages: [{ role: "user" as const, content: `w${config.worker}` }] }

const program = Effect.gen(function*() {
  const result = { served: 0, overLimits: 0, gaveUp: 0, errors: {} as Record<string, number>, byDeployment: {} as Record<string, number> }
  const count = (table: Record<string, number>, key: string) => void (table[key] = (table[key] ?? 0) + 1)
  const once = Router.chat(request).pipe(
    Effect.map((reply) => {
      result.served++
      count(result.byDeployment, reply.route.deploymentId)
      return "served" as const
    }),
    Effect.catchAll((error) => {
      if (error._tag === "NoDeploymentAvailable" && error.reason === "over_limits") {
        result.overLimits++
        return Effect.succeed("refused" as const)
      }
      count(result.errors, error._tag === "NoDeploymentAvailable" ? `${error._tag}:${error.reason}` : error._tag)
      return Effect.succeed("failed" as const)
    })
  )
  yield* say("ready")
  yield* heard("go")
  const started = Date.now()
  if (config.mode === "chat") {
    const until = started + (config.untilMs ?? 0)
    const retryMs = config.retryMs ?? 200
    const loop: Effect.Effect<void, never, Router.Router> = Effect.flatMap(once, (outcome) => {
      if (outcome !== "refused") return Effect.void
      if (Date.now() >= until) return Effect.sync(() => void result.gaveUp++)
      return Effect.zipRight(Effect.sleep(retryMs / 2 + Math.random() * retryMs), loop)
    })
    yield* Effect.forEach(Array.from({ length: config.concurrency }), () => loop, { concurrency: "unbounded", discard: true })
  } else if (config.mode === "traffic") {
    let stopped = false
    yield* Effect.fork(Effect.tap(heard("stop"), () => Effect.sync(() => void (stopped = true))))
    const loop: Effect.Effect<void, never, Router.Router> = Effect.suspend(() => (stopped ? Effect.void : Effect.zipRight(once, Effect.zipRight(Effect.sleep("5 millis"), loop))))
    yield* Effect.forEach(Array.from({ length: config.concurrency }), () => loop, { concurrency: "unbounded", discard: true })
  } else {
    let firsts = 0
    const one = Router.stream(request).pipe(
      Stream.tap((chunk) =>
        chunk.choices.some((c) => (c.delta?.content ?? "") !== "") && ++firsts === config.concurrency ? say("streaming") : Effect.void
      ),
      Stream.runDrain,
      Effect.catchAll((error) => Effect.sync(() => count(result.errors, error._tag)))
    )
    yield* Effect.forEach(Array.from({ length: config.concurrency }), () => one, { concurrency: "unbounded", discard: true })
  }
  yield* say(JSON.stringify({ result }))
})

Effect.runPromise(Effect.scoped(Effect.provide(program, RouterLive))).then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`worker ${config.worker} failed: ${String(error)}\n`)
    process.exit(1)
  }
)
