"""MLP tables a narrow dtype computes exactly, found by running them bit for bit.

The bounds of :mod:`.table_rounding` allow every input anywhere within its error and
every rounding its worst; a count's table in bfloat16 is then refused from a few
positions, though the model is exact far beyond.  Where a table's inputs are *known
bits*, it is simulated instead, at every point of its domain:

* **Known bits.**  An embedded one-hot and a positional number the dtype holds are
  exact.  A head whose scores are computed exactly (``emit.attention.scores_exact``)
  puts no weight at all on the keys it ignores: its beta puts their weights below
  float32's smallest number (``emit.attention.zero_leak``), and its selected keys weigh
  exactly alike.  What such a head writes is known: a one-hot it copies is exact
  (:func:`copied_exactly`; a head that attends one key, ``Head.one_key``, copies it
  with weight exactly 1); a number is ``S / n`` for ``n`` keys whose values sum to
  ``S`` (whole units, exact in float32), rounded once (a fused kernel) or as the
  rounded weight ``1/n`` times ``S`` (softmax, then a matmul), both simulated for
  every ``n`` (:mod:`.exact_values`).  Rows and whole numbers written by tables this
  simulation shows exact are exact too.  The plan is made again with every exact row
  and whole number held exactly (``Plan.proven``, ``Plan.proven_numbers``), so that
  heads reading them compute their scores exactly as well; certification runs the
  tables again to check each one.  A number read with a constant, or from several
  exact directions, is run at every choice of theirs that gives each of its values.
  Inputs reading one one-hot, and numbers read as gates, are run as
  :mod:`.exact_domain` says; runs are computed a chunk at a time.
* **The arithmetic.**  Weights rounded to the dtype; each pre-activation and output
  is a float32 sum of products rounded once to the dtype (the kernels' arithmetic, see
  :mod:`.table_rounding`).  Each product of two dtype numbers is exact in float32.  The
  sum is exact in every order of summation when all its terms are multiples of one
  power of two ``q`` and their sizes add up to less than ``2^24 q`` (a product is a
  multiple of the product of its factors' lowest set bits); a sum of two terms is their exact
  sum rounded once to float32, in either order.  Any other sum is within ``gamma_n``
  of its terms' sizes of its exact value, whatever the order: both ends are rounded,
  and where they differ the run carries the interval on (``Simulated.spread``).

What comes out is, per point, the exact output in the dtype, compared with the ideal.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np

from ..dtypes import UNIT_ROUNDOFF
from .emit.attention import scores_exact, zero_leak
from .exact_domain import gate_values, gates_stay_off, merged_inputs, visited
from .exact_values import (
    f32,
    number_values,
    read_values,
    rounded,
    sum_values,
    whole_values,
    zero_one,
)
from .numbers import num
from .plan.types import CatRep, Head, MLPJob, NumRep, Plan, Table
from .residual import BOS, ONE, Lin
from .rounding import _points, grouped_layout, table_arrays

#: the stand-in direction of a value whose row reads nothing (it never occurs), and of
#: a number read from several directions
NEVER = "(never)"
SEVERAL = "(several)"
#: most products the row-by-row test of a sum's exactness looks at
MAX_EXACT_WORK = 1 << 26
#: float32's significand: a sum of multiples of q stays exact below 2^24 q
FLOAT32_DIGITS = 24


def held_exactly(plan: Plan, dtype: str) -> set[str]:
    """Directions every run holds as their ideal values: the constant, BOS, the tokens'
    one-hots, positional entries the dtype holds, and what tables shown exact write."""
    out = {ONE, BOS} | {d for t in plan.tokens for d in t.dirs}
    for e in plan.positional:
        held = np.array(e.values, dtype=np.float64)
        if np.array_equal(rounded(held, dtype), held):
            out.add(e.dir)
    return out | set(plan.proven) | set(plan.proven_numbers)


def proven_exact(plan: Plan, dtype: str) -> tuple[frozenset[str], frozenset[str]]:
    """The one-hot rows and the numbers of whole values ``dtype`` computes exactly,
    layer by layer (what one reads may have been shown exact before it): rows a head
    copies (:func:`copied_exactly`) and what tables write whose simulation is exact at
    every point (only directions no other table writes)."""
    writers: dict[str, int] = {}
    for job in plan.mlps:
        for d in set(job.targets()):  # a class's direction stands for each of its values
            writers[d] = writers.get(d, 0) + 1
    heads = {h.id: h for h in plan.heads}
    one_hot = {d: b.name for b in plan.blocks if b.one_hot for d in b.directions}
    known = held_exactly(plan, dtype) - set(plan.proven) - set(plan.proven_numbers)
    found: set[str] = set()
    numbers: set[str] = set()
    for layer in range(plan.n_layers):
        for head in plan.heads_in(layer):
            if copied_exactly(head, plan, one_hot, known, dtype):
                rows = {d for d, _ in head.values}
                found |= rows
                known |= rows
        for name in _head_numbers(plan, layer, heads, known, dtype):
            numbers.add(name)
            known.add(name)
        for job, table in plan.mlps_in(layer):
            sim = simulate(plan, job, table, dtype, known)
            if sim is None:
                continue
            rows = {d for t in job.cat_targets for d in t.dirs}
            whole = {d for d in job.num_targets if whole_values(plan, d) is not None}
            for k, d in enumerate(sim.wanted):
                if writers.get(d) == 1 and sim.exact(k):
                    if d in rows:
                        found.add(d)
                        known.add(d)
                    elif d in whole:
                        numbers.add(d)
                        known.add(d)
    return frozenset(found), frozenset(numbers)


def copied_exactly(
    head: Head, plan: Plan, one_hot: dict[str, str], known: set[str], dtype: str
) -> bool:
    """Does ``head`` write exact 0s and 1s into the one-hot it copies (a categorical
    aggregate)?  It computes its scores exactly and puts no weight on the keys it
    ignores; each value it writes is 1 at a key holding it and 0 elsewhere (directions
    of one one-hot held exactly, and BOS for the default: the BOS position holds nothing
    else); its selected keys all hold the same value, so the row holding it sums ``n``
    weights of ``1/n``, which the dtype rounds to 1 for every ``n`` up to the length
    (checked)."""
    exact = scores_exact(head, UNIT_ROUNDOFF[dtype]) and zero_leak(head)
    if not head.values or not exact or not all(d in one_hot for d, _ in head.values):
        return False
    for _, lin in head.values:
        names = [n for n, _ in lin.terms]
        if any(c != 1.0 for _, c in lin.terms):
            return False
        if not all(zero_one(plan, n, known) for n in names):
            return False
        if len({one_hot.get(n, n) for n in names if n != BOS}) > 1:
            return False
    if head.one_key:  # one key or BOS, alone: weight exactly 1
        return True
    n = np.arange(1, plan.max_len + 2, dtype=np.float64)
    for w in (rounded(1.0 / n, dtype), rounded(f32(1.0 / n), dtype)):
        if not np.all(rounded(f32(w * n), dtype) == 1.0):
            return False
    return True


def _head_numbers(
    plan: Plan, layer: int, heads: dict[int, Head], known: set[str], dtype: str
) -> set[str]:
    """Numbers of whole values heads at ``layer`` write that the dtype holds exactly (a
    copied position, such as the length): every value a table reads it at is held as
    itself, whatever the key count (:func:`.exact_values.number_values`)."""
    out: set[str] = set()
    for job in plan.mlps:
        for rep in job.inputs:
            if not isinstance(rep, NumRep) or len(rep.sources) != 1:
                continue
            ((hid, _),) = rep.sources
            terms = rep.lin.as_dict()
            const = terms.pop(ONE, 0.0)
            if hid not in heads or heads[hid].layer != layer or len(terms) != 1:
                continue
            ((name, coef),) = terms.items()
            vals = read_values(plan, name)
            if name in out or vals is None or not all(float(v).is_integer() for v in vals):
                continue
            found = number_values(rep, name, coef, const, plan, heads, known, dtype)
            if found is not None and all(
                held == ((v - const) / coef,) for v, held in found.items()
            ):
                out.add(name)
    return out


@dataclass(frozen=True)
class Simulated:
    """A table run bit for bit: per run of it (a point of its domain with one choice of
    the values its inputs may hold there), how far each direction it writes is from the
    ideal, with its sign; where the order of a float32 sum may change the result, the
    middle of what it may be and how far either way (``spread``)."""

    wanted: list[str]  # the directions it writes
    deviation: np.ndarray  # [runs, directions]: the dtype's output minus the ideal
    point: np.ndarray  # [runs]: the point each run is at
    n_points: int
    #: [runs, read directions]: the residual each run reads (the constant's column is 1)
    inputs: np.ndarray | None = None
    #: [runs, directions]: how far either way of ``deviation`` the output may be
    spread: np.ndarray | None = None

    def exact(self, k: int) -> bool:
        """Is direction ``k`` the ideal at every run?"""
        spread = 0.0 if self.spread is None else np.abs(self.spread[:, k]).max(initial=0.0)
        return not self.deviation[:, k].any() and spread == 0.0

    def worst(self, w: np.ndarray) -> float:
        """The largest ``|deviation @ w|`` over the runs, spread included."""
        at = np.abs(self.deviation @ w)
        if self.spread is not None:
            at = at + self.spread @ np.abs(w)
        return float(at.max(initial=0.0))

    def per_point(self) -> np.ndarray:
        """[points, directions]: the largest deviation's size at each point."""
        size = np.abs(self.deviation)
        if self.spread is not None:
            size = size + self.spread
        err = np.zeros((self.n_points, len(self.wanted)))
        np.maximum.at(err, self.point, size)
        return err


def output_deviation(plan: Plan, dtype: str) -> float | None:
    """How far a numerical output read only from directions held exactly and from the
    rows of tables run bit for bit may be off before the unembedding rounds it: the sum
    over those tables of the largest deviation of what the output reads, with its sign;
    None where it reads anything else."""
    out = plan.output
    if not isinstance(out, NumRep):
        return None
    weights = {d: c for d, c in out.lin.as_dict().items() if d not in (ONE, BOS) and c}
    known = held_exactly(plan, dtype)
    left = set(weights) - known
    total = 0.0
    for job, table in zip(plan.mlps, plan.tables):
        targets = set(job.targets())
        if not targets & left:
            continue
        run = simulate(plan, job, table, dtype)
        if run is None:
            return None
        w = np.array([weights.get(d, 0.0) for d in run.wanted])
        total += run.worst(w)
        left -= targets
    return None if left else total


def simulate(
    plan: Plan, job: MLPJob, table: Table, dtype: str, known: set[str] | None = None
) -> Simulated | None:
    """The table run in ``dtype`` at every point of its domain, with every value its
    inputs may hold there; None when an input's bits are not known (see the module
    docstring).  Remembered for the plan's tables and ``known``."""
    known = held_exactly(plan, dtype) if known is None else known
    key = (id(plan.tables), job.id, dtype, frozenset(known))
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is plan.tables:
        return hit[1]
    if len(_CACHE) > CACHE_SIZE or any(t is not plan.tables for t, _ in _CACHE.values()):
        _CACHE.clear()  # only the latest plan's runs are asked for again
    found = _simulate(plan, job, table, dtype, known)
    _CACHE[key] = (plan.tables, found)
    return found


#: most runs (points times the values their inputs may hold) of one table
MAX_RUNS = 1 << 17
#: runs computed at once (what one chunk's arrays take stays in the tens of MB)
RUN_CHUNK = 1 << 13
#: simulations remembered (a certification asks for each table several times)
CACHE_SIZE = 512
_CACHE: dict[tuple, tuple[tuple[Table, ...], Simulated | None]] = {}


def _simulate(
    plan: Plan, job: MLPJob, table: Table, dtype: str, known: set[str]
) -> Simulated | None:
    wanted = list(job.targets())
    tops = dict(table.gate_tops)
    layout = _layout(job, table)
    if layout is None:  # inputs reading one one-hot: run over the blocks themselves
        merged = merged_inputs(plan, job)
        if merged is None:
            return None
        job, moved = merged
        tops = {moved[i]: top for i, top in tops.items() if i in moved}
        layout = _layout(job, table)
    if layout is None or not wanted:
        return None
    # a number's constant part is in the units' bias, and one of several directions
    # stands in for the layout (the values are placed below)
    consts = [r.lin.as_dict().get(ONE, 0.0) if isinstance(r, NumRep) else 0.0 for r in job.inputs]
    # per number input and value: the choices of what its directions hold
    held: dict[int, dict[float, list[tuple[tuple[str, float], ...]]]] = {}
    heads = {h.id: h for h in plan.heads}
    for i, (rep, where) in enumerate(zip(job.inputs, layout)):
        if isinstance(rep, CatRep):
            if not all(n in known for row in rep.rows for n in row.names()):
                return None
            continue
        assert isinstance(where, tuple)
        name, coef = where
        if name.startswith(SEVERAL):
            several = sum_values(rep, plan, known)
            if several is None:
                return None
            held[i] = several
            continue
        found = number_values(rep, name, coef, consts[i], plan, heads, known, dtype)
        if found is None:
            return None
        held[i] = {v: [((name, x),) for x in xs] for v, xs in found.items()}
    names = sorted({n for un in table.units for n in un.pre.names()} | {ONE})
    col = {n: c for c, n in enumerate(names)}
    # numbers read as gates, each from a direction of its own: a few of their values
    dirs = [w[0] if isinstance(w, tuple) else None for w in layout]
    columns = {i: col[d] for i, d in enumerate(dirs) if d in col and dirs.count(d) == 1}
    keep = {i: v for i, v in gate_values(job, held, tops).items() if i in columns}
    # a value whose row reads nothing never occurs (its one-hot would be all 0s)
    points = _points(visited(job, keep), MAX_RUNS, occurring=True)
    if points is None:
        return None
    if not points or not table.units:
        return Simulated(wanted, np.zeros((1, len(wanted))), np.zeros(1, dtype=int), 1)
    x, w_in, w_out, ideal, _ = table_arrays(job, table, wanted, layout, points)
    rows: list[np.ndarray] = []
    owner: list[int] = []
    for p, (combo, _) in enumerate(points):
        options = [choices[num(combo[i])] for i, choices in held.items()]
        for choice in itertools.product(*options):
            row = x[p].copy()
            for name, v in itertools.chain(*choice):
                if name in col:
                    row[col[name]] = v
            rows.append(row)
            owner.append(p)
            if len(rows) > MAX_RUNS:
                return None
    xs = np.array(rows)
    wi, wo = rounded(w_in, dtype), rounded(w_out, dtype)
    if not (np.isfinite(wi).all() and np.isfinite(wo).all()):
        return None
    combos = [points[p][0] for p in owner]
    lows, highs = [], []
    for start in range(0, len(xs), RUN_CHUNK):  # a few thousand runs at a time
        part = slice(start, start + RUN_CHUNK)
        pre_low, pre_high = _dtype_sums(xs[part], wi, dtype)
        if keep and not gates_stay_off(keep, tops, columns, combos[part], wi, pre_high):
            return None
        low, high = _dtype_sums(np.maximum(pre_low, 0.0), wo, dtype, np.maximum(pre_high, 0.0))
        lows.append(low)
        highs.append(high)
    low, high = np.concatenate(lows), np.concatenate(highs)
    moved_by = (low + high) / 2.0 - ideal[owner]
    spread = (high - low) / 2.0
    # what the runs read are dtype numbers, which float32 holds
    return Simulated(wanted, moved_by, np.array(owner), len(points), xs.astype(np.float32), spread)


def _layout(job: MLPJob, table: Table) -> list[list[str] | tuple[str, float]] | None:
    """Where the run sets each input: numbers bare (their constant in the bias), rows
    that read nothing given stand-in directions (:func:`.rounding.grouped_layout`)."""
    bare = tuple(
        _bare_number(r, i) if isinstance(r, NumRep) else _stand_ins(r)
        for i, r in enumerate(job.inputs)
    )
    return grouped_layout(replace(job, inputs=bare), table)


def _bare_number(rep: NumRep, i: int) -> NumRep:
    """``rep`` read from one direction with no constant, for the layout: its own, or a
    stand-in where it reads several."""
    terms = rep.lin.as_dict()
    terms.pop(ONE, None)
    if len(terms) == 1:
        ((d, c),) = terms.items()
        return replace(rep, lin=Lin.unit(d).scale(c))
    return replace(rep, lin=Lin.unit(f"{SEVERAL}{i}"))


def _stand_ins(rep: CatRep) -> CatRep:
    """``rep`` with a direction of its own standing for each row that reads nothing."""
    rows = tuple(row if row.terms else Lin.unit(f"{NEVER}{k}") for k, row in enumerate(rep.rows))
    return replace(rep, rows=rows)


def _dtype_sums(
    a: np.ndarray, b: np.ndarray, dtype: str, a_high: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``a @ b`` (dtype numbers) as the kernels give it, float32 sums rounded once to the
    dtype, in every order of summation: the lowest and highest it may be (equal where
    it is known; ``a`` may itself be known only between ``a`` and ``a_high``).  A sum is
    exact (:func:`_sums_exact`); or has two terms, its exact value rounded once to float32
    (each product is exact in float32); or is within ``gamma_n`` times its terms' sizes
    of its exact value in any order, and its ends are rounded (rounding is monotone)."""
    if a_high is None or np.array_equal(a, a_high):
        exact = a @ b
        if _sums_exact(a, b, dtype):
            out = rounded(exact, dtype)
            return out, out
        terms = (a != 0.0).astype(np.int64) @ (b != 0.0).astype(np.int64)
        if terms.max(initial=0) <= 2:
            out = rounded(f32(exact), dtype)
            return out, out
        low, high = exact, exact
        sizes = np.abs(a) @ np.abs(b)
    else:
        mid, radius = (a + a_high) / 2.0, (a_high - a) / 2.0
        centre, reach = mid @ b, radius @ np.abs(b)
        low, high = centre - reach, centre + reach
        terms = ((a != 0.0) | (a_high != 0.0)).astype(np.int64) @ (b != 0.0).astype(np.int64)
        sizes = np.maximum(np.abs(a), np.abs(a_high)) @ np.abs(b)
    u = UNIT_ROUNDOFF["float32"]
    slack = terms * u / (1.0 - terms * u) * sizes
    return rounded(low - slack, dtype), rounded(high + slack, dtype)


def _sums_exact(a: np.ndarray, b: np.ndarray, dtype: str) -> bool:
    """Is every sum of ``a @ b`` (dtype numbers) exact in float32 in any order: its terms
    multiples of one power of two ``q`` whose sizes add up to less than ``2^24 q``?
    ``q`` is taken per column over every row first, then, where that fails and the work
    is small, per row and column."""
    la = _lowest(a)  # [rows, k]: log2 of each entry's lowest set bit (inf for 0)
    lb = _lowest(b)  # [k, cols]
    sizes = np.abs(a) @ np.abs(b)
    q = np.min(la.min(axis=0)[:, None] + lb, axis=0)  # [cols]; inf where every term is 0
    if np.all(sizes < np.exp2(q + FLOAT32_DIGITS)[None, :]):
        return True
    if a.size * b.shape[1] > MAX_EXACT_WORK:
        return False
    for j in range(b.shape[1]):
        q_rows = np.min(la + lb[:, j][None, :], axis=1)  # [rows]
        if not np.all(sizes[:, j] < np.exp2(q_rows + FLOAT32_DIGITS)):
            return False
    return True


def _lowest(a: np.ndarray) -> np.ndarray:
    """log2 of each entry's lowest set bit (every entry is a multiple of it; inf for 0)."""
    nonzero = a != 0.0
    mant, exp = np.frexp(np.abs(a))
    whole = np.where(nonzero, mant * 2.0**53, 1.0).astype(np.int64)  # exact: 53 bits
    return np.where(nonzero, exp - 53 + np.log2((whole & -whole).astype(np.float64)), np.inf)
