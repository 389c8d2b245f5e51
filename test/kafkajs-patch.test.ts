/**
 * kafkajs 2.2.4 is installed with streamgate's patch (patches/, applied by
 * patch-package at npm install): its encoder writes varints in place into
 * buffers it does not zero, a record's headers go straight into the record's
 * encoder, and a produce batch is grouped by partition in one pass. None of
 * that may change a byte on the wire, nor what a record decodes to (its
 * headers are built in place, and a produce request names the fields it
 * encodes instead of spreading each message). The expected bytes and records
 * below were written by the unpatched kafkajs 2.2.4; the broker tests
 * (kafka-*.test.ts) then show a real Kafka accepting and returning what the
 * patched client writes.
 */
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";

const require = createRequire(import.meta.url);
type Encoded = { buffer: Buffer };
interface Encoder extends Encoded {
  writeVarInt(value: number): Encoder;
  writeVarLong(value: number): Encoder;
}
const Record = require("kafkajs/src/protocol/recordBatch/record/v0/index.js") as (record: object) => Encoded;
const EncoderClass = require("kafkajs/src/protocol/encoder.js") as new () => Encoder;
const groupMessagesPerPartition = require("kafkajs/src/producer/groupMessagesPerPartition.js") as (args: {
  topic: string;
  partitionMetadata: object[];
  messages: Array<{ partition: number; key: string }>;
  partitioner: (args: { message: { partition: number } }) => number;
}) => Record<string, Array<{ key: string }>>;

interface Decoder {
  readVarIntBytes(): Buffer;
}
const DecoderClass = require("kafkajs/src/protocol/decoder.js") as new (buffer: Buffer) => Decoder;
const RecordDecoder = require("kafkajs/src/protocol/recordBatch/record/v0/decoder.js") as (
  decoder: Decoder,
  context: object,
) => { offset: string; timestamp: string; headers: Record<string, Buffer | Buffer[]> };
const ProduceRequest = require("kafkajs/src/protocol/requests/produce/v3/request.js") as (args: object) => {
  encode(): Promise<Buffer | { buffer: Buffer }>;
};

const hex = (encoded: Encoded) => encoded.buffer.toString("hex");

describe("kafkajs with streamgate's patch", () => {
  it("encodes records byte for byte as unpatched kafkajs 2.2.4 did", () => {
    // A data record as the ingest path writes it.
    expect(
      hex(
        Record({
          offsetDelta: 0,
          timestampDelta: 0,
          key: Buffer.from("sensor-1"),
          value: Buffer.from('{"t":21.5}'),
          headers: { "content-type": "application/json", "streamgate-send-time": "1795000000000" },
        }),
      ),
    ).toBe(
      "b2010000001073656e736f722d31147b2274223a32312e357d0418636f6e74656e742d74797065206170706c69636174696f6e2f6a736f6e2873747265616d676174652d73656e642d74696d651a31373935303030303030303030",
    );
    // Past the encoder's first buffer (it grows), UTF-8 key, binary and repeated headers.
    expect(
      hex(
        Record({
          offsetDelta: 300,
          timestampDelta: 1234567,
          key: Buffer.from("stream-é"),
          value: Buffer.alloc(700, 0x61),
          headers: { "streamgate-source-cursor": "i-3-42", trace: Buffer.from([0, 255, 128]), multi: ["a", "bé"] },
        }),
      ),
    ).toBe(
      "980c008eda9601d8041273747265616d2dc3a9" +
        "f80a" +
        "61".repeat(700) +
        "083073747265616d676174652d736f757263652d637572736f720c692d332d34320a74726163650600ff800a6d756c746902610a6d756c74690662c3a9",
    );
    // No key, no value (a null is length -1), no headers, a negative timestamp delta.
    expect(hex(Record({ offsetDelta: 5, timestampDelta: -70000, key: null, value: null, headers: {} }))).toBe("1000dfc5080a010100");
  });

  it("decodes a record as unpatched kafkajs 2.2.4 did: a repeated header name as an array, in order", () => {
    const encoded = Record({
      offsetDelta: 2,
      timestampDelta: 10,
      key: Buffer.from("k"),
      value: Buffer.from("v"),
      headers: { multi: ["a", "b", "c"], "content-type": "application/json", single: "p" },
    });
    const body = new DecoderClass(encoded.buffer).readVarIntBytes();
    const record = RecordDecoder(new DecoderClass(body), { firstOffset: "1000", firstTimestamp: "1795000000000", magicByte: 2 });
    expect(record.offset).toBe("1002");
    expect(record.timestamp).toBe("1795000000010");
    expect(Object.keys(record.headers)).toEqual(["multi", "content-type", "single"]);
    const text = (value: Buffer | Buffer[]) => (Array.isArray(value) ? value.map(String) : String(value));
    expect(Object.fromEntries(Object.entries(record.headers).map(([name, value]) => [name, text(value)]))).toEqual({
      multi: ["a", "b", "c"],
      "content-type": "application/json",
      single: "p",
    });
  });

  it("encodes a produce request byte for byte as unpatched kafkajs 2.2.4 did", async () => {
    const request = ProduceRequest({
      acks: -1,
      timeout: 30000,
      compression: 0,
      producerId: 7,
      producerEpoch: 0,
      transactionalId: null,
      topicData: [
        {
          topic: "t",
          partitions: [
            {
              partition: 0,
              firstSequence: 0,
              messages: [
                { key: "a", value: Buffer.from("1"), headers: { h: "x" }, timestamp: "1795000000000", partition: 0 },
                { key: "b", value: Buffer.from("2"), headers: {}, timestamp: "1795000000005", partition: 0 },
              ],
            },
          ],
        },
      ],
    });
    const encoded = await request.encode();
    expect((Buffer.isBuffer(encoded) ? encoded : encoded.buffer).toString("hex")).toBe(
      "ffffffff000075300000000100017400000001000000000000005300000000000000000000004700000000022ece8df9000000000001000001a1ee565e00000001a1ee565e050000000000000007000000000000000000021800000002610231020268027810000a020262023200",
    );
  });

  it("writes varints and varlongs as Kafka's zigzag LEB128", () => {
    const varints = [0, 1, -1, 63, 64, 300, -300, 2 ** 31 - 1, -(2 ** 31)].map((value) => hex(new EncoderClass().writeVarInt(value)));
    expect(varints).toEqual(["00", "02", "01", "7e", "8001", "d804", "d704", "feffffff0f", "ffffffff0f"]);
    const varlongs = [0, -1, 1795000000000, -1795000000000].map((value) => hex(new EncoderClass().writeVarLong(value)));
    expect(varlongs).toEqual(["00", "01", "80f8b2e5bd68", "fff7b2e5bd68"]);
    // Several in one encoder: each written after the last, none over another.
    const encoder = new EncoderClass();
    for (const value of [300, -1, 2 ** 31 - 1]) encoder.writeVarInt(value);
    expect(hex(encoder)).toBe("d80401feffffff0f");
  });

  it("groups a batch by partition, each partition's messages in the order given", () => {
    const messages = Array.from({ length: 1000 }, (_, i) => ({ key: `k${i}`, partition: (i * 7) % 5 }));
    const grouped = groupMessagesPerPartition({
      topic: "t",
      partitionMetadata: [{}],
      messages,
      partitioner: ({ message }) => message.partition,
    });
    expect(Object.keys(grouped).sort()).toEqual(["0", "1", "2", "3", "4"]);
    for (const [partition, group] of Object.entries(grouped)) {
      expect(group.map((message) => message.key)).toEqual(
        messages.filter((message) => String(message.partition) === partition).map((message) => message.key),
      );
    }
    expect(groupMessagesPerPartition({ topic: "t", partitionMetadata: [], messages, partitioner: () => 0 })).toEqual({});
  });
});
