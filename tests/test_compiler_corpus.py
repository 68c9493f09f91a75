"""End to end: every corpus program and example compiles, and the model equals the interpreter.

Fast tests check every input up to length 4.  The ``slow`` sweeps check every input up
to length 6 (vocabulary of 4) and 500 random inputs at maximum lengths 16 and 64;
the ``ci_sample`` ones are the slice CI runs on every push.
"""

from __future__ import annotations

import pytest
from check import all_inputs, compile_source, mismatches, random_inputs
from corpus import EXPRESSIONS, example_programs

CORPUS = EXPRESSIONS + example_programs()
IDS = [c[0] for c in CORPUS]
CI_SAMPLE = {
    "reverse",
    "histogram",
    "sort",
    "frac_prevs",
    "dyck1",
    "dyck2",
    "sort_by_frequency",
    "double_histogram",
    "or_selector_width",
    "mean_then_round",
}


@pytest.mark.parametrize(("name", "src", "vocab"), CORPUS, ids=IDS)
def test_exhaustive_small(name, src, vocab):
    sop, model = compile_source(src, vocab, 4)
    checked, bad = mismatches(sop, model, all_inputs(vocab, 4))
    assert checked > 0
    assert not bad, f"{name}: {len(bad)} mismatches, first {bad[0]}"


def _sweep(name, src, vocab):
    sop, model = compile_source(src, vocab, 6)
    checked, bad = mismatches(sop, model, all_inputs(vocab, 6))
    assert checked > 0 and not bad, f"{name} exhaustive: first {bad[:1]}"
    for max_len in (16, 64):
        sop, model = compile_source(src, vocab, max_len)
        checked, bad = mismatches(sop, model, random_inputs(vocab, max_len, 500, seed=max_len))
        assert checked > 0 and not bad, f"{name} at {max_len}: first {bad[:1]}"


@pytest.mark.slow
@pytest.mark.parametrize(("name", "src", "vocab"), CORPUS, ids=IDS)
def test_sweep(name, src, vocab):
    _sweep(name, src, vocab)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "src", "vocab"),
    [c for c in CORPUS if c[0] in CI_SAMPLE],
    ids=[c[0] for c in CORPUS if c[0] in CI_SAMPLE],
)
def test_ci_sample_sweep(name, src, vocab):
    _sweep(name, src, vocab)
