"""What a forward pass costs: floating-point operations per input token.

Two counts, both per token of an input of a given length (BOS included among the keys):

* ``dense``: every product at each layer's own shape (its heads, head width and MLP
  units), as a plain implementation computes them;
* ``nonzero``: only the rows of ``W_Q``/``W_K``/``W_V``/``W_in`` and the columns of
  ``W_O``/``W_out`` that hold a nonzero (what :mod:`.kernels` reads and writes; the
  rest are products with exact zeros).

A multiply-add counts 2.  Attention scores and the weighted sum of values count
``4 * (length + 1) * d_head`` per head and query; biases, softmax and ReLU are left out
(they are linear in the activations, not in the weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch

from .model import Block, Transformer


@dataclass(frozen=True)
class Cost:
    dense: float  # FLOP per token at each layer's own shape
    nonzero: float  # FLOP per token over the nonzero rows and columns only


def _rows(w: torch.Tensor) -> int:
    """Rows of ``w`` [K, N] holding a nonzero."""
    return int((w != 0).any(dim=1).sum()) if w.numel() else 0


def flops_per_token(transformer: Transformer, length: int) -> Cost:
    """FLOPs per token of an input of ``length`` tokens (see the module docstring)."""
    keys = length + 1  # BOS
    dense = nonzero = 0.0
    M = transformer.cfg.d_model
    with torch.no_grad():
        for module in transformer.blocks:
            block = cast(Block, module)
            a, m = block.attn, block.mlp
            H, _, D = a.W_Q.shape
            if H and D:
                qkv = torch.cat([a.W_Q, a.W_K, a.W_V], dim=0).permute(1, 0, 2).reshape(M, -1)
                wo = a.W_O.reshape(H * D, M)
                dense += float(2 * M * 3 * H * D + 2 * H * D * M + 4 * keys * H * D)
                nonzero += float(2 * _rows(qkv) * 3 * H * D + 2 * H * D * _rows(wo.T))
                nonzero += float(4 * keys * H * D)
            F = int(m.W_in.shape[1])
            if F:
                dense += float(4 * M * F)
                nonzero += float(2 * _rows(m.W_in) * F + 2 * F * _rows(m.W_out.T))
        V = transformer.unembed.W_U.shape[1]
        dense += 2 * M * V
        nonzero += 2 * _rows(transformer.unembed.W_U) * V
    return Cost(dense, nonzero)


def matmul_rate(n: int = 512, repeats: int = 5) -> float:
    """This machine's float32 matmul rate on the CPU (FLOP/s, best of ``repeats``)."""
    import time

    a, b = torch.rand(n, n), torch.rand(n, n)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b)
        best = min(best, (time.perf_counter() - t) / 4)
    return 2.0 * n**3 / best
