"""The planner's working state and the questions every planning step asks of it.

:class:`PlanState` holds what planning has decided so far (residual blocks, heads, MLP
jobs, accuracy requirements, recorded failures) and answers the questions each step
asks: an s-op's values, its name, whether its categorical form is free.  How an s-op
is made is decided by :class:`~rasp_compiler.compiler.plan.builder.Planner`, which
extends this class; the steps in ``attention`` and ``elementwise`` are functions of a
``PlanState``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from ...dtypes import UNIT_ROUNDOFF
from ...errors import RaspError, Span
from ...language import ir
from ...language.ir import Atom
from ..numbers import projection_ratio
from ..positions import is_functional
from ..residual import BOS, ONE, Block, Lin
from ..value_sets import ValueSet
from .types import (
    CatRep,
    CatTarget,
    GateForms,
    Head,
    NumRep,
    PlanError,
    Rep,
    Requirement,
    TableFn,
)

#: A numerical aggregate over a functional selector is read as categories while its
#: values are at most this many.
MAX_CAT_AGGREGATE_VALUES = 64

LINEAR_OPS = frozenset({"add", "sub", "neg", "pos", "mul", "div"})


class MapKind(Enum):
    """How an elementwise operation is computed."""

    CAT1 = "a function of one categorical s-op: linear in its one-hot, no layer"
    LINEAR = "a linear combination of numbers: no layer"
    MLP = "a table in an MLP"


class JobKind(Enum):
    """Which representation(s) of an s-op a set of MLP jobs writes."""

    ANY = "both, from one job"
    NUM = "the number, as a sum of one job per width head"
    CAT = "the categories, from one job over every width head"
    CONV = "the categories, converted from the number"


class NodeFailed(Exception):
    """Planning of an s-op failed; the reason is already in ``PlanState.problems``.
    Raised by :meth:`PlanState.fail`, caught by the memo of the s-op being made."""


@dataclass
class JobDraft:
    """An MLP job while planning: its targets grow as representations are asked for."""

    id: int
    layer: int
    label: str
    span: Span | None
    inputs: tuple[Rep, ...]
    fn: TableFn
    tolerances: tuple[tuple[int, float, float], ...]
    #: ``fn`` with combinations known never to occur left out (None), if any are known
    narrow_fn: TableFn | None = None
    #: the s-op whose representation the job writes
    node_id: int = -1
    #: numerical inputs read only at their largest (True) or smallest value (``MLPJob``)
    gates: tuple[tuple[int, bool], ...] = ()
    #: the table's ``or`` form over its gates, where it reads more than ``MAX_GATES``
    forms: GateForms | None = None
    cat_targets: list[CatTarget] = field(default_factory=list)
    num_targets: list[str] = field(default_factory=list)


class PlanState:
    """See the module docstring.  Every list here only grows while planning."""

    def __init__(
        self,
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
    ):
        self.sets = dict(sets)  # joint s-ops made while planning are added here
        self.max_len = max_len
        self.names = dict(names)
        #: node id -> the span of an operation that reads it, for nodes without their own
        #: (``length`` from the library): errors about them point at where they are used
        self.used_at = used_at
        #: joint tables over several numbers are used only while their range/gap stays
        #: below this (see ``plan.elementwise``; beyond it float32 cannot tell
        #: neighbouring combinations apart reliably)
        self.max_projection_ratio = max_projection_ratio
        #: s-ops (by id) whose tables may not read several numbers at once at all: the
        #: pipeline adds those whose joint table's rounding would tilt a counting head
        self.no_joint = no_joint
        #: may a head attend within a static mask (``key index < query index``, ...)
        #: instead of scoring index comparisons from a one-hot of the indices?
        self.head_masks = head_masks
        #: counts (node ids) never compared with the indices numerically (their
        #: tables' rounding is too large for it, see ``compiler.count_precision``)
        self.plain_counts = plain_counts
        #: one-hot rows tables are shown to compute exactly in this dtype (a narrow one:
        #: ``compiler.exact_tables``), which heads may read as they read embeddings
        self.proven = proven
        #: numbers of whole values tables are shown to compute exactly in this dtype
        self.proven_numbers = proven_numbers
        #: the unit round-off of the dtype planned for (a construction whose scores it
        #: cannot keep apart gives way to another)
        self.eps = UNIT_ROUNDOFF[dtype]
        self.blocks: list[Block] = []
        self.heads: list[Head] = []
        self.jobs: list[JobDraft] = []
        self.requirements: list[Requirement] = []
        self.problems: list[RaspError] = []
        #: extra positional-embedding directions: name -> value at index 0, 1, ...
        self.positional: dict[str, tuple[float, ...]] = {}
        #: directions a head writes by copying an integer from one key (the length):
        #: exact integers once the head's leak is small enough (see :meth:`integral`)
        self.copied_integers: set[str] = set()
        #: tokens_<conv> -> its one-hot (values, directions)
        self.token_onehots: dict[str, tuple[tuple[Atom, ...], tuple[str, ...]]] = {}
        #: selector_width / length node id -> its heads' 1/(width+1) numbers
        self.width_heads: dict[int, list[NumRep]] = {}
        #: (count node id, role) -> a function of it an MLP writes (a centred square,
        #: digits), for numerical equality heads
        self.features: dict[tuple[int, str], NumRep] = {}
        #: (node id, kind) -> the MLP jobs writing that representation
        self.job_memo: dict[tuple[int, JobKind], list[JobDraft]] = {}
        self._kind: dict[int, MapKind] = {}
        #: representations made so far, and (node id, categorical?) whose making failed
        self._cat: dict[int, CatRep] = {}
        self._class_blocks: dict[int, int] = {}
        self._cat_groups: dict[tuple[int, tuple[tuple[Atom, ...], ...]], CatRep] = {}
        self._num: dict[int, NumRep] = {}
        self._failed: set[tuple[int, bool]] = set()
        self._leaf: dict[int, ir.SOp | None] = {}

    def joint_ok(self, node: ir.SOp, value_sets: list[tuple[Atom, ...]]) -> bool:
        """May a table computing ``node`` read these numbers at once (one projection)?"""
        if len(value_sets) < 2:
            return True
        if node.id in self.no_joint:
            return False
        return projection_ratio(value_sets) < self.max_projection_ratio

    # ------------------------------------------------------------ recording

    def add_block(
        self, name: str, dirs: tuple[str, ...], description: str, one_hot: bool = False
    ) -> tuple[str, ...]:
        self.blocks.append(Block(name, dirs, description, one_hot))
        return dirs

    def next_class_block(self, node: ir.SOp) -> int:
        """A fresh number for a block of ``node``'s value classes."""
        self._class_blocks[node.id] = self._class_blocks.get(node.id, -1) + 1
        return self._class_blocks[node.id]

    def add_head(self, head: Head) -> Head:
        assert head.id == len(self.heads)
        self.heads.append(head)
        return head

    def next_head_id(self) -> int:
        return len(self.heads)

    def require(self, rep: Rep, tol: float) -> None:
        """A consumer needs ``rep`` to within ``tol`` (settled when the plan is finished)."""
        self.requirements.append(Requirement(rep, tol))

    def fail(self, msg: str, node: ir.Node) -> NodeFailed:
        """Record why ``node`` cannot be compiled; the returned exception is raised."""
        self.problems.append(PlanError(msg, self.span_of(node)))
        return NodeFailed()

    def integral(self, lin: Lin) -> bool:
        """Is ``lin`` an integer combination of directions that hold integers at every
        position: the constant, BOS, positional entries that are all integers, and
        integer copies (exact once their heads' leaks are held small, see
        ``plan.numeric_eq``)?"""
        for name, c in lin.as_dict().items():
            if not float(c).is_integer():
                return False
            if name in (ONE, BOS) or name in self.copied_integers:
                continue
            values = self.positional.get(name)
            if values is None or not all(float(v).is_integer() for v in values):
                return False
        return True

    def held_exactly(self, name: str) -> bool:
        """Does the residual hold direction ``name`` exactly in every dtype, with integer
        values: the constant, BOS, a token's one-hot, a positional entry of integers?"""
        if name in (ONE, BOS) or name in self.proven or name in self.proven_numbers:
            return True
        if any(name in dirs for _, dirs in self.token_onehots.values()):
            return True
        values = self.positional.get(name)
        return values is not None and all(float(v).is_integer() for v in values)

    def zero_one(self, name: str) -> bool:
        """Does direction ``name`` hold only 0 or 1, exactly: the constant, BOS, a token's
        one-hot, a positional entry of 0s and 1s?"""
        if name in (ONE, BOS) or name in self.proven:
            return True
        if any(name in d for _, d in self.token_onehots.values()):
            return True
        values = self.positional.get(name)
        return values is not None and set(values) <= {0.0, 1.0}

    def positional_dir(self, name: str, values: tuple[float, ...]) -> Lin:
        if name not in self.positional:
            self.add_block(name, (name,), f"{name} (positional)")
            self.positional[name] = values
        return Lin.unit(name)

    # ------------------------------------------------------------ naming

    def span_of(self, node: ir.Node) -> Span | None:
        return node.span if node.span is not None else self.used_at.get(node.id)

    def name(self, node: ir.Node) -> str:
        """The s-op's residual block name: the user's name for it (or its kind) and id."""
        base = self.names.get(node.id)
        return f"{base}#{node.id}" if base else f"{type(node).__name__.lower()}#{node.id}"

    def label(self, node: ir.Node) -> str:
        """What a head or MLP implements, for ``inspect``: ``name = source text``."""
        name = self.names.get(node.id)
        text = node.span.text.strip() if node.span is not None else type(node).__name__
        if name and name != text:
            return f"{name} = {text}"
        return text

    def short(self, node: ir.Node) -> str:
        name = self.names.get(node.id)
        if name:
            return name
        return node.span.text.strip() if node.span is not None else type(node).__name__.lower()

    # ------------------------------------------------------------ values

    def values(self, node: ir.Operand) -> tuple[Atom, ...]:
        if isinstance(node, ir.Const):
            return (node.value,)
        return self.sets[node.id].values

    def _values_or_none(self, node: ir.SOp) -> tuple[Atom, ...] | None:
        vs = self.sets.get(node.id)
        return None if vs is None else vs.values

    def domain_of(self, nodes: list[ir.SOp]) -> int:
        return math.prod(len(self.values(n)) for n in nodes) if nodes else 1

    # ------------------------------------------------------------ what is cheap

    def functional(self, selector: ir.Selector) -> bool:
        """Does every query provably select at most one key (``positions.is_functional``)?"""
        return is_functional(selector, self._values_or_none)

    def agg_is_categorical(self, node: ir.Aggregate) -> bool:
        vs = ValueSet(self.values(node.values))
        return not vs.numeric or (
            is_functional(node.selector, self._values_or_none)
            and len(vs) <= MAX_CAT_AGGREGATE_VALUES
        )

    def map_kind(self, node: ir.Map) -> MapKind:
        if node.id in self._kind:
            return self._kind[node.id]
        nodes = [a for a in node.args if isinstance(a, ir.SOp)]
        leaf = self.chain_leaf(node)
        if len(nodes) == 1 and self.cheap_cat(nodes[0]):
            kind = MapKind.CAT1
        elif node.op in LINEAR_OPS and self._linear_ok(node) and leaf is None:
            kind = MapKind.LINEAR
        elif leaf is not None and self.cheap_cat(leaf):
            # a chain of elementwise operations over one categorical s-op
            # (``indicator(tokens == "(") - indicator(tokens == ")")``) is a
            # function of that s-op alone: linear in its one-hot.
            kind = MapKind.CAT1
        elif node.op in LINEAR_OPS and self._linear_ok(node):
            kind = MapKind.LINEAR
        else:
            kind = MapKind.MLP
        self._kind[node.id] = kind
        return kind

    def chain_leaf(self, node: ir.Map) -> ir.SOp | None:
        """The one non-elementwise s-op a chain of elementwise operations reads, if one.

        Found bottom-up, each Map once (its leaf is its operands' leaves), so a chain of
        n maps costs O(n), not O(n^2); iterative, so a deep chain needs no recursion."""
        if node.id in self._leaf:
            return self._leaf[node.id]
        stack: list[tuple[ir.Map, bool]] = [(node, False)]
        while stack:
            n, expanded = stack.pop()
            if n.id in self._leaf:
                continue
            kids = [a for a in n.children() if isinstance(a, ir.Map) and a.id not in self._leaf]
            if kids and not expanded:
                stack.append((n, True))
                stack.extend((k, False) for k in kids)
                continue
            leaves: dict[int, ir.SOp] = {}
            for a in n.children():
                assert isinstance(a, ir.SOp)
                leaf = self._leaf[a.id] if isinstance(a, ir.Map) else a
                if leaf is None:  # that operand reads several: so does n
                    leaves = {}
                    break
                leaves[leaf.id] = leaf
            self._leaf[n.id] = next(iter(leaves.values())) if len(leaves) == 1 else None
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

    def cheap_cat(self, node: ir.SOp) -> bool:
        """Can the s-op's categorical form be had at no extra depth?"""
        match node:
            case ir.Map():
                return self.map_kind(node) != MapKind.LINEAR
            case ir.Aggregate():
                return self.agg_is_categorical(node)
            case ir.Length():
                return False  # a head writes the number; its categories need an MLP
        return True

    # ------------------------------------------------------------ representations

    def cat(self, node: ir.Operand) -> CatRep:
        """The s-op's categorical representation (made on first use)."""
        raise NotImplementedError

    def num(self, node: ir.Operand) -> NumRep:
        """The s-op's numerical representation (made on first use)."""
        raise NotImplementedError

    def cat_groups(self, node: ir.Operand, groups: tuple[tuple[Atom, ...], ...]) -> CatRep:
        """A read-out per group of the s-op's values (made on first use)."""
        raise NotImplementedError

    def count_feature(self, node: ir.SOp, role: str, f: Callable[[int], float]) -> NumRep:
        """``f(w)`` of a count ``w``, written by an MLP (made on first use; ``role``
        names it)."""
        raise NotImplementedError

    def fused_stage(self, node: ir.Map) -> int | None:
        """The stage at which one MLP table could write ``node`` from the inputs along its
        critical path (``fusion.critical_path_inputs``), or None when no such table fits."""
        raise NotImplementedError

    def best(self, node: ir.Operand) -> Rep:
        """The representation an MLP should read: categorical if cheap, else numerical."""
        if isinstance(node, ir.Const) or self.cheap_cat(node):
            return self.cat(node)
        return self.num(node)


def _typed(a: Atom) -> tuple[type, object]:
    """A dict key telling apart atoms Python calls equal (1, 1.0, True; 0.0 and -0.0)."""
    if a.__class__ is float and a == 0.0:
        return (float, repr(a))
    return (a.__class__, a)


def map_dag(
    node: ir.Map, leaves: Sequence[ir.SOp]
) -> tuple[list[ir.Map], dict[int, tuple[int, ...]]]:
    """The Map operations above ``leaves`` that ``node`` reads, inputs first, and for
    each (by id) the indices of the leaves it reads."""
    index = {leaf.id: i for i, leaf in enumerate(leaves)}
    order: list[ir.Map] = []
    deps: dict[int, tuple[int, ...]] = {}

    def visit(n: ir.Operand) -> tuple[int, ...]:
        if isinstance(n, ir.Const):
            return ()
        if n.id in index:
            return (index[n.id],)
        if n.id not in deps:
            assert isinstance(n, ir.Map)
            deps[n.id] = tuple(sorted({i for a in n.args for i in visit(a)}))
            order.append(n)
        return deps[n.id]

    visit(node)
    return order, deps


def fused_fn(node: ir.Map, leaves: list[ir.SOp]) -> TableFn:
    """Evaluate the Map DAG above ``leaves`` on one combination of leaf values
    (None where the interpreter fails on that combination).

    Tables call this for every combination of their inputs' values, so each operation
    is evaluated once per combination of the leaves *it* reads (and remembered): a chain
    over one input of a three-input table is not recomputed for the other two."""
    order, deps = map_dag(node, leaves)
    failed = object()
    steps: list[
        tuple[ir.Map, tuple[int, ...], tuple[tuple[Atom | None, int | None], ...], dict]
    ] = [
        (
            n,
            deps[n.id],
            tuple((a.value, None) if isinstance(a, ir.Const) else (None, a.id) for a in n.args),
            {},
        )
        for n in order
    ]

    everything = tuple(range(len(leaves)))

    def fn(args: tuple[Atom, ...]) -> Atom | None:
        vals: dict[int, object] = {leaf.id: a for leaf, a in zip(leaves, args)}
        typed = [_typed(a) for a in args]
        for n, dep, operands, memo in steps:
            # an operation reading every leaf is evaluated once per call anyway: no memo
            key = None if dep == everything else tuple([typed[i] for i in dep])
            y = memo if key is None else memo.get(key, memo)
            if y is memo:
                ins = tuple(c if i is None else vals[i] for c, i in operands)
                if any(v is failed for v in ins):
                    y = failed
                else:
                    try:
                        y = ir.apply_map(n, ins)  # type: ignore[arg-type]
                    except ir.MAP_ERRORS:
                        y = failed
                if key is not None:
                    memo[key] = y
            vals[n.id] = y
        out = vals[node.id]
        return None if out is failed else out  # type: ignore[return-value]

    return fn
