/**
 * A scriptable fake {@link Provider} for tests: scripted replies, usage, latency (fixed or drawn
 * from a seeded distribution), failures by HTTP status or error tag (always, on a schedule, or
 * with a seeded probability), streams with per-chunk delays and mid-stream failures, embeddings,
 * health checks, behaviour per deployment id, and a record of every call and probe.
 *
 * Latency is applied with `Effect.sleep`, so tests drive it with `TestClock.adjust`. Every draw
 * of a seeded distribution is a pure function of `(seed, deploymentId, callIndex)`: the same
 * seed gives the same sequence, whatever the interleaving of calls to other deployments.
 *
 * `callIndex` counts the calls made to one deployment id (chat, stream and embed together),
 * from 0; `reset` starts every count again.
 *
 * @example
 * import { Effect } from "effect"
 * import { FakeProvider } from "effect-llm-router/testing"
 *
 * const program = Effect.gen(function*() {
 *   const fake = yield* FakeProvider.make({ reply: ["first", "second"], latency: "200 millis" })
 *   const response = yield* fake.chat(FakeProvider.chatRequest("hi"), FakeProvider.target("a"))
 *   const calls = yield* fake.calls // [{ kind: "chat", deploymentId: "a", outcome: "success", ... }]
 * })
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type * as Duration from "effect/Duration"
import type * as Errors from "../Errors.js"
import * as internal from "../internal/fake.js"
import type {
  ChatRequest,
  ChatResponse,
  EmbeddingRequest,
  Provider,
  Target,
  Usage
} from "../Provider.js"

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

/**
 * Which provider operation a call was.
 *
 * @example
 * import type { FakeProvider } from "effect-llm-router/testing"
 * const kind: FakeProvider.CallKind = "stream"
 * @category Models
 * @since 0.1.0
 */
export type CallKind = "chat" | "stream" | "embed"

/**
 * The tag of an error a provider call can fail with.
 *
 * @example
 * import type { FakeProvider } from "effect-llm-router/testing"
 * const tag: FakeProvider.ErrorTag = "RateLimited"
 * @category Models
 * @since 0.1.0
 */
export type ErrorTag = Errors.ProviderError["_tag"]

/**
 * How a recorded call ended: `"pending"` while it runs, `"success"`, the tag of the error it
 * failed with, `"interrupted"` when the caller stopped before it finished (an interrupted fiber,
 * or a stream not read to its end), `"defect"` when a scripted function threw.
 *
 * @example
 * import type { FakeProvider } from "effect-llm-router/testing"
 * const outcome: FakeProvider.Outcome = "ServerError"
 * @category Models
 * @since 0.1.0
 */
export type Outcome = "pending" | "success" | "interrupted" | "defect" | ErrorTag

interface CallFields {
  /** Unique per call (and per fake): the response id (`chatcmpl-<name>-<n>`, `embd-<name>-<n>`). */
  readonly id: string
  readonly deploymentId: string
  /** `target.model`: the upstream model the router asked for. */
  readonly model: string
  /** The n-th call to this deployment id, from 0. */
  readonly callIndex: number
  /** Clock time the call started, in milliseconds. */
  readonly startedAt: number
  /** Clock time the call ended, in milliseconds; `undefined` while pending. */
  readonly endedAt: number | undefined
  readonly outcome: Outcome
}

/**
 * A recorded chat or stream call.
 *
 * @example
 * import type { FakeProvider } from "effect-llm-router/testing"
 * const call: FakeProvider.FakeChatCall = {
 *   id: "chatcmpl-fake-1", kind: "chat", deploymentId: "a", model: "m", callIndex: 0,
 *   request: { model: "m", messages: [] }, startedAt: 0, endedAt: 5000, outcome: "success"
 * }
 * @category Models
 * @since 0.1.0
 */
export interface FakeChatCall extends CallFields {
  readonly kind: "chat" | "stream"
  readonly request: ChatRequest
}

/**
 * A recorded embed call.
 *
 * @example
 * import type { FakeProvider } from "effect-llm-router/testing"
 * const call: FakeProvider.FakeEmbedCall = {
 *   id: "embd-fake-1", kind: "embed", deploymentId: "a", model: "m", callIndex: 0,
 *   request: { model: "m", input: "hi" }, startedAt: 0, endedAt: 0, outcome: "success"
 * }
 * @category Models
 * @since 0.1.0
 */
export interface FakeEmbedCall extends CallFields {
  readonly kind: "embed"
  readonly request: EmbeddingRequest
}

/**
 * One recorded call (narrow on `kind` to read the request).
 *
 * @example
 * import type { FakeProvider } from "effect-llm-router/testing"
 * const prompts = (calls: ReadonlyArray<FakeProvider.FakeCall>) =>
 *   calls.flatMap((call) => call.kind === "embed" ? [] : [call.request.messages.length])
 * @category Models
 * @since 0.1.0
 */
export type FakeCall = FakeChatCall | FakeEmbedCall

/**
 * What scripted functions get to know about the call.
 *
 * @example
 * import type { FakeProvider } from "effect-llm-router/testing"
 * const latency = (_callIndex: number, context: FakeProvider.CallContext) => context.kind === "embed" ? 10 : 500
 * @category Models
 * @since 0.1.0
 */
export interface CallContext {
  readonly kind: CallKind
  readonly request: ChatRequest | EmbeddingRequest
  readonly target: Target
  readonly callIndex: number
  /** Clock time the call started, in milliseconds. */
  readonly now: number
}

/**
 * A scripted reply: a text, a full `ChatResponse` (returned as is), or a function of the call
 * returning either.
 *
 * @example
 * import type { FakeProvider } from "effect-llm-router/testing"
 * const echo: FakeProvider.Reply = (request, _target, callIndex) => `reply ${callIndex} to ${request.messages.length} messages`
 * @category Options
 * @since 0.1.0
 */
export type Reply =
  | string
  | ChatResponse
  | ((request: ChatRequest, target: Target, callIndex: number) => string | ChatResponse)

/**
 * Latency of a call (time to the response, or to the first chunk of a stream): a fixed
 * duration, a seeded distribution, or a function of the call. `Duration.infinity` never answers.
 *
 * - `{ uniform: [min, max], seed }`: uniform between `min` and `max`
 * - `{ exponential: mean, min, seed }`: `min` (default 0) plus an exponential draw of that mean
 * - `{ normal: { mean, stddev }, seed }`: normal, clamped at 0
 *
 * Draws are rounded to whole milliseconds; `seed` defaults to 0.
 *
 * @example
 * import type { FakeProvider } from "effect-llm-router/testing"
 * const fixed: FakeProvider.Latency = "250 millis"
 * const jittery: FakeProvider.Latency = { uniform: ["100 millis", "300 millis"], seed: 7 }
 * const tail: FakeProvider.Latency = { exponential: "200 millis", min: "50 millis", seed: 7 }
 * @category Options
 * @since 0.1.0
 */
export type Latency =
  | Duration.DurationInput
  | {
    readonly uniform: readonly [min: Duration.DurationInput, max: Duration.DurationInput]
    readonly seed?: number | undefined
  }
  | {
    readonly exponential: Duration.DurationInput
    readonly min?: Duration.DurationInput | undefined
    readonly seed?: number | undefined
  }
  | {
    readonly normal: { readonly mean: Duration.DurationInput; readonly stddev: Duration.DurationInput }
    readonly seed?: number | undefined
  }
  | ((callIndex: number, context: CallContext) => Duration.DurationInput)

/**
 * One failure, in full. Give `status` (mapped to its error: 429 `RateLimited`, 408 `Timeout`,
 * 401/403 `Authentication`, 402 `QuotaExceeded`, 404 `ModelNotFound`, 5xx `ServerError`, other
 * 4xx `BadRequest`) or `tag` (with an optional `status`). `latency` replaces the call's latency
 * when it fails.
 *
 * @example
 * import type { FakeProvider } from "effect-llm-router/testing"
 * const limited: FakeProvider.FailureSpec = { status: 429, retryAfter: "2 seconds", message: "slow down" }
 * const tooLong: FakeProvider.FailureSpec = { tag: "ContextWindowExceeded" }
 * @category Options
 * @since 0.1.0
 */
export type FailureSpec =
  | {
    readonly status: number
    readonly tag?: ErrorTag | undefined
    readonly message?: string | undefined
    readonly retryAfter?: Duration.DurationInput | undefined
    readonly latency?: Duration.DurationInput | undefined
  }
  | {
    readonly tag: ErrorTag
    readonly status?: number | undefined
    readonly message?: string | undefined
    readonly retryAfter?: Duration.DurationInput | undefined
    readonly latency?: Duration.DurationInput | undefined
  }

/**
 * A failure: an HTTP status, an error tag, or a {@link FailureSpec}.
 *
 * @example
 * import type { FakeProvider } from "effect-llm-router/testing"
 * const overloaded: FakeProvider.FailureInput = 529
 * const offline: FakeProvider.FailureInput = "NetworkError"
 * @category Options
 * @since 0.1.0
 */
export type FailureInput = number | ErrorTag | FailureSpec

/**
 * When calls fail, and with what.
 *
 * - `"none"`: never (overrides the top-level failure for one deployment)
 * - a {@link FailureInput}: every call
 * - `{ first: n, error }`: calls `0 .. n-1`, then success
 * - `{ schedule, error, repeat }`: one outcome per call, `"ok"`, `"fail"` (fails with `error`,
 *   default 500) or a failure of its own; after the list every call succeeds, or the list starts
 *   again with `repeat: true`
 * - `{ probability, seed, error }`: each call fails with that probability (seeded, default 0)
 * - a function of `(callIndex, now, context)` returning a failure or `undefined`
 *
 * A stream that fails this way fails before its first chunk.
 *
 * @example
 * import type { FakeProvider } from "effect-llm-router/testing"
 * const flaky: FakeProvider.Failure = { probability: 0.2, seed: 42, error: 503 }
 * const firstThree: FakeProvider.Failure = { first: 3, error: { status: 429, retryAfter: "1 second" } }
 * const pattern: FakeProvider.Failure = { schedule: ["fail", "ok", "NetworkError"], error: 500 }
 * const firstMinute: FakeProvider.Failure = (_callIndex, now) => now < 60_000 ? 503 : undefined
 * @category Options
 * @since 0.1.0
 */
export type Failure =
  | "none"
  | FailureInput
  | { readonly first: number; readonly error: FailureInput }
  | {
    readonly schedule: ReadonlyArray<"ok" | "fail" | FailureInput>
    readonly error?: FailureInput | undefined
    readonly repeat?: boolean | undefined
  }
  | { readonly probability: number; readonly seed?: number | undefined; readonly error: FailureInput }
  | ((callIndex: number, now: number, context: CallContext) => FailureInput | undefined)

/**
 * How streams are cut and paced.
 *
 * - `chunks`: the number of chunks the reply is split into (by characters), or the chunk texts
 *   themselves (they replace the reply). Default: one chunk per word
 * - `chunkDelay`: the delay before each chunk after the first (the first comes after `latency`)
 * - `failAfterChunks`: fail after that many content chunks, when the next one was due (a number
 *   for every call, or a function of the call index; `undefined` for no failure)
 * - `midStreamError`: what a mid-stream failure fails with (default `MalformedResponse`)
 *
 * The last chunk has no content, `finish_reason: "stop"` and the usage.
 *
 * @example
 * import type { FakeProvider } from "effect-llm-router/testing"
 * const slowStream: FakeProvider.StreamOptions = { chunks: ["Hel", "lo", "!"], chunkDelay: "50 millis" }
 * const cut: FakeProvider.StreamOptions = { chunks: 5, failAfterChunks: 2, midStreamError: "NetworkError" }
 * @category Options
 * @since 0.1.0
 */
export interface StreamOptions {
  readonly chunks?: number | ReadonlyArray<string> | undefined
  readonly chunkDelay?: Duration.DurationInput | undefined
  readonly failAfterChunks?: number | ((callIndex: number) => number | undefined) | undefined
  readonly midStreamError?: FailureInput | undefined
}

/**
 * The behaviour of the fake for one deployment (or all of them).
 *
 * - `reply`: one reply, or a list consumed in order (then repeating the last). Default `"ok"`
 * - `usage`: fixed usage or a function of the request and reply text. Default: `ceil(chars / 4)`
 *   tokens of the messages' text for the prompt, of the reply for the completion
 * - `latency`: see {@link Latency}. Default 0 (no sleep at all)
 * - `failure`: see {@link Failure}. Default: never
 * - `stream`: see {@link StreamOptions}
 * - `dimensions`: the embedding size when the request does not ask for one. Default 8
 * - `health`: how health checks are answered, see {@link HealthBehavior}. Default: at once, up
 *
 * @example
 * import type { FakeProvider } from "effect-llm-router/testing"
 * const behavior: FakeProvider.Behavior = { reply: "hello", latency: "1 second", failure: { first: 2, error: 503 } }
 * @category Options
 * @since 0.1.0
 */
export interface Behavior {
  readonly reply?: Reply | ReadonlyArray<Reply> | undefined
  readonly usage?: Usage | ((request: ChatRequest, reply: string) => Usage) | undefined
  readonly latency?: Latency | undefined
  readonly failure?: Failure | undefined
  readonly stream?: StreamOptions | undefined
  readonly dimensions?: number | undefined
  readonly health?: HealthBehavior | undefined
}

/**
 * How the fake answers health checks (its `healthCheck`, what the router's probes call), for
 * every deployment or, under `byDeployment`, for one. Probes are counted apart from calls, by
 * their own `probeIndex` per deployment id, so they never use up a call's scripted replies,
 * failures or latency draws, nor do calls use up theirs.
 *
 * - `latency`: a duration, a seeded distribution (as {@link Latency}, drawn by probe index) or
 *   a function of `(probeIndex, now)`. Default 0 (answers at once). `Duration.infinity` never
 *   answers
 * - `failure`: as {@link Failure} (a failure, `{ first, error }`, `{ schedule }`,
 *   `{ probability }`, `"none"`), by probe index, or a function of `(probeIndex, now)`
 *   returning a failure or `undefined`. Default: never
 *
 * The target's timeout is enforced as for calls: a probe slower than it fails with `Timeout`
 * once it has passed.
 *
 * @example
 * import type { FakeProvider } from "effect-llm-router/testing"
 * // answers in 300 ms; down (503) for the first minute of the clock
 * const health: FakeProvider.HealthBehavior = {
 *   latency: "300 millis",
 *   failure: (_probeIndex, now) => now < 60_000 ? 503 : undefined
 * }
 * @category Options
 * @since 0.1.0
 */
export interface HealthBehavior {
  readonly latency?:
    | Exclude<Latency, (...args: never) => unknown>
    | ((probeIndex: number, now: number) => Duration.DurationInput)
    | undefined
  readonly failure?:
    | Exclude<Failure, (...args: never) => unknown>
    | ((probeIndex: number, now: number) => FailureInput | undefined)
    | undefined
}

/**
 * A recorded health check: `probeIndex` counts the probes of one deployment id from 0;
 * `outcome` as for calls (`"pending"` while it runs).
 *
 * @example
 * import type { FakeProvider } from "effect-llm-router/testing"
 * const probe: FakeProvider.FakeProbe = {
 *   deploymentId: "a", model: "m", probeIndex: 0, startedAt: 0, endedAt: 300, outcome: "success"
 * }
 * @category Models
 * @since 0.1.0
 */
export interface FakeProbe {
  readonly deploymentId: string
  /** `target.model`. */
  readonly model: string
  readonly probeIndex: number
  /** Clock time the probe started, in milliseconds. */
  readonly startedAt: number
  /** Clock time it ended, in milliseconds; `undefined` while pending. */
  readonly endedAt: number | undefined
  readonly outcome: Outcome
}

/**
 * Options of {@link make}: a top-level {@link Behavior} and
 *
 * - `name`: the provider name put on errors. Default `"fake"`
 * - `byDeployment`: behaviour per deployment id; each field it leaves out falls back to the
 *   top-level one
 * - `record`: whether to record calls. Default `true`
 * - `maxRecordedCalls`: the most calls kept, oldest dropped first. Default 10 000
 *
 * @example
 * import type { FakeProvider } from "effect-llm-router/testing"
 * const options: FakeProvider.Options = {
 *   name: "fake-openai",
 *   latency: "100 millis",
 *   byDeployment: { "gpt-a": { failure: 503 }, "gpt-b": { reply: "from b" } }
 * }
 * @category Options
 * @since 0.1.0
 */
export interface Options extends Behavior {
  readonly name?: string | undefined
  readonly byDeployment?: { readonly [deploymentId: string]: Behavior } | undefined
  readonly record?: boolean | undefined
  readonly maxRecordedCalls?: number | undefined
}

/**
 * A fake {@link Provider} that also tells what it was asked.
 *
 * @example
 * import { Effect } from "effect"
 * import { FakeProvider } from "effect-llm-router/testing"
 *
 * const program = Effect.gen(function*() {
 *   const fake = yield* FakeProvider.make()
 *   yield* fake.chat(FakeProvider.chatRequest("hi"), FakeProvider.target("a"))
 *   const calls = yield* fake.calls     // one call, outcome "success"
 *   const count = yield* fake.callCount // 1
 *   yield* fake.reset
 *   yield* fake.healthCheck(FakeProvider.target("a"))
 *   const probes = yield* fake.probes // [{ deploymentId: "a", probeIndex: 0, outcome: "success", ... }]
 * })
 * @category Models
 * @since 0.1.0
 */
export interface FakeProvider extends Provider {
  /** The recorded calls, oldest first (at most `maxRecordedCalls`). */
  readonly calls: Effect.Effect<ReadonlyArray<FakeCall>>
  /** How many calls were made since creation or the last reset (recorded or not). */
  readonly callCount: Effect.Effect<number>
  /** Answers as its {@link HealthBehavior} says; recorded in `probes`, not in `calls`. */
  readonly healthCheck: (target: Target) => Effect.Effect<void, Errors.ProviderError>
  /** The recorded health checks, oldest first (at most `maxRecordedCalls`). */
  readonly probes: Effect.Effect<ReadonlyArray<FakeProbe>>
  /** How many health checks were made since creation or the last reset (recorded or not). */
  readonly probeCount: Effect.Effect<number>
  /**
   * Forgets the recorded calls and probes and starts every call and probe index, schedule and
   * reply list again.
   */
  readonly reset: Effect.Effect<void>
}

// ---------------------------------------------------------------------------
// Helpers for tests
// ---------------------------------------------------------------------------

/**
 * A {@link Target} for calling a provider directly.
 *
 * @example
 * import { FakeProvider } from "effect-llm-router/testing"
 * const t = FakeProvider.target("gpt-a", { model: "gpt-4o-mini" })
 * @category Testing
 * @since 0.1.0
 */
export const target = (deploymentId = "fake-deployment", overrides?: Partial<Target>): Target => ({
  deploymentId,
  model: "fake-model",
  apiBase: undefined,
  apiKey: undefined,
  timeout: undefined,
  ...overrides
})

/**
 * A one-message chat request.
 *
 * @example
 * import { FakeProvider } from "effect-llm-router/testing"
 * const request = FakeProvider.chatRequest("What is 2 + 2?", "gpt-4o-mini")
 * @category Testing
 * @since 0.1.0
 */
export const chatRequest = (content: string, model = "fake-model"): ChatRequest => ({
  model,
  messages: [{ role: "user", content }]
})

/**
 * The error a fake fails with for a failure, as it would appear for `provider` and
 * `deploymentId` (handy to build expected values).
 *
 * @example
 * import { FakeProvider } from "effect-llm-router/testing"
 * FakeProvider.toError(429, "fake", "a") // RateLimited { status: 429, provider: "fake", deploymentId: "a", ... }
 * @category Testing
 * @since 0.1.0
 */
export const toError: (failure: FailureInput, provider: string, deploymentId: string) => Errors.ProviderError =
  internal.toError

/**
 * The default token count of a text: `ceil(chars / 4)`.
 *
 * @example
 * import { FakeProvider } from "effect-llm-router/testing"
 * FakeProvider.countTokens("hello world") // 3
 * @category Testing
 * @since 0.1.0
 */
export const countTokens: (text: string) => number = internal.countTokens

// ---------------------------------------------------------------------------
// Constructors
// ---------------------------------------------------------------------------

/**
 * Creates a fake provider. Calls with no scripted behaviour reply `"ok"` at once.
 *
 * @example
 * import { Effect } from "effect"
 * import { FakeProvider } from "effect-llm-router/testing"
 *
 * const program = Effect.gen(function*() {
 *   const fake = yield* FakeProvider.make({
 *     latency: { uniform: ["100 millis", "500 millis"], seed: 1 },
 *     byDeployment: { "down": { failure: 503 } }
 *   })
 *   return yield* fake.chat(FakeProvider.chatRequest("hi"), FakeProvider.target("up"))
 * })
 * @category Constructors
 * @since 0.1.0
 */
export const make = (options: Options = {}): Effect.Effect<FakeProvider> => Effect.sync(() => unsafeMake(options))

/**
 * Creates a fake provider outside of an Effect (for deployment configs built as plain values).
 * Throws on invalid options.
 *
 * @example
 * import { FakeProvider } from "effect-llm-router/testing"
 * const fake = FakeProvider.unsafeMake({ reply: "hello" })
 * const deployment = { group: "fast", provider: fake, model: "fake-model" }
 * @category Constructors
 * @since 0.1.0
 */
export const unsafeMake: (options?: Options) => FakeProvider = internal.unsafeMake
