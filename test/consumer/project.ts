/**
 * A throwaway consumer project that sees the package the way a user's install does.
 *
 * - The package: `npm pack` of this repo (so only what "files" ships, and whatever dist/ holds:
 *   build first), extracted into `<tmp>/node_modules/effect-llm-router`, exactly where
 *   `npm install effect-llm-router` would put it. It is resolved by name, through its
 *   package.json "exports", with the `import` or `require` condition per file.
 * - Its peer dependencies (and @types/node): symlinks to this repo's node_modules, the versions
 *   package-lock.json installed. No registry, no network, no second copy of `effect`: the package
 *   and the consumer resolve the same `effect` module, as they would under npm's hoisting.
 *
 * This costs about a second (npm pack + tar), against 10 to 30 for an `npm install` of the
 * tarball, which would also need the registry or a warm cache for the peers.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import ts from "typescript"

export const repo = fileURLToPath(new URL("../..", import.meta.url))
export const fixture = fileURLToPath(new URL("fixture", import.meta.url))

export interface ConsumerProject {
  readonly dir: string
  /** The package as installed: `<dir>/node_modules/effect-llm-router`. */
  readonly packageDir: string
  /** The paths npm packed, relative to the package root. */
  readonly packedFiles: ReadonlyArray<string>
  readonly write: (file: string, text: string) => string
  readonly remove: () => void
}

/** Fails with a clear message when dist/ is missing; warns when src/ changed after the build. */
export const assertBuilt = (): void => {
  const built = path.join(repo, "dist", "index.d.ts")
  if (!fs.existsSync(built)) {
    throw new Error("dist/ is not built: run `npm run build` (or `npm test`, which builds first)")
  }
  const builtAt = fs.statSync(built).mtimeMs
  const newer = fs.readdirSync(path.join(repo, "src"), { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts") && fs.statSync(path.join(repo, "src", f)).mtimeMs > builtAt)
  if (newer.length > 0) {
    console.warn(`consumer tests: dist/ is older than src/${newer[0]}; run \`npm run build\` to test the current sources`)
  }
}

/**
 * `links`: more packages of this repo's node_modules to install beside the peers (say
 * `@effect/platform-node`, which the docs' examples import, as users on Node do).
 */
export const createConsumerProject = (prefix: string, links: ReadonlyArray<string> = []): ConsumerProject => {
  assertBuilt()
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`)))
  const pkg = JSON.parse(fs.readFileSync(path.join(repo, "package.json"), "utf8")) as {
    readonly name: string
    readonly dependencies?: Record<string, string>
    readonly peerDependencies?: Record<string, string>
  }
  const packed = JSON.parse(
    execFileSync("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", dir], {
      cwd: repo,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"]
    })
  ) as ReadonlyArray<{ readonly filename: string; readonly files: ReadonlyArray<{ readonly path: string }> }>
  const packageDir = path.join(dir, "node_modules", pkg.name)
  fs.mkdirSync(packageDir, { recursive: true })
  execFileSync("tar", ["-xzf", path.join(dir, packed[0]!.filename), "-C", packageDir, "--strip-components=1"])
  for (const name of [...Object.keys(pkg.peerDependencies ?? {}), ...Object.keys(pkg.dependencies ?? {}), "@types/node", ...links]) {
    const link = path.join(dir, "node_modules", name)
    fs.mkdirSync(path.dirname(link), { recursive: true })
    fs.symlinkSync(path.join(repo, "node_modules", name), link, "junction")
  }
  for (const file of fs.readdirSync(fixture)) fs.copyFileSync(path.join(fixture, file), path.join(dir, file))
  return {
    dir,
    packageDir,
    packedFiles: packed[0]!.files.map((f) => f.path),
    write: (file, text) => {
      const target = path.join(dir, file)
      fs.mkdirSync(path.dirname(target), { recursive: true })
      fs.writeFileSync(target, text)
      return target
    },
    remove: () => fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** The fixture's tsconfig.json, with `overrides`, for the given root files of the project. */
export const compilerOptions = (dir: string, overrides: ts.CompilerOptions = {}): ts.CompilerOptions => {
  const config = ts.readConfigFile(path.join(dir, "tsconfig.json"), ts.sys.readFile)
  const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, dir)
  return { ...parsed.options, ...overrides }
}

/**
 * Type-checks `rootNames` and emits them (JS and, with `declaration`, .d.ts: declaration emit is
 * where "cannot be named" errors come from, and `noEmit` would hide them). Returns every
 * diagnostic.
 */
export const compile = (
  rootNames: ReadonlyArray<string>,
  options: ts.CompilerOptions
): { readonly program: ts.Program; readonly diagnostics: ReadonlyArray<ts.Diagnostic> } => {
  const program = ts.createProgram(rootNames, options)
  const emitted = program.emit()
  return {
    program,
    diagnostics: ts.sortAndDeduplicateDiagnostics([...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics])
  }
}

export const formatDiagnostics = (dir: string, diagnostics: ReadonlyArray<ts.Diagnostic>): string =>
  ts.formatDiagnostics(diagnostics, {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: () => dir,
    getNewLine: () => "\n"
  })
