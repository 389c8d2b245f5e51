/**
 * A Connect conformance server made of streamgate itself: `startApp` (src/app/app.ts)
 * with the one-port listener (cleartext sniffing, TLS with ALPN), the edge, the
 * interceptor chain and the patched connect adapter, serving the
 * ConformanceService (./service.ts) as an open service beside its own.
 *
 * Speaks the runner's server protocol (connectconformance --mode server): reads
 * one size-prefixed (4-byte big-endian length) binary ServerCompatRequest from
 * stdin, starts, writes a size-prefixed ServerCompatResponse (host, port, and
 * the PEM certificate with TLS) to stdout, and serves until SIGTERM. Logs go to
 * stderr, which the runner shows: stdout carries the response only.
 *
 * Run as: node --import tsx test/conformance/server.ts
 *
 * Every default of streamgate holds except these, each needed by the suite:
 * - MAX_PAYLOAD_BYTES: the request's message_receive_limit (200 KiB) less the
 *   room streamgate adds for a request's other fields (REQUEST_OVERHEAD_BYTES),
 *   so that connect's read limit is exactly the limit the suite tests (with the
 *   default, its 130 "...-exceeds-server-limit" cases get no error).
 * - PEER_RATE_LIMIT_RPS/BURST at their largest: the ConformanceService is an
 *   open service (the suite sends no credential), so every call takes a token
 *   from 127.0.0.1's bucket; the default 50/s, burst 200, answers about 800 of
 *   the suite's calls RESOURCE_EXHAUSTED.
 * - TLS_CERT/TLS_KEY when the request asks for TLS: a self-signed certificate
 *   for 127.0.0.1 made here (the runner's offered server_creds are not used).
 * The connection, body and idle timeouts keep their defaults: the suite's
 * deadline cases pass with them. Connections stay capped per peer (256) too.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { pino } from "pino";
import {
  ServerCompatRequestSchema,
  ServerCompatResponseSchema,
} from "../../gen/connectrpc/conformance/v1/server_compat_pb.js";
import { file_connectrpc_conformance_v1_service } from "../../gen/connectrpc/conformance/v1/service_pb.js";
import { type App, startApp } from "../../src/app/app.js";
import { REQUEST_OVERHEAD_BYTES } from "../../src/app/http-entry.js";
import { LIMIT_BOUNDS, loadConfig } from "../../src/config/config.js";
import { selfSignedCert } from "../support/self-signed-cert.js";
import { conformanceRoutes } from "./service.js";

const HOST = "127.0.0.1";

/** Reads one size-prefixed message from stdin. */
async function readRequest(): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer);
    const all = Buffer.concat(chunks);
    if (all.length >= 4 && all.length >= 4 + all.readUInt32BE(0)) {
      process.stdin.destroy();
      return all.subarray(4, 4 + all.readUInt32BE(0));
    }
  }
  throw new Error("stdin ended before a whole ServerCompatRequest");
}

async function main(): Promise<void> {
  const request = fromBinary(ServerCompatRequestSchema, await readRequest());
  if (request.clientTlsCert.length > 0) {
    // config.yaml declares supports_tls_client_certs: false, so the runner never asks.
    throw new Error("TLS client certificates are not supported: streamgate does not verify client certificates");
  }
  const limit = request.messageReceiveLimit;
  if (limit !== 0 && limit <= REQUEST_OVERHEAD_BYTES) {
    throw new Error(
      `message_receive_limit ${limit} is not above streamgate's ${REQUEST_OVERHEAD_BYTES} bytes of request overhead`,
    );
  }
  const dir = mkdtempSync(join(tmpdir(), "streamgate-conformance-"));
  let app: App | undefined;
  const exit = () => {
    rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  };
  // From here on, so that a server stopped while still starting leaves nothing behind either.
  process.once("SIGTERM", () => {
    // The runner is done with this server: close it, but never wait long for that.
    setTimeout(exit, 2000).unref();
    void (app?.close() ?? Promise.resolve()).finally(exit);
  });
  const tls = request.useTls ? selfSignedCert(dir) : undefined;
  // Only what is listed here: nothing of this process's environment (no KAFKA_BROKERS, no REDIS_URL).
  const config = loadConfig({
    PORT: "0",
    HOST,
    LOG_LEVEL: "error",
    ...(limit !== 0 && { MAX_PAYLOAD_BYTES: String(limit - REQUEST_OVERHEAD_BYTES) }),
    PEER_RATE_LIMIT_RPS: String(LIMIT_BOUNDS.rps),
    PEER_RATE_LIMIT_BURST: String(LIMIT_BOUNDS.burst),
    ...(tls && { TLS_CERT: tls.certFile, TLS_KEY: tls.keyFile }),
  });
  const logger = pino({ level: config.logLevel }, pino.destination(2));
  app = await startApp(config, logger, undefined, {
    files: [file_connectrpc_conformance_v1_service],
    routes: conformanceRoutes,
  });

  const response = toBinary(
    ServerCompatResponseSchema,
    create(ServerCompatResponseSchema, {
      host: HOST,
      port: app.port,
      pemCert: tls ? readFileSync(tls.certFile) : undefined,
    }),
  );
  const size = Buffer.alloc(4);
  size.writeUInt32BE(response.length);
  process.stdout.write(Buffer.concat([size, response]));
}

main().catch((error: unknown) => {
  process.stderr.write(`conformance server: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
