/**
 * One simulated client identity: its own gRPC connection (connect-node over
 * HTTP/2, so the server sees one peer per client), its credential on every
 * call, its stream `sim-<client>`, and its counts. A call never throws: it
 * ends with a code ("ok", "resource_exhausted", ...) and a latency.
 */

import { setTimeout as sleep } from "node:timers/promises";
import { fromJson } from "@bufbuild/protobuf";
import { durationMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { RetryInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { StreamService } from "../gen/streamgate/v1/stream_service_pb.js";
import type { ClientCredential } from "./credentials.js";
import type { MethodName } from "./options.js";
import { type CallCode, CallStats } from "./stats.js";

/** A call not answered within this is given up (deadline_exceeded). */
export const CALL_TIMEOUT_MS = 10_000;

/** How long {@link SimClient.setup} keeps retrying a rate-limited StartStream. */
const SETUP_PATIENCE_MS = 15_000;

/** How one call ended. */
interface CallResult {
  code: CallCode;
  /** From the call's start to its end, in milliseconds. */
  ms: number;
}

/** One client identity; see the module comment. */
export class SimClient {
  /** This client's counts. */
  readonly stats = new CallStats();
  /** The stream it sends to (and starts). */
  readonly streamId: string;
  private readonly sessions: Http2SessionManager;
  private readonly client: Client<typeof StreamService>;
  private seq = 0;

  constructor(
    /** 1 to K. */
    readonly index: number,
    url: string,
    readonly credential: ClientCredential,
    private readonly method: MethodName,
  ) {
    this.streamId = `sim-${index}`;
    this.sessions = new Http2SessionManager(url);
    const { header, value } = credential;
    this.client = createClient(
      StreamService,
      createGrpcTransport({
        baseUrl: url,
        sessionManager: this.sessions,
        interceptors: [
          (next) => (request) => {
            request.header.set(header, value);
            return next(request);
          },
        ],
      }),
    );
  }

  /**
   * Starts the client's stream (so SendData has somewhere to go), waiting and
   * retrying while it is rate limited (another run may have emptied the
   * bucket). Throws the ConnectError of any other failure: the server is
   * unreachable, or refused the credential.
   */
  async setup(signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + SETUP_PATIENCE_MS;
    for (;;) {
      try {
        await this.client.startStream({ streamId: this.streamId }, { timeoutMs: CALL_TIMEOUT_MS, signal });
        return;
      } catch (thrown) {
        const error = ConnectError.from(thrown);
        if (error.code !== Code.ResourceExhausted || Date.now() >= deadline) throw error;
        await sleep(retryDelayMs(error), undefined, { signal });
      }
    }
  }

  /** Makes one call of the run's method; aborting `signal` cancels it (it then ends "canceled"). */
  async call(signal: AbortSignal): Promise<CallResult> {
    const started = performance.now();
    const options = { timeoutMs: CALL_TIMEOUT_MS, signal };
    try {
      if (this.method === "send") {
        const data = fromJson(ValueSchema, { client: this.index, seq: ++this.seq, sentAt: new Date().toISOString() });
        await this.client.sendData({ streamId: this.streamId, payload: { case: "data", value: data } }, options);
      } else {
        await this.client.startStream({ streamId: this.streamId }, options);
      }
      return { code: "ok", ms: performance.now() - started };
    } catch (error) {
      return { code: codeToString(ConnectError.from(error).code), ms: performance.now() - started };
    }
  }

  /** Closes the connection (calls still open end with an error). */
  close(): void {
    this.sessions.abort();
  }
}

/** The RetryInfo delay of a rate-limited call, in milliseconds (a second when it has none). */
function retryDelayMs(error: ConnectError): number {
  const delay = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
  return delay === undefined ? 1000 : Math.max(50, Math.ceil(durationMs(delay)));
}
