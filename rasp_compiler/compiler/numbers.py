"""Arithmetic on value sets shared by planning, certification and emission: gaps
between values, the mixed-radix projection of several numbers onto one, and the
neighbouring values hardest to keep apart under rounding."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence

from ..language.ir import Atom


def num(value: Atom) -> float:
    """An atom planning knows to be a number (int, float or bool), as a float."""
    if isinstance(value, str):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def min_gap(nums: Iterable[float]) -> float:
    """The smallest distance between distinct values (1.0 when there is one value)."""
    s = sorted(set(nums))
    gaps = [b - a for a, b in zip(s, s[1:])]
    return min(gaps) if gaps else 1.0


def projection(
    value_sets: Sequence[Sequence[Atom]],
) -> tuple[list[float], list[tuple[float, ...]]]:
    """Mixed-radix weights ``lam`` so ``u = sum lam_k x_k`` is injective on the product
    of the numbers' value sets.

    Returns the weights and, per input, its sorted distinct float values.  Neighbouring
    values of ``u`` are at least the smallest gap of the first input apart.
    """
    lams: list[float] = []
    values: list[tuple[float, ...]] = []
    span = 0.0  # range of the partial sum so far
    unit = None
    for vs in value_sets:
        vals = tuple(sorted({float(v) for v in vs}))
        gaps = [b - a for a, b in zip(vals, vals[1:])]
        gap = min(gaps) if gaps else 1.0
        if unit is None:
            lam = 1.0
            unit = gap
        else:
            lam = (span + unit) / gap
        lams.append(lam)
        values.append(vals)
        span += lam * (vals[-1] - vals[0])
    return lams, values


def projected_tolerances(value_sets: Sequence[Sequence[Atom]]) -> list[float]:
    """Per number folded into one by :func:`projection`: how far it may be off for the
    projection's neighbouring values to stay within an eighth of their smallest gap (the
    eighth shared among the numbers)."""
    if not value_sets:
        return []
    lams, vals = projection(value_sets)
    u_gap = min_gap(vals[0]) * lams[0]
    return [u_gap / (8.0 * lam * len(value_sets)) for lam in lams]


def projection_ratio(value_sets: Sequence[Sequence[Atom]]) -> float:
    """Range over smallest gap of the joint projection of several numbers (a precision
    proxy: the larger, the harder for float32 to tell neighbouring combinations apart)."""
    lams, vals = projection(value_sets)
    span = sum(lam * (v[-1] - v[0]) for lam, v in zip(lams, vals))
    return span / min_gap(vals[0])


def binding_pair(values: Sequence[Atom], divisor: float) -> tuple[float, float]:
    """(magnitude, tolerance) of the neighbouring values hardest to keep apart under
    relative rounding: tolerance is their gap / ``divisor``."""
    nums = sorted({float(v) for v in values})
    if len(nums) < 2:
        return (abs(nums[0]) if nums else 0.0, math.inf)
    pairs = [(max(abs(a), abs(b)), (b - a) / divisor) for a, b in zip(nums, nums[1:])]
    return max(pairs, key=lambda p: p[0] / p[1])


def nearest_other_sq(keys: Sequence[float], queries: Sequence[float]) -> float:
    """The smallest ``(k - q)^2`` over sorted ``keys`` and ``queries`` with ``k != q``."""
    best = math.inf
    for q in queries:
        i = bisect.bisect_left(keys, q)
        for j in (i - 1, i, i + 1):
            if 0 <= j < len(keys) and keys[j] != q:
                best = min(best, (keys[j] - q) ** 2)
    return best if best < math.inf else 1.0
