"""Mutants of the example programs, run through the command line and classified.

Each ``examples/*.rasp`` (its header names a ``# Vocabulary:`` and ``# Example:`` inputs) is
mutated: an operator swapped (``+ - * / % == != < > <= >= and or``), a constant changed (0,
1, -1, huge numbers such as ``10 ^ 300`` or a 309-digit literal, ``1e308``, the empty
string, ...), a name swapped for another name bound in the program (or a library /
builtin name), a statement deleted or duplicated, or an expression nested deeply.
Every mutant then goes through the command line exactly as a user would run it::

    python -m rasp_compiler eval    MUTANT.rasp --input X
    python -m rasp_compiler compile MUTANT.rasp --vocab V --max-len 5 -o DIR
    python -m rasp_compiler verify  MUTANT.rasp --vocab V --max-len 5 --exhaustive-len L
                                                                 (if compile worked)
    python -m rasp_compiler eval    MUTANT.rasp --input X --json  (if X fits the model)
    python -m rasp_compiler run     DIR --input X --json

(``L``: every input up to the length where there are ~4000 of them, plus the default 500
random ones; verify's own default, ~20,000, takes ~9 s for a 26-letter vocabulary)

each in its own process, capped at 10 s of CPU time (``RLIMIT_CPU``, with one torch
thread; 30 s of wall clock as a backstop) and a 4 GiB address space (``RLIMIT_AS``).  CPU
time rather than wall time: on a busy two-core machine a 5 s command can take 20 s.  Every
command's outcome is one of

- ``ok``: exit 0;
- ``located``: a non-zero exit with a message and neither a traceback nor "internal error";
- ``internal``: a traceback, "internal error", a crash by a signal, or a silent failure;
- ``hang``: stopped by the time cap;
- ``memory``: killed by (or failing on) the memory cap;
- ``mismatch``: ``verify`` found a counterexample, or the saved model's output for X
  differs from the interpreter's (``eval --json``).  (A FAILED verify with 0 mismatches --
  the interpreter rejected too many inputs to compare -- is a message: ``located``.)

The first two are fine (a mutant is usually a broken program, and saying so with its
location is the job); the other four are bugs.

Processes: by default each worker is a small server that imports the package (and torch)
once and forks one child per command, which calls ``rasp_compiler.cli.main`` exactly as
``python -m rasp_compiler`` does; this saves the ~3 s torch import per command.  The time
cap then counts the command's own work only.  ``--exec`` runs the real
``python -m rasp_compiler`` instead (the cap then includes the ~3 s start-up);
``main`` re-runs every bad case that way before printing it, to confirm it.

Run by hand::

    python tests/mutate.py --count 500 --seed 11 [--workers 2] [--show 5] [--save-bad DIR]
    python tests/mutate.py --count 500 --seed 11 --only 28,54    # just those mutants
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
LIBRARY = ROOT / "rasp_compiler" / "language" / "library.rasp"

MAX_LEN = 5
# verify checks every input up to the longest length with at most this many inputs in all
# (plus its 500 random ones): its default (~20,000) takes ~9 s for a 26-letter vocabulary
VERIFY_EXHAUSTIVE_BUDGET = 4000
TIME_CAP = 10  # seconds of CPU per command (RLIMIT_CPU; one thread, see _child_env)
WALL_FACTOR = 3  # and a wall-clock backstop of TIME_CAP * WALL_FACTOR seconds
MEM_CAP = 4 * 2**30  # bytes of address space per command
OUTPUT_CAP = 20_000  # characters of stdout / stderr kept per command

CLASSES = ("ok", "located", "internal", "hang", "memory", "mismatch")
BAD = ("internal", "hang", "memory", "mismatch")
# worst first: the class a mutant gets from its commands
SEVERITY = ("mismatch", "internal", "memory", "hang", "located", "ok")

MEMORY_SIGNS = (
    "MemoryError",
    "Cannot allocate memory",
    "can't allocate memory",
    "std::bad_alloc",
    "not enough memory",
    "out of memory",
)


# ------------------------------------------------------------------ the examples


@dataclass(frozen=True)
class Example:
    name: str
    path: Path
    source: str
    vocab: str
    inputs: tuple[str, ...]


def load_examples(directory: Path = EXAMPLES) -> list[Example]:
    """Every ``*.rasp`` in ``directory`` with its header's vocabulary and example inputs."""
    out = []
    for path in sorted(directory.glob("*.rasp")):
        text = path.read_text(encoding="utf-8")
        vocab = re.search(r"^# Vocabulary: (\S+)\s*$", text, re.M)
        inputs = re.findall(r'^# Example: "([^"]*)"', text, re.M)
        if not vocab or not inputs:
            raise ValueError(f"{path}: the header needs '# Vocabulary:' and '# Example:' lines")
        out.append(Example(path.stem, path, text, vocab.group(1), tuple(inputs)))
    if not out:
        raise ValueError(f"no examples in {directory}")
    return out


# ------------------------------------------------------------------ tokens

TOKEN_RE = re.compile(
    r"""
    (?P<comment>\#[^\n]*)
  | (?P<ws>\s+)
  | (?P<string>"[^"\n]*")
  | (?P<number>[0-9]+\.[0-9]+|[0-9]+)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|[-+*/%^<>=])
  | (?P<punct>[(){}\[\],;:])
  | (?P<other>.)
    """,
    re.X | re.S,
)

SYMBOL_OPS = ["+", "-", "*", "/", "%", "==", "!=", "<", ">", "<=", ">="]
WORD_OPS = ["and", "or"]
OPS = SYMBOL_OPS + WORD_OPS
KEYWORDS = {"def", "return", "for", "in", "if", "else", "not", "and", "or", "load", "draw"}
BUILTIN_VALUES = ["tokens", "indices", "length", "tokens_int", "tokens_str", "True", "False"]
BUILTIN_FUNCTIONS = ["select", "aggregate", "selector_width", "indicator", "round", "len"]
BUILTIN_FUNCTIONS += ["range", "zip"]


@dataclass
class Tok:
    kind: str
    text: str


def tokenize(source: str) -> list[Tok]:
    return [Tok(m.lastgroup or "other", m.group()) for m in TOKEN_RE.finditer(source)]


def untokenize(toks: Sequence[Tok]) -> str:
    return "".join(t.text for t in toks)


def library_functions() -> list[str]:
    try:
        return re.findall(r"^def ([A-Za-z_]\w*)\(", LIBRARY.read_text(encoding="utf-8"), re.M)
    except OSError:
        return []


def _code(toks: Sequence[Tok], start: int = 0) -> list[int]:
    """Indices of the tokens from ``start`` on that are code (not white space or comments)."""
    return [i for i in range(start, len(toks)) if toks[i].kind not in ("ws", "comment")]


@dataclass(frozen=True)
class Stmt:
    start: int  # first token
    end: int  # one past the last token (the ';' or the block's '}')
    block: bool  # a for / def with a { ... } body
    eq: int | None  # the '=' of an assignment


def statements(toks: Sequence[Tok]) -> list[Stmt]:
    """Every statement, at any nesting (top level and inside for / def bodies)."""
    code = _code(toks)
    out: list[Stmt] = []

    def parse(k: int, until_brace: bool) -> int:
        # parse statements from code position k; returns the code position after them
        while k < len(code):
            i = code[k]
            if until_brace and toks[i].text == "}":
                return k
            if toks[i].text in ("for", "def"):
                # the header up to its '{' at bracket depth 0, the body, the matching '}'
                depth, j = 0, k
                while j < len(code):
                    t = toks[code[j]].text
                    if t in ("(", "["):
                        depth += 1
                    elif t in (")", "]"):
                        depth -= 1
                    elif t == "{" and depth == 0:
                        break
                    j += 1
                if j >= len(code):
                    return len(code)
                j = parse(j + 1, True)
                if j >= len(code):
                    return len(code)
                out.append(Stmt(i, code[j] + 1, True, None))
                k = j + 1
                continue
            depth, j, eq = 0, k, None
            while j < len(code):
                t = toks[code[j]].text
                if t in ("(", "[", "{"):
                    depth += 1
                elif t in (")", "]", "}"):
                    depth -= 1
                    if depth < 0:
                        break
                elif t == "=" and depth == 0 and eq is None:
                    eq = code[j]
                elif t == ";" and depth == 0:
                    break
                j += 1
            if j >= len(code) or toks[code[j]].text != ";":
                return j
            out.append(Stmt(i, code[j] + 1, False, eq))
            k = j + 1
        return k

    parse(0, False)
    return sorted(out, key=lambda s: s.start)


def bound_names(toks: Sequence[Tok]) -> tuple[list[str], list[str]]:
    """(values, functions) the program binds: assigned names, loop variables, def names
    and parameters."""
    values: list[str] = []
    functions: list[str] = []
    code = _code(toks)
    for n, k in enumerate(code):
        t = toks[k]
        if t.kind != "name" or t.text in KEYWORDS or t.text in ("True", "False"):
            continue
        nxt = toks[code[n + 1]].text if n + 1 < len(code) else ""
        prev = toks[code[n - 1]].text if n > 0 else ""
        if prev == "def":
            functions.append(t.text)
        elif prev == "for" or (nxt in ("=", ",") and prev in ("", ";", "{", "}", ",", "(")):
            values.append(t.text)
    return sorted(set(values)), sorted(set(functions))


# ------------------------------------------------------------------ mutations


def _with_spaces(text: str) -> str:
    return f" {text} "


def m_swap_op(rng: random.Random, toks: list[Tok]) -> str | None:
    """Swap one operator for another (any of + - * / % == != < > <= >= and or)."""
    sites = [i for i in _code(toks) if toks[i].text in OPS and toks[i].kind in ("op", "name")]
    if not sites:
        return None
    i = rng.choice(sites)
    old = toks[i].text
    new = rng.choice([o for o in OPS if o != old])
    toks[i] = Tok("op", _with_spaces(new))
    return f"operator {old!r} -> {new!r}"


def _constants(vocab: str) -> list[tuple[str, float]]:
    """(replacement, weight): small and huge numbers, odd strings, booleans."""
    letter = vocab[len(vocab) // 2]
    return [
        ("0", 3),
        ("1", 3),
        ("-1", 3),
        ("2", 2),
        ("0.5", 1),
        ("-0.5", 1),
        ("0.0", 1),
        ("10 ^ 300", 2),
        ("-(10 ^ 300)", 1),
        ("10 ^ 400", 1),
        ("2 ^ 1024", 1),
        ("1" + "0" * 300, 2),  # an int literal of 301 digits
        ("1" + "0" * 308 + ".0", 2),  # 1e308 as a float literal
        ("1" + "0" * 309 + ".0", 1),  # 1e309: past the largest float
        ("1e308", 1),  # not RASP syntax: a located syntax error
        ("10 ^ 100000", 1),
        ("9 ^ 9 ^ 9", 1),
        ('""', 3),
        (f'"{letter}"', 2),
        ('"zz"', 1),
        ('"§"', 1),
        ("True", 1),
        ("False", 1),
        ("[]", 1),
    ]


def m_constant(rng: random.Random, toks: list[Tok], vocab: str = "abcd") -> str | None:
    """Change one numeric, string or boolean constant."""
    sites = [
        i
        for i in _code(toks)
        if toks[i].kind in ("number", "string") or toks[i].text in ("True", "False")
    ]
    if not sites:
        return None
    i = rng.choice(sites)
    old = toks[i].text
    choices = [(c, w) for c, w in _constants(vocab) if c != old]
    new = rng.choices([c for c, _ in choices], [w for _, w in choices])[0]
    toks[i] = Tok("number", new)
    return f"constant {_short(old)} -> {_short(new)}"


def m_swap_name(rng: random.Random, toks: list[Tok]) -> str | None:
    """Replace one use of a name by another name bound in the program, a builtin value
    (tokens, indices, length, ...) or, for a call, a library or builtin function."""
    values, functions = bound_names(toks)
    lib = library_functions()
    value_pool = sorted(set(values) | set(BUILTIN_VALUES[:3]))
    func_pool = sorted(set(functions) | set(lib) | set(BUILTIN_FUNCTIONS))
    code = _code(toks)
    sites = []
    for n, i in enumerate(code):
        t = toks[i]
        if t.kind == "name" and t.text not in KEYWORDS:
            call = n + 1 < len(code) and toks[code[n + 1]].text == "("
            sites.append((i, call))
    if not sites:
        return None
    i, call = rng.choice(sites)
    old = toks[i].text
    pool = func_pool if call else value_pool
    if rng.random() < 0.15:  # now and then across the kinds: a function used as a value
        pool = value_pool + func_pool
    pool = [p for p in pool if p != old]
    if not pool:
        return None
    new = rng.choice(pool)
    toks[i] = Tok("name", new)
    return f"name {old!r} -> {new!r}"


def _line_span(toks: list[Tok], st: Stmt) -> tuple[int, int]:
    """The statement's tokens plus the white space up to and including its line break."""
    end = st.end
    if end < len(toks) and toks[end].kind == "ws":
        end += 1
    return st.start, end


def m_delete(rng: random.Random, toks: list[Tok]) -> str | None:
    """Delete one statement (a whole for / def block, or one statement at any depth)."""
    sts = statements(toks)
    if not sts:
        return None
    st = rng.choice(sts)
    a, b = _line_span(toks, st)
    text = untokenize(toks[st.start : st.end])
    del toks[a:b]
    return f"delete {_short(text)}"


def m_duplicate(rng: random.Random, toks: list[Tok]) -> str | None:
    """Duplicate one statement in place (the copy follows it)."""
    sts = statements(toks)
    if not sts:
        return None
    st = rng.choice(sts)
    text = untokenize(toks[st.start : st.end])
    toks.insert(st.end, Tok("ws", "\n" + text))
    return f"duplicate {_short(text)}"


DEPTHS = [(2, 3), (5, 3), (20, 3), (100, 2), (500, 1), (3000, 1)]


def _wrappers(k: int) -> list[tuple[str, Callable[[str], str], str]]:
    """(name, wrap(expression) -> expression, prelude statements) for nesting depth k."""

    def parens(e: str) -> str:
        return "(" * k + e + ")" * k

    def negs(e: str) -> str:
        return "- " * (2 * k) + e

    def plus0(e: str) -> str:
        return "(" + e + ")" + " + 0" * k

    def ternary(e: str) -> str:
        inner = e
        for _ in range(k):
            e = f"({e} if True else {inner})"
        return e

    def ident(e: str) -> str:
        return "_mut_id(" * k + e + ")" * k

    def listwrap(e: str) -> str:
        return "[" * k + e + "]" * k + "[0]" * k

    def agg(e: str) -> str:
        for _ in range(min(k, 40)):
            e = f"aggregate(select(indices, indices, ==), {e})"
        return e

    return [
        ("parentheses", parens, ""),
        ("double negations", negs, ""),
        ("'+ 0' chain", plus0, ""),
        ("ternaries", ternary, ""),
        ("identity calls", ident, "def _mut_id(x) {\n    return x;\n}\n"),
        ("lists", listwrap, ""),
        ("same-position aggregates", agg, ""),
    ]


def m_deepen(rng: random.Random, toks: list[Tok]) -> str | None:
    """Nest one assignment's right-hand side (or one statement, in for loops) k deep."""
    sts = statements(toks)
    depth = rng.choices([d for d, _ in DEPTHS], [w for _, w in DEPTHS])[0]
    if rng.random() < 0.15 or not any(s.eq is not None for s in sts):
        if not sts:
            return None
        st = rng.choice(sts)
        k = min(depth, 200)
        text = untokenize(toks[st.start : st.end])
        new = "for _mut_i in [0] { " * k + text + " }" * k
        toks[st.start : st.end] = [Tok("other", new)]
        return f"{k} nested for loops around {_short(text)}"
    st = rng.choice([s for s in sts if s.eq is not None])
    assert st.eq is not None
    rhs = untokenize(toks[st.eq + 1 : st.end - 1]).strip()
    name, wrap, prelude = rng.choice(_wrappers(depth))
    toks[st.eq + 1 : st.end - 1] = [Tok("other", " " + wrap(rhs))]
    if prelude:
        first = statements(toks)[0].start
        toks.insert(first, Tok("other", prelude))
    k = min(depth, 40) if name == "same-position aggregates" else depth
    return f"{k} {name} around {_short(rhs)}"


MUTATIONS: list[tuple[str, float]] = [
    ("swap_op", 3),
    ("constant", 3),
    ("swap_name", 3),
    ("delete", 2),
    ("duplicate", 1),
    ("deepen", 2),
]


def mutate(rng: random.Random, example: Example) -> tuple[str, list[str]]:
    """(mutant source, descriptions): one mutation, or now and then two or three."""
    toks = tokenize(example.source)
    n = rng.choices([1, 2, 3], [6, 3, 1])[0]
    done: list[str] = []
    for _ in range(20):
        if len(done) >= n:
            break
        kind = rng.choices([m for m, _ in MUTATIONS], [w for _, w in MUTATIONS])[0]
        trial = [Tok(t.kind, t.text) for t in toks]
        if kind == "constant":
            desc = m_constant(rng, trial, example.vocab)
        else:
            desc = {
                "swap_op": m_swap_op,
                "swap_name": m_swap_name,
                "delete": m_delete,
                "duplicate": m_duplicate,
                "deepen": m_deepen,
            }[kind](rng, trial)
        if desc is None:
            continue
        toks = tokenize(untokenize(trial))  # re-tokenized: later mutations see its tokens
        done.append(desc)
    return untokenize(toks), done


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else f"{text[: n - 20]}...{text[-12:]} ({len(text)} chars)"


# ------------------------------------------------------------------ running commands


@dataclass
class Result:
    command: str  # eval | compile | verify | run
    argv: list[str]
    cls: str
    rc: int | None
    seconds: float
    stdout: str = ""
    stderr: str = ""
    detail: str = ""


def classify(
    command: str,
    rc: int | None,
    timed_out: bool,
    stdout: str,
    stderr: str,
    time_cap: int = TIME_CAP,
) -> tuple[str, str]:
    """(class, detail) of one finished command."""
    both = stdout + "\n" + stderr
    if timed_out:
        return "hang", f"still running after {time_cap * WALL_FACTOR}s (wall clock)"
    if rc == -signal.SIGXCPU:
        return "hang", f"used its {time_cap}s of CPU time"
    if any(s in both for s in MEMORY_SIGNS):
        return "memory", _first_line(both, MEMORY_SIGNS)
    if rc is not None and rc < 0:
        try:
            sig = signal.Signals(-rc).name
        except ValueError:
            sig = str(-rc)
        if -rc == signal.SIGKILL:  # not ours (we report those as hangs): the kernel's OOM
            return "memory", f"killed by {sig}"
        return "internal", f"killed by signal {sig}"
    if "Traceback" in both or "internal error" in both:
        return "internal", _first_line(both, ("internal error", "Error", "Traceback"))
    if command == "verify" and _verify_mismatches(stdout):
        return "mismatch", _first_line(stdout, ("verify:",))
    if rc == 0:
        return "ok", ""
    if not stderr.strip() and not stdout.strip():
        return "internal", f"exit {rc} with no message"
    return "located", _first_line(stderr or stdout, ("error", ":"))


def _verify_mismatches(stdout: str) -> int:
    """How many mismatches ``verify`` reported (a FAILED verdict may also mean that the
    interpreter rejected too many inputs to compare: that is a message, not a mismatch)."""
    found = re.search(r"verify: \w+ .*?, (\d+) mismatch", stdout)
    if found and int(found.group(1)) > 0:
        return int(found.group(1))
    return 1 if "counterexample" in stdout else 0


def _first_line(text: str, keys: Sequence[str]) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for key in keys:
        for ln in reversed(lines) if key in ("Error",) else lines:
            if key in ln:
                return ln.strip()[:300]
    return (lines[-1].strip() if lines else "")[:300]


def _limits(pid: int = 0, time_cap: int = TIME_CAP) -> None:
    """The caps, on this process (0) or another: address space, and CPU time.  CPU time,
    not wall time, so that a busy machine does not turn a slow command into a hang."""
    resource.prlimit(pid, resource.RLIMIT_AS, (MEM_CAP, MEM_CAP))
    resource.prlimit(pid, resource.RLIMIT_CPU, (time_cap, time_cap + 5))


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RASP_COMPILER_DEBUG", None)
    # one thread per command: the workers already use the cores
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    env["PYTHONHASHSEED"] = "0"
    return env


def exec_command(argv: Sequence[str], cwd: Path, time_cap: int = TIME_CAP) -> dict:
    """``python -m rasp_compiler ARGV`` in a fresh process, under the caps."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rasp_compiler", *argv],
        cwd=cwd,
        env=_child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    # the cap, set from outside (preexec_fn is unsafe with threads): the command is still
    # starting the interpreter, far from the cap
    try:
        _limits(proc.pid, time_cap)
    except (ProcessLookupError, PermissionError):
        pass
    timed_out = False
    try:
        out, err = proc.communicate(timeout=time_cap * WALL_FACTOR)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    return {
        "rc": proc.returncode,
        "timed_out": timed_out,
        "time_cap": time_cap,
        "seconds": time.monotonic() - started,
        "stdout": out.decode("utf-8", "replace")[-OUTPUT_CAP:],
        "stderr": err.decode("utf-8", "replace")[-OUTPUT_CAP:],
    }


class ForkServer:
    """``python tests/mutate.py --serve``: imports the package once, forks per command."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve"],
            cwd=ROOT,
            env=_child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        ready = self.proc.stdout.readline() if self.proc.stdout else ""
        if ready.strip() != "ready":
            raise RuntimeError(f"mutation fork server did not start: {ready!r}")

    def run(self, argv: Sequence[str], cwd: Path, time_cap: int = TIME_CAP) -> dict:
        assert self.proc.stdin and self.proc.stdout
        job = {"argv": list(argv), "cwd": str(cwd), "time_cap": time_cap}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("mutation fork server died")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


PREIMPORT = [
    "torch",
    "safetensors.torch",
    "rasp_compiler.language.lower",
    "rasp_compiler.language.interpret",
    "rasp_compiler.compiler.pipeline",
    "rasp_compiler.runtime",
    "rasp_compiler.serialize",
    "rasp_compiler.verify",
    "rasp_compiler.verification",
]


def serve() -> int:
    """The fork server's loop: one JSON job per line in, one JSON result per line out."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from imports must not reach the protocol
    import importlib

    import rasp_compiler.cli as cli

    # what the commands import on first use (torch above all: the point of the server);
    # best effort, as the package's layout may change under us
    for module in PREIMPORT:
        try:
            importlib.import_module(module)
        except ImportError:
            pass

    proto.write("ready\n")
    for line in sys.stdin:
        job = json.loads(line)
        with tempfile.TemporaryDirectory(prefix="rasp-mutate-io-") as io_dir:
            out_path, err_path = Path(io_dir) / "out", Path(io_dir) / "err"
            sys.stdout.flush()
            sys.stderr.flush()
            started = time.monotonic()
            pid = os.fork()
            if pid == 0:  # the child: one command, as python -m rasp_compiler runs it
                code = 1
                try:
                    proto.close()
                    os.setpgid(0, 0)
                    os.chdir(job["cwd"])
                    _limits(0, job["time_cap"])
                    fd_out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                    fd_err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                    os.dup2(fd_out, 1)
                    os.dup2(fd_err, 2)
                    sys.argv = ["rasp-compiler", *job["argv"]]
                    code = cli.main(job["argv"])
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                except BaseException:  # noqa: BLE001 - as the interpreter would: a traceback
                    traceback.print_exc()
                    code = 1
                finally:
                    try:
                        sys.stdout.flush()
                        sys.stderr.flush()
                    finally:
                        os._exit(code)
            deadline = started + job["time_cap"] * WALL_FACTOR
            timed_out, status = False, 0
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() > deadline:
                    timed_out = True
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except ProcessLookupError:  # not yet its own group
                        os.kill(pid, signal.SIGKILL)
                    _, status = os.waitpid(pid, 0)
                    break
                time.sleep(0.005)
            seconds = time.monotonic() - started
            rc = os.waitstatus_to_exitcode(status)
            result = {
                "rc": rc,
                "timed_out": timed_out,
                "time_cap": job["time_cap"],
                "seconds": seconds,
                "stdout": _read_tail(out_path),
                "stderr": _read_tail(err_path),
            }
        proto.write(json.dumps(result) + "\n")
    return 0


def _read_tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4 * OUTPUT_CAP))
            return f.read().decode("utf-8", "replace")[-OUTPUT_CAP:]
    except OSError:
        return ""


# ------------------------------------------------------------------ one mutant


@dataclass
class Outcome:
    index: int
    example: str
    mutations: list[str]
    source: str
    vocab: str
    input: str
    results: list[Result] = field(default_factory=list)

    @property
    def status(self) -> str:
        classes = {r.cls for r in self.results}
        return next((c for c in SEVERITY if c in classes), "ok")

    def worst(self) -> Result | None:
        for c in SEVERITY:
            for r in self.results:
                if r.cls == c:
                    return r
        return None

    @property
    def file_name(self) -> str:
        return f"{self.example}.rasp"


Runner = Callable[[Sequence[str], Path], dict]


def _same_json(a: object, b: object) -> bool:
    """Model output vs interpreter output, both as JSON lists (as ``verify`` compares)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same_json, a, b))
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return a == b and type(a) is type(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        fa, fb = float(a), float(b)
        if math.isnan(fa) or math.isnan(fb):
            return math.isnan(fa) and math.isnan(fb)
        return fa == fb or math.isclose(fa, fb, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def commands(o: Outcome, path: str, model_dir: str) -> dict[str, list[str]]:
    """The command lines (arguments after ``python -m rasp_compiler``) for a mutant."""
    return {
        "eval": ["eval", path, "--input", o.input],
        "eval_json": ["eval", path, "--input", o.input, "--json"],
        "compile": [
            "compile",
            path,
            "--vocab",
            o.vocab,
            "--max-len",
            str(MAX_LEN),
            "-o",
            model_dir,
        ],
        "verify": [
            "verify",
            path,
            "--vocab",
            o.vocab,
            "--max-len",
            str(MAX_LEN),
            "--exhaustive-len",
            str(exhaustive_len(len(o.vocab))),
        ],  # fmt: skip
        "run": ["run", model_dir, "--input", o.input, "--json"],
    }


def exhaustive_len(n_vocab: int, budget: int = VERIFY_EXHAUSTIVE_BUDGET) -> int:
    """The longest L <= MAX_LEN with n + n^2 + ... + n^L <= budget (at least 1)."""
    total, length = 0, 0
    while length < MAX_LEN:
        total += n_vocab ** (length + 1)
        if total > budget:
            break
        length += 1
    return max(1, length)


def check_mutant(o: Outcome, workdir: Path, runner: Runner) -> Outcome:
    """Write the mutant to ``workdir`` and run the commands on it, in order."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / o.file_name).write_text(o.source, encoding="utf-8")
    cmds = commands(o, o.file_name, "model")

    def go(name: str) -> Result:
        argv = cmds[name]
        r = runner(argv, workdir)
        cls, detail = classify(
            name.split("_")[0],
            r["rc"],
            r["timed_out"],
            r["stdout"],
            r["stderr"],
            r.get("time_cap", TIME_CAP),
        )
        res = Result(name, argv, cls, r["rc"], r["seconds"], r["stdout"], r["stderr"], detail)
        o.results.append(res)
        return res

    go("eval")
    comp = go("compile")
    if comp.cls == "ok" and not (workdir / "model" / "config.json").is_file():
        comp.cls, comp.detail = "internal", "compile exited 0 but wrote no model directory"
    if comp.cls != "ok":
        return o  # verify compiles the same program again: it would fail the same way
    go("verify")
    fits = len(o.input) <= MAX_LEN and set(o.input) <= set(o.vocab)
    if fits:
        ev = go("eval_json")
        run = go("run")
        if run.cls == "ok" and ev.cls == "ok":
            try:
                want, got = json.loads(ev.stdout), json.loads(run.stdout)
            except ValueError:
                run.cls, run.detail = "internal", "output is not JSON"
            else:
                if not _same_json(want, got):
                    run.cls = "mismatch"
                    run.detail = f"saved model on {o.input!r}: got {got}, interpreter says {want}"
    return o


def make_mutants(count: int, seed: int, examples: list[Example] | None = None) -> list[Outcome]:
    """The first ``count`` mutants of ``seed`` (mutant i depends on (seed, i) only)."""
    examples = examples or load_examples()
    out = []
    for i in range(count):
        ex = examples[(i + seed) % len(examples)]
        for attempt in range(10):
            rng = random.Random(f"{seed}:{i}:{attempt}")
            src, muts = mutate(rng, ex)
            if src != ex.source and muts:
                break
        x = random.Random(f"{seed}:{i}:input").choice(ex.inputs)
        out.append(Outcome(i, ex.name, muts, src, ex.vocab, x))
    return out


class _Pool:
    """``workers`` runners (fork servers, or plain subprocesses with ``exec_mode``)."""

    def __init__(self, workers: int, exec_mode: bool) -> None:
        self.exec_mode = exec_mode
        self.free: queue.Queue[ForkServer | None] = queue.Queue()
        self.all: list[ForkServer] = []
        self.lock = threading.Lock()
        for _ in range(workers):
            self.free.put(None)  # started lazily, in the worker thread

    def run_mutant(self, o: Outcome, workdir: Path) -> Outcome:
        if self.exec_mode:
            return check_mutant(o, workdir, exec_command)
        server = self.free.get()
        try:
            if server is None:
                server = ForkServer()
                with self.lock:
                    self.all.append(server)
            return check_mutant(o, workdir, server.run)
        except RuntimeError:  # the server died: a fresh one next time
            if server is not None:
                server.close()
            server = None
            raise
        finally:
            self.free.put(server)

    def close(self) -> None:
        for s in self.all:
            s.close()


def run(
    count: int,
    seed: int,
    workers: int | None = None,
    exec_mode: bool = False,
    keep: Path | None = None,
    progress: bool = False,
    only: Sequence[int] | None = None,
) -> list[Outcome]:
    """Make ``count`` mutants from ``seed``, run each through the CLI and classify it."""
    workers = workers or max(1, min(2, os.cpu_count() or 1))
    mutants = make_mutants(count, seed)
    if only is not None:
        mutants = [o for o in mutants if o.index in set(only)]
        count = len(mutants)
    root = keep or Path(tempfile.mkdtemp(prefix="rasp-mutate-"))
    pool = _Pool(workers, exec_mode)
    done = 0
    started = time.monotonic()

    def one(o: Outcome) -> Outcome:
        nonlocal done
        try:
            pool.run_mutant(o, root / f"m{o.index:05d}")
        except Exception as exc:  # noqa: BLE001 - the harness itself: report, go on
            o.results.append(Result("harness", [], "internal", None, 0.0, detail=repr(exc)))
        done += 1
        if progress:
            print(
                f"[{time.monotonic() - started:6.0f}s] {done}/{count} m{o.index:05d} "
                f"{o.example}: {o.status}",
                file=sys.stderr,
                flush=True,
            )
        return o

    try:
        with ThreadPoolExecutor(workers) as ex:
            out = list(ex.map(one, mutants))
    finally:
        pool.close()
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return out


# ------------------------------------------------------------------ report


def body(source: str) -> str:
    """The source without its leading comment header (what a reproducer needs)."""
    lines = source.splitlines()
    k = 0
    while k < len(lines) and (lines[k].startswith("#") or not lines[k].strip()):
        k += 1
    return "\n".join(lines[k:]) + "\n"


def _clip_lines(text: str, width: int = 400) -> str:
    return "\n".join(
        ln if len(ln) <= width else f"{ln[: width - 60]} ... [{len(ln)} chars] ... {ln[-40:]}"
        for ln in text.splitlines()
    )


def shell_line(argv: Sequence[str], path: str) -> str:
    import shlex

    return "python -m rasp_compiler " + " ".join(
        shlex.quote(path if a.endswith(".rasp") else a) for a in argv
    )


def describe(o: Outcome, path: str | None = None) -> str:
    r = o.worst()
    lines = [
        f"===== {o.status}: mutant {o.index} of {o.example}.rasp ({'; '.join(o.mutations)})",
        "----- source (header comments left out)",
        _clip_lines(body(o.source)).rstrip(),
    ]
    if r is not None:
        lines += [
            f"----- command ({r.cls}, exit {r.rc}, {r.seconds:.1f}s): "
            + shell_line(r.argv, path or o.file_name),
            f"----- {r.detail}",
        ]
        tail = (r.stdout.strip() + "\n" + r.stderr.strip()).strip()
        if tail:
            lines += ["----- output (tail)", _clip_lines(tail[-1500:])]
    return "\n".join(lines) + "\n"


def confirm(o: Outcome) -> str:
    """Re-run the worst command of a bad mutant with the real ``python -m rasp_compiler``."""
    r = o.worst()
    if r is None or r.command == "harness":
        return "not re-run"
    with tempfile.TemporaryDirectory(prefix="rasp-mutate-confirm-") as d:
        fresh = Outcome(o.index, o.example, o.mutations, o.source, o.vocab, o.input)
        check_mutant(fresh, Path(d), exec_command)
    again = next((x for x in fresh.results if x.command == r.command), None)
    if again is None:
        return f"with python -m rasp_compiler: {r.command} not reached ({fresh.status})"
    line = f"with python -m rasp_compiler: {again.cls} ({again.seconds:.1f}s) {again.detail}"
    if again.cls == "hang":  # stuck, or just slow?  Once more with four times the time
        cap = TIME_CAP * 4
        with tempfile.TemporaryDirectory(prefix="rasp-mutate-confirm-") as d:
            slow = Outcome(o.index, o.example, o.mutations, o.source, o.vocab, o.input)
            check_mutant(slow, Path(d), lambda argv, cwd: exec_command(argv, cwd, cap))
        last = next((x for x in slow.results if x.command == r.command), None)
        if last is not None and last.cls != "hang":
            line += f"\n----- with a {cap}s cap it finishes: {last.cls} in {last.seconds:.1f}s"
        elif last is not None:
            line += f"\n----- with a {cap}s cap too: {last.detail}"
    return line


def tally(outcomes: Sequence[Outcome]) -> dict[str, int]:
    t: dict[str, int] = {}
    for o in outcomes:
        t[o.status] = t.get(o.status, 0) + 1
    return t


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--exec", action="store_true", help="run python -m rasp_compiler per command")
    ap.add_argument("--show", type=int, default=3, help="bad cases printed in full per class")
    ap.add_argument("--save-bad", type=Path, default=None, help="write bad mutants here")
    ap.add_argument("--dump", type=Path, default=None, help="every outcome as JSON lines")
    ap.add_argument("--no-confirm", action="store_true", help="do not re-run bad cases")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    ap.add_argument(
        "--only", default=None, help="comma-separated mutant numbers (of --count) to run alone"
    )
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        return serve()
    started = time.monotonic()
    only = [int(x) for x in args.only.split(",")] if args.only else None
    outcomes = run(
        args.count, args.seed, args.workers, args.exec, progress=not args.quiet, only=only
    )
    if args.dump:
        with open(args.dump, "w", encoding="utf-8") as f:
            for o in outcomes:
                row = {
                    "index": o.index,
                    "example": o.example,
                    "mutations": o.mutations,
                    "status": o.status,
                    "commands": [
                        {"command": r.command, "class": r.cls, "seconds": round(r.seconds, 2)}
                        | {"detail": r.detail}
                        for r in o.results
                    ],
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    shown: dict[str, int] = {}
    for o in outcomes:
        if o.status not in BAD:
            continue
        if args.save_bad:
            args.save_bad.mkdir(parents=True, exist_ok=True)
            name = f"{o.status}-{o.index:05d}-{o.example}.rasp"
            (args.save_bad / name).write_text(o.source, encoding="utf-8")
        if shown.get(o.status, 0) >= args.show:
            continue
        shown[o.status] = shown.get(o.status, 0) + 1
        print(describe(o))
        if not args.exec and not args.no_confirm:
            print(f"----- {confirm(o)}\n")
    per_command: dict[str, dict[str, int]] = {}
    for o in outcomes:
        for r in o.results:
            c = per_command.setdefault(r.command, {})
            c[r.cls] = c.get(r.cls, 0) + 1
    for name, c in per_command.items():
        print(f"{name}: " + " ".join(f"{k}={v}" for k, v in sorted(c.items())))
    t = tally(outcomes)
    print(
        f"mutants={len(outcomes)} seed={args.seed} "
        + " ".join(f"{k}={t[k]}" for k in SEVERITY[::-1] if k in t)
        + f" [{time.monotonic() - started:.0f}s]"
    )
    return 1 if any(t.get(k) for k in BAD) else 0


if __name__ == "__main__":
    sys.exit(main())
