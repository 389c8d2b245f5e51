/**
 * The points where streamgate makes spans, as the code on the record's path
 * sees them: a call, a record's send, its processing, its result's delivery.
 * Types only: the parts that call these know nothing of OpenTelemetry, and
 * while tracing is off nothing here exists at run time (src/observe/tracing.ts
 * holds `traces`, undefined then). The implementation is
 * src/observe/otel-traces.ts, loaded only when tracing is on.
 *
 * No span carries a payload, a credential or a header value: only names,
 * positions, the stream id and tenant, and codes.
 */
import type { IncomingHttpHeaders } from "node:http";
import type { Attributes, Context, Link } from "@opentelemetry/api";
import type { RecordHeaders, RecordPosition, StoredRecord } from "../broker/broker.js";

/** A call's server span: an RPC, or a watch over Server-Sent Events or WebSocket. */
export interface CallSpan {
  /** Runs `fn` with this span active: spans started in it (a record's send, a watch's link) are its children. */
  run<T>(fn: () => T): T;
  /** `fn`, to be called later (an event listener) with this span active. */
  bind<F extends (...args: never[]) => unknown>(fn: F): F;
  /** Names the stream and tenant the call works on, once known (either may be unknown). */
  setStream(tenant: string | undefined, streamId: string | undefined): void;
  /** Ends the span with the call's code, as codeName names it ("ok", "invalid_argument", ...); once. */
  end(code: string): void;
}

/** A record's send (a producer span), from the produce call to the broker's acknowledgement. */
export interface SendSpan {
  /** Ends the span: the record is stored at `position`. */
  readonly stored: (position: RecordPosition) => void;
  /** Ends the span as failed: the record was not stored. */
  readonly failed: (error: unknown) => void;
}

/** An ingest record's processing (a consumer span), continuing the trace its headers carry. */
export interface ProcessSpan {
  /** Starts the send of the record's result as this span's child, writing its trace context into `headers`. */
  sendResult(topic: string, headers: RecordHeaders): SendSpan;
  /** Ends the span; with `failure` (a RecordFailure reason), as failed. */
  end(failure?: string): void;
}

/** What a result record's deliveries share: the trace context it carries, and when it reached this instance. */
export interface ResultTrace {
  readonly parent: Context;
  /** Milliseconds since the epoch, fractional: a delivery span starts here. */
  readonly arrivedAt: number;
  /** The record's place and stream, which every delivery span of it carries. */
  readonly attributes: Attributes;
}

/** The watch a delivery is for (its call's span), linked from each delivery span. */
export type WatchLink = Link;

/** Where streamgate makes spans; see the module comment. */
export interface Traces {
  /** Starts an RPC's server span, joining the trace of the client's `traceparent`/`tracestate`, if any. */
  startCall(service: string, method: string, system: RpcSystem, headers: Headers): CallSpan;
  /** Starts the server span of a watch over `transport`, joining the trace of its GET's headers, if any. */
  startWatch(transport: "sse" | "websocket", headers: IncomingHttpHeaders): CallSpan;
  /**
   * Starts the producer span of a record to `topic` of the stream `streamId`
   * of `tenant`, as a child of the active span, and writes its context into
   * the record's `headers` (traceparent, tracestate).
   */
  startSend(topic: string, tenant: string, streamId: string, headers: RecordHeaders): SendSpan;
  /** Starts the consumer span of an ingest record's processing by the consumer group `group`. */
  startProcess(record: StoredRecord, group: string): ProcessSpan;
  /** The active call's span, for a watch opened now; undefined outside a call. */
  watchLink(): WatchLink | undefined;
  /** A result record's trace context, read once as it arrives; undefined when it carries none. */
  arrived(record: StoredRecord): ResultTrace | undefined;
  /** Records one delivery of a result to one watcher (a consumer span, from its arrival to its hand-over). */
  delivered(result: ResultTrace, link: WatchLink | undefined): void;
}

/** The RPC system of a call, as OpenTelemetry's `rpc.system.name` names it: gRPC (and gRPC-Web), or Connect. */
export type RpcSystem = "grpc" | "connectrpc";
