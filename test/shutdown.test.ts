/**
 * SIGTERM on the real process (src/main.ts): open watches end with UNAVAILABLE
 * and a ResumeInfo detail carrying the last cursor they received, new calls are
 * refused, a client stream in flight still finishes with its counts, and the
 * process logs "stopped" and exits 0. Also: a bad setting stops the process at
 * start with exit code 2 and a message naming the variable.
 */
import { readFileSync } from "node:fs";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import {
  ResumeInfoSchema,
  type SendDataStreamRequestSchema,
  StartPosition,
  StreamService,
  type WatchResultsResponse,
} from "../gen/streamgate/v1/stream_service_pb.js";
import { killLeftover, listeningPort, type StreamgateProcess, spawnStreamgate } from "./support/clients-process.js";
import { Pushable } from "./support/pushable.js";
import { apiKeyHeader, TEST_API_KEY } from "./support/server.js";

let running: StreamgateProcess | undefined;
afterEach(async () => {
  await killLeftover(running);
  running = undefined;
});

describe("SIGTERM", () => {
  it("drains: watches end with a resume cursor, new calls are refused, a client stream finishes", async () => {
    running = spawnStreamgate({ PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "info" });
    const baseUrl = `http://127.0.0.1:${await listeningPort(running)}`;
    // The start line names the Node.js it runs on: the one npm scripts run, the pinned `node` package's.
    const listening = await running.waitForLog((line) => String(line.msg).startsWith("streamgate listening"));
    const pinned = JSON.parse(readFileSync(new URL("../node_modules/node/package.json", import.meta.url), "utf8")) as {
      version: string;
    };
    expect(listening).toMatchObject({ node: `v${pinned.version}` });
    expect(String(listening.msg)).toContain(`on Node.js v${pinned.version}`);
    const client = createClient(
      StreamService,
      createGrpcTransport({ baseUrl, interceptors: [apiKeyHeader(TEST_API_KEY)] }),
    );
    const streamId = "shutdown";
    await client.startStream({ streamId });
    await client.sendData({ streamId, payload: data({ n: 0 }) });

    // A watch that has received a result.
    const watch = client.watchResults({ streamId, startPosition: StartPosition.EARLIEST })[Symbol.asyncIterator]();
    const received: WatchResultsResponse[] = [await nextResult(watch)];

    // A client stream left open after three records; the watch seeing their
    // results shows the server has them.
    const records = new Pushable<MessageInitShape<typeof SendDataStreamRequestSchema>>();
    const summary = client.sendDataStream(records);
    summary.catch(() => undefined); // awaited below; a failure meanwhile must not go unhandled
    for (const n of [1, 2, 3]) records.push({ streamId, payload: data({ n }) });
    while (received.length < 4) received.push(await nextResult(watch));
    expect(received.map(payloadOf)).toEqual([0, 1, 2, 3].map((n) => ({ n })));

    running.child.kill("SIGTERM");
    await running.waitForLog((line) => line.msg === "draining");

    // The watch ends with UNAVAILABLE and the cursor to resume from; any result
    // that was still on its way counts as received.
    const ended = await readUntilError(watch, received);
    expect(ended.code).toBe(Code.Unavailable);
    const resume = ended.findDetails(ResumeInfoSchema);
    expect(resume).toHaveLength(1);
    expect(resume[0]!.cursor).toBe(received[received.length - 1]!.result!.cursor);

    // A new call (on a new connection) is refused: UNAVAILABLE, or the connection is refused.
    const fresh = createClient(
      StreamService,
      createGrpcTransport({ baseUrl, interceptors: [apiKeyHeader(TEST_API_KEY)] }),
    );
    const refused = await fresh.getStream({ streamId }).then(
      () => undefined,
      (error: unknown) => ConnectError.from(error),
    );
    expect(refused?.code).toBe(Code.Unavailable);

    // The client stream in flight still finishes, with every record counted.
    for (const n of [4, 5]) records.push({ payload: data({ n }) });
    records.end();
    const counts = await summary;
    expect(counts).toMatchObject({ accepted: 5n, duplicates: 0n, rejected: 0n });
    // Records 4 and 5 were stored after SIGTERM, right after record 3 (the only stream on this process).
    const [, partition, offset] = received[3]!.result!.sourceCursor.split("-");
    expect(counts.lastCursor).toBe(`i-${partition}-${Number(offset) + 2}`);

    expect(await running.exited).toEqual({ code: 0, signal: null });
    expect(running.logs.map((line) => line.msg)).toContain("stopped");
  });
});

describe("configuration errors", () => {
  it("exit with code 2 and name the variable", async () => {
    running = spawnStreamgate({ PORT: "abc", HOST: "127.0.0.1", LOG_LEVEL: "info" });
    const { code } = await running.exited;
    expect(code).toBe(2);
    expect(running.stderr()).toContain('PORT="abc" must be a whole number');
    expect(running.logs.some((line) => line.msg.startsWith("streamgate listening"))).toBe(false);
  });
});

async function nextResult(watch: AsyncIterator<WatchResultsResponse>): Promise<WatchResultsResponse> {
  const next = await watch.next();
  if (next.done) throw new Error("the watch ended early");
  return next.value;
}

/** Reads a watch to its error, adding what it still delivers to `received`; fails if it ends without one. */
async function readUntilError(
  watch: AsyncIterator<WatchResultsResponse>,
  received: WatchResultsResponse[],
): Promise<ConnectError> {
  for (;;) {
    let next: IteratorResult<WatchResultsResponse>;
    try {
      next = await watch.next();
    } catch (error) {
      return ConnectError.from(error);
    }
    if (next.done) throw new Error("the watch ended without an error");
    received.push(next.value);
  }
}

function payloadOf(response: WatchResultsResponse): unknown {
  const payload = response.result?.payload;
  return payload?.case === "data" ? toJson(ValueSchema, payload.value) : payload;
}

function json(value: unknown) {
  return fromJson(ValueSchema, value as JsonValue);
}

function data(value: unknown) {
  return { case: "data" as const, value: json(value) };
}
