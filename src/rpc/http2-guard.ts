/**
 * Bounds on what one HTTP/2 connection may hold of the server, besides the
 * concurrent-stream cap nghttp2 enforces from SETTINGS_MAX_CONCURRENT_STREAMS:
 *
 * - idle: a session with no open stream for `idleTimeoutMs` is closed (GOAWAY,
 *   NO_ERROR). Only streams count as activity: PING frames do not keep a
 *   session, and an open WatchResults stream does, however quiet.
 * - request bytes: bytes of request messages received and not yet whole (the
 *   server cannot act on part of a message, so they are held), summed over the
 *   session's streams; the stream whose bytes take the sum over
 *   `maxBufferedBytes` is reset with ENHANCE_YOUR_CALM.
 * - body deadline: a request message begun must be whole within
 *   `bodyTimeoutMs`, or its stream is reset with CANCEL. A client stream may
 *   pause as long as it likes between messages; only a message in progress is
 *   timed.
 *
 * Messages are told apart by framing: gRPC, gRPC-Web and Connect streaming
 * bodies are 5-byte envelopes (flags, 4-byte big-endian length) each followed
 * by its message; any other body (Connect unary JSON or binary, gRPC-Web text)
 * is one message that is whole at the end of the body.
 *
 * Cost on the hot path: per stream one small object, one `close` listener and
 * one own-property `push`; per received chunk a few field updates and no
 * allocation; a message that arrives whole in one chunk (most unary calls)
 * touches no timer and no set. Timers are per session: at most one idle timer
 * and one deadline sweep, each re-armed only when it fires.
 */
import * as http2 from "node:http2";
import { Readable } from "node:stream";
import type { RefusalReason } from "../observe/metrics.js";

/** The bounds, from config.edge. */
export interface Http2GuardOptions {
  idleTimeoutMs: number;
  bodyTimeoutMs: number;
  maxBufferedBytes: number;
  /** Called for each session closed or stream reset by a bound. */
  onRefused: (
    reason: Extract<RefusalReason, "http2_idle_timeout" | "request_body_timeout" | "connection_buffer">,
    session: http2.Http2Session,
  ) => void;
}

const ENVELOPE_HEADER_BYTES = 5;
const TRACKER = Symbol("streamgate.requestTracker");

type TrackedStream = http2.ServerHttp2Stream & { [TRACKER]?: StreamTracker };

/** Starts guarding a server session; call on the server's "session" event. */
export function guardSession(session: http2.ServerHttp2Session, options: Http2GuardOptions): void {
  const guard = new SessionGuard(session, options);
  // Prepended, so it runs before the server's own listener creates the
  // request: nothing has read the stream yet, so what the session already
  // received for it (same read as its HEADERS) is still in its buffer.
  session.prependListener("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) =>
    guard.streamOpened(stream as TrackedStream, headers),
  );
  session.once("close", () => guard.sessionClosed());
}

class SessionGuard {
  private openStreams = 0;
  private idleSince = Date.now();
  private idleTimer: NodeJS.Timeout | undefined;
  /** Bytes of messages begun and not whole, over all streams. */
  buffered = 0;
  /**
   * Streams with a message in progress, in the order their message began
   * (a stream leaves when its message is whole and re-enters at the end with
   * its next one), so the first is always the oldest.
   */
  readonly inProgress = new Set<StreamTracker>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    readonly session: http2.ServerHttp2Session,
    readonly options: Http2GuardOptions,
  ) {
    this.armIdle(options.idleTimeoutMs);
  }

  streamOpened(stream: TrackedStream, headers: http2.IncomingHttpHeaders): void {
    this.openStreams++;
    const tracker = new StreamTracker(this, stream, isEnveloped(headers["content-type"]));
    stream[TRACKER] = tracker;
    // What arrived before this event; nothing has consumed it yet.
    if (stream.readableLength > 0) {
      for (const chunk of (stream as unknown as { readableBuffer: Iterable<Buffer> }).readableBuffer)
        tracker.receive(chunk);
    }
    if (stream.endAfterHeaders || (stream as unknown as { _readableState: { ended: boolean } })._readableState.ended) {
      tracker.end();
    }
    stream.push = trackedPush;
    stream.once("close", onTrackedStreamClose);
  }

  streamClosed(tracker: StreamTracker): void {
    tracker.end();
    if (--this.openStreams === 0) this.idleSince = Date.now();
  }

  sessionClosed(): void {
    this.closed = true;
    clearTimeout(this.idleTimer);
    clearTimeout(this.sweepTimer);
  }

  /** The idle check runs at most once per idle period; streams opening and closing only update fields. */
  private armIdle(delayMs: number): void {
    this.idleTimer = setTimeout(() => this.checkIdle(), delayMs);
    this.idleTimer.unref();
  }

  private checkIdle(): void {
    if (this.closed || this.session.closed || this.session.destroyed) return;
    const timeout = this.options.idleTimeoutMs;
    if (this.openStreams > 0) return this.armIdle(timeout);
    const idleFor = Date.now() - this.idleSince;
    if (idleFor < timeout) return this.armIdle(timeout - idleFor);
    this.options.onRefused("http2_idle_timeout", this.session);
    // GOAWAY(NO_ERROR); with no stream open the session then ends at once.
    this.session.close();
  }

  /** A message began and did not end in the same chunk: it is timed from now. */
  messageBegan(tracker: StreamTracker): void {
    tracker.startedAt = Date.now();
    this.inProgress.add(tracker);
    if (this.sweepTimer === undefined) this.armSweep(this.options.bodyTimeoutMs);
  }

  private armSweep(delayMs: number): void {
    this.sweepTimer = setTimeout(() => this.sweep(), Math.max(1, delayMs));
    this.sweepTimer.unref();
  }

  /** Resets streams whose message is overdue (the oldest first), then re-arms for the next oldest. */
  private sweep(): void {
    this.sweepTimer = undefined;
    if (this.closed) return;
    const now = Date.now();
    const timeout = this.options.bodyTimeoutMs;
    for (const tracker of this.inProgress) {
      const dueIn = tracker.startedAt + timeout - now;
      if (dueIn > 0) return this.armSweep(dueIn);
      tracker.reset(http2.constants.NGHTTP2_CANCEL, "request_body_timeout");
    }
  }
}

/** Where one stream's request body is in its messages, and what of it is held. */
class StreamTracker {
  /** Bytes of the message in progress received so far (counted in the session's `buffered`). */
  private held = 0;
  /** Envelope header bytes still to read for the message in progress (5: none read, between messages). */
  private headerLeft = ENVELOPE_HEADER_BYTES;
  private length = 0;
  private bodyLeft = 0;
  /** Whether a message is in progress: some of it received, not all. */
  private inMessage = false;
  private timed = false;
  private done = false;
  startedAt = 0;

  constructor(
    readonly guard: SessionGuard,
    private readonly stream: http2.ServerHttp2Stream,
    private readonly enveloped: boolean,
  ) {}

  receive(chunk: Buffer): void {
    if (this.done) return;
    const size = chunk.length;
    if (!this.enveloped) {
      // The whole body is one message, whole at its end.
      this.hold(size);
      this.inMessage = true;
    } else {
      let offset = 0;
      let used = 0; // bytes of this chunk that belong to the message in progress
      while (offset < size) {
        if (this.headerLeft > 0) {
          this.inMessage = true;
          const byte = chunk[offset++]!;
          used++;
          // Byte 0 is the flags; bytes 1-4 the length (multiplied, not shifted: no sign bit).
          if (this.headerLeft <= 4) this.length = this.length * 256 + byte;
          if (--this.headerLeft === 0) {
            this.bodyLeft = this.length;
            this.length = 0;
          }
        } else {
          const take = Math.min(this.bodyLeft, size - offset);
          offset += take;
          used += take;
          this.bodyLeft -= take;
        }
        if (this.headerLeft === 0 && this.bodyLeft === 0) {
          // A whole message: what it held is handed on.
          this.hold(used);
          used = 0;
          this.release();
          this.headerLeft = ENVELOPE_HEADER_BYTES;
        }
      }
      this.hold(used);
    }
    if (this.inMessage && !this.timed) {
      this.timed = true;
      this.guard.messageBegan(this);
    }
    if (this.guard.buffered > this.guard.options.maxBufferedBytes) {
      this.reset(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, "connection_buffer");
    }
  }

  /** The body ended (or the stream closed): nothing is in progress any more. */
  end(): void {
    if (this.done) return;
    this.release();
    this.done = true;
  }

  /** Resets the stream for a bound; what it held is released at once. */
  reset(code: number, reason: "request_body_timeout" | "connection_buffer"): void {
    this.end();
    this.guard.options.onRefused(reason, this.guard.session);
    if (!this.stream.closed) this.stream.close(code);
  }

  private hold(bytes: number): void {
    this.held += bytes;
    this.guard.buffered += bytes;
  }

  private release(): void {
    this.guard.buffered -= this.held;
    this.held = 0;
    this.inMessage = false;
    if (this.timed) {
      this.timed = false;
      this.guard.inProgress.delete(this);
    }
  }
}

/** Whether a request body of this content type is a sequence of 5-byte envelopes (gRPC, gRPC-Web, Connect streaming). */
function isEnveloped(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  return (
    (contentType.startsWith("application/grpc") && !contentType.startsWith("application/grpc-web-text")) ||
    contentType.startsWith("application/connect+")
  );
}

/** The stream's `push`, seeing each chunk the session delivers (null: end of body) before the stream buffers it. */
function trackedPush(this: TrackedStream, chunk: unknown, encoding?: BufferEncoding): boolean {
  const tracker = this[TRACKER];
  if (tracker !== undefined) {
    if (chunk === null) tracker.end();
    else if (Buffer.isBuffer(chunk)) tracker.receive(chunk);
  }
  return Readable.prototype.push.call(this, chunk, encoding);
}

function onTrackedStreamClose(this: TrackedStream): void {
  const tracker = this[TRACKER];
  if (tracker !== undefined) tracker.guard.streamClosed(tracker);
}
