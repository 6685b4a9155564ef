/**
 * The pieces of a fast, deterministic TestClock simulation, shared by the simulation benchmarks
 * (`routing.ts`, `tail.ts`): seeded draws, Poisson arrivals, a drain-first scheduler and a
 * TestClock whose `awaitSuspended` is a plain yield.
 *
 * Why. The stock `TestClock.adjust` wakes sleeps one at a time and, before each, waits until
 * every fiber is suspended (`awaitSuspended`: three `setTimeout(0)`, a few milliseconds of wall
 * time per wake-up: a simulation of many requests would take minutes to hours; `tail.ts`
 * measures it at its start). Here the simulation runs on a scheduler of its own,
 * single-threaded and deterministic, with two queues: the clock's driver fiber runs at an idle
 * priority and only when no other fiber has work left, so once the driver runs again every fiber
 * woken at this instant, and whatever it woke in turn, has run and suspended. `awaitSuspended`
 * is then a plain yield (replaced on the TestClock instance, with the "not advancing the clock"
 * warnings); the sleeps, their ordering and the adjust loop are the stock TestClock's. Runs are
 * reproducible: the same figures on every run.
 *
 * Use: `runSimulation(new DrainFirstScheduler(), seed, (clock) => program(clock))` runs the
 * program on the fast TestClock (`fastTestClock`, in `TestContext.TestContext`, Effect's `Random`
 * seeded); in it, `driveArrivals(clock, ...)` forks the requests at their Poisson arrival times
 * and drives the clock (from the fiber calling it, at `Effect.withSchedulingPriority(..., IDLE)`)
 * until every request has answered.
 */
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import type * as Scheduler from "effect/Scheduler"
import * as TestClock from "effect/TestClock"
import * as TestContext from "effect/TestContext"
import { fmix32, mulberry32 } from "../src/internal/prng.js"

// -------------------------------------------------------------------------------------------
// Seeded draws (the generators: src/internal/prng.ts)
// -------------------------------------------------------------------------------------------

/** A uniform stream for `(seed, a, b)`: the same numbers on every run. */
export const drawsFor = (seed: number, a: number, b: number) =>
  mulberry32(fmix32(fmix32(seed ^ Math.imul(a + 1, 0x9e3779b1)) ^ b))

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

// -------------------------------------------------------------------------------------------
// Running a simulation
// -------------------------------------------------------------------------------------------

/**
 * The arrivals and the clock of a simulation: one fiber sleeps `gaps[i]` then forks
 * `request(i)`, for each `i` in turn (both daemons, so the arrival fiber ending interrupts none
 * of the requests still running); the calling fiber, at the priority `IDLE`, advances `clock` by
 * `stepMs` at a time until `finished()` or until the clock reaches `horizonMs`.
 */
export const driveArrivals = <R>(clock: TestClock.TestClock, options: {
  readonly gaps: Float64Array
  readonly request: (i: number) => Effect.Effect<unknown, never, R>
  readonly stepMs: number
  readonly horizonMs: number
  readonly finished: () => boolean
}): Effect.Effect<void, never, R> =>
  Effect.gen(function*() {
    const { finished, gaps, horizonMs, request, stepMs } = options
    const arrivals = Effect.suspend(() => {
      let i = 0
      return Effect.whileLoop({
        while: () => i < gaps.length,
        body: () => Effect.zipRight(Effect.sleep(gaps[i]), Effect.forkDaemon(request(i))),
        step: () => void i++
      })
    })
    yield* Effect.forkDaemon(arrivals)
    yield* Effect.withSchedulingPriority(
      Effect.whileLoop({
        while: () => !finished() && clock.unsafeCurrentTimeMillis() < horizonMs,
        body: () => clock.adjust(stepMs),
        step: () => undefined
      }),
      IDLE
    )
  })

/**
 * Runs `program` on the fast TestClock of a fresh `TestContext`, with Effect's `Random` seeded
 * from `seed`, on `scheduler` (its `tasks` count what the run scheduled).
 */
export const runSimulation = <A, E>(
  scheduler: DrainFirstScheduler,
  seed: number,
  program: (clock: TestClock.TestClock) => Effect.Effect<A, E>
): Promise<A> =>
  Effect.runPromise(
    Effect.flatMap(fastTestClock, program).pipe(
      Effect.provide(TestContext.TestContext),
      Effect.withRandom(Random.make(seed)),
      Effect.withScheduler(scheduler)
    )
  )
