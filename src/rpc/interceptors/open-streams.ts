/**
 * The open services' request streams, limited per message by peer address.
 * The edge (src/guard/edge-auth.ts) takes one token from the peer's bucket when an
 * open-service call starts; a client or bidi stream (reflection's
 * ServerReflectionInfo) can then ask any number of questions on that one call,
 * each answered with many times its bytes. So every message after the first
 * takes a token from the same bucket, and the call ends RESOURCE_EXHAUSTED
 * (with RetryInfo) when it is empty.
 */
import type { Interceptor } from "@connectrpc/connect";
import type { PeerTokens } from "../../guard/edge-auth.js";
import type { Metrics } from "../../observe/metrics.js";
import { rateLimited } from "../errors.js";
import { PEER } from "../request-context.js";

/** What the interceptor needs. */
export interface OpenStreamOptions {
  /** Services callable without a credential. */
  openServices: ReadonlySet<string>;
  takePeerToken: PeerTokens;
  metrics: Metrics;
}

/** Creates the interceptor limiting the messages of open-service request streams. */
export function limitOpenStreams(options: OpenStreamOptions): Interceptor {
  const { openServices, takePeerToken, metrics } = options;
  return (next) => async (request) => {
    const kind = request.method.methodKind;
    if (!request.stream || (kind !== "client_streaming" && kind !== "bidi_streaming")) return next(request);
    if (!openServices.has(request.service.typeName)) return next(request);
    const peer = request.contextValues.get(PEER);
    return next({ ...request, message: afterFirst(request.message, peer, takePeerToken, metrics) });
  };
}

/** Passes `messages` on, each after the first once the peer's bucket gave a token. */
async function* afterFirst<T>(
  messages: AsyncIterable<T>,
  peer: string,
  take: PeerTokens,
  metrics: Metrics,
): AsyncIterable<T> {
  let first = true;
  for await (const message of messages) {
    if (!first) {
      const retryMs = await take(peer);
      if (retryMs > 0) {
        metrics.refused("peer_rate_limit");
        throw rateLimited("peer", retryMs);
      }
    }
    first = false;
    yield message;
  }
}
