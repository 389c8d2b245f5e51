/**
 * How every @platformatic/kafka client of the broker connects: bootstrap
 * brokers, TLS, SASL, timeouts and retries, the same for the admin, the
 * producer and the consumers.
 */
import type { BaseOptions, SASLOptions } from "@platformatic/kafka";
import { backoffMs } from "../common/backoff.js";

/** Where the cluster is and how to authenticate (from KAFKA_* settings). */
export interface KafkaConnection {
  brokers: string[];
  /** TLS to the brokers (system CAs, or `ca`). */
  tls: boolean;
  /** A PEM CA to trust instead of the system's. */
  ca: string | undefined;
  sasl: { mechanism: "plain" | "scram-sha-256" | "scram-sha-512"; username: string; password: string } | undefined;
}

/** Kafka's SASL mechanism names for the ones streamgate's config accepts. */
const SASL_MECHANISMS = { plain: "PLAIN", "scram-sha-256": "SCRAM-SHA-256", "scram-sha-512": "SCRAM-SHA-512" } as const;

/** The connection settings every client of this broker shares. */
export function clientOptions(options: KafkaConnection, clientId: string): BaseOptions {
  const sasl: SASLOptions | undefined = options.sasl && {
    mechanism: SASL_MECHANISMS[options.sasl.mechanism],
    username: options.sasl.username,
    password: options.sasl.password,
  };
  return {
    clientId,
    bootstrapBrokers: options.brokers,
    ...(options.tls ? { tls: options.ca ? { ca: options.ca } : {} } : {}),
    ...(sasl ? { sasl } : {}),
    connectTimeout: 3000,
    requestTimeout: 10_000,
    // Retries back off to at most 2 s, so a broker that comes back is used again quickly.
    retries: 8,
    retryDelay: (_client, _operation, attempt) => backoffMs(attempt, { firstMs: 100, maxMs: 2000 }),
  };
}
