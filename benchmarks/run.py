#!/usr/bin/env python
"""Benchmarks of rasp_compiler: compile cost, model size, exactness and speed.

    python benchmarks/run.py [--quick] [--no-tracr] [--timeout S] [--out FILE]

Prints four markdown tables and writes them to ``benchmarks/results.md``:

1. **Ours at length**: every example compiled at one or more maximum lengths: compile
   time, peak memory of the compiling process, model size, and exactness on random inputs
   (compiled model vs the reference interpreter).
2. **Side by side with tracr** (skipped when tracr is not importable, or with
   ``--no-tracr``): the same tasks compiled by both tools with vocabulary size = maximum
   length, exactness on the same inputs, batched inference speed.
3. **Inference throughput**: compiled models on batches of full-length inputs vs the
   reference interpreter on the same inputs.
4. **Certified precision**: per dtype, the largest maximum length the compiler certifies
   exact, and a sampled check of the model compiled there.

Every compilation runs in a fresh subprocess (``run.py --worker``, a JSON job on stdin),
so memory is measured per compile and a hung compile can be killed: a compile that runs
past ``--timeout`` seconds is reported as "timeout", a CompileError as "compile error"
with its message under the table.  The benchmark is not part of the test suite; tracr
is the optional ``bench`` extra (``pip install -e '.[bench]'``).

This file parses the command line; the rest is the ``benchmarks`` package: inputs.py (the
programs and inputs), jobs.py (the Job and Result dataclasses, running a job in a
subprocess), workers.py (the worker side: compile, check and time ours or tracr's),
sections.py (the numbered sections) and report.py (tables, results.md, README.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: import the benchmarks package from the repository root, and do not
    # let this folder's modules (inputs, report, ...) shadow top-level modules.
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

from benchmarks.inputs import ROOT  # noqa: E402
from benchmarks.jobs import log  # noqa: E402
from benchmarks.report import run_line, update_readme, wrap_prose, write_results  # noqa: E402
from benchmarks.sections import BUILDERS  # noqa: E402
from benchmarks.workers import worker_main  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes only (about 3 minutes)")
    ap.add_argument("--no-tracr", action="store_true", help="skip the tracr comparison")
    ap.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds a single compile may take (default 60)",
    )
    ap.add_argument(
        "--out",
        default=str(ROOT / "benchmarks" / "results.md"),
        help="markdown file to write (default benchmarks/results.md)",
    )
    ap.add_argument(
        "--only",
        choices=["length", "tracr", "throughput", "precision"],
        action="append",
        help="run only these sections (repeatable)",
    )
    ap.add_argument(
        "--full-throughput",
        action="store_true",
        help="time all 256 inputs at length 1024 in section 3",
    )
    ap.add_argument(
        "--inputs-1024",
        type=int,
        default=16,
        help="inputs timed at length 1024 in section 3 (default 16)",
    )
    ap.add_argument("--dtype", default=None, help="passed to compile_program(dtype=...) when given")
    ap.add_argument(
        "--update-readme",
        action="store_true",
        help="also replace the body of README.md's '## Benchmarks' section with the results",
    )
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker_main()
        return 0

    started = time.perf_counter()
    sections = args.only or ["length", "tracr", "throughput", "precision"]
    parts = []
    head = run_line(args.quick, args.no_tracr)
    for key in sections:
        part = wrap_prose(BUILDERS[key](args))
        print(part, flush=True)
        parts.append(part)
    total = time.perf_counter() - started
    head += f"; the whole run took {total / 60:.1f} min."
    head = wrap_prose(head)
    print(head)
    write_results(args.out, head, parts)
    log(f"wrote {args.out}")
    if args.update_readme:
        update_readme(head, parts)
        log("updated README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
