"""Selectors as attention scores: turning a selector tree into additive score tables.

A selector is a boolean formula over atomic ``select(k, q, cmp)``s.  Atoms that
compare the same (key, query) pair of operands are grouped; each group is a finite
table over (key value, query value).  A single attention head scores key j for query
i as ``sum_p W_p[k_p(j), q_p(i)]`` (one additive table per pair), which is bilinear
in one-hot encodings.  :func:`solve_scores` finds small integer tables so that

* selected keys score at least ``level`` and unselected keys at most ``level - 1``
  (enough for an aggregate whose selected values agree), or
* selected keys score *exactly* ``level`` (needed for counting and for means).

When no single head can give exact uniform scores (``a or b`` over different pairs
that overlap), :func:`disjoint_terms` splits the formula into disjoint conjunctions,
each of which is uniform, so ``selector_width`` can count with one head per term.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

from ..language import ir
from ..language.ir import Atom

#: Search bound for score weights (0..MAX_WEIGHT).
MAX_WEIGHT = 3
MAX_VARIABLES = 9


def operand_key(op: ir.Operand) -> tuple:
    """Identity of an operand: the node id, or ('const', typed value)."""
    if isinstance(op, ir.Const):
        return ("const", ir.type_name(op.value), op.value)
    return ("node", op.id)


@dataclass(frozen=True)
class Pair:
    """The atomic selects over one (keys, queries) operand pair, and its regions.

    ``regions`` are the distinct truth tuples of ``atoms`` over all (key value,
    query value) combinations; ``region_of[(ki, qi)]`` indexes them.
    """

    keys: ir.Operand
    queries: ir.Operand
    atoms: tuple[ir.Select, ...]
    key_values: tuple[Atom, ...]
    query_values: tuple[Atom, ...]
    regions: tuple[tuple[bool, ...], ...]
    region_of: dict[tuple[int, int], int]


def atoms(sel: ir.Selector) -> list[ir.Select]:
    """The atomic selects of a selector formula, each once (not those in its operands)."""
    match sel:
        case ir.Select():
            return [sel]
        case ir.SelectorAnd(left=a, right=b) | ir.SelectorOr(left=a, right=b):
            left = atoms(a)
            return left + [x for x in atoms(b) if all(x is not y for y in left)]
        case ir.SelectorNot(inner=a):
            return atoms(a)
    raise TypeError(sel)


def _truth(cmp: str, k: Atom, q: Atom) -> bool:
    try:
        return ir.compare(cmp, k, q)
    except TypeError:
        return False


def build_pairs(
    sel: ir.Selector, values_of: Callable[[ir.Operand], tuple[Atom, ...]]
) -> list[Pair]:
    groups: dict[tuple, list[ir.Select]] = {}
    for atom in atoms(sel):
        groups.setdefault(_group_of(atom), []).append(atom)
    pairs = []
    for group in groups.values():
        kv, qv = values_of(group[0].keys), values_of(group[0].queries)
        regions: dict[tuple[bool, ...], int] = {}
        region_of = {}
        for ki, k in enumerate(kv):
            for qi, q in enumerate(qv):
                # an atom comparing with a constant uses its own (a group may hold several)
                t = tuple(
                    _truth(
                        a.cmp,
                        a.keys.value if isinstance(a.keys, ir.Const) else k,
                        a.queries.value if isinstance(a.queries, ir.Const) else q,
                    )
                    for a in group
                )
                region_of[(ki, qi)] = regions.setdefault(t, len(regions))
        pairs.append(
            Pair(group[0].keys, group[0].queries, tuple(group), kv, qv, tuple(regions), region_of)
        )
    return pairs


def _group_of(atom: ir.Select) -> tuple:
    """Atoms scored by one table: those comparing the same two operands, and those
    comparing one operand with constants (``select(pos, 2, ==) or select(pos, 6, ==)`` is
    one predicate on the key's ``pos``, not two tables an ``or`` would have to join)."""
    keys, queries = atom.keys, atom.queries
    if isinstance(queries, ir.Const) and not isinstance(keys, ir.Const):
        return (operand_key(keys), "constant")
    if isinstance(keys, ir.Const) and not isinstance(queries, ir.Const):
        return ("constant", operand_key(queries))
    return (operand_key(keys), operand_key(queries))


def evaluate(sel: ir.Selector, truth: dict[int, bool]) -> bool:
    """The selector formula given the truth of each atomic select (by node id)."""
    match sel:
        case ir.Select():
            return truth[sel.id]
        case ir.SelectorAnd(left=a, right=b):
            return evaluate(a, truth) and evaluate(b, truth)
        case ir.SelectorOr(left=a, right=b):
            return evaluate(a, truth) or evaluate(b, truth)
        case ir.SelectorNot(inner=a):
            return not evaluate(a, truth)
    raise TypeError(sel)


def truth_table(sel: ir.Selector, pairs: list[Pair]) -> dict[tuple[int, ...], bool]:
    """F for every combination of one region per pair."""
    table = {}
    for combo in itertools.product(*(range(len(p.regions)) for p in pairs)):
        truth = {}
        for p, r in zip(pairs, combo, strict=True):
            for atom, t in zip(p.atoms, p.regions[r], strict=True):
                truth[atom.id] = t
        table[combo] = evaluate(sel, truth)
    return table


@dataclass(frozen=True)
class Scores:
    """Per pair, the score weight of each region; selected keys score >= (or ==) level."""

    weights: tuple[tuple[int, ...], ...]
    level: int
    uniform: bool


def solve_scores(
    pairs: list[Pair], table: dict[tuple[int, ...], bool], uniform: bool
) -> Scores | None:
    """Small integer weights meeting the score conditions, or None if none exist."""
    sizes = [len(p.regions) for p in pairs]
    if len(pairs) == 1:  # one table: weight 1 where selected
        w = tuple(int(table[(r,)]) for r in range(sizes[0]))
        return Scores((w,), 1, True)
    true_combos = [c for c, v in table.items() if v]
    false_combos = [c for c, v in table.items() if not v]
    if not true_combos:
        return Scores(tuple((0,) * s for s in sizes), 1, True)
    # A conjunction of one region set per pair: weight 1 on those regions, level = #pairs.
    proj = [{c[p] for c in true_combos} for p in range(len(pairs))]
    if len(true_combos) == math.prod(len(s) for s in proj):
        return Scores(
            tuple(tuple(int(r in proj[p]) for r in range(sizes[p])) for p in range(len(pairs))),
            len(pairs),
            True,
        )
    if sum(sizes) > MAX_VARIABLES:
        return None
    for bound in range(1, MAX_WEIGHT + 1):
        for flat in itertools.product(range(bound + 1), repeat=sum(sizes)):
            if bound not in flat:
                continue  # tried with a smaller bound already
            ws, i = [], 0
            for s in sizes:
                ws.append(flat[i : i + s])
                i += s
            tsum = [sum(ws[p][r] for p, r in enumerate(c)) for c in true_combos]
            lo = min(tsum)
            if uniform and max(tsum) != lo:
                continue
            if (
                false_combos
                and max(sum(ws[p][r] for p, r in enumerate(c)) for c in false_combos) > lo - 1
            ):
                continue
            return Scores(tuple(tuple(w) for w in ws), lo, uniform or max(tsum) == lo)
    return None


def disjoint_terms(
    pairs: list[Pair], table: dict[tuple[int, ...], bool]
) -> list[tuple[int | None, ...]]:
    """The true region combinations as disjoint terms (None: any region of that pair)."""
    sizes = [len(p.regions) for p in pairs]
    terms: set[tuple[int | None, ...]] = {c for c, v in table.items() if v}
    changed = True
    while changed:
        changed = False
        for p, size in enumerate(sizes):
            groups: dict[tuple, set] = {}
            for t in terms:
                groups.setdefault(t[:p] + t[p + 1 :], set()).add(t[p])
            for rest, regs in groups.items():
                if regs == set(range(size)) and size > 1:
                    for r in regs:
                        terms.discard(rest[:p] + (r,) + rest[p:])
                    terms.add(rest[:p] + (None,) + rest[p:])
                    changed = True
    return sorted(terms, key=lambda t: tuple(-1 if x is None else x for x in t))


def term_scores(pairs: list[Pair], term: tuple[int | None, ...]) -> Scores:
    """Uniform scores for one conjunction of regions (level = number of fixed pairs)."""
    weights = []
    for p, r in zip(pairs, term, strict=True):
        weights.append(tuple(0 if r is None else int(i == r) for i in range(len(p.regions))))
    level = sum(r is not None for r in term)
    return Scores(tuple(weights), max(level, 0), True)


def distinct_operands(sel: ir.Selector) -> tuple[list[ir.SOp], list[ir.SOp]]:
    """The distinct non-constant key operands and query operands of a selector's atoms."""
    keys: dict[int, ir.SOp] = {}
    queries: dict[int, ir.SOp] = {}
    for atom in atoms(sel):
        if isinstance(atom.keys, ir.Node):
            keys.setdefault(atom.keys.id, atom.keys)
        if isinstance(atom.queries, ir.Node):
            queries.setdefault(atom.queries.id, atom.queries)
    return list(keys.values()), list(queries.values())


@dataclass(frozen=True)
class JointTable:
    """A selector over several s-ops per side, reduced to one table of classes.

    Key joint values are mixed-radix codes over ``key_ops``' value sets (the first
    operand varies slowest), likewise for queries.  Two key codes are in one class when
    the selector treats them alike for every query code (equal columns of the truth
    table), and likewise for queries (equal rows).  ``key_class[code]`` /
    ``query_class[code]`` give the classes, ``selected[kc][qc]`` the truth per class.
    """

    key_cols: tuple[tuple[Atom, ...], ...]
    query_cols: tuple[tuple[Atom, ...], ...]
    key_class: tuple[int, ...]
    query_class: tuple[int, ...]
    selected: tuple[tuple[bool, ...], ...]


def joint_table(
    sel: ir.Selector,
    key_ops: list[ir.SOp],
    query_ops: list[ir.SOp],
    values_of: Callable[[ir.Operand], tuple[Atom, ...]],
) -> JointTable:
    """The selector's truth over the joint key and query values, in classes.

    The caller bounds the product of the two sides' joint sizes: this builds it."""
    import numpy as np

    kcols = tuple(values_of(o) for o in key_ops)
    qcols = tuple(values_of(o) for o in query_ops)

    def digits(cols) -> list[np.ndarray]:
        # digit p of every code 0 .. prod-1: the index of operand p's value
        size = math.prod(len(c) for c in cols)
        codes = np.arange(size)
        out, stride = [], size
        for c in cols:
            stride //= len(c)
            out.append((codes // stride) % len(c))
        return out

    kd, qd = digits(kcols), digits(qcols)
    nk, nq = math.prod(len(c) for c in kcols), math.prod(len(c) for c in qcols)
    kpos = {o.id: i for i, o in enumerate(key_ops)}
    qpos = {o.id: i for i, o in enumerate(query_ops)}

    def atom_truth(a: ir.Select) -> np.ndarray:
        kv = values_of(a.keys)
        qv = values_of(a.queries)
        small = np.array([[_truth(a.cmp, k, q) for q in qv] for k in kv], dtype=bool)
        ki = kd[kpos[a.keys.id]] if isinstance(a.keys, ir.Node) else np.zeros(nk, dtype=int)
        qi = qd[qpos[a.queries.id]] if isinstance(a.queries, ir.Node) else np.zeros(nq, dtype=int)
        return small[np.ix_(ki, qi)]  # [nk, nq]

    truth = {a.id: atom_truth(a) for a in atoms(sel)}

    def formula(x: ir.Selector) -> np.ndarray:
        match x:
            case ir.Select():
                return truth[x.id]
            case ir.SelectorAnd(left=a, right=b):
                return formula(a) & formula(b)
            case ir.SelectorOr(left=a, right=b):
                return formula(a) | formula(b)
            case ir.SelectorNot(inner=a):
                return ~formula(a)
        raise TypeError(x)

    grid = formula(sel)  # [nk, nq]: does key code k select query code q
    by_key, key_class = np.unique(grid, axis=0, return_inverse=True)  # [n_kc, nq]
    by_both, query_class = np.unique(by_key, axis=1, return_inverse=True)  # [n_kc, n_qc]
    return JointTable(
        kcols,
        qcols,
        tuple(int(c) for c in np.ravel(key_class)),
        tuple(int(c) for c in np.ravel(query_class)),
        tuple(tuple(bool(x) for x in r) for r in by_both),
    )


def joint_pair(
    sel: ir.Selector,
    keys: ir.Operand,
    queries: ir.Operand,
    table: JointTable,
    values_of: Callable[[ir.Operand], tuple[Atom, ...]],
) -> Pair:
    """The selector as one (keys, queries) pair over a :class:`JointTable`.

    A side is a constant (no s-op), its one s-op (whose value index is its code), or a
    joint s-op whose values are the side's class ids.  Regions are the truth of the
    whole formula: (False,) and/or (True,).
    """
    kv, qv = values_of(keys), values_of(queries)
    k_joint = len(table.key_cols) > 1
    q_joint = len(table.query_cols) > 1

    def kclass(ki: int) -> int:
        return int(kv[ki]) if k_joint else table.key_class[ki if table.key_cols else 0]

    def qclass(qi: int) -> int:
        return int(qv[qi]) if q_joint else table.query_class[qi if table.query_cols else 0]

    regions: dict[tuple[bool, ...], int] = {}
    region_of = {}
    for ki in range(len(kv)):
        row = table.selected[kclass(ki)]
        for qi in range(len(qv)):
            region_of[(ki, qi)] = regions.setdefault((row[qclass(qi)],), len(regions))
    return Pair(keys, queries, tuple(atoms(sel)), kv, qv, tuple(regions), region_of)


def joint_scores(pair: Pair) -> Scores:
    """Weight 1 where a joint pair's formula selects: uniform, level 1."""
    return Scores((tuple(int(r[0]) for r in pair.regions),), 1, True)


# ---------------------------------------------------------------- index masks

#: a head's static mask, as the comparison ``key index CMP query index`` it allows, by
#: the set of cells (key below, at, above the query) it allows; BOS is always allowed
MASK_OF_CELLS = {
    frozenset({"lt"}): "<",
    frozenset({"eq"}): "==",
    frozenset({"gt"}): ">",
    frozenset({"lt", "eq"}): "<=",
    frozenset({"gt", "eq"}): ">=",
    frozenset({"lt", "gt"}): "!=",
}


def index_pair(pairs: list[Pair]) -> int | None:
    """The position of the pair comparing ``indices`` with ``indices``, if any."""
    for i, p in enumerate(pairs):
        if isinstance(p.keys, ir.Indices) and isinstance(p.queries, ir.Indices):
            return i
    return None


def _cells(pair: Pair, regions: set[int]) -> frozenset[str] | None:
    """The (key vs query index) cells the regions cover, or None if a cell is split."""
    inside: dict[str, set[bool]] = {}
    for (ki, qi), r in pair.region_of.items():
        k, q = pair.key_values[ki], pair.query_values[qi]
        cell = "lt" if k < q else "eq" if k == q else "gt"  # type: ignore[operator]
        inside.setdefault(cell, set()).add(r in regions)
    if any(len(v) != 1 for v in inside.values()):
        return None
    return frozenset(c for c, v in inside.items() if True in v)


def factor_mask(
    pairs: list[Pair], table: dict[tuple[int, ...], bool]
) -> tuple[str, list[Pair], dict[tuple[int, ...], bool]] | None:
    """``sel = mask and rest`` where the mask compares key index with query index:
    (the mask's comparison, the other pairs, rest's truth table), or None.

    It factors when every region of the ``(indices, indices)`` pair where the
    selector can be true gives it the same truth table over the other pairs, and those
    regions are a union of whole cells (below, at, above the query's index)."""
    p0 = index_pair(pairs)
    if p0 is None:
        return None
    live = {c[p0] for c, v in table.items() if v}
    if not live:
        return None
    rest: dict[int, dict[tuple[int, ...], bool]] = {}
    for combo, v in table.items():
        if combo[p0] in live:
            rest.setdefault(combo[p0], {})[combo[:p0] + combo[p0 + 1 :]] = v
    tables = list(rest.values())
    if any(t != tables[0] for t in tables[1:]):
        return None
    cells = _cells(pairs[p0], live)
    if cells is None or len(cells) == 3:
        return None  # (all three cells: no mask needed, the pair is scored as it is)
    return MASK_OF_CELLS[cells], pairs[:p0] + pairs[p0 + 1 :], tables[0]


def term_mask(
    pairs: list[Pair], term: tuple[int | None, ...]
) -> tuple[str | None, list[Pair], tuple[int | None, ...]]:
    """A disjoint term's mask on the index pair, if it fixes that pair's region to
    whole cells, and the term over the other pairs."""
    p0 = index_pair(pairs)
    if p0 is None or term[p0] is None:
        return None, pairs, term
    cells = _cells(pairs[p0], {term[p0]})  # type: ignore[arg-type]
    if cells is None or len(cells) == 3:
        return None, pairs, term
    return MASK_OF_CELLS[cells], pairs[:p0] + pairs[p0 + 1 :], term[:p0] + term[p0 + 1 :]


#: what a head under each static mask costs the runtime, in full heads: the causal
#: kernel skips the keys a one-sided mask hides (half of them)
MASK_COST = {None: 1.0, "<": 0.5, "<=": 0.5, ">": 0.5, ">=": 0.5, "==": 1.0, "!=": 1.0}


def cell_split(
    pairs: list[Pair], table: dict[tuple[int, ...], bool]
) -> list[tuple[str | None, list[Pair], dict[tuple[int, ...], bool]]] | None:
    """The selector as one conjunction ``mask and rest`` per group of (key vs query
    index) cells that treat the other pairs alike: (the group's mask, the other pairs,
    rest's truth table), leaving out groups where it is never true; None without an
    ``(indices, indices)`` pair.

    Counting sums one head per group, as it sums one per disjoint term.  Where the
    terms would leave a head unmasked (sort's ``tokens <`` or ``(tokens == and
    indices <)`` is ``tokens <`` at every index plus ``tokens ==`` before the query),
    the cells give each head a one-sided mask instead (``tokens <=`` before the query,
    ``tokens <`` at and after it), which the causal kernel runs in half the time."""
    p0 = index_pair(pairs)
    if p0 is None:
        return None
    pair = pairs[p0]
    region: dict[str, int] = {}
    for (ki, qi), r in pair.region_of.items():
        k, q = pair.key_values[ki], pair.query_values[qi]
        cell = "lt" if k < q else "eq" if k == q else "gt"  # type: ignore[operator]
        if region.setdefault(cell, r) != r:
            return None  # (a cell split between regions: not a comparison of indices)
    groups: dict[tuple[tuple[tuple[int, ...], bool], ...], set[str]] = {}
    for cell, r in region.items():
        rest = {c[:p0] + c[p0 + 1 :]: v for c, v in table.items() if c[p0] == r}
        groups.setdefault(tuple(sorted(rest.items())), set()).add(cell)
    out = []
    for rest_items, cells in groups.items():
        rest_table = dict(rest_items)
        if not any(rest_table.values()):
            continue
        mask = None if len(cells) == 3 else MASK_OF_CELLS[frozenset(cells)]
        out.append((mask, pairs[:p0] + pairs[p0 + 1 :], rest_table))
    return out
