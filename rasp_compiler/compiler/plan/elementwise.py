"""Planning MLPs: elementwise tables, widths read from their heads, and numbers
turned into categories.

An MLP job computes one function over the product of its inputs' value sets.  A chain
of elementwise operations is fused into one job over the chain's inputs, and may read
through cheap maps of other MLPs' inputs, so that it starts a layer earlier.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ...language import ir
from ...language.ir import Atom
from ..numbers import binding_pair, num, projected_tolerances
from ..residual import Lin, onehot_dirs, role_dir
from ..value_sets import possible_value
from .attention import width_xs
from .fusion import critical_path_inputs
from .means import only_possible_means
from .state import JobDraft, JobKind, MapKind, PlanState, fused_fn
from .types import CatRep, CatTarget, GateForms, NumRep, Rep, TableFn

#: Most input combinations one fused elementwise MLP may have before the compiler refuses.
MAX_MLP_DOMAIN = 1 << 21
#: Largest table telling an output's ints from its equal floats (``kinds_of_means``):
#: an optional refinement, so it may not cost a long compile (a mutant of long
#: addition spent 12 s building a 300 K-point one before its output table was refused)
MAX_KINDS_DOMAIN = 1 << 16
#: Largest table for reading a width's attention output directly (saves a layer).
MAX_FUSED_CONVERSION = 1 << 12


def mlp_output(p: PlanState, node: ir.SOp, categorical: bool) -> Rep:
    """The categorical or numerical representation of ``node`` written by the MLP(s)
    that compute it."""
    jobs = _jobs_for(p, node, categorical)
    stage = max(2 * job.layer + 2 for job in jobs)
    vals = p.values(node)
    name = p.name(node)
    if categorical:
        dirs = p.add_block(name, onehot_dirs(name, vals), f"one-hot of {p.label(node)}", True)
        for job in jobs:
            job.cat_targets.append(CatTarget(vals, dirs))
        return CatRep(vals, tuple(Lin.unit(d) for d in dirs), stage)
    (d,) = p.add_block(role_dir(name, "num"), (name,), f"{p.label(node)} as a number")
    for job in jobs:
        job.num_targets.append(d)
    return NumRep(Lin.unit(d), vals, stage)


def writes_categories(p: PlanState, node: ir.SOp) -> bool:
    """Does an MLP write ``node``'s one-hot (rather than an embedding or a head)?"""
    match node:
        case ir.Tokens() | ir.Indices() | ir.Full():
            return False
        case ir.Map():
            return p.map_kind(node) != MapKind.CAT1
        case ir.Aggregate():
            return not p.agg_is_categorical(node)
    return True


def mlp_classes(p: PlanState, node: ir.SOp, groups: tuple[tuple[Atom, ...], ...]) -> CatRep:
    """One direction per group of ``node``'s values, ~1 when its value is in the group,
    written by the MLP(s) that compute ``node``: the table changes only where the group
    does, so it has fewer steps than a full one-hot."""
    jobs = _jobs_for(p, node, categorical=True)
    stage = max(2 * job.layer + 2 for job in jobs)
    name = p.name(node)
    block = role_dir(name, f"classes{p.next_class_block(node)}")

    def show(members: tuple[Atom, ...]) -> str:
        shown = ", ".join(repr(m) for m in members[:3])
        return "{" + shown + (", ..." if len(members) > 3 else "") + f"}}#{len(members)}"

    dirs = p.add_block(
        block,
        tuple(f"{block}={show(m)}" for m in groups),
        f"the classes of {p.label(node)} that a selector tells apart",
        True,
    )
    members = tuple(v for m in groups for v in m)
    member_dirs = tuple(d for m, d in zip(groups, dirs) for _ in m)
    for job in jobs:
        job.cat_targets.append(CatTarget(members, member_dirs))
    return CatRep(tuple(range(len(groups))), tuple(Lin.unit(d) for d in dirs), stage)


def _jobs_for(p: PlanState, node: ir.SOp, categorical: bool) -> list[JobDraft]:
    """The MLP jobs that write ``node``'s representation (made on first use).

    Most nodes have one job that writes both representations.  A selector_width
    split over several heads writes its number as a sum of one job per head, and
    its categories jointly when that table is small, else from the number."""
    memo = p.job_memo
    key = (node.id, JobKind.ANY)
    if isinstance(node, ir.SelectorWidth) and len(width_xs(p, node)) > 1:
        xs = width_xs(p, node)
        if not categorical:
            key = (node.id, JobKind.NUM)
            if key not in memo:
                memo[key] = [
                    _job(p, node, [x], _width_fn(p.max_len), f"width term of {p.label(node)}")
                    for x in xs
                ]
            return memo[key]
        if math.prod(len(x.values) for x in xs) <= MAX_MLP_DOMAIN and p.joint_ok(
            node, [x.values for x in xs]
        ):
            key = (node.id, JobKind.CAT)
            if key not in memo:
                memo[key] = [_job(p, node, list(xs), _width_fn(p.max_len), p.label(node))]
            return memo[key]
        return _conversion(p, node)
    if key not in memo:
        match node:
            case ir.Map() if p.map_kind(node) == MapKind.MLP:
                leaves, reps = _fused_inputs(p, node)
                fn = fused_fn(node, leaves)
                narrow = only_possible_means(p, leaves, fn)
                early = _fused_through_widths(p, node)
                if early is not None and max(r.stage for r in early[0]) < max(
                    r.stage for r in reps
                ):
                    reps, fn = early
                    narrow = None
                crit = critical_path_inputs(p, node)
                # the critical path's table when it runs earlier, or as early over fewer
                # combinations (17 booleans "and"-ed: 131,072 combinations, not 4)
                here = (max((r.stage for r in reps), default=0), _domain(reps))
                gates: tuple[tuple[int, bool], ...] = ()
                forms: GateForms | None = None
                later = crit is None or (
                    (crit.stage, _domain(crit.reps, crit.gates, crit.forms)) >= here
                )
                if crit is not None and not later:
                    reps, fn, narrow = crit.reps, crit.fn, None
                    gates, forms = crit.gates, crit.forms
                memo[key] = [
                    _job(
                        p,
                        node,
                        reps,
                        _possible_only(p, node, fn),
                        p.label(node),
                        None if narrow is None else _possible_only(p, node, narrow),
                        gates,
                        forms,
                    )
                ]
            case ir.SelectorWidth():
                xs = width_xs(p, node)
                memo[key] = [_job(p, node, list(xs), _width_fn(p.max_len), p.label(node))]
            case _:
                return _conversion(p, node)
    return memo[key]


def _conversion(p: PlanState, node: ir.SOp) -> list[JobDraft]:
    """An MLP turning the number ``node`` into its categories.

    When ``node`` is elementwise arithmetic over widths/lengths (``length - indices
    - 1``), the MLP may read the widths' attention outputs directly instead of
    waiting for their own MLP: one layer earlier, if the table stays small."""
    key = (node.id, JobKind.CONV)
    if key not in p.job_memo:
        label = f"categories of {p.label(node)}"
        fused = _fused_through_widths(p, node) if isinstance(node, ir.Map) else None
        num = p.num(node)
        crit = critical_path_inputs(p, node) if isinstance(node, ir.Map) else None
        if fused is not None and max(r.stage for r in fused[0]) < num.stage:
            gates: tuple[tuple[int, bool], ...] = ()
            forms: GateForms | None = None
            if crit is not None and crit.stage < max(r.stage for r in fused[0]):
                fused, gates, forms = (crit.reps, crit.fn), crit.gates, crit.forms
            fn = _possible_only(p, node, fused[1])
            p.job_memo[key] = [_job(p, node, fused[0], fn, label, gates=gates, forms=forms)]
        elif crit is not None and crit.stage < num.stage:
            fn = _possible_only(p, node, crit.fn)
            p.job_memo[key] = [
                _job(p, node, crit.reps, fn, label, gates=crit.gates, forms=crit.forms)
            ]
        else:
            p.job_memo[key] = [_job(p, node, [num], _identity, label)]
    return p.job_memo[key]


def _fused_inputs(p: PlanState, node: ir.Map) -> tuple[list[ir.SOp], list[Rep]]:
    """The inputs of the MLP computing ``node``: expand through args that are MLPs too."""
    leaves: list[ir.SOp] = []
    seen: set[int] = set()  # nodes expanded or made leaves: a shared node is visited once

    def expand(n: ir.SOp, budget_ok: Callable[[ir.Map], bool]) -> None:
        for a in n.children() if isinstance(n, ir.Map) else ():
            assert isinstance(a, ir.SOp)
            if a.id in seen:
                continue
            seen.add(a.id)
            if isinstance(a, ir.Map) and budget_ok(a):
                expand(a, budget_ok)
            else:
                leaves.append(a)

    def small(a: ir.Map) -> bool:
        return p.domain_of([x for x in a.args if isinstance(x, ir.SOp)]) <= MAX_MLP_DOMAIN // 16

    hidden: dict[int, bool] = {}

    def hides_mlp(a: ir.Map) -> bool:
        # a cheap map (``not pair_ok``) over an MLP's output: reading through it
        # lets this MLP start from the inner MLP's inputs, one layer earlier.
        if a.id not in hidden:
            hidden[a.id] = p.map_kind(a) == MapKind.MLP or any(
                isinstance(c, ir.Map) and hides_mlp(c) for c in a.children()
            )
        return hidden[a.id]

    rules: tuple[Callable[[ir.Map], bool], ...] = (
        lambda a: small(a) and hides_mlp(a),
        lambda a: small(a) and p.map_kind(a) == MapKind.MLP,
        lambda a: False,
    )
    # of the rules' leaf sets that fit, the one running earliest, then the smallest (a
    # wider table that runs no earlier only costs units: a table over 750 K input
    # combinations instead of 21 made long addition at 12 take a minute to compile)
    best: tuple[tuple[int, int], list[ir.SOp], list[Rep]] | None = None
    for rule in rules:
        leaves, seen = [], set()
        expand(node, rule)
        if p.domain_of(leaves) > MAX_MLP_DOMAIN:
            continue
        if not p.joint_ok(node, [p.best(x).values for x in leaves if not p.cheap_cat(x)]):
            continue
        reps = [p.best(x) for x in leaves]
        cost = (max((r.stage for r in reps), default=0), math.prod(len(r.values) for r in reps))
        if best is None or cost < best[0]:
            best = (cost, leaves, reps)
    if best is None:
        return leaves, [p.best(x) for x in leaves]
    return best[1], best[2]


def map_leaves(node: ir.SOp) -> list[ir.SOp]:
    """The s-ops below ``node``'s elementwise operations (the first non-Map on each path),
    in first-visit order; a shared operation is visited once."""
    leaves: list[ir.SOp] = []
    seen: set[int] = set()

    def expand(n: ir.SOp) -> None:
        for a in n.children():
            assert isinstance(a, ir.SOp)
            if a.id not in seen:
                seen.add(a.id)
                if isinstance(a, ir.Map):
                    expand(a)
                else:
                    leaves.append(a)

    expand(node)
    return leaves


def _fused_through_widths(p: PlanState, node: ir.Map) -> tuple[list[Rep], TableFn] | None:
    """(inputs, fn) computing ``node`` from its Map ancestors' leaves, reading each
    single-head width leaf as its head's 1/(w+1); None if too large."""
    leaves = map_leaves(node)
    reps: list[Rep] = []
    decode: list[bool] = []
    for leaf in leaves:
        if isinstance(leaf, ir.SelectorWidth) and len(width_xs(p, leaf)) == 1:
            reps.append(width_xs(p, leaf)[0])
            decode.append(True)
        else:
            reps.append(p.best(leaf))
            decode.append(False)
    nums = [r.values for r in reps if isinstance(r, NumRep)]
    if math.prod(len(r.values) for r in reps) > MAX_FUSED_CONVERSION:
        return None
    if not p.joint_ok(node, nums):
        return None
    base = fused_fn(node, leaves)

    def fn(args: tuple[Atom, ...]) -> Atom | None:
        return base(tuple(round(1.0 / num(a)) - 1 if d else a for a, d in zip(args, decode)))

    return reps, fn


def kinds_of_means(
    p: PlanState, node: ir.Map, key_count: Callable[[ir.Aggregate], NumRep]
) -> CatRep | None:
    """The categories of ``node`` (an output whose values include an int and an equal
    float) from one table over the leaves it is computed from and, beside each mean
    among them, that mean's key count (``key_count``: a head's 1/(w+1)): the mean is the
    selected value as it is from one key and a float from several, and that kind
    follows through ``node`` as in the interpreter.  None when some leaf's kind stays
    unknown (a mean of means) or the table would be too large or too fine."""
    leaves = map_leaves(node)
    reps = [p.best(x) for x in leaves]
    fixes: list[tuple[int, Atom, tuple[Atom, ...]]] = []
    for i, (leaf, rep) in enumerate(zip(leaves, reps)):
        if not kind_ambiguous(rep.values):
            continue
        if not (isinstance(leaf, ir.Aggregate) and isinstance(rep, NumRep)):
            return None
        single = p.values(leaf.values)
        if kind_ambiguous(single):
            return None
        fixes.append((i, leaf.default, single))
    if not fixes:
        return None
    counts = [key_count(leaves[i]) for i, _, _ in fixes]  # type: ignore[arg-type]
    inputs: list[Rep] = [*reps, *counts]
    if math.prod(len(r.values) for r in inputs) > MAX_KINDS_DOMAIN:
        return None  # the kinds are a refinement: not worth a table this large
    if not p.joint_ok(node, [r.values for r in inputs if isinstance(r, NumRep)]):
        return None
    base = fused_fn(node, leaves)
    n = len(reps)

    def fn(args: tuple[Atom, ...]) -> Atom | None:
        fixed: list[Atom | None] = list(args[:n])
        for (i, default, single), m in zip(fixes, args[n:]):
            fixed[i] = with_kind(args[i], num(m), default, single)
            if fixed[i] is None:
                return None  # a mean and a key count that never occur together
        return base(tuple(fixed))  # type: ignore[arg-type]

    vals = p.values(node)
    block = role_dir(p.name(node), "kinds")
    dirs = p.add_block(
        block, onehot_dirs(block, vals), f"one-hot of {p.label(node)}, kinds kept", True
    )
    job = _job(p, node, inputs, fn, f"{p.label(node)} (ints and floats as the interpreter's)")
    job.cat_targets.append(CatTarget(vals, dirs))
    return CatRep(vals, tuple(Lin.unit(d) for d in dirs), 2 * job.layer + 2)


def with_kind(value: Atom, m: float, default: Atom, single: tuple[Atom, ...]) -> Atom | None:
    """A mean's value with the interpreter's kind, given 1/(w+1) for its w keys: the
    default from none, the value as it is (one of ``single``) from one, a float from
    several; None if ``value`` cannot be that."""
    keys = round(1.0 / m) - 1
    if keys <= 0:
        return default if num(default) == num(value) else None
    if keys == 1:
        return next((v for v in single if num(v) == num(value)), None)
    return float(num(value))


def kind_ambiguous(values: tuple[Atom, ...]) -> bool:
    """Do ``values`` hold an int and a float that are equal (``1`` and ``1.0``)?"""
    kinds: dict[float, set[type]] = {}
    for v in values:
        if ir.is_number(v) and not isinstance(v, bool):
            kinds.setdefault(float(v), set()).add(type(v))  # type: ignore[arg-type]
    return any(len(k) > 1 for k in kinds.values())


def _job(
    p: PlanState,
    node: ir.SOp,
    reps: list[Rep],
    fn: TableFn,
    label: str,
    narrow_fn: TableFn | None = None,
    gates: tuple[tuple[int, bool], ...] = (),
    forms: GateForms | None = None,
) -> JobDraft:
    """A new MLP job in the earliest layer its inputs allow; asks for their precision
    (a gate's, see ``emit.mlp.numeric_gates``, once its table is built)."""
    size = _domain(reps, gates, forms)
    if size > MAX_MLP_DOMAIN:
        raise p.fail(
            f"this elementwise operation needs a table over {size} input combinations "
            f"at max length {p.max_len} (limit {MAX_MLP_DOMAIN})",
            node,
        )
    gated = {i for i, _ in gates}
    plain = [i for i, r in enumerate(reps) if isinstance(r, NumRep) and i not in gated]
    tolerances = []
    for i, tol in zip(plain, projected_tolerances([reps[i].values for i in plain])):
        r = reps[i]
        p.require(r, tol)
        if len(plain) == 1:  # rounding is relative: what binds is the worst neighbour pair
            tolerances.append((i, *binding_pair(r.values, 8.0)))
        else:
            tolerances.append((i, max(abs(num(v)) for v in r.values), tol))
    for i, top in gates:  # a gate tells its extreme value from the one next to it
        gv = sorted({num(v) for v in reps[i].values})
        edge = gv[-1] - gv[-2] if top else gv[1] - gv[0]
        tolerances.append((i, max(abs(v) for v in gv), edge / gate_share(forms, len(gates))))
    stage = max((r.stage for r in reps), default=0)
    job = JobDraft(
        id=len(p.jobs),
        layer=max(0, math.ceil((stage - 1) / 2)),
        label=label,
        span=p.span_of(node),
        inputs=tuple(reps),
        fn=fn,
        tolerances=tuple(tolerances),
        narrow_fn=narrow_fn,
        node_id=node.id,
        gates=tuple((i, top) for i, top in gates),
        forms=forms,
    )
    p.jobs.append(job)
    return job


def gate_share(forms: GateForms | None, n_gates: int) -> float:
    """What share of the gap next to its extreme value a gated number may be off by: an
    eighth, or for an ``or`` form, which sums the gated numbers' distances
    (``emit.mlp.or_units``), a twentieth per gate."""
    return 8.0 if forms is None else 20.0 * n_gates


def _possible_only(p: PlanState, node: ir.SOp, fn: TableFn) -> TableFn:
    """``fn``, undefined where it gives a value outside ``node``'s value set: no input
    gives those input combinations (a mean of 1/7 beside index 3), so the table need not
    step there."""
    possible = possible_value(p.values(node))

    def table(args: tuple[Atom, ...]) -> Atom | None:
        y = fn(args)
        return y if y is None or possible(y) else None

    return table


def _identity(args: tuple[Atom, ...]) -> Atom:
    return args[0]


def _domain(
    reps: list[Rep], gates: tuple[tuple[int, bool], ...] = (), forms: GateForms | None = None
) -> int:
    """Input combinations a table over ``reps`` steps through (a gate has two classes;
    a table with an ``or`` form, per combination of the others: any gate off, or none)."""
    gated = {i for i, _ in gates}
    if forms is not None:
        return 2 * math.prod(len(r.values) for i, r in enumerate(reps) if i not in gated)
    return math.prod(2 if i in gated else len(r.values) for i, r in enumerate(reps))


def _width_fn(max_len: int) -> TableFn:
    def fn(args: tuple[Atom, ...]) -> Atom | None:
        total = sum(round(1.0 / num(x)) - 1 for x in args)
        return total if total <= max_len else None

    return fn


def count_feature(
    p: PlanState, node: ir.SelectorWidth, role: str, f: Callable[[int], float]
) -> NumRep:
    """``f(w)`` of a count ``w``, written by an MLP (``role`` names it, e.g. ``(count-32)^2``):
    read from the counting heads' ``1/(w_i+1)`` at once where the width's categories
    would be (a small joint table, the same layer as its number), else from the number
    (one layer later)."""
    key = (node.id, role)
    if key in p.features:
        return p.features[key]
    xs = width_xs(p, node)
    label = f"{role} of {p.label(node)}"
    if len(xs) == 1 or (
        math.prod(len(x.values) for x in xs) <= MAX_MLP_DOMAIN
        and p.joint_ok(node, [x.values for x in xs])
    ):
        width = _width_fn(p.max_len)

        def from_xs(args: tuple[Atom, ...]) -> Atom | None:
            w = width(args)
            return None if w is None else f(int(num(w)))

        job = _job(p, node, list(xs), from_xs, label)
    else:
        job = _job(p, node, [p.num(node)], lambda a: f(int(num(a[0]))), label)
    d = role_dir(p.name(node), role)
    p.add_block(d, (d,), label)
    job.num_targets.append(d)
    values = tuple(sorted({f(int(num(v))) for v in p.values(node)}))
    rep = NumRep(Lin.unit(d), values, 2 * job.layer + 2)
    p.features[key] = rep
    return rep
