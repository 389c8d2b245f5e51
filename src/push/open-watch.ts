/**
 * Opening a watch that came over plain HTTP (Server-Sent Events, WebSocket):
 * the same checks, limits and delivery as WatchResults, in the same order.
 * The credential comes from the headers (`x-api-key`, `authorization:
 * Bearer`), or from a watch ticket for a browser, which cannot set headers;
 * a call without a valid one spends a token of its peer address's bucket.
 * Then the scope (streams:read) and tenant, draining, the client's watcher
 * slot and token, the request's checks, and the fanout.
 */
import type { IncomingHttpHeaders } from "node:http";
import type { WatchResultsResponse } from "../../gen/streamgate/v1/stream_service_pb.js";
import { StreamService } from "../../gen/streamgate/v1/stream_service_pb.js";
import type { Fanout } from "../fanout/fanout.js";
import type { Principal } from "../guard/auth/api-keys.js";
import type { PeerTokens } from "../guard/edge-auth.js";
import { admitWatcher, limitedClient } from "../guard/limits/admission.js";
import type { Limits } from "../guard/limits/limits.js";
import type { LiveStats } from "../observe/live-stats.js";
import type { Metrics } from "../observe/metrics.js";
import type { CelCompiler } from "../processing/cel.js";
import { invalidCredential, missingCredential, rateLimited, shuttingDown } from "../rpc/errors.js";
import { authorize, credentialOf, type Identify } from "../rpc/interceptors/auth.js";
import { TENANT_HEADER } from "../rpc/request-context.js";
import { checkWatch } from "../streams/requests.js";
import { requireStreamId } from "../streams/validation.js";
import type { WatchTickets } from "./tickets.js";
import type { WatchUrl } from "./watch-request.js";

/** What opening a watch needs. */
export interface OpenWatchDeps {
  identify: Identify;
  tickets: WatchTickets;
  adminServices: ReadonlySet<string>;
  takePeerToken: PeerTokens;
  limits: Limits;
  stats: LiveStats;
  fanout: Fanout;
  /** Compiles the watcher's filter within the CEL settings. */
  watchCel: CelCompiler;
  metrics: Metrics;
  isDraining(): boolean;
}

/** An open watch: its results, and the release of its watcher slot (call it once the watch ends). */
export interface OpenedWatch {
  principal: Principal;
  tenant: string;
  streamId: string;
  results: AsyncIterable<WatchResultsResponse>;
  release(): void;
}

/**
 * Opens the watch `url` asks for (`onInterrupt`: see Fanout.watch), or throws what the client is answered: a
 * ConnectError of the RPC layer (credential, scope, limits, draining) or a
 * DomainError (a bad request, an unknown stream); map it with toConnectError.
 */
export async function openWatch(
  deps: OpenWatchDeps,
  url: WatchUrl,
  headers: IncomingHttpHeaders,
  peer: string,
  signal: AbortSignal,
  onInterrupt?: () => void,
): Promise<OpenedWatch> {
  const streamId = requireStreamId(url.streamId);
  const principal = await authenticate(deps, url, headers, streamId, peer);
  const tenant =
    url.ticket !== undefined
      ? principal.tenant
      : authorize(principal, StreamService.typeName, "WatchResults", deps.adminServices, first(headers[TENANT_HEADER]));
  if (deps.isDraining()) throw shuttingDown();
  const checked = checkWatch(url, deps.watchCel);
  const release = await admitWatcher(deps.limits, deps.stats, limitedClient(principal));
  try {
    const results = deps.fanout.watch(tenant, streamId, checked, signal, onInterrupt);
    return { principal, tenant, streamId, results, release };
  } catch (error) {
    release();
    throw error;
  }
}

/** The principal of the ticket, else of the headers' credential; refuses (and charges the peer) without one. */
async function authenticate(
  deps: OpenWatchDeps,
  url: WatchUrl,
  headers: IncomingHttpHeaders,
  streamId: string,
  peer: string,
): Promise<Principal> {
  let principal: Principal | undefined;
  let refusal = invalidCredential();
  if (url.ticket !== undefined) {
    principal = await deps.tickets.verify(url.ticket, streamId);
  } else {
    const credential = credentialOf(first(headers["x-api-key"]), headers.authorization);
    if (credential) principal = await deps.identify(credential);
    else refusal = missingCredential();
  }
  if (principal) return principal;
  const retryMs = await deps.takePeerToken(peer);
  deps.metrics.refused(retryMs === 0 ? "unauthenticated" : "peer_rate_limit");
  throw retryMs === 0 ? refusal : rateLimited("peer", retryMs);
}

/** The first value of a header, or undefined. */
function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
