/**
 * A Server-Sent Events reader for tests: the events of a response body, one
 * at a time, parsed as the EventSource specification says (fields `id`,
 * `event`, `data`; comment lines skipped; an event ends at a blank line).
 */

/** One event. */
export interface SseEvent {
  id: string | undefined;
  event: string;
  data: string;
}

/** Reads events from `body` (a fetch response's), in order. */
export function sseEvents(body: ReadableStream<Uint8Array>): { next(): Promise<SseEvent | undefined> } {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  return {
    async next() {
      for (;;) {
        const end = buffer.indexOf("\n\n");
        if (end !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = parse(block);
          if (event) return event;
          continue;
        }
        const { value, done } = await reader.read();
        if (done) return undefined;
        buffer += value;
      }
    },
  };
}

/** The event of one block, or undefined for a block of comments only. */
function parse(block: string): SseEvent | undefined {
  let id: string | undefined;
  let event = "message";
  const data: string[] = [];
  let fields = 0;
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const name = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
    fields++;
    if (name === "id") id = value;
    else if (name === "event") event = value;
    else if (name === "data") data.push(value);
  }
  return fields === 0 ? undefined : { id, event, data: data.join("\n") };
}
