/**
 * Where the routed call's overhead goes: the Effect building blocks the router wraps around
 * every attempt, each timed on its own around the same zero-latency fake provider call, next
 * to the full routed call. Companion of `bench/overhead.ts` (same harness, same method).
 *
 *   npx tsx bench/overhead-breakdown.ts          (about 30 s; BENCH_QUICK=1 for a few seconds)
 *
 * Like `overhead.ts`, it measures the build (dist/, rebuilt first when older than src/), or
 * src/ through tsx with `BENCH_SRC=1`.
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
 * - `new NoDeploymentAvailable` / `..., no stack`: one typed error (a `Data.TaggedError`, so an
 *   `Error`) made inside a fiber, as the router makes one when a group has no deployment left,
 *   with V8's stack capture and without it (`Error.stackTraceLimit = 0` around the `new`)
 * - streams (their `+` columns over `direct stream`): `direct stream` drained; `+ toPull, pulled`
 *   the same stream read through `Stream.toPull` in a scope until its end (how the router reads
 *   a provider's stream); `+ toPull, re-emitted` those pulls written again as a stream through a
 *   channel (`Channel.acquireUseRelease` over a scope, one `Channel.fromEffect` + `write` per
 *   chunk: the plumbing of `src/internal/stream.ts` without any routing); `+ pass-through channel`
 *   the stream piped through a channel that reads each chunk and writes it on (`Channel.readWithCause`:
 *   what a router stage inside the same channel pipeline would cost, instead of re-emitting pulls);
 *   `routed stream`
 */
import * as Channel from "effect/Channel"
import type * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionPlan from "effect/ExecutionPlan"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Errors, Provider, RetrySchedule as RetryScheduleModule } from "../src/index.js"
import {
  describeMachine,
  ensureBuilt,
  fmt,
  loadLibrary,
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

/** The chunks of a pull (`Option.none()` ends it), as a channel: `pullChannel` of src/internal/stream.ts. */
const pullChannel = <A, E>(
  pull: Effect.Effect<Chunk.Chunk<A>, Option.Option<E>>
): Channel.Channel<Chunk.Chunk<A>, unknown, E, unknown, void, unknown> => {
  const next = Effect.catchAll(pull, (error) => Option.isNone(error) ? Effect.succeed(undefined) : Effect.fail(error.value))
  const loop: Channel.Channel<Chunk.Chunk<A>, unknown, E, unknown, void, unknown> = Channel.flatMap(
    Channel.fromEffect(next),
    (chunk) => chunk === undefined ? Channel.void : Channel.zipRight(Channel.write(chunk), loop)
  )
  return loop
}

/** Reads each chunk and writes it on: a stage inside the stream's own channel pipeline. */
const passThrough = <A, E>(): Channel.Channel<Chunk.Chunk<A>, Chunk.Chunk<A>, E, E, void, unknown> => {
  const loop: Channel.Channel<Chunk.Chunk<A>, Chunk.Chunk<A>, E, E, void, unknown> = Channel.readWithCause({
    onInput: (chunk: Chunk.Chunk<A>) => Channel.flatMap(Channel.write(chunk), () => loop),
    onFailure: (cause) => Channel.failCause(cause),
    onDone: () => Channel.void
  })
  return loop
}

/** `make()` with V8's stack capture off. */
const stackless = <A>(make: () => A): A => {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return make()
  } finally {
    Error.stackTraceLimit = limit
  }
}

class Chat extends Context.Tag("bench/Chat")<Chat, {
  readonly chat: (request: Provider.ChatRequest) => Effect.Effect<Provider.ChatResponse, Errors.ProviderError>
}>() {}

const main = async () => {
  ensureBuilt()
  const library = await loadLibrary()
  const { Errors: ErrorsModule, RetrySchedule, Router } = library.index
  const { FakeProvider } = library.testing
  const fake = FakeProvider.unsafeMake({ record: false, byDeployment: { "ep-down": { failure: 503 } } })
  const request: Provider.ChatRequest = { model: MODEL, messages }
  const target = FakeProvider.target("direct", { model: MODEL })
  const direct = Effect.suspend(() => fake.chat(request, target))

  const retry: RetryScheduleModule.Service = Effect.runSync(RetrySchedule.make())
  /** The schedule the router builds for every request. */
  const scheduleFor = () =>
    Schedule.intersect(
      Schedule.mapInput(retry.schedule, (error: Errors.RouterError) => ({ error, deployment: undefined, attempt: 1, othersAvailable: false })),
      Schedule.identity<Errors.RouterError>()
    ).pipe(
      Schedule.modifyDelayEffect((_, delay) => Effect.succeed(delay))
    )

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

  log("effect-llm-router: overhead breakdown (zero-latency fake provider)")
  log(describeMachine(machine()))
  log(`measured: ${library.description}`)
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
  const noDeployment = () =>
    new ErrorsModule.NoDeploymentAvailable({
      group: "cool",
      reason: "cooling_down",
      message: `no deployment of "cool" available: 3 cooling down (the first returns in 86400000 ms)`
    })

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
    { key: "routed", label: "routed, 3 deployments", call: Effect.suspend(() => router.chat(routedRequest)) },
    { key: "error", label: "+ new NoDeploymentAvailable", call: Effect.zipRight(Effect.sync(noDeployment), direct) },
    {
      key: "errorStackless",
      label: "+ new NoDeploymentAvailable, no stack",
      call: Effect.zipRight(Effect.sync(() => stackless(noDeployment)), direct)
    },
    { key: "directStream", label: "direct stream", call: Effect.suspend(() => Stream.runDrain(fake.stream(request, target))) },
    {
      key: "streamPull",
      label: "+ toPull, pulled",
      reference: "directStream",
      call: Effect.scoped(Effect.flatMap(Effect.suspend(() => Stream.toPull(fake.stream(request, target))), (pull) => {
        const loop: Effect.Effect<void, unknown> = Effect.matchEffect(pull, {
          onFailure: (e) => (Option.isNone(e) ? Effect.void : Effect.fail(e.value)),
          onSuccess: () => loop
        })
        return loop
      }))
    },
    {
      key: "streamRepull",
      label: "+ toPull, re-emitted",
      reference: "directStream",
      call: Effect.suspend(() =>
        Stream.runDrain(Stream.fromChannel(Channel.acquireUseRelease(
          Scope.make(),
          (scope) => Channel.unwrap(Effect.map(Scope.extend(Stream.toPull(fake.stream(request, target)), scope), pullChannel)),
          (scope, exit) => Scope.close(scope, exit)
        )))
      )
    },
    {
      key: "streamPassThrough",
      label: "+ pass-through channel",
      reference: "directStream",
      call: Effect.suspend(() => Stream.runDrain(Stream.pipeThroughChannel(fake.stream(request, target), passThrough())))
    },
    {
      key: "routedStream",
      label: "routed stream, 3 deployments",
      reference: "directStream",
      call: Effect.suspend(() => Stream.runDrain(router.stream(routedRequest)))
    }
  ]
  const { samples, seconds } = await runInterleaved(variants, { samples: SAMPLES, batch: BATCH, warmup: WARMUP })
  log(`per-call time, microseconds (median and p99 of ${SAMPLES} batch means of ${BATCH} calls; ${fmt(seconds, 1)} s)`)
  const work = new Map<string, Work>()
  for (const v of variants) work.set(v.key, await workPerCall(v.call, 1_000))
  printTable(variants, samples, "direct", new Set(["direct", "directStream"]), work)
  log("+median / +p99: variant minus direct (medians / p99s); +paired: median of per-round (variant - direct)")
  log("ops / fibers / async: primitive effects evaluated, fibers started, fiber suspensions, per call (load-independent)")
  await runtime.dispose()
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
