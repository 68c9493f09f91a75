"""The length as a number: one head that copies the last token's position."""

from __future__ import annotations

from ...language import ir
from ..residual import BOS, ONE, Lin, role_dir
from .state import PlanState
from .types import Head, HeadKind, NumRep

#: the positional direction holding a token's position, 1 for the first token (BOS: 0)
POSITION = "position"


def length_number(p: PlanState, node: ir.Length) -> NumRep:
    """One head copying the last token's position, which is the length.

    Every query scores each key by its position (``1 .. n``; BOS 0), so it attends
    the last token, at least ``1`` above every other key, and copies that position.
    Its output is the length as a number, exact up to the leak: no MLP turns a
    ``1/(n+1)`` into a number, as counting heads need.  The BOS query attends BOS."""
    label = p.label(node)
    name = p.name(node)
    pos = p.positional_dir(POSITION, tuple(float(i + 1) for i in range(p.max_len)))
    (d,) = p.add_block(role_dir(name, "num"), (name,), f"{label} as a number")
    p.copied_integers.add(d)
    bos_level = float(p.max_len + 2)
    # a score is a key's position (at most the max length) or, at BOS's own query,
    # BOS's level: no sum passes the level
    magnitude = bos_level
    head = p.add_head(
        Head(
            id=p.next_head_id(),
            layer=0,
            label=label,
            span=p.span_of(node),
            qk=((Lin.unit(ONE), pos, 1.0), (Lin.unit(BOS), Lin.unit(BOS), bos_level)),
            values=((d, pos),),
            gap=1.0,
            leak=0.25 / p.max_len,
            kind=HeadKind.AGGREGATE,
            value_span=float(p.max_len),
            magnitude=magnitude,
            one_key=True,  # the last token (BOS at BOS's own query)
            # integer scores (positions, the BOS level): exact where the dtype holds them
            exact=p.eps if magnitude * p.eps <= 1.0 else 0.0,
        )
    )
    return NumRep(Lin.unit(d), p.values(node), 1, ((head.id, 1.0),))
