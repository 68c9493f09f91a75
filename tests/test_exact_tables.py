"""Tables run bit for bit in a narrow dtype (compiler/exact_tables.py): the simulation is
what torch computes, rows it shows exact are read as embeddings, and the models it
certifies are exact."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
import torch
from check import compile_source, mismatches

from rasp_compiler.compiler.certify import certify
from rasp_compiler.compiler.emit.attention import sharpness, zero_leak
from rasp_compiler.compiler.exact_tables import _sums_exact, simulate
from rasp_compiler.compiler.exact_values import MAX_ROWS
from rasp_compiler.compiler.pipeline import compile_sop
from rasp_compiler.compiler.rounding import _points, grouped_layout, table_arrays
from rasp_compiler.dtypes import UNIT_ROUNDOFF, torch_dtype

SEEN = """
prefix = select(indices, indices, <=);
seen = aggregate(prefix, indicator(tokens == "a")) > 0;
s = "yes" if seen else "no";
"""


def _example(name: str) -> str:
    return open(f"examples/{name}.rasp", encoding="utf-8").read()


def _plan(src: str, vocab: str, n: int, dtype: str):
    sop, _ = compile_source(src, vocab, 1)
    model = compile_sop(sop, tuple(vocab), n, dtype=dtype)
    return sop, model, model.compiled_from[1]


@pytest.mark.parametrize(
    "src,vocab,n,dtype",
    [
        (SEEN, "ab", 16, "bfloat16"),
        (SEEN, "ab", 16, "float16"),
        ("histogram_bos", "<abcd", 16, "bfloat16"),
        ("dyck1", "()", 8, "bfloat16"),
    ],
    ids=["seen-bf16", "seen-f16", "histogram_bos", "dyck1"],
)
def test_a_table_run_bit_for_bit_is_what_torch_computes(src, vocab, n, dtype):
    # the simulation's float32 sums rounded once must be torch's own matmuls, to the bit,
    # at every value its inputs may hold
    if "=" not in src:
        src = _example(src)
    _, _, plan = _plan(src, vocab, n, dtype)
    t = torch_dtype(dtype)
    checked = 0
    for job, table in zip(plan.mlps, plan.tables):
        run = simulate(plan, job, table, dtype)
        if run is None:
            continue
        layout, points = grouped_layout(job, table), _points(job, MAX_ROWS)
        _, w_in, w_out, ideal, _ = table_arrays(job, table, run.wanted, layout, points)
        X = torch.from_numpy(run.inputs).to(t)
        W_in, W_out = torch.from_numpy(w_in).to(t), torch.from_numpy(w_out).to(t)
        got = (torch.relu(X @ W_in) @ W_out).double().numpy()
        assert np.array_equal(got - ideal[run.point], run.deviation), job.label
        checked += 1
    assert checked, "no table was run bit for bit"


def test_rows_shown_exact_are_read_as_embeddings():
    # double histogram at 2: the tables turning its two counts into one-hots are exact
    # in bfloat16, so the head counting equal histograms scores them exactly too, and
    # puts exactly no weight on the keys it ignores
    _, _, plan = _plan(_example("double_histogram"), "§abcd", 2, "bfloat16")
    assert plan.proven
    readers = [h for h in plan.heads if any(set(q.names()) & plan.proven for q, _, _ in h.qk)]
    assert readers and all(h.exact and zero_leak(h) for h in readers)
    for h in readers:  # beta puts the ignored keys at least 128 below: exp underflows
        assert sharpness(h, plan.max_len, UNIT_ROUNDOFF["bfloat16"]) * h.gap >= 128.0


def test_a_plan_reading_rows_not_shown_exact_is_refused():
    _, _, plan = _plan(_example("double_histogram"), "§abcd", 2, "bfloat16")
    assert not certify(plan, "bfloat16")
    bogus = replace(plan, proven=plan.proven | {"no such row"})
    problems = certify(bogus, "bfloat16")
    assert any("do not compute them exactly" in p.message for p in problems)


def test_a_sum_that_may_round_in_float32_is_not_run_bit_for_bit():
    ones = np.ones((2, 1))
    assert _sums_exact(np.array([[1.0, 0.5], [3.0, 0.25]]), ones, "bfloat16")
    # 1 + 2^-30: exact in float64, not in float32
    assert not _sums_exact(np.array([[1.0, 2.0**-30]]), ones, "bfloat16")
    # 2^24 + 1 in any order: its terms are whole numbers, but too many of them
    assert not _sums_exact(np.array([[2.0**24, 1.0]]), ones, "bfloat16")


def test_histogram_with_bos_is_exact_in_bfloat16_at_32():
    # its count table's rows are run bit for bit: off by up to 0.13 once weighted by the
    # count they stand for, so the numerical output still decodes right
    sop, model, _ = _plan(_example("histogram_bos"), "<abcd", 32, "bfloat16")
    inputs = [["<"] + ["a"] * k + ["b"] * (31 - k) for k in range(32)]
    inputs += [["<"] + ["c"] * k for k in range(32)]
    rng = random.Random(5)
    inputs += [["<"] + rng.choices("abcd", k=rng.randint(0, 31)) for _ in range(200)]
    checked, bad = mismatches(sop, model, inputs)
    assert checked == len(inputs) and not bad, bad[:1]


def test_dyck1_is_exact_in_bfloat16_at_32():
    # its prefix means are simulated for every key count: both of its tables are exact
    sop, model, plan = _plan(_example("dyck1"), "()", 32, "bfloat16")
    assert plan.proven
    inputs = [list("(" * k + ")" * k) for k in range(1, 17)]
    inputs += [list("(" * k + ")" * (k + 1)) for k in range(1, 16)]
    inputs += [list(")" + "(" * k) for k in range(31)]
    rng = random.Random(6)
    inputs += [rng.choices("()", k=rng.randint(1, 32)) for _ in range(300)]
    checked, bad = mismatches(sop, model, inputs)
    assert checked == len(inputs) and not bad, bad[:1]


def _clauses(rng: random.Random, n_clauses: int) -> list[str]:
    """Well-formed inference inputs: facts and rules, then a question."""
    out: list[str] = []
    for _ in range(n_clauses):
        left = rng.choice("abcABC")
        out += [left, "<", rng.choice("ABC"), ","]
    return out[:-1] + ["?"] if out else out


def test_rows_heads_copy_exactly_are_read_as_embeddings():
    # inference at 4 in bfloat16: the heads copying a clause's tokens score positions
    # exactly and ignore every other key entirely, so their one-hots are exact, and the
    # tables reading them (and length - 4, a copied position) run bit for bit
    sop, model, plan = _plan(_example("inference"), "abcABC<,?", 4, "bfloat16")
    copies = {n for h in plan.heads for n, _ in h.values}
    assert copies & plan.proven
    rng = random.Random(7)
    inputs = [list("a<A?"), list("a<B?"), list("A<B?")]
    inputs += [_clauses(rng, 1) for _ in range(50)]
    inputs += [rng.choices("abcABC<,?", k=rng.randint(1, 4)) for _ in range(200)]
    checked, bad = mismatches(sop, model, inputs)
    assert checked == len(inputs) and not bad, bad[:1]


def test_a_number_read_from_several_exact_directions_is_run_bit_for_bit():
    # Dyck-2 at 2 in bfloat16: depth is a difference of two counts (numbers tables write
    # exactly, of whole values) plus a one-hot, and the table reading it is run for every
    # choice of theirs giving each value; the heads reading its rows are then exact too
    sop, model, plan = _plan(_example("dyck2"), "(){}", 2, "bfloat16")
    assert plan.proven_numbers and plan.proven
    several = [
        (job, table)
        for job, table in zip(plan.mlps, plan.tables)
        if any(len(r.lin.names()) > 1 for r in job.inputs if hasattr(r, "lin"))
    ]
    assert several and all(simulate(plan, j, t, "bfloat16") is not None for j, t in several)
    inputs = [list(a + b) for a in "(){}" for b in "(){}"] + [[a] for a in "(){}"]
    checked, bad = mismatches(sop, model, inputs)
    assert checked == len(inputs) and not bad, bad[:1]


def test_a_copied_position_and_a_one_hots_code_are_run_bit_for_bit():
    # long addition at 4 in bfloat16: the length is a position one head copies (held as
    # itself for every key count), "indices + half + 1" reads it with the indices, and
    # "total > 9" reads a digit's one-hot through its code (one direction on at a time)
    _, _, plan4 = _plan_unchecked("long_addition", "0123456789+", 4)
    assert plan4.proven_numbers
    for label in ("categories of indices + half + 1", "total > 9"):
        (job, table), *_ = [(j, t) for j, t in zip(plan4.mlps, plan4.tables) if j.label == label]
        run = simulate(plan4, job, table, "bfloat16")
        assert run is not None and not run.deviation.any(), label


def _plan_unchecked(name: str, vocab: str, n: int):
    """The bfloat16 plan of an example (made, not certified)."""
    from rasp_compiler.compiler.pipeline import make_plan, planned_program

    sop, _ = compile_source(_example(name), vocab, 1)
    return sop, None, make_plan(planned_program(sop, n), tuple(vocab), n, dtype="bfloat16")


def test_narrow_tables_switch_steps_off_without_large_constants():
    # G (gate - 1) puts a constant of about -G a on a step, beside its half-integer
    # offset: -193.5 at inference's length 32, which bfloat16 rounds to -194, switching a
    # unit off.  In a narrow plan the step is switched off by -G times the rows outside
    # its gate instead (one row of a one-hot is 1): the same values, small constants
    from rasp_compiler.compiler.emit.mlp import table_units
    from rasp_compiler.compiler.plan.types import CatRep, MLPJob, NumRep
    from rasp_compiler.compiler.residual import Lin

    colour = CatRep(("r", "g", "b"), tuple(Lin.unit(f"c={c}") for c in "rgb"), 0)
    size = NumRep(Lin.unit("n"), tuple(range(200, 232)), 0)
    job = MLPJob(
        id=0, layer=0, label="t", span=None, inputs=(colour, size),
        fn=lambda a: (a[0] == "r" and a[1] > 215), cat_targets=(), num_targets=("y",),
        tolerances=(),
    )  # fmt: skip
    plain, narrow = table_units(job), table_units(job, narrow=8)
    biggest = max(abs(c) for u in narrow.units for n, c in u.pre.terms if n == "one")
    assert biggest < max(abs(c) for u in plain.units for n, c in u.pre.terms if n == "one")
    for colour_name in "rgb":
        for v in range(200, 232):
            x = {f"c={k}": float(k == colour_name) for k in "rgb"} | {"n": float(v), "one": 1.0}
            for table in (plain, narrow):
                got = sum(
                    max(0.0, sum(w * x.get(n, 0.0) for n, w in u.pre.terms))
                    * dict(u.out).get("y", 0.0)
                    for u in table.units
                )
                assert got == float(colour_name == "r" and v > 215), (colour_name, v)


def test_a_gated_table_run_bit_for_bit_is_held_as_its_bound_would_be():
    # a gated table small enough for the quick check is checked only for units that
    # switch, run bit for bit as bounded point by point: float16 sort by frequency stays
    # certified at 8 (a run held to its counting readers refused it at 4)
    src = _example("sort_by_frequency")
    sop, model, _ = _plan(src, "§abcd", 8, "float16")
    rng = random.Random(8)
    inputs = [["§"] + rng.choices("abcd", k=rng.randint(0, 7)) for _ in range(300)]
    checked, bad = mismatches(sop, model, inputs)
    assert checked == len(inputs) and not bad, bad[:1]
