/**
 * The command-line clients users reach for, against a live server with no
 * .proto files at hand: grpcurl (gRPC over h2c, schema by reflection) for all
 * four call types, `buf curl` over gRPC (reflection) and over Connect on
 * HTTP/1.1, and plain curl speaking Connect JSON, errors included; on the
 * embedded broker and on Kafka.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  finished,
  parseJsonSequence,
  type RunResult,
  run,
  spawnTool,
  toolPath,
  untilStdout,
} from "./support/clients-cli.js";
import { BROKERS, startTestServer, TEST_API_KEY, type TestServer } from "./support/server.js";

const SERVICE = "streamgate.v1.StreamService";

/** Expects a command to have succeeded, showing its output when it did not. */
function succeeded(result: RunResult): string {
  expect(result, `exit ${result.code}\n${result.stdout}\n${result.stderr}`).toMatchObject({ code: 0 });
  return result.stdout;
}

describe.each(BROKERS)("on the %s broker", (kind) => {
  let server: TestServer;
  let address: string;
  /** The x-api-key header line, as each tool's -H takes it. */
  const apiKey = `x-api-key: ${TEST_API_KEY}`;
  beforeAll(async () => {
    server = await startTestServer({}, kind);
    address = `127.0.0.1:${server.port}`;
  });
  afterAll(() => server?.close());

  describe("grpcurl", () => {
    const grpcurl = (...args: string[]) => run(toolPath("grpcurl"), ["-plaintext", ...args]);
    /** Calls a StreamService method with a JSON request; `input` goes to stdin with `-d @`. */
    const call = (method: string, request: string, input?: string) =>
      run(toolPath("grpcurl"), ["-plaintext", "-H", apiKey, "-d", request, address, `${SERVICE}/${method}`], { input });

    // Reflection (list, describe) is open: those calls send no key.
    it("lists the services through reflection", async () => {
      const services = succeeded(await grpcurl(address, "list"))
        .trim()
        .split("\n");
      expect(services).toContain(SERVICE);
      expect(services).toContain("grpc.health.v1.Health");
    });

    it("describes the service and its streaming methods", async () => {
      const description = succeeded(await grpcurl(address, "describe", SERVICE));
      expect(description).toContain(`${SERVICE} is a service`);
      expect(description).toContain(
        "rpc SendDataStream ( stream .streamgate.v1.SendDataStreamRequest ) returns ( .streamgate.v1.SendDataStreamResponse )",
      );
      expect(description).toContain(
        "rpc WatchResults ( .streamgate.v1.WatchResultsRequest ) returns ( stream .streamgate.v1.WatchResultsResponse )",
      );
      const message = succeeded(await grpcurl(address, "describe", "streamgate.v1.SendDataRequest"));
      expect(message).toContain(".google.protobuf.Value data = 2;");
    });

    it("makes unary, client-streaming and server-streaming calls", async () => {
      const streamId = "cli-grpcurl";
      const started = JSON.parse(succeeded(await call("StartStream", JSON.stringify({ streamId }))));
      expect(started).toMatchObject({ created: true, stream: { streamId, state: "STREAM_STATE_OPEN" } });

      const sent = JSON.parse(succeeded(await call("SendData", JSON.stringify({ streamId, data: { temp: 21.5 } }))));
      expect(sent.cursor).toMatch(/^i-\d+-\d+$/);

      // Client streaming: several JSON messages on stdin.
      const records = [{ streamId, data: { temp: 22 } }, { data: "text" }, { data: [1, 2] }];
      const input = records.map((record) => JSON.stringify(record)).join("\n");
      const summary = JSON.parse(succeeded(await call("SendDataStream", "@", input)));
      expect(summary).toMatchObject({ accepted: "3" });
      expect(summary.lastCursor).toMatch(/^i-\d+-\d+$/);

      // Server streaming: the watch prints results as they come, and ends with
      // exit 0 once the stream is closed.
      const watch = spawnTool(toolPath("grpcurl"), [
        "-plaintext",
        "-H",
        apiKey,
        "-d",
        JSON.stringify({ streamId, startPosition: "START_POSITION_EARLIEST" }),
        address,
        `${SERVICE}/WatchResults`,
      ]);
      const watchEnd = finished(watch, 15_000);
      await untilStdout(watch, (stdout) => parseJsonSequence(stdout).length === 4);
      const closed = JSON.parse(succeeded(await call("CloseStream", JSON.stringify({ streamId }))));
      expect(closed.stream.state).toBe("STREAM_STATE_CLOSED");
      const results = parseJsonSequence(succeeded(await watchEnd)) as {
        result: { data: unknown; sourceCursor: string };
      }[];
      expect(results.map((r) => r.result.data)).toEqual([{ temp: 21.5 }, { temp: 22 }, "text", [1, 2]]);
      expect(results[0]!.result.sourceCursor).toBe(sent.cursor);
      expect(results[3]!.result.sourceCursor).toBe(summary.lastCursor);
    });

    it("exits with the NOT_FOUND status for an unknown stream", async () => {
      const result = await call("GetStream", JSON.stringify({ streamId: "cli-no-such-stream" }));
      // grpcurl exits with 64 + the gRPC status code (NOT_FOUND is 5).
      expect(result.code).toBe(64 + 5);
      expect(result.stderr).toContain("Code: NotFound");
      expect(result.stderr).toContain('stream "cli-no-such-stream" not found');
    });
  });

  describe("buf curl", () => {
    const url = (method: string) => `http://${address}/${SERVICE}/${method}`;
    const bufCurl = (args: string[]) => run(toolPath("buf"), ["curl", "-H", apiKey, ...args]);

    it("calls StartStream and SendData over gRPC (h2c), with the schema from reflection", async () => {
      const streamId = "cli-buf-grpc";
      const grpc = ["--protocol", "grpc", "--http2-prior-knowledge"];
      const started = JSON.parse(
        succeeded(await bufCurl([...grpc, "-d", JSON.stringify({ streamId }), url("StartStream")])),
      );
      expect(started).toMatchObject({ created: true, stream: { streamId } });
      const sent = JSON.parse(
        succeeded(await bufCurl([...grpc, "-d", JSON.stringify({ streamId, data: { temp: 21.5 } }), url("SendData")])),
      );
      expect(sent.cursor).toMatch(/^i-\d+-\d+$/);
    });

    it("calls StartStream and SendData over Connect on HTTP/1.1, with the schema from proto/", async () => {
      // Reflection needs HTTP/2, so this one reads the schema from the buf module.
      const streamId = "cli-buf-connect";
      const connect = ["--schema", ".", "-v"];
      const start = await bufCurl([...connect, "-d", JSON.stringify({ streamId }), url("StartStream")]);
      expect(JSON.parse(succeeded(start))).toMatchObject({ created: true, stream: { streamId } });
      expect(start.stderr).toContain("HTTP/1.1 200 OK");
      expect(start.stderr).toContain("Connect-Protocol-Version: 1");
      const send = await bufCurl([
        ...connect,
        "-d",
        JSON.stringify({ streamId, data: { temp: 21.5 } }),
        url("SendData"),
      ]);
      expect(JSON.parse(succeeded(send)).cursor).toMatch(/^i-\d+-\d+$/);
    });
  });

  describe("curl (Connect JSON)", () => {
    /** POSTs a JSON request to a StreamService method; resolves with the HTTP status and the parsed body. */
    async function post(method: string, request: unknown): Promise<{ status: number; body: any }> {
      const result = await run(toolPath("curl"), [
        "-s",
        "--max-time",
        "10",
        "-w",
        "\n%{http_code}",
        "-H",
        "content-type: application/json",
        "-H",
        apiKey,
        "-d",
        JSON.stringify(request),
        `http://${address}/${SERVICE}/${method}`,
      ]);
      const output = succeeded(result);
      const newline = output.lastIndexOf("\n");
      return { status: Number(output.slice(newline + 1)), body: JSON.parse(output.slice(0, newline)) };
    }

    it("starts, sends to, describes and closes a stream", async () => {
      const streamId = "cli-curl";
      const started = await post("StartStream", { streamId, labels: { via: "curl" } });
      expect(started).toMatchObject({
        status: 200,
        body: { created: true, stream: { streamId, labels: { via: "curl" } } },
      });

      const sent = await post("SendData", { streamId, data: { temp: 21.5 } });
      expect(sent.status).toBe(200);
      expect(sent.body.cursor).toMatch(/^i-\d+-\d+$/);
      const text = await post("SendData", { streamId, data: "text", eventId: "t1" });
      expect(text.body.cursor).not.toBe(sent.body.cursor);

      const described = await post("GetStream", { streamId });
      expect(described).toMatchObject({ status: 200, body: { stream: { state: "STREAM_STATE_OPEN" } } });
      expect(described.body.counts.accepted).toBe("2");

      const closed = await post("CloseStream", { streamId });
      expect(closed).toMatchObject({ status: 200, body: { stream: { streamId, state: "STREAM_STATE_CLOSED" } } });
      expect(closed.body.stream.closeTime).toEqual(expect.any(String));
    });

    it("reports an unknown stream as HTTP 404 with code not_found", async () => {
      const missing = await post("SendData", { streamId: "cli-curl-missing", data: { temp: 1 } });
      expect(missing).toMatchObject({ status: 404, body: { code: "not_found" } });
      expect(missing.body.message).toContain("cli-curl-missing");
    });
  });
});
