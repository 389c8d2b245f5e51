/**
 * The whole service, assembled: broker, registry, processor, fanout, the RPC
 * services and the one-port listener, with an orderly shutdown. Tests build the
 * same thing through {@link startApp} with their own configuration.
 */
import { readFileSync } from "node:fs";
import type { DescFile } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { HealthCheckResponse_ServingStatus, file_grpc_health_v1_health } from "../gen/grpc/health/v1/health_pb.js";
import { file_grpc_reflection_v1_reflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { file_grpc_reflection_v1alpha_reflection } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { StreamService, file_streamgate_v1_stream_service } from "../gen/streamgate/v1/stream_service_pb.js";
import type { Broker } from "./broker/broker.js";
import { createKafkaBroker } from "./broker/kafka.js";
import { createMemoryBroker } from "./broker/memory.js";
import type { Config } from "./config.js";
import { createCors } from "./cors.js";
import { createFanout } from "./fanout.js";
import { createHealthService } from "./health.js";
import { Ingest } from "./ingest.js";
import { createInterceptors } from "./interceptors/chain.js";
import type { Logger } from "./logger.js";
import { createProcessor } from "./processor.js";
import { createReflectionRoutes } from "./reflection.js";
import { createRegistry } from "./registry.js";
import { listen } from "./server.js";
import { StreamCounters } from "./stream-counters.js";
import { createStreamService } from "./stream-service.js";
import { topicNames, topicSpecs } from "./topics.js";
import { markInvalidUtf8 } from "./utf8.js";

/** The files whose services this server serves, for reflection. */
const SERVED_FILES: DescFile[] = [
  file_streamgate_v1_stream_service,
  file_grpc_health_v1_health,
  file_grpc_reflection_v1_reflection,
  file_grpc_reflection_v1alpha_reflection,
];

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

/** Room for a request's fields besides its payload, so an oversized payload gets our message. */
const REQUEST_OVERHEAD_BYTES = 64 * 1024;

/** A running streamgate. */
export interface App {
  /** The bound port. */
  readonly port: number;
  /** The broker it runs on. */
  readonly broker: Broker;
  /** Drains and stops: see README "Shutdown". Safe to call more than once. */
  close(): Promise<void>;
}

/** Starts streamgate with `config`; `broker` replaces the configured one (tests). */
export async function startApp(config: Config, logger: Logger, broker?: Broker): Promise<App> {
  const log = broker ?? (await createBroker(config, logger));
  const topics = topicNames(config.topics);
  await log.ensureTopics(topicSpecs(config.topics));

  const counters = new StreamCounters();
  const registry = createRegistry({ broker: log, topic: topics.streams, resultsTopic: topics.results, logger });
  await registry.start();
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

  const health = createHealthService();
  health.setStatus(StreamService.typeName, HealthCheckResponse_ServingStatus.SERVING);
  const reflection = createReflectionRoutes(SERVED_FILES);
  let draining = false;
  const routes = (router: ConnectRouter) => {
    router.service(StreamService, createStreamService({ registry, ingest, fanout, counters }));
    health.routes(router);
    reflection(router);
  };
  // Invalid UTF-8 in a binary request reaches validation (INVALID_ARGUMENT), not connect's INTERNAL.
  markInvalidUtf8();
  const rpc = connectNodeAdapter({
    routes,
    interceptors: createInterceptors({ logger, isDraining: () => draining }),
    readMaxBytes: config.maxPayloadBytes + REQUEST_OVERHEAD_BYTES,
    // proto3 JSON: an unknown field is an error, not silently dropped data.
    jsonOptions: { ignoreUnknownFields: false },
  });
  const cors = createCors(config.corsOrigins);
  const listener = await listen({
    port: config.port,
    host: config.host,
    tls: config.tls,
    handler: (request, response) => {
      if (!cors(request, response)) rpc(request, response);
    },
  });

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
    // Watchers first: they would keep connections open; each ends with its resume cursor.
    await fanout.stop();
    await listener.close(config.shutdownTimeoutMs);
    await ingest.drain();
    await processor.stop();
    await registry.stop();
    await log.close();
  };
  return {
    port: listener.port,
    broker: log,
    close: () => (closing ??= close()),
  };
}
