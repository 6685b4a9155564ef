import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import type { ChatChunk, ChatResponse } from "../../src/Provider.js"
import { ChatChunk as ChatChunkSchema, ChatResponse as ChatResponseSchema, EmbeddingResponse } from "../../src/Provider.js"
import { FakeProvider } from "../../src/testing.js"

const req = FakeProvider.chatRequest
const tgt = FakeProvider.target

const text = (response: ChatResponse) => response.choices[0].message.content

/** Starts `n` chat calls on `deploymentId` at once, returning their recorded latencies (ms) in call order. */
const latencies = (fake: FakeProvider.FakeProvider, n: number, deploymentId = "d") =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(
      Effect.forEach(Array.from({ length: n }, (_, i) => i), () => fake.chat(req("hi"), tgt(deploymentId)), {
        discard: true,
        concurrency: "unbounded"
      })
    )
    yield* TestClock.adjust("1000 hours")
    yield* Fiber.join(fiber)
    const calls = yield* fake.calls
    return calls.map((call) => (call.endedAt ?? NaN) - call.startedAt)
  })

/** Runs `n` sequential chat calls, returning each outcome. */
const outcomes = (fake: FakeProvider.FakeProvider, n: number, deploymentId = "d") =>
  Effect.forEach(
    Array.from({ length: n }, (_, i) => i),
    () => fake.chat(req("hi"), tgt(deploymentId)).pipe(Effect.match({ onFailure: (e) => e._tag, onSuccess: () => "ok" }))
  )

/** Collects a stream's chunks with the clock time each arrived at. */
const timedChunks = (stream: Stream.Stream<ChatChunk, FakeProvider.ErrorTag | any>) =>
  stream.pipe(
    Stream.mapEffect((chunk) => Effect.map(Clock.currentTimeMillis, (t) => [t, chunk] as const)),
    Stream.runCollect,
    Effect.map(Chunk.toReadonlyArray)
  )

describe("FakeProvider", () => {
  describe("replies", () => {
    it.effect("replies \"ok\" by default with a valid ChatResponse and deterministic usage", () =>
      Effect.gen(function*() {
        yield* TestClock.adjust("42 seconds")
        const fake = yield* FakeProvider.make()
        const response = yield* fake.chat(req("hello world!"), tgt("a", { model: "gpt-x" }))
        expect(Schema.decodeUnknownEither(ChatResponseSchema)(response)._tag).toBe("Right")
        expect(response).toMatchObject({
          object: "chat.completion",
          model: "gpt-x",
          created: 42,
          choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }],
          usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 }
        })
        const second = yield* fake.chat(req("hello world!"), tgt("a"))
        expect(second.id).not.toBe(response.id)
        expect(second.usage).toEqual(response.usage)
        expect(fake.name).toBe("fake")
      }))

    it.effect("consumes a list of replies in order, then repeats the last", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({ reply: ["one", "two", "three"] })
        const texts: Array<unknown> = []
        for (let i = 0; i < 5; i++) texts.push(text(yield* fake.chat(req("q"), tgt())))
        expect(texts).toEqual(["one", "two", "three", "three", "three"])
      }))

    it.effect("calls a reply function with request, target and call index; returns full responses as is", () =>
      Effect.gen(function*() {
        const full: ChatResponse = {
          id: "custom",
          object: "chat.completion",
          created: 1,
          model: "m",
          choices: [{ index: 0, message: { role: "assistant", content: null, tool_calls: [] }, finish_reason: "tool_calls" }]
        }
        const fake = yield* FakeProvider.make({
          reply: [
            (request, target, i) => `${request.messages.length}:${target.deploymentId}:${i}`,
            () => full
          ]
        })
        expect(text(yield* fake.chat(req("q"), tgt("x")))).toBe("1:x:0")
        expect(yield* fake.chat(req("q"), tgt("x"))).toBe(full)
      }))

    it.effect("uses fixed or computed usage", () =>
      Effect.gen(function*() {
        const fixed = { prompt_tokens: 10, completion_tokens: 20, total_tokens: 30 }
        const a = yield* FakeProvider.make({ usage: fixed })
        expect((yield* a.chat(req("q"), tgt())).usage).toEqual(fixed)
        const b = yield* FakeProvider.make({
          reply: "abcdefgh",
          usage: (request, reply) => ({
            prompt_tokens: request.messages.length,
            completion_tokens: reply.length,
            total_tokens: request.messages.length + reply.length
          })
        })
        expect((yield* b.chat(req("q"), tgt())).usage).toEqual({ prompt_tokens: 1, completion_tokens: 8, total_tokens: 9 })
      }))
  })

  describe("latency", () => {
    it.effect("a call with 5 s latency is not done after 4 s, is after 5 s", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({ latency: "5 seconds" })
        const fiber = yield* Effect.fork(fake.chat(req("q"), tgt()))
        yield* TestClock.adjust("4 seconds")
        expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
        yield* TestClock.adjust("1 second")
        const done = yield* Fiber.poll(fiber)
        expect(Option.isSome(done) && Exit.isSuccess(done.value)).toBe(true)
        const response = yield* Fiber.join(fiber)
        expect(response.created).toBe(5)
        const [call] = yield* fake.calls
        expect(call).toMatchObject({ startedAt: 0, endedAt: 5000, outcome: "success" })
      }))

    it.effect("zero latency does not sleep", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make()
        const fiber = yield* Effect.fork(fake.chat(req("q"), tgt()))
        yield* Effect.yieldNow()
        expect(Option.isSome(yield* Fiber.poll(fiber))).toBe(true)
      }))

    it.effect("infinite latency never answers", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({ latency: Duration.infinity })
        const fiber = yield* Effect.fork(fake.chat(req("q"), tgt()))
        yield* TestClock.adjust("1000 hours")
        expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
        yield* Fiber.interrupt(fiber)
      }))

    it.effect("seeded uniform latency is reproducible and within bounds", () =>
      Effect.gen(function*() {
        const options = { latency: { uniform: ["100 millis", "300 millis"], seed: 7 } } as const
        const a = yield* latencies(yield* FakeProvider.make(options), 20)
        const b = yield* latencies(yield* FakeProvider.make(options), 20)
        const c = yield* latencies(yield* FakeProvider.make({ latency: { uniform: ["100 millis", "300 millis"], seed: 8 } }), 20)
        expect(a).toEqual(b)
        expect(a).not.toEqual(c)
        for (const ms of a) {
          expect(ms).toBeGreaterThanOrEqual(100)
          expect(ms).toBeLessThanOrEqual(300)
        }
        expect(new Set(a).size).toBeGreaterThan(10)
      }))

    it.effect("seeded exponential latency is reproducible, above its min, with about its mean", () =>
      Effect.gen(function*() {
        const options = { latency: { exponential: "200 millis", min: "50 millis", seed: 3 } } as const
        const fake = yield* FakeProvider.make(options)
        const a = yield* latencies(fake, 150)
        yield* fake.reset
        const again = yield* latencies(fake, 150)
        expect(again).toEqual(a)
        const other = yield* latencies(yield* FakeProvider.make({ latency: { exponential: "200 millis", seed: 4 } }), 150)
        expect(other).not.toEqual(a)
        for (const ms of a) expect(ms).toBeGreaterThanOrEqual(50)
        const mean = a.reduce((x, y) => x + y, 0) / a.length
        expect(mean).toBeGreaterThan(50 + 150)
        expect(mean).toBeLessThan(50 + 250)
      }))

    it.effect("seeded normal latency is reproducible and never negative", () =>
      Effect.gen(function*() {
        const options = { latency: { normal: { mean: "100 millis", stddev: "80 millis" }, seed: 1 } } as const
        const a = yield* latencies(yield* FakeProvider.make(options), 50)
        const b = yield* latencies(yield* FakeProvider.make(options), 50)
        expect(a).toEqual(b)
        for (const ms of a) expect(ms).toBeGreaterThanOrEqual(0)
      }))

    it.effect("latency may be a function of the call", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({ latency: (i) => Duration.seconds(i + 1) })
        expect(yield* latencies(fake, 3)).toEqual([1000, 2000, 3000])
      }))
  })

  describe("failures", () => {
    const statusCases: ReadonlyArray<readonly [number, FakeProvider.ErrorTag]> = [
      [429, "RateLimited"],
      [408, "Timeout"],
      [401, "Authentication"],
      [403, "Authentication"],
      [404, "ModelNotFound"],
      [400, "BadRequest"],
      [422, "BadRequest"],
      [500, "ServerError"],
      [502, "ServerError"],
      [503, "ServerError"],
      [529, "ServerError"]
    ]
    for (const [status, tag] of statusCases) {
      it.effect(`status ${status} fails with ${tag}`, () =>
        Effect.gen(function*() {
          const fake = yield* FakeProvider.make({ name: "fake-openai", failure: status })
          const error = yield* Effect.flip(fake.chat(req("q"), tgt("dep-1")))
          expect(error._tag).toBe(tag)
          expect(error).toMatchObject({ provider: "fake-openai", deploymentId: "dep-1", status })
          expect(error.message).toContain("fake-openai")
          expect(error.retryAfter).toBeUndefined()
        }))
    }

    it.effect("429 carries a scripted retryAfter", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({ failure: { status: 429, retryAfter: "2 seconds", message: "slow down" } })
        const error = yield* Effect.flip(fake.chat(req("q"), tgt("dep-1")))
        expect(error._tag).toBe("RateLimited")
        expect(error.retryAfter && Duration.toMillis(error.retryAfter)).toBe(2000)
        expect(error.message).toBe("fake: slow down")
      }))

    const tagCases: ReadonlyArray<readonly [FakeProvider.ErrorTag, number | undefined]> = [
      ["ContextWindowExceeded", 400],
      ["ContentPolicy", 400],
      ["NetworkError", undefined],
      ["MalformedResponse", undefined],
      ["Timeout", undefined]
    ]
    for (const [tag, status] of tagCases) {
      it.effect(`tag ${tag} fails with ${tag}`, () =>
        Effect.gen(function*() {
          const fake = yield* FakeProvider.make({ failure: tag })
          const error = yield* Effect.flip(fake.chat(req("q"), tgt("dep-2")))
          expect(error._tag).toBe(tag)
          expect(error.provider).toBe("fake")
          expect(error.deploymentId).toBe("dep-2")
          expect(error.status).toBe(status)
        }))
    }

    it.effect("a tag with an explicit status keeps both", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({ failure: { tag: "ContextWindowExceeded", status: 413 } })
        const error = yield* Effect.flip(fake.chat(req("q"), tgt()))
        expect(error).toMatchObject({ _tag: "ContextWindowExceeded", status: 413 })
      }))

    it.effect("toError builds the same error as a failing call", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({ failure: { status: 429, retryAfter: 1000 } })
        const error = yield* Effect.flip(fake.chat(req("q"), tgt("a")))
        expect(error).toEqual(FakeProvider.toError({ status: 429, retryAfter: 1000 }, "fake", "a"))
      }))

    it.effect("fails the first n calls", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({ failure: { first: 3, error: 503 } })
        expect(yield* outcomes(fake, 5)).toEqual(["ServerError", "ServerError", "ServerError", "ok", "ok"])
      }))

    it.effect("follows a schedule, then succeeds (or repeats)", () =>
      Effect.gen(function*() {
        const once = yield* FakeProvider.make({ failure: { schedule: ["fail", "ok", "NetworkError"], error: 429 } })
        expect(yield* outcomes(once, 5)).toEqual(["RateLimited", "ok", "NetworkError", "ok", "ok"])
        const repeating = yield* FakeProvider.make({ failure: { schedule: ["ok", 500], repeat: true } })
        expect(yield* outcomes(repeating, 5)).toEqual(["ok", "ServerError", "ok", "ServerError", "ok"])
      }))

    it.effect("asks a function of the call index and the clock", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({ failure: (_i, now) => (now < 60_000 ? 503 : undefined) })
        expect(yield* outcomes(fake, 2)).toEqual(["ServerError", "ServerError"])
        yield* TestClock.adjust("1 minute")
        expect(yield* outcomes(fake, 2)).toEqual(["ok", "ok"])
      }))

    it.effect("seeded probabilistic failures are reproducible", () =>
      Effect.gen(function*() {
        const failure = { probability: 0.3, seed: 42, error: 503 } as const
        const a = yield* outcomes(yield* FakeProvider.make({ failure }), 200)
        const b = yield* outcomes(yield* FakeProvider.make({ failure }), 200)
        const c = yield* outcomes(yield* FakeProvider.make({ failure: { ...failure, seed: 43 } }), 200)
        expect(a).toEqual(b)
        expect(a).not.toEqual(c)
        const rate = a.filter((o) => o === "ServerError").length / a.length
        expect(rate).toBeGreaterThan(0.2)
        expect(rate).toBeLessThan(0.4)
      }))

    it.effect("a failure's own latency replaces the call's", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({ latency: "10 seconds", failure: { status: 429, latency: "1 second" } })
        const fiber = yield* Effect.fork(Effect.flip(fake.chat(req("q"), tgt())))
        yield* TestClock.adjust("1 second")
        const done = yield* Fiber.poll(fiber)
        expect(Option.isSome(done)).toBe(true)
      }))

    it.effect("failures wait for the latency too", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({ latency: "2 seconds", failure: 500 })
        const fiber = yield* Effect.fork(Effect.flip(fake.chat(req("q"), tgt())))
        yield* TestClock.adjust("1 second")
        expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
        yield* TestClock.adjust("1 second")
        expect((yield* Fiber.join(fiber))._tag).toBe("ServerError")
      }))

    it("rejects invalid options", () => {
      expect(() => FakeProvider.unsafeMake({ failure: { probability: 2, error: 500 } })).toThrow(/probability/)
      expect(() => FakeProvider.unsafeMake({ latency: { uniform: [300, 100] } })).toThrow(/uniform/)
      expect(() => FakeProvider.unsafeMake({ failure: "Nope" as FakeProvider.ErrorTag })).toThrow(/unknown error tag/)
      expect(() => FakeProvider.unsafeMake({ byDeployment: { a: { dimensions: 0 } } })).toThrow(/byDeployment\.a\.dimensions/)
    })
  })

  describe("per deployment", () => {
    it.effect("scripts each deployment, falling back to the top-level options field by field", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({
          name: "multi",
          reply: "top",
          latency: "1 second",
          failure: { first: 1, error: 500 },
          byDeployment: {
            down: { failure: { status: 429, retryAfter: "3 seconds" } },
            up: { reply: ["b1", "b2"], failure: "none" }
          }
        })
        const run = (id: string) =>
          Effect.gen(function*() {
            const fiber = yield* Effect.fork(Effect.either(fake.chat(req("q"), tgt(id))))
            yield* TestClock.adjust("1 second")
            return yield* Fiber.join(fiber)
          })
        const down = yield* run("down")
        expect(Either.isLeft(down) && down.left).toMatchObject({
          _tag: "RateLimited",
          provider: "multi",
          deploymentId: "down",
          status: 429
        })
        expect(Either.isLeft(down) && down.left.retryAfter && Duration.toSeconds(down.left.retryAfter)).toBe(3)
        const up = [yield* run("up"), yield* run("up"), yield* run("up")]
        expect(up.map((r) => Either.isRight(r) && text(r.right))).toEqual(["b1", "b2", "b2"])
        // other deployments use the top level: the first call of each fails, then "top"
        const other1 = yield* run("other")
        const other2 = yield* run("other")
        const another = yield* run("another")
        expect(Either.isLeft(other1) && other1.left._tag).toBe("ServerError")
        expect(Either.isRight(other2) && text(other2.right)).toBe("top")
        expect(Either.isLeft(another) && another.left.deploymentId).toBe("another")
        const calls = yield* fake.calls
        expect(calls.filter((c) => c.deploymentId === "up").map((c) => c.callIndex)).toEqual([0, 1, 2])
      }))

    it.effect("seeded draws differ between deployments but not between runs", () =>
      Effect.gen(function*() {
        const options = { failure: { probability: 0.5, seed: 9, error: 503 } } as const
        const fake = yield* FakeProvider.make(options)
        const a = yield* outcomes(fake, 50, "a")
        const b = yield* outcomes(fake, 50, "b")
        expect(a).not.toEqual(b)
        const again = yield* outcomes(yield* FakeProvider.make(options), 50, "b")
        expect(again).toEqual(b)
      }))
  })

  describe("streams", () => {
    it.effect("emits chunks after the latency, one chunk delay apart, then a final chunk with usage", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({
          latency: "1 second",
          stream: { chunks: ["Hel", "lo", "!"], chunkDelay: "100 millis" }
        })
        const fiber = yield* Effect.fork(timedChunks(fake.stream(req("hello"), tgt("s", { model: "m" }))))
        yield* TestClock.adjust("1150 millis")
        expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
        yield* TestClock.adjust("50 millis")
        const chunks = yield* Fiber.join(fiber)
        expect(chunks.map(([t]) => t)).toEqual([1000, 1100, 1200, 1200])
        for (const [, chunk] of chunks) expect(Schema.decodeUnknownEither(ChatChunkSchema)(chunk)._tag).toBe("Right")
        expect(chunks.map(([, c]) => c.choices[0].delta.content)).toEqual(["Hel", "lo", "!", undefined])
        expect(chunks[0][1].choices[0].delta.role).toBe("assistant")
        expect(new Set(chunks.map(([, c]) => c.id)).size).toBe(1)
        const last = chunks[3][1]
        expect(last.choices[0].finish_reason).toBe("stop")
        expect(last.model).toBe("m")
        expect(last.usage).toEqual({ prompt_tokens: 2, completion_tokens: 2, total_tokens: 4 })
        for (const [, c] of chunks.slice(0, 3)) {
          expect(c.choices[0].finish_reason).toBeNull()
          expect(c.usage).toBeUndefined()
        }
        const [call] = yield* fake.calls
        expect(call).toMatchObject({ kind: "stream", outcome: "success", startedAt: 0, endedAt: 1200 })
      }))

    it.effect("splits the reply by words, or into a number of chunks", () =>
      Effect.gen(function*() {
        const byWords = yield* FakeProvider.make({ reply: "the quick brown fox" })
        const words = yield* Stream.runCollect(byWords.stream(req("q"), tgt()))
        const contents = Chunk.toReadonlyArray(words).map((c) => c.choices[0].delta.content ?? "")
        expect(contents).toEqual(["the ", "quick ", "brown ", "fox", ""])
        const counted = yield* FakeProvider.make({ reply: "abcdefghij", stream: { chunks: 3 } })
        const parts = Chunk.toReadonlyArray(yield* Stream.runCollect(counted.stream(req("q"), tgt())))
          .map((c) => c.choices[0].delta.content ?? "")
        expect(parts).toHaveLength(4)
        expect(parts.join("")).toBe("abcdefghij")
      }))

    it.effect("fails mid-stream after N chunks", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({
          reply: "a b c d e",
          stream: { chunkDelay: "1 second", failAfterChunks: 2, midStreamError: "NetworkError" }
        })
        const seen: Array<ChatChunk> = []
        const fiber = yield* Effect.fork(
          fake.stream(req("q"), tgt("mid")).pipe(Stream.runForEach((c) => Effect.sync(() => seen.push(c))), Effect.flip)
        )
        yield* TestClock.adjust("1 second")
        expect(seen).toHaveLength(2)
        expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
        yield* TestClock.adjust("1 second")
        const error = yield* Fiber.join(fiber)
        expect(error).toMatchObject({ _tag: "NetworkError", deploymentId: "mid", provider: "fake" })
        expect(seen).toHaveLength(2)
        const [call] = yield* fake.calls
        expect(call).toMatchObject({ kind: "stream", outcome: "NetworkError", endedAt: 2000 })
      }))

    it.effect("defaults the mid-stream error to MalformedResponse; failAfterChunks may depend on the call", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({ reply: "a b c", stream: { failAfterChunks: (i) => (i === 0 ? 1 : undefined) } })
        const error = yield* Effect.flip(Stream.runDrain(fake.stream(req("q"), tgt())))
        expect(error._tag).toBe("MalformedResponse")
        const second = yield* Stream.runCollect(fake.stream(req("q"), tgt()))
        expect(Chunk.size(second)).toBe(4)
      }))

    it.effect("fails before the first chunk with the failure options", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({ failure: { first: 1, error: 429 } })
        const seen: Array<ChatChunk> = []
        const error = yield* fake.stream(req("q"), tgt("s")).pipe(
          Stream.runForEach((c) => Effect.sync(() => seen.push(c))),
          Effect.flip
        )
        expect(error).toMatchObject({ _tag: "RateLimited", status: 429, deploymentId: "s" })
        expect(seen).toHaveLength(0)
        expect(Chunk.size(yield* Stream.runCollect(fake.stream(req("q"), tgt("s"))))).toBe(2)
        const calls = yield* fake.calls
        expect(calls.map((c) => c.outcome)).toEqual(["RateLimited", "success"])
      }))

    it.effect("a stream read only in part is recorded as interrupted", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({ reply: "a b c d" })
        const taken = yield* Stream.runCollect(Stream.take(fake.stream(req("q"), tgt()), 2))
        expect(Chunk.size(taken)).toBe(2)
        const [call] = yield* fake.calls
        expect(call.outcome).toBe("interrupted")
      }))
  })

  describe("embeddings", () => {
    it.effect("returns one deterministic unit vector per input, with usage", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make()
        const response = yield* fake.embed({ model: "e", input: ["hello", "world!!", "hello"] }, tgt("e", { model: "emb" }))
        expect(Schema.decodeUnknownEither(EmbeddingResponse)(response)._tag).toBe("Right")
        expect(response.object).toBe("list")
        expect(response.model).toBe("emb")
        expect(response.data.map((d) => d.index)).toEqual([0, 1, 2])
        const vectors = response.data.map((d) => d.embedding as ReadonlyArray<number>)
        for (const v of vectors) {
          expect(v).toHaveLength(8)
          expect(Math.hypot(...v)).toBeCloseTo(1, 10)
        }
        expect(vectors[0]).toEqual(vectors[2])
        expect(vectors[0]).not.toEqual(vectors[1])
        expect(response.usage).toEqual({ prompt_tokens: 2 + 2 + 2, total_tokens: 6 })
      }))

    it.effect("honours the dimensions option and the request's dimensions", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({ dimensions: 16 })
        const a = yield* fake.embed({ model: "e", input: "x" }, tgt())
        expect(a.data).toHaveLength(1)
        expect(a.data[0].embedding).toHaveLength(16)
        const b = yield* fake.embed({ model: "e", input: "x", dimensions: 4 }, tgt())
        expect(b.data[0].embedding).toHaveLength(4)
      }))

    it.effect("embed calls fail and wait like the others", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({ latency: "1 second", failure: 401 })
        const fiber = yield* Effect.fork(Effect.flip(fake.embed({ model: "e", input: "x" }, tgt("e"))))
        yield* TestClock.adjust("1 second")
        expect(yield* Fiber.join(fiber)).toMatchObject({ _tag: "Authentication", status: 401, deploymentId: "e" })
        const [call] = yield* fake.calls
        expect(call).toMatchObject({ kind: "embed", outcome: "Authentication" })
      }))
  })

  describe("recording", () => {
    it.effect("records every call with kind, target, request, times and outcome", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({ latency: "5 seconds", byDeployment: { bad: { failure: 500 } } })
        const request = req("q")
        const ok = yield* Effect.fork(fake.chat(request, tgt("good", { model: "m1" })))
        const bad = yield* Effect.fork(Effect.either(fake.chat(request, tgt("bad", { model: "m2" }))))
        const slow = yield* Effect.fork(fake.chat(request, tgt("good")))
        yield* TestClock.adjust("1 second")
        const pending = yield* fake.calls
        expect(pending.map((c) => c.outcome)).toEqual(["pending", "pending", "pending"])
        yield* Fiber.interrupt(slow)
        yield* TestClock.adjust("4 seconds")
        yield* Fiber.join(ok)
        yield* Fiber.join(bad)
        const calls = yield* fake.calls
        expect(calls).toHaveLength(3)
        expect(calls[0]).toMatchObject({
          kind: "chat",
          deploymentId: "good",
          model: "m1",
          callIndex: 0,
          startedAt: 0,
          endedAt: 5000,
          outcome: "success"
        })
        expect(calls[0].request).toBe(request)
        expect(calls[1]).toMatchObject({ deploymentId: "bad", model: "m2", outcome: "ServerError", endedAt: 5000 })
        expect(calls[2]).toMatchObject({ deploymentId: "good", callIndex: 1, outcome: "interrupted", endedAt: 1000 })
        expect(yield* fake.callCount).toBe(3)
      }))

    it.effect("records a stream interrupted while waiting for its first chunk", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({ latency: "5 seconds" })
        const fiber = yield* Effect.fork(Stream.runDrain(fake.stream(req("q"), tgt())))
        yield* TestClock.adjust("2 seconds")
        yield* Fiber.interrupt(fiber)
        const [call] = yield* fake.calls
        expect(call).toMatchObject({ kind: "stream", outcome: "interrupted", endedAt: 2000 })
      }))

    it.effect("keeps at most maxRecordedCalls, oldest dropped; record: false keeps none", () =>
      Effect.gen(function*() {
        const bounded = yield* FakeProvider.make({ maxRecordedCalls: 3, reply: (_r, _t, i) => String(i) })
        yield* outcomes(bounded, 7)
        const calls = yield* bounded.calls
        expect(calls.map((c) => c.callIndex)).toEqual([4, 5, 6])
        expect(yield* bounded.callCount).toBe(7)
        const off = yield* FakeProvider.make({ record: false })
        yield* outcomes(off, 5)
        expect(yield* off.calls).toEqual([])
        expect(yield* off.callCount).toBe(5)
      }))

    it.effect("reset forgets calls and restarts scripts", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({ reply: ["a", "b"], failure: { schedule: ["ok", "ok", 500] } })
        expect(yield* outcomes(fake, 3)).toEqual(["ok", "ok", "ServerError"])
        yield* fake.reset
        expect(yield* fake.calls).toEqual([])
        expect(yield* fake.callCount).toBe(0)
        expect(text(yield* fake.chat(req("q"), tgt("d")))).toBe("a")
        const [call] = yield* fake.calls
        expect(call.callIndex).toBe(0)
      }))

    it.effect("snapshots do not change after they are read", () =>
      Effect.gen(function*() {
        const fake = yield* FakeProvider.make({ latency: "1 second" })
        const fiber = yield* Effect.fork(fake.chat(req("q"), tgt()))
        yield* TestClock.adjust("1 millis")
        const before = yield* fake.calls
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(fiber)
        expect(before[0].outcome).toBe("pending")
        expect((yield* fake.calls)[0].outcome).toBe("success")
      }))
  })

  it("unsafeMake gives a provider usable as a plain value", async () => {
    const fake = FakeProvider.unsafeMake({ reply: "plain" })
    const response = await Effect.runPromise(fake.chat(req("q"), tgt()))
    expect(text(response)).toBe("plain")
  })
})
