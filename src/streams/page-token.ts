/**
 * ListStreams pages: a page token is opaque to clients (base64url of the last
 * stream id of the previous page), so its form may change without breaking them.
 */
import { invalidInput } from "../common/domain-error.js";
import { requireStreamId } from "./validation.js";

/** Streams per page when the request says 0. */
export const DEFAULT_PAGE_SIZE = 100;
/** The most streams per page. */
export const MAX_PAGE_SIZE = 1000;

/** The page size a request asks for: 0 means the default; more than the maximum is refused. */
export function pageSizeOf(requested: number): number {
  if (requested === 0) return DEFAULT_PAGE_SIZE;
  if (requested > MAX_PAGE_SIZE)
    throw invalidInput(`page_size must be at most ${MAX_PAGE_SIZE} (0 for ${DEFAULT_PAGE_SIZE})`);
  return requested;
}

/** The token of the page after the one ending with `lastStreamId`. */
export function encodePageToken(lastStreamId: string): string {
  return Buffer.from(lastStreamId, "utf8").toString("base64url");
}

/** The stream id a page token continues after ("" for the first page); INVALID_ARGUMENT for a token this server did not give. */
export function decodePageToken(token: string): string {
  if (token === "") return "";
  const text = /^[A-Za-z0-9_-]{1,200}$/.test(token) ? Buffer.from(token, "base64url").toString("utf8") : "";
  try {
    return requireStreamId(text, "page_token");
  } catch {
    throw invalidInput("page_token is not one a ListStreams page gave");
  }
}
