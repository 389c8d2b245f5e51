/**
 * Results over Server-Sent Events (`GET /v1/streams/{id}/results`, README
 * "Watch over Server-Sent Events"), against a real server on both brokers:
 * `curl -N` sees results as they are sent; a reconnect with Last-Event-ID
 * gets no gap and no duplicate; `from`, `filter` and the end of a closed
 * stream behave as in WatchResults; refusals are plain HTTP errors; the
 * client's watcher cap counts SSE watchers; and a client that stops reading
 * is ended with its resume cursor as soon as it falls behind, holding nothing.
 */
import { spawn } from "node:child_process";
import * as http2 from "node:http2";
import { createInterface } from "node:readline";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  activeWatchers,
  BROKERS,
  startTestServer,
  streamClient,
  TEST_API_KEY,
  type TestServer,
} from "./support/server.js";
import { type SseEvent, sseEvents } from "./support/sse.js";

const json = (value: JsonValue) => ({ case: "data" as const, value: fromJson(ValueSchema, value) });
const KEY = { "x-api-key": TEST_API_KEY };

/** The data of a result event. */
const dataOf = (event: SseEvent) => (JSON.parse(event.data) as { result: { data: unknown } }).result.data;

describe.each(BROKERS)("SSE on the %s broker", (kind) => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ WATCH_BUFFER: "8", SSE_HEARTBEAT_MS: "100" }, kind);
  });
  afterAll(async () => {
    await server?.close();
  });
  const url = (streamId: string, query = "") => `${server.baseUrl}/v1/streams/${streamId}/results${query}`;

  /** Opens a watch with fetch; `close` aborts it. */
  async function watch(streamId: string, query = "", headers: Record<string, string> = KEY) {
    const aborter = new AbortController();
    const response = await fetch(url(streamId, query), { headers, signal: aborter.signal });
    return { response, events: sseEvents(response.body!), close: () => aborter.abort() };
  }

  it("streams results to curl -N as they are sent, then ends a closed stream with event: end", async () => {
    const client = streamClient(server);
    await client.startStream({ streamId: "curl" });
    await client.sendData({ streamId: "curl", payload: json({ n: 0 }) });
    const curl = spawn("curl", ["-sN", "-H", `x-api-key: ${TEST_API_KEY}`, url("curl")]);
    const exited = new Promise((resolve) => curl.once("close", resolve));
    const lines = createInterface({ input: curl.stdout })[Symbol.asyncIterator]();
    /** The data of the next result event curl prints. */
    const nextData = async () => {
      for (;;) {
        const { value } = await lines.next();
        if (typeof value === "string" && value.startsWith("data: ")) return JSON.parse(value.slice(6));
      }
    };
    expect((await nextData()).result.data).toEqual({ n: 0 });
    // Each result reaches curl before the next is sent: it is pushed, not collected at the end.
    for (let n = 1; n <= 3; n++) {
      await client.sendData({ streamId: "curl", payload: json({ n }) });
      expect((await nextData()).result.data).toEqual({ n });
    }
    await client.closeStream({ streamId: "curl" });
    const rest: string[] = [];
    for await (const line of { [Symbol.asyncIterator]: () => lines }) rest.push(line);
    expect(rest).toContain("event: end");
    expect(await exited).toBe(0);
  });

  it("resumes with Last-Event-ID: no gap, no duplicate", async () => {
    const client = streamClient(server);
    await client.startStream({ streamId: "resume" });
    for (let n = 0; n < 3; n++) await client.sendData({ streamId: "resume", payload: json({ n }) });
    const first = await watch("resume");
    const seen: SseEvent[] = [];
    for (let n = 0; n < 3; n++) seen.push((await first.events.next())!);
    first.close();
    // Sent while no one watches.
    for (let n = 3; n < 6; n++) await client.sendData({ streamId: "resume", payload: json({ n }) });
    const again = await watch("resume", "", { ...KEY, "last-event-id": seen[2]!.id! });
    for (let n = 3; n < 6; n++) seen.push((await again.events.next())!);
    again.close();
    expect(seen.map(dataOf)).toEqual([0, 1, 2, 3, 4, 5].map((n) => ({ n })));
    expect(new Set(seen.map((event) => event.id)).size).toBe(6);
    expect(seen.every((event) => event.event === "result")).toBe(true);
  });

  it("takes from=latest and a filter as WatchResults does", async () => {
    const client = streamClient(server);
    await client.startStream({ streamId: "query" });
    await client.sendData({ streamId: "query", payload: json({ n: 0 }) });
    const filter = encodeURIComponent("data.n > 2.0");
    const watching = await watch("query", `?from=latest&filter=${filter}`);
    // The watch has begun once its response has: everything sent from here on is later.
    for (let n = 1; n <= 4; n++) await client.sendData({ streamId: "query", payload: json({ n }) });
    const got = [dataOf((await watching.events.next())!), dataOf((await watching.events.next())!)];
    watching.close();
    expect(got).toEqual([{ n: 3 }, { n: 4 }]);
  });

  it("refuses with plain HTTP errors: no credential, unknown stream, a bad cursor, a bad filter", async () => {
    const status = async (path: string, headers: Record<string, string> = KEY) => {
      const response = await fetch(`${server.baseUrl}${path}`, { headers });
      return [response.status, ((await response.json()) as { code: string }).code];
    };
    await streamClient(server).startStream({ streamId: "refusals" });
    expect(await status("/v1/streams/refusals/results", {})).toEqual([401, "unauthenticated"]);
    expect(await status("/v1/streams/refusals/results", { "x-api-key": "wrong-key-0123456789" })).toEqual([
      401,
      "unauthenticated",
    ]);
    expect(await status("/v1/streams/nobody/results")).toEqual([404, "not_found"]);
    expect(await status("/v1/streams/refusals/results?after=yesterday")).toEqual([400, "invalid_argument"]);
    expect(await status("/v1/streams/refusals/results?filter=data.n%20%3E")).toEqual([400, "invalid_argument"]);
    expect(await status("/v1/streams/refusals/results?from=middle")).toEqual([400, "invalid_argument"]);
  });

  it("ends a client that stopped reading with its resume cursor as soon as it falls behind, holding nothing", async () => {
    const client = streamClient(server);
    await client.startStream({ streamId: "stalled" });
    const before = await activeWatchers(server);
    // HTTP/2 with a zero window: the server can send nothing, as a client that never reads.
    const session = http2.connect(server.baseUrl, { settings: { initialWindowSize: 0 } });
    const stream = session.request({ ":path": "/v1/streams/stalled/results", "x-api-key": TEST_API_KEY });
    await new Promise((resolve) => stream.once("response", resolve));
    await expect.poll(() => activeWatchers(server)).toBe(before + 1);
    // Far more than the watcher buffers (8) and the stream's own buffer hold.
    const sent: string[] = [];
    for (let n = 0; n < 100; n++) {
      sent.push((await client.sendData({ streamId: "stalled", payload: json({ n, pad: "x".repeat(2000) }) })).cursor);
    }
    // The watch ended while the client read nothing: the fanout holds no watcher for it.
    await expect.poll(() => activeWatchers(server)).toBe(before);
    // Reading now: what was queued, then the error with the cursor to resume from.
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    session.settings({ initialWindowSize: 1 << 20 });
    session.setLocalWindowSize(1 << 24);
    await new Promise((resolve) => stream.once("end", resolve));
    session.close();
    const text = Buffer.concat(chunks).toString("utf8");
    const error = /event: error\ndata: (.*)\n/.exec(text);
    expect(error).not.toBeNull();
    const { code, cursor } = JSON.parse(error![1]!) as { code: string; cursor: string };
    expect(code).toBe("resource_exhausted");
    // Resuming from that cursor gets every later result: nothing skipped.
    const resumed = await watch("stalled", `?after=${cursor}`);
    const first = await resumed.events.next();
    resumed.close();
    const delivered = [...text.matchAll(/^id: (.*)$/gm)].map((match) => match[1]);
    expect(delivered.at(-1) ?? "").toBe(cursor === "" ? "" : cursor);
    expect(dataOf(first!)).toMatchObject({ n: delivered.length });
  });

  it("counts SSE watchers against CLIENT_MAX_WATCHERS and in streamgate_http_watches_total", async () => {
    const limited = await startTestServer({ CLIENT_MAX_WATCHERS: "1" }, kind);
    try {
      await streamClient(limited).startStream({ streamId: "capped" });
      const get = (signal?: AbortSignal) =>
        fetch(`${limited.baseUrl}/v1/streams/capped/results`, { headers: KEY, signal });
      const aborter = new AbortController();
      const first = await get(aborter.signal);
      expect(first.status).toBe(200);
      const second = await get();
      expect([second.status, ((await second.json()) as { code: string }).code]).toEqual([429, "resource_exhausted"]);
      aborter.abort();
      await expect
        .poll(async () => (await fetch(`${limited.baseUrl}/metrics`)).text())
        .toMatch(/streamgate_http_watches_total\{transport="sse",code="canceled"\} 1/);
      // The slot is free again.
      const third = await get(AbortSignal.timeout(60_000));
      expect(third.status).toBe(200);
      await third.body?.cancel();
    } finally {
      await limited.close();
    }
  });
});
