"""The benchmark's numbered sections: each runs its jobs and returns its markdown."""

from __future__ import annotations

import argparse
from dataclasses import replace

from rasp_compiler.dtypes import DTYPE_NAMES

from .inputs import (
    BIG_THREE,
    LETTERS,
    OURS_SIDE,
    SIDE_STYLE,
    example_path,
    example_vocab,
    other_examples,
    ours_side_program,
    show_vocab,
    side_vocab,
)
from .jobs import Job, Result, log, run_job, tracr_available
from .report import (
    exact_cell,
    fmt_rate,
    fmt_ratio,
    fmt_s,
    memory_cell,
    notes_block,
    size_cells,
    status_cell,
    table,
)
from .workers import SANITY, same_output_tol

# ---- section 1

#: beyond 1024: the longest max length each of the big three is meant to compile at
LONGEST = (("reverse", 4096), ("histogram", 4096), ("sort", 2048))


def section_length(args: argparse.Namespace) -> str:
    lengths = (64,) if args.quick else (64, 256, 1024)
    other_len = 64 if args.quick else 256
    jobs = [(name, LETTERS, "random", n) for n in lengths for name in BIG_THREE]
    if not args.quick:  # the longest lengths each compiles at
        jobs += [(name, LETTERS, "random", n) for name, n in LONGEST]
    jobs += [(name, *example_vocab(name), other_len) for name in other_examples()]
    rows, notes = [], []
    for name, vocab, style, n in jobs:
        job = Job(
            tool="ours",
            path=example_path(name),
            vocab=vocab,
            max_len=n,
            style=style,
            check=(20 if args.quick else 200) if n < 1024 else (50 if n == 1024 else 24),
            chunk=(64 if n == 1024 else 8) if n >= 1024 else 256,
            timeout=args.timeout,
            dtype=args.dtype,
        )
        log(f"length: {name} at {n}")
        r = run_job(job, args.timeout * 4 + 300)
        log(f"  -> {r.summary()}")
        st = status_cell(r)
        if st:
            rows.append([name, show_vocab(vocab), str(n), st, memory_cell(r)] + ["–"] * 6)
            if r.problem():
                notes.append(f"- {name} at {n}: {r.problem()}")
            continue
        rows.append(
            [name, show_vocab(vocab), str(n), fmt_s(r.compile_s), memory_cell(r)]
            + size_cells(r)
            + [exact_cell(r)]
        )
        if r.crash:
            notes.append(f"- {name} at {n}: after compiling: {r.crash}")
    header = [
        "program",
        "vocab",
        "max_len",
        "compile s",
        "peak RSS MiB (+compile)",
        "layers",
        "heads",
        "d_model",
        "d_mlp",
        "params",
        "exact",
    ]
    text = "### 1. Ours at length\n\n" + table(header, rows) + "\n\n"
    text += (
        "compile s: wall time of `compile_program` (parse, lower, compile, build the torch "
        "module), in a fresh subprocess. Peak RSS: `ru_maxrss` of that subprocess right "
        "after compiling (it includes the Python interpreter and torch); in brackets the "
        "growth over its value just before compiling. exact: inputs on which `run_batch` "
        "equals the reference interpreter / inputs compared (random tokens, a quarter at "
        "full length, the rest of random lengths; then edge inputs at full length: each of "
        "the first four tokens repeated, sorted and reversed runs of the vocabulary, and "
        "for bracket programs the deepest nesting, all closers and `()()...`; inputs the "
        "interpreter rejects are skipped). "
        "BOS programs (vocabulary starting with §) get inputs that start with §.\n"
    )
    return text + notes_block("Not compiled", notes)


# ---- section 2


def side_refs_agree(a: Result, b: Result, tol: float) -> int | None:
    """How many inputs the two reference semantics (our interpreter on our program, tracr's
    RASP evaluator on its program) disagree on; None if not both available."""
    if not a.refs or not b.refs:
        return None
    return sum(
        1
        for x, y in zip(a.refs, b.refs, strict=True)
        if x is not None and y is not None and not same_output_tol(x, y, tol)
    )


def _side_notes(tool: str, name: str, n: int, r: Result) -> list[str]:
    """Notes on one tool's successful compile of a task."""
    notes = []
    if r.crash:
        notes.append(f"- {tool} {name} at {n}: after compiling: {r.crash}")
    if r.apply_verdict_diff:
        notes.append(
            f"- tracr {name} at {n}: on {r.apply_verdict_diff} of the first {SANITY} "
            "inputs, `model.apply` and the batched jitted forward disagree on whether "
            "the output is right"
        )
    elif r.apply_diff:
        notes.append(
            f"- tracr {name} at {n}: on {r.apply_diff} of the first {SANITY} inputs "
            "the batched jitted forward's output differs from `model.apply`'s (XLA "
            "rounding flips near-tied argmaxes); both are wrong on each of them, so "
            "the verdicts agree"
        )
    return notes


def _ratio_row(name: str, n: int, ours: Result, tr: Result) -> list[str]:
    return [
        name,
        str(n),
        "tracr ÷ ours",
        fmt_ratio(tr.compile_s, ours.compile_s),
        fmt_ratio(tr.layers, ours.layers),
        fmt_ratio(tr.heads, ours.heads),
        fmt_ratio(tr.d_model, ours.d_model),
        fmt_ratio(tr.d_mlp, ours.d_mlp),
        fmt_ratio(tr.params, ours.params),
        "",
        fmt_ratio(tr.model_tok_s, ours.model_tok_s),
    ]


def section_tracr(args: argparse.Namespace) -> str:
    title = "### 2. Side by side with tracr\n\n"
    if args.no_tracr:
        return title + "Skipped (`--no-tracr`).\n"
    why = tracr_available()
    if why:
        return title + f"Skipped: tracr is not importable ({why}).\n"
    sizes = (5, 10) if args.quick else (5, 10, 20, 40)
    plan = [(name, n) for name in OURS_SIDE for n in sizes]
    if not args.quick:
        plan.insert(len(sizes), ("reverse", 100))
    count = 50 if args.quick else 200
    rows, notes = [], []
    for name, n in plan:
        vocab = side_vocab(name, n)
        style = SIDE_STYLE.get(name, "random")
        side = Job(
            tool="ours",
            vocab=vocab,
            max_len=n,
            style=style,
            check=count,
            throughput=256,
            return_refs=True,
            timeout=args.timeout,
        )
        path, source = ours_side_program(name, vocab)
        log(f"side: ours {name} at {n}")
        ours = run_job(
            replace(side, path=path, source=source, dtype=args.dtype), args.timeout * 4 + 300
        )
        log(f"  -> {ours.summary()}")
        log(f"side: tracr {name} at {n}")
        tr = run_job(replace(side, tool="tracr", program=name), args.timeout * 4 + 300)
        log(f"  -> {tr.summary()}")
        for tool, r in (("ours", ours), ("tracr", tr)):
            st = status_cell(r)
            if st:
                rows.append([name, str(n), tool, st] + ["–"] * 7)
                if r.problem():
                    notes.append(f"- {tool} {name} at {n}: {r.problem()}")
                continue
            rows.append(
                [name, str(n), tool, fmt_s(r.compile_s)]
                + size_cells(r)
                + [exact_cell(r), fmt_rate(r.model_tok_s)]
            )
            notes += _side_notes(tool, name, n, r)
        if ours.ok and tr.ok:
            rows.append(_ratio_row(name, n, ours, tr))
        disagree = side_refs_agree(ours, tr, 1e-9)
        if disagree:
            notes.append(
                f"- {name} at {n}: the two tools' reference semantics differ on "
                f"{disagree} of the {count} inputs (each tool is scored against its own)"
            )
    header = [
        "program",
        "n",
        "tool",
        "compile s",
        "layers",
        "heads",
        "d_model",
        "d_mlp",
        "params",
        "exact",
        "tokens/s",
    ]
    text = title + table(header, rows) + "\n\n"
    text += (
        f"n = vocabulary size = maximum length. Both tools compile in a fresh subprocess with "
        f'a {args.timeout:.0f} s limit ("timeout" past it). exact: the same {count} random '
        "inputs for both tools (a quarter at full length); ours is compared with our reference "
        "interpreter, tracr's with tracr's own RASP evaluator (`rasp.evaluate`) — the two "
        "agree on every input unless a note below says otherwise. Tracr's outputs are "
        '`model.apply(["BOS"] + inp).decoded[1:]`, computed batched per input length '
        "through `jax.jit(model.forward)` (the function `apply` calls; the first "
        f"{SANITY} inputs are also run through `apply` itself); its default settings "
        "(`mlp_exactness=100`). "
        "Numerical outputs (tracr's frac_prevs) count as exact within half the smallest gap "
        "between two possible means, 0.5/n²; ours must match to 1e-9 relative. "
        "tokens/s: 256 full-length inputs in one batch, input tokens per second of wall "
        "time including encoding and decoding, after a warm-up, best of up to 5 repeats "
        "within 1 s: ours `run_batch` (torch, "
        "float32), tracr the jitted forward on a [256, n+1] array (XLA CPU, jit compile "
        "excluded). Tasks: reverse, hist, sort_unique (both: the count of smaller tokens as "
        "target position, on inputs without repeated tokens; examples/sort.rasp is the "
        "stable sort that also handles repeats), sort_freq (ours: `sort(tokens, -hist)`), "
        "frac_prevs of the first vocabulary token, shuffle_dyck (tracr's "
        '`make_shuffle_dyck(["()"])`: True everywhere iff the whole input is balanced; ours '
        'the same in 5 lines of RASP; vocabulary "(", ")" and n−2 other tokens; half the '
        "inputs balanced by construction). tracr's params count its parameter arrays "
        "(embeddings and weights); ours `count_params()`.\n"
    )
    return text + notes_block("Notes", notes)


# ---- section 3


def section_throughput(args: argparse.Namespace) -> str:
    lengths = (64,) if args.quick else (64, 1024)
    rows, notes, rates = [], [], []
    for n in lengths:
        for name in BIG_THREE:
            timed = 256 if n < 1024 or args.full_throughput else args.inputs_1024
            job = Job(
                tool="ours",
                path=example_path(name),
                vocab=LETTERS,
                max_len=n,
                style="random",
                throughput=256,
                timed_inputs=64 if args.quick else timed,
                chunk=256 if n < 1024 else 32,
                interp_throughput=True,
                timeout=args.timeout,
                dtype=args.dtype,
            )
            log(f"throughput: {name} at {n}")
            r = run_job(job, args.timeout * 6 + 300)
            log(f"  -> {r.summary()}")
            rates.append(r.matmul_flop_s)
            st = status_cell(r)
            if st or r.model_tok_s is None:
                rows.append([name, str(n), st or r.status or "?"] + ["–"] * 6)
                if r.problem():
                    notes.append(f"- {name} at {n}: {r.problem()}")
                continue
            rows.append(
                [
                    name,
                    str(n),
                    str(r.timed_inputs),
                    fmt_rate(r.model_tok_s),
                    fmt_rate(r.interp_tok_s),
                    f"{r.ratio:.3g}×" if r.ratio else fmt_ratio(r.model_tok_s, r.interp_tok_s),
                    _flop_cell(r),
                    _matmul_share(r),
                    f"{r.load:.2f}" if r.load is not None else "–",
                ]
            )
    header = [
        "program",
        "length",
        "inputs timed",
        "model tokens/s",
        "interpreter tokens/s",
        "model ÷ interpreter",
        "FLOP/token dense / nonzero",
        "of matmul rate",
        "load",
    ]
    text = "### 3. Inference throughput\n\n" + table(header, rows) + "\n\n"
    text += (
        "Full-length random inputs over a–z. Model: `run_batch` on CPU in float32 after a "
        "warm-up call (the best of its interleaved runs, for the interpreter too), input "
        "tokens per second of wall time including encoding and decoding, batches of 256 inputs"
    )
    if not args.full_throughput and not args.quick:
        text += (
            f" at length 64; at length 1024 the first {args.inputs_1024} of the 256 inputs "
            "are timed, in batches of at most 32 (a batch of 256 inputs of length 1024 "
            "needs several GiB of activations and minutes per program on this machine; "
            "`--full-throughput` times all 256)"
        )
    text += (
        ". Interpreter: `evaluate` on the same inputs, one after another. Model and "
        "interpreter run interleaved in one process (model, interpreter, model, ...: at "
        "least 3 pairs, up to 7 within 3 s); the ratio is the median of the pairs' ratios, "
        "so both saw the same load; *load* is the 1-minute load average when timing began "
        "(2 cores). FLOP/token (`rasp_compiler.cost.flops_per_token`, at full length): every "
        "product at each layer's own shape, and over the nonzero rows and columns of the "
        "weights only (what the runtime computes; attention scores and values counted in "
        "both). *of matmul rate*: model tokens/s times the nonzero FLOP/token, over this "
        "machine's float32 `torch.mm` rate measured in the same process"
    )
    rate = next((r for r in rates if r), None)
    text += f" ({rate / 1e9:.0f} GFLOP/s).\n" if rate else ".\n"
    return text + notes_block("Not compiled", notes)


def _flop_cell(r: Result) -> str:
    if r.flop_dense is None or r.flop_nonzero is None:
        return "–"
    return f"{_si(r.flop_dense)} / {_si(r.flop_nonzero)}"


def _matmul_share(r: Result) -> str:
    if not (r.model_tok_s and r.flop_nonzero and r.matmul_flop_s):
        return "–"
    return f"{100 * r.model_tok_s * r.flop_nonzero / r.matmul_flop_s:.2g}%"


def _si(x: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if x >= size:
            return f"{x / size:.3g} {unit}"
    return f"{x:.3g}"


# ---- section 4


def section_precision(args: argparse.Namespace) -> str:
    dtypes = DTYPE_NAMES
    rows, notes = [], []
    for name in list(BIG_THREE) + other_examples():
        vocab, style = (LETTERS, "random") if name in BIG_THREE else example_vocab(name)
        upto = (64 if args.quick else 1024) if name in BIG_THREE else (64 if args.quick else 256)
        cells = []
        for dtype in dtypes:
            job = Job(
                tool="certify",
                path=example_path(name),
                vocab=vocab,
                style=style,
                dtype=dtype,
                upto=upto,
                check=20 if args.quick else 100,
                check_long=20,
            )
            log(f"precision: {name} in {dtype} (up to {upto})")
            r = run_job(job, args.timeout * 12 + 300)
            log(f"  -> {r.summary()}, certified={r.certified}")
            if not r.ok:
                cells.append(r.status or "?")
                notes.append(f"- {name} in {dtype}: {r.problem() or ''}")
                continue
            best = r.certified or 0
            cell = f"{best}" if best else "none"
            if best:
                cell += f" ({r.exact or 0}/{r.checked or 0})"
            if dtype != "float32" and r.sampled_exact is not None:
                cell += f"; sampled {r.sampled_exact or 'none'}"
                if r.sampled_fail:
                    cell += f" (wrong at {r.sampled_fail})"
            if best < upto and r.reason:
                notes.append(
                    f"- {name} in {dtype}: refused at {2 * best if best else 1}: "
                    f"{' '.join(str(r.reason).split())[:400]}"
                )
            cells.append(cell)
        rows.append([name, show_vocab(vocab), str(upto)] + cells)
    header = ["program", "vocab", "tried up to"]
    header += [f"{d}: certified max_len (exact)" for d in dtypes]
    text = "### 4. Certified precision\n\n" + table(header, rows) + "\n\n"
    text += (
        "For each dtype, the largest maximum length (powers of two, then the limit tried) at "
        "which the compiler certifies the model exact (`largest_certified_length`: every "
        "head's score rounding and every MLP's pre-activations and input tolerances checked "
        "against the dtype's unit round-off, and what fails that bounded point by point and "
        "value by value; a count output count by count). In brackets: "
        "the model compiled at that length and run in that dtype on random inputs (a "
        "quarter at full length; 100 inputs, 20 at lengths of 512 and more), the edge "
        "inputs of section 1 and the count sweep that equal the interpreter / inputs run. "
        "*sampled*: the largest max length (same steps) at which the model compiled for "
        "float32 and cast to the dtype equals the interpreter on 20 random inputs (a quarter "
        "at full length), the edge inputs and the count sweep, and the length where it "
        "first did not (a wrong output, or a length float32 refuses). The edge inputs drive "
        "counts to the length itself, where random tokens over a–z keep them near length / "
        "26: without them bfloat16 histogram looked exact at 1024. The count sweep "
        "(`count_sweep`: one token k times, another the rest, for every k up to 128, 192 "
        "values of k above) reaches the single counts a dtype may round badly: without it "
        "bfloat16 histogram looked exact at 256, where the sweep finds 42 of its 160 "
        "inputs wrong.\n"
    )
    return text + notes_block("Why the next length is refused", notes)


BUILDERS = {
    "length": section_length,
    "tracr": section_tracr,
    "throughput": section_throughput,
    "precision": section_precision,
}
