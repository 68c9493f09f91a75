"""Checking what a command line asks for against :mod:`rasp_compiler.limits`.

JSON arguments (``--vocab``, ``--input-json``) are flat lists of strings, finite numbers
(integers of at most MAX_INT_DIGITS digits; no NaN or Infinity) and booleans, strings of
at most MAX_STRING_LEN characters; a vocabulary has at most MAX_VOCAB_SIZE distinct
tokens and no two atoms Python treats as equal; ``verify`` runs at most
MAX_VERIFY_INPUTS inputs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

from .errors import InputError
from .language import ir
from .language.ir import Atom
from .limits import MAX_INT_DIGITS, MAX_STRING_LEN, MAX_VERIFY_INPUTS, MAX_VOCAB_SIZE

__all__ = ["json_atoms", "vocab_arg", "vocab_atoms", "check_verify_size"]


def _json_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {digits:,} digits; the limit is {MAX_INT_DIGITS:,}")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 20 else text[:17] + "..."
        raise ValueError(f"{shown} is too large for a float")
    return value


def _json_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number (JSON has no NaN or Infinity)")


def json_atoms(text: str) -> list[Atom] | str:
    """A JSON list of atoms (or a JSON string) within the limits; ValueError saying why not.

    Integers have at most MAX_INT_DIGITS digits, floats are finite (no NaN/Infinity),
    strings have at most MAX_STRING_LEN characters, and nothing nests: a list of lists
    is refused however deep it goes.
    """
    try:
        value = json.loads(
            text, parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant
        )
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise ValueError("nested too deeply: expected a flat list of atoms") from None
    if isinstance(value, str):
        return value
    if not isinstance(value, list) or not all(isinstance(v, ir.ATOM_TYPES) for v in value):
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise ValueError(f"expected a JSON list of strings, numbers or booleans, got {shown!r}")
    for v in value:
        if isinstance(v, str) and len(v) > MAX_STRING_LEN:
            raise ValueError(f"a string of {len(v):,} characters; the limit is {MAX_STRING_LEN:,}")
    return value


def vocab_arg(text: str) -> tuple[Atom, ...]:
    """``--vocab``: one-character tokens, or a JSON list of atoms; InputError if it breaks
    a limit or holds atoms Python treats as equal (``1``, ``1.0``, ``true``)."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = json_atoms(stripped)
        except ValueError as exc:
            raise InputError(f"--vocab: {exc}") from None
    else:
        items = text
    return vocab_atoms(items)


def vocab_atoms(items: Iterable[Atom]) -> tuple[Atom, ...]:
    """The distinct tokens of a vocabulary in order; InputError for a non-atom, for atoms
    Python treats as equal (``1``, ``1.0``, ``true``), or past the size limit."""
    items = list(items)
    for x in items:
        if type(x) not in ir.ATOM_TYPES:
            raise InputError(f"--vocab: {x!r} is not an atom (a string, number or boolean)")
    groups: dict[Atom, dict[tuple[str, Atom], Atom]] = {}
    for x in items:
        groups.setdefault(x, {}).setdefault(ir.atom_key(x), x)
    for group in groups.values():
        if len(group) > 1:
            *rest, last = [json.dumps(v) for v in group.values()]
            shown = f"{', '.join(rest)} and {last}"
            raise InputError(
                f"--vocab holds {shown}, which Python treats as one value; keep only one of them"
            )
    if len(groups) > MAX_VOCAB_SIZE:
        raise InputError(
            f"--vocab has {len(groups):,} distinct tokens, more than the limit of "
            f"{MAX_VOCAB_SIZE:,}"
        )
    return tuple(next(iter(g.values())) for g in groups.values())


def check_verify_size(vocab: str, exhaustive_len: int | None, max_len: int, samples: int) -> None:
    """InputError if ``verify`` would run more than MAX_VERIFY_INPUTS inputs."""
    exhaustive = 0
    if exhaustive_len is not None:
        n_vocab = len(vocab_arg(vocab))
        for length in range(1, min(exhaustive_len, max_len) + 1):
            exhaustive += n_vocab**length
            if exhaustive > MAX_VERIFY_INPUTS:
                break
    if exhaustive + samples > MAX_VERIFY_INPUTS:
        what = f"--samples {samples:,}"
        if exhaustive:
            what += f", and --exhaustive-len {exhaustive_len} asks for {exhaustive:,} or more"
        raise InputError(
            f"verify would run more than the limit of {MAX_VERIFY_INPUTS:,} inputs ({what})"
        )
