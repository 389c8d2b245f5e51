/**
 * Authentication and authorization of every call, on every protocol: a
 * credential from `x-api-key` or `authorization: Bearer`, checked against the
 * API keys (or verified as a JWT), and the principal and the tenant it acts in
 * put in the call's context. Services listed as open (health and reflection
 * by default) need none; admin services need the admin role; each
 * StreamService method needs its scope (src/guard/auth/scopes.ts).
 */
import type { Interceptor } from "@connectrpc/connect";
import { StreamService } from "../../../gen/streamgate/v1/stream_service_pb.js";
import { type ApiKeyStore, type Principal, TENANT_NAME } from "../../guard/auth/api-keys.js";
import type { JwtVerifier } from "../../guard/auth/jwt.js";
import { METHOD_SCOPE } from "../../guard/auth/scopes.js";
import {
  foreignTenant,
  invalidArgument,
  invalidCredential,
  missingCredential,
  permissionDenied,
  scopeMissing,
} from "../errors.js";
import { PRINCIPAL, TENANT, TENANT_HEADER } from "../request-context.js";

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

/**
 * The tenant `principal` acts in when it calls `method` of `service`: its own,
 * or for the admin role the one it names in the streamgate-tenant header
 * (`namedTenant`; never another by default). Throws PERMISSION_DENIED when the
 * principal may not make the call (an admin service without the admin role,
 * a StreamService method without its scope, another tenant without the admin
 * role), INVALID_ARGUMENT for a tenant name that cannot be one.
 */
export function authorize(
  principal: Principal,
  service: string,
  method: string,
  adminServices: ReadonlySet<string>,
  namedTenant: string | null | undefined,
): string {
  if (adminServices.has(service) && principal.role !== "admin") throw permissionDenied(principal.client, service);
  const scope = service === StreamService.typeName ? METHOD_SCOPE[method] : undefined;
  if (scope !== undefined && !principal.scopes.has(scope)) throw scopeMissing(principal.client, method, scope);
  if (namedTenant == null || namedTenant === "" || namedTenant === principal.tenant) return principal.tenant;
  if (principal.role !== "admin") throw foreignTenant(principal.client);
  if (!TENANT_NAME.test(namedTenant))
    throw invalidArgument(`${TENANT_HEADER} must be a tenant name: 1 to 64 of A-Z a-z 0-9 . _ -`);
  return namedTenant;
}

/**
 * The principal a credential stands for, or undefined: synchronous for an API
 * key (a digest lookup), a promise for a JWT (verified by jose).
 */
export type Identify = (credential: {
  value: string;
  bearer: boolean;
}) => Principal | undefined | Promise<Principal | undefined>;

/** Identifies credentials against `keys`, and as JWTs with `jwt` when configured and the credential is shaped as one. */
export function createIdentify(keys: ApiKeyStore, jwt: JwtVerifier | undefined): Identify {
  return (credential) =>
    credential.bearer && jwt && JWT_SHAPE.test(credential.value)
      ? jwt(credential.value)
      : keys.lookup(credential.value);
}

/**
 * Creates the auth interceptor. A call the edge already authenticated and
 * authorized (src/guard/edge-auth.ts, which puts the principal and its tenant in the
 * context) passes; a call that did not come through the edge (an in-process
 * router transport) is authenticated and authorized here.
 */
export function authenticate(options: AuthOptions): Interceptor {
  const { keys, jwt, openServices, adminServices } = options;
  const identify = createIdentify(keys, jwt);
  return (next) => async (request) => {
    const service = request.service.typeName;
    if (openServices.has(service)) return next(request);
    let principal = request.contextValues.get(PRINCIPAL);
    // Authorized at the edge already (src/guard/edge-auth.ts): the tenant it decided is in the context.
    if (principal && request.contextValues.get(TENANT) !== "") return next(request);
    if (!principal) {
      const credential = credentialFrom(request.header);
      if (!credential) throw missingCredential();
      principal = await identify(credential);
      if (!principal) throw invalidCredential();
      request.contextValues.set(PRINCIPAL, principal);
    }
    const tenant = authorize(principal, service, request.method.name, adminServices, request.header.get(TENANT_HEADER));
    request.contextValues.set(TENANT, tenant);
    return next(request);
  };
}
