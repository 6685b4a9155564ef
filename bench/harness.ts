/**
 * Timing helpers shared by the benchmarks in this folder: batches of sequential calls timed
 * inside one Effect program, variants interleaved round-robin, median / p99 over the samples;
 * the library under test loaded from its build (dist/, rebuilt when older than src/) or from
 * src/; op counts; an in-process CPU profile summarised by function and source file.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as inspector from "node:inspector/promises"
import { SourceMap } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import { fileURLToPath, pathToFileURL } from "node:url"
import * as Effect from "effect/Effect"
import * as RuntimeFlags from "effect/RuntimeFlags"
import * as RuntimeFlagsPatch from "effect/RuntimeFlagsPatch"
import * as Supervisor from "effect/Supervisor"

/** One thing to time: an effect run once per call (build it with `Effect.suspend` so that each run constructs the call anew). */
export interface Variant {
  readonly key: string
  readonly label: string
  readonly call: Effect.Effect<unknown, unknown>
  /** The variant its `+median` / `+p99` / `+paired` columns are taken against (default: the table's). */
  readonly reference?: string | undefined
}

/** `k` sequential runs of `call`, with no per-iteration allocation of our own. */
export const repeat = (call: Effect.Effect<unknown, unknown>, k: number): Effect.Effect<void, unknown> =>
  Effect.suspend(() => {
    let i = 0
    return Effect.whileLoop({ while: () => i < k, body: () => call, step: () => void i++ })
  })

/** Microseconds per call over one batch of `k`, timed inside the Effect program. */
export const timedBatch = (call: Effect.Effect<unknown, unknown>, k: number): Effect.Effect<number, unknown> =>
  Effect.suspend(() => {
    const started = performance.now()
    return Effect.map(repeat(call, k), () => ((performance.now() - started) * 1000) / k)
  })

/** Median (mean of the middle two for an even count) or nearest-rank quantile of sorted values. */
export const quantile = (sorted: ReadonlyArray<number>, q: number): number => {
  if (sorted.length === 0) return NaN
  if (q === 0.5) {
    const mid = sorted.length >> 1
    return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
  }
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
}

export interface Stats {
  readonly median: number
  readonly p99: number
  readonly min: number
  readonly mean: number
}

export const statsOf = (samples: ReadonlyArray<number>): Stats => {
  const sorted = [...samples].sort((a, b) => a - b)
  return {
    median: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    min: sorted[0],
    mean: samples.reduce((a, b) => a + b, 0) / samples.length
  }
}

export interface Options {
  /** Rounds; each gives one sample per variant. */
  readonly samples: number
  /** Calls per sample. */
  readonly batch: number
  /** Calls per variant before timing, interleaved too. */
  readonly warmup: number
}

/**
 * Warms every variant up, then times `samples` rounds. A round runs one batch of every variant,
 * the starting variant rotating; each round is one `Effect.runPromise` (outside the timed
 * region), so a fresh fiber keeps the default scheduler's occasional `setTimeout(0)` yield
 * (after 2048 consecutive microtask yields of one fiber) out of the samples.
 *
 * Returns each variant's per-call samples, in round order (index i of every variant comes from
 * the same round, for paired differences), and the seconds spent timing.
 */
export const runInterleaved = async (
  variants: ReadonlyArray<Variant>,
  options: Options
): Promise<{ readonly samples: ReadonlyMap<string, ReadonlyArray<number>>; readonly seconds: number }> => {
  const warmBatch = 1_000
  for (let done = 0; done < options.warmup; done += warmBatch) {
    for (const v of variants) await Effect.runPromise(repeat(v.call, Math.min(warmBatch, options.warmup - done)))
  }
  const samples = new Map<string, Array<number>>(variants.map((v) => [v.key, []]))
  const n = variants.length
  const started = performance.now()
  for (let s = 0; s < options.samples; s++) {
    const round = await Effect.runPromise(
      Effect.suspend(() => {
        const out = new Array<number>(n)
        let j = 0
        return Effect.as(
          Effect.whileLoop({
            while: () => j < n,
            body: () => timedBatch(variants[(s + j) % n].call, options.batch),
            step: (us) => {
              out[(s + j) % n] = us
              j++
            }
          }),
          out
        )
      })
    )
    for (let i = 0; i < n; i++) samples.get(variants[i].key)!.push(round[i])
  }
  return { samples, seconds: (performance.now() - started) / 1000 }
}

/** Counts what the runtime does: primitive effects evaluated, fibers started, fiber suspensions. */
class Counter extends Supervisor.AbstractSupervisor<void> {
  ops = 0
  fibers = 0
  suspensions = 0
  readonly byOp: Map<string, number> | undefined
  readonly value = Effect.void
  constructor(byOp: boolean) {
    super()
    this.byOp = byOp ? new Map() : undefined
  }
  override onStart(): void {
    this.fibers++
  }
  override onEffect<A, E>(_fiber: unknown, effect: Effect.Effect<A, E, unknown>): void {
    this.ops++
    if (this.byOp !== undefined) {
      const op = String((effect as { readonly _op?: unknown })._op ?? "?")
      this.byOp.set(op, (this.byOp.get(op) ?? 0) + 1)
    }
  }
  override onSuspend(): void {
    this.suspensions++
  }
}

export interface Work {
  /** Primitive effects the runtime evaluated per call (the batch loop's own included). */
  readonly ops: number
  /** Fibers started per call. */
  readonly fibers: number
  /** Times a fiber suspended (went async) per call. */
  readonly suspensions: number
  /** With `byOp`: primitive effects per call by their `_op` (Sync, OnSuccess, WithRuntime, ...), most first. */
  readonly byOp?: ReadonlyArray<readonly [string, number]> | undefined
}

/**
 * Runtime work per call over `n` calls, counted with op supervision (a supervisor sees every
 * primitive effect of the fiber and of the fibers it forks). Deterministic: unlike times, it
 * does not depend on the machine or its load. Run it apart from timing (supervision is slow).
 */
export const workPerCall = async (call: Effect.Effect<unknown, unknown>, n: number, byOp = false): Promise<Work> => {
  const counter = new Counter(byOp)
  await Effect.runPromise(
    Effect.withRuntimeFlagsPatch(
      Effect.supervised(repeat(call, n), counter),
      RuntimeFlagsPatch.enable(RuntimeFlags.OpSupervision)
    )
  )
  return {
    ops: counter.ops / n,
    fibers: counter.fibers / n,
    suspensions: counter.suspensions / n,
    byOp: counter.byOp === undefined
      ? undefined
      : Array.from(counter.byOp, ([op, count]) => [op, count / n] as const).sort((a, b) => b[1] - a[1])
  }
}

/** Median of the per-round differences `a[i] - b[i]`. */
export const pairedMedian = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): number =>
  statsOf(a.map((x, i) => x - b[i])).median

export interface Machine {
  readonly node: string
  readonly platform: string
  readonly cpu: string
  readonly cores: number
  readonly memoryGB: number
  readonly loadAverage: ReadonlyArray<number>
}

export const machine = (): Machine => {
  const cpus = os.cpus()
  return {
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpu: cpus[0]?.model.trim() ?? "unknown",
    cores: cpus.length,
    memoryGB: round2(os.totalmem() / 1024 ** 3),
    loadAverage: os.loadavg().map(round2)
  }
}

/** The machine fields every bench's JSON line ends with, and how long the run took. */
export const runFields = (m: Machine, seconds: number) => ({
  node: m.node,
  cpu: m.cpu,
  cores: m.cores,
  loadAverageAtStart: m.loadAverage[0],
  seconds: round2(seconds)
})

export const describeMachine = (m: Machine): string =>
  `node ${m.node} | ${m.platform} | ${m.cpu} | ${m.cores} cores | ${m.memoryGB} GB | ` +
  `load average ${m.loadAverage.join(" ")}`

export const round2 = (n: number): number => Math.round(n * 100) / 100
export const fmt = (n: number, digits = 2): string => (Number.isFinite(n) ? n.toFixed(digits) : "-")
export const pad = (s: string, n: number): string => (s.length >= n ? s : s + " ".repeat(n - s.length))
export const lpad = (s: string, n: number): string => (s.length >= n ? s : " ".repeat(n - s.length) + s)
export const log = (line = ""): void => void process.stdout.write(line + "\n")

const workCells = (w: Work | undefined): Array<string> =>
  w === undefined
    ? [lpad("", 6), lpad("", 6), lpad("", 6)]
    : [lpad(fmt(w.ops, 0), 6), lpad(fmt(w.fibers, 0), 6), lpad(fmt(w.suspensions, 0), 6)]

/**
 * Prints one row per variant: median, mean, p99 and min per call, and, for variants other than the
 * `baseline` ones, what they add over `reference` (medians, p99s, paired); with `work`, the
 * runtime work per call too.
 */
export const printTable = (
  variants: ReadonlyArray<Variant>,
  samples: ReadonlyMap<string, ReadonlyArray<number>>,
  reference: string,
  baselines: ReadonlySet<string>,
  work?: ReadonlyMap<string, Work>
): ReadonlyMap<string, Stats> => {
  const stats = new Map<string, Stats>(variants.map((v) => [v.key, statsOf(samples.get(v.key)!)]))
  const width = Math.max(26, ...variants.map((v) => v.label.length))
  const header = [
    pad("variant", width),
    lpad("median", 9),
    lpad("mean", 9),
    lpad("p99", 9),
    lpad("min", 9),
    lpad("+median", 9),
    lpad("+p99", 9),
    lpad("+paired", 9),
    lpad("calls/s", 10),
    ...(work === undefined ? [] : [lpad("ops", 6), lpad("fibers", 6), lpad("async", 6)])
  ].join(" ")
  log(header)
  log("-".repeat(header.length))
  for (const v of variants) {
    const st = stats.get(v.key)!
    const base = baselines.has(v.key)
    const refKey = v.reference ?? reference
    const ref = stats.get(refKey)!
    log(
      [
        pad(v.label, width),
        lpad(fmt(st.median), 9),
        lpad(fmt(st.mean), 9),
        lpad(fmt(st.p99), 9),
        lpad(fmt(st.min), 9),
        lpad(base ? "" : fmt(st.median - ref.median), 9),
        lpad(base ? "" : fmt(st.p99 - ref.p99), 9),
        lpad(base ? "" : fmt(pairedMedian(samples.get(v.key)!, samples.get(refKey)!)), 9),
        lpad(Math.round(1e6 / st.median).toLocaleString("en-US"), 10),
        ...(work === undefined ? [] : workCells(work.get(v.key)))
      ].join(" ")
    )
  }
  return stats
}

// -------------------------------------------------------------------------------------------
// The library under test: its build (dist/, as users run it) or its sources (src/ through tsx)
// -------------------------------------------------------------------------------------------

/** The package root (this file is in bench/). */
export const root = fileURLToPath(new URL("..", import.meta.url))

/** `BENCH_SRC=1`: measure src/ through tsx instead of the build. */
export const measureSrc = process.env.BENCH_SRC === "1" || process.env.BENCH_SRC === "true"
/** `BENCH_NO_BUILD=1`: measure dist/ as it is, even when older than src/ (never build). */
const noBuild = process.env.BENCH_NO_BUILD === "1" || process.env.BENCH_NO_BUILD === "true"

/** The entries a benchmark imports; `dist/<name>.js` is built from `src/<name>.ts`. */
const entries = ["index", "testing"] as const

/** What the build is made from: src/, and the files that say how it is built. */
const newestInput = (): { readonly file: string; readonly mtimeMs: number } => {
  let newest = { file: "", mtimeMs: 0 }
  const consider = (file: string) => {
    const mtimeMs = fs.statSync(file).mtimeMs
    if (mtimeMs > newest.mtimeMs) newest = { file, mtimeMs }
  }
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const file = path.join(dir, entry.name)
      if (entry.isDirectory()) walk(file)
      else if (entry.isFile()) consider(file)
    }
  }
  walk(path.join(root, "src"))
  for (const file of ["package.json", "tsup.config.ts", "tsconfig.json"]) {
    if (fs.existsSync(path.join(root, file))) consider(path.join(root, file))
  }
  return newest
}

/** When the built entries were written (the oldest of them), `undefined` if one is missing. */
const builtAt = (): number | undefined => {
  let oldest = Infinity
  for (const name of entries) {
    const file = path.join(root, "dist", `${name}.js`)
    if (!fs.existsSync(file)) return undefined
    oldest = Math.min(oldest, fs.statSync(file).mtimeMs)
  }
  return oldest
}

const rel = (file: string) => path.relative(root, file)

/**
 * Makes sure dist/ holds a build of the current src/: when an entry is missing or older than
 * the newest file of src/ (or package.json, tsup.config.ts, tsconfig.json), runs `tsup` (what
 * `npm run build` runs), its output on stderr so that stdout stays the benchmark's. A build
 * whose JavaScript was written but whose declarations failed (a type error) still serves: the
 * benchmark runs the JavaScript. Nothing to do with `BENCH_SRC=1`; with `BENCH_NO_BUILD=1`
 * only a warning when dist/ is stale. Exits the process when there is no usable build.
 */
export const ensureBuilt = (): void => {
  if (measureSrc) return
  const input = newestInput()
  const built = builtAt()
  if (built !== undefined && built >= input.mtimeMs) return
  const why = built === undefined
    ? "dist/ has no build"
    : `dist/ is older than ${rel(input.file)} (by ${fmt((input.mtimeMs - built) / 1000, 0)} s)`
  if (noBuild) {
    if (built === undefined) {
      process.stderr.write(`bench: ${why}; run \`npm run build\` (or drop BENCH_NO_BUILD=1)\n`)
      process.exit(1)
    }
    process.stderr.write(`bench: warning: ${why}; measuring it anyway (BENCH_NO_BUILD=1)\n`)
    return
  }
  process.stderr.write(`bench: ${why}: building it (tsup, as \`npm run build\`)...\n`)
  const started = Date.now()
  const build = spawnSync("npx", ["--no-install", "tsup"], { cwd: root, stdio: ["ignore", 2, 2] })
  const after = builtAt()
  // Entries written by this build (a second of slack for coarse file system clocks).
  const fresh = after !== undefined && after >= started - 1000
  if (build.error !== undefined || !fresh) {
    process.stderr.write(
      `bench: the build failed (${build.error?.message ?? `exit ${build.status}`}), no fresh dist/ to measure; ` +
        "fix it, or measure the sources with BENCH_SRC=1\n"
    )
    process.exit(1)
  }
  if (build.status !== 0) {
    process.stderr.write(
      `bench: warning: tsup exited with ${build.status} (declarations, most likely: see above); ` +
        "its JavaScript is fresh, measuring it\n"
    )
  }
  process.stderr.write(`bench: built in ${fmt((Date.now() - started) / 1000, 1)} s\n`)
  if (newestInput().mtimeMs > after!) process.stderr.write("bench: warning: src/ changed during the build\n")
}

const describeRevision = (revision: ReturnType<typeof sourceRevision>): string =>
  revision === undefined ? "" : `; src/ at ${revision.commit}${revision.srcModified ? " + uncommitted changes" : ""}`

/** The commit checked out and whether src/ differs from it (read-only git; `undefined` without git). */
export const sourceRevision = (): { readonly commit: string; readonly srcModified: boolean } | undefined => {
  const head = spawnSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root, encoding: "utf8" })
  if (head.status !== 0) return undefined
  const status = spawnSync("git", ["status", "--porcelain", "--", "src"], { cwd: root, encoding: "utf8" })
  return { commit: head.stdout.trim(), srcModified: status.status === 0 && status.stdout.trim() !== "" }
}

export interface Library {
  /** `effect-llm-router` */
  readonly index: typeof import("../src/index.js")
  /** `effect-llm-router/testing` */
  readonly testing: typeof import("../src/testing.js")
  readonly measured: "dist" | "src"
  /** What was measured, for the report's header. */
  readonly description: string
  /** The commit src/ was at (and whether it had changes of its own). */
  readonly revision: { readonly commit: string; readonly srcModified: boolean } | undefined
}

/**
 * Imports the package: dist/index.js and dist/testing.js (ESM, as an app importing
 * `effect-llm-router` runs them), or with `BENCH_SRC=1` src/ through tsx (esbuild's keepNames
 * wraps every named closure, which adds ~40% to the router's own time). Call
 * {@link ensureBuilt} first (the dist/ entries must exist).
 */
export const loadLibrary = async (): Promise<Library> => {
  if (measureSrc) {
    const [index, testing] = await Promise.all([
      import(pathToFileURL(path.join(root, "src", "index.ts")).href) as Promise<typeof import("../src/index.js")>,
      import(pathToFileURL(path.join(root, "src", "testing.ts")).href) as Promise<typeof import("../src/testing.js")>
    ])
    const revision = sourceRevision()
    return {
      index,
      testing,
      measured: "src",
      description: `src/ through tsx (BENCH_SRC=1; esbuild keepNames: slower than the build)${describeRevision(revision)}`,
      revision
    }
  }
  const built = builtAt()
  if (built === undefined) {
    process.stderr.write("bench: dist/ has no build: run `npm run build`, or measure the sources with BENCH_SRC=1\n")
    process.exit(1)
  }
  const [index, testing] = await Promise.all([
    import(pathToFileURL(path.join(root, "dist", "index.js")).href) as Promise<typeof import("../src/index.js")>,
    import(pathToFileURL(path.join(root, "dist", "testing.js")).href) as Promise<typeof import("../src/testing.js")>
  ])
  const stale = newestInput().mtimeMs > built ? "; OLDER than src/" : ""
  const revision = sourceRevision()
  return {
    index,
    testing,
    measured: "dist",
    description: `dist/ (the build: dist/index.js + dist/testing.js, ESM), built ${new Date(built).toISOString()}${stale}` +
      describeRevision(revision),
    revision
  }
}

// -------------------------------------------------------------------------------------------
// CPU profile of one call, summarised by function and by source file
// -------------------------------------------------------------------------------------------

interface ProfileNode {
  readonly id: number
  readonly callFrame: {
    readonly functionName: string
    readonly url: string
    readonly lineNumber: number
    readonly columnNumber: number
  }
  readonly children?: ReadonlyArray<number>
}

interface Profile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
  readonly startTime: number
  readonly endTime: number
}

const sourceMaps = new Map<string, SourceMap | undefined>()

/** The source map of a file of dist/ (its `.js.map`), to name src/ lines. */
const sourceMapOf = (file: string): SourceMap | undefined => {
  if (sourceMaps.has(file)) return sourceMaps.get(file)
  let map: SourceMap | undefined
  try {
    map = new SourceMap(JSON.parse(fs.readFileSync(`${file}.map`, "utf8")))
  } catch {
    map = undefined
  }
  sourceMaps.set(file, map)
  return map
}

/**
 * Where a profiled function is: `dist/chunk-X.js:120 = src/internal/attempt.ts:98` for the build
 * (mapped back through its source map), `effect internal/fiberRuntime.js:1234` for Effect,
 * the path relative to the package otherwise; `file` is what the by-file summary groups on.
 */
const locate = (frame: ProfileNode["callFrame"]): { readonly where: string; readonly file: string } => {
  if (frame.url === "") return { where: "", file: frame.functionName }
  if (!frame.url.startsWith("file:")) return { where: frame.url, file: `node ${frame.url.replace(/:\d+$/, "")}` }
  const file = fileURLToPath(frame.url)
  const line = frame.lineNumber + 1
  const effectAt = file.lastIndexOf(`${path.sep}node_modules${path.sep}effect${path.sep}dist${path.sep}esm${path.sep}`)
  if (effectAt >= 0) {
    const inner = file.slice(effectAt + "/node_modules/effect/dist/esm/".length)
    return { where: `effect ${inner}:${line}`, file: `effect ${inner}` }
  }
  const relative = rel(file)
  if (relative.startsWith(`dist${path.sep}`)) {
    const entry = sourceMapOf(file)?.findEntry(frame.lineNumber, frame.columnNumber) as
      | { readonly originalSource?: string; readonly originalLine?: number }
      | undefined
    if (entry?.originalSource !== undefined && entry.originalLine !== undefined) {
      const src = entry.originalSource.replace(/^.*?(src\/)/, "$1")
      return { where: `${relative}:${line} = ${src}:${entry.originalLine + 1}`, file: src }
    }
    return { where: `${relative}:${line}`, file: relative }
  }
  return { where: `${relative}:${line}`, file: relative }
}

export interface ProfileSummary {
  readonly seconds: number
  readonly calls: number
  readonly usPerCall: number
  readonly file: string
  /** Self time per function, most first: share of the samples, and microseconds per call. */
  readonly functions: ReadonlyArray<{ readonly name: string; readonly where: string; readonly share: number; readonly usPerCall: number }>
  /** Self time per source file (src/internal/*.ts, effect internal/*.js, GC...), most first. */
  readonly files: ReadonlyArray<{ readonly file: string; readonly share: number; readonly usPerCall: number }>
}

/**
 * Runs `call` over and over for `seconds` (after `warmup` calls) under V8's sampling profiler
 * (in process, through `node:inspector`: what `node --cpu-prof` records), writes the profile to
 * `file` (open it in Chrome DevTools or speedscope) and sums the samples' self time by function
 * and by source file, in microseconds per call.
 */
export const profileCall = async (
  call: Effect.Effect<unknown, unknown>,
  options: { readonly seconds: number; readonly warmup: number; readonly file: string; readonly intervalUs?: number }
): Promise<ProfileSummary> => {
  const batch = 1_000
  for (let done = 0; done < options.warmup; done += batch) await Effect.runPromise(repeat(call, batch))
  const session = new inspector.Session()
  session.connect()
  await session.post("Profiler.enable")
  await session.post("Profiler.setSamplingInterval", { interval: options.intervalUs ?? 100 })
  await session.post("Profiler.start")
  const started = performance.now()
  let calls = 0
  while (performance.now() - started < options.seconds * 1000) {
    await Effect.runPromise(repeat(call, batch))
    calls += batch
  }
  const seconds = (performance.now() - started) / 1000
  const { profile } = (await session.post("Profiler.stop")) as unknown as { readonly profile: Profile }
  await session.post("Profiler.disable")
  session.disconnect()
  fs.writeFileSync(options.file, JSON.stringify(profile))

  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const selfUs = new Map<number, number>()
  let totalUs = 0
  for (let i = 0; i < profile.samples.length; i++) {
    // timeDeltas[i] is the time since the previous sample: it belongs to sample i - 1's node.
    const us = profile.timeDeltas[i + 1] ?? 0
    selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + us)
    totalUs += us
  }
  const functions = new Map<string, { name: string; where: string; us: number }>()
  const files = new Map<string, number>()
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame
    const { where, file } = locate(frame)
    const name = frame.functionName === "" ? "(anonymous)" : frame.functionName
    const key = `${name} ${where}`
    const entry = functions.get(key)
    if (entry === undefined) functions.set(key, { name, where, us })
    else entry.us += us
    files.set(file, (files.get(file) ?? 0) + us)
  }
  const usPerCall = (seconds * 1e6) / calls
  const share = (us: number) => (totalUs === 0 ? 0 : us / totalUs)
  return {
    seconds,
    calls,
    usPerCall,
    file: options.file,
    functions: Array.from(functions.values())
      .sort((a, b) => b.us - a.us)
      .map((f) => ({ name: f.name, where: f.where, share: share(f.us), usPerCall: share(f.us) * usPerCall })),
    files: Array.from(files, ([file, us]) => ({ file, share: share(us), usPerCall: share(us) * usPerCall })).sort(
      (a, b) => b.usPerCall - a.usPerCall
    )
  }
}

/** Prints a {@link ProfileSummary}: the top `top` functions and source files by self time. */
export const printProfile = (label: string, summary: ProfileSummary, top = 25): void => {
  log(
    `CPU profile of "${label}": ${summary.calls.toLocaleString("en-US")} calls in ${fmt(summary.seconds, 1)} s, ` +
      `${fmt(summary.usPerCall)} us per call (profiler on); written to ${summary.file}`
  )
  log(`  self time by function (top ${top}): share, us per call, function, where (dist line = src line)`)
  for (const f of summary.functions.slice(0, top)) {
    log(`  ${lpad(fmt(100 * f.share, 1), 5)}% ${lpad(fmt(f.usPerCall), 7)}  ${pad(f.name, 28)} ${f.where}`)
  }
  log("  self time by source file: share, us per call, file")
  for (const f of summary.files.slice(0, top)) {
    log(`  ${lpad(fmt(100 * f.share, 1), 5)}% ${lpad(fmt(f.usPerCall), 7)}  ${f.file}`)
  }
}
