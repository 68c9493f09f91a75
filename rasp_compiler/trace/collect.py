"""Gather a trace: the compiled model run on one input, as plain Python data.

:func:`collect` runs the model with ``return_residuals=True`` and the interpreter on
the same input, and returns a :class:`Trace`:

* per layer, each head's attention pattern (queries x keys, BOS included) with the
  source line and expression it implements and, from the interpreter, the selector it
  carries out; each MLP with what it computes;
* the residual stream after the embeddings and after every sublayer, one row per
  position and one labelled column per residual direction;
* per s-op, its value read back from the residual stream next to the interpreter's.

Reading an s-op back uses the compiler's own read-outs: the planner represents each
s-op as a one-hot (one linear read-out per value: the value is the argmax) or as a
number (one linear read-out, rounded to the nearest value the s-op can take).  The
read-out is applied to the residual right after the sublayer that writes it.  An s-op
the model never holds on its own (``length``, held only as ``1/(length+1)`` inside a
head's output) is listed with its interpreter value and no decoded value; one held only
as classes of values (one read-out per class of values the heads reading it treat
alike) is read back as the class, which must hold the interpreter's value.

Everything here is lists, strings, numbers and dataclasses: the HTML page
(:mod:`.html`) and the figures (:mod:`.figures`) are made from it, and tests check it
without a browser.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..compiler.assemble import build_layout
from ..compiler.graph import build_graph, spans_of_use
from ..compiler.pipeline import make_plan, planned_program
from ..compiler.plan.builder import Planner
from ..compiler.plan.make import output_rep
from ..compiler.plan.state import NodeFailed
from ..compiler.plan.types import CatRep, NumRep, Plan, Rep
from ..compiler.residual import Lin
from ..compiler.value_sets import infer_value_sets
from ..errors import InputError
from ..language import ir
from ..language.display import format_sop
from ..language.interpret import evaluate_many
from ..language.ir import Atom, atom_key, is_number
from ..language.lowerer import deep_recursion
from ..runtime import CompiledModel

BOS_LABEL = "BOS"


@dataclass
class HeadTrace:
    """One attention head on the input."""

    layer: int
    head: int
    kind: str  # "aggregate" or "width"
    implements: str
    line: int | None
    source_line: str  # the program's text on ``line`` ("" if unknown)
    beta: float
    pattern: list[list[float]]  # [query][key], BOS at 0
    selector: list[list[bool]] | None = None  # the interpreter's [query][key], no BOS
    selector_text: str = ""  # the selector's source text


@dataclass
class MLPTrace:
    """One MLP job: the s-op (or part of one) it computes."""

    layer: int
    implements: str
    line: int | None
    source_line: str
    hidden_units: int


@dataclass
class SOpTrace:
    """One s-op: the interpreter's value and the one read back from the residual."""

    id: int
    name: str
    text: str  # the source text that made it
    line: int | None
    interpreter: list[Atom]
    encoding: str | None = None  # "categorical", "numerical", "reciprocal" (1/(w+1) of a
    # count), "classes", or None: not held
    stage: int | None = None  # the residual snapshot it is read from
    decoded: list[Atom] | None = None
    #: when the model holds only classes of values (those the heads reading it treat
    #: alike): the class read back at each position
    classes: list[list[Atom]] | None = None
    raw: list[float] = field(default_factory=list)  # winning row / the number read
    directions: list[str] = field(default_factory=list)  # residual dims the read-out uses

    @property
    def agrees(self) -> bool | None:
        """True/False when decoded, None when the model does not hold the s-op.  Classes
        agree when each holds the interpreter's value."""
        if self.classes is not None:
            return len(self.classes) == len(self.interpreter) and all(
                any(same_atom(v, m) for m in cls) for v, cls in zip(self.interpreter, self.classes)
            )
        if self.decoded is None:
            return None
        return len(self.decoded) == len(self.interpreter) and all(
            same_atom(a, b) for a, b in zip(self.decoded, self.interpreter)
        )


@dataclass
class Trace:
    """Everything the trace page shows (see the module docstring)."""

    program: str
    sop_name: str
    source: list[str]  # the program's lines
    tokens: list[str]  # axis labels: BOS, then the input's tokens
    vocab: list[Atom]
    max_len: int
    d_model: int
    heads: list[HeadTrace]
    mlps: list[MLPTrace]
    n_layers: int
    snapshots: list[str]  # one name per residual snapshot
    residuals: list[list[list[float]]]  # [snapshot][position][dimension]
    dims: list[str]  # one label per residual dimension
    blocks: list[tuple[str, int, int]]  # (name, start, size) in the residual
    sops: list[SOpTrace]
    output: list[Atom]  # what the model outputs (decoded logits)
    expected: list[Atom]  # what the interpreter outputs

    @property
    def disagreements(self) -> list[SOpTrace]:
        return [s for s in self.sops if s.agrees is False]

    @property
    def ok(self) -> bool:
        """Every decoded s-op and the output equal the interpreter's."""
        return not self.disagreements and same_values(self.output, self.expected)

    def heads_in(self, layer: int) -> list[HeadTrace]:
        return [h for h in self.heads if h.layer == layer]

    def mlps_in(self, layer: int) -> list[MLPTrace]:
        return [m for m in self.mlps if m.layer == layer]

    def written_at(self, stage: int) -> list[SOpTrace]:
        """The s-ops first readable from residual snapshot ``stage``."""
        return [s for s in self.sops if s.stage == stage]


def same_atom(a: Atom, b: Atom) -> bool:
    """Equal as RASP values: same type and value, or equal numbers (1 and 1.0)."""
    if atom_key(a) == atom_key(b):
        return True
    num = is_number(a) and is_number(b) and not isinstance(a, bool) and not isinstance(b, bool)
    return bool(num and float(a) == float(b))


def same_values(xs: Sequence[Atom], ys: Sequence[Atom]) -> bool:
    return len(xs) == len(ys) and all(same_atom(a, b) for a, b in zip(xs, ys))


def snapshot_names(n_layers: int) -> list[str]:
    """``embeddings``, then ``layer 0 attention``, ``layer 0 MLP``, ..."""
    names = ["embeddings"]
    for layer in range(n_layers):
        names += [f"layer {layer} attention", f"layer {layer} MLP"]
    return names


# ------------------------------------------------------------------ collecting


def collect(
    sop: ir.SOp,
    model: CompiledModel,
    inp: str | Sequence[Atom],
    names: dict[int, str],
    source: Sequence[str] = (),
) -> Trace:
    """Run ``model`` (compiled from ``sop`` with ``names``) and the interpreter on
    ``inp``; see the module docstring.  ``source`` is the program's lines.

    Raises InputError for a bad input, or when the model was not compiled from ``sop``
    (its residual layout differs from the one the compiler plans for it now)."""
    spec = model.spec
    tokens, mask = model.encode([inp])  # checks the input against the vocabulary
    # the program as the compiler plans it (rewritten, shared), made once so that the plan
    # and the read-back use the same nodes; the interpreter runs them too (same values)
    shared = planned_program(sop, spec.max_len)
    plan = make_plan(
        shared,
        spec.vocab,
        spec.max_len,
        names,
        dtype=spec.dtype,
        head_masks=model.config.head_masks is not None,
    )
    layout = build_layout(plan)
    if _shape(layout.describe()) != _shape(spec.layout):
        raise InputError(
            f"the model does not match the program {spec.program_name}: its residual layout "
            "differs from the one the compiler plans now (was the program changed since?)"
        )
    with torch.no_grad():
        out = model.transformer(tokens.cpu(), mask.cpu(), return_residuals=True)
    residuals = [r[0].double().cpu().numpy() for r in out.residuals]  # [T, d_model] each
    patterns = [p[0].double().cpu().numpy() for p in out.patterns]  # [heads, T, T] each
    n = int(mask.sum()) - 1
    output = model.decode(out.logits, [n])[0]

    values = evaluate_many([shared], inp)
    planner = _planner(shared, spec.vocab, spec.max_len, names, plan)
    index = layout.index()
    text = list(source)

    sops = read_sops(shared, planner, values, residuals, index, names)
    by_label = _nodes_by_label(shared, planner)
    heads, mlps = [], []
    for layer, desc in enumerate(spec.layers):
        for h in desc.get("attn", []):
            node = by_label.get(h["implements"])
            sel = _selector_of(node)
            matrix = values.get(sel.id) if sel is not None else None
            heads.append(
                HeadTrace(
                    layer=layer,
                    head=h["head"],
                    kind=h["kind"],
                    implements=h["implements"],
                    line=h["line"],
                    source_line=_line(text, h["line"]),
                    beta=h["beta"],
                    pattern=patterns[layer][h["head"]].tolist(),
                    selector=matrix.tolist() if isinstance(matrix, np.ndarray) else None,
                    selector_text=_text_of(sel) if sel is not None else "",
                )
            )
        for m in desc.get("mlp", []):
            mlps.append(
                MLPTrace(
                    layer, m["implements"], m["line"], _line(text, m["line"]), m["hidden_units"]
                )
            )
    inp_tokens = list(inp)
    return Trace(
        program=spec.program_name,
        sop_name=spec.sop_name,
        source=text,
        tokens=[BOS_LABEL] + [str(t) for t in inp_tokens],
        vocab=list(spec.vocab),
        max_len=spec.max_len,
        d_model=model.config.d_model,
        heads=heads,
        mlps=mlps,
        n_layers=model.config.n_layers,
        snapshots=snapshot_names(model.config.n_layers),
        residuals=[r.tolist() for r in residuals],
        dims=list(layout.names),
        blocks=[(b["name"], b["start"], b["size"]) for b in layout.describe()],
        sops=sops,
        output=list(output),
        expected=_as_list(values[shared.id]),
    )


def _shape(blocks: Sequence[dict]) -> list[tuple[str, int, int]]:
    """A layout's blocks without node ids (``reverse#11`` -> ``reverse``): ids count the
    nodes made before, so they differ between the session that compiled and this one."""
    return [(re.sub(r"#\d+", "", b["name"]), b["start"], b["size"]) for b in blocks]


def _planner(
    sop: ir.SOp,
    vocab: tuple[Atom, ...],
    max_len: int,
    names: dict[int, str],
    plan: Plan,
) -> Planner:
    """A planner that has planned ``sop`` as the compiler did (with the choices its
    ``plan`` records: ``no_joint``, ``plain_counts``, ``head_masks``, ``dtype``, ``proven``): its
    read-outs of every s-op use the same residual direction names as the model's
    layout."""
    graph = build_graph(sop)
    sets, problems = infer_value_sets(sop, vocab, max_len)
    if problems:  # make_plan succeeded on the same s-op, so this does not happen
        raise InputError(f"cannot plan the program again: {problems[0].message}")
    planner = Planner(
        sets, max_len, names, spans_of_use(graph), no_joint=plan.no_joint,
        head_masks=plan.head_masks, dtype=plan.dtype, plain_counts=plan.plain_counts,
        proven=plan.proven, proven_numbers=plan.proven_numbers,
    )  # fmt: skip
    with deep_recursion():
        output_rep(planner, sop)  # as make_plan plans it (a coded output, for one)
    return planner


def read_sops(
    shared: ir.SOp,
    planner: Planner,
    values: Mapping[int, object],
    residuals: list[np.ndarray],
    index: dict[str, int],
    names: dict[int, str],
) -> list[SOpTrace]:
    """Every s-op of ``shared`` (the program after ``share_common``) read back from one
    input's residual snapshots ``residuals`` ([T, d_model] each, BOS at row 0), next to
    the interpreter's ``values`` (node id -> value on that input)."""
    return [
        _sop_trace(node, planner, values, residuals, index, names)
        for node in ir.walk(shared)
        if isinstance(node, ir.SOp)
    ]


def _sop_trace(
    node: ir.SOp,
    planner: Planner,
    values: Mapping[int, object],
    residuals: list[np.ndarray],
    index: dict[str, int],
    names: dict[int, str],
) -> SOpTrace:
    span = node.span
    name = names.get(node.id) or _text_of(node)
    trace = SOpTrace(
        id=node.id, name=name, text=_text_of(node), line=span.line if span else None,
        interpreter=_as_list(values[node.id]),
    )  # fmt: skip
    rep = _held_rep(node, planner, index)
    if rep is None:
        _read_classes(trace, node, planner, residuals, index)
        return trace
    stage = min(rep.stage, len(residuals) - 1)
    resid = residuals[stage][1 : 1 + len(trace.interpreter)]  # the input's positions
    dims = sorted({d for lin in rep.lins() for d in lin.names()}, key=index.__getitem__)
    trace.stage, trace.directions = stage, dims
    if isinstance(rep, CatRep):
        scores = np.stack([_read(lin, resid, index) for lin in rep.rows], axis=1)  # [n, values]
        best = scores.argmax(axis=1)
        trace.encoding = "categorical"
        trace.decoded = [rep.values[i] for i in best]
        trace.raw = [float(scores[p, i]) for p, i in enumerate(best)]
    else:
        xs = _read(rep.lin, resid, index)
        trace.encoding = "numerical"
        trace.decoded = [_nearest(rep.values, float(x)) for x in xs]
        if rep is reciprocal_rep(node, planner):  # 1/(w+1): the count w
            trace.encoding = "reciprocal"
            trace.decoded = [round(1.0 / float(v)) - 1 for v in trace.decoded]
        trace.raw = [float(x) for x in xs]
    return trace


def _read_classes(
    trace: SOpTrace,
    node: ir.SOp,
    planner: Planner,
    residuals: list[np.ndarray],
    index: dict[str, int],
) -> None:
    """Read the classes of values the model holds for an s-op it does not hold whole
    (a read-out per class of values that the heads reading it score alike)."""
    memo = getattr(planner, "_cat_groups", {})  # (node id, groups) -> CatRep
    for (nid, groups), rep in memo.items():
        if nid != node.id or not all(d in index for lin in rep.lins() for d in lin.names()):
            continue
        stage = min(rep.stage, len(residuals) - 1)
        resid = residuals[stage][1 : 1 + len(trace.interpreter)]
        scores = np.stack([_read(lin, resid, index) for lin in rep.rows], axis=1)
        best = scores.argmax(axis=1)
        trace.encoding, trace.stage = "classes", stage
        trace.directions = sorted(
            {d for lin in rep.lins() for d in lin.names()}, key=index.__getitem__
        )
        # values in no group (those the selectors never select) read ~0 on every row
        rest = [
            v for v in planner.values(node) if not any(same_atom(v, m) for g in groups for m in g)
        ]
        trace.classes = [
            list(groups[i]) if scores[p, i] > 0.5 or not rest else rest for p, i in enumerate(best)
        ]
        trace.raw = [float(scores[p, i]) for p, i in enumerate(best)]
        return


def held_stage(node: ir.SOp, planner: Planner, index: dict[str, int]) -> int | None:
    """The residual snapshot that first holds ``node`` (whole or as classes), or None."""
    rep = _held_rep(node, planner, index)
    if rep is not None:
        return rep.stage
    for (nid, _), crep in getattr(planner, "_cat_groups", {}).items():
        if nid == node.id and all(d in index for lin in crep.lins() for d in lin.names()):
            return crep.stage
    return None


def _held_rep(node: ir.SOp, planner: Planner, index: dict[str, int]) -> Rep | None:
    """The s-op's representation whose read-outs use only directions the model has:
    the one consumers read first, else the other; None if neither is held."""
    cat_first = planner.cheap_cat(node)
    for categorical in (cat_first, not cat_first):
        try:
            rep: Rep = planner.cat(node) if categorical else planner.num(node)
        except NodeFailed:  # e.g. a number asked of an s-op of strings
            continue
        if all(d in index for lin in rep.lins() for d in lin.names()):
            return rep
    x = reciprocal_rep(node, planner)
    if x is not None and all(d in index for d in x.lin.names()):
        return x
    return None


def reciprocal_rep(node: ir.SOp, planner: Planner) -> NumRep | None:
    """A count held only as its one counting head's ``1/(w+1)`` (read by MLPs, or the
    output itself), else None."""
    xs = planner.width_heads.get(node.id) if isinstance(node, ir.SelectorWidth) else None
    return xs[0] if xs is not None and len(xs) == 1 else None


def _read(lin: Lin, resid: np.ndarray, index: dict[str, int]) -> np.ndarray:
    """The read-out ``lin`` at every row of ``resid`` [n, d_model]."""
    out = np.zeros(resid.shape[0])
    for name, coef in lin.terms:
        out += coef * resid[:, index[name]]
    return out


def _nearest(values: tuple[Atom, ...], x: float) -> Atom:
    return min(values, key=lambda v: abs(float(v) - x))  # type: ignore[arg-type]


def _nodes_by_label(root: ir.SOp, planner: Planner) -> dict[str, ir.SOp]:
    """What a head implements (its label in the model file) -> the s-op it computes."""
    out: dict[str, ir.SOp] = {}
    for node in ir.walk(root):
        if isinstance(node, ir.Aggregate | ir.SelectorWidth | ir.Length):
            out.setdefault(planner.label(node), node)
    return out


def _selector_of(node: ir.Node | None) -> ir.Selector | None:
    if isinstance(node, ir.Aggregate | ir.SelectorWidth):
        return node.selector
    return None


def _text_of(node: ir.Node) -> str:
    return node.span.text.strip() if node.span is not None else type(node).__name__.lower()


def _line(source: Sequence[str], line: int | None) -> str:
    if line is None or not 1 <= line <= len(source):
        return ""
    return source[line - 1].strip()


def _as_list(value: object) -> list[Atom]:
    assert isinstance(value, list), "an s-op's value is a list"
    return list(value)


def show(values: Sequence[Atom]) -> str:
    """Values as the command line prints them: ``[o, l, l, e, h] (strings)``."""
    return format_sop(list(values))
