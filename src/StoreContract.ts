/**
 * The `RouterState` store contract as checks any store runs: the in-memory one, a shared one
 * (Redis...), yours. Each check is an Effect that fails with {@link ContractViolation} when the
 * store breaks the contract; wire them into your test runner. They run on `TestClock` (they move
 * time to expire leases and windows), so run them where the test services are provided, as
 * `@effect/vitest`'s `it.scoped` does.
 *
 * @example
 * import type { Effect, Scope, TestServices } from "effect"
 * import { RouterState } from "effect-llm-router"
 * import { StoreContract } from "effect-llm-router/testing"
 * // `it` from @effect/vitest: it.scoped runs an Effect with a Scope and the test services
 * declare const it: { scoped: (name: string, f: () => Effect.Effect<void, unknown, Scope.Scope | TestServices.TestServices>) => void }
 *
 * for (const check of StoreContract.checks(RouterState.makeMemory())) {
 *   it.scoped(check.name, () => check.run)
 * }
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as TestServices from "effect/TestServices"
import * as internal from "./internal/storeContract.js"
import type { Service } from "./RouterState.js"

/**
 * A store broke the contract: what the check expected and what it saw.
 *
 * @example
 * import { StoreContract } from "effect-llm-router/testing"
 * new StoreContract.ContractViolation({ check: "maxConcurrent holds", message: "4 slots taken, limit 3" })
 * @category Errors
 * @since 0.1.0
 */
export class ContractViolation extends Data.TaggedError("ContractViolation")<{
  readonly check: string
  readonly message: string
}> {}

/**
 * One check of the contract.
 *
 * @category Models
 * @since 0.1.0
 */
export interface Check {
  readonly name: string
  readonly run: Effect.Effect<void, unknown, Scope.Scope | TestServices.TestServices>
}

/**
 * The contract's checks for the store `make` builds (a fresh store per check).
 *
 * @example
 * import { RouterState } from "effect-llm-router"
 * import { StoreContract } from "effect-llm-router/testing"
 * const names = StoreContract.checks(RouterState.makeMemory()).map((check) => check.name)
 * @category Constructors
 * @since 0.1.0
 */
export const checks: <E, R>(make: Effect.Effect<Service, E, R>) => ReadonlyArray<{
  readonly name: string
  readonly run: Effect.Effect<void, unknown, R | Scope.Scope | TestServices.TestServices>
}> = internal.checks
