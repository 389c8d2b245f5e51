/**
 * The attribute names streamgate's spans carry: OpenTelemetry's semantic
 * conventions (as of @opentelemetry/semantic-conventions 1.45: `rpc.*` stable,
 * `messaging.*` and `kafka.*` still in development, copied here as that
 * package advises rather than imported from its unstable entry point) and
 * streamgate's own, under `streamgate.`. None takes a payload, a credential or
 * a header value.
 */

/** Attribute names; see the module comment. */
export const ATTR = {
  rpcSystem: "rpc.system.name",
  /** Fully qualified: `streamgate.v1.StreamService/SendData`. */
  rpcMethod: "rpc.method",
  /** The code's name as gRPC spells it: `OK`, `INVALID_ARGUMENT`, ... */
  rpcStatusCode: "rpc.status_code",
  httpMethod: "http.request.method",
  httpRoute: "http.route",
  messagingSystem: "messaging.system",
  destination: "messaging.destination.name",
  /** A string, as the conventions have it. */
  partition: "messaging.destination.partition.id",
  operationType: "messaging.operation.type",
  operationName: "messaging.operation.name",
  consumerGroup: "messaging.consumer.group.name",
  offset: "kafka.offset",
  /** The class of what failed (e.g. `BrokerError`), never its message. */
  errorType: "error.type",
  streamId: "streamgate.stream_id",
  tenant: "streamgate.tenant",
  /** `sse` or `websocket`, on a watch's span. */
  transport: "streamgate.transport",
  /** How a watch over SSE or WebSocket ended, as its metric counts it (`ok`, `canceled`, ...). */
  code: "streamgate.code",
} as const;

/** The route of watches over Server-Sent Events and WebSocket, as http.route names it. */
export const WATCH_ROUTE = "/v1/streams/{streamId}/results";
