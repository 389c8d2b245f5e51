/**
 * Watchers over plain HTTP, `GET /v1/streams/{streamId}/results` (README
 * "Watch over Server-Sent Events and WebSocket"), as clients of those
 * transports connect, each handing on every result's stream id and raw
 * payload (decoded from the base64 of its JSON) so the bench times and checks
 * it as it does a WatchResults result (readRawStamp in watch.ts):
 *
 * - Server-Sent Events over HTTP/2 (node:http2, cleartext with prior
 *   knowledge), CALLS_PER_CONNECTION streams per connection as the gRPC
 *   watchers have. A browser's EventSource over HTTP/2 shares its origin's
 *   connection the same way; over HTTP/1.1 it would hold a connection of its
 *   own per watch (and a browser allows 6 per origin).
 * - WebSocket (the `ws` package), one TCP connection per socket, as WebSocket
 *   has; at most OPEN_IN_FLIGHT handshakes under way at once.
 *
 * Both authenticate with the bench key in the `x-api-key` header, as a
 * server-side client does (a browser, which cannot set headers, passes a watch
 * ticket in the URL instead).
 */
import * as http2 from "node:http2";
import { WebSocket } from "ws";
import { AUTH } from "./load.js";
import type { StreamgateServer } from "./processes.js";
import { CALLS_PER_CONNECTION, type OnWatchedResult, type WatcherPool } from "./watch.js";

/** WebSocket handshakes under way at once (as the watchers scenario opens its calls): a steady stream of connections, not a SYN flood. */
const OPEN_IN_FLIGHT = 100;

/** The results path of `streamId`. */
function resultsPath(streamId: string): string {
  return `/v1/streams/${encodeURIComponent(streamId)}/results`;
}

/** The stream id and raw payload of a result in proto3 JSON (`raw` is base64); undefined raw for a JSON result. */
function handOn(result: { streamId?: string; raw?: string } | undefined, onResult: OnWatchedResult): void {
  onResult(result?.streamId ?? "", result?.raw === undefined ? undefined : Buffer.from(result.raw, "base64"));
}

/**
 * `watchers` Server-Sent Events watches over HTTP/2, CALLS_PER_CONNECTION
 * per connection: watcher i on connection i % connections. A watch ends
 * cleanly with `event: end`; with an error on `event: error`, a status other
 * than 200, or a response that ends without either.
 */
export function sseWatchers(server: StreamgateServer, watchers: number): WatcherPool {
  const connections = Math.ceil(watchers / CALLS_PER_CONNECTION);
  const sessions = Array.from({ length: connections }, () => {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    // A session's error also errors its streams, which report it.
    session.on("error", () => undefined);
    return session;
  });
  return {
    transport: `Server-Sent Events over HTTP/2 (node:http2), ${CALLS_PER_CONNECTION} streams per connection`,
    connections,
    watch: (index, streamId, onResult) =>
      new Promise<unknown>((resolve) => {
        let ending: unknown = new Error("the response ended without an end event");
        let done = false;
        const finish = (outcome: unknown) => {
          ending = outcome;
          done = true;
          stream.close();
        };
        const stream = sessions[index % connections]!.request(
          { ":method": "GET", ":path": resultsPath(streamId), accept: "text/event-stream", ...AUTH },
          { endStream: true },
        );
        stream.setEncoding("utf8");
        let status = 0;
        let buffer = "";
        stream.once("response", (headers) => (status = Number(headers[":status"])));
        stream.on("data", (chunk: string) => {
          if (done) return;
          buffer += chunk;
          if (status !== 200) return; // the refusal's body, reported at the end
          let start = 0;
          for (let end = buffer.indexOf("\n\n"); end !== -1; end = buffer.indexOf("\n\n", start)) {
            const event = parseEvent(buffer.slice(start, end));
            start = end + 2;
            if (event?.event === "result") {
              handOn((JSON.parse(event.data) as { result?: { streamId?: string; raw?: string } }).result, onResult);
            } else if (event?.event === "end") {
              return finish(undefined);
            } else if (event?.event === "error") {
              return finish(new Error(`SSE error event: ${event.data}`));
            }
          }
          buffer = buffer.slice(start);
        });
        stream.on("error", (error) => {
          if (!done) ending = error;
        });
        stream.once("close", () =>
          resolve(status === 200 || status === 0 ? ending : new Error(`HTTP ${status}: ${buffer.slice(0, 500)}`)),
        );
      }),
    close: () => sessions.forEach((session) => session.destroy()),
  };
}

/**
 * One event block (the text between blank lines) as the EventSource
 * specification reads it: `event` and `data` fields (data lines joined by
 * "\n"), comment lines (":") skipped; undefined for a block of comments only.
 * Lines end with "\n" alone, as streamgate writes them (the specification
 * also allows "\r\n" and "\r").
 */
function parseEvent(block: string): { event: string; data: string } | undefined {
  let event = "message";
  let data: string | undefined;
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "event") event = value;
    else if (name === "data") data = data === undefined ? value : `${data}\n${value}`;
  }
  return data === undefined ? undefined : { event, data };
}

/** A frame the server sends on a results WebSocket (the fields read here). */
interface ServerFrame {
  type: string;
  result?: { streamId?: string; raw?: string };
  code?: string;
  message?: string;
}

/**
 * `watchers` WebSocket watches, each on a TCP connection of its own. A watch
 * ends cleanly with `{"type":"end"}`; with an error on `{"type":"error"}`, a
 * refused handshake, or a close without either.
 */
export function webSocketWatchers(server: StreamgateServer, watchers: number): WatcherPool {
  const sockets = new Set<WebSocket>();
  const opening = new Slots(OPEN_IN_FLIGHT);
  let closed = false;
  return {
    transport: `WebSocket (ws), one TCP connection per socket, at most ${OPEN_IN_FLIGHT} handshakes at once`,
    connections: watchers,
    watch: async (_index, streamId, onResult) => {
      await opening.take();
      if (closed) {
        opening.give();
        return new Error("closed before it opened");
      }
      return new Promise<unknown>((resolve) => {
        let ending: unknown;
        let handshaking = true;
        const handshaken = () => {
          if (handshaking) opening.give();
          handshaking = false;
        };
        // No permessage-deflate: the server does not take it (a browser offers it, and is declined).
        const ws = new WebSocket(`ws://127.0.0.1:${server.port}${resultsPath(streamId)}`, {
          headers: AUTH,
          perMessageDeflate: false,
        });
        sockets.add(ws);
        ws.once("open", handshaken);
        ws.on("message", (data, isBinary) => {
          if (isBinary) {
            ending ??= new Error("a binary frame");
            return;
          }
          // A Buffer: ws's default binaryType ("nodebuffer").
          const frame = JSON.parse((data as Buffer).toString("utf8")) as ServerFrame;
          if (frame.type === "result") handOn(frame.result, onResult);
          else if (frame.type === "end") ending ??= null;
          else if (frame.type === "error") ending ??= new Error(`error frame: ${frame.code}: ${frame.message}`);
        });
        // A refused handshake (an HTTP error) or a broken connection; "close" follows.
        ws.on("error", (error) => (ending ??= error));
        ws.once("close", (code, reason) => {
          handshaken();
          sockets.delete(ws);
          resolve(ending === null ? undefined : (ending ?? new Error(`closed ${code} ${reason.toString()}`)));
        });
      });
    },
    close: () => {
      closed = true;
      for (const ws of sockets) ws.terminate();
    },
  };
}

/** At most `count` holders at once; the others wait in order. */
class Slots {
  private readonly waiting: (() => void)[] = [];

  constructor(private free: number) {}

  async take(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  give(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}
