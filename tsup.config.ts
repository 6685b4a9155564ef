/**
 * Build: one JS entry (ESM `.js` + CJS `.cjs`) per subpath of package.json "exports", code split
 * into shared chunks in both formats (one copy of every module, whatever subpaths an app loads),
 * and declarations emitted by `tsc` file by file (`.d.ts` for `import`, `.d.cts` for `require`).
 *
 * Why not tsup's `dts: true`: rollup-plugin-dts bundles the declarations and turns each
 * `export * as X from "./X.js"` into a synthesized `declare namespace X { export { type X_A as A } }`
 * over `type X_A = A` aliases: a schema such as `Provider.ChatRequest` then loses its value side
 * (`Schema.decodeUnknown(Provider.ChatRequest)` fails to type-check), and the aliased interfaces
 * and classes are local declarations of a hashed chunk that a consumer's declaration emit cannot
 * name (TS4023 / TS2742 on `export const RouterLive = Router.layer(...)`). With one declaration
 * file per module, and a subpath export for every public module (as Effect's own packages do),
 * every public type is nameable as `import("effect-llm-router/<Module>").<Name>`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import ts from "typescript"
import { defineConfig } from "tsup"

interface Conditions {
  readonly import: { readonly types: string; readonly default: string }
  readonly require: { readonly types: string; readonly default: string }
}

const pkg = JSON.parse(fs.readFileSync("package.json", "utf8")) as {
  readonly exports: Record<string, Conditions | string>
}

/** `{ "providers/Anthropic": "src/providers/Anthropic.ts", ... }` from the "exports" targets. */
const entry: Record<string, string> = {}
for (const target of Object.values(pkg.exports)) {
  if (typeof target === "string") continue
  const name = target.import.default.replace(/^\.\/dist\//, "").replace(/\.js$/, "")
  entry[name] = `src/${name}.ts`
}

/** `"./x.js"` → `"./x.cjs"` in every import, export and `import("...")` type of a declaration file. */
const toCts = (fileName: string, text: string): string => {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true)
  const literals: Array<ts.StringLiteral> = []
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier !== undefined) {
      literals.push(node.moduleSpecifier as ts.StringLiteral)
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      literals.push(node.argument.literal as ts.StringLiteral)
    } else if (ts.isExternalModuleReference(node) && ts.isStringLiteral(node.expression)) {
      literals.push(node.expression)
    } else if (ts.isModuleDeclaration(node) && ts.isStringLiteral(node.name)) {
      literals.push(node.name)
    }
    ts.forEachChild(node, visit)
  }
  visit(source)
  let out = text
  for (const literal of literals.sort((a, b) => b.getStart() - a.getStart())) {
    if (!/^\.\.?\/.*\.js$/.test(literal.text)) continue
    out = out.slice(0, literal.getStart() + 1) + literal.text.replace(/\.js$/, ".cjs") + out.slice(literal.getEnd() - 1)
  }
  return out.replace(/\/\/# sourceMappingURL=(\S+)\.d\.ts\.map\s*$/, "//# sourceMappingURL=$1.d.cts.map\n")
}

/** Emits dist/**\/*.d.ts and their .d.cts twins with tsconfig.build.json; throws on any error. */
const emitDeclarations = (): void => {
  const started = Date.now()
  const configFile = ts.readConfigFile("tsconfig.build.json", ts.sys.readFile)
  if (configFile.error) throw new Error(ts.formatDiagnostic(configFile.error, formatHost))
  const config = ts.parseJsonConfigFileContent(configFile.config, ts.sys, process.cwd())
  const program = ts.createProgram(config.fileNames, config.options)
  const written: Array<string> = []
  const emit = program.emit(undefined, (fileName, text) => {
    fs.mkdirSync(path.dirname(fileName), { recursive: true })
    fs.writeFileSync(fileName, text)
    written.push(fileName)
    if (fileName.endsWith(".d.ts")) {
      fs.writeFileSync(fileName.replace(/\.d\.ts$/, ".d.cts"), toCts(fileName, text))
    } else if (fileName.endsWith(".d.ts.map")) {
      const map = JSON.parse(text) as { file: string }
      map.file = map.file.replace(/\.d\.ts$/, ".d.cts")
      fs.writeFileSync(fileName.replace(/\.d\.ts\.map$/, ".d.cts.map"), JSON.stringify(map))
    }
  }, undefined, true)
  const diagnostics = [...ts.getPreEmitDiagnostics(program), ...emit.diagnostics]
  if (diagnostics.length > 0) {
    throw new Error(`declarations: ${diagnostics.length} error(s)\n${ts.formatDiagnostics(diagnostics, formatHost)}`)
  }
  const count = written.filter((f) => f.endsWith(".d.ts")).length
  console.log(`DTS ${count} .d.ts + ${count} .d.cts files (tsc) in ${Date.now() - started}ms`)
}

const formatHost: ts.FormatDiagnosticsHost = {
  getCanonicalFileName: (f) => f,
  getCurrentDirectory: () => process.cwd(),
  getNewLine: () => "\n"
}

export default defineConfig((cli) => ({
  entry,
  format: ["esm", "cjs"],
  // Shared chunks in CJS too: without them every .cjs entry carries its own copy of the modules
  // it uses (two `InvalidConfig` classes for `effect-llm-router` and `effect-llm-router/Errors`).
  splitting: true,
  dts: false,
  sourcemap: true,
  clean: true,
  target: "node20",
  treeshake: true,
  onSuccess: async () => {
    try {
      emitDeclarations()
    } catch (error) {
      console.error(error instanceof Error ? error.message : error)
      // tsup only logs a failed onSuccess: the build must fail (a watch goes on).
      if (!cli.watch) process.exit(1)
    }
  }
}))
