/**
 * Starts a real streamgate on a free port for a test, with the configuration a
 * user would give through the environment, on the embedded memory broker or on
 * the run's real Kafka broker (test/support/kafka-global-setup.ts).
 */
import { randomBytes } from "node:crypto";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { pino } from "pino";
import { StreamService } from "../../gen/streamgate/v1/stream_service_pb.js";
import { startApp, type App } from "../../src/app.js";
import type { Broker } from "../../src/broker/broker.js";
import { loadConfig } from "../../src/config.js";
import { kafkaBrokers } from "./kafka-control.js";

/** The brokers a server can run on: the embedded one, and the run's Kafka broker. */
export const BROKERS = ["memory", "kafka"] as const;

/** One of {@link BROKERS}. */
export type BrokerKind = (typeof BROKERS)[number];

/**
 * The environment that puts a server on `kind`: nothing for the memory broker;
 * for Kafka, the run's broker (`inject("kafkaBrokers")`), topics of its own
 * (`KAFKA_TOPIC_PREFIX`, unique unless `topicPrefix` is given, so servers
 * sharing the broker share no stream and no consumer group), 3 partitions and
 * replication 1 (the test broker is a single node).
 */
export function brokerEnv(kind: BrokerKind, topicPrefix = uniqueTopicPrefix()): Record<string, string> {
  if (kind === "memory") return {};
  return {
    KAFKA_BROKERS: kafkaBrokers(),
    KAFKA_TOPIC_PREFIX: topicPrefix,
    KAFKA_PARTITIONS: "3",
    KAFKA_REPLICATION: "1",
  };
}

/** A topic prefix no other test server uses, e.g. "t3fa9c1d2.". */
export function uniqueTopicPrefix(): string {
  return `t${randomBytes(4).toString("hex")}.`;
}

/** A running server for a test. */
export interface TestServer {
  app: App;
  port: number;
  baseUrl: string;
  /** The broker it runs on: "memory" or "kafka" (a given Broker object reports its own kind). */
  kind: string;
  close(): Promise<void>;
}

/**
 * Starts streamgate on port 0 with `env` (as environment variables). `broker`
 * chooses the broker: a kind ("memory" or "kafka", or `{ kind }`), whose
 * {@link brokerEnv} goes under `env` (so `env` can override it); or a Broker
 * object (a test double), which replaces the configured one. The memory broker
 * by default.
 */
export async function startTestServer(
  env: Record<string, string> = {},
  broker: Broker | BrokerKind | { kind: BrokerKind } = "memory",
): Promise<TestServer> {
  const given = typeof broker === "object" && "produce" in broker ? broker : undefined;
  const kind: BrokerKind = given ? "memory" : typeof broker === "string" ? broker : (broker as { kind: BrokerKind }).kind;
  const config = loadConfig({ PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "silent", ...brokerEnv(kind), ...env });
  const app = await startApp(config, pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }), given);
  return {
    app,
    port: app.port,
    baseUrl: `http://127.0.0.1:${app.port}`,
    kind: app.broker.kind,
    close: () => app.close(),
  };
}

/** The four Connect transports a client can use against one port. */
export const TRANSPORTS: Record<string, (baseUrl: string) => Transport> = {
  grpc: (baseUrl) => createGrpcTransport({ baseUrl }),
  "grpc-web": (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }),
  "connect-json": (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false }),
  "connect-binary": (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true }),
};

/** A StreamService client over the named transport. */
export function streamClient(server: TestServer, transport = "grpc"): Client<typeof StreamService> {
  return createClient(StreamService, TRANSPORTS[transport]!(server.baseUrl));
}

/** Collects a stream's messages until it ends, or throws its error. */
export async function collect<T>(messages: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const message of messages) all.push(message);
  return all;
}

/** Takes exactly `count` messages from a stream that stays open, then stops reading it. */
export async function take<T>(messages: AsyncIterable<T>, count: number): Promise<T[]> {
  const taken: T[] = [];
  if (count === 0) return taken;
  for await (const message of messages) {
    taken.push(message);
    if (taken.length === count) break;
  }
  return taken;
}
