/**
 * Where the routed call's overhead goes: the Effect building blocks the router wraps around
 * every attempt, each timed on its own around the same zero-latency fake provider call, next
 * to the full routed call. Companion of `bench/overhead.ts` (same harness, same method).
 *
 *   npx tsx bench/overhead-breakdown.ts          (about 30 s; BENCH_QUICK=1 for a few seconds)
 *
 * - `direct, failing (503)`: the fake's failing call (what the first ExecutionPlan step costs)
 * - `+ mask/exit`: `uninterruptibleMask(restore => exit(restore(call)))`, the attempt skeleton
 * - `+ timeoutFail`: `Effect.timeoutFail(call, 10 minutes)`, as every attempt gets (the
 *   router's default timeout); Effect 3 implements it with `raceFibersWith`: two forked
 *   fibers and a timer per call
 * - `+ fork/join`: one forked fiber awaited, the floor of any fork-based timeout
 * - `+ retry (eager)`: `Effect.retry(call, schedule)` with the schedule the router builds per
 *   request (`RetrySchedule` defaults, intersected with `Schedule.identity`, `modifyDelayEffect`)
 * - `+ retry (lazy)`: the first attempt outside `Effect.retry`; the schedule is built and run
 *   only after a failure (what `ExecutionPlan` does for its later steps)
 * - `ExecutionPlan fallback, Layer steps` / `Context steps`: the same two-step plan as in
 *   `overhead.ts`, with the steps given as layers (built on every run) or as contexts
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionPlan from "effect/ExecutionPlan"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Schedule from "effect/Schedule"
import { type Errors, type Provider, RetrySchedule, Router } from "../src/index.js"
import { FakeProvider } from "../src/testing.js"
import {
  describeMachine,
  fmt,
  log,
  machine,
  printTable,
  runInterleaved,
  type Variant,
  type Work,
  workPerCall
} from "./harness.js"

const QUICK = process.env.BENCH_QUICK === "1" || process.env.BENCH_QUICK === "true"
const SAMPLES = QUICK ? 100 : 400
const BATCH = QUICK ? 50 : 100
const WARMUP = QUICK ? 3_000 : 10_000

const MODEL = "gpt-4o-mini"
const messages: Provider.ChatRequest["messages"] = [{ role: "user", content: "Say hello in one word." }]
const fake = FakeProvider.unsafeMake({ record: false, byDeployment: { "ep-down": { failure: 503 } } })
const request: Provider.ChatRequest = { model: MODEL, messages }
const target = FakeProvider.target("direct", { model: MODEL })
const direct = Effect.suspend(() => fake.chat(request, target))

const retry = Effect.runSync(RetrySchedule.make())
/** The schedule the router builds for every request. */
const scheduleFor = () =>
  Schedule.intersect(
    Schedule.mapInput(retry.schedule, (error: Errors.RouterError) => ({ error, deployment: undefined, attempt: 1, othersAvailable: false })),
    Schedule.identity<Errors.RouterError>()
  ).pipe(
    Schedule.modifyDelayEffect((_, delay) => Effect.succeed(delay))
  )

class Chat extends Context.Tag("bench/Chat")<Chat, {
  readonly chat: (request: Provider.ChatRequest) => Effect.Effect<Provider.ChatResponse, Errors.ProviderError>
}>() {}
const chatVia = (deploymentId: string) => ({
  chat: (r: Provider.ChatRequest) => fake.chat(r, FakeProvider.target(deploymentId, { model: MODEL }))
})
const viaChat = Effect.flatMap(Chat, (service) => service.chat(request))
const planLayers = ExecutionPlan.make(
  { provide: Layer.succeed(Chat, chatVia("ep-down")), attempts: 1 },
  { provide: Layer.succeed(Chat, chatVia("ep-up")) }
)
const planContexts = ExecutionPlan.make(
  { provide: Context.make(Chat, chatVia("ep-down")), attempts: 1 },
  { provide: Context.make(Chat, chatVia("ep-up")) }
)

const main = async () => {
  log("effect-llm-router: overhead breakdown (zero-latency fake provider)")
  log(describeMachine(machine()))
  log()
  const runtime = ManagedRuntime.make(
    Router.layer({
      deployments: [
        { id: "g3-a", group: "g3", provider: fake, model: MODEL },
        { id: "g3-b", group: "g3", provider: fake, model: MODEL },
        { id: "g3-c", group: "g3", provider: fake, model: MODEL }
      ]
    }).pipe(Layer.provide(Router.defaults))
  )
  const router = await runtime.runPromise(Router.Router)
  const routedRequest: Provider.ChatRequest = { model: "g3", messages }

  const variants: ReadonlyArray<Variant> = [
    { key: "direct", label: "direct provider.chat", call: direct },
    {
      key: "directFail",
      label: "direct, failing (503)",
      call: Effect.either(Effect.suspend(() => fake.chat(request, FakeProvider.target("ep-down", { model: MODEL }))))
    },
    {
      key: "mask",
      label: "+ mask/exit",
      call: Effect.uninterruptibleMask((restore) => Effect.flatten(Effect.exit(restore(direct))))
    },
    {
      key: "timeout",
      label: "+ timeoutFail (10 min)",
      call: Effect.suspend(() => Effect.timeoutFail(direct, { duration: Duration.minutes(10), onTimeout: () => "timeout" }))
    },
    { key: "fork", label: "+ fork/join", call: Effect.flatMap(Effect.fork(direct), (fiber) => fiber.await) },
    { key: "retryEager", label: "+ retry (eager)", call: Effect.suspend(() => Effect.retry(direct, scheduleFor())) },
    {
      key: "retryLazy",
      label: "+ retry (lazy)",
      call: Effect.catchAll(direct, (first) => {
        let replayed = false
        return Effect.retry(
          Effect.suspend(() => {
            if (replayed) return direct
            replayed = true
            return Effect.fail(first)
          }),
          scheduleFor()
        )
      })
    },
    {
      key: "epLayers",
      label: "ExecutionPlan fallback, Layer steps",
      call: Effect.suspend(() => Effect.withExecutionPlan(viaChat, planLayers))
    },
    {
      key: "epContexts",
      label: "ExecutionPlan fallback, Context steps",
      call: Effect.suspend(() => Effect.withExecutionPlan(viaChat, planContexts))
    },
    { key: "routed", label: "routed, 3 deployments", call: Effect.suspend(() => router.chat(routedRequest)) }
  ]
  const { samples, seconds } = await runInterleaved(variants, { samples: SAMPLES, batch: BATCH, warmup: WARMUP })
  log(`per-call time, microseconds (median and p99 of ${SAMPLES} batch means of ${BATCH} calls; ${fmt(seconds, 1)} s)`)
  const work = new Map<string, Work>()
  for (const v of variants) work.set(v.key, await workPerCall(v.call, 1_000))
  printTable(variants, samples, "direct", new Set(["direct"]), work)
  log("+median / +p99: variant minus direct (medians / p99s); +paired: median of per-round (variant - direct)")
  log("ops / fibers / async: primitive effects evaluated, fibers started, fiber suspensions, per call (load-independent)")
  await runtime.dispose()
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
