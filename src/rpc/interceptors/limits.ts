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
import type { LimitedClient, Limits } from "../../guard/limits/limits.js";
import type { LiveStats } from "../../observe/live-stats.js";
import { rateLimited, tooManyWatchers } from "../errors.js";
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
  /**
   * Takes a token for `client`, or rejects with RESOURCE_EXHAUSTED and when to
   * retry. With no limit set it settles nothing and returns undefined: a
   * client stream asks once per message, and a promise per message would cost
   * more than the rest of the check.
   */
  const take = (client: LimitedClient): Promise<void> | undefined => {
    if (!limits.enabled) {
      stats.request(client.key, true);
      return undefined;
    }
    return limits.take(client).then((decision) => {
      stats.request(client.key, decision.allowed);
      if (!decision.allowed) throw rateLimited(decision.limit, decision.retryMs);
    });
  };
  return (next) => async (request) => {
    if (exemptServices.has(request.service.typeName)) return next(request);
    const principal = request.contextValues.get(PRINCIPAL);
    // Calls without a credential are refused before here, or are to open services, exempt above.
    if (!principal) throw new Error("no principal in the call's context: the auth interceptor must run before limits");
    // Keyed by tenant and client: a JWT's sub names a client within its tenant only.
    // Only configured names (API keys') become metric labels.
    const client: LimitedClient = {
      key: `client:${principal.tenant}/${principal.client}`,
      label: principal.configured ? principal.client : "anonymous",
      tenantLabel: principal.configured ? principal.tenant : "anonymous",
    };

    if (!request.stream) {
      await take(client);
      return next(request);
    }
    if (request.method.methodKind !== "server_streaming") {
      // Every message of a client (or bidi) stream counts, as it arrives.
      return next({ ...request, message: takeEach(request.message, () => take(client)) });
    }

    // A watcher: one of the client's watcher slots while it is open, and one token when it starts.
    const release = limits.openWatcher(client.key);
    if (!release) {
      stats.request(client.key, false);
      throw tooManyWatchers(limits.maxWatchers ?? 0);
    }
    try {
      await take(client);
    } catch (error) {
      release();
      throw error;
    }
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
