/**
 * The partitioner is Kafka's: murmur2 equals the Java client's `Utils.murmur2`
 * byte for byte, and a key's partition is `toPositive(murmur2) % partitions`, so
 * a stream's records land in the same partition whichever client wrote them.
 */

import { murmur2 as clientMurmur2 } from "@platformatic/kafka";
import { describe, expect, it } from "vitest";
import { murmur2, partitionForKey } from "../src/broker/partitioner.js";

const utf8 = (text: string) => new TextEncoder().encode(text);

describe("murmur2", () => {
  it("matches Kafka's UtilsTest.testMurmur2 vectors", () => {
    // apache/kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2.
    const vectors: Array<[string, number]> = [
      ["21", -973932308],
      ["foobar", -790332482],
      ["a-little-bit-long-string", -985981536],
      ["a-little-bit-longer-string", -1486304829],
      ["lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971],
      ["abc", 479470107],
    ];
    for (const [key, hash] of vectors) expect(murmur2(utf8(key)), key).toBe(hash);
  });

  it("matches kafkajs's default partitioner on empty, non-ASCII and odd-length keys", () => {
    // Computed with kafkajs 2.2.4's src/producer/partitioners/default/murmur2.js (UTF-8 keys),
    // which agreed with this implementation on 500 random keys mixing ASCII, Latin-1,
    // CJK, astral-plane characters and NUL, lengths 0 to 40.
    const vectors: Array<[string, number]> = [
      ["", 275646681],
      ["stream-1", 195483862],
      ["héllo wörld", 439213890],
      ["中文流", 208416706],
      ["emoji-😀", -1225718728],
      ["𝄞clef", -681760791],
      ["sensor:42.temp_c", -1523416137],
      ["abcd", -1323649548],
    ];
    for (const [key, hash] of vectors) expect(murmur2(utf8(key)), key).toBe(hash);
  });

  it("reads bytes at or above 0x80 as unsigned, as Java's `& 0xff` does", () => {
    // The first is in Kafka's Go ports' vectors (generated with the JVM client 1.0.0);
    // the others were computed with kafkajs 2.2.4's murmur2 on the same bytes.
    expect(murmur2(new Uint8Array([12, 42, 56, 24, 109, 111]))).toBe(274204207);
    expect(murmur2(new Uint8Array([0xff, 0xfe, 0x80, 0x81, 0x90]))).toBe(338919950);
    expect(murmur2(new Uint8Array([0x80, 0x80, 0x80, 0x80]))).toBe(-95523324);
  });
});

describe("against @platformatic/kafka", () => {
  it("agrees with the Kafka client's own murmur2 on keys of every kind of character", () => {
    // streamgate picks partitions itself and hands them to the client; another producer of the
    // same keys (the client's compatibilityPartitioner, as Java's) must land in the same ones.
    const keys = [
      "",
      "a",
      "stream-1",
      "acme/sensor-42",
      "héllo wörld",
      "中文流",
      "emoji-😀",
      "\u0000nul",
      ...Array.from({ length: 100 }, (_, i) => `t${i}/s-${i * 7919}`),
    ];
    for (const key of keys) expect(murmur2(utf8(key)), key).toBe(clientMurmur2(Buffer.from(key, "utf8"), false));
  });
});

describe("partitionForKey", () => {
  it("is toPositive(murmur2(key)) modulo the partition count", () => {
    // kafkajs and the Java client: (hash & 0x7fffffff) % n.
    expect(partitionForKey("foobar", 6)).toBe((-790332482 & 0x7fffffff) % 6);
    expect(partitionForKey("21", 12)).toBe((-973932308 & 0x7fffffff) % 12);
    expect(partitionForKey("emoji-😀", 6)).toBe(4);
  });

  it("stays in range for every partition count, including keys whose hash is negative", () => {
    const keys = ["21", "foobar", "abc", "", "中文流", ...Array.from({ length: 200 }, (_, i) => `stream-${i}`)];
    expect(keys.some((key) => murmur2(utf8(key)) < 0)).toBe(true);
    for (const partitions of [1, 2, 3, 7, 64, 1000]) {
      for (const key of keys) {
        const partition = partitionForKey(key, partitions);
        expect(Number.isInteger(partition)).toBe(true);
        expect(partition).toBeGreaterThanOrEqual(0);
        expect(partition).toBeLessThan(partitions);
      }
    }
  });

  it("hashes a key's UTF-8 bytes whatever its characters and length (ASCII keys skip the encoder)", () => {
    const keys = [
      "",
      "a",
      "ab",
      "abc",
      "abcd",
      "del\u007f",
      "caf\u00e9",
      "\u0080",
      "x".repeat(256),
      "y".repeat(257),
      `${"z".repeat(255)}\u00e9`,
    ];
    for (const key of keys) {
      expect(partitionForKey(key, 1000), JSON.stringify(key)).toBe((murmur2(utf8(key)) & 0x7fffffff) % 1000);
    }
    // A short ASCII key after a longer one: no byte of the longer one is hashed.
    expect(partitionForKey("ab", 1000)).toBe((murmur2(utf8("ab")) & 0x7fffffff) % 1000);
  });

  it("spreads many keys over every partition", () => {
    const used = new Set(Array.from({ length: 500 }, (_, i) => partitionForKey(`stream-${i}`, 8)));
    expect(used.size).toBe(8);
  });
});
