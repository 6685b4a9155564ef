/**
 * Users' own error rules (`errorRules`), tried before the built-in table, over the loopback
 * server: for error statuses, error objects in 2xx bodies and error events in streams; and
 * checked when the provider is made.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option, Redacted, Stream } from "effect"
import type * as ErrorMapping from "../../src/ErrorMapping.js"
import type * as Errors from "../../src/Errors.js"
import type { ChatRequest, Provider, Target } from "../../src/Provider.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as OpenAiCompatible from "../../src/providers/OpenAiCompatible.js"
import * as Loopback from "../support/loopback.js"

const failureOf = <A>(exit: Exit.Exit<A, Errors.ProviderError>): Errors.ProviderError => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) throw new Error(`expected a typed failure, got ${Cause.pretty(exit.cause)}`)
  return failure.value
}

/** The tags a chat call and a stream of the same request end with. */
const tagsOf = (provider: Provider, request: ChatRequest, target: Target) =>
  Effect.gen(function*() {
    const chat = failureOf(yield* Effect.exit(provider.chat(request, target)))
    const stream = failureOf(yield* Effect.exit(Stream.runDrain(provider.stream(request, target))))
    return [chat._tag, stream._tag]
  })

const live = (name: string, body: () => Effect.Effect<void, unknown, any>) =>
  it.scopedLive(name, () => Effect.provide(body(), NodeHttpClient.layerUndici))

// ---------------------------------------------------------------------------
// OpenAI-compatible
// ---------------------------------------------------------------------------

describe("OpenAiCompatible errorRules", () => {
  const request: ChatRequest = { model: "m", messages: [{ role: "user", content: "Hi" }] }
  const target = (server: Loopback.Loopback, base = ""): Target => ({
    deploymentId: "dep-1",
    model: "m",
    apiBase: `${server.url}${base}/v1`,
    apiKey: Redacted.make("sk-test-1234"),
    timeout: undefined
  })
  const make = (errorRules?: ReadonlyArray<ErrorMapping.Rule>) =>
    OpenAiCompatible.make({ apiKeyEnv: false, ...(errorRules === undefined ? {} : { errorRules }) })

  live("a status rule changes what a status means: 409 is a BadRequest (not retried), not a ServerError", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({
        "/v1/chat/completions": Loopback.json({ error: { message: "conflict", type: "conflict" } }, { status: 409 })
      })
      expect(yield* tagsOf(yield* make(), request, target(server))).toEqual(["ServerError", "ServerError"])
      const custom = yield* make([{ status: 409, error: "BadRequest" }])
      expect(yield* tagsOf(custom, request, target(server))).toEqual(["BadRequest", "BadRequest"])
    }))

  live("a self-hosted server's own code is mapped in an error status, a 2xx error body and a stream's error event", () =>
    Effect.gen(function*() {
      const busy = { error: { message: "all engines busy, retry shortly", code: "engine_busy" } }
      const chunk = { id: "c", object: "chat.completion.chunk", created: 0, model: "m", choices: [{ index: 0, delta: { content: "a" }, finish_reason: null }] }
      const server = yield* Loopback.make({
        "/status/v1/chat/completions": Loopback.json(busy, { status: 500 }),
        "/body/v1/chat/completions": Loopback.json(busy),
        "/event/v1/chat/completions": Loopback.sse([Loopback.event(chunk), Loopback.event(busy), Loopback.done])
      })
      const builtIn = yield* make()
      const custom = yield* make([{ code: ["engine_busy"], error: "RateLimited" }])
      expect(yield* tagsOf(builtIn, request, target(server, "/status"))).toEqual(["ServerError", "ServerError"])
      expect(yield* tagsOf(custom, request, target(server, "/status"))).toEqual(["RateLimited", "RateLimited"])
      expect(failureOf(yield* Effect.exit(builtIn.chat(request, target(server, "/body"))))._tag).toBe("ServerError")
      expect(failureOf(yield* Effect.exit(custom.chat(request, target(server, "/body"))))._tag).toBe("RateLimited")
      const event = (p: Provider) => Effect.exit(Stream.runDrain(p.stream(request, target(server, "/event"))))
      expect(failureOf(yield* event(builtIn))._tag).toBe("ServerError")
      expect(failureOf(yield* event(custom))._tag).toBe("RateLimited")
    }))

  live("custom rules win over built-in ones, and the first custom rule that matches wins", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({
        "/v1/chat/completions": Loopback.json({
          error: { message: "This model's maximum context length is 8192 tokens", code: "context_length_exceeded" }
        }, { status: 400 })
      })
      expect(yield* tagsOf(yield* make(), request, target(server))).toEqual(["ContextWindowExceeded", "ContextWindowExceeded"])
      const custom = yield* make([
        { status: 400, message: /maximum context length/, error: "BadRequest" },
        { status: 400, error: "ServerError" }
      ])
      expect(yield* tagsOf(custom, request, target(server))).toEqual(["BadRequest", "BadRequest"])
    }))
})

// ---------------------------------------------------------------------------
// Anthropic
// ---------------------------------------------------------------------------

describe("Anthropic errorRules", () => {
  const request: ChatRequest = { model: "m", messages: [{ role: "user", content: "Hi" }], max_tokens: 16 }
  const target = (server: Loopback.Loopback, base = ""): Target => ({
    deploymentId: "claude-a",
    model: "claude-test",
    apiBase: `${server.url}${base}`,
    apiKey: Redacted.make("sk-ant-test-1234"),
    timeout: undefined
  })
  const make = (errorRules?: ReadonlyArray<ErrorMapping.Rule>) =>
    Anthropic.make(errorRules === undefined ? {} : { errorRules })
  const overloaded = { type: "error", error: { type: "overloaded_error", message: "Overloaded" } }

  live("a status rule changes what a status means: 409 is a BadRequest, not a ServerError", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({
        "/v1/messages": Loopback.json({ type: "error", error: { type: "conflict_error", message: "conflict" } }, { status: 409 })
      })
      expect(yield* tagsOf(yield* make(), request, target(server))).toEqual(["ServerError", "ServerError"])
      expect(yield* tagsOf(yield* make([{ status: 409, error: "BadRequest" }]), request, target(server)))
        .toEqual(["BadRequest", "BadRequest"])
    }))

  live("custom rules win over Anthropic's own (overloaded_error), in a 529, a 2xx error body and a stream's error event", () =>
    Effect.gen(function*() {
      const messageStart = Loopback.event(
        { type: "message_start", message: { id: "msg_1", model: "claude-test", usage: { input_tokens: 1, output_tokens: 1 } } },
        { event: "message_start" }
      )
      const server = yield* Loopback.make({
        "/status/v1/messages": Loopback.json(overloaded, { status: 529 }),
        "/body/v1/messages": Loopback.json(overloaded),
        "/event/v1/messages": Loopback.sse([messageStart, Loopback.event(overloaded, { event: "error" })])
      })
      const builtIn = yield* make()
      const custom = yield* make([{ code: ["overloaded_error"], error: "RateLimited" }])
      for (const base of ["/status", "/body"]) {
        expect([base, ...(yield* tagsOf(builtIn, request, target(server, base)))]).toEqual([base, "ServerError", "ServerError"])
        expect([base, ...(yield* tagsOf(custom, request, target(server, base)))]).toEqual([base, "RateLimited", "RateLimited"])
      }
      const event = (p: Provider) => Effect.exit(Stream.runDrain(p.stream(request, target(server, "/event"))))
      expect(failureOf(yield* event(builtIn))._tag).toBe("ServerError")
      const error = failureOf(yield* event(custom))
      expect(error._tag).toBe("RateLimited")
      expect(error.status).toBe(529)
    }))
})

// ---------------------------------------------------------------------------
// Checked when made
// ---------------------------------------------------------------------------

describe("errorRules are checked by make", () => {
  const bad: ReadonlyArray<unknown> = [
    { status: 409, error: "Conflict" },
    { status: 99, error: "BadRequest" },
    { status: [500, 400], error: "ServerError" },
    { status: 409.5, error: "BadRequest" },
    { code: "engine_busy", error: "RateLimited" },
    { message: /busy/g, error: "RateLimited" },
    { message: "busy", error: "RateLimited" },
    { stauts: 409, error: "BadRequest" },
    { error: "ServerError" },
    null
  ]
  const expected = [
    "errorRules[0].error",
    "errorRules[1].status",
    "errorRules[2].status",
    "errorRules[3].status",
    "errorRules[4].code",
    "errorRules[5].message",
    "errorRules[6].message",
    "errorRules[7].stauts",
    "errorRules[7]",
    "errorRules[8]",
    "errorRules[9]"
  ]

  for (
    const [name, make] of [
      ["OpenAiCompatible", (errorRules: any) => OpenAiCompatible.make({ apiKeyEnv: false, errorRules })],
      ["Anthropic", (errorRules: any) => Anthropic.make({ errorRules })]
    ] as const
  ) {
    it.effect(`${name}: every bad rule is an issue of InvalidConfig, with its path`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(make(bad))
        expect(error._tag).toBe("InvalidConfig")
        expect(error.issues.map((i) => i.path)).toEqual(expected)
        const messageOf = (path: string) => error.issues.find((i) => i.path === path)?.message
        expect(messageOf("errorRules[0].error")).toMatch(/expected one of RateLimited, .*BadRequest.*; got "Conflict"/)
        expect(messageOf("errorRules[1].status")).toMatch(/100 to 599.*got number/)
        expect(messageOf("errorRules[2].status")).toMatch(/from <= to; got \[500,400\]/)
        expect(messageOf("errorRules[5].message")).toMatch(/g and y flags/)
        expect(messageOf("errorRules[7]")).toMatch(/would match every failure/)
        expect(error.message).toContain("errorRules[4].code")
        // good rules make a provider
        const ok = yield* make([{ status: [400, 404], code: ["x"], message: /y/i, error: "BadRequest" }])
        expect(ok.name).toBeTypeOf("string")
      }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
  }
})
