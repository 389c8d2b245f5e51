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
