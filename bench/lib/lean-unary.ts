/**
 * A lean gRPC unary caller over one node:http2 connection, for load
 * generators that run in the bench process beside the server they load.
 * connect-node's client spends about 5× the CPU per unary call (a profile shows
 * its async-iterable pipeline, an AbortController and a ConnectError built for
 * every call), which on a 2-core machine takes the server's CPU away and
 * delays the very calls being timed. The server sees the same gRPC requests.
 */
import * as http2 from "node:http2";
import { create, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";

/** Calls one unary method; see the module comment. */
export interface LeanUnary<Input extends DescMessage> {
  /** Sends `request`; resolves when the call ends with OK, rejects with the gRPC status otherwise. */
  call(request: MessageInitShape<Input>): Promise<void>;
  close(): void;
}

/**
 * Opens a connection to `baseUrl` (http://host:port, HTTP/2 with prior
 * knowledge) for calls of `path` ("/package.Service/Method") taking `input`,
 * with `headers` (e.g. x-api-key) on each.
 */
export function leanUnary<Input extends DescMessage>(
  baseUrl: string,
  path: string,
  input: Input,
  headers: Record<string, string>,
): LeanUnary<Input> {
  const session = http2.connect(baseUrl);
  // A broken connection fails its calls (their streams error); nothing else to do here.
  session.on("error", () => undefined);
  const requestHeaders = {
    ":method": "POST",
    ":path": path,
    "content-type": "application/grpc+proto",
    te: "trailers",
    ...headers,
  };
  return {
    call(request) {
      const message = toBinary(input, create(input, request));
      // The gRPC length-prefixed message: no compression flag, 4-byte big-endian length.
      const frame = Buffer.allocUnsafe(5 + message.length);
      frame[0] = 0;
      frame.writeUInt32BE(message.length, 1);
      frame.set(message, 5);
      return new Promise((resolve, reject) => {
        const stream = session.request(requestHeaders);
        let status: string | undefined;
        let detail = "";
        const read = (fields: http2.IncomingHttpHeaders) => {
          // A trailers-only answer (an error, usually) carries grpc-status in its headers.
          if (fields["grpc-status"] !== undefined) {
            status = String(fields["grpc-status"]);
            detail = decodeURIComponent(String(fields["grpc-message"] ?? ""));
          }
        };
        stream.on("response", read);
        stream.on("trailers", read);
        stream.on("data", () => undefined);
        stream.on("error", reject);
        stream.on("close", () => {
          if (status === "0") resolve();
          else reject(new Error(status === undefined ? `${path}: no gRPC status (stream closed, code ${stream.rstCode})` : `${path}: gRPC status ${status} ${detail}`));
        });
        stream.end(frame);
      });
    },
    close() {
      session.close();
    },
  };
}
