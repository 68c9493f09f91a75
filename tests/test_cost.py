"""FLOPs per token: every product at each layer's own shape, and over nonzero rows only."""

from __future__ import annotations

import torch

from rasp_compiler import compile_program
from rasp_compiler.cost import flops_per_token


def test_dense_flops_follow_each_layers_shape_and_nonzero_flops_its_weights():
    model = compile_program("examples/sort.rasp", vocab="abcd", max_len=8)
    cfg, t = model.config, model.transformer
    L = 8
    want = 2 * cfg.d_model * cfg.d_vocab_out
    for i in range(cfg.n_layers):
        s = cfg.layer(i)
        hd = s.n_heads * s.d_head
        want += 8 * cfg.d_model * hd + 4 * (L + 1) * hd + 4 * cfg.d_model * s.d_mlp
    cost = flops_per_token(t, L)
    assert cost.dense == want
    assert 0 < cost.nonzero < cost.dense  # compiled weights are mostly zero
    # a row of W_in that holds a nonzero costs 2 * d_mlp once it is used
    mlp = next(b.mlp for b in t.blocks if b.mlp.W_in.shape[1])
    unused = int((mlp.W_in == 0).all(dim=1).nonzero()[0])
    with torch.no_grad():
        mlp.W_in[unused, 0] = 1.0
    assert flops_per_token(t, L).nonzero == cost.nonzero + 2 * mlp.W_in.shape[1]
