import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { inspect } from "node:util"
import { Cooldown, CostMeter, Deployment, Errors, Fallback, RetrySchedule, Router, RouterState } from "../src/index.js"
import { FakeProvider } from "../src/testing.js"

type Issue = { readonly path: string; readonly message: string }

const fake = FakeProvider.unsafeMake()

/** The `InvalidConfig` a config is rejected with by `Deployment.fromConfig`. */
const rejected = (configs: unknown, providers: Record<string, ReturnType<typeof FakeProvider.unsafeMake>> = {}) => {
  const result = Deployment.fromConfig(configs, providers)
  if (Either.isRight(result)) throw new Error("expected the config to be rejected")
  expect(result.left).toBeInstanceOf(Errors.InvalidConfig)
  expect(result.left._tag).toBe("InvalidConfig")
  return result.left
}

const accepted = (configs: unknown, providers: Record<string, ReturnType<typeof FakeProvider.unsafeMake>> = {}) => {
  const result = Deployment.fromConfig(configs, providers)
  if (Either.isLeft(result)) throw new Error(`expected the config to be accepted:\n${result.left.message}`)
  return result.right
}

const issueAt = (issues: ReadonlyArray<Issue>, path: string): Issue => {
  const found = issues.find((issue) => issue.path === path)
  if (found === undefined) throw new Error(`no issue at ${path}; issues: ${JSON.stringify(issues)}`)
  return found
}

/** Builds `Router.layer(config)` over the defaults and returns the error it fails with. */
const buildError = (config: unknown, ...provide: Array<Layer.Layer<any, any, any>>): Effect.Effect<Errors.InvalidConfig> => {
  let layer: Layer.Layer<Router.Router, any, any> = Router.layer(config as Router.Config)
  for (const l of provide) layer = layer.pipe(Layer.provide(l))
  return Effect.flip(Effect.provide(Router.Router, layer.pipe(Layer.provide(Router.defaults)))) as Effect.Effect<Errors.InvalidConfig>
}

const valid = (overrides: Record<string, unknown> = {}) => ({ group: "g", provider: fake, model: "m", ...overrides })

describe("Deployment.fromConfig", () => {
  it("accepts a valid config and fills in defaults", () => {
    const [d] = accepted([valid({ id: "a", weight: 2, rpm: 10, tpm: 1000, maxConcurrent: 3, tags: ["eu"], timeout: "30 seconds" })])
    expect(d).toMatchObject({ id: "a", index: 0, group: "g", model: "m", weight: 2, rpm: 10, tpm: 1000, maxConcurrent: 3, tags: ["eu"] })
    expect(d.provider).toBe(fake)
    expect(d.timeout).toBeDefined()
    expect(d.target.deploymentId).toBe("a")
  })

  it("rejects a negative weight with its path", () => {
    const error = rejected([valid(), valid({ model: "m2" }), valid({ model: "m3", weight: -1 })])
    expect(issueAt(error.issues, "deployments[2].weight").message).toBe("expected a non-negative number")
    expect(error.message).toContain("deployments[2].weight: expected a non-negative number")
    expect(error.issues.every((i) => i.path === "deployments[2].weight")).toBe(true)
  })

  it("reports one issue per bad optional field (no \"Expected undefined\" noise)", () => {
    const error = rejected([valid(), valid({ model: "m2" }), valid({ model: "m3", weight: -1 })])
    expect(error.issues).toEqual([{ path: "deployments[2].weight", message: "expected a non-negative number" }])
    expect(error.message).not.toMatch(/Expected undefined/)
    const rpm = rejected([valid({ rpm: -5 })])
    expect(rpm.issues).toEqual([{ path: "deployments[0].rpm", message: "expected a positive integer" }])
  })

  it("rejects a missing group", () => {
    const error = rejected([{ provider: fake, model: "m" }])
    const issue = issueAt(error.issues, "deployments[0].group")
    expect(issue.message).toMatch(/missing/i)
  })

  it("rejects an empty group name", () => {
    const error = rejected([valid({ group: "" })])
    expect(issueAt(error.issues, "deployments[0].group").message).toBe("expected a non-empty string")
  })

  it("rejects a negative rpm", () => {
    const error = rejected([valid({ rpm: -5 })])
    expect(issueAt(error.issues, "deployments[0].rpm").message).toBe("expected a positive integer")
  })

  it("rejects a non-integer maxConcurrent", () => {
    const error = rejected([valid({ maxConcurrent: 2.5 })])
    expect(issueAt(error.issues, "deployments[0].maxConcurrent").message).toBe("expected a positive integer")
  })

  it("rejects an unknown provider name, listing the known ones", () => {
    const error = rejected([valid({ provider: "opneai" })], { openai: fake, anthropic: fake })
    const issue = issueAt(error.issues, "deployments[0].provider")
    expect(issue.message).toContain("\"opneai\"")
    expect(issue.message).toContain("openai")
    expect(issue.message).toContain("anthropic")
  })

  it("rejects a provider name when no providers were given", () => {
    const error = rejected([valid({ provider: "openai" })])
    expect(issueAt(error.issues, "deployments[0].provider").message).toContain("unknown provider \"openai\"")
  })

  it("resolves a provider given by name", () => {
    const [d] = accepted([valid({ provider: "openai" })], { openai: fake })
    expect(d.provider).toBe(fake)
  })

  it("rejects an unknown key (a typo such as `wieght`)", () => {
    const error = rejected([valid({ wieght: 2 })])
    issueAt(error.issues, "deployments[0].wieght")
  })

  it("rejects duplicate explicit ids", () => {
    const error = rejected([valid({ id: "a" }), valid({ id: "b", model: "m2" }), valid({ id: "a", model: "m3" })])
    const issue = issueAt(error.issues, "deployments[2].id")
    expect(issue.message).toContain("\"a\"")
    expect(issue.message).toContain("deployments[0]")
  })

  it("rejects two identical configs without ids (same derived id)", () => {
    const error = rejected([valid(), valid()])
    expect(issueAt(error.issues, "deployments[1].id").message).toContain("duplicate")
  })

  it("rejects an empty deployment list", () => {
    const error = rejected([])
    expect(issueAt(error.issues, "deployments").message).toBe("expected at least one deployment")
  })

  it("rejects something that is not a list", () => {
    const error = rejected({ group: "g" })
    expect(error.issues.length).toBeGreaterThan(0)
    expect(error.issues[0].path).toBe("deployments")
  })

  it("rejects a bad timeout string", () => {
    const error = rejected([valid({ timeout: "soon" })])
    expect(issueAt(error.issues, "deployments[0].timeout").message).toContain("expected a duration")
  })

  it("rejects a negative timeout (not silently clamped to 0)", () => {
    for (const timeout of [-5, "-5 seconds"]) {
      const error = rejected([valid({ timeout })])
      issueAt(error.issues, "deployments[0].timeout")
    }
  })

  it("rejects bad pricing", () => {
    const error = rejected([valid({ pricing: { inputCostPerToken: -1, outputCostPerToken: 1 } })])
    expect(error.issues.some((i) => i.path.startsWith("deployments[0].pricing"))).toBe(true)
  })

  it("accepts pricing in LiteLLM's snake_case form", () => {
    const [d] = accepted([valid({ pricing: { input_cost_per_token: 1e-6, output_cost_per_token: 2e-6 } })])
    expect(d.pricing).toEqual({ inputCostPerToken: 1e-6, outputCostPerToken: 2e-6 })
  })

  it("lists every schema issue in the error and its message", () => {
    const error = rejected([
      valid({ weight: -1 }),
      { provider: fake, model: "m" },
      valid({ rpm: 1.5, wieght: 3 }),
      valid({ timeout: "soon" })
    ])
    const paths = error.issues.map((i) => i.path)
    for (const path of ["deployments[0].weight", "deployments[1].group", "deployments[2].rpm", "deployments[2].wieght", "deployments[3].timeout"]) {
      expect(paths).toContain(path)
      expect(error.message).toContain(`${path}:`)
    }
    for (const issue of error.issues) expect(error.message).toContain(`${issue.path}: ${issue.message}`)
    expect(error.message.split("\n").length).toBe(error.issues.length + 1)
  })

  it("reports schema issues and provider-name / duplicate-id issues together", () => {
    // The documented promise: every problem at once (fromConfig's own example names
    // deployments[0].weight AND deployments[0].provider).
    const error = rejected([
      { group: "fast", provider: "fake", model: "m", weight: -1 },
      { id: "x", group: "fast", provider: fake, model: "m1" },
      { id: "x", group: "fast", provider: fake, model: "m2" }
    ])
    const paths = error.issues.map((i) => i.path)
    expect(paths).toContain("deployments[0].weight")
    expect(paths).toContain("deployments[0].provider")
    expect(paths).toContain("deployments[2].id")
  })

  describe("derived ids", () => {
    const a = { group: "g", provider: fake, model: "m", apiBase: "https://a.example/v1" }
    const b = { group: "g", provider: fake, model: "m", apiBase: "https://b.example/v1" }
    const c = { group: "h", provider: fake, model: "m2", tags: ["eu"] }

    it("are the same for the same config whatever its place in the list", () => {
      const first = accepted([a, b, c])
      const second = accepted([c, b, a])
      const idOf = (ds: ReadonlyArray<Deployment.Deployment>, apiBase: string | undefined, group = "g") =>
        ds.find((d) => d.apiBase === apiBase && d.group === group)!.id
      expect(idOf(first, a.apiBase)).toBe(idOf(second, a.apiBase))
      expect(idOf(first, b.apiBase)).toBe(idOf(second, b.apiBase))
      expect(idOf(first, undefined, "h")).toBe(idOf(second, undefined, "h"))
      // and across calls / instances of the same provider name
      expect(accepted([{ ...a, provider: FakeProvider.unsafeMake() }])[0].id).toBe(idOf(first, a.apiBase))
    })

    it("differ for different apiBase", () => {
      const [da, db] = accepted([a, b])
      expect(da.id).not.toBe(db.id)
    })

    it("differ for different tags, group or model", () => {
      const ids = accepted([
        valid(),
        valid({ tags: ["eu"] }),
        valid({ group: "h" }),
        valid({ model: "m2" })
      ]).map((d) => d.id)
      expect(new Set(ids).size).toBe(4)
    })

    it("do not depend on the api key", () => {
      const [d1] = accepted([valid({ apiKey: "sk-one" })])
      const [d2] = accepted([valid({ apiKey: "sk-two" })])
      expect(d1.id).toBe(d2.id)
      expect(d1.id).not.toContain("sk-")
    })

    it("match Deployment.deriveId and are readable", () => {
      const [d] = accepted([a])
      expect(d.id).toBe(Deployment.deriveId(a))
      expect(d.id.startsWith("g/m#")).toBe(true)
    })

    it("are pinned: the same id in every version (FNV-1a of the identity, not a dependency's hash)", () => {
      expect(Deployment.deriveId({ group: "fast", provider: "openai", model: "gpt-4o-mini" })).toBe("fast/gpt-4o-mini#fdae5fe8")
      expect(Deployment.deriveId({ group: "fast", provider: "openai", model: "gpt-4o-mini", tags: ["eu"] }))
        .not.toBe("fast/gpt-4o-mini#fdae5fe8")
    })

    it("an explicit id wins", () => {
      const [d] = accepted([{ ...a, id: "primary" }])
      expect(d.id).toBe("primary")
    })
  })

  describe("apiKey", () => {
    const secret = "sk-SUPER-SECRET-123456"

    it("a string key ends up Redacted and is kept out of printing", () => {
      const [d] = accepted([valid({ apiKey: secret })])
      expect(Redacted.isRedacted(d.apiKey)).toBe(true)
      expect(Redacted.value(d.apiKey!)).toBe(secret)
      expect(Redacted.isRedacted(d.target.apiKey)).toBe(true)
      expect(String(d)).not.toContain(secret)
      expect(JSON.stringify(d)).not.toContain(secret)
      expect(inspect(d, { depth: 10 })).not.toContain(secret)
      expect(String(d.apiKey)).not.toContain(secret)
    })

    it("a Redacted key is accepted as is", () => {
      const key = Redacted.make(secret)
      const [d] = accepted([valid({ apiKey: key })])
      expect(Redacted.value(d.apiKey!)).toBe(secret)
    })

    it("is not echoed back when given with the wrong type", () => {
      const error = rejected([valid({ apiKey: [secret] })])
      issueAt(error.issues, "deployments[0].apiKey")
      expect(error.message).not.toContain(secret)
      expect(inspect(error, { depth: 10 })).not.toContain(secret)
    })

    it("never appears in a config error", () => {
      const error = rejected([
        valid({ apiKey: secret, weight: -1, wieght: 1 }),
        { provider: fake, model: "m", apiKey: secret },
        valid({ apiKey: secret, provider: "nope" })
      ])
      expect(error.message).not.toContain(secret)
      expect(JSON.stringify(error)).not.toContain(secret)
      expect(inspect(error, { depth: 10 })).not.toContain(secret)
      expect(String(error)).not.toContain(secret)
    })

    it.effect("never appears in the router's errors or deployments", () =>
      Effect.gen(function*() {
        const router = yield* Router.Router
        const error = yield* Effect.flip(Router.chat({ model: "g", messages: [{ role: "user", content: "hi" }] }))
        expect(error._tag).toBe("Authentication")
        for (const text of [error.message, JSON.stringify(error), inspect(error, { depth: 10 }), String(error)]) {
          expect(text).not.toContain(secret)
        }
        expect(inspect(router.deployments, { depth: 10 })).not.toContain(secret)
        expect(JSON.stringify(router.deployments)).not.toContain(secret)
        const built = yield* buildError({ deployments: [valid({ apiKey: secret, rpm: -1 })] })
        expect(built.message).not.toContain(secret)
        expect(inspect(built, { depth: 10 })).not.toContain(secret)
      }).pipe(
        Effect.provide(
          Router.layer({
            deployments: [{ group: "g", provider: FakeProvider.unsafeMake({ failure: 401 }), model: "m", apiKey: secret }]
          }).pipe(Layer.provide(RetrySchedule.none), Layer.provideMerge(Router.defaults))
        )
      ))
  })
})

describe("Router.layer config", () => {
  it.effect("fails to build with InvalidConfig naming the path", () =>
    Effect.gen(function*() {
      const error = yield* buildError({ deployments: [valid(), valid({ model: "m2" }), valid({ model: "m3", weight: -1 })] })
      expect(error._tag).toBe("InvalidConfig")
      expect(error.message).toContain("deployments[2].weight: expected a non-negative number")
    }))

  it.effect("rejects an empty deployment list", () =>
    Effect.gen(function*() {
      const error = yield* buildError({ deployments: [] })
      expect(error._tag).toBe("InvalidConfig")
      expect(issueAt(error.issues, "deployments").message).toBe("expected at least one deployment")
    }))

  it.effect("rejects an unknown provider name, listing the router's providers", () =>
    Effect.gen(function*() {
      const error = yield* buildError({
        deployments: [valid({ provider: "opneai" })],
        providers: { openai: fake, anthropic: fake }
      })
      const issue = issueAt(error.issues, "deployments[0].provider")
      expect(issue.message).toContain("openai, anthropic")
    }))

  it.effect("resolves provider names from `providers`", () =>
    Effect.gen(function*() {
      const router = yield* Router.Router
      expect(router.deployments[0].provider).toBe(fake)
      const reply = yield* Router.chat({ model: "g", messages: [{ role: "user", content: "hi" }] })
      expect(reply.route.group).toBe("g")
    }).pipe(
      Effect.provide(Router.layer({ deployments: [valid({ provider: "openai" })], providers: { openai: fake } }).pipe(
        Layer.provide(Router.defaults)
      ))
    ))

  it.effect("rejects a bad router timeout", () =>
    Effect.gen(function*() {
      const error = yield* buildError({ deployments: [valid()], timeout: "soon" })
      expect(error._tag).toBe("InvalidConfig")
      expect(issueAt(error.issues, "timeout").message).toContain("expected a duration")
    }))

  it.effect("rejects a bad leaseMargin", () =>
    Effect.gen(function*() {
      const error = yield* buildError({ deployments: [valid()], leaseMargin: "soon" })
      expect(error._tag).toBe("InvalidConfig")
      expect(issueAt(error.issues, "leaseMargin").message).toContain("expected a duration")
    }))

  it.effect("rejects duplicate ids", () =>
    Effect.gen(function*() {
      const error = yield* buildError({ deployments: [valid({ id: "x" }), valid({ id: "x", model: "m2" })] })
      issueAt(error.issues, "deployments[1].id")
    }))

  describe("fallbacks", () => {
    const deployments = [valid({ group: "a" }), valid({ group: "b" }), valid({ group: "c" })]

    it.effect("a cycle a -> b -> a is rejected at build, naming the cycle", () =>
      Effect.gen(function*() {
        const error = yield* buildError({ deployments }, Fallback.layer({ fallbacks: { a: ["b"], b: ["a"] } }))
        expect(error._tag).toBe("InvalidConfig")
        expect(error.message).toMatch(/cycle/)
        expect(error.message).toMatch(/a -> b -> a|b -> a -> b/)
      }))

    it.effect("a longer cycle a -> b -> c -> a is rejected", () =>
      Effect.gen(function*() {
        const error = yield* buildError({ deployments }, Fallback.layer({ fallbacks: { a: ["b"], b: ["c"], c: ["a"] } }))
        expect(error.message).toMatch(/cycle/)
        for (const g of ["a", "b", "c"]) expect(error.message).toContain(g)
      }))

    it.effect("a chain without a cycle is accepted", () =>
      Effect.gen(function*() {
        const router = yield* Router.Router
        expect(router.groups).toEqual(["a", "b", "c"])
      }).pipe(
        Effect.provide(
          Router.layer({ deployments }).pipe(
            Layer.provide(Fallback.layer({ fallbacks: { a: ["b", "c"], b: ["c"] } })),
            Layer.provide(Router.defaults)
          )
        )
      ))

    it.effect("a self-fallback is rejected", () =>
      Effect.gen(function*() {
        const error = yield* buildError({ deployments }, Fallback.layer({ fallbacks: { a: ["a"] } }))
        expect(issueAt(error.issues, "Fallback.fallbacks.a[0]").message).toContain("itself")
      }))

    it.effect("a fallback to an unknown group is rejected with its path", () =>
      Effect.gen(function*() {
        const error = yield* buildError({ deployments }, Fallback.layer({ fallbacks: { a: ["b", "zzz"] } }))
        const issue = issueAt(error.issues, "Fallback.fallbacks.a[1]")
        expect(issue.message).toContain("\"zzz\"")
      }))

    it.effect("an unknown group in other lists is rejected with its path", () =>
      Effect.gen(function*() {
        const error = yield* buildError(
          { deployments },
          Fallback.layer({ contextWindowFallbacks: { nope: ["a"] }, defaultFallbacks: ["b", "ghost"] })
        )
        issueAt(error.issues, "Fallback.contextWindowFallbacks.nope")
        issueAt(error.issues, "Fallback.defaultFallbacks[1]")
      }))

    it.effect("bad Fallback options are rejected with their path", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(Fallback.make({ maxDepth: 0 }))
        expect(error._tag).toBe("InvalidConfig")
        issueAt(error.issues, "Fallback.layer.maxDepth")
      }))
  })
})

describe("CostMeter.fromLiteLLM", () => {
  it("parses LiteLLM's format, skipping entries without token prices", () => {
    const result = CostMeter.fromLiteLLM({
      "gpt-4o-mini": {
        max_tokens: 16384,
        max_input_tokens: 128000,
        max_output_tokens: 16384,
        input_cost_per_token: 1.5e-7,
        output_cost_per_token: 6e-7,
        litellm_provider: "openai",
        mode: "chat",
        supports_function_calling: true,
        supports_vision: true
      },
      "anthropic/claude-3-5-haiku": {
        max_tokens: 8192,
        input_cost_per_token: 8e-7,
        output_cost_per_token: 4e-6,
        cache_creation_input_token_cost: 1e-6,
        litellm_provider: "anthropic",
        mode: "chat"
      },
      "dall-e-3": { mode: "image_generation", input_cost_per_pixel: 2.4414e-7, output_cost_per_pixel: 0, litellm_provider: "openai" },
      "half-priced": { input_cost_per_token: 1e-6, mode: "chat" }
    })
    if (Either.isLeft(result)) throw new Error(result.left.message)
    expect(result.right).toEqual({
      "gpt-4o-mini": { inputCostPerToken: 1.5e-7, outputCostPerToken: 6e-7 },
      "anthropic/claude-3-5-haiku": { inputCostPerToken: 8e-7, outputCostPerToken: 4e-6, cacheWriteCostPerToken: 1e-6 }
    })
  })

  it("accepts the real file's `sample_spec` entry (descriptive strings in numeric fields)", () => {
    // An excerpt of LiteLLM's model_prices_and_context_window.json as published: its first entry
    // documents the fields with strings.
    const result = CostMeter.fromLiteLLM({
      sample_spec: {
        max_tokens: "LEGACY parameter. set to max_output_tokens if provider specifies it. IF not set to max_input_tokens, if provider specifies it.",
        max_input_tokens: "max input tokens, if the provider specifies it. if not default to max_tokens",
        max_output_tokens: "max output tokens, if the provider specifies it. if not default to max_tokens",
        input_cost_per_token: 0.0,
        output_cost_per_token: 0.0,
        litellm_provider: "one of https://docs.litellm.ai/docs/providers",
        mode: "one of: chat, embedding, completion, image_generation, audio_transcription, audio_speech, image_generation, moderation, rerank",
        supports_function_calling: true,
        deprecation_date: "date when the model becomes deprecated in the format YYYY-MM-DD"
      },
      "gpt-4o": { max_input_tokens: 128000, input_cost_per_token: 2.5e-6, output_cost_per_token: 1e-5, mode: "chat" }
    })
    if (Either.isLeft(result)) throw new Error(`rejected LiteLLM's own file:\n${result.left.message}`)
    expect(result.right["gpt-4o"]).toEqual({ inputCostPerToken: 2.5e-6, outputCostPerToken: 1e-5 })
  })

  it("rejects a negative price with its path", () => {
    const result = CostMeter.fromLiteLLM({
      good: { input_cost_per_token: 1e-6, output_cost_per_token: 2e-6 },
      "my-model": { input_cost_per_token: -1e-6, output_cost_per_token: 2e-6 }
    })
    if (Either.isRight(result)) throw new Error("expected a negative price to be rejected")
    expect(result.left._tag).toBe("InvalidConfig")
    expect(issueAt(result.left.issues, "prices.my-model.input_cost_per_token").message).toBe("expected a non-negative number")
  })

  it("rejects something that is not a table", () => {
    expect(Either.isLeft(CostMeter.fromLiteLLM([1, 2]))).toBe(true)
    expect(Either.isLeft(CostMeter.fromLiteLLM("nope"))).toBe(true)
  })

  it.effect("CostMeter.layer rejects a bad price with its path", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        CostMeter.make({ prices: { m: { inputCostPerToken: -1, outputCostPerToken: 0 } } }).pipe(
          Effect.provide(RouterState.memory())
        )
      )
      expect(error._tag).toBe("InvalidConfig")
      expect(error.issues.some((i) => i.path.startsWith("CostMeter.layer.prices.m"))).toBe(true)
    }))
})

describe("option validation", () => {
  it.effect("Cooldown.layer({ allowedFails: 0 })", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(Cooldown.layer({ allowedFails: 0 }).pipe(Layer.provide(RouterState.memory()))).pipe(Effect.scoped))
      expect(error._tag).toBe("InvalidConfig")
      expect(issueAt(error.issues, "Cooldown.layer.allowedFails").message).toBe("expected a positive integer")
      expect(error.message).toContain("Cooldown.layer.allowedFails")
    }))

  it.effect("Cooldown.layer rejects other bad options", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Cooldown.make({ failureRatio: 1.5, minRequests: 0, duration: "soon" as any, maxDuration: 0 }).pipe(Effect.provide(RouterState.memory()))
      )
      const paths = error.issues.map((i) => i.path)
      expect(paths).toEqual(expect.arrayContaining([
        "Cooldown.layer.failureRatio",
        "Cooldown.layer.minRequests",
        "Cooldown.layer.duration",
        "Cooldown.layer.maxDuration"
      ]))
    }))

  it.effect("Cooldown.layer rejects a maxDuration shorter than duration", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Cooldown.make({ duration: "10 seconds", maxDuration: "5 seconds" }).pipe(Effect.provide(RouterState.memory()))
      )
      issueAt(error.issues, "Cooldown.layer.maxDuration")
    }))

  it.effect("the router fails to build over an invalid Cooldown layer", () =>
    Effect.gen(function*() {
      const error = yield* buildError({ deployments: [valid()] }, Cooldown.layer({ allowedFails: 0 }))
      expect(error._tag).toBe("InvalidConfig")
      issueAt(error.issues, "Cooldown.layer.allowedFails")
    }))

  it.effect("RetrySchedule.layer({ retries: -1 })", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(RetrySchedule.layer({ retries: -1 })).pipe(Effect.scoped))
      expect(error._tag).toBe("InvalidConfig")
      issueAt(error.issues, "RetrySchedule.layer.retries")
      expect(error.message).toContain("RetrySchedule.layer.retries")
    }))

  it.effect("RetrySchedule.layer rejects other bad options", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        RetrySchedule.make({ retries: 1.5, factor: 0.5, base: "soon" as any, retryOn: ["Nope" as any] })
      )
      const paths = error.issues.map((i) => i.path)
      expect(paths).toContain("RetrySchedule.layer.retries")
      expect(paths).toContain("RetrySchedule.layer.factor")
      expect(paths).toContain("RetrySchedule.layer.base")
      expect(paths.some((p) => p.startsWith("RetrySchedule.layer.retryOn"))).toBe(true)
    }))

  it.effect("RouterState.memory({ window: 0 })", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(RouterState.memory({ window: 0 })).pipe(Effect.scoped))
      expect(error._tag).toBe("InvalidConfig")
      expect(issueAt(error.issues, "RouterState.memory.window").message).toBe("expected a positive duration")
    }))

  it.effect("RouterState.memory rejects a bad latencyAlpha", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(RouterState.makeMemory({ latencyAlpha: 0 }))
      issueAt(error.issues, "RouterState.memory.latencyAlpha")
    }))

  it.effect("unknown option keys are rejected", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(RetrySchedule.make({ retires: 3 } as any))
      issueAt(error.issues, "RetrySchedule.layer.retires")
    }))
})
