"""Assembly: planned heads and MLPs -> the residual layout and TransformerLens weights.

This is the only stage (with :class:`~rasp_compiler.residual.Layout`) that deals in
integer positions.  It also keeps the BOS position's residual *known*: every head
sends the BOS query to the BOS key alone, so after a layer's attention the BOS
residual holds exactly the heads' BOS values; each MLP switches all its units off at
BOS (a large negative weight on the ``bos`` direction) and one extra unit, on only
at BOS, subtracts those values again.  So every layer starts with the BOS residual
equal to ``one + bos``, which the planner relies on when it scores the BOS key and
reads its values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import CompileError
from ..language.ir import Atom
from .emit.attention import head_weights, score_noise
from .emit.mlp import Unit, table_units
from .plan import CatRep, Head, MLPJob, NumRep, PlanError, Planner, _binding_pair
from .residual import BOS, ONE, Block, Layout, Lin
from .value_sets import convert_token

#: Unit round-off of each dtype the model may run in.
EPS = {"float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}


@dataclass(frozen=True)
class Assembled:
    weights: dict[str, np.ndarray]
    layout: Layout
    d_model: int
    n_layers: int
    n_heads: int
    d_head: int
    d_mlp: int
    attn_scale: float
    layers: list[dict]
    betas: list[list[float]]


def build_layout(planner: Planner) -> Layout:
    blocks = [Block("one", (ONE,), "1 at every position"), Block("bos", (BOS,), "1 at BOS only")]
    seen = {ONE, BOS}
    for name, dirs, desc in planner.blocks.order:
        fresh = tuple(d for d in dirs if d not in seen)
        seen.update(fresh)
        if fresh:
            blocks.append(Block(name, fresh, desc))
    return Layout(tuple(blocks))


def _eval(lin: Lin, resid: dict[str, float]) -> float:
    return sum(c * resid.get(k, 0.0) for k, c in lin.terms)


#: Largest model (parameters) the compiler builds: 2^28 float32 weights are 1 GiB.
MAX_PARAMS = 1 << 28


def _gate_at_bos(units: list[Unit], bos_resid: dict[str, float]) -> list[Unit]:
    """Every unit switched off at the BOS position (its pre-activation pushed below 0)."""
    out = []
    for u in units:
        at_bos = _eval(u.pre, bos_resid)
        if at_bos > -1.0:
            u = Unit(u.pre + Lin.unit(BOS, -(at_bos + 1.0)), u.out)
        out.append(u)
    return out


def assemble(
    planner: Planner,
    output: CatRep | NumRep,
    vocab: tuple[Atom, ...],
    max_len: int,
    dtype: str = "float32",
) -> Assembled:
    layout = build_layout(planner)
    idx = layout.index()
    d = layout.d_model
    n_layers = max(
        [h.layer + 1 for h in planner.heads]
        + [m.layer + 1 for m in planner.mlps]
        + [math.ceil(output.stage / 2)],
        default=0,
    )
    heads_by_layer: list[list[Head]] = [[] for _ in range(n_layers)]
    for h in planner.heads:
        heads_by_layer[h.layer].append(h)
    mlps_by_layer: list[list[MLPJob]] = [[] for _ in range(n_layers)]
    for m in planner.mlps:
        mlps_by_layer[m.layer].append(m)

    # MLP units per layer (BOS-gated) plus the BOS clean-up unit.
    tables, problems = {}, []
    for m in planner.mlps:
        try:
            tables[id(m)] = table_units(m)
        except PlanError as exc:
            problems.append(exc)
    if problems:
        raise CompileError(problems)
    job_units = {k: t.units for k, t in tables.items()}
    problems += [
        PlanError(
            f"this elementwise table needs pre-activations of about {tables[id(m)].magnitude:.3g}, "
            f"too large to stay exact in {dtype} at max length {max_len}",
            m.span,
        )
        for m in planner.mlps
        if tables[id(m)].magnitude * EPS[dtype] * 8 > 0.25
    ]
    problems += [
        PlanError(
            f"reads a number as large as {vmax:.4g} that must stay within {tol:.3g}; "
            f"{dtype} rounds it by about {vmax * EPS[dtype]:.3g} at max length {max_len}",
            m.span,
        )
        for m in planner.mlps
        for vmax, tol in m.tolerances
        if vmax * EPS[dtype] * 4 > tol
    ]
    problems += [
        PlanError(
            f"this attention head's scores reach about {h.magnitude:.3g}; {dtype} rounds them "
            f"by up to {score_noise(h, EPS[dtype]):.3g}, too close to the gap of {h.gap:.3g} "
            f"that separates selected keys at max length {max_len}",
            h.span,
        )
        for h in planner.heads
        if score_noise(h, EPS[dtype]) > h.gap / 4
    ]
    if isinstance(output, NumRep) and len(output.values) > 1:
        vmax, tol = _binding_pair(output.values, 4.0)
        if vmax * EPS[dtype] * 4 > tol:
            problems.append(
                PlanError(
                    f"the output's possible values near {vmax:.4g} are {4 * tol:.3g} apart; "
                    f"{dtype} cannot keep them apart at max length {max_len}",
                    None,
                )
            )
    if problems:
        raise CompileError(problems)
    units_by_layer: list[list[Unit]] = []
    for layer in range(n_layers):
        bos_resid = {ONE: 1.0, BOS: 1.0}
        dirty: dict[str, float] = {}
        for h in heads_by_layer[layer]:
            for out_dir, lin in h.values:
                dirty[out_dir] = dirty.get(out_dir, 0.0) + _eval(lin, bos_resid)
        units: list[Unit] = []
        for job in mlps_by_layer[layer]:
            units.extend(job_units[id(job)])
        units = _gate_at_bos(units, {**bos_resid, **dirty})
        dirty = {k: v for k, v in dirty.items() if v != 0.0}
        if dirty:
            units.append(Unit(Lin.unit(BOS), tuple((k, -v) for k, v in sorted(dirty.items()))))
        units_by_layer.append(units)

    n_heads = max((len(hs) for hs in heads_by_layer), default=0)
    d_head = max((max(len(h.qk), len(h.values)) for h in planner.heads), default=0)
    d_mlp = max((len(us) for us in units_by_layer), default=0)
    attn_scale = math.sqrt(d_head) if d_head else 1.0
    n_params = n_layers * (4 * n_heads * d * d_head + 2 * d * d_mlp) + (max_len + len(vocab)) * d
    if n_params > MAX_PARAMS:
        big = max(planner.mlps, key=lambda m: len(job_units[id(m)]), default=None)
        where = (
            f"; its largest MLP ({len(job_units[id(big)])} hidden units) computes {big.label}"
            if big is not None
            else ""
        )
        raise CompileError(
            [
                PlanError(
                    f"the model would have about {n_params:,} parameters (d_model {d}, "
                    f"d_mlp {d_mlp}, {n_layers} layers) at max length {max_len}, more than "
                    f"the limit of {MAX_PARAMS:,}{where}",
                    big.span if big is not None else None,
                )
            ]
        )

    w: dict[str, np.ndarray] = {}
    n_vocab = len(vocab) + 2
    W_E = np.zeros((n_vocab, d), dtype=np.float32)
    for t, tok in enumerate(vocab):
        W_E[t, idx[ONE]] = 1.0
        for conv, (vals, dirs) in planner.embedded_tokens.items():
            y = convert_token(conv, tok)
            for v, dd in zip(vals, dirs):
                if type(v) is type(y) and v == y:
                    W_E[t, idx[dd]] = 1.0
    W_E[len(vocab), idx[ONE]] = 1.0  # BOS
    W_E[len(vocab), idx[BOS]] = 1.0
    w["embed.W_E"] = W_E  # the pad id (last row) embeds to zero: pad keys are masked anyway
    W_pos = np.zeros((max_len + 1, d), dtype=np.float32)
    for p in range(1, max_len + 1):
        if "cat" in planner.index_dirs:
            W_pos[p, idx[planner.index_dirs["cat"][p - 1]]] = 1.0
        if "num" in planner.index_dirs:
            W_pos[p, idx[planner.index_dirs["num"][0]]] = float(p - 1)
        for name, values in planner.positional.items():
            W_pos[p, idx[name]] = values[p - 1]
    w["pos_embed.W_pos"] = W_pos

    layers_info: list[dict] = []
    betas: list[list[float]] = []
    for layer in range(n_layers):
        W_Q = np.zeros((n_heads, d, d_head), dtype=np.float32)
        W_K, W_V = np.zeros_like(W_Q), np.zeros_like(W_Q)
        W_O = np.zeros((n_heads, d_head, d), dtype=np.float32)
        layer_betas = []
        for hi, h in enumerate(heads_by_layer[layer]):
            hw = head_weights(h, layout, max_len, attn_scale, d_head, EPS[dtype])
            W_Q[hi], W_K[hi], W_V[hi], W_O[hi] = hw.W_Q, hw.W_K, hw.W_V, hw.W_O
            layer_betas.append(hw.beta)
        betas.append(layer_betas)
        pre = f"blocks.{layer}."
        w[pre + "attn.W_Q"], w[pre + "attn.W_K"], w[pre + "attn.W_V"], w[pre + "attn.W_O"] = (
            W_Q,
            W_K,
            W_V,
            W_O,
        )
        w[pre + "attn.b_Q"] = np.zeros((n_heads, d_head), dtype=np.float32)
        w[pre + "attn.b_K"] = np.zeros((n_heads, d_head), dtype=np.float32)
        w[pre + "attn.b_V"] = np.zeros((n_heads, d_head), dtype=np.float32)
        w[pre + "attn.b_O"] = np.zeros(d, dtype=np.float32)
        W_in, W_out = np.zeros((d, d_mlp), dtype=np.float32), np.zeros((d_mlp, d), dtype=np.float32)
        for ui, u in enumerate(units_by_layer[layer]):
            W_in[:, ui] = layout.vector(u.pre)
            for k, c in u.out:
                W_out[ui, idx[k]] += c
        w[pre + "mlp.W_in"], w[pre + "mlp.W_out"] = W_in, W_out
        w[pre + "mlp.b_in"], w[pre + "mlp.b_out"] = (
            np.zeros(d_mlp, dtype=np.float32),
            np.zeros(d, dtype=np.float32),
        )
        layers_info.append(
            {
                "attn": [
                    {
                        "head": hi,
                        "kind": h.kind,
                        "implements": h.label,
                        "line": _line(h.span),
                        "beta": round(b, 3),
                    }
                    for hi, (h, b) in enumerate(zip(heads_by_layer[layer], layer_betas))
                ],
                "mlp": [
                    {
                        "implements": m.label,
                        "line": _line(m.span),
                        "hidden_units": len(job_units[id(m)]),
                    }
                    for m in mlps_by_layer[layer]
                ],
            }
        )

    if isinstance(output, CatRep):
        W_U = np.stack([layout.vector(r) for r in output.rows], axis=1).astype(np.float32)
    else:
        W_U = layout.vector(output.lin)[:, None].astype(np.float32)
    w["unembed.W_U"] = W_U
    w["unembed.b_U"] = np.zeros(W_U.shape[1], dtype=np.float32)
    return Assembled(w, layout, d, n_layers, n_heads, d_head, d_mlp, attn_scale, layers_info, betas)


def _line(span: object) -> int | None:
    return getattr(span, "line", None)
