/**
 * API keys: parsed from `API_KEYS`, `API_KEYS_FILE` and `ADMIN_API_KEYS`, held
 * only as SHA-256 digests, and looked up in constant time.
 *
 * An entry is `name[@tenant]:key[ scope ...]`: the key's name (the client),
 * optionally the tenant it belongs to (else a tenant of its own, named by the
 * key's name), the key (or `sha256:<64 hex>`), and optionally the scopes it is
 * limited to, separated by spaces (none: every scope).
 *
 * Nothing here ever puts a key, or text that might be part of one, into a
 * message: a malformed entry is named by its position, not its content.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { ALL_SCOPES, isScope, SCOPES, type Scope } from "./scopes.js";

/** What a credential may do: `admin` may also call the admin services. */
export type Role = "user" | "admin";

/** One configured key: its name (the client identity), tenant, role, scopes and the SHA-256 of the key. */
export interface ApiKeyEntry {
  name: string;
  tenant: string;
  role: Role;
  scopes: ReadonlySet<Scope>;
  digest: Buffer;
}

/**
 * Who made a call: the client's name (a key's name or a JWT's `sub`), the
 * tenant whose streams it works with, its role and scopes, and whether its
 * names are configured ones (API keys), which alone may be metric labels.
 */
export interface Principal {
  client: string;
  tenant: string;
  role: Role;
  scopes: ReadonlySet<Scope>;
  configured: boolean;
}

const NAME = /^[A-Za-z0-9._-]{1,64}$/;
/** A tenant's name: as a key's name (it is one, for a key without a tenant), and never containing "/", which joins it to stream ids. */
export const TENANT_NAME = NAME;
/** Visible ASCII only: a key travels in an HTTP header, and `,` separates API_KEYS entries. */
const KEY = /^[\x21-\x7e]{1,4096}$/;
const HASHED = /^sha256:([0-9a-fA-F]{64})$/;

/** The SHA-256 digest of a key. */
export function sha256(key: string): Buffer {
  return createHash("sha256").update(key, "utf8").digest();
}

/**
 * Parses one `name[@tenant]:key[ scope ...]` entry (the key may be
 * `sha256:<64 hex>`); `where` names the entry in a problem ("API_KEYS entry
 * 2", "API_KEYS_FILE line 7").
 */
function parseEntry(text: string, where: string, role: Role, problems: string[]): ApiKeyEntry | undefined {
  const colon = text.indexOf(":");
  if (colon < 0) {
    problems.push(`${where} is not name:key`);
    return undefined;
  }
  // "k:key streams:read,streams:write" in API_KEYS splits into a second entry that is a scope: not a key named "streams".
  if (isScope(text)) {
    problems.push(`${where} is a scope: scopes follow their key separated by spaces, not commas`);
    return undefined;
  }
  const head = text.slice(0, colon).trim();
  const [key = "", ...scopeWords] = text
    .slice(colon + 1)
    .trim()
    .split(/[ \t]+/);
  const at = head.indexOf("@");
  const name = at < 0 ? head : head.slice(0, at);
  const tenant = at < 0 ? name : head.slice(at + 1);
  if (!NAME.test(name)) {
    // Not echoed: a missing name may leave part of a key before the colon.
    problems.push(`${where}: the name must be 1 to 64 of A-Z a-z 0-9 . _ -`);
    return undefined;
  }
  if (!TENANT_NAME.test(tenant)) {
    problems.push(`${where} (${JSON.stringify(name)}): the tenant after "@" must be 1 to 64 of A-Z a-z 0-9 . _ -`);
    return undefined;
  }
  const unknown = scopeWords.filter((word) => !isScope(word));
  if (unknown.length > 0) {
    // Scopes come after the key, so a word that is not one may be part of a key: not echoed.
    problems.push(
      `${where} (${JSON.stringify(name)}): after the key come only scopes (${SCOPES.join(", ")}), separated by spaces`,
    );
    return undefined;
  }
  const scopes: ReadonlySet<Scope> = scopeWords.length === 0 ? ALL_SCOPES : new Set(scopeWords as Scope[]);
  const hashed = HASHED.exec(key);
  if (hashed) return { name, tenant, role, scopes, digest: Buffer.from(hashed[1]!, "hex") };
  if (key.startsWith("sha256:")) {
    problems.push(`${where} (${JSON.stringify(name)}): a sha256: key must be 64 hexadecimal digits`);
    return undefined;
  }
  if (!KEY.test(key)) {
    problems.push(`${where} (${JSON.stringify(name)}): the key must be 1 to 4096 visible ASCII characters`);
    return undefined;
  }
  return { name, tenant, role, scopes, digest: sha256(key) };
}

/** Parses a comma-separated list of `name[@tenant]:key[ scope ...]` entries, as in API_KEYS and ADMIN_API_KEYS. */
export function parseKeyList(text: string, variable: string, role: Role, problems: string[]): ApiKeyEntry[] {
  const entries: ApiKeyEntry[] = [];
  text.split(",").forEach((item, index) => {
    if (item.trim() === "") return;
    const entry = parseEntry(item.trim(), `${variable} entry ${index + 1}`, role, problems);
    if (entry) entries.push(entry);
  });
  return entries;
}

/** Parses a keys file: one `name[@tenant]:key[ scope ...]` per line; blank lines and lines starting with `#` are skipped. */
export function parseKeyFile(text: string, variable: string, role: Role, problems: string[]): ApiKeyEntry[] {
  const entries: ApiKeyEntry[] = [];
  text.split(/\r?\n/).forEach((line, index) => {
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#")) return;
    const entry = parseEntry(trimmed, `${variable} line ${index + 1}`, role, problems);
    if (entry) entries.push(entry);
  });
  return entries;
}

/** Reports names used twice and keys given to two names (without saying what the key is). */
export function checkUnique(entries: ApiKeyEntry[], problems: string[]): void {
  const names = new Set<string>();
  const digests = new Map<string, string>();
  for (const entry of entries) {
    if (names.has(entry.name)) problems.push(`API key name ${JSON.stringify(entry.name)} is used more than once`);
    names.add(entry.name);
    const hex = entry.digest.toString("hex");
    const other = digests.get(hex);
    if (other !== undefined && other !== entry.name) {
      problems.push(`API keys ${JSON.stringify(other)} and ${JSON.stringify(entry.name)} are the same key`);
    }
    digests.set(hex, entry.name);
  }
}

/** The configured keys, looked up by the digest of a presented key. */
export class ApiKeyStore {
  constructor(private readonly entries: readonly ApiKeyEntry[]) {}

  /**
   * The principal whose key is `key`, or undefined. Every entry is compared,
   * with timingSafeEqual on fixed-length digests, whether or not one already
   * matched: the time taken says nothing about the key or which entry it is.
   */
  lookup(key: string): Principal | undefined {
    const digest = sha256(key);
    let found: ApiKeyEntry | undefined;
    for (const entry of this.entries) {
      const same = timingSafeEqual(entry.digest, digest);
      found = same ? entry : found;
    }
    return (
      found && { client: found.name, tenant: found.tenant, role: found.role, scopes: found.scopes, configured: true }
    );
  }
}
