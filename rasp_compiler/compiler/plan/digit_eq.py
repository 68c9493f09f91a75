"""Digit equality heads: ``select(count, q, ==)`` over the one-hots of base-B digits.

Sort's last head, ``select(target, indices, ==)``, compares a count (values 0..L) with
the indices.  Compared as numbers (:mod:`.numeric_eq`) the count must be read from MLP
tables to about 1e-4, and past max length ~256 float32 sums of a thousand table steps
do not get there; compared as one-hots it needs an (L+1)-wide one-hot of the count and
an L-wide one of the indices, and a score product of that width at every key.

Split into ``n`` base-B digits instead (``B ~ L^(1/n)``), the count equals the query
exactly when every digit does: the score ``sum_i [d_i(k) == d_i(q)]`` is n on equal
keys and at most n - 1 elsewhere; BOS scores n - 1/2, so a query with no equal key
attends BOS alone.  The key's digit one-hots are classes of the count one MLP table
writes (its steps are the count's, its outputs ~n L^(1/n) instead of L); the query's
are positional embeddings.  One-hot rows tolerate errors of about 1/(16 n), where the
count's number needed 1e-4, so the table's float rounding never tilts the head.

Two digits at first; three where that shrinks the one-hots to at most
``THREE_DIGITS_SHARE`` of two digits' (from about 250 values on): sort at 1024 compares
31 classes (9 + 11 + 11) instead of 65 (32 + 33), which halves both the head's score
product and the columns the count's table writes, for about a tenth more table steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...errors import Span
from ...language import ir
from ..numbers import num
from ..residual import BOS, ONE, Lin, role_dir
from .state import PlanState
from .types import QK, Head, HeadKind, Rep, key_side

#: a count with at least this many values is compared digit by digit (below it, its
#: one-hot is about as small as two digits' one-hots)
DIGIT_EQ_MIN_VALUES = 64


#: three digits where their classes number at most this share of two digits' classes
THREE_DIGITS_SHARE = 0.6


@dataclass(frozen=True)
class DigitEq:
    keys: ir.SelectorWidth
    queries: ir.SOp
    query_positions: tuple[float, ...]
    base: int
    digits: int = 2


def digit_eq(p: PlanState, sel: ir.Selector, positions: tuple[float, ...] | None) -> DigitEq | None:
    """How to score ``sel`` by digits, when it is ``select(count, q, ==)`` with ``q`` a
    function of the indices (``positions``: its value at index 0, 1, ...) and the count
    has many values."""
    if not (isinstance(sel, ir.Select) and sel.cmp == "==" and positions is not None):
        return None
    k = sel.keys
    if not isinstance(k, ir.SelectorWidth) or not isinstance(sel.queries, ir.SOp):
        return None
    keys = [num(v) for v in p.values(k)]
    if len(keys) < DIGIT_EQ_MIN_VALUES or any(v < 0 or not v.is_integer() for v in keys):
        return None
    ints = [int(v) for v in keys]
    two, three = _base(max(ints), 2), _base(max(ints), 3)
    if _classes(ints, three, 3) <= THREE_DIGITS_SHARE * _classes(ints, two, 2):
        return DigitEq(k, sel.queries, positions, three, 3)
    return DigitEq(k, sel.queries, positions, two, 2)


def _base(top: int, n: int) -> int:
    """The smallest base whose ``n`` digits reach ``top``."""
    base = max(2, int(round((top + 1) ** (1.0 / n))) - 1)
    while base**n <= top:
        base += 1
    return base


def _classes(values: list[int], base: int, n: int) -> int:
    """How many one-hot classes ``n`` base-``base`` digits of ``values`` take."""
    return sum(len({_split(v, base, n)[i] for v in values}) for i in range(n))


def _split(v: int, base: int, n: int) -> tuple[int, ...]:
    """The ``n`` base-``base`` digits of ``v``, most significant first."""
    out = []
    for _ in range(n):
        v, d = divmod(v, base)
        out.append(d)
    return tuple(reversed(out))


def _digits(v: float, base: int, n: int) -> tuple[int, ...] | None:
    """The digits of ``v``, or None when no count can equal ``v``."""
    if v < 0 or not float(v).is_integer():
        return None
    return _split(int(v), base, n)


def digit_eq_head(
    p: PlanState,
    eq: DigitEq,
    label: str,
    span: Span | None,
    values_at: tuple[tuple[tuple[str, Lin], ...], int],
    leak: float,
    value_span: float,
    averages: tuple[Rep, ...],
    uniform: bool,
) -> Head:
    """One head scoring ``select(count, q, ==)`` as the sum of its digits' matches
    (``uniform``: it averages numbers over several keys, which must weigh alike)."""
    k, base, n = eq.keys, eq.base, eq.digits
    values, value_stage = values_at
    counts = p.values(k)
    groups: list[dict[int, list]] = [{} for _ in range(n)]
    for v in counts:
        for i, d in enumerate(_split(int(num(v)), base, n)):
            groups[i].setdefault(d, []).append(v)
    classes = [sorted(g) for g in groups]
    reps = [p.cat_groups(k, tuple(tuple(g[c]) for c in cs)) for g, cs in zip(groups, classes)]
    qdigits = [_digits(v, base, n) for v in eq.query_positions]
    qname = p.name(eq.queries)
    terms: list[QK] = []
    for which, (cs, rep) in enumerate(zip(classes, reps)):
        scale = base ** (n - 1 - which)
        if which == n - 1:
            tag = f"query%{base}"
        elif which == 0:
            tag = f"query//{scale}"
        else:
            tag = f"query//{scale}%{base}"
        for c, row in zip(cs, rep.rows):
            at = tuple(1.0 if d is not None and d[which] == c else 0.0 for d in qdigits)
            if not any(at):
                continue  # no query has this digit: the key's class never scores
            q = p.positional_dir(role_dir(qname, f"{tag}=={c}"), at)
            terms.append((q, key_side(row), 1.0))
    # all but one digit matching scores at most n - 1
    terms.append((Lin.unit(ONE), Lin.unit(BOS), n - 0.5))
    terms.append((Lin.unit(BOS), Lin.unit(BOS), 4.0))  # the BOS query attends BOS alone
    gap = 0.5
    for rep in reps:
        if rep.sources:  # a row off by e moves a score by at most e (one class per digit)
            p.require(rep, gap / (8.0 * n))
    stage = max([r.stage for r in reps] + [value_stage])
    return p.add_head(
        Head(
            id=p.next_head_id(),
            layer=math.ceil(stage / 2),
            label=label,
            span=span,
            qk=tuple(terms),
            values=values,
            gap=gap,
            leak=leak,
            kind=HeadKind.AGGREGATE,
            value_span=value_span,
            magnitude=n + (n - 0.5) + 4.0,
            averages=averages,
            uniform=uniform,
        )
    )
