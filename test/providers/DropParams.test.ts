/**
 * Parameters a model is known to refuse, and a deployment's `dropParams`: by default a request
 * carrying one fails fast (nothing is sent); `true` drops them; a list drops the named ones too.
 * Over the loopback server, checked on the wire body.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Redacted, Stream } from "effect"
import * as Deployment from "../../src/Deployment.js"
import type { ChatRequest, Target } from "../../src/Provider.js"
import * as Anthropic from "../../src/providers/Anthropic.js"
import * as OpenAiCompatible from "../../src/providers/OpenAiCompatible.js"
import * as Router from "../../src/Router.js"
import * as Loopback from "../support/loopback.js"

const chatReply = {
  id: "chatcmpl-1",
  object: "chat.completion",
  created: 0,
  model: "m",
  choices: [{ index: 0, message: { role: "assistant", content: "hi" }, finish_reason: "stop" }]
}

const live = (name: string, body: () => Effect.Effect<void, unknown, any>) =>
  it.scopedLive(name, () => Effect.provide(body(), NodeHttpClient.layerUndici))

const target = (server: Loopback.Loopback, model: string, dropParams?: Target["dropParams"]): Target => ({
  deploymentId: "dep-1",
  model,
  apiBase: `${server.url}/v1`,
  apiKey: Redacted.make("sk-test-1234"),
  timeout: undefined,
  ...(dropParams === undefined ? {} : { dropParams })
})

const ask = (model: string, extra: Partial<ChatRequest>): ChatRequest => ({
  model,
  messages: [{ role: "user", content: "Hi" }],
  ...extra
})

describe("OpenAiCompatible: parameters a model refuses", () => {
  live("by default, a reasoning model's refused parameter fails fast with a BadRequest naming it, the model and dropParams", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.json(chatReply) })
      const openai = yield* OpenAiCompatible.make({ apiKeyEnv: false })
      const request = ask("o3-mini", { temperature: 0.2 })
      const chat = yield* Effect.flip(openai.chat(request, target(server, "o3-mini")))
      const stream = yield* Effect.flip(Stream.runDrain(openai.stream(request, target(server, "o3-mini"))))
      for (const error of [chat, stream]) {
        expect(error._tag).toBe("BadRequest")
        expect(error.deploymentId).toBe("dep-1")
        expect(error.message).toBe(
          "openai: o3-mini does not accept temperature 0.2 (it takes only 1); " +
            "set dropParams: true on the deployment to drop it, or leave it out of the request"
        )
      }
      // every refused parameter is named at once
      const several = yield* Effect.flip(openai.chat(
        ask("openai/gpt-5-mini", { top_p: 0.5, frequency_penalty: 0.3, stop: ["END"] }),
        target(server, "openai/gpt-5-mini")
      ))
      expect(several.message).toMatch(/gpt-5-mini does not accept top_p 0.5 \(it takes only 1\), frequency_penalty 0.3 \(it takes only 0\), stop; .*drop them/)
      expect(yield* server.requests).toHaveLength(0)
    }))

  live("the values a reasoning model takes pass; models that are not reasoning ones keep every parameter", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.json(chatReply) })
      const openai = yield* OpenAiCompatible.make({ apiKeyEnv: false })
      const sampling = { temperature: 0.2, top_p: 0.9, presence_penalty: 0.5, frequency_penalty: -0.5, stop: "END", seed: 7 }
      for (const model of ["gpt-4o-mini", "gpt-5-chat-latest", "llama3.2", "gpt-5.1"]) {
        yield* openai.chat(ask(model, sampling), target(server, model))
      }
      yield* openai.chat(ask("o3", { temperature: 1, top_p: 1, presence_penalty: 0, frequency_penalty: 0, seed: 7 }), target(server, "o3"))
      const bodies = (yield* server.requests).map((r) => r.body)
      for (const body of bodies.slice(0, 4)) expect(body).toMatchObject(sampling)
      expect(bodies[4]).toMatchObject({ temperature: 1, top_p: 1, presence_penalty: 0, frequency_penalty: 0, seed: 7 })
    }))

  live("gpt-5.1 and later refuse temperature and top_p only with a reasoning_effort", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.json(chatReply) })
      const openai = yield* OpenAiCompatible.make({ apiKeyEnv: false })
      const error = yield* Effect.flip(openai.chat(ask("gpt-5.1", { temperature: 0.2, reasoning_effort: "low" }), target(server, "gpt-5.1")))
      expect(error.message).toMatch(/gpt-5.1 does not accept temperature 0.2/)
      yield* openai.chat(ask("gpt-5.1", { temperature: 0.2 }), target(server, "gpt-5.1"))
      expect((yield* server.requests).map((r) => r.body.temperature)).toEqual([0.2])
    }))

  live("dropParams: true drops the refused parameters from the wire body and keeps the rest", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.json(chatReply) })
      const openai = yield* OpenAiCompatible.make({ apiKeyEnv: false })
      const request = ask("o3-mini", { temperature: 0.2, top_p: 0.5, presence_penalty: 0.1, frequency_penalty: 0.1, seed: 7, max_tokens: 50 })
      yield* openai.chat(request, target(server, "o3-mini", true))
      yield* Stream.runDrain(openai.stream(request, target(server, "o3-mini", true))).pipe(Effect.ignore)
      for (const { body } of yield* server.requests) {
        for (const name of ["temperature", "top_p", "presence_penalty", "frequency_penalty", "max_tokens"]) {
          expect(body).not.toHaveProperty(name)
        }
        expect(body).toMatchObject({ model: "o3-mini", seed: 7, max_completion_tokens: 50 })
      }
      // the caller's request is left as it was
      expect(request.temperature).toBe(0.2)
      // a model that refuses nothing keeps its parameters under dropParams: true
      yield* openai.chat(ask("gpt-4o", { temperature: 0.2 }), target(server, "gpt-4o", true))
      expect((yield* server.requests)[2].body.temperature).toBe(0.2)
    }))

  live("a dropParams list drops the named parameters whatever the model, and the refused ones too", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.json(chatReply) })
      const openai = yield* OpenAiCompatible.make({ apiKeyEnv: false })
      const extra = { temperature: 0.2, seed: 7, user: "u-1", parallel_tool_calls: false }
      yield* openai.chat(ask("gpt-4o-mini", extra), target(server, "gpt-4o-mini", ["seed", "user"]))
      yield* openai.chat(ask("o4-mini", extra), target(server, "o4-mini", ["seed"]))
      const [plain, reasoning] = (yield* server.requests).map((r) => r.body)
      expect(plain).toMatchObject({ temperature: 0.2, parallel_tool_calls: false })
      expect(plain).not.toHaveProperty("seed")
      expect(plain).not.toHaveProperty("user")
      expect(reasoning).toMatchObject({ user: "u-1", parallel_tool_calls: false })
      expect(reasoning).not.toHaveProperty("seed")
      expect(reasoning).not.toHaveProperty("temperature")
    }))

  live("a deployment's dropParams reaches the provider through the router", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/v1/chat/completions": Loopback.json(chatReply) })
      const RouterLive = Layer.unwrapEffect(Effect.map(OpenAiCompatible.make({ apiKeyEnv: false }), (openai) =>
        Router.layer({
          deployments: [
            { id: "strict", group: "strict", provider: openai, model: "o3-mini", apiBase: `${server.url}/v1` },
            { id: "lenient", group: "lenient", provider: openai, model: "o3-mini", apiBase: `${server.url}/v1`, dropParams: true }
          ]
        }))).pipe(Layer.provide(Router.defaults))
      yield* Effect.gen(function*() {
        const refused = yield* Effect.flip(Router.chat(ask("strict", { temperature: 0.2 })))
        expect(refused._tag).toBe("BadRequest")
        expect(refused.message).toMatch(/dropParams: true/)
        yield* Router.chat(ask("lenient", { temperature: 0.2 }))
      }).pipe(Effect.provide(RouterLive))
      const received = yield* server.requests
      expect(received).toHaveLength(1)
      expect(received[0].body).not.toHaveProperty("temperature")
    }))
})

describe("Anthropic: dropParams", () => {
  const messageReply = {
    id: "msg_1",
    type: "message",
    role: "assistant",
    model: "claude-test",
    content: [{ type: "text", text: "hi" }],
    stop_reason: "end_turn",
    usage: { input_tokens: 1, output_tokens: 1 }
  }

  live("a list drops the named parameters from the wire body; without one they are sent", () =>
    Effect.gen(function*() {
      const server = yield* Loopback.make({ "/v1/messages": Loopback.json(messageReply) })
      const anthropic = yield* Anthropic.make()
      const request = ask("claude-test", { temperature: 0.2, top_p: 0.9, stop: ["END"], user: "u-1", max_tokens: 32 })
      const at = (dropParams?: Target["dropParams"]): Target => ({ ...target(server, "claude-test", dropParams), apiBase: server.url })
      yield* anthropic.chat(request, at())
      yield* anthropic.chat(request, at(["top_p", "stop"]))
      // true: Anthropic refuses none of our parameters (those it lacks are always left out)
      yield* anthropic.chat({ ...request, seed: 7, presence_penalty: 0.5 }, at(true))
      const [kept, dropped, lenient] = (yield* server.requests).map((r) => r.body)
      expect(kept).toMatchObject({ temperature: 0.2, top_p: 0.9, stop_sequences: ["END"], metadata: { user_id: "u-1" } })
      expect(dropped).toMatchObject({ temperature: 0.2, metadata: { user_id: "u-1" }, max_tokens: 32 })
      expect(dropped).not.toHaveProperty("top_p")
      expect(dropped).not.toHaveProperty("stop_sequences")
      expect(lenient).toEqual(kept)
    }))
})

describe("Deployment config: dropParams", () => {
  it("is passed to the provider's target; a list names request parameters", () => {
    const provider = { name: "p", chat: () => Effect.die("unused"), stream: () => Stream.die("unused"), embed: () => Effect.die("unused") }
    const [lenient, listed, plain] = Either.getOrThrow(Deployment.fromConfig([
      { id: "a", group: "g", provider, model: "o3", dropParams: true },
      { id: "b", group: "g", provider, model: "o3", dropParams: ["seed", "stop"] },
      { id: "c", group: "g", provider, model: "o3" }
    ], {}))
    expect(lenient.target.dropParams).toBe(true)
    expect(listed.target.dropParams).toEqual(["seed", "stop"])
    expect(plain.target.dropParams).toBeUndefined()
    const invalid = Deployment.fromConfig([{ group: "g", provider, model: "o3", dropParams: ["temprature", "messages"] }], {})
    expect(Either.isLeft(invalid)).toBe(true)
    if (Either.isLeft(invalid)) {
      expect(invalid.left.issues).toEqual([{
        path: "deployments[0].dropParams",
        message: expect.stringMatching(/^"temprature", "messages": expected request parameters \(tools, .*temperature.*\)$/)
      }])
    }
  })
})
