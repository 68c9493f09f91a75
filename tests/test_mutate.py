"""Mutants of the example programs (tests/mutate.py) through the command line.

A mutant may fail -- with a located message (a syntax error, an undefined name, a program
the compiler cannot make exact) -- but no command may show a traceback or "internal error",
hang past the time cap, be killed by the memory cap, and no compiled mutant may disagree
with the interpreter.
"""

from __future__ import annotations

import pytest
from mutate import (
    BAD,
    classify,
    describe,
    exhaustive_len,
    load_examples,
    make_mutants,
    run,
    statements,
    tokenize,
    untokenize,
)

# Bad outcomes that are known bugs being fixed elsewhere: (test, reason).  A test whose only
# bad outcomes match these is an xfail naming the bug; any other bad outcome fails it.
KNOWN: list[tuple[object, str]] = []


def _known(o) -> str | None:
    for test, reason in KNOWN:
        if callable(test) and test(o):
            return reason
    return None


def _assert_clean(outcomes, min_ok: int) -> None:
    bad = [o for o in outcomes if o.status in BAD]
    unknown = [o for o in bad if _known(o) is None]
    assert not unknown, f"{len(unknown)} bad mutant(s); the first:\n{describe(unknown[0])}"
    if bad:
        reasons = sorted({_known(o) or "" for o in bad})
        pytest.xfail("known bug(s): " + "; ".join(reasons))
    # not vacuous: some mutants compile, verify and agree
    assert sum(o.status == "ok" for o in outcomes) >= min_ok, [o.status for o in outcomes]


def test_examples_tokenize_and_split_into_statements():
    examples = load_examples()
    assert len(examples) >= 5
    for ex in examples:
        toks = tokenize(ex.source)
        assert untokenize(toks) == ex.source
        sts = statements(toks)
        assert sts, ex.name
        assert all(untokenize(toks[s.start : s.end]).rstrip().endswith((";", "}")) for s in sts)
        assert ex.vocab and ex.inputs


def test_mutants_are_deterministic_and_cover_every_kind():
    a = make_mutants(60, seed=5)
    b = make_mutants(60, seed=5)
    assert [(o.source, o.mutations, o.input) for o in a] == [
        (o.source, o.mutations, o.input) for o in b
    ]
    assert make_mutants(10, seed=5)[3].source == a[3].source  # a prefix of the longer run
    originals = {ex.name: ex.source for ex in load_examples()}
    assert all(o.source != originals[o.example] for o in a)
    assert set(originals) <= {o.example for o in a}
    kinds = " ".join(m.split()[0] for o in a for m in o.mutations)
    for kind in ("operator", "constant", "name", "delete", "duplicate"):
        assert kind in kinds, kind
    assert any(" around " in m for o in a for m in o.mutations)  # deepened


def test_classify():
    assert classify("eval", 0, False, "[a] (strings)\n", "")[0] == "ok"
    err = "p.rasp:1:5: syntax error: unexpected ';'\n  x = ;\n    ^\n"
    assert classify("eval", 1, False, "", err)[0] == "located"
    assert classify("eval", 1, False, "", "")[0] == "internal"
    assert classify("compile", 1, False, "", "rasp-compiler: internal error: KeyError: 3")[0] == (
        "internal"
    )
    assert classify("eval", 1, False, "", "Traceback (most recent call last):\n")[0] == "internal"
    assert classify("eval", None, True, "", "")[0] == "hang"
    assert classify("verify", -24, False, "", "")[0] == "hang"  # SIGXCPU: the CPU cap
    assert classify("eval", 1, False, "", "internal error: MemoryError: \n")[0] == "memory"
    assert classify("eval", -9, False, "", "")[0] == "memory"
    assert classify("eval", -11, False, "", "")[0] == "internal"
    failed = "verify: FAILED 10 inputs checked (...), 1 mismatch; first counterexample: ..."
    assert classify("verify", 1, False, failed, "")[0] == "mismatch"
    assert exhaustive_len(26) == 2 and exhaustive_len(4) == 5


def test_mutants_small():
    _assert_clean(run(20, seed=1), min_ok=3)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [100, 101])
def test_mutants_sweep(seed):
    _assert_clean(run(150, seed=seed), min_ok=20)


@pytest.mark.slow
def test_mutants_ci_sample():
    _assert_clean(run(60, seed=7), min_ok=8)
