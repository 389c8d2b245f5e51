/**
 * A browser watches with what it has: headless Chromium (as the dashboard
 * test drives it) opens `EventSource` and `WebSocket` on
 * /v1/streams/{id}/results with a watch ticket in the URL (it cannot set a
 * header) and receives results sent after it connected, and sends records on
 * the WebSocket with a ticket that allows it; a ticket for another stream is
 * refused, and EventSource gives up on it rather than retrying a refusal.
 */
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { launchChromium } from "./support/browser.js";
import { startTestServer, streamClient, type TestServer } from "./support/server.js";

let server: TestServer;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  server = await startTestServer();
  browser = await launchChromium();
  page = await browser.newPage();
  // A page of the server's own origin, as a browser app served beside it would be.
  await page.goto(`${server.baseUrl}/dashboard/`);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

const data = (n: number) => ({ case: "data" as const, value: fromJson(ValueSchema, { n }) });

/** A ticket for `streamId`, as a page's backend would fetch it. */
async function ticketFor(streamId: string): Promise<string> {
  return (await streamClient(server).createWatchTicket({ streamId })).ticket;
}

it("receives results through EventSource with a ticket", async () => {
  const client = streamClient(server);
  await client.startStream({ streamId: "browser-sse" });
  const ticket = await ticketFor("browser-sse");
  // The page opens the stream and keeps what arrives; the test sends once it is open.
  await page.evaluate(
    (url) => {
      const state = { open: false, results: [] as unknown[] };
      (globalThis as unknown as { sse: typeof state }).sse = state;
      const events = new EventSource(url);
      events.onopen = () => {
        state.open = true;
      };
      events.addEventListener("result", (event) => {
        state.results.push(JSON.parse((event as unknown as { data: string }).data).result.data);
        if (state.results.length === 2) events.close();
      });
    },
    `/v1/streams/browser-sse/results?ticket=${encodeURIComponent(ticket)}`,
  );
  await page.waitForFunction(() => (globalThis as unknown as { sse: { open: boolean } }).sse.open);
  await client.sendData({ streamId: "browser-sse", payload: data(1) });
  await client.sendData({ streamId: "browser-sse", payload: data(2) });
  await page.waitForFunction(() => (globalThis as unknown as { sse: { results: unknown[] } }).sse.results.length === 2);
  expect(await page.evaluate(() => (globalThis as unknown as { sse: { results: unknown[] } }).sse.results)).toEqual([
    { n: 1 },
    { n: 2 },
  ]);
});

it("watches and sends through WebSocket with an allowSend ticket", async () => {
  const client = streamClient(server);
  await client.startStream({ streamId: "browser-ws" });
  const { ticket } = await client.createWatchTicket({ streamId: "browser-ws", allowSend: true });
  // The page sends two records on the socket and keeps the frames it gets back: their acks, then their results.
  const frames = await page.evaluate(
    (path) =>
      new Promise<unknown[]>((resolve, reject) => {
        const frames: unknown[] = [];
        const socket = new WebSocket(
          `${(globalThis as unknown as { location: { origin: string } }).location.origin.replace("http", "ws")}${path}`,
        );
        socket.onopen = () => {
          socket.send(JSON.stringify({ id: 1, data: { n: 1 } }));
          socket.send(JSON.stringify({ id: 2, data: { n: 2 } }));
        };
        socket.onmessage = (event) => {
          frames.push(JSON.parse(event.data as string));
          if (frames.filter((frame) => (frame as { type: string }).type === "result").length === 2) {
            socket.close();
            resolve(frames);
          }
        };
        socket.onerror = () => reject(new Error("websocket error"));
      }),
    `/v1/streams/browser-ws/results?ticket=${encodeURIComponent(ticket)}`,
  );
  const acks = frames.filter((frame) => (frame as { type: string }).type === "ack") as { id: number; cursor: string }[];
  const results = frames.filter((frame) => (frame as { type: string }).type === "result") as {
    result: { data: unknown; sourceCursor: string };
  }[];
  expect(acks.map((ack) => ack.id)).toEqual([1, 2]);
  expect(results.map((frame) => frame.result.data)).toEqual([{ n: 1 }, { n: 2 }]);
  // Each result is the one of the record acknowledged.
  expect(results.map((frame) => frame.result.sourceCursor)).toEqual(acks.map((ack) => ack.cursor));
});

it("refuses a ticket for another stream, and EventSource stops there", async () => {
  const client = streamClient(server);
  await client.startStream({ streamId: "browser-mine" });
  await client.startStream({ streamId: "browser-other" });
  const ticket = await ticketFor("browser-mine");
  const readyState = await page.evaluate(
    (url) =>
      new Promise<number>((resolve) => {
        const events = new EventSource(url);
        events.onerror = () => resolve(events.readyState);
      }),
    `/v1/streams/browser-other/results?ticket=${encodeURIComponent(ticket)}`,
  );
  // CLOSED: a refusal (401) is not retried, unlike a dropped connection.
  expect(readyState).toBe(2);
  const response = await fetch(
    `${server.baseUrl}/v1/streams/browser-other/results?ticket=${encodeURIComponent(ticket)}`,
  );
  expect(response.status).toBe(401);
});
