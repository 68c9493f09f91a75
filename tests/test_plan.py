"""Scheduling and sizing: layer counts, fusion, and nothing built that is not read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from check import all_inputs, compile_source, mismatches

from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.errors import CompileError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# The layer counts the RASP paper reports (Weiss et al., 2021, table 1), at max length 16.
PAPER_LAYERS = [
    ("reverse", "abcd", 2),
    ("histogram", "abcd", 1),
    ("sort", "abcd", 2),
    ("double_histogram", "§abcd", 2),
    # its sort key reads one count only through ``count > 0``: a gate, not a second
    # projected number (see test_precision.py)
    ("sort_by_frequency", "§abcd", 3),
    ("dyck1", "()ab", 2),
    # one more than the paper: ``delay_closer`` needs the two prefix counts at once
    ("dyck2", "(){}", 5),
]


@pytest.mark.parametrize(
    ("stem", "vocab", "layers"), PAPER_LAYERS, ids=[p[0] for p in PAPER_LAYERS]
)
def test_examples_take_the_papers_layer_counts(stem, vocab, layers):
    sop = "sort_by_frequency" if stem == "sort_by_frequency" else None
    model = compile_program(EXAMPLES / f"{stem}.rasp", sop, vocab, 16)
    assert model.config.n_layers == layers


def test_a_chain_of_maps_over_one_categorical_sop_costs_no_layer():
    # the whole expression is a function of tokens: a linear read-out of its one-hot
    _, model = compile_source('t = "x" if tokens == "a" else tokens;', "abcd", 8)
    assert model.config.n_layers == 0
    _, model = compile_source(
        's = indicator(tokens == "a") - indicator(tokens == "b");'
        " w = selector_width(select(s, 1, ==));",
        "abcd",
        8,
    )
    assert model.config.n_layers == 1 and model.config.n_heads == 1


def test_an_mlp_reads_through_a_cheap_map_of_another_mlp():
    # ``not p`` is free given p, but p is an MLP: q's MLP reads p's inputs instead
    _, model = compile_source(
        'p = (tokens == "a") and (indices > 1); q = (not p) or (indices == 3);', "abcd", 8
    )
    assert model.config.n_layers == 1


def test_width_arithmetic_is_read_from_the_heads_in_the_same_layer():
    # d's categories come from a table over both counting heads' outputs, in the MLP of
    # their own layer: d never gets its own number, and the copy head runs in layer 1
    _, model = compile_source(
        'a = selector_width(select(tokens, "a", ==)); b = selector_width(select(tokens, "b", ==));'
        " d = a - b; o = aggregate(select(d, indices, ==), tokens);",
        "abcd",
        8,
    )
    assert model.config.n_layers == 2
    names = [str(b["name"]) for b in model.spec.layout]
    assert not any(re.fullmatch(r"[ab]#\d+(:num)?", n) for n in names), names
    written = {mlp["implements"] for layer in model.spec.layers for mlp in layer["mlp"]}
    assert len(written) == 1 and next(iter(written)).startswith("categories of")


def test_a_counting_head_waits_a_layer_rather_than_read_a_joint_table_of_counts():
    # the same table read by a counting head: its rounding could tilt the head (see
    # test_precision.py), so a - b is computed from each count's own number first
    _, model = compile_source(
        'a = selector_width(select(tokens, "a", ==)); b = selector_width(select(tokens, "b", ==));'
        " w = selector_width(select(a - b, a - b, ==));",
        "abcd",
        8,
    )
    assert model.config.n_layers == 3
    assert model.spec.layers[1]["attn"] == []


def test_categories_with_equal_tables_share_one_gate():
    from rasp_compiler.compiler.emit.mlp import _gate_groups

    # input 0 has 3 values, input 1 has 2; the table depends only on whether input 0 is 2
    tables = {(a, b): (("hi",) if a == 2 else ("lo",)) for a in range(3) for b in range(2)}
    points = {k: ((0.0, {"y": 1.0}),) if v == ("hi",) else ((0.0, {}),) for k, v in tables.items()}
    groups = _gate_groups([3, 2], points)
    assert sorted((sorted(s[0]), sorted(s[1])) for s, _ in groups) == [
        ([0, 1], [0, 1]),
        ([2], [0, 1]),
    ]


NUMERIC_EQ_PROGRAMS = [
    "reverse",
    "shift_tokens",
    "shift_indices",
    "load_from_location",
    "index_negative",
    "shift_and_compare",
]


@pytest.mark.parametrize("name", NUMERIC_EQ_PROGRAMS)
def test_numeric_equality_heads_are_exact_on_every_small_input(name, monkeypatch):
    # force the numerical head even where the value sets are small, and check it all
    from check import all_inputs, mismatches
    from corpus import EXPRESSIONS, example_programs

    from rasp_compiler.compiler.plan import numeric_eq

    monkeypatch.setattr(numeric_eq, "NUMERIC_EQ_MIN_VALUES", 0)
    (src, vocab) = next((s, v) for n, s, v in EXPRESSIONS + example_programs() if n == name)
    sop, model = compile_source(src, vocab, 5)
    kinds = [h["kind"] for layer in model.spec.layers for h in layer["attn"]]
    assert "aggregate" in kinds
    checked, bad = mismatches(sop, model, all_inputs(vocab, 5))
    assert checked > 0 and not bad, bad[:1]


def test_reverse_at_long_lengths_needs_no_one_hot_of_indices():
    # select(indices, length - indices - 1, ==) compares numbers: key index and its
    # square are positional directions, so d_model does not grow with max_len
    for max_len in (64, 512):
        model = compile_program(EXAMPLES / "reverse.rasp", "reverse", "abcd", max_len)
        assert model.config.n_layers == 2
        assert model.config.d_model < 40
        names = [b["name"] for b in model.spec.layout]
        assert "indices" not in names


def test_numeric_equality_head_refuses_a_dtype_that_cannot_separate_its_scores():
    from rasp_compiler.errors import CompileError

    with pytest.raises(CompileError) as err:
        compile_program(EXAMPLES / "reverse.rasp", "reverse", "abcd", 1024, dtype="float16")
    text = err.value.render() if hasattr(err.value, "render") else str(err.value)
    # its scores: too close to the gap once rounded, or too large for float16 at all
    scores = ("attention head's scores", "attention score as large as")
    assert any(s in text for s in scores) and "reverse.rasp:" in text


def test_floats_one_rounding_apart_are_one_value():
    from check import all_inputs, mismatches

    from rasp_compiler.compiler.value_sets import _merge_close

    assert _merge_close((1.8, 2.8 - 1, 1.0, 3)) == (1.8, 1.0, 3)
    assert _merge_close((0.1, 0.2)) == (0.1, 0.2)
    # mean - indices yields 1.8 and 1.7999999999999998: the model cannot tell them apart
    sop, model = compile_source(
        "s = aggregate(select_next_identical(tokens), indices, -1) - indices;", "abcd", 5
    )
    checked, bad = mismatches(sop, model, all_inputs("abcd", 5))
    assert checked and not bad


def test_a_mean_over_an_or_of_different_pairs_reads_one_joint_head():
    src = "m = aggregate(select(tokens, tokens, <) or select(indices, 0, ==), indices);"
    sop, model = compile_source(src, "abcd", 6)
    heads = [h for layer in model.spec.layers for h in layer["attn"]]
    # one head for the mean, one counting its keys for the output's kind (1 or 1.0)
    assert sorted(h["kind"] for h in heads) == ["aggregate", "width"]


def test_oversized_select_tables_and_models_are_compile_errors():
    # two means with thousands of possible values each: a select between them would
    # need a table of millions of entries, refused before it is built
    src = (
        "a = aggregate(select(indices, indices, <), indices);"
        " b = aggregate(select(indices, indices, >), indices);"
        " w = selector_width(select(a, b, <));"
    )
    with pytest.raises(CompileError, match="table of .* entries"):
        compile_source(src, "ab", 64)


def test_a_model_over_the_parameter_limit_is_a_compile_error(monkeypatch):
    from rasp_compiler.compiler import assemble

    monkeypatch.setattr(assemble, "MAX_PARAMS", 1000)
    with pytest.raises(CompileError, match="parameters .* more than the limit"):
        compile_program(str(EXAMPLES / "sort.rasp"), vocab="abcd", max_len=8)


@pytest.mark.parametrize("op", ["/", "*"])
def test_float_results_one_rounding_from_a_merged_value_are_exact(op):
    # (5/3) / 5 is 0.33333333333333337 in floats, 1/3 another value's rounding: the value
    # set keeps one of them, and the MLP table must still find it (not drop the row).
    # The value sets grow too fast for the long sweeps, so every input to length 5 here.
    src = f"m = aggregate(select(tokens, tokens, ==), indices); x = m {op} length;"
    sop, model = compile_source(src, "abc", 5)
    checked, bad = mismatches(sop, model, all_inputs("abc", 5))
    assert checked == 363 and not bad, bad[:1]


def test_a_mean_of_means_is_as_sharp_as_its_finest_output_gap():
    # the output can take 10^5 values 1/18000 apart near 0; the inner means must be
    # that accurate too, not just as accurate as their own coarser value gaps need
    src = (
        "v = aggregate(select(tokens, tokens, !=), indices);"
        " m = aggregate(select(tokens, tokens, ==), v);"
        " w = selector_width(select(tokens, tokens, ==));"
        " r = aggregate(select(w, w, <=), m);"
    )
    sop, model = compile_source(src, "abc", 5)
    checked, bad = mismatches(sop, model, all_inputs("abc", 5))
    assert checked > 300 and not bad, bad[:1]


# ------------------------------------------------------------ exact or refused


@pytest.mark.parametrize(
    "src, reason",
    [
        ("x = 6 / indices;", "division by zero"),  # index 0 is in every input
        ("y = aggregate(select(tokens, indices, <), indices);", "cannot order strings"),
    ],
)
def test_a_program_defined_on_no_input_is_refused_with_the_interpreters_reason(src, reason):
    with pytest.raises(CompileError, match=f"fails on every input tried.*{reason}") as err:
        compile_program(src, vocab="abc", max_len=6)
    assert err.value.problems[0].span is not None  # located at the failing operation


def test_a_program_defined_on_some_inputs_compiles():
    # fails at length 1 only (division by length - 1): compiled, and exact where defined
    model = compile_program("x = indices / (length - 1);", vocab="ab", max_len=4)
    assert model.run("ab") == [0, 1]


def test_a_value_beyond_the_float_range_is_refused_where_it_is_made():
    src = "x = indices * (10.0^307);\ny = x - x;"
    with pytest.raises(CompileError, match=r"'\*' can give inf") as err:
        compile_program(src, vocab="ab", max_len=20)
    assert err.value.problems[0].span.line == 1


def test_a_number_the_dtype_cannot_hold_is_refused():
    src = "x = aggregate(select(indices, indices, <=), indices) * (10.0^300);"
    with pytest.raises(CompileError, match="beyond what float32 can hold"):
        compile_program(src, vocab="ab", max_len=8)


@pytest.mark.parametrize(
    "n, body, layers",
    [
        (500, "x{i} = x{j} + 1;", 0),  # linear: free, but planned through 500 levels
        (400, "x{i} = aggregate(select(indices, indices, ==), x{j});", 399),
    ],
)
def test_long_chains_of_operations_compile(n, body, layers):
    # planning recurses along chains; these overflowed Python's default stack
    src = "x0 = indices;\n" + "\n".join(body.format(i=i, j=i - 1) for i in range(1, n))
    model = compile_program(src, vocab="ab", max_len=3)
    assert model.config.n_layers == layers
    assert model.run("ab") == ([n - 1, n] if layers == 0 else [0, 1])


def test_a_far_too_large_model_is_refused_before_its_tables_are_built(monkeypatch):
    from rasp_compiler.compiler import finalize, pipeline

    def never(draft):
        raise AssertionError("tables built for a model already known to be too large")

    monkeypatch.setattr(pipeline, "finalize", never)
    # histogram with its output as a one-hot (as it was before numerical outputs): over
    # 8193 values, far too large
    from rasp_compiler.compiler.plan import make

    monkeypatch.setattr(make, "NUMERIC_OUTPUT_MIN_VALUES", 10**9)
    with pytest.raises(CompileError, match="at least .* parameters"):
        compile_program(str(EXAMPLES / "histogram.rasp"), vocab="abcd", max_len=8192)
    assert finalize.finalize is not never


def _copies(inner: str, depth: int) -> str:
    for _ in range(depth):
        inner = f"aggregate(select(indices, indices, ==), {inner})"
    return inner


def test_a_chain_of_categorical_copies_stays_exact():
    # found by the mutation fuzzer: an int copied through 10 same-position aggregates,
    # then a sort key; each copy added its head's leak and nobody asked the inner heads
    # to be sharper ("aaaa" sorted to [a, a, a, 0])
    src = (
        "same_token = select(tokens, tokens, ==);\n"
        f"frequency = {_copies('selector_width(same_token)', 10)};\n"
        "seen_before = selector_width(same_token and select(indices, indices, <)) > 0;\n"
        "key = -frequency if not seen_before else 0;\n"
        "goes_before = select(key, key, <) or (select(key, key, ==) and "
        "select(indices, indices, <));\n"
        "target = selector_width(goes_before);\n"
        "res = aggregate(select(target, indices, ==), tokens);\n"
    )
    sop, model = compile_source(src, "abcd", 5)
    checked, bad = mismatches(sop, model, all_inputs("abcd", 5))
    assert checked == 1364 and not bad, bad[:1]


def test_scores_over_a_chain_of_copies_stay_exact():
    # a selector comparing a one-hot made by 12 chained heads: the score terms read it,
    # and ask its heads for accuracy within their gap (a sound bound; not seen failing)
    src = f"k = {_copies('tokens', 12)};\nh = selector_width(select(k, k, ==));"
    sop, model = compile_source(src, "abc", 5)
    checked, bad = mismatches(sop, model, all_inputs("abc", 5))
    assert checked == 363 and not bad, bad[:1]


def test_a_chain_past_the_limit_is_a_located_error(monkeypatch):
    from rasp_compiler.compiler import graph

    monkeypatch.setattr(graph, "MAX_CHAIN", 50)
    src = "x = indices;\nfor i in range(60) {\n    x = -x;\n}\n"
    with pytest.raises(CompileError, match="chain of more than 50 operations") as err:
        compile_program(src, vocab="ab", max_len=3)
    assert err.value.problems[0].span.line == 3


@pytest.mark.parametrize(
    "vocab, max_len, message",
    [
        ("[1, 1.0, true]", 4, "Python treats as one value"),
        ([1, 1.0], 4, "Python treats as one value"),
        ("ab", 10**9, "the limit"),
    ],
)
def test_the_api_applies_the_command_lines_limits(vocab, max_len, message):
    from rasp_compiler.errors import InputError

    with pytest.raises(InputError, match=message):
        compile_program("x = tokens;", vocab=vocab, max_len=max_len)


@pytest.mark.parametrize(
    "src",
    [
        "o = length - indices - 10 ^ 400;\nf = select(indices, o, ==);\nr = aggregate(f, tokens);",
        "x = aggregate(select(indices, indices, <), indices, 10^400);",
    ],
)
def test_an_integer_beyond_the_float_range_is_a_located_error(src):
    # found by the mutation fuzzer: an internal OverflowError converting 10^400 to float
    with pytest.raises(CompileError, match="beyond the float range") as err:
        compile_program(src, vocab="ab", max_len=5)
    assert err.value.problems[0].span is not None


def test_equal_sub_expressions_share_their_heads():
    # each selector_width(...) call builds its own IR node; compiled once
    src = (
        "same = select(tokens, tokens, ==);\n"
        'x = (selector_width(same) if tokens == "a" else 0) + selector_width(same);\n'
    )
    sop, model = compile_source(src, "abc", 5)
    assert sum(len(layer["attn"]) for layer in model.spec.layers) == 1
    checked, bad = mismatches(sop, model, all_inputs("abc", 5))
    assert checked == 363 and not bad, bad[:1]


def test_sharing_keeps_atoms_of_different_types_apart():
    from rasp_compiler.compiler.share import share_common
    from rasp_compiler.language import ir

    t = ir.Tokens(conv="int")
    one, true = ir.Map(op="eq", args=(t, ir.Const(1))), ir.Map(op="eq", args=(t, ir.Const(True)))
    again = ir.Map(op="eq", args=(ir.Tokens(conv="int"), ir.Const(1)))
    root = ir.Map(op="add", args=(ir.Map(op="add", args=(one, true)), again))
    shared = share_common(root)
    inner, last = shared.args
    assert last is inner.args[0]  # tokens == 1 twice: one node
    assert inner.args[0] is not inner.args[1]  # == 1 and == True stay apart


def test_an_sop_read_twice_by_one_operation_has_one_value_per_position():
    # indices + indices is 0, 2, 4, 6 (not every sum of two indices): the value set,
    # and the table that decodes it, take the diagonal only
    from rasp_compiler.compiler.value_sets import infer_value_sets
    from rasp_compiler.language.lower import get_sop, load_source

    session = load_source("d = indices + indices; q = d * d - d;")
    sets, problems = infer_value_sets(get_sop(session, "d"), tuple("ab"), 4)
    assert not problems
    assert sets[get_sop(session, "d").id].values == (0, 2, 4, 6)
    sop, model = compile_source("d = indices + indices; q = d * d - d;", "ab", 4)
    from check import all_inputs, mismatches

    checked, bad = mismatches(sop, model, all_inputs("ab", 4))
    assert checked == 30 and not bad
