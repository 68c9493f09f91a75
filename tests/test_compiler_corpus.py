"""End to end: every corpus program and example compiles, and the model equals the interpreter.

Fast tests check every input up to length 4, and the corpus's expected outputs
(tests/corpus.py, worked out from LANGUAGE.md).  The ``slow`` sweeps check every input
up to length 6 (vocabulary of 4) and 500 random inputs at maximum lengths 16 and 64,
and the expected outputs at each of those lengths; the ``ci_sample`` ones are the slice
CI runs on every push.
"""

from __future__ import annotations

import pytest
from check import all_inputs, compile_source, mismatches, random_inputs
from corpus import corpus

from rasp_compiler.verification import same_output

CORPUS = corpus()
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


def _check_expected(name, model, max_len, pairs) -> None:
    """The model gives every expected output whose input fits its max length."""
    fitting = [(inp, want) for inp, want in pairs if len(inp) <= max_len]
    assert fitting, f"{name}: no expected output fits max length {max_len}"
    got_all = model.run_batch([list(inp) for inp, _ in fitting])
    for (inp, want), got in zip(fitting, got_all, strict=True):
        assert same_output(want, got), f"{name} at {max_len} on {inp!r}: want {want}, got {got}"


@pytest.mark.parametrize(("name", "src", "vocab", "pairs"), CORPUS, ids=IDS)
def test_exhaustive_small(name, src, vocab, pairs):
    max_len = max(4, *(len(inp) for inp, _ in pairs))
    sop, model = compile_source(src, vocab, max_len)
    _check_expected(name, model, max_len, pairs)
    checked, bad = mismatches(sop, model, all_inputs(vocab, 4))
    assert checked > 0
    assert not bad, f"{name}: {len(bad)} mismatches, first {bad[0]}"


def _sweep(name, src, vocab, pairs):
    sop, model = compile_source(src, vocab, 6)
    _check_expected(name, model, 6, pairs)
    checked, bad = mismatches(sop, model, all_inputs(vocab, 6))
    assert checked > 0 and not bad, f"{name} exhaustive: first {bad[:1]}"
    for max_len in (16, 64):
        sop, model = compile_source(src, vocab, max_len)
        _check_expected(name, model, max_len, pairs)
        checked, bad = mismatches(sop, model, random_inputs(vocab, max_len, 500, seed=max_len))
        assert checked > 0 and not bad, f"{name} at {max_len}: first {bad[:1]}"


@pytest.mark.slow
@pytest.mark.parametrize(("name", "src", "vocab", "pairs"), CORPUS, ids=IDS)
def test_sweep(name, src, vocab, pairs):
    _sweep(name, src, vocab, pairs)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "src", "vocab", "pairs"),
    [c for c in CORPUS if c[0] in CI_SAMPLE],
    ids=[c[0] for c in CORPUS if c[0] in CI_SAMPLE],
)
def test_ci_sample_sweep(name, src, vocab, pairs):
    _sweep(name, src, vocab, pairs)
