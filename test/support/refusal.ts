import { type Code, ConnectError } from "@connectrpc/connect";
import { toConnectError } from "../../src/rpc/errors.js";

/** The error `run` throws at once, as the client would get it (through the one error mapping); fails the test when it throws nothing. */
export function refusal(run: () => unknown): ConnectError {
  try {
    run();
  } catch (error) {
    return toConnectError(error);
  }
  throw new Error("expected a refusal");
}

/** The error `call` fails with, as the client would get it (through the one error mapping); fails the test when it succeeds. */
export async function failureOf(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (error) {
    return toConnectError(error);
  }
  throw new Error("expected the call to fail");
}

/** The code a call fails with, or "ok". */
export async function outcomeOf(call: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await call;
    return "ok";
  } catch (error) {
    return ConnectError.from(error).code;
  }
}
