/** RPC errors as the page shows them: the code as the protocols spell it, and the server's message. */
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";

/** An error's code ("permission_denied"), message, and both as one line. */
export interface ShownError {
  code: Code;
  name: string;
  message: string;
  text: string;
}

/** `error` (anything thrown by a call) for display. */
export function describeError(error: unknown): ShownError {
  const connect = ConnectError.from(error);
  const name = codeToString(connect.code);
  const message = connect.rawMessage;
  return { code: connect.code, name, message, text: message ? `${name}: ${message}` : name };
}

/** True when `error` only means that the caller gave up (an aborted signal). */
export function isAbort(error: unknown, signal: AbortSignal): boolean {
  return signal.aborted || ConnectError.from(error).code === Code.Canceled;
}
