/**
 * Event ids remembered for deduplication, per tenant: each tenant has a window
 * of its own (DEDUP_WINDOW ids), so one tenant's sends, however many, forget
 * only that tenant's older ids, never another's. Memory is bounded per tenant
 * that sends event ids: DEDUP_WINDOW entries each.
 */
import { Lru } from "./lru.js";
import { tenantOf, type StreamKey } from "./stream-key.js";

/** See the module comment; `V` is what is remembered with an id. */
export class TenantDedup<V> {
  private readonly tenants = new Map<string, Lru<string, V>>();

  constructor(private readonly window: number) {}

  /** What is remembered for `eventId` on the stream `key`, if it still is. */
  get(key: StreamKey, eventId: string): V | undefined {
    return this.tenants.get(tenantOf(key))?.get(idKey(key, eventId));
  }

  /** Whether `eventId` is remembered on the stream `key`. */
  has(key: StreamKey, eventId: string): boolean {
    return this.tenants.get(tenantOf(key))?.has(idKey(key, eventId)) ?? false;
  }

  /** Remembers `eventId` on the stream `key`, forgetting the tenant's oldest id when its window is full. */
  set(key: StreamKey, eventId: string, value: V): void {
    const tenant = tenantOf(key);
    let ids = this.tenants.get(tenant);
    if (!ids) this.tenants.set(tenant, (ids = new Lru(this.window)));
    ids.set(idKey(key, eventId), value);
  }

  /** Forgets `eventId` on the stream `key`. */
  delete(key: StreamKey, eventId: string): void {
    this.tenants.get(tenantOf(key))?.delete(idKey(key, eventId));
  }
}

/** Stream keys cannot contain a newline, so the pair is unambiguous. */
function idKey(key: StreamKey, eventId: string): string {
  return `${key}\n${eventId}`;
}
