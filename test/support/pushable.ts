/**
 * An async iterable a test feeds by hand: the request side of a client stream
 * kept open between sends (and, left unended, a call that stays in progress).
 */
export class Pushable<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private ended = false;
  private wake: (() => void) | undefined;

  /** Queues `item` for the stream. */
  push(item: T): void {
    this.items.push(item);
    this.wake?.();
  }

  /** Ends the stream once the queued items are taken. */
  end(): void {
    this.ended = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      const item = this.items.shift();
      if (item !== undefined) {
        yield item;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }
}
