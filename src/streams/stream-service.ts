/**
 * StreamService: the RPCs of the public contract, wired to the registry, the
 * send path and the fanout. Handlers only check and translate; the work is in
 * those parts, so the same handlers serve every protocol and broker.
 *
 * Every call works in its tenant (the TENANT context value, set by the auth
 * interceptor): a stream id names a stream of that tenant only, so another
 * tenant's stream answers exactly as one that does not exist.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  type Rejection,
  RejectionSchema,
  type SendDataStreamRequest,
  type StreamService,
  StreamState,
} from "../../gen/streamgate/v1/stream_service_pb.js";
import { streamNotFound } from "../common/domain-error.js";
import type { Fanout } from "../fanout/fanout.js";
import type { Principal } from "../guard/auth/api-keys.js";
import type { CelCompiler } from "../processing/cel.js";
import type { StreamPrograms } from "../processing/stream-programs.js";
import type { WatchTickets } from "../push/tickets.js";
import { codeName, scopeMissing, toConnectError } from "../rpc/errors.js";
import { PRINCIPAL, TENANT } from "../rpc/request-context.js";
import type { Ingest, SendResult } from "./ingest.js";
import { decodePageToken, encodePageToken, pageSizeOf } from "./page-token.js";
import type { StreamRegistry } from "./registry.js";
import { checkSend, checkStart, checkWatch, type SendRequest } from "./requests.js";
import type { StreamCounters } from "./stream-counters.js";
import { streamKey } from "./stream-key.js";
import { checkLabels, requireStreamId } from "./validation.js";

/** Dependencies of the service. */
export interface StreamServiceDeps {
  registry: StreamRegistry;
  ingest: Ingest;
  fanout: Fanout;
  counters: StreamCounters;
  /** The streams' compiled expressions: StartStream compiles and keeps them (so the processor need not). */
  programs: StreamPrograms;
  /** Compiles watchers' filters within the CEL settings. */
  watchCel: CelCompiler;
  /** MAX_PAYLOAD_BYTES. */
  maxPayloadBytes: number;
  /** Issues CreateWatchTicket's tickets (src/push/tickets.ts). */
  tickets: WatchTickets;
}

/** Rejections listed in a SendDataStream response; the rest are only counted. */
const MAX_LISTED_REJECTIONS = 100;
/** Sends a client stream may have in flight before it waits for the oldest. */
const MAX_STREAM_IN_FLIGHT = 512;

/** Creates the StreamService implementation. */
export function createStreamService(deps: StreamServiceDeps): ServiceImpl<typeof StreamService> {
  const { registry, ingest, fanout, counters, programs, watchCel } = deps;
  /** A record checked; one refused counts as its stream's rejection. */
  const checked = (tenant: string, streamId: string, request: SendRequest) => {
    try {
      return checkSend(request, deps.maxPayloadBytes);
    } catch (error) {
      ingest.countRejected(tenant, streamId);
      throw error;
    }
  };
  /** The key of the stream a request names, in the caller's tenant. */
  const keyOf = (streamId: string, context: HandlerContext) => streamKey(tenantOf(context), requireStreamId(streamId));
  return {
    async startStream(request, context) {
      const streamId = request.streamId === "" ? randomUUID() : requireStreamId(request.streamId);
      const start = checkStart(request, programs);
      const tenant = tenantOf(context);
      const { entry, created } = await registry.create({
        tenant,
        streamId,
        labels: start.labels,
        processing: start.processing,
      });
      // Kept for the processor, compiled once: a stream started again with the same options has the same programs.
      if (start.programs) programs.keep(streamKey(tenant, streamId), start.programs);
      return { stream: entry.stream, created };
    },

    async sendData(request, context) {
      const tenant = tenantOf(context);
      const streamId = requireStreamId(request.streamId);
      return ingest.send(tenant, streamId, checked(tenant, streamId, request));
    },

    async sendDataStream(requests, context) {
      const tenant = tenantOf(context);
      return sendAll(requests, (streamId, request, coalesce) => {
        const id = requireStreamId(streamId);
        return ingest.send(tenant, id, checked(tenant, id, request), coalesce);
      });
    },

    watchResults(request, context) {
      const streamId = requireStreamId(request.streamId);
      return fanout.watch(tenantOf(context), streamId, checkWatch(request, watchCel), context.signal);
    },

    async createWatchTicket(request, context) {
      const streamId = requireStreamId(request.streamId);
      const principal = principalOf(context);
      // The method's own scope (streams:read) was checked with the call's headers; sending needs more.
      if (request.allowSend && !principal.scopes.has("streams:write")) {
        throw scopeMissing(principal.client, "CreateWatchTicket with allow_send", "streams:write");
      }
      const tenant = tenantOf(context);
      // Only for a stream of the caller's tenant: another tenant's answers as one that does not exist.
      if (!registry.get(streamKey(tenant, streamId))) throw streamNotFound(request.streamId);
      const { ticket, expiresAtMs } = await deps.tickets.issue(principal, tenant, streamId, request.allowSend);
      return { ticket, expireTime: timestampFromMs(expiresAtMs) };
    },

    async closeStream(request, context) {
      const key = keyOf(request.streamId, context);
      const before = registry.get(key);
      if (!before) throw streamNotFound(request.streamId);
      const entry = await registry.close(key);
      if (before.stream.state === StreamState.OPEN) await ingest.appendCloseMarker(key);
      return { stream: entry.stream };
    },

    async getStream(request, context) {
      const key = keyOf(request.streamId, context);
      const entry = registry.get(key);
      if (!entry) throw streamNotFound(request.streamId);
      return { stream: entry.stream, counts: counters.snapshot(key) };
    },

    async listStreams(request, context) {
      const limit = pageSizeOf(request.pageSize);
      const labels = checkLabels(request.labels);
      // One more than the page: whether there is a next page, without a second pass.
      const found = registry.list(tenantOf(context), {
        state: request.state === StreamState.UNSPECIFIED ? undefined : request.state,
        labels,
        after: decodePageToken(request.pageToken),
        limit: limit + 1,
      });
      const page = found.slice(0, limit);
      const more = found.length > limit;
      return {
        streams: page.map((entry) => entry.stream),
        nextPageToken: more ? encodePageToken(page[page.length - 1]!.stream.streamId) : "",
      };
    },

    async deleteStream(request, context) {
      const key = keyOf(request.streamId, context);
      const entry = registry.get(key);
      if (!entry) throw streamNotFound(request.streamId);
      // Gone at once here (its watchers on this instance end NOT_FOUND), then on
      // every instance as the tombstone reaches them.
      await registry.delete(key);
      // The close marker still follows its last records: the processor lets go of
      // the stream, and watchers elsewhere that reach it first end as for a close.
      if (entry.stream.state === StreamState.OPEN) await ingest.appendCloseMarker(key);
      return {};
    },
  };
}

/** The tenant a call works in (set by the auth interceptor for every StreamService call). */
function tenantOf(context: HandlerContext): string {
  const tenant = context.values.get(TENANT);
  // Only a server built without the auth interceptor could get here: refuse rather than share a tenant "".
  if (tenant === "")
    throw new Error("no tenant in the call's context: the auth interceptor must run before StreamService");
  return tenant;
}

/** Who is calling (set by the auth interceptor for every StreamService call). */
function principalOf(context: HandlerContext): Principal {
  const principal = context.values.get(PRINCIPAL);
  // As for the tenant: only a server built without the auth interceptor could get here.
  if (!principal)
    throw new Error("no principal in the call's context: the auth interceptor must run before StreamService");
  return principal;
}

/**
 * Stores every record of a client stream. Records are sent without waiting for
 * the previous one's acknowledgement (in order, bounded in number), so a client
 * stream is not limited to one broker round trip per record.
 */
async function sendAll(
  requests: AsyncIterable<SendDataStreamRequest>,
  send: (streamId: string, request: SendRequest, coalesce: boolean) => Promise<SendResult>,
) {
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
      const sent = send(streamId, request, true);
      // Awaited in order below; this keeps a failure from being an unhandled rejection meanwhile.
      sent.catch(() => undefined);
      inFlight.push(sent);
    } catch (error) {
      if (failFast) throw error;
      rejected++;
      if (rejections.length < MAX_LISTED_REJECTIONS) {
        rejections.push(create(RejectionSchema, { index: BigInt(index), ...rejectionOf(error) }));
      }
    }
    if (inFlight.length >= MAX_STREAM_IN_FLIGHT) await settle(inFlight.shift()!);
    index++;
  }
  // Settled in order, so lastCursor ends as the last stored record's.
  for (const send of inFlight) await settle(send);
  return { accepted, duplicates, rejected, rejections, lastCursor };
}

/** How SendDataStream lists a rejected message: the code and message the client would get for it alone. */
function rejectionOf(error: unknown): { code: string; reason: string } {
  const mapped = toConnectError(error);
  return { code: codeName(mapped.code), reason: mapped.rawMessage };
}
