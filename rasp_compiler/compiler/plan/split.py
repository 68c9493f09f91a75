"""Splitting a select on a computed key into selects on the key's parts.

``select(key, key, <)`` with ``key = 300 * indicator(has_earlier) - count`` compares one
s-op computed from two others.  Scored as it stands, the head needs ``key``'s one-hot,
which an MLP writes only once both parts are known (a layer later), or which a table
over the parts' two counting heads would write with a float32 rounding that tilts a
counting head reading it.  But its truth table factors over the parts: per pair of
values of the smaller part (``has_earlier`` at the key and at the query), it is one
comparison of the other part, or always or never true::

    (select(e, e, ==) and select(count, count, >)) or select(e, e, <)

Each conjunction scores exactly (a counting head can count one conjunction per head),
and every atom reads an s-op that is ready a layer earlier.  :func:`split_selector`
finds such a formula by checking every combination of the parts' values, so it is the
same selector wherever the program can go.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from ...language import ir
from ...language.ir import Atom
from ..selectors import atoms
from .state import PlanState, fused_fn

#: Most (key value, query value) combinations of the two parts checked for one select.
MAX_SPLIT_CHECKS = 1 << 16
#: Most conjunctions a split select may have.
MAX_SPLIT_TERMS = 3

_ALL, _NONE = "all", "none"


def split_selector(p: PlanState, sel: ir.Selector) -> ir.Selector:
    """``sel`` with each atom over one computed key split over its parts, where the
    truth table allows (see the module docstring); ``sel`` itself when nothing splits."""
    match sel:
        case ir.Select():
            return _split_atom(p, sel) or sel
        case ir.SelectorAnd(left=a, right=b) | ir.SelectorOr(left=a, right=b):
            new_a, new_b = split_selector(p, a), split_selector(p, b)
            if new_a is a and new_b is b:
                return sel
            kind = type(sel)
            return kind(left=new_a, right=new_b, span=sel.span)
        case ir.SelectorNot(inner=a):
            new = split_selector(p, a)
            return sel if new is a else ir.SelectorNot(inner=new, span=sel.span)
    return sel


def split_pays(p: PlanState, sel: ir.Selector) -> bool:
    """Does splitting ``sel`` let its head run earlier?  Not where one MLP table writes
    every split key's one-hot from the inputs along its critical path by the time the
    key's parts are ready: the selector then scores in fewer heads as it stands
    (sort by most frequent: a counting head fewer, whose count a table then reads in
    the same layer)."""
    for atom in atoms(sel):
        if _split_atom(p, atom) is None:
            continue
        parts = _parts(p, atom.keys)
        assert parts is not None and isinstance(atom.keys, ir.Map)
        fused = p.fused_stage(atom.keys)
        if fused is None or fused > max(p.best(x).stage for x in parts):
            return True
    return False


def _parts(p: PlanState, node: ir.Operand) -> tuple[ir.SOp, ir.SOp] | None:
    """The two s-ops a computed key is a function of: below a chain of one-argument
    operations, the two arguments of the first operation reading two s-ops, each taken
    at its fewest values down its own one-argument chain."""
    n: ir.Operand = node
    while isinstance(n, ir.Map):
        args = list({a.id: a for a in n.args if isinstance(a, ir.SOp)}.values())
        if len(args) == 2:
            a, b = (_narrowest(p, x) for x in args)
            return (a, b) if a.id != b.id else None
        if len(args) != 1:
            return None
        n = args[0]
    return None


def _narrowest(p: PlanState, node: ir.SOp) -> ir.SOp:
    best, n = node, node
    while isinstance(n, ir.Map):
        args = [a for a in n.args if isinstance(a, ir.SOp)]
        if len({a.id for a in args}) != 1:
            break
        n = args[0]
        if len(p.values(n)) < len(p.values(best)):
            best = n
    return best


def _truth(cmp: str, a: Atom, b: Atom) -> bool:
    try:
        return ir.compare(cmp, a, b)
    except TypeError:
        return False


def _relation(pairs: dict[tuple[int, int], bool], values: tuple[Atom, ...]) -> str | None:
    """The comparison on the part's (key value, query value) pairs that gives ``pairs``
    (those defined), or ``all`` / ``none``; None when no comparison does."""
    if all(pairs.values()):
        return _ALL
    if not any(pairs.values()):
        return _NONE
    for cmp in ir.COMPARISONS:
        if all(_truth(cmp, values[i], values[j]) == t for (i, j), t in pairs.items()):
            return cmp
    return None


def _split_atom(p: PlanState, atom: ir.Select) -> ir.Selector | None:
    if atom.keys is not atom.queries or not isinstance(atom.keys, ir.Map):
        return None
    parts = _parts(p, atom.keys)
    if parts is None:
        return None
    big, small = sorted(parts, key=lambda n: len(p.values(n)), reverse=True)
    bv, sv = p.values(big), p.values(small)
    if (len(bv) * len(sv)) ** 2 > MAX_SPLIT_CHECKS:
        return None
    fn: Callable[[tuple[Atom, ...]], Atom | None] = fused_fn(atom.keys, [big, small])
    value = {(i, j): fn((bv[i], sv[j])) for i in range(len(bv)) for j in range(len(sv))}
    # per cell (small part at the key, at the query): the relation on the big part
    cells: dict[tuple[int, int], str] = {}
    for sk, sq in itertools.product(range(len(sv)), repeat=2):
        pairs: dict[tuple[int, int], bool] = {}
        for bk, bq in itertools.product(range(len(bv)), repeat=2):
            yk, yq = value[(bk, sk)], value[(bq, sq)]
            if yk is not None and yq is not None:
                pairs[(bk, bq)] = _truth(atom.cmp, yk, yq)
        if not pairs:
            continue  # no input has these values: either way
        rel = _relation(pairs, bv)
        if rel is None:
            return None
        cells[(sk, sq)] = rel
    by_relation: dict[str, set[tuple[int, int]]] = {}
    for cell, rel in cells.items():
        if rel != _NONE:
            by_relation.setdefault(rel, set()).add(cell)
    if not by_relation or len(by_relation) > MAX_SPLIT_TERMS:
        return None
    terms: list[ir.Selector] = []
    for rel, members in by_relation.items():
        on_small = _cells_relation(members, cells, sv)
        if on_small is None:
            return None
        conj = [
            ir.Select(keys=node, queries=node, cmp=cmp, span=atom.span)
            for node, cmp in ((small, on_small), (big, rel))
            if cmp != _ALL
        ]
        if not conj:
            return None  # always true: nothing to split
        term: ir.Selector = conj[0]
        for c in conj[1:]:
            term = ir.SelectorAnd(left=term, right=c, span=atom.span)
        terms.append(term)
    out: ir.Selector = terms[0]
    for t in terms[1:]:
        out = ir.SelectorOr(left=out, right=t, span=atom.span)
    return out


def _cells_relation(
    members: set[tuple[int, int]], cells: dict[tuple[int, int], str], values: tuple[Atom, ...]
) -> str | None:
    """The comparison on the small part true exactly on ``members`` among the cells some
    input reaches (``all`` when that is every one); None when none is."""
    reached = set(cells)
    if members == reached:
        return _ALL
    for cmp in ir.COMPARISONS:
        if all(_truth(cmp, values[i], values[j]) == ((i, j) in members) for i, j in reached):
            return cmp
    return None
