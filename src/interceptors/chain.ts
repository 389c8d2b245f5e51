/**
 * The interceptor chain, composed in this one place. The first interceptor is
 * the outermost: error mapping (and, with metrics, logging) wraps everything,
 * then authentication, then limits, then the draining check closest to the
 * handler.
 */
import type { Interceptor } from "@connectrpc/connect";
import type { Logger } from "../logger.js";
import { refuseWhileDraining } from "./draining.js";
import { errorMapping } from "./errors.js";

/** What the chain needs. */
export interface ChainOptions {
  logger: Logger;
  isDraining: () => boolean;
}

/** Returns the interceptors in order, outermost first. */
export function createInterceptors(options: ChainOptions): Interceptor[] {
  return [
    errorMapping(options.logger),
    // Authentication and rate limits go here, in that order.
    refuseWhileDraining(options.isDraining),
  ];
}
