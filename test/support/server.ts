/**
 * Starts a real streamgate on a free port for a test, with the configuration a
 * user would give through the environment, on the embedded memory broker or on
 * the run's real Kafka broker (test/support/kafka-global-setup.ts).
 */
import { randomBytes } from "node:crypto";
import { type Client, Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { AdminService } from "../../gen/streamgate/v1/admin_service_pb.js";
import {
  ResumeInfoSchema,
  StreamService,
  type WatchResultsResponse,
} from "../../gen/streamgate/v1/stream_service_pb.js";
import { type App, startApp } from "../../src/app/app.js";
import type { Broker } from "../../src/broker/broker.js";
import { loadConfig } from "../../src/config/config.js";
import type { Logger } from "../../src/observe/logger.js";
import { kafkaBrokers } from "./kafka-control.js";

/** The API key every test server accepts unless the test configures auth itself (name "test"). */
export const TEST_API_KEY = "streamgate-test-key-0123456789";

/**
 * The tenant of {@link TEST_API_KEY}: a key configured without "@tenant" is a
 * tenant of its own, named by the key's name. Its streams' records are keyed
 * `test/<stream id>` on every topic.
 */
export const TEST_TENANT = "test";

/** The variables that configure credentials: a test setting any of them (even to "") gets no default key. */
export const AUTH_VARIABLES = [
  "API_KEYS",
  "API_KEYS_FILE",
  "ADMIN_API_KEYS",
  "JWT_HS256_SECRET",
  "JWT_HS256_SECRET_FILE",
  "JWT_JWKS_FILE",
];

/** `env` with `API_KEYS=test:<TEST_API_KEY>` added unless it configures credentials itself. */
export function withTestApiKey(env: Record<string, string>): Record<string, string> {
  return AUTH_VARIABLES.some((name) => name in env) ? env : { API_KEYS: `test:${TEST_API_KEY}`, ...env };
}

/** The x-api-key header of `server`'s key, for raw HTTP clients (fetch, http2); none when it has no known key. */
export function authHeaders(server: { apiKey: string | undefined }): Record<string, string> {
  return server.apiKey === undefined ? {} : { "x-api-key": server.apiKey };
}

/** A Connect client interceptor sending `key` as x-api-key on every call. */
export function apiKeyHeader(key: string): Interceptor {
  return (next) => (request) => {
    request.header.set("x-api-key", key);
    return next(request);
  };
}

/** A grpc-js client interceptor sending `key` as x-api-key metadata on every call (pass in the client's options). */
export function grpcJsApiKey(key: string): grpc.Interceptor {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set("x-api-key", key);
        next(metadata, listener);
      },
    });
}

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
  /** The key it accepts: {@link TEST_API_KEY}, or the generated one; undefined when the test configured auth. */
  apiKey: string | undefined;
  close(): Promise<void>;
}

/**
 * Starts streamgate on port 0 with `env` (as environment variables). `broker`
 * chooses the broker: a kind ("memory" or "kafka", or `{ kind }`), whose
 * {@link brokerEnv} goes under `env` (so `env` can override it); or a Broker
 * object (a test double), which replaces the configured one. The memory broker
 * by default. Unless `env` sets one of {@link AUTH_VARIABLES}, the server
 * accepts `x-api-key: TEST_API_KEY` (set one to "" to get the generated key).
 * `logger` receives the server's logs (silent by default).
 */
export async function startTestServer(
  env: Record<string, string> = {},
  broker: Broker | BrokerKind | { kind: BrokerKind } = "memory",
  logger: Logger = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }),
): Promise<TestServer> {
  const given = typeof broker === "object" && "produce" in broker ? broker : undefined;
  const kind: BrokerKind = given
    ? "memory"
    : typeof broker === "string"
      ? broker
      : (broker as { kind: BrokerKind }).kind;
  const config = loadConfig({
    PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: "silent",
    ...brokerEnv(kind),
    ...withTestApiKey(env),
  });
  const app = await startApp(config, logger, given);
  return {
    app,
    port: app.port,
    baseUrl: `http://127.0.0.1:${app.port}`,
    kind: app.broker.kind,
    apiKey: app.generatedApiKey ?? (AUTH_VARIABLES.some((name) => name in env) ? undefined : TEST_API_KEY),
    close: () => app.close(),
  };
}

/** The four Connect transports a client can use against one port, with optional interceptors (e.g. {@link apiKeyHeader}). */
export const TRANSPORTS: Record<string, (baseUrl: string, interceptors?: Interceptor[]) => Transport> = {
  grpc: (baseUrl, interceptors) => createGrpcTransport({ baseUrl, interceptors }),
  "grpc-web": (baseUrl, interceptors) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors }),
  "connect-json": (baseUrl, interceptors) =>
    createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false, interceptors }),
  "connect-binary": (baseUrl, interceptors) =>
    createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, interceptors }),
};

/**
 * A StreamService client over the named transport, sending `apiKey` as
 * x-api-key (the server's {@link TestServer.apiKey} by default; null: no key).
 */
export function streamClient(
  server: TestServer,
  transport = "grpc",
  apiKey: string | null = server.apiKey ?? null,
): Client<typeof StreamService> {
  return createClient(
    StreamService,
    TRANSPORTS[transport]!(server.baseUrl, apiKey === null ? [] : [apiKeyHeader(apiKey)]),
  );
}

/** An AdminService client over the named transport, sending `apiKey` as x-api-key (the server's key by default). */
export function adminClient(
  server: TestServer,
  transport = "grpc",
  apiKey: string | null = server.apiKey ?? null,
): Client<typeof AdminService> {
  return createClient(
    AdminService,
    TRANSPORTS[transport]!(server.baseUrl, apiKey === null ? [] : [apiKeyHeader(apiKey)]),
  );
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

/**
 * Reads `count` results of `streamId` after `afterCursor` (all from the start
 * when empty) as a client should: when the watch ends RESOURCE_EXHAUSTED, it
 * resumes from the cursor the error gives. With a small WATCH_BUFFER, results
 * that reach the fanout together (one Kafka fetch) end even a reader that
 * keeps up.
 */
export async function takeResuming(
  client: Client<typeof StreamService>,
  streamId: string,
  afterCursor: string,
  count: number,
  signal?: AbortSignal,
): Promise<WatchResultsResponse[]> {
  const taken: WatchResultsResponse[] = [];
  let cursor = afterCursor;
  while (taken.length < count) {
    try {
      for await (const message of client.watchResults({ streamId, afterCursor: cursor }, { signal })) {
        taken.push(message);
        cursor = message.result!.cursor;
        if (taken.length === count) break;
      }
      if (taken.length < count) throw new Error(`the watch ended after ${taken.length} of ${count} results`);
    } catch (error) {
      const ended = ConnectError.from(error);
      if (ended.code !== Code.ResourceExhausted) throw error;
      cursor = ended.findDetails(ResumeInfoSchema)[0]?.cursor ?? cursor;
    }
  }
  return taken;
}

/** The server's open WatchResults calls (its streamgate_active_watchers gauge), as /metrics reports it. */
export async function activeWatchers(server: TestServer): Promise<number> {
  const text = await (await fetch(`${server.baseUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("streamgate_active_watchers "));
  return Number(line?.split(" ")[1] ?? NaN);
}
