/**
 * What the HTTP layer knows about a call that connect's handler context does
 * not carry: the peer's address and the request id. The app puts them in each
 * call's context values; interceptors read them.
 */
import { randomUUID } from "node:crypto";
import { type ContextValues, createContextKey, createContextValues } from "@connectrpc/connect";
import type { Principal } from "../guard/auth/api-keys.js";

/** The remote address of the connection ("" when unknown). */
export const PEER = createContextKey("", { description: "peer address" });

/** The call's request id: the client's x-request-id when well formed, else generated. */
export const REQUEST_ID = createContextKey("", { description: "request id" });

/** Who is calling, set by the auth interceptor (undefined on open services such as health). */
export const PRINCIPAL = createContextKey<Principal | undefined>(undefined, { description: "authenticated principal" });

/** The header carrying the request id, both ways. */
export const REQUEST_ID_HEADER = "x-request-id";

const WELL_FORMED_ID = /^[A-Za-z0-9._-]{1,128}$/;

/** The client's request id when it is 1–128 of [A-Za-z0-9._-], else a new UUID (never echo arbitrary bytes). */
export function requestIdFrom(header: string | string[] | undefined): string {
  const given = Array.isArray(header) ? header[0] : header;
  return given !== undefined && WELL_FORMED_ID.test(given) ? given : randomUUID();
}

/** The context values of one call. */
export function callContext(peer: string, requestId: string): ContextValues {
  return createContextValues().set(PEER, peer).set(REQUEST_ID, requestId);
}

/** The tenant whose streams a StreamService call works with: the credential's, or the one an admin names (auth interceptor). */
export const TENANT = createContextKey("", { description: "tenant" });

/** The request header in which an admin credential names the tenant to act in. */
export const TENANT_HEADER = "streamgate-tenant";
