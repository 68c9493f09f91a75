"""Every row of LANGUAGE.md section 6, from RASP source through parse, lower, interpret.

The library rows use the project's library (loaded by ``lower.load_source``); the
double histogram, sort by frequency and Dyck programs are written below in RASP, in
the style of the RASP paper.  Expected outputs are the reference's printouts.

The shared corpus (tests/corpus.py) is checked here too, against its expected outputs.
"""

from __future__ import annotations

import pytest
from corpus import EXAMPLE_OUTPUTS, EXPRESSION_OUTPUTS, EXPRESSIONS, corpus, example_programs

from rasp_compiler.language import lower
from rasp_compiler.language.display import format_sop
from rasp_compiler.language.interpret import evaluate
from rasp_compiler.verification import same_output

PROGRAMS = """
# Double histogram: for each token, how many distinct tokens occur exactly as often
# as it does.  The BOS token (position 0) is not counted and gets 0.
def double_hist(bos) {
    same = select(tokens, tokens, ==);
    hist = selector_width(same);
    is_first = selector_width(same and select(indices, indices, <)) == 0;
    reprs = select(hist, hist, ==) and select(is_first, True, ==) and select(tokens, bos, !=);
    return 0 if tokens == bos else selector_width(reprs);
}

# Sort by frequency: the distinct tokens from position 1 on, most frequent first (ties
# by first appearance), then the BOS token as filler.
def sort_by_freq(bos) {
    same = select(tokens, tokens, ==);
    hist = selector_width(same);
    has_earlier = selector_width(same and select(indices, indices, <)) > 0;
    candidate = not has_earlier and not (tokens == bos);
    ahead = (select(hist, hist, >) or (select(hist, hist, ==) and select(indices, indices, <)))
        and select(candidate, True, ==);
    dest = selector_width(ahead) + 1 if candidate else -1;
    return aggregate(select(dest, indices, ==), tokens, bos);
}

# Balanced brackets per prefix: "T" balanced, "P" open but fine so far, "F" broken.
# Brackets at one nesting level alternate opener, closer, opener, ...: a closer's
# opener is the bracket just before it at its level.
def dyck_ptf(pairs) {
    openers = [p[0] for p in pairs];
    closers = [p[1] for p in pairs];
    is_close = tokens in closers;
    step = indicator(tokens in openers) - indicator(is_close);
    prefix = select(indices, indices, <=);
    depth = round((indices + 1) * aggregate(prefix, step));
    level = depth + indicator(is_close);
    is_bracket = tokens in openers + closers;
    rank = selector_width(select(level, level, ==) and prefix and select(is_bracket, True, ==));
    opener_of = select(step, 1, ==) and select(level, level, ==) and select(rank, rank - 1, ==);
    matched = aggregate(opener_of, tokens, "-");
    pair_ok = matched + tokens in pairs;
    bad = (is_close and not pair_ok) or depth < 0;
    broken = aggregate(prefix, indicator(bad)) > 0;
    return "F" if broken else ("T" if depth == 0 else "P");
}

hist2 = double_hist("§");
by_freq = sort_by_freq("§");
dyck1 = dyck_ptf(["()"]);
dyck2 = dyck_ptf(["()", "{}"]);
"""

REVERSE = "aggregate(select(indices, length - indices - 1, ==), tokens)"
HISTOGRAM = "selector_width(select(tokens, tokens, ==))"

ROWS = [
    # (expression or program name, input, printout)
    (REVERSE, "hello", "[o, l, l, e, h] (strings)"),
    (REVERSE, ["hi", "there", "you"], "[you, there, hi] (strings)"),
    (HISTOGRAM, "hello", "[1, 1, 2, 2, 1] (ints)"),
    (HISTOGRAM, "aabbbc", "[2, 2, 3, 3, 3, 1] (ints)"),
    (HISTOGRAM, [1, 2, 1], "[2, 1, 2] (ints)"),
    ("sort(tokens, tokens)", "hello", "[e, h, l, l, o] (strings)"),
    ("sort(tokens, tokens)", "banana", "[a, a, a, b, n, n] (strings)"),
    ("sort(tokens, -indices)", "hello", "[o, l, l, e, h] (strings)"),
    ("sort(indices, tokens)", "hello", "[1, 0, 2, 3, 4] (ints)"),
    ("aggregate(select(indices, indices, <), indices)", "hello", "[0, 0, 0.5, 1.0, 1.5] (floats)"),
    ("aggregate(select(indices, indices, >), indices, -1)", "hello",
     "[2.5, 3.0, 3.5, 4, -1] (floats)"),
    ('shift(tokens, 1, "_")', "hello", "[_, h, e, l, l] (strings)"),
    ("shift(indices, -1, 99)", "hello", "[1, 2, 3, 4, 99] (ints)"),
    ('mark_first_instance(tokens, "l")', "hello", "[F, F, T, F, F] (bools)"),
    ('mark_last_instance(tokens, "l")', "hello", "[F, F, F, T, F] (bools)"),
    ('count(tokens, "l")', "hello", "[2]*5 (ints)"),
    ('contains(tokens, "z")', "hello", "[F]*5 (bools)"),
    ("average(indices)", "hello", "[2.0]*5 (floats)"),
    ("max(indices, length - indices - 1)", "hello", "[4, 3, 2, 3, 4] (ints)"),
    ("round(indices + 0.5)", "hello", "[0, 2, 2, 4, 4] (ints)"),
    ("hist2", "§aaabbccd", "[0, 1, 1, 1, 2, 2, 2, 2, 1] (ints)"),
    ("by_freq", "§aabbbc", "[§, b, a, c, §, §, §] (strings)"),
    ("dyck1", "())(", "[P, T, F, F] (strings)"),
    ("dyck1", "(())()", "[P, P, P, T, P, T] (strings)"),
    ("dyck1", "(a)", "[P, P, T] (strings)"),
    ("dyck2", "({})", "[P, P, P, T] (strings)"),
    ("dyck2", "({)}", "[P, P, F, F] (strings)"),
    ("dyck2", "{}(", "[P, T, P] (strings)"),
]  # fmt: skip


@pytest.mark.parametrize(("expr", "inp", "shown"), ROWS, ids=[f"{r[0]} on {r[1]}" for r in ROWS])
def test_reference_output(expr, inp, shown):
    session = lower.load_source(PROGRAMS + f"\n{expr};\n")
    assert format_sop(evaluate(lower.get_sop(session, "out"), inp)) == shown


# ------------------------------------------------------------ the shared corpus

CORPUS = corpus()


def test_every_corpus_entry_has_its_expected_outputs():
    # corpus() fails on an entry without outputs; none are left over for a removed entry
    assert set(EXPRESSION_OUTPUTS) == {c[0] for c in EXPRESSIONS}
    assert set(EXAMPLE_OUTPUTS) == {c[0] for c in example_programs()}
    assert len(CORPUS) == len(EXPRESSIONS) + len(example_programs()) > 0
    for name, _, vocab, pairs in CORPUS:
        assert 2 <= len(pairs) <= 4, name
        assert any(len(inp) == 1 for inp, _ in pairs), f"{name}: no length-1 input"
        for inp, want in pairs:
            assert inp and set(inp) <= set(vocab), f"{name}: {inp!r} is outside {vocab!r}"
            assert len(want) == len(inp), f"{name}: {inp!r}"


@pytest.mark.parametrize(("name", "src", "vocab", "pairs"), CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_expected_outputs_in_the_interpreter(name, src, vocab, pairs):
    session = lower.load_source(src)
    sop = lower.get_sop(session, session.last_sop_name())
    for inp, want in pairs:
        got = evaluate(sop, inp)
        assert same_output(want, got), f"{name} on {inp!r}: want {want}, got {got}"
        # 0 (a default, or a mean of one value) stays an int; a mean of several is a float
        assert [type(v) for v in got] == [type(v) for v in want], f"{name} on {inp!r}: {got}"
