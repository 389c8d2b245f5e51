/**
 * GET /metrics: served on the main port, and on METRICS_PORT when one is set
 * (a plain HTTP listener that serves only it and the probes, /healthz and /readyz).
 */
import http from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { Metrics } from "../observe/metrics.js";
import { writeHead } from "../rpc/http-response.js";
import { type Readiness, serveProbe } from "./probes.js";

/** Answers GET /metrics with the text exposition; false for any other request. */
export function serveMetrics(
  metrics: Pick<Metrics, "scrape">,
  request: http.IncomingMessage | Http2ServerRequest,
  response: http.ServerResponse | Http2ServerResponse,
): boolean {
  if (request.method !== "GET" || request.url?.split("?")[0] !== "/metrics") return false;
  void metrics.scrape().then(
    ({ contentType, body }) => {
      writeHead(response, 200, { "content-type": contentType });
      response.end(body);
    },
    () => {
      writeHead(response, 500, { "content-type": "text/plain" });
      response.end("metrics collection failed\n");
    },
  );
  return true;
}

/** A plain HTTP listener on `port` serving only /metrics, /healthz and /readyz. */
export async function listenMetrics(
  metrics: Pick<Metrics, "scrape">,
  port: number,
  host: string,
  readiness: Readiness,
): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((request, response) => {
    if (serveMetrics(metrics, request, response)) return;
    if (serveProbe(readiness, request, response)) return;
    writeHead(response, 404, { "content-type": "text/plain" });
    response.end("not found: this port serves GET /metrics, /healthz and /readyz only\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  const address = server.address();
  return {
    port: typeof address === "object" && address ? address.port : 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
