"""How far an MLP table's outputs can be off once the model computes them in a dtype,
bounded point by point over the table's domain.

An elementwise table over numbers (see :mod:`.emit.mlp`) is exact in real arithmetic,
but its steps are differences of ReLUs whose pre-activations can be large, and float
rounding leaves each output row slightly off.  Most readers tolerate that (an MLP's
gates, a head picking one key), but a head that must weigh its selected keys equally
(a count, a mean) turns a row error into a tilt of its weights (see
:func:`.certify.tilted_heads`).

The bound holds for every summation order (a matmul kernel's order depends on the
machine): a sum of n terms in a dtype with unit round-off u is off by at most
gamma_n = n u / (1 - n u) times the sum of the terms' sizes.  It is taken at every point
of the table's domain, with each unit's actual pre-activation, which is much tighter
than one bound from the largest pre-activation anywhere; and it depends on nothing but
the plan, so the plan made from it is the same on every machine.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..dtypes import UNIT_ROUNDOFF
from ..language.ir import Atom
from .emit.mlp import encoder
from .numbers import num
from .plan.types import CatRep, MLPJob, NumRep, Table
from .residual import ONE, Lin

#: most points of a table visited (beyond it, the worst case is assumed)
MAX_POINTS = 1 << 14
#: most multiply-adds one bound may take (beyond it, the worst case is assumed)
MAX_WORK = 1 << 27


def table_row_errors(job: MLPJob, table: Table, dtype: str, dirs: set[str]) -> dict[str, float]:
    """A bound on the error of each of ``dirs`` the job writes, computed in ``dtype``, over
    every point of the table's domain.  Where the points cannot be set up (an input that
    is not plain directions, a domain too large to visit), the worst case: every unit's
    pre-activation rounded at its largest."""
    wanted = [d for d in job.targets() if d in dirs]
    if not wanted or not table.units:
        return {}
    layout = _input_layout(job)
    width = len({n for u in table.units for n in u.pre.names()}) + len(wanted) + 1
    points = _points(job, min(MAX_POINTS, MAX_WORK // (width * len(table.units))))
    if points is None:
        layout = None
    if layout is None or points is None:
        worst_case = len(table.units) * table.magnitude * UNIT_ROUNDOFF[dtype]
        return {d: worst_case for d in wanted}
    if not points:
        return {d: 0.0 for d in wanted}
    x, w_in, w_out, ideal, _ = table_arrays(job, table, wanted, layout, points)
    exact = np.maximum(x @ w_in, 0.0) @ w_out
    error = np.abs(exact - ideal) + _bound(x, w_in, w_out, dtype)
    worst = error.max(axis=0)
    return {d: float(worst[i]) for i, d in enumerate(wanted)}


def table_arrays(
    job: MLPJob,
    table: Table,
    wanted: list[str],
    layout: list[list[str] | tuple[str, float]],
    points: list[tuple[tuple[Atom, ...], Atom]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The table as arrays over the directions its units read (the constant included):
    the residual at each point ``x`` [points, dirs], ``w_in`` [dirs, units], ``w_out``
    [units, wanted], the ideal outputs [points, wanted], and which columns of ``x`` hold
    numbers (not one-hot rows)."""
    names = sorted({n for u in table.units for n in u.pre.names()} | {ONE})
    col = {n: i for i, n in enumerate(names)}
    w_in = np.zeros((len(names), len(table.units)))
    for j, u in enumerate(table.units):
        for n, c in u.pre.terms:
            w_in[col[n], j] = c
    out_col = {d: i for i, d in enumerate(wanted)}
    w_out = np.zeros((len(table.units), len(wanted)))
    for j, u in enumerate(table.units):
        for d, c in u.out:
            if d in out_col:
                w_out[j, out_col[d]] += c
    encode = encoder(job)
    ideal = np.zeros((len(points), len(wanted)))
    for p, (_, y) in enumerate(points):
        for d, v in encode(y).items():
            if d in out_col:
                ideal[p, out_col[d]] = v
    x = np.zeros((len(points), len(names)))
    x[:, col[ONE]] = 1.0
    numeric = np.zeros(len(names), dtype=bool)
    for p, (combo, _) in enumerate(points):
        for where, a in zip(layout, combo):
            if isinstance(where, tuple):  # a number: its direction and coefficient
                name, coef = where
                if name in col:
                    x[p, col[name]] = num(a) / coef
                    numeric[col[name]] = True
            elif where[int(a)] in col:  # a category's index: its row's direction
                x[p, col[where[int(a)]]] = 1.0
    return x, w_in, w_out, ideal, numeric


def _bound(x: np.ndarray, w_in: np.ndarray, w_out: np.ndarray, dtype: str) -> np.ndarray:
    """Per point and output, a bound on the rounding of relu(x @ w_in) @ w_out in
    ``dtype`` that holds for every summation order: a sum of n terms is off by at most
    gamma_n = n u / (1 - n u) times the sum of their sizes."""
    u = UNIT_ROUNDOFF[dtype]

    def gamma(n: np.ndarray) -> np.ndarray:
        return n * u / (1.0 - n * u)

    pre = x @ w_in
    size_in = np.abs(x) @ np.abs(w_in)
    # + 1: the weights' own rounding to the dtype
    n_in = (x != 0).astype(float) @ (w_in != 0).astype(float) + 1.0
    d_pre = gamma(n_in) * size_in
    d_hidden = np.where(pre + d_pre > 0.0, d_pre, 0.0)
    hidden = np.maximum(pre, 0.0) + d_hidden
    n_out = (hidden != 0).astype(float) @ (w_out != 0).astype(float) + 1.0
    return d_hidden @ np.abs(w_out) + gamma(n_out) * (hidden @ np.abs(w_out))


def _input_layout(job: MLPJob) -> list[list[str] | tuple[str, float]] | None:
    """Per input, how to set the residual for one of its values: a categorical input's
    row directions (each row one direction of its own, coefficient 1), a number's
    direction and coefficient; None when an input is read in another way."""
    layout: list[list[str] | tuple[str, float]] = []
    for rep in job.inputs:
        if isinstance(rep, CatRep):
            rows = [_single(row) for row in rep.rows]
            dirs = [r[0] for r in rows if r is not None and r[1] == 1.0]
            if len(set(dirs)) < len(rows):
                return None
            layout.append(dirs)
        else:
            assert isinstance(rep, NumRep)
            single = _single(rep.lin)
            if single is None:
                return None
            layout.append(single)
    return layout


def grouped_layout(job: MLPJob, table: Table) -> list[list[str] | tuple[str, float]] | None:
    """:func:`_input_layout`, where a categorical row may also be a sum of
    directions (a group of values, such as every token but one): one of them stands
    for the row, which holds when the units read all of them alike (at a point, one of
    the row's directions is 1 and the rest 0)."""
    plain = _input_layout(job)
    if plain is not None:
        return plain
    reads: dict[str, list[tuple[int, float]]] = {}
    for j, un in enumerate(table.units):
        for n, c in un.pre.terms:
            reads.setdefault(n, []).append((j, c))
    layout: list[list[str] | tuple[str, float]] = []
    seen: set[str] = set()
    for rep in job.inputs:
        if isinstance(rep, NumRep):
            terms = rep.lin.terms
            if len(terms) != 1 or terms[0][0] == ONE:
                return None
            layout.append(terms[0])
            continue
        stand: list[str] = []
        for row in rep.rows:
            dirs = row.as_dict()
            if not dirs or set(dirs.values()) != {1.0} or seen & dirs.keys() or ONE in dirs:
                return None
            seen |= dirs.keys()
            if len({tuple(reads.get(n, ())) for n in dirs}) != 1:
                return None  # the units tell the row's directions apart
            stand.append(min(dirs))
        layout.append(stand)
    return layout


def _single(lin: Lin) -> tuple[str, float] | None:
    return lin.terms[0] if len(lin.terms) == 1 and lin.terms[0][0] != ONE else None


def _points(
    job: MLPJob, most: int, occurring: bool = False
) -> list[tuple[tuple[Atom, ...], Atom]] | None:
    """(per input: a category's index or a number, the table's value) for the domain's
    points where the table is defined; None when there are more than ``most``.  With
    ``occurring``, a category whose row reads nothing is left out (its one-hot would be
    all 0s: the value never occurs)."""
    domains: list[tuple[Atom, ...]] = [
        tuple(k for k in range(len(rep.values)) if rep.rows[k].terms or not occurring)
        if isinstance(rep, CatRep)
        else rep.values
        for rep in job.inputs
    ]
    if math.prod(len(d) for d in domains) > most:
        return None
    out: list[tuple[tuple[Atom, ...], Atom]] = []
    for combo in itertools.product(*domains):
        args = tuple(
            rep.values[int(c)] if isinstance(rep, CatRep) else c
            for rep, c in zip(job.inputs, combo)
        )
        y = job.fn(args)
        if y is not None:
            out.append((combo, y))
    return out
