/**
 * Building the configured parts that have a choice to make: which broker
 * (Kafka or the embedded one), where limits live (Redis or this process),
 * which credentials are accepted (the configured ones, or one generated key).
 */
import { randomBytes } from "node:crypto";
import type { Broker } from "../broker/broker.js";
import { createKafkaBroker } from "../broker/kafka.js";
import { createMemoryBroker } from "../broker/memory.js";
import type { Config } from "../config/config.js";
import { type ApiKeyEntry, ApiKeyStore, sha256 } from "../guard/auth/api-keys.js";
import { createJwtVerifier, type JwtVerifier } from "../guard/auth/jwt.js";
import { ALL_SCOPES } from "../guard/auth/scopes.js";
import { type LimitSettingsStore, localLimitSettings } from "../guard/limits/limit-settings.js";
import type { BucketStore } from "../guard/limits/limits.js";
import { localBuckets } from "../guard/limits/local-buckets.js";
import { connectRedisLimits } from "../guard/limits/redis-limits.js";
import type { Logger } from "../observe/logger.js";

/** The configured broker: Kafka when KAFKA_BROKERS is set, else the embedded one. */
export async function createBroker(config: Config, logger: Logger): Promise<Broker> {
  if (!config.kafka) return createMemoryBroker(config.memory);
  const kafka = config.kafka;
  return createKafkaBroker({
    brokers: kafka.brokers,
    clientId: kafka.clientId,
    replication: kafka.replication,
    tls: kafka.tls,
    ca: kafka.tlsCa,
    sasl: kafka.sasl,
    lingerMs: kafka.lingerMs,
    maxBatchRecords: kafka.batchMaxRecords,
    produceTimeoutMs: kafka.produceTimeoutMs,
    logger,
  });
}

/** Where the buckets and limit settings live: Redis with REDIS_URL, else this process. */
export async function createLimitStores(
  config: Config,
  logger: Logger,
): Promise<{ buckets: BucketStore; settings: LimitSettingsStore }> {
  if (!config.redis) return { buckets: localBuckets, settings: localLimitSettings() };
  return connectRedisLimits(config.redis.url, config.redis.keyPrefix, logger);
}

/** The credentials accepted, and the key generated when none is configured. */
export interface Credentials {
  keys: ApiKeyStore;
  jwt: JwtVerifier | undefined;
  /** See App.generatedApiKey. */
  generatedApiKey: string | undefined;
}

/** A new random API key (256 bits), for when no credential is configured. */
export function generateApiKey(): string {
  return randomBytes(32).toString("base64url");
}

/**
 * Secure by default: with nothing configured, one generated key (an admin of tenant "generated") rather than an open service.
 * `givenKey`: the key to accept instead of a new one (every worker of a cluster accepts the one its primary generated).
 */
export function createCredentials(config: Config, givenKey?: string): Credentials {
  const { auth } = config;
  const generatedApiKey =
    auth.apiKeys.length === 0 && auth.jwt === undefined ? (givenKey ?? generateApiKey()) : undefined;
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
  return { keys: new ApiKeyStore(keys), jwt: auth.jwt && createJwtVerifier(auth.jwt), generatedApiKey };
}
