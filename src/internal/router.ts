/**
 * `Router.make`: validates the config, builds the router's engine (deployments by group and id,
 * what each provider is called with, the classification table) and serves chat, stream and
 * embed through the driver (`driver.ts`), each request under the policies of its context; its
 * health checks, when configured, run in the scope it is built in (`health.ts`).
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { Cooldown } from "../Cooldown.js"
import { CostMeter } from "../CostMeter.js"
import { type Deployment, fromConfig } from "../Deployment.js"
import {
  classification as defaultClassification,
  type ClassificationOverrides,
  type ClassificationTable,
  ContentPolicy,
  type ErrorTag,
  InvalidConfig,
  type ProviderError
} from "../Errors.js"
import { Fallback } from "../Fallback.js"
import { Hedge } from "../Hedge.js"
import type { ChatRequest, ChatResponse, RateLimitInfo, Target, Usage } from "../Provider.js"
import { RetrySchedule } from "../RetrySchedule.js"
import type { Config, Service } from "../Router.js"
import { RouterState } from "../RouterState.js"
import { Selector } from "../Selector.js"
import * as Attempt from "./attempt.js"
import * as Driver from "./driver.js"
import * as Health from "./health.js"
import type { Engine } from "./engine.js"
import { traitsOf } from "./filters.js"
import { costOf, meter, type RequestContext, routeInfo, start } from "./request.js"
import { PositiveDuration, validateConfig } from "./schemas.js"
import { storeOf, viewOf } from "./state.js"
import * as RoutedStream from "./stream.js"

const validateTimeout = validateConfig(Schema.UndefinedOr(PositiveDuration), "timeout")
const validateFlag = validateConfig(Schema.UndefinedOr(Schema.Boolean), "contentFilterIsError")
const validateLeaseMargin = validateConfig(Schema.UndefinedOr(PositiveDuration), "leaseMargin")
const defaultTimeout = Duration.minutes(10)

const errorTags = Object.keys(defaultClassification) as ReadonlyArray<ErrorTag>
const oneOf = <const L extends ReadonlyArray<string>>(...literals: L) => Schema.Literal(...literals)
const ClassificationRow = Schema.Struct({
  retry: Schema.optional(oneOf("any", "elsewhere", "never")),
  cooldown: Schema.optional(oneOf("none", "count", "immediate", "long")),
  fallback: Schema.optional(oneOf("generic", "context_window", "content_policy", "none"))
})
const validateClassification = validateConfig(Schema.Record({ key: Schema.String, value: ClassificationRow }), "classification")

/** The default table with a router's overrides laid over it, row by row. */
const resolveClassification = (overrides: ClassificationOverrides | undefined) =>
  overrides === undefined
    ? Effect.succeed(defaultClassification)
    : Effect.flatMap(validateClassification(overrides), (rows): Effect.Effect<ClassificationTable, InvalidConfig> => {
      const unknown = Object.keys(rows).filter((tag) => !errorTags.includes(tag as ErrorTag))
      if (unknown.length > 0) {
        return Effect.fail(InvalidConfig.fromIssues(unknown.map((tag) => ({
          path: `classification.${tag}`,
          message: `unknown error tag; known: ${errorTags.join(", ")}`
        }))))
      }
      const table: Record<string, ClassificationTable[ErrorTag]> = { ...defaultClassification }
      for (const [tag, row] of Object.entries(rows)) {
        const base = table[tag]
        table[tag] = {
          retry: row.retry ?? base.retry,
          cooldown: row.cooldown ?? base.cooldown,
          fallback: row.fallback ?? base.fallback
        }
      }
      return Effect.succeed(table as ClassificationTable)
    })

/** A reply that finished with `content_filter`, as a `ContentPolicy` error (its usage is still paid). */
const refusedAsFiltered = (ctx: RequestContext, d: Deployment, response: ChatResponse): Effect.Effect<never, ProviderError> =>
  Effect.flatMap(meter(ctx, d, response.usage), (cost) => {
    ctx.otherCost += cost
    return Effect.fail(
      new ContentPolicy({ provider: d.provider.name, deploymentId: d.id, message: `${d.id} finished with content_filter` })
    )
  })

const isFiltered = (response: ChatResponse) => response.choices.some((choice) => choice.finish_reason === "content_filter")

export const make = (config: Config) =>
  Effect.gen(function*() {
    const deployments = yield* Either.match(fromConfig(config.deployments, config.providers ?? {}), {
      onLeft: (error) => Effect.fail(error),
      onRight: (ds) => Effect.succeed(ds)
    })
    const configuredTimeout = yield* validateTimeout(config.timeout)
    const healthCheck = yield* Health.settings(config.healthCheck)
    const contentFilterIsError = (yield* validateFlag(config.contentFilterIsError)) ?? false
    const leaseMargin = yield* validateLeaseMargin(config.leaseMargin)
    const leaseMarginMs = leaseMargin === undefined ? Attempt.leaseMarginMs : Duration.toMillis(leaseMargin)
    const table = yield* resolveClassification(config.classification)
    const selector = yield* Selector
    const retry = yield* RetrySchedule
    const cooldown = yield* Cooldown
    const fallback = yield* Fallback
    const costMeter = yield* CostMeter
    const state = yield* RouterState
    // A store that fails is served from a local view meanwhile (resilient.ts).
    const { degraded, store } = yield* viewOf(state)
    const hedge = Option.getOrUndefined(yield* Effect.serviceOption(Hedge))

    // Policies built by this package keep their state in a store of their own choosing; over
    // another store than the router's they would write where the router never reads.
    const strayStores = ([["Cooldown", cooldown], ["CostMeter", costMeter]] as const).filter(([, policy]) => {
      const store = storeOf.get(policy)
      return store !== undefined && store !== state
    })
    if (strayStores.length > 0) {
      return yield* Effect.fail(InvalidConfig.fromIssues(strayStores.map(([name]) => ({
        path: "RouterState",
        message: `${name} keeps its state in another RouterState than the router's, so the router would never see it. ` +
          "To use your own store, provide Router.policies and then your store (Router.defaults brings an in-memory store of its own)"
      }))))
    }

    const pools = new Map<string, Array<Deployment>>()
    const byId = new Map<string, Deployment>()
    for (const d of deployments) {
      byId.set(d.id, d)
      const pool = pools.get(d.group)
      if (pool === undefined) pools.set(d.group, [d])
      else pool.push(d)
    }
    const groups = Array.from(pools.keys())
    const issues = [...fallback.check(groups)]
    for (const group of Object.keys(retry.groups ?? {})) {
      if (!pools.has(group)) {
        issues.push({ path: `RetrySchedule.byGroup.${group}`, message: `unknown model group "${group}"; known: ${groups.join(", ")}` })
      }
    }
    const providerNames = new Set(deployments.map((d) => d.provider.name))
    for (const [i, { scope }] of (costMeter.budgets ?? []).entries()) {
      const unknown = scope === "total" || "tag" in scope
        ? undefined
        : "deployment" in scope
        ? byId.has(scope.deployment) ? undefined : `unknown deployment "${scope.deployment}"`
        : "group" in scope
        ? pools.has(scope.group) ? undefined : `unknown model group "${scope.group}"; known: ${groups.join(", ")}`
        : providerNames.has(scope.provider)
        ? undefined
        : `no deployment's provider is named "${scope.provider}"; known: ${[...providerNames].join(", ")}`
      if (unknown !== undefined) issues.push({ path: `CostMeter.budgets[${i}].scope`, message: unknown })
    }
    if (issues.length > 0) return yield* Effect.fail(InvalidConfig.fromIssues(issues))

    /**
     * Keeps the upstream's headroom; one that shows no requests (or tokens) left until its
     * window resets holds the deployment until then, as a retry-after would, instead of letting
     * the next calls earn their 429s.
     */
    const reportRateLimit = (d: Deployment, info: RateLimitInfo): Effect.Effect<void> => {
      const recorded = store.recordRateLimit(d, info)
      const resetMs = Math.max(
        info.remainingRequests === 0 ? info.resetRequestsMs ?? 0 : 0,
        info.remainingTokens === 0 ? info.resetTokensMs ?? 0 : 0
      )
      return resetMs <= 0 ? recorded : Effect.zipRight(recorded, Attempt.quietly(cooldown.onRetryAfter(d, resetMs)))
    }

    // Per deployment, by index: what its provider is called with (listening for rate-limit
    // headers), and the timeout the router enforces when the provider does not enforce
    // `target.timeout` itself.
    const targets: Array<Target> = []
    const raceTimeouts: Array<Duration.Duration | undefined> = []
    const leaseTtlMs = new Map<string, number>()
    for (const d of deployments) {
      const timeout = d.timeout ?? configuredTimeout
      targets[d.index] = { ...d.target, timeout, reportRateLimit: (info) => reportRateLimit(d, info) }
      raceTimeouts[d.index] = d.provider.enforcesTimeout === true ? undefined : timeout ?? defaultTimeout
      const ttl = Duration.toMillis(timeout ?? defaultTimeout) + leaseMarginMs
      leaseTtlMs.set(d.group, Math.max(leaseTtlMs.get(d.group) ?? 0, ttl))
    }

    const engine: Engine = {
      deployments,
      groups,
      pools,
      byId,
      targets,
      raceTimeouts,
      leaseTtlMs,
      leaseMarginMs,
      table,
      state: store,
      degraded,
      policies: { selector, retry, cooldown, fallback, meter: costMeter },
      hedge,
      maxWaitMs: retry.maxWait === undefined ? 60_000 : Duration.toMillis(retry.maxWait),
      contentFilterIsError,
      rated: new Set(deployments.filter((d) => d.tpm !== undefined).map((d) => d.group)),
      traits: traitsOf(pools)
    }

    const chat: Service["chat"] = (request, options) =>
      Effect.withFiberRuntime((fiber) => {
        const started = start(engine, fiber, request, options)
        if (Either.isLeft(started)) return Effect.fail(started.left)
        const ctx = started.right
        const invoke = (d: Deployment) => {
          const answer = d.provider.chat({ ...request, model: d.model }, Attempt.targetOf(ctx, d))
          return ctx.contentFilterIsError
            ? Effect.flatMap(answer, (response) => isFiltered(response) ? refusedAsFiltered(ctx, d, response) : Effect.succeed(response))
            : answer
        }
        return Effect.flatMap(
          Driver.run(
            ctx,
            "call",
            (group) => Attempt.call(ctx, group, { kind: "chat", group, request, attempt: ctx.groupAttempts }, invoke, (r) => r.usage),
            ([response, d]) => Attempt.outrun(ctx, d, response.usage)
          ),
          ([response, d]) => Effect.succeed({ ...response, route: routeInfo(ctx, d, response.usage, costOf(ctx, d, response.usage)) })
        )
      })

    const embed: Service["embed"] = (request, options) =>
      Effect.withFiberRuntime((fiber) => {
        const started = start(engine, fiber, request, options)
        if (Either.isLeft(started)) return Effect.fail(started.left)
        const ctx = started.right
        return Effect.flatMap(
          Driver.run(ctx, "call", (group) =>
            Attempt.call(
              ctx,
              group,
              { kind: "embed", group, request, attempt: ctx.groupAttempts },
              (d) => d.provider.embed({ ...request, model: d.model }, Attempt.targetOf(ctx, d)),
              (r) => r.usage
            ),
            ([response, d]) =>
              Attempt.outrun(
                ctx,
                d,
                response.usage === undefined ? undefined : { prompt_tokens: response.usage.prompt_tokens, completion_tokens: 0, total_tokens: response.usage.total_tokens }
              )
          ),
          ([response, d]) => {
            const usage: Usage | undefined = response.usage === undefined ? undefined : {
              prompt_tokens: response.usage.prompt_tokens,
              completion_tokens: 0,
              total_tokens: response.usage.total_tokens
            }
            return Effect.succeed({ ...response, route: routeInfo(ctx, d, usage, costOf(ctx, d, usage)) })
          }
        )
      })

    const stream: Service["stream"] = (request: ChatRequest, options) =>
      RoutedStream.routed((fiber) => start(engine, fiber, request, options), request)

    // Health checks run in the scope the router is built in (its layer's): closing it stops them.
    if (healthCheck !== undefined) yield* Health.start(engine, healthCheck)

    const service: Service = { chat, stream, embed, deployments, groups }
    return service
  })
