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

Comparisons of prefix counts.  ``(i + 1) * aggregate(prefix, x) < (i + 1) *
aggregate(prefix, y)`` (Dyck's ``balance < 0``) compares two counts the interpreter
computes as ``(a / w) * w``; the comparison is the sign of ``a - b``, which is the sign of
``aggregate(prefix, x - y)``: one head and a table over one number (see
:func:`_count_comparison`).

Differences of prefix counts.  ``(i + 1) * aggregate(prefix, x) - (i + 1) *
aggregate(prefix, y)`` (Dyck-k's ``depth``) is ``(i + 1) * aggregate(prefix, x - y)``
wherever the two give the same float for every pair of counts at every width up to the
max length, which is checked exhaustively (see :func:`_count_difference`): one head's
mean and the index, instead of two means and the index.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from ..language import ir
from .positions import affine_form, at_each_index, width_form


def bos_widths(root: ir.SOp, max_len: int) -> ir.SOp:
    """``root`` with every BOS width (see the module docstring) rewritten."""
    return _rebuild(root, lambda n: _bos_width(n, max_len) if isinstance(n, ir.Aggregate) else None)


def count_comparisons(root: ir.SOp, max_len: int) -> ir.SOp:
    """``root`` with every comparison of two prefix counts rewritten to a comparison of
    one mean with 0 (see :func:`_count_comparison`)."""
    return _rebuild(
        root, lambda n: _count_comparison(n, max_len) if isinstance(n, ir.Map) else None
    )


def count_differences(root: ir.SOp, max_len: int) -> ir.SOp:
    """``root`` with every difference of two prefix counts over one selector rewritten to
    the count of the difference (see :func:`_count_difference`)."""
    return _rebuild(
        root, lambda n: _count_difference(n, max_len) if isinstance(n, ir.Map) else None
    )


#: Longest max length at which a difference of counts is checked (and so rewritten): the
#: check visits every pair of counts at every width, about max_len^3 / 3 pairs.
MAX_DIFFERENCE_CHECK = 256


def _count_difference(node: ir.Map, max_len: int) -> ir.Map | None:
    """``w*aggregate(s, x) - w*aggregate(s, y)`` as ``w*aggregate(s, x - y)`` for
    indicators x, y and ``w`` the never-zero number of keys ``s`` selects, where that is
    the same atom for all counts ``a``, ``b`` of x and y at every width up to
    ``max_len``: ``(a/w)*w - (b/w)*w`` against ``((a-b)/w)*w`` (at ``w = 1`` the mean is
    the value itself, an int, on both sides)."""
    if node.op != "sub" or len(node.args) != 2 or max_len > MAX_DIFFERENCE_CHECK:
        return None
    a, b = node.args
    left, right = _count_parts(a, max_len), _count_parts(b, max_len)
    if left is None or right is None or left[0].id != right[0].id:
        return None
    if left[2].id != right[2].id or not _differences_exact(max_len):
        return None
    sel, x, w = left[0], left[1], left[2]
    diff = ir.Map(op="sub", args=(x, right[1]), span=node.span)
    mean = ir.Aggregate(selector=sel, values=diff, default=0, span=node.span)
    return ir.Map(op="mul", args=(w, mean), span=node.span, id=node.id)


@cache
def _differences_exact(max_len: int) -> bool:
    for w in range(2, max_len + 1):
        counts = np.arange(w + 1, dtype=np.float64)
        each = (counts / w) * w
        apart = each[:, None] - each[None, :]
        together = ((counts[:, None] - counts[None, :]) / w) * w
        if not np.array_equal(apart, together):
            return False
    return True


def _rebuild(root: ir.SOp, replace: Callable[[ir.Node], ir.Node | None]) -> ir.SOp:
    """``root`` with each node ``replace`` gives a new node for replaced (bottom up: a
    node is offered once its operands are rebuilt)."""
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
        new[node.id] = replace(out) or out
    result = new[root.id]
    assert isinstance(result, ir.SOp)
    return result


_COMPARISONS = ("lt", "le", "gt", "ge", "eq", "ne")


def _count_comparison(node: ir.Map, max_len: int) -> ir.Map | None:
    """``w*aggregate(s, x) - w*aggregate(s, y) CMP 0`` (or ``w*aggregate(s, x) CMP
    w*aggregate(s, y)``) as ``aggregate(s, x - y) CMP 0``, where ``w`` is the number of
    keys ``s`` selects (never 0) and x, y are indicators: both sides say how the counts
    a and b of x and y compare.  The interpreter's counts are ``(a/w)*w``, each rounded
    twice, but equal counts give the same float and unequal ones differ by about 1, and
    the mean ``(a - b)/w`` has the sign of ``a - b``.  One head's mean then decides the
    comparison with a table over one number, instead of a table over the index and two
    means (Dyck-1 at 64: 2 layers, not 3)."""
    if node.op not in _COMPARISONS or len(node.args) != 2:
        return None
    a, b = node.args
    if (
        isinstance(b, ir.Const)
        and type(b.value) in (int, float)
        and b.value == 0
        and isinstance(a, ir.Map)
        and a.op == "sub"
    ):
        a, b = a.args
    left, right = _count(a, max_len), _count(b, max_len)
    if left is None or right is None or left[0].id != right[0].id:
        return None
    sel = left[0]
    diff = ir.Map(op="sub", args=(left[1], right[1]), span=node.span)
    mean = ir.Aggregate(selector=sel, values=diff, default=0, span=node.span)
    return ir.Map(op=node.op, args=(mean, ir.Const(0)), span=node.span, id=node.id)


def _count(node: ir.Operand, max_len: int) -> tuple[ir.Selector, ir.Map] | None:
    """(s, x) for ``w * aggregate(s, x)`` (either order) with ``w`` the width of ``s``,
    never 0, and ``x`` an indicator."""
    found = _count_parts(node, max_len)
    return None if found is None else (found[0], found[1])


def _count_parts(node: ir.Operand, max_len: int) -> tuple[ir.Selector, ir.Map, ir.SOp] | None:
    """(s, x, w) for ``w * aggregate(s, x)`` as :func:`_count` finds it."""
    if not isinstance(node, ir.Map) or node.op != "mul" or len(node.args) != 2:
        return None
    for agg, w in (node.args, node.args[::-1]):
        if not isinstance(agg, ir.Aggregate) or isinstance(w, ir.Const):
            continue
        form = width_form(agg.selector)
        if form is None or affine_form(w) != tuple(float(v) for v in form):
            continue
        x = agg.values
        if not isinstance(x, ir.Map) or x.op != "indicator":
            return None
        k, j, c = form
        if any(k * n + j * i + c <= 0 for n in range(1, max_len + 1) for i in range(n)):
            return None
        assert isinstance(w, ir.SOp)
        return agg.selector, x, w
    return None


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
