"""The fused attention the model runs when no pattern is asked for."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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


#: static masks the causal kernel runs: the keys before the query (and BOS), in the
#: input's order ("<", "<=") or, with the token positions reversed, after it (">", ">=")
TRIANGULAR = ("<", "<=", ">", ">=")
#: from how many positions (BOS included) the causal kernel pays for each mask: below
#: it the masked kernel is faster (measured at 65 and 257 positions, batches of 256 and
#: 64); reordering the positions for ">" and ">=" costs copies the others do not
CAUSAL_FROM = {"<": 256, "<=": 256, ">": 512, ">=": 512}


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor,
    attn_scale: float,
    masks: tuple[str, ...] = (),
) -> torch.Tensor:
    """softmax(q k^T / attn_scale, pad keys hidden, keys outside each head's static
    mask hidden) v, fused, for q/k/v [B, H, T, D]; ``masks`` gives each head's static
    mask (see :func:`static_masks`; empty: none).

    Three shortcuts, each taken only where the maths is that of the full product
    (the same scores, the same keys allowed; only the kernel's order of summation
    may differ, which the certification allows for):

    - A head whose query is the same at every token position (its scores depend on
      the key alone, like the one reading the length) gives every token position the
      same output: it runs for BOS and the first token only, in O(T) instead of
      O(T^2), and the first token's row is repeated (pad positions, whose outputs
      nothing reads, get it too).  Heads with a static mask always run in full.
    - A head whose queries and keys are the same for every input of the batch (they
      read positions and the length only, like reverse's, and ``run_batch`` groups
      inputs by length) has one attention pattern for the whole batch: it is computed
      once, and applied to every input's values in one product (see :func:`_shared`).
    - A head whose static mask keeps the keys on one side of the query (and BOS) runs
      the causal kernel, which skips the blocks of keys no query sees: half the work
      (see :func:`_triangular`).
    """
    scale = 1.0 / attn_scale
    masks = masks if any(m != "all" for m in masks) else ()
    # every key real (run_batch groups inputs by length): no pad mask to apply, so a
    # static mask stays [1, H, T, T] instead of being expanded to [B, H, T, T]
    mask: torch.Tensor | None = None if bool(key_mask.all()) else key_mask[:, None, None, :]
    B, H, T, D = q.shape
    if T <= 2 or H == 0:
        static = static_masks(masks, T, q.device) if masks else None  # [H, T, T]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=_with(mask, static), scale=scale)
    # each test first on a few positions (cheap), in full only where those agree
    const = _same_rows(q, key_mask, torch.tensor([1, T // 2, T - 1], device=q.device))
    if bool(const.any()):
        const &= _same_rows(q, key_mask, None)
    if masks:
        const &= torch.tensor([m == "all" for m in masks], device=q.device)
    shared = torch.zeros_like(const)
    if B > 1 and (mask is None or bool((key_mask == key_mask[:1]).all())):
        shared = _same_inputs(q[:, :, :2], k[:, :, :2]) & ~const
        if bool(shared.any()):
            shared &= _same_inputs(q, k)
    tri = torch.zeros_like(const)
    if masks:
        # pads (if any) after every input's tokens: a query before them never sees them
        padded_right = mask is None or bool((key_mask[:, 1:] <= key_mask[:, :-1]).all())
        ok: tuple[str, ...] = ("<", "<=") if padded_right else ()
        ok += (">", ">=") if mask is None else ()
        ok = tuple(m for m in ok if T >= CAUSAL_FROM[m])
        tri = torch.tensor([m in ok for m in masks], device=q.device) & ~(const | shared)
    # the [H, T, T] masks, only where a masked kernel runs (not the causal one)
    masked = any(m != "all" and not bool(tri[h]) for h, m in enumerate(masks))
    static = static_masks(masks, T, q.device) if masked else None
    if not bool(const.any()) and not bool(shared.any()) and not bool(tri.any()):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=_with(mask, static), scale=scale)
    z = q.new_empty(B, H, T, D)
    if bool(const.any()):
        c = _heads(const)
        two = F.scaled_dot_product_attention(
            _take(q, c)[:, :, :2], _take(k, c), _take(v, c), attn_mask=mask, scale=scale
        )  # [B, Hc, 2, D]: BOS and the first token
        _put(z, c, torch.cat([two[:, :, :1], two[:, :, 1:2].expand(-1, -1, T - 1, -1)], 2))
    if bool(shared.any()):
        s = _heads(shared)
        first = None if mask is None else mask[:1]
        out = _shared(_take(q[:1], s), _take(k[:1], s), _take(v, s), _with(first, static, s), scale)
        _put(z, s, out)
    for kind in TRIANGULAR:
        chosen = tri & torch.tensor([m == kind for m in masks], device=q.device) if masks else tri
        if bool(chosen.any()):
            t = _heads(chosen)
            _put(z, t, _triangular(_take(q, t), _take(k, t), _take(v, t), kind, scale))
    rest = ~(const | shared | tri)
    if bool(rest.any()):
        o = _heads(rest)
        out = F.scaled_dot_product_attention(
            _take(q, o), _take(k, o), _take(v, o), attn_mask=_with(mask, static, o), scale=scale
        )
        _put(z, o, out)
    return z


def _heads(chosen: torch.Tensor) -> slice | torch.Tensor:
    """The heads ``chosen`` ([H] bool) marks: a slice when they are consecutive (views,
    no copies), else their indices."""
    idx = chosen.nonzero().flatten()
    first, last = int(idx[0]), int(idx[-1])
    return slice(first, last + 1) if last - first + 1 == len(idx) else idx


def _take(x: torch.Tensor, heads: slice | torch.Tensor) -> torch.Tensor:
    return x[:, heads] if isinstance(heads, slice) else x.index_select(1, heads)


def _put(z: torch.Tensor, heads: slice | torch.Tensor, value: torch.Tensor) -> None:
    if isinstance(heads, slice):
        z[:, heads] = value
    else:
        z.index_copy_(1, heads, value)


def _same_rows(q: torch.Tensor, key_mask: torch.Tensor, at: torch.Tensor | None) -> torch.Tensor:
    """[H] bool: per head, is every token position's query (those ``at``, or all) the
    first token's, in every input (pad positions aside)?"""
    rows = q[:, :, 1:] if at is None else q[:, :, at]
    real = key_mask[:, 1:] if at is None else key_mask[:, at]
    same = (rows == q[:, :, 1:2]).all(dim=-1) | ~real[:, None]  # [B, H, positions]
    return same.all(dim=-1).all(dim=0)


def _same_inputs(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """[H] bool: per head, are every input's queries and keys the first input's?"""
    return ((q == q[:1]).flatten(2).all(-1) & (k == k[:1]).flatten(2).all(-1)).all(0)


def _triangular(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kind: str, scale: float
) -> torch.Tensor:
    """Heads under the static mask ``kind`` ("<", "<=", ">", ">="), through the causal
    kernel (``is_causal``: query i sees keys 0..i), for q/k/v [B, Hk, T, D].

    "<=" is the causal pattern itself (BOS is key 0).  "<" shifts the keys one place:
    query position p (p >= 1) against keys 0..p-1; the BOS query sees BOS alone, whose
    softmax weight is exactly 1, so its output is BOS's value.  ">=" and ">" run the
    same on the positions reordered BOS, T-1, ..., 1 (an involution); there the BOS
    query sees every key, which one more row computes.  For "<" and "<=", pads after
    the tokens are never seen by a token's query (only by pads', which nothing reads);
    ">" and ">=" are only run without pads."""
    if kind in (">", ">="):
        T = q.shape[2]
        order = torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(T - 1, 0, -1)])
        order = order.to(q.device)
        q, k, v = (x.index_select(2, order) for x in (q, k, v))
    if kind in ("<=", ">="):
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    else:
        z = q.new_empty(q.shape[:3] + (v.shape[3],))
        z[:, :, 1:] = F.scaled_dot_product_attention(
            q[:, :, 1:], k[:, :, :-1], v[:, :, :-1], is_causal=True, scale=scale
        )
        z[:, :, :1] = v[:, :, :1]
    if kind in (">", ">="):
        z[:, :, :1] = F.scaled_dot_product_attention(q[:, :, :1], k, v, scale=scale)
        z = z.index_select(2, order)
    return z


def _shared(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """Attention whose pattern every input of the batch shares: q, k [1, Hs, T, D] (the
    first input's), v [B, Hs, T, D], ``allowed`` broadcasting to [1, Hs, T, T] (None:
    every key).  The pattern is the first input's softmax, exactly as the unfused
    product computes it (the model's ``need_pattern`` path); its product with all B
    inputs' values is one [T, T] x [T, B * D] matmul per head."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # [1, Hs, T, T]
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    pattern = torch.softmax(scores, dim=-1)[0]  # [Hs, T, T]
    B, Hs, T, D = v.shape
    values = v.permute(1, 2, 0, 3).reshape(Hs, T, B * D)
    return torch.bmm(pattern, values).view(Hs, T, B, D).permute(2, 0, 1, 3)


def _with(
    mask: torch.Tensor | None,
    static: torch.Tensor | None,
    heads: slice | torch.Tensor | None = None,
) -> torch.Tensor | None:
    """The pad mask [B, 1, 1, T] (None: no pads) and the heads' static masks: [B, H, T,
    T], [1, H, T, T] without pads, or the pad mask as is."""
    if static is None:
        return mask
    chosen = (static if heads is None else static[heads])[None]
    return chosen if mask is None else mask & chosen


# ---------------------------------------------------------------- sparse support

#: below this fraction of rows (or columns) in use, a product reads (writes) only those
SPARSE_FRACTION = 0.5


def _support(w: torch.Tensor, dim: int) -> torch.Tensor | None:
    """The indices of ``w``'s rows (dim 1: any nonzero along the columns) or columns
    (dim 0) that hold a nonzero, or None when most do (a dense product is cheaper)."""
    used = (w != 0).any(dim=dim).nonzero().flatten()
    return used if len(used) < SPARSE_FRACTION * w.shape[1 - dim] else None


#: a weight cut down to its used rows or columns: (their indices, the cut weight), or
#: (None, None) to use it whole
Cut = tuple[torch.Tensor | None, torch.Tensor | None]


def cut(w: torch.Tensor, dim: int) -> Cut:
    """``w``'s rows (``dim`` 1) or columns (``dim`` 0) that hold a nonzero, and ``w``
    restricted to them.  Found per call: weights may change in place (even through
    ``.data``, which no version counter sees), so nothing is kept between calls; a
    caller that runs one weight on many chunks cuts it once and passes the cut."""
    idx = _support(w, dim)
    return (idx, None if idx is None else w.index_select(1 - dim, idx))


def cut_in(w: torch.Tensor, b: torch.Tensor) -> Cut:
    """:func:`cut` of ``w``'s rows for :func:`linear_in`, with the bias ``b`` as one more
    row: (the used rows' indices, ``[w[rows]; b]``), or (None, None) for the whole of
    ``w``."""
    rows, sub = cut(w, 1)
    if rows is None or sub is None:
        return None, None
    return rows, torch.cat([sub, b[None, :]], dim=0)


def linear_in(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, used: Cut | None = None
) -> torch.Tensor:
    """``x @ w + b`` for x [..., M], w [M, N], reading only the rows of ``w`` that are
    nonzero (``used``: ``cut_in(w, b)`` when the caller has it): the rows left out add
    exact zeros (x is finite), so the sums are the same sums, over fewer terms.

    With few rows in use, the bias is one more term of each sum (a column of ones
    times the row ``b``), as ``count_precision`` measures tables: ``addmm`` would first
    copy ``b`` into every row of the [positions, N] output, a pass over memory as long
    as the product itself when the product reads a handful of rows."""
    if w.shape[0] == 0 or w.shape[1] == 0 or x.numel() == 0:
        return x @ w + b
    rows, sub = used or cut_in(w, b)
    if rows is None or sub is None:
        return torch.addmm(b, x.reshape(-1, x.shape[-1]), w).view(*x.shape[:-1], w.shape[1])
    flat = x.reshape(-1, x.shape[-1])
    xs = flat.new_empty(flat.shape[0], len(rows) + 1)
    xs[:, :-1] = flat.index_select(1, rows)
    xs[:, -1] = 1.0
    return torch.mm(xs, sub).view(*x.shape[:-1], w.shape[1])


def linear_out(
    h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, used: Cut | None = None
) -> torch.Tensor:
    """``h @ w + b`` for h [..., K], w [K, M], computing only the columns of ``w`` that
    are nonzero (``used``: ``cut(w, 0)`` when the caller has it); every other column is
    ``b`` exactly, as the full product gives."""
    if w.shape[0] == 0 or w.shape[1] == 0 or h.numel() == 0:
        return h @ w + b
    cols, sub = used or cut(w, 0)
    flat = h.reshape(-1, h.shape[-1])
    if cols is None or sub is None:
        return torch.addmm(b, flat, w).view(*h.shape[:-1], w.shape[1])
    out = b.expand(flat.shape[0], w.shape[1]).clone()
    out[:, cols] = torch.addmm(b.index_select(0, cols), flat, sub)
    return out.view(*h.shape[:-1], w.shape[1])


@contextlib.contextmanager
def float32_sums(x: torch.Tensor) -> Iterator[None]:
    """While a model runs in float16 or bfloat16 on CUDA: matmuls sum in float32 and
    round once, as certification assumes (``compiler.table_rounding``), with cuBLAS's
    reduced-precision reductions off (torch allows them by default); restored after.
    CPU kernels always sum so (``tests/test_precision.py`` checks it)."""
    if x.device.type != "cuda" or x.dtype not in (torch.float16, torch.bfloat16):
        yield
        return
    m = torch.backends.cuda.matmul
    saved = (m.allow_fp16_reduced_precision_reduction, m.allow_bf16_reduced_precision_reduction)
    m.allow_fp16_reduced_precision_reduction = False
    m.allow_bf16_reduced_precision_reduction = False
    try:
        yield
    finally:
        m.allow_fp16_reduced_precision_reduction, m.allow_bf16_reduced_precision_reduction = saved
