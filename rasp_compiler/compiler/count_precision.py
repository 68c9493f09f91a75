"""Are the numbers a numerical count comparison reads precise enough?

``select(count, indices, ==)`` (sort's last head) scores keys by the count's number and
its square or digits, all read from MLP tables (see :mod:`.plan.numeric_eq`).  A
table's outputs are exact in real arithmetic, but in float32 its steps' large
activations are summed with rounding: the count's number at max length 512 is off by
about 1e-3, and the head multiplies that by the query (up to the length), which can
move a score by more than the gap between keys.  This module measures each such
table's error and the head's sensitivity to it; the pipeline plans a head that would
be tilted with one-hots instead (exact, larger).

The error is *measured*: each table runs in the dtype, with the same kernels as the
model (``torch.addmm``), on every point of its domain and on points moved by a few
units of round-off (the counting heads' own rounding), and the largest error found is
taken ``SAFETY`` times.  It is not a bound over every summation order (that bound,
``rounding.table_row_errors``, is thousands of times larger here and would refuse
every length); the README says so.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from ..dtypes import UNIT_ROUNDOFF, torch_dtype
from .emit.attention import score_noise
from .plan.types import CatRep, Head, MLPJob, Plan, PlanError, Table, projected_numbers
from .residual import BOS, ONE
from .rounding import _input_layout, _points, encoder, table_arrays

#: the measured error, taken this many times over (other kernels, other orders)
SAFETY = 4.0
#: inputs moved by this many units of round-off (the counting heads' rounding)
INPUT_ULPS = 4.0
#: most points measured per table (beyond it the table counts as imprecise)
MAX_POINTS = 1 << 15


def measure_count_keys(plan: Plan, dtype: str) -> tuple[Plan, list[tuple[PlanError, int]]]:
    """The plan with each numerical count comparison's ``key_noise`` set (how far its key
    tables' rounding moves a score, measured, ``SAFETY`` times over), and, per head
    whose score noise would then pass a quarter of its gap (the assembler's limit,
    :func:`.emit.attention.sharpness`), the error and the count's node id."""
    writers: dict[str, list[tuple[MLPJob, Table]]] = {}
    for job, table in zip(plan.mlps, plan.tables):
        for d in job.num_targets:  # a count's number sums one job per counting head
            writers.setdefault(d, []).append((job, table))
    largest = {e.dir: max((abs(v) for v in e.values), default=0.0) for e in plan.positional}
    eps = UNIT_ROUNDOFF[dtype]
    measured: dict[str, float] = {}
    heads: list[Head] = []
    problems: list[tuple[PlanError, int]] = []
    for h in plan.heads:
        if h.count_node < 0:
            heads.append(h)
            continue
        amp = _sensitivity(h, writers, largest)
        moved = 0.0
        for d, a in amp.items():
            if d not in measured:
                measured[d] = sum(table_error(job, table, d, dtype) for job, table in writers[d])
            moved += a * SAFETY * measured[d]
        h = replace(h, key_noise=moved)
        heads.append(h)
        if not score_noise(h, eps) <= h.gap / 4:
            error = PlanError(
                f"this head compares a count with the indices numerically, but the count's "
                f"tables are off by up to {max(measured[d] for d in amp):.2g} in {dtype} "
                f"(measured), which moves its scores by up to {moved:.2g} ({SAFETY:g} times "
                f"over), more than a quarter of its gap {h.gap:g} at max length {plan.max_len}",
                h.span,
            )
            problems.append((error, h.count_node))
    return replace(plan, heads=tuple(heads)), problems


def _sensitivity(
    h: Head, writers: dict[str, list[tuple[MLPJob, Table]]], largest: dict[str, float]
) -> dict[str, float]:
    """MLP-written direction -> how much a unit error in it moves a score of ``h``."""
    amp: dict[str, float] = {}
    for q, k, coef in h.qk:
        qmax = sum(
            abs(c) * (1.0 if n in (ONE, BOS) else largest.get(n, math.inf))
            for n, c in q.as_dict().items()
        )
        for n, c in k.as_dict().items():
            if n in writers:
                amp[n] = amp.get(n, 0.0) + abs(coef * c) * qmax
    return amp


def table_error(job: MLPJob, table: Table, d: str, dtype: str) -> float:
    """The largest error of direction ``d`` of ``job``'s table run in ``dtype`` on its
    points and on points moved by ``INPUT_ULPS`` units of round-off (inf when the points
    cannot be set up)."""
    return table_errors(job, table, [d], dtype)[d]


def table_errors(job: MLPJob, table: Table, dirs: list[str], dtype: str) -> dict[str, float]:
    """:func:`table_error` of each of ``dirs``, from one run of the table."""
    layout = _input_layout(job)
    points = _points(job, MAX_POINTS)
    if layout is None or points is None:
        return {d: math.inf for d in dirs}
    if not points:
        return {d: 0.0 for d in dirs}
    x, w_in, w_out, ideal, numeric = table_arrays(job, table, dirs, layout, points)
    t = torch_dtype(dtype)
    W_in, W_out = torch.from_numpy(w_in).to(t), torch.from_numpy(w_out).to(t)
    worst = np.zeros(len(dirs))
    for shift in (0.0, 1.0, -1.0):
        moved = x * np.where(numeric, 1.0 + shift * INPUT_ULPS * UNIT_ROUNDOFF[dtype], 1.0)
        X = torch.from_numpy(moved).to(t)
        with torch.no_grad():
            hidden = torch.relu(X @ W_in)
            got = (hidden @ W_out).double().numpy()
        worst = np.maximum(worst, np.abs(got - ideal).max(axis=0))
    return {d: float(e) for d, e in zip(dirs, worst)}


def imprecise_numbers(plan: Plan, dtype: str) -> list[tuple[PlanError, frozenset[int]]]:
    """Numbers tables write that are less accurate than the mean heads averaging them
    need (``Plan.needs``).

    A table over several numbers at once (a mixed-radix projection) sums steep steps'
    large activations, and its rounding in ``dtype`` moves what it writes: its numbers,
    and its one-hot rows, which a later table reading them passes on in proportion to
    its own outputs (a table over one-hots is linear in its rows).  Both are measured
    (:func:`table_error`, ``SAFETY`` times over).  Per number off by more than its need:
    the error and the joint tables' s-ops, which the pipeline then plans from one number
    at a time (``no_joint``)."""
    needs = dict(plan.needs)
    joint: dict[str, tuple[MLPJob, Table]] = {}
    for job, table in zip(plan.mlps, plan.tables):
        projected = projected_numbers(job, table)
        if projected >= 2:  # one number: small pre-activations, rounding far below any need
            for d in job.targets():
                joint[d] = (job, table)
    measured: dict[str, float] = {}

    def error_of(d: str) -> float:
        if d not in measured:  # every direction of d's table, from one run of it
            job, table = joint[d]
            errors = table_errors(job, table, list(job.targets()), dtype)
            measured.update({n: SAFETY * e for n, e in errors.items()})
        return measured[d]

    problems: list[tuple[PlanError, frozenset[int]]] = []
    for job in plan.mlps:
        for d in job.num_targets:
            if d not in needs:
                continue
            err, sources = 0.0, set()
            if d in joint:
                err, sources = error_of(d), {job.node_id}
            rows = {n for r in job.inputs if isinstance(r, CatRep) for n in _row_dirs(r)}
            inputs = [n for n in rows if n in joint and error_of(n) > 0.0]
            if inputs:
                err += _largest_output(job, d) * sum(error_of(n) for n in inputs)
                sources |= {joint[n][0].node_id for n in inputs}
            if err > needs[d]:
                error = PlanError(
                    f"a table over several numbers rounds, in {dtype}, what this "
                    f"elementwise operation computes by up to {err:.2g} (measured, "
                    f"{SAFETY:g} times over), more than the {needs[d]:.2g} what reads it "
                    f"needs at max length {plan.max_len}",
                    job.span,
                )
                problems.append((error, frozenset(sources)))
    return problems


def _row_dirs(rep: CatRep) -> set[str]:
    return {n for row in rep.rows for n in row.names()} - {ONE, BOS}


def _largest_output(job: MLPJob, d: str) -> float:
    """The largest |value| ``job``'s table writes into ``d`` (inf when its points are too
    many to list)."""
    points = _points(job, MAX_POINTS)
    if points is None:
        return math.inf
    encode = encoder(job)
    return max((abs(encode(y).get(d, 0.0)) for _, y in points), default=0.0)
