"""Compare a compiled model with the reference interpreter on many inputs.

``verify(sop, model, vocab, max_len, samples)`` runs both on every input up to a length
whose exhaustive enumeration stays small (about 20,000 inputs, or ``exhaustive_len``),
plus ``samples`` random inputs of lengths 1..``max_len`` (:func:`random_inputs`).
Inputs on which the interpreter raises a :class:`RaspError` (the program itself fails
there, e.g. a division by zero) are counted as skipped, not as mismatches; but a check
that compared nothing, or skipped more inputs than it compared, has not passed (the
report says how many were skipped and the first reason).  The model
runs in batches (``CompiledModel.run_batch``).  Outputs are compared by
:func:`same_output`.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .errors import RaspError
from .language import ir
from .language.display import to_json_value
from .language.interpret import evaluate
from .language.ir import Atom
from .runtime import CompiledModel

__all__ = [
    "Counterexample", "VerifyReport", "verify", "exhaustive_length", "EXHAUSTIVE_BUDGET",
    "same_output", "all_inputs", "random_inputs", "random_lengths",
]  # fmt: skip

EXHAUSTIVE_BUDGET = 20_000  # inputs the default exhaustive enumeration may reach
BATCH = 512  # inputs per model call

Progress = Callable[[int, int], None]  # (inputs done, inputs in all)


@dataclass(frozen=True)
class Counterexample:
    """An input on which the model and the interpreter disagree."""

    input: tuple[Atom, ...]
    expected: tuple[Atom, ...]
    got: tuple[Atom, ...]


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found.

    exhaustive / random: inputs tried of each kind; skipped: of those, the inputs the
    interpreter rejects (program errors); checked: inputs compared (exhaustive + random
    - skipped); mismatches: inputs where model and interpreter differ.
    exhaustive_len: every input up to this length was tried (0 if none).
    """

    checked: int
    exhaustive: int
    random: int
    skipped: int
    mismatches: int
    first_counterexample: Counterexample | None
    exhaustive_len: int = 0
    max_len: int = 0
    #: the first input the interpreter rejected, and its reason
    first_skip: tuple[tuple[Atom, ...], str] | None = None
    #: inputs whose outputs agree in value but print an int where the other has a float
    #: (or the reverse): 1 against 1.0 (and the first such input, expected, got)
    kind_differences: int = 0
    first_kind_difference: Counterexample | None = None

    @property
    def compared_too_little(self) -> bool:
        """Nothing was compared, or more inputs were skipped than compared."""
        return self.checked == 0 or self.skipped > self.checked

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and not self.compared_too_little

    def verdict(self) -> str:
        """One line: ``verify: OK 5960 inputs checked (...), 0 mismatches`` or FAILED."""
        parts = [f"{self.exhaustive} exhaustive up to length {self.exhaustive_len}"]
        parts.append(f"{self.random} random up to {self.max_len}")
        if self.skipped:
            parts.append(f"{self.skipped} skipped (program error)")
        head = "OK" if self.ok else "FAILED"
        line = (
            f"verify: {head} {self.checked} inputs checked ({', '.join(parts)}), "
            f"{self.mismatches} mismatch{'es' if self.mismatches != 1 else ''}"
        )
        ce = self.first_counterexample
        if ce is not None:
            line += (
                f"; first counterexample: input {_show(ce.input)} "
                f"expected {_show(ce.expected)} got {_show(ce.got)}"
            )
        kd = self.first_kind_difference
        if kd is not None:
            line += (
                f"; {self.kind_differences} equal output{'s' if self.kind_differences != 1 else ''}"
                f" printed with another int/float kind, first: input {_show(kd.input)} "
                f"expected {_show(kd.expected)} got {_show(kd.got)}"
            )
        if self.compared_too_little:
            tried = self.checked + self.skipped
            line += (
                f"; the interpreter rejected {self.skipped} of {tried} inputs, so the check "
                "compared too little"
            )
            if self.first_skip is not None:
                line += f" (first: input {_show(self.first_skip[0])}: {self.first_skip[1]})"
        return line


def exhaustive_length(n_vocab: int, max_len: int, budget: int = EXHAUSTIVE_BUDGET) -> int:
    """The largest L <= max_len with n_vocab + n_vocab^2 + ... + n_vocab^L <= budget."""
    total, length = 0, 0
    while length < max_len:
        total += n_vocab ** (length + 1)
        if total > budget:
            break
        length += 1
    return length


def verify(
    sop: ir.SOp,
    model: CompiledModel,
    vocab: Sequence[Atom],
    max_len: int,
    samples: int = 500,
    exhaustive_len: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> VerifyReport:
    """Run ``model`` and the interpreter on the same inputs and compare (see module doc).

    Outputs agree when they have the same length and, position by position, the same
    kind of value (string, bool, number) and the same value; floats may differ by a
    relative 1e-9 (rounding of a mean), nothing else may.  Equal outputs where one has an
    int and the other a float (1 against 1.0) are counted apart, in
    ``kind_differences``: the compiled model carries a number, and where an output can be
    either (an s-op computed from a mean, which is an int from one key and a float from
    several) it tells the kind only for an aggregate's own output.
    """
    vocab = tuple(vocab)
    if exhaustive_len is None:
        exhaustive_len = exhaustive_length(len(vocab), max_len)
    exhaustive_len = max(0, min(exhaustive_len, max_len))
    n_exhaustive = sum(len(vocab) ** k for k in range(1, exhaustive_len + 1))
    samples = max(0, samples)
    total = n_exhaustive + samples

    inputs = itertools.chain(
        all_inputs(vocab, exhaustive_len), random_inputs(vocab, max_len, samples, seed)
    )
    done = skipped = bad = kinds = 0
    first: Counterexample | None = None
    first_kind: Counterexample | None = None
    first_skip: tuple[tuple[Atom, ...], str] | None = None
    while batch := list(itertools.islice(inputs, BATCH)):
        expected: list[list[Atom] | None] = []
        for inp in batch:
            try:
                expected.append(list(evaluate(sop, inp)))  # type: ignore[arg-type]
            except RaspError as exc:
                expected.append(None)
                first_skip = first_skip or (tuple(inp), exc.message)
        runnable = [inp for inp, exp in zip(batch, expected, strict=True) if exp is not None]
        outputs = iter(model.run_batch(runnable))
        for inp, exp in zip(batch, expected, strict=True):
            if exp is None:
                skipped += 1
                continue
            got = next(outputs)
            if not same_output(exp, got):
                bad += 1
                if first is None:
                    first = Counterexample(tuple(inp), tuple(exp), tuple(got))
            elif not same_kinds(exp, got):
                kinds += 1
                if first_kind is None:
                    first_kind = Counterexample(tuple(inp), tuple(exp), tuple(got))
        done += len(batch)
        if progress is not None:
            progress(done, total)
    return VerifyReport(
        checked=done - skipped,
        exhaustive=n_exhaustive,
        random=samples,
        skipped=skipped,
        mismatches=bad,
        first_counterexample=first,
        exhaustive_len=exhaustive_len,
        max_len=max_len,
        first_skip=first_skip,
        kind_differences=kinds,
        first_kind_difference=first_kind,
    )


def same_output(expected: Sequence[Atom], got: Sequence[Atom]) -> bool:
    """Position-wise agreement of two s-op values (see :func:`verify`)."""
    return len(expected) == len(got) and all(map(_same_atom, expected, got))


def _kind(x: Atom) -> str:
    return "bool" if isinstance(x, bool) else "str" if isinstance(x, str) else "number"


def same_kinds(expected: Sequence[Atom], got: Sequence[Atom]) -> bool:
    """Do equal outputs also hold ints and floats at the same positions (``1`` is printed
    ``1``, ``1.0`` is printed ``1.0``)?"""
    return all(type(a) is type(b) for a, b in zip(expected, got))


def _same_atom(a: Atom, b: Atom) -> bool:
    if _kind(a) != _kind(b):
        return False
    if isinstance(a, float) or isinstance(b, float):
        fa, fb = float(a), float(b)
        if math.isnan(fa) or math.isnan(fb):
            return math.isnan(fa) and math.isnan(fb)
        return fa == fb or math.isclose(fa, fb, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def all_inputs(vocab: Sequence[Atom], up_to: int) -> Iterator[tuple[Atom, ...]]:
    """Every input over ``vocab`` of length 1..``up_to``, shortest first."""
    for n in range(1, up_to + 1):
        yield from itertools.product(vocab, repeat=n)


def random_lengths(rng: random.Random, max_len: int, count: int) -> Iterator[int]:
    """``count`` input lengths: the first quarter (and at least one) ``max_len`` -- long
    inputs are where attention is least sharp -- the rest uniform over 1..``max_len``."""
    at_max = max(1, count // 4)
    for i in range(count):
        yield max_len if i < at_max else rng.randint(1, max_len)


def random_inputs(
    vocab: Sequence[Atom], max_len: int, count: int, seed: int = 0
) -> Iterator[tuple[Atom, ...]]:
    """``count`` random inputs over ``vocab`` (tokens uniform), lengths as
    :func:`random_lengths` draws them; the same ``seed`` gives the same inputs."""
    rng = random.Random(seed)
    for n in random_lengths(rng, max_len, count):
        yield tuple(rng.choice(vocab) for _ in range(n))


def _show(values: Sequence[Atom]) -> str:
    """One output as the command line's ``--json`` prints it."""
    return json.dumps(to_json_value(list(values)), ensure_ascii=False)
