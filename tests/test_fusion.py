"""Fewer layers: chains of elementwise operations folded into the MLP of an earlier layer
(``compiler/plan/fusion.py``), selects on a computed key split over its parts
(``plan/split.py``), comparisons of prefix counts as one mean (``compiler/rewrite.py``),
and ``inspect`` saying why an MLP-only layer remains."""

from __future__ import annotations

from pathlib import Path

import pytest
from check import all_inputs, compile_source, mismatches, random_inputs
from test_constructions import NESTING  # the paper's Dyck-k shape
from test_precision import MOST_FREQUENT_FIRST as MOST_FREQUENT

from rasp_compiler.inspect_model import describe

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# the paper's sort with BOS, written anew: a count through index 0, then -1 at index 0
BOS_SORT = """
earlier = select(tokens, tokens, <) or (select(tokens, tokens, ==) and select(indices, indices, <));
share = aggregate(earlier or select(indices, 0, ==), indicator(indices == 0));
before = (1 / share) - 1;
place = -1 if indices == 0 else before;
take = select(place, indices - 1, ==) or (select(indices, 0, ==) and select(indices, indices, ==));
sorted = aggregate(take, tokens);
"""


def test_a_map_of_a_count_split_over_two_heads_runs_in_the_counts_mlp():
    # ``place`` reads the count and the index: its table reads the two counting heads'
    # 1/(w+1) and ``indices == 0`` directly, in the MLP that would have decoded the count,
    # so the sort takes the paper's 2 layers (3 before)
    sop, model = compile_source(BOS_SORT, "abc", 16)
    assert model.config.n_layers == 2
    checked, bad = mismatches(sop, model, random_inputs("abc", 16, 300, seed=11))
    assert checked == 300 and not bad, bad[:3]
    sop, model = compile_source(BOS_SORT, "abc", 6)
    checked, bad = mismatches(sop, model, all_inputs("abc", 6))
    assert checked == 1092 and not bad, bad[:3]


def test_only_the_inputs_on_the_critical_path_are_expanded():
    # ``(is_close and not fits) or level < 0``: ``fits`` waits for the opener's head, and
    # ``level < 0`` is ready in the first MLP; the table reads the opener, the tokens and
    # ``level < 0`` (not level's own inputs), in the opener's layer: the paper's 4 layers
    # (6 before critical paths, 5 before ``level``'s two counts became one mean), every
    # one with a head
    for n in (16, 5):
        sop, model = compile_source(NESTING, "(){}", n)
        assert model.config.n_layers == 4
        assert all(layer["attn"] for layer in model.spec.layers)
    checked, bad = mismatches(sop, model, all_inputs("(){}", 5))
    assert checked == 1364 and not bad, bad[:3]
    sop, model = compile_source(NESTING, "(){}", 16)
    checked, bad = mismatches(sop, model, random_inputs("(){}", 16, 300, seed=12))
    assert checked == 300 and not bad, bad[:3]


def test_an_mlp_only_layer_says_what_it_waits_for():
    # examples/dyck2.rasp's depth is a difference of two counting heads' widths: the
    # one-hot of ``level`` waits for both counts' MLPs, a layer without heads
    text = (EXAMPLES / "dyck2.rasp").read_text(encoding="utf-8")
    sop, model = compile_source(text, "(){}", 16)
    layers = model.spec.layers
    alone = [i for i, layer in enumerate(layers) if not layer["attn"]]
    assert alone == [1]
    (job,) = layers[1]["mlp"]
    assert "selector_width(prefix" in job["after"] and "layer 0's MLP" in job["after"]
    assert "after=reads" in describe(model, None, as_json=False)
    # layers with heads need no such note
    n = len(layers)
    assert all("after" not in job for i in range(n) if i != 1 for job in layers[i]["mlp"])


def test_max_prefix_runs_in_two_layers_at_any_length():
    text = (EXAMPLES / "max_prefix.rasp").read_text(encoding="utf-8")
    vocab = next(line.split()[-1] for line in text.splitlines() if line.startswith("# Vocabulary:"))
    for n in (16, 64):
        sop, model = compile_source(text, vocab, n)
        assert model.config.n_layers == 2  # 3 and 4 before
        checked, bad = mismatches(sop, model, random_inputs(vocab, n, 200, seed=n))
        assert checked == 200 and not bad, bad[:3]


def test_a_select_on_a_computed_key_is_split_over_the_keys_parts_where_that_pays():
    # select(key, key, <) with key = 100 * indicator(repeat) - freq is, per pair of
    # ``repeat`` values, a comparison of ``freq`` or always/never true: the counting heads
    # can read freq's and repeat's one-hots (written in the first MLP) instead of a
    # one-hot of key.  At 64 that split is what keeps the key's heads in layer 1: one
    # table writing key's one-hot from the two counting heads would project both counts
    # at once (too fine for float32), so key's one-hot would take a second MLP.
    from rasp_compiler.compiler.plan.split import split_selector
    from rasp_compiler.compiler.selectors import atoms

    sop, model = compile_source(MOST_FREQUENT, "abcd", 64)
    assert model.config.n_layers == 4  # 5 before the split
    assert [layer["attn"] != [] for layer in model.spec.layers] == [True, True, False, True]
    # the sort's count: one head per disjoint conjunction of the split selector
    assert [h["kind"] for h in model.spec.layers[1]["attn"]] == ["width"] * 3
    checked, bad = mismatches(sop, model, random_inputs("abcd", 64, 300, seed=13))
    assert checked > 150 and not bad, bad[:3]  # the rest mix '§' and ints, as in the reference
    # at 16 one table writes key's one-hot in the first MLP (``repeat`` is read as a
    # gate, see test_a_count_read_through_count_eq_0_gates_a_table): the select is not
    # split, the sort's count takes two heads, and the paper's three layers
    sop, model = compile_source(MOST_FREQUENT, "abcd", 16)
    assert model.config.n_layers == 3
    assert [h["kind"] for h in model.spec.layers[1]["attn"]] == ["width"] * 2
    checked, bad = mismatches(sop, model, random_inputs("abcd", 16, 400, seed=13))
    assert checked == 400 and not bad, bad[:3]
    sop, model = compile_source(MOST_FREQUENT, "abc", 6)
    checked, bad = mismatches(sop, model, all_inputs("abc", 6))
    assert checked == 1092 and not bad, bad[:3]
    # the split itself: atoms over the parts only, with plain comparisons
    _, _, plan = model.compiled_from
    assert plan is not None
    from rasp_compiler.compiler.pipeline import planned_program
    from rasp_compiler.compiler.plan.builder import Planner
    from rasp_compiler.compiler.value_sets import infer_value_sets
    from rasp_compiler.language import ir

    root = planned_program(sop, 8)
    sets, _ = infer_value_sets(root, tuple("abcd"), 8)
    planner = Planner(sets, 8, {}, {})
    key_select = next(
        n
        for n in ir.walk(root)
        if isinstance(n, ir.Select) and n.cmp == "<" and isinstance(n.keys, ir.Map)
    )
    split = split_selector(planner, key_select)
    assert split is not key_select
    assert {(a.cmp, len(planner.values(a.keys))) for a in atoms(split)} == {
        ("<", 2),
        ("==", 2),
        (">", 9),
    }


BRACKETS = """
prefix = select(indices, indices, <=);
opens = (indices + 1) * aggregate(prefix, indicator(tokens == "("));
closes = (indices + 1) * aggregate(prefix, indicator(tokens == ")"));
balance = opens - closes;
dipped = aggregate(prefix, indicator(balance < 0)) > 0;
state = "F" if dipped else ("T" if balance == 0 else "P");
"""


def _walks(pairs: str, n: int, count: int, seed: int) -> list[list[str]]:
    """Bracket strings that mostly stay balanced (random inputs almost never do)."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(count):
        stack: list[str] = []
        x: list[str] = []
        for _ in range(rng.randint(1, n)):
            if stack and rng.random() < 0.5:
                x.append(stack.pop()[1])
            else:
                p = pairs[rng.randrange(0, len(pairs), 2) :][:2]
                stack.append(p)
                x.append(p[0])
        out.append(x)
    return out


def test_comparing_two_prefix_counts_is_one_mean_compared_with_0():
    # balance < 0 and balance == 0 read the sign of opens - closes, which is the sign of
    # the mean of indicator(open) - indicator(close): one head and a one-number table,
    # not a table over the index and two means (4,224 units each at 64, and a layer more)
    sop, model = compile_source(BRACKETS, "()", 64)
    assert model.config.n_layers == 2  # 3 before
    assert model.config.n_params < 10_000  # 1.37 M before
    inputs = _walks("()", 64, 400, seed=14) + random_inputs("()", 64, 200, seed=15)
    checked, bad = mismatches(sop, model, inputs)
    assert checked == len(inputs) and not bad, bad[:3]
    assert sum(x.count("(") == x.count(")") for x in inputs) > 20  # balanced ones checked
    sop, model = compile_source(BRACKETS, "()a", 6)
    checked, bad = mismatches(sop, model, all_inputs("()a", 6))
    assert checked == 1092 and not bad, bad[:3]


CARRY = """
plus = aggregate(select(tokens, "+", ==), indices);
second = indices > plus;
digit = indicator(tokens == "1") + 9 * indicator(tokens == "9");
b = digit if second else 0;
a = aggregate(select(indices + (length - plus), indices, ==), digit, 0);
carries = a + b > 9;
"""


def test_a_wider_table_that_runs_no_earlier_is_not_chosen():
    # ``a + b > 9`` could read a, b's own inputs (tokens, indices, the '+' position) in one
    # table, but that runs in the same layer as reading the number a + b: the small table
    # wins (the reference's long addition at 12 took 63 s and 1.27 M parameters for it)
    sop, model = compile_source(CARRY, "019+", 12)
    _, plan, _ = model.compiled_from
    (job,) = [m for m in plan.mlps if m.label == "a + b > 9"]
    assert len(job.inputs) == 1 and len(job.inputs[0].values) <= 19
    inputs = random_inputs("019+", 12, 300, seed=16) + all_inputs("019+", 5)
    checked, bad = mismatches(sop, model, inputs)
    assert checked == len(inputs) and not bad, bad[:3]


def test_long_addition_adds_in_five_layers():
    text = (EXAMPLES / "long_addition.rasp").read_text(encoding="utf-8")
    import random

    rng = random.Random(17)
    for n in (12, 25):
        sop, model = compile_source(text, "0123456789+", n)
        assert model.config.n_layers == 5
        w = (n - 1) // 2  # digits per number, the first a padding 0
        top = 10 ** (w - 1)
        pairs = [(rng.randrange(top), rng.randrange(top)) for _ in range(100)]
        pairs += [(top - 1, 1), (0, 0), (top // 2, top // 2)]
        inputs = [list(f"{a:0{w}d}+{b:0{w}d}") for a, b in pairs]
        got = model.run_batch(inputs)
        assert ["".join(map(str, g[-w:])) for g in got] == [f"{a + b:0{w}d}" for a, b in pairs]
        checked, bad = mismatches(sop, model, inputs)
        assert checked == len(inputs) and not bad


_CMPS = ["<", ">", "<=", ">=", "=="]
_KEYS = ["pa * 10 - pb", "pb - pa", "pa + pb * 3", "-pa if pb else pa", "pa if pb else 0 - pa"]
_BIG = ["selector_width(select(tokens, tokens, ==))", 'selector_width(select(tokens, "a", ==))']
_SMALL = [
    'tokens == "a"',
    "selector_width(select(tokens, tokens, ==) and select(indices, indices, <)) > 0",
]


def _shape(rng) -> str:
    """A random program of one of the shapes the constructions above rewrite."""
    if rng.random() < 0.5:
        src = f"pa = {rng.choice(_BIG)};\npb = {rng.choice(_SMALL)};\nkey = {rng.choice(_KEYS)};\n"
        c1, c2 = rng.choice(_CMPS), rng.choice(_CMPS)
        if rng.random() < 0.5:
            tie = f"select(key, key, ==) and select(indices, indices, {c2})"
            sel = f"select(key, key, {c1}) or ({tie})"
            return src + f"result = selector_width({sel});\n"
        sel = f"select(key, key, {c1}) and select(indices, indices, {c2})"
        return src + f'result = aggregate({sel}, indicator(tokens == "c"), 0);\n'
    x = rng.choice(['indicator(tokens == "a")', 'indicator(tokens == "b" or tokens == "c")'])
    y = rng.choice(['indicator(tokens == "b")', 'indicator(not (tokens == "a"))'])
    sel, w = rng.choice(
        [
            ("select(indices, indices, <=)", "indices + 1"),
            ("select(indices, indices, >=)", "length - indices"),
        ]
    )
    c = rng.choice(_CMPS)
    if rng.random() < 0.5:
        return (
            f"s = {sel};\nresult = ({w}) * aggregate(s, {x}) - ({w}) * aggregate(s, {y}) {c} 0;\n"
        )
    return f"s = {sel};\nresult = ({w}) * aggregate(s, {x}) {c} aggregate(s, {y}) * ({w});\n"


def test_random_programs_of_the_rewritten_shapes_match_the_interpreter():
    import random

    rng = random.Random(20261214)
    for i in range(10):
        src = _shape(rng)
        for n, inputs in ((5, all_inputs("abc", 5)), (24, random_inputs("abc", 24, 150, seed=i))):
            sop, model = compile_source(src, "abc", n)
            checked, bad = mismatches(sop, model, inputs)
            assert checked == len(inputs) and not bad, (src, bad[:1])


def test_a_difference_of_prefix_counts_is_one_mean():
    # level = (i+1)*mean(prefix, is_open) - (i+1)*mean(prefix, is_close) is
    # (i+1)*mean(prefix, is_open - is_close) as the interpreter computes both, for every
    # pair of counts at every width up to 21 (checked exhaustively; at 22, 22*(15/22) is
    # 14.999999999999998): one head's mean and the index feed the one-hot of ``shifted``
    # in the first MLP, a layer earlier than two means would
    from rasp_compiler.compiler.pipeline import planned_program
    from rasp_compiler.compiler.rewrite import _differences_exact
    from rasp_compiler.language import ir

    assert _differences_exact(21) and not _differences_exact(22)
    sop, model = compile_source(NESTING, "(){}", 16)
    planned = planned_program(sop, 16)
    means = [n for n in ir.walk(planned) if isinstance(n, ir.Aggregate)]
    level_means = [m for m in means if isinstance(m.values, ir.Map) and m.values.op == "sub"]
    assert len(level_means) >= 1
    layer0 = model.spec.layers[0]
    assert any(
        "level" in job["implements"] or "shifted" in job["implements"] for job in layer0["mlp"]
    )
    walks = _walks("(){}", 16, 1500, seed=21)
    checked, bad = mismatches(sop, model, walks)
    assert checked == 1500 and not bad, bad[:3]
    balanced = [w for w, got in zip(walks, model.run_batch(walks)) if got[-1] == "T"]
    assert len(balanced) > 50  # the walks reach the deep, balanced cases


EXISTS = """
mA = aggregate(select(tokens, tokens, ==), indicator(indices < 2));
mB = aggregate(select(tokens, tokens, !=), indicator(tokens == "a"));
mC = aggregate(select(indices, indices, <=), indicator(tokens == "b"));
res = (mA > 0 and tokens == "a") or (mB > 0 and tokens == "b") or (mC > 0 and tokens == "c");
"""


def test_tests_of_means_for_their_smallest_value_are_gates_of_one_table():
    # ``mean > 0`` for a mean of 0/1 values only tells the mean's smallest value from the
    # rest: the chain reads the three means as gates of one table in the heads' own
    # layer (1 layer, not 2; rover's ``e_REL_item`` chains: 23 -> 17 layers at 8)
    sop, model = compile_source(EXISTS, "abcd", 16)
    assert model.config.n_layers == 1
    (job,) = model.spec.layers[0]["mlp"]
    _, plan, _ = model.compiled_from
    (mlp,) = plan.mlps
    assert len(mlp.gates) == 3 and all(not top for _, top in mlp.gates)
    assert job["gates"].endswith("each a gate (8 tables, one per set of them)")
    checked, bad = mismatches(sop, model, random_inputs("abcd", 16, 1000, seed=31))
    assert checked == 1000 and not bad, bad[:3]
    sop, model = compile_source(EXISTS, "abcd", 5)
    checked, bad = mismatches(sop, model, all_inputs("abcd", 5))
    assert checked == 1364 and not bad, bad[:3]


CLAUSE_LOADER = """
clause = selector_width(select(tokens, ",", ==) and select(indices, indices, <));
pos = selector_width(select(clause, clause, ==) and select(indices, indices, <));
rule = selector_width(select(clause, clause, ==) and select(tokens, ":", ==)) > 0;
loader = select(clause, clause, ==) and select(rule, True, ==) and
         select(indices, indices, !=) and
         (select(pos, 2, ==) or select(pos, 6, ==)) and (select(2, pos, ==) or select(6, pos, ==));
y = aggregate(loader, tokens == "a", False);
"""


def test_comparisons_of_one_operand_with_constants_are_one_predicate():
    # rover's loaders: ``select(pos, 2, ==) or select(pos, 6, ==)`` is one predicate on the
    # key's pos (and the same with constants as keys, on the query's): with each ``or``
    # inside one table, the selector is a conjunction one head scores; before, the ``or``
    # across two tables needed a joint of every operand (9,248 x 4,624 at 16: refused)
    sop, model = compile_source(CLAUSE_LOADER, "abc,:", 16)
    assert model.config.n_layers == 3
    checked, bad = mismatches(sop, model, random_inputs("abc,:", 16, 400, seed=18))
    assert checked == 400 and not bad, bad[:3]
    sop, model = compile_source(CLAUSE_LOADER, "a,:", 7)
    checked, bad = mismatches(sop, model, all_inputs("a,:", 7))
    assert checked == 3279 and not bad, bad[:3]


# rover's clause kinds: ``base`` reads two MLP outputs, one of them a count tested for 0
CLAUSE_KINDS = """
clause = selector_width(select(tokens, ",", ==) and select(indices, indices, <));
last = clause[-1];
sep = tokens == ",";
rule = selector_width(select(clause, clause, ==) and select(tokens, ":", ==)) > 0 and not sep;
question = (clause == last) and not sep;
base = (not (question or rule)) and not sep;
item = (tokens in ["a", "b"]) and base;
"""


def test_a_count_tested_for_zero_is_a_gate_on_its_head():
    # ``width > 0`` only tells the count's smallest value from the rest: the table reads
    # the counting head's 1/(w+1) as a gate (1 exactly where the count is 0), so ``item``
    # runs in the MLP of the heads' layer (2 layers, not 3; rover at 16: 18 -> 17)
    sop, model = compile_source(CLAUSE_KINDS, "ab,:", 16)
    assert model.config.n_layers == 2
    (job,) = [m for m in model.compiled_from[1].mlps if "and base" in m.label]
    assert len(job.gates) == 1 and job.gates[0][1]  # at its largest: the count is 0
    checked, bad = mismatches(sop, model, random_inputs("ab,:", 16, 1000, seed=5))
    assert checked == 1000 and not bad, bad[:3]
    sop, model = compile_source(CLAUSE_KINDS, "ab,:", 7)
    checked, bad = mismatches(sop, model, all_inputs("ab,:", 7))
    assert checked == 21844 and not bad, bad[:3]


# rover's answer, made small: an ``or`` over tests of more means than a table may gate
ANY_SEEN = """
sa = select(tokens, "a", ==);
sb = select(tokens, "b", ==);
m1 = aggregate(sa, indicator(indices > 2));
m2 = aggregate(sb, indicator(indices > 3));
m3 = aggregate(sa, indicator(indices == 1));
m4 = aggregate(sb, indicator(indices == 0));
m5 = aggregate(select(indices, indices, <), indicator(tokens == "c"));
w = selector_width(select(tokens, "d", ==));
found = False;
found = found or (m1 > 0 and tokens == "a");
found = found or (m2 > 0 and tokens == "b");
found = found or (m3 > 0 and tokens == "c");
found = found or (m4 > 0 and tokens == "d");
found = found or (m1 > 0 and tokens == "b");
found = found or (m5 < 1 and tokens == "a");
found = found or (w > 0 and tokens == "c");
res = "yes" if found else ("never" if tokens == "d" else "no");
"""


def test_an_or_over_many_tests_of_means_is_one_table_linear_in_them():
    # 6 gates (five means, one tested at its largest and one twice, a count tested for 0):
    # more than a table may gate one by one (2^6 tables), but at each combination of
    # the categorical inputs the answer is one value if any of a set of them is off its
    # extreme, another if none is: one step over the sum of their distances
    # (``plan/disjunction.py``), in the heads' own layer
    sop, model = compile_source(ANY_SEEN, "abcd", 16)
    assert model.config.n_layers == 1
    (job,) = model.compiled_from[1].mlps
    assert len(job.gates) == 6 and job.forms is not None
    # inspect says so
    (info,) = model.spec.layers[0]["mlp"]
    assert info["gates"].startswith("6 numbers read only at their extreme, as an 'or'")
    # five kinds of position (tokens a-d, and the ``found`` so far), three units each at most
    assert len(model.compiled_from[1].tables[0].units) <= 24
    checked, bad = mismatches(sop, model, random_inputs("abcd", 16, 2000, seed=8))
    assert checked == 2000 and not bad, bad[:3]
    sop, model = compile_source(ANY_SEEN, "abcd", 7)
    checked, bad = mismatches(sop, model, all_inputs("abcd", 7))
    assert checked == 21844 and not bad, bad[:3]


ALL_SEEN = """
m1 = aggregate(select(tokens, "a", ==), indicator(indices > 2));
m2 = aggregate(select(tokens, "b", ==), indicator(indices > 3));
m3 = aggregate(select(tokens, "a", ==), indicator(indices == 1));
m4 = aggregate(select(tokens, "b", ==), indicator(indices == 0));
res = (m1 > 0 and m2 > 0) or (m3 > 0 and m4 > 0 and tokens == "c");
"""


def test_a_table_over_many_gates_without_an_or_form_takes_another_layer():
    # ``m1 > 0 and m2 > 0`` is on only where both are: no single ``or`` (and 4 gates
    # would be 16 tables): the conjunctions run first, in their own MLPs
    sop, model = compile_source(ALL_SEEN, "abcd", 12)
    assert model.config.n_layers == 2
    assert all(m.forms is None for m in model.compiled_from[1].mlps)
    checked, bad = mismatches(sop, model, random_inputs("abcd", 12, 1000, seed=9))
    assert checked == 1000 and not bad, bad[:3]


def _or_chain(rng) -> str:
    """A random chain of ``or``/``and``/``not``/``if`` over tests of means and counts at
    their extremes, each beside a token or index condition (the shapes an ``or`` form
    must accept, and some it must refuse: an ``and`` of two tests)."""
    lines, tests = [], []
    for i in range(rng.randint(5, 9)):
        if rng.random() < 0.2:
            t = rng.choice("abcd")
            lines.append(
                f'w{i} = selector_width(select(tokens, "{t}", ==) and select(indices, indices, <));'
            )
            tests.append(f"w{i} > 0" if rng.random() < 0.7 else f"not (w{i} > 0)")
            continue
        sel = rng.choice(
            [
                f'select(tokens, "{rng.choice("abcd")}", ==)',
                "select(indices, indices, <)",
                "select(tokens, tokens, ==)",
                "select(indices, indices, >)",
                "select(tokens, tokens, !=)",
            ]
        )
        val = rng.choice(
            [
                f"indicator(indices > {rng.randint(0, 4)})",
                f'indicator(tokens == "{rng.choice("abcd")}")',
                f"indicator(indices == {rng.randint(0, 3)})",
            ]
        )
        lines.append(f"m{i} = aggregate({sel}, {val});")
        tests.append(f"m{i} > 0" if rng.random() < 0.6 else f"m{i} < 1")
    lines.append("f = False;")
    for test in tests:
        cond = rng.choice([f'tokens == "{rng.choice("abcd")}"', f"indices < {rng.randint(1, 5)}"])
        r = rng.random()
        if r < 0.6:
            lines.append(f"f = f or (({test}) and {cond});")
        elif r < 0.75:
            lines.append(f"f = f or ((not ({test})) and {cond});")
        elif r < 0.85:
            lines.append(f"f = f or (({test}) and ({rng.choice(tests)}));")
        else:
            lines.append(f"f = (({test}) if {cond} else f);")
    outputs = ['res = "y" if f else "n";', "res = f;"]
    outputs.append('res = 3 if f else (1 if tokens == "a" else 2);')
    lines.append(rng.choice(outputs))
    return "\n".join(lines)


def _check_or_chains(seed: int, count: int) -> None:
    import random

    rng = random.Random(seed)
    with_forms = 0
    for _ in range(count):
        src = _or_chain(rng)
        sop, model = compile_source(src, "abcd", 8)
        with_forms += any(m.forms is not None for m in model.compiled_from[1].mlps)
        inputs = all_inputs("abcd", 5) + random_inputs("abcd", 8, 200, seed=seed)
        checked, bad = mismatches(sop, model, inputs)
        assert checked == len(inputs) and not bad, (src, bad[:2])
    assert with_forms >= count // 5  # the chains do reach the ``or`` form


@pytest.mark.slow
def test_random_or_chains_over_many_gates_are_exact_ci_sample():
    # seed 2 of a 60-program sweep made by hand: 18 of them compiled an ``or`` form
    _check_or_chains(2, 12)


@pytest.mark.slow
def test_random_or_chains_over_many_gates_are_exact():
    _check_or_chains(20261205, 60)
