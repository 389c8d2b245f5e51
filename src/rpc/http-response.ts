/**
 * The response of either HTTP version, as the plain-HTTP answers on the port
 * (metrics, dashboard, CORS preflights) write it.
 */
import type { OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { Http2ServerResponse } from "node:http2";

/** A response of HTTP/1.1 or of HTTP/2's compatibility API. */
export type HttpResponse = ServerResponse | Http2ServerResponse;

/**
 * `response.writeHead(status, headers)` on either kind. Both have the call, but
 * @types/node declares their overloads apart, so a union of the two cannot be
 * called directly.
 */
export function writeHead(response: HttpResponse, status: number, headers?: OutgoingHttpHeaders): HttpResponse {
  return (response as ServerResponse).writeHead(status, headers);
}
