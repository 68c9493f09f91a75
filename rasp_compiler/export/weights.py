"""A compiled model's weights for TransformerLens: one shape for every layer, and
padding made invisible in the weights themselves.

TransformerLens runs bidirectional attention without any padding mask, so a pad key
would take part in every softmax.  :func:`tl_weights` removes pad keys in the weights:

* every head gets one extra column (index ``d_head``, so ``d_head + 1`` in all);
* its query is the constant 1 (``b_Q = 1``), at every position, pad included;
* its key is ``BIG * one - BIG`` (``W_K[one] = BIG``, ``b_K = -BIG``, ``BIG = 2**60``):
  exactly 0 at a real key, where the ``one`` direction is exactly 1, and ``-BIG`` at a
  pad key, where ``one`` is 0 (the pad id embeds to zero and no layer writes ``one``);
* its value and output rows are zero.

So a real key's score is unchanged (``1 * 0`` is an exact 0), while a pad key's score is
about ``-2**60 / attn_scale``, whose ``exp`` is exactly 0 in float32: pad keys get
weight exactly 0 from every query, as with our runtime's ``-inf`` mask, and a batch
padded on the right computes, at every position (pad positions included), what our
runtime computes with its mask.  The residual stream is unchanged (same width, same
labels).  Layers are padded to the largest shape with zero heads and units
(:func:`~rasp_compiler.model.padded_weights`); a padding head attends evenly to the
real keys and writes nothing.  A model with no heads gets one such head (TransformerLens
needs ``n_heads >= 1``).

The weights must be float32 (or bfloat16): ``2**60`` does not fit a float16.
This module needs torch only, not TransformerLens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import RaspError
from ..model import padded_weights
from ..runtime import CompiledModel


class ExportError(RaspError):
    """A model that cannot be exported (exactly), or a missing optional dependency."""

    kind = "export error"


#: the pad key's score before scaling: far below any score a real key can have
BIG = float(2**60)


@dataclass(frozen=True)
class TLShape:
    """The exported model's shape: what a TransformerLens config needs."""

    n_layers: int
    d_model: int
    n_heads: int
    d_head: int  # the model's d_head + 1 (the pad column)
    d_mlp: int  # 0: attention only
    d_vocab: int
    d_vocab_out: int
    n_ctx: int
    attn_scale: float

    def hooked_config(self) -> dict[str, Any]:
        """Keyword arguments for ``HookedTransformerConfig`` (and the bridge's config)."""
        return {
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "n_heads": self.n_heads,
            "d_head": self.d_head,
            "d_mlp": self.d_mlp if self.d_mlp else None,
            "attn_only": self.d_mlp == 0,
            "d_vocab": self.d_vocab,
            "d_vocab_out": self.d_vocab_out,
            "n_ctx": self.n_ctx,
            "act_fn": "relu",
            "normalization_type": None,
            "attention_dir": "bidirectional",
            "positional_embedding_type": "standard",
            "use_attn_scale": True,
            "attn_scale": self.attn_scale,
            "default_prepend_bos": False,
        }


def tl_weights(model: CompiledModel) -> tuple[TLShape, dict[str, torch.Tensor]]:
    """The exported shape and float32 weights by TransformerLens ``HookedTransformer``
    names (``embed.W_E``, ``blocks.0.attn.W_Q``, ...), on the CPU.

    Raises :class:`ExportError` when the model breaks what the pad column relies on (the ``one``
    direction is 1 at every real token and at BOS, 0 at pad, and written by no layer)."""
    cfg = model.config
    if cfg.head_masks is not None:
        masked = [
            f"layer {i} head {h} (key {m} query)"
            for i, row in enumerate(cfg.head_masks)
            for h, m in enumerate(row)
            if m != "all"
        ]
        raise ExportError(
            f"this model has heads that attend within a static mask ({', '.join(masked)}); "
            "TransformerLens has one attention mask per model: compile it with "
            "--no-head-masks (compile_program(..., head_masks=False)) to export it"
        )
    state = {
        k: v.detach().to("cpu", torch.float32) for k, v in model.transformer.state_dict().items()
    }
    w = padded_weights(cfg, state)
    one = _one_direction(model, w)
    H, D, F, M = max(cfg.n_heads, 1), cfg.d_head + 1, cfg.d_mlp, cfg.d_model
    scale = cfg.attn_scale
    q_factor = 1.0
    if scale == 1.0 and D > 1:  # TransformerLens 4 refuses attn_scale 1 with d_head > 1
        scale, q_factor = 2.0, 2.0  # exact: scores (2q).k / 2 == q.k
    attn_only = F == 0 and all(
        not torch.any(w[f"blocks.{i}.mlp.b_out"]) for i in range(cfg.n_layers)
    )
    if F == 0 and not attn_only:
        F = 1  # one zero unit, so the output bias is kept
    out = {
        "embed.W_E": w["embed.W_E"],
        "pos_embed.W_pos": w["pos_embed.W_pos"],
        "unembed.W_U": w["unembed.W_U"],
        "unembed.b_U": w["unembed.b_U"],
    }
    for i in range(cfg.n_layers):
        p = f"blocks.{i}."
        h = cfg.n_heads
        W_Q, W_K, W_V = (torch.zeros(H, M, D) for _ in range(3))
        b_Q, b_K, b_V = (torch.zeros(H, D) for _ in range(3))
        W_O = torch.zeros(H, D, M)
        W_Q[:h, :, :-1] = w[p + "attn.W_Q"] * q_factor
        W_K[:h, :, :-1] = w[p + "attn.W_K"]
        W_V[:h, :, :-1] = w[p + "attn.W_V"]
        b_Q[:h, :-1] = w[p + "attn.b_Q"] * q_factor
        b_K[:h, :-1] = w[p + "attn.b_K"]
        b_V[:h, :-1] = w[p + "attn.b_V"]
        W_O[:h, :-1] = w[p + "attn.W_O"]
        b_Q[:, -1] = q_factor
        W_K[:, one, -1] = BIG
        b_K[:, -1] = -BIG
        out.update(
            {
                p + "attn.W_Q": W_Q, p + "attn.W_K": W_K, p + "attn.W_V": W_V,
                p + "attn.b_Q": b_Q, p + "attn.b_K": b_K, p + "attn.b_V": b_V,
                p + "attn.W_O": W_O, p + "attn.b_O": w[p + "attn.b_O"],
            }
        )  # fmt: skip
        if not attn_only:
            W_in, W_out = torch.zeros(M, F), torch.zeros(F, M)
            b_in = torch.zeros(F)
            W_in[:, : cfg.d_mlp] = w[p + "mlp.W_in"]
            W_out[: cfg.d_mlp] = w[p + "mlp.W_out"]
            b_in[: cfg.d_mlp] = w[p + "mlp.b_in"]
            out.update(
                {
                    p + "mlp.W_in": W_in, p + "mlp.b_in": b_in,
                    p + "mlp.W_out": W_out, p + "mlp.b_out": w[p + "mlp.b_out"],
                }
            )  # fmt: skip
    shape = TLShape(
        n_layers=cfg.n_layers, d_model=M, n_heads=H, d_head=D, d_mlp=0 if attn_only else F,
        d_vocab=cfg.d_vocab, d_vocab_out=cfg.d_vocab_out, n_ctx=cfg.n_ctx, attn_scale=scale,
    )  # fmt: skip
    return shape, {k: v.contiguous() for k, v in out.items()}


def _one_direction(model: CompiledModel, w: dict[str, torch.Tensor]) -> int:
    """The index of the ``one`` direction, checked to be what the pad column needs."""
    starts = [e["start"] for e in model.spec.layout if e["name"] == "one" and e["size"] == 1]
    problem = None
    if len(starts) != 1:
        problem = "its residual layout has no 'one' direction"
    else:
        one = starts[0]
        pad = model.spec.pad_id
        W_E = w["embed.W_E"][:, one]
        live = torch.ones_like(W_E)
        live[pad] = 0
        writes = [w["pos_embed.W_pos"][:, one]] + [
            w[f"blocks.{i}.{k}"][..., one]
            for i in range(model.config.n_layers)
            for k in ("attn.W_O", "attn.b_O", "mlp.W_out", "mlp.b_out")
        ]
        if not torch.equal(W_E, live):
            problem = "the 'one' direction is not 1 at every token and 0 at pad"
        elif any(torch.any(t) for t in writes):
            problem = "a position embedding or a layer writes to the 'one' direction"
    if problem:
        raise ExportError(f"cannot make padding invisible in this model: {problem}")
    return starts[0]
