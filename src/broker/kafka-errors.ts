/**
 * Reading @platformatic/kafka's errors: what a failed start reports, and
 * which refusals mean a record can never be stored.
 */
import { findErrorBy } from "@platformatic/kafka";

/**
 * The distinct messages at the leaves of the client's error, which wraps each
 * retry's failure ("metadata failed 9 times") around the reason (a refused
 * connection, failed SASL authentication).
 */
export function rootCauses(error: unknown): string {
  const leaves = new Set<string>();
  const visit = (current: unknown, depth: number) => {
    const nested = (current as { errors?: unknown[] } | undefined)?.errors;
    const cause = (current as { cause?: unknown } | undefined)?.cause;
    if (depth < 5 && Array.isArray(nested) && nested.length > 0) nested.forEach((inner) => visit(inner, depth + 1));
    else if (depth < 5 && cause !== undefined) visit(cause, depth + 1);
    else leaves.add(current instanceof Error ? current.message : String(current));
  };
  visit(error, 0);
  return [...leaves].join("; ");
}

/** Whether the broker refused a record (batch) as over its size limit. */
export function tooLarge(error: unknown): boolean {
  return (
    findErrorBy(error as Error, "apiId", "MESSAGE_TOO_LARGE") !== null ||
    findErrorBy(error as Error, "apiId", "RECORD_LIST_TOO_LARGE") !== null
  );
}

/** Whether creating a topic failed because it exists (another instance created it meanwhile). */
export function alreadyExists(error: unknown): boolean {
  return findErrorBy(error as Error, "apiId", "TOPIC_ALREADY_EXISTS") !== null;
}
