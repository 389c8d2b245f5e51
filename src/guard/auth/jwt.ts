/**
 * JWT bearer tokens (jose): HS256 with a shared secret and/or RS256/ES256 with
 * public keys from a local JWKS file. `exp` and `nbf` are enforced with 30 s of
 * clock tolerance; `sub` is the client id; a configurable claim (JWT_TENANT_CLAIM,
 * else `sub`) names the tenant; the OAuth `scope` claim limits what the token
 * may do; a configurable claim grants admin.
 */
import { createLocalJWKSet, type JSONWebKeySet, type JWTPayload, jwtVerify } from "jose";
import { type Principal, TENANT_NAME } from "./api-keys.js";
import { ALL_SCOPES, isScope, type Scope } from "./scopes.js";

/** JWT verification settings (see README "Authentication"). */
export interface JwtConfig {
  /** The HS256 shared secret, when one is configured. */
  hs256Secret: Uint8Array | undefined;
  /** Public keys for RS256/ES256, when a JWKS file is configured. */
  jwks: JSONWebKeySet | undefined;
  /** Required `iss`, when set. */
  issuer: string | undefined;
  /** Required `aud`, when set. */
  audience: string | undefined;
  /** The claim naming the token's tenant; without it, the tenant is the token's `sub`. */
  tenantClaim: string;
  /** The claim that grants the admin role... */
  adminClaim: string;
  /** ...when it equals (or, as an array, contains) this value. */
  adminValue: string;
}

/** Clock skew allowed for `exp` and `nbf`. */
export const CLOCK_TOLERANCE_SECONDS = 30;

/** Verifies a token: its principal, or undefined when it is not valid (for any reason). */
export type JwtVerifier = (token: string) => Promise<Principal | undefined>;

/** Creates a verifier for `config`. */
export function createJwtVerifier(config: JwtConfig): JwtVerifier {
  const { hs256Secret } = config;
  const jwks = config.jwks && createLocalJWKSet(config.jwks);
  const algorithms = [...(hs256Secret ? ["HS256"] : []), ...(jwks ? ["RS256", "ES256"] : [])];
  return async (token) => {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(
        token,
        // The header's alg picks the key: only the algorithms configured are accepted (no "none", no confusion).
        async (header, jws) => (header.alg === "HS256" ? hs256Secret! : jwks!(header, jws)),
        {
          algorithms,
          issuer: config.issuer,
          audience: config.audience,
          clockTolerance: CLOCK_TOLERANCE_SECONDS,
        },
      ));
    } catch {
      return undefined; // expired, not yet valid, bad signature, unknown key, malformed: all "invalid credential"
    }
    if (typeof payload.sub !== "string" || payload.sub === "") return undefined;
    const tenant = payload[config.tenantClaim] ?? payload.sub;
    // A tenant joins stream ids on the broker: a name that cannot be one is no credential.
    if (typeof tenant !== "string" || !TENANT_NAME.test(tenant)) return undefined;
    const scopes = scopesOf(payload.scope);
    if (!scopes) return undefined;
    const claim = payload[config.adminClaim];
    const admin = Array.isArray(claim) ? claim.includes(config.adminValue) : claim === config.adminValue;
    return { client: payload.sub, tenant, role: admin ? "admin" : "user", scopes, configured: false };
  };
}

/**
 * The streamgate scopes of an OAuth `scope` claim (space-separated, or an
 * array of strings as some issuers write it): every scope when the claim is
 * absent; only the streamgate scopes it names when present (others, for other
 * services, are ignored); undefined when it is neither.
 */
function scopesOf(claim: unknown): ReadonlySet<Scope> | undefined {
  if (claim === undefined) return ALL_SCOPES;
  const words = typeof claim === "string" ? claim.split(" ") : claim;
  if (!Array.isArray(words) || !words.every((word) => typeof word === "string")) return undefined;
  return new Set(words.filter(isScope));
}
