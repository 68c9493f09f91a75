"""Encodings and scheduling: how every s-op is represented and in which layer it is made.

Each s-op the output depends on gets one or both representations in the residual:

* categorical (:class:`CatRep`): one read-out per possible value, ~1 when the s-op
  has that value and ~0 otherwise;
* numerical (:class:`NumRep`): one read-out holding the number.

A read-out is a :class:`~rasp_compiler.residual.Lin`, so many s-ops cost nothing:
any function of a single categorical s-op is a linear map of its one-hot, and sums,
differences and constant multiples of numerical s-ops are linear too.  Only what is
not linear is built: attention heads for ``aggregate``, ``selector_width`` and
``length``, and MLPs for elementwise operations of several inputs (fused: a chain of
elementwise operations becomes one MLP over the chain's inputs) and for turning a
number into a category.

Scheduling is as-soon-as-possible over *stages*: the embedding is stage 0, layer
``l``'s attention writes stage ``2l+1`` and its MLP stage ``2l+2``.  A head can be in
layer ``l`` when its inputs exist at stage ``2l``; an MLP when they exist at ``2l+1``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from ..errors import RaspError, RaspTypeError
from ..language import ir
from ..language.ir import Atom
from .residual import BOS, ONE, Lin, lin_sum
from .selectors import (
    Pair,
    Scores,
    atoms,
    build_pairs,
    disjoint_terms,
    distinct_operands,
    joint_pair,
    joint_scores,
    joint_table,
    solve_scores,
    term_scores,
    truth_table,
)
from .value_sets import ValueSet, affine_form, lookup_value, sort_values, vkey

#: Most hidden units one fused elementwise MLP may use before the compiler refuses.
MAX_MLP_DOMAIN = 1 << 21
#: Joint tables over several numbers are used only while range/gap stays below this
#: (beyond it float32 cannot tell neighbouring combinations apart reliably).
MAX_PROJECTION_RATIO = 1e5
#: Largest table for reading a width's attention output directly (saves a layer).
MAX_FUSED_CONVERSION = 1 << 12
#: ``select(a, b, ==)`` over numbers uses a numerical head (two residual directions a
#: side instead of a one-hot) once a side has at least this many values.
NUMERIC_EQ_MIN_VALUES = 12
#: Largest (key value, query value) table one attention head's selector may need.
MAX_SELECT_TABLE = 1 << 22


class PlanError(RaspError):
    """A construct that cannot be compiled exactly (collected into a CompileError)."""

    kind = "cannot compile"


@dataclass
class Head:
    """One attention head, described over named directions.

    score(query i, key j) = sum_t coef_t * q_t(x_i) * k_t(x_j)  (before sharpness beta);
    value: for each (out_dir, lin), the head writes ``mean over attended keys of lin``.
    """

    layer: int
    label: str
    span: object
    qk: list[tuple[Lin, Lin, float]]
    values: list[tuple[str, Lin]]
    gap: float  # score gap that separates what must be attended from what must not
    leak: float  # largest total attention weight allowed on keys that must be ignored
    kind: str
    value_span: float = 1.0  # bound on |value - value'|: output error <= leak * value_span
    #: bound on |score| over all query/key pairs: float rounding of a score is about
    #: this times the dtype's epsilon (a few times over, see emit.attention.sharpness)
    magnitude: float = 0.0
    #: numbers this head averages (a mean's values): its output is off by their error
    #: too, so a consumer's tolerance is passed on to them (see NumRep.require)
    averages: list[NumRep] = field(default_factory=list)


@dataclass(frozen=True)
class CatRep:
    """Categories in the residual: ``rows[i]`` reads ~1 when the value is ``values[i]``.
    ``sources`` are heads whose leaky output the rows read (see :class:`NumRep`)."""

    values: tuple[Atom, ...]
    rows: tuple[Lin, ...]
    stage: int
    sources: tuple[Head, ...] = ()

    def require(self, tol: float) -> None:
        """Make every row accurate to within ``tol``."""
        for head in self.sources:
            head.leak = min(head.leak, tol / head.value_span)

    @functools.cached_property
    def _find(self):
        return lookup_value(self.values)

    def row(self, value: Atom) -> Lin:
        i = self._find(value)
        if i is None:
            raise ValueError(f"{value!r} is not one of this s-op's values")
        return self.rows[i]


@dataclass(frozen=True)
class NumRep:
    """A number in the residual.  ``sources`` are the attention heads whose (slightly
    leaky) output it sums, each with the size of its coefficient: a consumer that
    needs the number to within ``tol`` tightens those heads' allowed leak."""

    lin: Lin
    values: tuple[Atom, ...]
    stage: int
    sources: tuple[tuple[Head, float], ...] = ()

    def require(self, tol: float) -> None:
        """Make every source head accurate enough that this number is within ``tol``.

        A mean head's error is its leak times its value span plus the error of the numbers
        it averages: half the budget goes to each, recursively."""
        for head, coef in self.sources:
            share = tol / (len(self.sources) * abs(coef))
            head.leak = min(head.leak, share / (2.0 * head.value_span))
            for rep in head.averages:
                rep.require(share / 2.0)


Rep = CatRep | NumRep


@dataclass
class MLPJob:
    """An elementwise table: ``fn`` over the product of ``inputs``' values, into targets."""

    layer: int
    label: str
    span: object
    inputs: list[Rep]
    fn: object  # Callable[[tuple[Atom, ...]], Atom | None]
    cat_targets: list[tuple[tuple[Atom, ...], tuple[str, ...]]] = field(default_factory=list)
    num_targets: list[str] = field(default_factory=list)
    #: per numerical input: (largest |value|, error it tolerates), for certifying a dtype
    tolerances: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class Blocks:
    """Residual blocks requested while planning: name -> (directions, description)."""

    order: list[tuple[str, tuple[str, ...], str]] = field(default_factory=list)

    def add(self, name: str, dirs: tuple[str, ...], description: str) -> tuple[str, ...]:
        self.order.append((name, dirs, description))
        return dirs


def key_side(lin: Lin) -> Lin:
    """``lin`` with its constant part removed at the BOS position (ONE -> ONE - BOS)."""
    c = lin.as_dict().get(ONE, 0.0)
    return lin + Lin.unit(BOS, -c) if c else lin


def _label(node: ir.Node, names: dict[int, str]) -> str:
    name = names.get(node.id)
    text = node.span.text.strip() if node.span is not None else type(node).__name__
    if name and name != text:
        return f"{name} = {text}"
    return text


LINEAR_OPS = {"add", "sub", "neg", "pos", "mul", "div"}


class Planner:
    """Decides every representation, head and MLP; see the module docstring."""

    def __init__(
        self,
        sets: dict[int, ValueSet],
        max_len: int,
        names: dict[int, str],
        conv_of: dict[int, str],
    ):
        self.sets = sets
        self.max_len = max_len
        self.names = names
        self.blocks = Blocks()
        self.heads: list[Head] = []
        self.mlps: list[MLPJob] = []
        self.problems: list[RaspError] = []
        self._cat: dict[int, CatRep] = {}
        self._num: dict[int, NumRep] = {}
        self._jobs: dict[tuple[int, str], list[MLPJob]] = {}
        self._x_of: dict[int, list[NumRep]] = {}
        self.embedded_tokens: dict[str, tuple[tuple[Atom, ...], tuple[str, ...]]] = {}
        self.index_dirs: dict[str, tuple[str, ...]] = {}
        self.conv_of = conv_of
        self._kind: dict[int, str] = {}
        #: node id -> the span of an operation that reads it, for nodes without their own
        #: (``length`` from the library): errors about them point at where they are used
        self.used_at: dict[int, object] = {}
        #: extra positional-embedding directions: name -> value at index 0, 1, ...
        self.positional: dict[str, tuple[float, ...]] = {}
        self._leaf: dict[int, ir.Node | None] = {}

    def span_of(self, node: ir.Node):
        return node.span if node.span is not None else self.used_at.get(node.id)

    # ------------------------------------------------------------ pruning

    def prune(self, output: Rep) -> None:
        """Drop heads, MLPs and residual blocks nothing reads.

        Planning asks for representations while it compares alternatives (a fused
        table against reading a finished s-op), so some jobs end up unused; what
        survives is what the output depends on, transitively."""
        live: set[str] = {ONE, BOS}

        def read(lin: Lin) -> None:
            live.update(lin.names())

        for lin in output.rows if isinstance(output, CatRep) else (output.lin,):
            read(lin)
        heads, jobs = set(), set()
        changed = True
        while changed:
            changed = False
            for h in self.heads:
                if id(h) not in heads and any(d in live for d, _ in h.values):
                    heads.add(id(h))
                    changed = True
                    for q, k, _ in h.qk:
                        read(q)
                        read(k)
                    for _, lin in h.values:
                        read(lin)
            for m in self.mlps:
                targets = [d for _, dirs in m.cat_targets for d in dirs] + m.num_targets
                if id(m) not in jobs and any(d in live for d in targets):
                    jobs.add(id(m))
                    changed = True
                    for r in m.inputs:
                        for lin in r.rows if isinstance(r, CatRep) else (r.lin,):
                            read(lin)
        self.heads = [h for h in self.heads if id(h) in heads]
        self.mlps = [m for m in self.mlps if id(m) in jobs]
        for m in self.mlps:  # a live job may still write a representation nobody reads
            m.cat_targets = [(v, dirs) for v, dirs in m.cat_targets if any(d in live for d in dirs)]
            m.num_targets = [d for d in m.num_targets if d in live]
        self.blocks.order = [b for b in self.blocks.order if any(d in live for d in b[1])]
        self.embedded_tokens = {
            c: (vals, dirs)
            for c, (vals, dirs) in self.embedded_tokens.items()
            if any(d in live for d in dirs)
        }
        self.index_dirs = {
            k: dirs for k, dirs in self.index_dirs.items() if any(d in live for d in dirs)
        }
        self.positional = {d: v for d, v in self.positional.items() if d in live}

    # ------------------------------------------------------------ naming

    def _name(self, node: ir.Node) -> str:
        base = self.names.get(node.id)
        return f"{base}#{node.id}" if base else f"{type(node).__name__.lower()}#{node.id}"

    def values(self, node: ir.Operand) -> tuple[Atom, ...]:
        if isinstance(node, ir.Const):
            return (node.value,)
        return self.sets[node.id].values

    # ------------------------------------------------------- what is cheap

    def agg_is_categorical(self, node: ir.Aggregate) -> bool:
        from .value_sets import is_functional

        vs = ValueSet(self.values(node.values))
        return not vs.numeric or (is_functional(node.selector) and len(vs) <= 64)

    def map_kind(self, node: ir.Map) -> str:
        """'cat1' (a function of one categorical s-op), 'linear', or 'mlp'."""
        if node.id in self._kind:
            return self._kind[node.id]
        nodes = [a for a in node.args if isinstance(a, ir.Node)]
        leaf = self._chain_leaf(node)
        if len(nodes) == 1 and self.cheap_cat(nodes[0]):
            kind = "cat1"
        elif node.op in LINEAR_OPS and self._linear_ok(node) and leaf is None:
            kind = "linear"
        elif leaf is not None and self.cheap_cat(leaf):
            # a chain of elementwise operations over one categorical s-op
            # (``indicator(tokens == "(") - indicator(tokens == ")")``) is a
            # function of that s-op alone: linear in its one-hot.
            kind = "cat1"
        elif node.op in LINEAR_OPS and self._linear_ok(node):
            kind = "linear"
        else:
            kind = "mlp"
        self._kind[node.id] = kind
        return kind

    def _chain_leaf(self, node: ir.Map) -> ir.Node | None:
        """The one non-elementwise s-op a chain of elementwise operations reads, if one."""
        if node.id not in self._leaf:
            leaves: dict[int, ir.Node] = {}
            stack: list[ir.Node] = [node]
            while stack and len(leaves) <= 1:
                for a in stack.pop().children():
                    if isinstance(a, ir.Map):
                        stack.append(a)
                    else:
                        leaves[a.id] = a
            self._leaf[node.id] = next(iter(leaves.values())) if len(leaves) == 1 else None
        return self._leaf[node.id]

    def _linear_ok(self, node: ir.Map) -> bool:
        if not ValueSet(self.sets[node.id].values).numeric:
            return False
        for a in node.args:
            if not ValueSet(self.values(a)).numeric:
                return False
        consts = [a for a in node.args if isinstance(a, ir.Const)]
        if node.op == "mul":
            return len(consts) >= 1
        if node.op == "div":
            return isinstance(node.args[1], ir.Const) and node.args[1].value != 0
        return True

    def cheap_cat(self, node: ir.Node) -> bool:
        """Can the s-op's categorical form be had at no extra depth?"""
        match node:
            case ir.Map():
                return self.map_kind(node) != "linear"
            case ir.Aggregate():
                return self.agg_is_categorical(node)
        return True

    # ------------------------------------------------------- public reps

    def cat(self, node: ir.Operand) -> CatRep:
        if isinstance(node, ir.Const):
            return CatRep((node.value,), (Lin.unit(ONE),), 0)
        if node.id not in self._cat:
            self._cat[node.id] = self._make_cat(node)
        return self._cat[node.id]

    def num(self, node: ir.Operand) -> NumRep:
        if isinstance(node, ir.Const):
            return NumRep(Lin.const(float(node.value)), (node.value,), 0)
        if node.id not in self._num:
            self._num[node.id] = self._make_num(node)
        return self._num[node.id]

    def best(self, node: ir.Operand) -> Rep:
        """The representation an MLP should read: categorical if cheap, else numerical."""
        if isinstance(node, ir.Const) or self.cheap_cat(node):
            return self.cat(node)
        return self.num(node)

    # ------------------------------------------------------- construction

    def _fail(self, msg: str, node: ir.Node) -> PlanError:
        err = PlanError(msg, self.span_of(node))
        self.problems.append(err)
        return err

    def _make_cat(self, node: ir.SOp) -> CatRep:
        vals = self.values(node)
        match node:
            case ir.Tokens(conv=conv):
                dirs = tuple(f"tokens_{conv}={v!r}" for v in vals)
                if conv not in self.embedded_tokens:
                    self.blocks.add(f"tokens_{conv}", dirs, f"one-hot of tokens_{conv}")
                    self.embedded_tokens[conv] = (vals, dirs)
                return CatRep(vals, tuple(Lin.unit(d) for d in dirs), 0)
            case ir.Indices():
                if "cat" not in self.index_dirs:
                    dirs = tuple(f"indices={i}" for i in vals)
                    self.index_dirs["cat"] = self.blocks.add("indices", dirs, "one-hot of indices")
                return CatRep(vals, tuple(Lin.unit(d) for d in self.index_dirs["cat"]), 0)
            case ir.Full(value=v):
                return CatRep((v,), (Lin.unit(ONE),), 0)
            case ir.Map() if self.map_kind(node) == "cat1":
                return self._cat1_cat(node)
            case ir.Aggregate() if self.agg_is_categorical(node):
                return self._aggregate(node)  # type: ignore[return-value]
        return self._mlp_output(node, "cat")  # type: ignore[return-value]

    def _make_num(self, node: ir.SOp) -> NumRep:
        vals = self.values(node)
        if not ValueSet(vals).numeric:
            raise self._fail("needs a number here but its values are not all numbers", node)
        match node:
            case ir.Indices():
                if "num" not in self.index_dirs:
                    self.index_dirs["num"] = self.blocks.add(
                        "indices:num", ("indices",), "indices as a number"
                    )
                return NumRep(Lin.unit(self.index_dirs["num"][0]), vals, 0)
            case ir.Full(value=v):
                return NumRep(Lin.const(float(v)), vals, 0)
            case ir.Tokens():
                c = self.cat(node)
                return NumRep(lin_sum(r.scale(float(v)) for v, r in zip(c.values, c.rows)), vals, 0)
            case ir.Map():
                kind = self.map_kind(node)
                if kind == "cat1":
                    return self._cat1_num(node)
                if kind == "linear":
                    return self._linear(node)
            case ir.Aggregate() if not self.agg_is_categorical(node):
                return self._aggregate(node)  # type: ignore[return-value]
            case ir.Aggregate():
                c = self.cat(node)
                scale = max(abs(float(v)) for v in c.values) * len(c.values) or 1.0
                return NumRep(
                    lin_sum(r.scale(float(v)) for v, r in zip(c.values, c.rows)),
                    vals,
                    c.stage,
                    tuple((h, scale) for h in c.sources),
                )
        return self._mlp_output(node, "num")  # type: ignore[return-value]

    # ---- elementwise

    def _cat1_parts(self, node: ir.Map):
        nodes = [a for a in node.args if isinstance(a, ir.Node)]
        src = nodes[0] if len(nodes) == 1 and self.cheap_cat(nodes[0]) else self._chain_leaf(node)
        assert src is not None
        c = self.cat(src)
        fn = _fused_fn(node, [src])
        outs = []
        for v, row in zip(c.values, c.rows):
            y = fn((v,))
            if y is not None:
                outs.append((y, row))
        return c, outs

    def _cat1_cat(self, node: ir.Map) -> CatRep:
        c, outs = self._cat1_parts(node)
        vals = self.values(node)
        find = lookup_value(vals)
        rows: list[list[Lin]] = [[] for _ in vals]
        for out, r in outs:
            i = find(out)
            if i is not None:
                rows[i].append(r)
        return CatRep(vals, tuple(lin_sum(rs) for rs in rows), c.stage, c.sources)

    def _cat1_num(self, node: ir.Map) -> NumRep:
        c, outs = self._cat1_parts(node)
        scale = max((abs(float(out)) for out, _ in outs), default=1.0) or 1.0
        return NumRep(
            lin_sum(r.scale(float(out)) for out, r in outs),
            self.values(node),
            c.stage,
            tuple((h, scale * len(outs)) for h in c.sources),
        )

    def _linear(self, node: ir.Map) -> NumRep:
        reps = [self.num(a) for a in node.args]
        lins = [r.lin for r in reps]
        stage = max(r.stage for r in reps)
        match node.op:
            case "add":
                lin = lins[0] + lins[1]
            case "sub":
                lin = lins[0] - lins[1]
            case "neg":
                lin = lins[0].scale(-1.0)
            case "pos":
                lin = lins[0]
            case "mul":
                if isinstance(node.args[0], ir.Const):
                    lin = lins[1].scale(float(node.args[0].value))
                else:
                    lin = lins[0].scale(float(node.args[1].value))  # type: ignore[union-attr]
            case "div":
                lin = lins[0].scale(1.0 / float(node.args[1].value))  # type: ignore[union-attr]
        coefs = {"neg": [-1.0], "sub": [1.0, -1.0]}.get(node.op, [1.0] * len(reps))
        if node.op in ("mul", "div"):
            coefs = [abs(lins_scale(lin, r.lin)) for r in reps]
        sources = tuple((h, c * k) for r, k in zip(reps, coefs) for h, c in r.sources)
        return NumRep(lin, self.values(node), stage, sources)

    def _fused_inputs(self, node: ir.Map) -> tuple[list[ir.Node], list[Rep]]:
        """The inputs of the MLP computing ``node``: expand through args that are MLPs too."""
        leaves: list[ir.Node] = []

        def expand(n: ir.Node, budget_ok) -> None:
            for a in n.children() if isinstance(n, ir.Map) else ():
                if isinstance(a, ir.Map) and budget_ok(a):
                    expand(a, budget_ok)
                elif all(a is not x for x in leaves):
                    leaves.append(a)

        def small(a: ir.Map) -> bool:
            return self._domain(a) <= MAX_MLP_DOMAIN // 16

        def hides_mlp(a: ir.Map) -> bool:
            # a cheap map (``not pair_ok``) over an MLP's output: reading through it
            # lets this MLP start from the inner MLP's inputs, one layer earlier.
            return self.map_kind(a) == "mlp" or any(
                isinstance(c, ir.Map) and hides_mlp(c) for c in a.children()
            )

        for rule in (
            lambda a: small(a) and hides_mlp(a),
            lambda a: small(a) and self.map_kind(a) == "mlp",
            lambda a: False,
        ):
            leaves = []
            expand(node, rule)
            if self._domain_of(leaves) > MAX_MLP_DOMAIN:
                continue
            nums = [self.best(x) for x in leaves if not self._cheap_for_mlp(x)]
            if len(nums) > 1 and _projection_ratio(nums) >= MAX_PROJECTION_RATIO:  # type: ignore[arg-type]
                continue
            break
        return leaves, [self.best(x) for x in leaves]

    def _cheap_for_mlp(self, node: ir.Node) -> bool:
        return isinstance(node, ir.Const) or self.cheap_cat(node)

    def _domain(self, node: ir.Map) -> int:
        return self._domain_of([a for a in node.args if isinstance(a, ir.Node)])

    def _domain_of(self, nodes: list[ir.Node]) -> int:
        return math.prod(len(self.values(n)) for n in nodes) if nodes else 1

    def _mlp_output(self, node: ir.SOp, kind: str) -> Rep:
        """The ``kind`` representation of ``node`` written by the MLP(s) that compute it."""
        jobs = self._jobs_for(node, kind)
        stage = max(2 * job.layer + 2 for job in jobs)
        vals = self.values(node)
        name = self._name(node)
        if kind == "cat":
            dirs = self.blocks.add(
                name, tuple(f"{name}={v!r}" for v in vals), f"one-hot of {_label(node, self.names)}"
            )
            for job in jobs:
                job.cat_targets.append((vals, dirs))
            return CatRep(vals, tuple(Lin.unit(d) for d in dirs), stage)
        (d,) = self.blocks.add(name + ":num", (name,), f"{_label(node, self.names)} as a number")
        for job in jobs:
            job.num_targets.append(d)
        return NumRep(Lin.unit(d), vals, stage)

    def _jobs_for(self, node: ir.SOp, kind: str) -> list[MLPJob]:
        """The MLP jobs that write ``node``'s ``kind`` representation (made on first use).

        Most nodes have one job that writes both representations.  A selector_width
        split over several heads writes its number as a sum of one job per head, and
        its categories jointly when that table is small, else from the number."""
        key = (node.id, "any")
        if isinstance(node, ir.SelectorWidth) and len(self._width_xs(node)) > 1:
            xs = self._width_xs(node)
            if kind == "num":
                key = (node.id, "num")
                if key not in self._jobs:
                    self._jobs[key] = [
                        self._job(
                            node,
                            [x],
                            _width_fn(self.max_len),
                            f"width term of {_label(node, self.names)}",
                        )
                        for x in xs
                    ]
                return self._jobs[key]
            if (
                math.prod(len(x.values) for x in xs) <= MAX_MLP_DOMAIN
                and _projection_ratio(xs) < MAX_PROJECTION_RATIO
            ):
                key = (node.id, "cat")
                if key not in self._jobs:
                    self._jobs[key] = [
                        self._job(node, xs, _width_fn(self.max_len), _label(node, self.names))
                    ]
                return self._jobs[key]
            return self._conversion(node)
        if key not in self._jobs:
            match node:
                case ir.Map() if self.map_kind(node) == "mlp":
                    leaves, reps = self._fused_inputs(node)
                    fn = _fused_fn(node, leaves)
                    early = self._fused_through_widths(node)
                    if early is not None and max(r.stage for r in early[0]) < max(
                        r.stage for r in reps
                    ):
                        reps, fn = early
                    self._jobs[key] = [self._job(node, reps, fn, _label(node, self.names))]
                case ir.Length() | ir.SelectorWidth():
                    xs = self._width_xs(node)
                    self._jobs[key] = [
                        self._job(node, xs, _width_fn(self.max_len), _label(node, self.names))
                    ]
                case _:
                    return self._conversion(node)
        return self._jobs[key]

    def _conversion(self, node: ir.SOp) -> list[MLPJob]:
        """An MLP turning the number ``node`` into its categories.

        When ``node`` is elementwise arithmetic over widths/lengths (``length - indices
        - 1``), the MLP may read the widths' attention outputs directly instead of
        waiting for their own MLP: one layer earlier, if the table stays small."""
        key = (node.id, "conv")
        if key not in self._jobs:
            label = f"categories of {_label(node, self.names)}"
            fused = self._fused_through_widths(node) if isinstance(node, ir.Map) else None
            num = self.num(node)
            if fused is not None and max(r.stage for r in fused[0]) < num.stage:
                self._jobs[key] = [self._job(node, fused[0], fused[1], label)]
            else:
                self._jobs[key] = [self._job(node, [num], _identity, label)]
        return self._jobs[key]

    def _fused_through_widths(self, node: ir.Map):
        """(inputs, fn) computing ``node`` from its Map ancestors' leaves, reading each
        single-head width or length leaf as its head's 1/(w+1); None if too large."""
        leaves: list[ir.Node] = []

        def expand(n: ir.Node) -> None:
            for a in n.children():
                if isinstance(a, ir.Map):
                    expand(a)
                elif all(a is not x for x in leaves):
                    leaves.append(a)

        expand(node)
        reps: list[Rep] = []
        decode: list[bool] = []
        for leaf in leaves:
            if isinstance(leaf, (ir.Length, ir.SelectorWidth)) and len(self._width_xs(leaf)) == 1:
                reps.append(self._width_xs(leaf)[0])
                decode.append(True)
            else:
                reps.append(self.best(leaf))
                decode.append(False)
        nums = [r for r in reps if isinstance(r, NumRep)]
        if math.prod(len(r.values) for r in reps) > MAX_FUSED_CONVERSION:
            return None
        if len(nums) > 1 and _projection_ratio(nums) >= MAX_PROJECTION_RATIO:
            return None
        base = _fused_fn(node, leaves)

        def fn(args: tuple[Atom, ...]) -> Atom | None:
            return base(tuple(round(1.0 / float(a)) - 1 if d else a for a, d in zip(args, decode)))

        return reps, fn

    def _job(self, node: ir.SOp, reps: list[Rep], fn, label: str) -> MLPJob:
        """A new MLP job in the earliest layer its inputs allow; tightens their precision."""
        size = math.prod(len(r.values) for r in reps)
        if size > MAX_MLP_DOMAIN:
            self._fail(
                f"this elementwise operation needs a table over {size} input combinations "
                f"at max length {self.max_len} (limit {MAX_MLP_DOMAIN})",
                node,
            )
        nums = [r for r in reps if isinstance(r, NumRep)]
        lams: list[float] = []
        if nums:
            from .emit.mlp import projection

            lams, vals = projection(nums)
            u_gap = min(_min_gap(list(v)) * lam for v, lam in zip(vals[:1], lams[:1]))
        tolerances = []
        if nums:
            for r, lam in zip(nums, lams):
                tol = u_gap / (8.0 * lam * len(nums))
                r.require(tol)
                if len(nums) == 1:  # rounding is relative: what binds is the worst neighbour pair
                    tolerances.append(_binding_pair(r.values, 8.0))
                else:
                    tolerances.append((max(abs(float(v)) for v in r.values), tol))
        stage = max((r.stage for r in reps), default=0)
        job = MLPJob(max(0, math.ceil((stage - 1) / 2)), label, self.span_of(node), reps, fn)
        job.tolerances = tolerances
        self.mlps.append(job)
        return job

    # ---- attention

    def _selector_heads(self, sel: ir.Selector, uniform: bool, owner: ir.Node):
        """(pairs, list of Scores) for the selector: one Scores per head needed."""
        self._check_tables(sel, owner)
        pairs = build_pairs(sel, self.values)
        table = truth_table(sel, pairs)
        scores = solve_scores(pairs, table, uniform)
        if scores is not None:
            return pairs, [scores]
        key_ops, query_ops = distinct_operands(sel)
        free = len(key_ops) <= 1 and len(query_ops) <= 1
        if not free and isinstance(owner, ir.SelectorWidth):
            # counting can sum one head per disjoint term: no joint MLP, no extra layer
            return pairs, [term_scores(pairs, t) for t in disjoint_terms(pairs, table)]
        # One table over the joint values: constants folded into the atoms, and where
        # a side compares several s-ops, an MLP first writes the class of their joint
        # value (joint values the selector treats alike share a class).
        sizes = [math.prod(len(self.values(o)) for o in ops) for ops in (key_ops, query_ops)]
        if sizes[0] * sizes[1] > MAX_SELECT_TABLE:
            raise self._fail(
                "no single attention head can score this selector over its separate "
                f"s-ops, and its joint table over {sizes[0]} key and {sizes[1]} query "
                f"value combinations at max length {self.max_len} is too large "
                f"(limit {MAX_SELECT_TABLE})",
                owner,
            )
        jt = joint_table(sel, key_ops, query_ops, self.values)
        keys = self._joint_of(key_ops, jt.key_cols, jt.key_class, owner)
        queries = self._joint_of(query_ops, jt.query_cols, jt.query_class, owner)
        pair = joint_pair(sel, keys, queries, jt, self.values)
        return [pair], [joint_scores(pair)]

    def _check_tables(self, sel: ir.Selector, owner: ir.Node) -> None:
        """Refuse selects whose (key, query) value table is too large to build."""
        for atom in atoms(sel):
            nk, nq = len(self.values(atom.keys)), len(self.values(atom.queries))
            if nk * nq > MAX_SELECT_TABLE:
                raise self._fail(
                    f"this select compares s-ops with {nk} and {nq} possible values at "
                    f"max length {self.max_len}: a table of {nk * nq} entries "
                    f"(limit {MAX_SELECT_TABLE})",
                    atom if atom.span is not None else owner,
                )

    def _joint_of(self, ops: list[ir.SOp], cols, classes, owner: ir.Node) -> ir.Operand:
        """One operand standing for ``ops``: a constant, the s-op itself, or an s-op
        (an MLP) whose values are the classes of their joint value."""
        if not ops:
            return ir.Const(True)
        if len(ops) == 1:
            return ops[0]
        data = (tuple(lookup_value(c) for c in cols), tuple(len(c) for c in cols), classes)
        node = ir.Map(op="joint", args=tuple(ops), data=data, span=self.span_of(owner))
        self.sets[node.id] = ValueSet(tuple(range(max(classes) + 1)))
        self.names.setdefault(node.id, "joint(" + ", ".join(self._short(o) for o in ops) + ")")
        return node

    def _short(self, node: ir.Node) -> str:
        name = self.names.get(node.id)
        if name:
            return name
        return node.span.text.strip() if node.span is not None else type(node).__name__.lower()

    def _qk_terms(
        self, pairs: list[Pair], scores: Scores
    ) -> tuple[list[tuple[Lin, Lin, float]], int]:
        """Bilinear score terms for one head, and the stage its operands exist at."""
        terms: list[tuple[Lin, Lin, float]] = []
        stage = 0
        for p, w in zip(pairs, scores.weights):
            if not any(w):
                continue
            kc, qc = self.cat(p.keys), self.cat(p.queries)
            stage = max(stage, kc.stage, qc.stage)
            krows = [key_side(kc.row(v)) for v in p.key_values]
            qrows = [qc.row(v) for v in p.query_values]
            nk, nq = len(krows), len(qrows)
            tab = [[w[p.region_of[(ki, qi)]] for ki in range(nk)] for qi in range(nq)]
            if nq <= nk:
                for qi in range(nq):
                    klin = lin_sum(krows[ki].scale(tab[qi][ki]) for ki in range(nk) if tab[qi][ki])
                    if klin.terms:
                        terms.append((qrows[qi], klin, 1.0))
            else:
                for ki in range(nk):
                    qlin = lin_sum(qrows[qi].scale(tab[qi][ki]) for qi in range(nq) if tab[qi][ki])
                    if qlin.terms:
                        terms.append((qlin, krows[ki], 1.0))
        return terms, stage

    def _head(self, kind, label, span, pairs, scores, bos_level, values, extra_stage, leak) -> Head:
        terms, stage = self._qk_terms(pairs, scores)
        stage = max(stage, extra_stage)
        weights_max = sum(max(w) for w in scores.weights) if scores.weights else 0
        terms.append((Lin.unit(ONE), Lin.unit(BOS), bos_level))
        # The BOS query attends to BOS alone, so the BOS position's residual stays known.
        terms.append((Lin.unit(BOS), Lin.unit(BOS), float(weights_max + 2)))
        layer = math.ceil(stage / 2)
        head = Head(
            layer,
            label,
            span,
            terms,
            values,
            gap=0.5 if bos_level % 1 else 1.0,
            leak=leak,
            kind=kind,
            magnitude=2.0 * weights_max + abs(bos_level) + 2.0,
        )
        self.heads.append(head)
        return head

    def _aggregate(self, node: ir.Aggregate) -> Rep:
        label = _label(node, self.names)
        categorical = self.agg_is_categorical(node)
        numeric_eq = self._numeric_eq(node.selector)
        pairs: list[Pair] = []
        all_scores: list[Scores] = []
        if numeric_eq is None:
            try:
                # a mean needs equal weights on the selected keys, unless they all hold
                # one value (``has_focus``: the constant 1): then any split is exact
                single = len(self.values(node.values)) == 1
                pairs, all_scores = self._selector_heads(
                    node.selector, uniform=not categorical and not single, owner=node
                )
            except PlanError:
                return CatRep((), (), 0) if categorical else NumRep(Lin(), (), 0)
        else:
            all_scores = [Scores((), 0, True)]
        if len(all_scores) != 1:
            raise self._fail(
                "a numerical aggregate (a mean) needs a selector that one attention head can "
                "select uniformly; this 'or' of selectors over different s-ops is not one",
                node,
            )
        (scores,) = all_scores
        vals = self.values(node)
        name = self._name(node)
        if categorical:
            src = self.cat(node.values)
            dirs = self.blocks.add(
                name, tuple(f"{name}={v!r}" for v in vals), f"one-hot of {label}"
            )
            value_lins = []
            for v, d in zip(vals, dirs):
                try:
                    lin = key_side(src.row(v))
                except ValueError:
                    lin = Lin()
                if vkey(v) == vkey(node.default):
                    lin = lin + Lin.unit(BOS)
                value_lins.append((d, lin))
            rep: Rep = CatRep(vals, tuple(Lin.unit(d) for d in dirs), 0)
            leak = 1e-3
        else:
            src = self.num(node.values)
            (d,) = self.blocks.add(name, (name,), f"{label} (a mean)")
            value_lins = [(d, key_side(src.lin) + Lin.unit(BOS, float(node.default)))]
            rep = NumRep(Lin.unit(d), vals, 0)
            nums = [float(v) for v in vals]
            span_v = max(abs(x) for x in nums) + abs(float(node.default)) + 1
            leak = _min_gap(nums) / (8 * span_v)
        if numeric_eq is not None:
            head = self._numeric_eq_head(numeric_eq, label, node.span, value_lins, src.stage, leak)
        else:
            head = self._head(
                "aggregate",
                label,
                self.span_of(node),
                pairs,
                scores,
                scores.level - 0.5,
                value_lins,
                src.stage,
                leak,
            )
        stage = 2 * head.layer + 1
        if isinstance(rep, CatRep):
            head.value_span = 2.0
            return CatRep(rep.values, rep.rows, stage, (head,))
        head.value_span = 2.0 * span_v
        head.averages.append(src)
        src.require(_min_gap(nums) / 8.0)  # the mean of numbers off by e is off by e
        return NumRep(rep.lin, rep.values, stage, ((head, 1.0),))

    # ---- numerical equality

    def _numeric_eq(self, sel: ir.Selector):
        """(keys, queries, key positional values, query positional values or None) when
        ``sel`` is ``select(keys, queries, ==)`` over numbers that is cheaper as a
        numerical head (see :meth:`_numeric_eq_head`); else None."""
        if not (isinstance(sel, ir.Select) and sel.cmp == "=="):
            return None
        k, q = sel.keys, sel.queries
        if not (isinstance(k, ir.Node) and isinstance(q, ir.Node)):
            return None
        kv, qv = self.values(k), self.values(q)
        if not (ValueSet(kv).numeric and ValueSet(qv).numeric):
            return None
        if max(len(kv), len(qv)) < NUMERIC_EQ_MIN_VALUES:
            return None
        kpos = self._positional_values(k)
        if kpos is None:
            return None
        qpos = self._positional_values(q)
        if qpos is None and not (
            kpos == tuple(float(i) for i in range(self.max_len)) and self._always_an_index(q)
        ):
            return None
        return k, q, kpos, qpos

    def _positional_values(self, node: ir.Node) -> tuple[float, ...] | None:
        """The s-op's value at index 0, 1, ... when it is a function of indices alone."""
        if isinstance(node, ir.Indices):
            return tuple(float(i) for i in range(self.max_len))
        if not (isinstance(node, ir.Map) and isinstance(self._chain_leaf(node), ir.Indices)):
            return None
        (leaf,) = [x for x in [self._chain_leaf(node)] if x is not None]
        fn = _fused_fn(node, [leaf])
        out = []
        for i in range(self.max_len):
            y = fn((i,))
            if not ir.is_number(y):
                return None
            out.append(float(y))  # type: ignore[arg-type]
        return tuple(out)

    def _always_an_index(self, node: ir.Node) -> bool:
        """Is ``node`` ``a*length + b*indices + c`` with a value in ``[0, length)`` at
        every index of every length?  (Then ``select(indices, node, ==)`` always
        selects exactly one key, as in ``length - indices - 1``.)"""
        form = affine_form(node)
        if form is None:
            return False
        a, b, c = form
        for n in range(1, self.max_len + 1):
            for i in (0, n - 1):
                v = a * n + b * i + c
                if not (float(v).is_integer() and 0 <= v <= n - 1):
                    return False
        return True

    def _positional_dir(self, name: str, values: tuple[float, ...]) -> Lin:
        if name not in self.positional:
            self.blocks.add(name, (name,), f"{name} (positional)")
            self.positional[name] = values
        return Lin.unit(name)

    def _numeric_eq_head(self, eq, label, span, values, value_stage, leak) -> Head:
        """One head for ``select(k, q, ==)`` over numbers, with k a function of indices.

        With ``k' = k - c`` and ``q' = q - c`` (``c`` centres the keys, to keep scores
        small), the score ``2 q' k' - k'^2 = q'^2 - (k' - q')^2`` is ``q'^2`` on keys equal
        to the query and at least ``gap`` (the smallest nonzero ``(k - q)^2``) lower on
        every other key.  ``k'`` and ``k'^2`` are positional-embedding directions.  The
        BOS key (where ``k'`` reads 0) scores ``q'^2 - gap/2`` when ``q'^2`` is positional
        too, so a query with no equal key attends BOS alone; when the query is provably
        always an index (``length - indices - 1``) BOS scores ``-gap``, never attended."""
        k, q, kpos, qpos = eq
        centre = (min(kpos) + max(kpos)) / 2.0
        kname, qname = self._name(k), self._name(q)
        kc = tuple(v - centre for v in kpos)
        k1 = self._positional_dir(f"{kname}:key-{centre:g}", kc)
        k2 = self._positional_dir(f"{kname}:(key-{centre:g})^2", tuple(v * v for v in kc))
        if qpos is not None:  # a function of indices: embedded, like the key side
            q1 = self._positional_dir(f"{qname}:query-{centre:g}", tuple(v - centre for v in qpos))
            qrep = NumRep(q1, self.values(q), 0)
        else:
            qrep = self.num(q)
            q1 = qrep.lin - Lin.const(centre)
        kvals = sorted({float(v) for v in self.values(k)})
        qvals = sorted({float(v) for v in self.values(q)})
        gap = _nearest_other_sq(kvals, qvals)
        qmax = max(abs(v - centre) for v in qvals)
        kmax = max(abs(v) for v in kc)
        terms = [(q1.scale(2.0), k1, 1.0), (Lin.unit(ONE), k2, -1.0)]
        if qpos is not None:
            qc = tuple(v - centre for v in qpos)
            q2 = self._positional_dir(f"{qname}:(query-{centre:g})^2", tuple(v * v for v in qc))
            terms += [(q2, Lin.unit(BOS), 1.0), (Lin.unit(ONE), Lin.unit(BOS), -gap / 2)]
            head_gap = gap / 2
        else:
            terms.append((Lin.unit(ONE), Lin.unit(BOS), -gap))
            head_gap = gap
        # the BOS query (residual one + bos) must attend BOS alone
        qb = _eval_at_bos(q1)
        terms.append((Lin.unit(BOS), Lin.unit(BOS), qb * qb + 2 * abs(qb) * kmax + gap + 2.0))
        # a query not yet exact moves its score by 2 |dq| |k'|: keep that under gap/8
        qrep.require(head_gap / (16.0 * max(kmax, 1.0)))
        magnitude = 2 * qmax * kmax + kmax * kmax + qmax * qmax + gap
        head = Head(
            math.ceil(max(qrep.stage, value_stage) / 2),
            label,
            span,
            terms,
            values,
            gap=head_gap,
            leak=leak,
            kind="aggregate",
            magnitude=magnitude,
        )
        self.heads.append(head)
        return head

    def _width_xs(self, node: ir.SOp) -> list[NumRep]:
        """Heads giving 1/(w+1), one per disjoint term of the selector (memoised)."""
        if node.id in self._x_of:
            return self._x_of[node.id]
        label = _label(node, self.names)
        name = self._name(node)
        n1 = self.max_len + 1
        if isinstance(node, ir.Length):
            heads = [([], Scores((), 0, True))]
        else:
            pairs, all_scores = self._selector_heads(node.selector, uniform=True, owner=node)
            heads = [(pairs, sc) for sc in all_scores]
        xs: list[NumRep] = []
        for t, (pairs, scores) in enumerate(heads):
            (d,) = self.blocks.add(f"{name}:x{t}", (f"{name}:x{t}",), f"1/(width+1) for {label}")
            head = self._head(
                "width",
                label,
                self.span_of(node),
                pairs,
                scores,
                float(scores.level),
                [(d, Lin.unit(BOS))],
                0,
                1.0 / (16.0 * n1 * n1),
            )
            xvals = tuple(1.0 / (w + 1) for w in range(self.max_len + 1))
            xs.append(NumRep(Lin.unit(d), xvals, 2 * head.layer + 1, ((head, 1.0),)))
        self._x_of[node.id] = xs
        return xs


def _nearest_other_sq(keys: list[float], queries: list[float]) -> float:
    """The smallest ``(k - q)^2`` over keys and queries with ``k != q``."""
    import bisect

    best = math.inf
    for q in queries:
        i = bisect.bisect_left(keys, q)
        for j in (i - 1, i, i + 1):
            if 0 <= j < len(keys) and keys[j] != q:
                best = min(best, (keys[j] - q) ** 2)
    return best if best < math.inf else 1.0


def _eval_at_bos(lin: Lin) -> float:
    """A read-out's value at the BOS position at the start of a layer (one + bos)."""
    d = lin.as_dict()
    return d.get(ONE, 0.0) + d.get(BOS, 0.0)


def _binding_pair(values: tuple[Atom, ...], divisor: float) -> tuple[float, float]:
    """(magnitude, tolerance) of the neighbouring values hardest to keep apart under
    relative rounding: tolerance is their gap / ``divisor``."""
    nums = sorted({float(v) for v in values})
    if len(nums) < 2:
        return (abs(nums[0]) if nums else 0.0, math.inf)
    pairs = [(max(abs(a), abs(b)), (b - a) / divisor) for a, b in zip(nums, nums[1:])]
    return max(pairs, key=lambda p: p[0] / p[1])


def _projection_ratio(nums: list[NumRep]) -> float:
    """Range over smallest gap of the joint projection of several numbers (precision proxy)."""
    from .emit.mlp import projection

    lams, vals = projection(nums)
    span = sum(lam * (v[-1] - v[0]) for lam, v in zip(lams, vals))
    return span / _min_gap(list(vals[0]))


def lins_scale(combined: Lin, part: Lin) -> float:
    """The factor by which ``part`` appears in ``combined`` (for scaled copies)."""
    pd, cd = part.as_dict(), combined.as_dict()
    for k, v in pd.items():
        if v and k in cd:
            return cd[k] / v
    return 1.0


def _identity(args: tuple[Atom, ...]) -> Atom:
    return args[0]


def _width_fn(max_len: int):
    def fn(args: tuple[Atom, ...]) -> Atom | None:
        total = sum(round(1.0 / float(x)) - 1 for x in args)
        return total if total <= max_len else None

    return fn


def _fused_fn(node: ir.Map, leaves: list[ir.Node]):
    """Evaluate the Map DAG above ``leaves`` on one combination of leaf values."""
    index = {leaf.id: i for i, leaf in enumerate(leaves)}

    def value(n: ir.Operand, args: tuple[Atom, ...]) -> Atom:
        if isinstance(n, ir.Const):
            return n.value
        if n.id in index:
            return args[index[n.id]]
        assert isinstance(n, ir.Map)
        return ir.apply_map(n, tuple(value(a, args) for a in n.args))

    def fn(args: tuple[Atom, ...]) -> Atom | None:
        try:
            return value(node, args)
        except (TypeError, ValueError, ZeroDivisionError, KeyError, IndexError, OverflowError):
            return None

    return fn


def _min_gap(nums: list[float]) -> float:
    s = sorted(set(nums))
    gaps = [b - a for a, b in zip(s, s[1:])]
    return min(gaps) if gaps else 1.0


def check_mixed(values: tuple[Atom, ...]) -> bool:
    return len({ir.type_name(v) for v in values} - {"int", "float"}) > 0 and len(values) > 1


__all__ = [
    "Planner",
    "Head",
    "MLPJob",
    "CatRep",
    "NumRep",
    "PlanError",
    "sort_values",
    "RaspTypeError",
]
