"""Finishing a plan: build every MLP's hidden units and settle every head's leak.

Planning records *requirements* ("this number must be accurate to within ``tol``")
instead of changing heads already made; a head's leak (the attention weight it may
put on keys it must ignore) is then the tightest of everything read through it.  An
MLP's table adds its own requirement (how exact its categorical inputs must be).
After this step every part of the plan is final, so emission is a pure function of
it, in any order.
"""

from __future__ import annotations

import math
from dataclasses import replace

from ..errors import RaspError
from ..progress import ProgressFn
from .emit.mlp import table_units
from .plan.types import (
    CatRep,
    Draft,
    Head,
    MLPJob,
    Plan,
    PlanFailure,
    Rep,
    Requirement,
    Table,
)


def finalize(
    draft: Draft, progress: ProgressFn | None = None, narrow: int = 0
) -> Plan | PlanFailure:
    """The frozen plan for ``draft``, or why an MLP table cannot be built (telling
    ``progress`` how many tables are built); ``narrow`` the significant bits of a
    float16 or bfloat16 plan's dtype (``emit.mlp.table_units``'s), 0 for float32."""
    tables: list[Table] = []
    mlps: list[MLPJob] = []
    problems: list[RaspError] = []
    for i, job in enumerate(draft.mlps):
        if progress is not None:
            progress("MLP tables", i, len(draft.mlps))
        job, table = _smaller_table(job, narrow)
        mlps.append(job)
        if isinstance(table, Table):
            tables.append(table)
        else:
            problems.append(table)
    if problems:
        return PlanFailure(tuple(problems))
    draft = replace(draft, mlps=tuple(mlps))
    gate_requirements = tuple(
        Requirement(job.inputs[i], tol)
        for job, table in zip(draft.mlps, tables)
        for i, tol in table.gate_tolerances
    )
    requirements = (
        draft.requirements
        + tuple(
            Requirement(rep, table.cat_tolerance)
            for job, table in zip(draft.mlps, tables)
            for rep in job.inputs
            if isinstance(rep, CatRep)
        )
        + gate_requirements
    )
    leaks, needs = _propagate(draft.all_heads, requirements)
    heads = tuple(replace(h, leak=leaks[h.id]) for h in draft.heads)
    n_layers = max(
        [h.layer + 1 for h in heads]
        + [m.layer + 1 for m in draft.mlps]
        + [math.ceil(draft.output.stage / 2)],
        default=0,
    )
    return Plan(
        max_len=draft.max_len,
        n_layers=n_layers,
        blocks=draft.blocks,
        tokens=draft.tokens,
        positional=draft.positional,
        heads=heads,
        mlps=draft.mlps,
        tables=tuple(tables),
        output=draft.output,
        output_kinds=draft.output_kinds,
        kinds_known=draft.kinds_known,
        output_reciprocal=draft.output_reciprocal,
        needs=tuple(sorted(needs.items())),
        read_tolerances=tuple(
            (lin, r.tol) for r in draft.requirements + gate_requirements for lin in r.rep.lins()
        ),
    )


def _smaller_table(job: MLPJob, narrow: int = 0) -> tuple[MLPJob, Table | RaspError]:
    """The job and its table; where the job knows combinations that never occur, the
    table without them when that one has fewer units (or is the only one possible)."""
    table = table_units(job, narrow)
    if job.narrow_fn is None:
        return job, table
    narrow_job = replace(job, fn=job.narrow_fn, narrow_fn=None)
    fewer = table_units(narrow_job, narrow)
    if not isinstance(fewer, Table):
        return job, table
    if not isinstance(table, Table) or len(fewer.units) < len(table.units):
        return narrow_job, fewer
    return job, table


def settle_leaks(
    heads: tuple[Head, ...], requirements: tuple[Requirement, ...]
) -> dict[int, float]:
    """head id -> the largest leak that meets every requirement read through it.

    A categorical row is off by its heads' leak times their value span, plus, for a head
    that copies another head's inexact one-hot, that one's error (half the tolerance goes
    to each, recursively).  A number sums
    its heads' outputs, each with a coefficient: the tolerance is shared equally among
    them; a mean head's error is its leak times its value span plus the error of the
    numbers it averages, and half of its share goes to each, recursively."""
    return _propagate(heads, requirements)[0]


def _propagate(
    heads: tuple[Head, ...], requirements: tuple[Requirement, ...]
) -> tuple[dict[int, float], dict[str, float]]:
    """(:func:`settle_leaks`'s leaks, and residual direction -> how accurate a number
    read through it must be).  Where the requirements reach a number that a mean head
    averages, its directions share the tolerance it gets (the head's leak has the other
    half), and MLP tables writing them are measured against it
    (``count_precision.imprecise_numbers``).  A number read directly (an output, a
    table's input) is not recorded: the dtype checks of ``certify`` cover its tables."""
    leak = {h.id: h.leak for h in heads}
    needs: dict[str, float] = {}

    def need(rep: Rep, tol: float, averaged: bool = False) -> None:
        if isinstance(rep, CatRep):
            for hid in rep.sources:
                copied = heads[hid].averages
                own = tol / 2.0 if copied else tol  # half to this head, half to what it copies
                leak[hid] = min(leak[hid], own / heads[hid].value_span)
                for inner in copied:
                    need(inner, tol / 2.0)
            return
        if averaged:  # a number a mean head averages: its directions share the tolerance
            terms = {d: c for d, c in rep.lin.as_dict().items() if c != 0.0}
            for d, c in terms.items():
                needs[d] = min(needs.get(d, math.inf), tol / (len(terms) * abs(c)))
        for hid, coef in rep.sources:
            share = tol / (len(rep.sources) * abs(coef))
            leak[hid] = min(leak[hid], share / (2.0 * heads[hid].value_span))
            for inner in heads[hid].averages:
                need(inner, share / 2.0, averaged=True)

    for r in requirements:
        need(r.rep, r.tol)
    return leak, needs
