/**
 * The HTTP entry: what every request on the port goes through, in order of
 * cost (DESIGN.md "Tenants and the edge"): /metrics and the dashboard, the
 * request id, CORS, the credential checked from the headers before any body
 * is read, then connect with the interceptor chain and the services. Pushing
 * calls (server-streaming, bidi) are admitted a turn's budget at a time.
 */
import type http from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { createRegistry as createTypeRegistry, type DescFile } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { file_google_rpc_error_details } from "../../gen/google/rpc/error_details_pb.js";
import { file_grpc_health_v1_health } from "../../gen/grpc/health/v1/health_pb.js";
import { file_grpc_reflection_v1_reflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { file_grpc_reflection_v1alpha_reflection } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { file_streamgate_v1_admin_service } from "../../gen/streamgate/v1/admin_service_pb.js";
import { file_streamgate_v1_stream_service } from "../../gen/streamgate/v1/stream_service_pb.js";
import type { Config } from "../config/config.js";
import type { ApiKeyStore, Principal } from "../guard/auth/api-keys.js";
import type { JwtVerifier } from "../guard/auth/jwt.js";
import { createEdgeAuth, type EdgeDecision, type PeerTokens, proceduresOf } from "../guard/edge-auth.js";
import type { Limits } from "../guard/limits/limits.js";
import { serveDashboard } from "../observe/dashboard.js";
import type { LiveStats } from "../observe/live-stats.js";
import type { Logger } from "../observe/logger.js";
import type { Metrics, RefusalReason } from "../observe/metrics.js";
import type { RateLimitedLog } from "../observe/rate-limited-log.js";
import type { OpenWatchDeps } from "../push/open-watch.js";
import { type SseDeps, serveSse } from "../push/sse.js";
import { isWatchPath } from "../push/watch-request.js";
import { createWebSocketEndpoint, type UpgradeHandler, type WebSocketDeps } from "../push/websocket.js";
import { CallAdmission } from "../rpc/call-admission.js";
import { createCors } from "../rpc/cors.js";
import { createIdentify } from "../rpc/interceptors/auth.js";
import { createInterceptors } from "../rpc/interceptors/chain.js";
import { clientGone, peerAddress, type RequestHandler } from "../rpc/listener.js";
import { callContext, PRINCIPAL, REQUEST_ID_HEADER, requestIdFrom, TENANT } from "../rpc/request-context.js";
import { markInvalidUtf8 } from "../rpc/utf8.js";
import { serveMetrics } from "./metrics-endpoint.js";
import { type Readiness, serveProbe } from "./probes.js";

/**
 * The files whose services this server serves, for reflection, and the error
 * details it sends, so that reflection clients (grpcurl) can decode RetryInfo.
 */
const SERVED_FILES: DescFile[] = [
  file_google_rpc_error_details,
  file_streamgate_v1_stream_service,
  file_streamgate_v1_admin_service,
  file_grpc_health_v1_health,
  file_grpc_reflection_v1_reflection,
  file_grpc_reflection_v1alpha_reflection,
];

/**
 * Room for a request's fields besides its payload, so an oversized payload gets our message:
 * connect reads at most MAX_PAYLOAD_BYTES plus this of one request message.
 */
export const REQUEST_OVERHEAD_BYTES = 64 * 1024;

/**
 * Services served beside streamgate's own, for tests only: the Connect
 * conformance suite (test/conformance/server.ts) proves streamgate's RPC stack
 * (the listener, the edge, the interceptor chain, the patched connect adapter)
 * with a service of its own, which it calls without credentials. So these
 * services are open (like health and reflection: limited by peer address,
 * see AUTH_OPEN_SERVICES), their procedures are known to the edge and to
 * reflection, and their JSON may carry google.protobuf.Any of their own messages.
 */
export interface ExtraServices {
  /** The files declaring the services. */
  files: DescFile[];
  /** Registers the services' implementations. */
  routes(router: ConnectRouter): void;
}

/** The files served, streamgate's and the extra services'. */
export function servedFiles(extra: ExtraServices | undefined): DescFile[] {
  return extra ? [...SERVED_FILES, ...extra.files] : SERVED_FILES;
}

/** The services open to calls without a credential: AUTH_OPEN_SERVICES and the extra services. */
export function openServicesOf(config: Config, extra: ExtraServices | undefined): Set<string> {
  return new Set([
    ...config.auth.openServices,
    ...(extra?.files.flatMap((file) => file.services.map((service) => service.typeName)) ?? []),
  ]);
}

/** What the entry needs: the parts it routes to and the guards it applies. */
export interface HttpEntryParts {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  /** What GET /metrics answers: `metrics`, or every worker's (WORKERS > 1). */
  exposition: Pick<Metrics, "scrape">;
  /** The rate-limited warn log of refusals (REFUSAL_LOGS_PER_SECOND). */
  warnings: RateLimitedLog;
  /** Registers every service's implementation. */
  routes(router: ConnectRouter): void;
  extra: ExtraServices | undefined;
  keys: ApiKeyStore;
  jwt: JwtVerifier | undefined;
  openServices: Set<string>;
  limits: Limits;
  stats: LiveStats;
  /** Takes a token of the caller's address (failed authentication, open services). */
  takePeerToken: PeerTokens;
  isDraining(): boolean;
  /** Whether to get traffic, for GET /readyz. */
  readiness: Readiness;
  /** Watches over Server-Sent Events and WebSocket: the fanout they read, the filter compiler, tickets, heartbeats. */
  push: Pick<SseDeps, "fanout" | "watchCel" | "tickets" | "heartbeatMs"> &
    Omit<WebSocketDeps, keyof OpenWatchDeps | "heartbeatMs">;
}

/** The handler for the listener, its WebSocket upgrades, and how many pushing calls wait for their turn. */
export interface HttpEntry {
  handle: RequestHandler;
  upgrade: UpgradeHandler;
  waitingCount(): number;
}

/** A pushing call or watch waiting for its turn: whether its client has gone, and how to start it. */
interface PendingCall {
  gone(): boolean;
  start(): void;
}

/** What the edge learned of a call, read into its context by connect. */
interface EdgeCall {
  requestId: string;
  principal?: Principal;
  tenant?: string;
}

/** Builds the entry (see the module comment). */
export function createHttpEntry(parts: HttpEntryParts): HttpEntry {
  const { config, metrics, extra, openServices } = parts;
  const adminServices = new Set(config.auth.adminServices);
  const files = servedFiles(extra);
  /** Each request's id, chosen before connect sees the request, and the principal and tenant the edge decided. */
  const calls = new WeakMap<http.IncomingMessage | Http2ServerRequest, EdgeCall>();
  // Invalid UTF-8 in a binary request reaches validation (INVALID_ARGUMENT), not connect's INTERNAL.
  markInvalidUtf8();
  const rpc = connectNodeAdapter({
    routes: parts.routes,
    interceptors: createInterceptors({
      logger: parts.logger,
      metrics,
      isDraining: parts.isDraining,
      auth: { keys: parts.keys, jwt: parts.jwt, openServices, adminServices },
      limits: {
        limits: parts.limits,
        exemptServices: new Set([...openServices, ...config.auth.adminServices]),
        stats: parts.stats,
      },
      stats: parts.stats,
      openStreams: { openServices, takePeerToken: parts.takePeerToken, metrics },
    }),
    // The peer and request id, which connect's handler context does not carry, and the principal and tenant the edge decided.
    contextValues: (request) => {
      const call = calls.get(request);
      return callContext(peerAddress(request), call?.requestId ?? requestIdFrom(undefined))
        .set(PRINCIPAL, call?.principal)
        .set(TENANT, call?.tenant ?? "");
    },
    readMaxBytes: config.maxPayloadBytes + REQUEST_OVERHEAD_BYTES,
    // proto3 JSON: an unknown field is an error, not silently dropped data.
    jsonOptions: { ignoreUnknownFields: false, ...(extra && { registry: createTypeRegistry(...extra.files) }) },
  });
  const identify = createIdentify(parts.keys, parts.jwt);
  const cors = createCors(config.corsOrigins);
  const edgeAuth = createEdgeAuth({
    procedures: proceduresOf(files),
    openServices,
    adminServices,
    identify,
    takePeerToken: parts.takePeerToken,
    metrics,
    refusalLog: parts.warnings,
  });
  const watchDeps: OpenWatchDeps = {
    identify,
    tickets: parts.push.tickets,
    adminServices,
    takePeerToken: parts.takePeerToken,
    limits: parts.limits,
    stats: parts.stats,
    fanout: parts.push.fanout,
    watchCel: parts.push.watchCel,
    metrics,
    isDraining: parts.isDraining,
  };
  const sse: SseDeps = { ...watchDeps, heartbeatMs: parts.push.heartbeatMs };
  const serve: RequestHandler = (request, response) => {
    if (serveMetrics(parts.exposition, request, response)) return;
    if (serveProbe(parts.readiness, request, response)) return;
    if (serveDashboard(request, response)) return;
    const requestId = requestIdFrom(request.headers[REQUEST_ID_HEADER]);
    const call: EdgeCall = { requestId };
    calls.set(request, call);
    // Set before connect writes its headers, which include these: a response header on every protocol, streams too.
    response.setHeader(REQUEST_ID_HEADER, requestId);
    if (cors(request, response)) return;
    // Results over Server-Sent Events: checked and limited as WatchResults is, by src/push/open-watch.ts.
    if (request.method === "GET" && isWatchPath(request.url)) {
      void serveSse(sse, request, response, peerAddress(request));
      return;
    }
    // The credential is checked from the headers before connect reads any of the body (src/guard/edge-auth.ts).
    const admit = (decision: EdgeDecision) => {
      if (!decision) return;
      // Read into the call's context, so a credential is verified and authorized once.
      call.principal = decision.principal;
      call.tenant = decision.tenant;
      rpc(request, response);
    };
    const decision = edgeAuth(request, response, { peer: peerAddress(request), requestId });
    // Should the check itself fail, connect's auth interceptor still decides (and reads the body first).
    if (decision instanceof Promise) void decision.then(admit, () => rpc(request, response));
    else admit(decision);
  };
  // Server-streaming and bidi calls (WatchResults above all), and watches over SSE and
  // WebSocket, start a turn's budget at a time, in one queue (src/rpc/call-admission.ts).
  // Unary and client-stream calls start at once: spreading them only split the produce batches.
  const admission =
    config.callTurnBudgetMs > 0
      ? new CallAdmission<PendingCall, undefined>((call) => call.start(), {
          turnBudgetMs: config.callTurnBudgetMs,
          isGone: (call) => call.gone(),
        })
      : undefined;
  const pushing = pushingPaths(files);
  const upgrade = createWebSocketEndpoint({ ...watchDeps, ...parts.push });
  return {
    handle: (request, response) => {
      const url = request.url ?? "";
      if (admission && (pushing.has(url) || isWatchPath(url))) {
        admission.admit({ gone: () => clientGone(request), start: () => serve(request, response) }, undefined);
      } else serve(request, response);
    },
    upgrade: admission
      ? (request, socket, head) =>
          admission.admit({ gone: () => socket.destroyed, start: () => upgrade(request, socket, head) }, undefined)
      : upgrade,
    waitingCount: () => admission?.waitingCount ?? 0,
  };
}

/** Counts and logs (rate-limited, peer address only) a connection or request refused by the listener's bounds. */
export function edgeRefusals(
  metrics: Metrics,
  refusalLog: RateLimitedLog,
): (reason: RefusalReason, peer: string) => void {
  return (reason, peer) => {
    metrics.refused(reason);
    refusalLog({ reason, peer }, "connection refused or closed by an edge bound");
  };
}

/** The request paths of the methods that push messages to the client (server-streaming and bidi) in `files`. */
function pushingPaths(files: DescFile[]): Set<string> {
  return new Set(
    files.flatMap((file) =>
      file.services.flatMap((service) =>
        service.methods
          .filter((method) => method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming")
          .map((method) => `/${service.typeName}/${method.name}`),
      ),
    ),
  );
}
