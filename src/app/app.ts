/**
 * The whole service, assembled: broker, registry, processor, fanout, the RPC
 * services and the one-port listener, each started in turn on a
 * {@link Lifecycle}, so a start that fails stops what it started and a close
 * stops everything in reverse. Tests build the same thing through
 * {@link startApp} with their own configuration.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { AdminService } from "../../gen/streamgate/v1/admin_service_pb.js";
import { StreamService } from "../../gen/streamgate/v1/stream_service_pb.js";
import type { Broker } from "../broker/broker.js";
import { instrumentBroker } from "../broker/instrumented.js";
import type { Config } from "../config/config.js";
import { createFanout } from "../fanout/fanout.js";
import { createAdminService } from "../guard/admin-service.js";
import { peerTokens } from "../guard/edge-auth.js";
import { Limits } from "../guard/limits/limits.js";
import { boundedLocalBuckets } from "../guard/limits/local-buckets.js";
import { LiveStats } from "../observe/live-stats.js";
import type { Logger } from "../observe/logger.js";
import { createMetrics, type TopicKind } from "../observe/metrics.js";
import { createRateLimitedLog } from "../observe/rate-limited-log.js";
import { droppedSpans } from "../observe/tracing.js";
import { CelCompiler, type CelRefusal } from "../processing/cel.js";
import { createProcessor } from "../processing/processor.js";
import { StreamPrograms } from "../processing/stream-programs.js";
import { createWatchTickets } from "../push/tickets.js";
import { createHealthService } from "../rpc/health.js";
import { listen } from "../rpc/listener.js";
import { createReflectionRoutes } from "../rpc/reflection.js";
import { Ingest } from "../streams/ingest.js";
import { createRegistry } from "../streams/registry.js";
import { StreamCounters } from "../streams/stream-counters.js";
import { createStreamService } from "../streams/stream-service.js";
import { topicNames, topicSpecs } from "../topics/topics.js";
import { probeBroker } from "./broker-probe.js";
import { createHttpEntry, type ExtraServices, edgeRefusals, openServicesOf, servedFiles } from "./http-entry.js";
import { Lifecycle } from "./lifecycle.js";
import { listenMetrics } from "./metrics-endpoint.js";
import { createBroker, createCredentials, createLimitStores } from "./parts.js";
import type { Readiness } from "./probes.js";

/** Peer-address buckets kept at most (about 100 bytes each): addresses are the client's to choose. */
const MAX_PEER_BUCKETS = 100_000;

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
  /** Whether it should get traffic now (GET /readyz). */
  readonly readiness: Readiness;
  /** Drains and stops: see README "Shutdown". Safe to call more than once. */
  close(): Promise<void>;
}

/** This app as one worker of several (WORKERS > 1; src/cluster/). */
export interface WorkerPart {
  /** Its number, 1 to WORKERS: the `worker` label of its metrics. */
  index: number;
  /** The key the primary generated, accepted when no credential is configured (see App.generatedApiKey). */
  generatedApiKey: string | undefined;
  /** Every worker's metrics, for GET /metrics on the service port (the primary gathers them). */
  scrape(): Promise<{ contentType: string; body: string }>;
}

/**
 * Starts streamgate with `config`; `broker` replaces the configured one (tests);
 * `extra` adds open services (tests only: {@link ExtraServices}). A start that
 * fails stops whatever it had started before it throws.
 */
export async function startApp(
  config: Config,
  logger: Logger,
  broker?: Broker,
  extra?: ExtraServices,
  worker?: WorkerPart,
): Promise<App> {
  const lifecycle = new Lifecycle(logger);
  try {
    return await assemble(config, logger, lifecycle, broker, extra, worker);
  } catch (error) {
    await lifecycle.stopAll();
    throw error;
  }
}

async function assemble(
  config: Config,
  logger: Logger,
  lifecycle: Lifecycle,
  given: Broker | undefined,
  extra: ExtraServices | undefined,
  worker: WorkerPart | undefined,
): Promise<App> {
  // First: an unreachable REDIS_URL stops the start before anything else is running.
  const limitStores = await lifecycle.start(
    "limit settings",
    () => createLimitStores(config, logger),
    (stores) => stores.settings.close(),
  );
  const rawBroker = await lifecycle.start(
    "broker",
    () => given ?? createBroker(config, logger),
    (broker) => broker.close(),
  );
  const topics = topicNames(config.topics);
  const metrics = createMetrics(worker?.index);
  // Everything below uses the measured broker, whichever kind it is.
  const kinds = new Map<string, TopicKind>([
    [topics.ingest, "ingest"],
    [topics.results, "results"],
    [topics.streams, "streams"],
  ]);
  const broker = instrumentBroker(rawBroker, kinds, metrics);
  await broker.ensureTopics(topicSpecs(config.topics));

  /**
   * The warn lines a client can cause at will (refused calls and connections,
   * failed records, unreadable results): one budget, REFUSAL_LOGS_PER_SECOND.
   */
  const warnings = createRateLimitedLog(logger, config.edge.refusalLogsPerSecond);
  const counters = new StreamCounters();
  const registry = createRegistry({
    broker,
    topic: topics.streams,
    resultsTopic: topics.results,
    ingestTopic: topics.ingest,
    logger,
    maxStreamsPerTenant: config.tenantMaxStreams,
    closedRetentionMs: config.closedStreamRetentionMs,
    onQuotaRefused: () => metrics.refused("stream_quota"),
  });
  registry.onRemoved((key) => counters.delete(key));
  await lifecycle.start(
    "registry",
    () => registry.start(),
    () => registry.stop(),
  );
  // Stream expressions (StartStream, processor) and watcher filters: the same settings, refusals counted alike;
  // a watcher filter failing on a result is counted here (a stream's by the processor, onFailed).
  const onCelRefused = (reason: CelRefusal) => metrics.refused(reason);
  const programs = new StreamPrograms(new CelCompiler(config.cel, onCelRefused));
  const watchCel = new CelCompiler(config.cel, onCelRefused, (reason) => metrics.watchFilterFailed.inc({ reason }));
  const processor = createProcessor({
    broker,
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
    programs,
  });
  await lifecycle.start(
    "processor",
    () => processor.start(),
    () => processor.stop(),
  );
  const ingest = new Ingest({
    broker,
    ingestTopic: topics.ingest,
    registry,
    counters,
    dedupWindow: config.dedupWindow,
  });
  // Sends under way are stored before the processor stops (below it on the stack).
  lifecycle.onStop("sends under way", () => ingest.drain());
  const fanout = createFanout({
    broker,
    resultsTopic: topics.results,
    registry,
    logger,
    window: config.fanoutWindow,
    cacheResults: config.fanoutCacheResults,
    watchBuffer: config.watchBuffer,
    failureLog: warnings,
    maxWatchersPerTenant: config.tenantMaxWatchers,
    onQuotaRefused: () => metrics.refused("watcher_quota"),
    onInterrupted: (reason) => metrics.watchersInterrupted.inc({ reason }),
    onDeliver: (result) => {
      if (result.sendTime) metrics.endToEnd.observe(Math.max(0, Date.now() - timestampMs(result.sendTime)) / 1000);
    },
  });
  await lifecycle.start(
    "fanout",
    () => fanout.start(),
    () => fanout.stop(),
  );

  const credentials = createCredentials(config, worker?.generatedApiKey);
  const limitSettings = limitStores.settings;
  const initialLimits = await limitSettings.load(config.limits);
  const limits = new Limits(initialLimits, limitStores.buckets, (result, limit, client) =>
    metrics.limiter.inc({ result, limit, client: client.label, tenant: client.tenantLabel }),
  );
  lifecycle.onStop("limits", () => limits.close());
  limitSettings.onChange((next) => {
    if (limits.apply(next)) logger.info({ limits: next }, "request limits changed");
  });
  if (limitSettings.shared) logger.info({ limits: initialLimits }, "request limits shared through Redis");
  // Failed authentication and open services are limited by peer address, in this process (README "Limits and protections").
  const peerBuckets = boundedLocalBuckets(MAX_PEER_BUCKETS);
  lifecycle.onStop("peer buckets", () => peerBuckets.close());
  const stats = new LiveStats();
  const tickets = createWatchTickets({ secret: config.push.ticketSecret, ttlMs: config.push.ticketTtlMs });
  const shutdown = new AbortController();

  const health = createHealthService();
  health.setStatus(StreamService.typeName, HealthCheckResponse_ServingStatus.SERVING);
  health.setStatus(AdminService.typeName, HealthCheckResponse_ServingStatus.SERVING);
  const reflection = createReflectionRoutes(servedFiles(extra));
  let draining = false;
  // The start reached the broker (topics above); the probe below keeps this current.
  let brokerReachable = true;
  metrics.brokerUp.set(1);
  const readiness: Readiness = () => (draining ? "draining" : brokerReachable ? undefined : "broker unreachable");
  const routes = (router: ConnectRouter) => {
    router.service(
      StreamService,
      createStreamService({
        registry,
        ingest,
        fanout,
        counters,
        programs,
        watchCel,
        maxPayloadBytes: config.maxPayloadBytes,
        tickets,
      }),
    );
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
  const entry = createHttpEntry({
    config,
    logger,
    metrics,
    exposition: worker ?? metrics,
    warnings,
    routes,
    extra,
    keys: credentials.keys,
    jwt: credentials.jwt,
    openServices: openServicesOf(config, extra),
    limits,
    stats,
    takePeerToken: peerTokens(peerBuckets, config.edge.peerLimit),
    isDraining: () => draining,
    readiness,
    push: {
      fanout,
      watchCel,
      tickets,
      heartbeatMs: config.push.heartbeatMs,
      ingest,
      maxPayloadBytes: config.maxPayloadBytes,
    },
  });
  metrics.observe({
    activeStreams: () => registry.openCount,
    activeWatchers: () => fanout.watcherCount,
    consumerLag: () => processor.lag(),
    callsWaiting: entry.waitingCount,
    droppedSpans,
  });
  const listener = await lifecycle.start(
    "listener",
    () =>
      listen({
        port: config.port,
        host: config.host,
        tls: config.tls,
        handler: entry.handle,
        upgrade: entry.upgrade,
        edge: config.edge,
        onRefused: edgeRefusals(metrics, warnings),
      }),
    (listener) => listener.close(config.shutdownTimeoutMs),
  );
  const metricsPort = config.metricsPort;
  const metricsListener =
    metricsPort === undefined
      ? undefined
      : await lifecycle.start(
          "metrics listener",
          () => listenMetrics(metrics, metricsPort, config.host, readiness),
          (listener) => listener.close(),
        );
  lifecycle.onStop(
    "broker probe",
    probeBroker(broker, config.healthProbeIntervalMs, (reachable) => {
      brokerReachable = reachable;
      metrics.brokerUp.set(reachable ? 1 : 0);
      // A draining server stays NOT_SERVING whatever the broker says.
      if (!draining)
        health.setAll(
          reachable ? HealthCheckResponse_ServingStatus.SERVING : HealthCheckResponse_ServingStatus.NOT_SERVING,
        );
    }),
  );

  let closing: Promise<void> | undefined;
  const close = async () => {
    draining = true;
    health.setAll(HealthCheckResponse_ServingStatus.NOT_SERVING);
    shutdown.abort();
    // Watchers first: they would keep connections open; each ends with its resume cursor.
    await fanout.stop();
    await lifecycle.stopAll();
  };
  return {
    port: listener.port,
    metricsPort: metricsListener?.port,
    broker: rawBroker,
    generatedApiKey: credentials.generatedApiKey,
    readiness,
    close: () => {
      closing ??= close();
      return closing;
    },
  };
}
