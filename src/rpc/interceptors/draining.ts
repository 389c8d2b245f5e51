/**
 * Refuses new calls with UNAVAILABLE once the server is draining after SIGTERM,
 * so clients retry elsewhere while calls already running finish.
 */
import type { Interceptor } from "@connectrpc/connect";
import { shuttingDown } from "../errors.js";

/** Creates the interceptor; `isDraining` is read on every call. */
export function refuseWhileDraining(isDraining: () => boolean): Interceptor {
  return (next) => async (request) => {
    if (isDraining()) throw shuttingDown();
    return next(request);
  };
}
