// Rewrites JavaScript source by its syntax tree, keeping every byte it does
// not rewrite: the helper both passes of scripts/patch-connect.mjs share.

/** The child nodes of `node`, in source order (a node shared by two fields, as in `{ a }`, once). */
function childrenOf(node) {
  const children = [];
  for (const [key, value] of Object.entries(node)) {
    if (key === "type" || key === "start" || key === "end" || key === "range") continue;
    for (const child of Array.isArray(value) ? value : [value]) {
      if (child && typeof child.type === "string") children.push(child);
    }
  }
  return children.sort((a, b) => a.start - b.start);
}

/**
 * Returns `emit`, which gives a node's source with `replace` applied to it and
 * its descendants: `replace(node, emit)` returns the new text for `node`, or
 * undefined to keep it and rewrite its children.
 */
export function sourceRewriter(source, replace) {
  const emit = (node) => {
    const replaced = replace(node, emit);
    if (replaced !== undefined) return replaced;
    let text = "";
    let at = node.start;
    for (const child of childrenOf(node)) {
      if (child.start < at) continue;
      text += source.slice(at, child.start) + emit(child);
      at = child.end;
    }
    return text + source.slice(at, node.end);
  };
  return emit;
}
