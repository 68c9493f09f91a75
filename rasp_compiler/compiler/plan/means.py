"""Tables that skip the input combinations a mean and an index never form together.

A table reading a mean over a width-exact selector (``aggregate(select(indices,
indices, <=), x)``: i + 1 keys at index i) beside a function of the indices only ever
sees, at index i, means of i + 1 values; listing every possible mean at every index
makes ~(i + 1) times the points it needs.
"""

from __future__ import annotations

from ...language import ir
from ...language.ir import Atom
from ..positions import sums_by_width, width_form
from .state import PlanState, fused_fn
from .types import TableFn


def only_possible_means(p: PlanState, leaves: list[ir.SOp], fn: TableFn) -> TableFn | None:
    """``fn``, but None (never occurs) on combinations where a mean over a width-exact
    selector (``aggregate(select(indices, indices, <=), x)``: i + 1 keys at index i)
    read beside a function of indices is not a mean of that many values: a table over
    (that mean, i) then has ~(i + 1) points per index, not one per possible mean.
    None when no leaf is such a mean.  (Finishing the plan builds both tables and keeps
    the smaller: where the full table is the same at every index, its gates merge.)"""
    constraints = []
    for ai, agg in enumerate(leaves):
        form = width_form(agg.selector) if isinstance(agg, ir.Aggregate) else None
        if form is None or form[0] != 0:  # the width must not depend on the length
            continue
        assert isinstance(agg, ir.Aggregate)
        vals = p.values(agg.values)
        if not all(type(v) is int for v in vals):
            continue
        for xi, x in enumerate(leaves):
            at = _at_each_index(p, x)
            if at is None:
                continue
            means = _means_by_width(
                [int(v) for v in vals],  # type: ignore[arg-type]
                {form[1] * i + form[2] for i in range(p.max_len)},
                agg.default,
            )
            if means is None:
                continue
            allowed: dict[object, set[object]] = {}
            for i, xv in enumerate(at):
                allowed.setdefault(_loose(xv), set()).update(means[form[1] * i + form[2]])
            constraints.append((ai, xi, allowed))
    if not constraints:
        return None

    def constrained(args: tuple[Atom, ...]) -> Atom | None:
        for ai, xi, allowed in constraints:
            ok = allowed.get(_loose(args[xi]))
            if ok is not None and _loose(args[ai]) not in ok:
                return None
        return fn(args)

    return constrained


def _loose(v: Atom) -> object:
    """A key equal for equal numbers of any type (1, 1.0) to 9 decimals; atoms otherwise."""
    if ir.is_number(v) and not isinstance(v, bool):
        return ("number", round(float(v), 9))  # type: ignore[arg-type]
    return (v.__class__, v)


def _at_each_index(p: PlanState, node: ir.SOp) -> list[Atom] | None:
    """The s-op's value at index 0, 1, ..., when it is a function of indices alone."""
    if isinstance(node, ir.Indices):
        return list(range(p.max_len))
    if not isinstance(node, ir.Map) or not isinstance(p.chain_leaf(node), ir.Indices):
        return None
    leaf = p.chain_leaf(node)
    assert leaf is not None
    fn = fused_fn(node, [leaf])
    out = [fn((i,)) for i in range(p.max_len)]
    return None if any(v is None for v in out) else out  # type: ignore[return-value]


def _means_by_width(
    vals: list[int], widths: set[int], default: Atom
) -> dict[int, set[object]] | None:
    """{w: the loose keys of every mean of w values} (w = 0: the default), or None when
    there are too many sums to list."""
    by_width = sums_by_width(vals, widths)
    if by_width is None:
        return None
    return {
        w: {_loose(default)} if w == 0 else {_loose(s if w == 1 else s / w) for s in sums}
        for w, sums in by_width.items()
    }
