"""Each emitted block alone: attention heads, MLP tables, selector scores, value sets."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from rasp_compiler.compiler.emit.attention import head_weights, sharpness
from rasp_compiler.compiler.emit.mlp import table_units
from rasp_compiler.compiler.numbers import projection
from rasp_compiler.compiler.pipeline import compile_sop
from rasp_compiler.compiler.plan.types import (
    CatRep,
    CatTarget,
    Head,
    HeadKind,
    MLPJob,
    NumRep,
    Table,
)
from rasp_compiler.compiler.residual import BOS, ONE, Block, Layout, Lin
from rasp_compiler.compiler.selectors import (
    build_pairs,
    disjoint_terms,
    joint_pair,
    joint_scores,
    joint_table,
    solve_scores,
    truth_table,
)
from rasp_compiler.compiler.value_sets import infer_value_sets, lookup_value
from rasp_compiler.language import ir


def _eval(lin: Lin, x: dict[str, float]) -> float:
    return sum(c * x.get(k, 0.0) for k, c in lin.terms)


def _relu_units(units, x: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for u in units:
        h = max(0.0, _eval(u.pre, x))
        for k, c in u.out:
            out[k] = out.get(k, 0.0) + h * c
    return out


def test_mlp_table_over_categories_is_exact_for_every_combination():
    a = CatRep(("x", "y", "z"), tuple(Lin.unit(f"a={v}") for v in "xyz"), 0)
    b = CatRep((True, False), (Lin.unit("b=T"), Lin.unit("b=F")), 0)
    fn = lambda args: f"{args[0]}{int(args[1])}"  # noqa: E731
    outs = tuple(sorted({fn(c) for c in itertools.product(a.values, b.values)}))
    job = MLPJob(
        0, 0, "t", None, (a, b), fn, cat_targets=(CatTarget(outs, tuple(f"o={v}" for v in outs)),)
    )
    table = table_units(job)
    assert isinstance(table, Table)
    units = table.units
    for va, vb in itertools.product(a.values, b.values):
        x = {ONE: 1.0, f"a={va}": 1.0, f"b={'T' if vb else 'F'}": 1.0}
        got = _relu_units(units, x)
        want = f"o={fn((va, vb))}"
        assert {k: round(v, 9) for k, v in got.items() if abs(v) > 1e-9} == {want: 1.0}


def test_mlp_steps_over_a_number_tolerate_a_quarter_gap_of_noise():
    # w = 1/x - 1 for x = 1/(w+1), w = 0..20: the selector-width read-out.
    xs = tuple(1.0 / (w + 1) for w in range(21))
    x_rep = NumRep(Lin.unit("x"), xs, 0)
    job = MLPJob(0, 0, "w", None, (x_rep,), lambda args: round(1 / args[0]) - 1, num_targets=("w",))
    table = table_units(job)
    assert isinstance(table, Table)
    units = table.units
    vals = sorted(xs)
    for i, xv in enumerate(vals):
        gap = min([b - a for a, b in zip(vals, vals[1:])][max(0, i - 1) : i + 1])
        for noise in (-0.24 * gap, 0.0, 0.24 * gap):
            got = _relu_units(units, {ONE: 1.0, "x": xv + noise}).get("w", 0.0)
            assert abs(got - (round(1 / xv) - 1)) < 1e-6


def test_a_gated_step_stays_off_where_its_group_has_no_point():
    # i / n where n >= i + 1 (other combinations undefined): index 1's steps start at
    # n = 2, but index 0 at n = 1 lies below them, and its gate must still hold them off
    i_rep = CatRep((0, 1, 2, 3), tuple(Lin.unit(f"i={v}") for v in range(4)), 0)
    n_rep = NumRep(Lin.unit("n"), (1, 2, 3, 4), 0)

    def fn(args):
        i, n = args
        return i / n if i < n else None

    job = MLPJob(0, 0, "d", None, (i_rep, n_rep), fn, num_targets=("d",))
    table = table_units(job)
    assert isinstance(table, Table)
    checked = 0
    for i, n in itertools.product(range(4), range(1, 5)):
        if i < n:
            got = _relu_units(table.units, {ONE: 1.0, f"i={i}": 1.0, "n": float(n)})
            assert abs(got.get("d", 0.0) - i / n) < 1e-9, (i, n)
            checked += 1
    assert checked == 10


def test_a_number_read_only_at_its_extreme_value_is_a_gate():
    # f(a, b) = a if b == 0 else a + 10, with b read as x = 1/(b+1): x only matters at
    # its largest value 1.  The table projects a alone and gates on x; it is exact for
    # every combination, also with x off by its stated tolerance.
    a_rep = NumRep(Lin.unit("a"), tuple(range(8)), 0)
    xs = tuple(1.0 / (b + 1) for b in range(6))
    x_rep = NumRep(Lin.unit("x"), xs, 0)

    def fn(args):
        a, x = args
        return a if round(1 / x) - 1 == 0 else a + 10

    job = MLPJob(0, 0, "f", None, (a_rep, x_rep), fn, num_targets=("f",))
    table = table_units(job)
    assert isinstance(table, Table)
    ((gate, tol),) = table.gate_tolerances
    assert gate == 1 and tol > 0
    for a, x in itertools.product(range(8), xs):
        for noise in (-tol, 0.0, tol):
            got = _relu_units(table.units, {ONE: 1.0, "a": float(a), "x": x + noise})
            assert abs(got.get("f", 0.0) - fn((a, x))) < 1e-9, (a, x, noise)


def test_projection_is_injective_with_the_first_gap():
    a = NumRep(Lin.unit("a"), (0, 1, 2), 0)
    b = NumRep(Lin.unit("b"), (0.0, 0.5), 0)
    lams, vals = projection([a.values, b.values])
    us = sorted(sum(lam * v for lam, v in zip(lams, c)) for c in itertools.product(*vals))
    assert len(set(us)) == len(us)
    assert min(y - x for x, y in zip(us, us[1:])) >= 1.0 - 1e-12


def _layout(*names: str) -> Layout:
    return Layout(tuple(Block(n, (n,)) for n in (ONE, BOS, *names)))


def test_emitted_attention_scale_agrees_with_the_model():
    """Scores the model computes equal beta * sum_t coef_t q_t k_t from the plan."""
    head = Head(
        0,
        0,
        "h",
        None,
        ((Lin.unit("q"), Lin.unit("k"), 1.0), (Lin.unit(ONE), Lin.unit(BOS), 0.5)),
        (("out", Lin.unit(BOS)),),
        gap=0.5,
        leak=1e-3,
        kind=HeadKind.AGGREGATE,
    )
    layout = _layout("q", "k", "out")
    d_head = 4
    attn_scale = math.sqrt(d_head)
    hw = head_weights(head, layout, max_len=8, attn_scale=attn_scale, d_head=d_head)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, layout.d_model)).astype(np.float32)
    q = torch.tensor(x) @ torch.tensor(hw.W_Q, dtype=torch.float32)
    k = torch.tensor(x) @ torch.tensor(hw.W_K, dtype=torch.float32)
    model_scores = (q @ k.T) / attn_scale  # what model.py computes: q.k / attn_scale
    idx = layout.index()
    beta = sharpness(head, 8)
    plan_scores = beta * (
        np.outer(x[:, idx["q"]], x[:, idx["k"]]) + 0.5 * np.outer(x[:, idx[ONE]], x[:, idx[BOS]])
    )
    np.testing.assert_allclose(model_scores.numpy(), plan_scores, rtol=1e-4, atol=1e-3)
    assert hw.beta == beta


def test_compiled_model_config_carries_the_scale_its_weights_were_built_for():
    tokens = ir.Tokens()
    sel = ir.Select(keys=tokens, queries=tokens, cmp="==")
    model = compile_sop(ir.SelectorWidth(selector=sel), tuple("abc"), 5)
    # 1: integer scores stay integers (emit.attention.score_noise); the weights carry beta
    assert model.config.attn_scale == 1.0
    assert model.run("abca") == [2, 1, 1, 2]


def test_sort_selector_scores_and_disjoint_terms():
    tok, idx = ir.Tokens(), ir.Indices()
    sel = ir.SelectorOr(
        left=ir.Select(keys=tok, queries=tok, cmp="<"),
        right=ir.SelectorAnd(
            left=ir.Select(keys=tok, queries=tok, cmp="=="),
            right=ir.Select(keys=idx, queries=idx, cmp="<"),
        ),
    )
    values = {tok.id: ("a", "b", "c"), idx.id: (0, 1, 2, 3)}
    pairs = build_pairs(sel, lambda o: values[o.id])
    table = truth_table(sel, pairs)
    loose = solve_scores(pairs, table, uniform=False)
    assert loose is not None
    for combo, selected in table.items():
        score = sum(loose.weights[p][r] for p, r in enumerate(combo))
        assert (score >= loose.level) if selected else (score <= loose.level - 1)
    assert solve_scores(pairs, table, uniform=True) is None  # lexicographic order: no uniform head
    terms = disjoint_terms(pairs, table)
    covered = [
        c for c in table if any(all(t is None or t == r for t, r in zip(term, c)) for term in terms)
    ]
    assert sorted(covered) == sorted(c for c, v in table.items() if v)
    assert len(terms) == 2


def test_value_sets_keep_types_and_use_index_below_length():
    opp = ir.Map(op="sub", args=(ir.Length(), ir.Indices()))
    sets, problems = infer_value_sets(opp, ("a",), 4)
    assert not problems
    assert sets[opp.id].values == (1, 2, 3, 4)
    mean = ir.Aggregate(
        selector=ir.Select(keys=ir.Indices(), queries=ir.Indices(), cmp="<"), values=ir.Indices()
    )
    sets, _ = infer_value_sets(mean, ("a",), 3)
    assert 0.5 in sets[mean.id].values and 1 in sets[mean.id].values


def test_joint_table_classes_reproduce_the_selector_on_every_combination():
    # (w == 1 and index == 0) or (token == "b" and index == query index): no additive
    # score exists, so the key side becomes classes of (w, index, token)
    w, idx, tok = ir.Map(op="neg", args=(ir.Indices(),)), ir.Indices(), ir.Tokens()
    a = ir.Select(keys=w, queries=ir.Const(1), cmp="==")
    b = ir.Select(keys=idx, queries=ir.Const(0), cmp="==")
    c = ir.Select(keys=tok, queries=ir.Const("b"), cmp="==")
    d = ir.Select(keys=idx, queries=idx, cmp="==")
    sel = ir.SelectorOr(left=ir.SelectorAnd(left=a, right=b), right=ir.SelectorAnd(left=c, right=d))
    values = {w.id: (0, 1, 2), idx.id: (0, 1, 2, 3), tok.id: ("a", "b")}

    def values_of(o):
        return (o.value,) if isinstance(o, ir.Const) else values[o.id]

    jt = joint_table(sel, [w, idx, tok], [idx], values_of)
    # key classes: "always", "only where index == query index" (one per index), "never"
    assert len(set(jt.key_class)) == 1 + 4 + 1
    for (wv, iv, tv), code in zip(
        itertools.product(values[w.id], values[idx.id], values[tok.id]), itertools.count()
    ):
        for qi, q in enumerate(values[idx.id]):
            want = (wv == 1 and iv == 0) or (tv == "b" and iv == q)
            assert jt.selected[jt.key_class[code]][jt.query_class[qi]] == want
    # the key side is a joint s-op whose values are the classes; the pair is uniform
    finders = tuple(lookup_value(c) for c in jt.key_cols)
    data = (finders, tuple(len(c) for c in jt.key_cols), jt.key_class)
    joint = ir.Map(op="joint", args=(w, idx, tok), data=data)
    values[joint.id] = tuple(range(max(jt.key_class) + 1))
    pair = joint_pair(sel, joint, idx, jt, values_of)
    scores = joint_scores(pair)
    assert scores.uniform and scores.level == 1
    assert ir.apply_map(joint, (1, 0, "a")) == jt.key_class[1 * 8 + 0 * 2 + 0]
