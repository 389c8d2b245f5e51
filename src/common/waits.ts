/**
 * Waits that end early: every wait in streamgate that a wake-up, an abort or a
 * timeout may end goes through {@link waitForWake}, so that none leaves an
 * abort listener, a timer or a waiter behind, whichever way it ends.
 */

/** What else ends a wait besides its wake-up. */
export interface WaitOptions {
  /** Ends the wait at once when aborted (already aborted: the wait ends at once). */
  signal?: AbortSignal;
  /** Ends the wait after this long. */
  timeoutMs?: number;
  /** Whether the timer may keep the process alive (default true); false for waits a stop must not hold up. */
  keepAlive?: boolean;
}

/**
 * Resolves when the `wake` handed to `arm` is called, `signal` aborts, or
 * `timeoutMs` pass, whichever comes first; never rejects. A `wake` called
 * after the wait ended does nothing. `arm` may return a function that
 * withdraws the wake-up from wherever it registered it; it is called when the
 * wait ends any other way, so an abandoned waiter is not left in a list.
 */
export function waitForWake(
  arm: (wake: () => void) => (() => void) | undefined,
  options: WaitOptions = {},
): Promise<void> {
  const { signal, timeoutMs } = options;
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    let withdraw: (() => void) | undefined;
    let ended = false;
    const end = (woken: boolean) => {
      if (ended) return;
      ended = true;
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      if (!woken) withdraw?.();
      resolve();
    };
    const onAbort = () => end(false);
    withdraw = arm(() => end(true));
    if (ended) return;
    signal?.addEventListener("abort", onAbort, { once: true });
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => end(false), timeoutMs);
      if (options.keepAlive === false) timer.unref();
    }
  });
}

/** Resolves after `ms`, or as soon as `signal` aborts; never rejects. */
export function delay(ms: number, options: Omit<WaitOptions, "timeoutMs"> = {}): Promise<void> {
  return waitForWake(() => undefined, { ...options, timeoutMs: ms });
}
