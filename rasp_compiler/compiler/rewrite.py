"""Rewrites before planning: IR patterns replaced by equal IR the planner builds smaller.

The interpreter keeps running the program as written, so every check of a compiled
model against it (``verify``, the tests) checks the rewrite too.

The BOS width.  Programs written for the reference interpreter, which has no BOS token,
count a selector's keys with a mean (the paper's ``_with_bos_selector_width``)::

    aggregate(s or select(indices, 0, ==), indicator(indices == 0))

Every query selects index 0, and only index 0 holds a non-zero value (1), so the mean
is ``1/k`` with ``k = 1 + |s-row without index 0|`` -- and exactly the integer 1 when
``k = 1`` (a single selected value passes through unchanged).  That is::

    1 if w == 0 else 1 / (1 + w)    with  w = selector_width(s and select(indices, 0, !=))

which the interpreter computes to the same atom (one rounding of 1/k), and which the
compiler counts with its own BOS: a head per disjoint part of ``s``, read by the next
MLP, with no MLP beforehand writing a joint of ``s``'s operands and the index.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..language import ir
from .positions import at_each_index


def bos_widths(root: ir.SOp, max_len: int) -> ir.SOp:
    """``root`` with every BOS width (see the module docstring) rewritten."""
    new: dict[int, ir.Node] = {}
    for node in ir.walk(root):
        changed: dict[str, Any] = {}
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if isinstance(value, ir.Node) and new[value.id] is not value:
                changed[f.name] = new[value.id]
            elif isinstance(value, tuple) and any(
                isinstance(v, ir.Node) and new[v.id] is not v for v in value
            ):
                changed[f.name] = tuple(new[v.id] if isinstance(v, ir.Node) else v for v in value)
        out: ir.Node = dataclasses.replace(node, **changed) if changed else node  # keeps id, span
        if isinstance(out, ir.Aggregate):
            out = _bos_width(out, max_len) or out
        new[node.id] = out
    result = new[root.id]
    assert isinstance(result, ir.SOp)
    return result


def _is_index_zero(sel: ir.Selector) -> bool:
    return (
        isinstance(sel, ir.Select)
        and isinstance(sel.keys, ir.Indices)
        and isinstance(sel.queries, ir.Const)
        and type(sel.queries.value) is int
        and sel.queries.value == 0
        and sel.cmp == "=="
    )


def _bos_width(agg: ir.Aggregate, max_len: int) -> ir.Map | None:
    sel = agg.selector
    if not isinstance(sel, ir.SelectorOr):
        return None
    if _is_index_zero(sel.right):
        rest = sel.left
    elif _is_index_zero(sel.left):
        rest = sel.right
    else:
        return None
    at = at_each_index(agg.values, max_len) if isinstance(agg.values, ir.SOp) else None
    if at is None or any(type(v) is not int for v in at) or at != [1] + [0] * (max_len - 1):
        return None
    span = agg.span
    not_first = ir.Select(keys=ir.Indices(span=span), queries=ir.Const(0), cmp="!=", span=span)
    width = ir.SelectorWidth(selector=ir.SelectorAnd(left=rest, right=not_first, span=span))
    width = dataclasses.replace(width, span=span)
    none = ir.Map(op="eq", args=(width, ir.Const(0)), span=span)
    k = ir.Map(op="add", args=(width, ir.Const(1)), span=span)
    share = ir.Map(op="div", args=(ir.Const(1), k), span=span)
    return ir.Map(op="where", args=(none, ir.Const(1), share), span=span, id=agg.id)
