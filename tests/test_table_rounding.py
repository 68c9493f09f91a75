"""MLP tables and the numbers they read in float16 and bfloat16: the point-by-point bound
(``compiler.table_rounding``) and the value-by-value number check
(``compiler.number_rounding``)."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from check import compile_source, mismatches, random_inputs

from rasp_compiler.compiler.number_rounding import (
    number_requirements,
    own_errors,
    value_tolerances,
)
from rasp_compiler.compiler.pipeline import compile_sop, largest_certified_length
from rasp_compiler.compiler.plan.types import CatRep, NumRep, PositionalEntry
from rasp_compiler.compiler.residual import Lin
from rasp_compiler.compiler.rounding import _input_layout, table_arrays
from rasp_compiler.compiler.table_rounding import MAX_POINTS, _table_points, table_bound
from rasp_compiler.dtypes import torch_dtype
from rasp_compiler.errors import CompileError

SEEN = """
prefix = select(indices, indices, <=);
seen = aggregate(prefix, indicator(tokens == "a")) > 0;
s = "yes" if seen else "no";
"""

COUNT = """
same = select(tokens, tokens, ==) and select(indices, 0, !=);
share = aggregate(same or select(indices, 0, ==), indicator(indices == 0));
n_same = (1 / share) - 1;
"""


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_narrow_matmuls_on_cpu_sum_in_float32_and_round_once(dtype):
    # what the bound assumes of the kernels: 1 + 64 terms of one unit in the last place
    # of 1 each would vanish one by one if the sum were kept in the dtype
    t = torch_dtype(dtype)
    ulp = 2.0**-9 if dtype == "bfloat16" else 2.0**-12
    x = torch.ones(4, 65, dtype=t)
    w = torch.full((65, 3), ulp, dtype=t)
    w[0] = 1.0
    want = 1.0 + 64 * ulp
    assert (x @ w == want).all()
    assert (torch.addmm(torch.zeros(3, dtype=t), x, w) == want).all()


def _perturbed_runs(plan, job, table, dtype, trials=8, seed=0):
    """The table run in ``dtype`` (torch, rounded weights) on its points with its inputs
    moved at random within what the plan allows them: the largest error per direction."""
    rng = np.random.default_rng(seed)
    wanted = list(job.targets())
    layout = _input_layout(job)
    points = _table_points(job, table, MAX_POINTS)
    x, w_in, w_out, ideal, numeric = table_arrays(job, table, wanted, layout, points)
    names = sorted({n for u in table.units for n in u.pre.names()} | {"one"})
    col = {n: i for i, n in enumerate(names)}
    scale = np.zeros(len(names))
    for rep in job.inputs:
        if isinstance(rep, CatRep):
            for row in rep.rows:
                for n in row.names():
                    if n in col and n != "one":
                        scale[col[n]] = table.cat_tolerance
    for i, rep in enumerate(job.inputs):
        where = layout[i]
        if isinstance(rep, NumRep) and isinstance(where, tuple) and where[0] in col:
            scale[col[where[0]]] = number_requirements(job, table).get(i, 0.0) / abs(where[1])
    t = torch_dtype(dtype)
    W_in, W_out = torch.from_numpy(w_in).to(t), torch.from_numpy(w_out).to(t)
    worst = np.zeros(len(wanted))
    for trial in range(trials):
        moved = x + (0.0 if trial == 0 else rng.uniform(-1, 1, x.shape) * scale)
        X = torch.from_numpy(moved).to(t)
        got = (torch.relu(X @ W_in) @ W_out).double().numpy()
        worst = np.maximum(worst, np.abs(got - ideal).max(axis=0))
    return dict(zip(wanted, worst))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize(
    "src,vocab,n",
    [(SEEN, "ab", 16), (COUNT, "abc", 4), ("path:sort", "abcd", 2)],
    ids=["seen", "count", "sort"],
)
def test_the_point_bound_covers_what_each_table_computes(src, vocab, n, dtype):
    if src.startswith("path:"):
        src = open(f"examples/{src[5:]}.rasp", encoding="utf-8").read()
    sop, _ = compile_source(src, vocab, 1)
    model = compile_sop(sop, tuple(vocab), n, dtype=dtype)  # the plan certified for dtype
    _, plan, _ = model.compiled_from
    checked = 0
    for job, table in zip(plan.mlps, plan.tables):
        bound = table_bound(plan, job, table, dtype)
        if bound is None or not all(np.isfinite(list(bound.values()))):
            continue
        seen = _perturbed_runs(plan, job, table, dtype)
        for d, err in seen.items():
            assert err <= bound[d] + 1e-12, (job.label, d, err, bound[d])
        checked += 1
    assert checked, "no table was bounded"


def test_a_mean_tested_against_zero_needs_only_that_step_kept_in_bfloat16():
    # "has an 'a' been seen" reads a prefix mean, 0 or at least 1/128, and steps only
    # between the two: bfloat16 rounds a mean near 1 by 1/256, far more than the closest
    # pair of means (1/127 - 1/128) allows, but 0.99 never needs telling from 1
    sop, _ = compile_source(SEEN, "ab", 4)
    n, why = largest_certified_length(sop, ("a", "b"), "bfloat16", upto=128)
    assert n == 128, why
    model = compile_sop(sop, ("a", "b"), 128, dtype="bfloat16")
    edge = [["b"] * 127 + ["a"], ["b"] * 128, ["a"] + ["b"] * 127]
    inputs = random_inputs("ab", 128, 60, seed=5) + edge
    checked, bad = mismatches(sop, model, inputs)
    assert checked == len(inputs) and not bad, bad[:1]


def test_each_value_of_a_number_may_be_off_by_its_distance_to_the_nearest_step():
    sop, model = compile_source(SEEN, "ab", 16)
    _, plan, _ = model.compiled_from
    (job,) = [j for j in plan.mlps if any(isinstance(r, NumRep) for r in j.inputs)]
    k = next(i for i, r in enumerate(job.inputs) if isinstance(r, NumRep))
    got = value_tolerances(job, k)
    assert got is not None
    vals, tols = got
    step = vals[1] - vals[0]  # the only step: from 0 to the smallest positive mean
    assert tols[0] == pytest.approx(step / 8)
    assert tols[-1] == pytest.approx(vals[-1] - vals[1] + step / 8)


def test_numbers_read_from_positions_the_dtype_holds_are_exact():
    # bfloat16 holds every integer up to 256, and not 257
    for top, exact in ((256, True), (257, False)):
        entry = PositionalEntry("position", tuple(float(i) for i in range(top + 1)))
        plan = SimpleNamespace(positional=(entry,), heads=(), max_len=top)
        rep = NumRep(Lin.unit("position"), tuple(range(top + 1)), 0)
        vals = np.arange(top + 1, dtype=np.float64)
        got = own_errors(rep, vals, plan, "bfloat16", 0.0)  # type: ignore[arg-type]
        assert (got is not None and not got.any()) if exact else got is None


def test_a_table_reading_a_group_of_tokens_as_one_row_is_bounded_too():
    # "0 if tokens == bos else ..." reads every token but BOS as one row (a sum of their
    # one-hot directions): bounded with one of them standing for the row, the program
    # is certified in bfloat16 (it was refused from the table's size alone); the rows of
    # its counts are run bit for bit and found exact (exact_tables), up to 16 since their
    # steps are placed where bfloat16 holds their pre-activations (emit.exact_steps)
    inputs = [[a] for a in "§abcd"] + [[a, b] for a in "§abcd" for b in "§abcd"]
    rng = random.Random(3)
    inputs += [rng.choices("§abcd", k=rng.randint(3, 16)) for _ in range(300)]
    inputs += [["a"] * k + ["b"] * (16 - k) for k in range(17)]
    _certified_and_exact("double_histogram", "§abcd", 16, inputs)


def test_a_direction_two_targets_of_one_table_share_is_bounded_once():
    # found by the fuzzer (seed 20261228, bfloat16): a table writing one direction for
    # two targets gave its bound one column per target; the readers' check crashed
    src = """
v1 = length % 2;
v4 = aggregate(select(v1, indices, ==), tokens, "a");
v6 = length + length;
v8 = aggregate(select(v6, v1, >=) and select(v1, v1, !=), v6);
"""
    sop, _ = compile_source(src, "abcd", 1)
    with pytest.raises(CompileError, match="bfloat16"):
        compile_sop(sop, tuple("abcd"), 4, dtype="bfloat16")


def test_a_narrow_model_on_cuda_sums_its_matmuls_in_float32():
    # certification assumes float32 sums rounded once; cuBLAS may reduce in the narrow
    # dtype unless told not to, so the model turns that off while it runs and restores it
    from rasp_compiler.kernels import float32_sums

    m = torch.backends.cuda.matmul
    saved = (m.allow_fp16_reduced_precision_reduction, m.allow_bf16_reduced_precision_reduction)
    on_cuda = SimpleNamespace(device=SimpleNamespace(type="cuda"), dtype=torch.bfloat16)
    try:
        m.allow_fp16_reduced_precision_reduction = True
        m.allow_bf16_reduced_precision_reduction = True
        with float32_sums(on_cuda):  # type: ignore[arg-type]
            assert not m.allow_fp16_reduced_precision_reduction
            assert not m.allow_bf16_reduced_precision_reduction
        assert m.allow_bf16_reduced_precision_reduction
        with float32_sums(torch.zeros(1, dtype=torch.bfloat16)):  # CPU: left alone
            assert m.allow_bf16_reduced_precision_reduction
    finally:
        m.allow_fp16_reduced_precision_reduction, m.allow_bf16_reduced_precision_reduction = saved


def test_a_count_never_rounds_above_its_reciprocal():
    # a count's 1/(w+1) is its head's weight on BOS, which the keys it must ignore can
    # only lower: 1 (no key) may round down to the float16 number below 1 (2^-11 away),
    # never up to the one above (2^-10 away), as an error allowed both ways would
    from dataclasses import replace

    from rasp_compiler.compiler.plan.types import Head, HeadKind
    from rasp_compiler.compiler.residual import BOS

    count = Head(
        id=0, layer=0, label="count", span=None, qk=(), values=(("x", Lin.unit(BOS)),),
        gap=1.0, leak=1.6e-4, kind=HeadKind.WIDTH, magnitude=3.0, exact=2.0**-11,
    )  # fmt: skip
    rep = NumRep(Lin.unit("x"), (1.0, 0.5), 1, ((0, 1.0),))
    slack = 3.3e-4
    got = {}
    for head in (count, replace(count, kind=HeadKind.AGGREGATE)):
        plan = SimpleNamespace(positional=(), heads=(head,), max_len=1, tokens=(), proven=())
        errs = own_errors(rep, np.array([0.5, 1.0]), plan, "float16", slack)  # type: ignore[arg-type]
        assert errs is not None
        got[head.kind] = errs[1]
    assert got[HeadKind.WIDTH] == pytest.approx(2.0**-11 - slack)
    assert got[HeadKind.AGGREGATE] == pytest.approx(2.0**-10 - slack, rel=0.01)


def test_a_head_reading_one_hots_and_a_doubled_row_rounds_its_scores_twice():
    # sort with BOS's last head reads index one-hots on the query side and a class row
    # an MLP writes, times 2, on the key side: each query weight and each key product is
    # exact, so a score is off by the rounding of its weights and its own (2 unit
    # round-offs of its size, not 4), within a quarter of its gap in bfloat16 at 2
    inputs = [["<"]] + [["<", t] for t in "abcdefgh"]
    sop, model = _certified_and_exact("sort_bos", "<abcdefgh", 2, inputs)
    _, plan, _ = model.compiled_from
    assert plan.heads[-1].roundings == 2.0
    assert compile_sop(sop, tuple("<abcdefgh"), 2).compiled_from[1].heads[-1].roundings == 4.0


def _certified_and_exact(example: str, vocab: str, n: int, inputs: list[list[str]]):
    """The example certified in bfloat16 up to exactly ``n`` (not twice that), compiled
    there and equal to the interpreter on every one of ``inputs``: (s-op, model)."""
    src = open(f"examples/{example}.rasp", encoding="utf-8").read()
    sop, _ = compile_source(src, vocab, 1)
    got, why = largest_certified_length(sop, tuple(vocab), "bfloat16", upto=2 * n)
    assert got == n, why
    model = compile_sop(sop, tuple(vocab), n, dtype="bfloat16")
    checked, bad = mismatches(sop, model, inputs)
    assert checked == len(inputs) and not bad, bad[:1]
    return sop, model
