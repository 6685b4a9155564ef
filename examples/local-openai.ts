/**
 * Routes between two OpenAI-compatible servers, falling back from the first to the second.
 *
 *   PRIMARY_BASE_URL=http://127.0.0.1:11434/v1 PRIMARY_MODEL=llama3.2 \
 *   FALLBACK_BASE_URL=https://api.groq.com/openai/v1 FALLBACK_MODEL=llama-3.1-8b-instant FALLBACK_API_KEY=gsk_... \
 *   npx tsx examples/local-openai.ts "Why is the sky blue?"
 *
 * Any server speaking OpenAI's chat completions works: Ollama, llama.cpp server, vLLM, LM Studio,
 * OpenAI, Groq, Together... Defaults: a local Ollama (http://127.0.0.1:11434/v1, model llama3.2)
 * and a local llama.cpp server (http://127.0.0.1:8080/v1). When neither answers, it says so
 * and exits with status 1: no stack trace.
 */
import { NodeHttpClient } from "@effect/platform-node"
import { Effect, Layer, Redacted, Stream } from "effect"
import { Fallback, OpenAiCompatible, Router } from "../src/index.js"

const env = (name: string, fallback: string) => process.env[name]?.trim() || fallback
const key = (name: string) => {
  const value = process.env[name]?.trim()
  return value ? Redacted.make(value) : undefined
}

const primary = { apiBase: env("PRIMARY_BASE_URL", "http://127.0.0.1:11434/v1"), model: env("PRIMARY_MODEL", "llama3.2") }
const fallback = { apiBase: env("FALLBACK_BASE_URL", "http://127.0.0.1:8080/v1"), model: env("FALLBACK_MODEL", "default") }
const question = process.argv[2] ?? "In one sentence: what does an LLM router do?"

const RouterLive = Layer.unwrapEffect(
  Effect.gen(function*() {
    // Keys come from the deployments; never send OPENAI_API_KEY to servers that are not OpenAI's.
    const openai = yield* OpenAiCompatible.make({ apiKeyEnv: false, firstByteTimeout: "20 seconds", idleTimeout: "30 seconds" })
    const apiKey = (name: string) => {
      const value = key(name)
      return value === undefined ? {} : { apiKey: value }
    }
    return Router.layer({
      timeout: "60 seconds",
      deployments: [
        { id: "primary", group: "chat", provider: openai, model: primary.model, apiBase: primary.apiBase, ...apiKey("PRIMARY_API_KEY") },
        { id: "fallback", group: "chat-fallback", provider: openai, model: fallback.model, apiBase: fallback.apiBase, ...apiKey("FALLBACK_API_KEY") }
      ]
    }).pipe(
      Layer.provide(Fallback.layer({ fallbacks: { chat: ["chat-fallback"] } })),
      Layer.provide(Router.defaults)
    )
  })
).pipe(Layer.provide(NodeHttpClient.layerUndici))

const program = Effect.gen(function*() {
  console.log(`primary:  ${primary.apiBase} (${primary.model})`)
  console.log(`fallback: ${fallback.apiBase} (${fallback.model})`)
  console.log(`> ${question}\n`)
  let route: Router.RouteInfo | undefined
  yield* Router.stream({ model: "chat", messages: [{ role: "user", content: question }] }).pipe(
    Stream.runForEach((chunk) =>
      Effect.sync(() => {
        process.stdout.write(chunk.choices[0]?.delta.content ?? "")
        if (chunk.route !== undefined) route = chunk.route
      })
    )
  )
  if (route !== undefined) {
    const path = route.attempts.map((a) => (a.error ? `${a.deploymentId} ✗ ${a.error}` : `${a.deploymentId} ✓`)).join(" → ")
    console.log(`\n\nserved by ${route.deploymentId} (${route.model}) in ${route.latencyMs.toFixed(0)} ms [${path}]`)
    if (route.usage) console.log(`tokens: ${route.usage.prompt_tokens} in, ${route.usage.completion_tokens} out`)
  }
})

Effect.runPromise(
  program.pipe(
    Effect.provide(RouterLive),
    Effect.catchAll((error) =>
      Effect.sync(() => {
        const tried = "attempts" in error && error.attempts
          ? error.attempts.map((a) => `  ${a.deploymentId}: ${a.error ?? "ok"}`).join("\n")
          : ""
        console.error(`\nNo server answered (${error._tag}): ${error.message}`)
        if (tried) console.error(`Attempts:\n${tried}`)
        console.error(
          "Start a local server (e.g. `ollama serve` and `ollama pull llama3.2`), or set PRIMARY_BASE_URL /" +
            " FALLBACK_BASE_URL (and *_MODEL, *_API_KEY) to servers you can reach."
        )
        process.exitCode = 1
      })
    )
  )
)
