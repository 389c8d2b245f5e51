/**
 * Connection admission, the first and cheapest bound of the edge: how many
 * connections are open at once, over all peers and from one peer address, and
 * how a connection over a cap is refused.
 *
 * A connection is counted from accept until its socket closes, whatever it
 * turns out to be (HTTP/1.1, HTTP/2, TLS, nothing at all), so a peer holding
 * sockets open without sending anything spends its own allowance, not others'.
 */
import type * as net from "node:net";
import type { RefusalReason } from "../observe/metrics.js";

/** Why a connection is refused at accept, or undefined when it is admitted. */
export type AdmissionRefusal = Extract<RefusalReason, "max_connections" | "max_connections_per_peer">;

/**
 * The peer address of a socket as counted: an IPv4-mapped IPv6 address
 * ("::ffff:10.0.0.1", what a dual-stack listener reports for IPv4 clients) is
 * the IPv4 address, so one client is one peer whichever way it is reported.
 */
export function normalisePeer(address: string | undefined): string {
  if (address === undefined) return "";
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

/**
 * The group an address is bounded as, for the per-peer bounds (connections,
 * the peer rate limit): an IPv4 address (IPv4-mapped IPv6 included) on its
 * own, an IPv6 address by its /64 prefix. A single IPv6 host or site is
 * usually given a whole /64, so bounds per address would not bind it: it could
 * open connections and spend buckets from 2^64 addresses.
 */
export function peerGroup(address: string): string {
  const peer = normalisePeer(address);
  if (!peer.includes(":")) return peer;
  const [head = "", tail] = peer.split("%", 1)[0]!.split("::");
  const front = head === "" ? [] : head.split(":");
  const back = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups =
    tail === undefined
      ? front
      : [...front, ...Array<string>(Math.max(0, 8 - front.length - back.length)).fill("0"), ...back];
  return `${groups
    .slice(0, 4)
    .map((group) => Number.parseInt(group, 16).toString(16))
    .join(":")}::/64`;
}

/** Open connections overall and per peer address, against the two caps. */
export class ConnectionCaps {
  private total = 0;
  private readonly perPeer = new Map<string, number>();

  constructor(
    private readonly maxConnections: number,
    private readonly maxPerPeer: number,
  ) {}

  /** Open connections now. */
  get open(): number {
    return this.total;
  }

  /**
   * Counts a new connection from `peer` and returns undefined, or returns why
   * it is refused (then nothing is counted). Admitted connections must be
   * {@link release}d exactly once, when they close.
   */
  admit(peer: string): AdmissionRefusal | undefined {
    if (this.total >= this.maxConnections) return "max_connections";
    const fromPeer = this.perPeer.get(peer) ?? 0;
    if (fromPeer >= this.maxPerPeer) return "max_connections_per_peer";
    this.total++;
    this.perPeer.set(peer, fromPeer + 1);
    return undefined;
  }

  /** Counts down a closed connection admitted from `peer`. */
  release(peer: string): void {
    this.total--;
    const fromPeer = (this.perPeer.get(peer) ?? 1) - 1;
    // Deleted at zero: the map holds only peers with open connections, however many have come and gone.
    if (fromPeer <= 0) this.perPeer.delete(peer);
    else this.perPeer.set(peer, fromPeer);
  }
}

const REFUSAL_TEXT: Record<AdmissionRefusal, string> = {
  max_connections: "too many connections to this server (MAX_CONNECTIONS); retry later",
  max_connections_per_peer: "too many connections from this address (MAX_CONNECTIONS_PER_PEER); retry later",
};

/** Refused cleartext connections held at once to be answered; past this they are closed unanswered. */
const MAX_HELD_REFUSALS = 1024;
let heldRefusals = 0;

/**
 * Refuses a cleartext connection over a cap in a way its client understands,
 * from its first bytes: an HTTP/2 client (it opens with the connection preface)
 * gets the server preface (an empty SETTINGS frame) then GOAWAY with
 * ENHANCE_YOUR_CALM and the reason as debug data (gRPC clients report
 * UNAVAILABLE); an HTTP/1.1 client gets 503 with the reason and
 * `retry-after: 1` (Connect and gRPC-Web clients report UNAVAILABLE). The
 * socket is held at most `holdMs` (the first-bytes timeout), and at most
 * {@link MAX_HELD_REFUSALS} such sockets at once process-wide: past that a
 * refused socket is closed at once, so refusing stays cheap under a flood.
 */
export function refuseClearly(socket: net.Socket, reason: AdmissionRefusal, holdMs: number): void {
  if (heldRefusals >= MAX_HELD_REFUSALS) {
    socket.destroy();
    return;
  }
  heldRefusals++;
  const timer = setTimeout(() => socket.destroy(), holdMs);
  timer.unref();
  socket.once("close", () => {
    heldRefusals--;
    clearTimeout(timer);
  });
  socket.on("error", () => socket.destroy());
  socket.once("data", (chunk: Buffer) => {
    const text = REFUSAL_TEXT[reason];
    // "PRI" starts the HTTP/2 preface and no HTTP/1.1 method.
    if (chunk.length >= 3 && chunk[0] === 0x50 && chunk[1] === 0x52 && chunk[2] === 0x49) {
      socket.write(goawayFrames(text));
    } else {
      const body = `${text}\n`;
      socket.write(
        "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\n" +
          `retry-after: 1\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    }
    // FIN after the answer, and keep reading what the client still sends, so
    // the close is not a reset that could discard the answer unread.
    socket.end();
    socket.resume();
  });
}

/** An empty SETTINGS frame and GOAWAY(last stream 0, ENHANCE_YOUR_CALM, `debug`). */
function goawayFrames(debug: string): Buffer {
  const data = Buffer.from(debug);
  const frames = Buffer.alloc(9 + 9 + 8 + data.length);
  frames.writeUIntBE(0, 0, 3); // SETTINGS: length 0
  frames[3] = 0x4; // type SETTINGS, flags 0, stream 0
  frames.writeUIntBE(8 + data.length, 9, 3);
  frames[12] = 0x7; // type GOAWAY, flags 0, stream 0
  frames.writeUInt32BE(0, 18); // last stream id
  frames.writeUInt32BE(0xb, 22); // ENHANCE_YOUR_CALM
  data.copy(frames, 26);
  return frames;
}
