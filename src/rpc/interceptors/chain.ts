/**
 * The interceptor chain, composed in this one place. The first interceptor is
 * the outermost: metrics and logging wrap everything (so they see the code the
 * client sees), then the call's span while tracing is on (the same code; the
 * handler runs inside it), then error mapping, then authentication, then
 * limits (the client's buckets, then the peer's for each further message of
 * an open-service stream), then the draining check closest to the handler.
 */
import type { Interceptor } from "@connectrpc/connect";
import type { LiveStats } from "../../observe/live-stats.js";
import type { Logger } from "../../observe/logger.js";
import type { Metrics } from "../../observe/metrics.js";
import { traces } from "../../observe/tracing.js";
import { type AuthOptions, authenticate } from "./auth.js";
import { refuseWhileDraining } from "./draining.js";
import { errorMapping } from "./errors.js";
import { type LimitOptions, limitCalls } from "./limits.js";
import { measureAndLog } from "./measure-and-log.js";
import { limitOpenStreams, type OpenStreamOptions } from "./open-streams.js";
import { traceCalls } from "./tracing.js";

/** What the chain needs. */
export interface ChainOptions {
  logger: Logger;
  metrics: Metrics;
  isDraining: () => boolean;
  auth: AuthOptions;
  limits: LimitOptions;
  stats: LiveStats;
  /** Per-message peer limits on open-service request streams. */
  openStreams: OpenStreamOptions;
}

/** Returns the interceptors in order, outermost first; tracing's only if it was started before (src/observe/tracing.ts). */
export function createInterceptors(options: ChainOptions): Interceptor[] {
  return [
    measureAndLog({
      metrics: options.metrics,
      logger: options.logger,
      stats: options.stats,
      statsExempt: options.limits.exemptServices,
    }),
    ...(traces === undefined ? [] : [traceCalls(traces)]),
    errorMapping(options.logger),
    authenticate(options.auth),
    limitCalls(options.limits),
    limitOpenStreams(options.openStreams),
    refuseWhileDraining(options.isDraining),
  ];
}
