/**
 * A bounded map that forgets its least recently set entries: the memory of
 * event ids for deduplication, and of compiled expressions, stays bounded
 * however many streams and events pass through.
 */
export class Lru<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(private readonly capacity: number) {}

  /** The value for `key`, if still remembered. */
  get(key: K): V | undefined {
    return this.entries.get(key);
  }

  /** Whether `key` is remembered. */
  has(key: K): boolean {
    return this.entries.has(key);
  }

  /** Remembers `value` for `key`, forgetting the oldest entry when full. */
  set(key: K, value: V): void {
    // Deleting first moves the key to the end of Map's insertion order.
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.capacity) {
      this.entries.delete(this.entries.keys().next().value as K);
    }
  }

  /** Forgets `key`. */
  delete(key: K): void {
    this.entries.delete(key);
  }

  /** How many entries are remembered. */
  get size(): number {
    return this.entries.size;
  }
}
