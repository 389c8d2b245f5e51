/**
 * Authentication and authorization of every call, on every protocol: a
 * credential from `x-api-key` or `authorization: Bearer`, checked against the
 * API keys (or verified as a JWT), and the principal put in the call's context
 * for the log line (and, later, limits). Services listed as open (health and
 * reflection by default) need none; admin services need the admin role.
 */
import type { Interceptor } from "@connectrpc/connect";
import type { ApiKeyStore, Principal } from "../auth/api-keys.js";
import type { JwtVerifier } from "../auth/jwt.js";
import { invalidCredential, missingCredential, permissionDenied } from "../errors.js";
import { PRINCIPAL } from "../request-context.js";

/** What the interceptor needs. */
export interface AuthOptions {
  keys: ApiKeyStore;
  /** Present when JWT is configured. */
  jwt: JwtVerifier | undefined;
  /** Services callable without a credential. */
  openServices: ReadonlySet<string>;
  /** Services only the admin role may call. */
  adminServices: ReadonlySet<string>;
}

/** Three base64url parts: a compact JWS. */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** The credential sent in `x-api-key`, else in `authorization: Bearer <credential>`; undefined if neither. */
export function credentialFrom(header: Pick<Headers, "get">): { value: string; bearer: boolean } | undefined {
  return credentialOf(header.get("x-api-key"), header.get("authorization"));
}

/** {@link credentialFrom}, given the two headers' values (null or undefined when absent). */
export function credentialOf(
  apiKey: string | null | undefined,
  authorization: string | null | undefined,
): { value: string; bearer: boolean } | undefined {
  if (apiKey != null && apiKey.trim() !== "") return { value: apiKey.trim(), bearer: false };
  const bearer = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? "");
  return bearer ? { value: bearer[1]!, bearer: true } : undefined;
}

/** Throws PERMISSION_DENIED when `principal` may not call `service`. */
export function authorize(principal: Principal, service: string, adminServices: ReadonlySet<string>): void {
  if (adminServices.has(service) && principal.role !== "admin") throw permissionDenied(principal.client, service);
}

/**
 * The principal a credential stands for, or undefined: synchronous for an API
 * key (a digest lookup), a promise for a JWT (verified by jose).
 */
export type Identify = (credential: { value: string; bearer: boolean }) => Principal | undefined | Promise<Principal | undefined>;

/** Identifies credentials against `keys`, and as JWTs with `jwt` when configured and the credential is shaped as one. */
export function createIdentify(keys: ApiKeyStore, jwt: JwtVerifier | undefined): Identify {
  return (credential) =>
    credential.bearer && jwt && JWT_SHAPE.test(credential.value) ? jwt(credential.value) : keys.lookup(credential.value);
}

/**
 * Creates the auth interceptor. A call the edge already authenticated
 * (src/edge-auth.ts, which puts the principal in the context) is only
 * authorized here, so a credential is verified once; a call that did not come
 * through the edge (an in-process router transport) is authenticated here.
 */
export function authenticate(options: AuthOptions): Interceptor {
  const { keys, jwt, openServices, adminServices } = options;
  const identify = createIdentify(keys, jwt);
  return (next) => async (request) => {
    const service = request.service.typeName;
    if (openServices.has(service)) return next(request);
    const verified = request.contextValues.get(PRINCIPAL);
    if (verified) {
      authorize(verified, service, adminServices);
      return next(request);
    }
    const credential = credentialFrom(request.header);
    if (!credential) throw missingCredential();
    const principal = await identify(credential);
    if (!principal) throw invalidCredential();
    authorize(principal, service, adminServices);
    request.contextValues.set(PRINCIPAL, principal);
    return next(request);
  };
}
