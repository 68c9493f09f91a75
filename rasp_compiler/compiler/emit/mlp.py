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
* A number the function reads only through "is it at its extreme value" (``w == 0``
  from a counting head's ``1/(w+1)``, which is 1 there) is a gate, not projected
  (:func:`numeric_gates`): ``(x - x') / (x_e - x')`` is 1 at the extreme ``x_e`` and at
  most 0 elsewhere.  The table is then one table for the other values plus, for each
  set of gates, the difference switched on when all of them are at their extremes
  (a Moebius sum over the sets: the tables on for an input add up to its value).  The
  number is an attention output, never exactly its value, so those parts' constant
  term is a step in the gate (two ReLUs, flat within 1/4 of 1 and of 0).
"""

from __future__ import annotations

import itertools
import math

from ...language.ir import Atom
from ..numbers import num, projection
from ..plan.types import MAX_GATES, CatRep, MLPJob, NumRep, PlanError, Table, Unit
from ..residual import ONE, Lin, lin_sum
from ..value_sets import lookup_value
from .exact_steps import step_place

#: Most hidden units one elementwise table may use.
MAX_UNITS = 1 << 16
#: Most input combinations scanned for numbers a table may read as gates.
MAX_GATE_SCAN = 1 << 16


def _too_many_units(job: MLPJob) -> PlanError:
    return PlanError(
        f"this elementwise table needs more than {MAX_UNITS} hidden units "
        f"({len(job.inputs)} inputs); simplify the expression or lower --max-len",
        job.span,
    )


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


def table_units(job: MLPJob, narrow: int = 0) -> Table | PlanError:
    """The hidden units computing ``job`` (see the module docstring for why it is exact),
    or why there would be too many.

    The table also says how precise the job's categorical inputs must be: a gate
    multiplied by ``G`` turns row noise into pre-activation noise ``G`` times larger.

    With ``narrow``, the significant bits of a float16 or bfloat16 plan's dtype, a step
    is switched off by ``-G`` times the rows of the values outside its gate instead of
    ``G (gate - 1)``: the same at every position (one row of a one-hot is 1), without the
    large constant ``-G a`` that such a dtype cannot hold next to the step's own
    half-integer offsets; and a step whose pre-activations the dtype would round is
    placed where it holds them (:mod:`.exact_steps`)."""
    if job.forms is not None:
        return or_units(job)
    cats = [(i, r) for i, r in enumerate(job.inputs) if isinstance(r, CatRep)]
    nums = [(i, r) for i, r in enumerate(job.inputs) if isinstance(r, NumRep)]
    all_vals = [tuple(sorted({float(v) for v in r.values})) for _, r in nums]
    atoms = [{float(x): x for x in r.values} for _, r in nums]
    encode = encoder(job)
    gates = numeric_gates(job, cats, nums, all_vals, atoms, encode)
    gated_at = dict(gates)
    plain = [j for j in range(len(nums)) if j not in gated_at]
    lams, num_vals = projection([nums[j][1].values for j in plain])
    u_lin = lin_sum(nums[j][1].lin.scale(lam) for j, lam in zip(plain, lams))
    # a narrow dtype's steps are placed where it holds their pre-activations
    # (:mod:`.exact_steps`): the number's coefficients and constant part
    weights = [c for d, c in u_lin.terms if d != ONE]
    const = u_lin.as_dict().get(ONE, 0.0)
    u_lo = sum(lam * v[0] for lam, v in zip(lams, num_vals))
    u_hi = sum(lam * v[-1] for lam, v in zip(lams, num_vals))
    # each gated number's row: 1 at its extreme value, at most 0 at every other value
    gate_rows: list[Lin] = []
    num_tolerances: list[tuple[int, float]] = []
    for j, e in gates:
        vals = all_vals[j]
        near = vals[e - 1] if e == len(vals) - 1 else vals[1]
        gate_rows.append((nums[j][1].lin - Lin.const(near)).scale(1.0 / (vals[e] - near)))
        num_tolerances.append((nums[j][0], abs(vals[e] - near)))

    def value(ccombo: tuple[int, ...], ext: frozenset[int], ncombo: tuple[float, ...]):
        """The encoding at these inputs, the gated numbers at their extreme value (those
        in ``ext``) or at any other value where the function is defined."""
        choices = [
            (all_vals[j][gated_at[j]],)
            if j in ext
            else tuple(v for k, v in enumerate(all_vals[j]) if k != gated_at[j])
            for j, _ in gates
        ]
        for gvals in itertools.product(*choices):
            placed = [*zip(plain, ncombo), *((j, v) for (j, _), v in zip(gates, gvals))]
            y = _call(job, cats, ccombo, [(nums[j][0], atoms[j].get(v, v)) for j, v in placed])
            if y is not None:
                return encode(y)
        return None

    subsets = [
        frozenset(j for b, (j, _) in enumerate(gates) if mask >> b & 1)
        for mask in range(1 << len(gates))
    ]

    def points_by_subset(ccombo: tuple[int, ...]) -> dict[frozenset[int], tuple]:
        """Per set S of gated numbers, the table switched on when all of S are at their
        extreme values: the Moebius difference over S's subsets, so that the tables on
        for an input sum to its encoding."""
        out: dict[frozenset[int], list[tuple[float, dict[str, float]]]] = {s: [] for s in subsets}
        for ncombo in itertools.product(*num_vals):
            found = {s: value(ccombo, s, ncombo) for s in subsets}
            known = [v for v in found.values() if v is not None]
            if not known:
                continue
            full = {s: (v if v is not None else known[0]) for s, v in found.items()}
            u = sum(lam * v for lam, v in zip(lams, ncombo))
            for s in subsets:
                diff: dict[str, float] = {}
                for t in subsets:
                    if t <= s:
                        sign = -1.0 if (len(s) - len(t)) % 2 else 1.0
                        diff = _add(diff, {k: sign * x for k, x in full[t].items()})
                out[s].append((u, diff))
        return {s: tuple(sorted(pts, key=lambda p: p[0])) for s, pts in out.items()}

    per_combo = {
        combo: points_by_subset(combo)
        for combo in itertools.product(*(range(len(r.values)) for _, r in cats))
    }
    groups: list[tuple[tuple[frozenset[int], ...], tuple, list[Lin]]] = []
    for subset in subsets:
        rows = [row for (j, _), row in zip(gates, gate_rows) if j in subset]
        for sets, points in _gate_groups(
            [len(r.values) for _, r in cats], {c: t[subset] for c, t in per_combo.items()}
        ):
            groups.append((sets, points, rows))
    units: list[Unit] = []
    magnitude = 1.0
    max_gate = 1.0
    widest = 1
    a = 0
    for sets, points, rows in groups:
        # the gate reads only the inputs it constrains: sum over each one of the rows in its
        # set is 1 inside the set and 0 outside, so ``gate`` is 1 inside the group, <= 0 out
        parts = [
            lin_sum(r.rows[c] for c in sorted(vs))
            for (_, r), vs in zip(cats, sets)
            if len(vs) < len(r.values)
        ] + rows
        if all(not e for _, e in points):
            continue
        a = max(a, len(parts))
        widest = max([widest] + [len(vs) for vs in sets])
        gate = lin_sum(parts) - Lin.const(len(parts) - 1) if parts else Lin.unit(ONE)
        gated = bool(parts)
        # gate - 1 as minus the rows outside the gate, plus the gated numbers' rows - 1
        outside = lin_sum(
            lin_sum(r.rows[c] for c in range(len(r.values)) if c not in vs)
            for (_, r), vs in zip(cats, sets)
            if len(vs) < len(r.values)
        )
        below = lin_sum(row - Lin.const(1.0) for row in rows) - outside
        base = dict(points[0][1])
        # the gate must switch a step off over every u some input gives, not only over
        # this group's points (a combination another group holds may lie outside them)
        u_min, u_max = min(points[0][0], u_lo), max(points[-1][0], u_hi)
        steps: list[Unit] = []
        us = [u for u, _ in points]
        for (ua, ea), (ub, eb) in zip(points, points[1:]):
            delta = _diff(ea, eb)
            if not delta:
                continue
            # midpoint, slope and facing: the one whose pre-activations stay smaller,
            # unless a narrow dtype holds them only elsewhere (gated numbers aside)
            t, s, facing_up = step_place(
                us, ua, ub, (u_min, u_max), weights, 0 if rows else narrow, const
            )
            up_extent, down_extent = s * (u_max - t), s * (t - u_min)
            if facing_up:
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
            gating = (below if narrow else gate - Lin.const(1.0)).scale(g) if gated else Lin()
            steps.append(
                Unit(ramp + Lin.const(0.5) + gating, _out({k: sign * v for k, v in delta.items()}))
            )
            steps.append(
                Unit(ramp - Lin.const(0.5) + gating, _out({k: -sign * v for k, v in delta.items()}))
            )
        pre = gate.scale(2.0) - Lin.const(1.0) if gated else Lin.unit(ONE)
        if base and rows:
            # a gate reading a number (an attention output, never exactly its value):
            # the base is a step in the gate, flat within 1/4 of 1 and of 0, so that
            # the number's error does not pass into the rows this table writes
            units.append(Unit(gate.scale(2.0) - Lin.const(0.5), _out(base)))
            units.append(
                Unit(gate.scale(2.0) - Lin.const(1.5), _out({k: -v for k, v in base.items()}))
            )
        elif base:
            units.append(Unit(pre, _out(base)))
        units.extend(steps)
        if len(units) > MAX_UNITS:
            return _too_many_units(job)
    cat_tolerance = 0.05 / (max_gate * max(a, 1) * widest)
    return Table(
        tuple(units),
        magnitude,
        cat_tolerance,
        tuple((i, cat_tolerance * gap) for i, gap in num_tolerances),
        tuple((nums[j][0], e == len(all_vals[j]) - 1) for j, e in gates),
    )


def numeric_gates(
    job: MLPJob,
    cats: list[tuple[int, CatRep]],
    nums: list[tuple[int, NumRep]],
    vals: list[tuple[float, ...]],
    atoms: list[dict[float, Atom]],
    encode,
) -> list[tuple[int, int]]:
    """The numbers the table reads only through "is it at its extreme value" (``count ==
    0`` read from a counting head's ``1/(w+1)``, which is 1 there), as (index among the
    numbers, index of that value): such a number gates its part of the table like a
    one-hot row (``(x - x') / (x_e - x')`` is 1 at the extreme ``x_e`` and at most 0
    elsewhere, ``x'`` its neighbour) instead of widening the projection, whose steep
    steps round badly in float32.  Only where the table reads two numbers or more."""
    if job.gates:  # the plan knows them (a fused ``mean > 0``): no scan
        index = {i: j for j, (i, _) in enumerate(nums)}
        return [(index[i], len(vals[index[i]]) - 1 if top else 0) for i, top in job.gates]
    total = math.prod(len(r.values) for _, r in cats) * math.prod(len(v) for v in vals)
    if len(nums) < 2 or total > MAX_GATE_SCAN:
        return []
    grid: dict[tuple[tuple[int, ...], tuple[int, ...]], tuple] = {}
    for ccombo in itertools.product(*(range(len(r.values)) for _, r in cats)):
        for ncombo in itertools.product(*(range(len(v)) for v in vals)):
            placed = [
                (i, t.get(vs[k], vs[k])) for (i, _), k, t, vs in zip(nums, ncombo, atoms, vals)
            ]
            y = _call(job, cats, ccombo, placed)
            if y is not None:
                grid[(ccombo, ncombo)] = _out(encode(y))
    gates: list[tuple[int, int]] = []
    for j, vs in enumerate(vals):
        if len(vs) < 2 or len(gates) == MAX_GATES:
            continue
        for e in (len(vs) - 1, 0):
            seen: dict[tuple, tuple] = {}
            if all(
                seen.setdefault((cc, nc[:j] + nc[j + 1 :]), sig) == sig
                for (cc, nc), sig in grid.items()
                if nc[j] != e
            ):
                gates.append((j, e))
                break
    return gates


def _call(
    job: MLPJob,
    cats: list[tuple[int, CatRep]],
    ccombo: tuple[int, ...],
    placed: list[tuple[int, Atom]],
) -> Atom | None:
    """The job's function with its categorical inputs at ``ccombo`` (value indices) and
    its numbers at ``placed`` ((input index, atom) pairs)."""
    args: list[Atom] = [None] * len(job.inputs)  # type: ignore[list-item]
    for (i, r), c in zip(cats, ccombo):
        args[i] = r.values[c]
    for i, v in placed:
        args[i] = v
    return job.fn(tuple(args))  # type: ignore[operator]


def _gate_groups(
    sizes: list[int], tables: dict[tuple[int, ...], tuple], signature=None
) -> list[tuple[tuple[frozenset[int], ...], tuple]]:
    """Merge combinations of categorical values whose tables are identical into boxes
    (one value set per input), so one gate serves them all.

    Merging runs along one input at a time: boxes that agree on every other input's set
    and have the same table become one box whose set on this input is the union
    (``signature`` keys a table; by default a table is a tuple of (u, encoding))."""
    signature = signature or _signature
    boxes: list[tuple[tuple[frozenset[int], ...], tuple]] = [
        (tuple(frozenset((c,)) for c in combo), tables[combo]) for combo in tables
    ]
    for k in range(len(sizes)):
        merged: dict[tuple, list] = {}
        for sets, pts in boxes:
            key = (sets[:k] + sets[k + 1 :], signature(pts))
            if key in merged:
                merged[key][0] = merged[key][0] | sets[k]
            else:
                merged[key] = [sets[k], sets, pts]
        boxes = [(sets[:k] + (vk,) + sets[k + 1 :], pts) for vk, sets, pts in merged.values()]
    return boxes


def _signature(points: tuple) -> tuple:
    return tuple((u, tuple(sorted(e.items()))) for u, e in points)


def or_units(job: MLPJob) -> Table | PlanError:
    """The units of a table with an ``or`` form over its gates (``plan.disjunction``):
    per box of categorical combinations with the same form ``(S, on, off)``, a gate unit
    writes ``off`` and a step in ``u = sum over S of d_i`` adds ``on - off``, where
    ``d_i = (x_i - e_i) / (x'_i - e_i)`` is 0 at the gated number's extreme ``e_i`` and at
    least 1 at every other value (``x'_i`` the nearest).  The step,
    ``ReLU(2u - 1/2) - ReLU(2u - 3/2)``, is flat for ``u`` within 1/4 of 0 and above 3/4,
    so it is exactly 0 or 1; ``G (gate - 1)``, with ``G`` above the step's largest
    pre-activation, switches it off outside its box."""
    assert job.forms is not None
    cats = [(i, r) for i, r in enumerate(job.inputs) if isinstance(r, CatRep)]
    encode = encoder(job)
    dist: dict[int, Lin] = {}
    reach: dict[int, float] = {}
    gaps: dict[int, float] = {}
    for i, top in job.gates:
        rep = job.inputs[i]
        assert isinstance(rep, NumRep)
        vals = sorted({num(v) for v in rep.values})
        e, near = (vals[-1], vals[-2]) if top else (vals[0], vals[1])
        dist[i] = (rep.lin - Lin.const(e)).scale(1.0 / (near - e))
        reach[i] = max((v - e) / (near - e) for v in vals)
        gaps[i] = abs(near - e)
    tables: dict[tuple[int, ...], tuple] = {}
    for combo in itertools.product(*(range(len(r.values)) for _, r in cats)):
        form = job.forms(tuple(r.values[c] for (_, r), c in zip(cats, combo)))
        if form is None:
            continue
        on_set, on, off = form
        low = encode(off)
        tables[combo] = (on_set, _out(low), _out(_diff(low, encode(on))) if on_set else ())
    units: list[Unit] = []
    magnitude, max_gate, widest, a, most = 1.0, 1.0, 1, 0, 1
    for sets, (on_set, low, delta) in _gate_groups(
        [len(r.values) for _, r in cats], tables, signature=lambda t: t
    ):
        parts = [
            lin_sum(r.rows[c] for c in sorted(vs))
            for (_, r), vs in zip(cats, sets)
            if len(vs) < len(r.values)
        ]
        if not low and not delta:
            continue
        a = max(a, len(parts))
        widest = max([widest] + [len(vs) for vs in sets])
        gate = lin_sum(parts) - Lin.const(len(parts) - 1) if parts else Lin.unit(ONE)
        if low:
            units.append(Unit(gate.scale(2.0) - Lin.const(1.0) if parts else gate, low))
        if delta:
            most = max(most, len(on_set))
            u = lin_sum(dist[i] for i in sorted(on_set)).scale(2.0)
            u_max = 2.0 * sum(reach[i] for i in on_set)
            g = u_max + 1.0
            off_switch = (gate - Lin.const(1.0)).scale(g) if parts else Lin()
            units.append(Unit(u - Lin.const(0.5) + off_switch, delta))
            units.append(Unit(u - Lin.const(1.5) + off_switch, tuple((k, -v) for k, v in delta)))
            magnitude = max(magnitude, u_max + g)
            max_gate = max(max_gate, g)
        if len(units) > MAX_UNITS:
            return _too_many_units(job)
    # row noise moves a step's pre-activation by up to G a widest times it; the gated
    # numbers' by twice the sum of their distances' errors: 0.05 + 0.1, within 1/4
    cat_tolerance = 0.05 / (max_gate * max(a, 1) * widest)
    return Table(
        tuple(units),
        magnitude,
        cat_tolerance,
        tuple((i, 0.05 * gaps[i] / most) for i, _ in job.gates),
        job.gates,
    )
