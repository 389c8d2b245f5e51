/**
 * StreamService: the six RPCs of the public contract, wired to the registry,
 * the send path and the fanout. Handlers only check and translate; the work is
 * in those parts, so the same handlers serve every protocol and broker.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  ProcessingSchema,
  RejectionSchema,
  StreamService,
  StreamState,
  type Processing,
  type Rejection,
  type SendDataStreamRequest,
} from "../gen/streamgate/v1/stream_service_pb.js";
import type { CelCompiler } from "./cel.js";
import { invalidArgument, streamNotFound, toConnectError } from "./errors.js";
import type { Fanout } from "./fanout.js";
import { codeName, type Ingest, type SendResult } from "./ingest.js";
import type { StreamRegistry } from "./registry.js";
import type { StreamCounters } from "./stream-counters.js";
import { checkLabels, requireStreamId } from "./validation.js";

/** Dependencies of the service. */
export interface StreamServiceDeps {
  registry: StreamRegistry;
  ingest: Ingest;
  fanout: Fanout;
  counters: StreamCounters;
  /** Compiles processing expressions within the CEL settings. */
  cel: CelCompiler;
}

/** Rejections listed in a SendDataStream response; the rest are only counted. */
const MAX_LISTED_REJECTIONS = 100;
/** Sends a client stream may have in flight before it waits for the oldest. */
const MAX_STREAM_IN_FLIGHT = 512;
const MAX_RATE_PER_SECOND = 1_000_000;

/** Creates the StreamService implementation. */
export function createStreamService(deps: StreamServiceDeps): ServiceImpl<typeof StreamService> {
  const { registry, ingest, fanout, counters, cel } = deps;
  return {
    async startStream(request) {
      const streamId = request.streamId === "" ? randomUUID() : requireStreamId(request.streamId);
      const { entry, created } = await registry.create({
        streamId,
        labels: checkLabels(request.labels),
        processing: checkProcessing(request.processing, cel),
      });
      return { stream: entry.stream, created };
    },

    async sendData(request) {
      return ingest.send(request);
    },

    async sendDataStream(requests) {
      return sendAll(ingest, requests);
    },

    watchResults(request, context) {
      return fanout.watch(request, context.signal);
    },

    async closeStream(request) {
      const streamId = requireStreamId(request.streamId);
      const before = registry.get(streamId);
      if (!before) throw streamNotFound(streamId);
      const entry = await registry.close(streamId);
      if (before.stream.state === StreamState.OPEN) await ingest.appendCloseMarker(streamId);
      return { stream: entry.stream };
    },

    async getStream(request) {
      const streamId = requireStreamId(request.streamId);
      const entry = registry.get(streamId);
      if (!entry) throw streamNotFound(streamId);
      return { stream: entry.stream, counts: counters.snapshot(streamId) };
    },
  };
}

/** Checks processing options; CEL expressions are compiled here so a bad one fails StartStream. */
function checkProcessing(processing: Processing | undefined, cel: CelCompiler): Processing | undefined {
  if (!processing) return undefined;
  const rate = processing.ratePerSecond;
  if (!Number.isFinite(rate) || rate < 0 || rate > MAX_RATE_PER_SECOND) {
    throw invalidArgument(`processing.rate_per_second must be from 0 (no throttle) to ${MAX_RATE_PER_SECOND}`);
  }
  if (processing.filter !== "") cel.compile(processing.filter, "processing.filter");
  if (processing.transform !== "") cel.compile(processing.transform, "processing.transform");
  return create(ProcessingSchema, processing);
}

/**
 * Stores every record of a client stream. Records are sent without waiting for
 * the previous one's acknowledgement (in order, bounded in number), so a client
 * stream is not limited to one broker round trip per record.
 */
async function sendAll(ingest: Ingest, requests: AsyncIterable<SendDataStreamRequest>) {
  let accepted = 0n;
  let duplicates = 0n;
  let rejected = 0n;
  const rejections: Rejection[] = [];
  let lastCursor = "";
  let streamId = "";
  let failFast = false;
  let index = 0;
  const inFlight: Promise<SendResult>[] = [];
  const settle = async (send: Promise<SendResult>) => {
    const result = await send;
    if (result.duplicate) {
      duplicates++;
    } else {
      accepted++;
      lastCursor = result.cursor;
    }
  };
  for await (const request of requests) {
    if (index === 0) failFast = request.failFast;
    streamId = request.streamId === "" ? streamId : request.streamId;
    try {
      const send = ingest.send({ streamId, payload: request.payload, eventId: request.eventId, headers: request.headers }, true);
      // Awaited in order below; this keeps a failure from being an unhandled rejection meanwhile.
      send.catch(() => undefined);
      inFlight.push(send);
    } catch (error) {
      if (failFast) throw error;
      rejected++;
      if (rejections.length < MAX_LISTED_REJECTIONS) {
        rejections.push(
          create(RejectionSchema, { index: BigInt(index), code: codeName(error), reason: reasonOf(error) }),
        );
      }
    }
    if (inFlight.length >= MAX_STREAM_IN_FLIGHT) await settle(inFlight.shift()!);
    index++;
  }
  // Settled in order, so lastCursor ends as the last stored record's.
  for (const send of inFlight) await settle(send);
  return { accepted, duplicates, rejected, rejections, lastCursor };
}

function reasonOf(error: unknown): string {
  return toConnectError(error).rawMessage;
}
