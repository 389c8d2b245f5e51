/** Typed access to the page's elements. */

/**
 * The element with `id`, checked to be a `type`; throws when the page lacks it,
 * which is a mismatch between index.html and the code, not a user error.
 */
export function byId<T extends HTMLElement>(id: string, type: { new (): T; prototype: T }): T {
  const element = document.getElementById(id);
  if (!(element instanceof type)) throw new Error(`dashboard: #${id} is missing or not a ${type.name}`);
  return element;
}

/** A new element with its text: data always goes in as text, never as markup. */
export function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  text?: string,
  className?: string,
): HTMLElementTagNameMap[K] {
  const created = document.createElement(tag);
  if (text !== undefined) created.textContent = text;
  if (className !== undefined) created.className = className;
  return created;
}
