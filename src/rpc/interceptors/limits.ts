/**
 * Rate limits on every protocol alike, after auth (so the client is known):
 * a unary call takes one token; a client stream takes one per message, checked
 * before the message reaches the handler, so a refused message is never
 * stored (those before it were); a server stream (WatchResults) takes one when
 * it starts and counts against the client's cap on open watchers. Open
 * services (health, reflection) are not limited, and neither are admin
 * services: an operator must be able to act while clients are being refused.
 * Every request of a limited service is counted in the live stats, allowed or not.
 */
import type { Interceptor } from "@connectrpc/connect";
import { admitWatcher, limitedClient, takeToken } from "../../guard/limits/admission.js";
import type { LimitedClient, Limits } from "../../guard/limits/limits.js";
import type { LiveStats } from "../../observe/live-stats.js";
import { PRINCIPAL } from "../request-context.js";
import { tap } from "./tap.js";

/** What the interceptor needs. */
export interface LimitOptions {
  limits: Limits;
  /** Services not limited: those callable without a credential, and the admin services. */
  exemptServices: ReadonlySet<string>;
  /** Told of every request of a limited service. */
  stats: LiveStats;
}

/** Creates the limits interceptor. */
export function limitCalls(options: LimitOptions): Interceptor {
  const { limits, exemptServices, stats } = options;
  const take = (client: LimitedClient) => takeToken(limits, stats, client);
  return (next) => async (request) => {
    if (exemptServices.has(request.service.typeName)) return next(request);
    const principal = request.contextValues.get(PRINCIPAL);
    // Calls without a credential are refused before here, or are to open services, exempt above.
    if (!principal) throw new Error("no principal in the call's context: the auth interceptor must run before limits");
    const client = limitedClient(principal);

    if (!request.stream) {
      await take(client);
      return next(request);
    }
    if (request.method.methodKind !== "server_streaming") {
      // Every message of a client (or bidi) stream counts, as it arrives.
      return next({ ...request, message: takeEach(request.message, () => take(client)) });
    }

    // A watcher: one of the client's watcher slots while it is open, and one token when it starts.
    const release = await admitWatcher(limits, stats, client);
    // Released when the stream ends however it ends, or the call is aborted before it is read.
    request.signal.addEventListener("abort", release, { once: true });
    let response;
    try {
      response = await next(request);
    } catch (error) {
      release();
      throw error;
    }
    if (!response.stream) {
      release();
      return response;
    }
    return { ...response, message: tap(response.message, { end: release }) };
  };
}

/** Passes `messages` on, each once `take` allows it (`take` returns undefined when it allows at once). */
async function* takeEach<T>(messages: AsyncIterable<T>, take: () => Promise<void> | undefined): AsyncIterable<T> {
  for await (const message of messages) {
    const taking = take();
    if (taking) await taking;
    yield message;
  }
}
