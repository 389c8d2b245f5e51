/**
 * Each client's credential and the identity the server will know it by: an API
 * key sent as x-api-key (the server knows the client by the key's name, which
 * the simulator cannot see, so it says "key 2"), or an HS256 JWT minted here
 * with `sub` sim-<client> sent as a bearer token (the server knows it by sub).
 */
import { SignJWT } from "jose";
import type { Credentials } from "./options.js";

/** How one client authenticates. */
export interface ClientCredential {
  /** The header that carries it. */
  header: "x-api-key" | "authorization";
  /** Its value (a secret: never print it). */
  value: string;
  /** What the credential is, for people: "key 2" or "sub sim-2". */
  identity: string;
  /** "key" or "token", for messages. */
  kind: "key" | "token";
}

/** Tokens outlive the run by this much, so a slow end (draining calls) is still authenticated. */
const TOKEN_MARGIN_SECONDS = 300;

/** The credentials of clients 1 to `clients` for a run of `durationSeconds`. */
export async function clientCredentials(
  credentials: Credentials,
  clients: number,
  durationSeconds: number,
): Promise<ClientCredential[]> {
  if (credentials.kind === "keys") {
    const { keys } = credentials;
    return Array.from({ length: clients }, (_, i) => ({
      header: "x-api-key" as const,
      value: keys[i % keys.length]!,
      identity: `key ${(i % keys.length) + 1}`,
      kind: "key" as const,
    }));
  }
  const secret = new TextEncoder().encode(credentials.secret);
  const expires = Math.ceil(Date.now() / 1000 + durationSeconds + TOKEN_MARGIN_SECONDS);
  return Promise.all(
    Array.from({ length: clients }, async (_, i) => {
      const sub = `sim-${i + 1}`;
      let jwt = new SignJWT({})
        .setProtectedHeader({ alg: "HS256", typ: "JWT" })
        .setSubject(sub)
        .setIssuedAt()
        .setExpirationTime(expires);
      if (credentials.issuer !== undefined) jwt = jwt.setIssuer(credentials.issuer);
      if (credentials.audience !== undefined) jwt = jwt.setAudience(credentials.audience);
      return {
        header: "authorization" as const,
        value: `Bearer ${await jwt.sign(secret)}`,
        identity: `sub ${sub}`,
        kind: "token" as const,
      };
    }),
  );
}
