/**
 * CORS for browser clients (gRPC-Web and Connect from a page on another
 * origin), with the methods and headers the Connect protocols need, as listed by
 * @connectrpc/connect.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { cors as connectCors } from "@connectrpc/connect";
import { writeHead } from "./http-response.js";
import { TENANT_HEADER } from "./request-context.js";

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;

const ALLOW_METHODS = connectCors.allowedMethods.join(", ");
const ALLOW_HEADERS = [...connectCors.allowedHeaders, "x-api-key", "authorization", "x-request-id", TENANT_HEADER].join(
  ", ",
);
const EXPOSE_HEADERS = [...connectCors.exposedHeaders, "x-request-id", "retry-after"].join(", ");

/**
 * Returns a function that sets CORS headers for allowed origins and answers
 * preflight requests; it returns true when it has answered the request.
 */
export function createCors(origins: string[]): (request: Request, response: Response) => boolean {
  const any = origins.includes("*");
  const allowed = new Set(origins);
  return (request, response) => {
    const origin = request.headers.origin;
    if (origin === undefined) return false;
    if (!any && !allowed.has(origin)) {
      // Not allowed: answer preflights without CORS headers, so the browser refuses.
      if (request.method === "OPTIONS") {
        writeHead(response, 403).end();
        return true;
      }
      return false;
    }
    response.setHeader("access-control-allow-origin", any ? "*" : origin);
    if (!any) response.setHeader("vary", "origin");
    response.setHeader("access-control-expose-headers", EXPOSE_HEADERS);
    if (request.method === "OPTIONS" && request.headers["access-control-request-method"] !== undefined) {
      writeHead(response, 204, {
        "access-control-allow-methods": ALLOW_METHODS,
        "access-control-allow-headers": ALLOW_HEADERS,
        "access-control-max-age": "7200",
      });
      response.end();
      return true;
    }
    return false;
  };
}
