"""``rasp-compiler trace``: the compiled model at work on one input, as an HTML page.

::

    trace PROGRAM.rasp [--sop NAME] --vocab V --max-len N --input TEXT [-o PAGE.html]
    trace MODEL_DIR --input TEXT [-o PAGE.html]      (its program file must still exist)

The page (:mod:`rasp_compiler.trace`) is self-contained; it ends with the computation
graph grouped by layer and head (``draw``).  ``--svg-dir DIR`` also writes every heatmap
and the graph (``graph.svg``) as SVG files.  The command exits 1 when an s-op read back
from the model's residual stream, or the output, differs from the interpreter's (the
page still shows it, in red).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .cli import PROG, UsageError, _json_input, is_saved_model, model_args, program_args

EXIT_DISAGREE = 1


def register(sub: Any) -> None:
    """Add the ``trace`` subcommand to the subparsers ``sub``."""
    p = sub.add_parser(
        "trace", help="an HTML page of the compiled model on one input (heads, residual stream)"
    )
    program_args(p, "PROGRAM.rasp|MODEL_DIR")
    model_args(p, required=False)
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--input", metavar="TEXT", help="the input, one token per character")
    given.add_argument(
        "--input-json", type=_json_input, metavar="JSON", help="the input as a JSON list"
    )
    p.add_argument(
        "-o", "--output", metavar="PAGE.html",
        help="where to write the page (default: <program>.trace.html here)",
    )  # fmt: skip
    p.add_argument(
        "--svg-dir", metavar="DIR",
        help="also write each heatmap and the computation graph as SVG files",
    )  # fmt: skip
    p.set_defaults(handler=cmd_trace)


def cmd_trace(args: argparse.Namespace) -> int:
    from .draw import svg_document
    from .trace import compiled_program, saved_model
    from .trace.figures import write_figures
    from .trace.html import render

    inp = args.input if args.input is not None else args.input_json
    if isinstance(inp, str) and not inp:
        raise UsageError(f"{PROG} trace: --input is empty; the model needs at least one token")
    source = Path(args.program)
    if is_saved_model(args):
        traced = saved_model(source)
    else:
        traced = compiled_program(
            source, args.vocab, args.max_len, args.sop, args.dtype,
            getattr(args, "allow_partial", False),
        )  # fmt: skip
    trace = traced.trace(inp)
    shown = f'"{inp}"' if isinstance(inp, str) else "[" + ", ".join(map(str, inp)) + "]"
    title = f"{traced.model.spec.sop_name} on {shown}, grouped by layer and head"
    graph = svg_document(traced.sop, inp, traced.names, title, traced.model)
    out = Path(args.output or f"{source.name.removesuffix('.rasp')}.trace.html")
    out.write_text(render(trace, graph), encoding="utf-8")
    held = [s for s in trace.sops if s.agrees is not None]
    counts = ", ".join(
        _count(n, what) for n, what in ((trace.n_layers, "layer"), (len(trace.heads), "head"))
    )
    print(
        f"trace: wrote {out} ({counts}, {_count(len(trace.mlps), 'MLP job')}; "
        f"{len(held)} of {len(trace.sops)} s-ops held in the residual)"
    )
    if args.svg_dir:
        paths = write_figures(trace, args.svg_dir)
        (Path(args.svg_dir) / "graph.svg").write_text(graph, encoding="utf-8")
        print(f"trace: wrote {len(paths) + 1} SVG figures into {args.svg_dir}")
    if not trace.ok:
        for s in trace.disagreements:
            print(f"trace: {s.name}: the model gives {s.decoded}, the interpreter {s.interpreter}")
        print("trace: the model disagrees with the interpreter (shown in red on the page)")
        return EXIT_DISAGREE
    print(f"trace: every s-op held and the output equal the interpreter's: {_show(trace.output)}")
    return 0


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _show(values: list) -> str:
    from .language.display import format_sop

    return format_sop(values)
