"""Fusing a chain of elementwise operations along its critical path.

An MLP computing an elementwise operation runs in the layer after its latest input.
When that input is itself computed by an MLP (``mismatch`` in ``mismatch or (depth <
0)``), or is a count whose MLP turns its heads' ``1/(w+1)`` into the width, the
operation can read that input's own inputs instead and run in the *same* MLP layer:
one table over the combined inputs.  :func:`critical_path_inputs` expands only the
inputs that set the layer (the critical path), one step at a time, and keeps the
earliest-running set whose table stays small; inputs that are ready earlier (``depth
< 0``, computed in the first MLP) stay as they are, so the table does not grow with
what is not on the critical path.

A boolean of a number that only says whether the number is at its smallest or largest
value (``aggregate(s, indicator(p)) > 0``: is the mean above 0) is expanded to the number
read as a *gate* of the table (``emit.mlp.numeric_gates``): two classes, not all its
values, and not in the projection; several such booleans (``found_a or found_b or
found_c``) then fit one table in the layer of their heads.  A count tested only for 0
(``selector_width(s) > 0``) is read the same way, from its head's ``1/(w+1)``, which is
1 exactly when the count is 0.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

from ...language import ir
from ...language.ir import Atom
from ..numbers import num
from .attention import width_xs
from .disjunction import NoForm, gate_forms
from .state import NodeFailed, PlanState, fused_fn
from .types import MAX_GATES, CatRep, GateForm, GateForms, NumRep, Rep, TableFn

#: Most input combinations a table fused along the critical path may have (the MLP
#: has about two units per combination where its value changes).
MAX_CRITICAL_DOMAIN = 1 << 13
#: Expansion steps tried before settling on the best found.
MAX_STEPS = 12


@dataclass(frozen=True)
class Fused:
    """A table computing a node from ``reps`` (stage = the latest of them)."""

    stage: int
    reps: list[Rep]
    fn: TableFn
    #: (index in ``reps``, at the largest value?) of the numbers read as gates
    gates: tuple[tuple[int, bool], ...] = ()
    #: with more gates than ``MAX_GATES``: the table's ``or`` form per combination of its
    #: categorical inputs (:mod:`.disjunction`)
    forms: GateForms | None = None


#: how a leaf is read: as the planner prefers, as its number, (a count) as its heads, or
#: (a number some boolean tests for its smallest or largest value) as a gate, or (a
#: count of one head tested for its smallest or largest value) as a gate on that head
BEST, NUMBER, HEADS, GATE, HEAD_GATE = "best", "number", "heads", "gate", "head gate"
#: modes whose number gates its table
GATED = (GATE, HEAD_GATE)


def _reps_of(p: PlanState, leaf: ir.SOp, mode: str) -> list[Rep] | None:
    try:
        if mode in (HEADS, HEAD_GATE):
            assert isinstance(leaf, ir.SelectorWidth)
            xs: list[Rep] = list(width_xs(p, leaf))
            return None if mode == HEAD_GATE and len(xs) != 1 else xs
        if mode in (NUMBER, GATE):
            return [p.num(leaf)]
        return [p.best(leaf)]
    except NodeFailed:
        return None


def _expandable(p: PlanState, leaf: ir.SOp, mode: str) -> bool:
    if mode in (HEADS, *GATED):
        return False
    if isinstance(leaf, ir.Map):
        return True
    # a count read as its number (written by one MLP from its heads, where its one-hot may
    # need a second), then from its heads' 1/(w+1) instead of from the MLP decoding it
    return isinstance(leaf, ir.SelectorWidth)


def _next_mode(p: PlanState, leaf: ir.SOp, mode: str) -> str:
    if mode == BEST and isinstance(leaf, ir.SelectorWidth) and len(width_xs(p, leaf)) > 1:
        return NUMBER
    return HEADS


def critical_path_inputs(p: PlanState, node: ir.Map) -> Fused | None:
    """The earliest-running table computing ``node`` found by expanding its latest
    inputs (see the module docstring), or None when no expansion fits."""
    # (leaf, how it is read) in first-visit order
    leaves: list[tuple[ir.SOp, str]] = []
    for a in node.args:
        if isinstance(a, ir.SOp) and all(a.id != x.id for x, _ in leaves):
            leaves.append((a, BEST))
    best: Fused | None = None
    tops: dict[int, bool] = {}  # a gate's number: tested at its largest value?
    for _ in range(MAX_STEPS):
        reps: list[list[Rep] | None] = [_reps_of(p, leaf, h) for leaf, h in leaves]
        stages = [math.inf if r is None else max(x.stage for x in r) for r in reps]
        if all(r is not None for r in reps):
            flat = [x for r in reps for x in r]  # type: ignore[union-attr]
            fused = _table(p, node, leaves, reps, flat, tops)  # type: ignore[arg-type]
            if fused is not None and (best is None or fused.stage < best.stage):
                best = fused
        top = max(stages, default=0)
        critical = [i for i, s in enumerate(stages) if s == top]
        if not critical or not all(_expandable(p, *leaves[i]) for i in critical):
            break
        expanded: list[tuple[ir.SOp, str]] = []
        for i, (leaf, mode) in enumerate(leaves):
            if i not in critical:
                new = [(leaf, mode)]
            elif isinstance(leaf, ir.Map):
                gated = extreme_test(p, leaf)
                if gated is not None and tops.get(gated[0].id, gated[1]) == gated[1]:
                    new = [(gated[0], gated[2])]
                    tops[gated[0].id] = gated[1]
                elif gated is not None:  # tested at both ends: read as a whole
                    new = [(gated[0], NUMBER)]
                else:
                    new = [(a, BEST) for a in leaf.args if isinstance(a, ir.SOp)]
            else:
                new = [(leaf, _next_mode(p, leaf, mode))]
            for x, m in new:
                if all(x.id != y.id or m != n for y, n in expanded):
                    expanded.append((x, m))
        # a node read in several ways: keep the furthest expanded (a gate only where it
        # is read no other way: another read needs its whole value)
        rank = {GATE: -1, HEAD_GATE: -1, BEST: 0, NUMBER: 1, HEADS: 2}
        leaves = [
            (x, m)
            for x, m in expanded
            if all(x.id != y.id or rank[n] <= rank[m] for y, n in expanded)
        ]
    return best


def extreme_test(p: PlanState, leaf: ir.Map) -> tuple[ir.SOp, bool, str] | None:
    """(x, at its largest?, how x is read) when ``leaf`` is a function of one mean x (a
    head's output: nothing earlier to expand to), or of one count x whose selector one
    head scores, that only tells x's smallest or largest value from the rest (``mean > 0``
    for a mean of 0/1 values, ``width > 0``), else None.  A count is read from its head's
    ``1/(w+1)``, largest where the count is smallest."""
    args = {a.id: a for a in leaf.args if isinstance(a, ir.SOp)}
    if len(args) != 1:
        return None
    (x,) = args.values()
    if isinstance(x, ir.SelectorWidth):
        try:
            if len(width_xs(p, x)) != 1:
                return None
        except NodeFailed:
            return None
    elif not isinstance(x, ir.Aggregate):
        return None
    values = list(p.values(x))
    if not all(type(v) in (int, float) for v in values):
        return None
    if len({num(v) for v in values}) < 3:
        return None
    fn = fused_fn(leaf, [x])
    out = [(num(v), fn((v,))) for v in values]
    if any(y is None for _, y in out):
        return None
    for top, edge in ((False, min(v for v, _ in out)), (True, max(v for v, _ in out))):
        at = {ir.atom_key(y) for v, y in out if v == edge}  # type: ignore[arg-type]
        rest = {ir.atom_key(y) for v, y in out if v != edge}  # type: ignore[arg-type]
        if len(at) == 1 and len(rest) == 1:
            if isinstance(x, ir.SelectorWidth):
                return x, not top, HEAD_GATE
            return x, top, GATE
    return None


def _table(
    p: PlanState,
    node: ir.Map,
    leaves: list[tuple[ir.SOp, str]],
    reps: list[list[Rep]],
    flat: list[Rep],
    tops: dict[int, bool],
) -> Fused | None:
    # a gate reads one input, its number, so its index in ``flat`` is its leaf's
    at = [sum(len(x) for x in reps[:i]) for i in range(len(reps))]
    gates = tuple((at[i], tops[leaf.id]) for i, (leaf, mode) in enumerate(leaves) if mode in GATED)
    gated = {i for i, _ in gates}
    forms: GateForms | None = None
    if len(gates) > MAX_GATES:
        forms = _or_forms(p, node, leaves, reps, tops)
        if forms is None:
            return None
    else:
        sizes = [2 if i in gated else len(r.values) for i, r in enumerate(flat)]
        if math.prod(sizes) > MAX_CRITICAL_DOMAIN:
            return None
    projected = [r for i, r in enumerate(flat) if isinstance(r, NumRep) and i not in gated]
    if not p.joint_ok(node, [r.values for r in projected]):
        return None
    if node.id in {leaf.id for leaf, _ in leaves}:
        return None
    base = fused_fn(node, [leaf for leaf, _ in leaves])
    sizes = [len(r) for r in reps]
    decode = [m in (HEADS, HEAD_GATE) for _, m in leaves]
    max_len = p.max_len

    def fn(args: tuple[Atom, ...]) -> Atom | None:
        vals: list[Atom] = []
        at = 0
        for size, d in zip(sizes, decode):
            part = args[at : at + size]
            at += size
            if d:
                total = sum(round(1.0 / num(x)) - 1 for x in part)
                if total > max_len:
                    return None
                vals.append(total)
            else:
                vals.append(part[0])
        return base(tuple(vals))

    stage = max((r.stage for r in flat), default=0)
    return Fused(stage, flat, fn, gates, forms)


def _or_forms(
    p: PlanState,
    node: ir.Map,
    leaves: list[tuple[ir.SOp, str]],
    reps: list[list[Rep]],
    tops: dict[int, bool],
) -> GateForms | None:
    """The table's ``or`` form (:mod:`.disjunction`) where every input but the gates is
    one one-hot, their combinations are few, and each has the form; else None."""
    extremes: dict[int, tuple[Atom, tuple[Atom, ...]]] = {}
    sizes: list[int] = []
    for i, ((leaf, mode), r) in enumerate(zip(leaves, reps)):
        if len(r) != 1:
            return None
        if mode in GATED:
            values = sorted(p.values(leaf), key=num)
            # a count's head holds 1/(w+1): at its largest where the count is smallest
            at_top = tops[leaf.id] != (mode == HEAD_GATE)
            e = values[-1] if at_top else values[0]
            extremes[i] = (e, tuple(v for v in values if num(v) != num(e)))
        elif isinstance(r[0], CatRep):
            sizes.append(len(r[0].values))
        else:
            return None
    if math.prod(sizes) > MAX_CRITICAL_DOMAIN:
        return None
    cat_leaves = [leaf for i, (leaf, _) in enumerate(leaves) if i not in extremes]
    feasible = _feasible(p, cat_leaves)
    every = gate_forms(node, [leaf for leaf, _ in leaves], extremes, p.values(node))

    def forms(combo: tuple[Atom, ...]) -> GateForm | None:
        return every(combo) if feasible(combo) else None

    cats = [r[0].values for i, r in enumerate(reps) if i not in extremes]
    try:
        for combo in itertools.product(*cats):  # type: ignore[arg-type]
            forms(combo)
    except NoForm:
        return None
    return forms


def _feasible(p: PlanState, leaves: list[ir.SOp]) -> Callable[[tuple[Atom, ...]], bool]:
    """Does a combination of these leaves' values occur?  Leaves that are maps of one
    and the same s-op (``tokens == "a"``, ``tokens == "b"``) take only the value tuples
    its values give (not both true); a combination of others is assumed to occur."""
    by_source: dict[int, tuple[ir.SOp, list[int]]] = {}
    for k, leaf in enumerate(leaves):
        args = (
            {a.id: a for a in leaf.args if isinstance(a, ir.SOp)}
            if isinstance(leaf, ir.Map)
            else {}
        )
        if len(args) == 1:
            (x,) = args.values()
            by_source.setdefault(x.id, (x, []))[1].append(k)
    groups: list[tuple[list[int], set[tuple]]] = []
    for x, ks in by_source.values():
        if len(ks) < 2:
            continue
        fns = [fused_fn(leaves[k], [x]) for k in ks]  # type: ignore[arg-type]
        seen: set[tuple] = set()
        for v in p.values(x):
            ys = [f((v,)) for f in fns]
            if all(y is not None for y in ys):
                seen.add(tuple(ir.atom_key(y) for y in ys))  # type: ignore[arg-type]
        groups.append((ks, seen))

    def occurs(combo: tuple[Atom, ...]) -> bool:
        return all(tuple(ir.atom_key(combo[k]) for k in ks) in seen for ks, seen in groups)

    return occurs
