"""Digit equality heads: ``select(count, q, ==)`` over two base-B digits' one-hots.

Sort's last head, ``select(target, indices, ==)``, compares a count (values 0..L) with
the indices.  Compared as numbers (:mod:`.numeric_eq`) the count must be read from MLP
tables to about 1e-4, and past max length ~256 float32 sums of a thousand table steps
do not get there; compared as one-hots it needs an (L+1)-wide one-hot of the count and
an L-wide one of the indices, and a score product of that width at every key.

Split into base-B digits instead (``B ~ sqrt(L)``), the count equals the query exactly
when both digits do: the score ``[hi_k == hi_q] + [lo_k == lo_q]`` is 2 on equal keys
and at most 1 elsewhere; BOS scores 1.5, so a query with no equal key attends BOS
alone.  The key's digit one-hots are classes of the count one MLP table writes (its
steps are the count's, its outputs ~2 sqrt(L) instead of L); the query's are
positional embeddings.  One-hot rows tolerate errors of about 1/32, where the count's
number needed 1e-4, so the table's float rounding never tilts the head.
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


@dataclass(frozen=True)
class DigitEq:
    keys: ir.SelectorWidth
    queries: ir.SOp
    query_positions: tuple[float, ...]
    base: int


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
    base = math.isqrt(int(max(keys))) + 1  # two digits reach the largest count
    return DigitEq(k, sel.queries, positions, base)


def _digits(v: float, base: int) -> tuple[int, int] | None:
    """(high, low) digits of ``v``, or None when no count can equal ``v``."""
    if v < 0 or not float(v).is_integer():
        return None
    return int(v) // base, int(v) % base


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
    """One head scoring ``select(count, q, ==)`` as the sum of two digit matches
    (``uniform``: it averages numbers over several keys, which must weigh alike)."""
    k, base = eq.keys, eq.base
    values, value_stage = values_at
    counts = p.values(k)
    hi_groups: dict[int, list] = {}
    lo_groups: dict[int, list] = {}
    for v in counts:
        hi, lo = divmod(int(num(v)), base)
        hi_groups.setdefault(hi, []).append(v)
        lo_groups.setdefault(lo, []).append(v)
    his, los = sorted(hi_groups), sorted(lo_groups)
    k_hi = p.cat_groups(k, tuple(tuple(hi_groups[c]) for c in his))
    k_lo = p.cat_groups(k, tuple(tuple(lo_groups[c]) for c in los))
    qdigits = [_digits(v, base) for v in eq.query_positions]
    qname = p.name(eq.queries)
    terms: list[QK] = []
    for which, classes, rep in ((0, his, k_hi), (1, los, k_lo)):
        tag = f"query//{base}" if which == 0 else f"query%{base}"
        for c, row in zip(classes, rep.rows):
            at = tuple(1.0 if d is not None and d[which] == c else 0.0 for d in qdigits)
            if not any(at):
                continue  # no query has this digit: the key's class never scores
            q = p.positional_dir(role_dir(qname, f"{tag}=={c}"), at)
            terms.append((q, key_side(row), 1.0))
    terms.append((Lin.unit(ONE), Lin.unit(BOS), 1.5))  # one digit matching scores at most 1
    terms.append((Lin.unit(BOS), Lin.unit(BOS), 4.0))  # the BOS query attends BOS alone
    gap = 0.5
    for rep in (k_hi, k_lo):
        if rep.sources:  # a row off by e moves a score by at most e (one class per digit)
            p.require(rep, gap / 16.0)
    stage = max(k_hi.stage, k_lo.stage, value_stage)
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
            magnitude=2.0 + 1.5 + 4.0,
            averages=averages,
            uniform=uniform,
        )
    )
