"""Numerical equality heads: ``select(k, q, ==)`` over numbers without one-hots."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...dtypes import UNIT_ROUNDOFF
from ...errors import Span
from ...language import ir
from ...language.ir import Atom
from ..emit.attention import ROUNDINGS
from ..numbers import nearest_other_sq, num
from ..positions import affine_form
from ..residual import BOS, ONE, Lin, role_dir
from ..value_sets import ValueSet
from .state import PlanState, fused_fn
from .types import QK, Head, HeadKind, NumRep, Rep, key_side

#: ``select(a, b, ==)`` over numbers uses a numerical head (two residual directions a
#: side instead of a one-hot) once a side has at least this many values.
NUMERIC_EQ_MIN_VALUES = 12


@dataclass(frozen=True)
class NumericEq:
    keys: ir.SOp
    queries: ir.SOp
    #: the key's value at index 0, 1, ...; None for a count the model computes (its
    #: number and its centred square are MLP outputs)
    key_positions: tuple[float, ...] | None
    query_positions: tuple[float, ...] | None  # the same for the query, if positional
    #: compare base-``base`` digits (high, low) instead of the numbers (a computed count
    #: too large for the dtype to compare whole)
    base: int | None = None


def numeric_eq(p: PlanState, sel: ir.Selector) -> NumericEq | None:
    """How to score ``sel`` with a numerical head, when it is ``select(keys, queries,
    ==)`` over numbers that is cheaper that way (see :func:`_numeric_eq_head`)."""
    if not (isinstance(sel, ir.Select) and sel.cmp == "=="):
        return None
    k, q = sel.keys, sel.queries
    if not (isinstance(k, ir.SOp) and isinstance(q, ir.SOp)):
        return None
    kv, qv = p.values(k), p.values(q)
    if not (ValueSet(kv).numeric and ValueSet(qv).numeric):
        return None
    if max(len(kv), len(qv)) < NUMERIC_EQ_MIN_VALUES and p.eps <= UNIT_ROUNDOFF["float32"]:
        return None  # in float16/bfloat16 a one-hot's tables are what cannot stay exact
    kpos = positional_values(p, k)
    if kpos is None:
        qpos = positional_values(p, q)
        if qpos is None or not isinstance(k, ir.SelectorWidth) or k.id in p.plain_counts:
            return None
        # select(count, indices, ==), as sort's last head: the count whole, or in digits
        if _separable(p, kv, qv):
            return NumericEq(k, q, None, qpos)
        base = _digit_base(p, kv, qpos)
        return None if base is None else NumericEq(k, q, None, qpos, base)
    qpos = positional_values(p, q)
    if qpos is None and not (
        kpos == tuple(float(i) for i in range(p.max_len)) and _always_an_index(p, q)
    ):
        return None
    if p.eps > UNIT_ROUNDOFF["float32"] and _hopeless(p, kv, qv):
        return None  # its scores would be refused: one-hots, which may stay exact
    return NumericEq(k, q, kpos, qpos)


def _hopeless(p: PlanState, kv: tuple[Atom, ...], qv: tuple[Atom, ...]) -> bool:
    """Would the planned dtype round a numerical equality head's scores by more than the
    assembler allows (a quarter of its gap) even at the fewest roundings a score takes
    (two: its weights' and its own), its scores too large to be exact (whole numbers up
    to ``1 / eps``)?  Then it is refused whatever else is planned."""
    magnitude, _ = _scores(kv, qv)
    if magnitude * p.eps <= 1.0:
        return False  # it may be scored exactly
    return not _separable(p, kv, qv, roundings=2.0, share=4.0)


def _scores(kv: tuple[Atom, ...], qv: tuple[Atom, ...]) -> tuple[float, float]:
    """(largest score, gap) of a numerical equality head over these values (centred)."""
    ks, qs = [num(v) for v in kv], [num(v) for v in qv]
    centre = (min(ks) + max(ks)) / 2.0
    kmax, qmax = max(abs(v - centre) for v in ks), max(abs(v - centre) for v in qs)
    gap = nearest_other_sq(sorted(set(ks)), sorted(set(qs)))
    return 2 * qmax * kmax + kmax * kmax + qmax * qmax + gap, gap


def _separable(
    p: PlanState,
    kv: tuple[Atom, ...],
    qv: tuple[Atom, ...],
    roundings: float = ROUNDINGS,
    share: float = 8.0,
) -> bool:
    """Can the planned dtype keep a numerical equality head's scores apart (the
    assembler's test, :func:`.emit.attention.score_noise`)?  Where it cannot, the
    selector is scored from one-hots instead, which stays exact."""
    magnitude, gap = _scores(kv, qv)
    return roundings * magnitude * p.eps < gap / share  # a quarter of the head's gap (gap / 2)


def _digit_base(p: PlanState, kv: tuple[Atom, ...], qpos: tuple[float, ...]) -> int | None:
    """The base whose two digits compare a count with a positional query within the
    dtype's precision (each digit's score terms stay about ``base^2``), or None."""
    values = [num(v) for v in kv] + list(qpos)
    if any(v < 0 or not float(v).is_integer() for v in values):
        return None
    top = int(max(values))
    base = max(2, math.isqrt(top) + 1)  # two digits reach top
    hi = top // base
    magnitude = 3 * hi * hi + 3 * (base - 1) ** 2 + 1
    return base if ROUNDINGS * magnitude * p.eps < 1 / 8 else None


def positional_values(p: PlanState, node: ir.SOp) -> tuple[float, ...] | None:
    """The s-op's value at index 0, 1, ... when it is a function of indices alone."""
    if isinstance(node, ir.Indices):
        return tuple(float(i) for i in range(p.max_len))
    if not isinstance(node, ir.Map):
        return None
    leaf = p.chain_leaf(node)
    if not isinstance(leaf, ir.Indices):
        return None
    fn = fused_fn(node, [leaf])
    out = []
    for i in range(p.max_len):
        y = fn((i,))
        if y is None or not ir.is_number(y):
            return None
        out.append(num(y))
    return tuple(out)


def _always_an_index(p: PlanState, node: ir.SOp) -> bool:
    """Is ``node`` ``a*length + b*indices + c`` with a value in ``[0, length)`` at
    every index of every length?  (Then ``select(indices, node, ==)`` always
    selects exactly one key, as in ``length - indices - 1``.)"""
    form = affine_form(node)
    if form is None:
        return False
    a, b, c = form
    for n in range(1, p.max_len + 1):
        for i in (0, n - 1):
            v = a * n + b * i + c
            if not (float(v).is_integer() and 0 <= v <= n - 1):
                return False
    return True


def _eval_at_bos(lin: Lin) -> float:
    """A read-out's value at the BOS position at the start of a layer (one + bos)."""
    d = lin.as_dict()
    return d.get(ONE, 0.0) + d.get(BOS, 0.0)


def numeric_eq_head(
    p: PlanState,
    eq: NumericEq,
    label: str,
    span: Span | None,
    values_at: tuple[tuple[tuple[str, Lin], ...], int],
    leak: float,
    value_span: float,
    averages: tuple[Rep, ...],
    one_key: bool = False,
) -> Head:
    """One head for ``select(k, q, ==)`` over numbers, with k a function of indices
    (``one_key``: ``Head.one_key``, where the selector is functional; not for counts'
    digits, whose keys repeat).

    With ``k' = k - c`` and ``q' = q - c`` (``c`` centres the keys, to keep scores
    small), the score ``2 q' k' - k'^2 = q'^2 - (k' - q')^2`` is ``q'^2`` on keys equal
    to the query and at least ``gap`` (the smallest nonzero ``(k - q)^2``) lower on
    every other key.  ``k'`` and ``k'^2`` are positional-embedding directions.  The
    BOS key (where ``k'`` reads 0) scores ``q'^2 - gap/2`` when ``q'^2`` is positional
    too, so a query with no equal key attends BOS alone; when the query is provably
    always an index (``length - indices - 1``) BOS scores ``-gap``, never attended."""
    if eq.base is not None:
        return _digits_head(p, eq, label, span, values_at, leak, value_span, averages)
    k, q, kpos, qpos = eq.keys, eq.queries, eq.key_positions, eq.query_positions
    values, value_stage = values_at
    kname, qname = p.name(k), p.name(q)
    key_stage = 0
    if kpos is None:  # a count: its number and centred square come from MLPs
        kvals_all = [num(v) for v in p.values(k)]
        centre = (min(kvals_all) + max(kvals_all)) / 2.0
        kc = tuple(v - centre for v in kvals_all)
        krep = p.num(k)
        k1 = key_side(krep.lin - Lin.const(centre))  # reads 0 at BOS, as k2 does
        square = p.count_feature(k, f"(count-{centre:g})^2", lambda w: (w - centre) ** 2)
        k2 = square.lin
        key_stage = max(krep.stage, square.stage)
    else:
        centre = (min(kpos) + max(kpos)) / 2.0
        if all(float(v).is_integer() for v in kpos):
            centre = float(math.floor(centre))  # integer keys stay integers
        kc = tuple(v - centre for v in kpos)
        k1 = p.positional_dir(role_dir(kname, f"key-{centre:g}"), kc)
        k2 = p.positional_dir(role_dir(kname, f"(key-{centre:g})^2"), tuple(v * v for v in kc))
    qrep: NumRep
    if qpos is not None:  # a function of indices: embedded, like the key side
        q1 = p.positional_dir(role_dir(qname, f"query-{centre:g}"), tuple(v - centre for v in qpos))
        qrep = NumRep(q1, p.values(q), 0)
    else:
        qrep = p.num(q)
        q1 = qrep.lin - Lin.const(centre)
    kvals = sorted({num(v) for v in p.values(k)})
    qvals = sorted({num(v) for v in p.values(q)})
    gap = nearest_other_sq(kvals, qvals)
    qmax = max(abs(v - centre) for v in qvals)
    kmax = max(abs(v) for v in kc)
    qb = _eval_at_bos(q1)  # the BOS query (residual one + bos) must attend BOS alone
    bos_level = qb * qb + 2 * abs(qb) * kmax + gap + 2.0
    if qpos is not None:
        # scores doubled (BOS keys score ``q'^2 - gap/2`` before): integers stay integers
        qc = tuple(v - centre for v in qpos)
        q2 = p.positional_dir(role_dir(qname, f"(query-{centre:g})^2"), tuple(v * v for v in qc))
        terms: list[QK] = [
            (q1.scale(4.0), k1, 1.0),
            (Lin.unit(ONE), k2, -2.0),
            (q2, Lin.unit(BOS), 2.0),
            (Lin.unit(ONE), Lin.unit(BOS), -gap),
            (Lin.unit(BOS), Lin.unit(BOS), 2.0 * bos_level),
        ]
        head_gap = gap
        # the largest sum of |terms|: a token's row, and the BOS row (qb^2 on BOS keys)
        rows = 4 * qmax * kmax + 2 * kmax * kmax + 2 * qmax * qmax + gap
        bos_row = max(4 * abs(qb) * kmax + 2 * kmax * kmax, 2 * qb * qb + gap + 2 * bos_level)
    else:
        terms = [
            (q1.scale(2.0), k1, 1.0),
            (Lin.unit(ONE), k2, -1.0),
            (Lin.unit(ONE), Lin.unit(BOS), -gap),
            (Lin.unit(BOS), Lin.unit(BOS), bos_level),
        ]
        head_gap = gap
        rows = 2 * qmax * kmax + kmax * kmax + gap
        bos_row = max(2 * abs(qb) * kmax + kmax * kmax, gap + bos_level)
    tol = head_gap / (16.0 * max(kmax, 1.0))  # a query not yet exact moves its score by 2|dq||k'|
    exact = 0.0
    integral = all(p.integral(a) and p.integral(b) and float(c).is_integer() for a, b, c in terms)
    if integral and max(rows, bos_row) * p.eps <= 1.0:
        # its scores are integers the dtype holds: exact once the query's copied
        # integers are within a quarter unit round-off (they then round to themselves)
        exact, tol = p.eps, min(tol, p.eps / 4.0)
        magnitude = max(rows, bos_row)
    else:
        magnitude = 2 * qmax * kmax + kmax * kmax + qmax * qmax + gap
        magnitude *= 2.0 if qpos is not None else 1.0
    p.require(qrep, tol)
    return p.add_head(
        Head(
            id=p.next_head_id(),
            layer=math.ceil(max(qrep.stage, value_stage, key_stage) / 2),
            label=label,
            span=span,
            qk=tuple(terms),
            values=values,
            gap=head_gap,
            leak=leak,
            kind=HeadKind.AGGREGATE,
            value_span=value_span,
            magnitude=magnitude,
            averages=averages,
            exact=exact,
            count_node=k.id if kpos is None else -1,
            one_key=one_key,
        )
    )


def _digits_head(
    p: PlanState,
    eq: NumericEq,
    label: str,
    span: Span | None,
    values_at: tuple[tuple[tuple[str, Lin], ...], int],
    leak: float,
    value_span: float,
    averages: tuple[Rep, ...],
) -> Head:
    """One head for ``select(count, q, ==)`` with q positional, comparing base-B digits:
    the score ``sum over digits d of 2 q_d k_d - k_d^2 = sum q_d^2 - sum (k_d - q_d)^2``
    is largest, ``sum q_d^2``, exactly on keys equal to the query and at least 1 lower
    elsewhere, while every term stays about ``B^2`` (not the count's square).  The
    count's high digit and the two squares are MLP tables; its low digit is the count
    minus B times the high digit.  BOS (every key read 0 there) scores ``sum q_d^2 - 1/2``."""
    assert eq.base is not None and eq.query_positions is not None
    base, qpos = eq.base, eq.query_positions
    k, q = eq.keys, eq.queries
    values, value_stage = values_at
    qname = p.name(q)
    count = p.num(k)
    hi = p.count_feature(k, f"count//{base}", lambda w: float(w // base))
    hi2 = p.count_feature(k, f"(count//{base})^2", lambda w: float((w // base) ** 2))
    lo2 = p.count_feature(k, f"(count%{base})^2", lambda w: float((w % base) ** 2))
    lo = key_side(count.lin) - hi.lin.scale(float(base))  # count - B * high: 0 at BOS
    qhi = tuple(float(int(v) // base) for v in qpos)
    qlo = tuple(float(int(v) % base) for v in qpos)
    q_hi = p.positional_dir(role_dir(qname, f"query//{base}"), qhi)
    q_lo = p.positional_dir(role_dir(qname, f"query%{base}"), qlo)
    q_sq = p.positional_dir(
        role_dir(qname, f"(query//{base})^2+(query%{base})^2"),
        tuple(a * a + b * b for a, b in zip(qhi, qlo)),
    )
    terms: list[QK] = [
        (q_hi.scale(2.0), hi.lin, 1.0),
        (Lin.unit(ONE), hi2.lin, -1.0),
        (q_lo.scale(2.0), lo, 1.0),
        (Lin.unit(ONE), lo2.lin, -1.0),
        (q_sq, Lin.unit(BOS), 1.0),
        (Lin.unit(ONE), Lin.unit(BOS), -0.5),
        (Lin.unit(BOS), Lin.unit(BOS), 3.0),  # the BOS query (q digits 0) attends BOS
    ]
    top_hi = max(max(qhi), max(hi.values, key=float))  # type: ignore[arg-type]
    magnitude = 3 * float(top_hi) ** 2 + 3 * (base - 1) ** 2 + 1
    key_stage = max(count.stage, hi.stage, hi2.stage, lo2.stage)
    return p.add_head(
        Head(
            id=p.next_head_id(),
            layer=math.ceil(max(key_stage, value_stage) / 2),
            label=label,
            span=span,
            qk=tuple(terms),
            values=values,
            gap=0.5,
            leak=leak,
            kind=HeadKind.AGGREGATE,
            value_span=value_span,
            magnitude=magnitude,
            averages=averages,
            count_node=k.id,
        )
    )
