/**
 * A result as SSE and WebSocket send it, made once per result: the fanout
 * hands every watcher of a stream the same WatchResultsResponse object, so
 * its text is kept beside it (weakly: it goes with the result) and a result
 * watched a thousand times is turned into JSON once, not a thousand times.
 */
import { toJson, toJsonString } from "@bufbuild/protobuf";
import {
  ResultSchema,
  type WatchResultsResponse,
  WatchResultsResponseSchema,
} from "../../gen/streamgate/v1/stream_service_pb.js";

const events = new WeakMap<WatchResultsResponse, string>();
const frames = new WeakMap<WatchResultsResponse, string>();

/** The SSE event of a result: `id:` its cursor, `event: result`, `data:` the WatchResults message's JSON. */
export function sseEvent(message: WatchResultsResponse): string {
  let event = events.get(message);
  if (event === undefined) {
    const cursor = message.result?.cursor ?? "";
    event = `id: ${cursor}\nevent: result\ndata: ${toJsonString(WatchResultsResponseSchema, message)}\n\n`;
    events.set(message, event);
  }
  return event;
}

/** The WebSocket text frame of a result: `{"type":"result","cursor":…,"result":…}`. */
export function resultFrame(message: WatchResultsResponse): string {
  let frame = frames.get(message);
  if (frame === undefined) {
    const result = message.result;
    frame = JSON.stringify({
      type: "result",
      cursor: result?.cursor ?? "",
      result: result ? toJson(ResultSchema, result) : null,
    });
    frames.set(message, frame);
  }
  return frame;
}
