"""Runs over one-hot blocks and over a few values of gated numbers
(compiler/exact_domain.py), and what they certify: logical inference in bfloat16 at 64
and 128, which its float32 model cast to bfloat16 is exact far beyond."""

from __future__ import annotations

import random

import pytest
from check import compile_source, mismatches

from rasp_compiler.compiler.exact_domain import gate_values, merged_inputs
from rasp_compiler.compiler.exact_tables import simulate
from rasp_compiler.compiler.pipeline import compile_sop, make_plan
from rasp_compiler.compiler.plan.types import CatRep, MLPJob, NumRep
from rasp_compiler.compiler.residual import Block, Lin

# a table reading one one-hot twice (``t == "a"``, ``t == "b"``) and a count as a gate
EITHER = """
n = selector_width(select(tokens, "c", ==));
first = tokens == "a" and n > 0;
either = first or (tokens == "b" and not (n > 0));
answer = "y" if either else "n";
"""


def test_inputs_reading_one_one_hot_run_over_the_block():
    block = Block("t", ("t=a", "t=b", "t=c"), "one-hot of t", True)
    is_a = CatRep((False, True), (Lin.of({"t=b": 1.0, "t=c": 1.0}), Lin.unit("t=a")), 0)
    is_b = CatRep((False, True), (Lin.of({"t=a": 1.0, "t=c": 1.0}), Lin.unit("t=b")), 0)
    job = MLPJob(
        id=0, layer=0, label="t", span=None, inputs=(is_a, NumRep(Lin.unit("x"), (0, 1), 0), is_b),
        fn=lambda a: (a[0], a[1], a[2]), num_targets=("y",),
    )  # fmt: skip
    plan = type("P", (), {"blocks": (block,)})()
    merged = merged_inputs(plan, job)  # type: ignore[arg-type]
    assert merged is not None
    mjob, moved = merged
    assert moved == {1: 1}
    (tokens, number) = mjob.inputs
    assert isinstance(tokens, CatRep) and tokens.values == ("t=a", "t=b", "t=c")
    got = {(t, x): mjob.fn((t, x)) for t in tokens.values for x in (0, 1)}
    # each token sets both inputs at once: "a" and "b" are never both true
    assert got[("t=a", 1)] == (True, 1, False)
    assert got[("t=b", 0)] == (False, 0, True)
    assert got[("t=c", 0)] == (False, 0, False)


def test_a_row_reading_a_number_is_not_merged():
    block = Block("t", ("t=a", "t=b"), "one-hot of t", True)
    odd = CatRep((False, True), (Lin.of({"t=b": 1.0, "x": 1.0}), Lin.unit("t=a")), 0)
    job = MLPJob(id=0, layer=0, label="t", span=None, inputs=(odd,), fn=lambda a: a[0])
    plan = type("P", (), {"blocks": (block,)})()
    assert merged_inputs(plan, job) is None  # type: ignore[arg-type]


def test_a_gated_number_keeps_its_extreme_and_its_outermost_values():
    rep = NumRep(Lin.unit("x"), tuple(range(6)), 0)
    job = MLPJob(id=0, layer=0, label="g", span=None, inputs=(rep,), fn=lambda a: a[0] > 0)
    held = {0: {float(v): [(("x", 1.0 / (v + 1)),)] for v in range(6)}}
    # extreme at the smallest value (w == 0): keep it, the nearest (1) and farthest (5)
    assert gate_values(job, held, {0: False}) == {0: {0.0, 1.0, 5.0}}
    # too few values to leave any out: nothing cut
    held3 = {0: {float(v): [(("x", 1.0 / (v + 1)),)] for v in range(3)}}
    assert gate_values(job, held3, {0: False}) == {}


def test_a_table_over_one_one_hot_and_a_gated_count_runs_bit_for_bit():
    sop, _ = compile_source(EITHER, "abc", 1)
    model = compile_sop(sop, tuple("abc"), 64, dtype="bfloat16")
    plan = model.compiled_from[1]
    runs = [simulate(plan, j, t, "bfloat16") for j, t in zip(plan.mlps, plan.tables)]
    assert runs and all(r is not None and r.exact(k) for r in runs for k in range(len(r.wanted)))
    rng = random.Random(4)
    inputs = [rng.choices("abc", k=rng.randint(1, 64)) for _ in range(200)]
    inputs += [["c"] * k + ["a"] * (64 - k) for k in range(0, 65, 8)]
    checked, bad = mismatches(sop, model, inputs)
    assert checked == len(inputs) and not bad, bad[:1]


def _clauses(rng: random.Random, n: int) -> list[str]:
    out: list[str] = []
    for _ in range(n):
        out += [rng.choice("abcABC"), "<", rng.choice("ABC"), ","]
    return out + [rng.choice("abc"), "<", rng.choice("ABC"), "?"]


def _inference_inputs(rng: random.Random, n: int, count: int) -> list[list[str]]:
    inputs = [_clauses(rng, rng.randint(0, (n - 4) // 4)) for _ in range(count)]
    for s in inputs[: count // 5]:  # one token changed: clauses that are not well formed
        s[rng.randrange(len(s))] = rng.choice("abcABC<,?")
    inputs += [rng.choices("abcABC<,?", k=rng.randint(1, n)) for _ in range(count // 5)]
    return inputs


def test_the_length_head_is_exact_in_bfloat16_at_128():
    # its scores are positions up to 128 and BOS's level 130, which bfloat16 holds
    sop, _ = compile_source('m = "long" if length > 100 else "short";', "ab", 1)
    plan = make_plan(sop, ("a", "b"), 128, dtype="bfloat16")
    (length,) = [h for h in plan.heads if h.label == "Length"]
    assert length.magnitude == 130 and length.exact and length.one_key
    assert any(n.startswith("length") for n in plan.proven_numbers)


@pytest.mark.slow
def test_inference_is_certified_and_exact_in_bfloat16_at_128_ci_sample():
    src = open("examples/inference.rasp", encoding="utf-8").read()
    sop, _ = compile_source(src, "abcABC<,?", 1)
    model = compile_sop(sop, tuple("abcABC<,?"), 128, dtype="bfloat16")
    inputs = _inference_inputs(random.Random(8), 128, 400)
    checked, bad = mismatches(sop, model, inputs)
    assert checked == len(inputs) and not bad, bad[:1]
