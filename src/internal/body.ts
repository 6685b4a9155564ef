/**
 * Reading a response body a piece at a time, with first-byte and idle time limits, without a
 * `Stream`, a `Scope` or a race per piece.
 *
 * `HttpClientResponse.stream` costs channel steps (and for undici a latch) on every body chunk,
 * and a read timeout raced on each pull costs two fibers and a timer more: on the loopback
 * benchmark that was most of the gap between our streams and the openai SDK's. A
 * {@link BodyReader} reads the source the HTTP client exposes instead:
 *
 * - a Node `Readable` (`NodeHttpClient.layerUndici`: undici's body): `read()` while it holds
 *   data, one `Effect.async` wait for its next `readable` / `end` / `error` event when not;
 * - a web `ReadableStream` (`FetchHttpClient`, or any response made from a fetch `Response`):
 *   one `reader.read()` per read;
 * - any other response: `response.stream`, pulled, with a timeout raced on each pull (the
 *   general path: same results, the old cost).
 *
 * For the first two, the limits are kept by one timer per body: when a read starts waiting it
 * gets a deadline (`firstByte` until bytes first arrive, `idle` after) and, if no timer is
 * pending, a timer is set for it; a timer that finds the waiting read overdue fails it with the
 * matching error and releases the body, one that finds a later deadline is set again. With
 * the live `Clock` the timer is a `setTimeout` whose task waits for a `setImmediate`, so that
 * bytes which came while the event loop was busy are read before it decides (see
 * {@link scheduleOn}); with any other clock (`TestClock`) it is a fiber sleeping on that clock,
 * so tests drive it.
 *
 * `close` releases the body: destroyed (undici) or cancelled (fetch) unless it was read to its
 * end, so an abandoned body never holds a socket; the pending timer is cancelled.
 *
 * @internal
 */
import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import type * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"

/**
 * Bytes of a body, read on demand.
 *
 * @internal
 */
export interface BodyReader<E> {
  /** The next bytes (never empty), or `undefined` at the end of the body. */
  readonly read: Effect.Effect<Uint8Array | undefined, E>
  /**
   * Reads and drops the rest of the body, up to `maxBytes` or `maxMillis`, so the connection can
   * be reused; never fails (a body that is longer, slower or broken is released instead).
   */
  readonly drain: (maxBytes: number, maxMillis: number) => Effect.Effect<void>
  /** Releases the body (idempotent). */
  readonly close: Effect.Effect<void>
  /** Whether the body was read to its end (its request is over: nothing to abort). */
  readonly complete: boolean
}

/**
 * How a body is read: its limits and how failures are told.
 *
 * @internal
 */
export interface Options<E> {
  /** The longest wait for the first bytes (what is left of it when reading starts). */
  readonly firstByte: Duration.Duration
  /** The longest wait for more bytes after that. */
  readonly idle: Duration.Duration
  readonly onFirstByteTimeout: () => E
  readonly onIdleTimeout: () => E
  /** A failure of the client's source (connection reset...). */
  readonly onError: (cause: unknown) => E
  /** A failure of `response.stream` (the general path). */
  readonly onStreamError: (error: HttpClientError.ResponseError) => E
}

/**
 * Runs `task` after `millis` on the clock; returns its canceller.
 *
 * @internal
 */
export type Schedule = (task: () => void, millis: number) => () => void

const maxTimerMillis = 2 ** 31 - 1

/**
 * A live timer whose task runs in a `setImmediate` set when the timeout fires. After the event
 * loop was blocked (a consumer computing synchronously on a chunk for longer than a limit),
 * Node runs every overdue timer before it polls the sockets: a timer deciding there would fail
 * a read whose bytes came in time and are waiting in the kernel. An immediate set then runs
 * after that poll, once those bytes reached the reader (undici's `readable`, fetch's read
 * promise, a response head: all settle within the poll's callbacks and microtasks), so the task
 * sees them; what it still finds missing had not come when the timer fired. The cost is one
 * immediate per timer that fires (none per chunk), and a real timeout comes one turn of the loop
 * later.
 */
const liveSchedule: Schedule = (task, millis) => {
  let immediate: ReturnType<typeof setImmediate> | undefined
  // beyond 2^31 - 1 ms Node fires at once; a timer that comes early is set again
  const timeout = setTimeout(() => {
    immediate = setImmediate(task)
  }, Math.min(millis, maxTimerMillis))
  return () => {
    clearTimeout(timeout)
    if (immediate !== undefined) clearImmediate(immediate)
  }
}

/** The class of the live clock, found on first use (not at load: the package declares no side effects). */
let liveClockClass: unknown

const isLive = (clock: Clock.Clock): boolean => clock.constructor === (liveClockClass ??= Clock.make().constructor)

/**
 * Timers on a clock: for the live clock a `setTimeout` whose task waits for the I/O already
 * pending when it fires (a `setImmediate`, see above), so a busy event loop does not turn
 * bytes that came in time into a timeout; a fiber sleeping on any other clock (so `TestClock`
 * drives it).
 *
 * @internal
 */
export const scheduleOn = (clock: Clock.Clock): Schedule =>
  isLive(clock)
    ? liveSchedule
    : (task, millis) => {
      const fiber = Effect.runFork(Effect.zipRight(clock.sleep(Duration.millis(millis)), Effect.sync(task)))
      return () => fiber.unsafeInterruptAsFork(FiberId.none)
    }

const ignore = () => {}

/** The waiting, limits and draining shared by the readers of client sources. */
abstract class SourceReader<E> implements BodyReader<E> {
  protected failure: E | undefined = undefined
  /** Released: reads end the body. */
  protected finished = false
  private waiter: (() => void) | undefined = undefined
  /** Whether bytes came already (the idle limit applies from then on). */
  private started = false
  /** When the waiting read times out (clock millis); `Infinity` while none waits. */
  private waitDeadline = Infinity
  /** While draining, when to give up (clock millis). */
  private drainDeadline = Infinity
  private draining = false
  private cancelTimer: (() => void) | undefined = undefined
  /** When the pending timer fires (clock millis). */
  private timerAt = Infinity
  private readonly firstByteMillis: number
  private readonly idleMillis: number

  constructor(
    protected readonly options: Options<E>,
    private readonly clock: Clock.Clock,
    private readonly schedule: Schedule
  ) {
    this.firstByteMillis = millis(options.firstByte)
    this.idleMillis = millis(options.idle)
  }

  abstract readonly read: Effect.Effect<Uint8Array | undefined, E>
  abstract readonly complete: boolean
  /** Stops the source (destroy / cancel) unless it ended. */
  protected abstract release(): void

  readonly close: Effect.Effect<void> = Effect.sync(() => this.finish())

  drain(maxBytes: number, maxMillis: number): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.draining = true
      this.drainDeadline = this.clock.unsafeCurrentTimeMillis() + maxMillis
      // a body longer than the bound, or broken, is released (`finish`) rather than read on
      return Effect.matchEffect(readToEnd(this.read, maxBytes), {
        onFailure: () => Effect.sync(() => this.finish()),
        onSuccess: (ended) => (ended ? Effect.void : Effect.sync(() => this.finish()))
      })
    })
  }

  private finish(): void {
    if (this.cancelTimer !== undefined) {
      this.cancelTimer()
      this.cancelTimer = undefined
      this.timerAt = Infinity
    }
    if (this.finished) return
    this.finished = true
    this.release()
    this.wake()
  }

  protected got(bytes: Uint8Array): Effect.Effect<Uint8Array> {
    this.started = true
    return Effect.succeed(bytes)
  }

  protected sourceFailed(cause: unknown): void {
    if (this.failure === undefined && !this.finished) this.failure = this.options.onError(cause)
    this.wake()
  }

  /** Waits for `wake()`, then reads with `again`. */
  protected wait(again: Effect.Effect<Uint8Array | undefined, E>): Effect.Effect<Uint8Array | undefined, E> {
    const limit = this.draining ? Infinity : this.started ? this.idleMillis : this.firstByteMillis
    const deadline = Math.min(this.drainDeadline, limit === Infinity ? Infinity : this.clock.unsafeCurrentTimeMillis() + limit)
    this.waitDeadline = deadline
    if (deadline < this.timerAt) this.arm(deadline)
    return Effect.async<Uint8Array | undefined, E>((resume) => {
      this.waiter = () => resume(again)
    })
  }

  protected wake(): void {
    this.waitDeadline = Infinity
    const waiter = this.waiter
    if (waiter === undefined) return
    this.waiter = undefined
    waiter()
  }

  /** Sets the timer for `deadline` (a pending one, for a later deadline, is replaced). */
  private arm(deadline: number): void {
    if (this.cancelTimer !== undefined) this.cancelTimer()
    this.timerAt = deadline
    this.cancelTimer = this.schedule(this.onTimer, Math.max(1, deadline - this.clock.unsafeCurrentTimeMillis()))
  }

  /** A timer fired: fail (or, draining, end) the read that waits past its deadline. */
  private readonly onTimer = (): void => {
    this.cancelTimer = undefined
    this.timerAt = Infinity
    if (this.finished || this.failure !== undefined || this.waitDeadline === Infinity) return
    if (this.clock.unsafeCurrentTimeMillis() < this.waitDeadline) return this.arm(this.waitDeadline)
    if (this.draining) return this.finish()
    this.failure = this.started ? this.options.onIdleTimeout() : this.options.onFirstByteTimeout()
    this.finish()
  }
}

interface NodeReadable {
  read(): Uint8Array | string | null
  readonly readableEnded: boolean
  readonly destroyed: boolean
  readonly errored?: unknown
  on(event: string, listener: (...args: Array<any>) => void): unknown
  off(event: string, listener: (...args: Array<any>) => void): unknown
  destroy(): unknown
}

const isNodeReadable = (u: unknown): u is NodeReadable =>
  typeof u === "object" && u !== null && typeof (u as NodeReadable).read === "function" &&
  typeof (u as NodeReadable).on === "function" && typeof (u as NodeReadable).off === "function" &&
  typeof (u as NodeReadable).destroy === "function" && typeof (u as WebStream).getReader !== "function"

const encoder = new TextEncoder()

class NodeReader<E> extends SourceReader<E> {
  private ended = false
  get complete(): boolean {
    return this.ended
  }
  constructor(private readonly readable: NodeReadable, options: Options<E>, clock: Clock.Clock, schedule: Schedule) {
    super(options, clock, schedule)
    readable.on("readable", this.onReadable)
    readable.on("end", this.onEnd)
    readable.on("error", this.onFail)
  }
  private readonly onReadable = () => this.wake()
  private readonly onEnd = () => {
    this.ended = true
    this.wake()
  }
  private readonly onFail = (cause: unknown) => this.sourceFailed(cause)
  readonly read: Effect.Effect<Uint8Array | undefined, E> = Effect.suspend(() => {
    if (this.failure !== undefined) return Effect.fail(this.failure)
    if (this.finished) return Effect.succeed(undefined)
    const item = this.readable.read()
    if (item !== null) {
      if (item.length === 0) return this.read
      return this.got(typeof item === "string" ? encoder.encode(item) : item)
    }
    if (this.ended || this.readable.readableEnded) return Effect.succeed(undefined)
    if (this.readable.destroyed) {
      // failed (or was destroyed) before this reader listened
      this.sourceFailed(this.readable.errored ?? new Error("the response body was closed"))
      return this.read
    }
    return this.wait(this.read)
  })
  protected release(): void {
    this.readable.off("readable", this.onReadable)
    this.readable.off("end", this.onEnd)
    this.readable.off("error", this.onFail)
    if (this.ended) return
    // the destroy's own error must not go unhandled
    this.readable.on("error", ignore)
    this.readable.destroy()
  }
}

interface WebReader {
  read(): Promise<{ readonly done: boolean; readonly value?: Uint8Array | undefined }>
  cancel(): Promise<void>
}
interface WebStream {
  getReader(): WebReader
}

const isWebStream = (u: unknown): u is WebStream =>
  typeof u === "object" && u !== null && typeof (u as WebStream).getReader === "function"

class WebStreamReader<E> extends SourceReader<E> {
  private value: Uint8Array | undefined = undefined
  private ended = false
  get complete(): boolean {
    return this.ended
  }
  private readonly reader: WebReader
  constructor(stream: WebStream, options: Options<E>, clock: Clock.Clock, schedule: Schedule) {
    super(options, clock, schedule)
    this.reader = stream.getReader()
  }
  private readonly onResult = (result: { readonly done: boolean; readonly value?: Uint8Array | undefined }) => {
    if (result.done) this.ended = true
    else this.value = result.value
    this.wake()
  }
  private readonly onFail = (cause: unknown) => this.sourceFailed(cause)
  private readonly take: Effect.Effect<Uint8Array | undefined, E> = Effect.suspend(() => {
    if (this.failure !== undefined) return Effect.fail(this.failure)
    if (this.finished || this.ended) return Effect.succeed(undefined)
    const value = this.value
    this.value = undefined
    return value === undefined || value.length === 0 ? this.read : this.got(value)
  })
  readonly read: Effect.Effect<Uint8Array | undefined, E> = Effect.suspend(() => {
    if (this.failure !== undefined) return Effect.fail(this.failure)
    if (this.finished || this.ended) return Effect.succeed(undefined)
    const waiting = this.wait(this.take)
    this.reader.read().then(this.onResult, this.onFail)
    return waiting
  })
  protected release(): void {
    if (!this.ended) this.reader.cancel().catch(ignore)
  }
}

/**
 * Fails with `onTimeout()` once `ms` have passed on the live clock, on a {@link liveSchedule}
 * timer (pending I/O is let in first). A timer can come early (set while the loop's time was
 * stale after a busy stretch, or capped at 2^31 - 1 ms): it is set again for what is left.
 */
const liveTimeout = <E>(clock: Clock.Clock, ms: number, onTimeout: () => E): Effect.Effect<never, E> =>
  Effect.async<never, E>((resume) => {
    const deadline = clock.unsafeCurrentTimeMillis() + ms
    let cancel: () => void
    const check = () => {
      const left = deadline - clock.unsafeCurrentTimeMillis()
      if (left > 0) cancel = liveSchedule(check, left)
      else resume(Effect.fail(onTimeout()))
    }
    cancel = liveSchedule(check, ms)
    return Effect.sync(() => cancel())
  })

/** The general path: `response.stream` pulled in a scope of its own, each pull raced against its limit. */
const pullReader = <E>(
  response: HttpClientResponse.HttpClientResponse,
  options: Options<E>,
  clock: Clock.Clock
): Effect.Effect<BodyReader<E>> =>
  Effect.flatMap(Scope.make(), (scope) =>
    Effect.map(Scope.extend(Stream.toPull(Stream.mapError(response.stream, options.onStreamError)), scope), (pull) => {
      const live = isLive(clock)
      const limited = (limit: Duration.Duration, onTimeout: () => E) => {
        if (!Duration.isFinite(limit)) return pull
        const timedOut = () => Option.some(onTimeout())
        // `Effect.timeoutFail` sleeps on a plain `setTimeout`: after a busy stretch it would fail
        // a pull whose bytes are waiting to be polled
        return live
          ? Effect.raceFirst(pull, liveTimeout(clock, millis(limit), timedOut))
          : Effect.timeoutFail(pull, { duration: limit, onTimeout: timedOut })
      }
      const firstRead = limited(options.firstByte, options.onFirstByteTimeout)
      const idleRead = limited(options.idle, options.onIdleTimeout)
      const buffered: Array<Uint8Array> = []
      let started = false
      let ended = false
      const read: Effect.Effect<Uint8Array | undefined, E> = Effect.suspend(() => {
        const bytes = buffered.shift()
        if (bytes !== undefined) return Effect.succeed(bytes)
        return Effect.matchEffect(started ? idleRead : firstRead, {
          onFailure: (error) => {
            if (Option.isSome(error)) return Effect.fail(error.value)
            ended = true
            return Effect.succeed(undefined)
          },
          onSuccess: (chunk: Chunk.Chunk<Uint8Array>) => {
            for (const piece of chunk) {
              if (piece.length > 0) buffered.push(piece)
            }
            if (buffered.length > 0) started = true
            return read
          }
        })
      })
      const close = Scope.close(scope, Exit.void)
      // what is not read by then is aborted by `close`
      const drain = (maxBytes: number, maxMillis: number): Effect.Effect<void> =>
        Effect.ignore(Effect.timeout(readToEnd(read, maxBytes), Duration.millis(maxMillis)))
      return {
        read,
        drain,
        close,
        get complete() {
          return ended
        }
      }
    }))

/** Reads until the end of the body (`true`) or until `maxBytes` were read (`false`). */
const readToEnd = <E>(read: Effect.Effect<Uint8Array | undefined, E>, maxBytes: number): Effect.Effect<boolean, E> =>
  Effect.suspend(() => {
    let left = maxBytes
    const loop: Effect.Effect<boolean, E> = Effect.flatMap(read, (bytes) => {
      if (bytes === undefined) return Effect.succeed(true)
      left -= bytes.length
      return left > 0 ? loop : Effect.succeed(false)
    })
    return loop
  })

const millis = (duration: Duration.Duration): number =>
  Duration.isFinite(duration) ? Math.max(0, Duration.toMillis(duration)) : Infinity

/**
 * Opens a reader on a response's body. Its `close` must run when reading stops (it releases
 * the body and cancels the timer).
 *
 * @internal
 */
export const open = <E>(
  response: HttpClientResponse.HttpClientResponse,
  options: Options<E>
): Effect.Effect<BodyReader<E>> =>
  Effect.clockWith((clock) => {
    const body = bodyOf(response)
    if (isNodeReadable(body)) return Effect.succeed(new NodeReader(body, options, clock, scheduleOn(clock)))
    if (isWebStream(body)) return Effect.succeed(new WebStreamReader(body, options, clock, scheduleOn(clock)))
    return pullReader(response, options, clock)
  })

/**
 * The body of the client's own response: `HttpClient` wraps it (to abort on interrupt), and
 * both platform clients keep what they read from as `source` (undici's response data, the
 * fetch `Response`), each with a `body`.
 */
const bodyOf = (response: HttpClientResponse.HttpClientResponse): unknown => {
  const original = (response as { readonly original?: unknown }).original
  const inner = typeof original === "object" && original !== null ? original : response
  const source = (inner as { readonly source?: unknown }).source
  return typeof source === "object" && source !== null ? (source as { readonly body?: unknown }).body : undefined
}
