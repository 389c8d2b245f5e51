/**
 * The started parts of a running streamgate, as a stack: each part, once
 * started, pushes how to stop it; stopping runs the stack in reverse. So a
 * start that fails halfway stops what it had started (a broker connection, a
 * Redis client, a consumer group membership), and the order of shutdown is
 * the order of startup, reversed, written once.
 */
import type { Logger } from "../observe/logger.js";

/** See the module comment. */
export class Lifecycle {
  private readonly stops: Array<{ name: string; stop: () => Promise<void> | void }> = [];

  constructor(private readonly logger: Logger) {}

  /** Starts a part and, once started, remembers how to stop it. */
  async start<T>(name: string, start: () => Promise<T> | T, stop: (part: T) => Promise<void> | void): Promise<T> {
    const part = await start();
    this.stops.push({ name, stop: () => stop(part) });
    return part;
  }

  /** Remembers a stop step with nothing to start (it runs in its place in the reverse order). */
  onStop(name: string, stop: () => Promise<void> | void): void {
    this.stops.push({ name, stop });
  }

  /**
   * Stops everything started, newest first. A step that fails is logged and
   * the rest still run: one part failing to stop must not leave the others
   * running.
   */
  async stopAll(): Promise<void> {
    for (let step = this.stops.pop(); step; step = this.stops.pop()) {
      try {
        // Each step in the debug log: a stop that hangs shows where.
        this.logger.debug({ part: step.name }, "stopping");
        await step.stop();
      } catch (error) {
        this.logger.error({ err: error, part: step.name }, "stopping a part failed");
      }
    }
  }
}
