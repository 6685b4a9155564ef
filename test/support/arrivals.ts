/**
 * Arrivals replayed on the TestClock, for properties about concurrent requests.
 */
import { Duration, Effect, Fiber, TestClock } from "effect"
import type { Either } from "effect"

/**
 * Forks `request(a)` for each arrival at its time (`at`, ms from now; in order of `at`, ties in
 * the order given) on the TestClock, then advances the clock by `after` and joins them all:
 * their outcomes, in order of `at`.
 */
export const replayArrivals = <A extends { readonly at: number }, B, E, R>(
  arrivals: ReadonlyArray<A>,
  request: (arrival: A) => Effect.Effect<B, E, R>,
  after: Duration.DurationInput
): Effect.Effect<Array<Either.Either<B, E>>, never, R> =>
  Effect.gen(function*() {
    const sorted = [...arrivals].sort((a, b) => a.at - b.at)
    const fibers = []
    let clock = 0
    for (const a of sorted) {
      if (a.at > clock) {
        yield* TestClock.adjust(Duration.millis(a.at - clock))
        clock = a.at
      }
      fibers.push(yield* Effect.fork(Effect.either(request(a))))
    }
    yield* TestClock.adjust(after)
    return yield* Effect.forEach(fibers, Fiber.join)
  })
