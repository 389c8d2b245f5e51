/**
 * The outermost interceptor: maps whatever a handler throws, on unary calls and
 * on every step of a stream, through the one error mapping, and logs the cause
 * of INTERNAL errors, whose message to the client says nothing of it.
 */
import { Code, type Interceptor } from "@connectrpc/connect";
import { toConnectError } from "../errors.js";
import type { Logger } from "../logger.js";

/** Creates the error-mapping interceptor. */
export function errorMapping(logger: Logger): Interceptor {
  const map = (error: unknown, procedure: string) => {
    const mapped = toConnectError(error);
    if (mapped.code === Code.Internal && mapped !== error) logger.error({ err: error, procedure }, "internal error");
    return mapped;
  };
  return (next) => async (request) => {
    const procedure = `${request.service.typeName}/${request.method.name}`;
    try {
      const response = await next(request);
      if (!response.stream) return response;
      return { ...response, message: mapStreamErrors(response.message, (error) => map(error, procedure)) };
    } catch (error) {
      throw map(error, procedure);
    }
  };
}

async function* mapStreamErrors<T>(messages: AsyncIterable<T>, map: (error: unknown) => Error): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (error) {
    throw map(error);
  }
}
