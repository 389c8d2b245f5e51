/**
 * Where the request limits in force are kept, so that UpdateLimits reaches
 * every instance that shares a budget: in this process when the buckets are
 * local, in Redis when they are shared (src/guard/limits/redis-limits.ts).
 */
import type { LimitsConfig } from "../../config/config.js";
import type { VersionedLimits } from "./limits.js";

/** The limits in force, and how a change reaches the instances. */
export interface LimitSettingsStore {
  /** Whether the settings (and buckets) are shared with other instances. */
  readonly shared: boolean;
  /** The settings in force at start: those stored, else `initial` (from the environment), stored. */
  load(initial: LimitsConfig): Promise<VersionedLimits>;
  /** Stores `next` under the next generation; every listener gets it. Resolves with what was stored. */
  update(next: LimitsConfig): Promise<VersionedLimits>;
  /** Calls `listener` with each change, made by any instance. */
  onChange(listener: (settings: VersionedLimits) => void): void;
  close(): Promise<void>;
}

/** Settings kept in this process only. */
export function localLimitSettings(): LimitSettingsStore {
  let current: VersionedLimits | undefined;
  const listeners: Array<(settings: VersionedLimits) => void> = [];
  return {
    shared: false,
    async load(initial) {
      current ??= { ...initial, generation: 1 };
      return current;
    },
    async update(next) {
      current = { ...next, generation: (current?.generation ?? 0) + 1 };
      for (const listener of listeners) listener(current);
      return current;
    },
    onChange(listener) {
      listeners.push(listener);
    },
    async close() {
      listeners.length = 0;
    },
  };
}
