"""MLP emission: an elementwise table as one hidden layer of ReLUs.

Given inputs (categorical one-hots and numbers) and a function over the product of
their value sets, :func:`table_units` builds hidden units whose output is the
function's encoding, exactly, for every input combination, with room for noise.

Why it is exact
---------------
* Categorical inputs are combined by a *gate* per combination ``c`` of their values:
  ``g_c = sum_k onehot_k[c_k] - (a - 1)`` is 1 when every input has its value in
  ``c`` and at most 0 otherwise.  ``ReLU(2 g_c - 1)`` is then exactly 1 or 0 even if
  each one-hot entry is off by up to 1/(4a).
* Numerical inputs are folded into one number ``u`` by a mixed-radix projection
  (injective on the product of their value sets, see :func:`projection`).  Along the
  sorted values of ``u`` the function is piecewise constant; each change between
  neighbouring values ``u_a < u_b`` is a *step* made of two ReLUs,
  ``ReLU(s(u-t)+1/2) - ReLU(s(u-t)-1/2)`` with ``t`` the midpoint and ``s = 2/(u_b-u_a)``:
  0 at and below ``u_a``, 1 at and above ``u_b``, flat outside the middle half of the
  gap, so ``u`` may be off by up to a quarter of the gap.  A step may face down
  (active below ``t``) when that keeps its pre-activations small, which keeps float
  rounding small.
* A step of a combination ``c`` is switched off for other combinations by adding
  ``G (g_c - 1)`` with ``G`` larger than the step's largest pre-activation.
"""

from __future__ import annotations

import itertools

from ...language.ir import Atom
from ..numbers import num, projection
from ..plan.types import CatRep, MLPJob, NumRep, PlanError, Table, Unit
from ..residual import ONE, Lin, lin_sum
from ..value_sets import lookup_value

#: Most hidden units one elementwise table may use.
MAX_UNITS = 1 << 16


def encoder(job: MLPJob):
    """y -> its encoding over the job's target directions (one-hots and numbers)."""
    tables = [(lookup_value(t.values), t.dirs) for t in job.cat_targets]

    def enc(y: Atom) -> dict[str, float]:
        out: dict[str, float] = {}
        for find, dirs in tables:
            i = find(y)
            if i is not None:
                out[dirs[i]] = 1.0
        for d in job.num_targets:
            out[d] = num(y)
        return out

    return enc


def _diff(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    out = {k: b.get(k, 0.0) - a.get(k, 0.0) for k in set(a) | set(b)}
    return {k: v for k, v in out.items() if v != 0.0}


def _add(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0.0) + v
    return {k: v for k, v in out.items() if v != 0.0}


def _out(d: dict[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted(d.items()))


def table_units(job: MLPJob) -> Table | PlanError:
    """The hidden units computing ``job`` (see the module docstring for why it is exact),
    or why there would be too many.

    The table also says how precise the job's categorical inputs must be: a gate
    multiplied by ``G`` turns row noise into pre-activation noise ``G`` times larger."""
    cats = [(i, r) for i, r in enumerate(job.inputs) if isinstance(r, CatRep)]
    nums = [(i, r) for i, r in enumerate(job.inputs) if isinstance(r, NumRep)]
    lams, num_vals = projection([r.values for _, r in nums])
    u_lin = lin_sum(r.lin.scale(lam) for (_, r), lam in zip(nums, lams))
    encode = encoder(job)
    atoms = [{float(x): x for x in r.values} for _, r in nums]

    def points_of(combo: tuple[int, ...]) -> tuple[tuple[float, dict[str, float]], ...]:
        points: list[tuple[float, dict[str, float]]] = []
        for ncombo in itertools.product(*num_vals):
            args: list[Atom] = [None] * len(job.inputs)  # type: ignore[list-item]
            for (i, r), c in zip(cats, combo):
                args[i] = r.values[c]
            for (i, _), v, table in zip(nums, ncombo, atoms):
                args[i] = table.get(v, v)
            y = job.fn(tuple(args))  # type: ignore[operator]
            if y is None:
                continue
            u = sum(lam * v for lam, v in zip(lams, ncombo))
            points.append((u, encode(y)))
        points.sort(key=lambda p: p[0])
        return tuple(points)

    groups = _gate_groups(
        [len(r.values) for _, r in cats],
        {
            combo: points_of(combo)
            for combo in itertools.product(*(range(len(r.values)) for _, r in cats))
        },
    )
    units: list[Unit] = []
    magnitude = 1.0
    max_gate = 1.0
    widest = 1
    a = 0
    for sets, points in groups:
        # the gate reads only the inputs it constrains: sum over each one of the rows in its
        # set is 1 inside the set and 0 outside, so ``gate`` is 1 inside the group, <= 0 out
        parts = [
            lin_sum(r.rows[c] for c in sorted(vs))
            for (_, r), vs in zip(cats, sets)
            if len(vs) < len(r.values)
        ]
        a = max(a, len(parts))
        widest = max([widest] + [len(vs) for vs in sets])
        gate = lin_sum(parts) - Lin.const(len(parts) - 1) if parts else Lin.unit(ONE)
        gated = bool(parts)
        if not points:
            continue
        base = dict(points[0][1])
        u_min, u_max = points[0][0], points[-1][0]
        steps: list[Unit] = []
        for (ua, ea), (ub, eb) in zip(points, points[1:]):
            delta = _diff(ea, eb)
            if not delta:
                continue
            t = (ua + ub) / 2.0
            s = 2.0 / (ub - ua)
            up_extent, down_extent = s * (u_max - t), s * (t - u_min)
            if up_extent <= down_extent:
                ramp = (u_lin - Lin.const(t)).scale(s)
                g = up_extent + 1.0
                sign = 1.0
            else:
                ramp = (Lin.const(t) - u_lin).scale(s)
                g = down_extent + 1.0
                sign = -1.0
                base = _add(base, delta)
            u_active = max(abs(u_max), abs(t)) if sign > 0 else max(abs(u_min), abs(t))
            magnitude = max(magnitude, s * (abs(t) + u_active) + (g if gated else 0.0))
            max_gate = max(max_gate, g)
            gating = (gate - Lin.const(1.0)).scale(g) if gated else Lin()
            steps.append(
                Unit(ramp + Lin.const(0.5) + gating, _out({k: sign * v for k, v in delta.items()}))
            )
            steps.append(
                Unit(ramp - Lin.const(0.5) + gating, _out({k: -sign * v for k, v in delta.items()}))
            )
        pre = gate.scale(2.0) - Lin.const(1.0) if gated else Lin.unit(ONE)
        if base:
            units.append(Unit(pre, _out(base)))
        units.extend(steps)
        if len(units) > MAX_UNITS:
            return PlanError(
                f"this elementwise table needs more than {MAX_UNITS} hidden units "
                f"({len(job.inputs)} inputs); simplify the expression or lower --max-len",
                job.span,
            )
    return Table(tuple(units), magnitude, 0.05 / (max_gate * max(a, 1) * widest))


def _gate_groups(
    sizes: list[int], tables: dict[tuple[int, ...], tuple]
) -> list[tuple[tuple[frozenset[int], ...], tuple]]:
    """Merge combinations of categorical values whose tables are identical into boxes
    (one value set per input), so one gate serves them all.

    Merging runs along one input at a time: boxes that agree on every other input's set
    and have the same table become one box whose set on this input is the union."""
    boxes: list[tuple[tuple[frozenset[int], ...], tuple]] = [
        (tuple(frozenset((c,)) for c in combo), tables[combo]) for combo in tables
    ]
    for k in range(len(sizes)):
        merged: dict[tuple, list] = {}
        for sets, pts in boxes:
            key = (sets[:k] + sets[k + 1 :], _signature(pts))
            if key in merged:
                merged[key][0] = merged[key][0] | sets[k]
            else:
                merged[key] = [sets[k], sets, pts]
        boxes = [(sets[:k] + (vk,) + sets[k + 1 :], pts) for vk, sets, pts in merged.values()]
    return boxes


def _signature(points: tuple) -> tuple:
    return tuple((u, tuple(sorted(e.items()))) for u, e in points)
