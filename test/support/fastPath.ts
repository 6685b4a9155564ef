/**
 * Watching the router's fast-path promise: a memory store that notes, for each reservation,
 * whether the router made it with the promise that its `admit` takes every available deployment
 * below its limit (`takesAvailable` in src/internal/state.ts), and a router over that store.
 *
 * @example
 * const { promised, routerOf } = yield* watchFastPath
 * yield* Router.chat(request).pipe(Effect.provide(routerOf({ deployments })))
 * expect(promised).toEqual([true])
 */
import { Effect, Layer } from "effect"
import { Router, RouterState } from "../../src/index.js"
import { type FastReservation, takesAvailable } from "../../src/internal/state.js"

export const watchFastPath = Effect.map(RouterState.makeMemory(), (store) => {
  /** One entry per reservation, in order: whether it carried the promise (clear it at will). */
  const promised: Array<boolean> = []
  const watching: RouterState.Service = {
    ...store,
    reserve: (reservation) => {
      promised.push((reservation as FastReservation)[takesAvailable] !== undefined)
      return store.reserve(reservation)
    }
  }
  /** A router over `config` with `Router.policies`, on the watching store (both kept in context). */
  const routerOf = (config: Router.Config) =>
    Router.layer(config).pipe(
      Layer.provideMerge(Router.policies),
      Layer.provideMerge(Layer.succeed(RouterState.RouterState, watching))
    )
  return { promised, routerOf }
})
