#!/usr/bin/env python
"""Benchmarks of rasp_compiler: compile cost, model size, exactness and speed.

    python benchmarks/run.py [--quick] [--no-tracr] [--timeout S] [--out FILE]

Prints three markdown tables and writes them to ``benchmarks/results.md``:

1. **Ours at length**: every example compiled at one or more maximum lengths: compile
   time, peak memory of the compiling process, model size, and exactness on random inputs
   (compiled model vs the reference interpreter).
2. **Side by side with tracr** (skipped when tracr is not importable, or with
   ``--no-tracr``): the same tasks compiled by both tools with vocabulary size = maximum
   length, exactness on the same inputs, batched inference speed.
3. **Inference throughput**: compiled models on batches of full-length inputs vs the
   reference interpreter on the same inputs.

Every compilation runs in a fresh subprocess (``run.py --worker``, a JSON job on stdin),
so memory is measured per compile and a hung compile can be killed: a compile that runs
past ``--timeout`` seconds is reported as "timeout", a CompileError as "compile error"
with its message under the table.  The benchmark is not part of the test suite; tracr
is the optional ``bench`` extra (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import random
import resource
import signal
import string
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
LETTERS = string.ascii_lowercase  # the 26-letter vocabulary of the length sweep
SEED = 1234
SANITY = 8  # inputs on which tracr's batched forward is compared with model.apply

# Examples whose header vocabulary is widened here: dyck1 ignores non-bracket tokens, so a
# couple of letters exercise that.
VOCAB_OVERRIDES = {"dyck1": "()ab"}
BIG_THREE = ("reverse", "histogram", "sort")

# ---------------------------------------------------------------------------- inputs


def make_inputs(
    vocab: Sequence[Any], max_len: int, count: int, style: str, seed: int
) -> list[list[Any]]:
    """``count`` random inputs: a quarter (at least one) of length ``max_len``, the rest of
    uniformly random lengths 1..max_len.

    style: "random" (tokens uniform over vocab), "distinct" (no token repeats: a random
    sample of the vocabulary), "bos" (position 0 is vocab[0], the BOS token "§", the rest
    uniform over vocab[1:]), "dyck" (vocab[0:2] are "(" and ")": even-numbered inputs are
    random with 40% "(", 40% ")", 20% other tokens; odd-numbered ones are balanced by
    construction).
    """
    rng = random.Random(seed)
    at_max = max(1, count // 4)
    out = []
    for i in range(count):
        n = max_len if i < at_max else rng.randint(1, max_len)
        out.append(_one_input(rng, vocab, n, style, i))
    return out


def full_length_inputs(
    vocab: Sequence[Any], max_len: int, count: int, style: str, seed: int
) -> list[list[Any]]:
    rng = random.Random(seed)
    return [_one_input(rng, vocab, max_len, style, i) for i in range(count)]


def _one_input(rng: random.Random, vocab: Sequence[Any], n: int, style: str, i: int) -> list:
    vocab = list(vocab)
    if style == "random":
        return [rng.choice(vocab) for _ in range(n)]
    if style == "distinct":
        return rng.sample(vocab, n)
    if style == "bos":
        return [vocab[0]] + [rng.choice(vocab[1:]) for _ in range(n - 1)]
    if style == "dyck":
        op, cl, other = vocab[0], vocab[1], vocab[2:] or [vocab[0]]
        if i % 2 == 0:
            return [
                op if r < 0.4 else cl if r < 0.8 else rng.choice(other)
                for r in (rng.random() for _ in range(n))
            ]
        toks, depth = [], 0
        for pos in range(n):
            left = n - pos
            r = rng.random()
            if depth >= left or (depth > 0 and r < 0.4):
                toks.append(cl)
                depth -= 1
            elif depth + 1 < left and r < 0.8:
                toks.append(op)
                depth += 1
            else:
                toks.append(rng.choice(other))
        if depth:  # only when no filler token exists; cannot happen with the vocabularies used
            pass
        return toks
    raise ValueError(style)


# ---------------------------------------------------------------------------- worker side


def _maxrss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (ru_maxrss is KiB on Linux)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    if not seconds:
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _emit(**fields: Any) -> None:
    """A partial result: the parent merges every RESULT line it reads."""
    print("RESULT " + json.dumps(fields, default=str), flush=True)


def _plain(x: Any) -> Any:
    """An output atom as JSON-able and comparable: numpy scalars become Python ones."""
    if hasattr(x, "item"):
        x = x.item()
    return x


def _same_atom_tol(a: Any, b: Any, tol: float) -> bool:
    if (
        isinstance(a, (bool, int, float))
        and isinstance(b, (bool, int, float))
        and (isinstance(a, float) or isinstance(b, float))
    ):
        fa, fb = float(a), float(b)
        if math.isnan(fa) or math.isnan(fb):
            return math.isnan(fa) and math.isnan(fb)
        return abs(fa - fb) <= tol
    return a == b


def same_output_tol(expected: Sequence[Any], got: Sequence[Any], tol: float) -> bool:
    return len(expected) == len(got) and all(
        _same_atom_tol(e, g, tol) for e, g in zip(expected, got, strict=True)
    )


def _ours_sources(job: dict) -> tuple[str | Path, str]:
    if "path" in job:
        return Path(job["path"]), "path"
    return job["source"], "source"


def _best_time(fn: Any, budget: float = 1.0, max_reps: int = 5) -> tuple[float, int]:
    """(fastest wall time of ``fn()``, repeats): repeated while the total stays under
    ``budget`` seconds, at most ``max_reps`` times."""
    times: list[float] = []
    while len(times) < max_reps and (not times or sum(times) + min(times) <= budget):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), len(times)


def worker_ours(job: dict) -> None:
    import torch

    torch.set_grad_enabled(False)
    from rasp_compiler.compiler.pipeline import compile_program
    from rasp_compiler.errors import CompileError, RaspError
    from rasp_compiler.language.interpret import evaluate
    from rasp_compiler.language.lower import get_sop, load_program, load_source
    from rasp_compiler.verify import same_output

    program, _ = _ours_sources(job)
    vocab, max_len = job["vocab"], job["max_len"]
    kwargs = {"dtype": job["dtype"]} if job.get("dtype") else {}
    base = _maxrss_mb()
    try:
        with _time_limit(job.get("timeout")):
            t0 = time.perf_counter()
            model = compile_program(program, vocab=vocab, max_len=max_len, **kwargs)
            compile_s = time.perf_counter() - t0
    except _Timeout:
        _emit(status="timeout", rss_base_mb=base, rss_peak_mb=_maxrss_mb())
        return
    except CompileError as exc:
        first = exc.problems[0] if getattr(exc, "problems", None) else exc
        msg = " ".join(str(getattr(first, "message", first)).split())
        _emit(status="compile error", error=msg[:300], rss_base_mb=base, rss_peak_mb=_maxrss_mb())
        return
    peak = _maxrss_mb()
    cfg = model.config
    _emit(
        status="ok",
        compile_s=compile_s,
        compile_s_internal=model.spec.extra.get("compile_seconds"),
        rss_base_mb=base,
        rss_peak_mb=peak,
        layers=cfg.n_layers,
        heads=cfg.n_heads,
        d_model=cfg.d_model,
        d_mlp=cfg.d_mlp,
        d_head=cfg.d_head,
        params=model.transformer.count_params(),
    )
    session = load_program(program) if isinstance(program, Path) else load_source(program)
    sop = get_sop(session, session.last_sop_name())

    if job.get("check"):
        inputs = make_inputs(vocab, max_len, job["check"], job["style"], job.get("seed", SEED))
        expected, runnable = [], []
        for inp in inputs:
            try:
                expected.append([_plain(x) for x in evaluate(sop, inp)])
                runnable.append(inp)
            except RaspError:
                expected.append(None)
        got = iter(model.run_batch(runnable, chunk_size=job.get("chunk", 256)))
        ok = bad = skipped = 0
        refs = []
        for exp in expected:
            refs.append(exp)
            if exp is None:
                skipped += 1
                continue
            if same_output(exp, next(got)):
                ok += 1
            else:
                bad += 1
        fields: dict[str, Any] = {"checked": ok + bad, "exact": ok, "skipped": skipped}
        if job.get("return_refs"):
            fields["refs"] = refs
        _emit(**fields)

    if job.get("throughput"):
        n_inputs = job["throughput"]
        inputs = full_length_inputs(vocab, max_len, n_inputs, job["style"], SEED + 1)
        timed = inputs[: job.get("timed_inputs", n_inputs)]
        model.run_batch(timed[:2])  # warm-up
        dt, reps = _best_time(lambda: model.run_batch(timed, chunk_size=job.get("chunk", 256)))
        tokens = sum(len(x) for x in timed)
        fields = {
            "model_tok_s": tokens / dt,
            "timed_inputs": len(timed),
            "model_s": dt,
            "model_reps": reps,
        }

        def interpret_all() -> None:
            for inp in timed:
                try:
                    evaluate(sop, inp)
                except RaspError:
                    pass

        if job.get("interp_throughput"):
            di, ireps = _best_time(interpret_all)
            fields.update(interp_tok_s=tokens / di, interp_s=di, interp_reps=ireps)
        _emit(**fields)


def _tracr_program(name: str, vocab: Sequence[str], max_len: int) -> Any:
    from tracr.compiler import lib
    from tracr.rasp import rasp

    if name == "reverse":
        return lib.make_reverse(rasp.tokens)
    if name == "hist":
        return lib.make_hist()
    if name == "sort_unique":
        return lib.make_sort_unique(rasp.tokens, rasp.tokens)
    if name == "sort_freq":
        return lib.make_sort_freq(max_seq_len=max_len)
    if name == "frac_prevs":
        return lib.make_frac_prevs(rasp.tokens == vocab[0])
    if name == "shuffle_dyck":
        return lib.make_shuffle_dyck(["()"])
    raise ValueError(name)


def worker_tracr(job: dict) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    import jax
    import jax.numpy as jnp
    import numpy as np
    from tracr.compiler import compiling
    from tracr.rasp import rasp

    vocab, max_len, name = job["vocab"], job["max_len"], job["program"]
    program = _tracr_program(name, vocab, max_len)
    base = _maxrss_mb()
    try:
        with _time_limit(job.get("timeout")):
            t0 = time.perf_counter()
            model = compiling.compile_rasp_to_model(
                program, vocab=set(vocab), max_seq_len=max_len, compiler_bos="BOS"
            )
            compile_s = time.perf_counter() - t0
    except _Timeout:
        _emit(status="timeout", rss_base_mb=base, rss_peak_mb=_maxrss_mb())
        return
    except Exception as exc:  # noqa: BLE001 - tracr raises many kinds
        _emit(status="compile error", error=f"{type(exc).__name__}: {exc}"[:300])
        return
    cfg = model.model_config
    _emit(
        status="ok",
        compile_s=compile_s,
        rss_base_mb=base,
        rss_peak_mb=_maxrss_mb(),
        layers=cfg.num_layers,
        heads=cfg.num_heads,
        d_model=len(model.residual_labels),
        d_mlp=cfg.mlp_hidden_size,
        d_head=cfg.key_size,
        params=int(sum(x.size for x in jax.tree_util.tree_leaves(model.params))),
    )
    enc, dec = model.input_encoder, model.output_encoder
    numerical = type(dec).__name__ == "NumericalEncoder"
    forward = jax.jit(model.forward)

    def run_same_length(batch: list[list[str]]) -> list[list[Any]]:
        """model.apply(["BOS"] + inp).decoded[1:] for a batch of equal-length inputs,
        through the same forward function, jitted and batched."""
        toks = jnp.array([enc.encode(["BOS", *inp]) for inp in batch])
        out = np.asarray(forward(model.params, toks).unembedded_output)
        rows = []
        for row in out:
            vals = row.tolist()
            if dec is not None:
                vals = dec.decode(vals)
            rows.append([_plain(v) for v in vals[1:]])
        return rows

    if job.get("check"):
        inputs = make_inputs(vocab, max_len, job["check"], job["style"], job.get("seed", SEED))
        tol = 0.5 / (max_len * max_len)  # half the smallest gap between two means k/m, m <= n
        by_len: dict[int, list[int]] = {}
        for i, inp in enumerate(inputs):
            by_len.setdefault(len(inp), []).append(i)
        got: list[Any] = [None] * len(inputs)
        for idx in by_len.values():
            for i, row in zip(idx, run_same_length([inputs[i] for i in idx]), strict=True):
                got[i] = row
        ok = bad = skipped = 0
        refs = []
        for inp, g in zip(inputs, got, strict=True):
            try:
                exp = [_plain(v) for v in rasp.evaluate(program, inp)]
            except Exception:  # noqa: BLE001
                refs.append(None)
                skipped += 1
                continue
            refs.append(exp)
            if same_output_tol(exp, g, tol if numerical else 0.0):
                ok += 1
            else:
                bad += 1
        # Sanity check that the batched path is model.apply, on the first SANITY inputs (full
        # length): outputs that differ (float rounding of XLA vs op-by-op) and, of those,
        # inputs where one path is right and the other wrong.
        apply_diff = apply_verdict_diff = 0
        for inp, g, exp in list(zip(inputs, got, refs, strict=True))[:SANITY]:
            direct = [_plain(v) for v in model.apply(["BOS", *inp]).decoded[1:]]
            if not same_output_tol(direct, g, 1e-6):
                apply_diff += 1
                t = tol if numerical else 0.0
                if exp is not None and same_output_tol(exp, direct, t) != same_output_tol(
                    exp, g, t
                ):
                    apply_verdict_diff += 1
        _emit(
            checked=ok + bad,
            exact=ok,
            skipped=skipped,
            tolerance=tol if numerical else 0.0,
            apply_diff=apply_diff,
            apply_verdict_diff=apply_verdict_diff,
            refs=refs if job.get("return_refs") else None,
        )

    if job.get("throughput"):
        inputs = full_length_inputs(vocab, max_len, job["throughput"], job["style"], SEED + 1)
        t0 = time.perf_counter()
        run_same_length(inputs)  # jit compile for this batch shape, not timed
        jit_s = time.perf_counter() - t0
        dt, reps = _best_time(lambda: run_same_length(inputs))
        _emit(model_tok_s=sum(map(len, inputs)) / dt, model_s=dt, jit_s=jit_s, model_reps=reps)


def worker_certify(job: dict) -> None:
    """The largest certified max length in ``job['dtype']``, then a sampled check there."""
    import torch

    torch.set_grad_enabled(False)
    from rasp_compiler.compiler.pipeline import compile_program, largest_certified_length
    from rasp_compiler.errors import RaspError
    from rasp_compiler.language.interpret import evaluate
    from rasp_compiler.language.lower import get_sop, load_program
    from rasp_compiler.verify import same_output

    program = Path(job["path"])
    session = load_program(program)
    sop = get_sop(session, session.last_sop_name())
    vocab, dtype = job["vocab"], job["dtype"]
    t0 = time.perf_counter()
    best, reason = largest_certified_length(sop, tuple(vocab), dtype, upto=job["upto"])
    _emit(status="ok", certified=best, reason=reason, certify_s=time.perf_counter() - t0)
    if not best:
        return
    model = compile_program(program, vocab=vocab, max_len=best, dtype=dtype)
    count = job["check"] if best < 512 else job["check_long"]
    inputs = make_inputs(vocab, best, count, job["style"], SEED + 2)
    ok = bad = 0
    runnable, expected = [], []
    for inp in inputs:
        try:
            expected.append([_plain(x) for x in evaluate(sop, inp)])
            runnable.append(inp)
        except RaspError:
            continue
    for exp, got in zip(expected, model.run_batch(runnable, chunk_size=32)):
        if same_output(exp, got):
            ok += 1
        else:
            bad += 1
    _emit(checked=ok + bad, exact=ok)


def worker_main() -> None:
    job = json.loads(sys.stdin.read())
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    if job["tool"] == "ours":
        worker_ours(job)
    elif job["tool"] == "certify":
        worker_certify(job)
    else:
        worker_tracr(job)


# ---------------------------------------------------------------------------- parent side


def run_job(job: dict, limit: float) -> dict:
    """Run one job in a fresh interpreter; merge its RESULT lines.  ``limit``: seconds."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("JAX_PLATFORMS", "cpu")
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    killed = False
    t0 = time.perf_counter()
    try:
        out, err = proc.communicate(json.dumps(job), timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        killed = True
    result: dict[str, Any] = {}
    for line in out.splitlines():
        if line.startswith("RESULT "):
            result.update(json.loads(line[7:]))
    result["wall_s"] = time.perf_counter() - t0
    if killed:
        result["killed"] = True
        result.setdefault("status", "timeout")
    elif proc.returncode != 0:
        tail = [ln for ln in err.strip().splitlines() if ln.strip()][-1:] or ["?"]
        result["crash"] = tail[0][:300]
        result.setdefault("status", "crash")
    return result


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def example_vocab(name: str) -> tuple[str, str]:
    """(vocabulary, input style) of an example, from its header comment."""
    text = (EXAMPLES / f"{name}.rasp").read_text(encoding="utf-8")
    vocab = "abcd"
    for line in text.splitlines():
        if line.startswith("# Vocabulary:"):
            vocab = line.split(":", 1)[1].strip()
            break
    vocab = VOCAB_OVERRIDES.get(name, vocab)
    style = "bos" if vocab.startswith("§") else "random"
    return vocab, style


def fmt_s(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def fmt_int(x: Any) -> str:
    return "–" if x is None else f"{int(x):,}"


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def fmt_ratio(a: Any, b: Any) -> str:
    if not a or not b:
        return "–"
    r = a / b
    return f"{r:.2g}×" if r < 10 else f"{r:.0f}×"


def exact_cell(r: dict) -> str:
    if "checked" not in r:
        return "–" if r.get("status") == "ok" else r.get("status", "–")
    cell = f"{r['exact']}/{r['checked']}"
    if r.get("skipped"):
        cell += f" ({r['skipped']} skipped)"
    return cell


def status_cell(r: dict) -> str | None:
    """None when the compile succeeded; otherwise what to show instead of numbers."""
    if r.get("status") == "ok":
        return None
    return r.get("status", "error")


def wrap_prose(text: str, width: int = 92) -> str:
    """Wrap paragraphs and list items (not tables or headings) to ``width`` columns."""
    out = []
    for line in text.split("\n"):
        if len(line) <= width or line.startswith(("|", "#")):
            out.append(line)
        elif line.startswith("- "):
            out.append(textwrap.fill(line, width, subsequent_indent="  ", break_on_hyphens=False))
        else:
            out.append(textwrap.fill(line, width, break_on_hyphens=False))
    return "\n".join(out)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ---- section 1


def section_length(args: argparse.Namespace) -> str:
    lengths = (64,) if args.quick else (64, 256, 1024)
    other_len = 64 if args.quick else 256
    others = sorted(p.stem for p in EXAMPLES.glob("*.rasp") if p.stem not in BIG_THREE)
    jobs = [(name, LETTERS, "random", n) for n in lengths for name in BIG_THREE]
    jobs += [(name, *example_vocab(name), other_len) for name in others]
    rows, notes = [], []
    for name, vocab, style, n in jobs:
        count = (20 if args.quick else 200) if n < 1024 else 50
        job = {
            "tool": "ours",
            "path": str(EXAMPLES / f"{name}.rasp"),
            "vocab": vocab,
            "max_len": n,
            "style": style,
            "check": count,
            "chunk": 64 if n >= 1024 else 256,
            "timeout": args.timeout,
            "dtype": args.dtype,
        }
        log(f"length: {name} at {n}")
        r = run_job(job, args.timeout * 4 + 300)
        log(f"  -> {summarize(r)}")
        vshow = "a–z" if vocab == LETTERS else vocab
        st = status_cell(r)
        mem = (
            f"{r['rss_peak_mb']:.0f} (+{r['rss_peak_mb'] - r['rss_base_mb']:.0f})"
            if "rss_peak_mb" in r
            else "–"
        )
        if st:
            rows.append([name, vshow, str(n), st, mem] + ["–"] * 6)
            if r.get("error") or r.get("crash"):
                notes.append(f"- {name} at {n}: {r.get('error') or r.get('crash')}")
            continue
        rows.append(
            [
                name,
                vshow,
                str(n),
                fmt_s(r["compile_s"]),
                mem,
                str(r["layers"]),
                str(r["heads"]),
                fmt_int(r["d_model"]),
                fmt_int(r["d_mlp"]),
                fmt_int(r["params"]),
                exact_cell(r),
            ]
        )
        if r.get("crash"):
            notes.append(f"- {name} at {n}: after compiling: {r['crash']}")
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
        "equals the reference interpreter / inputs compared (a quarter at full length, the "
        "rest of random lengths; inputs the interpreter rejects are skipped). "
        "BOS programs (vocabulary starting with §) get inputs that start with §.\n"
    )
    if notes:
        text += "\nNot compiled:\n\n" + "\n".join(notes) + "\n"
    return text


def summarize(r: dict) -> str:
    keys = (
        "status",
        "compile_s",
        "layers",
        "d_model",
        "params",
        "exact",
        "checked",
        "model_tok_s",
        "interp_tok_s",
        "error",
        "crash",
        "wall_s",
    )
    return ", ".join(
        f"{k}={(round(r[k], 3) if isinstance(r[k], float) else r[k])}" for k in keys if k in r
    )


# ---- section 2

OURS_SIDE = {
    "reverse": {"path": str(EXAMPLES / "reverse.rasp")},
    "hist": {"path": str(EXAMPLES / "histogram.rasp")},
    # tracr's make_sort_unique, word for word: the target is the count of smaller keys
    "sort_unique": {
        "source": "target = selector_width(select(tokens, tokens, <));\n"
        "sort_unique = aggregate(select(target, indices, ==), tokens);\n"
    },
    "sort_freq": {
        "source": "hist = selector_width(select(tokens, tokens, ==));\n"
        "sort_freq = sort(tokens, -hist);\n"
    },
    "frac_prevs": {
        "source": "frac_prevs = aggregate(select(indices, indices, <=), "
        'indicator(tokens == "{tok0}"));\n'
    },
    "shuffle_dyck": {
        "source": "prefix = select(indices, indices, <=);\n"
        'balance = aggregate(prefix, indicator(tokens == "(") - indicator(tokens == ")"));\n'
        "has_neg = aggregate(full_s, indicator(balance < 0)) > 0;\n"
        "last_zero = aggregate(select(indices, length - 1, ==), balance == 0);\n"
        "shuffle_dyck = last_zero and not has_neg;\n"
    },
}
SIDE_STYLE = {"sort_unique": "distinct", "shuffle_dyck": "dyck"}


def side_vocab(name: str, n: int) -> list[str]:
    fill = [f"t{i:03d}" for i in range(n)]
    if name == "shuffle_dyck":
        return ["(", ")"] + fill[: n - 2]
    return fill


def tracr_available() -> str | None:
    """None if tracr imports, else why not."""
    try:
        r = subprocess.run(
            [
                sys.executable,
                "-c",
                "from tracr.compiler import compiling, lib; from tracr.rasp import rasp",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except Exception as exc:  # noqa: BLE001
        return str(exc)
    if r.returncode != 0:
        lines = r.stderr.strip().splitlines() or ["import failed"]
        return lines[-1]
    return None


def side_refs_agree(a: dict, b: dict, tol: float) -> int | None:
    """How many inputs the two reference semantics (our interpreter on our program, tracr's
    RASP evaluator on its program) disagree on; None if not both available."""
    ra, rb = a.get("refs"), b.get("refs")
    if not ra or not rb:
        return None
    return sum(
        1
        for x, y in zip(ra, rb, strict=True)
        if x is not None and y is not None and not same_output_tol(x, y, tol)
    )


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
        common = {
            "vocab": vocab,
            "max_len": n,
            "style": style,
            "check": count,
            "throughput": 256,
            "return_refs": True,
            "timeout": args.timeout,
        }
        spec = dict(OURS_SIDE[name])
        if "source" in spec:
            spec["source"] = spec["source"].replace("{tok0}", vocab[0])
        log(f"side: ours {name} at {n}")
        ours = run_job(
            {"tool": "ours", **spec, **common, "dtype": args.dtype}, args.timeout * 4 + 300
        )
        log(f"  -> {summarize(ours)}")
        log(f"side: tracr {name} at {n}")
        tr = run_job({"tool": "tracr", "program": name, **common}, args.timeout * 4 + 300)
        log(f"  -> {summarize(tr)}")
        for tool, r in (("ours", ours), ("tracr", tr)):
            st = status_cell(r)
            if st:
                rows.append([name, str(n), tool, st] + ["–"] * 7)
                if r.get("error") or r.get("crash"):
                    notes.append(f"- {tool} {name} at {n}: {r.get('error') or r.get('crash')}")
                continue
            rows.append(
                [
                    name,
                    str(n),
                    tool,
                    fmt_s(r["compile_s"]),
                    str(r["layers"]),
                    str(r["heads"]),
                    fmt_int(r["d_model"]),
                    fmt_int(r["d_mlp"]),
                    fmt_int(r["params"]),
                    exact_cell(r),
                    fmt_rate(r.get("model_tok_s")),
                ]
            )
            if r.get("crash"):
                notes.append(f"- {tool} {name} at {n}: after compiling: {r['crash']}")
            if r.get("apply_verdict_diff"):
                notes.append(
                    f"- tracr {name} at {n}: on {r['apply_verdict_diff']} of the first {SANITY} "
                    "inputs, `model.apply` and the batched jitted forward disagree on whether "
                    "the output is right"
                )
            elif r.get("apply_diff"):
                notes.append(
                    f"- tracr {name} at {n}: on {r['apply_diff']} of the first {SANITY} inputs "
                    "the batched jitted forward's output differs from `model.apply`'s (XLA "
                    "rounding flips near-tied argmaxes); both are wrong on each of them, so "
                    "the verdicts agree"
                )
        if status_cell(ours) is None and status_cell(tr) is None:
            rows.append(
                [
                    name,
                    str(n),
                    "tracr ÷ ours",
                    fmt_ratio(tr.get("compile_s"), ours.get("compile_s")),
                    fmt_ratio(tr["layers"], ours["layers"]),
                    fmt_ratio(tr["heads"], ours["heads"]),
                    fmt_ratio(tr["d_model"], ours["d_model"]),
                    fmt_ratio(tr["d_mlp"], ours["d_mlp"]),
                    fmt_ratio(tr["params"], ours["params"]),
                    "",
                    fmt_ratio(tr.get("model_tok_s"), ours.get("model_tok_s")),
                ]
            )
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
    if notes:
        text += "\nNotes:\n\n" + "\n".join(notes) + "\n"
    return text


# ---- section 3


def section_throughput(args: argparse.Namespace) -> str:
    lengths = (64,) if args.quick else (64, 1024)
    rows, notes = [], []
    for n in lengths:
        for name in BIG_THREE:
            timed = 256 if n < 1024 or args.full_throughput else args.inputs_1024
            job = {
                "tool": "ours",
                "path": str(EXAMPLES / f"{name}.rasp"),
                "vocab": LETTERS,
                "max_len": n,
                "style": "random",
                "throughput": 256,
                "timed_inputs": 64 if args.quick else timed,
                "chunk": 256 if n < 1024 else 32,
                "interp_throughput": True,
                "timeout": args.timeout,
                "dtype": args.dtype,
            }
            log(f"throughput: {name} at {n}")
            r = run_job(job, args.timeout * 6 + 300)
            log(f"  -> {summarize(r)}")
            st = status_cell(r)
            if st or "model_tok_s" not in r:
                rows.append([name, str(n), st or r.get("status", "?"), "–", "–", "–"])
                if r.get("error") or r.get("crash"):
                    notes.append(f"- {name} at {n}: {r.get('error') or r.get('crash')}")
                continue
            rows.append(
                [
                    name,
                    str(n),
                    str(r["timed_inputs"]),
                    fmt_rate(r["model_tok_s"]),
                    fmt_rate(r.get("interp_tok_s")),
                    fmt_ratio(r["model_tok_s"], r.get("interp_tok_s")),
                ]
            )
    header = [
        "program",
        "length",
        "inputs timed",
        "model tokens/s",
        "interpreter tokens/s",
        "model ÷ interpreter",
    ]
    text = "### 3. Inference throughput\n\n" + table(header, rows) + "\n\n"
    text += (
        "Full-length random inputs over a–z. Model: `run_batch` on CPU in float32 after a "
        "warm-up call (best of up to 5 repeats within 1 s, for the interpreter too), input "
        "tokens per second of wall time including encoding and decoding, batches of 256 inputs"
    )
    if not args.full_throughput and not args.quick:
        text += (
            f" at length 64; at length 1024 the first {args.inputs_1024} of the 256 inputs "
            "are timed, in batches of at most 32 (a batch of 256 inputs of length 1024 "
            "needs several GiB of activations and minutes per program on this machine; "
            "`--full-throughput` times all 256)"
        )
    text += ". Interpreter: `evaluate` on the same inputs, one after another.\n"
    if notes:
        text += "\nNot compiled:\n\n" + "\n".join(notes) + "\n"
    return text


def section_precision(args: argparse.Namespace) -> str:
    dtypes = ("float32", "float16", "bfloat16")
    others = sorted(p.stem for p in EXAMPLES.glob("*.rasp") if p.stem not in BIG_THREE)
    rows, notes = [], []
    for name in list(BIG_THREE) + others:
        vocab, style = (LETTERS, "random") if name in BIG_THREE else example_vocab(name)
        upto = (64 if args.quick else 1024) if name in BIG_THREE else (64 if args.quick else 256)
        cells = []
        for dtype in dtypes:
            job = {
                "tool": "certify",
                "path": str(EXAMPLES / f"{name}.rasp"),
                "vocab": vocab,
                "style": style,
                "dtype": dtype,
                "upto": upto,
                "check": 20 if args.quick else 100,
                "check_long": 20,
            }
            log(f"precision: {name} in {dtype} (up to {upto})")
            r = run_job(job, args.timeout * 12 + 300)
            log(f"  -> {summarize(r)}, certified={r.get('certified')}")
            if r.get("status") != "ok":
                cells.append(r.get("status", "?"))
                notes.append(f"- {name} in {dtype}: {r.get('error') or r.get('crash') or ''}")
                continue
            best = r["certified"]
            cell = f"{best}" if best else "none"
            if best:
                cell += f" ({r.get('exact', 0)}/{r.get('checked', 0)})"
            if best < upto and r.get("reason"):
                notes.append(
                    f"- {name} in {dtype}: refused at {2 * best if best else 1}: "
                    f"{' '.join(str(r['reason']).split())[:160]}"
                )
            cells.append(cell)
        rows.append([name, "a–z" if vocab == LETTERS else vocab, str(upto)] + cells)
    header = ["program", "vocab", "tried up to"]
    header += [f"{d}: certified max_len (exact)" for d in dtypes]
    text = "### 4. Certified precision\n\n" + table(header, rows) + "\n\n"
    text += (
        "For each dtype, the largest maximum length (powers of two, then the limit tried) at "
        "which the compiler certifies the model exact (`largest_certified_length`: every "
        "head's score rounding and every MLP's pre-activations and input tolerances checked "
        "against the dtype's unit round-off). In brackets: the model compiled at that length "
        "and run in that dtype on random inputs (a quarter at full length; 100 inputs, 20 at "
        "lengths of 512 and more) that equal the interpreter / inputs run.\n"
    )
    if notes:
        text += "\nWhy the next length is refused:\n\n" + "\n".join(notes) + "\n"
    return text


# ---------------------------------------------------------------------------- main


def machine_line() -> str:
    try:
        import torch

        tv = torch.__version__
        gpu = "GPU available but unused" if torch.cuda.is_available() else "no GPU"
    except Exception:  # noqa: BLE001
        tv, gpu = "?", "?"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()}-core CPU ({cpu}), {gpu}, Python {platform.python_version()}, torch {tv}"
    )


def update_readme(head: str, parts: list[str]) -> None:
    """Replace what follows README.md's "## Benchmarks" heading, up to the next "## "."""
    readme = ROOT / "README.md"
    lines = readme.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next(i for i, ln in enumerate(lines) if ln.rstrip() == "## Benchmarks")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), None)
    intro = wrap_prose(
        "Produced by `python benchmarks/run.py --full-throughput` (about 30 minutes on the "
        "machine below, 22 without `--full-throughput`, which times all 256 inputs at "
        "length 1024; `--quick` for a smoke run, `--no-tracr` without the comparison; tracr is the "
        "optional `bench` extra, `pip install -e '.[bench]'`). The same tables are in "
        "[benchmarks/results.md](benchmarks/results.md)."
    )
    body = "\n" + intro + "\n\n" + head + "\n\n" + "\n".join(parts)
    new = lines[: start + 1] + [body.rstrip("\n") + "\n"]
    if end is not None:
        new += ["\n"] + lines[end:]
    readme.write_text("".join(new), encoding="utf-8")


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
    head = (
        f"Machine: {machine_line()}. Run `python benchmarks/run.py"
        f"{' --quick' if args.quick else ''}{' --no-tracr' if args.no_tracr else ''}` "
        f"on {_dt.date.today().isoformat()}"
    )
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "rasp_compiler", "grammar"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if rev:
            head += f" (commit {rev}{' plus uncommitted compiler changes' if dirty else ''})"
    except OSError:
        pass
    builders = {
        "length": section_length,
        "tracr": section_tracr,
        "throughput": section_throughput,
        "precision": section_precision,
    }
    for key in sections:
        part = wrap_prose(builders[key](args))
        print(part, flush=True)
        parts.append(part)
    total = time.perf_counter() - started
    head += f"; the whole run took {total / 60:.1f} min."
    head = wrap_prose(head)
    text = "## Benchmark results\n\n" + head + "\n\n" + "\n".join(parts)
    print(head)
    Path(args.out).write_text(text, encoding="utf-8")
    log(f"wrote {args.out}")
    if args.update_readme:
        update_readme(head, parts)
        log("updated README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
