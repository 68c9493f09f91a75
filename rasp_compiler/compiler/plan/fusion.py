"""Fusing a chain of elementwise operations along its critical path.

An MLP computing an elementwise operation runs in the layer after its latest input.
When that input is itself computed by an MLP (``mismatch`` in ``mismatch or (depth <
0)``), or is a count whose MLP turns its heads' ``1/(w+1)`` into the width, the
operation can read that input's own inputs instead and run in the *same* MLP layer:
one table over the combined inputs.  :func:`critical_path_inputs` expands only the
inputs that set the layer (the critical path), one step at a time, and keeps the
earliest-running set whose table stays small; inputs that are ready earlier (``depth
< 0``, computed in the first MLP) stay as they are, so the table does not grow with
what is not on the critical path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...language import ir
from ...language.ir import Atom
from ..numbers import num
from .attention import width_xs
from .state import NodeFailed, PlanState, fused_fn
from .types import NumRep, Rep, TableFn

#: Most input combinations a table fused along the critical path may have (the MLP
#: has about two units per combination where its value changes).
MAX_CRITICAL_DOMAIN = 1 << 13
#: Expansion steps tried before settling on the best found.
MAX_STEPS = 12


@dataclass(frozen=True)
class Fused:
    """A table computing a node from ``reps`` (stage = the latest of them)."""

    stage: int
    reps: list[Rep]
    fn: TableFn


def _reps_of(p: PlanState, leaf: ir.SOp, as_heads: bool) -> list[Rep] | None:
    try:
        if as_heads:
            assert isinstance(leaf, ir.SelectorWidth)
            return list(width_xs(p, leaf))
        return [p.best(leaf)]
    except NodeFailed:
        return None


def _expandable(p: PlanState, leaf: ir.SOp, as_heads: bool) -> bool:
    if as_heads:
        return False
    if isinstance(leaf, ir.Map):
        return True
    # a count read from its heads' 1/(w+1) instead of from the MLP that decodes it
    return isinstance(leaf, ir.SelectorWidth)


def critical_path_inputs(p: PlanState, node: ir.Map) -> Fused | None:
    """The earliest-running table computing ``node`` found by expanding its latest
    inputs (see the module docstring), or None when no expansion fits."""
    # (leaf, read as its width heads?) in first-visit order
    leaves: list[tuple[ir.SOp, bool]] = []
    for a in node.args:
        if isinstance(a, ir.SOp) and all(a.id != x.id for x, _ in leaves):
            leaves.append((a, False))
    best: Fused | None = None
    for _ in range(MAX_STEPS):
        reps: list[list[Rep] | None] = [_reps_of(p, leaf, h) for leaf, h in leaves]
        stages = [math.inf if r is None else max(x.stage for x in r) for r in reps]
        if all(r is not None for r in reps):
            flat = [x for r in reps for x in r]  # type: ignore[union-attr]
            fused = _table(p, node, leaves, reps, flat)  # type: ignore[arg-type]
            if fused is not None and (best is None or fused.stage < best.stage):
                best = fused
        top = max(stages, default=0)
        critical = [i for i, s in enumerate(stages) if s == top]
        if not critical or not all(_expandable(p, *leaves[i]) for i in critical):
            break
        expanded: list[tuple[ir.SOp, bool]] = []
        for i, (leaf, heads) in enumerate(leaves):
            if i not in critical:
                new = [(leaf, heads)]
            elif isinstance(leaf, ir.Map):
                new = [(a, False) for a in leaf.args if isinstance(a, ir.SOp)]
            else:
                new = [(leaf, True)]
            for x, h in new:
                if all(x.id != y.id or h != g for y, g in expanded):
                    expanded.append((x, h))
        # a node read both as itself and as its heads: keep the heads
        leaves = [
            (x, h) for x, h in expanded if h or all(x.id != y.id or not g for y, g in expanded)
        ]
    return best


def _table(
    p: PlanState,
    node: ir.Map,
    leaves: list[tuple[ir.SOp, bool]],
    reps: list[list[Rep]],
    flat: list[Rep],
) -> Fused | None:
    if math.prod(len(r.values) for r in flat) > MAX_CRITICAL_DOMAIN:
        return None
    if not p.joint_ok(node, [r.values for r in flat if isinstance(r, NumRep)]):
        return None
    if node.id in {leaf.id for leaf, _ in leaves}:
        return None
    base = fused_fn(node, [leaf for leaf, _ in leaves])
    sizes = [len(r) for r in reps]
    decode = [h for _, h in leaves]
    max_len = p.max_len

    def fn(args: tuple[Atom, ...]) -> Atom | None:
        vals: list[Atom] = []
        at = 0
        for size, d in zip(sizes, decode):
            part = args[at : at + size]
            at += size
            if d:
                total = sum(round(1.0 / num(x)) - 1 for x in part)
                if total > max_len:
                    return None
                vals.append(total)
            else:
                vals.append(part[0])
        return base(tuple(vals))

    stage = max((r.stage for r in flat), default=0)
    return Fused(stage, flat, fn)
