/**
 * The pieces of a fast, deterministic TestClock simulation, shared by the simulation benchmarks
 * (`routing.ts`; `tail.ts` has its own copy of the same approach): seeded draws, Poisson
 * arrivals, a drain-first scheduler and a TestClock whose `awaitSuspended` is a plain yield.
 *
 * Why. The stock `TestClock.adjust` wakes sleeps one at a time and, before each, waits until
 * every fiber is suspended (`awaitSuspended`: three `setTimeout(0)`, a few milliseconds of wall
 * time per wake-up). Here the simulation runs on a scheduler of its own, single-threaded and
 * deterministic, with two queues: the clock's driver fiber runs at an idle priority and only
 * when no other fiber has work left, so once the driver runs again every fiber woken at this
 * instant, and whatever it woke in turn, has run and suspended. `awaitSuspended` is then a plain
 * yield (replaced on the TestClock instance, with the "not advancing the clock" warnings); the
 * sleeps, their ordering and the adjust loop are the stock TestClock's. Runs are reproducible.
 *
 * Use: `Effect.flatMap(fastTestClock, (clock) => program(clock))`, provided with
 * `TestContext.TestContext` and run `Effect.withScheduler(new DrainFirstScheduler())`; drive the
 * clock from a fiber at `Effect.withSchedulingPriority(..., IDLE)`.
 */
import * as Effect from "effect/Effect"
import type * as Scheduler from "effect/Scheduler"
import * as TestClock from "effect/TestClock"

// -------------------------------------------------------------------------------------------
// Seeded draws
// -------------------------------------------------------------------------------------------

/** murmur3's 32-bit finalizer. */
export const fmix32 = (h: number): number => {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** mulberry32 from a 32-bit seed: uniforms in [0, 1). */
export const mulberry32 = (seed: number) => {
  let s = seed >>> 0
  return (): number => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A uniform stream for `(seed, a, b)`: the same numbers on every run. */
export const drawsFor = (seed: number, a: number, b: number) =>
  mulberry32(fmix32(fmix32(seed ^ Math.imul(a + 1, 0x9e3779b1)) ^ b))

/** A standard normal from two uniforms (Box-Muller). */
export const normal = (u: () => number): number => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u())

/**
 * Poisson arrivals: the gap before each of `count` requests, in whole ms (seeded exponential
 * draws, arrival times rounded, the first at 1 ms).
 */
export const poissonGaps = (seed: number, count: number, perSecond: number): Float64Array => {
  const u = mulberry32(fmix32(seed ^ 0xa7719a1))
  const gaps = new Float64Array(count)
  const meanMs = 1000 / perSecond
  let t = 1
  let previous = 0
  for (let i = 0; i < count; i++) {
    if (i > 0) t += -meanMs * Math.log(1 - u())
    const at = Math.round(t)
    gaps[i] = at - previous
    previous = at
  }
  return gaps
}

// -------------------------------------------------------------------------------------------
// The clock and the scheduler
// -------------------------------------------------------------------------------------------

/** The scheduling priority of the clock's driver: it runs only when no other fiber has work. */
export const IDLE = 1

/**
 * A single-threaded scheduler with two FIFO queues: tasks at priority `IDLE` (the clock's
 * driver) run only when the other queue is empty. Fibers never yield on their own (they run
 * until they suspend), which is deterministic and saves a task per 2048 operations.
 */
export class DrainFirstScheduler implements Scheduler.Scheduler {
  private busy: Array<Scheduler.Task | undefined> = []
  private busyHead = 0
  private idle: Array<Scheduler.Task | undefined> = []
  private idleHead = 0
  private draining = false
  private kicked = false
  tasks = 0

  shouldYield(): number | false {
    return false
  }

  scheduleTask(task: Scheduler.Task, priority: number): void {
    if (priority >= IDLE) this.idle.push(task)
    else this.busy.push(task)
    if (!this.draining && !this.kicked) {
      this.kicked = true
      setImmediate(this.drain)
    }
  }

  private readonly drain = (): void => {
    this.kicked = false
    this.draining = true
    try {
      for (;;) {
        let task: Scheduler.Task | undefined
        if (this.busyHead < this.busy.length) {
          task = this.busy[this.busyHead]
          this.busy[this.busyHead++] = undefined
          if (this.busyHead === this.busy.length) {
            this.busy.length = 0
            this.busyHead = 0
          }
        } else if (this.idleHead < this.idle.length) {
          task = this.idle[this.idleHead]
          this.idle[this.idleHead++] = undefined
          if (this.idleHead === this.idle.length) {
            this.idle.length = 0
            this.idleHead = 0
          }
        } else {
          break
        }
        this.tasks++
        task!()
      }
    } finally {
      this.draining = false
    }
  }
}

/**
 * The TestClock of the context (the stock one: its sleeps and its `adjust` loop), with
 * `awaitSuspended` a plain yield: under `DrainFirstScheduler` the yielding driver resumes only
 * once every other fiber has suspended, which is what the stock version waits for with real
 * timers. The warnings about a clock not being advanced are off (they start real timers). The
 * three are methods of Effect's `TestClockImpl` (internal: not in its types), replaced on this
 * instance only; a TestClock without them makes the bench stop.
 */
export const fastTestClock: Effect.Effect<TestClock.TestClock> = Effect.flatMap(TestClock.testClock(), (clock) => {
  const methods = ["awaitSuspended", "warningStart", "warningDone"] as const
  for (const m of methods) {
    if (!(m in clock) || typeof (clock as unknown as Record<string, unknown>)[m] !== "function") {
      return Effect.dieMessage(`bench: this TestClock has no ${m} method to replace (Effect's TestClockImpl changed?)`)
    }
  }
  Object.assign(clock, {
    awaitSuspended: () => Effect.yieldNow(),
    warningStart: () => Effect.void,
    warningDone: () => Effect.void
  })
  return Effect.succeed(clock)
})
