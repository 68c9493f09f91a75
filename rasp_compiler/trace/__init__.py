"""The trace page: a compiled model at work on one input (``rasp-compiler trace``).

:mod:`.collect` gathers the data (attention patterns, residual stream, every s-op read
back from the residual next to the interpreter's value) as plain Python structures;
:mod:`.html` renders it as one self-contained HTML page; :mod:`.figures` draws the
heatmaps as standalone SVG files (for papers and slides) and as the page's inline SVG.
:mod:`.placement` and :mod:`.layout` serve ``draw``: where each node sits in the
compiled model, and a layered layout with edge routing.

:func:`compiled_program` and :func:`saved_model` give what a trace needs (the s-op,
its model, the names and the source); :func:`trace_program` puts the steps together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..language import ir
from ..language.ir import Atom
from ..runtime import CompiledModel
from .collect import Trace, collect

__all__ = ["Trace", "Traced", "collect", "compiled_program", "saved_model", "trace_program"]


@dataclass
class Traced:
    """A program's s-op, the model compiled from it, the names and the source lines."""

    sop: ir.SOp
    model: CompiledModel
    names: dict[int, str]
    source: list[str]

    def trace(self, inp: str | Sequence[Atom]) -> Trace:
        return collect(self.sop, self.model, inp, self.names, self.source)


def compiled_program(
    path: str | Path,
    vocab: str | Sequence[Atom],
    max_len: int,
    sop_name: str | None = None,
    dtype: str = "float32",
    allow_partial: bool = False,
) -> Traced:
    """Compile the program file ``path`` (its s-op ``sop_name``, default the last;
    ``allow_partial`` as in :func:`~rasp_compiler.compiler.pipeline.compile_sop`)."""
    from ..compiler.pipeline import compile_sop, names_of, parse_vocab
    from ..language.files import read_source
    from ..language.lower import choose_sop, load_program

    session = load_program(path)
    name, sop = choose_sop(session, sop_name, str(path))
    names = names_of(session)
    model = compile_sop(
        sop, parse_vocab(vocab), max_len, names=names, program_name=str(path), sop_name=name,
        dtype=dtype, allow_partial=allow_partial,
    )  # fmt: skip
    return Traced(sop, model, names, read_source(Path(path)).splitlines())


def saved_model(model_dir: str | Path) -> Traced:
    """A saved model and its program: the source its ``config.json`` records (written
    since model cards), else the file its spec names (relative to the current directory
    if relative).  InputError when neither is there; :func:`collect` refuses a program
    that does not compile to this model."""
    import json

    from ..compiler.pipeline import names_of
    from ..errors import InputError
    from ..language.files import read_source
    from ..language.lower import get_sop, load_source
    from ..serialize import CONFIG_FILE, load_model

    model = load_model(model_dir)  # checks config.json against its hash
    recorded = json.loads((Path(model_dir) / CONFIG_FILE).read_text(encoding="utf-8"))
    text = recorded.get("source") if isinstance(recorded, dict) else None
    program = Path(model.spec.program_name)
    if not isinstance(text, str):
        if not program.is_file():
            raise InputError(
                f"cannot trace the saved model {model_dir}: it records no program source and "
                f"was compiled from {model.spec.program_name!r}, which is not a file here "
                "(trace the .rasp program with --vocab and --max-len instead)"
            )
        text = read_source(program)
    base = program.parent if program.parent.is_dir() else Path(model_dir)
    session = load_source(text, model.spec.program_name, base_dir=base)
    sop = get_sop(session, model.spec.sop_name)
    return Traced(sop, model, names_of(session), text.splitlines())


def trace_program(
    path: str | Path,
    inp: str | Sequence[Atom],
    vocab: str | Sequence[Atom],
    max_len: int,
    sop_name: str | None = None,
    dtype: str = "float32",
    allow_partial: bool = False,
) -> Trace:
    """Compile the program file ``path`` and trace it on ``inp``."""
    return compiled_program(path, vocab, max_len, sop_name, dtype, allow_partial).trace(inp)
