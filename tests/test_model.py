"""The transformer (model.py) and the compiled-model runtime (runtime.py).

The forward pass is checked against a plain numpy re-implementation; the runtime on
small models whose weights are written by hand.
"""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
import torch

from rasp_compiler.errors import InputError, ModelFileError
from rasp_compiler.model import ForwardOutput, ModelConfig, Transformer
from rasp_compiler.runtime import CompiledModel, ModelSpec, OutputSpec

# ---------------------------------------------------------------- helpers


def make_config(**kw) -> ModelConfig:
    base = dict(
        d_model=6, n_layers=2, n_heads=2, d_head=3, d_mlp=5, d_vocab=7, d_vocab_out=4,
        n_ctx=6, attn_scale=1.0,
    )  # fmt: skip
    return ModelConfig(**{**base, **kw})


def random_weights(model: Transformer, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        name: rng.normal(0, 0.5, size=tuple(p.shape)).astype(np.float32)
        for name, p in model.state_dict().items()
    }


def random_model(cfg: ModelConfig, seed: int = 0) -> tuple[Transformer, dict[str, np.ndarray]]:
    model = Transformer(cfg)
    weights = random_weights(model, seed)
    model.load_weights(weights)
    return model, weights


def np_forward(w: dict[str, np.ndarray], cfg: ModelConfig, tokens: np.ndarray, mask: np.ndarray):
    """The reference: the same maths in float64 numpy, written out step by step."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    B, T = tokens.shape
    x = w["embed.W_E"][tokens] + w["pos_embed.W_pos"][:T]
    residuals, patterns = [x], []
    for layer in range(cfg.n_layers):
        p = f"blocks.{layer}."
        out = np.zeros_like(x) + w[p + "attn.b_O"]
        pattern = np.zeros((B, cfg.n_heads, T, T))
        for h in range(cfg.n_heads):
            q = x @ w[p + "attn.W_Q"][h] + w[p + "attn.b_Q"][h]  # [B, T, d_head]
            k = x @ w[p + "attn.W_K"][h] + w[p + "attn.b_K"][h]
            v = x @ w[p + "attn.W_V"][h] + w[p + "attn.b_V"][h]
            scores = q @ k.transpose(0, 2, 1) / cfg.attn_scale  # [B, Tq, Tk]
            scores = np.where(mask[:, None, :], scores, -np.inf)
            e = np.exp(scores - scores.max(axis=-1, keepdims=True))
            pattern[:, h] = e / e.sum(axis=-1, keepdims=True)
            out = out + (pattern[:, h] @ v) @ w[p + "attn.W_O"][h]
        x = x + out
        residuals.append(x)
        hidden = np.maximum(x @ w[p + "mlp.W_in"] + w[p + "mlp.b_in"], 0)
        x = x + hidden @ w[p + "mlp.W_out"] + w[p + "mlp.b_out"]
        residuals.append(x)
        patterns.append(pattern)
    logits = x @ w["unembed.W_U"] + w["unembed.b_U"]
    return logits, residuals, patterns


def batch_with_padding(cfg: ModelConfig, lengths: list[int], seed: int = 1):
    """Random token ids [B, T] and a key mask that is False after each row's length."""
    rng = np.random.default_rng(seed)
    T = max(lengths)
    tokens = rng.integers(0, cfg.d_vocab, size=(len(lengths), T))
    mask = np.arange(T)[None, :] < np.array(lengths)[:, None]
    return tokens, mask


def assert_plain(atoms) -> None:
    for a in atoms:
        assert type(a) in (str, int, float, bool), (a, type(a))


# ---------------------------------------------------------------- config


def test_config_round_trip():
    cfg = make_config(attn_scale=2.5)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["act_fn"] == "relu"


def test_config_int_scale_becomes_float():
    cfg = ModelConfig.from_dict({**make_config().to_dict(), "attn_scale": 2})
    assert cfg.attn_scale == 2.0 and type(cfg.attn_scale) is float


@pytest.mark.parametrize(
    "change",
    [
        {"d_model": 0},
        {"n_layers": -1},
        {"n_heads": 1.0},
        {"d_mlp": True},
        {"d_vocab": "7"},
        {"attn_scale": 0.0},
        {"attn_scale": float("inf")},
        {"attn_scale": True},
        {"act_fn": "gelu"},
        {"colour": "red"},
    ],
)
def test_config_from_bad_dict(change):
    with pytest.raises(ModelFileError):
        ModelConfig.from_dict({**make_config().to_dict(), **change})


def test_config_from_dict_missing_field():
    d = make_config().to_dict()
    del d["n_ctx"]
    with pytest.raises(ModelFileError, match="n_ctx"):
        ModelConfig.from_dict(d)
    with pytest.raises(ModelFileError):
        ModelConfig.from_dict([1, 2])  # type: ignore[arg-type]


# ---------------------------------------------------------------- parameters


def test_state_dict_names_and_shapes():
    cfg = make_config()
    H, M, D, F = cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_mlp
    expected = {
        "embed.W_E": (cfg.d_vocab, M),
        "pos_embed.W_pos": (cfg.n_ctx, M),
        "unembed.W_U": (M, cfg.d_vocab_out),
        "unembed.b_U": (cfg.d_vocab_out,),
    }
    for layer in range(cfg.n_layers):
        p = f"blocks.{layer}."
        expected |= {
            p + "attn.W_Q": (H, M, D), p + "attn.W_K": (H, M, D), p + "attn.W_V": (H, M, D),
            p + "attn.b_Q": (H, D), p + "attn.b_K": (H, D), p + "attn.b_V": (H, D),
            p + "attn.W_O": (H, D, M), p + "attn.b_O": (M,),
            p + "mlp.W_in": (M, F), p + "mlp.b_in": (F,),
            p + "mlp.W_out": (F, M), p + "mlp.b_out": (M,),
        }  # fmt: skip
    model = Transformer(cfg)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == expected
    assert all((v == 0).all() for v in model.state_dict().values())  # no random init
    assert model.count_params() == sum(int(np.prod(s)) for s in expected.values())


def test_load_weights_copies_numpy_and_torch():
    model, weights = random_model(make_config())
    for name, value in model.state_dict().items():
        assert np.array_equal(value.numpy(), weights[name])
    as_torch = {k: torch.from_numpy(v.astype(np.float64)) for k, v in weights.items()}
    model2 = Transformer(make_config())
    model2.load_weights(as_torch)
    for name, value in model2.state_dict().items():
        assert value.dtype == torch.float32
        assert np.array_equal(value.numpy(), weights[name])


def test_load_weights_reports_every_problem():
    model = Transformer(make_config())
    weights = random_weights(model)
    del weights["blocks.1.mlp.b_in"]
    weights["blocks.0.attn.W_Z"] = np.zeros(3, np.float32)
    weights["unembed.W_U"] = np.zeros((4, 6), np.float32)
    with pytest.raises(ModelFileError) as info:
        model.load_weights(weights)
    msg = info.value.message
    assert "blocks.1.mlp.b_in" in msg and "blocks.0.attn.W_Z" in msg
    assert "unembed.W_U" in msg and "[4, 6]" in msg and "[6, 4]" in msg
    assert all((v == 0).all() for v in model.state_dict().values())  # nothing copied


def test_load_weights_rejects_non_arrays():
    model = Transformer(make_config())
    weights: dict = random_weights(model)
    weights["embed.W_E"] = [[0.0] * 6] * 7
    with pytest.raises(ModelFileError, match="embed.W_E"):
        model.load_weights(weights)
    weights["embed.W_E"] = np.full((7, 6), "x", dtype=object)
    with pytest.raises(ModelFileError, match="embed.W_E"):
        model.load_weights(weights)


# ---------------------------------------------------------------- forward pass


@pytest.mark.parametrize("attn_scale", [1.0, 0.37, 4.0])
def test_forward_matches_numpy_reference(attn_scale):
    cfg = make_config(attn_scale=attn_scale)
    model, weights = random_model(cfg, seed=3)
    tokens, mask = batch_with_padding(cfg, [6, 3, 1, 5])
    with torch.no_grad():
        out = model(torch.from_numpy(tokens), torch.from_numpy(mask), return_residuals=True)
    assert isinstance(out, ForwardOutput)
    logits, residuals, patterns = np_forward(weights, cfg, tokens, mask)
    assert out.logits.shape == (4, 6, cfg.d_vocab_out)
    np.testing.assert_allclose(out.logits.numpy(), logits, rtol=1e-5, atol=1e-4)
    assert len(out.residuals) == 2 * cfg.n_layers + 1
    for got, want in zip(out.residuals, residuals, strict=True):
        assert got.shape == (4, 6, cfg.d_model)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-4)
    assert len(out.patterns) == cfg.n_layers
    for got, want in zip(out.patterns, patterns, strict=True):
        assert got.shape == (4, cfg.n_heads, 6, 6)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
        hidden = ~torch.from_numpy(mask)[:, None, None, :].expand_as(got)
        assert (got[hidden] == 0).all()  # padded keys get exactly zero weight


def test_forward_without_mask_is_all_true_mask():
    cfg = make_config()
    model, weights = random_model(cfg, seed=4)
    tokens, _ = batch_with_padding(cfg, [5, 5])
    with torch.no_grad():
        logits = model(torch.from_numpy(tokens))
    want, _, _ = np_forward(weights, cfg, tokens, np.ones_like(tokens, dtype=bool))
    np.testing.assert_allclose(logits.numpy(), want, rtol=1e-5, atol=1e-4)


def test_padding_does_not_change_real_positions():
    cfg = make_config()
    model, _ = random_model(cfg, seed=5)
    tokens, mask = batch_with_padding(cfg, [6, 2])
    other = tokens.copy()
    other[1, 2:] = (other[1, 2:] + 1) % cfg.d_vocab  # different ids under the padding
    with torch.no_grad():
        a = model(torch.from_numpy(tokens), torch.from_numpy(mask))
        b = model(torch.from_numpy(other), torch.from_numpy(mask))
        alone = model(torch.from_numpy(tokens[1:, :2]))
    assert torch.equal(a[1, :2], b[1, :2])
    torch.testing.assert_close(a[1, :2], alone[0], rtol=1e-5, atol=1e-5)


def test_attn_scale_divides_scores_and_nothing_else():
    """One head whose scores are known: q = 1, k_j = j, so the pattern is softmax(j / scale)."""
    for scale in (1.0, 2.0, 0.5):
        cfg = ModelConfig(
            d_model=2, n_layers=1, n_heads=1, d_head=1, d_mlp=0, d_vocab=1, d_vocab_out=1,
            n_ctx=4, attn_scale=scale,
        )  # fmt: skip
        model = Transformer(cfg)
        w = {k: np.zeros(tuple(v.shape), np.float32) for k, v in model.state_dict().items()}
        w["pos_embed.W_pos"][:, 0] = [0, 1, 2, 3]  # dim 0: the position
        w["pos_embed.W_pos"][:, 1] = 1  # dim 1: a constant one
        w["blocks.0.attn.W_Q"][0, 1, 0] = 1  # q = 1
        w["blocks.0.attn.W_K"][0, 0, 0] = 1  # k = position
        model.load_weights(w)
        with torch.no_grad():
            out = model(torch.zeros(1, 4, dtype=torch.long), return_residuals=True)
        want = torch.softmax(torch.arange(4.0) / scale, dim=0)
        for q in range(4):
            torch.testing.assert_close(out.patterns[0][0, 0, q], want, rtol=1e-6, atol=1e-7)


def test_zero_layers():
    cfg = make_config(n_layers=0)
    model, w = random_model(cfg)
    tokens = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        out = model(tokens, return_residuals=True)
    x = w["embed.W_E"][[1, 2, 3]] + w["pos_embed.W_pos"][:3]
    want = x @ w["unembed.W_U"] + w["unembed.b_U"]
    np.testing.assert_allclose(out.logits[0].numpy(), want, rtol=1e-6, atol=1e-6)
    assert len(out.residuals) == 1 and out.patterns == []


def test_zero_heads_and_zero_mlp_width():
    cfg = make_config(n_heads=0, d_mlp=0)
    model, w = random_model(cfg)
    assert model.state_dict()["blocks.0.attn.W_Q"].shape == (0, 6, 3)
    assert model.state_dict()["blocks.0.mlp.W_in"].shape == (6, 0)
    tokens, mask = batch_with_padding(cfg, [4, 2])
    with torch.no_grad():
        out = model(torch.from_numpy(tokens), torch.from_numpy(mask), return_residuals=True)
    logits, residuals, _ = np_forward(w, cfg, tokens, mask)
    np.testing.assert_allclose(out.logits.numpy(), logits, rtol=1e-5, atol=1e-5)
    assert out.patterns[0].shape == (2, 0, 4, 4)
    # attention adds only b_O, the MLP only b_out
    for i, bias in [(1, "blocks.0.attn.b_O"), (2, "blocks.0.mlp.b_out")]:
        step = out.residuals[i] - out.residuals[i - 1]
        torch.testing.assert_close(step, torch.from_numpy(w[bias]).expand(2, 4, 6))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_dtypes(dtype):
    cfg = make_config()
    model, _ = random_model(cfg, seed=6)
    tokens, mask = batch_with_padding(cfg, [6, 3])
    tokens_t, mask_t = torch.from_numpy(tokens), torch.from_numpy(mask)
    with torch.no_grad():
        want = model(tokens_t, mask_t)
        out = model.to(dtype)(tokens_t, mask_t, return_residuals=True)
    assert out.logits.dtype == dtype and all(p.dtype == dtype for p in out.patterns)
    assert torch.isfinite(out.logits).all()
    hidden = ~mask_t[:, None, None, :].expand_as(out.patterns[0])
    assert all((p[hidden] == 0).all() for p in out.patterns)  # -inf masking in every dtype
    torch.testing.assert_close(out.logits.float(), want, rtol=0.1, atol=0.2)


def test_forward_input_errors():
    model = Transformer(make_config())
    with pytest.raises(InputError, match="n_ctx"):
        model(torch.zeros(1, 7, dtype=torch.long))
    with pytest.raises(InputError, match="token ids"):
        model(torch.tensor([[0, 7]]))
    with pytest.raises(InputError):
        model(torch.zeros(1, 3, dtype=torch.int32))
    with pytest.raises(InputError, match="attention_mask"):
        model(torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 2, dtype=torch.bool))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    cfg = make_config()
    model, weights = random_model(cfg, seed=7)
    tokens, mask = batch_with_padding(cfg, [6, 3, 1])
    want, _, _ = np_forward(weights, cfg, tokens, mask)
    model = model.to("cuda")
    with torch.no_grad():
        got = model(torch.from_numpy(tokens).cuda(), torch.from_numpy(mask).cuda())
    assert got.device.type == "cuda"
    np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-3, atol=1e-3)
    for dtype in (torch.float16, torch.bfloat16):
        with torch.no_grad():
            out = model.to(dtype)(torch.from_numpy(tokens).cuda(), torch.from_numpy(mask).cuda())
        assert out.dtype == dtype and torch.isfinite(out).all()
    compiled = fraction_of_a_model().to("cuda")
    assert compiled.device.type == "cuda"
    assert compiled.run_batch(["ab", "aaab", "b"]) == [compiled.run(x) for x in ["ab", "aaab", "b"]]


# ---------------------------------------------------------------- runtime: hand-built models


def identity_model(vocab=("a", "b", "c"), values=None, max_len=5) -> CompiledModel:
    """Categorical output = the token itself (or values[token id]); no layers.

    The residual is one-hot over input ids; W_U maps vocab id i to output logit i.
    """
    n = len(vocab)
    cfg = ModelConfig(
        d_model=n + 2, n_layers=0, n_heads=0, d_head=0, d_mlp=0, d_vocab=n + 2,
        d_vocab_out=n, n_ctx=max_len + 1, attn_scale=1.0,
    )  # fmt: skip
    model = Transformer(cfg)
    w = {k: np.zeros(tuple(v.shape), np.float32) for k, v in model.state_dict().items()}
    w["embed.W_E"] = np.eye(n + 2, dtype=np.float32)
    w["unembed.W_U"][:n, :] = np.eye(n, dtype=np.float32)
    spec = ModelSpec(
        program_name="identity",
        sop_name="out",
        vocab=tuple(vocab),
        max_len=max_len,
        output=OutputSpec("categorical", tuple(values or vocab)),
    )
    return CompiledModel.build(cfg, spec, w)


def fraction_of_a_model(max_len: int = 8, output: OutputSpec | None = None) -> CompiledModel:
    """Numerical output at every position = (#'a' in the input) / (n + 1).

    Residual dims: 0 = is 'a', 1 = is BOS, 2 = the answer.  One head has zero scores, so
    it attends uniformly to BOS and the n tokens (never to padding) and averages 'is a'.
    Decoding with max_denominator = max_len + 1 recovers the fraction exactly.
    """
    vocab = ("a", "b")
    cfg = ModelConfig(
        d_model=3, n_layers=1, n_heads=1, d_head=1, d_mlp=0, d_vocab=4, d_vocab_out=1,
        n_ctx=max_len + 1, attn_scale=1.0,
    )  # fmt: skip
    model = Transformer(cfg)
    w = {k: np.zeros(tuple(v.shape), np.float32) for k, v in model.state_dict().items()}
    w["embed.W_E"][0, 0] = 1  # 'a'
    w["embed.W_E"][2, 1] = 1  # BOS
    w["blocks.0.attn.W_V"][0, 0, 0] = 1  # v = is 'a'
    w["blocks.0.attn.W_O"][0, 0, 2] = 1  # -> dim 2
    w["unembed.W_U"][2, 0] = 1
    spec = ModelSpec(
        program_name="frac",
        sop_name="frac_a",
        vocab=vocab,
        max_len=max_len,
        output=output or OutputSpec("numerical", max_denominator=max_len + 1),
        layout=[
            {"name": "tokens:a", "start": 0, "size": 1},
            {"name": "bos", "start": 1, "size": 1},
            {"name": "frac_a", "start": 2, "size": 1},
        ],
        layers=[{"attn": [{"head": 0, "op": "numerical mean of tokens == 'a'"}], "mlp": []}],
    )
    return CompiledModel.build(cfg, spec, w)


def frac(s: str) -> float:
    return float(Fraction(s.count("a"), len(s) + 1))


def test_identity_model_runs():
    m = identity_model()
    assert m.run("cab") == ["c", "a", "b"]
    assert m.run(["b"]) == ["b"]
    assert m.run_batch(["a", "abcab", "cc"]) == [["a"], list("abcab"), ["c", "c"]]


def test_categorical_values_keep_their_types():
    m = identity_model(vocab=(1, 2.5, "x", False), values=(True, 0, 1.5, "s"))
    out = m.run([1, 2.5, "x", False, False])
    assert out == [True, 0, 1.5, "s", "s"]
    assert [type(a) for a in out] == [bool, int, float, str, str]
    assert m.run([np.int64(1), np.float64(2.5)]) == [True, 0]  # numpy scalars are accepted
    assert_plain(m.run_batch([[1], ["x", 2.5]])[1])
    with pytest.raises(InputError):
        m.run([0])  # 0 == False in Python, but it is not the token False


def test_fraction_model_numerical_output():
    m = fraction_of_a_model()
    inputs = ["a", "ab", "bbb", "aaaaaaaa", "abab", "b"]
    for s in inputs:
        out = m.run(s)
        assert out == [frac(s)] * len(s), s
        assert_plain(out)
    assert m.run_batch(inputs) == [m.run(s) for s in inputs]


def test_run_batch_masks_padding_and_chunks():
    m = fraction_of_a_model()
    inputs = ["abababab", "a", "bb", "aab", "b", "aaaa", "ba"]
    want = [[frac(s)] * len(s) for s in inputs]
    assert m.run_batch(inputs) == want
    assert m.run_batch(inputs, chunk_size=2) == want
    assert m.run_batch([]) == []


def test_numerical_decoding_modes():
    raw = OutputSpec("numerical")
    assert raw.decode_number(0.25) == 0.25
    ints = OutputSpec("numerical", integer=True)
    assert ints.decode_number(2.9999) == 3 and type(ints.decode_number(2.9999)) is int
    assert ints.decode_number(-1.2) == -1
    nearest = OutputSpec("numerical", values=(3, 0.5, 1, False))
    assert nearest.values == (False, 0.5, 1, 3)  # sorted
    assert nearest.decode_number(0.9) == 1 and type(nearest.decode_number(0.9)) is int
    assert nearest.decode_number(-7) is False
    assert nearest.decode_number(100) == 3
    assert nearest.decode_number(0.75) == 0.5  # a tie goes to the smaller
    fractions = OutputSpec("numerical", max_denominator=7)
    assert fractions.decode_number(2 / 7 + 1e-4) == 2 / 7
    assert type(fractions.decode_number(1.0)) is float
    assert np.isnan(fractions.decode_number(float("nan")))
    assert ints.decode_number(float("inf")) == float("inf")


def test_batched_nearest_decoding_equals_one_number_at_a_time():
    rng = np.random.default_rng(7)
    for _ in range(50):
        pool = list(rng.integers(-30, 30, 12)) + list(rng.integers(-30, 30, 6) / 7)
        values = tuple({(int(v) if float(v).is_integer() else float(v)) for v in pool})
        spec = OutputSpec("numerical", values=values + (False,))
        x = torch.tensor(rng.uniform(-40, 40, (3, 12)), dtype=torch.float32)
        x[0, 3], x[1, 2], x[2, 1] = float("nan"), float("inf"), 0.5  # non-finite, a tie
        lengths = [11, 6, 1]
        got = spec.decode_logits(x[:, :, None], lengths)
        for b, n in enumerate(lengths):
            want = [spec.decode_number(v) for v in x[b, 1 : 1 + n].tolist()]
            assert [repr(v) for v in got[b]] == [repr(v) for v in want]


def test_numerical_model_with_values_and_integer():
    m = fraction_of_a_model(output=OutputSpec("numerical", values=(0, 0.5, 1)))
    assert m.run("ab") == [0.5, 0.5]  # 1/3 -> nearest 0.5
    assert m.run("bb") == [0, 0] and type(m.run("bb")[0]) is int
    m = fraction_of_a_model(output=OutputSpec("numerical", integer=True))
    assert m.run("aaa") == [1, 1, 1]  # 3/4 rounds to 1


def test_encode_layout():
    m = identity_model()
    tokens, mask = m.encode(["ab", "c", "abc"])
    bos, pad = m.spec.bos_id, m.spec.pad_id
    assert (bos, pad) == (3, 4)
    assert tokens.tolist() == [[bos, 0, 1, pad], [bos, 2, pad, pad], [bos, 0, 1, 2]]
    assert mask.tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    assert tokens.dtype == torch.long and mask.dtype == torch.bool


def test_encode_errors():
    m = identity_model(max_len=4)
    with pytest.raises(InputError, match="empty"):
        m.run("")
    with pytest.raises(InputError, match="empty"):
        m.run([])
    with pytest.raises(InputError) as info:
        m.run("abxc")
    msg = info.value.message
    assert "'x'" in msg and "position 2" in msg and "'a', 'b', 'c'" in msg
    with pytest.raises(InputError, match="at most 4"):
        m.run("abcab")
    with pytest.raises(InputError, match="input 1"):
        m.run_batch(["ab", "z"])
    with pytest.raises(InputError):
        m.run(17)  # type: ignore[arg-type]
    ints = identity_model(vocab=(1, 2, 3))
    with pytest.raises(InputError, match="'1'"):
        ints.run("12")  # a str is characters, and '1' is not the int 1
    with pytest.raises(InputError, match="1.0"):
        ints.run([1.0])  # types are kept apart
    with pytest.raises(InputError, match="True"):
        ints.run([True])


def test_spec_validation():
    out = OutputSpec("categorical", ("x",))
    spec = ModelSpec("p", "s", ("a", "b"), 3, out)
    assert spec.token_ids == {"a": 0, "b": 1} and spec.d_vocab == 4
    with pytest.raises(ValueError, match="token_ids"):
        ModelSpec("p", "s", ("a", "b"), 3, out, token_ids={"a": 1, "b": 0})
    with pytest.raises(ValueError, match="duplicate"):
        ModelSpec("p", "s", ("a", "a"), 3, out)
    with pytest.raises(ValueError, match="equal"):
        ModelSpec("p", "s", (1, True), 3, out)
    with pytest.raises(ValueError, match="max_len"):
        ModelSpec("p", "s", ("a",), 0, out)
    with pytest.raises(ValueError, match="dtype"):
        ModelSpec("p", "s", ("a",), 3, out, dtype="int8")
    with pytest.raises(TypeError):
        ModelSpec("p", "s", (("a",),), 3, out)
    with pytest.raises(ValueError):
        OutputSpec("categorical", ())
    with pytest.raises(ValueError):
        OutputSpec("numerical", values=("a",))
    with pytest.raises(ValueError):
        OutputSpec("numerical", max_denominator=0)
    with pytest.raises(ValueError):
        OutputSpec("ordinal", (1,))
    with pytest.raises(ValueError, match="d_vocab"):
        CompiledModel(Transformer(make_config()), spec)


def test_spec_dict_round_trip():
    m = fraction_of_a_model()
    d = m.spec.to_dict()
    assert d["token_ids"] == [["a", 0], ["b", 1]]
    assert (d["bos_id"], d["pad_id"]) == (2, 3)
    assert d["output"] == {
        "encoding": "numerical", "values": None, "max_denominator": 9, "integer": False
    }  # fmt: skip
    assert ModelSpec.from_dict(d) == m.spec
    assert identity_model().spec.to_dict()["output"] == {
        "encoding": "categorical", "values": ["a", "b", "c"]
    }  # fmt: skip


def test_device_dtype_and_summary():
    m = fraction_of_a_model()
    assert m.device == torch.device("cpu") and m.dtype == torch.float32
    m.to(torch.float16)
    assert m.dtype == torch.float16
    assert m.run("aab") == [frac("aab")] * 3
    text = m.summary()
    assert "frac_a" in text and "tokens:a" in text and "layer 0" in text
    assert "numerical mean of tokens == 'a'" in text
    assert f"{m.transformer.count_params():,}" in text
    assert "d_model 3" in text and "n_layers 1" in text


# ------------------------------------------------------------ per-layer shapes


def test_compiled_layers_hold_only_what_they_use_and_equal_the_padded_view():
    from rasp_compiler import compile_program
    from rasp_compiler.model import padded_weights

    model = compile_program("examples/sort.rasp", vocab="abcd", max_len=16)
    cfg = model.config
    shapes = cfg.layer_shapes
    assert shapes is not None and len(shapes) == cfg.n_layers
    assert any(s.d_mlp < cfg.d_mlp or s.n_heads < cfg.n_heads for s in shapes)
    assert cfg.n_params == model.transformer.count_params() < cfg.padded().n_params
    padded = Transformer(cfg.padded())
    padded.load_weights(padded_weights(cfg, model.transformer.state_dict()))
    tokens = torch.tensor([[4, 2, 0, 1, 1, 3, 5], [4, 3, 3, 0, 5, 5, 5]])  # BOS = 4, pad = 5
    mask = tokens != 5
    torch.testing.assert_close(model.transformer(tokens, mask), padded(tokens, mask))


def test_layer_shapes_round_trip_and_are_checked():
    from rasp_compiler.model import LayerShape

    base = dict(d_model=4, n_layers=2, n_heads=2, d_head=3, d_mlp=5, d_vocab=3,
                d_vocab_out=2, n_ctx=4, attn_scale=1.0)  # fmt: skip
    cfg = ModelConfig(**base, layer_shapes=(LayerShape(2, 3, 0), LayerShape(0, 0, 5)))
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.layer(1) == LayerShape(0, 0, 5)
    assert Transformer(cfg).count_params() == cfg.n_params
    with pytest.raises(ValueError, match="larger than the model"):
        ModelConfig(**base, layer_shapes=(LayerShape(3, 3, 0), LayerShape(0, 0, 5)))
    with pytest.raises(ValueError, match="entries for 2 layers"):
        ModelConfig(**base, layer_shapes=(LayerShape(1, 1, 1),))
    with pytest.raises(ModelFileError):
        ModelConfig.from_dict({**base, "layer_shapes": [{"n_heads": 1}, {"n_heads": 1}]})


def test_a_head_with_one_query_for_every_token_runs_once_per_sequence():
    """kernels.attend: heads whose query rows agree at the tokens (length-style heads)
    are computed for BOS and the first token only; real positions equal the full kernel."""
    import torch.nn.functional as F

    from rasp_compiler.kernels import attend

    gen = torch.Generator().manual_seed(3)
    B, H, T, D = 3, 3, 9, 4
    q = torch.randn(B, H, T, D, generator=gen)
    q[:, 0, 1:] = q[:, 0, 1:2]  # head 0: the same query at every token (BOS differs)
    q[:, 2, 1:] = torch.tensor([0.5, -1.0, 2.0, 0.0])  # head 2 too
    k, v = torch.randn(B, H, T, D, generator=gen), torch.randn(B, H, T, D, generator=gen)
    lengths = torch.tensor([8, 5, 1])
    mask = torch.arange(T)[None, :] <= lengths[:, None]  # BOS and the tokens
    q[1, 0, 7:] = 9.0  # a pad query may differ: nothing reads it
    full = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :], scale=0.5)
    got = attend(q, k, v, mask, attn_scale=2.0)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(got[b, :, : n + 1], full[b, :, : n + 1], rtol=1e-6, atol=1e-6)
    q[0, 0, 3, 0] += 1.0  # a token whose query differs: head 0 runs in full again
    full = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :], scale=0.5)
    torch.testing.assert_close(attend(q, k, v, mask, 2.0)[0], full[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("pads", [False, True])
def test_a_head_the_whole_batch_shares_computes_its_pattern_once(pads, monkeypatch):
    """kernels.attend: a head whose queries and keys agree across the batch (positional
    heads, inputs grouped by length) computes one pattern; every input's output equals
    the full kernel's, beside other heads (a const-query one, a token-dependent one,
    one with a static mask), with or without pad keys the inputs share."""
    import torch.nn.functional as F

    from rasp_compiler import kernels
    from rasp_compiler.kernels import attend, static_masks

    gen = torch.Generator().manual_seed(5)
    B, H, T, D = 4, 4, 11, 3
    q = torch.randn(B, H, T, D, generator=gen)
    k = torch.randn(B, H, T, D, generator=gen)
    v = torch.randn(B, H, T, D, generator=gen)
    for h in (0, 3):  # heads 0 and 3 shared by the batch (3 under a static mask)
        q[:, h], k[:, h] = q[:1, h], k[:1, h]
    q[:, 1, 1:] = q[:, 1, 1:2]  # head 1: one query for every token
    mask = torch.ones(B, T, dtype=torch.bool)
    if pads:
        mask[:, 9:] = False  # the same pads in every input
    masks = ("all", "all", "all", "<")
    static = static_masks(masks, T, q.device)
    calls = []
    shared = kernels._shared
    monkeypatch.setattr(kernels, "_shared", lambda *a: calls.append(a[0].shape[1]) or shared(*a))
    got = attend(q, k, v, mask, attn_scale=1.0, masks=masks)
    allowed = mask[:, None, None, :] & static[None]
    full = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=1.0)
    real = int(mask[0].sum())
    torch.testing.assert_close(got[:, :, :real], full[:, :, :real], rtol=1e-5, atol=1e-6)
    assert calls == [2]  # heads 0 and 3, in one call
    q[2, 0, 4, 1] += 0.25  # one input's query differs: head 0 is no longer shared
    calls.clear()
    got = attend(q, k, v, mask, attn_scale=1.0, masks=masks)
    full = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=1.0)
    torch.testing.assert_close(got[:, :, :real], full[:, :, :real], rtol=1e-5, atol=1e-6)
    assert calls == [1]


def test_products_read_and_write_only_the_nonzero_rows_and_columns():
    """kernels.linear_in / linear_out equal the dense products (the terms left out are
    exact zeros), including columns with only a bias, and notice weights changed in place."""
    from rasp_compiler.kernels import linear_in, linear_out

    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 7, 40, generator=gen)
    w = torch.zeros(40, 30)
    w[[2, 9, 31]] = torch.randn(3, 30, generator=gen)  # 3 of 40 rows used
    b = torch.randn(30, generator=gen)
    torch.testing.assert_close(linear_in(x, w, b), x @ w + b, rtol=1e-6, atol=1e-6)
    h = torch.randn(3, 7, 30, generator=gen)
    w_out = torch.zeros(30, 40)
    w_out[:, [0, 17]] = torch.randn(30, 2, generator=gen)  # 2 of 40 columns written
    b_out = torch.zeros(40)
    b_out[5] = 2.5  # a column with a bias only
    got = linear_out(h, w_out, b_out)
    torch.testing.assert_close(got, h @ w_out + b_out, rtol=1e-6, atol=1e-6)
    assert torch.all(got[..., 5] == 2.5) and torch.all(got[..., 6] == 0)
    with torch.no_grad():
        w_out[:, 6] = 1.0  # changed in place: the cached support must follow
    torch.testing.assert_close(linear_out(h, w_out, b_out), h @ w_out + b_out)
    empty = torch.zeros(40, 0)
    assert linear_in(x, empty, torch.zeros(0)).shape == (3, 7, 0)


def test_run_batch_keeps_each_pass_under_its_memory_budget_and_the_input_order():
    from rasp_compiler import compile_program

    model = compile_program("examples/sort.rasp", vocab="abcd", max_len=12)
    rng = np.random.default_rng(3)
    inputs = ["".join(rng.choice(list("abcd"), size=int(n))) for n in rng.integers(1, 13, 40)]
    want = [sorted(x) for x in inputs]
    seen: list[int] = []
    forward = model.transformer.forward

    def counting(tokens, mask=None, **kw):
        seen.append(tokens.shape[0])
        return forward(tokens, mask, **kw)

    model.transformer.forward = counting  # type: ignore[method-assign]
    assert model.run_batch(inputs) == want
    assert seen == [40]
    seen.clear()
    budget = 3 * model.activation_bytes(13)  # three inputs of full length per pass
    assert model.run_batch(inputs, memory_budget=budget) == want
    assert max(seen) >= 3 and sum(seen) == 40 and len(seen) < 40  # short ones share passes
    seen.clear()
    assert model.run_batch(inputs, memory_budget=1) == want  # one input per pass at least
    assert seen == [1] * 40
    assert model.activation_bytes(13) > model.activation_bytes(7) > 0


@pytest.mark.parametrize("b_off", [False, True])
def test_an_mlp_adds_to_the_residual_only_where_it_writes(b_off, monkeypatch):
    # MLP.residual writes x + mlp(x) on the columns W_out writes (and x + b_out off them):
    # the same sums as x + mlp(x), bit for bit, in chunks of positions or not
    import rasp_compiler.model as model_module
    from rasp_compiler.model_config import LayerShape

    cfg = make_config(d_model=40, d_mlp=7)
    mlp = model_module.MLP(cfg, LayerShape(n_heads=1, d_head=3, d_mlp=7))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        mlp.W_in.copy_(torch.randn(40, 7, generator=g) * (torch.rand(40, 1, generator=g) < 0.2))
        mlp.b_in.copy_(torch.randn(7, generator=g))
        w_out = torch.zeros(7, 40)
        w_out[:, [3, 17, 18]] = torch.randn(7, 3, generator=g)  # 3 of 40 columns
        mlp.W_out.copy_(w_out)
        mlp.b_out.copy_(torch.randn(40, generator=g) * (torch.rand(40, generator=g) < 0.5))
        if not b_off:
            mlp.b_out[[i for i in range(40) if i not in (3, 17, 18)]] = 0.0
    x = torch.randn(3, 50, 40, generator=g)
    assert torch.equal(mlp.residual(x), x + mlp(x))
    monkeypatch.setattr(model_module, "MLP_CHUNK", 7 * 16)  # 16 positions a chunk
    assert torch.equal(mlp.residual(x), x + mlp(x))


@pytest.mark.parametrize("pads", [False, True])
@pytest.mark.parametrize("kind", ["<", "<=", ">", ">=", "==", "!="])
def test_a_head_under_a_one_sided_mask_runs_the_causal_kernel_with_the_same_output(
    pads, kind, monkeypatch
):
    """kernels.attend: heads whose static mask keeps the keys before (or after) the
    query run the causal kernel (keys shifted for "<", positions reversed for ">" and
    ">="; here at every length, by default from a few hundred positions); every
    token's output equals the fully masked kernel's, beside an unmasked head, with pads
    after the tokens (one-sided masks after the query then take the masked kernel),
    BOS's row included."""
    import torch.nn.functional as F

    from rasp_compiler import kernels
    from rasp_compiler.kernels import attend, static_masks

    calls = []
    tri = kernels._triangular
    monkeypatch.setattr(kernels, "_triangular", lambda *a: calls.append(a[3]) or tri(*a))
    monkeypatch.setattr(kernels, "CAUSAL_FROM", dict.fromkeys(kernels.TRIANGULAR, 0))
    gen = torch.Generator().manual_seed(11)
    B, H, T, D = 3, 3, 10, 4
    q, k, v = (torch.randn(B, H, T, D, generator=gen) for _ in range(3))
    mask = torch.ones(B, T, dtype=torch.bool)
    if pads:
        mask[1, 7:] = False
        mask[2, 4:] = False
    masks = (kind, "all", kind)
    allowed = mask[:, None, None, :] & static_masks(masks, T, q.device)[None]
    full = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=0.5)
    got = attend(q, k, v, mask, attn_scale=2.0, masks=masks)
    for b in range(B):
        real = int(mask[b].sum())
        torch.testing.assert_close(got[b, :, :real], full[b, :, :real], rtol=1e-5, atol=1e-6)
    causal = kind in ("<", "<=") or (kind in (">", ">=") and not pads)
    assert calls == ([kind] if causal else [])  # both masked heads in one call


@pytest.mark.parametrize("program", ["sort", "histogram_bos", "dyck2"])
def test_the_fast_path_adds_only_the_columns_each_layer_writes_with_the_same_sums(program):
    # Transformer.forward without residuals runs Block.run: each head's output added on
    # the columns W_O writes, the MLP added in place; every layer's output is bit for
    # bit that of Block.forward (which adds whole products and keeps x + attn(x))
    import random
    import re
    from pathlib import Path

    from rasp_compiler import compile_program

    path = Path(__file__).resolve().parent.parent / "examples" / f"{program}.rasp"
    vocab = re.search(r"# Vocabulary: (\S+)", path.read_text()).group(1)
    model = compile_program(str(path), vocab=vocab, max_len=12)
    rng = random.Random(4)
    inputs = [[rng.choice(vocab) for _ in range(rng.randint(1, 12))] for _ in range(20)]
    tokens, mask = model.encode(inputs)
    net = model.transformer
    with torch.no_grad():
        x = net.embed(tokens) + net.pos_embed(tokens.shape[1])
        for block in net.blocks:
            _, want, _ = block(x, mask, False)  # x + attn(x) and + mlp(.), whole products
            got = block.run(x.clone(), mask)
            assert torch.equal(got, want)
            x = want
