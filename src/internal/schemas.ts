/**
 * Schemas shared by the config of every service, and the decoding that turns their parse errors
 * into `InvalidConfig` issues with paths.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { InvalidConfig } from "../Errors.js"

/** A duration given as a `Duration`, milliseconds or a string such as `"30 seconds"`. */
export const DurationInput = Schema.transformOrFail(
  Schema.Unknown,
  Schema.DurationFromSelf,
  {
    strict: true,
    decode: (u, _, ast) =>
      // Duration.decodeUnknown reads negative inputs as zero; a negative duration is a mistake.
      (typeof u === "number" && u < 0) || (typeof u === "string" && u.trim().startsWith("-"))
        ? ParseResult.fail(new ParseResult.Type(ast, u, "expected a non-negative duration"))
        : Option.match(Duration.decodeUnknown(u), {
        onNone: () =>
          ParseResult.fail(
            new ParseResult.Type(ast, u, "expected a duration (milliseconds, a Duration or a string such as \"30 seconds\")")
          ),
        onSome: (d) =>
          Duration.lessThan(d, Duration.zero)
            ? ParseResult.fail(new ParseResult.Type(ast, u, "expected a non-negative duration"))
            : ParseResult.succeed(d)
      }),
    encode: (d) => ParseResult.succeed(d)
  }
).annotations({ identifier: "DurationInput" })

export const PositiveDuration = DurationInput.pipe(
  Schema.filter((d) => Duration.greaterThan(d, Duration.zero), { message: () => "expected a positive duration" })
)

export const NonNegativeNumber = Schema.Number.pipe(
  Schema.nonNegative({ message: () => "expected a non-negative number" }),
  Schema.finite({ message: () => "expected a finite number" })
)

export const PositiveInt = Schema.Number.pipe(
  Schema.int({ message: () => "expected a positive integer" }),
  Schema.positive({ message: () => "expected a positive integer" })
)

export const NonEmptyString = Schema.String.pipe(Schema.minLength(1, { message: () => "expected a non-empty string" }))

const formatPath = (root: string, path: ReadonlyArray<PropertyKey>): string => {
  let out = root
  for (const key of path) out += typeof key === "number" ? `[${key}]` : out === "" ? String(key) : `.${String(key)}`
  return out === "" ? "(root)" : out
}

/**
 * The issues of a parse error, one per bad field, each with its path under `root`. An optional
 * field's union with `undefined` yields a second "Expected undefined" issue next to the real
 * one (at its path or, for a struct or array, under it): it is dropped; the members of a union
 * of literals are listed in one issue.
 */
export const formatIssues = (error: ParseResult.ParseError, root: string) => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => ({
    path: formatPath(root, issue.path),
    message: issue.message
  }))
  const kept = issues.filter((issue) =>
    !(issue.message.startsWith("Expected undefined, actual") &&
      issues.some((o) => o !== issue && (o.path === issue.path || o.path.startsWith(`${issue.path}.`) || o.path.startsWith(`${issue.path}[`))))
  )
  // A union of literals reports each member that did not match: one issue lists them all.
  const out: Array<{ readonly path: string; message: string }> = []
  const expectedAt = new Map<string, { readonly issue: { message: string }; readonly expected: Array<string>; readonly actual: string }>()
  for (const issue of kept) {
    const match = /^Expected (.+), actual (.+)$/s.exec(issue.message)
    const key = match === null ? undefined : `${issue.path}\u0000${match[2]}`
    const earlier = key === undefined ? undefined : expectedAt.get(key)
    if (match === null || key === undefined) {
      out.push({ ...issue })
    } else if (earlier === undefined) {
      const entry = { ...issue }
      out.push(entry)
      expectedAt.set(key, { issue: entry, expected: [match[1]], actual: match[2] })
    } else {
      earlier.expected.push(match[1])
      earlier.issue.message = `Expected one of ${earlier.expected.join(", ")}, actual ${earlier.actual}`
    }
  }
  return out
}

/**
 * Decodes config with every issue reported and unknown keys rejected, turning a parse error
 * into an `InvalidConfig` whose issues name each bad field's path under `root`.
 */
export const decodeConfig = <A, I>(schema: Schema.Schema<A, I, never>, root: string) => {
  const decode = Schema.decodeUnknownEither(schema, { errors: "all", onExcessProperty: "error" })
  return (input: unknown): Either.Either<A, InvalidConfig> =>
    Either.mapLeft(decode(input), (error) => InvalidConfig.fromIssues(formatIssues(error, root)))
}

/** `decodeConfig` as an Effect failing with `InvalidConfig`. */
export const validateConfig = <A, I>(schema: Schema.Schema<A, I, never>, root: string) => {
  const decode = decodeConfig(schema, root)
  return (input: unknown): Effect.Effect<A, InvalidConfig> => {
    const result = decode(input)
    return result._tag === "Right" ? Effect.succeed(result.right) : Effect.fail(result.left)
  }
}
