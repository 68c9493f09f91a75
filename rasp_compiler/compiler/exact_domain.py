"""The points a table is run at bit for bit (:mod:`.exact_tables`), where its own inputs
do not give them directly.

* **Inputs that read one one-hot.**  ``left == "A"``, ``left == "B"`` and ``left == "C"``
  are three inputs of one table whose rows all read ``left``'s one-hot (the row of
  ``False`` is the sum of every other token's direction).  Their combinations are not
  the table's points (two of them cannot both be true), and no one direction stands for
  a row.  :func:`merged_inputs` reads such a table over the one-hot blocks themselves:
  one input per block, one value per direction, each original input's value the row
  holding the direction that is 1 (a block value none of an input's rows reads never
  occurs).
* **Numbers read as gates.**  A number a table reads only through "is it at its
  extreme" (a counting head's ``w > 0``) may take a value per key count.  Where every
  unit reading it is switched off at the non-extreme values closest to and farthest
  from the extreme, it is off at every value between: a float32 sum is monotone in each
  of its terms, and so is rounding.  Those values' outputs are then the same, and so are
  their ideal outputs (the table reads only whether the number is at its extreme), so
  :func:`gate_values` keeps the extreme and those two, and :func:`gates_stay_off`
  checks the units are off there.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..language.ir import Atom
from .numbers import num
from .plan.types import CatRep, MLPJob, NumRep, Plan
from .residual import Lin


def merged_inputs(plan: Plan, job: MLPJob) -> tuple[MLPJob, dict[int, int]] | None:
    """``job`` over the one-hot blocks its categorical inputs read (then its numbers),
    with where each number input moved; None where a row reads anything but whole
    directions of one-hot blocks."""
    block_of = {d: b.name for b in plan.blocks if b.one_hot for d in b.directions}
    row_of: list[dict[str, int]] = []  # per categorical input: direction -> its row
    blocks: dict[str, set[str]] = {}
    for rep in job.inputs:
        if not isinstance(rep, CatRep):
            continue
        rows: dict[str, int] = {}
        for k, row in enumerate(rep.rows):
            for d, c in row.terms:
                if c != 1.0 or d not in block_of or d in rows:
                    return None
                rows[d] = k
                blocks.setdefault(block_of[d], set()).add(d)
        row_of.append(rows)
    if not blocks:
        return None
    order = sorted(blocks)
    merged: list[CatRep | NumRep] = [
        CatRep(tuple(sorted(blocks[b])), tuple(Lin.unit(d) for d in sorted(blocks[b])), 0)
        for b in order
    ]
    moved: dict[int, int] = {}
    for i, rep in enumerate(job.inputs):
        if isinstance(rep, NumRep):
            moved[i] = len(merged)
            merged.append(rep)
    fn = job.fn

    def merged_fn(args: tuple[Atom, ...]) -> Atom | None:
        ones = {str(a) for a in args[: len(order)]}  # the direction that is 1, per block
        original: list[Atom] = []
        cat = 0
        for i, rep in enumerate(job.inputs):
            if isinstance(rep, NumRep):
                original.append(args[moved[i]])
                continue
            hit = {row_of[cat][d] for d in ones if d in row_of[cat]}
            cat += 1
            if len(hit) != 1:  # this input's one-hot would not have exactly one 1
                return None
            original.append(rep.values[hit.pop()])
        return fn(tuple(original))

    out = replace(job, inputs=tuple(merged), fn=merged_fn, narrow_fn=None, gates=())
    return out, moved


def gate_values(
    job: MLPJob,
    held: dict[int, dict[float, list[tuple[tuple[str, float], ...]]]],
    tops: dict[int, bool],
) -> dict[int, set[float]]:
    """Per number read as a gate (input index -> is its extreme its largest value), the
    values a run visits: the extreme, and the others whose held values reach closest to
    it and farthest from it; only where that leaves values out."""
    keep: dict[int, set[float]] = {}
    for i, top in tops.items():
        rep = job.inputs[i]
        if i not in held or not isinstance(rep, NumRep):
            continue
        vals = sorted(held[i])
        extreme = vals[-1] if top else vals[0]
        others = [v for v in vals if v != extreme]
        if len(others) <= 2:
            continue
        reach = {v: [x for choice in held[i][v] for _, x in choice] for v in others}
        lowest = min(others, key=lambda v: min(reach[v]))
        highest = max(others, key=lambda v: max(reach[v]))
        keep[i] = {extreme, lowest, highest}
    return keep


def visited(job: MLPJob, keep: dict[int, set[float]]) -> MLPJob:
    """``job`` with its gated numbers' values cut to those :func:`gate_values` keeps."""
    inputs = tuple(
        replace(rep, values=tuple(v for v in rep.values if num(v) in keep[i]))
        if i in keep and isinstance(rep, NumRep)
        else rep
        for i, rep in enumerate(job.inputs)
    )
    return replace(job, inputs=inputs)


def gates_stay_off(
    keep: dict[int, set[float]],
    tops: dict[int, bool],
    columns: dict[int, int],
    combos: list[tuple[Atom, ...]],
    w_in: np.ndarray,
    pre_high: np.ndarray,
) -> bool:
    """Is every unit reading a cut gated number (its residual column in ``columns``) off
    (its pre-activation at most 0, at its highest) at every run where that number is
    not at its extreme?  ``combos`` is each run's point."""
    for i, vals in keep.items():
        extreme = max(vals) if tops[i] else min(vals)
        units = np.flatnonzero(w_in[columns[i]])
        if not len(units):
            continue
        away = np.array([float(num(c[i])) != extreme for c in combos])
        if away.any() and not (pre_high[np.ix_(away, units)] <= 0.0).all():
            return False
    return True
