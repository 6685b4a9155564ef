/**
 * Importing the providers runs no Effect (the package says `sideEffects: false`): no
 * `Effect.run*` at module load. `effect/Effect` is wrapped for this file's module graph only, to
 * record who calls a runner while the modules load.
 */
import { expect, it, vi } from "vitest"

const calls = vi.hoisted(() => ({ loading: false, seen: [] as Array<string> }))

vi.mock("effect/Effect", async (importOriginal) => {
  const actual = await importOriginal<typeof import("effect/Effect")>()
  const spy = <F extends (...args: Array<any>) => any>(name: string, f: F): F =>
    ((...args: Array<any>) => {
      if (calls.loading) calls.seen.push(`${name} at ${new Error().stack?.split("\n").slice(2, 5).join(" / ")}`)
      return f(...args)
    }) as F
  return {
    ...actual,
    runSync: spy("runSync", actual.runSync),
    runFork: spy("runFork", actual.runFork),
    runPromise: spy("runPromise", actual.runPromise),
    runSyncExit: spy("runSyncExit", actual.runSyncExit),
    runPromiseExit: spy("runPromiseExit", actual.runPromiseExit),
    runCallback: spy("runCallback", actual.runCallback)
  }
})

it("importing the package (the HTTP core, the providers, every module) runs no Effect", async () => {
  calls.loading = true
  try {
    await import("../../src/internal/http.js")
    await import("../../src/providers/OpenAiCompatible.js")
    await import("../../src/providers/Anthropic.js")
    // and every other module of the package, through its two entries
    await import("../../src/index.js")
    await import("../../src/testing.js")
  } finally {
    calls.loading = false
  }
  expect(calls.seen).toEqual([])
  // the wrapper is in place: a run after loading is seen by it
  const Effect = await import("effect/Effect")
  calls.loading = true
  Effect.runSync(Effect.void)
  calls.loading = false
  expect(calls.seen).toHaveLength(1)
})
