"""Plan one s-op: its representations, heads and MLP jobs, pruned to what it needs."""

from __future__ import annotations

from dataclasses import replace

from ...dtypes import UNIT_ROUNDOFF
from ...errors import RaspError, Span
from ...language import ir
from ..numbers import min_gap, num
from ..residual import BOS, ONE, Lin
from ..value_sets import ValueSet
from .attention import aggregate, width_xs
from .builder import Planner
from .elementwise import kind_ambiguous, kinds_of_means
from .state import JobDraft, NodeFailed
from .types import (
    CatRep,
    Draft,
    Head,
    MLPJob,
    NumRep,
    OutputKinds,
    PlanFailure,
    PositionalEntry,
    Rep,
    TokenEmbedding,
)


def plan_sop(
    sop: ir.SOp,
    sets: dict[int, ValueSet],
    max_len: int,
    names: dict[int, str],
    used_at: dict[int, Span],
    max_projection_ratio: float = 1e5,
    no_joint: frozenset[int] = frozenset(),
    head_masks: bool = True,
    dtype: str = "float32",
    plain_counts: frozenset[int] = frozenset(),
    proven: frozenset[str] = frozenset(),
    proven_numbers: frozenset[str] = frozenset(),
) -> Draft | PlanFailure:
    """The draft plan computing ``sop`` for inputs up to ``max_len``, or every reason
    it cannot be compiled exactly.  Joint tables over several numbers are used only
    while their range over smallest gap stays below ``max_projection_ratio``, and never
    for the s-ops in ``no_joint``.

    After a failure, every other s-op is still planned (each failure is remembered, so
    nothing downstream of it is tried), to report all problems at once."""
    planner = Planner(
        sets, max_len, names, used_at, max_projection_ratio, no_joint, head_masks, dtype,
        plain_counts, proven, proven_numbers,
    )  # fmt: skip
    kinds: OutputKinds | None = None
    known = False
    try:
        made, known = output_rep(planner, sop)
        kinds = _output_kinds(planner, sop, made)
        known = known or kinds is not None
        output: Rep | None = made
    except NodeFailed:
        output = None
    if planner.problems or output is None:
        for node in ir.walk(sop):
            if isinstance(node, ir.SOp):
                try:
                    planner.best(node)
                except NodeFailed:
                    pass
        return PlanFailure(_unique(planner.problems))
    # the output is its counting head's 1/(w+1) itself (see output_rep)
    reciprocal = output is not None and output is planner.width_heads.get(sop.id, [None])[0]
    return replace(_pruned(planner, output, kinds), kinds_known=known, output_reciprocal=reciprocal)


#: a numerical output is used from this many values on (below, a one-hot is as small)
NUMERIC_OUTPUT_MIN_VALUES = 4
#: the share of the gap between a count output's closest reciprocals its head may leak
RECIPROCAL_LEAK_SHARE = 1.0 / 8.0


def _numeric_output_from(planner: Planner) -> int:
    """From how many values an output is a number: in float16/bfloat16 from 2 (a one-hot
    needs an MLP table, whose pre-activations those dtypes cannot keep exact)."""
    return NUMERIC_OUTPUT_MIN_VALUES if planner.eps <= UNIT_ROUNDOFF["float32"] else 2


def output_rep(planner: Planner, sop: ir.SOp) -> tuple[Rep, bool]:
    """The output's representation: a number, decoded by rounding to the nearest of its
    values, when its values are numbers that stay distinct as floats (no ``1`` beside
    ``1.0``, whose kinds a number cannot carry) and there are enough of them for a
    one-hot to cost more; its categories otherwise.  A number must be accurate to a
    quarter of the gap between its closest values (so rounding finds the right one).
    Also: whether a categorical output tells apart ints and equal floats that it may be
    (read from its means' key counts, :func:`.elementwise.kinds_of_means`)."""
    vals = planner.values(sop)
    numbers = [v for v in vals if ir.is_number(v) and not isinstance(v, bool)]
    kinds = None
    share = 0.25  # of the gap between its closest values: the rest is the dtype's
    coded = _coded(planner, sop)
    if isinstance(sop, ir.Map) and kind_ambiguous(vals):
        kinds = kinds_of_means(planner, sop, lambda agg: _key_count(planner, agg))
    if kinds is not None:
        rep: Rep = kinds
    elif (
        len(numbers) == len(vals) >= _numeric_output_from(planner)
        and len({float(v) for v in numbers}) == len(vals)  # type: ignore[arg-type]
    ):
        if coded and isinstance(sop, ir.Aggregate):
            # a copy of one key's number: the head moves the number itself (one
            # dimension) rather than its one-hot, which would only be summed again
            rep = aggregate(planner, sop, codes=tuple(num(v) for v in vals))
        elif isinstance(sop, ir.SelectorWidth) and len(width_xs(planner, sop)) == 1:
            # a count is read from its head's 1/(w+1) and decoded outside the model
            # (OutputSpec.reciprocal): no MLP of two ReLUs per count.  Its leak gets an
            # eighth of the gap, the dtype's two roundings the rest (certify)
            (rep,) = width_xs(planner, sop)
            share = RECIPROCAL_LEAK_SHARE
        else:
            rep = planner.num(sop)
    elif coded:
        rep = _coded_output(planner, sop)
    else:
        rep = planner.best(sop)
    if coded:  # what reads the output (trace, circuits) finds this form
        planner.adopt(sop, rep)
    if isinstance(rep, NumRep):
        planner.require(rep, min_gap(float(v) for v in rep.values) * share)  # type: ignore[arg-type]
    return rep, kinds is not None


def _coded(planner: Planner, sop: ir.SOp) -> bool:
    """Is the output a categorical aggregate with enough values that moving one number
    per key beats moving a one-hot (in float32 and wider: the logits' squares below
    need the precision)?"""
    return (
        isinstance(sop, ir.Aggregate)
        and planner.agg_is_categorical(sop)
        and len(planner.values(sop)) >= CODED_OUTPUT_MIN_VALUES
        and planner.eps <= UNIT_ROUNDOFF["float32"]
    )


def _coded_output(planner: Planner, sop: ir.SOp) -> CatRep:
    """A categorical aggregate output moved as a code: value j of n is the number
    ``c_j = j - (n - 1) / 2``, one residual direction ``x`` instead of n, and its logits
    are ``2 c_j x - c_j^2 = c_k^2 - (x - c_j)^2 + const``: the largest is the code
    nearest ``x``, by at least ``1 - 2 |x - c_k|`` over the others.  So ``x`` within a
    quarter of its code decodes right (argmax, as any categorical output)."""
    assert isinstance(sop, ir.Aggregate)
    vals = planner.values(sop)
    codes = tuple(j - (len(vals) - 1) / 2.0 for j in range(len(vals)))
    x = aggregate(planner, sop, codes=codes)
    assert isinstance(x, NumRep)
    planner.require(x, CODE_TOLERANCE)
    rows = tuple(x.lin.scale(2.0 * c) + Lin.unit(ONE, -c * c) for c in codes)
    return CatRep(vals, rows, x.stage, tuple(h for h, _ in x.sources))


#: a categorical aggregate output is moved as a code from this many values on (below,
#: its one-hot, one labelled direction per value, is hardly wider than the head's scores)
CODED_OUTPUT_MIN_VALUES = 8
#: how far a coded output's number may be off its code (decoding needs under 1/2)
CODE_TOLERANCE = 0.25


#: aggregate id -> the selector_width of its selector that reads the output's kind
#: (made once per aggregate, so planning the program again names it the same)
_KEY_COUNTS: dict[int, ir.SelectorWidth] = {}


def _key_count(planner: Planner, agg: ir.Aggregate) -> NumRep:
    """1/(w+1) for the w keys ``agg``'s selector selects, from one head scored as the
    aggregate's own (the node is made once per aggregate, so planning again names it
    the same)."""
    width = _KEY_COUNTS.get(agg.id)
    if width is None:
        width = ir.SelectorWidth(selector=agg.selector, span=agg.span)
        _KEY_COUNTS[agg.id] = width
    planner.sets[width.id] = ValueSet(tuple(range(planner.max_len + 1)))
    planner.names.setdefault(width.id, f"{planner.short(agg)}:keys")
    (x,) = width_xs(planner, width, one_head_as=agg)
    return x


def _output_kinds(planner: Planner, sop: ir.SOp, output: Rep) -> OutputKinds | None:
    """For a numerical aggregate output whose values mix kinds: a head counting the keys
    its selector selects (the interpreter's mean is a float from two keys on, and one
    key's value keeps its own kind), read as a second output logit.  None where the
    values of what it averages mix kinds too (a mean of means: the kind of one key's
    value is not known)."""
    if not (
        isinstance(output, NumRep)
        and isinstance(sop, ir.Aggregate)
        and kind_ambiguous(planner.values(sop))
        and not kind_ambiguous(planner.values(sop.values))
    ):
        return None
    return OutputKinds(_key_count(planner, sop), sop.default, planner.values(sop.values))


def _unique(problems: list[RaspError]) -> tuple[RaspError, ...]:
    seen: dict[tuple[str, object], RaspError] = {}
    for p in problems:
        seen.setdefault((p.message, p.span), p)
    return tuple(seen.values())


def _pruned(planner: Planner, output: Rep, kinds: OutputKinds | None = None) -> Draft:
    """The draft with only what ``output`` reads, transitively.

    Planning asks for representations while it compares alternatives (a fused table
    against reading a finished s-op), so some heads and jobs end up unread."""
    live: set[str] = {ONE, BOS}
    for lin in output.lins() + (() if kinds is None else (kinds.width.lin,)):
        live.update(lin.names())
    heads: dict[int, Head] = {}
    jobs: dict[int, JobDraft] = {}
    changed = True
    while changed:
        changed = False
        for h in planner.heads:
            if h.id not in heads and any(d in live for d, _ in h.values):
                heads[h.id] = h
                changed = True
                for q, k, _ in h.qk:
                    live.update(q.names())
                    live.update(k.names())
                for _, lin in h.values:
                    live.update(lin.names())
        for m in planner.jobs:
            targets = [d for t in m.cat_targets for d in t.dirs] + m.num_targets
            if m.id not in jobs and any(d in live for d in targets):
                jobs[m.id] = m
                changed = True
                for r in m.inputs:
                    for lin in r.lins():
                        live.update(lin.names())
    mlps = tuple(
        MLPJob(
            id=m.id,
            layer=m.layer,
            label=m.label,
            span=m.span,
            inputs=m.inputs,
            fn=m.fn,
            # a live job may still write a representation nobody reads
            cat_targets=tuple(t for t in m.cat_targets if any(d in live for d in t.dirs)),
            num_targets=tuple(d for d in m.num_targets if d in live),
            tolerances=m.tolerances,
            narrow_fn=m.narrow_fn,
            node_id=m.node_id,
            gates=m.gates,
            forms=m.forms,
        )
        for m in planner.jobs
        if m.id in jobs
    )
    blocks = tuple(b for b in planner.blocks if any(d in live for d in b.directions))
    kept = {d for b in blocks for d in b.directions}
    tokens = tuple(
        TokenEmbedding(conv, vals, dirs)
        for conv, (vals, dirs) in planner.token_onehots.items()
        if any(d in live for d in dirs)
    )
    positional = tuple(
        PositionalEntry(d, values) for d, values in planner.positional.items() if d in kept
    )
    return Draft(
        max_len=planner.max_len,
        blocks=blocks,
        tokens=tokens,
        positional=positional,
        heads=tuple(h for h in planner.heads if h.id in heads),
        all_heads=tuple(planner.heads),
        mlps=mlps,
        requirements=tuple(planner.requirements),
        output=output,
        output_kinds=kinds,
    )
