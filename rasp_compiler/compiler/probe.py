"""Before compiling: is the program defined on any input at all?

A program that fails on every input (``6 / indices`` divides by zero at index 0 of
every input; ``select(tokens, indices, <)`` compares strings with ints) would compile to
a model whose every output is invented, and a check against the interpreter would
compare nothing.  So the interpreter runs on a sample of inputs first (every input of
length 1 and 2 while there are few, then random ones up to the maximum length); when
it fails on all of them, compilation stops with the interpreter's own located error.
"""

from __future__ import annotations

import itertools
import random

from ..errors import MixedAggregateError, RaspError
from ..language import ir
from ..language.interpret import evaluate
from ..language.ir import Atom
from .plan.types import PlanError

#: inputs tried (every one of length 1 and 2 up to this many, then random ones)
PROBE_INPUTS = 48
#: the longest random input tried (the interpreter's select is quadratic in length)
PROBE_MAX_LEN = 32


def probe_inputs(vocab: tuple[Atom, ...], max_len: int) -> list[tuple[Atom, ...]]:
    """The inputs :func:`undefined_everywhere` tries (deterministic)."""
    short = itertools.chain.from_iterable(
        itertools.product(vocab, repeat=n) for n in range(1, min(max_len, 2) + 1)
    )
    inputs = list(itertools.islice(short, PROBE_INPUTS // 2))
    rng = random.Random(0)
    longest = min(max_len, PROBE_MAX_LEN)
    while len(inputs) < PROBE_INPUTS:
        n = longest if len(inputs) % 2 else rng.randint(1, longest)
        inputs.append(tuple(rng.choice(vocab) for _ in range(n)))
    return inputs


def _run(sop: ir.SOp, inputs: list[tuple[Atom, ...]]) -> list[tuple[tuple[Atom, ...], RaspError]]:
    """The probed inputs the interpreter rejects, with its error."""
    failures = []
    for inp in inputs:
        try:
            evaluate(sop, inp)
        except RaspError as exc:
            failures.append((inp, exc))
    return failures


def undefined_everywhere(sop: ir.SOp, vocab: tuple[Atom, ...], max_len: int) -> list[RaspError]:
    """[the reason] when the interpreter fails on every probed input, else []."""
    inputs = probe_inputs(vocab, max_len)
    failures = _run(sop, inputs[:1])
    if not failures:
        return []
    failures = _run(sop, inputs)
    if len(failures) < len(inputs):
        return []
    first = failures[0][1]
    return [
        PlanError(
            f"the program fails on every input tried ({len(inputs)} inputs of length 1 to "
            f"{max(len(i) for i in inputs)}), so a model of it would only invent outputs; "
            f"on {_show(inputs[0])}: {first.message}",
            first.span,
        )
    ]


def mixed_aggregates(sop: ir.SOp, vocab: tuple[Atom, ...], max_len: int) -> list[RaspError]:
    """[the reason] when an aggregate over non-numbers selects several keys on a probed
    input: the reference rejects such inputs (a mean needs numbers), and a transformer
    would answer them anyway, so the program is refused unless the user allows it."""
    inputs = probe_inputs(vocab, max_len)
    for inp, exc in _run(sop, inputs):
        if isinstance(exc, MixedAggregateError):
            return [
                PlanError(
                    f"{exc.message} (on {_show(inp)}): the reference interpreter rejects such "
                    "inputs, but a compiled model would answer them, with an answer that "
                    "means nothing. Make the selector pick at most one key per query, or "
                    "compile with "
                    "--allow-partial (compile_program(..., allow_partial=True)) to build "
                    "the model anyway: it is exact on every input the interpreter accepts, "
                    "and verify skips the others and says how many",
                    exc.span,
                )
            ]
    return []


def rejected_inputs(sop: ir.SOp, vocab: tuple[Atom, ...], max_len: int) -> list[str]:
    """A warning when the interpreter rejects some probed inputs (not all): the model
    answers every input, and on those its answer means nothing.  (An aggregate of
    strings that selects several keys is the usual cause: the reference raises there;
    it is refused unless allowed, see :func:`mixed_aggregates`.)"""
    inputs = probe_inputs(vocab, max_len)
    failures = _run(sop, inputs)
    if not failures or len(failures) == len(inputs):
        return []
    inp, exc = failures[0]
    where = f"{exc.span.location}: " if exc.span is not None else ""
    return [
        f"the interpreter rejects {len(failures)} of {len(inputs)} probed inputs "
        f"({where}on {_show(inp)}: {exc.message}); the model answers such inputs too, "
        "and its answer there means nothing: check inputs with the interpreter "
        "(rasp-compiler eval) or keep to inputs the program accepts"
    ]


def _show(inp: tuple[Atom, ...]) -> str:
    return "".join(inp) if all(isinstance(t, str) and len(t) == 1 for t in inp) else repr(list(inp))  # type: ignore[arg-type]
