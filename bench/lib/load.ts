/**
 * The requests the ghz scenarios send, and the setup they need: streams to
 * send to, payloads of a given size, and server-side message counts.
 */
import { BENCH_API_KEY, type StreamgateServer } from "./processes.js";

/** Streams the send scenarios spread their records over (round robin). */
export const STREAMS = 16;

/** The metadata every ghz call to streamgate carries. */
export const AUTH = { "x-api-key": BENCH_API_KEY };

/** Stream ids the send scenarios use. */
export function streamIds(prefix = "bench"): string[] {
  return Array.from({ length: STREAMS }, (_, i) => `${prefix}-${i}`);
}

/** A raw payload of `bytes` bytes, base64 as proto3 JSON writes bytes. */
export function rawPayload(bytes: number): string {
  return Buffer.alloc(bytes, 0x61).toString("base64");
}

/** SendData requests, one per stream, for ghz's round robin over a data array. */
export function sendRequests(payloadBytes: number, prefix = "bench"): object[] {
  const raw = rawPayload(payloadBytes);
  return streamIds(prefix).map((streamId) => ({ stream_id: streamId, raw }));
}

/** Starts the send scenarios' streams over Connect JSON. */
export async function startStreams(server: StreamgateServer, prefix = "bench"): Promise<void> {
  for (const streamId of streamIds(prefix)) {
    const response = await fetch(`http://127.0.0.1:${server.port}/streamgate.v1.StreamService/StartStream`, {
      method: "POST",
      headers: { "content-type": "application/json", ...AUTH },
      body: JSON.stringify({ streamId }),
    });
    if (!response.ok) throw new Error(`StartStream ${streamId}: ${response.status} ${await response.text()}`);
  }
}

/** The server's count of a metric's samples whose labels contain `match` (summed). */
export async function metricSum(server: StreamgateServer, name: string, match: string): Promise<number> {
  let sum = 0;
  for (const line of (await server.metrics()).split("\n")) {
    if (line.startsWith(`${name}{`) && line.includes(match)) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}
