"""The compiler pipeline: a RASP s-op -> an exact PyTorch transformer.

Stages, in order (one module each)::

    graph.build_graph     IR -> networkx dataflow graph (for inspection and checks)
    value_sets.infer      the values every s-op can take
    plan.Planner          encodings, heads, MLPs and their layers
    assemble.assemble     residual layout and TransformerLens weights
    runtime.CompiledModel the torch module users run
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import CompileError, InputError
from ..language import ir
from ..language.ir import Atom
from ..language.lower import Session, get_sop, load_program, load_source
from ..runtime import CompiledModel, ModelSpec, OutputSpec
from .assemble import assemble
from .graph import build_graph
from .plan import CatRep, PlanError, Planner
from .value_sets import infer_value_sets, sort_values

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def parse_vocab(text: str | Sequence[Atom]) -> tuple[Atom, ...]:
    """``--vocab``: a string of one-character tokens, or a JSON list of atoms."""
    import json

    if isinstance(text, str):
        stripped = text.strip()
        if stripped.startswith("["):
            try:
                items = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise InputError(f"--vocab is not a valid JSON list: {exc}") from None
            if not isinstance(items, list) or not all(
                isinstance(x, (str, int, float, bool)) for x in items
            ):
                raise InputError("--vocab JSON must be a list of strings, numbers or booleans")
        else:
            items = list(text)
    else:
        items = list(text)
    seen: list[Atom] = []
    for x in items:
        if not any(type(x) is type(y) and x == y for y in seen):
            seen.append(x)
    if not seen:
        raise InputError("the vocabulary is empty")
    return tuple(seen)


def names_of(session: Session) -> dict[int, str]:
    """node id -> the user's name for it (the first name bound to it)."""
    out: dict[int, str] = {}
    for name, value in session.names().items():
        if isinstance(value, ir.Node) and value.id not in out:
            out[value.id] = name
    return out


def _conversions(root: ir.SOp) -> dict[int, str]:
    return {n.id: n.conv for n in ir.walk(root) if isinstance(n, ir.Tokens)}


def compile_sop(
    sop: ir.SOp,
    vocab: Sequence[Atom],
    max_len: int,
    *,
    names: dict[int, str] | None = None,
    program_name: str = "<program>",
    sop_name: str = "out",
    dtype: str = "float32",
) -> CompiledModel:
    """Compile the s-op ``sop`` for inputs over ``vocab`` of length 1..``max_len``.

    Raises :class:`CompileError` listing every construct that cannot be compiled exactly.
    """
    if max_len < 1:
        raise InputError(f"--max-len must be at least 1, got {max_len}")
    vocab = tuple(vocab)
    started = time.perf_counter()
    names = names or {}
    build_graph(sop)  # validates the DAG (selectors feed only aggregates and widths)
    sets, problems = infer_value_sets(sop, vocab, max_len)
    if problems:
        raise CompileError(problems)
    planner = Planner(sets, max_len, names, _conversions(sop))
    for node in ir.walk(sop):
        for child in node.children():
            if child.span is None and node.span is not None:
                planner.used_at.setdefault(child.id, node.span)
    if dtype not in DTYPES:
        raise InputError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    try:
        output = planner.cat(sop) if planner.cheap_cat(sop) else planner.num(sop)
        if planner.problems:
            raise CompileError(planner.problems)
        planner.prune(output)
        asm = assemble(planner, output, vocab, max_len, dtype)
    except PlanError as exc:  # a stage gave up at once: report it with any collected so far
        problems = planner.problems if exc in planner.problems else [*planner.problems, exc]
        raise CompileError(problems) from None
    except (ValueError, IndexError, KeyError):
        # After a recorded problem, planning goes on over an empty placeholder to collect
        # more; an operation that then trips over the placeholder adds nothing new.
        if planner.problems:
            raise CompileError(planner.problems) from None
        raise
    if isinstance(output, CatRep):
        out_spec = OutputSpec("categorical", values=output.values)
    else:
        out_spec = OutputSpec("numerical", values=sort_values(output.values))
    spec = ModelSpec(
        program_name=program_name,
        sop_name=sop_name,
        vocab=vocab,
        max_len=max_len,
        output=out_spec,
        dtype=dtype,
        layout=tuple(asm.layout.describe()),
        layers=tuple(asm.layers),
        extra={"compile_seconds": round(time.perf_counter() - started, 4)},
    )
    from ..model import ModelConfig

    config = ModelConfig(
        d_model=asm.d_model,
        n_layers=asm.n_layers,
        n_heads=asm.n_heads,
        d_head=asm.d_head,
        d_mlp=asm.d_mlp,
        d_vocab=spec.d_vocab,
        d_vocab_out=out_spec.d_vocab_out,
        n_ctx=max_len + 1,
        attn_scale=asm.attn_scale,
    )
    model = CompiledModel.build(config, spec, asm.weights)
    return model.to(DTYPES[dtype])


def compile_program(
    program: str | Path | Session,
    sop_name: str | None = None,
    vocab: str | Sequence[Atom] = "abcd",
    max_len: int = 16,
    dtype: str = "float32",
) -> CompiledModel:
    """Compile the s-op ``sop_name`` of a program.

    ``program`` is a path to a ``.rasp`` file, RASP source text, or a lowered
    :class:`~rasp_compiler.lower.Session`.  ``sop_name`` defaults to the last s-op the
    program assigns.  ``vocab`` is a string of one-character tokens, a JSON list, or a
    sequence of atoms.
    """
    if isinstance(program, Session):
        session, pname = program, "<session>"
    elif isinstance(program, Path) or (
        isinstance(program, str) and program.endswith(".rasp") and "\n" not in program
    ):
        session, pname = load_program(program), str(program)
    else:
        session, pname = load_source(program), "<source>"
    if sop_name is None:
        sop_name = session.last_sop_name()
        if sop_name is None:
            raise InputError(f"{pname} assigns no s-op; name one with --sop")
    sop = get_sop(session, sop_name)
    return compile_sop(
        sop,
        parse_vocab(vocab),
        max_len,
        names=names_of(session),
        program_name=pname,
        sop_name=sop_name,
        dtype=dtype,
    )


def largest_certified_length(
    sop: ir.SOp, vocab: Sequence[Atom], dtype: str, upto: int = 1024
) -> tuple[int, str | None]:
    """The largest max length (a power of two, or ``upto``) certified exact in ``dtype``.

    Returns the length (0 if none) and the reason the next length was refused.
    """
    best, reason, n = 0, None, 1
    while n <= upto:
        try:
            compile_sop(sop, tuple(vocab), n, dtype=dtype)
        except CompileError as exc:
            reason = exc.problems[0].message if exc.problems else exc.message
            break
        best = n
        n = upto if n < upto < 2 * n else 2 * n
    return best, reason
