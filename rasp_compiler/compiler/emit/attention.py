"""Attention emission: a planned head as W_Q, W_K, W_V, W_O over named directions.

A head's score for query i and key j is ``beta * sum_t coef_t q_t(x_i) k_t(x_j)``:
each bilinear term becomes one column of W_Q (``q_t`` times ``coef_t * beta``) and of
W_K (``k_t``).  The planner guarantees that keys that must be attended score at
least ``gap`` above every key that must be ignored, so the softmax puts total weight
at most ``(n+1) * exp(-beta * gap)`` on ignored keys.  :func:`sharpness` picks the
smallest beta that makes that at most the head's allowed ``leak``.

The model divides scores by ``attn_scale``; W_Q is multiplied by it here, so the
emitted weights and the model agree on the scale (a test checks this).  The compiler
sets ``attn_scale`` to 1, so that integer scores stay integers (``score_noise``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...dtypes import UNIT_ROUNDOFF
from ..plan.types import Head
from ..residual import Layout

#: Extra nats of margin on top of the leak bound, for float rounding of the scores.
SAFETY = 2.0


#: A score is computed from a handful of products and sums, each rounded: its error is at
#: most about this many times ``magnitude * eps`` (``magnitude`` bounds the sum of its
#: terms' sizes), or ``Head.roundings`` where the plan knows fewer roundings.
ROUNDINGS = 4.0


def score_noise(head: Head, eps: float) -> float:
    """Bound on the rounding error of one score (before beta) in a dtype with unit ``eps``.

    Zero for a head whose scores are sums of integers (``Head.exact``) that the dtype
    holds exactly: every product and partial sum is then an integer times beta (a
    power of two) no larger than ``magnitude`` times beta, which the dtype represents,
    so no operation rounds (in any order of summation)."""
    if scores_exact(head, eps):
        return head.key_noise
    return head.roundings * head.magnitude * eps + head.key_noise


def scores_exact(head: Head, eps: float) -> bool:
    """Does a dtype with unit round-off ``eps`` compute ``head``'s scores exactly?"""
    return 0.0 < head.exact <= eps and head.magnitude * eps <= 1.0


#: beta times the gap for a head with no leak: exp(-128) is below float32's smallest
#: number (2^-149, about exp(-103)), so the weight of every key it ignores is 0
ZERO_LEAK = 128.0
#: largest score such a head may reach in float16 (which holds up to 65504), and in
#: bfloat16 (float32's range)
ZERO_LEAK_SCORES = 2048.0
ZERO_LEAK_SCORES_WIDE = 2.0**24


def sharpness(head: Head, max_len: int, eps: float = UNIT_ROUNDOFF["float32"]) -> float:
    """beta such that ``(max_len + 1) * exp(-beta * gap') <= leak`` with a safety margin,
    where ``gap' = gap - 2 * score_noise`` is the gap that survives rounding (the
    assembler refuses a head whose ``gap'`` is below half its gap)."""
    effective = head.gap - 2.0 * score_noise(head, eps)
    beta = (math.log((max_len + 1) / head.leak) + SAFETY) / effective
    if zero_leak(head):
        beta = max(beta, ZERO_LEAK / head.gap)
    if head.exact:  # a power of two keeps integer scores exact
        beta = 2.0 ** math.ceil(math.log2(beta))
    return beta


def zero_leak(head: Head) -> bool:
    """Does ``head`` put exactly no weight on the keys it ignores?  A head whose scores a
    narrow dtype computes exactly (``Head.exact``) scores them at least ``ZERO_LEAK``
    below the keys it selects, where the kernels' exponential underflows to 0, unless
    that beta would make its scores too large (``ZERO_LEAK_SCORES``)."""
    if not head.exact or head.gap <= 0.0:
        return False
    beta = 2.0 ** math.ceil(math.log2(ZERO_LEAK / head.gap))
    wide = head.exact > UNIT_ROUNDOFF["float16"]  # bfloat16: float32's range
    return beta * head.magnitude <= (ZERO_LEAK_SCORES_WIDE if wide else ZERO_LEAK_SCORES)


@dataclass(frozen=True)
class HeadWeights:
    W_Q: np.ndarray  # [d_model, d_head]
    W_K: np.ndarray  # [d_model, d_head]
    W_V: np.ndarray  # [d_model, d_head]
    W_O: np.ndarray  # [d_head, d_model]
    beta: float


def head_weights(
    head: Head,
    layout: Layout,
    max_len: int,
    attn_scale: float,
    d_head: int,
    eps: float = UNIT_ROUNDOFF["float32"],
) -> HeadWeights:
    """The head's four matrices, padded with zeros to ``d_head`` columns."""
    d = layout.d_model
    beta = sharpness(head, max_len, eps)
    W_Q, W_K = np.zeros((d, d_head), dtype=np.float32), np.zeros((d, d_head), dtype=np.float32)
    for t, (q, k, coef) in enumerate(head.qk):
        W_Q[:, t] = layout.vector(q) * coef * beta * attn_scale
        W_K[:, t] = layout.vector(k)
    W_V, W_O = np.zeros((d, d_head), dtype=np.float32), np.zeros((d_head, d), dtype=np.float32)
    idx = layout.index()
    for u, (out_dir, lin) in enumerate(head.values):
        W_V[:, u] = layout.vector(lin)
        W_O[u, idx[out_dir]] = 1.0
    return HeadWeights(W_Q, W_K, W_V, W_O, beta)
