/**
 * GET /metrics, read over HTTP as Prometheus does: after a known set of calls
 * (unary OK, INVALID_ARGUMENT, NOT_FOUND, a 3-message client stream, a watch
 * receiving 2 results) the grpc_server_* counters moved by exactly those
 * amounts with the right labels, the broker counters and gauges follow the
 * pipeline, the scrape passes `promtool check metrics`, and METRICS_PORT
 * serves the same text on a port of its own.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "./support/ports.js";
import { startTestServer, streamClient, type TestServer } from "./support/server.js";

const SERVICE = "streamgate.v1.StreamService";

/** Samples of a text exposition: `name{a="1",b="2"}` (labels as written) → value. */
function parse(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`unparsable exposition line: ${line}`);
    const labels = [...(match[2] ?? "").matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)]
      .map(([, name, value]) => `${name}=${value}`)
      .sort()
      .join(",");
    samples.set(`${match[1]}{${labels}}`, Number(match[3]));
  }
  return samples;
}

/** One sample's value (0 when absent, as Prometheus treats a counter not yet seen). */
function value(samples: Map<string, number>, name: string, labels: Record<string, string> = {}): number {
  const key = Object.entries(labels)
    .map(([label, v]) => `${label}=${v}`)
    .sort()
    .join(",");
  return samples.get(`${name}{${key}}`) ?? 0;
}

/** Scrapes `url`'s /metrics over HTTP. */
async function scrape(baseUrl: string): Promise<{ text: string; samples: Map<string, number>; contentType: string }> {
  const response = await fetch(`${baseUrl}/metrics`);
  expect(response.status).toBe(200);
  const text = await response.text();
  return { text, samples: parse(text), contentType: response.headers.get("content-type") ?? "" };
}

/** Labels of a StreamService method. */
function rpc(method: string, type: string, code?: string): Record<string, string> {
  const labels: Record<string, string> = { grpc_service: SERVICE, grpc_method: method, grpc_type: type };
  if (code !== undefined) labels.grpc_code = code;
  return labels;
}

/** Error code of a call that must fail. */
async function codeOf(call: Promise<unknown>): Promise<Code> {
  try {
    await call;
  } catch (error) {
    return ConnectError.from(error).code;
  }
  throw new Error("expected the call to fail");
}

describe("GET /metrics", () => {
  let server: TestServer;
  let before: Map<string, number>;
  let after: { text: string; samples: Map<string, number>; contentType: string };
  let whileWatching: Map<string, number>;

  beforeAll(async () => {
    server = await startTestServer();
    before = (await scrape(server.baseUrl)).samples;
    const client = streamClient(server, "grpc");
    await client.startStream({ streamId: "m1" });
    expect(
      await codeOf(
        client.sendData({ streamId: "bad id!", payload: { case: "data", value: fromJson(ValueSchema, 1) } }),
      ),
    ).toBe(Code.InvalidArgument);
    expect(await codeOf(client.getStream({ streamId: "missing" }))).toBe(Code.NotFound);

    // The watch passes 2 of the 3 records; CloseStream then ends it with OK.
    const watch = client.watchResults({ streamId: "m1", filter: "data.n > 1" })[Symbol.asyncIterator]();
    const sent = await client.sendDataStream(
      (async function* () {
        for (const n of [1, 2, 3])
          yield { streamId: "m1", payload: { case: "data" as const, value: fromJson(ValueSchema, { n }) } };
      })(),
    );
    expect(sent.accepted).toBe(3n);
    const first = await watch.next();
    expect(first.done).toBe(false);
    whileWatching = (await scrape(server.baseUrl)).samples;
    await client.closeStream({ streamId: "m1" });
    const rest: unknown[] = [];
    for (let step = await watch.next(); !step.done; step = await watch.next()) rest.push(step.value);
    expect(rest).toHaveLength(1);

    // The processor and registry read what was produced asynchronously: wait (bounded) until they have.
    for (let attempt = 0; ; attempt++) {
      after = await scrape(server.baseUrl);
      const consumed = (kind: string) =>
        value(after.samples, "streamgate_broker_records_consumed_total", { topic_kind: kind }) -
        value(before, "streamgate_broker_records_consumed_total", { topic_kind: kind });
      if (consumed("ingest") >= 4 && consumed("results") >= 4 && consumed("streams") >= 2) break;
      if (attempt === 100) throw new Error("the broker consumers did not catch up");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });
  afterAll(() => server?.close());

  const moved = (name: string, labels: Record<string, string> = {}) =>
    value(after.samples, name, labels) - value(before, name, labels);

  it("serves the registry's text format", () => {
    expect(after.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    // Default process metrics are there too, the Node.js version among them.
    expect(value(after.samples, "process_cpu_user_seconds_total")).toBeGreaterThan(0);
    expect(after.text).toMatch(
      new RegExp(
        `^nodejs_version_info\\{version="${process.version}",major="${process.versions.node.split(".")[0]}"`,
        "m",
      ),
    );
  });

  it("counts RPCs started and handled by service, method, type and the code the client saw", () => {
    const calls: [string, string, string][] = [
      ["StartStream", "unary", "OK"],
      ["SendData", "unary", "InvalidArgument"],
      ["GetStream", "unary", "NotFound"],
      ["SendDataStream", "client_stream", "OK"],
      ["WatchResults", "server_stream", "OK"],
      ["CloseStream", "unary", "OK"],
    ];
    for (const [method, type, code] of calls) {
      expect(moved("grpc_server_started_total", rpc(method, type)), method).toBe(1);
      expect(moved("grpc_server_handled_total", rpc(method, type, code)), `${method} ${code}`).toBe(1);
      expect(moved("grpc_server_handling_seconds_count", rpc(method, type)), method).toBe(1);
    }
    // No other outcome was recorded for these methods, e.g. no OK for the failed ones.
    expect(moved("grpc_server_handled_total", rpc("SendData", "unary", "OK"))).toBe(0);
    expect(moved("grpc_server_handled_total", rpc("GetStream", "unary", "OK"))).toBe(0);
  });

  it("counts every message of client and server streams", () => {
    expect(moved("grpc_server_msg_received_total", rpc("SendDataStream", "client_stream"))).toBe(3);
    expect(moved("grpc_server_msg_sent_total", rpc("SendDataStream", "client_stream"))).toBe(1);
    expect(moved("grpc_server_msg_received_total", rpc("WatchResults", "server_stream"))).toBe(1);
    expect(moved("grpc_server_msg_sent_total", rpc("WatchResults", "server_stream"))).toBe(2);
    // A failed unary call received its request and sent nothing.
    expect(moved("grpc_server_msg_received_total", rpc("SendData", "unary"))).toBe(1);
    expect(moved("grpc_server_msg_sent_total", rpc("SendData", "unary"))).toBe(0);
  });

  it("counts broker records by topic kind, with produce latency", () => {
    // 3 records and the close marker; their 3 results and the end marker; the stream's creation and closing.
    expect(moved("streamgate_broker_records_produced_total", { topic_kind: "ingest" })).toBe(4);
    expect(moved("streamgate_broker_records_produced_total", { topic_kind: "results" })).toBe(4);
    expect(moved("streamgate_broker_records_produced_total", { topic_kind: "streams" })).toBe(2);
    expect(moved("streamgate_broker_records_consumed_total", { topic_kind: "ingest" })).toBe(4);
    expect(moved("streamgate_broker_records_consumed_total", { topic_kind: "results" })).toBe(4);
    expect(moved("streamgate_broker_records_consumed_total", { topic_kind: "streams" })).toBe(2);
    expect(moved("streamgate_broker_produce_seconds_count")).toBeGreaterThan(0);
  });

  it("observes end-to-end latency once per result delivered to the watcher", () => {
    expect(moved("streamgate_end_to_end_seconds_count")).toBe(2);
  });

  it("gauges open streams and open watchers", () => {
    expect(value(whileWatching, "streamgate_active_streams")).toBe(1);
    expect(value(whileWatching, "streamgate_active_watchers")).toBe(1);
    expect(value(after.samples, "streamgate_active_streams")).toBe(0);
    expect(value(after.samples, "streamgate_active_watchers")).toBe(0);
  });

  it("never labels a sample with a stream id", () => {
    expect(after.text).not.toContain("m1");
    expect(after.text).not.toContain("missing");
  });

  it("passes promtool check metrics", () => {
    const found = spawnSync("promtool", ["--version"]);
    if (found.error) {
      throw new Error("promtool is missing: run `bash scripts/tools.sh` (Debian package prometheus) to install it");
    }
    // execFileSync throws with promtool's findings on a non-zero exit.
    execFileSync("promtool", ["check", "metrics"], { input: after.text, encoding: "utf8" });
  });
});

describe("METRICS_PORT", () => {
  it("serves /metrics on a port of its own as well, and nothing else there", async () => {
    const port = await freePort();
    const server = await startTestServer({ METRICS_PORT: String(port) });
    try {
      expect(server.app.metricsPort).toBe(port);
      await streamClient(server).startStream({ streamId: "p1" });
      const own = await scrape(`http://127.0.0.1:${port}`);
      expect(value(own.samples, "grpc_server_handled_total", rpc("StartStream", "unary", "OK"))).toBe(1);
      expect((await fetch(`http://127.0.0.1:${port}/other`)).status).toBe(404);
      // The main port still serves it.
      expect((await fetch(`${server.baseUrl}/metrics`)).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});
