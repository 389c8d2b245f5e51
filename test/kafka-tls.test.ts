/**
 * TLS to Kafka, as README's KAFKA_TLS / KAFKA_TLS_CA_FILE settings describe
 * it, and SCRAM-SHA-256 over it (KAFKA_SASL_MECHANISM=scram-sha-256), against
 * a broker of this file's own (scripts/kafka.sh, as test/kafka-sasl.test.ts
 * starts one) with an SSL and a SASL_SSL listener beside its plain one, using a
 * CA and broker certificate made at test time with openssl:
 * - with KAFKA_TLS_CA_FILE naming that CA, a stream goes through the SSL
 *   listener end to end (StartStream, SendData, WatchResults);
 * - with KAFKA_TLS=true alone (the system's CAs, which do not know the test CA)
 *   the gateway does not start, and the error names the broker and the
 *   certificate problem;
 * - over SASL_SSL with SCRAM-SHA-256 (the user created with Kafka's
 *   ConfigCommand on the plain listener), the right password runs a stream end
 *   to end, and a wrong one stops the start with an error that names the
 *   broker and the failed authentication but not the password.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type BrokerCertificates, makeBrokerCertificates } from "./support/kafka-tls-certs.js";
import { type OwnKafka, startOwnKafka } from "./support/own-kafka.js";
import { freePorts } from "./support/ports.js";
import { startTestServer, streamClient, take, uniqueTopicPrefix } from "./support/server.js";

const USER = "streamgate-scram";
const PASSWORD = "scram-password-for-tests";
let kafka: OwnKafka | undefined;
let certDir: string | undefined;
let certs: BrokerCertificates;
let plainBrokers = "";
let sslBrokers = "";
let saslSslBrokers = "";

/** The Kafka jars scripts/kafka.sh fetched (and started the broker from): its KAFKA_VERSION, else its default. */
async function kafkaJars(): Promise<string> {
  const root = fileURLToPath(new URL("..", import.meta.url));
  const script = await readFile(join(root, "scripts/kafka.sh"), "utf8");
  const version = process.env.KAFKA_VERSION || /KAFKA_VERSION="\$\{KAFKA_VERSION:-([^}]+)\}"/.exec(script)?.[1];
  if (!version) throw new Error("scripts/kafka.sh names no default KAFKA_VERSION");
  return join(root, ".tools/kafka", `jars-${version}`);
}

/** Runs Kafka's kafka-configs tool (kafka.admin.ConfigCommand) against the plain listener; its stdout. */
async function kafkaConfigs(args: string[]): Promise<string> {
  const jars = await kafkaJars();
  try {
    const { stdout } = await promisify(execFile)(
      "java",
      ["-Xmx128m", "-cp", `${jars}/*`, "kafka.admin.ConfigCommand", "--bootstrap-server", plainBrokers, ...args],
      { timeout: 60_000 },
    );
    return stdout;
  } catch (error) {
    const { stdout = "", stderr = "" } = error as { stdout?: string; stderr?: string };
    throw new Error(`kafka-configs ${args.join(" ")} failed: ${String(error)}\n${stdout}${stderr}`);
  }
}

beforeAll(async () => {
  certDir = await mkdtemp(join(tmpdir(), "streamgate-kafka-tls-certs-"));
  certs = await makeBrokerCertificates(certDir);
  const [port, controllerPort, sslPort, saslSslPort] = await freePorts(4);
  plainBrokers = `127.0.0.1:${port}`;
  sslBrokers = `127.0.0.1:${sslPort}`;
  saslSslBrokers = `127.0.0.1:${saslSslPort}`;
  // Later lines of server.properties override the script's: its plain listener stays (readiness, the broker's own traffic).
  kafka = await startOwnKafka("tls", { port, controllerPort }, [
    `listeners=PLAINTEXT://${plainBrokers},CONTROLLER://127.0.0.1:${controllerPort},SSL://${sslBrokers},SASL_SSL://${saslSslBrokers}`,
    `advertised.listeners=PLAINTEXT://${plainBrokers},SSL://${sslBrokers},SASL_SSL://${saslSslBrokers}`,
    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL",
    "ssl.keystore.type=PKCS12",
    `ssl.keystore.location=${certs.keystore}`,
    `ssl.keystore.password=${certs.keystorePassword}`,
    `ssl.key.password=${certs.keystorePassword}`,
    "ssl.client.auth=none",
    "sasl.enabled.mechanisms=SCRAM-SHA-256",
    "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;",
  ]);
  // The SCRAM user, as an operator creates one (KRaft keeps it in the cluster metadata).
  await kafkaConfigs([
    "--alter",
    "--add-config",
    `SCRAM-SHA-256=[iterations=4096,password=${PASSWORD}]`,
    "--entity-type",
    "users",
    "--entity-name",
    USER,
  ]);
  // The broker answers a describe from the metadata it authenticates with: once listed, it is in effect.
  const describe = ["--describe", "--entity-type", "users", "--entity-name", USER];
  let listed = "";
  for (let attempt = 0; attempt < 5 && !listed.includes("SCRAM-SHA-256"); attempt++)
    listed = await kafkaConfigs(describe);
  expect(listed).toContain("SCRAM-SHA-256");
}, 240_000);

afterAll(async () => {
  try {
    await kafka?.stop();
  } finally {
    if (certDir) await rm(certDir, { recursive: true, force: true });
  }
});

/** The error message a start with `settings` fails with (undefined: it started, and is closed again). */
async function startFailure(settings: Record<string, string>): Promise<string | undefined> {
  return startTestServer(settings, "kafka").then(
    (server) => server.close().then(() => undefined),
    (error: unknown) => String((error as Error).message),
  );
}

/** Starts a gateway with `settings` and runs a stream through it: StartStream, SendData, WatchResults. */
async function runStream(settings: Record<string, string>, streamId: string): Promise<void> {
  const server = await startTestServer({ KAFKA_TOPIC_PREFIX: uniqueTopicPrefix(), ...settings }, "kafka");
  try {
    const client = streamClient(server);
    await client.startStream({ streamId });
    const { cursor } = await client.sendData({ streamId, payload: { case: "raw", value: new Uint8Array([1, 2, 3]) } });
    const [watched] = await take(client.watchResults({ streamId }), 1);
    expect(watched!.result!.sourceCursor).toBe(cursor);
  } finally {
    await server.close();
  }
}

it("runs a stream end to end through the SSL listener, trusting the CA of KAFKA_TLS_CA_FILE", async () => {
  // KAFKA_TLS_CA_FILE alone: README says setting it turns TLS on.
  await runStream({ KAFKA_BROKERS: sslBrokers, KAFKA_TLS_CA_FILE: certs.caPem }, "over-tls");
});

it("does not start with KAFKA_TLS=true alone, the broker's CA unknown to the system, and says why", async () => {
  const refused = await startFailure({ KAFKA_BROKERS: sslBrokers, KAFKA_TLS: "true" });
  expect(refused).toBeDefined();
  expect(refused).toContain(sslBrokers);
  expect(refused).toMatch(/certificate/i);
});

it("runs a stream end to end over SASL_SSL with SCRAM-SHA-256 and the right password", async () => {
  await runStream(
    {
      KAFKA_BROKERS: saslSslBrokers,
      KAFKA_TLS_CA_FILE: certs.caPem,
      KAFKA_SASL_MECHANISM: "scram-sha-256",
      KAFKA_SASL_USERNAME: USER,
      KAFKA_SASL_PASSWORD: PASSWORD,
    },
    "over-scram",
  );
});

it("does not start over SASL_SSL with a wrong SCRAM password, and the error says why without the password", async () => {
  const wrong = "not-the-scram-password";
  const refused = await startFailure({
    KAFKA_BROKERS: saslSslBrokers,
    KAFKA_TLS_CA_FILE: certs.caPem,
    KAFKA_SASL_MECHANISM: "scram-sha-256",
    KAFKA_SASL_USERNAME: USER,
    KAFKA_SASL_PASSWORD: wrong,
  });
  expect(refused).toBeDefined();
  expect(refused).toMatch(/SASL|[Aa]uthenticat/);
  expect(refused).toContain(saslSslBrokers);
  expect(refused).not.toContain(wrong);
});
