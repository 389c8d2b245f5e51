/**
 * The RPC clients: gRPC-Web to the origin that served the page, each call
 * carrying the session's key as x-api-key.
 */
import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AdminService } from "../../gen/streamgate/v1/admin_service_pb.js";
import { StreamService } from "../../gen/streamgate/v1/stream_service_pb.js";

/** The two services the page calls. */
export interface Clients {
  admin: Client<typeof AdminService>;
  streams: Client<typeof StreamService>;
}

/** An interceptor sending the current key (read at each call, so a new key applies at once). */
function apiKey(currentKey: () => string | undefined): Interceptor {
  return (next) => (request) => {
    const key = currentKey();
    if (key !== undefined) request.header.set("x-api-key", key);
    return next(request);
  };
}

/** Clients of the server that served this page. */
export function createClients(currentKey: () => string | undefined): Clients {
  const transport = createGrpcWebTransport({ baseUrl: location.origin, interceptors: [apiKey(currentKey)] });
  return { admin: createClient(AdminService, transport), streams: createClient(StreamService, transport) };
}
