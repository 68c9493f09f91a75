"""What a narrow dtype does to a categorical head's scores, decided when the head is
planned: whether every score is computed exactly (``Head.exact``), and otherwise how many
roundings it takes (``Head.roundings``).  float32 plans keep the general answers."""

from __future__ import annotations

import math

from ...dtypes import UNIT_ROUNDOFF
from ..emit.attention import ROUNDINGS
from .state import PlanState
from .types import QK


def roundings(p: PlanState, terms: list[QK]) -> float:
    """How many roundings a score takes (``Head.roundings``), in a dtype narrower than
    float32 whose matmuls sum in float32 and round once: the query weights (coefficient
    times beta) and the score always; a query's sum only where a query reads a direction
    other than a 0/1 one-hot (then it is one weight, exactly); a key's only where a key
    reads other than a 0/1 one-hot or a direction times a power of two (an exact
    product).  float32 keeps the general 4."""
    if p.eps <= UNIT_ROUNDOFF["float32"]:
        return ROUNDINGS
    count = 2.0
    if not all(len(q.terms) == 1 and p.zero_one(q.terms[0][0]) for q, _, _ in terms):
        count += 1.0
    if not all(len(k.terms) == 1 and exact_product(p, *k.terms[0]) for _, k, _ in terms):
        count += 1.0
    return count


def exact_product(p: PlanState, name: str, coef: float) -> bool:
    """Is ``x * coef`` exact in every dtype for what direction ``name`` holds?"""
    if p.zero_one(name):
        return float(coef).is_integer() and abs(coef) <= 256
    mantissa, _ = math.frexp(abs(coef))
    return mantissa == 0.5  # a power of two


def exact_scores(p: PlanState, terms: list[QK], magnitude: float) -> bool:
    """In a dtype narrower than float32: are the head's scores sums of half-integers
    (times beta, a power of two once ``exact`` is set) that the dtype holds, read only
    from directions held exactly?  Then every score is computed exactly, so keys that
    score alike get equal weights (a count's 1/(w+1) is the one rounding of it).  Not in
    float32, where it would only change beta (its rounding is far below every gap)."""
    if p.eps <= UNIT_ROUNDOFF["float32"]:
        return False
    for q, k, coef in terms:
        if not all(p.held_exactly(n) for n in (*q.names(), *k.names())):
            return False
        if not all(float(2.0 * a * coef).is_integer() for _, a in q.terms):
            return False
        if not all(float(b).is_integer() for _, b in k.terms):
            return False
    return 2.0 * magnitude * p.eps <= 1.0
