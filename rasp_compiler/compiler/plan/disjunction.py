"""Tables that read many gates, each combination of their other inputs through an ``or``.

A table may read numbers as gates (:mod:`.fusion`: ``mean > 0`` only tells a mean's
smallest value from the rest).  With ``k`` gates the general table is ``2^k`` tables
(``emit.mlp``: a Moebius sum over the sets of gates), so ``k`` is kept small.  But a
chain such as rover's answer, ``found or (needs[n] and query == n)`` over three ``n``,
each ``needs[n]`` itself ``seen or (mean > 0 and tokens == e)`` over three ``e``, reads 18
means, and for each combination of its categorical inputs it is *one value if any of a
set S of them is off its extreme value, another if none is*: an ``or``.

:func:`gate_forms` finds that form by evaluating the operations above the table's
inputs with the categorical inputs fixed and the gated numbers left open: an abstract
value is a constant, a gated number, or ``Sel(S, on, off)``.  An operation on a gated
number alone must give one value at its extreme and one value everywhere else (else the
form is refused); an operation on several ``Sel`` values is evaluated at every on/off
pattern of them, and must give its ``off`` value when all are off and one ``on`` value
whenever any is on.  Patterns that cannot occur (two ``Sel`` over overlapping sets) are
required too, so the form is sound: at every input, the table's value is ``on`` if some
gated number in S is off its extreme, else ``off``.  ``emit.mlp`` then builds it from
the sum of the gated numbers' distances from their extremes (one step per combination,
linear in the number of gates).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from ...language import ir
from ...language.ir import Atom
from ..value_sets import possible_value
from .state import map_dag
from .types import GateForm, GateForms

#: Most distinct ``Sel`` operands one operation may combine (its on/off patterns are
#: evaluated one by one).
MAX_SEL_OPERANDS = 8


class _Failed:
    """The interpreter fails here (a don't-care for the table)."""


FAILED = _Failed()


@dataclass(frozen=True)
class Sel:
    """``on`` where some gated input in ``inputs`` is off its extreme value, else ``off``."""

    inputs: frozenset[int]
    on: object
    off: object


@dataclass(frozen=True)
class _Gated:
    """A gated input (by table input index), open."""

    index: int


class _Top:
    """No form this module can use."""


TOP = _Top()


def _same(a: object, b: object) -> bool:
    if isinstance(a, _Failed) or isinstance(b, _Failed):
        return a is b
    return ir.atom_key(a) == ir.atom_key(b)  # type: ignore[arg-type]


def _apply(node: ir.Map, args: Sequence[object]) -> object:
    if any(isinstance(a, _Failed) for a in args):
        return FAILED
    try:
        return ir.apply_map(node, tuple(args))  # type: ignore[arg-type]
    except ir.MAP_ERRORS:
        return FAILED


def _key(s: Sel) -> tuple:
    def k(v: object) -> object:
        return "failed" if isinstance(v, _Failed) else ir.atom_key(v)  # type: ignore[arg-type]

    return (s.inputs, k(s.on), k(s.off))


def _one(values: list[object]) -> object:
    """The one value all of ``values`` are, else TOP."""
    first = values[0]
    return first if all(_same(first, v) for v in values[1:]) else TOP


def _sel(inputs: frozenset[int], on: object, off: object) -> object:
    return off if _same(on, off) else Sel(inputs, on, off)


def _evaluate(
    node: ir.Map, operands: list[object], extremes: dict[int, tuple[object, list[object]]]
) -> object:
    if any(isinstance(a, _Top) for a in operands):
        return TOP
    cond = operands[0] if node.op == "where" else None
    if cond is not None and not isinstance(cond, (Sel, _Gated, _Failed)):
        return operands[1] if cond else operands[2]  # the branch taken, open or not
    gated = [a for a in operands if isinstance(a, _Gated)]
    sels: list[Sel] = []
    for a in operands:
        if isinstance(a, Sel) and all(_key(a) != _key(s) for s in sels):
            sels.append(a)
    if gated:
        if sels or len({g.index for g in gated}) > 1:
            return TOP
        j = gated[0].index
        extreme, others = extremes[j]

        def at(v: object) -> object:
            return _apply(node, [v if isinstance(a, _Gated) else a for a in operands])

        on = _one([at(v) for v in others])
        return TOP if isinstance(on, _Top) else _sel(frozenset((j,)), on, at(extreme))
    if not sels:
        return _apply(node, operands)
    if len(sels) > MAX_SEL_OPERANDS:
        return TOP
    outs: list[object] = []
    off: object = TOP
    for pattern in itertools.product((False, True), repeat=len(sels)):
        chosen = {_key(s): (s.on if p else s.off) for s, p in zip(sels, pattern)}
        y = _apply(node, [chosen[_key(a)] if isinstance(a, Sel) else a for a in operands])
        if any(pattern):
            outs.append(y)
        else:
            off = y
    on = _one(outs)
    if isinstance(on, _Top):
        return TOP
    return _sel(frozenset().union(*(s.inputs for s in sels)), on, off)


def gate_forms(
    node: ir.Map,
    leaves: Sequence[ir.SOp],
    gate_extremes: dict[int, tuple[Atom, tuple[Atom, ...]]],
    possible: tuple[Atom, ...],
) -> GateForms:
    """The form of ``node`` above ``leaves`` (one table input each) per combination of
    its categorical leaves (those not in ``gate_extremes``, in order), or None where it
    has no such form (see the module docstring).  ``gate_extremes`` maps a gated leaf's
    index to its extreme value and its other values; ``possible`` is ``node``'s value
    set (a value outside it never occurs: a don't-care, as in ``_possible_only``)."""
    cat_at = [i for i in range(len(leaves)) if i not in gate_extremes]
    order, read = map_dag(node, leaves)
    # an operation is remembered per combination of the categorical leaves it reads
    deps = {n: tuple(i for i in ids if i not in gate_extremes) for n, ids in read.items()}
    extremes: dict[int, tuple[object, list[object]]] = {
        j: (e, list(rest)) for j, (e, rest) in gate_extremes.items()
    }
    memo: dict[int, dict[tuple, object]] = {n.id: {} for n in order}
    ok = possible_value(possible)

    def form(cat_values: tuple[Atom, ...]) -> GateForm | None:
        vals: dict[int, object] = {}
        for leaf_i, v in zip(cat_at, cat_values):
            vals[leaves[leaf_i].id] = v
        for j in gate_extremes:
            vals[leaves[j].id] = _Gated(j)
        for n in order:
            key = tuple(ir.atom_key(vals[leaves[i].id]) for i in deps[n.id])  # type: ignore[arg-type]
            seen = memo[n.id]
            if key not in seen:
                operands = [a.value if isinstance(a, ir.Const) else vals[a.id] for a in n.args]
                seen[key] = _evaluate(n, operands, extremes)
            vals[n.id] = seen[key]
        out = vals[node.id]
        if isinstance(out, (_Top, _Gated)):
            raise NoForm()
        on, off = (out.on, out.off) if isinstance(out, Sel) else (out, out)
        inputs = out.inputs if isinstance(out, Sel) else frozenset()
        on_v: Atom | None = None if isinstance(on, _Failed) or not ok(on) else on  # type: ignore[arg-type, assignment]
        off_v: Atom | None = None if isinstance(off, _Failed) or not ok(off) else off  # type: ignore[arg-type, assignment]
        if on_v is None and off_v is None:
            return None
        if on_v is None or off_v is None or _same(on_v, off_v):
            y = off_v if on_v is None else on_v
            return frozenset(), y, y
        return inputs, on_v, off_v

    return form


class NoForm(Exception):
    """The table has no ``or`` form at some combination of its categorical inputs."""
