/**
 * Timing helpers shared by the benchmarks in this folder: batches of sequential calls timed
 * inside one Effect program, variants interleaved round-robin, median / p99 over the samples.
 */
import * as os from "node:os"
import { performance } from "node:perf_hooks"
import * as Effect from "effect/Effect"
import * as RuntimeFlags from "effect/RuntimeFlags"
import * as RuntimeFlagsPatch from "effect/RuntimeFlagsPatch"
import * as Supervisor from "effect/Supervisor"

/** One thing to time: an effect run once per call (build it with `Effect.suspend` so that each run constructs the call anew). */
export interface Variant {
  readonly key: string
  readonly label: string
  readonly call: Effect.Effect<unknown, unknown>
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
  readonly value = Effect.void
  override onStart(): void {
    this.fibers++
  }
  override onEffect(): void {
    this.ops++
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
}

/**
 * Runtime work per call over `n` calls, counted with op supervision (a supervisor sees every
 * primitive effect of the fiber and of the fibers it forks). Deterministic: unlike times, it
 * does not depend on the machine or its load. Run it apart from timing (supervision is slow).
 */
export const workPerCall = async (call: Effect.Effect<unknown, unknown>, n: number): Promise<Work> => {
  const counter = new Counter()
  await Effect.runPromise(
    Effect.withRuntimeFlagsPatch(
      Effect.supervised(repeat(call, n), counter),
      RuntimeFlagsPatch.enable(RuntimeFlags.OpSupervision)
    )
  )
  return { ops: counter.ops / n, fibers: counter.fibers / n, suspensions: counter.suspensions / n }
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
  const ref = stats.get(reference)!
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
    log(
      [
        pad(v.label, width),
        lpad(fmt(st.median), 9),
        lpad(fmt(st.mean), 9),
        lpad(fmt(st.p99), 9),
        lpad(fmt(st.min), 9),
        lpad(base ? "" : fmt(st.median - ref.median), 9),
        lpad(base ? "" : fmt(st.p99 - ref.p99), 9),
        lpad(base ? "" : fmt(pairedMedian(samples.get(v.key)!, samples.get(reference)!)), 9),
        lpad(Math.round(1e6 / st.median).toLocaleString("en-US"), 10),
        ...(work === undefined ? [] : workCells(work.get(v.key)))
      ].join(" ")
    )
  }
  return stats
}
