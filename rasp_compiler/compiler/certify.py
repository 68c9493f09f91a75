"""Certifying a finished plan for a dtype: every rounding the model does in that dtype
stays inside the margins the plan's exactness argument allows.

Four checks, each a located error when it fails: MLP pre-activations, numbers an MLP
reads, attention scores against their gap, and a numerical output's neighbouring
values.  (The attention sharpness itself already accounts for score rounding, see
``emit.attention.sharpness``.)  The first two start from a quick bound by size; a table
or a number that fails it is looked at point by point (:mod:`.table_rounding`) and value
by value (:mod:`.number_rounding`) before it is refused.
"""

from __future__ import annotations

import numpy as np
import torch

from ..dtypes import MAX_FINITE, UNIT_ROUNDOFF, torch_dtype
from ..errors import RaspError, Span
from ..language.ir import Atom
from .emit.attention import score_noise, sharpness
from .exact_tables import Simulated, output_deviation, proven_exact
from .number_rounding import number_problems
from .numbers import binding_pair, num
from .plan.make import RECIPROCAL_LEAK_SHARE
from .plan.types import MLPJob, NumRep, Plan, PlanError, Table, projected_numbers
from .rounding import table_row_errors
from .table_rounding import DEFAULT_TOLERANCE, consumer_constraints, point_bounds, run_used

#: numbers in the residual stay below the dtype's largest finite number by this factor
#: (room for the sums a layer adds up)
RANGE_MARGIN = 16.0


def certify(plan: Plan, dtype: str) -> list[RaspError]:
    """Every reason ``plan`` would not be exact in ``dtype`` (empty: certified)."""
    return out_of_range(plan, dtype) + unproven_rows(plan, dtype) + rounding_problems(plan, dtype)


def unproven_rows(plan: Plan, dtype: str) -> list[RaspError]:
    """Rows and numbers the plan holds exactly (``Plan.proven``, ``Plan.proven_numbers``)
    that running its tables in ``dtype`` bit for bit does not show exact (planning for
    another dtype, or again with other choices): the heads reading them would not be
    exact."""
    if not plan.proven and not plan.proven_numbers:
        return []
    rows, numbers = proven_exact(plan, dtype)
    missing = sorted((plan.proven - rows) | (plan.proven_numbers - numbers))
    if not missing:
        return []
    msg = (
        f"the plan reads {len(missing)} directions (such as {missing[0]!r}) as exact in {dtype}, "
        f"but their tables do not compute them exactly at max length {plan.max_len}"
    )
    return [PlanError(msg, None)]


def out_of_range(plan: Plan, dtype: str) -> list[RaspError]:
    """Numbers the model would hold that ``dtype`` cannot represent (with a margin): the
    numbers MLPs read and write, MLP pre-activations, attention scores, positional
    entries and a numerical output."""
    limit = MAX_FINITE[dtype] / RANGE_MARGIN
    eps = UNIT_ROUNDOFF[dtype]
    found: list[tuple[float, str, Span | None]] = []
    for job, table in zip(plan.mlps, plan.tables):
        for rep in job.inputs:
            if isinstance(rep, NumRep):
                found.append((_largest(rep.values), "reads a number", job.span))
        found.append((table.magnitude, "computes a pre-activation", job.span))
    for h in plan.heads:
        score = h.magnitude * sharpness(h, plan.max_len, eps)
        found.append((score, "computes an attention score", h.span))
    for entry in plan.positional:
        found.append((max((abs(v) for v in entry.values), default=0.0), "embeds a number", None))
    if isinstance(plan.output, NumRep):
        found.append((_largest(plan.output.values), "outputs a number", None))
    return [
        PlanError(
            f"{what} as large as {size:.4g}, beyond what {dtype} can hold (about "
            f"{MAX_FINITE[dtype]:.4g}) at max length {plan.max_len}",
            span,
        )
        for size, what, span in found
        if not size <= limit
    ]


def tilted_heads(plan: Plan, dtype: str) -> list[tuple[PlanError, frozenset[int]]]:
    """Heads that must weigh their selected keys equally (counts, means) whose scores read
    rows an MLP table over several numbers at once writes (a mixed-radix projection,
    whose steps are steep: large pre-activations).  That table's float rounding moves each
    key's score, and ``beta`` times the spread tilts the weights; the tilt must stay
    within the head's leak (its error budget), else the count or mean may be off.

    The rows' errors are measured by running each such table in ``dtype`` on its points
    (:mod:`.rounding`).  Returns, per tilted head, the error and the s-ops (by id) whose
    joint tables tilt it; an empty list means every such head is certified."""
    eps = UNIT_ROUNDOFF[dtype]
    read: set[str] = set()
    for h in plan.heads:
        if h.uniform:
            for q, k, _ in h.qk:
                read.update(q.names())
                read.update(k.names())
    row_error: dict[str, float] = {}
    writer: dict[str, set[int]] = {}
    for job, table in zip(plan.mlps, plan.tables):
        projected = projected_numbers(job, table)
        if projected < 2:
            continue  # one number (others read as gates): small pre-activations, as above
        for d, err in table_row_errors(job, table, dtype, read).items():
            row_error[d] = max(row_error.get(d, 0.0), err)
            if err > 0.0:
                writer.setdefault(d, set()).add(job.node_id)
    problems: list[tuple[PlanError, frozenset[int]]] = []
    for h in plan.heads:
        if not h.uniform:
            continue
        spread = 0.0
        sources: set[int] = set()
        for q, k, coef in h.qk:
            qd, kd = q.as_dict(), k.as_dict()
            q_err = max((abs(c) * row_error.get(n, 0.0) for n, c in qd.items()), default=0.0)
            k_err = max((abs(c) * row_error.get(n, 0.0) for n, c in kd.items()), default=0.0)
            q_size = max((abs(c) for c in qd.values()), default=0.0)
            k_size = max((abs(c) for c in kd.values()), default=0.0)
            spread += abs(coef) * (q_size * k_err + k_size * q_err + q_err * k_err)
            for n in list(qd) + list(kd):
                sources |= writer.get(n, set())
        tilt = 2.0 * sharpness(h, plan.max_len, eps) * spread
        if not tilt <= h.leak:
            error = PlanError(
                f"this attention head must weigh the keys it selects equally, but its "
                f"scores read a table over several numbers whose {dtype} rounding (about "
                f"{spread:.2g}) tilts its weights by up to {tilt:.2g}, more than the "
                f"{h.leak:.2g} it may be off at max length {plan.max_len}",
                h.span,
            )
            problems.append((error, frozenset(sources)))
    return problems


def _largest(values: tuple[Atom, ...]) -> float:
    return max((abs(num(v)) for v in values), default=0.0)


def _too_steep(table: Table, dtype: str) -> bool:
    """Are ``table``'s pre-activations too large for ``dtype`` to keep its steps exact?"""
    return table.magnitude * UNIT_ROUNDOFF[dtype] * 8 > 0.25


def _steep_error(job: MLPJob, table: Table, dtype: str, max_len: int) -> PlanError:
    return PlanError(
        f"this elementwise table needs pre-activations of about {table.magnitude:.3g}, "
        f"too large to stay exact in {dtype} at max length {max_len}",
        job.span,
    )


def steep_tables(plan: Plan, dtype: str) -> list[tuple[MLPJob, Table, PlanError]]:
    """Tables too steep for ``dtype``: those whose pre-activations' size fails the quick
    check (:func:`_too_steep`) and whose rounding, bounded point by point, moves what
    they write by more than its readers allow (:mod:`.table_rounding`), or whose points
    are too many to visit."""
    found: list[tuple[MLPJob, Table, PlanError]] = []
    # per table: its columns, and how far each is off per point, or its run bit for bit
    bounded: list[tuple[MLPJob, Table, dict[str, int], np.ndarray | Simulated]] = []
    for job, table in zip(plan.mlps, plan.tables):
        # a gated number's rounding moves its steps by their gating weight: whether that
        # may switch a unit is checked point by point too (in a dtype narrower than float32)
        gated = dtype != "float32" and bool(table.gate_tolerances)
        if not (_too_steep(table, dtype) or gated):
            continue
        run = run_used(plan, job, table, dtype)
        if run is not None:  # run bit for bit: its errors are known with their signs
            if _too_steep(table, dtype):
                col = {d: i for i, d in enumerate(run.wanted)}
                bounded.append((job, table, col, run))
            elif run.per_point().max(initial=0.0) > DEFAULT_TOLERANCE:  # a unit switched
                msg = (
                    f"this elementwise table's units switch on or off wrongly when run in "
                    f"{dtype} at max length {plan.max_len} (its gated number rounds past a step)"
                )
                found.append((job, table, PlanError(msg, job.span)))
            continue
        bound = point_bounds(plan, job, table, dtype)
        if bound is None:  # its points cannot be visited: the quick check decides
            if _too_steep(table, dtype):
                found.append((job, table, _steep_error(job, table, dtype, plan.max_len)))
        elif np.isinf(bound[1]).any():
            msg = (
                f"this elementwise table needs pre-activations of about "
                f"{table.magnitude:.3g}, whose {dtype} rounding may switch its units on or "
                f"off at max length {plan.max_len}"
            )
            found.append((job, table, PlanError(msg, job.span)))
        elif _too_steep(table, dtype):  # a gated table whose steps stay exact: not its rows
            wanted, err = bound
            bounded.append((job, table, {d: i for i, d in enumerate(wanted)}, err))
    if not bounded:
        return found
    constraints = consumer_constraints(plan, dtype)
    read = {d for weights, _ in constraints for d in weights}
    constraints += [
        ({d: 1.0}, DEFAULT_TOLERANCE) for _, _, col, _ in bounded for d in col if d not in read
    ]
    worst: dict[int, tuple[float, float]] = {}
    for weights, budget in constraints:
        # per table, the weighted error at its worst point; tables writing into the same
        # directions (a number several add up) add up
        parts = []
        for i, (_, _, col, off) in enumerate(bounded):
            w = np.zeros(len(off.wanted) if isinstance(off, Simulated) else off.shape[1])
            for d, c in weights.items():  # a direction two targets share: its last column
                if d in col:
                    w[col[d]] = c
            if w.any():
                at = off.worst(w) if isinstance(off, Simulated) else (off @ np.abs(w)).max()
                parts.append((i, float(at)))
        total = sum(e for _, e in parts)
        if not total <= budget:
            for i, e in parts:
                if e > 0.0 and (i not in worst or total / budget > worst[i][0] / worst[i][1]):
                    worst[i] = (total, budget)
    for i, (total, budget) in sorted(worst.items()):
        job, table, _, _ = bounded[i]
        msg = (
            f"this elementwise table's {dtype} rounding moves what it writes by up to "
            f"{total:.2g} (bounded point by point), more than the {budget:.2g} what reads it "
            f"allows at max length {plan.max_len}"
        )
        found.append((job, table, PlanError(msg, job.span)))
    return found


def steep_joint_tables(plan: Plan, dtype: str) -> list[tuple[PlanError, frozenset[int]]]:
    """Tables over several numbers at once (a mixed-radix projection, whose steps are as
    steep as the projection is fine) too steep for ``dtype``, with their s-ops: the
    pipeline plans those from one number at a time (``no_joint``), whose tables are far
    less steep (at the cost of a layer), before refusing them."""
    return [
        (error, frozenset({job.node_id}))
        for job, table, error in steep_tables(plan, dtype)
        if projected_numbers(job, table) >= 2
    ]


def rounding_problems(plan: Plan, dtype: str) -> list[RaspError]:
    """Roundings in ``dtype`` larger than the plan's margins allow."""
    eps = UNIT_ROUNDOFF[dtype]
    problems: list[RaspError] = [error for _, _, error in steep_tables(plan, dtype)]
    problems += number_problems(plan, dtype, lambda job, table: run_used(plan, job, table, dtype))
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
    if isinstance(out, NumRep) and len(out.values) > 1 and plan.output_reciprocal:
        wrong = misdecoded_count(out.values, dtype)
        if wrong is not None:
            problems.append(
                PlanError(
                    f"the output is a count read from its head's 1/(count+1); {dtype} "
                    f"rounds 1/{wrong + 1:g} so that it may decode as a neighbouring count "
                    f"at max length {plan.max_len}",
                    None,
                )
            )
    elif isinstance(out, NumRep) and len(out.values) > 1:
        vmax, tol = binding_pair(out.values, 4.0)
        if vmax * eps * 4 > tol and not _output_kept_apart(plan, dtype):
            problems.append(
                PlanError(
                    f"the output's possible values near {vmax:.4g} are {4 * tol:.3g} apart; "
                    f"{dtype} cannot keep them apart at max length {plan.max_len}",
                    None,
                )
            )
    return problems


def _output_kept_apart(plan: Plan, dtype: str) -> bool:
    """Does a numerical output read from tables run bit for bit decode right: each value,
    off by what those tables' deviations give it, and rounded twice to ``dtype`` (the
    unembedding's sum and its bias), within half the gap to its neighbours?"""
    dev = output_deviation(plan, dtype)
    if dev is None:
        return False
    xs = np.array(sorted({num(v) for v in plan.output.values}))
    gaps = np.minimum(np.diff(xs, prepend=-np.inf), np.diff(xs, append=np.inf))
    with np.errstate(divide="ignore"):
        half_ulp = UNIT_ROUNDOFF[dtype] * np.exp2(np.floor(np.log2(np.abs(xs) + dev)))
    return bool(np.all(dev + 2.0 * np.nan_to_num(half_ulp) < gaps / 2.0))


def misdecoded_count(values: tuple[Atom, ...], dtype: str) -> int | None:
    """The smallest count a reciprocal output may decode wrongly in ``dtype``, else None.

    The output is the counting head's ``1/(w+1)``, off by at most its leak (the plan
    holds it to ``RECIPROCAL_LEAK_SHARE`` of the closest values' gap) plus float32-sized
    slack for the softmax's own sums, and then rounded once to ``dtype``, where the head
    writes it (the output projection and the unembedding multiply it by exactly 1, one
    term each: no further rounding).  Rounding is monotone and so is decoding (``1/x - 1``,
    then the nearest count), so the two ends of that interval, each rounded as ``dtype``
    rounds it, decide every value between them: each count is checked at its own value,
    where its rounding is what it is (``1/128`` is exact in bfloat16, ``1/127`` is not),
    instead of at the worst rounding of any value."""
    xs = sorted(num(v) for v in values)
    count_of = [round(1.0 / x) - 1 for x in xs]
    counts = sorted(count_of)
    leak = RECIPROCAL_LEAK_SHARE * min(b - a for a, b in zip(xs, xs[1:]))
    ends = []
    for x in xs:
        slack = leak + x * 2.0**-20
        ends += [x - slack, x + slack]
    rounded = torch.tensor(ends, dtype=torch.float64).to(torch_dtype(dtype)).double().tolist()
    grid = np.array(counts, dtype=np.float64)
    for i, w in enumerate(count_of):
        for y in rounded[2 * i : 2 * i + 2]:
            if not y > 0.0:
                return w
            d = 1.0 / y - 1.0
            j = int(np.argmin(np.abs(grid - d)))  # the nearest count, the smaller on a tie
            if counts[j] != w:
                return w
    return None
