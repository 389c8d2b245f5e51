/**
 * A refused watch over plain HTTP (SSE, or a WebSocket upgrade), answered as
 * Connect answers a unary call: the HTTP status of its code, `retry-after`
 * when it has one, and a JSON body `{"code":"…","message":"…"}`.
 */
import type { ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import { codeName } from "../rpc/errors.js";

/** The status, headers and body that answer `error`. */
export function httpRefusal(error: ConnectError): { status: number; headers: Record<string, string>; body: string } {
  const headers: Record<string, string> = { "content-type": "application/json" };
  const retryAfter = error.metadata.get("retry-after");
  if (retryAfter) headers["retry-after"] = retryAfter;
  return {
    status: codeToHttpStatus(error.code),
    headers,
    body: JSON.stringify({ code: codeName(error.code), message: error.rawMessage }),
  };
}
