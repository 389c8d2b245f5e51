/**
 * The Connect protocol spoken by hand with plain `fetch` (no connect library,
 * no generated code), as any HTTP client could: unary calls are POSTs of JSON;
 * WatchResults is a server stream whose request is one envelope (flag byte,
 * 4-byte big-endian length, JSON) and whose response is a sequence of
 * envelopes ending with an end-stream envelope (flag 0x02). Shows dedup by
 * eventId, ordered results from EARLIEST, resume after a cursor, the errors,
 * and a watch ending OK when its stream is closed; on the embedded broker and
 * on Kafka.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { authHeaders, BROKERS, startTestServer, type TestServer } from "./support/server.js";

const SERVICE = "streamgate.v1.StreamService";
const END_STREAM = 0x02;

/** The server of the broker being tested (each broker's describe block starts its own). */
let server: TestServer;

/** A JSON object as parsed from the wire. */
type Json = Record<string, any>;

/** A Connect unary call: POST the request as JSON; returns the HTTP status and the JSON body. */
async function unary(method: string, request: unknown): Promise<{ status: number; body: Json }> {
  const response = await fetch(`${server.baseUrl}/${SERVICE}/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", "connect-protocol-version": "1", ...authHeaders(server) },
    body: JSON.stringify(request),
  });
  return { status: response.status, body: (await response.json()) as Json };
}

/** Frames one message as a Connect envelope: flags, big-endian length, JSON. */
function envelope(flags: number, message: unknown): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(message));
  const frame = new Uint8Array(5 + json.length);
  const view = new DataView(frame.buffer);
  view.setUint8(0, flags);
  view.setUint32(1, json.length, false);
  frame.set(json, 5);
  return frame;
}

/** Reads Connect envelopes one at a time from a response body, as they arrive. */
class EnvelopeReader {
  private buffer = new Uint8Array(0);

  constructor(private readonly reader: ReadableStreamDefaultReader<Uint8Array>) {}

  /** The next envelope, or undefined when the body has ended. */
  async next(): Promise<{ flags: number; json: Json } | undefined> {
    for (;;) {
      if (this.buffer.length >= 5) {
        const length = new DataView(this.buffer.buffer, this.buffer.byteOffset).getUint32(1, false);
        if (this.buffer.length >= 5 + length) {
          const flags = this.buffer[0]!;
          const json = JSON.parse(new TextDecoder().decode(this.buffer.subarray(5, 5 + length))) as Json;
          this.buffer = this.buffer.subarray(5 + length);
          return { flags, json };
        }
      }
      const { done, value } = await this.reader.read();
      if (done) {
        if (this.buffer.length > 0) throw new Error(`the body ended inside an envelope (${this.buffer.length} bytes)`);
        return undefined;
      }
      const joined = new Uint8Array(this.buffer.length + value.length);
      joined.set(this.buffer);
      joined.set(value, this.buffer.length);
      this.buffer = joined;
    }
  }

  cancel(): Promise<void> {
    return this.reader.cancel();
  }
}

/** An open WatchResults call in the Connect streaming protocol. */
interface Watch {
  status: number;
  contentType: string | null;
  envelopes: EnvelopeReader;
}

async function watch(request: unknown): Promise<Watch> {
  const response = await fetch(`${server.baseUrl}/${SERVICE}/WatchResults`, {
    method: "POST",
    headers: { "content-type": "application/connect+json", "connect-protocol-version": "1", ...authHeaders(server) },
    body: envelope(0x00, request),
  });
  return {
    status: response.status,
    contentType: response.headers.get("content-type"),
    envelopes: new EnvelopeReader(response.body!.getReader()),
  };
}

/** Reads the next `count` results from a watch that stays open. */
async function read(call: Watch, count: number): Promise<Json[]> {
  const results: Json[] = [];
  while (results.length < count) {
    const next = await call.envelopes.next();
    expect(next, `the watch ended after ${results.length} results`).toBeDefined();
    expect(next!.flags, JSON.stringify(next!.json)).toBe(0x00);
    results.push(next!.json.result as Json);
  }
  return results;
}

/** Reads a watch to the end: its results and the end-stream envelope's JSON. */
async function readToEnd(call: Watch): Promise<{ results: Json[]; end: Json }> {
  const results: Json[] = [];
  for (;;) {
    const next = await call.envelopes.next();
    if (!next) throw new Error("the body ended without an end-stream envelope");
    if (next.flags === END_STREAM) {
      expect(await call.envelopes.next(), "nothing follows the end-stream envelope").toBeUndefined();
      return { results, end: next.json };
    }
    expect(next.flags).toBe(0x00);
    results.push(next.json.result as Json);
  }
}

describe.each(BROKERS)("Connect protocol with plain fetch, on the %s broker", (kind) => {
  beforeAll(async () => {
    server = await startTestServer({}, kind);
  });
  afterAll(() => server?.close());

  it("dedups by eventId, watches in order, resumes after a cursor and ends OK on close", async () => {
    const streamId = "connect-fetch";
    const started = await unary("StartStream", { streamId });
    expect(started).toMatchObject({ status: 200, body: { created: true, stream: { streamId } } });

    const first = await unary("SendData", { streamId, data: { temp: 21.5 }, eventId: "a" });
    const second = await unary("SendData", { streamId, data: { temp: 22.5 }, eventId: "b" });
    const again = await unary("SendData", { streamId, data: { temp: 99 }, eventId: "a" });
    expect(first.status).toBe(200);
    expect(first.body.cursor).toMatch(/^i-\d+-\d+$/);
    expect(second.body.cursor).not.toBe(first.body.cursor);
    expect(again).toEqual({ status: 200, body: { cursor: first.body.cursor, duplicate: true } });

    const fromStart = await watch({ streamId, startPosition: "START_POSITION_EARLIEST" });
    expect(fromStart.status).toBe(200);
    expect(fromStart.contentType).toBe("application/connect+json");
    const results = await read(fromStart, 2);
    await fromStart.envelopes.cancel();
    expect(results.map((r) => r.data)).toEqual([{ temp: 21.5 }, { temp: 22.5 }]);
    expect(results.map((r) => r.eventId)).toEqual(["a", "b"]);
    expect(results.map((r) => r.sourceCursor)).toEqual([first.body.cursor, second.body.cursor]);

    const resume = await watch({ streamId, afterCursor: results[0]!.cursor });
    expect(await read(resume, 1)).toEqual([results[1]]);
    await resume.envelopes.cancel();

    // Close while a watch is open: it ends with an end-stream envelope without
    // error after the two results, and no third (the duplicate made none).
    const live = await watch({ streamId, startPosition: "START_POSITION_EARLIEST" });
    expect(await read(live, 2)).toEqual(results);
    const closed = await unary("CloseStream", { streamId });
    expect(closed.body.stream.state).toBe("STREAM_STATE_CLOSED");
    expect(await readToEnd(live)).toEqual({ results: [], end: {} });

    // After the close, resuming after the first result replays only the second, then ends OK.
    expect(await readToEnd(await watch({ streamId, afterCursor: results[0]!.cursor }))).toEqual({
      results: [results[1]],
      end: {},
    });
  });

  it("reports an unknown stream as not_found, on unary and streaming calls", async () => {
    const streamId = "connect-no-such-stream";
    const sent = await unary("SendData", { streamId, data: { temp: 1 } });
    expect(sent).toMatchObject({ status: 404, body: { code: "not_found" } });
    expect(sent.body.message).toContain(streamId);

    // A streaming call's error travels in the end-stream envelope, under HTTP 200.
    const watched = await watch({ streamId });
    expect(watched.status).toBe(200);
    const { results, end } = await readToEnd(watched);
    expect(results).toEqual([]);
    expect(end.error).toMatchObject({ code: "not_found" });
    expect(end.error.message).toContain(streamId);
  });

  it("reports a missing streamId as invalid_argument", async () => {
    const sent = await unary("SendData", { data: { temp: 1 } });
    expect(sent).toMatchObject({ status: 400, body: { code: "invalid_argument" } });
    expect(sent.body.message).toContain("stream_id");

    const { results, end } = await readToEnd(await watch({}));
    expect(results).toEqual([]);
    expect(end.error).toMatchObject({ code: "invalid_argument" });
  });
});
