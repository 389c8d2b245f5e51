/**
 * Starts a real streamgate on a free port for a test, with the configuration a
 * user would give through the environment.
 */
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { pino } from "pino";
import { StreamService } from "../../gen/streamgate/v1/stream_service_pb.js";
import { startApp, type App } from "../../src/app.js";
import type { Broker } from "../../src/broker/broker.js";
import { loadConfig } from "../../src/config.js";

/** A running server for a test. */
export interface TestServer {
  app: App;
  port: number;
  baseUrl: string;
  close(): Promise<void>;
}

/** Starts streamgate on port 0 with `env` (as environment variables) and an optional broker. */
export async function startTestServer(env: Record<string, string> = {}, broker?: Broker): Promise<TestServer> {
  const config = loadConfig({ PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "silent", ...env });
  const app = await startApp(config, pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }), broker);
  return {
    app,
    port: app.port,
    baseUrl: `http://127.0.0.1:${app.port}`,
    close: () => app.close(),
  };
}

/** The four Connect transports a client can use against one port. */
export const TRANSPORTS: Record<string, (baseUrl: string) => Transport> = {
  grpc: (baseUrl) => createGrpcTransport({ baseUrl }),
  "grpc-web": (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }),
  "connect-json": (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false }),
  "connect-binary": (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true }),
};

/** A StreamService client over the named transport. */
export function streamClient(server: TestServer, transport = "grpc"): Client<typeof StreamService> {
  return createClient(StreamService, TRANSPORTS[transport]!(server.baseUrl));
}

/** Collects a stream's messages until it ends, or throws its error. */
export async function collect<T>(messages: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const message of messages) all.push(message);
  return all;
}

/** Takes exactly `count` messages from a stream that stays open, then stops reading it. */
export async function take<T>(messages: AsyncIterable<T>, count: number): Promise<T[]> {
  const taken: T[] = [];
  if (count === 0) return taken;
  for await (const message of messages) {
    taken.push(message);
    if (taken.length === count) break;
  }
  return taken;
}
