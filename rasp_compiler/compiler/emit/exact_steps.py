"""Steps whose pre-activations a narrow dtype holds exactly.

A table's step between neighbouring values ``u_a < u_b`` of its number ``u`` is two
ReLUs, ``ReLU(s(u - t) + 1/2) - ReLU(s(u - t) - 1/2)`` (see :mod:`.mlp`).  Its output is
exactly 1 on its active side only if the dtype stores both pre-activations exactly (or
rounds them alike): a difference of two rounded numbers is otherwise off by a unit in
the last place of the larger, 2^-7 in bfloat16 near 1.5.  The midpoint ``t`` and the
slope ``2 / (u_b - u_a)`` rarely give such numbers when ``u`` is a fraction (a counting
head's ``1/(w+1)``).

:func:`placed_step` looks for a slope that is a power of two and an integer ``m`` with the
pre-activations ``s u - m + 1`` and ``s u - m`` (facing up, or ``m - s u + 1`` and
``m - s u`` facing down): ``s u`` is then exact, the sums are exact in float32, and both
pre-activations are exact in the dtype wherever they have at most its significant bits,
which is checked at every value ``u`` takes and at its neighbours in the dtype (a number
an attention head writes may be a unit in the last place off its value).  The result is
a placement only: the runs of :mod:`..exact_tables` decide whether the table is exact.
"""

from __future__ import annotations

import math

#: Powers of two tried above the smallest slope that separates the two values.
EXTRA_DOUBLINGS = 4
#: Integers ``m`` tried per slope and facing.
MAX_OFFSETS = 64
#: How far both pre-activations stay from a ReLU's kink at every value where a step
#: can (the default step's: its ramp is at least 1 from its middle, its offsets 1/2)
MARGIN = 0.5


def held(x: float, bits: int) -> bool:
    """Is ``x`` a number with at most ``bits`` significant bits (and in a range every
    narrow dtype holds without subnormals)?"""
    if x == 0.0:
        return True
    mant, exp = math.frexp(abs(x))
    return -14 <= exp <= 15 and (mant * (1 << bits)).is_integer()


def neighbours(u: float, bits: int) -> tuple[float, ...]:
    """``u`` if the dtype holds it, else the two dtype numbers around it."""
    if held(u, bits):
        return (u,)
    _, exp = math.frexp(u)
    ulp = math.ldexp(1.0, exp - bits)
    lo = math.floor(u / ulp) * ulp
    return (lo, lo + ulp)


def _exact(pre: list[float], bits: int) -> bool:
    return all(held(p, bits) for p in pre)


def default_holds(
    us: list[float],
    t: float,
    s: float,
    up: bool,
    weights: list[float],
    bits: int,
    const: float = 0.0,
) -> bool:
    """Do the default step's weights and its pre-activations at the active values
    (``s (u - t) +- 1/2`` facing up, ``s (t - u) +- 1/2`` down) have ``bits`` bits?"""
    if not all(held(w * s, bits) for w in weights):
        return False
    ramp = [s * (u - t) if up else s * (t - u) for u in us]
    active = [r for r in ramp if r > 0]
    bias = s * (const - t) if up else s * (t - const)
    return (
        held(bias + 0.5, bits)
        and held(bias - 0.5, bits)
        and _exact([r + h for r in active for h in (0.5, -0.5)], bits)
    )


def placed_step(
    us: list[float],
    ua: float,
    ub: float,
    up_first: bool,
    weights: list[float],
    bits: int,
    margin: float = MARGIN,
    const: float = 0.0,
) -> tuple[float, float, bool] | None:
    """``(t, s, facing up)`` for a step between neighbouring values ``ua < ub`` of a
    number taking the values ``us``, with the pre-activations of the module docstring;
    ``weights`` are the number's coefficients on its residual directions (scaled by
    ``s``, they must be held too); ``margin`` how far from a kink the pre-activations
    stay.  None where no slope of the few tried gives one."""
    below = [v for u in us if u <= ua for v in neighbours(u, bits)]
    above = [v for u in us if u >= ub for v in neighbours(u, bits)]
    if not below or not above or max(below) >= min(above):
        return None
    k0 = math.ceil(-math.log2(min(above) - max(below)))
    for up in (up_first, not up_first):
        for k in range(k0, k0 + EXTRA_DOUBLINGS + 1):
            s = math.ldexp(1.0, k)
            if not all(held(w * s, bits) for w in weights):
                continue
            if up:  # s u - m + 1 <= -margin below, s u - m >= margin above
                lo = math.ceil(s * max(below) + 1.0 + margin)
                hi = math.floor(s * min(above) - margin)
            else:  # m - s u >= margin below, m - s u + 1 <= -margin above
                lo = math.ceil(s * max(below) + margin)
                hi = math.floor(s * min(above) - 1.0 - margin)
            for m in range(lo, min(hi, lo + MAX_OFFSETS) + 1):
                # the biases: the number's constant part times s, with the offsets
                bias = s * const - m if up else m - s * const
                if not (held(bias, bits) and held(bias + 1.0, bits)):
                    continue
                side = above if up else below
                pre = [s * v - m if up else m - s * v for v in side]
                if _exact([p + h for p in pre for h in (0.0, 1.0)], bits):
                    t = (m - 0.5) / s if up else (m + 0.5) / s
                    return t, s, up
    return None


def step_place(
    us: list[float],
    ua: float,
    ub: float,
    extremes: tuple[float, float],
    weights: list[float],
    bits: int,
    const: float = 0.0,
) -> tuple[float, float, bool]:
    """``(t, s, facing up)`` of the step between ``ua < ub``: the midpoint and ``2 /
    (ub - ua)``, facing the side whose pre-activations stay smaller up to the number's
    ``extremes``; with ``bits`` (a narrow dtype's) where that step's are not held, the
    :func:`placed_step` if one is found."""
    t, s = (ua + ub) / 2.0, 2.0 / (ub - ua)
    u_min, u_max = extremes
    up = s * (u_max - t) <= s * (t - u_min)
    if bits and not default_holds(us, t, s, up, weights, bits, const):
        # as far from the kinks as the default step, which keeps the bounds of
        # certification finite; else touching them, which only a run can show exact
        for margin in (MARGIN, 0.0):
            placed = placed_step(us, ua, ub, up, weights, bits, margin, const)
            if placed is not None:
                return placed
    return t, s, up
