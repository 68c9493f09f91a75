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

import itertools
import math
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


# ---------------------------------------------------------------- counts from means


def affine_form(node: ir.Operand) -> tuple[float, float, float] | None:
    """(a, b, c) with node = a*length + b*indices + c, or None if it is not of that form."""
    match node:
        case ir.Const(value=v) if ir.is_number(v):
            return (0.0, 0.0, float(v))  # type: ignore[arg-type]
        case ir.Length():
            return (1.0, 0.0, 0.0)
        case ir.Indices():
            return (0.0, 1.0, 0.0)
        case ir.Map(op=op, args=args) if op in ("add", "sub", "neg", "pos", "mul"):
            forms = [affine_form(a) for a in args]
            if any(f is None for f in forms):
                return None
            if op == "add":
                return tuple(x + y for x, y in zip(forms[0], forms[1]))  # type: ignore[return-value, arg-type]
            if op == "sub":
                return tuple(x - y for x, y in zip(forms[0], forms[1]))  # type: ignore[return-value, arg-type]
            if op == "neg":
                return tuple(-x for x in forms[0])  # type: ignore[return-value, union-attr]
            if op == "pos":
                return forms[0]
            consts = [f for f in forms if f is not None and f[0] == 0 and f[1] == 0]
            if not consts:
                return None
            other = forms[1] if forms[0] is consts[0] else forms[0]
            return tuple(consts[0][2] * x for x in other)  # type: ignore[return-value, union-attr]
    return None


#: ``select(indices, indices, cmp)`` selects this many keys at index i of an input of
#: length n: (a, b, c) with width = a*n + b*i + c
_WIDTHS = {"<=": (0, 1, 1), "<": (0, 1, 0), ">=": (1, -1, 0), ">": (1, -1, -1), "==": (0, 0, 1)}

#: most sums one count may take before the ordinary (looser) inference is used
MAX_COUNT_SUMS = 1 << 16
#: Most combinations of counts :func:`joint_counts` takes width by width (prefix counts
#: of two indicators at max length 64: 47 K).
MAX_JOINT_COUNTS = 1 << 18


def width_form(sel: ir.Selector) -> tuple[int, int, int] | None:
    """(a, b, c) when ``sel`` selects exactly a*length + b*indices + c keys at every
    position (``select(indices, indices, <=)``: i + 1), else None."""
    if (
        isinstance(sel, ir.Select)
        and isinstance(sel.keys, ir.Indices)
        and isinstance(sel.queries, ir.Indices)
    ):
        return _WIDTHS.get(sel.cmp)
    return None


def count_of_mean(node: ir.Map, values: Values, max_len: int) -> tuple[Atom, ...] | None:
    """The values of ``w * aggregate(sel, x)`` (either order) when ``w`` is exactly the
    number of keys ``sel`` selects (``(indices + 1) * aggregate(select(indices, indices,
    <=), x)``, a prefix sum): every sum of ``w`` values of integer ``x``, as the
    interpreter computes it (one rounding for the mean, one for the product).  None when
    ``node`` is not of that form or the sums are too many."""
    found = counts_by_width(node, values, max_len)
    if found is None:
        return None
    out: dict[object, Atom] = {}  # keyed by type too: 2 and 2.0 are two values
    for ys in found[1].values():
        for y in ys:
            out[ir.atom_key(y)] = y
    return tuple(out.values())


def counts_by_width(
    node: ir.Map, values: Values, max_len: int
) -> tuple[tuple[int, int, int], dict[int, list[Atom]]] | None:
    """For ``node`` of :func:`count_of_mean`'s form: its selector's width form and, per
    width ``w`` the selector can have, the values ``node`` can take where the width is
    ``w`` (two such nodes over the same width form have the same ``w`` at a position)."""
    if node.op != "mul" or len(node.args) != 2:
        return None
    for pos in (0, 1):
        agg, w = node.args[pos], node.args[1 - pos]
        if not isinstance(agg, ir.Aggregate) or isinstance(w, ir.Const):
            continue
        form = width_form(agg.selector)
        if form is None or affine_form(w) != tuple(float(x) for x in form):
            continue
        vals = values(agg.values) if isinstance(agg.values, ir.SOp) else (agg.values.value,)
        if vals is None or not all(type(v) is int for v in vals):
            return None
        ints = [int(v) for v in vals]  # type: ignore[arg-type]
        a, b, c = form
        all_widths = {a * n + b * i + c for n in range(1, max_len + 1) for i in range(n)}
        by_width = sums_by_width(ints, all_widths - {0})
        if by_width is None:
            return None
        out: dict[int, list[Atom]] = {}
        for k, sums in by_width.items():
            ys: dict[object, Atom] = {}
            for s in sums:
                mean = s if k == 1 else s / k
                pair: tuple[Atom, Atom] = (mean, k) if pos == 0 else (k, mean)
                y = ir.apply_map(node, pair)
                ys[ir.atom_key(y)] = y
            out[k] = list(ys.values())
        if 0 in all_widths:
            # no key selected: the aggregate gives its default, times a width of 0
            empty: tuple[Atom, Atom] = (agg.default, 0) if pos == 0 else (0, agg.default)
            out[0] = [ir.apply_map(node, empty)]
        return form, out
    return None


def joint_counts(node: ir.Map, values: Values, max_len: int) -> tuple[Atom, ...] | None:
    """The values of an elementwise operation over counts of :func:`count_of_mean`'s form
    on one width form (``balance = opens - closes``, both prefix sums) and constants,
    taken width by width: at a position both counts are sums over the same keys, so a
    count computed as ``0.9999999999999999`` (``49 * (1/49)``) meets the other count's
    value at that width, not its values at every width.  None when ``node`` is not of
    that form or the combinations are too many."""
    tables: dict[int, dict[int, list[Atom]]] = {}
    form = None
    for a in node.args:
        if isinstance(a, ir.Const):
            continue
        if not isinstance(a, ir.Map) or a.id in tables:
            return None
        found = counts_by_width(a, values, max_len)
        if found is None or (form is not None and found[0] != form):
            return None
        form = found[0]
        tables[a.id] = found[1]
    if len(tables) < 2:
        return None
    widths = set.intersection(*(set(t) for t in tables.values()))
    if sum(math.prod(len(t[w]) for t in tables.values()) for w in widths) > MAX_JOINT_COUNTS:
        return None
    ids = list(tables)
    out: dict[object, Atom] = {}
    for w in widths:
        for picked in itertools.product(*(tables[i][w] for i in ids)):
            got = dict(zip(ids, picked))
            args = tuple(a.value if isinstance(a, ir.Const) else got[a.id] for a in node.args)
            try:
                y = ir.apply_map(node, args)
            except ir.MAP_ERRORS:
                continue
            out[ir.atom_key(y)] = y
    return tuple(out.values())


def sums_by_width(vals: list[int], widths: set[int]) -> dict[int, set[int]] | None:
    """{w: every sum of w values drawn from ``vals`` (with repetition)} for w in
    ``widths`` (0 included: {0}), or None when there would be more than MAX_COUNT_SUMS."""
    lo, hi = min(vals), max(vals)
    if sum(w * (hi - lo) + 1 for w in widths) > MAX_COUNT_SUMS:
        return None
    out: dict[int, set[int]] = {}
    sums = {0}
    for w in range(max(widths, default=0) + 1):
        if w:
            sums = {s + v for s in sums for v in vals}
        if w in widths:
            out[w] = sums
    return out


# ---------------------------------------------------------------- means of positional values


def at_each_index(node: ir.Operand, max_len: int) -> list[Atom] | None:
    """The value at index 0, 1, ..., max_len - 1 of an s-op that is a function of
    ``indices`` alone (``indicator(indices == 0)``), or None.  Iterative: a chain of
    operations may be thousands deep."""
    if not isinstance(node, ir.Map):
        return None
    memo: dict[int, list[Atom] | None] = {}

    def leaf(n: ir.Operand) -> list[Atom] | None:
        if isinstance(n, ir.Const | ir.Full):
            return [n.value] * max_len
        if isinstance(n, ir.Indices):
            return list(range(max_len))
        return None

    stack: list[tuple[ir.Map, bool]] = [(node, False)]
    while stack:
        n, ready = stack.pop()
        if n.id in memo:
            continue
        maps = [a for a in n.args if isinstance(a, ir.Map) and a.id not in memo]
        if not ready and maps:
            stack.append((n, True))
            stack.extend((a, False) for a in maps)
            continue
        args = [memo[a.id] if isinstance(a, ir.Map) else leaf(a) for a in n.args]
        out: list[Atom] | None = None
        if all(a is not None for a in args):
            try:
                out = [ir.apply_map(n, tuple(a[i] for a in args)) for i in range(max_len)]  # type: ignore[index]
            except ir.MAP_ERRORS:
                out = None
        memo[n.id] = out
    return memo[node.id]


def positional_means(xs: list[Atom], default: Atom) -> tuple[Atom, ...] | None:
    """Every value an aggregate can give when the averaged s-op has value ``xs[i]`` at
    index i: the mean of the values at a set of *distinct* positions (so a value held at
    one position, as ``indicator(indices == 0)``'s 1, is counted at most once).  Integers
    only; None when they are not, or when there are too many (count, sum) pairs."""
    if not all(type(x) is int for x in xs):
        return None
    caps: dict[int, int] = {}
    for x in xs:
        caps[int(x)] = caps.get(int(x), 0) + 1  # type: ignore[call-overload]
    states = {(0, 0)}
    for v, cap in caps.items():
        states = {(k + t, s + t * v) for k, s in states for t in range(cap + 1)}
        if len(states) > MAX_COUNT_SUMS:
            return None
    out: dict[object, Atom] = {ir.atom_key(default): default}  # 1 and 1.0 are two values
    for k, s in states:
        if k == 1:
            out[ir.atom_key(s)] = s
        elif k >= 2:
            out[ir.atom_key(s / k)] = s / k
    return tuple(out.values())
