/**
 * kafkajs for the bench's baseline rows only: plain kafkajs 2.2.4 from the npm
 * registry, as an application would have it (none of streamgate's patches),
 * installed by the bench itself into .tools/kafkajs (`npm install --prefix`,
 * reused when that version is there) and loaded from there at run time. It is
 * not one of the project's dependencies: `npm ls kafkajs` in the project does
 * not see it, and the bench typechecks without it, against the slice of its
 * API declared here.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { ROOT } from "./processes.js";

export const KAFKAJS_VERSION = "2.2.4";
/** The npm prefix kafkajs is installed under (a package.json of its own, outside the project's tree). */
const PREFIX = join(ROOT, ".tools/kafkajs");
const PACKAGE_DIR = join(PREFIX, "node_modules/kafkajs");

/** The version installed in .tools/kafkajs, if any. */
function installedVersion(): string | undefined {
  try {
    return (JSON.parse(readFileSync(join(PACKAGE_DIR, "package.json"), "utf8")) as { version?: string }).version;
  } catch {
    return undefined;
  }
}

/** Installs kafkajs into .tools/kafkajs unless the pinned version is there already; returns its directory. */
export async function ensureKafkajs(): Promise<string> {
  if (installedVersion() === KAFKAJS_VERSION) return PACKAGE_DIR;
  mkdirSync(PREFIX, { recursive: true });
  // A project of its own, so that npm neither looks further up nor touches streamgate's package.json.
  const manifest = join(PREFIX, "package.json");
  if (!existsSync(manifest))
    writeFileSync(manifest, `${JSON.stringify({ name: "streamgate-bench-kafkajs", private: true }, null, 2)}\n`);
  process.stderr.write(`bench: installing kafkajs ${KAFKAJS_VERSION} into .tools/kafkajs (npm install)\n`);
  const args = [
    "install",
    "--prefix",
    PREFIX,
    "--no-save",
    "--no-audit",
    "--no-fund",
    "--ignore-scripts",
    `kafkajs@${KAFKAJS_VERSION}`,
  ];
  await new Promise<void>((resolve, reject) => {
    execFile("npm", args, { cwd: PREFIX, timeout: 300_000 }, (error, stdout, stderr) =>
      error
        ? reject(new Error(`bench: npm ${args.join(" ")} failed: ${error.message}\n${stdout}${stderr}`))
        : resolve(),
    );
  });
  const installed = installedVersion();
  if (installed !== KAFKAJS_VERSION)
    throw new Error(
      `bench: .tools/kafkajs holds kafkajs ${installed ?? "nothing"} after npm install, not ${KAFKAJS_VERSION}`,
    );
  return PACKAGE_DIR;
}

/** kafkajs from .tools/kafkajs (installed first when missing). */
export async function loadKafkajs(): Promise<KafkajsModule> {
  // The absolute path: a bare "kafkajs" could resolve to a copy in the project's node_modules.
  return createRequire(import.meta.url)(await ensureKafkajs()) as KafkajsModule;
}

// The slice of kafkajs 2.2.4's API the bench uses (its own types are not installed for the typecheck).

export interface KafkajsModule {
  Kafka: new (config: KafkajsConfig) => KafkajsClient;
  Partitioners: { DefaultPartitioner: unknown };
  logLevel: { NOTHING: number; ERROR: number; WARN: number; INFO: number; DEBUG: number };
}

export interface KafkajsRetry {
  initialRetryTime?: number;
  maxRetryTime?: number;
  retries?: number;
}

export interface KafkajsConfig {
  clientId: string;
  brokers: string[];
  connectionTimeout?: number;
  requestTimeout?: number;
  retry?: KafkajsRetry;
  logLevel?: number;
}

export interface KafkajsClient {
  admin(): KafkajsAdmin;
  producer(config: {
    idempotent?: boolean;
    allowAutoTopicCreation?: boolean;
    createPartitioner?: unknown;
    retry?: KafkajsRetry;
  }): KafkajsProducer;
}

export interface KafkajsMessage {
  key: string | Buffer;
  value: Buffer;
  partition?: number;
}

export interface KafkajsProducer {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  send(record: { topic: string; acks?: number; messages: KafkajsMessage[] }): Promise<unknown>;
  sendBatch(batch: {
    acks?: number;
    topicMessages: Array<{ topic: string; messages: KafkajsMessage[] }>;
  }): Promise<unknown>;
}

export interface KafkajsAdmin {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  createTopics(options: {
    waitForLeaders?: boolean;
    topics: Array<{ topic: string; numPartitions?: number; replicationFactor?: number }>;
  }): Promise<boolean>;
  deleteTopics(options: { topics: string[] }): Promise<void>;
  fetchTopicMetadata(options: { topics: string[] }): Promise<{
    topics: Array<{ name: string; partitions: Array<{ partitionId: number; leader: number }> }>;
  }>;
}
