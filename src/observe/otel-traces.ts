/**
 * The spans of src/observe/trace-points.ts, made with OpenTelemetry's API.
 * Loaded only once tracing is on (src/observe/tracing-sdk.ts).
 *
 * The trace context travels in W3C Trace Context headers, `traceparent` and
 * `tracestate` (@opentelemetry/core's propagator, and no other: baggage is
 * not carried): read from a call's request headers; written by a record's
 * send into the ingest record's headers, which the processor reads back on
 * whichever instance owns the partition; written by the result's send into
 * the result record's headers, which every instance's fanout reads for its
 * watchers. So one trace runs from the client's call to each watcher, across
 * instances.
 */
import type { IncomingHttpHeaders } from "node:http";
import {
  type Attributes,
  type Context,
  context,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import type { RecordHeaders, RecordPosition, StoredRecord } from "../broker/broker.js";
import { splitStreamKey } from "../streams/stream-key.js";
import { ATTR, WATCH_ROUTE } from "./span-attributes.js";
import type { CallSpan, SendSpan, Traces } from "./trace-points.js";

const w3c = new W3CTraceContextPropagator();

const fromHeaders: TextMapGetter<Headers> = {
  get: (headers, name) => headers.get(name) ?? undefined,
  keys: (headers) => [...headers.keys()],
};
const fromHttp: TextMapGetter<IncomingHttpHeaders> = {
  get: (headers, name) => headers[name],
  keys: (headers) => Object.keys(headers),
};
const fromRecord: TextMapGetter<RecordHeaders> = {
  get: (headers, name) => headers[name],
  keys: (headers) => Object.keys(headers),
};
const intoRecord: TextMapSetter<RecordHeaders> = {
  set: (headers, name, value) => {
    headers[name] = value;
  },
};

/** The codes a call ends with that are no failure: OK, and the client's own cancel (how most watches end). */
const NOT_FAILED = new Set(["ok", "canceled"]);

/** Makes streamgate's spans with `tracer`. */
export function createTraces(tracer: Tracer): Traces {
  return {
    startCall(service, method, system, headers) {
      const name = `${service}/${method}`;
      return startServerSpan(
        tracer,
        name,
        w3c.extract(ROOT_CONTEXT, headers, fromHeaders),
        { [ATTR.rpcSystem]: system, [ATTR.rpcMethod]: name },
        (code) => ({ [ATTR.rpcStatusCode]: code.toUpperCase() }),
      );
    },

    startWatch(transport, headers) {
      return startServerSpan(
        tracer,
        `GET ${WATCH_ROUTE}`,
        w3c.extract(ROOT_CONTEXT, headers, fromHttp),
        { [ATTR.httpMethod]: "GET", [ATTR.httpRoute]: WATCH_ROUTE, [ATTR.transport]: transport },
        (code) => ({ [ATTR.code]: code }),
      );
    },

    startSend(topic, tenant, streamId, headers) {
      return startSendSpan(
        tracer,
        context.active(),
        topic,
        { [ATTR.tenant]: tenant, [ATTR.streamId]: streamId },
        headers,
      );
    },

    startProcess(record, group) {
      const parent = w3c.extract(ROOT_CONTEXT, record.headers, fromRecord);
      const span = tracer.startSpan(
        `process ${record.topic}`,
        {
          kind: SpanKind.CONSUMER,
          attributes: {
            ...recordAttributes(record),
            [ATTR.operationType]: "process",
            [ATTR.operationName]: "process",
            [ATTR.consumerGroup]: group,
          },
        },
        parent,
      );
      const active = trace.setSpan(parent, span);
      return {
        sendResult: (topic, headers) => startSendSpan(tracer, active, topic, streamAttributes(record.key), headers),
        end: (failure) => {
          if (failure !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: failure });
          span.end();
        },
      };
    },

    watchLink() {
      const spanContext = trace.getSpanContext(context.active());
      return spanContext === undefined ? undefined : { context: spanContext };
    },

    arrived(record) {
      // Most results of a traced deployment carry one; a result without is not traced (no root span per watcher).
      if (record.headers.traceparent === undefined) return undefined;
      const parent = w3c.extract(ROOT_CONTEXT, record.headers, fromRecord);
      if (trace.getSpanContext(parent) === undefined) return undefined;
      return {
        parent,
        arrivedAt: performance.timeOrigin + performance.now(),
        attributes: { ...recordAttributes(record), [ATTR.operationType]: "process", [ATTR.operationName]: "deliver" },
      };
    },

    delivered(result, link) {
      tracer
        .startSpan(
          `deliver ${result.attributes[ATTR.destination] as string}`,
          {
            kind: SpanKind.CONSUMER,
            startTime: result.arrivedAt,
            attributes: result.attributes,
            links: link === undefined ? undefined : [link],
          },
          result.parent,
        )
        .end();
    },
  };
}

/** Starts a call's server span under `parent` (the client's context, or the root). */
function startServerSpan(
  tracer: Tracer,
  name: string,
  parent: Context,
  attributes: Attributes,
  endAttributes: (code: string) => Attributes,
): CallSpan {
  const span = tracer.startSpan(name, { kind: SpanKind.SERVER, attributes }, parent);
  const active = trace.setSpan(parent, span);
  let ended = false;
  return {
    run: (fn) => context.with(active, fn),
    bind: (fn) => context.bind(active, fn),
    setStream(tenant, streamId) {
      if (ended) return;
      if (tenant) span.setAttribute(ATTR.tenant, tenant);
      if (streamId) span.setAttribute(ATTR.streamId, streamId);
    },
    end(code) {
      if (ended) return;
      ended = true;
      span.setAttributes(endAttributes(code));
      // The code's name only: an error's message may quote what the client sent.
      if (!NOT_FAILED.has(code)) span.setStatus({ code: SpanStatusCode.ERROR, message: code });
      span.end();
    },
  };
}

/** Starts a record's producer span under `parent`, writing its context into the record's `headers`. */
function startSendSpan(
  tracer: Tracer,
  parent: Context,
  topic: string,
  stream: Attributes,
  headers: RecordHeaders,
): SendSpan {
  const span = tracer.startSpan(
    `send ${topic}`,
    {
      kind: SpanKind.PRODUCER,
      attributes: {
        [ATTR.messagingSystem]: "kafka",
        [ATTR.destination]: topic,
        [ATTR.operationType]: "send",
        [ATTR.operationName]: "send",
        ...stream,
      },
    },
    parent,
  );
  w3c.inject(trace.setSpan(parent, span), headers, intoRecord);
  return {
    stored: (position: RecordPosition) => {
      span.setAttribute(ATTR.partition, String(position.partition));
      span.setAttribute(ATTR.offset, position.offset);
      span.end();
    },
    failed: (error: unknown) => {
      span.setAttribute(ATTR.errorType, error instanceof Error ? error.constructor.name : "unknown");
      span.setStatus({ code: SpanStatusCode.ERROR, message: "not stored" });
      span.end();
    },
  };
}

/** A stored record's place (topic, partition, offset) and stream. */
function recordAttributes(record: Pick<StoredRecord, "topic" | "partition" | "offset" | "key">): Attributes {
  return {
    [ATTR.messagingSystem]: "kafka",
    [ATTR.destination]: record.topic,
    [ATTR.partition]: String(record.partition),
    [ATTR.offset]: record.offset,
    ...streamAttributes(record.key),
  };
}

/** The tenant and stream id of a record key; none for a key that is not a stream's (a foreign producer's). */
function streamAttributes(key: string): Attributes {
  const stream = splitStreamKey(key);
  return stream === undefined ? {} : { [ATTR.tenant]: stream.tenant, [ATTR.streamId]: stream.streamId };
}
