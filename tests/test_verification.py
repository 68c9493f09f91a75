"""verify: a check that compared nothing, or mostly skipped, has not passed."""

from __future__ import annotations

from rasp_compiler import compile_program, get_sop, load_source, verify


def _verify(src: str, vocab: str, max_len: int):
    session = load_source(src)
    name = session.last_sop_name()
    model = compile_program(session, name, vocab=vocab, max_len=max_len, allow_partial=True)
    return verify(get_sop(session, name), model, vocab, max_len, samples=50)


def test_a_check_that_mostly_skipped_fails_and_says_why():
    # a categorical aggregate that selects several strings: the interpreter rejects most
    # inputs (a mean of strings), the model answers them all; nothing proves it right there
    report = _verify("x = aggregate(select(indices, indices, <=), tokens);", "abc", 4)
    assert report.mismatches == 0 and report.skipped > report.checked
    assert not report.ok
    line = report.verdict()
    assert line.startswith("verify: FAILED") and "compared too little" in line
    assert "a mean needs numbers" in line  # the first reason an input was rejected


def test_a_check_with_a_few_skips_passes():
    # undefined at length 1 only (division by length - 1)
    report = _verify("x = indices / (length - 1);", "ab", 4)
    assert 0 < report.skipped < report.checked and report.ok
    assert report.verdict().startswith("verify: OK")
