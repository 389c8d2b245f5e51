/**
 * The API key, kept for this tab's session only: sessionStorage, never
 * localStorage, a cookie or the URL, so it ends with the tab. When the browser
 * refuses storage (some private modes), the key lives in memory for the page.
 */

const STORAGE_NAME = "streamgate.apiKey";
let inMemory: string | undefined;

/** The stored key, if any. */
export function readKey(): string | undefined {
  try {
    return sessionStorage.getItem(STORAGE_NAME) ?? undefined;
  } catch {
    return inMemory;
  }
}

/** Keeps `key` for this session. */
export function storeKey(key: string): void {
  try {
    sessionStorage.setItem(STORAGE_NAME, key);
  } catch {
    inMemory = key;
  }
}

/** Forgets the key. */
export function forgetKey(): void {
  inMemory = undefined;
  try {
    sessionStorage.removeItem(STORAGE_NAME);
  } catch {
    // Nothing was stored there.
  }
}
