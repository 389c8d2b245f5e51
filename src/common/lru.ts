/**
 * A bounded map that forgets its least recently set entries: the memory of
 * event ids for deduplication, and of compiled expressions, stays bounded
 * however many streams and events pass through.
 */
export class Lru<K, V> {
  private readonly entries = new Map<K, V>();
  private total = 0;

  /**
   * Holds entries up to `capacity`, counted by `weigh` (each entry weighs 1
   * when it is omitted). An entry heavier than the capacity is not kept.
   */
  constructor(
    private readonly capacity: number,
    private readonly weigh: (value: V) => number = () => 1,
  ) {}

  /** The value for `key`, if still remembered. */
  get(key: K): V | undefined {
    return this.entries.get(key);
  }

  /** Whether `key` is remembered. */
  has(key: K): boolean {
    return this.entries.has(key);
  }

  /** Remembers `value` for `key`, forgetting the oldest entries while over capacity. */
  set(key: K, value: V): void {
    // Deleting first moves the key to the end of Map's insertion order.
    this.delete(key);
    this.entries.set(key, value);
    this.total += this.weigh(value);
    while (this.total > this.capacity) this.delete(this.entries.keys().next().value as K);
  }

  /** Forgets `key`. */
  delete(key: K): void {
    const value = this.entries.get(key);
    if (value === undefined && !this.entries.has(key)) return;
    this.total -= this.weigh(value as V);
    this.entries.delete(key);
  }
}
