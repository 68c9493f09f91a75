"""Certifying a finished plan for a dtype: every rounding the model does in that dtype
stays inside the margins the plan's exactness argument allows.

Four checks, each a located error when it fails: MLP pre-activations, numbers an MLP
reads, attention scores against their gap, and a numerical output's neighbouring
values.  (The attention sharpness itself already accounts for score rounding, see
``emit.attention.sharpness``.)
"""

from __future__ import annotations

from ..dtypes import UNIT_ROUNDOFF
from ..errors import RaspError
from .emit.attention import score_noise
from .numbers import binding_pair
from .plan.types import NumRep, Plan, PlanError


def certify(plan: Plan, dtype: str) -> list[RaspError]:
    """Every reason ``plan`` would not be exact in ``dtype`` (empty: certified)."""
    eps = UNIT_ROUNDOFF[dtype]
    at = f"in {dtype} at max length {plan.max_len}"
    problems: list[RaspError] = [
        PlanError(
            f"this elementwise table needs pre-activations of about {table.magnitude:.3g}, "
            f"too large to stay exact {at}",
            job.span,
        )
        for job, table in zip(plan.mlps, plan.tables)
        if table.magnitude * eps * 8 > 0.25
    ]
    problems += [
        PlanError(
            f"reads a number as large as {vmax:.4g} that must stay within {tol:.3g}; "
            f"{dtype} rounds it by about {vmax * eps:.3g} at max length {plan.max_len}",
            job.span,
        )
        for job in plan.mlps
        for vmax, tol in job.tolerances
        if vmax * eps * 4 > tol
    ]
    problems += [
        PlanError(
            f"this attention head's scores reach about {h.magnitude:.3g}; {dtype} rounds them "
            f"by up to {score_noise(h, eps):.3g}, too close to the gap of {h.gap:.3g} "
            f"that separates selected keys at max length {plan.max_len}",
            h.span,
        )
        for h in plan.heads
        if score_noise(h, eps) > h.gap / 4
    ]
    out = plan.output
    if isinstance(out, NumRep) and len(out.values) > 1:
        vmax, tol = binding_pair(out.values, 4.0)
        if vmax * eps * 4 > tol:
            problems.append(
                PlanError(
                    f"the output's possible values near {vmax:.4g} are {4 * tol:.3g} apart; "
                    f"{dtype} cannot keep them apart at max length {plan.max_len}",
                    None,
                )
            )
    return problems
