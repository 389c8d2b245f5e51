/**
 * The Connect conformance suite's ConformanceService, as its runner expects a
 * server to answer (connectrpc.com/conformance v1.0.7, the reference server's
 * semantics): each request says what to answer, the response headers and
 * trailers, data or an error with details, a delay before each response; and
 * each answer echoes what the server saw (RequestInfo: the request headers,
 * the timeout, the requests as Any). Served through streamgate's whole stack
 * by test/conformance/server.ts. RequestInfo's connect_get_info is left empty:
 * config.yaml declares no Connect GET, so the suite sends none.
 */
import { create } from "@bufbuild/protobuf";
import { type Any, anyPack } from "@bufbuild/protobuf/wkt";
import { type Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import {
  BidiStreamRequestSchema,
  ClientStreamRequestSchema,
  type ConformancePayload,
  type ConformancePayload_RequestInfo,
  ConformancePayload_RequestInfoSchema,
  ConformancePayloadSchema,
  ConformanceService,
  type Error as ErrorDefinition,
  type Header,
  HeaderSchema,
  IdempotentUnaryRequestSchema,
  ServerStreamRequestSchema,
  type StreamResponseDefinition,
  UnaryRequestSchema,
  type UnaryResponseDefinition,
} from "../../gen/connectrpc/conformance/v1/service_pb.js";

/** Registers the ConformanceService (Unimplemented is left out: connect answers it UNIMPLEMENTED). */
export function conformanceRoutes(router: ConnectRouter): void {
  router.service(ConformanceService, {
    unary: (request, context) =>
      answerUnary(request.responseDefinition, [anyPack(UnaryRequestSchema, request)], context),
    idempotentUnary: (request, context) =>
      answerUnary(request.responseDefinition, [anyPack(IdempotentUnaryRequestSchema, request)], context),
    async clientStream(requests, context) {
      let definition: UnaryResponseDefinition | undefined;
      const seen: Any[] = [];
      for await (const request of requests) {
        // The first request says how to answer.
        if (seen.length === 0) definition = request.responseDefinition;
        seen.push(anyPack(ClientStreamRequestSchema, request));
      }
      return answerUnary(definition, seen, context);
    },
    async *serverStream(request, context) {
      const definition = request.responseDefinition;
      const seen = [anyPack(ServerStreamRequestSchema, request)];
      if (!definition) return;
      addHeaders(context.responseHeader, definition.responseHeaders);
      addHeaders(context.responseTrailer, definition.responseTrailers);
      let sent = 0;
      for (const data of definition.responseData) {
        await sleep(definition.responseDelayMs, context.signal);
        // Only the first response echoes the request: nothing in it changes later.
        yield { payload: payload(data, sent === 0 ? requestInfo(context, seen) : undefined) };
        sent++;
      }
      if (definition.error) throw errorOf(definition.error, sent === 0 ? requestInfo(context, seen) : undefined);
    },
    async *bidiStream(requests, context) {
      let definition: StreamResponseDefinition | undefined;
      let fullDuplex = false;
      let first = true;
      let sent = 0;
      /** The requests received since the last response. */
      let seen: Any[] = [];
      for await (const request of requests) {
        seen.push(anyPack(BidiStreamRequestSchema, request));
        if (first) {
          first = false;
          definition = request.responseDefinition;
          fullDuplex = request.fullDuplex;
          if (definition) {
            addHeaders(context.responseHeader, definition.responseHeaders);
            addHeaders(context.responseTrailer, definition.responseTrailers);
          }
        }
        if (!fullDuplex) continue;
        // Full duplex: one response per request while there are responses to send.
        if (sent >= (definition?.responseData.length ?? 0)) break;
        await sleep(definition!.responseDelayMs, context.signal);
        // The first response carries the whole RequestInfo, later ones only the requests since.
        const info =
          sent === 0 ? requestInfo(context, seen) : create(ConformancePayload_RequestInfoSchema, { requests: seen });
        yield { payload: payload(definition!.responseData[sent]!, info) };
        sent++;
        seen = [];
      }
      if (!definition) return;
      // Half duplex (everything is sent now), or full duplex with more responses than requests.
      for (; sent < definition.responseData.length; sent++) {
        await sleep(definition.responseDelayMs, context.signal);
        yield { payload: payload(definition.responseData[sent]!, sent === 0 ? requestInfo(context, seen) : undefined) };
      }
      if (definition.error) throw errorOf(definition.error, sent === 0 ? requestInfo(context, seen) : undefined);
    },
  });
}

/** A unary or client-stream answer: the defined data or error, after the defined delay. */
async function answerUnary(
  definition: UnaryResponseDefinition | undefined,
  requests: Any[],
  context: HandlerContext,
): Promise<{ payload: ConformancePayload }> {
  const info = requestInfo(context, requests);
  if (!definition) return { payload: payload(undefined, info) };
  addHeaders(context.responseHeader, definition.responseHeaders);
  addHeaders(context.responseTrailer, definition.responseTrailers);
  if (definition.response.case === "error") throw errorOf(definition.response.value, info);
  await sleep(definition.responseDelayMs, context.signal);
  return { payload: payload(definition.response.value, info) };
}

/** What the server saw of the call: its request headers, its timeout, and `requests`. */
function requestInfo(context: HandlerContext, requests: Any[]): ConformancePayload_RequestInfo {
  const timeoutMs = context.timeoutMs();
  const requestHeaders: Header[] = [];
  context.requestHeader.forEach((value, name) => requestHeaders.push(create(HeaderSchema, { name, value: [value] })));
  return create(ConformancePayload_RequestInfoSchema, {
    requestHeaders,
    timeoutMs: timeoutMs === undefined ? undefined : BigInt(timeoutMs),
    requests,
  });
}

function payload(data: Uint8Array | undefined, info: ConformancePayload_RequestInfo | undefined): ConformancePayload {
  return create(ConformancePayloadSchema, { data, requestInfo: info });
}

/** Appends the defined headers (or trailers) to `target`, every value of each. */
function addHeaders(target: Headers, headers: Header[]): void {
  for (const header of headers) for (const value of header.value) target.append(header.name, value);
}

/**
 * The defined error as a ConnectError, its details passed as they are, and
 * `info` added as a last detail when given (the suite reads the RequestInfo
 * there when no response carried it).
 */
function errorOf(definition: ErrorDefinition, info: ConformancePayload_RequestInfo | undefined): ConnectError {
  const error = new ConnectError(definition.message ?? "", definition.code as number as Code);
  const details: Any[] = info
    ? [...definition.details, anyPack(ConformancePayload_RequestInfoSchema, info)]
    : definition.details;
  error.details = details.map((any) => ({
    type: any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1),
    value: any.value,
  }));
  return error;
}

/**
 * Waits `ms` (nothing for 0). Fails with the call's abort reason (its deadline,
 * or the client's cancel) if the call ends first: a handler must not answer a
 * call that is over.
 */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", aborted);
      resolve();
    }, ms);
    function aborted() {
      clearTimeout(timer);
      reject(signal.reason);
    }
    signal.addEventListener("abort", aborted, { once: true });
  });
}
