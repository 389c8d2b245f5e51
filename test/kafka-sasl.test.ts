/**
 * SASL to Kafka, as README's KAFKA_SASL_* settings describe it: a broker of
 * this file's own (scripts/kafka.sh, with a SASL_PLAINTEXT listener and the
 * PLAIN mechanism beside its plain one) accepts streamgate with the right
 * credentials, and a stream goes through it end to end; with a wrong password
 * the gateway does not start, and says why.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { type OwnKafka, startOwnKafka } from "./support/own-kafka.js";
import { freePorts } from "./support/ports.js";
import { startTestServer, streamClient, take, uniqueTopicPrefix } from "./support/server.js";

const USER = "streamgate";
const PASSWORD = "sasl-password-for-tests";
let kafka: OwnKafka | undefined;
let saslBrokers = "";

beforeAll(async () => {
  const [port, controllerPort, saslPort] = await freePorts(3);
  saslBrokers = `127.0.0.1:${saslPort}`;
  // Later lines of server.properties override the script's: its plain listener stays (readiness, the broker's own traffic).
  kafka = await startOwnKafka("sasl", { port, controllerPort }, [
    `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort},SASL_PLAINTEXT://${saslBrokers}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${port},SASL_PLAINTEXT://${saslBrokers}`,
    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
    "sasl.enabled.mechanisms=PLAIN",
    `listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_${USER}="${PASSWORD}";`,
  ]);
}, 240_000);

afterAll(async () => {
  await kafka?.stop();
});

const sasl = (password: string) => ({
  KAFKA_BROKERS: saslBrokers,
  KAFKA_TOPIC_PREFIX: uniqueTopicPrefix(),
  KAFKA_SASL_MECHANISM: "plain",
  KAFKA_SASL_USERNAME: USER,
  KAFKA_SASL_PASSWORD: password,
});

it("runs a stream end to end through a SASL/PLAIN listener with the right credentials", async () => {
  const server = await startTestServer(sasl(PASSWORD), "kafka");
  try {
    const client = streamClient(server);
    await client.startStream({ streamId: "over-sasl" });
    const { cursor } = await client.sendData({
      streamId: "over-sasl",
      payload: { case: "raw", value: new Uint8Array([1, 2, 3]) },
    });
    const [watched] = await take(client.watchResults({ streamId: "over-sasl" }), 1);
    expect(watched!.result!.sourceCursor).toBe(cursor);
  } finally {
    await server.close();
  }
});

it("does not start with a wrong password, and the error says the broker refused the credentials", async () => {
  const refused = await startTestServer(sasl("not-the-password"), "kafka").then(
    () => undefined,
    (error: unknown) => String((error as Error).message),
  );
  expect(refused).toMatch(/SASL|[Aa]uthenticat/);
  expect(refused).toContain(saslBrokers);
  // The password goes nowhere, the error (and so the log) included.
  expect(refused).not.toContain("not-the-password");
});
