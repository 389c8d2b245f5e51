/**
 * Checks of client input, each throwing INVALID_ARGUMENT with a message that
 * names the field and the rule, so bad input changes nothing and says why.
 */
import { type JsonValue, toJson } from "@bufbuild/protobuf";
import { type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import { invalidInput, payloadTooLarge, quote } from "../common/domain-error.js";
import { isWellFormed } from "../rpc/utf8.js";
import { type Payload, RESERVED_HEADER_PREFIX } from "../topics/record-format.js";

const STREAM_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const HEADER_NAME = /^[A-Za-z0-9._-]{1,128}$/;
const LABEL_KEY = /^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/;
const MAX_EVENT_ID = 128;
const MAX_HEADERS = 32;
const MAX_HEADER_VALUE = 1024;
const MAX_LABELS = 32;
const MAX_LABEL_VALUE = 256;
const encoder = new TextEncoder();

/**
 * Refuses text that is not valid UTF-8 (see utf8.ts), before any other check
 * would quote it back mangled.
 */
export function requireWellFormed(value: string, field: string): string {
  if (!isWellFormed(value)) throw invalidInput(`${field} is not valid UTF-8`);
  return value;
}

/** Checks a stream id in a request field that must be set. */
export function requireStreamId(streamId: string, field = "stream_id"): string {
  if (streamId === "") throw invalidInput(`${field} is required`);
  requireWellFormed(streamId, field);
  if (!STREAM_ID.test(streamId)) {
    throw invalidInput(
      `${field} ${quote(streamId)} must be 1 to 128 characters of letters, digits, ".", "_", ":" and "-"`,
    );
  }
  return streamId;
}

/** Checks an optional idempotency key. */
export function checkEventId(eventId: string): string {
  requireWellFormed(eventId, "event_id");
  if (eventId.length > MAX_EVENT_ID) {
    throw invalidInput(`event_id is ${eventId.length} characters; at most ${MAX_EVENT_ID} are allowed`);
  }
  return eventId;
}

/** Checks client record headers: names, sizes, and the reserved prefix. */
export function checkHeaders(headers: Record<string, string>): Record<string, string> {
  const names = Object.keys(headers);
  if (names.length > MAX_HEADERS) throw invalidInput(`at most ${MAX_HEADERS} headers are allowed`);
  for (const name of names) {
    requireWellFormed(name, "a header name");
    requireWellFormed(headers[name]!, "a header value");
    if (!HEADER_NAME.test(name)) {
      throw invalidInput(`header name ${quote(name)} must be 1 to 128 letters, digits, ".", "_" or "-"`);
    }
    if (name.toLowerCase().startsWith(RESERVED_HEADER_PREFIX)) {
      throw invalidInput(`header ${quote(name)} uses the reserved prefix "${RESERVED_HEADER_PREFIX}"`);
    }
    if (headers[name]!.length > MAX_HEADER_VALUE) {
      throw invalidInput(`header ${quote(name)} is longer than ${MAX_HEADER_VALUE} characters`);
    }
  }
  return headers;
}

/** Checks stream labels (Kubernetes-style keys). */
export function checkLabels(labels: Record<string, string>): Record<string, string> {
  const keys = Object.keys(labels);
  if (keys.length > MAX_LABELS) throw invalidInput(`at most ${MAX_LABELS} labels are allowed`);
  for (const key of keys) {
    requireWellFormed(key, "a label key");
    requireWellFormed(labels[key]!, "a label value");
    if (!LABEL_KEY.test(key)) {
      throw invalidInput(
        `label key ${quote(key)} must be 1 to 63 lowercase letters, digits, ".", "_" or "-", starting and ending with a letter or digit`,
      );
    }
    if (labels[key]!.length > MAX_LABEL_VALUE) {
      throw invalidInput(`label ${quote(key)} is longer than ${MAX_LABEL_VALUE} characters`);
    }
  }
  return labels;
}

/**
 * Checks the length (and the text) of a CEL expression before it is parsed;
 * `max` is CEL_MAX_EXPRESSION_LENGTH.
 */
export function checkExpressionLength(expression: string, field: string, max: number): string {
  requireWellFormed(expression, field);
  if (expression.length > max) {
    throw invalidInput(`${field} is longer than ${max} characters (CEL_MAX_EXPRESSION_LENGTH)`);
  }
  return expression;
}

/** A request payload as generated: JSON `data` or `raw` bytes. */
export type RequestPayload =
  | { case: "data"; value: Value }
  | { case: "raw"; value: Uint8Array }
  | { case: undefined; value?: undefined };

/**
 * Turns a request payload into the bytes stored on the broker, refusing a
 * missing or empty payload and one over `maxBytes`.
 */
export function encodePayload(payload: RequestPayload, maxBytes: number): Payload {
  switch (payload.case) {
    case "raw":
      if (payload.value.length === 0) throw invalidInput("raw is empty; send at least one byte");
      if (payload.value.length > maxBytes) throw payloadTooLarge(payload.value.length, maxBytes);
      return { kind: "raw", bytes: payload.value };
    case "data": {
      const kind = payload.value.kind.case;
      if (kind === undefined || kind === "nullValue") {
        throw invalidInput("data is empty; send a JSON object, list, string, number or bool");
      }
      let json: JsonValue;
      try {
        json = toJson(ValueSchema, payload.value);
      } catch {
        // Binary clients can send what JSON cannot hold, such as NaN.
        throw invalidInput("data cannot be represented as JSON (NaN or Infinity?)");
      }
      if (!jsonIsWellFormed(json)) throw invalidInput("data contains text that is not valid UTF-8");
      const text = JSON.stringify(json);
      const bytes = encoder.encode(text);
      if (bytes.length > maxBytes) throw payloadTooLarge(bytes.length, maxBytes);
      return { kind: "json", bytes };
    }
    default:
      throw invalidInput("a payload is required: set data (JSON) or raw (bytes)");
  }
}

/** Whether every string of a JSON value, keys included, is well formed. */
function jsonIsWellFormed(value: JsonValue): boolean {
  if (typeof value === "string") return isWellFormed(value);
  if (Array.isArray(value)) return value.every(jsonIsWellFormed);
  if (value !== null && typeof value === "object") {
    return Object.entries(value).every(([key, item]) => isWellFormed(key) && jsonIsWellFormed(item));
  }
  return true;
}
