/**
 * The default fallback policy behind `Fallback.make`: its options, the lists per group and error
 * kind, and their checks.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { FallbackKind, InvalidConfig } from "../Errors.js"
import type { Options, Service } from "../Fallback.js"
import { NonEmptyString, PositiveInt, validateConfig } from "./schemas.js"

const Lists = Schema.Record({ key: Schema.String, value: Schema.Array(NonEmptyString) })
const OptionsSchema = Schema.Struct({
  fallbacks: Schema.optional(Lists),
  contextWindowFallbacks: Schema.optional(Lists),
  contentPolicyFallbacks: Schema.optional(Lists),
  defaultFallbacks: Schema.optional(Schema.Array(NonEmptyString)),
  maxDepth: Schema.optional(PositiveInt)
})
const validate = validateConfig(OptionsSchema, "Fallback.layer")

const empty: ReadonlyArray<string> = []
const own = <A>(record: Readonly<Record<string, A>> | undefined, key: string): A | undefined =>
  record !== undefined && Object.prototype.hasOwnProperty.call(record, key) ? record[key] : undefined

export const make = (input: Options = {}): Effect.Effect<Service, InvalidConfig> =>
  Effect.map(validate(input), (options) => {
    const lists = {
      fallbacks: options.fallbacks ?? {},
      contextWindowFallbacks: options.contextWindowFallbacks ?? {},
      contentPolicyFallbacks: options.contentPolicyFallbacks ?? {}
    }
    const defaults = options.defaultFallbacks ?? empty

    const groupsFor = (group: string, kind: FallbackKind): ReadonlyArray<string> => {
      if (kind === "none") return empty
      const specific = kind === "context_window"
        ? own(lists.contextWindowFallbacks, group)
        : kind === "content_policy"
        ? own(lists.contentPolicyFallbacks, group)
        : undefined
      return specific ?? own(lists.fallbacks, group) ?? defaults
    }

    const check = (groups: ReadonlyArray<string>) => {
      const known = new Set(groups)
      const issues: Array<{ path: string; message: string }> = []
      const unknown = (path: string, name: string) =>
        issues.push({ path, message: `unknown model group "${name}"; known: ${groups.join(", ")}` })
      const edges = new Map<string, Set<string>>()
      for (const [listName, record] of Object.entries(lists)) {
        for (const [from, targets] of Object.entries(record)) {
          if (!known.has(from)) unknown(`Fallback.${listName}.${from}`, from)
          targets.forEach((to, i) => {
            if (!known.has(to)) unknown(`Fallback.${listName}.${from}[${i}]`, to)
            if (to === from) issues.push({ path: `Fallback.${listName}.${from}[${i}]`, message: "a group cannot fall back to itself" })
            let set = edges.get(from)
            if (set === undefined) edges.set(from, set = new Set())
            set.add(to)
          })
        }
      }
      defaults.forEach((to, i) => {
        if (!known.has(to)) unknown(`Fallback.defaultFallbacks[${i}]`, to)
      })
      // Depth-first search for a cycle among the per-group lists (self-loops reported above).
      const color = new Map<string, "grey" | "black">()
      const stack: Array<string> = []
      let cycle: Array<string> | undefined
      const visit = (node: string): void => {
        if (cycle !== undefined) return
        color.set(node, "grey")
        stack.push(node)
        for (const next of edges.get(node) ?? []) {
          if (next === node) continue
          const c = color.get(next)
          if (c === "grey") {
            cycle = [...stack.slice(stack.indexOf(next)), next]
            return
          }
          if (c === undefined) visit(next)
          if (cycle !== undefined) return
        }
        stack.pop()
        color.set(node, "black")
      }
      for (const node of edges.keys()) if (!color.has(node)) visit(node)
      if (cycle !== undefined) issues.push({ path: "Fallback", message: `fallback cycle: ${cycle.join(" -> ")}` })
      return issues
    }

    return { groupsFor, maxDepth: options.maxDepth ?? 3, check }
  })
