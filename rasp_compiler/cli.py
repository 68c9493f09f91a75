"""The command line: ``rasp-compiler`` (also ``python -m rasp_compiler``).

Subcommands::

    eval     PROGRAM.rasp [--sop NAME] --input TEXT ...           run the interpreter
    repl                                                        the interactive RASP REPL
    compile  PROGRAM.rasp [--sop NAME] --vocab V --max-len N -o MODEL_DIR
    run      PROGRAM.rasp [--sop NAME] --vocab V --max-len N --input TEXT ...
    run      MODEL_DIR --input TEXT ...                         run a saved model
    verify   PROGRAM.rasp [--sop NAME] --vocab V --max-len N   model == interpreter?
    inspect  PROGRAM.rasp [--sop NAME] --vocab V --max-len N   layers, heads, units, layout
    inspect  MODEL_DIR                                          the same for a saved model

Inputs: ``--input TEXT`` is one token per character; ``--input-json '["hi","you"]'`` is
a list of tokens.  Each input gives one output line, ``[o, l, l, e, h] (strings)`` or,
with ``--json``, ``["o", "l", "l", "e", "h"]``.

Every user error (a RaspError, an unreadable file, a bad argument) prints a message on
stderr -- for program errors file:line:col and a caret -- and exits 1 (2 for a usage
error); Ctrl-C exits 130.  No traceback is shown unless RASP_COMPILER_DEBUG=1.

What a command line may ask for is bounded (:mod:`rasp_compiler.limits`, each refused
before any work with the limit named): ``--max-len`` at most MAX_LEN; ``--vocab`` at most
MAX_VOCAB_SIZE distinct tokens, with no two atoms Python treats as equal (``1``, ``1.0``,
``true``); an input at most MAX_INPUT_LEN tokens; JSON holds a flat list of strings,
finite numbers (integers of at most MAX_INT_DIGITS digits) and booleans, strings of at
most MAX_STRING_LEN characters; ``verify`` runs at most MAX_VERIFY_INPUTS inputs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, cast

from . import __version__
from .arguments import check_verify_size, json_atoms, vocab_arg
from .dtypes import DTYPE_NAMES
from .errors import InputError, RaspError
from .language import ir
from .language.display import format_sop, to_json_value
from .language.ir import Atom
from .limits import MAX_INPUT_LEN, MAX_LEN

PROG = "rasp-compiler"
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130

# Modules with a ``register(subparsers)`` that adds their subcommand(s); each entry is
# on a line of its own, the module imports from this one what it needs (program_args,
# model_args, input_args, _compile, ...) and sets ``handler`` like the commands below.
COMMAND_MODULES: tuple[str, ...] = (
    ".cli_trace",  # rasp-compiler trace
    ".cli_export",  # rasp-compiler export
    ".cli_bench",  # rasp-compiler bench-suite
)


class UsageError(Exception):
    """A bad command line (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.format_usage().rstrip()}\n{self.prog}: error: {message}")


# ------------------------------------------------------------------ arguments


def _json_input(text: str) -> list[Atom]:
    """``--input-json``: a non-empty JSON list of atoms (or a JSON string)."""
    try:
        value = json_atoms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if len(value) > MAX_INPUT_LEN:
        raise argparse.ArgumentTypeError(
            f"an input of {len(value):,} tokens; the limit is {MAX_INPUT_LEN:,}"
        )
    return list(value)


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _max_len(text: str) -> int:
    n = _positive_int(text)
    if n > MAX_LEN:
        raise argparse.ArgumentTypeError(
            f"at most {MAX_LEN:,} (the limit; the compiler builds nothing that long), got {n:,}"
        )
    return n


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {n}")
    return n


def program_args(p: argparse.ArgumentParser, what: str = "PROGRAM.rasp") -> None:
    """PROGRAM and --sop."""
    p.add_argument("program", metavar=what, help="a RASP program file")
    p.add_argument("--sop", metavar="NAME", help="the s-op to use (default: the last one)")


def model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """--vocab, --max-len and --dtype."""
    p.add_argument(
        "--vocab",
        required=required,
        metavar="TOKENS",
        help='the input vocabulary: one-character tokens ("abc") or a JSON list',
    )
    p.add_argument(
        "--max-len", required=required, type=_max_len, metavar="N",
        help="the longest input the model accepts",
    )  # fmt: skip
    p.add_argument(
        "--dtype", default="float32", choices=DTYPE_NAMES,
        help="the dtype the model runs in; compilation refuses what it cannot certify",
    )  # fmt: skip
    p.add_argument(
        "--quiet", action="store_true",
        help="no progress line while compiling (there is none off a terminal either)",
    )  # fmt: skip
    p.add_argument(
        "--allow-partial", action="store_true",
        help="compile an aggregate of non-numbers that selects several keys on some inputs "
        "(the interpreter rejects those inputs; the model's answer there means nothing)",
    )  # fmt: skip


def input_args(p: argparse.ArgumentParser) -> None:
    """--input, --input-json (repeatable) and --json."""
    p.add_argument(
        "--input", dest="inputs", action="append", default=[], metavar="TEXT",
        help="an input, one token per character (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--input-json", dest="inputs", action="append", type=_json_input, metavar="JSON",
        help='an input as a JSON list, e.g. \'["hi", "there"]\' (repeatable)',
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print each output as a JSON list")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for every subcommand."""
    parser = _Parser(
        prog=PROG,
        description="Compile RASP programs to exact transformer weights, run and check them.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("eval", help="run a program with the reference interpreter")
    program_args(p)
    input_args(p)
    p.set_defaults(handler=cmd_eval)

    p = sub.add_parser("repl", help="the interactive RASP REPL")
    p.set_defaults(handler=cmd_repl)

    p = sub.add_parser("compile", help="compile a program and save the model")
    program_args(p)
    model_args(p)
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR", help="where to save")
    p.add_argument(
        "--no-head-masks", action="store_true",
        help="no head attends within a static mask (for `export --format transformer-lens`)",
    )  # fmt: skip
    p.set_defaults(handler=cmd_compile)

    p = sub.add_parser("run", help="compile and run a program, or run a saved model")
    program_args(p, "PROGRAM.rasp|MODEL_DIR")
    model_args(p, required=False)
    input_args(p)
    p.add_argument(
        "--device", default="cpu", choices=["cpu", "cuda"], help="where to run (default: cpu)"
    )
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("verify", help="check the compiled model against the interpreter")
    program_args(p)
    model_args(p)
    p.add_argument(
        "--samples", type=_count, default=500, metavar="K",
        help="random inputs of lengths up to --max-len (default 500)",
    )  # fmt: skip
    p.add_argument(
        "--exhaustive-len", type=_count, default=None, metavar="L",
        help="check every input up to this length (default: as long as ~20000 inputs allow)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser("inspect", help="describe a model's layers, units and residual stream")
    program_args(p, "PROGRAM.rasp|MODEL_DIR")
    model_args(p, required=False)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_inspect)

    for module in COMMAND_MODULES:  # subcommands that live in modules of their own
        importlib.import_module(module, __package__).register(sub)
    return parser


# ------------------------------------------------------------------ shared steps


def _load(path: str, draw: bool = True, draw_input: Any = None, errors: Any = None) -> Any:
    """Parse and lower a program file; ``draw(...)`` writes SVGs into the current directory
    (with values on ``draw_input`` when the statement gives no input).  With an ``errors``
    list, a failing statement is printed and kept there and the rest runs (as the
    reference runs a file); without, the first one is raised."""
    from .draw import make_draw_hook
    from .language.files import read_source
    from .language.lower import Session
    from .language.parser import parse

    file = Path(path)
    text = read_source(file)
    holder: list[Session] = []
    hook = (
        make_draw_hook(lambda: holder[0].names(), echo=_note, default_input=lambda: draw_input)
        if draw
        else None
    )
    session = Session(base_dir=file.resolve().parent, draw_hook=hook)
    holder.append(session)
    for result in session.execute(parse(text, str(path)), keep_going=errors is not None):
        if result.kind == "error":
            err = cast("RaspError", result.value)
            print(err.render(), file=sys.stderr)
            errors.append(err)
    return session


def _compile(args: argparse.Namespace, session: Any = None) -> tuple[ir.SOp, Any]:
    """(the s-op, its CompiledModel) for a program file and --vocab/--max-len."""
    tokens = vocab_arg(args.vocab)  # refused before the compiler (and torch) is imported

    from .compiler.pipeline import compile_sop, names_of, parse_vocab
    from .language.lower import choose_sop

    vocab = parse_vocab(tokens)
    session = session if session is not None else _load(args.program)
    name, sop = choose_sop(session, args.sop, args.program)
    from .progress import Progress

    with Progress(enabled=False if getattr(args, "quiet", False) else None) as progress:
        model = compile_sop(
            sop, vocab, args.max_len, names=names_of(session), program_name=args.program,
            sop_name=name, dtype=getattr(args, "dtype", "float32") or "float32",
            progress=progress, head_masks=not getattr(args, "no_head_masks", False),
            allow_partial=getattr(args, "allow_partial", False),
        )  # fmt: skip
    for warning in model.warnings:
        _note(f"{PROG}: warning: {warning}")
    return sop, model


def is_saved_model(args: argparse.Namespace) -> bool:
    """Whether PROGRAM names a saved model directory (then --vocab, --max-len and --sop
    must not be given) rather than a program to compile (then --vocab and --max-len must)."""
    if Path(args.program).is_dir():
        given = [f for f, v in (("--vocab", args.vocab), ("--max-len", args.max_len),
                                ("--sop", args.sop)) if v is not None]  # fmt: skip
        if given:
            raise UsageError(
                f"{PROG} {args.command}: {', '.join(given)} only apply when compiling a .rasp "
                f"program; the saved model {args.program} has its own"
            )
        return True
    missing = [f for f, v in (("--vocab", args.vocab), ("--max-len", args.max_len)) if v is None]
    if missing:
        raise UsageError(
            f"{PROG} {args.command}: compiling {args.program} needs {' and '.join(missing)} "
            "(or give a saved model directory instead)"
        )
    return False


def _inputs(args: argparse.Namespace) -> list[str | list[Atom]]:
    if not args.inputs:
        raise UsageError(f"{PROG} {args.command}: give at least one --input or --input-json")
    for inp in args.inputs:
        if len(inp) > MAX_INPUT_LEN:
            raise InputError(f"an input of {len(inp):,} tokens; the limit is {MAX_INPUT_LEN:,}")
    return args.inputs


def _print_outputs(outputs: Sequence[Sequence[Atom]], as_json: bool) -> None:
    for values in outputs:
        if as_json:
            print(json.dumps(to_json_value(list(values)), ensure_ascii=False))
        else:
            print(format_sop(values))


def _note(message: str) -> None:
    print(message, file=sys.stderr)


# ------------------------------------------------------------------ subcommands


def cmd_eval(args: argparse.Namespace) -> int:
    from .language.interpret import evaluate
    from .language.lower import choose_sop

    inputs = _inputs(args)
    errors: list[Any] = []  # failing statements, printed; the rest of the file still runs
    session = _load(args.program, draw_input=inputs[0], errors=errors)
    _, sop = choose_sop(session, args.sop, args.program)
    outputs = []
    for inp in inputs:
        value = evaluate(sop, inp)
        assert isinstance(value, list)
        outputs.append(value)
    _print_outputs(outputs, args.json)
    return EXIT_ERROR if errors else 0


def cmd_repl(args: argparse.Namespace) -> int:
    from .repl import Repl, stdin_reader

    interactive = sys.stdin.isatty()
    return Repl().run(stdin_reader(interactive), interactive=interactive)


def cmd_compile(args: argparse.Namespace) -> int:
    from .serialize import save_model

    _, model = _compile(args)
    save_model(model, args.output)
    cfg = model.config
    print(
        f"compiled {model.spec.sop_name!r} from {args.program}: {cfg.n_layers} layers, "
        f"{_count_heads(model)} heads, {_count_mlps(model)} MLPs, d_model {cfg.d_model}, "
        f"{model.transformer.count_params():,} params -> {args.output}"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import torch

    inputs = _inputs(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: CUDA is not available on this machine (use --device cpu)")
    if is_saved_model(args):
        from .serialize import load_model

        model = load_model(args.program)
    else:
        _, model = _compile(args)
    model = model.to(args.device)
    _print_outputs(model.run_batch(inputs), args.json)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    # refused before the compiler (and torch) is imported:
    check_verify_size(args.vocab, args.exhaustive_len, args.max_len, args.samples)
    from .verification import verify

    sop, model = _compile(args)
    progress = _ProgressBar() if sys.stderr.isatty() else None
    try:
        report = verify(
            sop, model, model.spec.vocab, args.max_len, args.samples,
            exhaustive_len=args.exhaustive_len, seed=args.seed, progress=progress,
        )  # fmt: skip
    finally:
        if progress is not None:
            progress.close()
    seconds = time.perf_counter() - started
    print(f"{report.verdict()} [{seconds:.1f}s]")
    return 0 if report.ok else EXIT_ERROR


def cmd_inspect(args: argparse.Namespace) -> int:
    from .inspect_model import describe, saved_circuit

    if is_saved_model(args):
        from .serialize import load_model

        model = load_model(args.program)  # checks circuit.json against config.json
        print(describe(model, saved_circuit(args.program), args.json))
        return 0
    from .circuits import circuit_for

    sop, model = _compile(args)
    certified = _certified(sop, model.spec) if args.json else None
    print(describe(model, circuit_for(model), args.json, certified))
    return 0


def _certified(sop: ir.SOp, spec: Any) -> dict[str, int]:
    """Per dtype, the largest max length (power of two, up to this model's) certified exact."""
    from .compiler.pipeline import largest_certified_length

    return {
        dt: largest_certified_length(sop, spec.vocab, dt, upto=spec.max_len)[0]
        for dt in DTYPE_NAMES
    }


def _count_heads(model: Any) -> int:
    return sum(len(layer.get("attn", []) or []) for layer in model.spec.layers)


def _count_mlps(model: Any) -> int:
    return sum(len(layer.get("mlp", []) or []) for layer in model.spec.layers)


class _ProgressBar:
    """``verify [#########.........]  4500/5960`` on stderr, redrawn in place."""

    WIDTH = 30

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        filled = self.WIDTH * done // max(total, 1)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        sys.stderr.write(f"\rverify [{bar}] {done}/{total}")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * (self.WIDTH + 40) + "\r")
            sys.stderr.flush()


# ------------------------------------------------------------------ entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 error, 2 usage, 130 Ctrl-C)."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args))
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except RaspError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"{PROG}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:  # noqa: BLE001 - a bug: say so without a traceback
        if os.environ.get("RASP_COMPILER_DEBUG"):
            raise
        print(
            f"{PROG}: internal error: {type(exc).__name__}: {exc}\n"
            "  (this is a bug in rasp_compiler; set RASP_COMPILER_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
