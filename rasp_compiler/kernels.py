"""The fused attention the model runs when no pattern is asked for."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_CMP = {
    "<": torch.lt,
    "<=": torch.le,
    ">": torch.gt,
    ">=": torch.ge,
    "==": torch.eq,
    "!=": torch.ne,
}


def static_masks(masks: tuple[str, ...], T: int, device: torch.device) -> torch.Tensor:
    """[H, T, T] bool, True where query position q may attend key position k: for a
    mask ``CMP``, ``k CMP q`` (positions order as the indices do), and k = 0 (BOS)
    always; "all" allows every key."""
    pos = torch.arange(T, device=device)
    keys, queries = pos[None, :], pos[:, None]
    out = []
    for m in masks:
        if m == "all":
            out.append(torch.ones(T, T, dtype=torch.bool, device=device))
        else:
            out.append(_CMP[m](keys, queries) | (keys == 0))
    return torch.stack(out)


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor,
    attn_scale: float,
    static: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(q k^T / attn_scale, pad keys hidden, outside ``static`` [H, T, T]
    hidden) v, fused, for q/k/v [B, H, T, D].

    A head whose query is the same at every token position (its scores depend on
    the key alone, like the one reading the length) gives every token position the
    same output: it runs for BOS and the first token only, in O(T) instead of
    O(T^2), and the first token's row is repeated.  The test is exact equality of
    the query rows, so the scores, and the maths, are those of the full product;
    pad positions, whose outputs nothing reads, get the repeated row too.  Heads with a
    static mask always run in full."""
    scale = 1.0 / attn_scale
    mask = key_mask[:, None, None, :]  # [B, 1, 1, T]
    B, H, T, D = q.shape
    if T <= 2 or H == 0:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=_with(mask, static), scale=scale)
    rows = q[:, :, 1:, :]
    same = (rows == q[:, :, 1:2, :]).all(dim=-1) | ~key_mask[:, None, 1:]  # [B, H, T-1]
    const = same.all(dim=-1).all(dim=0)  # [H]
    if static is not None:
        const &= static.all(dim=-1).all(dim=-1)  # a masked head's rows differ
    if not bool(const.any()):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=_with(mask, static), scale=scale)
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
            q[:, o], k[:, o], v[:, o], attn_mask=_with(mask, static, o), scale=scale
        )
    return z


def _with(
    mask: torch.Tensor, static: torch.Tensor | None, heads: torch.Tensor | None = None
) -> torch.Tensor:
    """The pad mask [B, 1, 1, T] and the heads' static masks: [B, H, T, T] (or as is)."""
    if static is None:
        return mask
    return mask & (static if heads is None else static[heads])[None]
