"""Planning attention heads: ``aggregate``, ``selector_width`` and ``length``.

Every head also keeps the BOS position's residual known: the BOS query attends the
BOS key alone (a large ``bos . bos`` score term), so a layer's heads write known
values at BOS, which the assembler's BOS clean-up unit removes again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...errors import Span
from ...language import ir
from ...language.ir import Atom
from ..numbers import min_gap, num
from ..residual import BOS, ONE, Lin, lin_sum, onehot_dirs, role_dir
from ..selectors import (
    MASK_COST,
    Pair,
    Scores,
    atoms,
    build_pairs,
    cell_split,
    disjoint_terms,
    distinct_operands,
    factor_mask,
    joint_pair,
    joint_scores,
    joint_table,
    solve_scores,
    term_mask,
    term_scores,
    truth_table,
)
from ..value_sets import ValueSet, lookup_value
from .digit_eq import digit_eq, digit_eq_head
from .numeric_eq import numeric_eq as numeric_equality
from .numeric_eq import numeric_eq_head, positional_values
from .scores import exact_scores, roundings
from .split import split_pays, split_selector
from .state import PlanState
from .types import QK, CatRep, Head, HeadKind, NumRep, Rep, key_side

#: Largest (key value, query value) table one attention head's selector may need.
MAX_SELECT_TABLE = 1 << 22


# ---------------------------------------------------------------- selectors


@dataclass(frozen=True)
class HeadScores:
    """One head's scoring of a selector: its pairs, their score tables, and the static
    mask (``key index CMP query index``, BOS always visible) it attends within."""

    pairs: list[Pair]
    scores: Scores
    mask: str | None = None


def selector_heads(
    p: PlanState, sel: ir.Selector, uniform: bool, owner: ir.SOp
) -> list[HeadScores]:
    """How to score the selector: one :class:`HeadScores` per head needed.

    A comparison of ``indices`` with ``indices`` that the selector requires (``select(
    indices, indices, <) and ...``) becomes the head's mask instead of a table over the
    index values, where the model allows masks (``PlanState.head_masks``)."""
    split = split_selector(p, sel)
    order = [split, sel] if split is not sel and split_pays(p, sel) else [sel, split]
    for candidate in order if split is not sel else [sel]:
        heads = _direct_heads(p, candidate, uniform, owner)
        if heads is not None:
            return heads
    key_ops, query_ops = distinct_operands(sel)
    # One table over the joint values: constants folded into the atoms, and where
    # a side compares several s-ops, an MLP first writes the class of their joint
    # value (joint values the selector treats alike share a class).
    sizes = [math.prod(len(p.values(o)) for o in ops) for ops in (key_ops, query_ops)]
    if sizes[0] * sizes[1] > MAX_SELECT_TABLE:
        raise p.fail(
            "no single attention head can score this selector over its separate "
            f"s-ops, and its joint table over {sizes[0]} key and {sizes[1]} query "
            f"value combinations at max length {p.max_len} is too large "
            f"(limit {MAX_SELECT_TABLE})",
            owner,
        )
    jt = joint_table(sel, key_ops, query_ops, p.values)
    keys = _joint_of(p, key_ops, jt.key_cols, jt.key_class, owner)
    queries = _joint_of(p, query_ops, jt.query_cols, jt.query_class, owner)
    pair = joint_pair(sel, keys, queries, jt, p.values)
    return [HeadScores([pair], joint_scores(pair))]


def _direct_heads(
    p: PlanState, sel: ir.Selector, uniform: bool, owner: ir.SOp
) -> list[HeadScores] | None:
    """Heads scoring ``sel`` from its operands as they are (one head, or for a count one
    head per disjoint term); None when that needs a joint of several s-ops."""
    _check_tables(p, sel, owner)
    pairs = build_pairs(sel, p.values)
    table = truth_table(sel, pairs)
    factored = factor_mask(pairs, table) if p.head_masks else None
    if factored is not None:
        mask, rest, rest_table = factored
        scores = solve_scores(rest, rest_table, uniform)
        if scores is not None:
            return [HeadScores(rest, scores, mask)]
    scores = solve_scores(pairs, table, uniform)
    if scores is not None:
        return [HeadScores(pairs, scores)]
    key_ops, query_ops = distinct_operands(sel)
    free = len(key_ops) <= 1 and len(query_ops) <= 1
    if not free and isinstance(owner, ir.SelectorWidth):
        # counting can sum one head per disjoint term: no joint MLP, no extra layer
        heads = []
        for t in disjoint_terms(pairs, table):
            t_mask, t_pairs, term = term_mask(pairs, t) if p.head_masks else (None, pairs, t)
            heads.append(HeadScores(t_pairs, term_scores(t_pairs, term), t_mask))
        by_cells = _cell_heads(pairs, table) if p.head_masks else None
        if by_cells is not None and _cheaper(by_cells, heads):
            return by_cells
        return heads
    return None


def _cell_heads(pairs: list[Pair], table: dict[tuple[int, ...], bool]) -> list[HeadScores] | None:
    """One uniform head per group of index cells (:func:`cell_split`), or None when a
    group's selector needs more than one head."""
    split = cell_split(pairs, table)
    if not split:
        return None
    heads = []
    for mask, rest, rest_table in split:
        scores = solve_scores(rest, rest_table, True)
        if scores is None:
            return None
        heads.append(HeadScores(rest, scores, mask))
    return heads


def _cheaper(heads: list[HeadScores], than: list[HeadScores]) -> bool:
    """No more heads (each count term is one more table to read), and less attention
    work (one-sided masks run the causal kernel)."""

    def cost(hs: list[HeadScores]) -> float:
        return sum(MASK_COST[h.mask] for h in hs)

    return len(heads) <= len(than) and cost(heads) < cost(than)


def _check_tables(p: PlanState, sel: ir.Selector, owner: ir.SOp) -> None:
    """Refuse selects whose (key, query) value table is too large to build."""
    for atom in atoms(sel):
        nk, nq = len(p.values(atom.keys)), len(p.values(atom.queries))
        if nk * nq > MAX_SELECT_TABLE:
            raise p.fail(
                f"this select compares s-ops with {nk} and {nq} possible values at "
                f"max length {p.max_len}: a table of {nk * nq} entries "
                f"(limit {MAX_SELECT_TABLE})",
                atom if atom.span is not None else owner,
            )


def _joint_of(
    p: PlanState,
    ops: list[ir.SOp],
    cols: tuple[tuple[Atom, ...], ...],
    classes: tuple[int, ...],
    owner: ir.SOp,
) -> ir.Operand:
    """One operand standing for ``ops``: a constant, the s-op itself, or an s-op
    (an MLP) whose values are the classes of their joint value."""
    if not ops:
        return ir.Const(True)
    if len(ops) == 1:
        return ops[0]
    data = (tuple(lookup_value(c) for c in cols), tuple(len(c) for c in cols), classes)
    node = ir.Map(op="joint", args=tuple(ops), data=data, span=p.span_of(owner))
    p.sets[node.id] = ValueSet(tuple(range(max(classes) + 1)))
    p.names.setdefault(node.id, "joint(" + ", ".join(p.short(o) for o in ops) + ")")
    return node


def _qk_terms(p: PlanState, pairs: list[Pair], scores: Scores, gap: float) -> tuple[list[QK], int]:
    """Bilinear score terms for one head, and the stage its operands exist at.

    The one-hots the scores read may be inexact (another head's output): a row error
    ``e`` moves a score by at most ``W * (n_keys + n_queries) * e`` (``W`` the sum of the
    pairs' largest weights), so each is asked to keep that under ``gap / 8``."""
    terms: list[QK] = []
    stage = 0
    total = sum(max(abs(x) for x in w) for w in scores.weights if w) or 1.0
    for pair, w in zip(pairs, scores.weights):
        if not any(w):
            continue
        nk, nq = len(pair.key_values), len(pair.query_values)
        tab = [[w[pair.region_of[(ki, qi)]] for ki in range(nk)] for qi in range(nq)]
        # values the scores treat alike share one read-out (and an MLP writes only
        # those classes, not every value); values that score 0 everywhere need none
        kgroups = _groups(pair.key_values, [tuple(row[ki] for row in tab) for ki in range(nk)])
        qgroups = _groups(pair.query_values, [tuple(row) for row in tab])
        kc = p.cat_groups(pair.keys, tuple(m for m, _ in kgroups))
        qc = p.cat_groups(pair.queries, tuple(m for m, _ in qgroups))
        stage = max(stage, kc.stage, qc.stage)
        for rep in (kc, qc):
            if rep.sources:
                width = nk + nq
                p.require(rep, gap / (8.0 * total * width))
        kpos = {ir.atom_key(v): ki for ki, v in enumerate(pair.key_values)}
        qpos = {ir.atom_key(v): qi for qi, v in enumerate(pair.query_values)}
        krows = [key_side(r) for r in kc.rows]
        qrows = list(qc.rows)
        kfirst = [kpos[ir.atom_key(m[0])] for m, _ in kgroups]
        qfirst = [qpos[ir.atom_key(m[0])] for m, _ in qgroups]
        gtab = [[tab[qi][ki] for ki in kfirst] for qi in qfirst]
        ng, mg = len(krows), len(qrows)
        if mg <= ng:
            for gi in range(mg):
                klin = lin_sum(krows[gk].scale(gtab[gi][gk]) for gk in range(ng) if gtab[gi][gk])
                if klin.terms:
                    terms.append((qrows[gi], klin, 1.0))
        else:
            for gk in range(ng):
                qlin = lin_sum(qrows[gi].scale(gtab[gi][gk]) for gi in range(mg) if gtab[gi][gk])
                if qlin.terms:
                    terms.append((qlin, krows[gk], 1.0))
    return terms, stage


def _groups(
    values: tuple[Atom, ...], vectors: list[tuple[float, ...]]
) -> list[tuple[tuple[Atom, ...], tuple[float, ...]]]:
    """``values`` grouped by equal score vectors, leaving out those scoring 0 throughout."""
    groups: dict[tuple[float, ...], list[Atom]] = {}
    for v, vec in zip(values, vectors, strict=True):
        if any(vec):
            groups.setdefault(vec, []).append(v)
    return [(tuple(m), vec) for vec, m in groups.items()]


@dataclass(frozen=True)
class _HeadSpec:
    """What differs between the heads :func:`_scored_head` builds."""

    kind: HeadKind
    label: str
    span: Span | None
    bos_level: float
    values: tuple[tuple[str, Lin], ...]
    extra_stage: int
    leak: float
    value_span: float = 1.0
    averages: tuple[Rep, ...] = ()
    uniform: bool = False
    mask: str | None = None
    one_key: bool = False


def _scored_head(p: PlanState, pairs: list[Pair], scores: Scores, spec: _HeadSpec) -> Head:
    gap = 0.5 if spec.bos_level % 1 else 1.0
    terms, stage = _qk_terms(p, pairs, scores, gap)
    stage = max(stage, spec.extra_stage)
    weights_max = sum(max(w) for w in scores.weights) if scores.weights else 0
    terms.append((Lin.unit(ONE), Lin.unit(BOS), spec.bos_level))
    # The BOS query attends to BOS alone, so the BOS position's residual stays known.
    terms.append((Lin.unit(BOS), Lin.unit(BOS), float(weights_max + 2)))
    magnitude = 2.0 * weights_max + abs(spec.bos_level) + 2.0
    return p.add_head(
        Head(
            id=p.next_head_id(),
            layer=math.ceil(stage / 2),
            label=spec.label,
            span=spec.span,
            qk=tuple(terms),
            values=spec.values,
            gap=gap,
            leak=spec.leak,
            kind=spec.kind,
            value_span=spec.value_span,
            magnitude=magnitude,
            averages=spec.averages,
            uniform=spec.uniform,
            mask=spec.mask,
            one_key=spec.one_key,
            exact=p.eps if exact_scores(p, terms, magnitude) else 0.0,
            roundings=roundings(p, terms),
        )
    )


# ---------------------------------------------------------------- aggregate


def aggregate(p: PlanState, node: ir.Aggregate, codes: tuple[float, ...] | None = None) -> Rep:
    """One head averaging ``node.values`` over the selected keys (BOS where none is).

    ``codes`` (a categorical aggregate only; one number per value of ``node``, in the
    order of its value set): the head moves the selected key's code, one number, instead
    of its one-hot, and the result is a :class:`NumRep` over the codes.  Only for what
    nothing but the unembedding reads (the output; see ``make._coded_output``): the
    value path is one dimension wide instead of one per value."""
    label = p.label(node)
    categorical = p.agg_is_categorical(node)
    if codes is not None and not categorical:
        raise ValueError("codes apply to a categorical aggregate only")
    numeric_eq = numeric_equality(p, node.selector)
    by_digits = None
    sel = node.selector
    if numeric_eq is None and isinstance(sel, ir.Select) and isinstance(sel.queries, ir.SOp):
        by_digits = digit_eq(p, sel, positional_values(p, sel.queries))
    heads: list[HeadScores]
    if numeric_eq is None and by_digits is None:
        # a mean needs equal weights on the selected keys, unless they all hold
        # one value (``has_focus``: the constant 1): then any split is exact
        single = len(p.values(node.values)) == 1
        heads = selector_heads(p, node.selector, uniform=not categorical and not single, owner=node)
    else:
        heads = [HeadScores([], Scores((), 0, True))]
    if len(heads) != 1:
        raise p.fail(
            "a numerical aggregate (a mean) needs a selector that one attention head can "
            "select uniformly; this 'or' of selectors over different s-ops is not one",
            node,
        )
    ((pairs, scores, mask),) = [(h.pairs, h.scores, h.mask) for h in heads]
    vals = p.values(node)
    name = p.name(node)
    src: Rep
    averages: tuple[Rep, ...] = ()
    if codes is not None:
        src = p.cat(node.values)
        value_lins, leak, value_span, averages = _coded_values(p, node, src, codes)
    elif categorical:
        src = p.cat(node.values)
        dirs = p.add_block(name, onehot_dirs(name, vals), f"one-hot of {label}", True)
        value_lins = []
        for v, d in zip(vals, dirs):
            row = src.row(v)
            lin = Lin() if row is None else key_side(row)
            if ir.atom_key(v) == ir.atom_key(node.default):
                lin = lin + Lin.unit(BOS)
            value_lins.append((d, lin))
        leak, value_span = 1e-3, 2.0
        if src.sources:  # a copy of a copy: the inner heads' error passes through
            averages = (src,)
    else:
        src = p.num(node.values)
        (d,) = p.add_block(name, (name,), f"{label} (a mean)")
        value_lins = [(d, key_side(src.lin) + Lin.unit(BOS, num(node.default)))]
        nums = [num(v) for v in vals]
        span_v = max(abs(x) for x in nums) + abs(num(node.default)) + 1
        leak, value_span = min_gap(nums) / (8 * span_v), 2.0 * span_v
        averages = (src,)
    if numeric_eq is not None:
        head = numeric_eq_head(
            p,
            numeric_eq,
            label,
            node.span,
            (tuple(value_lins), src.stage),
            leak,
            value_span,
            averages,
            one_key=p.functional(node.selector),
        )
    elif by_digits is not None:
        values_at = (tuple(value_lins), src.stage)
        uniform = not categorical and len(p.values(node.values)) > 1
        head = digit_eq_head(
            p, by_digits, label, node.span, values_at, leak, value_span, averages, uniform
        )
    else:
        spec = _HeadSpec(
            HeadKind.AGGREGATE,
            label,
            p.span_of(node),
            scores.level - 0.5,
            tuple(value_lins),
            src.stage,
            leak,
            value_span,
            averages,
            uniform=not categorical and len(p.values(node.values)) > 1,
            mask=mask,
            one_key=p.functional(node.selector),
        )
        head = _scored_head(p, pairs, scores, spec)
    stage = 2 * head.layer + 1
    if codes is not None:
        return NumRep(Lin.unit(value_lins[0][0]), codes, stage, ((head.id, 1.0),))
    if categorical:
        return CatRep(vals, tuple(Lin.unit(d) for d, _ in value_lins), stage, (head.id,))
    assert isinstance(src, NumRep)
    p.require(src, min_gap(nums) / 8.0)  # the mean of numbers off by e is off by e
    return NumRep(Lin.unit(d), vals, stage, ((head.id, 1.0),))


def _coded_values(
    p: PlanState, node: ir.Aggregate, src: Rep, codes: tuple[float, ...]
) -> tuple[list[tuple[str, Lin]], float, float, tuple[Rep, ...]]:
    """A coded aggregate's value read-out (the code of the key's value, the default's
    code at BOS), its leak and value span, and what it averages.

    The selected keys all hold one value, so their mean is that value's code; a leak
    of weight e moves it by at most e times the codes' span.  A copy of an inexact
    one-hot moves it by a row's error times the sum of the codes' sizes, so the copied
    one-hot is required to a tolerance that keeps that under the head's own share."""
    assert isinstance(src, CatRep)
    vals, name, label = p.values(node), p.name(node), p.label(node)
    if len(codes) != len(vals):
        raise ValueError(f"{len(codes)} codes for {len(vals)} values")
    d = role_dir(name, "code")
    p.add_block(d, (d,), f"{label} (the code of its value)")
    lin = Lin()
    for v, c in zip(vals, codes):
        row = src.row(v)
        if row is not None:
            lin = lin + key_side(row).scale(c)
        if ir.atom_key(v) == ir.atom_key(node.default):
            lin = lin + Lin.unit(BOS, c)
    span_v = max(abs(c) for c in codes) + 1.0
    gap = min_gap(codes)
    leak, value_span = gap / (8 * span_v), 2.0 * span_v
    averages: tuple[Rep, ...] = ()
    if src.sources:
        averages = (src,)
        p.require(src, gap / (16.0 * sum(abs(c) for c in codes)))
    return [(d, lin)], leak, value_span, averages


# ---------------------------------------------------------------- widths


def width_xs(p: PlanState, node: ir.SOp, one_head_as: ir.SOp | None = None) -> list[NumRep]:
    """Heads giving 1/(w+1), one per disjoint term of the selector (memoised); a single
    head scored as ``one_head_as`` scores the same selector, when given."""
    if node.id in p.width_heads:
        return p.width_heads[node.id]
    label = p.label(node)
    name = p.name(node)
    n1 = p.max_len + 1
    assert isinstance(node, ir.SelectorWidth)
    owner = node if one_head_as is None else one_head_as
    heads = selector_heads(p, node.selector, uniform=True, owner=owner)
    xs: list[NumRep] = []
    for t, hs in enumerate(heads):
        d = role_dir(name, f"x{t}")
        p.add_block(d, (d,), f"1/(width+1) for {label}")
        spec = _HeadSpec(
            HeadKind.WIDTH,
            label,
            p.span_of(node),
            float(hs.scores.level),
            ((d, Lin.unit(BOS)),),
            0,
            1.0 / (16.0 * n1 * n1),
            uniform=True,
            mask=hs.mask,
        )
        head = _scored_head(p, hs.pairs, hs.scores, spec)
        xvals = tuple(1.0 / (w + 1) for w in range(p.max_len + 1))
        xs.append(NumRep(Lin.unit(d), xvals, 2 * head.layer + 1, ((head.id, 1.0),)))
    p.width_heads[node.id] = xs
    return xs
