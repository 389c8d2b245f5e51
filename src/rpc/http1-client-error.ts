/**
 * The answer to an HTTP/1.1 (or TLS) client error, as Node gives it when no
 * "clientError" listener exists, plus a count of the ones that are edge
 * bounds. Node answers a request not received within its headersTimeout or
 * requestTimeout with 408 through this event; listening to it is the only way
 * to count those, and a listener replaces Node's answer, so this repeats it.
 */
import type { Duplex } from "node:stream";
import type { RefusalReason } from "../observe/metrics.js";

const ANSWERS: Record<string, string> = {
  HPE_HEADER_OVERFLOW: "431 Request Header Fields Too Large",
  HPE_CHUNK_EXTENSIONS_OVERFLOW: "413 Payload Too Large",
  ERR_HTTP_REQUEST_TIMEOUT: "408 Request Timeout",
};

/** A "clientError" listener that counts timeouts through `onRefused` and answers as Node would. */
export function clientErrorListener(
  onRefused: (reason: RefusalReason, socket: Duplex) => void,
): (error: Error & { code?: string }, socket: Duplex) => void {
  return (error, socket) => {
    const code = error.code ?? "";
    if (code === "ERR_HTTP_REQUEST_TIMEOUT") onRefused("request_body_timeout", socket);
    else if (code === "ERR_TLS_HANDSHAKE_TIMEOUT") onRefused("first_bytes_timeout", socket);
    // Only HTTP parse errors and timeouts get an answer (TLS errors have no HTTP to answer in),
    // and only before any of a response was sent, as Node does.
    const http = socket as Duplex & { _httpMessage?: { headersSent?: boolean } | null };
    if (
      (code.startsWith("HPE_") || code === "ERR_HTTP_REQUEST_TIMEOUT") &&
      socket.writable &&
      !http._httpMessage?.headersSent
    ) {
      socket.write(`HTTP/1.1 ${ANSWERS[code] ?? "400 Bad Request"}\r\nConnection: close\r\n\r\n`);
    }
    socket.destroy(error);
  };
}
