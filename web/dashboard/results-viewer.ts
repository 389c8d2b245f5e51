/**
 * A live view of one stream's results (StreamService.WatchResults), newest
 * first. One watch at a time: starting another, changing the stream id or
 * pressing stop ends the current one. The stream is the session key's
 * tenant's, or (the admin key acting across tenants) the tenant named, sent
 * in the streamgate-tenant header.
 */
import { toJsonString } from "@bufbuild/protobuf";
import { timestampDate, ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { type Result, StartPosition } from "../../gen/streamgate/v1/stream_service_pb.js";
import type { Clients } from "./client.js";
import { byId, element } from "./dom.js";
import { describeError, isAbort, type ShownError } from "./errors.js";
import { formatTime } from "./format.js";

/** Results kept on the page. */
const KEPT_RESULTS = 200;
/** Bytes of a raw payload shown, base64-encoded. */
const RAW_PREVIEW_BYTES = 48;

const POSITIONS: Record<string, StartPosition> = {
  earliest: StartPosition.EARLIEST,
  latest: StartPosition.LATEST,
};

/** The results viewer (`#results-form`, `#results-list`). */
export class ResultsViewer {
  private readonly form = byId("results-form", HTMLFormElement);
  private readonly streamId = byId("results-stream-id", HTMLInputElement);
  private readonly tenant = byId("results-tenant", HTMLInputElement);
  private readonly from = byId("results-from", HTMLSelectElement);
  private readonly startButton = byId("results-start", HTMLButtonElement);
  private readonly stopButton = byId("results-stop", HTMLButtonElement);
  private readonly status = byId("results-status", HTMLElement);
  private readonly list = byId("results-list", HTMLOListElement);
  private watch: AbortController | undefined;

  /** `refused` is told when the server no longer accepts the key. */
  constructor(
    private readonly streams: Clients["streams"],
    private readonly refused: (error: ShownError) => void,
  ) {
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.start();
    });
    this.stopButton.addEventListener("click", () => this.stop("stopped"));
    // A watch shows the stream it was started for: editing the id ends it.
    this.streamId.addEventListener("input", () => {
      if (this.watch) this.stop("stopped: the stream id changed");
    });
    this.tenant.addEventListener("input", () => {
      if (this.watch) this.stop("stopped: the tenant changed");
    });
    this.showWatching(false);
  }

  /** Ends the current watch, if any, saying `why`. */
  stop(why = "stopped"): void {
    if (!this.watch) return;
    this.watch.abort();
    this.watch = undefined;
    this.report(why, "idle");
    this.showWatching(false);
  }

  /** Stops and empties the view (another key, another session). */
  clear(): void {
    this.stop();
    this.list.replaceChildren();
    this.report("", "idle");
  }

  private async start(): Promise<void> {
    const streamId = this.streamId.value.trim();
    if (streamId === "") {
      this.report("give a stream id", "error");
      return;
    }
    this.stop();
    this.list.replaceChildren();
    const watch = new AbortController();
    this.watch = watch;
    this.showWatching(true);
    this.report(`watching ${streamId}`, "live");
    const startPosition = POSITIONS[this.from.value] ?? StartPosition.LATEST;
    const tenant = this.tenant.value.trim();
    const headers: Record<string, string> = tenant === "" ? {} : { "streamgate-tenant": tenant };
    try {
      for await (const { result } of this.streams.watchResults(
        { streamId, startPosition },
        { signal: watch.signal, headers },
      )) {
        if (result) this.add(result);
      }
      if (this.watch === watch) this.finish(`ended: ${streamId} is closed`, "idle");
    } catch (error) {
      if (isAbort(error, watch.signal)) return;
      const shown = describeError(error);
      if (this.watch === watch) this.finish(shown.text, "error");
      if (shown.code === Code.Unauthenticated) this.refused(shown);
    }
  }

  private finish(text: string, state: "idle" | "error"): void {
    this.watch = undefined;
    this.report(text, state);
    this.showWatching(false);
  }

  /** Puts `result` at the top, dropping the oldest beyond {@link KEPT_RESULTS}. */
  private add(result: Result): void {
    const item = element("li");
    item.dataset.cursor = result.cursor;
    const time = result.processTime ?? result.sendTime;
    const when = element("time", time ? formatTime(timestampDate(time)) : "—", "time");
    if (time) when.dateTime = timestampDate(time).toISOString();
    item.append(element("span", result.cursor, "cursor"), when);
    if (result.eventId) item.append(element("span", result.eventId, "event-id"));
    item.append(element("code", payloadText(result), "payload"));
    this.list.prepend(item);
    while (this.list.childElementCount > KEPT_RESULTS) this.list.lastElementChild?.remove();
  }

  private report(text: string, state: "idle" | "live" | "error"): void {
    this.status.textContent = text;
    this.status.dataset.state = state;
  }

  private showWatching(watching: boolean): void {
    this.startButton.disabled = watching;
    this.stopButton.disabled = !watching;
  }
}

/** A result's payload as text: JSON data as JSON, raw bytes as their length and a base64 preview. */
function payloadText(result: Result): string {
  const { payload } = result;
  switch (payload.case) {
    case "data":
      return toJsonString(ValueSchema, payload.value);
    case "raw": {
      const bytes = payload.value;
      const shown = bytes.subarray(0, RAW_PREVIEW_BYTES);
      const base64 = btoa(String.fromCharCode(...shown));
      return `${bytes.length} bytes: ${base64}${bytes.length > shown.length ? "…" : ""}`;
    }
    default:
      return "(no payload)";
  }
}
