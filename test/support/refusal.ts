import { ConnectError } from "@connectrpc/connect";

/** The error `run` throws at once, as a ConnectError; fails the test when it throws nothing. */
export function refusal(run: () => unknown): ConnectError {
  try {
    run();
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected a refusal");
}

/** The error `call` fails with, as a ConnectError; fails the test when it succeeds. */
export async function failureOf(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected the call to fail");
}
