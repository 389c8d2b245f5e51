/**
 * Domain parts driven as the StreamService handlers drive them: each request
 * checked at the edge first (src/streams/requests.ts), for tests that use the
 * send path or the fanout without a server.
 */
import type { WatchResultsRequest } from "../../gen/streamgate/v1/stream_service_pb.js";
import type { Fanout } from "../../src/fanout/fanout.js";
import { CelCompiler } from "../../src/processing/cel.js";
import type { Ingest, SendResult } from "../../src/streams/ingest.js";
import { checkSend, checkWatch, type SendRequest } from "../../src/streams/requests.js";
import { requireStreamId } from "../../src/streams/validation.js";

/** A send request as both send RPCs carry it. */
export type RawSend = SendRequest & { streamId: string };

/** `ingest`, whose `send` takes a request as SendData does (checked with MAX_PAYLOAD_BYTES `maxPayloadBytes`). */
export function checkingIngest(
  ingest: Ingest,
  maxPayloadBytes = 1024,
): Omit<Ingest, "send"> & { send(tenant: string, request: RawSend): Promise<SendResult> } {
  return Object.assign(Object.create(ingest) as Ingest, {
    send: (tenant: string, request: RawSend) =>
      ingest.send(tenant, requireStreamId(request.streamId), checkSend(request, maxPayloadBytes)),
  });
}

/** A WatchResults request as a client sends it. */
export type RawWatch = Omit<WatchResultsRequest, "$typeName">;

const defaultCel = new CelCompiler();

/** Watches as WatchResults does: the request checked (the filter compiled with the default CEL settings). */
export function watchChecked(fanout: Fanout, tenant: string, request: RawWatch, signal: AbortSignal) {
  return fanout.watch(tenant, requireStreamId(request.streamId), checkWatch(request, defaultCel), signal);
}
