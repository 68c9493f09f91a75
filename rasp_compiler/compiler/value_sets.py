"""Static analysis: the set of values every s-op can take.

For a vocabulary and a maximum length N, :func:`infer_value_sets` computes, for every
s-op node, a finite superset of the values it can take on any input of length 1..N
whose tokens come from the vocabulary.  Sets are over-approximations (elementwise ops
take the product of their inputs' sets), which is sound: the compiler builds lookups
over a superset of what can occur.

Values are kept *typed*: ``1``, ``1.0`` and ``True`` are different entries (Python
says they are equal, but the reference prints them differently), see :func:`ir.atom_key`.
"""

from __future__ import annotations

import bisect
import itertools
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import RaspError, RaspTypeError, RaspValueError
from ..language import ir
from ..language.ir import Atom
from .alternatives import select_alternatives
from .positions import (
    at_each_index,
    count_of_mean,
    is_functional,
    joint_counts,
    positional_means,
)

#: Above this many values a set is too large to enumerate (the compiler refuses).
MAX_VALUE_SET = 1 << 20
#: Above this many argument combinations an elementwise op is not enumerated (a sum or
#: difference of two integer s-ops, taken with numpy, up to MAX_INT_SUM_COMBINATIONS).
MAX_COMBINATIONS = 1 << 22
MAX_INT_SUM_COMBINATIONS = 1 << 25


def sort_values(values: Iterable[Atom]) -> tuple[Atom, ...]:
    """Distinct typed values in a stable order: numbers ascending, then strings, then bools."""
    uniq = {ir.atom_key(v): v for v in values}
    order = {"int": 0, "float": 0, "str": 1, "bool": 2}
    return tuple(
        uniq[k]
        for k in sorted(
            uniq, key=lambda k: (order[k[0]], k[1] if k[0] != "str" else 0, str(k[1]), k[0])
        )
    )


@dataclass(frozen=True)
class ValueSet:
    """The possible values of one s-op, sorted (see :func:`sort_values`)."""

    values: tuple[Atom, ...]

    @property
    def numeric(self) -> bool:
        """True when every value is an int or float (bools excluded)."""
        return all(ir.is_number(v) for v in self.values)

    def __len__(self) -> int:
        return len(self.values)


def _too_large(node: ir.Node, what: str, size: int, max_len: int) -> RaspError:
    return RaspTypeError(
        f"{what} can take about {size} values at max length {max_len}; "
        f"too many to compile exactly (limit {MAX_VALUE_SET})",
        node.span,
    )


def _mean_values(vals: ValueSet, max_len: int, node: ir.Node) -> tuple[Atom, ...]:
    """Every mean of 1..max_len values drawn from ``vals`` (a superset, on a rational grid)."""
    fr = [Fraction(v).limit_denominator(1 << 20) for v in vals.values]
    if any(Fraction(float(f)) != Fraction(v) for f, v in zip(fr, vals.values, strict=True)):
        # Values that are not short rationals: fall back to exact pairwise enumeration.
        raise _too_large(node, "this numerical aggregate", 10**9, max_len)
    den = math.lcm(*(f.denominator for f in fr)) if fr else 1
    ints = sorted({int(f * den) for f in fr})
    lo, hi = ints[0], ints[-1]
    step = math.gcd(*(i - lo for i in ints)) if len(ints) > 1 else 1
    step = step or 1
    # mean = (m*lo + step*k) / (den*m) for m = 1..N and 0 <= k <= m*(hi-lo)/step
    est = sum(m * (hi - lo) // step + 1 for m in range(1, max_len + 1))
    if est > MAX_VALUE_SET:
        raise _too_large(node, "this numerical aggregate (a mean)", est, max_len)
    out: set[Fraction] = set()
    for m in range(1, max_len + 1):
        span = m * (hi - lo) // step
        for k in range(span + 1):
            out.add(Fraction(m * lo + step * k, den * m))
    result: list[Atom] = []
    for f in out:
        result.append(float(f))
    # Single selections keep their type (int stays int).
    result.extend(vals.values)
    return sort_values(result)


def _map_values(node: ir.Map, arg_sets: list[tuple[Atom, ...]], max_len: int) -> tuple[Atom, ...]:
    # an s-op read twice (``x + x``) has one value at a position: combine distinct s-ops only
    keys: list[object] = [
        a.id if isinstance(a, ir.SOp) else ("const", i) for i, a in enumerate(node.args)
    ]
    distinct = list(dict.fromkeys(keys))
    distinct_sets = [arg_sets[keys.index(k)] for k in distinct]
    size = math.prod(len(s) for s in distinct_sets)
    # Every position has index < length: combinations breaking that never occur.
    idx = [i for i, a in enumerate(node.args) if isinstance(a, ir.Indices)]
    lens = [i for i, a in enumerate(node.args) if isinstance(a, ir.Length)]
    if _FAST_SUMS_FROM < size <= MAX_INT_SUM_COMBINATIONS:
        fast = _int_sums(node, keys, distinct, distinct_sets, idx, lens)
        if fast is not None:
            return fast
    if size > MAX_COMBINATIONS:
        raise RaspTypeError(
            f"the elementwise '{ir.MAP_OPS[node.op].symbol}' reads {size} combinations of its "
            f"operands' values at max length {max_len}; too many to compile exactly "
            f"(limit {MAX_COMBINATIONS})",
            node.span,
        )
    out = []
    for picked in itertools.product(*distinct_sets):
        value_of = dict(zip(distinct, picked))
        combo = tuple(value_of[k] for k in keys)
        if any(combo[i] >= combo[j] for i in idx for j in lens):  # type: ignore[operator]
            continue
        try:
            out.append(ir.apply_map(node, combo))
        except ir.MAP_ERRORS:
            continue  # that combination fails in the interpreter too: it is never compiled
    bad = next((v for v in out if not ir.finite(v)), None)
    if bad is not None:
        raise RaspValueError(
            f"the elementwise '{ir.MAP_OPS[node.op].symbol}' can give {bad!r} at max length "
            f"{max_len} (a number beyond the float range): a transformer cannot compute it",
            node.span,
        )
    return sort_values(out)


#: a sum or difference of two integer s-ops over at least this many combinations of
#: values is taken with numpy (``length - indices`` at max length 4096: 16 M pairs)
_FAST_SUMS_FROM = 10_000
_FAST_INT_BOUND = 2**52


def _int_sums(
    node: ir.Map,
    keys: list[object],
    distinct: list[object],
    sets: list[tuple[Atom, ...]],
    idx: list[int],
    lens: list[int],
) -> tuple[Atom, ...] | None:
    """The values of ``a + b`` or ``a - b`` over two distinct s-ops whose values are all
    ints (small enough that int64 sums are exact), as the loop would find them
    (combinations with an index not below the length left out); None otherwise."""
    if node.op not in ("add", "sub") or len(distinct) != 2 or len(keys) != 2:
        return None
    if any(type(v) is not int or abs(v) >= _FAST_INT_BOUND for s in sets for v in s):
        return None
    a = np.array(sets[distinct.index(keys[0])], dtype=np.int64)[:, None]
    b = np.array(sets[distinct.index(keys[1])], dtype=np.int64)[None, :]
    sums = a + b if node.op == "add" else a - b
    if idx and lens:  # one is indices, the other length: index < length
        i, n = (a, b) if idx[0] == 0 else (b, a)
        sums = sums[np.broadcast_to(i < n, sums.shape)]
    return sort_values([int(v) for v in np.unique(sums)])


def _beyond_float(values: tuple[Atom, ...], node: ir.SOp) -> RaspError | None:
    """An error when the s-op can take an int (or read a constant) beyond the float range:
    a transformer holds numbers as floats."""
    consts = [a.value for a in getattr(node, "args", ()) if isinstance(a, ir.Const)]
    if isinstance(node, ir.Aggregate):
        consts.append(node.default)
    for v in (*values, *consts):
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > _FLOAT_MAX:
            digits = len(str(abs(v)))
            return RaspValueError(
                f"this s-op works with an integer of {digits} digits, beyond the float range "
                "a transformer computes in",
                node.span,
            )
    return None


_FLOAT_MAX = int(sys.float_info.max)


def _node_values(
    node: ir.SOp,
    sets: dict[int, ValueSet],
    vocab: tuple[Atom, ...],
    max_len: int,
    functional,
    alts: dict[int, dict[float, list[float]]],
) -> tuple[Atom, ...]:
    def operand(a: ir.Operand) -> tuple[Atom, ...]:
        return (a.value,) if isinstance(a, ir.Const) else sets[a.id].values

    match node:
        case ir.Tokens(conv=conv):
            converted: list[Atom] = []
            for tok in vocab:
                try:
                    converted.append(ir.convert_token(conv, tok))
                except ir.TOKEN_ERRORS as exc:
                    raise RaspTypeError(
                        f"token {tok!r} of the vocabulary cannot be converted by tokens_{conv}",
                        node.span,
                    ) from exc
            return sort_values(converted)
        case ir.Indices():
            return tuple(range(max_len))
        case ir.Length():
            return tuple(range(1, max_len + 1))
        case ir.Full(value=v):
            return (v,)
        case ir.Map():
            merged: dict[float, list[float]] = {}
            counted = count_of_mean(node, lambda n: sets[n.id].values, max_len)
            if counted is None:
                # the counts' own roundings, met width by width: no alternatives to check
                counted = joint_counts(node, lambda n: sets[n.id].values, max_len)
            if counted is not None:
                vals = _merge_close(sort_values(counted), merged)
            else:
                vals = _merge_close(
                    _map_values(node, [operand(a) for a in node.args], max_len), merged
                )
                _check_alternatives(node, [operand(a) for a in node.args], alts, merged)
            if merged:
                alts[node.id] = merged
            return vals
        case ir.SelectorWidth():
            return tuple(range(max_len + 1))
        case ir.Aggregate(values=values, default=default):
            vs = ValueSet(operand(values))
            if vs.numeric and not functional(node.selector):
                at = at_each_index(values, max_len)
                narrow = None if at is None else positional_means(at, default)
                vals = narrow if narrow is not None else _mean_values(vs, max_len, node)
            else:
                vals = vs.values
            return sort_values((*vals, default))
    raise TypeError(f"not an s-op: {node!r}")


#: Floats this close (relative) are one value: float arithmetic on a set's members
#: (``mean - indices``) yields neighbours one rounding apart, which no model can tell
#: apart and which the interpreter itself may produce either of.
FLOAT_MERGE_TOL = 1e-12


def _one_value(a: float, b: float) -> bool:
    """Floats within FLOAT_MERGE_TOL (relative) of each other stand for one value."""
    return abs(b - a) <= FLOAT_MERGE_TOL * max(abs(a), abs(b), 1e-300)


def lookup_value(values: tuple[Atom, ...]) -> Callable[[Atom], int | None]:
    """A function y -> the index of the member of ``values`` that stands for y: the one
    equal under :func:`ir.atom_key`, or for a float the one within FLOAT_MERGE_TOL (a neighbour
    merged away by :func:`_merge_close`); None if no member does."""
    exact = {ir.atom_key(v): i for i, v in enumerate(values)}
    floats = sorted(
        (float(v), i) for i, v in enumerate(values) if isinstance(v, float) and math.isfinite(v)
    )
    keys = [f for f, _ in floats]

    def find(y: Atom) -> int | None:
        i = exact.get(ir.atom_key(y))
        if i is not None or not isinstance(y, float) or not keys:
            return i
        j = bisect.bisect_left(keys, y)
        for k in (j - 1, j):
            if 0 <= k < len(keys) and _one_value(keys[k], y):
                return floats[k][1]
        return None

    return find


def possible_value(values: tuple[Atom, ...]) -> Callable[[Atom], bool]:
    """A test for atoms some input can give an s-op whose value set is ``values``: a
    member, or a number equal to a member's value within FLOAT_MERGE_TOL whatever its
    kind (a table may see ``1`` where the program had ``1.0``: a mean's kind is not held)."""
    exact = {ir.atom_key(v) for v in values}
    nums = sorted(float(v) for v in values if not isinstance(v, str) and math.isfinite(float(v)))

    def possible(y: Atom) -> bool:
        if ir.atom_key(y) in exact:
            return True
        if isinstance(y, str) or not math.isfinite(float(y)):
            return False
        f = float(y)
        j = bisect.bisect_left(nums, f)
        return any(0 <= k < len(nums) and _one_value(nums[k], f) for k in (j - 1, j))

    return possible


def _merge_close(
    values: tuple[Atom, ...], merged: dict[float, list[float]] | None = None
) -> tuple[Atom, ...]:
    """``values`` with floats within FLOAT_MERGE_TOL of a neighbour merged into the one
    with the shortest decimal form (so 1.8 stands for 1.7999999999999998).  ``merged``,
    when given, gets each kept float's dropped neighbours (see :func:`_check_alternatives`)."""
    floats = sorted(v for v in values if isinstance(v, float) and math.isfinite(v))
    if len(floats) < 2:
        return values
    drop: set[float] = set()
    groups: list[list[float]] = []
    group = [floats[0]]
    for v in floats[1:]:
        if _one_value(group[0], v):
            group.append(v)
            continue
        groups.append(group)
        group = [v]
    groups.append(group)
    for g in groups:
        dropped = _all_but_shortest(g)
        if dropped and merged is not None:
            keep = next(v for v in g if v not in dropped)
            merged.setdefault(keep, []).extend(dropped)
        drop.update(dropped)
    if not drop:
        return values
    return tuple(v for v in values if not (isinstance(v, float) and v in drop))


def _check_alternatives(
    node: ir.Map,
    arg_sets: list[tuple[Atom, ...]],
    alts: dict[int, dict[float, list[float]]],
    merged: dict[float, list[float]],
) -> None:
    """Where an argument's value stands for floats one rounding apart (merged, see
    :func:`_merge_close`), the operation must give the same value, up to a rounding, for
    each of them: the interpreter computes one or the other depending on the input, and
    the model holds one.  Results one rounding apart become alternatives of this node's
    value (in ``merged``); a result that differs more (``x < 0`` on ``-1e-16`` and ``0``)
    is an error naming the operation."""
    for pos, arg in enumerate(node.args):
        arg_alts = alts.get(arg.id) if isinstance(arg, ir.SOp) else None
        if not arg_alts:
            continue
        others = [s if i != pos else (None,) for i, s in enumerate(arg_sets)]
        checked = 0
        for kept, dropped in arg_alts.items():
            for combo in itertools.product(*others):
                checked += 1
                if checked > MAX_COMBINATIONS:
                    return
                base = list(combo)
                base[pos] = kept
                try:
                    want = ir.apply_map(node, tuple(base))  # type: ignore[arg-type]
                except ir.MAP_ERRORS:
                    continue
                for alt in dropped:
                    base[pos] = alt
                    try:
                        got = ir.apply_map(node, tuple(base))  # type: ignore[arg-type]
                    except ir.MAP_ERRORS:
                        got = None
                    if _rounding_apart(want, got):
                        if got != want and isinstance(got, float) and not isinstance(want, bool):
                            merged.setdefault(float(want), []).append(got)  # type: ignore[arg-type]
                        continue
                    raise RaspValueError(
                        f"this operation gives {got!r} for {alt!r} and {want!r} for {kept!r}, "
                        f"values one float rounding apart that the interpreter computes "
                        f"either of for the same input; the model holds one of them, so it "
                        f"cannot give the interpreter's answer here",
                        node.span,
                        (
                            "float arithmetic on a mean, such as (indices + 1) * mean, is not "
                            "always the whole number it stands for (49 * (1/49) is "
                            "0.9999999999999999)",
                        ),
                    )


def _rounding_apart(a: object, b: object) -> bool:
    """Equal, or numbers (not bools) within a rounding (as verify compares floats)."""
    if a == b and type(a) is type(b):
        return True
    if (
        isinstance(a, bool)
        or isinstance(b, bool)
        or not (isinstance(a, int | float) and isinstance(b, int | float))
    ):
        return False
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _all_but_shortest(group: list[float]) -> list[float]:
    keep = min(group, key=lambda v: (len(repr(v)), v))
    return [v for v in group if v != keep]


def infer_value_sets(
    root: ir.SOp, vocab: tuple[Atom, ...], max_len: int
) -> tuple[dict[int, ValueSet], list[RaspError]]:
    """Value sets of every s-op reachable from ``root``, keyed by node id.

    Returns the sets and the problems found (each with the span of its node); nodes
    downstream of a problem are skipped.
    """
    sets: dict[int, ValueSet] = {}
    #: node id -> {a float kept in its value set: the floats one rounding away merged into
    #: it}: the interpreter may compute either, so what reads them must not tell them apart
    alts: dict[int, dict[float, list[float]]] = {}

    def values_of(node: ir.SOp) -> tuple[Atom, ...] | None:
        vs = sets.get(node.id)
        return None if vs is None else vs.values

    problems: list[RaspError] = []
    failed: set[int] = set()
    used_at: dict[int, object] = {}  # built-ins have no span: point at where they are read
    for node in ir.walk(root):
        for child in node.children():
            if child.span is None and node.span is not None:
                used_at.setdefault(child.id, node.span)
    for node in ir.walk(root):
        if any(c.id in failed for c in node.children()):
            failed.add(node.id)
            continue
        if not isinstance(node, ir.SOp):
            continue
        try:
            vals = _node_values(
                node, sets, vocab, max_len, lambda s: is_functional(s, values_of), alts
            )
        except RaspError as exc:
            if exc.span is None:
                exc.span = used_at.get(node.id)  # type: ignore[assignment]
            problems.append(exc)
            failed.add(node.id)
            continue
        if not vals:
            problems.append(
                RaspTypeError("this operation fails for every value its inputs can take", node.span)
            )
            failed.add(node.id)
            continue
        if len(vals) > MAX_VALUE_SET:
            problems.append(_too_large(node, "this s-op", len(vals), max_len))
            failed.add(node.id)
            continue
        huge = _beyond_float(vals, node)
        if huge is not None:
            problems.append(huge)
            failed.add(node.id)
            continue
        sets[node.id] = ValueSet(vals)
    for node in ir.walk(root):
        if isinstance(node, ir.Select) and not any(c.id in failed for c in node.children()):
            problem = select_alternatives(node, {i: v.values for i, v in sets.items()}, alts)
            if problem is not None:
                problems.append(problem)
    return sets, problems
