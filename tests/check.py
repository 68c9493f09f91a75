"""Helpers that compare a compiled model with the reference interpreter."""

from __future__ import annotations

from rasp_compiler import verification
from rasp_compiler.compiler.pipeline import compile_sop
from rasp_compiler.errors import RaspError
from rasp_compiler.language import ir
from rasp_compiler.language.interpret import evaluate
from rasp_compiler.language.lower import choose_sop, load_source
from rasp_compiler.verification import same_output


def compile_source(src: str, vocab: str, max_len: int):
    """(the s-op, its model); programs rejected on some inputs compile too
    (``allow_partial``): the checks here compare the inputs the interpreter accepts."""
    name, sop = choose_sop(load_source(src), None, "<source>")
    return sop, compile_sop(sop, tuple(vocab), max_len, sop_name=name, allow_partial=True)


def all_inputs(vocab: str, max_len: int) -> list[list[str]]:
    return [list(p) for p in verification.all_inputs(tuple(vocab), max_len)]


def random_inputs(vocab: str, max_len: int, count: int, seed: int = 0) -> list[list[str]]:
    """As ``rasp-compiler verify`` draws them: a quarter at ``max_len``, the rest uniform."""
    return [list(p) for p in verification.random_inputs(tuple(vocab), max_len, count, seed)]


def mismatches(sop: ir.SOp, model, inputs: list[list[str]]) -> tuple[int, list[tuple]]:
    """(inputs checked, [(input, expected, got), ...]) skipping inputs the program rejects."""
    got_all = model.run_batch(inputs)
    bad, checked = [], 0
    for inp, got in zip(inputs, got_all, strict=True):
        try:
            ref = evaluate(sop, inp)
        except RaspError:
            continue
        checked += 1
        # floats agree to float64 rounding, as `rasp-compiler verify` compares them: the
        # interpreter's own last bit depends on its order of float operations
        if not same_output(ref, got):
            bad.append((inp, ref, got))
    return checked, bad


def example_vocab(path) -> str:
    """The vocabulary an example file states in its ``# Vocabulary: ...`` line."""
    import re

    m = re.search(r"^# Vocabulary: (\S+)$", path.read_text(encoding="utf-8"), re.M)
    assert m, f"{path.name} states no vocabulary"
    return m.group(1)


def seeded_inputs(vocab: str, n: int, seed: str, max_len: int) -> list[str]:
    """``n`` random strings over ``vocab`` of lengths 1..max_len (seeded by a string)."""
    import random

    rng = random.Random(seed)
    return ["".join(rng.choice(vocab) for _ in range(rng.randint(1, max_len))) for _ in range(n)]
