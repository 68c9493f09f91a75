"""The fused attention the model runs when no pattern is asked for."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor, attn_scale: float
) -> torch.Tensor:
    """softmax(q k^T / attn_scale, pad keys hidden) v, fused, for q/k/v [B, H, T, D].

    A head whose query is the same at every token position (its scores depend on
    the key alone, like the one reading the length) gives every token position the
    same output: it runs for BOS and the first token only, in O(T) instead of
    O(T^2), and the first token's row is repeated.  The test is exact equality of
    the query rows, so the scores, and the maths, are those of the full product;
    pad positions, whose outputs nothing reads, get the repeated row too."""
    scale = 1.0 / attn_scale
    mask = key_mask[:, None, None, :]  # [B, 1, 1, T]
    B, H, T, D = q.shape
    if T <= 2 or H == 0:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    rows = q[:, :, 1:, :]
    same = (rows == q[:, :, 1:2, :]).all(dim=-1) | ~key_mask[:, None, 1:]  # [B, H, T-1]
    const = same.all(dim=-1).all(dim=0)  # [H]
    if not bool(const.any()):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    z = q.new_empty(B, H, T, D)
    c = const.nonzero().flatten()
    two = F.scaled_dot_product_attention(
        q[:, c, :2], k[:, c], v[:, c], attn_mask=mask, scale=scale
    )  # [B, Hc, 2, D]: BOS and the first token
    z[:, c, :1] = two[:, :, :1]
    z[:, c, 1:] = two[:, :, 1:2]
    if not bool(const.all()):
        o = (~const).nonzero().flatten()
        z[:, o] = F.scaled_dot_product_attention(
            q[:, o], k[:, o], v[:, o], attn_mask=mask, scale=scale
        )
    return z
