"""Random RASP programs (tests/fuzz.py) compiled and compared with the interpreter.

A program may be refused (a CompileError with its reason); it may never compile to a
model that disagrees with the interpreter, and compiling may never crash.
"""

from __future__ import annotations

import pytest
from fuzz import random_program, run


def _assert_clean(outcomes) -> None:
    bad = [o for o in outcomes if o.status in ("mismatch", "crash", "invalid")]
    assert not bad, f"{bad[0].status}:\n{bad[0].source}{bad[0].detail}"
    assert sum(o.status == "ok" for o in outcomes) >= len(outcomes) // 2


def test_generator_is_deterministic_and_valid():
    import random

    a = random_program(random.Random(5), 6)
    b = random_program(random.Random(5), 6)
    assert a == b
    assert a[0].count(";") >= 6


def test_random_programs_small():
    _assert_clean(run(20, seed=1, max_len=4, steps=(3, 8)))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 104))
def test_random_programs_sweep(seed):
    _assert_clean(run(50, seed=seed, max_len=5, steps=(4, 12), long_len=24))


@pytest.mark.slow
def test_random_programs_ci_sample():
    _assert_clean(run(25, seed=7, max_len=5, steps=(4, 10), long_len=16))
