"""What varies with position: s-ops that are the same at every position of an input, and
selectors under which every query selects at most one key.

An s-op is *invariant* when, for every input, it has one value at all positions:
``length``, constants, an aggregate or width whose selector does not depend on the
query (``aggregate(select(tokens, "+", ==), indices)``: every row selects the same
keys), and elementwise operations over invariants.

A selector is *functional* when every query provably selects at most one key:
``select(k, q, ==)`` whose keys ``k`` are distinct at distinct positions of any input.
Keys are distinct when they are an injective function of ``indices`` once the input is
fixed: ``indices``, ``indices + c``, ``c - indices`` or ``a * indices`` (``a`` a non-zero
constant) with ``c`` invariant (``length - add_index``, say).  An ``and`` with a
functional selector is functional.  The aggregate of a functional selector copies one
value (or gives its default), so its values are the copied s-op's values, not every mean
of them, and a categorical copy is exact.

Distinct keys stay distinct under float rounding only while their gap is large next to
their magnitude (:func:`index_gap`; ``values`` gives each s-op's inferred values).
"""

from __future__ import annotations

from collections.abc import Callable

from ..language import ir
from ..language.ir import Atom

#: Sums keep distinct numbers distinct while their gap exceeds float rounding: the
#: magnitudes involved must stay below gap * 2**_HEADROOM.
_HEADROOM = 48

Values = Callable[[ir.SOp], tuple[Atom, ...] | None]


def _magnitude(node: ir.Operand, values: Values) -> float | None:
    """Largest |value| of ``node``, or None if it is not always a finite number."""
    vals = (node.value,) if isinstance(node, ir.Const) else values(node)
    if vals is None or not all(ir.is_number(v) and not isinstance(v, bool) for v in vals):
        return None
    out = max((abs(float(v)) for v in vals), default=0.0)  # type: ignore[arg-type]
    return out if out < float("inf") else None


def is_invariant(node: ir.Operand) -> bool:
    """True when ``node`` has the same value at every position of any input."""
    match node:
        case ir.Const() | ir.Length() | ir.Full():
            return True
        case ir.Map(args=args):
            return all(is_invariant(a) for a in args)
        case ir.Aggregate(selector=sel) | ir.SelectorWidth(selector=sel):
            return query_independent(sel)
    return False


def query_independent(sel: ir.Selector) -> bool:
    """True when every query selects the same keys (the queries are invariant)."""
    match sel:
        case ir.Select(queries=q):
            return is_invariant(q)
        case ir.SelectorAnd(left=a, right=b) | ir.SelectorOr(left=a, right=b):
            return query_independent(a) and query_independent(b)
        case ir.SelectorNot(inner=a):
            return query_independent(a)
    return False


def index_gap(node: ir.Operand, values: Values) -> float | None:
    """The least difference between ``node``'s values at two positions of one input
    (``indices``: 1), or None if it may take one value at two positions."""
    match node:
        case ir.Indices():
            return 1.0
        case ir.Map(op="neg" | "pos", args=(a,)):
            return index_gap(a, values)
        case ir.Map(op="add" | "sub", args=(a, b)):
            if is_invariant(b):
                gap = index_gap(a, values)
            elif is_invariant(a):
                gap = index_gap(b, values)
            else:
                return None
            return gap if _kept(gap, (node, a, b), values) else None
        case ir.Map(op="mul", args=(a, b)):
            for x, c in ((a, b), (b, a)):
                if isinstance(c, ir.Const) and isinstance(c.value, (int, float)) and c.value:
                    gap = index_gap(x, values)
                    if gap is not None and not isinstance(c.value, bool):
                        gap *= abs(float(c.value))
                        return gap if _kept(gap, (node, x), values) else None
    return None


def _kept(gap: float | None, nodes: tuple[ir.Operand, ...], values: Values) -> bool:
    """Whether float rounding of values as large as ``nodes``' keeps ``gap``."""
    if gap is None or not gap > 0:
        return False
    sizes = [_magnitude(n, values) for n in nodes]
    return all(m is not None and m < gap * 2.0**_HEADROOM for m in sizes)


def is_functional(sel: ir.Selector, values: Values) -> bool:
    """True when every query provably selects at most one key (see the module docstring)."""
    match sel:
        case ir.Select(keys=keys, cmp="=="):
            return index_gap(keys, values) is not None
        case ir.SelectorAnd(left=a, right=b):
            return is_functional(a, values) or is_functional(b, values)
    return False
