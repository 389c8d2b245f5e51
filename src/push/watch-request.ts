/**
 * A watch over plain HTTP, as its URL names it:
 * `/v1/streams/{streamId}/results?after=<cursor>&from=earliest|latest&filter=<CEL>&ticket=<ticket>`,
 * for Server-Sent Events and WebSocket alike. `Last-Event-ID` (what
 * EventSource sends when it reconnects) resumes as `after` does.
 */
import { StartPosition } from "../../gen/streamgate/v1/stream_service_pb.js";
import { invalidInput } from "../common/domain-error.js";

/** The path prefix and suffix of a stream's results. */
const PATH = /^\/v1\/streams\/([^/?#]+)\/results$/;

/** What a watch URL asks for, unchecked (the edge checks it as WatchResults' request). */
export interface WatchUrl {
  streamId: string;
  afterCursor: string;
  startPosition: StartPosition;
  filter: string;
  /** A watch ticket (for browsers, which cannot set headers), when given. */
  ticket: string | undefined;
}

/** Whether `url` is a stream's results path (with any query). */
export function isWatchPath(url: string | undefined): boolean {
  return url !== undefined && PATH.test(pathOf(url));
}

/** Reads a watch URL; throws DomainError "invalid" for a malformed one. `lastEventId` wins over `after`. */
export function parseWatchUrl(url: string, lastEventId: string | undefined): WatchUrl {
  const match = PATH.exec(pathOf(url));
  if (!match) throw invalidInput("the path must be /v1/streams/{streamId}/results");
  let streamId: string;
  try {
    streamId = decodeURIComponent(match[1]!);
  } catch {
    throw invalidInput("the stream id in the path is not valid percent-encoding");
  }
  const query = new URLSearchParams(url.slice(pathOf(url).length + 1));
  const from = query.get("from") ?? "";
  if (from !== "" && from !== "earliest" && from !== "latest") throw invalidInput("from must be earliest or latest");
  return {
    streamId,
    afterCursor: lastEventId?.trim() || query.get("after") || "",
    startPosition:
      from === "latest"
        ? StartPosition.LATEST
        : from === "earliest"
          ? StartPosition.EARLIEST
          : StartPosition.UNSPECIFIED,
    filter: query.get("filter") ?? "",
    ticket: query.get("ticket") ?? undefined,
  };
}

function pathOf(url: string): string {
  const query = url.indexOf("?");
  return query === -1 ? url : url.slice(0, query);
}
