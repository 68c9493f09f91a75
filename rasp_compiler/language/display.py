"""Printing values the way the reference RASP REPL does, plus JSON for ``--json``.

``format_sop([0, 0, 0.5, 1.0, 1.5])`` gives ``[0, 0, 0.5, 1.0, 1.5] (floats)``:
floats are rounded to 3 decimals, bools print as T/F, strings without quotes, a
sequence of one repeated value shortens to ``[5]*5``, and a type suffix follows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .ir import Atom

_SUFFIXES = {
    frozenset({str}): "strings",
    frozenset({bool}): "bools",
    frozenset({int}): "ints",
    frozenset({float}): "floats",
    frozenset({int, float}): "floats",
}


def format_atom(v: Atom) -> str:
    """One value as the reference prints it: ``T``/``F``, ``0.333``, ``h``, ``42``."""
    match v:
        case bool():
            return "T" if v else "F"
        case float():
            return str(round(v, 3))
        case _:
            return str(v)


def type_suffix(values: Sequence[Atom]) -> str:
    """``(strings)``, ``(bools)``, ``(ints)`` or ``(floats)`` (ints mixed with floats).

    A sequence that is none of these (not a valid s-op value) gives ``(mixed)``.
    """
    return f"({_SUFFIXES.get(frozenset(map(type, values)), 'mixed')})"


def format_sop(values: Sequence[Atom]) -> str:
    """An s-op value as ``[o, l, l, e, h] (strings)``, or ``[5]*5 (ints)`` when all equal."""
    if len(values) > 1 and len(set(values)) == 1:
        body = f"[{format_atom(values[0])}]*{len(values)}"
    else:
        body = "[" + ", ".join(format_atom(v) for v in values) + "]"
    return f"{body} {type_suffix(values)}"


def format_selector(matrix: np.ndarray, inp: Sequence[Atom] | str) -> str:
    """A selector value as a table: keys across the top, one row per query.

    ``1`` marks a selected key, a blank an unselected one; columns are as wide as the
    widest token and each row is labelled with its query token.  On "hey" with
    ``select(indices, indices, <=)``::

            h e y
        h | 1
        e | 1 1
        y | 1 1 1

    Lines carry no trailing spaces.
    """
    labels = [format_atom(t) for t in inp]
    width = max(len(s) for s in labels)
    pad = " " * width

    def line(label: str, cells: list[str]) -> str:
        return (label.rjust(width) + " | " + " ".join(c.rjust(width) for c in cells)).rstrip()

    header = line(pad, labels).replace("|", " ")
    rows = [
        line(label, ["1" if hit else "" for hit in row])
        for label, row in zip(labels, np.asarray(matrix).tolist(), strict=True)
    ]
    return "\n".join([header, *rows])


def to_json_value(v: Any) -> Any:
    """A value as plain JSON data: lists of atoms, matrices as lists of lists of bools.

    numpy arrays and scalars become Python ones; a non-finite float becomes its
    string (``"nan"``, ``"inf"``, ``"-inf"``), since JSON has no such numbers.
    """
    match v:
        case np.ndarray():
            return to_json_value(v.tolist())
        case np.generic():
            return to_json_value(v.item())
        case list() | tuple():
            return [to_json_value(x) for x in v]
        case float() if not math.isfinite(v):
            return repr(v)
        case bool() | int() | float() | str():
            return v
    raise TypeError(f"not a RASP value: {v!r}")
