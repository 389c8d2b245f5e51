/**
 * Traces through Kafka (README "Traces"). Two gateway processes on the real
 * broker, A and B, export to a real OTLP/HTTP receiver
 * (test/support/otlp-receiver.ts). One SendData on A, in the client's trace,
 * is one trace: its call, the ingest record's send, its processing (on
 * whichever instance owns the partition), the result's send, and its
 * delivery to each of three watchers on B (a WatchResults call, a
 * Server-Sent Events watch and a WebSocket), each span the child of the one before, the
 * context carried in the records' Kafka headers (read back here with kcat).
 * A failed call's span is an error named by its code. A receiver that never
 * answers costs dropped spans (counted), never a call. A gateway without OTEL
 * variables traces nothing and writes no trace header, and the tracing
 * module, off, does not even load the SDK.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import WebSocket from "ws";
import { StartPosition } from "../gen/streamgate/v1/stream_service_pb.js";
import { createLogger } from "../src/observe/logger.js";
import { startTracing, traces, tracingWanted } from "../src/observe/tracing.js";
import { kafkaBrokers } from "./support/kafka-control.js";
import {
  jsonData,
  type KafkaGateway,
  pollUntil,
  spawnKafkaGateway,
  uniqueTopicPrefix,
} from "./support/kafka-gateway.js";
import { kcatReadTopic, position, recordAt } from "./support/kafka-kcat.js";
import { type OtlpReceiver, type ReceivedSpan, SPAN_KIND, startOtlpReceiver } from "./support/otlp-receiver.js";
import { TEST_API_KEY, TEST_TENANT, take } from "./support/server.js";
import { sseEvents } from "./support/sse.js";

/** Set when anything imports the SDK: the unit test below checks that nothing does while tracing is off. */
const sdk = vi.hoisted(() => ({ loaded: false }));
vi.mock("@opentelemetry/sdk-node", async (importOriginal) => {
  sdk.loaded = true;
  return importOriginal();
});

const SERVICE = "streamgate-tracing-test";
const SEND_DATA = "streamgate.v1.StreamService/SendData";
const prefix = uniqueTopicPrefix("tracing");
const offPrefix = uniqueTopicPrefix("tracing-off");
let receiver: OtlpReceiver | undefined;
let a: KafkaGateway | undefined;
let b: KafkaGateway | undefined;
let off: KafkaGateway | undefined;

/** A traced gateway's variables: the receiver, a service name, spans exported within 100 ms of ending. */
const otel = () => ({
  OTEL_EXPORTER_OTLP_ENDPOINT: receiver!.url,
  OTEL_SERVICE_NAME: SERVICE,
  OTEL_BSP_SCHEDULE_DELAY: "100",
});

/** No OTEL variable at all: any this test run has is blanked, which is unset to the gateway. */
const NO_OTEL = Object.fromEntries(
  Object.keys(process.env)
    .filter((name) => name.startsWith("OTEL_"))
    .map((name) => [name, ""]),
);

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  // B after A: B joining the processor group is a rebalance A takes part in. The untraced one has topics of its own.
  [a, off] = await Promise.all([spawnKafkaGateway(prefix, otel()), spawnKafkaGateway(offPrefix, NO_OTEL)]);
  b = await spawnKafkaGateway(prefix, otel());
});
afterAll(async () => {
  await Promise.all([a?.kill(), b?.kill(), off?.kill()]);
  await receiver?.close();
});

/** A client's own span, as a W3C traceparent names it. */
function clientSpan(): { traceId: string; spanId: string; traceparent: string } {
  const traceId = randomBytes(16).toString("hex");
  const spanId = randomBytes(8).toString("hex");
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

/** A gateway's open watchers (streamgate_active_watchers), from its /metrics. */
async function activeWatchers(gateway: KafkaGateway): Promise<number> {
  const text = await (await fetch(`${gateway.baseUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => /^streamgate_active_watchers[ {]/.test(l));
  return Number(line?.split(" ").at(-1) ?? NaN);
}

/** The process a span came from (the SDK's process detector). */
const pidOf = (span: ReceivedSpan) => span.resource["process.pid"];

/** Everything a span says besides its ids and times: names, attributes, status, resource, links' attributes. */
const textOf = (spans: ReceivedSpan[]) =>
  JSON.stringify(
    spans.map((span) => [span.name, span.attributes, span.status, span.resource, span.links.map((l) => l.attributes)]),
  );

/** The spans of one send, each the child of the one before; undefined until all have arrived. */
function sendChain(spans: ReceivedSpan[], client: { traceId: string; spanId: string }, deliveries: number) {
  const inTrace = spans.filter((span) => span.traceId === client.traceId);
  const child = (name: string, parent: ReceivedSpan | undefined) =>
    parent && inTrace.find((span) => span.name === name && span.parentSpanId === parent.spanId);
  const call = inTrace.find((span) => span.name === SEND_DATA && span.parentSpanId === client.spanId);
  const send = child(`send ${prefix}ingest`, call);
  const processing = child(`process ${prefix}ingest`, send);
  const resultSend = child(`send ${prefix}results`, processing);
  const delivered = inTrace.filter(
    (span) => span.name === `deliver ${prefix}results` && span.parentSpanId === resultSend?.spanId,
  );
  if (!call || !send || !processing || !resultSend || delivered.length < deliveries) return undefined;
  return { call, send, processing, resultSend, delivered };
}

it("one SendData is one trace, from the client's call across Kafka to each watcher on another instance", async ({
  annotate,
}) => {
  const streamId = "traced";
  await a!.client.startStream({ streamId });
  await pollUntil("the stream known on B", () => b!.client.getStream({ streamId }), {
    timeoutMs: 10_000,
    intervalMs: 20,
  });

  // Three watchers on B: a WatchResults call, and a Server-Sent Events watch and a WebSocket whose GETs are
  // each in a trace of its own.
  const watching = new AbortController();
  const watched = take(
    b!.client.watchResults({ streamId, startPosition: StartPosition.EARLIEST }, { signal: watching.signal }),
    1,
  );
  const sseClient = clientSpan();
  const sse = await fetch(`${b!.baseUrl}/v1/streams/${streamId}/results`, {
    headers: { "x-api-key": TEST_API_KEY, traceparent: sseClient.traceparent },
    signal: watching.signal,
  });
  expect(sse.status).toBe(200);
  const sseEvent = sseEvents(sse.body!).next();
  const wsClient = clientSpan();
  const socket = new WebSocket(`${b!.baseUrl.replace("http", "ws")}/v1/streams/${streamId}/results`, {
    headers: { "x-api-key": TEST_API_KEY, traceparent: wsClient.traceparent },
  });
  const wsFrame = new Promise<string>((resolve, reject) => {
    socket.once("message", (data) => resolve(String(data)));
    socket.once("error", reject);
  });
  await pollUntil("the three watchers open on B", async () => ((await activeWatchers(b!)) === 3 ? true : undefined), {
    timeoutMs: 10_000,
    intervalMs: 20,
  });

  // One SendData on A, in the client's trace. Its payload, and a record header named traceparent
  // (a forged trace context), must show up in no span.
  const client = clientSpan();
  const secret = `payload-${randomUUID()}`;
  const forged = `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01`;
  const { cursor } = await a!.client.sendData(
    { streamId, payload: jsonData({ secret }), headers: { traceparent: forged, "x-kept": "kept-value" } },
    { headers: { traceparent: client.traceparent, tracestate: "client=1" } },
  );
  const result = (await watched)[0]!.result!;
  expect((await sseEvent)?.event).toBe("result");
  expect(JSON.parse(await wsFrame)).toMatchObject({ type: "result", cursor: result.cursor });
  watching.abort();
  socket.close();
  // A client's record header of that name is dropped: the name is the gateway's.
  expect(result.headers).toEqual({ "x-kept": "kept-value" });

  // The watch spans end as the watches do (just aborted): each delivery links to its watcher's.
  const spans = await receiver!.until(
    "the send's spans, a delivery to each watcher and the watches' spans",
    (all) =>
      sendChain(all, client, 3) !== undefined &&
      all.some((span) => span.traceId === sseClient.traceId) &&
      all.some((span) => span.traceId === wsClient.traceId) &&
      all.some(
        (span) => span.name === "streamgate.v1.StreamService/WatchResults" && pidOf(span) === b!.process.child.pid,
      ),
    25_000,
  );
  const { call, send, processing, resultSend, delivered } = sendChain(spans, client, 3)!;
  expect(delivered).toHaveLength(3);

  // From both instances: the call and its record's send on A, the deliveries on B, the processing where its partition is.
  const [pidA, pidB] = [a!.process.child.pid, b!.process.child.pid];
  expect([pidOf(call), pidOf(send)]).toEqual([pidA, pidA]);
  expect([pidA, pidB]).toContain(pidOf(processing));
  expect(pidOf(resultSend)).toBe(pidOf(processing));
  expect(delivered.map(pidOf)).toEqual([pidB, pidB, pidB]);
  await annotate(`the record was processed on ${pidOf(processing) === pidA ? "A, where it was sent" : "B"}`);

  const chain = [call, send, processing, resultSend, ...delivered];
  expect(chain.map((span) => span.kind)).toEqual([
    SPAN_KIND.server,
    SPAN_KIND.producer,
    SPAN_KIND.consumer,
    SPAN_KIND.producer,
    SPAN_KIND.consumer,
    SPAN_KIND.consumer,
    SPAN_KIND.consumer,
  ]);
  for (const span of chain) {
    expect(span.attributes).toMatchObject({ "streamgate.stream_id": streamId, "streamgate.tenant": TEST_TENANT });
    // The client's tracestate travels with its context, through both records' headers.
    expect(span.traceState).toBe("client=1");
    expect(span.resource["service.name"]).toBe(SERVICE);
    expect(span.status.code).toBe(0);
  }
  expect(call.attributes).toMatchObject({
    "rpc.system.name": "grpc",
    "rpc.method": SEND_DATA,
    "rpc.status_code": "OK",
  });
  const ingestAt = position(cursor);
  const resultAt = position(result.cursor);
  const kafka = (topic: string, at: { partition: number; offset: number }) => ({
    "messaging.system": "kafka",
    "messaging.destination.name": `${prefix}${topic}`,
    "messaging.destination.partition.id": String(at.partition),
    "kafka.offset": at.offset,
  });
  expect(send.attributes).toMatchObject({ ...kafka("ingest", ingestAt), "messaging.operation.type": "send" });
  expect(processing.attributes).toMatchObject({
    ...kafka("ingest", ingestAt),
    "messaging.operation.type": "process",
    "messaging.consumer.group.name": `${prefix}processor`,
  });
  expect(resultSend.attributes).toMatchObject({ ...kafka("results", resultAt), "messaging.operation.type": "send" });
  for (const delivery of delivered) {
    expect(delivery.attributes).toMatchObject({ ...kafka("results", resultAt), "messaging.operation.name": "deliver" });
  }

  // Each delivery links to the span of the watch it was for; the SSE and WebSocket watches joined their GETs' traces.
  const watchCall = spans.find(
    (span) =>
      span.name === "streamgate.v1.StreamService/WatchResults" &&
      pidOf(span) === pidB &&
      span.attributes["streamgate.stream_id"] === streamId,
  )!;
  expect(watchCall.attributes["rpc.status_code"]).toBe("CANCELED");
  const watchOf = (watcher: { traceId: string; spanId: string }, transport: string) => {
    const span = spans.find((candidate) => candidate.traceId === watcher.traceId)!;
    expect(span).toMatchObject({
      name: "GET /v1/streams/{streamId}/results",
      kind: SPAN_KIND.server,
      parentSpanId: watcher.spanId,
      attributes: {
        "streamgate.transport": transport,
        "streamgate.stream_id": streamId,
        "streamgate.tenant": TEST_TENANT,
      },
    });
    return span;
  };
  const [sseWatch, wsWatch] = [watchOf(sseClient, "sse"), watchOf(wsClient, "websocket")];
  expect(delivered.map((span) => span.links.map((link) => link.spanId)).sort()).toEqual(
    [[watchCall.spanId], [sseWatch.spanId], [wsWatch.spanId]].sort(),
  );

  // The context crossed Kafka in the records' headers, as any consumer reads them: each record's send span.
  const ingest = recordAt(await kcatReadTopic(kafkaBrokers(), `${prefix}ingest`), cursor);
  expect(ingest.headers).toMatchObject({
    traceparent: `00-${client.traceId}-${send.spanId}-01`,
    tracestate: "client=1",
  });
  const stored = recordAt(await kcatReadTopic(kafkaBrokers(), `${prefix}results`), result.cursor);
  expect(stored.headers).toMatchObject({
    traceparent: `00-${client.traceId}-${resultSend.spanId}-01`,
    tracestate: "client=1",
  });

  // No span carries a payload, a credential or a header's value.
  const text = textOf(spans);
  const traceparents = [client, sseClient, wsClient].map((span) => span.traceparent);
  for (const never of [secret, TEST_API_KEY, forged, "kept-value", ...traceparents]) {
    expect(text).not.toContain(never);
  }
}, 40_000);

it("a failed call's span is an error named by its code, with nothing the client sent; a health check has none", async () => {
  // Spans are exported in the order they end: by the time the failed call's arrives, a health check's would have.
  const probe = clientSpan();
  await a!.health.check({ service: "" }, { headers: { traceparent: probe.traceparent } });
  const client = clientSpan();
  const secret = `payload-${randomUUID()}`;
  const failed = await a!.client
    .sendData(
      { streamId: "no-such-stream", payload: jsonData({ secret }) },
      { headers: { traceparent: client.traceparent } },
    )
    .then(
      () => undefined,
      (error: unknown) => ConnectError.from(error),
    );
  expect(failed?.code).toBe(Code.NotFound);
  const spans = await receiver!.until(
    "the failed call's span",
    (all) => all.some((span) => span.traceId === client.traceId),
    10_000,
  );
  const call = spans.find((span) => span.traceId === client.traceId)!;
  expect(call).toMatchObject({
    name: SEND_DATA,
    kind: SPAN_KIND.server,
    parentSpanId: client.spanId,
    status: { code: 2, message: "not_found" },
    attributes: {
      "rpc.status_code": "NOT_FOUND",
      "streamgate.stream_id": "no-such-stream",
      "streamgate.tenant": TEST_TENANT,
    },
  });
  expect(textOf([call])).not.toContain(secret);
  expect(spans.filter((span) => span.traceId === probe.traceId)).toEqual([]);
});

it("a gateway without OTEL variables traces nothing and writes no trace header on its records", async () => {
  const streamId = "untraced";
  await off!.client.startStream({ streamId });
  const client = clientSpan();
  const forged = `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01`;
  const { cursor } = await off!.client.sendData(
    { streamId, payload: jsonData({ n: 1 }), headers: { traceparent: forged, tracestate: "forged=1" } },
    { headers: { traceparent: client.traceparent } },
  );
  const [watched] = await take(off!.client.watchResults({ streamId, startPosition: StartPosition.EARLIEST }), 1);

  expect(off!.process.logs.filter((line) => line.msg.startsWith("tracing"))).toEqual([]);
  // Neither its own context nor the client's forged one is stored, on the ingest record or the result.
  for (const record of [
    recordAt(await kcatReadTopic(kafkaBrokers(), `${offPrefix}ingest`), cursor),
    recordAt(await kcatReadTopic(kafkaBrokers(), `${offPrefix}results`), watched!.result!.cursor),
  ]) {
    expect(Object.keys(record.headers).filter((name) => name.startsWith("trace"))).toEqual([]);
  }
  expect(receiver!.spans.filter((span) => pidOf(span) === off!.process.child.pid)).toEqual([]);
});

it("a receiver that never answers costs dropped spans, counted, and never a call, even with a malformed 4 KB traceparent on each", async () => {
  // Accepts each export and never answers it: the exporter gives up after its timeout, and meanwhile
  // the spans of further calls fill the small queue.
  const silent = createServer(() => {});
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
  const stalled = await spawnKafkaGateway(uniqueTopicPrefix("tracing-stalled"), {
    OTEL_EXPORTER_OTLP_ENDPOINT: url,
    OTEL_BSP_SCHEDULE_DELAY: "50",
    OTEL_BSP_MAX_QUEUE_SIZE: "8",
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "4",
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: "300",
  });
  try {
    const streamId = "stalled";
    await stalled.client.startStream({ streamId });
    const dropped = async () =>
      Number(
        /^streamgate_trace_spans_dropped_total (\d+)$/m.exec(
          await (await fetch(`${stalled.baseUrl}/metrics`)).text(),
        )?.[1] ?? Number.NaN,
      );
    expect(await dropped()).toBe(0);
    // Every call is answered while spans are dropped; the count shows once the processor reports it
    // (when it next takes a span, after an export has given up).
    let sent = 0;
    await pollUntil(
      "dropped spans counted",
      async () => {
        for (let n = 0; n < 10; n++) {
          // A header that is no traceparent (and long): ignored by the propagator; the call is answered.
          await stalled.client.sendData(
            { streamId, payload: jsonData({ n: sent++ }) },
            { headers: { traceparent: `zz-${"f".repeat(4000)}` } },
          );
        }
        return (await dropped()) > 0 ? true : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    expect(sent).toBeGreaterThan(0);
    expect(stalled.process.logs.some((line) => /^Dropped \d+ spans/.test(line.msg))).toBe(true);
  } finally {
    await stalled.kill();
    silent.closeAllConnections();
    silent.close();
  }
});

describe("the tracing module, off", () => {
  it("reports disabled and loads no SDK without OTEL variables, or with variables that turn it off", async () => {
    const logger = createLogger("silent");
    for (const env of [
      {},
      { OTEL_SERVICE_NAME: "x", OTEL_BSP_SCHEDULE_DELAY: "100", OTEL_TRACES_SAMPLER: "always_on" },
      { OTEL_SDK_DISABLED: "true", OTEL_EXPORTER_OTLP_ENDPOINT: receiver!.url },
      { OTEL_TRACES_EXPORTER: "none", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver!.url}/v1/traces` },
    ]) {
      const tracing = await startTracing(logger, env);
      expect(tracing.enabled).toBe(false);
      expect(traces).toBeUndefined();
      await tracing.shutdown();
    }
    expect(sdk.loaded).toBe(false);
    // The check sees a load: importing the module that starts the SDK trips it.
    await import("../src/observe/tracing-sdk.js");
    expect(sdk.loaded).toBe(true);
  });

  it("is on with an OTLP endpoint, or with OTEL_TRACES_EXPORTER=otlp", () => {
    expect(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" })).toBe(true);
    expect(tracingWanted({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://collector:4318/v1/traces" })).toBe(true);
    expect(tracingWanted({ OTEL_TRACES_EXPORTER: "otlp" })).toBe(true);
    expect(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: " " })).toBe(false);
    expect(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_SDK_DISABLED: "TRUE" })).toBe(false);
    expect(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_TRACES_EXPORTER: "none" })).toBe(false);
  });
});
