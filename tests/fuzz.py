"""Random RASP programs, compiled and checked against the reference interpreter.

Every program is RASP source text (so the parser and lowering are exercised too), built
from a pool of typed s-ops: strings from ``tokens``, ints, bools and floats (means).
A program is *compiled* for a small vocabulary and maximum length and compared with the
interpreter on every input up to that length.  The outcome of each program is one of:

- ``ok``: compiled, and equal to the interpreter on every input;
- ``refused``: a :class:`CompileError` (the compiler says it cannot make it exact);
- ``mismatch``: compiled, and wrong on some input (a bug);
- ``crash``: any exception that is not a :class:`RaspError` (a bug).

Run by hand for a longer hunt::

    python tests/fuzz.py --programs 300 --seed 7 [--max-len 5] [--show-refused] [--dtype float16]
"""

from __future__ import annotations

import argparse
import random
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from check import all_inputs, mismatches, random_inputs  # noqa: E402

from rasp_compiler.compiler.pipeline import compile_sop  # noqa: E402
from rasp_compiler.errors import CompileError, RaspError  # noqa: E402
from rasp_compiler.language.lower import get_sop, load_source  # noqa: E402

CMPS = ["==", "!=", "<", ">", "<=", ">="]


@dataclass
class Gen:
    """A random program under construction: typed pools of s-op names."""

    rng: random.Random
    letters: str
    int_tokens: bool = False
    lines: list[str] = field(default_factory=list)
    pools: dict[str, list[str]] = field(default_factory=dict)
    count: int = 0

    def __post_init__(self) -> None:
        if self.int_tokens:
            self.lines.append("tokens = tokens_int;")
            self.pools = {
                "str": [],
                "int": ["tokens", "indices", "length"],
                "bool": [],
                "float": [],
            }
        else:
            self.pools = {"str": ["tokens"], "int": ["indices", "length"], "bool": [], "float": []}

    # ----- helpers -----------------------------------------------------------------
    def pick(self, kind: str) -> str:
        pool = self.pools[kind]
        # favour recent s-ops, so programs grow deep rather than wide
        weights = [1 + 2 * i for i in range(len(pool))]
        return self.rng.choices(pool, weights)[0]

    def has(self, kind: str) -> bool:
        return bool(self.pools[kind])

    def atom(self, kind: str) -> str:
        r = self.rng
        if kind == "str":
            return '"' + r.choice(self.letters) + '"'
        if kind == "int":
            return str(r.randint(-1, 3))
        if kind == "bool":
            return r.choice(["True", "False"])
        return r.choice(["0.5", "1.5", "0.0"])

    def operand(self, kind: str, atom_p: float = 0.2) -> str:
        if not self.has(kind) or self.rng.random() < atom_p:
            return self.atom(kind)
        return self.pick(kind)

    def bind(self, kind: str, expr: str) -> str:
        self.count += 1
        name = f"v{self.count}"
        self.lines.append(f"{name} = {expr};")
        self.pools[kind].append(name)
        return name

    # ----- selectors -----------------------------------------------------------------
    def select(self) -> str:
        r = self.rng
        kinds = [k for k in ("str", "int", "bool", "float") if self.has(k)]
        kind = r.choice(kinds)
        keys = self.pick(kind)
        queries = self.operand(kind, 0.25)
        if r.random() < 0.3:
            keys, queries = queries, keys
            if not (self.has(kind) and (keys in self.pools[kind] or queries in self.pools[kind])):
                keys = self.pick(kind)
        cmp = r.choice(CMPS) if kind != "str" or r.random() < 0.3 else r.choice(["==", "!="])
        return f"select({keys}, {queries}, {cmp})"

    def selector(self) -> str:
        r = self.rng
        sel = self.select()
        roll = r.random()
        if roll < 0.2:
            sel = f"{sel} and {self.select()}"
        elif roll < 0.3:
            sel = f"{sel} or {self.select()}"
        elif roll < 0.36:
            sel = f"not {sel}"
        return sel

    # ----- statements ----------------------------------------------------------------
    def step(self) -> None:
        r = self.rng
        choices = [
            (self.s_width, 3),
            (self.s_mean, 3),
            (self.s_cat_aggregate, 2),
            (self.s_int_map, 4),
            (self.s_bool_map, 3),
            (self.s_library, 2),
            (self.s_float_map, 1 if self.has("float") else 0),
            (self.s_str_map, 1 if self.has("str") else 0),
            (self.s_ternary, 1),
        ]
        fn = r.choices([c[0] for c in choices], [c[1] for c in choices])[0]
        fn()

    def s_width(self) -> None:
        self.bind("int", f"selector_width({self.selector()})")

    def s_mean(self) -> None:
        r = self.rng
        kind = "int" if not self.has("float") or r.random() < 0.7 else "float"
        vals = self.operand(kind, 0.1)
        default = self.atom("int") if r.random() < 0.5 else None
        args = f"{self.selector()}, {vals}" + (f", {default}" if default is not None else "")
        # one selected key passes an int through unchanged, several average: ints and floats
        self.bind("float", f"aggregate({args})")

    def s_cat_aggregate(self) -> None:
        r = self.rng
        kinds = [k for k in ("str", "bool") if self.has(k)]
        if not kinds:
            return self.s_mean()
        kind = r.choice(kinds)
        # keys that select at most one position: equality on indices or a shift
        sel = r.choice(
            [
                f"select(indices, {self.pick('int')}, ==)",
                f"select(indices, indices + {r.choice([-2, -1, 1, 2])}, ==)",
                f"select({self.pick('int')}, indices, ==)",
                self.selector(),
            ]
        )
        default = self.atom(kind)
        self.bind(kind, f"aggregate({sel}, {self.pick(kind)}, {default})")

    def s_int_map(self) -> None:
        r = self.rng
        a = self.pick("int")
        form = r.randrange(9)
        simple = [
            lambda: f"{a} + {self.operand('int', 0.4)}",
            lambda: f"{a} - {self.operand('int', 0.4)}",
            lambda: f"{a} * {r.randint(-2, 3)}",
            lambda: f"{a} % {r.randint(2, 4)}",
            lambda: f"max({a}, {self.operand('int')})",
            lambda: f"min({a}, {self.operand('int')})",
        ]
        if form < len(simple):
            expr = simple[form]()
        elif form == 6 and self.has("bool"):
            expr = f"indicator({self.pick('bool')})"
        elif form == 7 and self.has("str") and not self.int_tokens:
            table = ", ".join(f'"{c}": {r.randint(0, 3)}' for c in self.letters)
            expr = f"{{{table}}}[{self.pick('str')}]"
        else:
            expr = f"-{a}"
        self.bind("int", expr)

    def s_bool_map(self) -> None:
        r = self.rng
        form = r.randrange(6)
        if form == 0 and self.has("str"):
            expr = f"{self.pick('str')} == {self.atom('str')}"
        elif form == 1 and len(self.pools["bool"]) >= 1:
            op = r.choice(["and", "or"])
            expr = f"({self.pick('bool')}) {op} ({self.operand('bool', 0.1)})"
        elif form == 2 and self.has("bool"):
            expr = f"not {self.pick('bool')}"
        elif form == 3 and self.has("str"):
            items = ", ".join(f'"{c}"' for c in r.sample(self.letters, 2))
            expr = f"{self.pick('str')} in [{items}]"
        else:
            op = r.choice(["==", "<", ">", "<=", ">="])
            expr = f"{self.pick('int')} {op} {self.operand('int', 0.5)}"
        self.bind("bool", expr)

    def s_float_map(self) -> None:
        r = self.rng
        f = self.pick("float")
        form = r.randrange(4)
        if form == 0:
            self.bind("int", f"round({f})")
        elif form == 1:
            self.bind("bool", f"{f} > {r.choice(['0.5', '1', '1.5', '0'])}")
        elif form == 2:
            self.bind("float", f"{f} * {r.choice(['2', '0.5', '-1'])}")
        elif form == 3 and r.random() < 0.5:
            self.bind("float", f"{self.pick('int')} / length")
        else:
            self.bind("float", f"{f} + {self.pick('int')}")

    def s_str_map(self) -> None:
        r = self.rng
        s = self.pick("str")
        if r.random() < 0.5 and self.has("bool"):
            self.bind("str", f"{s} if {self.pick('bool')} else {self.operand('str', 0.5)}")
        else:
            self.bind("str", f"{s} + {self.atom('str')}")

    def s_ternary(self) -> None:
        if not self.has("bool"):
            return self.s_bool_map()
        kind = self.rng.choice([k for k in ("int", "bool") if self.has(k)])
        a, b = self.pick(kind), self.operand(kind, 0.4)
        self.bind(kind, f"{a} if {self.pick('bool')} else {b}")

    def s_library(self) -> None:
        r = self.rng
        form = r.randrange(8)
        if form == 0:
            kind = r.choice([k for k in ("str", "int", "bool") if self.has(k)])
            n = r.choice([-2, -1, 1, 2])
            self.bind(kind, f"shift({self.pick(kind)}, {n}, {self.atom(kind)})")
        elif form == 1:
            kind = r.choice([k for k in ("str", "int") if self.has(k)])
            key = self.pick(r.choice([k for k in ("str", "int") if self.has(k)]))
            self.bind(kind, f"sort({self.pick(kind)}, {key})")
        elif form == 2:
            kind = r.choice([k for k in ("str", "int") if self.has(k)])
            self.bind("int", f"count({self.pick(kind)}, {self.atom(kind)})")
        elif form == 3:
            kind = r.choice([k for k in ("str", "int") if self.has(k)])
            self.bind("bool", f"mark_first_instance({self.pick(kind)}, {self.atom(kind)})")
        elif form == 4:
            self.bind("bool", f"has_focus({self.selector()})")
        elif form == 5:
            kind = r.choice([k for k in ("str", "int") if self.has(k)])
            self.bind(kind, f"load_from_location({self.pick(kind)}, {self.pick('int')})")
        elif form == 6:
            kind = r.choice([k for k in ("str", "int", "bool") if self.has(k)])
            self.bind(kind, f"{self.pick(kind)}[{r.choice([0, 1, -1])}]")
        else:
            kind = r.choice([k for k in ("str", "int") if self.has(k)])
            self.bind("bool", f"{self.atom(kind)} in {self.pick(kind)}")


def random_program(rng: random.Random, steps: int) -> tuple[str, str]:
    """(source, vocabulary) of a random program with ``steps`` statements."""
    int_tokens = rng.random() < 0.25
    letters = "abc" if not int_tokens else "012"
    vocab = letters if rng.random() < 0.6 else letters + ("d" if not int_tokens else "3")
    gen = Gen(rng, vocab, int_tokens=int_tokens)
    while gen.count < steps:
        gen.step()
    return "\n".join(gen.lines) + "\n", vocab


@dataclass
class Outcome:
    status: str  # ok | vacuous | refused | mismatch | crash | invalid
    source: str
    vocab: str
    detail: str = ""


def check_program(
    source: str, vocab: str, max_len: int, long_len: int = 0, dtype: str = "float32"
) -> Outcome:
    try:
        session = load_source(source)
        name = session.last_sop_name()
        sop = get_sop(session, name)
    except RaspError as exc:  # the generator wrote something the language rejects
        return Outcome("invalid", source, vocab, exc.render())
    try:
        model = compile_sop(sop, tuple(vocab), max_len, sop_name=name, dtype=dtype)
    except CompileError as exc:
        return Outcome("refused", source, vocab, exc.render())
    except Exception:  # noqa: BLE001 - a crash is what we are hunting
        return Outcome("crash", source, vocab, traceback.format_exc())
    try:
        checked, bad = mismatches(sop, model, all_inputs(vocab, max_len))
    except Exception:  # noqa: BLE001
        return Outcome("crash", source, vocab, traceback.format_exc())
    if bad:
        inp, ref, got = bad[0]
        return Outcome(
            "mismatch", source, vocab, f"{len(bad)}/{checked} wrong; {inp}: want {ref}, got {got}"
        )
    if long_len > max_len:
        # the same program at a longer max length, on random inputs: precision at length
        try:
            model = compile_sop(sop, tuple(vocab), long_len, sop_name=name, dtype=dtype)
        except CompileError as exc:
            return Outcome("refused", source, vocab, f"at max length {long_len}: {exc.render()}")
        except Exception:  # noqa: BLE001
            return Outcome("crash", source, vocab, traceback.format_exc())
        try:
            n, bad = mismatches(sop, model, random_inputs(vocab, long_len, 200, seed=long_len))
        except Exception:  # noqa: BLE001
            return Outcome("crash", source, vocab, traceback.format_exc())
        if bad:
            inp, ref, got = bad[0]
            return Outcome(
                "mismatch",
                source,
                vocab,
                f"at max length {long_len}: {len(bad)}/{n} wrong; {inp}: want {ref}, got {got}",
            )
        checked += n
    if checked == 0:  # compiled, but the interpreter rejected every input: nothing compared
        return Outcome("vacuous", source, vocab, "the interpreter rejected every input")
    return Outcome("ok", source, vocab, f"{checked} inputs")


def run(
    programs: int,
    seed: int,
    max_len: int,
    steps: tuple[int, int],
    long_len: int = 0,
    trace: bool = False,
    dtype: str = "float32",
) -> list[Outcome]:
    rng = random.Random(seed)
    out = []
    for i in range(programs):
        src, vocab = random_program(rng, rng.randint(*steps))
        if trace:
            print(f"----- program {i} (vocab {vocab})\n{src}", end="", flush=True)
        out.append(check_program(src, vocab, max_len, long_len, dtype))
        if trace:
            print(f"----- {out[-1].status}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--programs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-len", type=int, default=5)
    ap.add_argument("--min-steps", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=7)
    ap.add_argument("--long", type=int, default=0, help="also check at this max length")
    ap.add_argument("--show-refused", action="store_true")
    ap.add_argument("--trace", action="store_true", help="print each program as it starts")
    ap.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "float16", "bfloat16"),
        help="compile (certify) and run the models in this dtype",
    )
    args = ap.parse_args()
    outcomes = run(
        args.programs,
        args.seed,
        args.max_len,
        (args.min_steps, args.max_steps),
        args.long,
        args.trace,
        args.dtype,
    )
    tally: dict[str, int] = {}
    for o in outcomes:
        tally[o.status] = tally.get(o.status, 0) + 1
        if o.status in ("mismatch", "crash", "invalid") or (
            o.status == "refused" and args.show_refused
        ):
            print(f"===== {o.status} (vocab {o.vocab})\n{o.source}{o.detail}\n")
    print(" ".join(f"{k}={v}" for k, v in sorted(tally.items())))
    return 1 if tally.get("mismatch") or tally.get("crash") else 0


if __name__ == "__main__":
    sys.exit(main())
