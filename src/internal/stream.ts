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
import { choose, settle, targetOf, withTimeout } from "./attempt.js"
import * as Driver from "./driver.js"
import { finalError, meter, nowMs, type RequestContext, routeInfo } from "./request.js"

/** An attempt's open stream, from its deployment's pick until the routed stream's release. */
interface OpenStream {
  readonly deployment: Deployment
  /** Its slot on the deployment (renewed as the stream goes). */
  readonly lease: Lease
  /** When the lease was last renewed (clock ms). */
  renewedAt: number
  /** From its start until its first content, once that came. */
  firstContentMs: number | undefined
  /** The deployment's circuit was closed when it was picked. */
  readonly circuitClosed: boolean
  /** The chunks read up to the first with content (or the end), not forwarded yet. */
  first: ReadonlyArray<ChatChunk>
  /** The provider stream's next chunks (`Option.none()` at its end). */
  pull: Effect.Effect<Chunk.Chunk<ChatChunk>, Option.Option<ProviderError>>
  readonly startedMs: number
  /** Holds the provider's stream. */
  readonly scope: Scope.CloseableScope
  /** Set once the attempt's outcome is recorded, so closing it does not record it again. */
  settled: boolean
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
  Effect.zipRight(
    Scope.close(open.scope, exit),
    Effect.suspend(() => {
      if (open.settled) return Effect.void
      open.settled = true
      return settle(ctx, open.lease, open.startedMs, open.circuitClosed, Exit.interrupt(FiberId.none), "stream", undefined, open.firstContentMs)
    })
  )

/** A stream holds its slot for as long as it runs: its lease is renewed for this long... */
const streamLeaseMs = 5 * 60_000
/** ...whenever a chunk comes this long after the last renewal. */
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
        const open: OpenStream = {
          deployment: d,
          lease,
          renewedAt: ctx.clock.unsafeCurrentTimeMillis(),
          firstContentMs: undefined,
          circuitClosed: lease.stats.cooldown.status === "closed",
          first: [],
          pull: Effect.fail(Option.none()),
          startedMs: nowMs(ctx.clock),
          scope,
          settled: false
        }
        // From here, whatever ends the stream (its end, an error, the consumer leaving, an
        // interrupt) releases the slot.
        current.open.add(open)
        const hedging = ctx.concurrent
        if (hedging) (ctx.inFlight ??= new Set()).add(d.id)
        const first = restore(
          Effect.flatMap(
            Scope.extend(Stream.toPull(d.provider.stream({ ...request, model: d.model }, targetOf(ctx, d))), scope),
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
 * @internal
 */
export const routed = (
  start: (fiber: Fiber.RuntimeFiber<unknown, unknown>) => Either.Either<RequestContext, RouterError>,
  request: ChatRequest
): Stream.Stream<RoutedChunk, RouterError> =>
  // A channel whose release closes the attempt it is on, rather than
  // `Stream.unwrapScopedWith` with a child scope per attempt and a repeated pull: less than
  // half the Effect ops added per routed stream (bench/overhead.ts).
  Stream.fromChannel(Channel.acquireUseRelease(
    Effect.sync((): Current => ({ ctx: undefined, open: new Set() })),
    (current) =>
      Channel.unwrap(Effect.withFiberRuntime<Channel.Channel<Chunk.Chunk<RoutedChunk>, unknown, RouterError, unknown, void, unknown>, RouterError>((fiber) => {
        const started = start(fiber)
        if (Either.isLeft(started)) return Effect.fail(started.left)
        const ctx = started.right
        current.ctx = ctx
        return Effect.map(Driver.run(
          ctx,
          "stream",
          (group) => openAttempt(ctx, group, request, current),
          // a hedge that reached its first content too, after another: closed, as cancelled
          (loser) => Effect.suspend(() => {
            current.open.delete(loser)
            return closeAttempt(ctx, loser, Exit.void)
          })
        ), (open) => forward(ctx, open))
      })),
    (current, exit) => {
      const ctx = current.ctx
      if (ctx === undefined || current.open.size === 0) return Effect.void
      return Effect.forEach(current.open, (open) => closeAttempt(ctx, open, exit), { discard: true })
    }
  ))

/** A committed attempt's chunks, as they come, the route riding on the last. */
const forward = (ctx: RequestContext, open: OpenStream) => {
  const d = open.deployment
  // Chunks are forwarded as they arrive, except one that may be the last (it has a finish
  // reason or usage): it is held until the next one, so that the route can ride on it.
  let held: RoutedChunk | undefined
  let lastSeen: RoutedChunk | undefined
  let first: ReadonlyArray<ChatChunk> | undefined = open.first
  let usage: Usage | undefined
  let pendingError: RouterError | undefined
  let done = false

  const pass = (chunks: Iterable<ChatChunk>): Chunk.Chunk<RoutedChunk> | undefined => {
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
  }

  // The stream ended: settle the attempt, meter it, and put the route on the last chunk
  // (an empty-choices chunk when the upstream's last one was already forwarded).
  const finish = Effect.suspend(() => {
    open.settled = true
    done = true
    return Effect.map(
      Effect.zipRight(
        settle(ctx, open.lease, open.startedMs, open.circuitClosed, Exit.void, "stream", usage, open.firstContentMs),
        meter(ctx, d, usage)
      ),
      (cost) => {
        const route = routeInfo(ctx, d, usage, cost)
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
  })

  const fail = (error: ProviderError) =>
    Effect.suspend(() => {
      open.settled = true
      return Effect.map(
        settle(ctx, open.lease, open.startedMs, open.circuitClosed, Exit.fail(error), "stream", undefined, open.firstContentMs),
        () => finalError(ctx, error)
      )
    })

  const pull: Effect.Effect<Chunk.Chunk<RoutedChunk>, Option.Option<RouterError>> = Effect.suspend(() => {
    if (pendingError !== undefined) {
      const error = pendingError
      pendingError = undefined
      return Effect.fail(Option.some(error))
    }
    if (done) return Effect.fail(Option.none())
    if (first !== undefined) {
      const out = pass(first)
      first = undefined
      if (out !== undefined) return Effect.succeed(out)
    }
    return Effect.matchCauseEffect(open.pull, {
      onSuccess: (chunks) => {
        const out = pass(chunks)
        const now = ctx.clock.unsafeCurrentTimeMillis()
        if (now - open.renewedAt >= renewEveryMs) {
          open.renewedAt = now
          return Effect.zipRight(ctx.engine.state.renew(open.lease, streamLeaseMs), out === undefined ? pull : Effect.succeed(out))
        }
        return out === undefined ? pull : Effect.succeed(out)
      },
      onFailure: (cause) => {
        const failure = Cause.failureOption(cause)
        if (Option.isNone(failure)) return Effect.failCause(cause as Cause.Cause<never>)
        if (Option.isNone(failure.value)) return finish
        done = true
        // A chunk held back is still delivered before the error.
        return Effect.flatMap(fail(failure.value.value), (error) => {
          if (held === undefined) return Effect.fail(Option.some(error))
          pendingError = error
          const last = held
          held = undefined
          return Effect.succeed(Chunk.of(last))
        })
      }
    })
  })
  return pullChannel(pull)
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
