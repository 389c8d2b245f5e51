/**
 * The per-peer bounds' keys and memory: an address counts as its peer group
 * (IPv4 on its own, IPv6 by its /64, so one host with a /64 cannot spread
 * over 2^64 connection allowances and buckets), and the peer buckets are
 * bounded in number however many addresses come (the oldest made is forgotten
 * and comes back full).
 */
import { describe, expect, it } from "vitest";
import { boundedLocalBuckets } from "../src/guard/limits/local-buckets.js";
import { peerGroup } from "../src/rpc/connection-admission.js";

describe("peerGroup", () => {
  it.each([
    ["10.0.0.1", "10.0.0.1"],
    ["::ffff:10.0.0.1", "10.0.0.1"],
    ["2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"],
    ["2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"],
    ["2001:db8::1", "2001:db8:0:0::/64"],
    ["2001:0db8:0001::", "2001:db8:1:0::/64"],
    ["::1", "0:0:0:0::/64"],
    ["fe80::1%eth0", "fe80:0:0:0::/64"],
  ])("%s counts as %s", (address, group) => {
    expect(peerGroup(address)).toBe(group);
  });
});

describe("boundedLocalBuckets", () => {
  it("keeps at most maxBuckets: making one more forgets the oldest, which comes back full", async () => {
    const buckets = boundedLocalBuckets(2);
    const rule = { rps: 1, burst: 1 };
    const take = async (key: string) => (await buckets.take([{ key, bucket: rule }])).refusedAt === -1;
    try {
      expect(await take("a")).toBe(true);
      expect(await take("a")).toBe(false); // empty: refused
      expect(await take("b")).toBe(true);
      expect(await take("a")).toBe(false); // still kept (2 buckets)
      expect(await take("c")).toBe(true); // a third: "a", the oldest, is forgotten
      expect(await take("b")).toBe(false); // "b" kept
      expect(await take("a")).toBe(true); // "a" made again, full
    } finally {
      await buckets.close();
    }
  });
});
