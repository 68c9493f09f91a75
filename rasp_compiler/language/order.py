"""The order the interpreter computes a program's nodes in, found once per program."""

from __future__ import annotations

from . import ir
from .arith import unit_operand

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


#: one step of the interpreter: a node, and for ``x + 0``-like maps the id of ``x`` and
#: the kinds of ``x`` the map leaves unchanged (see :func:`.arith.unit_operand`)
Step = tuple[ir.Node, tuple[int, frozenset[str]] | None]
_STEPS: dict[int, tuple[ir.Node, tuple[Step, ...]]] = {}


def evaluation_steps(root: ir.Node) -> tuple[Step, ...]:
    """:func:`evaluation_order` with each node's unit operand, found once per program."""
    hit = _STEPS.get(id(root))
    if hit is not None and hit[0] is root:
        return hit[1]
    steps = tuple((node, unit_operand(node)) for node in evaluation_order(root))
    if len(_STEPS) >= _MAX_ORDERS:
        _STEPS.pop(next(iter(_STEPS)))
    _STEPS[id(root)] = (root, steps)
    return steps
