/**
 * A lean gRPC caller over one node:http2 connection, for load generators that
 * run in the bench process beside the server they load: unary calls, and
 * client streams (one HTTP/2 request whose body is a sequence of gRPC
 * length-prefixed messages, written whenever the caller likes).
 * connect-node's client spends about 5× the CPU per unary call (a profile shows
 * its async-iterable pipeline, an AbortController and a ConnectError built for
 * every call), which on a 2-core machine takes the server's CPU away and
 * delays the very calls being timed. The server sees the same gRPC requests.
 */
import * as http2 from "node:http2";
import {
  create,
  type DescMessage,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";

/** Calls one method; see the module comment. */
export interface LeanCaller<Input extends DescMessage> {
  /** Sends `request` as a unary call; resolves when the call ends with OK, rejects with the gRPC status otherwise. */
  call(request: MessageInitShape<Input>): Promise<void>;
  /** Starts a client-streaming call whose answer is an `output`. */
  clientStream<Output extends DescMessage>(output: Output): LeanClientStream<Input, Output>;
  close(): void;
}

/** One client-streaming call. */
export interface LeanClientStream<Input extends DescMessage, Output extends DescMessage> {
  /** Writes one request message (buffered by node:http2 if the connection is slow; a write after the call failed is dropped). */
  write(request: MessageInitShape<Input>): void;
  /** Ends the requests; resolves with the answer when the call ends with OK, rejects with the gRPC status otherwise. */
  end(): Promise<MessageShape<Output>>;
}

/**
 * Opens a connection to `baseUrl` (http://host:port, HTTP/2 with prior
 * knowledge) for calls of `path` ("/package.Service/Method") taking `input`,
 * with `headers` (e.g. x-api-key) on each.
 */
export function leanCaller<Input extends DescMessage>(
  baseUrl: string,
  path: string,
  input: Input,
  headers: Record<string, string>,
): LeanCaller<Input> {
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
  const frame = (request: MessageInitShape<Input>): Buffer => {
    const message = toBinary(input, create(input, request));
    // The gRPC length-prefixed message: no compression flag, 4-byte big-endian length.
    const framed = Buffer.allocUnsafe(5 + message.length);
    framed[0] = 0;
    framed.writeUInt32BE(message.length, 1);
    framed.set(message, 5);
    return framed;
  };
  /** Starts a call; `done` settles when it closes, with its response body if the status is OK. */
  const start = () => {
    const stream = session.request(requestHeaders);
    const done = new Promise<Buffer>((resolve, reject) => {
      let status: string | undefined;
      let detail = "";
      const body: Buffer[] = [];
      const read = (fields: http2.IncomingHttpHeaders) => {
        // A trailers-only answer (an error, usually) carries grpc-status in its headers.
        if (fields["grpc-status"] !== undefined) {
          status = String(fields["grpc-status"]);
          detail = decodeURIComponent(String(fields["grpc-message"] ?? ""));
        }
      };
      stream.on("response", read);
      stream.on("trailers", read);
      stream.on("data", (chunk: Buffer) => body.push(chunk));
      stream.on("error", reject);
      stream.on("close", () => {
        if (status === "0") resolve(Buffer.concat(body));
        else
          reject(
            new Error(
              status === undefined
                ? `${path}: no gRPC status (stream closed, code ${stream.rstCode})`
                : `${path}: gRPC status ${status} ${detail}`,
            ),
          );
      });
    });
    return { stream, done };
  };
  return {
    async call(request) {
      const { stream, done } = start();
      stream.end(frame(request));
      await done;
    },
    clientStream(output) {
      const { stream, done } = start();
      // A call that fails before end() is reported by end(), not as an unhandled rejection.
      done.catch(() => undefined);
      return {
        write(request) {
          if (!stream.destroyed && !stream.writableEnded) stream.write(frame(request));
        },
        async end() {
          stream.end();
          const body = await done;
          if (body.length < 5 || body.length < 5 + body.readUInt32BE(1))
            throw new Error(`${path}: no complete response message`);
          return fromBinary(output, body.subarray(5, 5 + body.readUInt32BE(1)));
        },
      };
    },
    close() {
      session.close();
    },
  };
}
