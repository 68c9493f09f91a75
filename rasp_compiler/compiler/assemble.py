"""Assembly: a finished plan -> the residual layout and TransformerLens-named weights.

This is the only stage (with :class:`~rasp_compiler.compiler.residual.Layout`) that
deals in integer positions.  It also keeps the BOS position's residual *known*: every
head sends the BOS query to the BOS key alone, so after a layer's attention the BOS
residual holds exactly the heads' BOS values; each MLP switches all its units off at
BOS (a large negative weight on the ``bos`` direction) and one extra unit, on only
at BOS, subtracts those values again.  So every layer starts with the BOS residual
equal to ``one + bos``, which planning relies on when it scores the BOS key and
reads its values.

Steps, one function each: :func:`build_layout`, :func:`layer_units` (MLP units with
the BOS gate and clean-up), :func:`check_size`, :func:`embeddings`,
:func:`layer_weights`; :func:`assemble` calls them in that order.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..dtypes import UNIT_ROUNDOFF
from ..errors import CompileError, RaspError
from ..language.ir import Atom, atom_key, convert_token
from ..model import MAX_LAYERS, MAX_PARAMS, LayerShape, ModelConfig
from .emit.attention import head_weights
from .plan.types import CatRep, Draft, Head, HeadKind, MLPJob, Plan, PlanError, Unit
from .residual import BOS, ONE, Block, Layout, Lin


@dataclass(frozen=True)
class HeadInfo:
    """What one attention head implements (for ``inspect`` and the model file)."""

    head: int
    kind: HeadKind
    implements: str
    line: int | None
    beta: float
    #: the head's static mask (``key index CMP query index``, BOS always), if any
    mask: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "head": self.head,
            "kind": self.kind.value,
            "implements": self.implements,
            "line": self.line,
            "beta": self.beta,
        }
        if self.mask is not None:
            out["mask"] = f"key {self.mask} query"
        return out


@dataclass(frozen=True)
class MLPInfo:
    """What one MLP job in a layer implements, and its hidden units."""

    implements: str
    line: int | None
    hidden_units: int
    #: in a layer without heads: why the job could not run a layer earlier (it reads
    #: what the previous layer's MLP writes)
    after: str | None = None
    #: the numbers the table reads only at their extreme value (``mean > 0``, ``width >
    #: 0``), and how: one table per set of them, or one step as an ``or`` of them
    gates: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "implements": self.implements,
            "line": self.line,
            "hidden_units": self.hidden_units,
        }
        if self.gates is not None:
            out["gates"] = self.gates
        if self.after is not None:
            out["after"] = self.after
        return out


@dataclass(frozen=True)
class LayerInfo:
    attn: tuple[HeadInfo, ...]
    mlp: tuple[MLPInfo, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"attn": [h.to_dict() for h in self.attn], "mlp": [m.to_dict() for m in self.mlp]}


@dataclass(frozen=True)
class Assembled:
    config: ModelConfig
    weights: dict[str, np.ndarray]
    layers: tuple[LayerInfo, ...]
    layout: Layout


def assemble(plan: Plan, vocab: tuple[Atom, ...], dtype: str) -> Assembled:
    """The model's config, weights (float32 arrays by TransformerLens name) and layer
    descriptions for a finished ``plan`` certified for ``dtype``.

    Raises :class:`CompileError` when the model would be larger than :data:`MAX_PARAMS`."""
    layout = build_layout(plan)
    units = [layer_units(plan, layer) for layer in range(plan.n_layers)]
    shapes = tuple(
        LayerShape(
            n_heads=len(plan.heads_in(layer)),
            d_head=max((_head_width(h) for h in plan.heads_in(layer)), default=0),
            d_mlp=len(units[layer]),
        )
        for layer in range(plan.n_layers)
    )
    # the attention scale is one number for the model (the emitted W_Q carries it)
    d_head = max((s.d_head for s in shapes), default=0)
    masks = tuple(
        tuple(h.mask or "all" for h in plan.heads_in(layer)) for layer in range(plan.n_layers)
    )
    config = ModelConfig(
        d_model=layout.d_model,
        n_layers=plan.n_layers,
        n_heads=max((s.n_heads for s in shapes), default=0),
        d_head=d_head,
        d_mlp=max((s.d_mlp for s in shapes), default=0),
        layer_shapes=shapes,
        d_vocab=len(vocab) + 2,
        d_vocab_out=(
            len(plan.output.values)
            if isinstance(plan.output, CatRep)
            else 1 + (plan.output_kinds is not None)
        ),
        n_ctx=plan.max_len + 1,
        attn_scale=1.0,  # keeps exact integer scores exact (emit.attention.score_noise)
        head_masks=masks if any(m != "all" for row in masks for m in row) else None,
    )
    check_size(plan, config)
    weights = embeddings(plan, vocab, layout)
    infos = []
    for layer in range(plan.n_layers):
        layer_w, info = layer_weights(plan, layer, units[layer], layout, config, dtype)
        weights.update(layer_w)
        infos.append(info)
    weights.update(unembedding(plan, layout))
    return Assembled(config, weights, tuple(infos), layout)


def _head_width(h: Head) -> int:
    """Columns a head needs: one per score term (W_Q/W_K), one per value (W_V/W_O)."""
    return max(len(h.qk), len(h.values))


def build_layout(plan: Plan) -> Layout:
    """``one`` and ``bos`` first, then the plan's blocks in order (each direction once)."""
    blocks = [Block("one", (ONE,), "1 at every position"), Block("bos", (BOS,), "1 at BOS only")]
    seen = {ONE, BOS}
    for b in plan.blocks:
        fresh = tuple(d for d in b.directions if d not in seen)
        seen.update(fresh)
        if fresh:
            blocks.append(Block(b.name, fresh, b.description, b.one_hot))
    return Layout(tuple(blocks))


def _eval(lin: Lin, resid: dict[str, float]) -> float:
    return sum(c * resid.get(k, 0.0) for k, c in lin.terms)


def layer_units(plan: Plan, layer: int) -> list[Unit]:
    """The layer's MLP units, each switched off at BOS, plus one unit (on only at BOS)
    that removes what the layer's heads wrote at BOS."""
    bos_resid = {ONE: 1.0, BOS: 1.0}
    dirty: dict[str, float] = {}
    for h in plan.heads_in(layer):
        for out_dir, lin in h.values:
            dirty[out_dir] = dirty.get(out_dir, 0.0) + _eval(lin, bos_resid)
    at_bos = {**bos_resid, **dirty}
    units: list[Unit] = []
    for _, table in plan.mlps_in(layer):
        for u in table.units:
            pre_at_bos = _eval(u.pre, at_bos)
            if pre_at_bos > -1.0:  # push the pre-activation below 0 at BOS
                u = Unit(u.pre + Lin.unit(BOS, -(pre_at_bos + 1.0)), u.out)
            units.append(u)
    dirty = {k: v for k, v in dirty.items() if v != 0.0}
    if dirty:
        units.append(Unit(Lin.unit(BOS), tuple((k, -v) for k, v in sorted(dirty.items()))))
    return units


def check_size(plan: Plan, config: ModelConfig) -> None:
    """Refuse a model over :data:`MAX_PARAMS` parameters (naming its largest MLP) or
    :data:`MAX_LAYERS` layers: the limits a model file may hold."""
    c = config
    n_params = c.n_params
    if n_params <= MAX_PARAMS and c.n_layers <= MAX_LAYERS:
        return
    where, span = "", None
    if plan.mlps:
        i = max(range(len(plan.mlps)), key=lambda i: len(plan.tables[i].units))
        big = plan.mlps[i]
        where = f"; its largest MLP ({len(plan.tables[i].units)} hidden units) computes {big.label}"
        span = big.span
    raise CompileError(
        [
            PlanError(
                f"the model would have about {n_params:,} parameters (d_model {c.d_model}, "
                f"d_mlp {c.d_mlp}, {c.n_layers} layers) at max length {plan.max_len}, more "
                f"than the limit of {MAX_PARAMS:,} parameters or {MAX_LAYERS:,} layers{where}",
                span,
            )
        ]
    )


def size_before_tables(draft: Draft, n_vocab: int) -> list[RaspError]:
    """A lower bound on the model's parameters from a draft (residual width, embeddings,
    attention, the steps of MLPs over numbers), so a model far over :data:`MAX_PARAMS` is
    refused before its MLP tables are built (the slow part at long lengths)."""
    d_model = len({d for b in draft.blocks for d in b.directions} | {ONE, BOS})
    d_out = len(draft.output.values) if isinstance(draft.output, CatRep) else 1
    # per layer: attention weights (4 per head, model width by head width), MLP units
    per_layer: dict[int, int] = {}
    for h in draft.heads:
        per_layer[h.layer] = per_layer.get(h.layer, 0) + 4 * d_model * _head_width(h)
    for m in draft.mlps:
        per_layer[m.layer] = per_layer.get(m.layer, 0) + 2 * d_model * _fewest_units(m)
    bound = (draft.max_len + n_vocab + 3 + d_out) * d_model + sum(per_layer.values())
    if bound <= MAX_PARAMS:
        return []
    return [
        PlanError(
            f"the model would have at least {bound:,} parameters (d_model {d_model}) at max "
            f"length {draft.max_len}, more than the limit of {MAX_PARAMS:,}",
            None,
        )
    ]


def _fewest_units(job: MLPJob) -> int:
    """Hidden units a table over numbers needs at least: two per change of its output
    along the sorted inputs (0 for tables with categorical inputs or large domains)."""
    if any(isinstance(r, CatRep) for r in job.inputs) or math.prod(
        len(r.values) for r in job.inputs
    ) > (1 << 16):
        return 0
    outputs = {
        atom_key(y)
        for c in itertools.product(*(r.values for r in job.inputs))
        if (y := job.fn(c)) is not None
    }
    return 2 * max(len(outputs) - 1, 0)


def embeddings(plan: Plan, vocab: tuple[Atom, ...], layout: Layout) -> dict[str, np.ndarray]:
    """W_E (token ids: the vocabulary, then BOS, then pad) and W_pos (BOS at 0)."""
    idx = layout.index()
    W_E = np.zeros((len(vocab) + 2, layout.d_model), dtype=np.float32)
    for t, tok in enumerate(vocab):
        W_E[t, idx[ONE]] = 1.0
        for emb in plan.tokens:
            y = convert_token(emb.conv, tok)
            for v, d in zip(emb.values, emb.dirs):
                if type(v) is type(y) and v == y:
                    W_E[t, idx[d]] = 1.0
    W_E[len(vocab), idx[ONE]] = 1.0  # BOS
    W_E[len(vocab), idx[BOS]] = 1.0
    # the pad id (last row) embeds to zero: pad keys are masked anyway
    W_pos = np.zeros((plan.max_len + 1, layout.d_model), dtype=np.float32)
    for entry in plan.positional:
        W_pos[1:, idx[entry.dir]] = entry.values
    return {"embed.W_E": W_E, "pos_embed.W_pos": W_pos}


def layer_weights(
    plan: Plan, layer: int, units: list[Unit], layout: Layout, config: ModelConfig, dtype: str
) -> tuple[dict[str, np.ndarray], LayerInfo]:
    """One layer's attention and MLP weights (padded to the model's shapes)."""
    shape = config.layer(layer)
    d, n_heads, d_head, d_mlp = config.d_model, shape.n_heads, shape.d_head, shape.d_mlp
    idx = layout.index()
    W_Q = np.zeros((n_heads, d, d_head), dtype=np.float32)
    W_K, W_V = np.zeros_like(W_Q), np.zeros_like(W_Q)
    W_O = np.zeros((n_heads, d_head, d), dtype=np.float32)
    heads: list[Head] = list(plan.heads_in(layer))
    betas = []
    for hi, h in enumerate(heads):
        hw = head_weights(h, layout, plan.max_len, config.attn_scale, d_head, UNIT_ROUNDOFF[dtype])
        W_Q[hi], W_K[hi], W_V[hi], W_O[hi] = hw.W_Q, hw.W_K, hw.W_V, hw.W_O
        betas.append(hw.beta)
    W_in = np.zeros((d, d_mlp), dtype=np.float32)
    W_out = np.zeros((d_mlp, d), dtype=np.float32)
    for ui, u in enumerate(units):
        W_in[:, ui] = layout.vector(u.pre)
        for k, c in u.out:
            W_out[ui, idx[k]] += c
    pre = f"blocks.{layer}."
    w = {
        pre + "attn.W_Q": W_Q,
        pre + "attn.W_K": W_K,
        pre + "attn.W_V": W_V,
        pre + "attn.W_O": W_O,
        pre + "attn.b_Q": np.zeros((n_heads, d_head), dtype=np.float32),
        pre + "attn.b_K": np.zeros((n_heads, d_head), dtype=np.float32),
        pre + "attn.b_V": np.zeros((n_heads, d_head), dtype=np.float32),
        pre + "attn.b_O": np.zeros(d, dtype=np.float32),
        pre + "mlp.W_in": W_in,
        pre + "mlp.W_out": W_out,
        pre + "mlp.b_in": np.zeros(d_mlp, dtype=np.float32),
        pre + "mlp.b_out": np.zeros(d, dtype=np.float32),
    }
    info = LayerInfo(
        attn=tuple(
            HeadInfo(hi, h.kind, h.label, _line(h.span), round(b, 3), h.mask)
            for hi, (h, b) in enumerate(zip(heads, betas))
        ),
        mlp=tuple(
            MLPInfo(
                m.label,
                _line(m.span),
                len(t.units),
                None if heads else _after(plan, m),
                _gates(m),
            )
            for m, t in plan.mlps_in(layer)
        ),
    )
    return w, info


def _gates(job: MLPJob) -> str | None:
    """How the job reads numbers only at their extreme value, if it does."""
    if not job.gates:
        return None
    n = len(job.gates)
    what = f"{n} number{'s' if n > 1 else ''} read only at {'their' if n > 1 else 'its'} extreme"
    if job.forms is not None:
        return f"{what}, as an 'or': one step over the sum of their distances from it"
    return f"{what}, each a gate ({1 << n} tables, one per set of them)"


def _after(plan: Plan, job: MLPJob) -> str | None:
    """Why ``job`` (in a layer with no heads) runs where it does: the inputs it reads
    that the previous layer's MLP writes.  An MLP is one hidden layer, so a table cannot
    read another table's output in the same layer; the compiler folds a chain of
    elementwise operations into one table only while that table stays small."""
    written: dict[str, MLPJob] = {}
    for m in plan.mlps:
        if m.layer == job.layer - 1:
            for d in m.targets():
                written[d] = m
    parts: list[str] = []
    for rep in job.inputs:
        for lin in rep.lins():
            for src in (written[n] for n in lin.names() if n in written):
                where = f" (line {_line(src.span)})" if _line(src.span) else ""
                text = f"{src.label}{where}"
                if text not in parts:
                    parts.append(text)
    if not parts:
        return None
    return (
        f"reads {'; '.join(parts)}, which layer {job.layer - 1}'s MLP computes: one MLP is one "
        "hidden layer, and folding both into one table was refused (too many input "
        "combinations, or numbers too close together for one table to tell apart)"
    )


def unembedding(plan: Plan, layout: Layout) -> dict[str, np.ndarray]:
    """W_U: the output's one-hot rows (categorical) or its number (one logit)."""
    lins = list(plan.output.lins())
    if plan.output_kinds is not None:  # a second logit: 1/(w+1) of the aggregate's keys
        lins.append(plan.output_kinds.width.lin)
    W_U = np.stack([layout.vector(r) for r in lins], axis=1).astype(np.float32)
    return {"unembed.W_U": W_U, "unembed.b_U": np.zeros(W_U.shape[1], dtype=np.float32)}


def _line(span: object) -> int | None:
    return getattr(span, "line", None)
