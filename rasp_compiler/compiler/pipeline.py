"""The compiler pipeline: a RASP s-op -> an exact PyTorch transformer.

Stages, in order (one module each)::

    share.share_common      equal sub-expressions merged into one node
    graph.build_graph       IR -> networkx dataflow graph, its structure checked
    value_sets.infer        the values every s-op can take
    probe                   the interpreter is defined on some input (else nothing to compile)
    plan.make.plan_sop      encodings, heads, MLP jobs and their layers (a draft)
    finalize.finalize       MLP tables built, every head's leak settled: the Plan
    certify.certify         the plan stays exact under the dtype's rounding
    assemble.assemble       residual layout, config and TransformerLens weights
    runtime.CompiledModel   the torch module users run

Each stage returns data or a list of problems; a problem stops the pipeline with a
:class:`CompileError` that lists them all.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..arguments import vocab_arg, vocab_atoms
from ..dtypes import UNIT_ROUNDOFF, check_dtype, narrow_bits, torch_dtype
from ..errors import CompileError, InputError, RaspError
from ..language import ir
from ..language.ir import Atom
from ..language.lower import Session, choose_sop, deep_recursion, load_program, load_source
from ..limits import MAX_LEN
from ..progress import ProgressFn
from ..runtime import CompiledModel, ModelSpec, OutputSpec
from .assemble import Assembled, assemble, size_before_tables
from .certify import certify, steep_joint_tables, tilted_heads
from .count_precision import imprecise_numbers, measure_count_keys
from .exact_tables import proven_exact
from .finalize import finalize
from .graph import build_graph, depth_problems, spans_of_use, structure_problems
from .plan.elementwise import kind_ambiguous
from .plan.make import plan_sop
from .plan.types import CatRep, Plan, PlanFailure
from .probe import mixed_aggregates, rejected_inputs, undefined_everywhere
from .rewrite import bos_widths, count_comparisons, count_differences
from .share import share_common
from .value_sets import infer_value_sets, sort_values


def parse_vocab(text: str | Sequence[Atom]) -> tuple[Atom, ...]:
    """``--vocab``: a string of one-character tokens, a JSON list of atoms, or a sequence
    of atoms; the command line's checks (:mod:`rasp_compiler.arguments`) apply."""
    vocab = vocab_arg(text) if isinstance(text, str) else vocab_atoms(text)
    if not vocab:
        raise InputError("the vocabulary is empty")
    return vocab


def names_of(session: Session) -> dict[int, str]:
    """node id -> the user's name for it (the first name bound to it)."""
    out: dict[int, str] = {}
    for name, value in session.names().items():
        if isinstance(value, ir.Node) and value.id not in out:
            out[value.id] = name
    return out


def planned_program(sop: ir.SOp, max_len: int) -> ir.SOp:
    """The s-op as the compiler plans it: rewritten (:mod:`.rewrite`) and with equal
    sub-expressions merged (:mod:`.share`).  Doing it again leaves it as it is, so what
    plans a program and reads its plan back (trace, circuits, draw) makes it once and
    passes the same nodes to :func:`make_plan`."""
    compared = count_comparisons(bos_widths(sop, max_len), max_len)
    return share_common(count_differences(compared, max_len))


#: most times planning starts again with more s-ops kept from joint number tables
MAX_REPLANS = 8


def make_plan(
    sop: ir.SOp,
    vocab: tuple[Atom, ...],
    max_len: int,
    names: dict[int, str] | None = None,
    progress: ProgressFn | None = None,
    dtype: str = "float32",
    head_masks: bool = True,
) -> Plan:
    """The frozen plan computing ``sop`` for inputs over ``vocab`` up to ``max_len``
    (telling ``progress`` its stages).

    Heads that must weigh their keys equally may not read joint tables over several
    numbers whose ``dtype`` rounding would tilt them (:func:`.certify.tilted_heads`): the
    plan is made again with the s-ops those tables compute computed from one number at a
    time (costing a layer), until no head is tilted or nothing is left to change.  Without
    ``head_masks`` no head attends within a static mask (index comparisons are scored
    from one-hots).

    Raises :class:`CompileError` listing every construct that cannot be compiled exactly."""
    say = progress or _silent
    say("checking the program", 0, 0)
    sop = planned_program(sop, max_len)
    graph = build_graph(sop)
    _stop_on(structure_problems(graph))
    _stop_on(depth_problems(graph))
    say("value sets", 0, 0)
    sets, problems = infer_value_sets(sop, vocab, max_len)
    _stop_on(problems)
    _stop_on(undefined_everywhere(sop, vocab, max_len))
    no_joint: frozenset[int] = frozenset()
    plain: frozenset[int] = frozenset()
    proven: frozenset[str] = frozenset()
    numbers: frozenset[str] = frozenset()
    plan: Plan | PlanFailure | None = None
    imprecise: list = []
    tilted: list = []
    for _ in range(MAX_REPLANS + 1):
        say("planning heads and MLPs", 0, 0)
        with deep_recursion():  # planning recurses along the program's chains of operations
            draft = plan_sop(
                sop,
                sets,
                max_len,
                names or {},
                spans_of_use(graph),
                no_joint=no_joint,
                head_masks=head_masks,
                dtype=dtype,
                plain_counts=plain,
                proven=proven,
                proven_numbers=numbers,
            )
        if isinstance(draft, PlanFailure):
            raise CompileError(list(draft.problems))
        _stop_on(size_before_tables(draft, len(vocab)))
        plan = finalize(draft, progress, narrow_bits(dtype))
        if isinstance(plan, PlanFailure):
            raise CompileError(list(plan.problems))
        plan, imprecise = measure_count_keys(plan, dtype)
        if imprecise:  # those counts are compared through one-hots instead
            plain = plain.union(node for _, node in imprecise)
            continue
        tilted = []
        if UNIT_ROUNDOFF[dtype] > UNIT_ROUNDOFF["float32"]:
            plan = replace(plan, proven=proven, proven_numbers=numbers)
            found = proven_exact(plan, dtype)
            if found != (proven, numbers):  # heads may read them as they read embeddings
                proven, numbers = found
                continue
        tilted = _tilted(plan, dtype)
        more = no_joint.union(*(sources for _, sources in tilted))
        if not tilted or more == no_joint:
            break
        no_joint = more
    else:  # out of replans: the last plan still gets every check
        if isinstance(plan, Plan) and not imprecise and not tilted:
            tilted = _tilted(plan, dtype)
    _stop_on([error for error, _ in imprecise])
    _stop_on([error for error, _ in tilted])
    assert isinstance(plan, Plan)
    return replace(
        plan,
        no_joint=no_joint,
        plain_counts=plain,
        head_masks=head_masks,
        dtype=dtype,
        proven=proven,
        proven_numbers=numbers,
    )


def _tilted(plan: Plan, dtype: str) -> list:
    """Heads a joint table's rounding tilts, numbers a mean's tables move too far, and
    joint tables too steep for ``dtype``, each with the s-ops to plan apart."""
    return (
        tilted_heads(plan, dtype) + imprecise_numbers(plan, dtype) + steep_joint_tables(plan, dtype)
    )


def compile_sop(
    sop: ir.SOp,
    vocab: Sequence[Atom],
    max_len: int,
    *,
    names: dict[int, str] | None = None,
    program_name: str = "<program>",
    sop_name: str = "out",
    dtype: str = "float32",
    progress: ProgressFn | None = None,
    head_masks: bool = True,
    allow_partial: bool = False,
) -> CompiledModel:
    """Compile the s-op ``sop`` for inputs over ``vocab`` of length 1..``max_len``.
    ``head_masks=False`` keeps every head unmasked (for formats with one attention mask
    per model, such as TransformerLens's), at the cost of one-hots of the indices.
    An aggregate over non-numbers that selects several keys on some input (the
    reference rejects it there) is refused unless ``allow_partial``.

    Raises :class:`CompileError` listing every construct that cannot be compiled exactly
    (or exactly in ``dtype``)."""
    if not 1 <= max_len <= MAX_LEN:
        raise InputError(
            f"--max-len must be between 1 and {MAX_LEN:,} (the limit), got {max_len:,}"
        )
    check_dtype(dtype)
    vocab = tuple(vocab)
    started = time.perf_counter()
    say = progress or _silent
    # the program as planned (rewritten, shared), kept on the model with its plan so that
    # what reads the plan again (circuit.json when saving) need not rebuild the tables
    if not allow_partial:
        _stop_on(mixed_aggregates(sop, vocab, max_len))
    root = planned_program(sop, max_len)
    plan = make_plan(root, vocab, max_len, names, progress, dtype, head_masks)
    say("certifying", 0, 0)
    _stop_on(certify(plan, dtype))
    say("weights", 0, 0)
    asm = assemble(plan, vocab, dtype)
    spec = _model_spec(plan, asm, vocab, program_name, sop_name, dtype, started)
    model = CompiledModel.build(asm.config, spec, asm.weights).to(torch_dtype(dtype))
    model.compiled_from = (root, plan, dict(names or {}))
    model.warnings = rejected_inputs(sop, vocab, max_len) + _kind_warning(plan, root)
    return model


def _kind_warning(plan: Plan, root: ir.SOp) -> list[str]:
    """A warning when the output can be an int or an equal float (1 or 1.0) and the
    model cannot say which (it can for an aggregate's own output: ``output_kinds``)."""
    if plan.kinds_known or not kind_ambiguous(plan.output.values):
        return []
    where = f"{root.span.location}: " if root.span is not None else ""
    return [
        f"{where}this output can be an int or an equal float (such as 1 and 1.0, from a "
        "mean that is an int over one key and a float over several); the model carries "
        "the number, not its kind, so it may print one where the interpreter prints the "
        "other (verify counts these apart from mismatches)"
    ]


def _silent(stage: str, done: int, total: int) -> None:
    pass


def _stop_on(problems: Sequence[RaspError]) -> None:
    if problems:
        raise CompileError(list(problems))


def _model_spec(
    plan: Plan,
    asm: Assembled,
    vocab: tuple[Atom, ...],
    program_name: str,
    sop_name: str,
    dtype: str,
    started: float,
) -> ModelSpec:
    out = plan.output
    if isinstance(out, CatRep):
        out_spec = OutputSpec("categorical", values=out.values)
    else:
        kinds = plan.output_kinds
        values = out.values
        if plan.output_reciprocal:  # the logit is 1/(w+1); the output is w
            values = tuple(round(1.0 / float(x)) - 1 for x in out.values)  # type: ignore[arg-type]
        out_spec = OutputSpec(
            "numerical",
            values=sort_values(values),
            kinds=None if kinds is None else (kinds.default, kinds.single),
            reciprocal=plan.output_reciprocal,
        )
    return ModelSpec(
        program_name=program_name,
        sop_name=sop_name,
        vocab=vocab,
        max_len=plan.max_len,
        output=out_spec,
        dtype=dtype,
        layout=tuple(asm.layout.describe()),
        layers=tuple(info.to_dict() for info in asm.layers),
        extra={"compile_seconds": round(time.perf_counter() - started, 4)},
    )


def compile_program(
    program: str | Path | Session,
    sop_name: str | None = None,
    vocab: str | Sequence[Atom] = "abcd",
    max_len: int = 16,
    dtype: str = "float32",
    progress: ProgressFn | None = None,
    head_masks: bool = True,
    allow_partial: bool = False,
) -> CompiledModel:
    """Compile the s-op ``sop_name`` of a program (``progress(stage, done, total)`` hears
    of its stages; :class:`rasp_compiler.progress.Progress` shows them on a terminal).

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
    sop_name, sop = choose_sop(session, sop_name, pname)
    return compile_sop(
        sop,
        parse_vocab(vocab),
        max_len,
        names=names_of(session),
        program_name=pname,
        sop_name=sop_name,
        dtype=dtype,
        progress=progress,
        head_masks=head_masks,
        allow_partial=allow_partial,
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
