/**
 * A real OTLP/HTTP traces receiver for tests: a small HTTP server that
 * accepts POST /v1/traces with a protobuf ExportTraceServiceRequest (as an
 * OpenTelemetry collector does), decodes the spans and keeps them.
 *
 * No npm package ships the opentelemetry-proto definitions in a usable form
 * (@opentelemetry/otlp-transformer encodes requests but decodes none), so the
 * decoder below is a minimal one on @bufbuild/protobuf's BinaryReader. Field
 * numbers are those of opentelemetry-proto (github.com/open-telemetry/opentelemetry-proto):
 * opentelemetry/proto/collector/trace/v1/trace_service.proto (ExportTraceServiceRequest),
 * opentelemetry/proto/trace/v1/trace.proto (ResourceSpans, ScopeSpans, Span, Span.Link, Status),
 * opentelemetry/proto/resource/v1/resource.proto (Resource) and
 * opentelemetry/proto/common/v1/common.proto (KeyValue, AnyValue, ArrayValue, InstrumentationScope).
 * Fields a test does not read are skipped.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { gunzipSync } from "node:zlib";
import { BinaryReader, type WireType } from "@bufbuild/protobuf/wire";

/** An attribute's value (int64 as a number: every value a test reads fits). */
export type AttributeValue = string | number | boolean | Uint8Array | AttributeValue[] | Attributes | undefined;

/** Attributes by key. */
export interface Attributes {
  [key: string]: AttributeValue;
}

/** One span as received, with its resource's attributes. */
export interface ReceivedSpan {
  /** Lowercase hex, as in a traceparent. */
  traceId: string;
  spanId: string;
  /** "" for a root span. */
  parentSpanId: string;
  traceState: string;
  name: string;
  /** trace.proto's SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  attributes: Attributes;
  links: Array<{ traceId: string; spanId: string; attributes: Attributes }>;
  /** trace.proto's Status.StatusCode: 0 unset, 1 ok, 2 error. */
  status: { code: number; message: string };
  resource: Attributes;
  scope: string;
}

/** SpanKind values (trace.proto). */
export const SPAN_KIND = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 } as const;

/** A running receiver. */
export interface OtlpReceiver {
  /** The base URL, for OTEL_EXPORTER_OTLP_ENDPOINT (`/v1/traces` is appended by the exporter). */
  readonly url: string;
  /** Every span received so far. */
  readonly spans: ReceivedSpan[];
  /** Every HTTP request received so far, of any method and path. */
  readonly requests: number;
  /**
   * Resolves with the spans once `done(spans)` holds, checked now and at each
   * export received; rejects after `timeoutMs` naming `what` and the spans received.
   */
  until(what: string, done: (spans: ReceivedSpan[]) => boolean, timeoutMs: number): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

/** Starts a receiver on a free loopback port. */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const arrived = new Set<() => void>();
  let requests = 0;
  const server = createServer((request, response) => {
    requests++;
    void receive(request, response).then((received) => {
      if (received.length === 0) return;
      spans.push(...received);
      for (const check of [...arrived]) check();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    get requests() {
      return requests;
    },
    until(what, done, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (!done(spans)) return;
          clearTimeout(timer);
          arrived.delete(check);
          resolve(spans);
        };
        const timer = setTimeout(() => {
          arrived.delete(check);
          const seen = spans.map((span) => `${span.name} (${span.traceId}/${span.spanId} < ${span.parentSpanId})`);
          reject(new Error(`${what}: not within ${timeoutMs} ms; received ${spans.length} spans:\n${seen.join("\n")}`));
        }, timeoutMs);
        arrived.add(check);
        check();
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Answers one request: 200 and an empty ExportTraceServiceResponse for POST /v1/traces, 404 otherwise. */
async function receive(request: IncomingMessage, response: ServerResponse): Promise<ReceivedSpan[]> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  if (request.method !== "POST" || request.url !== "/v1/traces") {
    response.writeHead(404).end();
    return [];
  }
  let body = Buffer.concat(chunks);
  if (request.headers["content-encoding"] === "gzip") body = gunzipSync(body);
  let spans: ReceivedSpan[];
  try {
    spans = decodeExportRequest(new Uint8Array(body));
  } catch (error) {
    response.writeHead(400, { "content-type": "text/plain" }).end(String(error));
    return [];
  }
  // An empty body is an ExportTraceServiceResponse with no partial_success.
  response.writeHead(200, { "content-type": "application/x-protobuf" }).end();
  return spans;
}

/** ExportTraceServiceRequest: repeated ResourceSpans resource_spans = 1. */
export function decodeExportRequest(bytes: Uint8Array): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  fields(bytes, (no, reader, wire) => {
    if (no === 1) spans.push(...resourceSpans(reader.bytes()));
    else reader.skip(wire);
  });
  return spans;
}

/** ResourceSpans: Resource resource = 1; repeated ScopeSpans scope_spans = 2. */
function resourceSpans(bytes: Uint8Array): ReceivedSpan[] {
  let resource: Attributes = {};
  const scopes: Uint8Array[] = [];
  fields(bytes, (no, reader, wire) => {
    // Resource: repeated KeyValue attributes = 1.
    if (no === 1) resource = attributesOf(reader.bytes(), 1);
    else if (no === 2) scopes.push(reader.bytes());
    else reader.skip(wire);
  });
  return scopes.flatMap((scope) => scopeSpans(scope, resource));
}

/** ScopeSpans: InstrumentationScope scope = 1 (its name = 1); repeated Span spans = 2. */
function scopeSpans(bytes: Uint8Array, resource: Attributes): ReceivedSpan[] {
  let scope = "";
  const spans: Uint8Array[] = [];
  fields(bytes, (no, reader, wire) => {
    if (no === 1) {
      fields(reader.bytes(), (scopeNo, scopeReader, scopeWire) => {
        if (scopeNo === 1) scope = scopeReader.string();
        else scopeReader.skip(scopeWire);
      });
    } else if (no === 2) spans.push(reader.bytes());
    else reader.skip(wire);
  });
  return spans.map((span) => spanOf(span, resource, scope));
}

/**
 * Span: trace_id = 1, span_id = 2, trace_state = 3, parent_span_id = 4,
 * name = 5, kind = 6, start_time_unix_nano = 7 (fixed64), end_time_unix_nano
 * = 8 (fixed64), attributes = 9, links = 13, status = 15.
 */
function spanOf(bytes: Uint8Array, resource: Attributes, scope: string): ReceivedSpan {
  const span: ReceivedSpan = {
    traceId: "",
    spanId: "",
    parentSpanId: "",
    traceState: "",
    name: "",
    kind: 0,
    startTimeUnixNano: 0n,
    endTimeUnixNano: 0n,
    attributes: {},
    links: [],
    status: { code: 0, message: "" },
    resource,
    scope,
  };
  fields(bytes, (no, reader, wire) => {
    switch (no) {
      case 1:
        span.traceId = hex(reader.bytes());
        break;
      case 2:
        span.spanId = hex(reader.bytes());
        break;
      case 3:
        span.traceState = reader.string();
        break;
      case 4:
        span.parentSpanId = hex(reader.bytes());
        break;
      case 5:
        span.name = reader.string();
        break;
      case 6:
        span.kind = reader.int32();
        break;
      case 7:
        span.startTimeUnixNano = BigInt(reader.fixed64());
        break;
      case 8:
        span.endTimeUnixNano = BigInt(reader.fixed64());
        break;
      case 9:
        Object.assign(span.attributes, keyValue(reader.bytes()));
        break;
      case 13:
        span.links.push(linkOf(reader.bytes()));
        break;
      case 15:
        span.status = statusOf(reader.bytes());
        break;
      default:
        reader.skip(wire);
    }
  });
  return span;
}

/** Span.Link: trace_id = 1, span_id = 2, attributes = 4. */
function linkOf(bytes: Uint8Array): ReceivedSpan["links"][number] {
  const link: ReceivedSpan["links"][number] = { traceId: "", spanId: "", attributes: {} };
  fields(bytes, (no, reader, wire) => {
    if (no === 1) link.traceId = hex(reader.bytes());
    else if (no === 2) link.spanId = hex(reader.bytes());
    else if (no === 4) Object.assign(link.attributes, keyValue(reader.bytes()));
    else reader.skip(wire);
  });
  return link;
}

/** Status: message = 2, code = 3. */
function statusOf(bytes: Uint8Array): ReceivedSpan["status"] {
  const status = { code: 0, message: "" };
  fields(bytes, (no, reader, wire) => {
    if (no === 2) status.message = reader.string();
    else if (no === 3) status.code = reader.int32();
    else reader.skip(wire);
  });
  return status;
}

/** The KeyValues of field `fieldNo` of a message, as attributes. */
function attributesOf(bytes: Uint8Array, fieldNo: number): Attributes {
  const attributes: Attributes = {};
  fields(bytes, (no, reader, wire) => {
    if (no === fieldNo) Object.assign(attributes, keyValue(reader.bytes()));
    else reader.skip(wire);
  });
  return attributes;
}

/** KeyValue: key = 1, AnyValue value = 2. */
function keyValue(bytes: Uint8Array): Attributes {
  let key = "";
  let value: AttributeValue;
  fields(bytes, (no, reader, wire) => {
    if (no === 1) key = reader.string();
    else if (no === 2) value = anyValue(reader.bytes());
    else reader.skip(wire);
  });
  return { [key]: value };
}

/**
 * AnyValue: string_value = 1, bool_value = 2, int_value = 3, double_value = 4,
 * array_value = 5 (ArrayValue: repeated AnyValue values = 1), kvlist_value = 6
 * (KeyValueList: repeated KeyValue values = 1), bytes_value = 7.
 */
function anyValue(bytes: Uint8Array): AttributeValue {
  let value: AttributeValue;
  fields(bytes, (no, reader, wire) => {
    switch (no) {
      case 1:
        value = reader.string();
        break;
      case 2:
        value = reader.bool();
        break;
      case 3:
        value = Number(reader.int64());
        break;
      case 4:
        value = reader.double();
        break;
      case 5: {
        const items: AttributeValue[] = [];
        fields(reader.bytes(), (itemNo, itemReader, itemWire) => {
          if (itemNo === 1) items.push(anyValue(itemReader.bytes()));
          else itemReader.skip(itemWire);
        });
        value = items;
        break;
      }
      case 6:
        value = attributesOf(reader.bytes(), 1);
        break;
      case 7:
        value = reader.bytes();
        break;
      default:
        reader.skip(wire);
    }
  });
  return value;
}

/** Calls `each` with every field of a message; `each` reads or skips its value. */
function fields(bytes: Uint8Array, each: (fieldNo: number, reader: BinaryReader, wire: WireType) => void): void {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [no, wire] = reader.tag();
    each(no, reader, wire);
  }
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}
