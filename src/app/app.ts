/**
 * The whole service, assembled: broker, registry, processor, fanout, the RPC
 * services and the one-port listener, with an orderly shutdown. Tests build the
 * same thing through {@link startApp} with their own configuration.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { createRegistry as createTypeRegistry, type DescFile } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { file_google_rpc_error_details } from "../../gen/google/rpc/error_details_pb.js";
import { file_grpc_health_v1_health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { file_grpc_reflection_v1_reflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { file_grpc_reflection_v1alpha_reflection } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { AdminService, file_streamgate_v1_admin_service } from "../../gen/streamgate/v1/admin_service_pb.js";
import { file_streamgate_v1_stream_service, StreamService } from "../../gen/streamgate/v1/stream_service_pb.js";
import type { Broker } from "../broker/broker.js";
import { instrumentBroker } from "../broker/instrumented.js";
import { createKafkaBroker } from "../broker/kafka.js";
import { createMemoryBroker } from "../broker/memory.js";
import type { Config } from "../config/config.js";
import { createFanout } from "../fanout/fanout.js";
import { createAdminService } from "../guard/admin-service.js";
import { type ApiKeyEntry, ApiKeyStore, type Principal, sha256 } from "../guard/auth/api-keys.js";
import { createJwtVerifier } from "../guard/auth/jwt.js";
import { ALL_SCOPES } from "../guard/auth/scopes.js";
import { createEdgeAuth, type EdgeDecision, peerTokens, proceduresOf } from "../guard/edge-auth.js";
import { type LimitSettingsStore, localLimitSettings } from "../guard/limits/limit-settings.js";
import { type BucketStore, Limits } from "../guard/limits/limits.js";
import { boundedLocalBuckets, localBuckets } from "../guard/limits/local-buckets.js";
import { connectRedisLimits } from "../guard/limits/redis-limits.js";
import { serveDashboard } from "../observe/dashboard.js";
import { LiveStats } from "../observe/live-stats.js";
import type { Logger } from "../observe/logger.js";
import { createMetrics, type Metrics, type RefusalReason, type TopicKind } from "../observe/metrics.js";
import { createRateLimitedLog, type RateLimitedLog } from "../observe/rate-limited-log.js";
import { CelCompiler, type CelRefusal } from "../processing/cel.js";
import { createProcessor } from "../processing/processor.js";
import { CallAdmission } from "../rpc/call-admission.js";
import { createCors } from "../rpc/cors.js";
import { createHealthService } from "../rpc/health.js";
import { writeHead } from "../rpc/http-response.js";
import { createIdentify } from "../rpc/interceptors/auth.js";
import { createInterceptors } from "../rpc/interceptors/chain.js";
import { clientGone, listen, peerAddress } from "../rpc/listener.js";
import { createReflectionRoutes } from "../rpc/reflection.js";
import { callContext, PRINCIPAL, REQUEST_ID_HEADER, requestIdFrom, TENANT } from "../rpc/request-context.js";
import { markInvalidUtf8 } from "../rpc/utf8.js";
import { Ingest } from "../streams/ingest.js";
import { createRegistry } from "../streams/registry.js";
import { StreamCounters } from "../streams/stream-counters.js";
import { createStreamService } from "../streams/stream-service.js";
import { topicNames, topicSpecs } from "../topics/topics.js";

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

/** The configured broker: Kafka when KAFKA_BROKERS is set, else the embedded one. */
async function createBroker(config: Config, logger: Logger): Promise<Broker> {
  if (!config.kafka) return createMemoryBroker(config.memory);
  const kafka = config.kafka;
  return createKafkaBroker({
    brokers: kafka.brokers,
    clientId: kafka.clientId,
    replication: kafka.replication,
    tls: kafka.tls,
    ca: kafka.tlsCaFile === undefined ? undefined : readFileSync(kafka.tlsCaFile, "utf8"),
    sasl: kafka.sasl,
    lingerMs: kafka.lingerMs,
    maxBatchRecords: kafka.batchMaxRecords,
    produceTimeoutMs: kafka.produceTimeoutMs,
    logger,
  });
}

/** Where the buckets and limit settings live: Redis with REDIS_URL, else this process. */
async function createLimitStores(
  config: Config,
  logger: Logger,
): Promise<{ buckets: BucketStore; settings: LimitSettingsStore }> {
  if (!config.redis) return { buckets: localBuckets, settings: localLimitSettings() };
  return connectRedisLimits(config.redis.url, config.redis.keyPrefix, logger);
}

/** Peer-address buckets kept at most (about 100 bytes each): addresses are the client's to choose. */
const MAX_PEER_BUCKETS = 100_000;

/**
 * Room for a request's fields besides its payload, so an oversized payload gets our message:
 * connect reads at most MAX_PAYLOAD_BYTES plus this of one request message.
 */
export const REQUEST_OVERHEAD_BYTES = 64 * 1024;

/** A running streamgate. */
export interface App {
  /** The bound port. */
  readonly port: number;
  /** The bound METRICS_PORT, when one is configured. */
  readonly metricsPort: number | undefined;
  /** The broker it runs on. */
  readonly broker: Broker;
  /**
   * The key generated because no credential was configured (see README
   * "Authentication"), the only one accepted; undefined when keys or JWT are configured.
   */
  readonly generatedApiKey: string | undefined;
  /** Drains and stops: see README "Shutdown". Safe to call more than once. */
  close(): Promise<void>;
}

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

/**
 * Starts streamgate with `config`; `broker` replaces the configured one (tests);
 * `extra` adds open services (tests only: {@link ExtraServices}).
 */
export async function startApp(config: Config, logger: Logger, broker?: Broker, extra?: ExtraServices): Promise<App> {
  // First: an unreachable REDIS_URL stops the start before anything else is running.
  const limitStores = await createLimitStores(config, logger);
  const limitSettings = limitStores.settings;
  let given: Broker;
  try {
    given = broker ?? (await createBroker(config, logger));
  } catch (error) {
    await limitSettings.close();
    throw error;
  }
  const topics = topicNames(config.topics);
  const metrics = createMetrics();
  // Everything below uses the measured broker, whichever kind it is.
  const kinds = new Map<string, TopicKind>([
    [topics.ingest, "ingest"],
    [topics.results, "results"],
    [topics.streams, "streams"],
  ]);
  const log = instrumentBroker(given, kinds, metrics);
  await log.ensureTopics(topicSpecs(config.topics));

  /**
   * The warn lines a client can cause at will (refused calls and connections,
   * failed records, unreadable results): one budget, REFUSAL_LOGS_PER_SECOND.
   */
  const warnings = createRateLimitedLog(logger, config.edge.refusalLogsPerSecond);
  const counters = new StreamCounters();
  const registry = createRegistry({
    broker: log,
    topic: topics.streams,
    resultsTopic: topics.results,
    ingestTopic: topics.ingest,
    logger,
    maxStreamsPerTenant: config.tenantMaxStreams,
    closedRetentionMs: config.closedStreamRetentionMs,
    onQuotaRefused: () => metrics.refused("stream_quota"),
  });
  registry.onRemoved((key) => counters.delete(key));
  await registry.start();
  // Stream expressions (StartStream, processor) and watcher filters: the same settings, refusals counted alike;
  // a watcher filter failing on a result is counted here (a stream's by the processor, onFailed).
  const onCelRefused = (reason: CelRefusal) => metrics.refused(reason);
  const cel = new CelCompiler(config.cel, onCelRefused);
  const watchCel = new CelCompiler(config.cel, onCelRefused, (reason) => metrics.watchFilterFailed.inc({ reason }));
  const processor = createProcessor({
    broker: log,
    ingestTopic: topics.ingest,
    resultsTopic: topics.results,
    registry,
    counters,
    logger,
    dedupWindow: config.dedupWindow,
    maxInFlight: config.processorMaxInFlight,
    groupId: `${config.topics.prefix}processor`,
    // A failing record is finished as failed, never left holding its partition (src/processing/record-failure.ts).
    maxPayloadBytes: config.maxPayloadBytes,
    onFailed: (reason) => metrics.recordsFailed.inc({ reason }),
    failureLog: warnings,
    cel,
  });
  await processor.start();
  const fanout = createFanout({
    broker: log,
    resultsTopic: topics.results,
    registry,
    logger,
    window: config.fanoutWindow,
    cacheResults: config.fanoutCacheResults,
    watchBuffer: config.watchBuffer,
    cel: watchCel,
    failureLog: warnings,
    maxWatchersPerTenant: config.tenantMaxWatchers,
    onQuotaRefused: () => metrics.refused("watcher_quota"),
    onDeliver: (result) => {
      if (result.sendTime) metrics.endToEnd.observe(Math.max(0, Date.now() - timestampMs(result.sendTime)) / 1000);
    },
  });
  await fanout.start();
  const ingest = new Ingest({
    broker: log,
    ingestTopic: topics.ingest,
    registry,
    counters,
    maxPayloadBytes: config.maxPayloadBytes,
    dedupWindow: config.dedupWindow,
  });

  // Secure by default: with nothing configured, one generated key rather than an open service.
  const { auth } = config;
  const generatedApiKey =
    auth.apiKeys.length === 0 && auth.jwt === undefined ? randomBytes(32).toString("base64url") : undefined;
  const keys: ApiKeyEntry[] =
    generatedApiKey === undefined
      ? auth.apiKeys
      : [
          {
            name: "generated",
            tenant: "generated",
            role: "admin",
            scopes: ALL_SCOPES,
            digest: sha256(generatedApiKey),
          },
        ];
  const apiKeys = new ApiKeyStore(keys);
  const jwtVerifier = auth.jwt && createJwtVerifier(auth.jwt);

  const initialLimits = await limitSettings.load(config.limits);
  const limits = new Limits(initialLimits, limitStores.buckets, (result, limit, client) =>
    metrics.limiter.inc({ result, limit, client: client.label, tenant: client.tenantLabel }),
  );
  limitSettings.onChange((next) => {
    if (limits.apply(next)) logger.info({ limits: next }, "request limits changed");
  });
  if (limitSettings.shared) logger.info({ limits: initialLimits }, "request limits shared through Redis");
  const stats = new LiveStats();
  const shutdown = new AbortController();

  const health = createHealthService();
  health.setStatus(StreamService.typeName, HealthCheckResponse_ServingStatus.SERVING);
  health.setStatus(AdminService.typeName, HealthCheckResponse_ServingStatus.SERVING);
  const servedFiles = extra ? [...SERVED_FILES, ...extra.files] : SERVED_FILES;
  const openServices = new Set([
    ...auth.openServices,
    ...(extra?.files.flatMap((file) => file.services.map((service) => service.typeName)) ?? []),
  ]);
  const reflection = createReflectionRoutes(servedFiles);
  let draining = false;
  const routes = (router: ConnectRouter) => {
    router.service(StreamService, createStreamService({ registry, ingest, fanout, counters, cel }));
    router.service(
      AdminService,
      createAdminService({
        limits,
        settings: limitSettings,
        stats,
        activeStreams: () => registry.openCount,
        activeWatchers: () => fanout.watcherCount,
        shutdown: shutdown.signal,
      }),
    );
    health.routes(router);
    reflection(router);
    extra?.routes(router);
  };
  // Failed authentication and open services are limited by peer address, in this process (README "Limits and protections").
  const peerBuckets = boundedLocalBuckets(MAX_PEER_BUCKETS);
  const takePeerToken = peerTokens(peerBuckets, config.edge.peerLimit);
  // Invalid UTF-8 in a binary request reaches validation (INVALID_ARGUMENT), not connect's INTERNAL.
  markInvalidUtf8();
  const rpc = connectNodeAdapter({
    routes,
    interceptors: createInterceptors({
      logger,
      metrics,
      isDraining: () => draining,
      auth: {
        keys: apiKeys,
        jwt: jwtVerifier,
        openServices,
        adminServices: new Set(auth.adminServices),
      },
      limits: {
        limits,
        exemptServices: new Set([...openServices, ...auth.adminServices]),
        stats,
      },
      stats,
      openStreams: { openServices, takePeerToken, metrics },
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
  /** Each request's id, chosen before connect sees the request, and the principal and tenant the edge decided. */
  const calls = new WeakMap<http.IncomingMessage | Http2ServerRequest, EdgeCall>();
  const cors = createCors(config.corsOrigins);
  const edgeAuth = createEdgeAuth({
    procedures: proceduresOf(servedFiles),
    openServices,
    adminServices: new Set(auth.adminServices),
    identify: createIdentify(apiKeys, jwtVerifier),
    takePeerToken,
    metrics,
    refusalLog: warnings,
  });
  const serve = (
    request: http.IncomingMessage | Http2ServerRequest,
    response: http.ServerResponse | Http2ServerResponse,
  ) => {
    if (serveMetrics(metrics, request, response)) return;
    if (serveDashboard(request, response)) return;
    const requestId = requestIdFrom(request.headers[REQUEST_ID_HEADER]);
    const call: EdgeCall = { requestId };
    calls.set(request, call);
    // Set before connect writes its headers, which include these: a response header on every protocol, streams too.
    response.setHeader(REQUEST_ID_HEADER, requestId);
    if (cors(request, response)) return;
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
  // Server-streaming and bidi calls (WatchResults above all) start a
  // turn's budget at a time (src/rpc/call-admission.ts). Unary and client-stream
  // calls start at once: spreading them only split the produce batches.
  const admission =
    config.callTurnBudgetMs > 0
      ? new CallAdmission(serve, { turnBudgetMs: config.callTurnBudgetMs, isGone: clientGone })
      : undefined;
  const pushing = pushingPaths(servedFiles);
  metrics.observe({
    activeStreams: () => registry.openCount,
    activeWatchers: () => fanout.watcherCount,
    consumerLag: () => processor.lag(),
    callsWaiting: () => admission?.waitingCount ?? 0,
  });
  const listener = await listen({
    port: config.port,
    host: config.host,
    tls: config.tls,
    handler: (request, response) => {
      if (admission && pushing.has(request.url ?? "")) admission.admit(request, response);
      else serve(request, response);
    },
    edge: config.edge,
    onRefused: edgeRefusals(metrics, warnings),
  });
  const metricsListener = config.metricsPort === undefined ? undefined : await listenMetrics(metrics, config);

  // NOT_SERVING while the broker does not answer, so load balancers go elsewhere.
  let probing = false;
  const probe = setInterval(() => {
    if (probing) return; // one probe at a time, however long a dead broker takes to answer
    probing = true;
    void log
      .probe(config.healthProbeIntervalMs)
      .then((ok) => {
        if (draining) return;
        health.setAll(ok ? HealthCheckResponse_ServingStatus.SERVING : HealthCheckResponse_ServingStatus.NOT_SERVING);
      })
      .finally(() => (probing = false));
  }, config.healthProbeIntervalMs);
  probe.unref();

  let closing: Promise<void> | undefined;
  const close = async () => {
    draining = true;
    clearInterval(probe);
    health.setAll(HealthCheckResponse_ServingStatus.NOT_SERVING);
    shutdown.abort();
    // Watchers first: they would keep connections open; each ends with its resume cursor.
    await fanout.stop();
    await listener.close(config.shutdownTimeoutMs);
    await metricsListener?.close();
    await ingest.drain();
    await processor.stop();
    await registry.stop();
    await log.close();
    await limits.close();
    await limitSettings.close();
    await peerBuckets.close();
  };
  return {
    port: listener.port,
    metricsPort: metricsListener?.port,
    broker: given,
    generatedApiKey,
    close: () => (closing ??= close()),
  };
}

/** What the edge learned of a call, read into its context by connect. */
interface EdgeCall {
  requestId: string;
  principal?: Principal;
  tenant?: string;
}

/** Counts and logs (rate-limited, peer address only) a connection or request refused by the listener's bounds. */
function edgeRefusals(metrics: Metrics, refusalLog: RateLimitedLog): (reason: RefusalReason, peer: string) => void {
  return (reason, peer) => {
    metrics.refused(reason);
    refusalLog({ reason, peer }, "connection refused or closed by an edge bound");
  };
}

/** Answers GET /metrics with the text exposition; false for any other request. */
function serveMetrics(
  metrics: Metrics,
  request: http.IncomingMessage | Http2ServerRequest,
  response: http.ServerResponse | Http2ServerResponse,
): boolean {
  if (request.method !== "GET" || request.url?.split("?")[0] !== "/metrics") return false;
  void metrics.scrape().then(
    ({ contentType, body }) => {
      writeHead(response, 200, { "content-type": contentType });
      response.end(body);
    },
    () => {
      writeHead(response, 500, { "content-type": "text/plain" });
      response.end("metrics collection failed\n");
    },
  );
  return true;
}

/** A plain HTTP listener on METRICS_PORT serving only /metrics. */
async function listenMetrics(metrics: Metrics, config: Config): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((request, response) => {
    if (serveMetrics(metrics, request, response)) return;
    writeHead(response, 404, { "content-type": "text/plain" });
    response.end("not found: this port serves GET /metrics only\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.metricsPort, config.host, resolve);
  });
  const address = server.address();
  return {
    port: typeof address === "object" && address ? address.port : 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
