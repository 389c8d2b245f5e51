/**
 * Text that is not valid UTF-8 is a malformed request: INVALID_ARGUMENT naming
 * the field, like any other bad field.
 *
 * protobuf-es refuses invalid UTF-8 in proto3 string fields while decoding, but
 * connect-es reports every binary decoding failure as INTERNAL ("parse binary:
 * ..."), before any interceptor or handler could map it. So decoding is
 * configured to let such a string through, marked with a lone surrogate (which
 * no valid UTF-8 decodes to), and validation refuses every string that is not
 * well formed. That check also covers JSON data: protobuf-es refuses a lone
 * surrogate escape such as "\ud800" in a string field while parsing JSON, but
 * not inside a google.protobuf.Value.
 *
 * A marked string must never be echoed: connect-es percent-encodes gRPC error
 * messages with encodeURIComponent, which throws on a lone surrogate and leaves
 * the call hanging. Validation refuses marked strings without quoting them, and
 * errors.ts's mapping makes every error message well formed.
 */
import { configureTextEncoding } from "@bufbuild/protobuf/wire";

/** Matches an unpaired surrogate (with the u flag, a pair is one code point and does not match). */
const LONE_SURROGATE = /\p{Surrogate}/u;
const LONE_SURROGATES = /\p{Surrogate}/gu;
const MARK = "\uDC80";

/**
 * Makes protobuf-es decode invalid UTF-8 in verified string fields as marked
 * text instead of failing the whole message. Process-wide; idempotent.
 */
export function markInvalidUtf8(): void {
  const encoder = new TextEncoder();
  const lenient = new TextDecoder("utf-8", { ignoreBOM: true });
  const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  configureTextEncoding({
    encodeUtf8: (text) => encoder.encode(text),
    encodeUtf8Into: (text, dest) => encoder.encodeInto(text, dest),
    decodeUtf8(bytes, verify) {
      if (!verify) return lenient.decode(bytes);
      try {
        return strict.decode(bytes);
      } catch {
        return lenient.decode(bytes) + MARK;
      }
    },
    checkUtf8: isWellFormed,
  });
}

/** Whether `text` can be encoded as UTF-8 (it has no unpaired surrogate). */
export function isWellFormed(text: string): boolean {
  return !LONE_SURROGATE.test(text);
}

/** `text` with each unpaired surrogate replaced by U+FFFD. */
export function toWellFormed(text: string): string {
  return text.replace(LONE_SURROGATES, "\uFFFD");
}
