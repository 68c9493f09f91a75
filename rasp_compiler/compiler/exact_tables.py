"""MLP tables a narrow dtype computes exactly, found by running them bit for bit.

The bounds of :mod:`.table_rounding` allow every input anywhere within its error and
every rounding its worst; a count's table in bfloat16 is then refused from a few
positions, though the model is exact far beyond.  Where a table's inputs are *known
bits*, it is simulated instead, at every point of its domain:

* **Known bits.**  An embedded one-hot and a positional number the dtype holds are
  exact.  So is a direction written by a table this simulation has shown exact (its
  rows equal the ideal 0s and 1s at every point), and the plan is made again with those
  held exactly (``Plan.proven``), so that heads reading them compute their scores
  exactly too.  A number one head writes, whose scores are computed exactly
  (``emit.attention.scores_exact``), takes one of a few known values: such a head's
  beta puts the weights of the keys it ignores below float32's smallest number (they
  are exactly 0, ``emit.attention.sharpness``), its selected keys weigh exactly alike,
  and what it writes is ``S / n`` for ``n`` keys whose values sum to ``S`` (whole units
  of a 0/1 direction, exact in float32), rounded once (a fused kernel) or as the
  rounded weight ``1/n`` times ``S`` (softmax, then a matmul): both are simulated.
* **The arithmetic.**  Weights rounded to the dtype; each pre-activation and output
  is a float32 sum of products rounded once to the dtype (the kernels' arithmetic, see
  :mod:`.table_rounding`).  Each product of two dtype numbers is exact in float32.  The
  sum is exact in every order of summation when all its terms are multiples of one
  power of two ``q`` and their sizes add up to less than ``2^24 q`` (a product is a
  multiple of the product of its factors' spacings); a sum of two terms is their exact
  sum rounded once to float32, in either order.  A table with a sum that is neither is
  left to the bounds.

What comes out is, per point, the exact output in the dtype, compared with the ideal.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..dtypes import UNIT_ROUNDOFF, torch_dtype
from .emit.attention import scores_exact, zero_leak
from .numbers import num
from .plan.types import CatRep, Head, HeadKind, MLPJob, NumRep, Plan, Table
from .residual import BOS, ONE, Lin
from .rounding import _points, grouped_layout, table_arrays

#: the stand-in direction of a value whose row reads nothing (it never occurs), and of
#: a number read from several directions
NEVER = "(never)"
SEVERAL = "(several)"
#: most rows (points times their variants) one table is simulated at
MAX_ROWS = 1 << 15
#: most values a number one head writes is simulated at, over its key counts
MAX_KEY_COUNTS = 1 << 16
#: most units a head's selected values may add up to (the weighted sum stays exact)
MAX_SUM_UNITS = 1 << 15
#: float32's significand: a sum of multiples of q stays exact below 2^24 q
FLOAT32_DIGITS = 24


def held_exactly(plan: Plan, dtype: str) -> set[str]:
    """Directions every run holds as their ideal values: the constant, BOS, the tokens'
    one-hots, positional entries the dtype holds, and what tables shown exact write."""
    out = {ONE, BOS} | {d for t in plan.tokens for d in t.dirs}
    t = torch_dtype(dtype)
    for e in plan.positional:
        held = np.array(e.values, dtype=np.float64)
        if np.array_equal(torch.from_numpy(held).to(t).double().numpy(), held):
            out.add(e.dir)
    return out | set(plan.proven) | set(plan.proven_numbers)


def proven_exact(plan: Plan, dtype: str) -> tuple[frozenset[str], frozenset[str]]:
    """The one-hot rows and the numbers of whole values ``dtype`` computes exactly,
    layer by layer (what one reads may have been shown exact before it): rows a head
    copies (:func:`copied_exactly`) and what tables write whose simulation is exact at
    every point (only directions no other table writes)."""
    writers: dict[str, int] = {}
    for job in plan.mlps:
        for d in job.targets():
            writers[d] = writers.get(d, 0) + 1
    copies = _head_rows(plan)
    heads = {h.id: h for h in plan.heads}
    known = held_exactly(plan, dtype) - set(plan.proven) - set(plan.proven_numbers)
    found: set[str] = set()
    numbers: set[str] = set()
    for layer in range(plan.n_layers):
        for rep in copies:
            if max(heads[h].layer for h in rep.sources) == layer:
                if copied_exactly(rep, plan, heads, known, dtype):
                    rows = {n for row in rep.rows for n in row.names()}
                    found |= rows
                    known |= rows
        for job, table in plan.mlps_in(layer):
            sim = simulate(plan, job, table, dtype, known)
            if sim is None:
                continue
            rows = {d for t in job.cat_targets for d in t.dirs}
            whole = {d for d in job.num_targets if _whole_values(plan, d) is not None}
            for k, d in enumerate(sim.wanted):
                if writers.get(d) == 1 and not sim.deviation[:, k].any():
                    if d in rows:
                        found.add(d)
                        known.add(d)
                    elif d in whole:
                        numbers.add(d)
                        known.add(d)
    return frozenset(found), frozenset(numbers)


def direction_values(plan: Plan, name: str, known: set[str]) -> tuple[float, ...] | None:
    """Every value direction ``name`` holds in a run, when it is held exactly: the
    constant's 1, a one-hot's 0 and 1, a positional entry's values, the values of a
    number a table writes; None otherwise."""
    if name not in known:
        return None
    if name == ONE:
        return (1.0,)
    for e in plan.positional:
        if e.dir == name:
            return tuple(sorted(set(e.values)))
    for job in plan.mlps:
        if name in job.num_targets:
            return _whole_values(plan, name)
    return (0.0, 1.0)


def _whole_values(plan: Plan, name: str) -> tuple[float, ...] | None:
    """The values a table writes into number ``name``, when they are whole numbers."""
    for job in plan.mlps:
        if name in job.num_targets:
            points = _points(job, MAX_ROWS)
            if points is None:
                return None
            vals = {float(num(y)) for _, y in points}
            return tuple(sorted(vals)) if all(v.is_integer() for v in vals) else None
    return None


def _head_rows(plan: Plan) -> list[CatRep]:
    """The one-hots heads write that tables or the output read."""
    reps = [r for job in plan.mlps for r in job.inputs if isinstance(r, CatRep)]
    if isinstance(plan.output, CatRep):
        reps.append(plan.output)
    ids = {h.id for h in plan.heads}
    return [r for r in reps if r.sources and all(h in ids for h in r.sources)]


def copied_exactly(
    rep: CatRep, plan: Plan, heads: dict[int, Head], known: set[str], dtype: str
) -> bool:
    """Are the rows of the one-hot ``rep``, which heads copy, exactly 0 or 1?  Each head
    computes its scores exactly and puts no weight on the keys it ignores; each of its
    values is one direction holding 0 or 1 exactly; its selected keys all hold the same
    value (a categorical aggregate), so the row holding it sums ``n`` weights of
    ``1/n``, which the dtype rounds to 1 for every ``n`` up to the length (checked)."""
    for hid in rep.sources:
        head = heads[hid]
        if not (scores_exact(head, UNIT_ROUNDOFF[dtype]) and zero_leak(head)):
            return False
        for _, lin in head.values:
            if len(lin.terms) != 1 or lin.terms[0][1] != 1.0:
                return False
            if not _zero_one(plan, lin.terms[0][0], known):
                return False
    if not all(c == 1.0 for row in rep.rows for _, c in row.terms):  # one or a group
        return False
    n = np.arange(1, plan.max_len + 2, dtype=np.float64)
    for w in (_round(1.0 / n, dtype), _round(_f32(1.0 / n), dtype)):
        if not np.all(_round(_f32(w * n), dtype) == 1.0):
            return False
    return True


@dataclass(frozen=True)
class Simulated:
    """A table run bit for bit: per run of it (a point of its domain with one choice of
    the values its inputs may hold there), how far each direction it writes is from the
    ideal, with its sign."""

    wanted: list[str]  # the directions it writes
    deviation: np.ndarray  # [runs, directions]: the dtype's output minus the ideal
    point: np.ndarray  # [runs]: the point each run is at
    n_points: int
    #: [runs, read directions]: the residual each run reads (the constant's column is 1)
    inputs: np.ndarray | None = None

    def per_point(self) -> np.ndarray:
        """[points, directions]: the largest deviation's size at each point."""
        err = np.zeros((self.n_points, len(self.wanted)))
        np.maximum.at(err, self.point, np.abs(self.deviation))
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
        total += float(np.abs(run.deviation @ w).max())
        left -= targets
    return None if left else total


def simulate(
    plan: Plan, job: MLPJob, table: Table, dtype: str, known: set[str] | None = None
) -> Simulated | None:
    """The table run in ``dtype`` at every point of its domain, with every value its
    inputs may hold there; None when an input's bits are not known or a sum may round
    (see the module docstring).  Remembered for the plan's tables and ``known``."""
    known = held_exactly(plan, dtype) if known is None else known
    key = (id(plan.tables), job.id, dtype, frozenset(known))
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is plan.tables:
        return hit[1]
    if len(_CACHE) > CACHE_SIZE:
        _CACHE.clear()
    found = _simulate(plan, job, table, dtype, known)
    _CACHE[key] = (plan.tables, found)
    return found


#: simulations remembered (a certification asks for each table several times)
CACHE_SIZE = 512
_CACHE: dict[tuple, tuple[tuple[Table, ...], Simulated | None]] = {}


def _simulate(
    plan: Plan, job: MLPJob, table: Table, dtype: str, known: set[str]
) -> Simulated | None:
    wanted = list(job.targets())
    # a number's constant part is in the units' bias, and one of several directions
    # stands in for the layout (the values are placed below); a value whose row reads
    # nothing never occurs (its one-hot would be all 0s)
    consts = [r.lin.as_dict().get(ONE, 0.0) if isinstance(r, NumRep) else 0.0 for r in job.inputs]
    bare = tuple(
        _bare_number(r, i) if isinstance(r, NumRep) else _stand_ins(r)
        for i, r in enumerate(job.inputs)
    )
    layout = grouped_layout(replace(job, inputs=bare), table)
    points = _points(job, MAX_ROWS)
    if layout is not None and points is not None:
        points = [
            (combo, y)
            for combo, y in points
            if not any(
                isinstance(r, CatRep) and not r.rows[int(c)].terms
                for r, c in zip(job.inputs, combo)
            )
        ]
    if layout is None or points is None or not wanted:
        return None
    if not points or not table.units:
        return Simulated(wanted, np.zeros((1, len(wanted))), np.zeros(1, dtype=int), 1)
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
            several = _sum_values(rep, plan, known)
            if several is None:
                return None
            held[i] = several
            continue
        found = _number_values(rep, name, coef, consts[i], plan, heads, known, dtype)
        if found is None:
            return None
        held[i] = {v: [((name, x),) for x in xs] for v, xs in found.items()}
    x, w_in, w_out, ideal, _ = table_arrays(job, table, wanted, layout, points)
    names = sorted({n for un in table.units for n in un.pre.names()} | {ONE})
    col = {n: c for c, n in enumerate(names)}
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
            if len(rows) > MAX_ROWS:
                return None
    xs = np.array(rows)
    wi, wo = _round(w_in, dtype), _round(w_out, dtype)
    if not (np.isfinite(wi).all() and np.isfinite(wo).all()):
        return None
    pre = _float32_sums(xs, wi, dtype)
    if pre is None:
        return None
    hidden = np.maximum(_round(pre, dtype), 0.0)
    out = _float32_sums(hidden, wo, dtype)
    if out is None:
        return None
    moved = _round(out, dtype) - ideal[owner]
    return Simulated(wanted, moved, np.array(owner), len(points), xs)


def _bare_number(rep: NumRep, i: int) -> NumRep:
    """``rep`` read from one direction with no constant, for the layout: its own, or a
    stand-in where it reads several."""
    terms = rep.lin.as_dict()
    terms.pop(ONE, None)
    if len(terms) == 1:
        ((d, c),) = terms.items()
        return replace(rep, lin=Lin.unit(d).scale(c))
    return replace(rep, lin=Lin.unit(f"{SEVERAL}{i}"))


def _sum_values(
    rep: NumRep, plan: Plan, known: set[str]
) -> dict[float, list[tuple[tuple[str, float], ...]]] | None:
    """For a number read from several directions held exactly (a difference of two
    counts, a count plus a one-hot): per value, every choice of their values that gives
    it; None where a direction is not held exactly or the choices are too many."""
    terms = rep.lin.as_dict()
    const = terms.pop(ONE, 0.0)
    names = sorted(terms)
    domains = [direction_values(plan, n, known) for n in names]
    if any(d is None for d in domains):
        return None
    if math.prod(len(d or ()) for d in domains) > MAX_ROWS:
        return None
    out: dict[float, list[tuple[tuple[str, float], ...]]] = {float(num(v)): [] for v in rep.values}
    for combo in itertools.product(*domains):  # type: ignore[arg-type]
        v = const + sum(terms[n] * x for n, x in zip(names, combo))
        for target in out:
            if abs(v - target) <= 1e-9 * max(1.0, abs(target)):
                out[target].append(tuple(zip(names, combo)))
    return out if all(out.values()) else None


def _stand_ins(rep: CatRep) -> CatRep:
    """``rep`` with a direction of its own standing for each row that reads nothing."""
    rows = tuple(row if row.terms else Lin.unit(f"{NEVER}{k}") for k, row in enumerate(rep.rows))
    return replace(rep, rows=rows)


def _number_values(
    rep: NumRep,
    name: str,
    coef: float,
    const: float,
    plan: Plan,
    heads: dict[int, Head],
    known: set[str],
    dtype: str,
) -> dict[float, tuple[float, ...]] | None:
    """Per value of the number ``rep``: every value its direction ``name`` (read as
    ``coef`` times it plus ``const``) may hold in a run; None when that is not known."""
    vals = sorted({num(v) for v in rep.values})
    if name in known:
        return {v: ((v - const) / coef,) for v in vals}
    if len(rep.sources) != 1:
        return None
    ((hid, _),) = rep.sources
    head = heads.get(hid)
    if head is None or not (scores_exact(head, UNIT_ROUNDOFF[dtype]) and zero_leak(head)):
        return None
    if head.kind == HeadKind.WIDTH:
        unit, most = 1.0, 1.0  # the weight on BOS, whose value is 1
    else:
        lins = [lin for out, lin in head.values if out == name]
        if len(lins) != 1:
            return None
        found = _whole_units(lins[0], plan, known, dtype)
        if found is None:
            return None
        unit, most = found
    n_max = plan.max_len + 1
    if len(vals) * n_max > MAX_KEY_COUNTS or n_max * most / unit > MAX_SUM_UNITS:
        return None
    n = np.arange(1, n_max + 1, dtype=np.float64)
    # the weight 1/n, rounded straight to the dtype or first to float32 (a softmax's own
    # arithmetic); the same for S / n where a fused kernel divides at the end
    weights = (_round(1.0 / n, dtype), _round(_f32(1.0 / n), dtype))
    out: dict[float, tuple[float, ...]] = {}
    for v in vals:
        x = (v - const) / coef
        if head.kind == HeadKind.WIDTH:
            ks = np.where(np.abs(x * n - 1.0) <= 1e-9 * n, 1.0, np.nan)
        else:
            k = x * n / unit
            whole = (np.abs(k - np.round(k)) <= 1e-9 * n) & (np.abs(k) * unit <= n * most)
            ks = np.where(whole, k, np.nan)
        ok = ~np.isnan(ks)
        if not ok.any():
            return None
        sums = np.round(ks[ok]) * unit
        if head.kind == HeadKind.WIDTH:
            sums = np.ones(int(ok.sum()))
        got: set[float] = set()
        for exact in (sums / n[ok], _f32(sums / n[ok])):
            got.update(_round(exact, dtype).tolist())
        for w in weights:
            got.update(_round(w[ok] * sums, dtype).tolist())
        out[v] = tuple(sorted(got))
    return out


def _whole_units(lin: Lin, plan: Plan, known: set[str], dtype: str) -> tuple[float, float] | None:
    """(``unit``, largest size) where every key's value of ``lin`` is a whole number of
    ``unit`` (a power of two) that the dtype holds: ``lin`` reads only directions holding
    whole numbers exactly, with coefficients whole multiples of ``unit``, and its largest
    size is within the dtype's whole numbers of ``unit``; None otherwise."""
    coefs = [c for n, c in lin.terms if c != 0.0]
    sizes = [_integer_size(plan, n, known) for n, _ in lin.terms]
    if not coefs or any(z is None for z in sizes):
        return None
    most = sum(abs(c) * (z or 0.0) for (_, c), z in zip(lin.terms, sizes))
    unit = 2.0 ** math.floor(math.log2(min(abs(c) for c in coefs)))
    for _ in range(8):  # halve it until every coefficient is a whole number of it
        if all(float(c / unit).is_integer() for c in coefs):
            whole = 2.0 / UNIT_ROUNDOFF[dtype]  # 256 in bfloat16, 2048 in float16
            return (unit, most) if most / unit <= whole else None
        unit /= 2.0
    return None


def _integer_size(plan: Plan, name: str, known: set[str]) -> float | None:
    """The largest size of the whole numbers direction ``name`` holds exactly in every
    run (1 for a one-hot's direction), or None."""
    if name == BOS:
        return 1.0
    vals = direction_values(plan, name, known)
    if vals is None or not all(float(v).is_integer() for v in vals):
        return None
    return max((abs(v) for v in vals), default=0.0)


def _zero_one(plan: Plan, name: str, known: set[str]) -> bool:
    """Does direction ``name`` hold only 0 or 1, exactly, in every run?"""
    if name == BOS:
        return True
    vals = direction_values(plan, name, known)
    return vals is not None and set(vals) <= {0.0, 1.0}


def _float32_sums(a: np.ndarray, b: np.ndarray, dtype: str) -> np.ndarray | None:
    """``a @ b`` (dtype numbers) as float32 sums give it in every order of summation:
    exact (:func:`_sums_exact`), or, where no sum has more than two terms, the one
    rounding of the exact sum to float32 (each product is exact in float32); None
    otherwise."""
    exact = a @ b
    if _sums_exact(a, b, dtype):
        return exact
    terms = (a != 0.0).astype(np.int64) @ (b != 0.0).astype(np.int64)
    return _f32(exact) if terms.max(initial=0) <= 2 else None


def _sums_exact(a: np.ndarray, b: np.ndarray, dtype: str) -> bool:
    """Is every sum of ``a @ b`` (dtype numbers) exact in float32 in any order: per
    column, its terms multiples of one power of two ``q`` whose sizes add up to less
    than ``2^24 q``?"""
    digits = -math.log2(UNIT_ROUNDOFF[dtype]) - 1  # the spacing is 2^-digits of the binade
    la = _lowest(a, digits)  # [rows, k]: log2 of each entry's spacing (inf for 0)
    lb = _lowest(b, digits)  # [k, cols]
    low_a = la.min(axis=0)  # per k, over the rows
    q = np.min(low_a[:, None] + lb, axis=0)  # [cols]; inf where every term is 0
    sizes = np.abs(a) @ np.abs(b)
    return bool(np.all(sizes < np.exp2(q + FLOAT32_DIGITS)[None, :]))


def _lowest(a: np.ndarray, digits: float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(a != 0.0, np.floor(np.log2(np.abs(a))) - digits, np.inf)


def _f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def _round(x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` rounded to ``dtype`` (to nearest, as the kernels store their results)."""
    t = torch_dtype(dtype)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).to(t).double().numpy()
