/**
 * The published package, as a user's project sees it: the built dist/ (run `npm run build`
 * first; `npm test` does), packed and installed by name in a temporary project (see
 * test/consumer/project.ts), type-checked with `declaration`, `strict` and
 * `exactOptionalPropertyTypes` under NodeNext, as ESM (.mts) and as CJS (.cts), then run with
 * node from the compiled .mjs and .cjs files.
 */
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { promisify } from "node:util"
import ts from "typescript"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { compile, compilerOptions, type ConsumerProject, createConsumerProject, formatDiagnostics, repo } from "./consumer/project.js"

interface Target {
  readonly import: { readonly types: string; readonly default: string }
  readonly require: { readonly types: string; readonly default: string }
}
const pkg = JSON.parse(fs.readFileSync(path.join(repo, "package.json"), "utf8")) as {
  readonly name: string
  readonly exports: Record<string, Target | string>
}
const subpaths = Object.entries(pkg.exports).flatMap(([subpath, target]) =>
  typeof target === "string" ? [] : [{ subpath, target, specifier: path.posix.join(pkg.name, subpath) }]
)

/** `export * as X from "./path.js"` of an entry: the public modules and their namespaces. */
const namespacesOf = (entry: string) =>
  [...fs.readFileSync(path.join(repo, "src", entry), "utf8").matchAll(/^export \* as (\w+) from "\.\/(.+)\.js"/gm)]
    .map(([, name, file]) => ({ name: name!, file: file! }))
const namespaces = [...namespacesOf("index.ts"), ...namespacesOf("testing.ts")]

/**
 * The README's example as a module of a user's project: its top-level `const`s exported, as a
 * user would export the layer (`export const RouterLive = ...`), so that declaration emit must
 * name every type in them.
 */
const readmeExample = (): string => {
  const readme = fs.readFileSync(path.join(repo, "README.md"), "utf8")
  const code = /^## Example\s+```ts\n([\s\S]*?)^```/m.exec(readme)?.[1]
  if (code === undefined) throw new Error("README.md: no ```ts block under ## Example")
  return code.replace(/^const /gm, "export const ")
}

/** Imports every subpath of "exports"; prints each one's runtime export names and identities. */
const exportsProbe = (): string =>
  [
    ...subpaths.map(({ specifier }, i) => `import * as M${i} from ${JSON.stringify(specifier)}`),
    `const modules: Record<string, Record<string, unknown>> = {`,
    ...subpaths.map(({ subpath }, i) => `  ${JSON.stringify(subpath)}: M${i},`),
    `}`,
    `const entries: Record<string, unknown> = { ...modules["."], ...modules["./testing"] }`,
    `const keys = (m: Record<string, unknown>) => Object.keys(m).filter((k) => k !== "default" && k !== "__esModule")`,
    `// The entries export namespaces (\`export * as X\`): their members count too.`,
    `const names = (m: Record<string, unknown>, entry: boolean) => keys(m).flatMap((k) => {`,
    `  const v = m[k]`,
    `  return entry && typeof v === "object" && v !== null ? [k, ...keys(v as Record<string, unknown>).map((kk) => \`\${k}.\${kk}\`)] : [k]`,
    `}).sort()`,
    `console.log(JSON.stringify(Object.fromEntries(Object.entries(modules).map(([subpath, m]) => {`,
    `  const namespace = entries[subpath.slice(2)] as Record<string, unknown> | undefined`,
    `  const same = namespace === undefined ? null : keys(m).sort().join() === keys(namespace).sort().join() && keys(m).every((k) => m[k] === namespace[k])`,
    `  return [subpath, { names: names(m, subpath === "." || subpath === "./testing"), sameAsNamespace: same }]`,
    `}))))`,
    `export {}`,
    ``
  ].join("\n")

/**
 * The names a module's declarations export as values (and, for a namespace, `Namespace.member`),
 * per module specifier imported by `file`.
 */
const declaredValues = (program: ts.Program, file: string): Record<string, ReadonlyArray<string>> => {
  const checker = program.getTypeChecker()
  const values = (module: ts.Symbol, prefix: string, depth: number): Array<string> =>
    checker.getExportsOfModule(module).flatMap((symbol) => {
      if (symbol.declarations?.some((d) => ts.isTypeOnlyImportOrExportDeclaration(d))) return []
      const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol
      if ((target.flags & ts.SymbolFlags.Value) === 0) return []
      const name = prefix + symbol.name
      return depth === 0 && target.flags & ts.SymbolFlags.Module ? [name, ...values(target, `${name}.`, 1)] : [name]
    })
  const result: Record<string, ReadonlyArray<string>> = {}
  for (const statement of program.getSourceFile(file)!.statements) {
    if (!ts.isImportDeclaration(statement) || !ts.isStringLiteral(statement.moduleSpecifier)) continue
    const module = checker.getSymbolAtLocation(statement.moduleSpecifier)
    if (module !== undefined) result[statement.moduleSpecifier.text] = values(module, "", 0).sort()
  }
  return result
}

/** node `file`: its stdout, or what it failed with. */
const run = (project: ConsumerProject, file: string): Promise<string> =>
  promisify(execFile)(process.execPath, [file], { cwd: project.dir, timeout: 30_000 }).then(
    ({ stdout }) => stdout.trim(),
    (error: { stderr?: string; message: string }) => `node ${file} failed: ${error.stderr || error.message}`
  )

describe("the package, installed in a consumer project", () => {
  let project: ConsumerProject
  let diagnostics = ""
  let declared: Record<"mts" | "cts", Record<string, ReadonlyArray<string>>>
  let outputs: Record<string, string>

  beforeAll(async () => {
    project = createConsumerProject("effect-llm-router-consumer")
    const roots = ["mts", "cts"].flatMap((ext) => [
      project.write(`readme.${ext}`, readmeExample()),
      project.write(`smoke.${ext}`, fs.readFileSync(path.join(project.dir, "smoke.mts"), "utf8")),
      project.write(`exports.${ext}`, exportsProbe())
    ])
    const compiled = compile(roots, compilerOptions(project.dir))
    diagnostics = formatDiagnostics(project.dir, compiled.diagnostics)
    declared = {
      mts: declaredValues(compiled.program, path.join(project.dir, "exports.mts")),
      cts: declaredValues(compiled.program, path.join(project.dir, "exports.cts"))
    }
    const files = ["readme", "smoke", "exports"].flatMap((name) => [`out/${name}.mjs`, `out/${name}.cjs`])
    outputs = Object.fromEntries(
      await Promise.all(
        files.map(async (file) => [file, fs.existsSync(path.join(project.dir, file)) ? await run(project, file) : "not emitted"])
      )
    )
  }, 120_000)

  afterAll(() => project?.remove())

  it("has a subpath export for every public module, and npm packs every file the exports point to", () => {
    for (const { name, file } of namespaces) {
      const target = pkg.exports[`./${name}`]
      expect(target, `package.json exports["./${name}"] (for ${name} in src/index.ts or src/testing.ts)`).toEqual({
        import: { types: `./dist/${file}.d.ts`, default: `./dist/${file}.js` },
        require: { types: `./dist/${file}.d.cts`, default: `./dist/${file}.cjs` }
      })
    }
    const missing = subpaths
      .flatMap(({ target }) => [target.import.types, target.import.default, target.require.types, target.require.default])
      .map((file) => file.replace(/^\.\//, ""))
      .filter((file) => !project.packedFiles.includes(file))
    expect(missing).toEqual([])
  })

  it("README's install lines pin the ranges package.json peers on (npm's latest `effect` is Effect 4)", () => {
    const readme = fs.readFileSync(path.join(repo, "README.md"), "utf8")
    const install = /^## Install\s[\s\S]*?```sh\n([\s\S]*?)^```/m.exec(readme)?.[1] ?? ""
    const full = JSON.parse(fs.readFileSync(path.join(repo, "package.json"), "utf8")) as {
      readonly peerDependencies: Record<string, string>
      readonly devDependencies: Record<string, string>
    }
    const ranges = { ...full.peerDependencies, "@effect/platform-node": full.devDependencies["@effect/platform-node"]! }
    for (const [name, range] of Object.entries(ranges)) {
      const pinned = new RegExp(`(?:^|\\s)${name.replace("/", "\\/")}@(\\S+)`, "m").exec(install)?.[1]
      expect(pinned !== undefined && (range === pinned || range.startsWith(`${pinned}.`)), `README install: ${name}@${pinned} for ${range}`).toBe(true)
    }
  })

  it("type-checks by name with declaration emit, as ESM and as CJS: the README example (exported), schemas as values, every subpath", () => {
    expect(diagnostics).toBe("")
  })

  it("runs the README example from the ESM and the CJS build", () => {
    expect(outputs["out/readme.mjs"]).toMatch(/^hello [abc] \d/)
    expect(outputs["out/readme.cjs"]).toMatch(/^hello [abc] \d/)
  })

  it("runs a failover with the testing entry's fake, schema decoding and class identity, from ESM and CJS", () => {
    for (const file of ["out/smoke.mjs", "out/smoke.cjs"]) {
      expect(outputs[file], file).toMatch(/^\{/)
      expect(JSON.parse(outputs[file]!), file).toEqual({
        schema: true,
        reply: "hello from up",
        attempts: ["down:ServerError", "up:ok"],
        sameClass: true
      })
    }
  })

  it("exports at run time exactly the values its declarations export, one object per module across subpaths", () => {
    for (const [ext, out] of [["mts", "out/exports.mjs"], ["cts", "out/exports.cjs"]] as const) {
      expect(outputs[out], out).toMatch(/^\{/)
      const runtime = JSON.parse(outputs[out]!) as Record<string, { names: Array<string>; sameAsNamespace: boolean | null }>
      for (const { subpath, specifier } of subpaths) {
        expect(runtime[subpath]?.names, `${out}: runtime exports of ${specifier} vs its ${ext === "mts" ? ".d.ts" : ".d.cts"}`)
          .toEqual(declared[ext][specifier])
        expect(runtime[subpath]?.sameAsNamespace, `${out}: ${specifier} is the namespace of the entry`)
          .not.toBe(false)
      }
    }
  })
})
