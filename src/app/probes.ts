/**
 * GET /healthz and GET /readyz: plain HTTP probes for load balancers and
 * orchestrators that do not speak gRPC health, on the service port and on
 * METRICS_PORT. /healthz answers 200 while the process serves requests at all;
 * /readyz answers 200 while it should get traffic (the broker answers and it is
 * not draining), else 503 with the reason.
 */
import type http from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { type HttpResponse, writeHead } from "../rpc/http-response.js";

/** Why an instance should not get traffic now; undefined when it should. */
export type NotReady = "starting" | "draining" | "broker unreachable" | "no worker ready";

/** Whether the instance is ready, read at each /readyz (a cluster's primary asks its workers: a promise). */
export type Readiness = () => NotReady | undefined | Promise<NotReady | undefined>;

/** Answers GET (or HEAD) /healthz and /readyz; false for any other request. */
export function serveProbe(
  readiness: Readiness,
  request: http.IncomingMessage | Http2ServerRequest,
  response: HttpResponse,
): boolean {
  if (request.method !== "GET" && request.method !== "HEAD") return false;
  const path = request.url?.split("?")[0];
  if (path === "/healthz") {
    answer(response, 200, "ok\n");
    return true;
  }
  if (path !== "/readyz") return false;
  void Promise.resolve()
    .then(readiness)
    .then(
      (notReady) => answer(response, notReady ? 503 : 200, notReady ? `not ready: ${notReady}\n` : "ready\n"),
      () => answer(response, 503, "not ready: readiness unknown\n"),
    );
  return true;
}

function answer(response: HttpResponse, status: number, body: string): void {
  // Never cached: a probe's answer is about now.
  writeHead(response, status, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
  response.end(body);
}
