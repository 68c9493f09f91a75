"""How far an MLP table run in float16 or bfloat16 is off, bounded point by point,
against what reads it.

``certify`` first asks of a table that its largest pre-activation times the dtype's
unit round-off stays small (``table.magnitude``): a bound from the sizes of every term,
which refuses bfloat16 tables from a pre-activation of 8 (a count's table at max length
2).  A table it refuses is looked at here instead, at every point of its domain:

* **The kernel's arithmetic.**  A matmul in float16 or bfloat16 multiplies and sums in
  float32 and rounds once, to the dtype, at the end (so do torch's CPU kernels, checked
  by a test, and cuBLAS with reduced-precision reductions off, which the runtime sets
  while a model runs in those dtypes).  A pre-activation is then off by its float32
  sum's rounding (tiny) and one rounding relative to *itself*, not to its terms.
* **The weights** are rounded to the dtype first: the table is evaluated in exact
  arithmetic with those weights, and what that moves is counted.
* **The inputs** are off by what the plan allows them (the leak of the heads that write
  them: a row by the table's ``cat_tolerance``, a number by its requirement) plus their
  own rounding (a head's row by as much again, since 0 and 1 round to themselves; an
  MLP's row by ``ROW_ROUNDING`` times that, which is what the table writing it is held
  to; a number as :mod:`.number_rounding` bounds it).  Embedded one-hots are exact.  Each unit's
  pre-activation moves by at most ``sigma``, their weighted sum: a unit whose state (on
  or off) that could change is refused outright.
  Through the units that are on, the table is linear in its inputs: their rounding
  passes to the outputs in proportion (the leak's share is the plan's own, as in
  float32).

What comes out is a bound per output direction, the largest over the points.  It is
held to what the direction's readers allow (:func:`consumer_constraints`), each reader
over the directions it reads at once (weighted by how it reads them): the requirements
of MLP tables and heads, a copying head's leak times its span, a score's share of a
head's gap (of its leak, for a head that must weigh keys equally) and the output's
decoding margin.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from ..dtypes import UNIT_ROUNDOFF, torch_dtype
from ..language.ir import Atom
from .emit.attention import sharpness
from .exact_tables import Simulated, simulate
from .number_rounding import NUMBER_ROUNDINGS, exact_rows, number_requirements, own_errors
from .numbers import min_gap, num
from .plan.types import CatRep, MLPJob, NumRep, Plan, Table
from .residual import BOS, ONE
from .rounding import _points, grouped_layout, table_arrays

#: most points of a table visited (beyond it, the table keeps the magnitude check)
MAX_POINTS = 1 << 15
#: how many times its ``cat_tolerance`` (what the heads writing a row leak) a table lets
#: a row it reads be off by rounding besides: its units' margins are five times the
#: leak (``emit.mlp``: 0.05 of 1/4), so leak and rounding stay within 4 of those 5
ROW_ROUNDING = 3.0
#: most values tried for a gated number's other values before a point counts as undefined
MAX_GATE_TRIES = 64
#: a direction whose readers state no tolerance (none should be left): the error the
#: magnitude check allows a step (1/32 on each of its two units)
DEFAULT_TOLERANCE = 1.0 / 16.0


def table_bound(plan: Plan, job: MLPJob, table: Table, dtype: str) -> dict[str, float] | None:
    """Per direction the job writes: a bound on how far the table run in ``dtype`` is
    off, over every point of its domain (``inf`` where a unit may switch state); None
    when its points cannot be set up (too many, or inputs not plain directions)."""
    found = point_bounds(plan, job, table, dtype)
    if found is None:
        return None
    wanted, err = found
    worst = err.max(axis=0) if len(err) else np.zeros(len(wanted))
    return {d: float(worst[i]) for i, d in enumerate(wanted)}


def run_used(plan: Plan, job: MLPJob, table: Table, dtype: str) -> Simulated | None:
    """The table's bit-for-bit run (:mod:`.exact_tables`) where certification relies on it
    instead of the bounds: a run whose every sum is known, or one that carries intervals
    (a float32 sum whose order may change it) where the point bound is unavailable or no
    tighter.  None where the bounds (and the number checks they rely on) decide."""
    if UNIT_ROUNDOFF[dtype] <= UNIT_ROUNDOFF["float32"]:
        return None
    run = simulate(plan, job, table, dtype)
    if run is None or run.spread is None or not run.spread.any():
        return run
    bound = point_bounds(plan, job, table, dtype)
    if bound is None or not np.isfinite(bound[1]).all():
        return run
    return run if run.per_point().max() < bound[1].max() else None


def point_bounds(
    plan: Plan, job: MLPJob, table: Table, dtype: str
) -> tuple[list[str], np.ndarray] | None:
    """:func:`table_bound` point by point: the directions the job writes and the bound
    at each point of the table's domain for each [points, directions]."""
    wanted = list(job.targets())
    layout = grouped_layout(job, table)
    points = _table_points(job, table, MAX_POINTS)
    if layout is None or points is None:
        return None
    if not points or not table.units or not wanted:
        return wanted, np.zeros((1, len(wanted)))
    x, w_in, w_out, ideal, numeric = table_arrays(job, table, wanted, layout, points)
    u, u32 = UNIT_ROUNDOFF[dtype], UNIT_ROUNDOFF["float32"]
    t = torch_dtype(dtype)
    wi = torch.from_numpy(w_in).to(t).double().numpy()
    wo = torch.from_numpy(w_out).to(t).double().numpy()
    if not (np.isfinite(wi).all() and np.isfinite(wo).all()):  # beyond the dtype's range
        return wanted, np.full((1, len(wanted)), math.inf)
    design_err, own_err = _input_errors(plan, job, table, layout, points, x.shape, dtype)
    # what the inputs' errors may move each pre-activation by, and its exact value with
    # the rounded weights at the point
    sigma = (design_err + own_err) @ np.abs(wi)
    pre = x @ wi
    acc_in = _gamma(np.count_nonzero(wi, axis=0)[None, :], u32) * (np.abs(x) @ np.abs(wi))
    slack = _half_ulp(np.abs(pre) + sigma + acc_in, u) + acc_in  # one rounding of the sum
    on = pre - sigma - slack > 0.0
    off = pre + sigma + slack <= 0.0
    if not np.all(on | off):
        return wanted, np.full((1, len(wanted)), math.inf)
    hidden = np.where(on, pre, 0.0)
    err = np.abs(hidden @ wo - ideal)  # the rounded weights, exact arithmetic
    err += np.where(on, slack, 0.0) @ np.abs(wo)  # each pre-activation's rounding
    for i in range(len(wanted)):  # the inputs' own rounding, through the units that are on
        through = (on * wo[:, i]) @ wi.T  # [points, input columns]
        err[:, i] += (np.abs(through) * own_err).sum(axis=1)
    err += _gamma(np.count_nonzero(wo, axis=0)[None, :], u32) * (hidden @ np.abs(wo))
    exact = torch.from_numpy(ideal).to(t).double().numpy() == ideal
    final = np.where(
        exact,
        np.minimum(2.0 * err, err + _half_ulp(np.abs(ideal), u)),
        err + _half_ulp(np.abs(ideal) + err, u),
    )
    return wanted, final


def _gate_tops(job: MLPJob, table: Table) -> dict[int, bool]:
    """Gated number (input index) -> is its extreme value its largest."""
    return {**dict(table.gate_tops), **dict(job.gates)}


def _table_points(
    job: MLPJob, table: Table, most: int
) -> list[tuple[tuple[Atom, ...], Atom]] | None:
    """:func:`.rounding._points`, but a gated number takes two values only: its extreme
    and the value next to it, standing for every other value (the table's output is
    the same for all of them, and a gate row only falls further below 0 away from the
    extreme, which keeps the units it gates further off).  The output there is the
    first defined one over the other values, nearest first."""
    tops = _gate_tops(job, table)
    if not tops:
        return _points(job, most)
    domains: list[list[tuple[Atom, tuple[Atom, ...]]]] = []
    for i, rep in enumerate(job.inputs):
        if isinstance(rep, CatRep):
            domains.append([(c, (c,)) for c in range(len(rep.values))])
        elif i in tops:
            atoms = {num(v): v for v in rep.values}
            xs = sorted(atoms, reverse=tops[i])
            rest = tuple(atoms[v] for v in xs[1:])
            domains.append([(atoms[xs[0]], (atoms[xs[0]],))] + ([(rest[0], rest)] if rest else []))
        else:
            domains.append([(v, (v,)) for v in rep.values])
    if math.prod(len(d) for d in domains) > most:
        return None
    out: list[tuple[tuple[Atom, ...], Atom]] = []
    for combo in itertools.product(*domains):
        for tries, choice in enumerate(itertools.product(*(c for _, c in combo))):
            args = tuple(
                rep.values[int(a)] if isinstance(rep, CatRep) else a
                for rep, a in zip(job.inputs, choice)
            )
            y = job.fn(args)
            if y is not None:
                out.append((tuple(x for x, _ in combo), y))
                break
            if tries >= MAX_GATE_TRIES:
                break
    return out


def _half_ulp(size: np.ndarray, u: float) -> np.ndarray:
    """The most rounding to nearest moves a number of magnitude at most ``size``: half
    the spacing of the dtype's numbers in the binade of ``size`` (``u`` times its power of
    two; normal numbers)."""
    with np.errstate(divide="ignore"):
        return np.where(size > 0.0, u * np.exp2(np.floor(np.log2(size))), 0.0)


def _gamma(n: np.ndarray, u: float) -> np.ndarray:
    return n * u / (1.0 - n * u)


def _input_errors(
    plan: Plan,
    job: MLPJob,
    table: Table,
    layout: list,
    points: list[tuple[tuple[Atom, ...], Atom]],
    shape: tuple[int, int],
    dtype: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Per point and input column (the columns of :func:`.rounding.table_arrays`): the
    error the plan allows the input (its heads' leak), and its own rounding in the
    dtype.  A row: ``cat_tolerance``, and as much again (0 and 1 round to themselves);
    a number: its requirement, and its rounding (:func:`.number_rounding.own_errors`,
    else ``NUMBER_ROUNDINGS`` unit round-offs of its largest value)."""
    u = UNIT_ROUNDOFF[dtype]
    names = sorted({n for un in table.units for n in un.pre.names()} | {ONE})
    col = {n: i for i, n in enumerate(names)}
    design = np.zeros(shape)
    own = np.zeros(shape)
    exact = exact_rows(plan)
    for rep in job.inputs:
        if isinstance(rep, CatRep):
            # a head's row: its leak, and its rounding at most as much (0 and 1 round to
            # themselves); an MLP's: what that table is held to; an embedding's: none
            rounding = table.cat_tolerance if rep.sources else ROW_ROUNDING * table.cat_tolerance
            for row in rep.rows:
                for n in row.names():
                    if n in col and n not in exact:
                        design[:, col[n]] = table.cat_tolerance
                        own[:, col[n]] = rounding
    requirement = number_requirements(job, table)
    tops = _gate_tops(job, table)
    for i, (rep, where) in enumerate(zip(job.inputs, layout)):
        if not isinstance(rep, NumRep) or not isinstance(where, tuple) or where[0] not in col:
            continue
        name, coef = where
        vals = np.array(sorted({num(v) for v in rep.values}))
        errs = own_errors(rep, vals, plan, dtype, requirement.get(i, 0.0))
        if errs is None:
            errs = np.full(len(vals), NUMBER_ROUNDINGS * u * float(np.abs(vals).max()))
        at = dict(zip(vals.tolist(), errs.tolist()))
        if i in tops and len(vals) > 1:  # the value next to the extreme stands for the rest
            near = vals[-2] if tops[i] else vals[1]
            others = vals != (vals[-1] if tops[i] else vals[0])
            beyond = np.where(others, errs - np.abs(vals - near), 0.0)
            at[float(near)] = max(at[float(near)], float(beyond.max()))
        design[:, col[name]] = requirement.get(i, 0.0) / abs(coef)
        own[:, col[name]] = np.array([at[num(combo[i])] for combo, _ in points]) / abs(coef)
    return design, own


#: what a reader allows: the sum of ``|weight| * error`` over the directions it reads
#: stays within the budget (the weights keep their signs where the reader sums the
#: directions, so that errors known with their signs may cancel: ``exact_tables``)
Constraint = tuple[dict[str, float], float]


def consumer_constraints(plan: Plan, dtype: str) -> list[Constraint]:
    """What the readers of every direction allow its error (see the module docstring):
    per reader, the directions it reads with their weights and its budget."""
    out: list[Constraint] = []

    def add(weights: dict[str, float], budget: float) -> None:
        weights = {d: c for d, c in weights.items() if d not in (ONE, BOS) and c}
        if weights:
            out.append((weights, budget))

    for lin, tol in plan.read_tolerances:
        add(lin.as_dict(), tol)
    for job, table in zip(plan.mlps, plan.tables):  # rows a table reads: its share
        for rep in job.inputs:
            if isinstance(rep, CatRep):
                for row in rep.rows:
                    add(row.as_dict(), ROW_ROUNDING * table.cat_tolerance)
    largest = _largest_numbers(plan)
    groups = _one_hot_blocks(plan)
    eps = UNIT_ROUNDOFF[dtype]
    for h in plan.heads:
        # a score may move by an eighth of the gap, or, where the head must weigh its keys
        # equally, by what keeps the tilt (beta times the spread) within its leak: half for
        # the errors of what the queries read, half for the keys'
        allowed = h.gap / 8.0
        if h.uniform:
            allowed = min(allowed, h.leak / (2.0 * sharpness(h, plan.max_len, eps)))
        # per side (queries, keys) and per direction the other side reads: how much an
        # error in each direction of this side moves the score where that one is at its
        # largest.  Of the directions of one one-hot, one is 1 at a time (the others 0, or
        # a head's leak, whose share is second order): each (side, block) gets a share
        per: dict[tuple[int, str], dict[str, float]] = {}
        for side in (0, 1):
            for q, k, coef in h.qk:
                mine, other = (q, k) if side == 0 else (k, q)
                for n, cn in other.as_dict().items():
                    w = per.setdefault((side, n), {})
                    for d, c in mine.as_dict().items():
                        if d not in (ONE, BOS):
                            w[d] = w.get(d, 0.0) + abs(coef * c * cn) * largest.get(n, 1.0)
        shares = len({(side, groups.get(n, n)) for (side, n), w in per.items() if w})
        for w in per.values():
            add(w, allowed / max(shares, 1))
    out_rep = plan.output
    if isinstance(out_rep, CatRep):
        for row in out_rep.rows:
            add(row.as_dict(), 0.25)
    else:
        add(out_rep.lin.as_dict(), min_gap(num(v) for v in out_rep.values) / 4.0)
    # a head copying or averaging a table's rows passes their error on: it may use what
    # the head's readers allow beyond its leak's share, and at least as much as that
    # share (every reader's margin is at least twice what it asks)
    readers = list(out)
    for h in plan.heads:
        outs = {d for d, _ in h.values}
        leaked = h.leak * h.value_span
        allowed = min(
            (
                budget / sum(abs(w) for d, w in weights.items() if d in outs)
                for weights, budget in readers
                if outs & weights.keys()
            ),
            default=leaked,
        )
        for _, lin in h.values:
            add(lin.as_dict(), max(allowed - leaked, leaked))
    return out


def _one_hot_blocks(plan: Plan) -> dict[str, str]:
    """Direction -> its residual block, for blocks holding a one-hot (at most one of
    their directions is 1 at a position)."""
    return {d: b.name for b in plan.blocks if b.one_hot for d in b.directions}


def _largest_numbers(plan: Plan) -> dict[str, float]:
    """Direction -> the largest |value| it holds, where known: positional entries, and
    numbers some MLP reads (a one-hot row holds at most 1, the default)."""
    out = {e.dir: max((abs(v) for v in e.values), default=0.0) for e in plan.positional}
    for job in plan.mlps:
        for rep in job.inputs:
            if isinstance(rep, NumRep):
                terms = rep.lin.as_dict()
                terms.pop(ONE, None)
                if len(terms) == 1:
                    ((d, c),) = terms.items()
                    size = max(abs(num(v)) for v in rep.values) / abs(c)
                    out[d] = max(out.get(d, 0.0), size)
    for job in plan.mlps:  # numbers an MLP writes: the largest value its table gives
        if job.num_targets:
            points = _points(job, MAX_POINTS)
            size = (
                math.inf if points is None else max((abs(num(y)) for _, y in points), default=0.0)
            )
            for d in job.num_targets:
                out[d] = max(out.get(d, 0.0), size)
    return out
