/**
 * Watch tickets: what a browser passes as `?ticket=` where it cannot set a
 * header (EventSource, WebSocket). A ticket is narrow and short-lived: one
 * stream of the caller's tenant, to watch it (and, if asked and the caller
 * may, to send to it over the same WebSocket), usable to connect for
 * WATCH_TICKET_TTL_MS (60 s by default). It is an HS256 JWT (jose) signed
 * with WATCH_TICKET_SECRET, so any instance sharing the secret accepts it;
 * without one, each instance signs with a random secret of its own. A
 * long-lived key never goes in a URL, and tickets never reach logs.
 */
import { randomBytes } from "node:crypto";
import { jwtVerify, SignJWT } from "jose";
import type { Principal } from "../guard/auth/api-keys.js";
import type { Scope } from "../guard/auth/scopes.js";

/** The audience every ticket names: a ticket is no credential for anything else, nor any JWT a ticket. */
const AUDIENCE = "streamgate-watch-ticket";

/** Ticket settings (WATCH_TICKET_*). */
export interface TicketConfig {
  /** The HS256 secret shared by the instances; undefined: a random one for this process. */
  secret: Uint8Array | undefined;
  /** How long a ticket may be used to connect. */
  ttlMs: number;
}

/** A ticket, issued. */
export interface IssuedTicket {
  ticket: string;
  expiresAtMs: number;
}

/** Issues and verifies watch tickets. */
export interface WatchTickets {
  /** A ticket for `principal` to watch `streamId` of `tenant` (and send to it when `send`). */
  issue(principal: Principal, tenant: string, streamId: string, send: boolean): Promise<IssuedTicket>;
  /** The principal a ticket stands for when it is valid, unexpired and for `streamId`; else undefined. */
  verify(ticket: string, streamId: string): Promise<Principal | undefined>;
}

/** Creates the ticket issuer and verifier for `config`. */
export function createWatchTickets(config: TicketConfig): WatchTickets {
  const secret = config.secret ?? randomBytes(32);
  return {
    async issue(principal, tenant, streamId, send) {
      const expiresAtMs = Date.now() + config.ttlMs;
      const scopes: Scope[] = send ? ["streams:read", "streams:write"] : ["streams:read"];
      const ticket = await new SignJWT({ tnt: tenant, str: streamId, scp: scopes, cfg: principal.configured })
        .setProtectedHeader({ alg: "HS256" })
        .setSubject(principal.client)
        .setAudience(AUDIENCE)
        .setIssuedAt()
        .setExpirationTime(Math.ceil(expiresAtMs / 1000))
        .sign(secret);
      return { ticket, expiresAtMs };
    },
    async verify(ticket, streamId) {
      try {
        // No clock tolerance: a ticket is made here, for a short time.
        const { payload } = await jwtVerify(ticket, secret, { audience: AUDIENCE, algorithms: ["HS256"] });
        const { sub, tnt, str, scp, cfg } = payload as {
          sub?: unknown;
          tnt?: unknown;
          str?: unknown;
          scp?: unknown;
          cfg?: unknown;
        };
        if (typeof sub !== "string" || typeof tnt !== "string" || str !== streamId || !Array.isArray(scp)) {
          return undefined;
        }
        return {
          client: sub,
          tenant: tnt,
          role: "user",
          scopes: new Set(scp.filter((scope): scope is Scope => scope === "streams:read" || scope === "streams:write")),
          configured: cfg === true,
        };
      } catch {
        return undefined;
      }
    },
  };
}
