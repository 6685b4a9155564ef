/**
 * Test helpers, shipped as the separate `effect-llm-router/testing` entry so that production
 * bundles never carry them.
 *
 * @example
 * import { Effect } from "effect"
 * import { FakeProvider } from "effect-llm-router/testing"
 *
 * const program = Effect.gen(function*() {
 *   const fake = yield* FakeProvider.make({ reply: "hello", latency: "1 second" })
 *   return yield* fake.chat(FakeProvider.chatRequest("hi"), FakeProvider.target("a"))
 * })
 * @since 0.1.0
 */

/**
 * A scriptable fake provider: replies, usage, latency, failures, streams, embeddings, health
 * checks, per deployment, with every call and probe recorded.
 *
 * @example
 * import { FakeProvider } from "effect-llm-router/testing"
 * const fake = FakeProvider.unsafeMake({ failure: { first: 2, error: 503 }, health: { latency: "50 millis" } })
 * @since 0.1.0
 */
export * as FakeProvider from "./providers/Fake.js"

/**
 * The `RouterState` store contract as checks, so that every store (the in-memory one, Redis,
 * yours) runs the same tests.
 *
 * @example
 * import { RouterState } from "effect-llm-router"
 * import { StoreContract } from "effect-llm-router/testing"
 * const checks = StoreContract.checks(RouterState.makeMemory())
 * @since 0.1.0
 */
export * as StoreContract from "./StoreContract.js"
