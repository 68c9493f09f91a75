"""Constructions whose size grows at most linearly in the value sets involved: each test
shows the construction is exact (against the interpreter) and how large it is."""

from __future__ import annotations

import pytest
from check import all_inputs, compile_source, mismatches, random_inputs

from rasp_compiler.compiler.positions import index_gap, is_functional, is_invariant
from rasp_compiler.compiler.value_sets import infer_value_sets
from rasp_compiler.inspect_model import describe
from rasp_compiler.language import ir
from rasp_compiler.language.lower import load_source


def _named(src: str):
    session = load_source(src)
    return session.names()


# ------------------------------------------------------------ functional selectors


def test_keys_shifted_by_a_per_input_constant_select_at_most_one_key():
    names = _named(
        'plus = aggregate(select(tokens, "+", ==), indices);'
        "target = indices + (length - plus);"
        "sel = select(target, indices, ==);"
        "other = select(tokens, indices, ==);"
    )
    plus = names["plus"]
    assert is_invariant(plus) and is_invariant(ir.Length())
    assert not is_invariant(names["target"])

    sets, problems = infer_value_sets(names["target"], ("1", "2", "+"), 6)
    assert not problems

    def values(n):
        return sets[n.id].values if n.id in sets else None

    # ``plus`` is a mean (two '+' give a fraction), yet indices + c stays distinct
    assert any(v != int(v) for v in sets[plus.id].values)
    assert index_gap(names["target"], values) == 1.0
    assert is_functional(names["sel"], values)
    assert not is_functional(names["other"], values)
    # a huge shift could round neighbours together: not trusted
    huge = _named("t = indices + 10.0^20; s = select(t, indices, ==);")
    hsets, _ = infer_value_sets(huge["t"], ("a",), 4)
    assert index_gap(huge["t"], lambda n: hsets[n.id].values if n.id in hsets else None) is None


def test_a_copy_through_a_shifted_selector_keeps_the_copied_values():
    # digits after the '+' read the digit the same distance before the '+': with the
    # selector known to select one key, the copy's values are the digits (not every mean
    # of them), so the sum's table is over 10 x 10 values
    src = (
        'ds = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]; digit = 0;'
        "for i in range(10) { digit = i if tokens == ds[i] else digit; }"
        'plus = aggregate(select(tokens, "+", ==), indices);'
        "before = aggregate(select(indices + (length - plus), indices, ==), digit, 0);"
        "s = before + (digit if indices > plus else 0);"
    )
    vocab = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "+"]
    sop, model = compile_source(src, "".join(vocab), 7)
    sets, _ = infer_value_sets(sop, tuple(vocab), 7)
    before = next(
        n for n in ir.walk(sop) if isinstance(n, ir.Aggregate) and isinstance(n.values, ir.Map)
    )
    assert set(sets[before.id].values) <= set(range(10))
    inputs = [list(f"{a}+{b}") for a in ("7", "35", "123") for b in ("9", "48", "506")]
    inputs += random_inputs("0123456789+", 7, 300, seed=4)
    checked, bad = mismatches(sop, model, inputs)
    assert checked > 250 and not bad, bad[:3]
    assert model.config.n_params < 700_000


def test_functional_copies_are_exact_everywhere_on_a_small_vocabulary():
    src = (
        'm = aggregate(select(tokens, "+", ==), indices);'
        "y = aggregate(select(indices - m, indices, ==), tokens, 0);"
    )
    sop, model = compile_source(src, "ab+", 5)
    checked, bad = mismatches(sop, model, all_inputs("ab+", 5))
    assert checked > 150 and not bad, bad[:3]


# ------------------------------------------------------------ classes for selectors


def test_an_mlp_writes_only_the_classes_a_selector_tells_apart():
    # w ranges over -L..L, but only 0..L-1 can equal an index: the MLP turning the
    # number w into what the head reads writes L classes (two steps each), not 2L+1
    # one-hot entries; before, layer 1 had 383 units at 64 (now 2L + 3)
    src = (
        'w = 2 * selector_width(select(tokens, "a", ==)) - length;'
        'y = aggregate(select(w, indices, ==), tokens, "-");'
    )
    sop, model = compile_source(src, "ab", 64)
    assert model.config.n_layers == 3
    assert model.config.layer_shapes[1].d_mlp <= 2 * 64 + 3
    checked, bad = mismatches(sop, model, random_inputs("ab", 64, 200, seed=2))
    assert checked > 100 and not bad, bad[:3]
    sop, model = compile_source(src, "ab", 6)
    checked, bad = mismatches(sop, model, all_inputs("ab", 6))
    assert checked > 50 and not bad, bad[:3]


def test_query_classes_merge_values_that_select_alike():
    # the query's classes: values of q (an MLP's output) that no key can equal share no
    # direction at all; the comparison < merges the values between neighbouring keys
    src = (
        "q = selector_width(select(tokens, tokens, ==)) * 5;"
        "y = selector_width(select(indices, q, <));"
    )
    sop, model = compile_source(src, "abc", 5)
    checked, bad = mismatches(sop, model, all_inputs("abc", 5))
    assert checked == 363 and not bad, bad[:3]


# ------------------------------------------------------------ counts from means


def test_a_width_times_a_prefix_mean_takes_only_the_counts():
    # (indices + 1) * mean over the prefix is a count: its values are 0..L (each as the
    # interpreter computes it), not every product of an index and a fraction
    names = _named(
        'm = aggregate(select(indices, indices, <=), indicator(tokens == "a"));'
        "n = (indices + 1) * m; k = m * (indices + 1);"
        "r = (length - indices) * aggregate(select(indices, indices, >=), indices);"
    )
    for name in ("n", "k"):
        sets, problems = infer_value_sets(names[name], ("a", "b"), 16)
        assert not problems
        assert sorted({round(float(v)) for v in sets[names[name].id].values}) == list(range(17))
        assert len(sets[names[name].id].values) <= 2 * 17  # 1 and 1.0 may both occur
    # the suffix sum of indices: every sum of k values from 0..15, k = 1..16
    sets, _ = infer_value_sets(names["r"], ("a",), 16)
    assert max(sets[names["r"].id].values) == 15 * 16
    # an int from one key and a float from several (15 and 15.0), and float neighbours
    # one rounding apart (15.0 and 14.999999999999998): a few values per sum, not more
    assert len(sets[names["r"].id].values) <= 3 * 241


BALANCE = """
up_to_here = select(indices, indices, <=);
open_count = (indices + 1) * aggregate(up_to_here, indicator(tokens == "("));
close_count = (indices + 1) * aggregate(up_to_here, indicator(tokens == ")"));
net = open_count - close_count;
went_negative = aggregate(up_to_here, indicator(net < 0)) > 0;
status = "F" if went_negative else ("T" if net == 0 else "P");
"""


def test_balanced_parentheses_from_prefix_counts_in_two_layers():
    # counts read as (i + 1) * a prefix mean, the paper's shape: 2 layers at 16 (before:
    # 15.8 M parameters and an MLP of 121,829 units)
    sop, model = compile_source(BALANCE, "()", 16)
    assert model.config.n_layers == 2
    assert model.config.n_params < 100_000
    checked, bad = mismatches(sop, model, random_inputs("()", 16, 400, seed=3))
    assert checked == 400 and not bad, bad[:3]
    sop, model = compile_source(BALANCE, "()x", 6)
    checked, bad = mismatches(sop, model, all_inputs("()x", 6))
    assert checked == 1092 and not bad, bad[:3]


NESTING = """
is_open = indicator(tokens == "(" or tokens == "{");
is_close = indicator(tokens == ")" or tokens == "}");
prefix = select(indices, indices, <=);
level = (indices + 1) * aggregate(prefix, is_open) - (indices + 1) * aggregate(prefix, is_close);
shifted = level + is_close;
rank = selector_width(select(shifted, shifted, ==) and prefix);
partner = select(is_open, 1, ==) and select(shifted, shifted, ==) and select(rank, rank - 1, ==);
opener = aggregate(partner, tokens, "?");
fits = (opener + tokens) in ["()", "{}"];
bad = aggregate(prefix, indicator((is_close and not fits) or level < 0)) > 0;
verdict = "F" if bad else ("T" if level == 0 else "P");
"""


def test_two_kinds_of_brackets_from_prefix_counts():
    # the paper's Dyck-k shape (counts as (i + 1) * prefix means, ``and`` of an int and a
    # bool): refused at 16 before (an MLP of 64,652 units); now the count MLPs hold one
    # point per possible (index, count) pair
    sop, model = compile_source(NESTING, "(){}", 16)
    assert model.config.n_params < 500_000
    checked, bad = mismatches(sop, model, random_inputs("(){}", 16, 300, seed=6))
    assert checked == 300 and not bad, bad[:3]
    sop, model = compile_source(NESTING, "(){}", 5)
    checked, bad = mismatches(sop, model, all_inputs("(){}", 5))
    assert checked == 1364 and not bad, bad[:3]


def test_a_mean_of_a_value_held_at_one_position_is_one_over_a_count():
    # indicator(indices == 0) is 1 at one position only: a mean of it over any selection
    # is 0 or 1/k, so the BOS-style width 1/mean - 1 takes L values, not every 1/x - 1
    # of a fraction x (80 values at 16 before; sort by most frequent was refused)
    names = _named(
        "s = select(tokens, tokens, ==) or select(indices, 0, ==);"
        "w = 1 / aggregate(s, indicator(indices == 0)) - 1;"
    )
    sets, problems = infer_value_sets(names["w"], ("a", "b"), 16)
    assert not problems
    assert sorted(round(float(v)) for v in sets[names["w"].id].values) == list(range(16))
    sop, model = compile_source(
        "s = select(tokens, tokens, ==) or select(indices, 0, ==);"
        "w = 1 / aggregate(s, indicator(indices == 0)) - 1;",
        "ab",
        6,
    )
    checked, bad = mismatches(sop, model, all_inputs("ab", 6))
    assert checked == 126 and not bad, bad[:3]


# ------------------------------------------------------------ numerical outputs


def test_an_integer_output_is_one_number_decoded_by_rounding():
    # histogram at 1024: 6.6 M parameters with a one-hot over 1025 counts, now a number
    sop, model = compile_source("h = selector_width(select(tokens, tokens, ==));", "abcd", 1024)
    assert model.spec.output.encoding == "numerical"
    assert model.config.n_params < 60_000
    checked, bad = mismatches(sop, model, random_inputs("abcd", 1024, 40, seed=8))
    assert checked == 40 and not bad
    out = model.run("abca")
    assert out == [2, 1, 1, 2] and all(type(v) is int for v in out)


def test_an_output_mixing_1_and_1_0_stays_categorical():
    # a number cannot carry the kind: the output keeps its one-hot
    src = 'w = selector_width(select(tokens, tokens, ==)); y = w if tokens == "a" else w * 1.0;'
    sop, model = compile_source(src, "ab", 5)
    assert model.spec.output.encoding == "categorical"
    checked, bad = mismatches(sop, model, all_inputs("ab", 5))
    assert checked == 62 and not bad
    assert [type(v) for v in model.run("ab")] == [int, float]


def test_a_numerical_output_summing_two_means_is_decoded_exactly():
    # the sum's values lie closer together than either mean's: its heads are held to a
    # quarter of that gap, so rounding to the nearest value is right
    src = (
        'y = aggregate(select(indices, indices, <=), indicator(tokens == "a"))'
        ' + aggregate(select(indices, indices, >=), indicator(tokens == "b"));'
    )
    sop, model = compile_source(src, "abc", 6)
    assert model.spec.output.encoding == "numerical"
    checked, bad = mismatches(sop, model, all_inputs("abc", 6))
    assert checked == 1092 and not bad, bad[:3]


# ------------------------------------------------------------ the BOS width


BOS_WIDTH = """
def counted(sel) {
    with_first = sel or select(indices, 0, ==);
    return 1 / aggregate(with_first, indicator(indices == 0)) - 1;
}
same = counted(select(tokens, tokens, ==));
"""


def test_a_width_counted_through_index_0_is_one_attention_layer():
    # the reference's idiom for a width without BOS: a mean of indicator(indices == 0)
    # over the selection plus index 0 is 1/k; rewritten to a count of the selection
    # without index 0, it is one head (it took an MLP-only layer for a joint of tokens and
    # indices first)
    sop, model = compile_source(BOS_WIDTH, "abc", 16)
    assert model.config.n_layers == 1
    checked, bad = mismatches(sop, model, random_inputs("abc", 16, 300, seed=9))
    assert checked == 300 and not bad, bad[:3]
    sop, model = compile_source(BOS_WIDTH, "ab", 6)
    checked, bad = mismatches(sop, model, all_inputs("ab", 6))
    assert checked == 126 and not bad, bad[:3]
    # the kind is kept: the interpreter's 1 when only index 0 is selected stays an int
    inner = (
        'y = aggregate(select(tokens, "z", ==) or select(indices, 0, ==), indicator(indices == 0));'
    )
    sop, model = compile_source(inner, "ab", 5)
    checked, bad = mismatches(sop, model, all_inputs("ab", 5))
    assert checked == 62 and not bad


# ------------------------------------------------------------ static masks

MASKED = (
    "m = select(tokens, tokens, ==) and select(indices, indices, {cmp});"
    "w = selector_width(m);"
    'f = aggregate(m, indicator(tokens == "a") + indices);'
    "y = w + f;"
)


def test_index_comparisons_become_head_masks_exactly_for_every_comparison():
    for cmp in ("<", "<=", ">", ">=", "==", "!="):
        sop, model = compile_source(MASKED.format(cmp=cmp), "ab", 5)
        masks = {m for row in model.config.head_masks or () for m in row} - {"all"}
        assert masks == {cmp}, cmp
        checked, bad = mismatches(sop, model, all_inputs("ab", 5))
        assert checked == 62 and not bad, (cmp, bad[:3])
        _, unmasked = compile_source_unmasked(MASKED.format(cmp=cmp), "ab", 5)
        assert unmasked.config.head_masks is None
        assert model.config.d_model < unmasked.config.d_model  # no one-hot of the indices


def test_a_masked_count_costs_no_one_hot_of_the_indices_at_length():
    src = "w = selector_width(select(tokens, tokens, ==) and select(indices, indices, <));"
    sop, model = compile_source(src, "abcd", 512)
    assert model.config.head_masks == (("<",),)
    assert model.config.d_model < 12  # one, bos, tokens, 1/(w+1): nothing per index
    checked, bad = mismatches(sop, model, random_inputs("abcd", 512, 30, seed=5))
    assert checked == 30 and not bad


#: counts of "or"s whose index comparison splits them by cells: (selector, the masks
#: their heads take)
SPLIT_BY_CELLS = [
    # sort's: tokens <= before the query, tokens < at and after it
    (
        "select(tokens, tokens, <) or (select(tokens, tokens, ==) and select(indices, indices, <))",
        {">=", "<"},
    ),
    # the reverse tie-break: tokens < before and at the query, tokens <= after it
    (
        "select(tokens, tokens, <) or (select(tokens, tokens, ==) and select(indices, indices, >))",
        {"<=", ">"},
    ),
    # an "and not": tokens != before the query, tokens == at and after it
    (
        "(select(tokens, tokens, !=) and select(indices, indices, <)) or "
        "(select(tokens, tokens, ==) and select(indices, indices, >=))",
        {"<", ">="},
    ),
]


def test_a_count_split_by_index_cells_gives_each_head_a_one_sided_mask_exactly():
    # selector_width of an "or" that no single head scores uniformly sums one head per
    # part; split by where the key lies (before, at, after the query) each part is a
    # comparison of tokens under a one-sided mask, which the causal kernel runs in half
    # the time of an unmasked head
    for sel, masks in SPLIT_BY_CELLS:
        src = f"w = selector_width({sel});"
        sop, model = compile_source(src, "abc", 6)
        got = {m for row in model.config.head_masks or () for m in row} - {"all"}
        assert got == masks, (sel, got)
        checked, bad = mismatches(sop, model, all_inputs("abc", 6))
        assert checked == 1092 and not bad, (sel, bad[:3])
    sop, model = compile_source(f"w = selector_width({SPLIT_BY_CELLS[0][0]});", "abcd", 300)
    checked, bad = mismatches(sop, model, random_inputs("abcd", 300, 20, seed=2))
    assert checked == 20 and not bad


def test_sort_past_the_causal_kernels_thresholds_runs_them_and_stays_exact(monkeypatch):
    # at 520 positions both of sort's count heads ("key >= query", "key < query") run
    # the causal kernel (kernels.CAUSAL_FROM), the first with its positions reordered
    from rasp_compiler import kernels

    calls: list[str] = []
    tri = kernels._triangular
    monkeypatch.setattr(kernels, "_triangular", lambda *a: calls.append(a[3]) or tri(*a))
    import random

    letters = "abcdefghijklmnopqrstuvwxyz"
    src = f"t = selector_width({SPLIT_BY_CELLS[0][0]});"
    sop, model = compile_source(src, letters, 519)
    rng = random.Random(9)
    inputs = [[rng.choice(letters[:k]) for _ in range(519)] for k in (2, 5, 26, 26)]
    inputs += [["a"] * 519, list(letters * 20)[:519]]
    checked, bad = mismatches(sop, model, inputs)
    assert checked == 6 and not bad
    assert set(calls) == {">=", "<"}


def compile_source_unmasked(src: str, vocab: str, max_len: int):
    from rasp_compiler.compiler.pipeline import compile_sop
    from rasp_compiler.language.lower import choose_sop

    name, sop = choose_sop(load_source(src), None, "<source>")
    return sop, compile_sop(sop, tuple(vocab), max_len, sop_name=name, head_masks=False)


# ------------------------------------------------------------ computed keys, numerically

SORT = (
    "goes_before = select(tokens, tokens, <) or "
    "(select(tokens, tokens, ==) and select(indices, indices, <));"
    "target = selector_width(goes_before);"
    "s = aggregate(select(target, indices, ==), tokens);"
)


def test_a_count_compared_with_the_indices_is_a_numerical_key_not_a_one_hot():
    # select(target, indices, ==): the key is a count the model computes; its number and
    # its centred square (one MLP table) score 2 q'k' - k'^2 against the positional query
    sop, model = compile_source(SORT, "abcdefghijklmnopqrstuvwxyz", 64)
    assert model.config.d_model < 70  # 186 with one-hots of target and indices
    assert model.config.n_layers == 3
    checked, bad = mismatches(
        sop, model, random_inputs("abcdefghijklmnopqrstuvwxyz", 64, 200, seed=11)
    )
    assert checked == 200 and not bad
    sop, small = compile_source(SORT, "abcd", 16)
    assert small.config.n_layers == 2  # the square reads both counting heads at once
    checked, bad = mismatches(sop, small, all_inputs("abcd", 5) + random_inputs("abcd", 16, 300))
    assert checked == 1364 + 300 and not bad


def test_a_numerical_key_float32_cannot_separate_is_compared_digit_by_digit(monkeypatch):
    # at 1024 the scores would reach ~1e6, where float32 rounds by ~0.25: without the
    # numerical digits construction, the count is compared through the one-hots of its
    # two base-33 digits (65 classes a side, not 1025), and the model stays exact
    from rasp_compiler.compiler.plan import numeric_eq

    monkeypatch.setattr(numeric_eq, "_digit_base", lambda *a: None)
    sop, model = compile_source(SORT, "abc", 1024)
    assert model.config.d_model < 200
    checked, bad = mismatches(sop, model, random_inputs("abc", 1024, 6, seed=2))
    assert checked == 6 and not bad


def test_the_digits_construction_is_exact_where_its_tables_are_precise(monkeypatch):
    from rasp_compiler.compiler import count_precision
    from rasp_compiler.compiler.plan import numeric_eq

    # the digits construction, forced at a length small enough to check everything (and
    # with its measured table error ignored: at 16 it is within the head's margin)
    monkeypatch.setattr(numeric_eq, "_separable", lambda *a: False)
    monkeypatch.setattr(count_precision, "SAFETY", 0.0)
    sop, model = compile_source(SORT, "abcd", 16)
    layers = [info["mlp"] for info in model.spec.layers]
    assert any("count//5" in m["implements"] for row in layers for m in row)
    checked, bad = mismatches(sop, model, all_inputs("abcd", 5) + random_inputs("abcd", 16, 300))
    assert checked == 1364 + 300 and not bad


def test_a_count_whose_tables_round_too_much_is_compared_through_digit_one_hots():
    # the count's number and square come from MLP tables whose float32 rounding grows
    # like L^2 (their steps' activations), and the head multiplies it by the query: at
    # 512 the numerical comparison was wrong on most inputs (298 of 326).  The error is
    # measured once the tables are built; up to 64 it is within the head's margin (and
    # beta allows for it), beyond that the count is compared through the one-hots of its
    # three base-9 digits (25 classes; two base-23 digits would take 46), which tolerate
    # an error of 1/48
    from rasp_compiler.compiler.count_precision import SAFETY

    vocab = "abcdefghijklmnopqrstuvwxyz"
    sop, model = compile_source(SORT, vocab, 64)
    _, plan, _ = model.compiled_from
    (eq,) = [h for h in plan.heads if h.count_node >= 0]
    assert not plan.plain_counts and 0 < eq.key_noise <= eq.gap / 4
    sop, model = compile_source(SORT, vocab, 512)
    _, plan, _ = model.compiled_from
    assert plan.plain_counts and not any(h.count_node >= 0 for h in plan.heads)
    assert model.config.d_model < 200  # no one-hots of the count (513) or the indices (512)
    text = describe(model, None, as_json=False)
    assert "query//81==6" in text and "query//9%9==8" in text and "query%9==8" in text
    inputs = random_inputs(vocab, 512, 12, seed=5)
    inputs += [list("zyxwvutsrqponmlkjihgfedcba" * 20)[:512], ["q"] * 512]
    checked, bad = mismatches(sop, model, inputs)
    assert checked == 14 and not bad
    assert SAFETY >= 2  # measured errors are taken several times over


@pytest.mark.parametrize("share", [0.0, 0.6])
def test_a_digit_comparison_without_a_match_attends_bos_and_averages_alike(share, monkeypatch):
    # the query ``indices - 3`` is negative at the first three positions (no count equals
    # it: the default), and several keys share a count (their mean must weigh them
    # alike); every digit must match, one matching digit (22 vs 45) is not enough.
    # Counts 0..299 take two base-18 digits (35 classes) or three base-7 digits (21):
    # ``share`` 0 keeps two digits, the default takes three
    from rasp_compiler.compiler.plan import digit_eq

    monkeypatch.setattr(digit_eq, "THREE_DIGITS_SHARE", share)
    src = (
        "c = selector_width(select(tokens, tokens, <));"
        "m = aggregate(select(c, indices - 3, ==), indicator(indices % 3 == 0));"
    )
    sop, model = compile_source(src, "abc", 300)
    _, plan, _ = model.compiled_from
    (digits,) = [h for h in plan.heads if h.gap == 0.5 and h.uniform]
    classes = 17 + 18 if share == 0.0 else 7 + 7 + 7
    assert len(digits.qk) == classes + 2 and 301 > digit_eq.DIGIT_EQ_MIN_VALUES  # and BOS
    inputs = random_inputs("abc", 300, 40, seed=8) + [["a"] * 300, ["c"] * 40 + ["a"] * 260]
    checked, bad = mismatches(sop, model, inputs)
    assert checked == 42 and not bad


def test_without_digits_a_large_count_falls_back_to_full_one_hots(monkeypatch):
    from rasp_compiler.compiler.plan import digit_eq

    monkeypatch.setattr(digit_eq, "DIGIT_EQ_MIN_VALUES", 10**9)
    sop, model = compile_source(SORT, "abc", 512)
    assert model.config.d_model > 512
    checked, bad = mismatches(sop, model, random_inputs("abc", 512, 6, seed=4))
    assert checked == 6 and not bad


# ------------------------------------------------------------ exact integer scores


def test_integer_scores_are_computed_exactly_where_a_rounding_bound_would_refuse():
    # reverse at 2048: its equality head scores 2q'k' - k'^2 up to ~3e6, where float32's
    # rounding bound (about magnitude * eps, a few times over) reaches the gap of 1.  But
    # every number it reads is an integer (indices, and the length, copied from one key
    # with a leak far below a unit round-off, so it rounds to itself), the coefficients
    # are integers and beta a power of two: every product and partial sum is an integer
    # times beta that float32 holds, so no score is rounded at all
    import math

    import torch

    from rasp_compiler import compile_program
    from rasp_compiler.compiler.emit.attention import ROUNDINGS, score_noise, sharpness
    from rasp_compiler.compiler.plan.length import POSITION
    from rasp_compiler.dtypes import UNIT_ROUNDOFF

    L, vocab = 2048, "abcdefghijklmnopqrstuvwxyz"
    model = compile_program("examples/reverse.rasp", vocab=vocab, max_len=L)
    _, plan, _ = model.compiled_from
    eps = UNIT_ROUNDOFF["float32"]
    (length_head,) = [h for h in plan.heads if h.values[0][1].as_dict() == {POSITION: 1.0}]
    (eq,) = [h for h in plan.heads if h is not length_head]
    assert eq.exact == eps and score_noise(eq, eps) == 0.0
    assert ROUNDINGS * eq.magnitude * eps > eq.gap / 4  # what the bound alone would say
    assert eq.magnitude * eps <= 1.0  # integers up to 2^24 are exact in float32
    beta = sharpness(eq, L, eps)
    assert beta == 2.0 ** round(math.log2(beta))
    # the length is held to a quarter unit round-off: it rounds to the exact integer
    assert length_head.leak * length_head.value_span <= eps / 4
    assert model.config.attn_scale == 1.0
    assert not ROUNDINGS * eq.magnitude * UNIT_ROUNDOFF["float16"] <= 1.0  # float16: not exact

    rng = __import__("random").Random(7)
    inputs = [[rng.choice(vocab) for _ in range(n)] for n in (L, L, L - 1, 1025, 1)]
    tokens, mask = model.encode(inputs)
    with torch.no_grad():
        out = model.transformer(tokens, mask, return_residuals=True)
    d = [e["start"] for e in model.spec.layout if e["name"].startswith("length")]
    after_length = out.residuals[1][:, 1:, d[0]]  # every token reads the length, exactly
    want = torch.tensor([len(x) for x in inputs], dtype=after_length.dtype)[:, None]
    assert torch.equal(torch.where(mask[:, 1:], after_length, want), want.expand_as(after_length))
    assert model.run_batch(inputs) == [x[::-1] for x in inputs]


def test_a_query_that_is_not_an_integer_keeps_the_rounding_bound():
    from rasp_compiler.compiler.emit.attention import score_noise
    from rasp_compiler.dtypes import UNIT_ROUNDOFF

    sop, model = compile_source(
        "half = (length - indices - 1) / 2; s = aggregate(select(indices, half, ==), indices);",
        "abc",
        16,
    )
    _, plan, _ = model.compiled_from
    eps = UNIT_ROUNDOFF["float32"]
    eq = [h for h in plan.heads if len(h.qk) > 2]
    assert eq and all(h.exact == 0.0 and score_noise(h, eps) > 0.0 for h in eq)
    checked, bad = mismatches(sop, model, random_inputs("abc", 16, 200))
    assert checked == 200 and not bad
