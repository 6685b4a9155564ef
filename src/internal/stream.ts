/**
 * Routed streams. A stream's attempt opens the provider's stream and reads it until its first
 * chunk with content (text, a tool call, a refusal, a finish or the usage): chunks before it (a
 * role-only first delta, as OpenAI-style servers send) are held back, so a failure before any
 * content is an ordinary failed attempt that the driver retries or falls back from. At its first
 * content the stream commits to that deployment; from then on chunks are forwarded as they come
 * and an error ends the stream. The last chunk carries the route info.
 *
 * The attempt's provider stream and its concurrency slot are closed together by the routed
 * stream's release, whatever ends it (its end, an error, the consumer leaving, an interrupt).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Channel from "effect/Channel"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Deployment } from "../Deployment.js"
import { ContentPolicy, type ProviderError, type RouterError } from "../Errors.js"
import type { ChatChunk, ChatRequest, Usage } from "../Provider.js"
import type { RoutedChunk } from "../Router.js"
import type { Lease } from "../RouterState.js"
import { choose, leaseTtl, settle, streamOf, withTimeout } from "./attempt.js"
import * as Driver from "./driver.js"
import * as Plan from "./plan.js"
import { costOf, finalError, nowMs, type RequestContext, routeInfo } from "./request.js"

/** An attempt's open stream, from its deployment's pick until the routed stream's release. */
interface OpenStream {
  readonly deployment: Deployment
  /** Its slot on the deployment (renewed as the stream goes). */
  readonly lease: Lease
  /** When the lease was last renewed (clock ms). */
  renewedAt: number
  /** The life of its first lease (ms). */
  readonly ttlMs: number
  /** From its start until its first content, once that came. */
  firstContentMs: number | undefined
  /** The deployment's circuit was closed when it was picked. */
  readonly circuitClosed: boolean
  /** The chunks read up to the first with content (or the end), not forwarded yet. */
  first: ReadonlyArray<ChatChunk>
  /** The provider stream's next chunks (`Option.none()` at its end). */
  pull: Effect.Effect<Chunk.Chunk<ChatChunk>, Option.Option<ProviderError>>
  readonly startedMs: number
  /** Holds the provider's stream when it is read by pulls (concurrent attempts). */
  readonly scope: Scope.CloseableScope | undefined
  /** Set once the attempt's outcome is recorded, so closing it does not record it again. */
  settled: boolean
  /** Its first content came: from now on a failure ends the stream. */
  committed: boolean
}

/**
 * The attempts a routed stream has open (one, or several while hedged): the stream's release
 * closes those still open.
 */
interface Current {
  ctx: RequestContext | undefined
  readonly open: Set<OpenStream>
}

/** Whether a chunk says something: text, a tool call, a refusal, a finish, the usage. */
const hasContent = (chunk: ChatChunk): boolean => {
  if (chunk.usage != null) return true
  for (const choice of chunk.choices) {
    const delta = choice.delta
    if (choice.finish_reason !== null) return true
    if ((delta.content != null && delta.content !== "") || (delta.tool_calls !== undefined && delta.tool_calls.length > 0)) return true
    if (delta.refusal != null && delta.refusal !== "") return true
  }
  return false
}

const filtered = (chunks: ReadonlyArray<ChatChunk>): boolean =>
  chunks.some((chunk) => chunk.choices.some((choice) => choice.finish_reason === "content_filter"))

/**
 * Ends an attempt: the provider's stream, then its slot. An attempt never settled (the
 * consumer left, or an interrupt) counts as cancelled.
 */
const closeAttempt = (ctx: RequestContext, open: OpenStream, exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> =>
  Effect.zipRight(open.scope === undefined ? Effect.void : Scope.close(open.scope, exit), cancelUnsettled(ctx, open))

/** An attempt never settled (the consumer left, an interrupt, a hedge that lost): cancelled. */
const cancelUnsettled = (ctx: RequestContext, open: OpenStream): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (open.settled) return Effect.void
    open.settled = true
    return settle(ctx, open.lease, open.startedMs, open.circuitClosed, Exit.interrupt(FiberId.none), "stream", undefined, open.firstContentMs)
  })

/**
 * A stream holds its slot for as long as it runs: its lease is renewed for this long (at most
 * its first lease's life)...
 */
const streamLeaseMs = 5 * 60_000
/** ...whenever a chunk comes this long after the last renewal (at most half that life). */
const renewEveryMs = 60_000

/** Reads `pull` up to its first chunk with content (or its end), holding what came before. */
const untilContent = (
  pull: Effect.Effect<Chunk.Chunk<ChatChunk>, Option.Option<ProviderError>>
): Effect.Effect<ReadonlyArray<ChatChunk>, ProviderError> => {
  const held: Array<ChatChunk> = []
  const loop: Effect.Effect<ReadonlyArray<ChatChunk>, ProviderError> = Effect.matchEffect(pull, {
    onFailure: (e) => (Option.isSome(e) ? Effect.fail(e.value) : Effect.succeed(held)),
    onSuccess: (chunks) => {
      let content = false
      for (const chunk of chunks) {
        held.push(chunk)
        if (hasContent(chunk)) content = true
      }
      return content ? Effect.succeed(held) : loop
    }
  })
  return loop
}

/** A new attempt on the lease's deployment, among the routed stream's open ones. */
const opened = (ctx: RequestContext, lease: Lease, scope: Scope.CloseableScope | undefined, current: Current): OpenStream => {
  const open: OpenStream = {
    deployment: lease.deployment,
    lease,
    renewedAt: ctx.clock.unsafeCurrentTimeMillis(),
    ttlMs: leaseTtl(ctx, lease.deployment.group),
    firstContentMs: undefined,
    circuitClosed: lease.stats.cooldown.status === "closed",
    first: [],
    pull: Effect.fail(Option.none()),
    startedMs: nowMs(ctx.clock),
    scope,
    settled: false,
    committed: false
  }
  current.open.add(open)
  return open
}

/** One stream attempt in `group`: pick a deployment and read up to its first content. */
const openAttempt = (
  ctx: RequestContext,
  group: string,
  request: ChatRequest,
  current: Current
): Effect.Effect<OpenStream, RouterError> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(choose(ctx, group, { kind: "stream", group, request, attempt: ctx.groupAttempts }, restore), (lease) =>
      Effect.flatMap(Scope.make(), (scope) => {
        const d = lease.deployment
        // From here, whatever ends the stream (its end, an error, the consumer leaving, an
        // interrupt) releases the slot.
        const open = opened(ctx, lease, scope, current)
        const hedging = ctx.concurrent
        if (hedging) (ctx.inFlight ??= new Set()).add(d.id)
        const first = restore(
          Effect.flatMap(
            Scope.extend(Stream.toPull(streamOf(ctx, d, request)), scope),
            (pull) => withTimeout(ctx, d, Effect.map(untilContent(pull), (first) => ({ pull, first })))
          )
        )
        return Effect.flatMap(Effect.exit(first), (firstExit): Effect.Effect<OpenStream, ProviderError> => {
          if (hedging) ctx.inFlight!.delete(d.id)
          let cause: Cause.Cause<ProviderError>
          if (Exit.isSuccess(firstExit)) {
            open.pull = firstExit.value.pull
            open.first = firstExit.value.first
            open.firstContentMs = nowMs(ctx.clock) - open.startedMs
            if (!ctx.contentFilterIsError || !filtered(open.first)) return Effect.succeed(open)
            cause = Cause.fail(
              new ContentPolicy({ provider: d.provider.name, deploymentId: d.id, message: `${d.id} finished with content_filter` })
            )
          } else {
            cause = firstExit.cause
          }
          // Failed before any content (or refused as content-filtered): an ordinary failed attempt.
          open.settled = true
          current.open.delete(open)
          return Effect.zipRight(
            Effect.zipRight(
              settle(ctx, lease, open.startedMs, open.circuitClosed, Exit.failCause(cause), "stream", undefined, open.firstContentMs),
              closeAttempt(ctx, open, Exit.void)
            ),
            Effect.failCause(cause)
          )
        })
      })
    )
  )

/**
 * The routed stream of a request, started (`start`) on the fiber that runs the stream.
 *
 * Without concurrent attempts (no hedging, no race) and without a deadline, each attempt's
 * provider stream is piped straight through a gate channel (`gated`): no second executor per
 * stream. With them, attempts are opened by the driver as Effects that pull up to their first
 * content (several can run at once), and the winner's chunks are forwarded from its pull.
 *
 * @internal
 */
export const routed = (
  start: (fiber: Fiber.RuntimeFiber<unknown, unknown>) => Either.Either<RequestContext, RouterError>,
  request: ChatRequest
): Stream.Stream<RoutedChunk, RouterError> =>
  // One finalizer for the whole routed stream closes the attempts still open, rather than a
  // scope or an `acquireUseRelease` per attempt: attempts join `current.open` while
  // uninterruptible, so whatever ends the stream finds them there. Fewer Effect ops per routed
  // stream (bench/overhead.ts).
  Stream.fromChannel(Channel.suspend(() => {
    const current: Current = { ctx: undefined, open: new Set() }
    return Channel.ensuringWith(
      Channel.unwrap(Effect.withFiberRuntime<Channel.Channel<Chunk.Chunk<RoutedChunk>, unknown, RouterError, unknown, unknown, unknown>, RouterError>((fiber) => {
        const started = start(fiber)
        if (Either.isLeft(started)) return Effect.fail(started.left)
        const ctx = started.right
        current.ctx = ctx
        if (!ctx.concurrent && ctx.options?.deadline === undefined) return Effect.succeed(gated(ctx, request, current))
        return Effect.map(Driver.run(
          ctx,
          "stream",
          (group) => openAttempt(ctx, group, request, current),
          // a hedge that reached its first content too, after another: closed, as cancelled
          (loser) => Effect.suspend(() => {
            current.open.delete(loser)
            return closeAttempt(ctx, loser, Exit.void)
          })
        ), (open) => pullChannel(forward(ctx, open)))
      })),
      (exit) => {
        const ctx = current.ctx
        if (ctx === undefined) return Effect.void
        let toClose: Array<OpenStream> | undefined
        for (const open of current.open) {
          // settled and holding no scope (a gated attempt that ended): nothing left to close
          if (!open.settled || open.scope !== undefined) (toClose ??= []).push(open)
        }
        if (toClose === undefined) return Effect.void
        return Effect.forEach(toClose, (open) => closeAttempt(ctx, open, exit), { discard: true })
      }
    )
  }))

/**
 * What a committed attempt hands on: its chunks as they come, except one that may be the last
 * (it has a finish reason or usage), held until the next so that the route can ride on it; at
 * the end the attempt is settled and metered and the route put on the last chunk.
 */
interface Relay {
  /** The chunks to emit now, `undefined` when none. */
  readonly pass: (chunks: Iterable<ChatChunk>) => Chunk.Chunk<RoutedChunk> | undefined
  /** The lease renewed, when it is due (streams hold their slot as long as they run). */
  readonly renewal: () => Effect.Effect<void> | undefined
  /** The stream ended: the last chunk, with the route (an empty-choices one when none is held). */
  readonly finish: Effect.Effect<Chunk.Chunk<RoutedChunk>>
  /** The stream failed after its first content: the held chunk (delivered before it), and the error. */
  readonly fail: (error: ProviderError) => Effect.Effect<{ readonly last: RoutedChunk | undefined; readonly error: RouterError }>
}

const relayOf = (ctx: RequestContext, open: OpenStream): Relay => {
  const d = open.deployment
  let held: RoutedChunk | undefined
  let lastSeen: RoutedChunk | undefined
  let usage: Usage | undefined
  return {
    pass: (chunks) => {
      const out: Array<RoutedChunk> = []
      if (held !== undefined) out.push(held)
      held = undefined
      for (const chunk of chunks) {
        if (chunk.usage != null) usage = chunk.usage
        out.push(chunk)
      }
      const last = out[out.length - 1]
      if (last !== undefined) {
        lastSeen = last
        if (last.usage != null || last.choices.some((c) => c.finish_reason !== null)) held = out.pop()
      }
      return out.length === 0 ? undefined : Chunk.unsafeFromArray(out)
    },
    renewal: () => {
      const now = ctx.clock.unsafeCurrentTimeMillis()
      if (now - open.renewedAt < Math.min(renewEveryMs, open.ttlMs / 2)) return undefined
      open.renewedAt = now
      return ctx.engine.state.renew(open.lease, Math.min(streamLeaseMs, open.ttlMs))
    },
    finish: Effect.suspend(() => {
      open.settled = true
      return Effect.map(
        settle(ctx, open.lease, open.startedMs, open.circuitClosed, Exit.void, "stream", usage, open.firstContentMs),
        () => {
          const route = routeInfo(ctx, d, usage, costOf(ctx, d, usage))
          const last: RoutedChunk = held !== undefined
            ? { ...held, route }
            : {
              id: lastSeen?.id ?? "",
              object: "chat.completion.chunk",
              created: lastSeen?.created ?? 0,
              model: lastSeen?.model ?? d.model,
              choices: [],
              route
            }
          held = undefined
          return Chunk.of(last)
        }
      )
    }),
    fail: (error) =>
      Effect.suspend(() => {
        open.settled = true
        return Effect.map(
          settle(ctx, open.lease, open.startedMs, open.circuitClosed, Exit.fail(error), "stream", undefined, open.firstContentMs),
          () => {
            const last = held
            held = undefined
            return { last, error: finalError(ctx, error) }
          }
        )
      })
  }
}

/** A committed attempt's chunks from its pull (the path with concurrent attempts). */
const forward = (ctx: RequestContext, open: OpenStream): Effect.Effect<Chunk.Chunk<RoutedChunk>, Option.Option<RouterError>> => {
  const relay = relayOf(ctx, open)
  let first: ReadonlyArray<ChatChunk> | undefined = open.first
  let pendingError: RouterError | undefined
  let done = false
  const pull: Effect.Effect<Chunk.Chunk<RoutedChunk>, Option.Option<RouterError>> = Effect.suspend(() => {
    if (pendingError !== undefined) {
      const error = pendingError
      pendingError = undefined
      return Effect.fail(Option.some(error))
    }
    if (done) return Effect.fail(Option.none())
    if (first !== undefined) {
      const out = relay.pass(first)
      first = undefined
      if (out !== undefined) return Effect.succeed(out)
    }
    return Effect.matchCauseEffect(open.pull, {
      onSuccess: (chunks) => {
        const out = relay.pass(chunks)
        const next = out === undefined ? pull : Effect.succeed(out)
        const renewal = relay.renewal()
        return renewal === undefined ? next : Effect.zipRight(renewal, next)
      },
      onFailure: (cause) => {
        const failure = Cause.failureOption(cause)
        if (Option.isNone(failure)) return Effect.failCause(cause as Cause.Cause<never>)
        done = true
        if (Option.isNone(failure.value)) return relay.finish
        // A chunk held back is still delivered before the error.
        return Effect.flatMap(relay.fail(failure.value.value), ({ error, last }) => {
          if (last === undefined) return Effect.fail(Option.some(error))
          pendingError = error
          return Effect.succeed(Chunk.of(last))
        })
      }
    })
  })
  return pull
}

/** The chunks of a pull (`Option.none()` ends it), as a channel. */
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

// ---------------------------------------------------------------------------------------------
// The gated path: an attempt's provider stream piped through a gate, no second executor
// ---------------------------------------------------------------------------------------------

/** An attempt that failed before its first content: the plan decides what comes next. */
class BeforeContent {
  readonly _tag = "BeforeContent"
  constructor(readonly error: RouterError) {}
}

type Out = Chunk.Chunk<RoutedChunk>
type GateChannel = Channel.Channel<Out, Chunk.Chunk<ChatChunk>, BeforeContent | RouterError, ProviderError, unknown, unknown>
type AttemptChannel = Channel.Channel<Out, unknown, BeforeContent | RouterError, unknown, unknown, unknown>

/**
 * The gate of an attempt: holds the chunks until the first with content; a failure before it
 * is the attempt's (`BeforeContent`: the plan retries or falls back), one after it ends the
 * stream; passes the chunks on through the attempt's relay.
 */
const gate = (ctx: RequestContext, open: OpenStream): GateChannel => {
  const relay = relayOf(ctx, open)
  const before: Array<ChatChunk> = []
  const emit = (out: Out | undefined, next: GateChannel): GateChannel => (out === undefined ? next : Channel.zipRight(Channel.write(out), next))
  const finished: GateChannel = Channel.flatMap(Channel.fromEffect(relay.finish), (last) => Channel.write(last))
  const failedBefore = (cause: Cause.Cause<ProviderError>): GateChannel =>
    Channel.fromEffect(Effect.suspend(() => {
      open.settled = true
      return Effect.zipRight(
        settle(ctx, open.lease, open.startedMs, open.circuitClosed, Exit.failCause(cause), "stream", undefined, open.firstContentMs),
        Effect.fail(new BeforeContent(Cause.failureOption(cause).pipe(Option.getOrThrow)))
      )
    }))
  const commit = (): GateChannel => {
    open.committed = true
    open.firstContentMs = nowMs(ctx.clock) - open.startedMs
    if (ctx.contentFilterIsError && filtered(before)) {
      const d = open.deployment
      return failedBefore(Cause.fail(new ContentPolicy({ provider: d.provider.name, deploymentId: d.id, message: `${d.id} finished with content_filter` })))
    }
    return emit(relay.pass(before), loop)
  }
  const loop: GateChannel = Channel.readWithCause({
    onInput: (chunks: Chunk.Chunk<ChatChunk>): GateChannel => {
      if (open.committed) {
        const next = emit(relay.pass(chunks), loop)
        const renewal = relay.renewal()
        return renewal === undefined ? next : Channel.zipRight(Channel.fromEffect(renewal), next)
      }
      let content = false
      for (const chunk of chunks) {
        before.push(chunk)
        if (hasContent(chunk)) content = true
      }
      return content ? commit() : loop
    },
    onFailure: (cause: Cause.Cause<ProviderError>): GateChannel => {
      const failure = Cause.failureOption(cause)
      if (Option.isNone(failure)) return Channel.failCause(cause)
      if (!open.committed) return failedBefore(cause)
      // A chunk held back is still delivered before the error.
      return Channel.unwrap(Effect.map(relay.fail(failure.value), ({ error, last }) =>
        last === undefined ? Channel.fail(error) : Channel.zipRight(Channel.write(Chunk.of(last)), Channel.fail(error))))
    },
    onDone: (): GateChannel => {
      if (open.committed) return finished
      // ended before any content: what came is the whole stream
      open.committed = true
      open.firstContentMs = nowMs(ctx.clock) - open.startedMs
      return emit(relay.pass(before), finished)
    }
  })
  return loop
}

/**
 * One gated attempt in `group`: its deployment taken, its provider stream through the gate. The
 * attempt joins the routed stream's open ones while uninterruptible, so the routed stream's
 * finalizer closes it if it never settles (the consumer left, an interrupt).
 */
const gatedAttempt = (ctx: RequestContext, group: string, request: ChatRequest, current: Current): AttemptChannel =>
  Channel.flatMap(
    Channel.fromEffect(Effect.uninterruptibleMask((restore) =>
      Effect.map(
        Effect.mapError(choose(ctx, group, { kind: "stream", group, request, attempt: ctx.groupAttempts }, restore), (e) => new BeforeContent(e)),
        (lease) => opened(ctx, lease, undefined, current)
      )
    )),
    (open) => Channel.pipeTo(Stream.toChannel(streamOf(ctx, open.deployment, request)), gate(ctx, open))
  )

/** The routed stream's attempts, gated, as the plan says after each failure before content. */
const gated = (ctx: RequestContext, request: ChatRequest, current: Current): Channel.Channel<Out, unknown, RouterError, unknown, unknown, unknown> => {
  const attempt = (group: string) => gatedAttempt(ctx, group, request, current)
  const follow = (plan: Plan.Plan, step: Plan.Step): Channel.Channel<Out, unknown, RouterError, unknown, unknown, unknown> => {
    // errors after an attempt's first content come out of its gate as the request's already
    if (step._tag === "Fail") return Channel.fail(finalError(ctx, step.error))
    const tried = recover(plan, attempt(step.group))
    if (step.waitMs <= 0) return tried
    ctx.waitedMs += step.waitMs
    return Channel.zipRight(Channel.fromEffect(Effect.sleep(Duration.millis(step.waitMs))), tried)
  }
  const recover = (plan: Plan.Plan, channel: AttemptChannel): Channel.Channel<Out, unknown, RouterError, unknown, unknown, unknown> =>
    Channel.catchAll(channel, (e) =>
      e instanceof BeforeContent ? Channel.unwrap(Effect.map(Plan.next(ctx, plan, e.error), (s) => follow(plan, s))) : Channel.fail(e))
  return Channel.catchAll(attempt(ctx.requestedGroup), (e) => {
    if (!(e instanceof BeforeContent)) return Channel.fail(e)
    const plan = Plan.make(ctx)
    return Channel.unwrap(Effect.map(Plan.next(ctx, plan, e.error), (s) => follow(plan, s)))
  })
}
