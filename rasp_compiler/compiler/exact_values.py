"""What directions hold in a narrow dtype, where their bits are known: the values a
direction takes (a one-hot's 0 and 1, a positional entry's, a table's numbers, a copied
position), the few values a number one head writes takes for each of its values (its
key counts simulated, :func:`number_values`), and the choices of several directions
that make up one number.  :mod:`.exact_tables` runs tables at them."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from ..dtypes import UNIT_ROUNDOFF, torch_dtype
from .emit.attention import scores_exact, zero_leak
from .numbers import num
from .plan.types import Head, HeadKind, NumRep, Plan
from .residual import BOS, ONE, Lin
from .rounding import _points

#: most points a table's written values are read from, and most choices of the
#: directions one number is read from (a table's runs: ``exact_tables.MAX_RUNS``)
MAX_ROWS = 1 << 15
#: most values a number one head writes is simulated at, over its key counts
MAX_KEY_COUNTS = 1 << 16
#: most units a head's selected values may add up to (the weighted sum stays exact)
MAX_SUM_UNITS = 1 << 15


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
            return whole_values(plan, name)
    if name in plan.proven or any(name in t.dirs for t in plan.tokens) or name == BOS:
        return (0.0, 1.0)
    return read_values(plan, name)  # a number a head writes


def whole_values(plan: Plan, name: str) -> tuple[float, ...] | None:
    """The values a table writes into number ``name``, when they are whole numbers."""
    for job in plan.mlps:
        if name in job.num_targets:
            points = _points(job, MAX_ROWS)
            if points is None:
                return None
            vals = {float(num(y)) for _, y in points}
            return tuple(sorted(vals)) if all(v.is_integer() for v in vals) else None
    return None


def read_values(plan: Plan, name: str) -> tuple[float, ...] | None:
    """The values number direction ``name`` holds, from the tables reading it alone."""
    vals: set[float] = set()
    for job in plan.mlps:
        for rep in job.inputs:
            if isinstance(rep, NumRep):
                terms = rep.lin.as_dict()
                const = terms.pop(ONE, 0.0)
                if set(terms) == {name}:
                    vals |= {(float(num(v)) - const) / terms[name] for v in rep.values}
    return tuple(sorted(vals)) if vals else None


def sum_values(
    rep: NumRep, plan: Plan, known: set[str]
) -> dict[float, list[tuple[tuple[str, float], ...]]] | None:
    """For a number read from several directions held exactly (a difference of two
    counts, a count plus a one-hot, a one-hot's code): per value, every choice of their
    values that gives it (the directions of one one-hot are 1 one at a time); None
    where a direction is not held exactly or the choices are too many."""
    terms = rep.lin.as_dict()
    const = terms.pop(ONE, 0.0)
    block = {d: b.name for b in plan.blocks if b.one_hot for d in b.directions}
    groups: dict[str, list[str]] = {}
    for n in sorted(terms):
        groups.setdefault(block.get(n, n), []).append(n)
    choices: list[list[tuple[tuple[str, float], ...]]] = []
    for names in groups.values():
        if names[0] in block:
            if not all(zero_one(plan, n, known) for n in names):
                return None
            none = tuple((n, 0.0) for n in names)
            one = [tuple((m, 1.0 if m == n else 0.0) for m in names) for n in names]
            choices.append([none, *one])
        else:
            vals = direction_values(plan, names[0], known)
            if vals is None:
                return None
            choices.append([((names[0], float(x)),) for x in vals])
    if math.prod(len(c) for c in choices) > MAX_ROWS:
        return None
    out: dict[float, list[tuple[tuple[str, float], ...]]] = {float(num(v)): [] for v in rep.values}
    for combo in itertools.product(*choices):
        placed = tuple(itertools.chain(*combo))
        v = const + sum(terms[n] * x for n, x in placed)
        for target in out:
            if abs(v - target) <= 1e-9 * max(1.0, abs(target)):
                out[target].append(placed)
    return out if all(out.values()) else None


def number_values(
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
    n_max = 1 if head.one_key else plan.max_len + 1  # one key: its weight is exactly 1
    if len(vals) * n_max > MAX_KEY_COUNTS or n_max * most / unit > MAX_SUM_UNITS:
        return None
    n = np.arange(1, n_max + 1, dtype=np.float64)
    # the weight 1/n, rounded straight to the dtype or first to float32 (a softmax's own
    # arithmetic); the same for S / n where a fused kernel divides at the end
    weights = (rounded(1.0 / n, dtype), rounded(f32(1.0 / n), dtype))
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
        for exact in (sums / n[ok], f32(sums / n[ok])):
            got.update(rounded(exact, dtype).tolist())
        for w in weights:
            got.update(rounded(w[ok] * sums, dtype).tolist())
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


def zero_one(plan: Plan, name: str, known: set[str]) -> bool:
    """Does direction ``name`` hold only 0 or 1, exactly, in every run?"""
    if name == BOS:
        return True
    vals = direction_values(plan, name, known)
    return vals is not None and set(vals) <= {0.0, 1.0}


def f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def rounded(x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` rounded to ``dtype`` (to nearest, as the kernels store their results)."""
    t = torch_dtype(dtype)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).to(t).double().numpy()
