"""Steps a narrow dtype holds exactly (compiler/emit/exact_steps.py), and heads that
attend one key (compiler/exact_values.attends_one_key): together they certify long
addition in bfloat16 at length 16, where the count's one-hot was off by 2^-7."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from check import compile_source, mismatches

from rasp_compiler.compiler.emit.exact_steps import held, neighbours, placed_step
from rasp_compiler.compiler.emit.mlp import table_units
from rasp_compiler.compiler.pipeline import compile_sop
from rasp_compiler.compiler.plan.types import CatTarget, MLPJob, NumRep
from rasp_compiler.compiler.residual import Lin


def test_held_counts_significant_bits():
    assert held(1.5, 8) and held(255.0, 8) and held(0.0, 8)
    assert not held(257.0, 8) and held(257.0, 11)
    assert not held(1.0 + 2.0**-8, 8) and held(1.0 + 2.0**-7, 8)
    assert neighbours(0.75, 8) == (0.75,)
    lo, hi = neighbours(1.0 / 3.0, 8)
    assert lo < 1.0 / 3.0 < hi and held(lo, 8) and held(hi, 8)
    assert hi - lo == 2.0**-9


def _count_job(n: int) -> MLPJob:
    """The one-hot of a count w read from a counting head's 1/(w+1), w up to n."""
    values = tuple(1.0 / (w + 1) for w in range(n + 1))
    target = CatTarget(tuple(range(n + 1)), tuple(f"w={w}" for w in range(n + 1)))
    return MLPJob(
        id=0, layer=0, label="count", span=None,
        inputs=(NumRep(Lin.unit("x"), values, 0),),
        fn=lambda a: round(1.0 / a[0]) - 1, cat_targets=(target,),
    )  # fmt: skip


def _run_bf16(table, x: float) -> dict[str, float]:
    """The table's rows at ``x`` as bfloat16 computes them: each pre-activation (an
    exact float64 sum of two terms here) rounded once, the rows summed in float32."""

    def bf16(v: float) -> float:
        return float(torch.tensor(v, dtype=torch.float64).to(torch.bfloat16).double())

    rows: dict[str, float] = {}
    for u in table.units:
        pre = sum(bf16(c) * (x if n == "x" else 1.0) for n, c in u.pre.terms)
        h = max(0.0, bf16(pre))
        for d, w in u.out:
            rows[d] = rows.get(d, 0.0) + bf16(w) * h
    return {d: bf16(v) for d, v in rows.items()}


@pytest.mark.parametrize("n", [4, 16])
def test_a_counts_one_hot_is_exact_in_bfloat16_at_every_neighbour(n):
    job = _count_job(n)
    narrow = table_units(job, narrow=8)
    for w in range(n + 1):
        for x in neighbours(1.0 / (w + 1), 8):
            rows = _run_bf16(narrow, x)
            want = {f"w={k}": float(k == w) for k in range(n + 1)}
            assert {d: rows.get(d, 0.0) for d in want} == want, (w, x)
    if n < 16:
        return
    # at 16 the midpoint steps it replaces are off somewhere (the reason for placing them)
    plain = table_units(job)
    off = [
        (w, x)
        for w in range(n + 1)
        for x in neighbours(1.0 / (w + 1), 8)
        if _run_bf16(plain, x).get(f"w={w}", 0.0) != 1.0
    ]
    assert off


def test_a_placed_steps_pre_activations_are_held():
    us = [1.0 / (w + 1) for w in range(17)][::-1]
    for ua, ub in zip(us, us[1:]):
        placed = placed_step(us, ua, ub, False, [1.0], 8)
        assert placed is not None, (ua, ub)
        t, s, up = placed
        assert held(s, 8) and float(np.log2(s)).is_integer()
        for u in us:
            for x in neighbours(u, 8):
                ramp = s * (x - t) if up else s * (t - x)
                active = (u >= ub) if up else (u <= ua)
                if active:
                    assert ramp >= 0.5 and held(ramp + 0.5, 8) and held(ramp - 0.5, 8)
                else:
                    assert ramp + 0.5 <= 0.0


def test_no_placement_where_the_values_are_too_close():
    # two values bfloat16 cannot tell apart: no slope separates their neighbours
    assert placed_step([1.0, 1.0 + 2.0**-10], 1.0, 1.0 + 2.0**-10, True, [1.0], 8) is None


def test_the_length_head_and_a_functional_copy_attend_one_key():
    for src, label in [
        ("m = length - 1;", "Length"),
        ('c = aggregate(select(indices, indices + 1, ==), tokens, "a");', "aggregate"),
    ]:
        _, model = compile_source(src, "ab", 16)
        heads = [h for h in model.compiled_from[1].heads if h.label.startswith(label)]
        assert heads and all(h.one_key for h in heads), src
    src = 'frac = aggregate(select(tokens, tokens, ==), indicator(tokens == "a"));'
    _, model = compile_source(src, "ab", 16)
    plan = model.compiled_from[1]
    assert plan.heads and not any(h.one_key for h in plan.heads)


def _sums(rng: random.Random, n: int, count: int) -> list[str]:
    """Well-formed long additions of length ``n`` (odd), many with long carry chains."""
    w = (n - 1) // 2
    out = []
    for _ in range(count):
        a = [rng.choice("0123456789") for _ in range(w - 1)]
        if rng.random() < 0.5:  # digits summing to 9, so a carry runs far
            b = [str(9 - int(d)) if rng.random() < 0.85 else rng.choice("0123456789") for d in a]
        else:
            b = [rng.choice("0123456789") for _ in range(w - 1)]
        out.append("0" + "".join(a) + "+0" + "".join(b))
    return out


def test_long_addition_is_certified_and_exact_in_bfloat16_at_16():
    src = open("examples/long_addition.rasp", encoding="utf-8").read()
    sop, _ = compile_source(src, "0123456789+", 1)
    model = compile_sop(sop, tuple("0123456789+"), 16, dtype="bfloat16")
    rng = random.Random(7)
    inputs = [s for n in range(3, 17, 2) for s in _sums(rng, n, 60)]
    inputs += ["0999999+0000001", "0000000+0000000", "0999999+0999999"]
    checked, bad = mismatches(sop, model, inputs)
    assert checked == len(inputs) and not bad, bad[:1]
