/**
 * The outermost interceptor: counts and times every call (go-grpc-prometheus's
 * grpc_server_* metrics) and writes one log line per call. It sits outside the
 * error mapping, so the code it records is the code the client sees; a stream
 * is done when its last message is sent or it fails, not when the handler
 * returns it.
 */
import { Code, type Interceptor } from "@connectrpc/connect";
import type { LiveStats } from "../../observe/live-stats.js";
import type { Logger } from "../../observe/logger.js";
import type { GrpcType, Metrics } from "../../observe/metrics.js";
import { codeName } from "../errors.js";
import { PEER, PRINCIPAL, REQUEST_ID, TENANT } from "../request-context.js";
import { answeredCode, failedCode, streamEndCode } from "./call-code.js";
import { type TapEnd, tap } from "./tap.js";

/** What the interceptor needs. */
export interface MeasureAndLogOptions {
  metrics: Metrics;
  logger: Logger;
  /** Told how long each unary and client-streaming call of a service not in `statsExempt` took. */
  stats: LiveStats;
  /** Services left out of the live stats' latencies (health checks, admin calls). */
  statsExempt: ReadonlySet<string>;
}

const GRPC_TYPE: Record<string, GrpcType> = {
  unary: "unary",
  client_streaming: "client_stream",
  server_streaming: "server_stream",
  bidi_streaming: "bidi_stream",
};

/** A code as go-grpc-prometheus labels it ("OK", "InvalidArgument", ...). */
function grpcCodeName(code: Code | undefined): string {
  return code === undefined ? "OK" : Code[code];
}

/** Creates the metrics-and-logging interceptor. */
export function measureAndLog(options: MeasureAndLogOptions): Interceptor {
  const { metrics, logger, stats, statsExempt } = options;
  return (next) => async (request) => {
    const labels = {
      grpc_service: request.service.typeName,
      grpc_method: request.method.name,
      grpc_type: GRPC_TYPE[request.method.methodKind] ?? "unary",
    };
    const started = performance.now();
    metrics.started.inc(labels);
    // A server stream's duration is how long it was watched, not a handling time.
    const kind = request.method.methodKind;
    const timed = (kind === "unary" || kind === "client_streaming") && !statsExempt.has(labels.grpc_service);
    let finished = false;
    /** Records the end of the call once, with `code` undefined for OK. */
    const finish = (code: Code | undefined) => {
      if (finished) return;
      finished = true;
      const seconds = (performance.now() - started) / 1000;
      metrics.handled.inc({ ...labels, grpc_code: grpcCodeName(code) });
      metrics.handling.observe(labels, seconds);
      if (timed) stats.handled(seconds * 1000);
      // Built only when it will be written: at LOG_LEVEL=warn a call costs no log line at all.
      if (!logger.isLevelEnabled("info")) return;
      // Only these fields: never a request body, and no header but the request id.
      logger.info(
        {
          procedure: `${labels.grpc_service}/${labels.grpc_method}`,
          code: codeName(code),
          duration_ms: Math.round(seconds * 1e6) / 1e3,
          // The credential's name (or JWT sub) once auth has run; never the credential itself.
          client: request.contextValues.get(PRINCIPAL)?.client,
          tenant: request.contextValues.get(TENANT) || undefined,
          peer: request.contextValues.get(PEER),
          request_id: request.contextValues.get(REQUEST_ID),
        },
        "rpc",
      );
    };
    const failed = (error: unknown) => finish(failedCode(error, request.signal));

    let counted = request;
    if (request.stream) {
      counted = {
        ...request,
        message: tap(request.message, { message: perRun((count) => metrics.received.inc(labels, count)) }),
      };
    } else if (request.message !== undefined) {
      // Undefined when the request could not be read (bad bytes, unknown encoding):
      // patched connect runs the interceptors for such calls too (scripts/patch-connect.mjs, 4c).
      metrics.received.inc(labels);
    }
    let response;
    try {
      response = await next(counted);
    } catch (error) {
      failed(error);
      throw error;
    }
    if (!response.stream) {
      const code = answeredCode(request.signal);
      // An answer the client never sees (it went away) is not counted as sent.
      if (code === undefined) metrics.sent.inc(labels);
      finish(code);
      return response;
    }
    const countSent = perRun((count) => metrics.sent.inc(labels, count));
    const ended = (how: TapEnd) => finish(streamEndCode(how, request.signal));
    // A stream whose client went away while a write waited on flow control is
    // never read again (connect-node waits for a "drain" that a closed HTTP/2
    // stream does not emit), so its tap never ends: the abort ends the call.
    // A stream that ended first was counted then (connect aborts after the end).
    request.signal.addEventListener("abort", () => ended({ kind: "done" }), { once: true });
    return { ...response, message: tap(response.message, { message: countSent, end: ended }) };
  };
}

/**
 * A counter of messages that adds up the counts of one run of code (and the
 * promise callbacks it sets off) and passes them on in one `add` on
 * process.nextTick: prom-client hashes the labels on every inc, and the
 * messages of a stream arrive, or leave, many to a run. The count is current
 * before the next I/O, so before the call's response is written.
 */
function perRun(add: (count: number) => void): () => void {
  let pending = 0;
  const flush = () => {
    const count = pending;
    pending = 0;
    add(count);
  };
  return () => {
    if (pending++ === 0) process.nextTick(flush);
  };
}
