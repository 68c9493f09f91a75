"""The plan as data: what every stage after planning reads.

A :class:`Plan` is frozen.  It names every residual block, the token and positional
embeddings, every attention head (with the leak it may have, already settled) and
every MLP (with its hidden units, already built), and the output's representation.
Certification, emission and assembly are pure functions of it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ...errors import RaspError, Span
from ...language.ir import Atom
from ..residual import BOS, ONE, Block, Lin
from ..value_sets import lookup_value


class PlanError(RaspError):
    """A construct that cannot be compiled exactly (collected into a CompileError)."""

    kind = "cannot compile"


class HeadKind(Enum):
    """What a head computes: a mean/copy of values, or ``1/(width+1)`` for a width."""

    AGGREGATE = "aggregate"
    WIDTH = "width"


#: a bilinear score term: (query read-out, key read-out, coefficient)
QK = tuple[Lin, Lin, float]


@dataclass(frozen=True)
class Head:
    """One attention head, described over named directions.

    score(query i, key j) = sum_t coef_t * q_t(x_i) * k_t(x_j)  (before sharpness beta);
    value: for each (out_dir, lin), the head writes ``mean over attended keys of lin``.
    """

    id: int
    layer: int
    label: str
    span: Span | None
    qk: tuple[QK, ...]
    values: tuple[tuple[str, Lin], ...]
    gap: float  # score gap that separates what must be attended from what must not
    leak: float  # largest total attention weight allowed on keys that must be ignored
    kind: HeadKind
    value_span: float = 1.0  # bound on |value - value'|: output error <= leak * value_span
    #: bound on |score| over all query/key pairs: float rounding of a score is about
    #: this times the dtype's epsilon (a few times over, see emit.attention.sharpness)
    magnitude: float = 0.0
    #: what this head copies or averages, when that is itself inexact (a mean's numbers,
    #: a categorical aggregate's one-hot read from other heads): its output is off by
    #: their error too, so a consumer's tolerance is passed on to them (see settle_leaks)
    averages: tuple[Rep, ...] = ()
    #: the head must weigh its selected keys equally (a count, a mean of several
    #: numbers): rounding of the rows its scores read must not tilt them (see certify)
    uniform: bool = False
    #: the keys it may attend: ``key index CMP query index`` (BOS always), or all
    mask: str | None = None
    #: nonzero when every score is a sum of integers whose partial sums stay within
    #: ``magnitude`` (in units of beta): it reads only integers (positional entries, the
    #: constant, copies held within a quarter of this unit round-off of theirs) with
    #: integer coefficients, so a dtype whose unit round-off is at least this one and
    #: that holds every integer up to ``magnitude`` computes its scores exactly (beta a
    #: power of two, see ``emit.attention.score_noise``)
    exact: float = 0.0
    #: the count (node id) whose number, read from MLP tables, this head compares with
    #: the indices (see ``compiler.count_precision``); -1 for none
    count_node: int = -1
    #: how far its key tables' rounding may move a score (measured once the tables are
    #: built, see ``compiler.count_precision``): part of its score noise
    key_noise: float = 0.0
    #: every query selects at most one key (a functional selector,
    #: ``positions.is_functional``): with exact scores and no leak it attends that key
    #: alone, or BOS alone, with weight exactly 1
    one_key: bool = False
    #: how many unit round-offs of ``magnitude`` a score's rounding is at most
    #: (``emit.attention.score_noise``): the weights', the queries' and keys' sums, the
    #: score's; fewer where a side's products are exact (a narrow dtype's plan)
    roundings: float = 4.0


@dataclass(frozen=True)
class CatRep:
    """Categories in the residual: ``rows[i]`` reads ~1 when the value is ``values[i]``.
    ``sources`` are the ids of heads whose leaky output the rows read."""

    values: tuple[Atom, ...]
    rows: tuple[Lin, ...]
    stage: int
    sources: tuple[int, ...] = ()

    @functools.cached_property
    def _find(self) -> Callable[[Atom], int | None]:
        return lookup_value(self.values)

    def row(self, value: Atom) -> Lin | None:
        """The read-out of ``value``, or None if it is not one of the values."""
        i = self._find(value)
        return None if i is None else self.rows[i]

    def lins(self) -> tuple[Lin, ...]:
        return self.rows


@dataclass(frozen=True)
class NumRep:
    """A number in the residual.  ``sources`` are the attention heads (by id) whose
    (slightly leaky) output it sums, each with the size of its coefficient."""

    lin: Lin
    values: tuple[Atom, ...]
    stage: int
    sources: tuple[tuple[int, float], ...] = ()

    def lins(self) -> tuple[Lin, ...]:
        return (self.lin,)


Rep = CatRep | NumRep


@dataclass(frozen=True)
class Requirement:
    """A consumer needs ``rep`` accurate to within ``tol`` (settled into head leaks)."""

    rep: Rep
    tol: float


#: an elementwise table's function over one combination of input values (None: the
#: combination fails in the interpreter too, so it never occurs)
TableFn = Callable[[tuple[Atom, ...]], Atom | None]
#: (gated inputs, on, off): a table's value ``on`` where one of those inputs is off its
#: extreme value, else ``off`` (None for either: the interpreter fails there, so any
#: value will do), see ``plan.disjunction``
GateForm = tuple[frozenset[int], Atom | None, Atom | None]
#: a table's GateForm per combination of its categorical inputs' values (None: none
#: occurs)
GateForms = Callable[[tuple[Atom, ...]], GateForm | None]


@dataclass(frozen=True)
class CatTarget:
    """A one-hot an MLP writes: ``dirs[i]`` is 1 when the result is ``values[i]``."""

    values: tuple[Atom, ...]
    dirs: tuple[str, ...]


@dataclass(frozen=True)
class MLPJob:
    """An elementwise table: ``fn`` over the product of ``inputs``' values, into targets."""

    id: int
    layer: int
    label: str
    span: Span | None
    inputs: tuple[Rep, ...]
    fn: TableFn
    cat_targets: tuple[CatTarget, ...] = ()
    num_targets: tuple[str, ...] = ()
    #: per numerical input: (its index, largest |value|, error it tolerates), for a quick
    #: check of a dtype (``certify`` looks closer at an input that fails it)
    tolerances: tuple[tuple[int, float, float], ...] = ()
    #: ``fn`` with combinations known never to occur left out: the finished plan keeps
    #: whichever of the two tables is smaller (and this one then as ``fn``)
    narrow_fn: TableFn | None = None
    #: the s-op whose representation the job writes
    node_id: int = -1
    #: numerical inputs ``fn`` reads only through "is it at its largest (True) or smallest
    #: (False) value", by input index: gates of the table (``emit.mlp.numeric_gates``)
    gates: tuple[tuple[int, bool], ...] = ()
    #: with more gates than ``MAX_GATES``: the table's value per combination of its
    #: categorical inputs, as (gates, on, off) (``plan.disjunction``)
    forms: GateForms | None = None

    def targets(self) -> tuple[str, ...]:
        return tuple(d for t in self.cat_targets for d in t.dirs) + self.num_targets


@dataclass(frozen=True)
class Unit:
    """One hidden ReLU: ``out += ReLU(pre(x)) * out_coefs``."""

    pre: Lin
    out: tuple[tuple[str, float], ...]


#: Most numbers one MLP table reads as gates (``emit.mlp.numeric_gates``: it is then 2^k
#: tables over the other inputs).
MAX_GATES = 3


@dataclass(frozen=True)
class Table:
    """The hidden units of one MLP job; the largest pre-activation any active unit
    computes (float rounding error is about this times the dtype's epsilon); and the
    error each categorical input row may have for the units to stay exact; and, for the
    numbers it reads as gates (``emit.mlp.numeric_gates``), the error each may have, by
    input index."""

    units: tuple[Unit, ...]
    magnitude: float
    cat_tolerance: float
    gate_tolerances: tuple[tuple[int, float], ...] = ()
    #: per gated number (input index): is its extreme value its largest (else smallest)
    gate_tops: tuple[tuple[int, bool], ...] = ()


def projected_numbers(job: MLPJob, table: Table) -> int:
    """How many numbers ``table`` folds into one by a mixed-radix projection (those it
    does not read as gates): at 2 or more its steps are as steep as the projection is
    fine, and its rounding grows with them."""
    return sum(isinstance(r, NumRep) for r in job.inputs) - len(table.gate_tolerances)


@dataclass(frozen=True)
class TokenEmbedding:
    """A one-hot of ``tokens_<conv>``: ``dirs[i]`` is 1 where the converted token is
    ``values[i]``."""

    conv: str
    values: tuple[Atom, ...]
    dirs: tuple[str, ...]


@dataclass(frozen=True)
class PositionalEntry:
    """A residual direction set by the positional embedding: ``values[i]`` at index i
    (the one-hot of indices is one entry per index, the index as a number one more)."""

    dir: str
    values: tuple[float, ...]


@dataclass(frozen=True)
class OutputKinds:
    """A numerical output that is an aggregate whose values include an int and a float
    that are equal (``1`` and ``1.0``): the number alone cannot say which the interpreter
    gives, so a second logit reads ``width``, 1/(w+1) for the w keys its selector
    selects (no key: ``default``; one: that key's value, one of ``single``; several: the
    mean, a float)."""

    width: NumRep
    default: Atom
    single: tuple[Atom, ...]


@dataclass(frozen=True)
class Plan:
    """Everything the weights are made from (see the module docstring)."""

    max_len: int
    n_layers: int
    blocks: tuple[Block, ...]
    tokens: tuple[TokenEmbedding, ...]
    positional: tuple[PositionalEntry, ...]
    heads: tuple[Head, ...]
    mlps: tuple[MLPJob, ...]
    tables: tuple[Table, ...]  # tables[i] computes mlps[i]
    output: Rep
    #: s-ops (ids of the program planned) kept from joint tables over several numbers
    #: (``PlanState.no_joint``): planning the same program again needs them to match
    no_joint: frozenset[int] = frozenset()
    #: counts (node ids) compared with the indices through one-hots, because their
    #: tables' rounding would move a numerical comparison's scores too far
    #: (``compiler.count_precision``); planning again needs them too
    plain_counts: frozenset[int] = frozenset()
    #: how the output's int/float kind is read, when its number alone cannot say
    output_kinds: OutputKinds | None = None
    #: the output's values mix ints and equal floats, and the model tells them apart
    #: (``output_kinds``, or an output table that reads its means' key counts)
    kinds_known: bool = False
    #: the output is a count read straight from its head: the logit is 1/(w+1)
    output_reciprocal: bool = False
    #: planned with heads allowed static masks, for this dtype (planning again for the
    #: same model needs both: they decide between constructions)
    head_masks: bool = True
    dtype: str = "float32"
    #: residual direction -> how accurate the number read through it must be (the
    #: requirements, followed through mean heads: ``finalize._propagate``)
    needs: tuple[tuple[str, float], ...] = ()
    #: what the planner's requirements and the tables' gates ask of what they read, as
    #: (read-out, error allowed): what an MLP table's rounding in a narrow dtype is held
    #: to, with the tables' own row tolerances (``compiler.table_rounding``)
    read_tolerances: tuple[tuple[Lin, float], ...] = ()
    #: one-hot rows that tables in this narrow dtype are shown to compute exactly
    #: (``compiler.exact_tables``), held exactly while planning; planning again needs them
    proven: frozenset[str] = frozenset()
    #: numbers of whole values tables are shown to compute exactly, likewise
    proven_numbers: frozenset[str] = frozenset()

    def heads_in(self, layer: int) -> tuple[Head, ...]:
        return tuple(h for h in self.heads if h.layer == layer)

    def mlps_in(self, layer: int) -> tuple[tuple[MLPJob, Table], ...]:
        return tuple((m, t) for m, t in zip(self.mlps, self.tables) if m.layer == layer)


@dataclass(frozen=True)
class Draft:
    """What planning decided, before the finishing step (``compiler.finalize``) builds
    the MLP tables and settles every head's leak from ``requirements``.  Only what the
    output depends on is here; ``all_heads`` keeps every head planned (ids index it),
    since a requirement may pass through a head that was pruned."""

    max_len: int
    blocks: tuple[Block, ...]
    tokens: tuple[TokenEmbedding, ...]
    positional: tuple[PositionalEntry, ...]
    heads: tuple[Head, ...]
    all_heads: tuple[Head, ...]
    mlps: tuple[MLPJob, ...]
    requirements: tuple[Requirement, ...]
    output: Rep
    output_kinds: OutputKinds | None = None
    kinds_known: bool = False
    output_reciprocal: bool = False


@dataclass(frozen=True)
class PlanFailure:
    """Planning could not give an exact plan: every reason found, each with its span."""

    problems: tuple[RaspError, ...]


def key_side(lin: Lin) -> Lin:
    """``lin`` with its constant part removed at the BOS position (ONE -> ONE - BOS)."""
    c = lin.as_dict().get(ONE, 0.0)
    return lin + Lin.unit(BOS, -c) if c else lin
