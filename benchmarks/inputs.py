"""The benchmark's programs and inputs: example vocabularies, the tasks compiled by both
tools in section 2 (our RASP for them and tracr's library programs), and random inputs."""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rasp_compiler.verification import random_lengths

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
LETTERS = string.ascii_lowercase  # the 26-letter vocabulary of the length sweep
SEED = 1234

# Examples whose header vocabulary is widened here: dyck1 ignores non-bracket tokens, so a
# couple of letters exercise that.
VOCAB_OVERRIDES = {"dyck1": "()ab"}
BIG_THREE = ("reverse", "histogram", "sort")

# ---------------------------------------------------------------------------- examples


def example_path(name: str) -> str:
    return str(EXAMPLES / f"{name}.rasp")


def other_examples() -> list[str]:
    """The examples other than BIG_THREE, sorted by name."""
    return sorted(p.stem for p in EXAMPLES.glob("*.rasp") if p.stem not in BIG_THREE)


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


def show_vocab(vocab: str) -> str:
    """A vocabulary as a table cell."""
    return "a–z" if vocab == LETTERS else vocab


# ---------------------------------------------------------------------------- section 2 tasks

# Our program for each side-by-side task: a Path is an example file, a str RASP source
# ("{tok0}" stands for the first vocabulary token).
OURS_SIDE: dict[str, Path | str] = {
    "reverse": EXAMPLES / "reverse.rasp",
    "hist": EXAMPLES / "histogram.rasp",
    # tracr's make_sort_unique, word for word: the target is the count of smaller keys
    "sort_unique": (
        "target = selector_width(select(tokens, tokens, <));\n"
        "sort_unique = aggregate(select(target, indices, ==), tokens);\n"
    ),
    "sort_freq": (
        "hist = selector_width(select(tokens, tokens, ==));\nsort_freq = sort(tokens, -hist);\n"
    ),
    "frac_prevs": (
        'frac_prevs = aggregate(select(indices, indices, <=), indicator(tokens == "{tok0}"));\n'
    ),
    "shuffle_dyck": (
        "prefix = select(indices, indices, <=);\n"
        'balance = aggregate(prefix, indicator(tokens == "(") - indicator(tokens == ")"));\n'
        "has_neg = aggregate(full_s, indicator(balance < 0)) > 0;\n"
        "last_zero = aggregate(select(indices, length - 1, ==), balance == 0);\n"
        "shuffle_dyck = last_zero and not has_neg;\n"
    ),
}
SIDE_STYLE = {"sort_unique": "distinct", "shuffle_dyck": "dyck"}


def ours_side_program(name: str, vocab: Sequence[str]) -> tuple[str | None, str | None]:
    """(path, source) of our program for a side-by-side task: exactly one is given."""
    program = OURS_SIDE[name]
    if isinstance(program, Path):
        return str(program), None
    return None, program.replace("{tok0}", vocab[0])


def side_vocab(name: str, n: int) -> list[str]:
    fill = [f"t{i:03d}" for i in range(n)]
    if name == "shuffle_dyck":
        return ["(", ")"] + fill[: n - 2]
    return fill


def tracr_program(name: str, vocab: Sequence[str], max_len: int) -> Any:
    """Tracr's library program for a side-by-side task (imports tracr)."""
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
    return [
        _one_input(rng, vocab, n, style, i)
        for i, n in enumerate(random_lengths(rng, max_len, count))
    ]


def full_length_inputs(
    vocab: Sequence[Any], max_len: int, count: int, style: str, seed: int
) -> list[list[Any]]:
    rng = random.Random(seed)
    return [_one_input(rng, vocab, max_len, style, i) for i in range(count)]


def edge_inputs(vocab: Sequence[Any], n: int, style: str) -> list[list[Any]]:
    """Inputs of length ``n`` that push counts and positions to their extremes, where
    uniform random tokens never go (a count of n, not n / |vocab|): each of the first
    four tokens repeated, the tokens in sorted and reversed runs, and for "dyck" the
    deepest nesting and the longest unmatched run."""
    vocab = list(vocab)
    if style == "distinct":
        return [vocab[:n], vocab[:n][::-1]] if n <= len(vocab) else []
    head: list[Any] = []
    if style == "bos":
        head, vocab, n = [vocab[0]], vocab[1:], n - 1
    if n <= 0:
        return [head]
    out = [[t] * n for t in vocab[:4]]
    runs = [vocab[min(len(vocab) - 1, i * len(vocab) // n)] for i in range(n)]
    out += [runs, runs[::-1]]
    if style == "dyck":
        op, cl = vocab[0], vocab[1]
        nested = [op] * (n // 2) + [cl] * (n - n // 2)
        out += [nested, [cl] * n, [op, cl] * (n // 2) + [op] * (n % 2)]
    return [head + x for x in out]


def count_sweep(vocab: Sequence[Any], n: int, style: str) -> list[list[Any]]:
    """Inputs of length ``n`` whose first token occurs k times, the rest the second
    token, for every k up to ``n`` (up to 128; above, the first and last 64 and 64 in
    between): a count output in a low-precision dtype may decode wrongly at one count
    only (bfloat16 rounds 1/121 and 1/255 badly, 1/128 not at all), which a few random
    inputs never reach."""
    vocab = list(vocab)
    head: list[Any] = []
    if style == "bos":
        head, vocab, n = [vocab[0]], vocab[1:], n - 1
    if style not in ("random", "bos") or n <= 1 or len(vocab) < 2:
        return []
    ks = set(range(1, n + 1)) if n <= 128 else set(range(1, 65)) | set(range(n - 63, n + 1))
    ks |= {1 + i * (n - 1) // 63 for i in range(64)}
    return [head + [vocab[0]] * k + [vocab[1]] * (n - k) for k in sorted(ks)]


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
        # Balanced unless no filler token exists, which cannot happen with the
        # vocabularies used.
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
        return toks
    raise ValueError(style)
