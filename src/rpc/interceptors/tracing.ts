/**
 * A call's server span, in the chain only while tracing is on
 * (src/observe/tracing.ts). It joins the trace of the client's `traceparent`
 * and `tracestate` request headers (gRPC metadata, or HTTP headers for
 * gRPC-Web and Connect), or starts one. Just inside the metrics interceptor
 * and outside the error mapping, so the span ends with the code the client
 * sees; the call runs with the span active, so the records it sends (and the
 * watch it opens) are its children. Named after the procedure
 * (`streamgate.v1.StreamService/SendData`), it carries the RPC attributes,
 * the tenant and the stream id, never a message or a header's value. Health
 * checks make none: probes every few seconds would bury the traces.
 */
import type { Code, Interceptor, StreamRequest, UnaryRequest } from "@connectrpc/connect";
import { Health } from "../../../gen/grpc/health/v1/health_pb.js";
import type { RpcSystem, Traces } from "../../observe/trace-points.js";
import { requireStreamId } from "../../streams/validation.js";
import { codeName } from "../errors.js";
import { TENANT } from "../request-context.js";
import { answeredCode, failedCode, streamEndCode } from "./call-code.js";
import { type TapEnd, tap } from "./tap.js";

/** Creates the tracing interceptor, which makes its spans with `traces`. */
export function traceCalls(traces: Traces): Interceptor {
  return (next) => async (request) => {
    if (request.service.typeName === Health.typeName) return next(request);
    const span = traces.startCall(
      request.service.typeName,
      request.method.name,
      rpcSystemOf(request.header),
      request.header,
    );
    const end = (code: Code | undefined) => {
      // Known once the auth interceptor has run.
      span.setStream(request.contextValues.get(TENANT) || undefined, undefined);
      span.end(codeName(code));
    };
    let call: UnaryRequest | StreamRequest = request;
    if (!request.stream) {
      span.setStream(undefined, streamIdIn(request.message));
    } else {
      // A stream's first message names its stream (WatchResults has only one).
      let named = false;
      const name = (message: unknown) => {
        if (named) return;
        named = true;
        span.setStream(undefined, streamIdIn(message));
      };
      call = { ...request, message: tap(request.message, { message: (message) => name(message) }) };
    }
    let response;
    try {
      response = await span.run(() => next(call));
    } catch (error) {
      end(failedCode(error, request.signal));
      throw error;
    }
    if (!response.stream) {
      end(answeredCode(request.signal));
      return response;
    }
    const ended = (how: TapEnd) => end(streamEndCode(how, request.signal));
    // As for the metrics: a stream whose client went away may never be read again; the abort ends its span.
    request.signal.addEventListener("abort", () => ended({ kind: "done" }), { once: true });
    return { ...response, message: tap(response.message, { end: ended }) };
  };
}

/** The RPC system of a call, from its content type: gRPC and gRPC-Web are gRPC's; anything else is Connect's. */
function rpcSystemOf(header: Headers): RpcSystem {
  return header.get("content-type")?.startsWith("application/grpc") ? "grpc" : "connectrpc";
}

/**
 * The stream id a request message names, if it has one (StreamService's do;
 * health checks do not) and it is well formed: one the handler will refuse
 * (any text, of any length) stays out of the span.
 */
function streamIdIn(message: unknown): string | undefined {
  const streamId = (message as { streamId?: unknown } | undefined)?.streamId;
  if (typeof streamId !== "string") return undefined;
  try {
    return requireStreamId(streamId);
  } catch {
    return undefined;
  }
}
