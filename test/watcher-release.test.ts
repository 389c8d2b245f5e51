/**
 * A watcher ends, and frees everything it holds, when its client goes away,
 * whatever state it is in: reading (waiting for the next result), stalled on
 * HTTP/2 flow control (the client stopped reading: connect's write of a
 * result never completes, so the handler's generator is never resumed), or
 * stalled and overflowed (more than WATCH_BUFFER results behind). The
 * attacker's client opens its watchers over raw HTTP/2 with a zero flow
 * control window, is sent results until its watchers are stuck, then resets
 * its streams or drops its connection. Afterwards, on both brokers, no
 * watcher is open (streamgate_active_watchers is the fanout's count), the
 * client's watcher slots (CLIENT_MAX_WATCHERS) are all free again, every
 * watch that started is counted as handled, what the watches held has been
 * garbage collected, and both clients' new watches get their results. Watches
 * reset while they wait for their turn (src/rpc/call-admission.ts) never start. */
import * as http2 from "node:http2";
import * as net from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  StartPosition,
  StreamService,
  WatchResultsRequestSchema,
  type WatchResultsResponse,
} from "../gen/streamgate/v1/stream_service_pb.js";
import { Fanout } from "../src/fanout/fanout.js";
import { streamKey } from "../src/streams/stream-key.js";
import {
  activeWatchers,
  apiKeyHeader,
  BROKERS,
  startTestServer,
  type TestServer,
  TRANSPORTS,
  take,
  takeResuming,
} from "./support/server.js";

const ATTACKER_KEY = "attacker-key-0123456789abcdef";
const OTHER_KEY = "other-key-0123456789abcdef01";
/** The tenant of both keys: the attacker may watch the other client's streams. */
const TENANT = "shared";
/** Small, so a few results overflow a stalled watcher. */
const WATCH_BUFFER = 8;
/** The attacker's cap on open watchers: every test opens this many, so a slot not given back fails the next. */
const MAX_WATCHERS = 3;
/**
 * Result payload sizes. With the client's window at 0, no DATA leaves the
 * server: connect writes results into the HTTP/2 stream's 16 KiB buffer and,
 * once it is full, waits for a "drain" that never comes, so the handler is
 * never asked for its next result. A result over 16 KiB fills the buffer on
 * its own, in the write handed to the session: when the stream closes, that
 * write completes without an error (and no "drain" or "error" follows), so
 * connect's wait never ends at all. Smaller results fill it in several writes,
 * the last of them still queued, which fails when the stream closes.
 */
const LARGE = 20_000;
const SMALL = 4096;
/** Results that stall a watcher and then overflow it: those in the stream's buffer, a WATCH_BUFFER more, and a margin. */
const overflowing = (size: number) => Math.ceil(16_384 / size) + WATCH_BUFFER + 4;
/** Results that stall a watcher without overflowing it. */
const stalling = (size: number) => Math.ceil(16_384 / size) + 2;

// The collector, to check that what a watcher held is garbage once its client has gone.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/**
 * What every watch of a stream held, by stream key: its Watcher (buffer,
 * resume cursor) and the fanout's generator serving it, as weak references,
 * recorded by the fanout's own watch path (observed, not replaced).
 */
const held = new Map<string, WeakRef<object>[]>();
type StreamMethod = (...args: unknown[]) => object;
const fanoutStream = (Fanout.prototype as unknown as { stream: StreamMethod }).stream;
beforeAll(() => {
  (Fanout.prototype as unknown as { stream: StreamMethod }).stream = function (this: Fanout, ...args: unknown[]) {
    const generator = fanoutStream.apply(this, args);
    // stream(key, partition, start, ingestStart, filter, watcher, signal)
    const [key, , , , , watcher] = args as [string, number, number, number, unknown, object];
    const refs = held.get(key) ?? [];
    refs.push(new WeakRef(watcher), new WeakRef(generator));
    held.set(key, refs);
    return generator;
  };
});
afterAll(() => {
  (Fanout.prototype as unknown as { stream: StreamMethod }).stream = fanoutStream;
});

/** Waits until everything the watches of `streamId` held has been collected. */
async function expectCollected(streamId: string): Promise<void> {
  const refs = held.get(streamKey(TENANT, streamId)) ?? [];
  expect(refs.length).toBeGreaterThan(0);
  await until(async () => {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
    return refs.every((ref) => ref.deref() === undefined);
  }, "the watches' state to be collected");
}

/** Polls `condition` every 20 ms until it holds, for at most `timeoutMs`. */
async function until(condition: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The sum of a WatchResults counter's samples (all codes) as /metrics reports it. */
async function watchCounter(server: TestServer, name: string): Promise<number> {
  const text = await (await fetch(`${server.baseUrl}/metrics`)).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith(`${name}{`) && l.includes('grpc_method="WatchResults"'))
    .reduce((sum, l) => sum + Number(l.split(" ").pop()), 0);
}

/** grpc_server_started_total of WatchResults. */
const watchesStarted = (server: TestServer) => watchCounter(server, "grpc_server_started_total");
/** grpc_server_handled_total of WatchResults, every code. */
const watchesHandled = (server: TestServer) => watchCounter(server, "grpc_server_handled_total");

/** An HTTP/2 frame: 9-byte header (length, type, flags, stream id) and payload. */
function h2Frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header.writeUInt8(type, 3);
  header.writeUInt8(flags, 4);
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
}

/** A header block of literal fields without indexing or Huffman coding (names and values under 127 bytes). */
function hpack(headers: Array<[string, string]>): Buffer {
  return Buffer.concat(
    headers.map(([name, value]) =>
      Buffer.concat([
        Buffer.from([0, name.length]),
        Buffer.from(name),
        Buffer.from([value.length]),
        Buffer.from(value),
      ]),
    ),
  );
}

function frame(message: Uint8Array): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

/** The headers of the attacker's WatchResults calls over raw HTTP/2 (gRPC). */
const WATCH_HEADERS: http2.OutgoingHttpHeaders = {
  ":method": "POST",
  ":path": `/${StreamService.typeName}/${StreamService.method.watchResults.name}`,
  "content-type": "application/grpc+proto",
  te: "trailers",
  "x-api-key": ATTACKER_KEY,
};

/** A WatchResults call over raw HTTP/2 whose client never reads: opened on a session with a zero flow-control window. */
interface StalledWatch {
  session: http2.ClientHttp2Session;
  stream: http2.ClientHttp2Stream;
}

/** Opens a session that lets the server send no DATA at all, and `count` WatchResults calls of `streamId` on it, none read. */
function openStalled(server: TestServer, streamId: string, count: number): StalledWatch[] {
  const session = http2.connect(server.baseUrl, { settings: { initialWindowSize: 0 } });
  session.on("error", () => undefined);
  const body = frame(
    toBinary(
      WatchResultsRequestSchema,
      create(WatchResultsRequestSchema, { streamId, startPosition: StartPosition.EARLIEST }),
    ),
  );
  const watches: StalledWatch[] = [];
  for (let i = 0; i < count; i++) {
    const stream = session.request(WATCH_HEADERS);
    stream.on("error", () => undefined);
    stream.pause();
    stream.end(body);
    watches.push({ session, stream });
  }
  return watches;
}

describe.each(BROKERS)("watchers of vanished clients, on the %s broker", (broker) => {
  let server: TestServer;
  const client = (key: string) => createClient(StreamService, TRANSPORTS.grpc!(server.baseUrl, [apiKeyHeader(key)]));
  let streamNo = 0;

  beforeAll(async () => {
    server = await startTestServer(
      {
        // Two clients of one tenant: the attacker may watch the other's streams; each has its own watcher slots.
        API_KEYS: `attacker@${TENANT}:${ATTACKER_KEY},other@${TENANT}:${OTHER_KEY}`,
        WATCH_BUFFER: String(WATCH_BUFFER),
        CLIENT_MAX_WATCHERS: String(MAX_WATCHERS),
      },
      broker,
    );
  });
  afterAll(async () => {
    await server?.close();
  });

  /** A new stream, started by the other client. */
  async function newStream() {
    const streamId = `s${++streamNo}`;
    await client(OTHER_KEY).startStream({ streamId });
    return streamId;
  }

  /** Sends `count` results of `size` bytes to `streamId` and waits until a reading watcher of the other client got them all. */
  async function sendResults(streamId: string, count: number, size: number): Promise<void> {
    const observer = new AbortController();
    const reading = takeResuming(client(OTHER_KEY), streamId, "", count, observer.signal);
    const raw = new Uint8Array(size).fill(7);
    for (let i = 0; i < count; i++)
      await client(OTHER_KEY).sendData({ streamId, payload: { case: "raw", value: raw } });
    expect(await reading).toHaveLength(count);
    observer.abort();
  }

  /** After the attack: no watcher open, every slot of the attacker free, and both clients' watches get results. */
  async function expectReleased(streamId: string): Promise<void> {
    await until(async () => (await activeWatchers(server)) === 0, "active watchers back to 0");
    // All MAX_WATCHERS slots of the attacker are free: it can watch that many again, and each gets a result.
    const attacker = client(ATTACKER_KEY);
    const done = new AbortController();
    const watches: Promise<WatchResultsResponse[]>[] = [];
    for (let i = 0; i < MAX_WATCHERS; i++) {
      watches.push(
        take(attacker.watchResults({ streamId, startPosition: StartPosition.LATEST }, { signal: done.signal }), 1),
      );
    }
    const other = take(
      client(OTHER_KEY).watchResults({ streamId, startPosition: StartPosition.LATEST }, { signal: done.signal }),
      1,
    );
    await until(async () => (await activeWatchers(server)) === MAX_WATCHERS + 1, "the new watchers to open");
    await client(OTHER_KEY).sendData({ streamId, payload: { case: "raw", value: new Uint8Array([1]) } });
    for (const watch of [...watches, other]) expect(await watch).toHaveLength(1);
    done.abort();
    await until(async () => (await activeWatchers(server)) === 0, "active watchers back to 0 after the check");
    // Every WatchResults call that started has ended, as far as the call metrics (and log) are concerned.
    await until(
      async () => (await watchesStarted(server)) === (await watchesHandled(server)),
      "every watch counted as handled",
    );
  }

  const stalledCases = [LARGE, SMALL].flatMap((size) =>
    [true, false].flatMap((overflowed) =>
      (["stream reset", "connection closed"] as const).map((ending) => ({ size, overflowed, ending })),
    ),
  );
  it.each(stalledCases)(
    "releases watchers stalled on flow control ($size-byte results, overflowed: $overflowed) on $ending",
    async ({ size, overflowed, ending }) => {
      const streamId = await newStream();
      const watches = openStalled(server, streamId, MAX_WATCHERS);
      await until(async () => (await activeWatchers(server)) === MAX_WATCHERS, "the stalled watchers to open");
      await sendResults(streamId, overflowed ? overflowing(size) : stalling(size), size);
      if (ending === "stream reset") {
        for (const { stream } of watches) stream.close(http2.constants.NGHTTP2_CANCEL);
      } else {
        watches[0]!.session.destroy();
      }
      await expectReleased(streamId);
      await expectCollected(streamId);
      watches[0]!.session.destroy();
    },
  );

  it("releases reading watchers when their connection closes", async () => {
    const streamId = await newStream();
    const session = http2.connect(server.baseUrl);
    session.on("error", () => undefined);
    const received: Buffer[] = [];
    for (let i = 0; i < MAX_WATCHERS; i++) {
      const stream = session.request(WATCH_HEADERS);
      stream.on("error", () => undefined);
      stream.on("data", (chunk: Buffer) => received.push(chunk));
      stream.end(frame(toBinary(WatchResultsRequestSchema, create(WatchResultsRequestSchema, { streamId }))));
    }
    await until(async () => (await activeWatchers(server)) === MAX_WATCHERS, "the reading watchers to open");
    await sendResults(streamId, 2, SMALL);
    session.destroy();
    await expectReleased(streamId);
    await expectCollected(streamId);
  });

  it("never starts, or frees, watches whose streams are reset while they wait for their turn", async () => {
    const streamId = await newStream();
    const startedBefore = await watchesStarted(server);
    // In one write, so they arrive in one read: the calls are queued for the
    // turn's check phase (src/rpc/call-admission.ts), and reset before it comes.
    const request = frame(
      toBinary(
        WatchResultsRequestSchema,
        create(WatchResultsRequestSchema, { streamId, startPosition: StartPosition.EARLIEST }),
      ),
    );
    const headers = hpack([
      [":method", "POST"],
      [":scheme", "http"],
      [":path", `/${StreamService.typeName}/${StreamService.method.watchResults.name}`],
      [":authority", `127.0.0.1:${server.port}`],
      ["content-type", "application/grpc+proto"],
      ["te", "trailers"],
      ["x-api-key", ATTACKER_KEY],
    ]);
    const cancel = Buffer.alloc(4);
    cancel.writeUInt32BE(http2.constants.NGHTTP2_CANCEL);
    const frames = [Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), h2Frame(4, 0, 0, Buffer.alloc(0))];
    const calls = 2 * MAX_WATCHERS;
    for (let i = 0; i < calls; i++) {
      const id = 1 + 2 * i;
      frames.push(h2Frame(1, 0x4, id, headers), h2Frame(0, 0x1, id, request), h2Frame(3, 0, id, cancel));
    }
    // A PING last: its ACK comes once the server has read every frame before it.
    frames.push(h2Frame(6, 0, 0, Buffer.alloc(8)));
    const socket = net.connect(server.port, "127.0.0.1");
    socket.on("error", () => undefined);
    let received = Buffer.alloc(0);
    const pinged = new Promise<void>((resolve) => {
      socket.on("data", (chunk: Buffer) => {
        received = Buffer.concat([received, chunk]);
        // A PING frame with the ACK flag: type 6, flags 1.
        for (let at = 0; at + 9 <= received.length; at += 9 + received.readUIntBE(at, 3)) {
          if (received[at + 3] === 6 && received[at + 4] === 1) resolve();
        }
      });
    });
    socket.write(Buffer.concat(frames));
    await pinged;
    socket.destroy();
    await expectReleased(streamId);
    // Only expectReleased's own watches started: MAX_WATCHERS of the attacker's and one of the other client's.
    expect((await watchesStarted(server)) - startedBefore).toBe(MAX_WATCHERS + 1);
  });
});
