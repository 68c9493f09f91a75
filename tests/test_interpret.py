"""The reference interpreter on hand-built IR: LANGUAGE.md section 6, errors, display.

Expected values come from the semantics (LANGUAGE.md section 4) and the reference
table, not from running the interpreter.  The small builders below stand in for the
library, written directly in IR.
"""

from __future__ import annotations

import json
import math
import random
import time

import numpy as np
import pytest

from rasp_compiler.errors import InputError, RaspTypeError, RaspValueError, Source, Span
from rasp_compiler.language import ir
from rasp_compiler.language.display import format_atom, format_selector, format_sop, to_json_value
from rasp_compiler.language.interpret import Interpreter, evaluate, evaluate_many

# ------------------------------------------------------------- IR builders

tokens = ir.Tokens()
indices = ir.Indices()
length = ir.Length()


def _op(x: ir.Operand | ir.Atom) -> ir.Operand:
    return x if isinstance(x, (ir.Node, ir.Const)) else ir.Const(x)


def m(op: str, *args: ir.Operand | ir.Atom, data: tuple = (), span: Span | None = None) -> ir.Map:
    return ir.Map(op=op, args=tuple(_op(a) for a in args), data=data, span=span)


def select(k: ir.Operand | ir.Atom, q: ir.Operand | ir.Atom, cmp: str) -> ir.Select:
    return ir.Select(keys=_op(k), queries=_op(q), cmp=cmp)


def aggregate(sel: ir.Selector, vals: ir.Operand | ir.Atom, default: ir.Atom = 0) -> ir.Aggregate:
    return ir.Aggregate(selector=sel, values=_op(vals), default=default)


def width(sel: ir.Selector) -> ir.SelectorWidth:
    return ir.SelectorWidth(selector=sel)


def and_(a: ir.Selector, b: ir.Selector) -> ir.SelectorAnd:
    return ir.SelectorAnd(left=a, right=b)


def or_(a: ir.Selector, b: ir.Selector) -> ir.SelectorOr:
    return ir.SelectorOr(left=a, right=b)


full_s = select(1, 1, "==")


def reverse(seq: ir.SOp) -> ir.SOp:
    return aggregate(select(indices, m("sub", m("sub", length, indices), 1), "=="), seq)


def histogram(seq: ir.SOp) -> ir.SOp:
    return width(select(seq, seq, "=="))


def sort(vals: ir.SOp, key: ir.SOp) -> ir.SOp:
    earlier = or_(
        select(key, key, "<"), and_(select(key, key, "=="), select(indices, indices, "<"))
    )
    target = width(earlier)
    return aggregate(select(target, indices, "=="), vals)


def shift(seq: ir.SOp, n: int, filler: ir.Atom) -> ir.SOp:
    return aggregate(select(indices, m("sub", indices, n), "=="), seq, filler)


def mark_instance(seq: ir.SOp, val: ir.Atom, other_side: str) -> ir.SOp:
    """other_side '<' marks the first instance (no earlier copy), '>' the last."""
    others = and_(select(seq, val, "=="), select(indices, indices, other_side))
    has_other = m("gt", width(others), 0)
    return m("and", m("eq", seq, val), m("not", has_other))


def count(seq: ir.SOp, val: ir.Atom) -> ir.SOp:
    return width(select(seq, val, "=="))


def maximum(a: ir.SOp, b: ir.SOp) -> ir.SOp:
    return m("where", m("gt", a, b), a, b)


def double_histogram() -> ir.SOp:
    """For each token, how many distinct non-BOS tokens occur as often as it does."""
    same = select(tokens, tokens, "==")
    hist = width(same)
    is_first = m("eq", width(and_(same, select(indices, indices, "<"))), 0)
    reprs = and_(
        and_(select(hist, hist, "=="), select(is_first, True, "==")),
        select(tokens, "§", "!="),
    )
    return m("where", m("eq", tokens, "§"), 0, width(reprs))


def sort_by_frequency() -> ir.SOp:
    """Distinct tokens by falling count (ties: first appearance) from position 1; BOS fill."""
    same = select(tokens, tokens, "==")
    hist = width(same)
    has_earlier = m("gt", width(and_(same, select(indices, indices, "<"))), 0)
    candidate = m("and", m("not", has_earlier), m("not", m("eq", tokens, "§")))
    ahead = and_(
        or_(select(hist, hist, ">"), and_(select(hist, hist, "=="), select(indices, indices, "<"))),
        select(candidate, True, "=="),
    )
    dest = m("where", candidate, m("add", width(ahead), 1), -1)
    return aggregate(select(dest, indices, "=="), tokens, "§")


def dyck(pairs: tuple[str, ...]) -> ir.SOp:
    """Per prefix: "T" balanced, "P" open but fine so far, "F" broken."""
    openers = tuple(p[0] for p in pairs)
    closers = tuple(p[1] for p in pairs)
    is_close = m("in", tokens, data=closers)
    step = m("sub", m("indicator", m("in", tokens, data=openers)), m("indicator", is_close))
    prefix = select(indices, indices, "<=")
    depth = m("round", m("mul", m("add", indices, 1), aggregate(prefix, step)))
    level = m("add", depth, m("indicator", is_close))  # opener: depth after; closer: before
    is_bracket = m("in", tokens, data=openers + closers)
    # brackets at one level alternate opener, closer, ...: a closer's opener is the
    # bracket just before it at its level
    rank = width(and_(and_(select(level, level, "=="), prefix), select(is_bracket, True, "==")))
    opener_of = and_(
        and_(select(step, 1, "=="), select(level, level, "==")),
        select(rank, m("sub", rank, 1), "=="),
    )
    matched = aggregate(opener_of, tokens, "-")
    pair_ok = m("in", m("add", matched, tokens), data=pairs)
    bad = m("or", m("and", is_close, m("not", pair_ok)), m("lt", depth, 0))
    broken = m("gt", aggregate(prefix, m("indicator", bad)), 0)
    return m("where", broken, "F", m("where", m("eq", depth, 0), "T", "P"))


# --------------------------------------------------- LANGUAGE.md section 6

ROWS = [
    # (name, program, input, values, display)
    ("reverse", reverse(tokens), "hello", list("olleh"), "[o, l, l, e, h] (strings)"),
    ("reverse words", reverse(tokens), ["hi", "there", "you"], ["you", "there", "hi"],
     "[you, there, hi] (strings)"),
    ("histogram", histogram(tokens), "hello", [1, 1, 2, 2, 1], "[1, 1, 2, 2, 1] (ints)"),
    ("histogram aabbbc", histogram(tokens), "aabbbc", [2, 2, 3, 3, 3, 1],
     "[2, 2, 3, 3, 3, 1] (ints)"),
    ("histogram ints", histogram(tokens), [1, 2, 1], [2, 1, 2], "[2, 1, 2] (ints)"),
    ("histogram asis", histogram(ir.Tokens(conv="asis")), [1, 2, 1], [2, 1, 2], "[2, 1, 2] (ints)"),
    ("sort", sort(tokens, tokens), "hello", list("ehllo"), "[e, h, l, l, o] (strings)"),
    ("sort banana", sort(tokens, tokens), "banana", list("aaabnn"), "[a, a, a, b, n, n] (strings)"),
    ("sort by -indices", sort(tokens, m("neg", indices)), "hello", list("olleh"),
     "[o, l, l, e, h] (strings)"),
    ("sort indices by tokens", sort(indices, tokens), "hello", [1, 0, 2, 3, 4],
     "[1, 0, 2, 3, 4] (ints)"),
    ("mean of earlier", aggregate(select(indices, indices, "<"), indices), "hello",
     [0, 0, 0.5, 1.0, 1.5], "[0, 0, 0.5, 1.0, 1.5] (floats)"),
    ("mean of later", aggregate(select(indices, indices, ">"), indices, -1), "hello",
     [2.5, 3.0, 3.5, 4, -1], "[2.5, 3.0, 3.5, 4, -1] (floats)"),
    ("shift right", shift(tokens, 1, "_"), "hello", list("_hell"), "[_, h, e, l, l] (strings)"),
    ("shift left", shift(indices, -1, 99), "hello", [1, 2, 3, 4, 99], "[1, 2, 3, 4, 99] (ints)"),
    ("mark_first_instance", mark_instance(tokens, "l", "<"), "hello",
     [False, False, True, False, False], "[F, F, T, F, F] (bools)"),
    ("mark_last_instance", mark_instance(tokens, "l", ">"), "hello",
     [False, False, False, True, False], "[F, F, F, T, F] (bools)"),
    ("count", count(tokens, "l"), "hello", [2] * 5, "[2]*5 (ints)"),
    ("contains", m("gt", count(tokens, "z"), 0), "hello", [False] * 5, "[F]*5 (bools)"),
    ("average", aggregate(full_s, indices), "hello", [2.0] * 5, "[2.0]*5 (floats)"),
    ("max", maximum(indices, m("sub", m("sub", length, indices), 1)), "hello", [4, 3, 2, 3, 4],
     "[4, 3, 2, 3, 4] (ints)"),
    ("round", m("round", m("add", indices, 0.5)), "hello", [0, 2, 2, 4, 4],
     "[0, 2, 2, 4, 4] (ints)"),
    ("double histogram", double_histogram(), "§aaabbccd", [0, 1, 1, 1, 2, 2, 2, 2, 1],
     "[0, 1, 1, 1, 2, 2, 2, 2, 1] (ints)"),
    ("sort by frequency", sort_by_frequency(), "§aabbbc", list("§bac§§§"),
     "[§, b, a, c, §, §, §] (strings)"),
    ("dyck1 broken", dyck(("()",)), "())(", list("PTFF"), "[P, T, F, F] (strings)"),
    ("dyck1 nested", dyck(("()",)), "(())()", list("PPPTPT"), "[P, P, P, T, P, T] (strings)"),
    ("dyck1 other token", dyck(("()",)), "(a)", list("PPT"), "[P, P, T] (strings)"),
    ("dyck2 nested", dyck(("()", "{}")), "({})", list("PPPT"), "[P, P, P, T] (strings)"),
    ("dyck2 crossed", dyck(("()", "{}")), "({)}", list("PPFF"), "[P, P, F, F] (strings)"),
    ("dyck2 open", dyck(("()", "{}")), "{}(", list("PTP"), "[P, T, P] (strings)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "program", "inp", "values", "shown"), ROWS, ids=[r[0] for r in ROWS]
)
def test_reference_row(name, program, inp, values, shown):
    out = evaluate(program, inp)
    assert out == values
    assert [type(v) for v in out] == [type(v) for v in values]  # 0 stays int, 0.5 is float
    assert format_sop(out) == shown


def test_string_input_is_split_into_characters():
    assert evaluate(reverse(tokens), "abc") == evaluate(reverse(tokens), ["a", "b", "c"])


def test_results_are_python_atoms_never_numpy():
    for name, program, inp, *_ in ROWS:
        values = evaluate_many([program], inp)
        sops = [v for v in values.values() if isinstance(v, list)]
        assert sops, name  # the program itself is an s-op: never nothing to check
        for v in sops:
            assert all(type(x) in (int, float, str, bool) for x in v), name


# --------------------------------------------------------------- primitives


def test_indices_length_full():
    assert evaluate(indices, "abc") == [0, 1, 2]
    assert evaluate(length, "abc") == [3, 3, 3]
    assert evaluate(ir.Full(value="x"), "ab") == ["x", "x"]


@pytest.mark.parametrize(
    ("conv", "inp", "expected"),
    [
        ("str", [1, 2], ["1", "2"]),
        ("int", "12", [1, 2]),
        ("float", "15", [1.0, 5.0]),
        ("bool", [0, 1, ""], [False, True, False]),
        ("asis", [1, 2.5], [1, 2.5]),
        ("asis", "ab", ["a", "b"]),
    ],
)
def test_token_conversions(conv, inp, expected):
    out = evaluate(ir.Tokens(conv=conv), inp)
    assert out == expected
    assert [type(v) for v in out] == [type(v) for v in expected]


def test_selector_matrix_orientation():
    # entry (query i, key j) = keys[j] < queries[i]: strictly lower triangular
    sel = evaluate(select(indices, indices, "<"), "hello")
    assert isinstance(sel, np.ndarray) and sel.dtype == bool and sel.shape == (5, 5)
    assert np.array_equal(sel, np.tri(5, k=-1, dtype=bool))
    # a Const query: every row selects the keys holding "l"
    assert np.array_equal(evaluate(select(tokens, "l", "=="), "hello"), [[0, 0, 1, 1, 0]] * 5)
    # a Const key: row i is all True when "l" >= tokens[i]
    assert evaluate(select("l", tokens, ">="), "hello")[:, 0].tolist() == [
        True, True, True, True, False,
    ]  # fmt: skip
    assert evaluate(full_s, "abc").all()


def test_selector_combinations():
    lt = select(indices, indices, "<")
    eq = select(indices, indices, "==")
    assert np.array_equal(evaluate(or_(lt, eq), "abcd"), np.tri(4, dtype=bool))
    assert not evaluate(and_(lt, eq), "abcd").any()
    assert np.array_equal(evaluate(ir.SelectorNot(inner=lt), "abcd"), ~np.tri(4, k=-1, dtype=bool))


@pytest.mark.parametrize("cmp", ir.COMPARISONS)
def test_select_matches_python_comparisons(cmp):
    rng = random.Random(cmp)
    for vals in (
        [rng.randint(-3, 3) for _ in range(7)],
        [rng.choice([0.5, 1, -2, 2.0, 1.5]) for _ in range(7)],
        [rng.choice("abcAB") for _ in range(7)],
        [rng.choice([True, False]) for _ in range(7)],
        [2**70, -(2**70), 3, 2**70 + 1, 0, 1, 2],  # beyond int64
        ["a\x00", "a", "b", "a\x00", "", "b\x00", "a"],  # numpy drops trailing NULs
    ):
        keys = ir.Tokens(conv="asis")
        queries = m("where", m("eq", indices, 0), keys, keys)
        got = evaluate(select(keys, queries, cmp), vals)
        want = [[ir.compare(cmp, k, q) for k in vals] for q in vals]
        assert got.tolist() == want


def test_select_int_against_float_beyond_2_53():
    # 2**53 + 1 is not equal to the float 2**53, though float64 would round it there
    big = ir.Tokens(conv="asis")
    sel = evaluate(select(big, 9007199254740992.0, "=="), [2**53 + 1, 2**53])
    assert sel.tolist() == [[False, True], [False, True]]


def test_select_string_against_number():
    assert not evaluate(select(tokens, 1, "=="), "ab").any()
    assert evaluate(select(tokens, indices, "!="), "ab").all()


def test_selector_width_counts_rows():
    assert evaluate(width(select(indices, indices, "<=")), "abcd") == [1, 2, 3, 4]


def test_map_broadcasts_consts():
    assert evaluate(m("add", 1, 2), "abc") == [3, 3, 3]
    assert evaluate(m("add", tokens, "!"), "ab") == ["a!", "b!"]
    assert evaluate(m("in", tokens, data=("a", "c")), "abc") == [True, False, True]
    table = tuple(enumerate("xyz"))
    assert evaluate(m("lookup", indices, data=table), "abc") == ["x", "y", "z"]
    assert evaluate(m("indicator", m("eq", tokens, "b")), "abc") == [0, 1, 0]


def test_aggregate_single_selection_keeps_any_type():
    assert evaluate(aggregate(select(indices, 0, "=="), tokens), "xyz") == ["x"] * 3
    assert evaluate(aggregate(select(indices, 0, "=="), m("eq", tokens, "x")), "xyz") == [True] * 3
    assert evaluate(aggregate(select(indices, indices, "=="), 7), "ab") == [7, 7]  # Const values


def test_aggregate_of_sort_target_on_banana():
    key = tokens
    earlier = or_(
        select(key, key, "<"), and_(select(key, key, "=="), select(indices, indices, "<"))
    )
    target = width(earlier)
    # b a n a n a: a's go to 0,1,2, b to 3, n's to 4,5
    assert evaluate(target, "banana") == [3, 0, 4, 1, 5, 2]
    assert evaluate(aggregate(select(target, indices, "=="), tokens), "banana") == list("aaabnn")


# ------------------------------------------------------------- exact means

vals_int = ir.Tokens(conv="asis")


def test_mean_is_python_mean_on_ints():
    rng = random.Random(0)
    prefix = select(indices, indices, "<=")
    for _ in range(50):
        xs = [rng.randint(-1000, 1000) for _ in range(rng.randint(1, 40))]
        got = evaluate(aggregate(prefix, vals_int), xs)
        want = [xs[0]] + [sum(xs[: i + 1]) / (i + 1) for i in range(1, len(xs))]
        assert got == want and all(type(a) is type(b) for a, b in zip(got, want, strict=True))


def test_mean_thirds_and_halves_are_bit_identical():
    assert evaluate(aggregate(full_s, vals_int), [0, 1, 1])[0] == 2 / 3
    assert evaluate(aggregate(full_s, vals_int), [0.5, 0.25, 0.125])[0] == (0.5 + 0.25 + 0.125) / 3
    assert evaluate(aggregate(full_s, vals_int), [1, 2.5])[0] == 1.75


def test_mean_of_huge_ints_is_exact():
    # beyond 2**53 the float64 fast path would round; the exact sum does not
    xs = [2**60 + 1, 2**60 + 3, 2**60 + 8]
    assert evaluate(aggregate(full_s, vals_int), xs)[0] == sum(xs) / 3
    assert evaluate(aggregate(full_s, vals_int), [2**80, 2**80])[0] == float(2**80)


def test_mean_of_inexact_floats_is_correctly_rounded():
    rng = random.Random(1)
    for _ in range(20):
        xs = [rng.choice([0.1, 0.2, 0.3, 1e-3, 7.7]) for _ in range(30)]
        got = evaluate(aggregate(full_s, vals_int), xs)[0]
        assert got == math.fsum(xs) / len(xs)


# ------------------------------------------------------------------ errors

SRC = Source("t.rasp", "x = something;\n")
SPAN = Span(SRC, 1, 5, 1, 14)


def test_error_mean_over_strings():
    node = ir.Aggregate(selector=full_s, values=tokens, span=SPAN)
    with pytest.raises(RaspTypeError) as err:
        evaluate(node, "hey")
    assert err.value.span == SPAN
    assert "position 0" in err.value.message and "'h', 'e', 'y'" in err.value.message


def test_error_mean_over_bools():
    node = ir.Aggregate(
        selector=select(indices, indices, "<="), values=m("eq", tokens, "a"), span=SPAN
    )
    with pytest.raises(RaspTypeError, match="position 1") as err:
        evaluate(node, "ab")
    assert err.value.span == SPAN


def test_error_mixed_types():
    node = ir.Map(op="where", args=(m("eq", indices, 0), ir.Const(5), ir.Const("x")), span=SPAN)
    with pytest.raises(RaspTypeError, match="ints and strings") as err:
        evaluate(node, "abc")
    assert err.value.span == SPAN


def test_error_string_aggregate_with_empty_selection_gives_int_default():
    node = ir.Aggregate(
        selector=select(indices, m("sub", indices, 1), "=="), values=tokens, span=SPAN
    )
    with pytest.raises(RaspTypeError, match="default 0") as err:
        evaluate(node, "abc")
    assert err.value.span == SPAN


def test_error_division_by_zero():
    node = m("div", 1, indices, span=SPAN)
    with pytest.raises(RaspValueError, match=r"'/' fails at position 0 on \(1, 0\)") as err:
        evaluate(node, "abc")
    assert err.value.span == SPAN


def test_error_bad_lookup():
    node = m("lookup", tokens, data=(("a", 1), ("b", 2)), span=SPAN)
    with pytest.raises(RaspValueError, match="position 2 on \\('c'\\)") as err:
        evaluate(node, "abc")
    assert err.value.span == SPAN


def test_error_str_plus_int():
    with pytest.raises(RaspTypeError, match="position 0"):
        evaluate(m("add", tokens, 1, span=SPAN), "ab")


@pytest.mark.parametrize("query", [ir.Const(1), indices])
def test_error_str_less_than_int(query):
    node = ir.Select(keys=tokens, queries=query, cmp="<", span=SPAN)
    with pytest.raises(RaspTypeError, match="strings against ints") as err:
        evaluate(node, "ab")
    assert err.value.span == SPAN


@pytest.mark.parametrize("inp", ["", []])
def test_error_empty_input(inp):
    with pytest.raises(InputError, match="empty input"):
        evaluate(tokens, inp)


def test_error_bad_input_token():
    with pytest.raises(InputError, match="position 1"):
        Interpreter(["a", None])


def test_error_failed_token_conversion():
    node = ir.Tokens(conv="int", span=SPAN)
    with pytest.raises(RaspValueError, match="'a' at position 1") as err:
        evaluate(node, "1a")
    assert err.value.span == SPAN


def test_error_asis_on_mixed_input():
    with pytest.raises(InputError, match="mixes"):
        evaluate(ir.Tokens(conv="asis"), [1, "a"])


def test_error_renders_with_caret():
    with pytest.raises(RaspValueError) as err:
        evaluate(m("div", 1, indices, span=SPAN), "ab")
    assert err.value.render().startswith("t.rasp:1:5: value error: '/' fails")
    assert "^^^^^^^^^" in err.value.render()


# --------------------------------------------------------- memo and sharing


def test_evaluate_many_computes_shared_nodes_once(monkeypatch):
    calls: list[int] = []
    original = Interpreter._compute

    def counting(self, node):
        calls.append(node.id)
        return original(self, node)

    monkeypatch.setattr(Interpreter, "_compute", counting)
    shared = m("add", indices, 1)
    a = m("mul", shared, 2)
    b = m("sub", shared, a)
    c = aggregate(select(shared, b, "<"), a)
    values = evaluate_many([b, c], "abcd")
    assert len(calls) == len(set(calls))
    assert set(values) == {n.id for n in ir.walk((b, c))}
    assert values[shared.id] == [1, 2, 3, 4]
    assert values[b.id] == [-1, -2, -3, -4]


def test_interpreter_reuses_memo_and_returns_copies():
    interp = Interpreter("abc")
    first = interp.value(indices)
    first.append(99)
    assert interp.value(indices) == [0, 1, 2]
    sel = interp.value(select(indices, indices, "=="))
    assert not sel.flags.writeable


def test_deep_chain_needs_no_recursion():
    node: ir.SOp = indices
    for _ in range(5000):
        node = m("add", node, 1)
    assert evaluate(node, "ab") == [5000, 5001]


def test_sort_at_length_1024_is_fast():
    rng = random.Random(2)
    xs = [rng.randint(0, 50) for _ in range(1024)]
    key = ir.Tokens(conv="asis")
    start = time.perf_counter()
    out = evaluate(sort(key, key), xs)
    assert time.perf_counter() - start < 10.0
    assert out == sorted(xs)
    means = evaluate(aggregate(select(indices, indices, "<="), key), xs)
    assert means[-1] == sum(xs) / len(xs)


# ------------------------------------------------------------------ display


@pytest.mark.parametrize(
    ("values", "shown"),
    [
        ([1 / 3, 2 / 3], "[0.333, 0.667] (floats)"),
        ([1.0, 1], "[1.0]*2 (floats)"),  # equal values shorten, as in the reference
        ([7], "[7] (ints)"),  # one value is not shortened
        ([True, True], "[T]*2 (bools)"),
        (["§", "a"], "[§, a] (strings)"),
        ([2.0004, -0.5], "[2.0, -0.5] (floats)"),
    ],
)
def test_format_sop(values, shown):
    assert format_sop(values) == shown


def test_format_atom():
    assert [format_atom(v) for v in (True, False, 0.5, 1.0, 1 / 3, "x", 3)] == [
        "T", "F", "0.5", "1.0", "0.333", "x", "3",
    ]  # fmt: skip


def test_format_selector():
    sel = evaluate(select(indices, indices, "<="), "hey")
    assert format_selector(sel, "hey") == "    h e y\nh | 1\ne | 1 1\ny | 1 1 1"
    words = ["hi", "you"]
    sel = evaluate(select(indices, indices, "!="), words)
    assert format_selector(sel, words) == "       hi you\n hi |       1\nyou |   1"


def test_to_json_value():
    sel = evaluate(select(indices, indices, "<"), "ab")
    assert to_json_value(sel) == [[False, False], [True, False]]
    assert json.dumps(to_json_value([True, 1, 0.5, "a"])) == '[true, 1, 0.5, "a"]'
    assert to_json_value([np.int64(3), np.float64(0.25)]) == [3, 0.25]
    assert to_json_value([math.inf, math.nan]) == ["inf", "nan"]


def test_aggregate_matches_naive_definition_on_random_selectors():
    rng = random.Random(3)
    vals = ir.Tokens(conv="asis")
    for trial in range(200):
        n = rng.randint(1, 12)
        xs = [rng.choice([rng.randint(-9, 9), rng.randint(-9, 9) / 4]) for _ in range(n)]
        ks = [rng.randint(0, 3) for _ in range(n)]
        cmp = rng.choice(ir.COMPARISONS)
        keyed = m("lookup", indices, data=tuple(enumerate(ks)))
        got = evaluate(aggregate(select(keyed, m("mod", indices, 4), cmp), vals, -1), xs)
        want = []
        for i in range(n):
            chosen = [x for j, x in enumerate(xs) if ir.compare(cmp, ks[j], i % 4)]
            match len(chosen):
                case 0:
                    want.append(-1)
                case 1:
                    want.append(chosen[0])
                case _:
                    want.append(sum(chosen) / len(chosen))
        assert got == want, trial
        assert [type(v) for v in got] == [type(v) for v in want], trial


# --------------------------------------------------------------- and / or / not


def _sop(src: str, name: str):
    from rasp_compiler.language.lower import load_source

    return load_source(src).names()[name]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("indices or 0", [False, True, True]),
        ("indices and 5", [False, True, True]),
        ('(tokens == "a") and indices', [False, False, False]),
        ('(tokens == "b") or indices', [False, True, True]),
        ("not indices", [True, False, False]),
        ('tokens and ""', [False, False, False]),
    ],
)
def test_and_or_not_on_sops_give_booleans_by_truthiness(expr, expected):
    # as the reference: ``and``/``or`` on s-ops are (bool(a) + bool(b)) == 2 / >= 1, so a
    # mix of ints and bools (``closes and not matches``) is all bools, never an error
    out = evaluate(_sop(f"y = {expr};", "y"), "abc")
    assert out == expected and all(type(v) is bool for v in out)


def test_and_or_between_atoms_stay_pythons():
    assert evaluate(_sop("x = 2 or 0; y = indices + x;", "y"), "ab") == [2, 3]
    assert evaluate(_sop('x = 0 and "z"; y = indices + x;', "y"), "ab") == [0, 1]


def test_unit_maps_keep_each_kind_and_sign_as_python_does():
    # evaluation_steps finds ``x + 0``, ``x - 0``, ``x * 1`` once per program and passes
    # x on; only where Python's operator would leave x unchanged (an int plus 0; a
    # float minus 0 or times 1; never a float plus 0: -0.0 + 0 is 0.0)
    from rasp_compiler.language.lower import get_sop, load_source

    session = load_source(
        "ints = indices + 0 - 0;"
        "floats = (indices * -0.0) * 1 - 0;"
        "plus = (indices * -0.0) + 0;"
        "chain = ((((indices + 0) + 0) * 1) - 0) + 0;"
        "mixed = (indices + 0.0) * 1;"
    )
    got = {
        n: evaluate(get_sop(session, n), "abc")
        for n in ("ints", "floats", "plus", "chain", "mixed")
    }
    assert got["ints"] == [0, 1, 2] and all(type(v) is int for v in got["ints"])
    assert [math.copysign(1.0, v) for v in got["floats"]] == [-1.0] * 3
    assert got["plus"] == [0.0] * 3 and [math.copysign(1.0, v) for v in got["plus"]] == [1.0] * 3
    assert got["chain"] == [0, 1, 2] and all(type(v) is int for v in got["chain"])
    assert got["mixed"] == [0.0, 1.0, 2.0] and all(type(v) is float for v in got["mixed"])
