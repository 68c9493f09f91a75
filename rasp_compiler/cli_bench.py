"""``rasp-compiler bench-suite``: compiled models with known circuits, for benchmarking
circuit-discovery methods.

::

    bench-suite OUT [--max-len 8] [--only NAME,...] [--examples DIR] [--corpus FILE]

Compiles every example (``examples/*.rasp``, each over the vocabulary its
``# Vocabulary: ...`` line states) and every program of the test corpus
(``EXPRESSIONS`` in ``tests/corpus.py``, each over its own vocabulary) at ``--max-len``,
and saves each as a model directory (:mod:`rasp_compiler.serialize`, with its
``circuit.json``) under ``OUT/examples/NAME`` or ``OUT/corpus/NAME``.  ``OUT/index.json``
lists every program::

    {"format": "rasp-compiler-bench-suite", "version": 1, "compiler_version": "...",
     "max_len": 8, "models": [
        {"program": "reverse", "group": "examples", "sop": "reverse", "vocab": [...],
         "max_len": 8, "dir": "examples/reverse", "circuit": "examples/reverse/circuit.json",
         "n_params": 24237, "d_model": 72, "layers": 2, "heads": 2, "mlp_jobs": 1,
         "error": null}, ...]}

A program that fails to compile is listed with ``error`` (one line) and no ``dir``;
the command still succeeds.  ``--only`` keeps the programs named (``reverse`` or
``corpus/reverse``).  ``OUT`` must be absent, empty, or an earlier bench suite (its
model directories are replaced; others are left as they are).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any

from .cli import _max_len
from .errors import RaspError

FORMAT = "rasp-compiler-bench-suite"
VERSION = 1
INDEX_FILE = "index.json"
ROOT = Path(__file__).resolve().parent.parent  # the source checkout, when run from one
_VOCAB_LINE = re.compile(r"^# Vocabulary: (\S+)\s*$", re.M)


class BenchError(RaspError):
    """A bench suite that cannot be made: a bad OUT, --only, --examples or --corpus."""

    kind = "bench-suite error"


def register(sub: Any) -> None:
    """Add the ``bench-suite`` subcommand to the subparsers ``sub``."""
    p = sub.add_parser(
        "bench-suite", help="compile the examples and the corpus into model directories"
    )
    p.add_argument("output", metavar="OUT", help="the folder to write (with index.json)")
    p.add_argument(
        "--max-len", type=_max_len, default=8, metavar="N", help="max length (default 8)"
    )
    p.add_argument("--only", metavar="NAMES", help="comma-separated program names to keep")
    p.add_argument(
        "--examples", metavar="DIR", default=str(ROOT / "examples"),
        help="the folder of example programs (default: the checkout's examples/)",
    )  # fmt: skip
    p.add_argument(
        "--corpus", metavar="FILE", default=str(ROOT / "tests" / "corpus.py"),
        help="a Python file with EXPRESSIONS = [(name, source, vocab), ...] "
        "(default: the checkout's tests/corpus.py)",
    )  # fmt: skip
    p.set_defaults(handler=cmd_bench_suite)


def cmd_bench_suite(args: argparse.Namespace) -> int:
    out = Path(args.output)
    _check_output(out)
    programs = _programs(Path(args.examples), Path(args.corpus))
    if args.only:
        wanted = {n.strip() for n in args.only.split(",") if n.strip()}
        known = {n for g, name, _, _, _ in programs for n in (name, f"{g}/{name}")}
        unknown = sorted(wanted - known)
        if unknown:
            raise BenchError(f"--only names unknown programs: {unknown}")
        programs = [p for p in programs if p[1] in wanted or f"{p[0]}/{p[1]}" in wanted]
    from . import __version__

    entries = []
    for group, name, source, path, vocab in programs:
        entry = _build(out, group, name, source, path, vocab, args.max_len)
        entries.append(entry)
        what = (
            entry["error"]
            or ", ".join(
                _count(entry[k], unit)
                for k, unit in (("layers", "layer"), ("heads", "head"), ("mlp_jobs", "MLP job"))
            )
            + f", {entry['n_params']:,} parameters"
        )
        print(f"{group}/{name}: {what}")
    index = {
        "format": FORMAT,
        "version": VERSION,
        "compiler_version": __version__,
        "max_len": args.max_len,
        "models": entries,
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{INDEX_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(index, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out / INDEX_FILE)
    failed = sum(e["error"] is not None for e in entries)
    print(
        f"bench-suite: {len(entries) - failed} models, {failed} failed to compile "
        f"-> {out / INDEX_FILE}"
    )
    return 0


def _check_output(out: Path) -> None:
    """Refuse an ``OUT`` that is a file, or a non-empty folder that is no bench suite."""
    if not out.exists():
        return
    if not out.is_dir():
        raise BenchError(f"{out} exists and is not a folder")
    if not any(out.iterdir()):
        return
    try:
        index = json.loads((out / INDEX_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        index = None
    if not (isinstance(index, dict) and index.get("format") == FORMAT):
        raise BenchError(
            f"{out} is not empty and holds no bench suite ({INDEX_FILE}); not writing into it"
        )


def _programs(examples: Path, corpus: Path) -> list[tuple[str, str, str, str, str]]:
    """(group, name, source text, where it is from, vocabulary) for every program."""
    from .language.files import read_source

    if not examples.is_dir() and not corpus.is_file():
        raise BenchError(
            f"neither {examples} nor {corpus} exists; give --examples DIR and/or --corpus FILE"
        )
    out = []
    for path in sorted(examples.glob("*.rasp")) if examples.is_dir() else []:
        text = read_source(path)
        m = _VOCAB_LINE.search(text)
        vocab = m.group(1) if m else ""
        out.append(("examples", path.stem, text, str(path), vocab))
    for name, source, vocab in _corpus(corpus) if corpus.is_file() else []:
        out.append(("corpus", name, source, str(corpus), vocab))
    return out


def _corpus(path: Path) -> list[tuple[str, str, str]]:
    """``EXPRESSIONS`` of the Python file ``path``: (name, source, vocabulary) triples."""
    spec = importlib.util.spec_from_file_location("_rasp_bench_corpus", path)
    if spec is None or spec.loader is None:
        raise BenchError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - any error in the user's file: say which, one line
        raise BenchError(f"cannot load {path}: {type(e).__name__}: {e}") from None
    items = getattr(module, "EXPRESSIONS", None)
    if not (
        isinstance(items, list)
        and all(
            isinstance(t, tuple) and len(t) == 3 and all(isinstance(x, str) for x in t)
            for t in items
        )
    ):
        raise BenchError(
            f"{path}: EXPRESSIONS must be a list of (name, source, vocabulary) string triples"
        )
    return list(items)


def _build(
    out: Path, group: str, name: str, source: str, where: str, vocab: str, max_len: int
) -> dict[str, Any]:
    """Compile one program into ``out/group/name``; its index entry (with ``error`` set,
    and nothing written, when it does not compile)."""
    from .circuits import CIRCUIT_FILE, build_circuit
    from .compiler.pipeline import compile_sop, names_of, parse_vocab
    from .language.lower import choose_sop, load_program, load_source
    from .serialize import save_model

    entry: dict[str, Any] = {"program": name, "group": group, "from": where, "sop": None,
                             "vocab": list(vocab), "max_len": max_len}  # fmt: skip
    rel = f"{group}/{name}"
    try:
        if not vocab:
            raise ValueError("it states no vocabulary (a '# Vocabulary: ...' line)")
        session = load_program(where) if group == "examples" else load_source(source)
        sop_name, sop = choose_sop(session, None, where)
        entry["sop"] = sop_name
        names = names_of(session)
        # a program some inputs break (a mean of strings there) is built too, for what
        # it computes on the others: its entry carries the compiler's warning
        model = compile_sop(sop, parse_vocab(vocab), max_len, names=names,
                            program_name=where, sop_name=sop_name,
                            allow_partial=True)  # fmt: skip
        circuit = build_circuit(sop, model, names)
        save_model(model, out / rel, source=source, circuit=circuit)
    except (RaspError, ValueError, OSError, RecursionError) as e:
        return {**entry, "dir": None, "circuit": None, "error": _one_line(e)}
    cfg, layers = model.config, model.spec.layers
    return {
        **entry,
        "dir": rel,
        "circuit": f"{rel}/{CIRCUIT_FILE}",
        "n_params": cfg.n_params,
        "d_model": cfg.d_model,
        "layers": cfg.n_layers,
        "heads": sum(len(layer.get("attn", [])) for layer in layers),
        "mlp_jobs": sum(len(layer.get("mlp", [])) for layer in layers),
        "warnings": list(model.warnings),
        "error": None,
    }


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" + ("" if n == 1 else "s")


def _one_line(e: Exception) -> str:
    """The error as one line: each problem's first line (no source carets)."""
    problems = getattr(e, "problems", None) or [e]
    lines = [p.render().splitlines()[0] if isinstance(p, RaspError) else str(p) for p in problems]
    return " ".join("; ".join(lines).split())
