/**
 * A stream's key: its tenant and its id, as `<tenant>/<stream id>`. It is the
 * key of the stream's records on every topic (so a stream's records keep their
 * order on one partition, and kcat shows whose they are) and of everything
 * kept per stream in memory. Neither part can contain "/" (tenant names and
 * stream ids are checked), so the pair is unambiguous.
 */

/** `<tenant>/<stream id>`. */
export type StreamKey = string;

/** The key of `streamId` in `tenant`. */
export function streamKey(tenant: string, streamId: string): StreamKey {
  return `${tenant}/${streamId}`;
}

/**
 * The tenant and stream id of a record's key, or undefined for a key that is
 * not a stream key (a record stored before tenants existed, or a foreign
 * producer's).
 */
export function splitStreamKey(key: string): { tenant: string; streamId: string } | undefined {
  const slash = key.indexOf("/");
  if (slash <= 0 || slash === key.length - 1) return undefined;
  return { tenant: key.slice(0, slash), streamId: key.slice(slash + 1) };
}

/** The stream id part of a stream key (the whole key when it is not one). */
export function streamIdOf(key: string): string {
  return key.slice(key.indexOf("/") + 1);
}

/** The tenant part of a stream key ("" when it is not one). */
export function tenantOf(key: string): string {
  const slash = key.indexOf("/");
  return slash < 0 ? "" : key.slice(0, slash);
}
