"""Jobs and their results, and running a job in a fresh interpreter.

Every compilation runs in a fresh subprocess (``run.py --worker``, a :class:`Job` as JSON
on stdin), so memory is measured per compile and a hung compile can be killed.  The worker
prints partial results as ``RESULT {json}`` lines (:func:`emit`); the parent merges them
into one :class:`Result` (:func:`run_job`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .inputs import ROOT, SEED

RUN_PY = Path(__file__).resolve().with_name("run.py")


@dataclass
class Job:
    """One compile (and what to do with the model) for a worker."""

    tool: str  # "ours", "tracr" or "certify"
    vocab: str | list[str]
    style: str  # input style, see inputs.make_inputs
    max_len: int = 0  # not for "certify", which searches for it
    path: str | None = None  # ours/certify: an example file...
    source: str | None = None  # ...or RASP source
    program: str | None = None  # tracr: the task name
    dtype: str | None = None  # ours/certify: compile_program(dtype=...)
    timeout: float | None = None  # seconds the compile may take in the worker
    check: int = 0  # random inputs compared with the reference semantics
    check_long: int = 0  # certify: inputs compared at lengths of 512 and more
    seed: int = SEED
    chunk: int = 256  # ours: run_batch chunk size
    return_refs: bool = False  # send back the reference outputs of the checked inputs
    throughput: int = 0  # full-length inputs to time the model on
    timed_inputs: int | None = None  # ours: of those, how many are timed (None: all)
    interp_throughput: bool = False  # ours: also time the interpreter
    upto: int = 0  # certify: the largest max length tried

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        return cls(**json.loads(text))


@dataclass
class Result:
    """What a worker found out; None where it did not get that far (or was not asked)."""

    status: str | None = None  # "ok", "timeout", "compile error", "crash"
    error: str | None = None  # the compile error's message
    crash: str | None = None  # the last line of a worker's stderr when it failed
    killed: bool = False  # the parent killed the worker past its limit
    wall_s: float | None = None  # the worker's whole life, seen from the parent
    # the compile
    compile_s: float | None = None
    compile_s_internal: float | None = None
    rss_base_mb: float | None = None  # peak RSS just before compiling
    rss_peak_mb: float | None = None  # peak RSS just after
    # the model's size
    layers: int | None = None
    heads: int | None = None
    d_model: int | None = None
    d_mlp: int | None = None
    d_head: int | None = None
    params: int | None = None
    # exactness on random inputs
    checked: int | None = None
    exact: int | None = None
    skipped: int | None = None
    refs: list[list[Any] | None] | None = None
    tolerance: float | None = None  # tracr: for numerical outputs
    apply_diff: int | None = None  # tracr: batched forward vs model.apply
    apply_verdict_diff: int | None = None
    # throughput
    model_tok_s: float | None = None
    timed_inputs: int | None = None
    model_s: float | None = None
    model_reps: int | None = None
    jit_s: float | None = None
    interp_tok_s: float | None = None
    interp_s: float | None = None
    interp_reps: int | None = None
    ratio: float | None = None  # median of interleaved (interpreter time / model time)
    load: float | None = None  # the 1-minute load average when the timing started
    flop_dense: float | None = None  # FLOP per token at each layer's own shape
    flop_nonzero: float | None = None  # FLOP per token over nonzero rows and columns
    matmul_flop_s: float | None = None  # this machine's float32 matmul rate (FLOP/s)
    # certify
    certified: int | None = None
    reason: str | None = None
    certify_s: float | None = None
    sampled_exact: int | None = None  # largest length a float32 model cast to the dtype
    sampled_fail: int | None = None  # the length where sampling found a wrong output

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def merge(self, fields: dict[str, Any]) -> None:
        for key, value in fields.items():
            if key not in _RESULT_FIELDS:
                raise KeyError(f"unknown result field {key!r}")
            setattr(self, key, value)

    def problem(self) -> str | None:
        """The compile error, else the crash, if any."""
        return self.error or self.crash

    def summary(self) -> str:
        """The main fields, for the progress log."""
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
        shown = ((k, getattr(self, k)) for k in keys)
        return ", ".join(
            f"{k}={(round(v, 3) if isinstance(v, float) else v)}" for k, v in shown if v is not None
        )


_RESULT_FIELDS = frozenset(f.name for f in dataclasses.fields(Result))


def emit(result: Result) -> None:
    """Worker side: a partial result (its fields that are set); the parent merges them."""
    fields = {
        f.name: getattr(result, f.name)
        for f in dataclasses.fields(result)
        if getattr(result, f.name) is not None and f.name != "killed"
    }
    print("RESULT " + json.dumps(fields, default=str), flush=True)


def run_job(job: Job, limit: float) -> Result:
    """Run one job in a fresh interpreter; merge its RESULT lines.  ``limit``: seconds."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("JAX_PLATFORMS", "cpu")
    proc = subprocess.Popen(
        [sys.executable, str(RUN_PY), "--worker"],
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
        out, err = proc.communicate(job.to_json(), timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        killed = True
    result = Result()
    for line in out.splitlines():
        if line.startswith("RESULT "):
            result.merge(json.loads(line[7:]))
    result.wall_s = time.perf_counter() - t0
    if killed:
        result.killed = True
        result.status = result.status or "timeout"
    elif proc.returncode != 0:
        tail = [ln for ln in err.strip().splitlines() if ln.strip()][-1:] or ["?"]
        result.crash = tail[0][:300]
        result.status = result.status or "crash"
    return result


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


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
