/**
 * CEL cost bounds against a real server: expressions whose worst case is over
 * CEL_MAX_COST (or longer than CEL_MAX_EXPRESSION_LENGTH) are refused where
 * they are given, and evaluations that grow with the record are stopped at run
 * time and counted as failed, while other clients' calls go on.
 */

import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Result } from "../gen/streamgate/v1/stream_service_pb.js";
import { startTestServer, streamClient, type TestServer, take } from "./support/server.js";

const json = (value: JsonValue) => ({ case: "data" as const, value: fromJson(ValueSchema, value) });
const dataOf = (result: Result | undefined) =>
  result?.payload.case === "data" ? toJson(ValueSchema, result.payload.value) : undefined;

/** The attack: three nested comprehensions over 300-element list literals (27 million turns). */
const LITERAL = `[${Array.from({ length: 300 }, (_, i) => i).join(",")}]`;
const NESTED_LITERALS = `${LITERAL}.all(a, ${LITERAL}.all(b, ${LITERAL}.all(c, a + b + c >= 0)))`;
/** Quadratic in the record: cheap on a small record, stopped on a 24 KB one. */
const QUADRATIC_FILTER = "data.items.all(x, data.items.all(y, x + y >= 0.0))";
const QUADRATIC_TRANSFORM = "{'below': data.items.map(x, data.items.filter(y, y < x).size())}";
/** About 24 KB of JSON: 4000 five-digit numbers. */
const BIG = { items: Array.from({ length: 4000 }, (_, i) => 10_000 + i) };
const SMALL = { items: [1, 2, 3] };

async function expectRefused(call: Promise<unknown>, message: RegExp): Promise<void> {
  const error = await call.then(
    () => undefined,
    (reason: unknown) => ConnectError.from(reason),
  );
  expect(error?.code).toBe(Code.InvalidArgument);
  expect(error?.rawMessage).toMatch(message);
}

async function metric(server: TestServer, name: string, reason: string): Promise<number> {
  const text = await (await fetch(`${server.baseUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{reason="${reason}"}`));
  return line ? Number(line.split(" ").pop()) : 0;
}

/** Waits for `condition`, polling with a bound. */
async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("CEL cost bounds", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ CEL_MAX_EXPRESSION_LENGTH: "4096", CEL_MAX_COST: "30000" });
  });
  afterAll(() => server?.close());

  /** Another client's send and its result: what the attacks must not hold up. */
  async function otherClientStillServed(streamId: string): Promise<void> {
    const other = streamClient(server);
    await other.startStream({ streamId });
    const watch = take(other.watchResults({ streamId }), 1);
    await other.sendData({ streamId, payload: json({ ok: true }) });
    const [response] = await watch;
    expect(dataOf(response?.result)).toEqual({ ok: true });
  }

  it("refuses nested comprehensions over large literals at StartStream and WatchResults", async () => {
    const client = streamClient(server);
    const before = await metric(server, "streamgate_refusals_total", "cel_too_costly");
    expect(NESTED_LITERALS.length).toBeLessThan(4096);
    await expectRefused(
      client.startStream({ streamId: "costly", processing: { filter: NESTED_LITERALS } }),
      /^processing\.filter may cost up to \d+ per record, over the budget of 30000 \(CEL_MAX_COST\)/,
    );
    await expectRefused(
      client.startStream({
        streamId: "costly",
        processing: { transform: `${LITERAL}.map(a, ${LITERAL}.map(b, a * b))` },
      }),
      /^processing\.transform may cost up to/,
    );
    expect(
      (await client.getStream({ streamId: "costly" }).catch((e: unknown) => ConnectError.from(e))) instanceof
        ConnectError,
    ).toBe(true);

    await client.startStream({ streamId: "watched" });
    await expectRefused(
      take(client.watchResults({ streamId: "watched", filter: NESTED_LITERALS }), 1),
      /^filter may cost up to \d+ per record/,
    );
    expect(await metric(server, "streamgate_refusals_total", "cel_too_costly")).toBe(before + 3);
    await otherClientStillServed("other-after-refusal");
  });

  it("refuses an expression longer than CEL_MAX_EXPRESSION_LENGTH, and one nested too deep", async () => {
    const client = streamClient(server);
    const before = await metric(server, "streamgate_refusals_total", "cel_too_long");
    const long = `data.v == "${"x".repeat(5000)}"`;
    await expectRefused(
      client.startStream({ streamId: "long", processing: { filter: long } }),
      /^processing\.filter is longer than 4096 characters/,
    );
    await client.startStream({ streamId: "long-watched" });
    await expectRefused(take(client.watchResults({ streamId: "long-watched", filter: long }), 1), /^filter is longer/);
    expect(await metric(server, "streamgate_refusals_total", "cel_too_long")).toBe(before + 2);
    // The parser recurses per bracket: deep nesting is refused before it is parsed.
    await expectRefused(
      client.startStream({ streamId: "deep", processing: { filter: `${"(".repeat(1000)}true${")".repeat(1000)}` } }),
      /nests brackets more than 100 deep/,
    );
    await otherClientStillServed("other-after-long");
  });

  it("stops a filter and a transform that grow with the record, counts them failed, and goes on", async () => {
    const client = streamClient(server);
    const failedBefore = await metric(server, "streamgate_records_failed_total", "cel_cost");
    for (const [streamId, processing] of [
      ["quadratic-filter", { filter: QUADRATIC_FILTER }],
      ["quadratic-transform", { transform: QUADRATIC_TRANSFORM }],
    ] as const) {
      // Accepted: on a small record the cost is small.
      await client.startStream({ streamId, processing });
      const watch = take(client.watchResults({ streamId }), 1);
      await client.sendData({ streamId, payload: json(BIG) });
      await client.sendData({ streamId, payload: json(SMALL) });
      const [response] = await watch;
      // The big record has no result; the small one after it has.
      expect(dataOf(response?.result)).toEqual(streamId === "quadratic-filter" ? SMALL : { below: [0, 1, 2] });
      await until(async () => (await client.getStream({ streamId })).counts?.failed === 1n, "the failed count");
      const { counts } = await client.getStream({ streamId });
      expect(counts).toMatchObject({ processed: 2n, failed: 1n, results: 1n });
    }
    expect(await metric(server, "streamgate_records_failed_total", "cel_cost")).toBe(failedBefore + 2);
    await otherClientStillServed("other-after-quadratic");
  });

  it("does not deliver to a watcher whose filter runs out of budget, and counts it", async () => {
    const client = streamClient(server);
    const streamId = "watch-quadratic";
    const before = await metric(server, "streamgate_watch_filter_failures_total", "cel_cost");
    await client.startStream({ streamId });
    const filtered = take(client.watchResults({ streamId, filter: QUADRATIC_FILTER }), 1);
    const all = take(client.watchResults({ streamId }), 2);
    await client.sendData({ streamId, payload: json(BIG) });
    await client.sendData({ streamId, payload: json(SMALL) });
    expect((await all).map((r) => dataOf(r.result))).toEqual([BIG, SMALL]);
    expect((await filtered).map((r) => dataOf(r.result))).toEqual([SMALL]);
    expect(await metric(server, "streamgate_watch_filter_failures_total", "cel_cost")).toBe(before + 1);
    await otherClientStillServed("other-after-watch");
  });

  it("evaluates a catastrophic-backtracking pattern with `matches` in bounded time", async () => {
    const client = streamClient(server);
    const streamId = "redos";
    // Backtracking engines take exponential time on this; RE2 is linear, and the cost charges text × pattern.
    await client.startStream({ streamId, processing: { filter: "data.s.matches('^(a+)+$') || data.s == 'ok'" } });
    const watch = take(client.watchResults({ streamId }), 2);
    await client.sendData({ streamId, payload: json({ s: `${"a".repeat(40)}!` }) });
    await client.sendData({ streamId, payload: json({ s: `${"a".repeat(20_000)}!` }) });
    await client.sendData({ streamId, payload: json({ s: "aaa" }) });
    await client.sendData({ streamId, payload: json({ s: "ok" }) });
    expect((await watch).map((r) => dataOf(r.result))).toEqual([{ s: "aaa" }, { s: "ok" }]);
    await until(async () => (await client.getStream({ streamId })).counts?.processed === 4n, "4 processed records");
    // The long text is over the budget (stopped, failed); the short one is evaluated and does not match.
    expect((await client.getStream({ streamId })).counts).toMatchObject({ filtered: 1n, failed: 1n, results: 2n });
    await otherClientStillServed("other-after-redos");
  });
});
