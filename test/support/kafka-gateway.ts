/**
 * streamgate on the test Kafka broker, for the Kafka test files: a topic
 * prefix of each test's own (its topics and consumer groups are seen by no
 * other test), gateways as real processes (src/main.ts) or in this process,
 * and small helpers to read what they return.
 */
import { randomUUID } from "node:crypto";
import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { type Result, StreamService } from "../../gen/streamgate/v1/stream_service_pb.js";
import { listeningPort, type StreamgateProcess, spawnStreamgate } from "./clients-process.js";
import { kafkaBrokers } from "./kafka-control.js";
import { apiKeyHeader, startTestServer, TEST_API_KEY, type TestServer } from "./server.js";

/**
 * A topic prefix no other test uses, e.g. "sgtest.crash.1a2b3c4d.", so a test
 * sees only its own topics, records and consumer groups on the shared broker.
 */
export function uniqueTopicPrefix(name: string): string {
  return `sgtest.${name}.${randomUUID().slice(0, 8)}.`;
}

/**
 * The environment of a streamgate on the test broker with topics under
 * `prefix`; `extra` adds or overrides variables. Two partitions keep topic
 * creation quick while still placing streams on more than one partition.
 */
export function kafkaGatewayEnv(prefix: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PORT: "0",
    HOST: "127.0.0.1",
    KAFKA_BROKERS: kafkaBrokers(),
    KAFKA_TOPIC_PREFIX: prefix,
    KAFKA_PARTITIONS: "2",
    ...extra,
  };
}

/** A streamgate process on the test broker, with clients for it. */
export interface KafkaGateway {
  process: StreamgateProcess;
  port: number;
  baseUrl: string;
  /** A StreamService client over gRPC. */
  client: Client<typeof StreamService>;
  /** A grpc.health.v1.Health client over gRPC. */
  health: Client<typeof Health>;
  /** SIGKILL (no drain, no shutdown code runs), resolving once the process is gone. */
  kill(): Promise<void>;
}

/**
 * Starts `node --import tsx src/main.ts` on the test broker with topics under
 * `prefix` and resolves once it listens (its topics exist and its processor has
 * joined its consumer group by then).
 */
export async function spawnKafkaGateway(prefix: string, extra: Record<string, string> = {}): Promise<KafkaGateway> {
  const process = spawnStreamgate(kafkaGatewayEnv(prefix, { LOG_LEVEL: "info", ...extra }));
  let port: number;
  try {
    port = await listeningPort(process);
  } catch (error) {
    await killProcess(process);
    throw error;
  }
  const baseUrl = `http://127.0.0.1:${port}`;
  const transport = createGrpcTransport({ baseUrl, interceptors: [apiKeyHeader(TEST_API_KEY)] });
  return {
    process,
    port,
    baseUrl,
    client: createClient(StreamService, transport),
    health: createClient(Health, transport),
    kill: () => killProcess(process),
  };
}

/** SIGKILLs a streamgate process if it still runs and resolves once it has exited. */
export async function killProcess(process: StreamgateProcess): Promise<void> {
  if (process.child.exitCode === null && process.child.signalCode === null) process.child.kill("SIGKILL");
  await process.exited;
}

/** Starts streamgate in this process on the test broker with topics under `prefix`. */
export function startKafkaTestServer(prefix: string, extra: Record<string, string> = {}): Promise<TestServer> {
  return startTestServer(kafkaGatewayEnv(prefix, extra));
}

/** A JSON value as SendData's `data` payload. */
export function jsonData(value: JsonValue): { case: "data"; value: Value } {
  return { case: "data", value: fromJson(ValueSchema, value) };
}

/** A result's payload: its JSON value, or "raw:" and its bytes. */
export function payloadOf(result: Result): JsonValue {
  if (result.payload.case === "data") return toJson(ValueSchema, result.payload.value);
  if (result.payload.case === "raw") return `raw:${[...result.payload.value].join(",")}`;
  return null;
}

/**
 * Calls `attempt` until it returns a value other than undefined, or throws
 * after `timeoutMs` with `what` in the message. For conditions no event
 * announces (a broker coming back, another instance catching up); each attempt
 * is a real request, `intervalMs` apart.
 */
export async function pollUntil<T>(
  what: string,
  attempt: () => Promise<T | undefined>,
  { timeoutMs, intervalMs }: { timeoutMs: number; intervalMs: number },
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await attempt();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `${what}: not within ${timeoutMs} ms${last === undefined ? "" : ` (last error: ${String(last)})`}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
