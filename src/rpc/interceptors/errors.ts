/**
 * Just inside the metrics interceptor (which so sees the mapped code): maps whatever a handler throws, on unary calls and
 * on every step of a stream, through the one error mapping, and logs the cause
 * of INTERNAL errors, whose message to the client says nothing of it.
 */
import { Code, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "../../observe/logger.js";
import { toConnectError } from "../errors.js";
import { tap } from "./tap.js";

/** Creates the error-mapping interceptor. */
export function errorMapping(logger: Logger): Interceptor {
  const map = (error: unknown, procedure: string, signal: AbortSignal) => {
    // With the signal: what fails because the client went away is CANCELED, not a bug to log.
    const mapped = toConnectError(error, signal);
    if (mapped.code === Code.Internal && mapped !== error) logger.error({ err: error, procedure }, "internal error");
    return mapped;
  };
  return (next) => async (request) => {
    const procedure = `${request.service.typeName}/${request.method.name}`;
    try {
      const response = await next(request);
      if (!response.stream) return response;
      return {
        ...response,
        message: tap(response.message, { mapError: (error) => map(error, procedure, request.signal) }),
      };
    } catch (error) {
      throw map(error, procedure, request.signal);
    }
  };
}
