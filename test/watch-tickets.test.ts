/**
 * Watch tickets, as a browser uses them against a real server: a client with
 * a key asks CreateWatchTicket for a ticket and the browser opens
 * `GET /v1/streams/{id}/results?ticket=...` (Server-Sent Events) with it and
 * no header credential. A ticket opens only its own stream, only until it
 * expires, and only for a stream of the caller's tenant; allow_send needs
 * streams:write; a key is no ticket; and no ticket reaches the logs.
 */
import { fromJson, toJson } from "@bufbuild/protobuf";
import { timestampMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import { type Client, Code } from "@connectrpc/connect";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type StreamService, WatchResultsResponseSchema } from "../gen/streamgate/v1/stream_service_pb.js";
import { capturingLogger } from "./support/capturing-logger.js";
import { failureOf } from "./support/refusal.js";
import { startTestServer, streamClient, type TestServer } from "./support/server.js";

const KEY = {
  alice: "alice-key-0123456789",
  bob: "bob-key-0123456789",
  reader: "reader-key-0123456789",
  sensor: "sensor-key-0123456789",
} as const;

/** The secret the server signs tickets with, so that the test can sign one too (an expired one). */
const TICKET_SECRET = "a-watch-tickets-test-secret-of-32-bytes+";

/** alice and bob are tenants of their own; reader (watch-only) and sensor (send-only) belong to alice's tenant. */
const ENV = {
  API_KEYS: `alice:${KEY.alice}, bob:${KEY.bob}, reader@alice:${KEY.reader} streams:read, sensor@alice:${KEY.sensor} streams:write`,
  WATCH_TICKET_SECRET: TICKET_SECRET,
};

let server: TestServer;
let logs: ReturnType<typeof capturingLogger>;
let alice: Client<typeof StreamService>;

beforeAll(async () => {
  logs = capturingLogger();
  server = await startTestServer(ENV, "memory", logs.logger);
  alice = streamClient(server, "connect-json", KEY.alice);
});
afterAll(() => server?.close());

/** A stream of alice's with a unique id. */
async function aliceStream(): Promise<string> {
  const streamId = `tickets-${Math.random().toString(36).slice(2, 10)}`;
  await alice.startStream({ streamId });
  return streamId;
}

/** A ticket for alice to watch `streamId`. */
async function ticketFor(streamId: string, client = alice): Promise<string> {
  const { ticket, expireTime } = await client.createWatchTicket({ streamId });
  expect(ticket).not.toBe("");
  expect(timestampMs(expireTime!)).toBeGreaterThan(Date.now());
  return ticket;
}

/** The SSE URL of `streamId`'s results with `ticket`. */
function watchUrl(streamId: string, ticket: string): string {
  return `${server.baseUrl}/v1/streams/${encodeURIComponent(streamId)}/results?ticket=${encodeURIComponent(ticket)}`;
}

/** A refused watch's status and JSON body. */
async function refusal(url: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(url, { headers: { accept: "text/event-stream" } });
  return { status: response.status, body: await response.json() };
}

/** A call's error code and message. */
async function failure(call: Promise<unknown>): Promise<{ code: string; message: string }> {
  const error = await failureOf(call);
  return { code: Code[error.code]!, message: error.rawMessage };
}

/**
 * Opens an SSE watch at `url` with no credential header; once it is open
 * (its first comment line read), calls `opened`, then reads until the first
 * `event: result` and returns its data (a WatchResults message as JSON).
 */
async function firstResult(url: string, opened: () => Promise<unknown>): Promise<unknown> {
  const aborted = new AbortController();
  const timer = setTimeout(() => aborted.abort(), 10_000);
  try {
    const response = await fetch(url, { headers: { accept: "text/event-stream" }, signal: aborted.signal });
    expect(response.status, await peek(response)).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    let sent = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the stream ended before a result: ${JSON.stringify(text)}`);
      text += value;
      if (!sent && text.includes("\n\n")) {
        sent = true;
        await opened();
      }
      for (const event of text.split("\n\n").slice(0, -1)) {
        const lines = event.split("\n");
        if (!lines.includes("event: result")) continue;
        const data = lines.find((line) => line.startsWith("data: "))!.slice("data: ".length);
        await reader.cancel();
        return JSON.parse(data);
      }
    }
  } finally {
    clearTimeout(timer);
    aborted.abort();
  }
}

/** The body of a response that is not the expected 200, for the assertion's message. */
async function peek(response: Response): Promise<string> {
  return response.status === 200 ? "" : await response.clone().text();
}

/** The JSON data of a WatchResults message read as JSON. */
function dataOf(message: unknown): unknown {
  const result = fromJson(WatchResultsResponseSchema, message as never).result!;
  return result.payload.case === "data" ? toJson(ValueSchema, result.payload.value) : undefined;
}

const UNAUTHENTICATED = { status: 401, body: { code: "unauthenticated", message: expect.any(String) } };

describe("CreateWatchTicket", () => {
  it("gives a ticket that opens the stream's SSE results with no header credential", async () => {
    const streamId = await aliceStream();
    const ticket = await ticketFor(streamId);
    const message = await firstResult(watchUrl(streamId, ticket), () =>
      alice.sendData({
        streamId,
        payload: { case: "data", value: fromJson(ValueSchema, { temp: 21.5 }) },
      }),
    );
    expect(dataOf(message)).toEqual({ temp: 21.5 });
    expect(message).toMatchObject({ result: { streamId } });
  });

  it("gives a watch-only key a ticket, but refuses it allow_send without streams:write", async () => {
    const streamId = await aliceStream();
    const reader = streamClient(server, "grpc", KEY.reader);
    await ticketFor(streamId, reader);
    expect(await failure(reader.createWatchTicket({ streamId, allowSend: true }))).toEqual({
      code: "PermissionDenied",
      message: expect.stringContaining("streams:write"),
    });
    // With both scopes (alice's key has every scope), allow_send is granted.
    const { ticket } = await alice.createWatchTicket({ streamId, allowSend: true });
    expect(ticket).not.toBe("");
    // A key without streams:read gets no ticket at all.
    const sensor = streamClient(server, "grpc", KEY.sensor);
    expect(await failure(sensor.createWatchTicket({ streamId, allowSend: true }))).toEqual({
      code: "PermissionDenied",
      message: expect.stringContaining("streams:read"),
    });
  });

  it("gives no ticket for another tenant's stream: NOT_FOUND, as for a stream that does not exist", async () => {
    const streamId = await aliceStream();
    const bob = streamClient(server, "grpc", KEY.bob);
    const foreign = await failure(bob.createWatchTicket({ streamId }));
    expect(foreign).toEqual({ code: "NotFound", message: expect.stringContaining(streamId) });
    expect(await failure(bob.getStream({ streamId }))).toEqual(foreign);
    expect(await failure(alice.createWatchTicket({ streamId: "no-such-stream" }))).toMatchObject({
      code: "NotFound",
    });
    expect(await failure(alice.createWatchTicket({ streamId: "" }))).toMatchObject({ code: "InvalidArgument" });
  });

  it("refuses a ticket for another stream with 401", async () => {
    const streamId = await aliceStream();
    const other = await aliceStream();
    const ticket = await ticketFor(streamId);
    expect(await refusal(watchUrl(other, ticket))).toEqual(UNAUTHENTICATED);
  });

  it("refuses an expired ticket with 401", async () => {
    const streamId = await aliceStream();
    const now = Math.floor(Date.now() / 1000);
    /** A ticket as src/push/tickets.ts signs one, expiring at `exp` (seconds). */
    const signed = (exp: number) =>
      new SignJWT({ tnt: "alice", str: streamId, scp: ["streams:read"], cfg: true })
        .setProtectedHeader({ alg: "HS256" })
        .setSubject("alice")
        .setAudience("streamgate-watch-ticket")
        .setIssuedAt(now - 120)
        .setExpirationTime(exp)
        .sign(new TextEncoder().encode(TICKET_SECRET));
    expect(await refusal(watchUrl(streamId, await signed(now - 60)))).toEqual(UNAUTHENTICATED);
    // The same ticket unexpired is accepted: the refusal was for the expiry alone.
    const message = await firstResult(watchUrl(streamId, await signed(now + 60)), () =>
      alice.sendData({ streamId, payload: { case: "data", value: fromJson(ValueSchema, 1) } }),
    );
    expect(dataOf(message)).toBe(1);
  });

  it("does not take an API key as a ticket", async () => {
    const streamId = await aliceStream();
    expect(await refusal(watchUrl(streamId, KEY.alice))).toEqual(UNAUTHENTICATED);
  });

  it("keeps tickets out of the logs", async () => {
    const streamId = await aliceStream();
    const ticket = await ticketFor(streamId);
    await firstResult(watchUrl(streamId, ticket), () =>
      alice.sendData({ streamId, payload: { case: "data", value: fromJson(ValueSchema, "logged?") } }),
    );
    const refused = await ticketFor(streamId);
    expect(await refusal(watchUrl(await aliceStream(), refused))).toEqual(UNAUTHENTICATED);
    const lines = logs.lines();
    // The capture works: the calls that made the tickets are logged, without them.
    expect(lines.some((line) => line.procedure === "streamgate.v1.StreamService/CreateWatchTicket")).toBe(true);
    const text = JSON.stringify(lines);
    expect(text).not.toContain(ticket);
    expect(text).not.toContain(refused);
    // Nor their payloads or signatures (their header is every HS256 JWT's).
    for (const part of [...ticket.split(".").slice(1), ...refused.split(".").slice(1)]) {
      expect(text).not.toContain(part);
    }
  });
});
