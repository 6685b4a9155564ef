/**
 * effect-llm-router: route LLM requests across many deployments of many providers, on Effect.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Anthropic from "./providers/Anthropic.js"
/** @since 0.1.0 */
export * as Cooldown from "./Cooldown.js"
/** @since 0.1.0 */
export * as CostMeter from "./CostMeter.js"
/** @since 0.1.0 */
export * as Deployment from "./Deployment.js"
/** @since 0.1.0 */
export * as ErrorMapping from "./ErrorMapping.js"
/** @since 0.1.0 */
export * as Errors from "./Errors.js"
/** @since 0.1.0 */
export * as Fallback from "./Fallback.js"
/** @since 0.1.0 */
export * as Hedge from "./Hedge.js"
/** @since 0.1.0 */
export * as OpenAiCompatible from "./providers/OpenAiCompatible.js"
/** @since 0.1.0 */
export * as Provider from "./Provider.js"
/** @since 0.1.0 */
export * as RetrySchedule from "./RetrySchedule.js"
/** @since 0.1.0 */
export * as Router from "./Router.js"
/** @since 0.1.0 */
export * as RouterState from "./RouterState.js"
/** @since 0.1.0 */
export * as Selector from "./Selector.js"
/** @since 0.1.0 */
export * as Tokens from "./Tokens.js"
