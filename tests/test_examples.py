"""Every examples/*.rasp parses and lowers, its main s-op is its last assignment, and the
examples in its header hold in the interpreter (printout for printout) and in the
compiled model (value for value).

Header format (see any example)::

    # Vocabulary: abcd
    # Example: "abca" -> [1, 0.5, 0.333, 0.5] (floats)

The input is JSON (a string is one token per character); the output is the reference
printout (``display.format_sop``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rasp_compiler.compiler.pipeline import compile_sop, parse_vocab
from rasp_compiler.language import syntax as S
from rasp_compiler.language.display import format_sop
from rasp_compiler.language.interpret import evaluate
from rasp_compiler.language.lower import get_sop, load_program
from rasp_compiler.language.parser import parse
from rasp_compiler.verification import same_output

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.rasp"))
REQUIRED = {
    "reverse", "histogram", "sort", "double_histogram", "sort_by_frequency", "dyck1", "dyck2",
}  # fmt: skip


def _header(path: Path) -> tuple[str, list[tuple[object, str]]]:
    text = path.read_text(encoding="utf-8")
    vocab = re.search(r"^# Vocabulary: (\S+)$", text, re.M)
    assert vocab, f"{path.name}: no '# Vocabulary:' line"
    examples = [
        (json.loads(inp), out) for inp, out in re.findall(r"^# Example: (.+) -> (.+)$", text, re.M)
    ]
    assert examples, f"{path.name}: no '# Example:' line"
    return vocab.group(1), examples


def test_the_required_examples_exist():
    assert REQUIRED <= {p.stem for p in EXAMPLES}
    assert len(EXAMPLES) >= len(REQUIRED) + 3


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_header_starts_with_a_description(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ") and len(first) > 10


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_main_sop_is_the_last_assignment(path):
    program = parse(path.read_text(encoding="utf-8"), str(path))
    last = [st for st in program.statements if isinstance(st, S.Assign)][-1]
    session = load_program(path)
    assert session.last_sop_name() == last.targets[-1].id


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_header_examples_hold_in_the_interpreter(path):
    vocab, examples = _header(path)
    session = load_program(path)
    sop = get_sop(session, session.last_sop_name())
    tokens = set(parse_vocab(vocab))
    for inp, shown in examples:
        assert set(inp) <= tokens, f"{path.name}: example {inp!r} is outside the vocabulary"
        assert format_sop(evaluate(sop, inp)) == shown


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_header_examples_hold_in_the_compiled_model(path):
    vocab, examples = _header(path)
    session = load_program(path)
    name = session.last_sop_name()
    sop = get_sop(session, name)
    max_len = max(len(inp) for inp, _ in examples)
    model = compile_sop(sop, parse_vocab(vocab), max_len, sop_name=name)
    for (inp, _), got in zip(examples, model.run_batch([inp for inp, _ in examples]), strict=True):
        # Numbers compare by value: a numerical output cannot tell 0 from 0.0.
        assert same_output(evaluate(sop, inp), got), f"{path.name} on {inp!r}: got {got}"
