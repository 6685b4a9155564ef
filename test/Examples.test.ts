/**
 * Every `@example` of the public modules' JSDoc compiles, as a module of a user's project,
 * against the built package (see test/consumer/examples.ts for the conventions), and every
 * export has a `@category`.
 *
 * Runs with `npm test` (which builds first). To run it alone:
 *
 *   npm run check:examples                                   (builds, then runs this file)
 *   npx vitest run test/Examples.test.ts                     (after `npm run build`)
 *
 * (add `-t "@example"` or `-t "@category"` to run one of the two checks).
 */
import * as path from "node:path"
import ts from "typescript"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Example, exampleFile, type Modules, publicModules, readModules, uncategorized } from "./consumer/examples.js"
import { compile, compilerOptions, type ConsumerProject, createConsumerProject, repo } from "./consumer/project.js"

interface Failure {
  readonly example: Example
  /** `src/X.ts:LINE: TSnnnn message`, one per diagnostic, in order. */
  readonly errors: ReadonlyArray<string>
}

describe("JSDoc", () => {
  let project: ConsumerProject
  let modules: Modules
  let failures: ReadonlyArray<Failure>

  beforeAll(() => {
    modules = readModules(repo, publicModules(repo))
    project = createConsumerProject("effect-llm-router-examples", ["@effect/platform-node"])
    const byFile = new Map<string, Example>()
    for (const example of modules.examples) {
      // `export {}`: an example without imports is still a module, with a scope of its own.
      byFile.set(project.write(exampleFile(example), `${example.code}\nexport {}\n`), example)
    }
    const { diagnostics } = compile([...byFile.keys()], compilerOptions(project.dir, {
      declaration: false,
      noEmit: true,
      noUnusedLocals: false,
      noUnusedParameters: false
    }))
    const errors = new Map<Example, Array<string>>()
    for (const d of diagnostics) {
      const example = d.file === undefined ? undefined : byFile.get(path.resolve(d.file.fileName))
      if (example === undefined) throw new Error(ts.flattenDiagnosticMessageText(d.messageText, "\n"))
      const line = d.file!.getLineAndCharacterOfPosition(d.start ?? 0).line
      const at = example.lines[Math.min(line, example.lines.length - 1)] ?? example.line
      const message = ts.flattenDiagnosticMessageText(d.messageText, " ").replace(/\s+/g, " ")
      errors.set(example, [...(errors.get(example) ?? []), `${example.file}:${at}: TS${d.code} ${message}`])
    }
    failures = modules.examples.flatMap((example) => {
      const list = errors.get(example)
      return list === undefined ? [] : [{ example, errors: list }]
    })
  }, 120_000)

  afterAll(() => project?.remove())

  it("every @example compiles against the built package", () => {
    const report = failures.map(({ example, errors }) =>
      `${example.file}:${example.line} ${example.name}\n${errors.map((e) => `    ${e}`).join("\n")}`
    )
    if (report.length > 0) {
      throw new Error(`${failures.length} of ${modules.examples.length} examples fail to compile:\n\n${report.join("\n")}`)
    }
    expect(modules.examples.length).toBeGreaterThan(0)
  })

  it("every export has a @category", () => {
    const missing = uncategorized(modules.exports)
    if (missing.length > 0) {
      throw new Error(
        `${missing.length} exports have no @category:\n` +
          missing.map((e) => `  ${e.file}:${e.line} ${e.name}${e.reexport ? " (re-export)" : ""}`).join("\n")
      )
    }
  })
})
