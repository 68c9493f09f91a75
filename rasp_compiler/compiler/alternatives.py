"""Floats one rounding apart that stand for one value, and the selects they would break.

Value-set inference merges floats within a rounding of each other (``15.0`` and
``14.999999999999998``, both what the interpreter computes for a count of 15 at
different widths) into one value, which is all a model can hold.  An elementwise
operation over such a value is checked in :mod:`.value_sets`; a select is checked here.
"""

from __future__ import annotations

from ..errors import RaspError, RaspValueError
from ..language import ir
from ..language.ir import Atom


def select_alternatives(
    node: ir.Select,
    sets: dict[int, tuple[Atom, ...]],
    alts: dict[int, dict[float, list[float]]],
) -> RaspError | None:
    """An error when the select's outcome depends on which of two floats one rounding
    apart (merged into one value, see ``value_sets._merge_close``) the interpreter computed:
    ``select(depth, depth, ==)`` where one position's depth is 8.0 and another's
    7.999999999999998 for the same count.  The model holds one value for both."""

    def classes(op: ir.Operand) -> list[list[Atom]]:
        if isinstance(op, ir.Const):
            return [[op.value]]
        merged = alts.get(op.id, {})
        return [[v, *merged.get(v, [])] if isinstance(v, float) else [v] for v in sets[op.id]]

    keys, queries = classes(node.keys), classes(node.queries)
    if not any(len(c) > 1 for c in keys + queries):
        return None
    for kc in keys:
        for qc in queries:
            if len(kc) == len(qc) == 1:
                continue
            seen = set()
            for k in kc:
                for q in qc:
                    try:
                        seen.add(ir.compare(node.cmp, k, q))
                    except TypeError:
                        seen.add(False)
            if len(seen) > 1:
                pair = next((v for v in kc + qc if v not in (kc[0], qc[0])), kc[0])
                return RaspValueError(
                    f"this select compares values one float rounding apart ({pair!r} stands "
                    f"for {(kc if pair in kc else qc)[0]!r}) that the interpreter computes "
                    "either of for the same number, and the comparison depends on which: "
                    "the model holds one of them, so it cannot select as the interpreter does",
                    node.span,
                    (
                        "float arithmetic on a mean, such as (indices + 1) * mean, is not "
                        "always the whole number it stands for (22 * (15/22) is "
                        "14.999999999999998)",
                    ),
                )
    return None
