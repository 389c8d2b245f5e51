/**
 * Retrying with exponential backoff: the one loop for every operation
 * streamgate repeats until it succeeds (writing results through a broker
 * outage, waiting for partition leaders, joining a consumer group).
 */
import { delay } from "./waits.js";

/** The waits between attempts: `firstMs`, doubling, at most `maxMs` (equal for a fixed pause). */
export interface Backoff {
  firstMs: number;
  maxMs: number;
}

/** The wait before retry number `retry` (1 for the first retry). */
export function backoffMs(retry: number, { firstMs, maxMs }: Backoff): number {
  return Math.min(maxMs, firstMs * 2 ** Math.max(0, retry - 1));
}

/** When to stop retrying, and what to hear of each failure. */
export interface RetryOptions extends Backoff {
  /** Attempts at most, the first included (default: no bound). */
  attempts?: number;
  /** Whether an error ends the retrying at once (it is then thrown). */
  giveUp?: (error: unknown) => boolean;
  /** Called before each wait, with the failure and the number of the retry to come. */
  onRetry?: (error: unknown, retry: number) => void;
}

/**
 * Runs `operation` until it resolves, waiting {@link backoffMs} between
 * attempts; throws the last error once `attempts` are used up or `giveUp`
 * says so.
 */
export async function retry<T>(operation: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation(attempt);
    } catch (error) {
      if (options.giveUp?.(error) || attempt >= (options.attempts ?? Infinity)) throw error;
      options.onRetry?.(error, attempt);
      await delay(backoffMs(attempt, options));
    }
  }
}
