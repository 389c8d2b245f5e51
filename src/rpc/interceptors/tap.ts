/**
 * A pass-through for a call's message stream with hooks, for interceptors
 * that watch a stream (count it, see how it ends, map its error) without
 * changing its messages. An async generator per interceptor costs each call a
 * generator object, a prototype and a map of its own (its function is a new
 * closure per call) and several promises per message and layer; 10,000
 * WatchResults calls stay open at a time, and all of that lives as long as
 * they do. A tap is one object per call and one promise per message.
 */

/** How a tapped stream ended. */
export type TapEnd =
  /** The source had no more messages. */
  | { kind: "done" }
  /** The source failed, with `error` (after `mapError`). */
  | { kind: "error"; error: unknown }
  /** The consumer stopped reading early (`return`, or `throw` into the stream). */
  | { kind: "stopped" };

/** What a tap does; every hook is optional. */
export interface TapHooks<T> {
  /** Called with each message as it passes. */
  message?(message: T): void;
  /** Replaces the error the source fails with. */
  mapError?(error: unknown): unknown;
  /** Called once, when the stream ends however it ends. */
  end?(how: TapEnd): void;
}

/** Returns `source` with `hooks` applied; nothing is read from `source` until the first message is asked for. */
export function tap<T>(source: AsyncIterable<T>, hooks: TapHooks<T>): AsyncIterable<T> {
  return new Tap(source, hooks);
}

class Tap<T> implements AsyncIterableIterator<T> {
  private iterator: AsyncIterator<T> | undefined;
  private ended = false;

  constructor(
    private readonly source: AsyncIterable<T>,
    private readonly hooks: TapHooks<T>,
  ) {}

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<T>> {
    if (this.ended) return Promise.resolve({ done: true, value: undefined });
    let iterator;
    try {
      iterator = this.iterator ??= this.source[Symbol.asyncIterator]();
    } catch (error) {
      return this.failed(error);
    }
    return iterator.next().then(this.passed, this.failed);
  }

  return(value?: unknown): Promise<IteratorResult<T>> {
    this.end({ kind: "stopped" });
    const returned = this.iterator?.return?.(value);
    return returned ?? Promise.resolve({ done: true, value: undefined });
  }

  throw(error?: unknown): Promise<IteratorResult<T>> {
    this.end({ kind: "stopped" });
    const thrown = this.iterator?.throw?.(error);
    return thrown ?? Promise.reject(error);
  }

  // Fields, not methods: bound once per call rather than once per message.
  private readonly passed = (step: IteratorResult<T>): IteratorResult<T> => {
    if (step.done) this.end({ kind: "done" });
    else if (!this.ended) this.hooks.message?.(step.value);
    return step;
  };

  private readonly failed = (error: unknown): Promise<never> => {
    const mapped = this.hooks.mapError ? this.hooks.mapError(error) : error;
    this.end({ kind: "error", error: mapped });
    return Promise.reject(mapped);
  };

  private end(how: TapEnd): void {
    if (this.ended) return;
    this.ended = true;
    this.hooks.end?.(how);
  }
}
