/**
 * The scriptable fake provider behind `FakeProvider`: replies, latency draws, failures, streams,
 * embeddings and the call record.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Errors from "../Errors.js"
import type {
  ChatChunk,
  ChatRequest,
  ChatResponse,
  EmbeddingRequest,
  EmbeddingResponse,
  FinishReason,
  Target,
  Usage
} from "../Provider.js"
import type {
  Behavior,
  CallKind,
  ErrorTag,
  Failure,
  FailureInput,
  FakeCall,
  FakeProbe,
  FakeProvider,
  HealthBehavior,
  Latency,
  Options,
  Outcome,
  Reply
} from "../providers/Fake.js"
import { fmix32 } from "./prng.js"

export const toError = (failure: FailureInput, provider: string, deploymentId: string): Errors.ProviderError =>
  makeError(normalizeFailure(failure), provider, deploymentId)

export const countTokens = (text: string): number => Math.ceil(text.length / 4)

export const unsafeMake = (options: Options = {}): FakeProvider => {
  const name = options.name ?? "fake"
  const maxRecorded = options.record === false ? 0 : (options.maxRecordedCalls ?? 10_000)
  if (!(Number.isInteger(maxRecorded) && maxRecorded >= 0)) {
    throw new Error(`FakeProvider: maxRecordedCalls must be a non-negative integer, got ${maxRecorded}`)
  }
  const top = compile(options, "")
  const byDeployment = new Map<string, Compiled>()
  if (options.byDeployment !== undefined) {
    for (const id of Object.keys(options.byDeployment)) {
      byDeployment.set(id, compile(merge(options, options.byDeployment[id]), `byDeployment.${id}.`))
    }
  }

  let states = new Map<string, DeploymentState>()
  let total = 0
  let seq = 0
  let recordSeq = 0
  let buffer: Array<CallRecord> = []
  let head = 0
  let probeTotal = 0
  let probes: Array<ProbeRecord> = []

  const stateFor = (deploymentId: string): DeploymentState => {
    let state = states.get(deploymentId)
    if (state === undefined) {
      state = { behavior: byDeployment.get(deploymentId) ?? top, salt: hashString(deploymentId), calls: 0, probes: 0 }
      states.set(deploymentId, state)
    }
    return state
  }

  /**
   * Records a call. Once the buffer is full the oldest slot is reused in place (no allocation);
   * `finish` only writes to a slot still holding the same call (`rec.seq === seq`).
   */
  const record = (
    id: string,
    kind: CallKind,
    request: ChatRequest | EmbeddingRequest,
    target: Target,
    callIndex: number,
    now: number,
    endedAt: number | undefined,
    outcome: Outcome
  ): CallRecord | undefined => {
    if (maxRecorded === 0) return undefined
    let rec: CallRecord
    if (buffer.length < maxRecorded) {
      rec = {
        seq: recordSeq++,
        id,
        kind,
        deploymentId: target.deploymentId,
        model: target.model,
        request,
        callIndex,
        startedAt: now,
        endedAt,
        outcome
      }
      buffer.push(rec)
    } else {
      rec = buffer[head]
      head = head + 1 === maxRecorded ? 0 : head + 1
      rec.seq = recordSeq++
      rec.id = id
      rec.kind = kind
      rec.deploymentId = target.deploymentId
      rec.model = target.model
      rec.request = request
      rec.callIndex = callIndex
      rec.startedAt = now
      rec.endedAt = endedAt
      rec.outcome = outcome
    }
    return rec
  }

  /** Starts a call: allocates its index, decides failure and latency. */
  const begin = (
    kind: CallKind,
    request: ChatRequest | EmbeddingRequest,
    target: Target,
    now: number
  ): Begun => {
    const state = stateFor(target.deploymentId)
    const callIndex = state.calls++
    total++
    const behavior = state.behavior
    const failure = behavior.failure === undefined
      ? undefined
      : behavior.failure(callIndex, state.salt, now, kind, request, target)
    const latencyMs = failure !== undefined && failure.latencyMs !== undefined
      ? failure.latencyMs
      : typeof behavior.latency === "number"
      ? behavior.latency
      : behavior.latency(callIndex, state.salt, now, kind, request, target)
    const id = `${kind === "embed" ? "embd" : "chatcmpl"}-${name}-${++seq}`
    // The fake enforces the target's timeout itself, as HTTP providers do (`enforcesTimeout`).
    if (target.timeout !== undefined) {
      const timeoutMs = Duration.toMillis(target.timeout)
      if (latencyMs > timeoutMs) {
        const timedOut: NormalizedFailure = {
          tag: "Timeout",
          status: undefined,
          message: `no answer within ${Duration.format(target.timeout)}`,
          retryAfter: undefined,
          latencyMs: timeoutMs
        }
        return { behavior, callIndex, failure: timedOut, latencyMs: timeoutMs, id }
      }
    }
    return { behavior, callIndex, failure, latencyMs, id }
  }

  /**
   * A request-response call (chat or embed): it fails or answers `reply(now)` after its
   * latency; with no latency at once, recorded as ended (no finalizer needed).
   */
  const call = <A>(
    kind: "chat" | "embed",
    request: ChatRequest | EmbeddingRequest,
    target: Target,
    reply: (begun: Begun, now: number) => A
  ): Effect.Effect<A, Errors.ProviderError> =>
    Effect.clockWith((clock) => {
      const now = clock.unsafeCurrentTimeMillis()
      const begun = begin(kind, request, target, now)
      const { callIndex, failure, latencyMs, id } = begun
      if (latencyMs === 0) {
        if (failure !== undefined) {
          const error = makeError(failure, name, target.deploymentId)
          record(id, kind, request, target, callIndex, now, now, error._tag)
          return Effect.fail(error)
        }
        const response = reply(begun, now)
        record(id, kind, request, target, callIndex, now, now, "success")
        return Effect.succeed(response)
      }
      const effect: Effect.Effect<A, Errors.ProviderError> = Effect.zipRight(
        sleep(latencyMs),
        failure !== undefined
          ? Effect.fail(makeError(failure, name, target.deploymentId))
          : Effect.clockWith((clock) => Effect.succeed(reply(begun, clock.unsafeCurrentTimeMillis())))
      )
      return track(effect, record(id, kind, request, target, callIndex, now, undefined, "pending"))
    })

  const chat = (request: ChatRequest, target: Target): Effect.Effect<ChatResponse, Errors.ProviderError> =>
    call("chat", request, target, (b, now) => respond(b.behavior, request, target, b.callIndex, b.id, now))

  const embed = (request: EmbeddingRequest, target: Target): Effect.Effect<EmbeddingResponse, Errors.ProviderError> =>
    call("embed", request, target, (b) => embeddings(request, target, request.dimensions ?? b.behavior.dimensions))

  const stream = (request: ChatRequest, target: Target): Stream.Stream<ChatChunk, Errors.ProviderError> =>
    Stream.unwrap(Effect.clockWith((clock) => {
      const now = clock.unsafeCurrentTimeMillis()
      const { behavior, callIndex, failure, latencyMs, id } = begin("stream", request, target, now)
      const completed = { done: false }
      let body: Stream.Stream<ChatChunk, Errors.ProviderError>
      if (failure !== undefined) {
        body = Stream.fail(makeError(failure, name, target.deploymentId))
      } else {
        const script = streamScript(behavior, request, target, callIndex)
        const failAt = behavior.failAfterChunks === undefined ? undefined : behavior.failAfterChunks(callIndex)
        body = chunks(script, behavior, target, id, failAt, name, completed)
      }
      if (latencyMs !== 0) body = Stream.concat(Stream.execute(sleep(latencyMs)), body)
      const rec = record(id, "stream", request, target, callIndex, now, undefined, "pending")
      if (rec === undefined) return Effect.succeed(body)
      const seqNo = rec.seq
      return Effect.succeed(Stream.ensuringWith(body, (exit) =>
        finish(rec, seqNo, exit, Exit.isSuccess(exit) && !completed.done ? "interrupted" : undefined)))
    }))

  /**
   * A health check: fails or answers after its latency, as the deployment's `health` says,
   * counted by its own probe index; the target's timeout is enforced as for calls.
   */
  const healthCheck = (target: Target): Effect.Effect<void, Errors.ProviderError> =>
    Effect.clockWith((clock) => {
      const now = clock.unsafeCurrentTimeMillis()
      const state = stateFor(target.deploymentId)
      const probeIndex = state.probes++
      probeTotal++
      const health = state.behavior.health
      let failure = health.failure === undefined ? undefined : health.failure(probeIndex, state.salt, now)
      let latencyMs = failure !== undefined && failure.latencyMs !== undefined
        ? failure.latencyMs
        : typeof health.latency === "number"
        ? health.latency
        : health.latency(probeIndex, state.salt, now)
      if (target.timeout !== undefined) {
        const timeoutMs = Duration.toMillis(target.timeout)
        if (latencyMs > timeoutMs) {
          failure = {
            tag: "Timeout",
            status: undefined,
            message: `no health check answer within ${Duration.format(target.timeout)}`,
            retryAfter: undefined,
            latencyMs: timeoutMs
          }
          latencyMs = timeoutMs
        }
      }
      const rec: ProbeRecord | undefined = maxRecorded === 0 ? undefined : {
        deploymentId: target.deploymentId,
        model: target.model,
        probeIndex,
        startedAt: now,
        endedAt: latencyMs === 0 ? now : undefined,
        outcome: "pending"
      }
      if (rec !== undefined) {
        probes.push(rec)
        if (probes.length > maxRecorded) probes.shift()
      }
      const answer: Effect.Effect<void, Errors.ProviderError> = failure === undefined
        ? Effect.void
        : Effect.fail(makeError(failure, name, target.deploymentId))
      if (latencyMs === 0) {
        if (rec !== undefined) rec.outcome = failure === undefined ? "success" : failure.tag
        return answer
      }
      const effect = Effect.zipRight(sleep(latencyMs), answer)
      return rec === undefined ? effect : Effect.onExit(effect, (exit) =>
        Effect.clockWith((clock) => {
          rec.endedAt = clock.unsafeCurrentTimeMillis()
          rec.outcome = outcomeOf(exit)
          return Effect.void
        }))
    })

  const snapshot = (): ReadonlyArray<FakeCall> => {
    const out: Array<FakeCall> = []
    for (let i = 0; i < buffer.length; i++) {
      const { seq: _seq, ...call } = buffer[(head + i) % buffer.length]
      out.push(call as FakeCall)
    }
    return out
  }

  return {
    name,
    enforcesTimeout: true,
    chat,
    stream,
    embed,
    healthCheck,
    calls: Effect.sync(snapshot),
    callCount: Effect.sync(() => total),
    probes: Effect.sync((): ReadonlyArray<FakeProbe> => probes.map((rec) => ({ ...rec }))),
    probeCount: Effect.sync(() => probeTotal),
    reset: Effect.sync(() => {
      states = new Map()
      buffer = []
      head = 0
      total = 0
      probes = []
      probeTotal = 0
    })
  }
}

// ---------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------

/** A slot of the ring buffer of recorded calls (reused in place once the buffer is full). */
interface CallRecord {
  seq: number
  id: string
  kind: CallKind
  deploymentId: string
  model: string
  request: ChatRequest | EmbeddingRequest
  callIndex: number
  startedAt: number
  endedAt: number | undefined
  outcome: Outcome
}

/** A recorded health check (mutable while it runs). */
interface ProbeRecord {
  readonly deploymentId: string
  readonly model: string
  readonly probeIndex: number
  readonly startedAt: number
  endedAt: number | undefined
  outcome: Outcome
}

interface NormalizedFailure {
  readonly tag: ErrorTag
  readonly status: number | undefined
  readonly message: string
  readonly retryAfter: Duration.Duration | undefined
  readonly latencyMs: number | undefined
}

type Sampler = (
  callIndex: number,
  salt: number,
  now: number,
  kind: CallKind,
  request: ChatRequest | EmbeddingRequest,
  target: Target
) => number

type FailureDecider = (
  callIndex: number,
  salt: number,
  now: number,
  kind: CallKind,
  request: ChatRequest | EmbeddingRequest,
  target: Target
) => NormalizedFailure | undefined

interface Compiled {
  readonly reply: (request: ChatRequest, target: Target, callIndex: number) => string | ChatResponse
  readonly usage: (request: ChatRequest, reply: string) => Usage
  readonly latency: number | Sampler
  readonly failure: FailureDecider | undefined
  readonly split: (text: string) => ReadonlyArray<string>
  readonly fixedChunks: ReadonlyArray<string> | undefined
  readonly chunkDelayMs: number
  readonly failAfterChunks: ((callIndex: number) => number | undefined) | undefined
  readonly midStreamError: NormalizedFailure
  readonly dimensions: number
  readonly health: CompiledHealth
}

/** A deployment's health behaviour: samplers by probe index. */
interface CompiledHealth {
  readonly latency: number | ((probeIndex: number, salt: number, now: number) => number)
  readonly failure: ((probeIndex: number, salt: number, now: number) => NormalizedFailure | undefined) | undefined
}

interface DeploymentState {
  readonly behavior: Compiled
  readonly salt: number
  calls: number
  probes: number
}

interface Begun {
  readonly behavior: Compiled
  readonly callIndex: number
  readonly failure: NormalizedFailure | undefined
  readonly latencyMs: number
  readonly id: string
}

const behaviorKeys = ["reply", "usage", "latency", "failure", "stream", "dimensions", "health"] as const

const merge = (top: Behavior, own: Behavior | undefined): Behavior => {
  if (own === undefined) return top
  const out: { -readonly [K in keyof Behavior]: Behavior[K] } = {}
  for (const key of behaviorKeys) {
    const value = own[key] !== undefined ? own[key] : top[key]
    if (value !== undefined) (out as Record<string, unknown>)[key] = value
  }
  return out
}

const toMillis = (input: Duration.DurationInput, what: string): number => {
  const decoded = Duration.decodeUnknown(input)
  if (Option.isNone(decoded)) throw new Error(`FakeProvider: ${what} is not a duration: ${String(input)}`)
  const ms = Duration.toMillis(decoded.value)
  if (!(ms >= 0)) throw new Error(`FakeProvider: ${what} must be non-negative, got ${String(input)}`)
  return ms
}

const sleep = (ms: number): Effect.Effect<void> => ms === Infinity ? Effect.never : Effect.sleep(ms)

// -- seeded draws ----------------------------------------------------------

const LATENCY_STREAM = 0x1a7e
const FAILURE_STREAM = 0xfa11

/** FNV-1a of a string. */
const hashString = (s: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return h >>> 0
}

/**
 * The `n`-th output of mulberry32 (`mulberry32` in prng.ts) seeded from `(seed, salt, stream)`,
 * in [0, 1). Mulberry32's state advances by a constant, so any position of its sequence is
 * computed directly.
 */
const unit = (seed: number, salt: number, stream: number, n: number): number => {
  const base = fmix32(fmix32((seed | 0) ^ stream) ^ salt)
  let t = (base + Math.imul(n + 1, 0x6d2b79f5)) | 0
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

// -- compilation -----------------------------------------------------------

const isDurationInput = (u: unknown): u is Duration.DurationInput =>
  typeof u === "number" || typeof u === "string" || typeof u === "bigint" || Array.isArray(u) ||
  Duration.isDuration(u)

const compileLatency = (latency: Latency | undefined, path: string): number | Sampler => {
  if (latency === undefined) return 0
  if (typeof latency === "function") {
    return (callIndex, _salt, now, kind, request, target) =>
      toMillis(latency(callIndex, { kind, request, target, callIndex, now }), `${path}latency`)
  }
  if (isDurationInput(latency)) return toMillis(latency, `${path}latency`)
  const seed = latency.seed ?? 0
  if ("uniform" in latency) {
    const min = toMillis(latency.uniform[0], `${path}latency.uniform[0]`)
    const max = toMillis(latency.uniform[1], `${path}latency.uniform[1]`)
    if (max < min) throw new Error(`FakeProvider: ${path}latency.uniform: max is below min`)
    return (callIndex, salt) => Math.round(min + unit(seed, salt, LATENCY_STREAM, callIndex) * (max - min))
  }
  if ("exponential" in latency) {
    const mean = toMillis(latency.exponential, `${path}latency.exponential`)
    const min = latency.min === undefined ? 0 : toMillis(latency.min, `${path}latency.min`)
    return (callIndex, salt) => Math.round(min - mean * Math.log(1 - unit(seed, salt, LATENCY_STREAM, callIndex)))
  }
  if ("normal" in latency) {
    const mean = toMillis(latency.normal.mean, `${path}latency.normal.mean`)
    const stddev = toMillis(latency.normal.stddev, `${path}latency.normal.stddev`)
    return (callIndex, salt) => {
      const u1 = unit(seed, salt, LATENCY_STREAM, 2 * callIndex)
      const u2 = unit(seed, salt, LATENCY_STREAM, 2 * callIndex + 1)
      const z = Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2)
      return Math.max(0, Math.round(mean + stddev * z))
    }
  }
  throw new Error(`FakeProvider: ${path}latency is not a duration nor a distribution`)
}

const tagForStatus = (status: number): ErrorTag =>
  status === 429
    ? "RateLimited"
    : status === 408
    ? "Timeout"
    : status === 401 || status === 403
    ? "Authentication"
    : status === 404
    ? "ModelNotFound"
    : status === 402
    ? "QuotaExceeded"
    : status >= 500
    ? "ServerError"
    : status >= 400
    ? "BadRequest"
    : "MalformedResponse"

const defaultStatus: { readonly [K in ErrorTag]: number | undefined } = {
  RateLimited: 429,
  Timeout: undefined,
  ContextWindowExceeded: 400,
  ContentPolicy: 400,
  QuotaExceeded: 429,
  Authentication: 401,
  ModelNotFound: 404,
  BadRequest: 400,
  ServerError: 500,
  NetworkError: undefined,
  MalformedResponse: undefined
}

const defaultMessage: { readonly [K in ErrorTag]: string } = {
  RateLimited: "rate limit exceeded",
  Timeout: "request timed out",
  ContextWindowExceeded: "maximum context length exceeded",
  ContentPolicy: "the content was filtered by the content policy",
  QuotaExceeded: "you exceeded your current quota",
  Authentication: "invalid api key",
  ModelNotFound: "the model does not exist",
  BadRequest: "bad request",
  ServerError: "internal server error",
  NetworkError: "connection reset (ECONNRESET)",
  MalformedResponse: "malformed response"
}


const normalizeFailure = (input: FailureInput, path = "failure"): NormalizedFailure => {
  if (typeof input === "number") return normalizeFailure({ status: input }, path)
  if (typeof input === "string") {
    if (!Errors.isProviderErrorTag(input)) throw new Error(`FakeProvider: ${path}: unknown error tag ${input}`)
    return normalizeFailure({ tag: input }, path)
  }
  if (typeof input !== "object" || input === null) {
    throw new Error(`FakeProvider: ${path}: expected a status, an error tag or { status | tag }`)
  }
  if (input.status !== undefined && !Number.isInteger(input.status)) {
    throw new Error(`FakeProvider: ${path}: status must be an integer, got ${String(input.status)}`)
  }
  const tag = input.tag ?? (input.status !== undefined ? tagForStatus(input.status) : undefined)
  if (tag === undefined || !Errors.isProviderErrorTag(tag)) {
    throw new Error(`FakeProvider: ${path}: expected a status or a known error tag`)
  }
  const status = input.status ?? defaultStatus[tag]
  const base = input.message ??
    (tag === "ServerError" && (status === 529 || status === 503) ? "overloaded" : defaultMessage[tag])
  return {
    tag,
    status,
    message: input.message !== undefined ? base : status === undefined ? base : `${base} (${status})`,
    retryAfter: input.retryAfter === undefined
      ? undefined
      : Duration.millis(toMillis(input.retryAfter, `${path}.retryAfter`)),
    latencyMs: input.latency === undefined ? undefined : toMillis(input.latency, `${path}.latency`)
  }
}

const makeError = (failure: NormalizedFailure, provider: string, deploymentId: string): Errors.ProviderError => {
  const fields: {
    provider: string
    deploymentId: string
    message: string
    status?: number
    retryAfter?: Duration.Duration
  } = { provider, deploymentId, message: `${provider}: ${failure.message}` }
  if (failure.status !== undefined) fields.status = failure.status
  if (failure.retryAfter !== undefined) fields.retryAfter = failure.retryAfter
  return Errors.makeProviderError(failure.tag, fields)
}

const compileFailure = (failure: Failure | undefined, path: string): FailureDecider | undefined => {
  if (failure === undefined || failure === "none") return undefined
  if (typeof failure === "function") {
    return (callIndex, _salt, now, kind, request, target) => {
      const out = failure(callIndex, now, { kind, request, target, callIndex, now })
      return out === undefined ? undefined : normalizeFailure(out, `${path}failure(${callIndex})`)
    }
  }
  if (typeof failure === "object" && "first" in failure) {
    const error = normalizeFailure(failure.error, `${path}failure.error`)
    const first = failure.first
    return (callIndex) => callIndex < first ? error : undefined
  }
  if (typeof failure === "object" && "schedule" in failure) {
    const fallback = normalizeFailure(failure.error ?? 500, `${path}failure.error`)
    const steps = failure.schedule.map((step, i) =>
      step === "ok" ? undefined : step === "fail" ? fallback : normalizeFailure(step, `${path}failure.schedule[${i}]`)
    )
    const repeat = failure.repeat === true && steps.length > 0
    return (callIndex) =>
      callIndex < steps.length ? steps[callIndex] : repeat ? steps[callIndex % steps.length] : undefined
  }
  if (typeof failure === "object" && "probability" in failure) {
    const { probability } = failure
    if (!(probability >= 0 && probability <= 1)) {
      throw new Error(`FakeProvider: ${path}failure.probability must be between 0 and 1`)
    }
    const error = normalizeFailure(failure.error, `${path}failure.error`)
    const seed = failure.seed ?? 0
    return (callIndex, salt) => unit(seed, salt, FAILURE_STREAM, callIndex) < probability ? error : undefined
  }
  const error = normalizeFailure(failure, `${path}failure`)
  return () => error
}

// What the call samplers are handed for a probe: the seeded and scheduled forms read neither;
// the function forms of `HealthBehavior` are wrapped so as not to see them.
const probeRequest: ChatRequest = { model: "", messages: [] }
const probeTarget: Target = { deploymentId: "", model: "", apiBase: undefined, apiKey: undefined, timeout: undefined }

const compileHealth = (health: HealthBehavior | undefined, path: string): CompiledHealth => {
  const latency = health?.latency
  const failure = health?.failure
  let compiledLatency: CompiledHealth["latency"]
  if (typeof latency === "function") {
    compiledLatency = (probeIndex, _salt, now) => toMillis(latency(probeIndex, now), `${path}health.latency`)
  } else {
    const sampler = compileLatency(latency, `${path}health.`)
    compiledLatency = typeof sampler === "number"
      ? sampler
      : (probeIndex, salt, now) => sampler(probeIndex, salt, now, "chat", probeRequest, probeTarget)
  }
  let compiledFailure: CompiledHealth["failure"]
  if (typeof failure === "function") {
    compiledFailure = (probeIndex, _salt, now) => {
      const out = failure(probeIndex, now)
      return out === undefined ? undefined : normalizeFailure(out, `${path}health.failure(${probeIndex})`)
    }
  } else {
    const decider = compileFailure(failure, `${path}health.`)
    compiledFailure = decider === undefined
      ? undefined
      : (probeIndex, salt, now) => decider(probeIndex, salt, now, "chat", probeRequest, probeTarget)
  }
  return { latency: compiledLatency, failure: compiledFailure }
}

const compileReply = (reply: Behavior["reply"]): Compiled["reply"] => {
  if (reply === undefined) return () => "ok"
  if (Array.isArray(reply)) {
    const list = reply as ReadonlyArray<Reply>
    if (list.length === 0) return () => "ok"
    const compiled = list.map((one) => compileReply(one))
    return (request, target, callIndex) =>
      compiled[Math.min(callIndex, compiled.length - 1)](request, target, callIndex)
  }
  const one = reply as Reply
  return typeof one === "function" ? one : () => one
}

/** Characters of a message's text content. */
const contentLength = (content: unknown): number => {
  if (typeof content === "string") return content.length
  if (!Array.isArray(content)) return 0
  let n = 0
  for (const part of content) if (part.type === "text") n += part.text.length
  return n
}

const promptTokens = (request: ChatRequest): number => {
  let chars = 0
  for (const message of request.messages) chars += contentLength(message.content)
  return Math.ceil(chars / 4)
}

const defaultUsage = (request: ChatRequest, reply: string): Usage => {
  const prompt_tokens = promptTokens(request)
  const completion_tokens = countTokens(reply)
  return { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens }
}

const splitWords = (text: string): ReadonlyArray<string> => text.match(/\s*\S+\s*/g) ?? (text === "" ? [] : [text])

const splitInto = (count: number) => (text: string): ReadonlyArray<string> => {
  const n = Math.min(count, text.length)
  const out: Array<string> = []
  for (let i = 0; i < n; i++) out.push(text.slice(Math.floor((i * text.length) / n), Math.floor(((i + 1) * text.length) / n)))
  return out
}

const compile = (behavior: Behavior, path: string): Compiled => {
  const usage = behavior.usage
  const streamOptions = behavior.stream ?? {}
  const chunksOption = streamOptions.chunks
  if (typeof chunksOption === "number" && !(Number.isInteger(chunksOption) && chunksOption >= 1)) {
    throw new Error(`FakeProvider: ${path}stream.chunks must be a positive integer or a list of texts`)
  }
  const failAfter = streamOptions.failAfterChunks
  const dimensions = behavior.dimensions ?? 8
  if (!(Number.isInteger(dimensions) && dimensions >= 1)) {
    throw new Error(`FakeProvider: ${path}dimensions must be a positive integer`)
  }
  return {
    reply: compileReply(behavior.reply),
    usage: usage === undefined ? defaultUsage : typeof usage === "function" ? usage : () => usage,
    latency: compileLatency(behavior.latency, path),
    failure: compileFailure(behavior.failure, path),
    split: typeof chunksOption === "number" ? splitInto(chunksOption) : splitWords,
    fixedChunks: typeof chunksOption === "object" ? chunksOption : undefined,
    chunkDelayMs: streamOptions.chunkDelay === undefined
      ? 0
      : toMillis(streamOptions.chunkDelay, `${path}stream.chunkDelay`),
    failAfterChunks: failAfter === undefined ? undefined : typeof failAfter === "number" ? () => failAfter : failAfter,
    midStreamError: normalizeFailure(streamOptions.midStreamError ?? "MalformedResponse", `${path}stream.midStreamError`),
    dimensions,
    health: compileHealth(behavior.health, path)
  }
}

// -- responses -------------------------------------------------------------

const respond = (
  behavior: Compiled,
  request: ChatRequest,
  target: Target,
  callIndex: number,
  id: string,
  nowMs: number
): ChatResponse => {
  const reply = behavior.reply(request, target, callIndex)
  if (typeof reply !== "string") return reply
  return {
    id,
    object: "chat.completion",
    created: Math.floor(nowMs / 1000),
    model: target.model,
    choices: [{ index: 0, message: { role: "assistant", content: reply }, finish_reason: "stop" }],
    usage: behavior.usage(request, reply)
  }
}

interface StreamScript {
  readonly parts: ReadonlyArray<string>
  readonly usage: Usage
  readonly finishReason: FinishReason
}

const streamScript = (behavior: Compiled, request: ChatRequest, target: Target, callIndex: number): StreamScript => {
  if (behavior.fixedChunks !== undefined) {
    return { parts: behavior.fixedChunks, usage: behavior.usage(request, behavior.fixedChunks.join("")), finishReason: "stop" }
  }
  const reply = behavior.reply(request, target, callIndex)
  if (typeof reply === "string") {
    return { parts: behavior.split(reply), usage: behavior.usage(request, reply), finishReason: "stop" }
  }
  const choice = reply.choices[0]
  const content = choice?.message.content
  const text = typeof content === "string"
    ? content
    : Array.isArray(content)
    ? content.map((part) => part.type === "text" ? part.text : "").join("")
    : ""
  return {
    parts: behavior.split(text),
    usage: reply.usage ?? behavior.usage(request, text),
    finishReason: choice?.finish_reason ?? "stop"
  }
}

const chunks = (
  script: StreamScript,
  behavior: Compiled,
  target: Target,
  id: string,
  failAfter: number | undefined,
  provider: string,
  completed: { done: boolean }
): Stream.Stream<ChatChunk, Errors.ProviderError> => {
  const n = script.parts.length
  const failAt = failAfter === undefined ? -1 : Math.max(0, Math.min(failAfter, n))
  const delay = behavior.chunkDelayMs
  let created = 0
  const chunk = (
    delta: ChatChunk["choices"][number]["delta"],
    finishReason: FinishReason | null,
    usage: Usage | undefined
  ): ChatChunk => {
    const out: { -readonly [K in keyof ChatChunk]: ChatChunk[K] } = {
      id,
      object: "chat.completion.chunk",
      created,
      model: target.model,
      choices: [{ index: 0, delta, finish_reason: finishReason }]
    }
    if (usage !== undefined) out.usage = usage
    return out
  }
  const step = (k: number): Effect.Effect<Option.Option<readonly [ChatChunk, number]>, Errors.ProviderError> => {
    if (k === failAt) return Effect.fail(makeError(behavior.midStreamError, provider, target.deploymentId))
    if (k < n) {
      const part = script.parts[k]
      return Effect.succeed(Option.some([chunk(k === 0 ? { role: "assistant", content: part } : { content: part }, null, undefined), k + 1] as const))
    }
    if (k === n) {
      completed.done = true
      return Effect.succeed(Option.some([chunk(n === 0 ? { role: "assistant" } : {}, script.finishReason, script.usage), k + 1] as const))
    }
    return Effect.succeed(Option.none())
  }
  return Stream.unfoldEffect(0, (k) =>
    Effect.clockWith((clock) => {
      if (k === 0) created = Math.floor(clock.unsafeCurrentTimeMillis() / 1000)
      const next = Effect.suspend(() => step(k))
      // a chunk after the first waits `chunkDelay`; the final chunk follows the last content at once
      return delay !== 0 && k > 0 && (k < n || k === failAt) ? Effect.zipRight(sleep(delay), next) : next
    }))
}

const embeddings = (request: EmbeddingRequest, target: Target, dimensions: number): EmbeddingResponse => {
  const inputs = typeof request.input === "string" ? [request.input] : request.input
  let tokens = 0
  const data = inputs.map((text, index) => {
    tokens += countTokens(text)
    return { object: "embedding" as const, index, embedding: vectorOf(text, dimensions) }
  })
  return { object: "list", model: target.model, data, usage: { prompt_tokens: tokens, total_tokens: tokens } }
}

/** A unit vector determined by the text. */
const vectorOf = (text: string, dimensions: number): Array<number> => {
  const h = hashString(text)
  const out = new Array<number>(dimensions)
  let norm = 0
  for (let i = 0; i < dimensions; i++) {
    const x = unit(h, dimensions, 0xe3bd, i) * 2 - 1
    out[i] = x
    norm += x * x
  }
  norm = Math.sqrt(norm) || 1
  for (let i = 0; i < dimensions; i++) out[i] = out[i] / norm
  return out
}

// -- recording -------------------------------------------------------------

const outcomeOf = (exit: Exit.Exit<unknown, Errors.ProviderError>): Outcome => {
  if (Exit.isSuccess(exit)) return "success"
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) return failure.value._tag
  return Cause.isDie(exit.cause) ? "defect" : "interrupted"
}

const finish = (
  rec: CallRecord,
  seq: number,
  exit: Exit.Exit<unknown, Errors.ProviderError>,
  override: Outcome | undefined
): Effect.Effect<void> =>
  Effect.clockWith((clock) => {
    if (rec.seq === seq) {
      rec.endedAt = clock.unsafeCurrentTimeMillis()
      rec.outcome = override ?? outcomeOf(exit)
    }
    return Effect.void
  })

/** Records how a call that sleeps ends. */
const track = <A>(
  effect: Effect.Effect<A, Errors.ProviderError>,
  rec: CallRecord | undefined
): Effect.Effect<A, Errors.ProviderError> => {
  if (rec === undefined) return effect
  const seq = rec.seq
  return Effect.onExit(effect, (exit) => finish(rec, seq, exit, undefined))
}
