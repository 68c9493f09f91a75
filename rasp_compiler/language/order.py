"""The order the interpreter computes a program's nodes in, found once per program."""

from __future__ import annotations

from . import ir

#: root node id -> (the root, every node it needs, children first): verify evaluates one
#: program on thousands of inputs, and the walk is the same for each
_ORDERS: dict[int, tuple[ir.Node, tuple[ir.Node, ...]]] = {}
_MAX_ORDERS = 64


def evaluation_order(root: ir.Node) -> tuple[ir.Node, ...]:
    """Every node ``root`` needs, each once, children before parents (cached per root)."""
    hit = _ORDERS.get(id(root))
    if hit is not None and hit[0] is root:
        return hit[1]
    out: list[ir.Node] = []
    seen: set[int] = set()
    stack: list[tuple[ir.Node, bool]] = [(root, False)]
    while stack:
        node, ready = stack.pop()
        if node.id in seen:
            continue
        if ready:
            seen.add(node.id)
            out.append(node)
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in node.children() if c.id not in seen)
    if len(_ORDERS) >= _MAX_ORDERS:
        _ORDERS.pop(next(iter(_ORDERS)))
    _ORDERS[id(root)] = (root, tuple(out))
    return _ORDERS[id(root)][1]
