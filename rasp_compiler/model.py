"""The transformer that compiled RASP programs run on: plain, exact PyTorch.

Read top-down: the config, the small modules (embeddings, attention, MLP, block,
unembedding), then :class:`Transformer`.  There is no layer norm, no dropout and no
random initialisation: every parameter starts at zero and the compiler fills it with
:meth:`Transformer.load_weights`.  Parameter names follow TransformerLens, so the
``state_dict`` keys are the architecture::

    embed.W_E                  [d_vocab, d_model]
    pos_embed.W_pos            [n_ctx, d_model]
    blocks.{l}.attn.W_Q/W_K/W_V [n_heads, d_model, d_head]
    blocks.{l}.attn.b_Q/b_K/b_V [n_heads, d_head]
    blocks.{l}.attn.W_O        [n_heads, d_head, d_model]
    blocks.{l}.attn.b_O        [d_model]
    blocks.{l}.mlp.W_in        [d_model, d_mlp]
    blocks.{l}.mlp.b_in        [d_mlp]
    blocks.{l}.mlp.W_out       [d_mlp, d_model]
    blocks.{l}.mlp.b_out       [d_model]
    unembed.W_U                [d_model, d_vocab_out]
    unembed.b_U                [d_vocab_out]

Each layer has its own shape (:class:`LayerShape`: heads, head width, MLP units), so a
layer holds exactly what it uses; ``n_heads``, ``d_head`` and ``d_mlp`` in the config
are the largest over the layers, the shape every layer has in the padded, uniform view
(:func:`padded_weights`) that formats needing one shape per model use.

``n_heads == 0`` or ``d_mlp == 0`` give zero-sized parameters (the keys still exist);
the sublayer then adds only its output bias (``b_O`` / ``b_out``), which is the same
maths with an empty sum, so there is one code path.

Attention is bidirectional (RASP selectors see every position); the only mask is the
per-key ``attention_mask`` that hides padding.  Scores are divided by the explicit
``attn_scale`` and by nothing else.  Everything is computed in the parameters' dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, NamedTuple, cast, overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError, ModelFileError
from .kernels import attend, cut, cut_in, float32_sums, linear_in, linear_out, static_masks
from .model_config import (  # noqa: F401 - re-exported: the config lives beside the model
    ACT_FNS,
    HEAD_MASKS,
    MAX_LAYERS,
    MAX_PARAMS,
    LayerShape,
    ModelConfig,
)

# ---------------------------------------------------------------- modules

#: an MLP runs over at most about this many hidden activations at a time (4 MiB in
#: float32): positions in chunks that keep them in cache
MLP_CHUNK = 1 << 20


def _zeros(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.zeros(*shape))


class Embed(nn.Module):
    """Token embedding: ids [B, T] -> [B, T, d_model]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.W_E = _zeros(cfg.d_vocab, cfg.d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.embedding(tokens, self.W_E)  # [B, T, d_model]


class PosEmbed(nn.Module):
    """Learned absolute positions: T -> [T, d_model] (position 0 is BOS)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.W_pos = _zeros(cfg.n_ctx, cfg.d_model)

    def forward(self, T: int) -> torch.Tensor:
        return self.W_pos[:T]  # [T, d_model]


class Attention(nn.Module):
    """Multi-head bidirectional attention with a per-key mask (padding) and, per head,
    an optional static mask (``masks``: see :data:`HEAD_MASKS`)."""

    def __init__(self, cfg: ModelConfig, shape: LayerShape, masks: tuple[str, ...] = ()):
        super().__init__()
        H, M, D = shape.n_heads, cfg.d_model, shape.d_head
        self.attn_scale = cfg.attn_scale
        self.masks = masks if any(m != "all" for m in masks) else ()
        self.W_Q, self.W_K, self.W_V = _zeros(H, M, D), _zeros(H, M, D), _zeros(H, M, D)
        self.b_Q, self.b_K, self.b_V = _zeros(H, D), _zeros(H, D), _zeros(H, D)
        self.W_O = _zeros(H, D, M)
        self.b_O = _zeros(M)

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor, need_pattern: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [B, T, d_model], key_mask [B, T] bool (False = never attended to).

        Returns (out [B, T, d_model], pattern [B, n_heads, T, T]); pattern[b, h, q, k]
        is the weight query position q gives key position k.  Without ``need_pattern``
        the pattern is None and the fused ``scaled_dot_product_attention`` kernel runs
        instead (same scores and softmax, without materialising [B, H, T, T]).
        """
        B, T, M = x.shape
        H, D = self.W_Q.shape[0], self.W_Q.shape[2]
        q, k, v = self._qkv(x)  # each [B, H, T, d_head]
        pattern = None
        if need_pattern:
            static = static_masks(self.masks, T, x.device) if self.masks else None  # [H, T, T]
            scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / self.attn_scale  # [B, H, T, T]
            allowed = key_mask[:, None, None, :]  # [B, 1, 1, T]: broadcast over heads, queries
            if static is not None:
                allowed = allowed & static[None]  # [B, H, T, T]
            scores = scores.masked_fill(~allowed, float("-inf"))
            pattern = torch.softmax(scores, dim=-1)  # [B, H, T, T]
            z = pattern @ v  # [B, H, T, d_head]
        else:
            z = attend(q, k, v, key_mask, self.attn_scale, self.masks)  # [B, H, T, d_head]
        # sum over heads of z_h @ W_O[h]
        out = linear_out(
            z.permute(0, 2, 1, 3).reshape(B, T, H * D), self.W_O.reshape(H * D, M), self.b_O
        )
        return out, pattern

    def residual(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """``x + self(x, key_mask, False)[0]``, the same sums, writing only the columns
        ``W_O`` writes (the heads' outputs: a few columns of the residual), as
        :meth:`MLP.residual` does."""
        B, T, M = x.shape
        H, D = self.W_Q.shape[0], self.W_Q.shape[2]
        w_o = self.W_O.reshape(H * D, M)
        cols, sub = cut(w_o, 0)
        if cols is None or sub is None or x.numel() == 0 or H == 0:
            return x + self(x, key_mask, False)[0]
        z = attend(*self._qkv(x), key_mask, self.attn_scale, self.masks)
        y = torch.addmm(
            self.b_O.index_select(0, cols), z.permute(0, 2, 1, 3).reshape(B * T, H * D), sub
        )
        out = _outside(x.reshape(B * T, M), self.b_O, cols, inplace=False)
        out.index_copy_(1, cols, out.index_select(1, cols) + y)
        return out.view(B, T, M)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v [B, H, T, d_head] of every head, from one product [M, 3 * H * D]."""
        B, T, M = x.shape
        H, D = self.W_Q.shape[0], self.W_Q.shape[2]
        w = torch.cat([self.W_Q, self.W_K, self.W_V], dim=0).permute(1, 0, 2).reshape(M, 3 * H * D)
        b = torch.cat([self.b_Q, self.b_K, self.b_V], dim=0).reshape(-1)
        qkv = linear_in(x, w, b).view(B, T, 3, H, D).permute(2, 0, 3, 1, 4)  # [3, B, H, T, D]
        return qkv[0], qkv[1], qkv[2]


def _outside(
    flat: torch.Tensor, b: torch.Tensor, cols: torch.Tensor, inplace: bool
) -> torch.Tensor:
    """``flat`` [positions, M] plus ``b`` off the columns ``cols`` (where a product's
    exact zeros leave ``x + b``), in place or as a copy: the residual a sublayer that
    writes only ``cols`` then adds to there."""
    off = b.index_fill(0, cols, 0.0)
    if inplace:
        return flat.add_(off) if bool(off.any()) else flat
    return flat + off if bool(off.any()) else flat.clone()


class MLP(nn.Module):
    """relu(x @ W_in + b_in) @ W_out + b_out, position-wise."""

    def __init__(self, cfg: ModelConfig, shape: LayerShape):
        super().__init__()
        self.W_in = _zeros(cfg.d_model, shape.d_mlp)
        self.b_in = _zeros(shape.d_mlp)
        self.W_out = _zeros(shape.d_mlp, cfg.d_model)
        self.b_out = _zeros(cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, d_model] -> [B, T, d_model].

        Positions are independent, so they run in chunks of about ``MLP_CHUNK`` hidden
        activations: a chunk's hidden units stay in cache between the two products (the
        same sums per position; a wide lookup MLP is bound by memory, not arithmetic)."""
        B, T, M = x.shape
        flat = x.reshape(B * T, M)
        rows = max(1, MLP_CHUNK // max(1, self.W_in.shape[1]))
        if flat.shape[0] <= rows:
            hidden = linear_in(flat, self.W_in, self.b_in).relu_()  # [B * T, d_mlp]
            return linear_out(hidden, self.W_out, self.b_out).view(B, T, -1)
        out = x.new_empty(B * T, self.W_out.shape[1])
        # cut once, for every chunk
        used_rows, used_cols = cut_in(self.W_in, self.b_in), cut(self.W_out, 0)
        for start in range(0, flat.shape[0], rows):
            hidden = linear_in(flat[start : start + rows], self.W_in, self.b_in, used_rows)
            out[start : start + rows] = linear_out(
                hidden.relu_(), self.W_out, self.b_out, used_cols
            )
        return out.view(B, T, -1)

    def residual(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """``x + self(x)``, the same sums, writing only the columns ``W_out`` writes
        (into ``x`` itself with ``inplace``: each chunk of positions is read before it
        is written).

        A compiled MLP writes a few of the residual's columns (its tables' outputs):
        the rest of ``x + self(x)`` is ``x + b_out`` there, since those columns of the
        product are exact zeros.  So the sum is ``x`` (plus ``b_out`` off those
        columns, where it is rarely nonzero) and, on them, ``x + (b_out + h W_out)``
        per chunk of positions, as :meth:`forward` computes each term; no [positions,
        d_model] output per chunk, and no second pass to add it to ``x``."""
        cols, sub = cut(self.W_out, 0)
        if cols is None or sub is None or x.numel() == 0:
            return x + self(x)
        B, T, M = x.shape
        flat = x.reshape(B * T, M)
        out = _outside(flat, self.b_out, cols, inplace)
        bias = self.b_out.index_select(0, cols)
        used_rows = cut_in(self.W_in, self.b_in)
        rows = max(1, MLP_CHUNK // max(1, self.W_in.shape[1]))
        for start in range(0, flat.shape[0], rows):
            part = out[start : start + rows]
            hidden = linear_in(flat[start : start + rows], self.W_in, self.b_in, used_rows)
            y = torch.addmm(bias, hidden.relu_(), sub)
            part.index_copy_(1, cols, part.index_select(1, cols) + y)
        return out.view(B, T, M)


class Block(nn.Module):
    """One layer: x + attn(x), then + mlp(x).  No layer norm."""

    def __init__(self, cfg: ModelConfig, shape: LayerShape, masks: tuple[str, ...] = ()):
        super().__init__()
        self.attn = Attention(cfg, shape, masks)
        self.mlp = MLP(cfg, shape)

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor, need_pattern: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """x [B, T, d_model] -> (after attn, after mlp, pattern [B, n_heads, T, T] or None)."""
        attn_out, pattern = self.attn(x, key_mask, need_pattern)
        x_mid = x + attn_out
        if self.mlp.W_in.shape[1] == 0:  # a layer without hidden units adds b_out alone
            return x_mid, x_mid + self.mlp.b_out, pattern
        x_out = self.mlp.residual(x_mid)
        return x_mid, x_out, pattern

    def run(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """The residual after this layer (:meth:`forward`'s second output, the same
        sums), with no pattern and no intermediate residual kept: the MLP adds into
        the attention's sum in place."""
        x_mid = self.attn.residual(x, key_mask)
        if self.mlp.W_in.shape[1] == 0:
            return x_mid + self.mlp.b_out
        return self.mlp.residual(x_mid, inplace=True)


class Unembed(nn.Module):
    """Final residual [B, T, d_model] -> logits [B, T, d_vocab_out]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.W_U = _zeros(cfg.d_model, cfg.d_vocab_out)
        self.b_U = _zeros(cfg.d_vocab_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W_U + self.b_U  # [B, T, d_vocab_out]


# ---------------------------------------------------------------- the model


class ForwardOutput(NamedTuple):
    """What ``Transformer.forward(..., return_residuals=True)`` returns.

    residuals: 2 * n_layers + 1 tensors [B, T, d_model]: after the embeddings, then
    after each attention and each MLP sublayer.  patterns: one [B, n_heads, T, T] per layer.
    """

    logits: torch.Tensor
    residuals: list[torch.Tensor]
    patterns: list[torch.Tensor]


class Transformer(nn.Module):
    """The decoder-less, norm-less transformer that compiled programs run on."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = Embed(cfg)
        self.pos_embed = PosEmbed(cfg)
        self.blocks = nn.ModuleList(
            [Block(cfg, cfg.layer(i), cfg.masks(i)) for i in range(cfg.n_layers)]
        )
        self.unembed = Unembed(cfg)

    @overload
    def forward(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = ...,
        return_residuals: Literal[False] = ...,
    ) -> torch.Tensor: ...

    @overload
    def forward(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = ...,
        *,
        return_residuals: Literal[True],
    ) -> ForwardOutput: ...

    def forward(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        return_residuals: bool = False,
    ) -> torch.Tensor | ForwardOutput:
        """tokens [B, T] int64 ids, attention_mask [B, T] bool (False hides that key).

        Returns logits [B, T, d_vocab_out], or a :class:`ForwardOutput` when
        ``return_residuals``.  A query whose every key is hidden gets NaN.
        """
        B, T = self._check_input(tokens, attention_mask)
        if attention_mask is None:
            attention_mask = torch.ones(B, T, dtype=torch.bool, device=tokens.device)
        x = self.embed(tokens) + self.pos_embed(T)  # [B, T, d_model]
        residuals, patterns = [x], []
        with float32_sums(x):
            for block in self.blocks:
                if not return_residuals:
                    x = cast(Block, block).run(x, attention_mask)
                    continue
                x_mid, x, pattern = block(x, attention_mask, return_residuals)
                residuals += [x_mid, x]
                patterns.append(pattern)
            logits = self.unembed(x)  # [B, T, d_vocab_out]
        if return_residuals:
            return ForwardOutput(logits, residuals, patterns)
        return logits

    def _check_input(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> tuple[int, int]:
        """Raise InputError unless tokens is [B, T] int64 in range and T <= n_ctx."""
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise InputError(
                f"tokens must be a [B, T] int64 tensor, got {tokens.dtype} {list(tokens.shape)}"
            )
        B, T = tokens.shape
        if T > self.cfg.n_ctx:
            raise InputError(f"sequence of {T} positions is longer than n_ctx = {self.cfg.n_ctx}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.cfg.d_vocab):
            raise InputError(
                f"token ids must lie in [0, {self.cfg.d_vocab}), got {tokens.min()}..{tokens.max()}"
            )
        if attention_mask is not None and (
            attention_mask.shape != tokens.shape or attention_mask.dtype != torch.bool
        ):
            raise InputError(
                f"attention_mask must be a bool tensor shaped like tokens {list(tokens.shape)}, "
                f"got {attention_mask.dtype} {list(attention_mask.shape)}"
            )
        return B, T

    @torch.no_grad()
    def load_weights(self, weights: Mapping[str, np.ndarray | torch.Tensor]) -> None:
        """Copy ``weights`` into the parameters (cast to their dtype and device).

        The key set must equal the ``state_dict``'s and every shape must match;
        otherwise ``ModelFileError`` lists every missing, unexpected and mis-shaped key.
        """
        params = dict(self.named_parameters())
        missing = sorted(params.keys() - weights.keys())
        unexpected = sorted(weights.keys() - params.keys())
        problems = []
        if missing:
            problems.append(f"missing keys {missing}")
        if unexpected:
            problems.append(f"unexpected keys {unexpected}")
        tensors = {}
        for name in sorted(params.keys() & weights.keys()):
            value = weights[name]
            if not isinstance(value, np.ndarray | torch.Tensor):
                problems.append(f"{name} is a {type(value).__name__}, not an array")
                continue
            try:
                t = torch.as_tensor(value)
            except (TypeError, RuntimeError):
                problems.append(f"{name} has non-numeric dtype {value.dtype}")
                continue
            if t.is_complex():
                problems.append(f"{name} has complex dtype {t.dtype}")
            elif tuple(t.shape) != tuple(params[name].shape):
                problems.append(
                    f"{name} has shape {list(t.shape)}, expected {list(params[name].shape)}"
                )
            tensors[name] = t
        if problems:
            raise ModelFileError("weights do not match the model config: " + "; ".join(problems))
        for name, t in tensors.items():
            params[name].copy_(t)

    def count_params(self) -> int:
        """The number of scalar parameters."""
        return sum(p.numel() for p in self.parameters())


def padded_weights(
    cfg: ModelConfig, weights: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The weights of a per-layer-shaped model in the uniform view (``cfg.padded()``):
    every layer zero-padded to ``n_heads`` heads of width ``d_head`` and ``d_mlp``
    units.  The padded model computes the same function (padding heads score 0 and
    write nothing; padding units have zero weights)."""
    full = cfg.padded()
    out: dict[str, torch.Tensor] = {}
    for name, t in weights.items():
        target = _uniform_shape(full, name, tuple(t.shape))
        if target == tuple(t.shape):
            out[name] = t
            continue
        padded = t.new_zeros(target)
        padded[tuple(slice(0, n) for n in t.shape)] = t
        out[name] = padded
    return out


def _uniform_shape(cfg: ModelConfig, name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    if not name.startswith("blocks."):
        return shape
    H, M, D, F = cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_mlp
    leaf = name.rsplit(".", 1)[1]
    return {
        "W_Q": (H, M, D), "W_K": (H, M, D), "W_V": (H, M, D),
        "b_Q": (H, D), "b_K": (H, D), "b_V": (H, D),
        "W_O": (H, D, M), "b_O": (M,),
        "W_in": (M, F), "b_in": (F,), "W_out": (F, M), "b_out": (M,),
    }[leaf]  # fmt: skip
