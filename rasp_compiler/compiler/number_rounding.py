"""How far a number an MLP table reads may be off, and how far a narrow dtype moves it,
value by value.

The plan's quick check (``MLPJob.tolerances``, :func:`.certify.rounding_problems`)
holds the largest value's rounding, four unit round-offs of it, to the error the
closest pair of values allows.  Where that fails, :func:`number_problems` looks closer:

* **What each value may be off by.**  A table over one number steps only where its
  output changes (``emit.mlp``), flat outside the middle half of each step's gap: a
  value may be off by its distance to the nearest step plus an eighth of that step's
  gap (:func:`value_tolerances`).  ``mean > 0`` over a prefix of 128 tells 0 from
  1/128 and never needs 0.99 told from 1.  A gated number (read only through "is it at
  its extreme value") may be off by a share of the gap next to the extreme there, and
  elsewhere by its distance to that neighbour besides.
* **How far the dtype moves each value** (:func:`own_errors`).  A number read from
  positional entries the dtype holds is exact.  A mean or a count one head writes,
  whose scores the dtype computes exactly (``emit.attention.scores_exact``), weighs its
  selected keys equally (their sum ``S`` is exact in float32, whatever its terms'
  signs), and the dtype rounds it once (a fused kernel: ``S / n`` for ``n`` keys) or
  rounds the weight ``1/n`` first and ``S`` times it after (softmax, then a matmul):
  both are simulated for every ``n`` up to the length and every value (``S`` a whole
  number of units where the head averages a 0/1 direction, such as a count's BOS), with
  the leak the plan allows added at both ends (rounding is monotone, so the ends bound
  every value between).  Any other number one head writes,
  of one sign, rounds by four unit round-offs of *its own* size (a mean of same-signed
  values rounds in proportion to itself).  Otherwise the quick check's verdict stands.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

from ..dtypes import UNIT_ROUNDOFF
from ..errors import RaspError
from ..language.ir import Atom
from .emit.attention import scores_exact
from .exact_values import rounded
from .numbers import num, projected_tolerances
from .plan.elementwise import gate_share
from .plan.types import Head, HeadKind, MLPJob, NumRep, Plan, PlanError, Table
from .residual import BOS, ONE

#: Most input combinations scanned for where a number changes a table's output
MAX_CHANGE_SCAN = 1 << 16
#: Most (value, key count) pairs simulated for one number
MAX_SIMULATED = 1 << 22
#: a number's rounding where it is not simulated, in unit round-offs of its size
NUMBER_ROUNDINGS = 4.0
#: float32 slack of the kernels' own sums and exponentials, relative to a value
FLOAT32_SLACK = 2.0**-18


def number_problems(plan: Plan, dtype: str, run: Callable | None = None) -> list[RaspError]:
    """Numbers MLP tables read that ``dtype`` moves by more than the tables allow: the
    quick check first, then, for an input that fails it, the closer look.  A table that
    ``run(job, table)`` says is run bit for bit is skipped (what each value does is
    known)."""
    eps = UNIT_ROUNDOFF[dtype]
    problems: list[RaspError] = []
    for job, table in zip(plan.mlps, plan.tables):
        simulated: bool | None = None
        for i, vmax, tol in job.tolerances:
            if not vmax * eps * NUMBER_ROUNDINGS > tol:
                continue
            if simulated is None:
                simulated = run is not None and run(job, table) is not None
            if simulated:
                continue
            found = closer_look(plan, job, table, i, dtype)
            if found is None:
                v, allowed, err = vmax, tol, vmax * eps
            elif found:
                v, allowed, err = found
            else:
                continue
            problems.append(
                PlanError(
                    f"reads a number as large as {v:.4g} that must stay within {allowed:.3g}; "
                    f"{dtype} rounds it by about {err:.3g} at max length {plan.max_len}",
                    job.span,
                )
            )
    return problems


def closer_look(
    plan: Plan, job: MLPJob, table: Table, i: int, dtype: str
) -> tuple[float, float, float] | tuple[()] | None:
    """Number input ``i`` of ``job`` value by value: () when every value stays within
    what the table allows, else (value, allowed, rounding) where it does not (the worst
    ratio); None when the closer look does not apply."""
    rep = job.inputs[i]
    assert isinstance(rep, NumRep)
    allowed = input_tolerances(job, table, i)
    if allowed is None:
        return None
    vals, tols = allowed
    slack = number_requirements(job, table).get(i, 0.0)
    errs = own_errors(rep, vals, plan, dtype, slack)
    if errs is None:
        return None
    bad = errs > tols
    if not bad.any():
        return ()
    k = int(np.argmax(np.where(bad, errs / tols, 0.0)))
    return (float(vals[k]), float(tols[k]), float(errs[k]))


def input_tolerances(job: MLPJob, table: Table, i: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(sorted distinct values, how far each may be off) of number input ``i`` of
    ``job``'s table, or None (a gate the table found by itself, a scan too large)."""
    rep = job.inputs[i]
    assert isinstance(rep, NumRep)
    gates = dict(job.gates)
    if i in gates:
        return gate_tolerances(rep, gates[i], gate_share(job.forms, len(job.gates)))
    found = dict(table.gate_tops)  # gates the table found by itself: an eighth of the gap
    if i in found:
        return gate_tolerances(rep, found[i], 8.0)
    gated = set(found) | set(gates)
    plain = [j for j, r in enumerate(job.inputs) if isinstance(r, NumRep) and j not in gated]
    if i not in plain:
        return None
    if len(plain) == 1:
        return value_tolerances(job, i)
    vals = np.array(sorted({num(v) for v in rep.values}))
    tol = number_requirements(job, table)[i]
    return vals, np.full(len(vals), tol)


def number_requirements(job: MLPJob, table: Table) -> dict[int, float]:
    """Input index -> the error the plan holds a number the table reads to (the leak its
    heads are settled against): a projected number's share of the projection's smallest
    gap (``plan.elementwise._job``), a gate's own tolerance (the table's)."""
    out = dict(table.gate_tolerances)
    gated = {i for i, _ in job.gates}
    plain = [i for i, r in enumerate(job.inputs) if isinstance(r, NumRep) and i not in gated]
    for i, tol in zip(plain, projected_tolerances([job.inputs[i].values for i in plain])):
        out[i] = min(out.get(i, math.inf), tol)
    return out


def value_tolerances(job: MLPJob, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Per value of the table's one projected number ``k``: its distance to the nearest
    step's edge plus an eighth of that step's gap.  A step is wherever the table's
    function changes between neighbouring values for some value of the other inputs (to
    or from undefined included); None when that scan would be too large."""
    others = [r.values for j, r in enumerate(job.inputs) if j != k]
    rep = job.inputs[k]
    if math.prod(len(o) for o in others) * len(rep.values) > MAX_CHANGE_SCAN:
        return None
    atoms: dict[float, Atom] = {float(num(x)): x for x in rep.values}  # as emit.mlp does
    vals = sorted(atoms)

    def outputs(v: float) -> list[tuple[str, object]]:
        out: list[tuple[str, object]] = []
        for combo in itertools.product(*others):
            y = job.fn((*combo[:k], atoms[v], *combo[k:]))
            out.append((type(y).__name__, y))  # 1 and 1.0 may be different rows
        return out

    changes: list[tuple[float, float]] = []
    prev = outputs(vals[0])
    for a, b in zip(vals, vals[1:]):
        cur = outputs(b)
        if cur != prev:
            changes.append((a, b))
        prev = cur
    xs = np.array(vals)
    tols = np.full(len(xs), math.inf)
    for a, b in changes:
        dist = np.where(xs <= a, a - xs, np.where(xs >= b, xs - b, 0.0))
        tols = np.minimum(tols, dist + (b - a) / 8.0)
    return xs, tols


def gate_tolerances(rep: NumRep, top: bool, share: float) -> tuple[np.ndarray, np.ndarray]:
    """Per value of a gated number: the extreme value within ``edge / share`` (``edge``
    the gap to its neighbour), any other value within its distance to that neighbour
    plus as much (the gate row only falls further below 0 away from the extreme)."""
    vals = np.array(sorted({num(v) for v in rep.values}))
    e, near = (vals[-1], vals[-2]) if top else (vals[0], vals[1])
    slack = abs(e - near) / share
    return vals, np.where(vals == e, slack, np.abs(vals - near) + slack)


def relative_offset(rep: NumRep) -> float | None:
    """``c`` such that ``rep`` rounds in proportion to ``|v - c|`` at its value ``v``: one
    attention head writes it into one direction (plus a constant ``c``) and ``v - c``
    never changes sign; None otherwise."""
    terms = rep.lin.as_dict()
    const = terms.pop(ONE, 0.0)
    if len(terms) != 1 or len(rep.sources) != 1:
        return None
    shifted = [num(v) - const for v in rep.values]
    if all(x >= 0.0 for x in shifted) or all(x <= 0.0 for x in shifted):
        return const
    return None


def own_errors(
    rep: NumRep, vals: np.ndarray, plan: Plan, dtype: str, slack: float
) -> np.ndarray | None:
    """Per value in ``vals``: how far ``dtype`` moves the number ``rep`` beyond the
    ``slack`` the plan allows its heads' leak (see the module docstring); None where no
    model applies."""
    if _positional_exact(rep, plan, dtype):
        return np.zeros(len(vals))
    terms = rep.lin.as_dict()
    c = terms.pop(ONE, 0.0)
    if len(terms) != 1 or len(rep.sources) != 1:
        return None
    ((d, a),) = terms.items()
    x = (vals - c) / a  # what the head writes
    u = UNIT_ROUNDOFF[dtype]
    ((hid, _),) = rep.sources
    head = next((h for h in plan.heads if h.id == hid), None)
    if head is None or not scores_exact(head, u):
        if relative_offset(rep) is None:  # signs that may cancel in the weighted sum
            return None
        return NUMBER_ROUNDINGS * u * np.abs(x) * abs(a)
    # equal weights: the sum of the values is exact in float32, whatever their signs
    s = slack / abs(a) + FLOAT32_SLACK * np.abs(x)
    # a count's 1/(w+1) is its BOS weight, which the keys it must ignore only lower
    up = FLOAT32_SLACK * np.abs(x) if head.kind == HeadKind.WIDTH else s
    dev = np.maximum(np.abs(rounded(x - s, dtype) - x), np.abs(rounded(x + up, dtype) - x))
    n_max = plan.max_len + 1
    if len(x) * n_max <= MAX_SIMULATED:
        n = np.arange(1, n_max + 1, dtype=np.float64)
        sums = x[:, None] * n[None, :]  # what the n keys' values would sum to
        unit = _indicator_unit(head, d, plan)
        if unit:  # values of 0 or ``unit`` only: sums of whole units
            whole = np.abs(sums / unit - np.round(sums / unit)) <= 1e-9 * n[None, :]
        else:
            whole = np.ones(sums.shape, dtype=bool)
        # the weight rounded where the leak has lowered it by as much as it may (the leak's
        # own share is in ``s``, the slack: only the rounding is added here)
        shifted = rounded((1.0 - head.leak) / n, dtype) + head.leak / n
        for w in (rounded(1.0 / n, dtype), shifted):
            for end in (-s[:, None], up[:, None]):
                got = rounded(w[None, :] * sums + end, dtype)
                moved = np.where(whole, np.abs(got - x[:, None]), 0.0)
                dev = np.maximum(dev, moved.max(axis=1))
    else:  # the weight's rounding and the sum's, each relative
        dev = np.maximum(dev, s + 2.0 * u * np.abs(x) * (1.0 + u))
    return np.maximum(dev - slack / abs(a), 0.0) * abs(a)


def _indicator_unit(head: Head, d: str, plan: Plan) -> float:
    """``c`` when what ``head`` averages into ``d`` is ``c`` times a direction holding only
    0 and 1 exactly (:func:`exact_rows`), else 0."""
    lins = [lin for out, lin in head.values if out == d]
    if len(lins) != 1 or len(lins[0].terms) != 1:
        return 0.0
    ((src, c),) = lins[0].terms
    return abs(c) if src in exact_rows(plan) else 0.0


def exact_rows(plan: Plan) -> set[str]:
    """Directions every dtype holds exactly as 0 or 1: the constant, BOS, the tokens'
    one-hots, positional entries of 0s and 1s, and the rows tables are shown to compute
    exactly in the plan's narrow dtype (``Plan.proven``)."""
    out = {ONE, BOS} | {d for t in plan.tokens for d in t.dirs}
    out |= {e.dir for e in plan.positional if set(e.values) <= {0.0, 1.0}}
    return out | set(plan.proven)


def _positional_exact(rep: NumRep, plan: Plan, dtype: str) -> bool:
    """Does the residual hold every direction ``rep`` reads exactly: positional entries
    whose values ``dtype`` holds (and the constant)?"""
    if rep.sources:
        return False
    entries = {e.dir: e.values for e in plan.positional}
    for d in rep.lin.names():
        if d in (ONE, BOS):
            continue
        if d not in entries:
            return False
        held = np.array(entries[d], dtype=np.float64)
        if not np.array_equal(rounded(held, dtype), held):
            return False
    return True
