/**
 * Scopes: what a credential may do with its tenant's streams. A key or token
 * without any scope may do everything; one with scopes only what they name.
 */

/** The scopes of the StreamService RPCs. */
export type Scope = "streams:read" | "streams:write" | "streams:manage";

/** Every scope, in the order the README lists them. */
export const SCOPES: readonly Scope[] = ["streams:read", "streams:write", "streams:manage"];

/** What a credential without scopes may do: everything. */
export const ALL_SCOPES: ReadonlySet<Scope> = new Set(SCOPES);

/** The scope each StreamService method needs, by method name. */
export const METHOD_SCOPE: Readonly<Record<string, Scope>> = {
  SendData: "streams:write",
  SendDataStream: "streams:write",
  WatchResults: "streams:read",
  // Also streams:write when the ticket is to allow sending (checked by the handler, which sees the request).
  CreateWatchTicket: "streams:read",
  GetStream: "streams:read",
  ListStreams: "streams:read",
  StartStream: "streams:manage",
  CloseStream: "streams:manage",
  DeleteStream: "streams:manage",
};

/** Whether `text` names a scope. */
export function isScope(text: string): text is Scope {
  return (SCOPES as readonly string[]).includes(text);
}
