/**
 * Event ids remembered for deduplication, per tenant: each tenant has a window
 * of its own (DEDUP_WINDOW ids), so one tenant's sends, however many, forget
 * only that tenant's older ids, never another's. Memory is bounded per tenant
 * that sends event ids: DEDUP_WINDOW entries each.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Lru } from "../common/lru.js";
import type { StreamEntry } from "./registry.js";
import { type StreamKey, tenantOf } from "./stream-key.js";

/**
 * What event ids are remembered under: a stream's key and its creation time,
 * so a stream started again under a deleted stream's id remembers none of the
 * old one's ids. The key alone for a stream not (or no longer) known.
 */
export type DedupScope = string;

/** The {@link DedupScope} of the stream `key`, whose registry entry is `entry`. */
export function dedupScope(key: StreamKey, entry: StreamEntry | undefined): DedupScope {
  const created = entry?.stream.createTime;
  return created ? `${key}@${timestampMs(created)}` : key;
}

/** See the module comment; `V` is what is remembered with an id. */
export class TenantDedup<V> {
  private readonly tenants = new Map<string, Lru<string, V>>();

  constructor(private readonly window: number) {}

  /** What is remembered for `eventId` in `scope`, if it still is. */
  get(scope: DedupScope, eventId: string): V | undefined {
    return this.tenants.get(tenantOf(scope))?.get(idKey(scope, eventId));
  }

  /** Whether `eventId` is remembered in `scope`. */
  has(scope: DedupScope, eventId: string): boolean {
    return this.tenants.get(tenantOf(scope))?.has(idKey(scope, eventId)) ?? false;
  }

  /** Remembers `eventId` in `scope`, forgetting the tenant's oldest id when its window is full. */
  set(scope: DedupScope, eventId: string, value: V): void {
    const tenant = tenantOf(scope);
    let ids = this.tenants.get(tenant);
    if (!ids) this.tenants.set(tenant, (ids = new Lru(this.window)));
    ids.set(idKey(scope, eventId), value);
  }

  /** Forgets `eventId` in `scope`. */
  delete(scope: DedupScope, eventId: string): void {
    this.tenants.get(tenantOf(scope))?.delete(idKey(scope, eventId));
  }
}

/** Stream keys cannot contain a newline, so the pair is unambiguous. */
function idKey(scope: DedupScope, eventId: string): string {
  return `${scope}\n${eventId}`;
}
