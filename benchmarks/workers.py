"""Worker side: compile one program (ours or tracr's), measure it, check it, time it.

A worker is ``run.py --worker`` reading one :class:`~benchmarks.jobs.Job` as JSON on stdin
and printing :class:`~benchmarks.jobs.Result` fields as it gets them (see jobs.py).  Torch,
jax and tracr are imported here, inside the workers, never by the parent.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .inputs import (
    SEED,
    count_sweep,
    edge_inputs,
    full_length_inputs,
    make_inputs,
    tracr_program,
)
from .jobs import Job, Result, emit

SANITY = 8  # inputs on which tracr's batched forward is compared with model.apply


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


def plain(x: Any) -> Any:
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


def _best_time(
    fn: Callable[[], object], budget: float = 1.0, max_reps: int = 5
) -> tuple[float, int]:
    """(fastest wall time of ``fn()``, repeats): repeated while the total stays under
    ``budget`` seconds, at most ``max_reps`` times."""
    times: list[float] = []
    while len(times) < max_reps and (not times or sum(times) + min(times) <= budget):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), len(times)


def _interleaved(
    a: Callable[[], object], b: Callable[[], object], budget: float = 3.0, max_pairs: int = 7
) -> tuple[float, float, float, int]:
    """(best time of ``a``, best time of ``b``, median of the pairs' ``t_b / t_a``, pairs):
    ``a`` and ``b`` alternate, at least 3 pairs, more while the total stays under
    ``budget`` seconds."""
    ta: list[float] = []
    tb: list[float] = []
    while len(ta) < max_pairs and (len(ta) < 3 or sum(ta) + sum(tb) <= budget):
        t0 = time.perf_counter()
        a()
        t1 = time.perf_counter()
        b()
        t2 = time.perf_counter()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    ratios = sorted(y / x for x, y in zip(ta, tb))
    return min(ta), min(tb), ratios[len(ratios) // 2], len(ta)


def _last_sop(program: str | Path) -> Any:
    """The last sop a program (a file, or RASP source) defines, for the interpreter."""
    from rasp_compiler import load_program, load_source
    from rasp_compiler.language.lower import choose_sop

    session = load_program(program) if isinstance(program, Path) else load_source(program)
    return choose_sop(session, None, str(program))[1]


def _check_ours(
    model: Any, sop: Any, inputs: list[list[Any]], chunk: int
) -> tuple[int, int, int, list[list[Any] | None]]:
    """(exact, wrong, skipped, reference outputs): ``model.run_batch`` vs the reference
    interpreter; inputs the interpreter rejects are skipped (their reference is None)."""
    from rasp_compiler import RaspError, evaluate
    from rasp_compiler.verification import same_output

    expected: list[list[Any] | None] = []
    runnable = []
    for inp in inputs:
        try:
            expected.append([plain(x) for x in evaluate(sop, inp)])
            runnable.append(inp)
        except RaspError:
            expected.append(None)
    got = iter(model.run_batch(runnable, chunk_size=chunk))
    ok = bad = skipped = 0
    for exp in expected:
        if exp is None:
            skipped += 1
        elif same_output(exp, next(got)):
            ok += 1
        else:
            bad += 1
    return ok, bad, skipped, expected


def worker_ours(job: Job) -> None:
    import torch

    torch.set_grad_enabled(False)
    from rasp_compiler import CompileError, RaspError, compile_program, evaluate

    program: str | Path = Path(job.path) if job.path is not None else str(job.source)
    vocab, max_len = job.vocab, job.max_len
    kwargs = {"dtype": job.dtype} if job.dtype else {}
    base = _maxrss_mb()
    try:
        with _time_limit(job.timeout):
            t0 = time.perf_counter()
            # allow_partial: a program defined on some inputs only (sort_unique, on
            # distinct tokens) is compared on the inputs the interpreter accepts
            model = compile_program(
                program, vocab=vocab, max_len=max_len, allow_partial=True, **kwargs
            )
            compile_s = time.perf_counter() - t0
    except _Timeout:
        emit(Result(status="timeout", rss_base_mb=base, rss_peak_mb=_maxrss_mb()))
        return
    except CompileError as exc:
        first = exc.problems[0] if getattr(exc, "problems", None) else exc
        msg = " ".join(str(getattr(first, "message", first)).split())
        emit(
            Result(
                status="compile error",
                error=msg[:300],
                rss_base_mb=base,
                rss_peak_mb=_maxrss_mb(),
            )
        )
        return
    peak = _maxrss_mb()
    cfg = model.config
    emit(
        Result(
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
    )
    sop = _last_sop(program)

    if job.check:
        inputs = make_inputs(vocab, max_len, job.check, job.style, job.seed)
        if not job.return_refs:  # (the tracr comparison runs both tools on the same inputs)
            inputs += edge_inputs(vocab, max_len, job.style)
        ok, bad, skipped, refs = _check_ours(model, sop, inputs, job.chunk)
        emit(
            Result(
                checked=ok + bad,
                exact=ok,
                skipped=skipped,
                refs=refs if job.return_refs else None,
            )
        )

    if job.throughput:
        inputs = full_length_inputs(vocab, max_len, job.throughput, job.style, SEED + 1)
        timed = inputs[: job.timed_inputs]
        model.run_batch(timed[:2])  # warm-up
        tokens = sum(len(x) for x in timed)

        def run_model() -> None:
            model.run_batch(timed, chunk_size=job.chunk)

        def interpret_all() -> None:
            for inp in timed:
                try:
                    evaluate(sop, inp)
                except RaspError:
                    pass

        from rasp_compiler.cost import flops_per_token, matmul_rate

        cost = flops_per_token(model.transformer, max_len)
        rate = matmul_rate()
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        if job.interp_throughput:
            # interleaved in one process: model, interpreter, model, ... so that both see
            # the same load; the ratio is the median of the pairs' ratios
            dm, di, ratio, reps = _interleaved(run_model, interpret_all)
            result = Result(
                model_tok_s=tokens / dm, timed_inputs=len(timed), model_s=dm, model_reps=reps
            )
            result.interp_tok_s, result.interp_s, result.interp_reps = tokens / di, di, reps
            result.ratio, result.load = ratio, load
            result.flop_dense, result.flop_nonzero = cost.dense, cost.nonzero
            result.matmul_flop_s = rate
        else:
            dt, reps = _best_time(run_model)
            result = Result(
                model_tok_s=tokens / dt, timed_inputs=len(timed), model_s=dt, model_reps=reps
            )
            result.load = load
        emit(result)


def worker_tracr(job: Job) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    import jax
    import jax.numpy as jnp
    import numpy as np
    from tracr.compiler import compiling
    from tracr.rasp import rasp

    vocab, max_len, name = job.vocab, job.max_len, str(job.program)
    program = tracr_program(name, vocab, max_len)
    base = _maxrss_mb()
    try:
        with _time_limit(job.timeout):
            t0 = time.perf_counter()
            model = compiling.compile_rasp_to_model(
                program, vocab=set(vocab), max_seq_len=max_len, compiler_bos="BOS"
            )
            compile_s = time.perf_counter() - t0
    except _Timeout:
        emit(Result(status="timeout", rss_base_mb=base, rss_peak_mb=_maxrss_mb()))
        return
    except Exception as exc:  # noqa: BLE001 - tracr raises many kinds
        emit(Result(status="compile error", error=f"{type(exc).__name__}: {exc}"[:300]))
        return
    cfg = model.model_config
    emit(
        Result(
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
            rows.append([plain(v) for v in vals[1:]])
        return rows

    if job.check:
        inputs = make_inputs(vocab, max_len, job.check, job.style, job.seed)
        tol = 0.5 / (max_len * max_len)  # half the smallest gap between two means k/m, m <= n
        t = tol if numerical else 0.0
        by_len: dict[int, list[int]] = {}
        for i, inp in enumerate(inputs):
            by_len.setdefault(len(inp), []).append(i)
        got: list[Any] = [None] * len(inputs)
        for idx in by_len.values():
            for i, row in zip(idx, run_same_length([inputs[i] for i in idx]), strict=True):
                got[i] = row
        ok = bad = skipped = 0
        refs: list[list[Any] | None] = []
        for inp, g in zip(inputs, got, strict=True):
            try:
                exp = [plain(v) for v in rasp.evaluate(program, inp)]
            except Exception:  # noqa: BLE001
                refs.append(None)
                skipped += 1
                continue
            refs.append(exp)
            if same_output_tol(exp, g, t):
                ok += 1
            else:
                bad += 1
        # Sanity check that the batched path is model.apply, on the first SANITY inputs (full
        # length): outputs that differ (float rounding of XLA vs op-by-op) and, of those,
        # inputs where one path is right and the other wrong.
        apply_diff = apply_verdict_diff = 0
        for inp, g, ref in list(zip(inputs, got, refs, strict=True))[:SANITY]:
            direct = [plain(v) for v in model.apply(["BOS", *inp]).decoded[1:]]
            if not same_output_tol(direct, g, 1e-6):
                apply_diff += 1
                if ref is not None and same_output_tol(ref, direct, t) != same_output_tol(
                    ref, g, t
                ):
                    apply_verdict_diff += 1
        emit(
            Result(
                checked=ok + bad,
                exact=ok,
                skipped=skipped,
                tolerance=t,
                apply_diff=apply_diff,
                apply_verdict_diff=apply_verdict_diff,
                refs=refs if job.return_refs else None,
            )
        )

    if job.throughput:
        inputs = full_length_inputs(vocab, max_len, job.throughput, job.style, SEED + 1)
        t0 = time.perf_counter()
        run_same_length(inputs)  # jit compile for this batch shape, not timed
        jit_s = time.perf_counter() - t0
        dt, reps = _best_time(lambda: run_same_length(inputs))
        emit(
            Result(model_tok_s=sum(map(len, inputs)) / dt, model_s=dt, jit_s=jit_s, model_reps=reps)
        )


def worker_certify(job: Job) -> None:
    """The largest certified max length in ``job.dtype``, then a sampled check there."""
    import torch

    torch.set_grad_enabled(False)
    from rasp_compiler import compile_program
    from rasp_compiler.compiler.pipeline import largest_certified_length

    program = Path(str(job.path))
    sop = _last_sop(program)
    vocab, dtype = job.vocab, str(job.dtype)
    t0 = time.perf_counter()
    best, reason = largest_certified_length(sop, tuple(vocab), dtype, upto=job.upto)
    emit(Result(status="ok", certified=best, reason=reason, certify_s=time.perf_counter() - t0))
    if best:
        model = compile_program(program, vocab=vocab, max_len=best, dtype=dtype)
        count = job.check if best < 512 else job.check_long
        inputs = make_inputs(vocab, best, count, job.style, SEED + 2)
        inputs += edge_inputs(vocab, best, job.style) + count_sweep(vocab, best, job.style)
        ok, bad, _, _ = _check_ours(model, sop, inputs, chunk=32)
        emit(Result(checked=ok + bad, exact=ok))
    if dtype != "float32":
        exact_upto, failed = _sampled_exact(program, sop, vocab, dtype, job)
        emit(Result(sampled_exact=exact_upto, sampled_fail=failed))


def _sampled_exact(
    program: Path, sop: Any, vocab: str, dtype: str, job: Job
) -> tuple[int, int | None]:
    """(the largest max length, powers of two up to ``job.upto``, at which the model
    compiled for float32 and cast to ``dtype`` equals the interpreter on every sampled
    input; the first length where it did not, or None).  20 random inputs per length (a
    quarter at full length), the :func:`edge_inputs` and the :func:`count_sweep` at full
    length."""
    from rasp_compiler import CompileError, compile_program
    from rasp_compiler.dtypes import torch_dtype

    best, n = 0, 1
    while n <= int(job.upto or 0):
        try:
            model = compile_program(program, vocab=vocab, max_len=n)
        except CompileError:
            return best, n
        model = model.to(torch_dtype(dtype))
        inputs = make_inputs(vocab, n, 20, job.style, SEED + 3) + edge_inputs(vocab, n, job.style)
        inputs += count_sweep(vocab, n, job.style)
        try:
            ok, bad, _, _ = _check_ours(model, sop, inputs, chunk=16)
        except Exception:  # noqa: BLE001 (a model that cannot decode its logits is wrong)
            ok, bad = 0, 1
        if bad or not ok:
            return best, n
        best = n
        upto = int(job.upto or 0)
        n = upto if n < upto < 2 * n else 2 * n
    return best, None


def worker_main() -> None:
    job = Job.from_json(sys.stdin.read())
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    if job.tool == "ours":
        worker_ours(job)
    elif job.tool == "certify":
        worker_certify(job)
    else:
        worker_tracr(job)
