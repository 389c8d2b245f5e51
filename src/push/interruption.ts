/**
 * Whether the fanout has ended a watch (it fell behind, the server is
 * stopping, the stream was removed), told at once through Fanout.watch's
 * `onInterrupt`: an endpoint waiting for a client that stopped reading wakes,
 * sends the error with the resume cursor (queued behind what the client has
 * not read) and lets the watch go, instead of waiting for the client to read.
 */
export class Interruption {
  /** Whether the watch was interrupted. */
  happened = false;
  /** The wait to end when it is. */
  wake: (() => void) | undefined;

  /** For Fanout.watch's `onInterrupt`. */
  notify(): void {
    this.happened = true;
    this.wake?.();
  }
}
