/**
 * Kafka's default partitioner for keyed records: murmur2 of the UTF-8 key, made
 * positive, modulo the partition count. Using the same function as the Java
 * client (and @platformatic/kafka's compatibilityPartitioner) means a stream's
 * records land in the same partition whichever broker or client wrote them.
 */

const SEED = 0x9747b28c;
const M = 0x5bd1e995;
const encoder = new TextEncoder();
/** Where an ASCII key's bytes are copied: keys are stream ids, nearly always ASCII and short. */
const scratch = new Uint8Array(256);

/** murmur2 (32-bit) of the first `length` bytes of `data`, as implemented by Kafka's `Utils.murmur2`. */
export function murmur2(data: Uint8Array, length = data.length): number {
  let h = (SEED ^ length) | 0;
  const whole = length - (length % 4);
  for (let i = 0; i < whole; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M);
    h ^= k;
  }
  const tail = length % 4;
  if (tail === 3) h ^= data[whole + 2]! << 16;
  if (tail >= 2) h ^= data[whole + 1]! << 8;
  if (tail >= 1) {
    h ^= data[whole]!;
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** The partition Kafka's default partitioner picks for `key`. */
export function partitionForKey(key: string, partitions: number): number {
  const ascii = asciiBytes(key);
  const hash = ascii === undefined ? murmur2(encoder.encode(key)) : murmur2(scratch, ascii);
  return (hash & 0x7fffffff) % partitions;
}

/**
 * Copies an ASCII `key` (its UTF-8 bytes are its char codes) into `scratch`
 * and returns its length; undefined for any other key. This runs for every
 * record produced, and TextEncoder's allocation and native call for a short
 * key cost more than the hash itself.
 */
function asciiBytes(key: string): number | undefined {
  if (key.length > scratch.length) return undefined;
  for (let i = 0; i < key.length; i++) {
    const code = key.charCodeAt(i);
    if (code > 0x7f) return undefined;
    scratch[i] = code;
  }
  return key.length;
}
