/** RPC errors as the page shows them: the code as the protocols spell it, and the server's message. */
import { Code, ConnectError } from "@connectrpc/connect";

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
  // Code[Code.PermissionDenied] is "PermissionDenied"; the wire and the README say "permission_denied".
  const name = Code[connect.code].replace(/[A-Z]/g, (letter, at: number) => (at === 0 ? "" : "_") + letter.toLowerCase());
  const message = connect.rawMessage;
  return { code: connect.code, name, message, text: message ? `${name}: ${message}` : name };
}

/** True when `error` only means that the caller gave up (an aborted signal). */
export function isAbort(error: unknown, signal: AbortSignal): boolean {
  return signal.aborted || ConnectError.from(error).code === Code.Canceled;
}
