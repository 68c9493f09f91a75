"""Exporting for TransformerLens, the parts that need no TransformerLens: the exported
weights (one shape per model, padding invisible) run through a forward pass with
TransformerLens' semantics -- no attention mask at all -- equal the runtime's masked
forward pass on padded batches; the export directory; the command without
TransformerLens.  (tests/test_export_transformer_lens.py runs the real thing.)"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch
from check import example_vocab, seeded_inputs

from rasp_compiler import compile_program, save_model
from rasp_compiler.cli import main
from rasp_compiler.errors import ModelFileError
from rasp_compiler.export import (
    BIG,
    INSTALL_HINT,
    ExportError,
    MissingDependency,
    save_transformer_lens,
    tl_weights,
    to_transformer_lens,
)

EXAMPLES = sorted(Path(__file__).resolve().parent.parent.glob("examples/*.rasp"))
MAX_LEN = 8
TL_INSTALLED = importlib.util.find_spec("transformer_lens") is not None


def random_inputs(vocab: str, n: int, seed: str) -> list[str]:
    return seeded_inputs(vocab, n, seed, MAX_LEN)


def unmasked_forward(shape, w, tokens):
    """TransformerLens' computation (bidirectional, no mask, no layer norm, scores /
    attn_scale) written out: (logits, residuals, patterns) like the runtime's."""
    T = tokens.shape[1]
    x = w["embed.W_E"][tokens] + w["pos_embed.W_pos"][:T]
    residuals, patterns = [x], []
    for i in range(shape.n_layers):
        p = f"blocks.{i}."
        q, k, v = (
            torch.einsum("btm,hmd->bhtd", x, w[p + f"attn.W_{n}"]) + w[p + f"attn.b_{n}"][:, None]
            for n in "QKV"
        )
        pattern = torch.softmax(q @ k.transpose(-1, -2) / shape.attn_scale, dim=-1)
        x = x + torch.einsum("bhtd,hdm->btm", pattern @ v, w[p + "attn.W_O"]) + w[p + "attn.b_O"]
        residuals.append(x)
        patterns.append(pattern)
        if shape.d_mlp:
            hidden = torch.relu(x @ w[p + "mlp.W_in"] + w[p + "mlp.b_in"])
            x = x + hidden @ w[p + "mlp.W_out"] + w[p + "mlp.b_out"]
        residuals.append(x)
    return x @ w["unembed.W_U"] + w["unembed.b_U"], residuals, patterns


@pytest.fixture(scope="module", params=EXAMPLES, ids=lambda p: p.stem)
def example(request):
    path: Path = request.param
    vocab = example_vocab(path)
    return path, vocab, compile_program(path, vocab=vocab, max_len=MAX_LEN, head_masks=False)


def test_exported_weights_need_no_padding_mask(example):
    path, vocab, model = example
    shape, w = tl_weights(model)
    cfg = model.config
    assert (shape.d_model, shape.n_layers, shape.d_head) == (
        cfg.d_model,
        cfg.n_layers,
        cfg.d_head + 1,
    )
    assert all(t.dtype == torch.float32 for t in w.values())
    inputs = random_inputs(vocab, 100, path.stem)
    tokens, mask = model.encode(inputs)
    assert not mask.all()  # the batch is padded
    with torch.no_grad():
        ref = model.transformer(tokens, mask, return_residuals=True)
        logits, residuals, patterns = unmasked_forward(shape, w, tokens)
    # at the real positions (and BOS); a pad position's residual is never read (no head
    # attends to it: checked below), and an MLP's steep steps may take its arbitrary values
    # to different sides of a step in the two summation orders (long_addition's last MLP).
    # The logits: a last MLP with large pre-activations (long_addition's, ~1e3) turns the
    # two summation orders' 1e-5 into 1e-4 in its output, which is read by rounding (and
    # the decoded outputs are compared exactly at the end)
    real = mask[:, :, None]
    torch.testing.assert_close(logits * real, ref.logits * real, rtol=1e-5, atol=1e-3)
    for got, want in zip(residuals, ref.residuals, strict=True):  # the same, per layer
        torch.testing.assert_close(got * real, want * real, rtol=1e-5, atol=1e-3)
    for layer, (got, want) in enumerate(zip(patterns, ref.patterns, strict=True)):
        torch.testing.assert_close(got[:, : want.shape[1]], want, rtol=1e-5, atol=1e-6)
        assert torch.all(got.masked_select(~mask[:, None, None, :]) == 0)  # exactly 0
        assert got.shape[1] == shape.n_heads, layer
    assert model.decode(logits, [len(s) for s in inputs]) == model.run_batch(inputs)


def test_a_pad_key_scores_far_below_every_real_key():
    model = compile_program("examples/reverse.rasp", vocab="abc", max_len=4)
    shape, w = tl_weights(model)
    one = [e["start"] for e in model.spec.layout if e["name"] == "one"][0]
    for i in range(shape.n_layers):
        assert torch.all(w[f"blocks.{i}.attn.W_K"][:, one, -1] == BIG)
        assert torch.all(w[f"blocks.{i}.attn.b_K"][:, -1] == -BIG)
        # the query side carries attn_scale's factor (2 / 1 for the compiler's scale 1)
        q_factor = shape.attn_scale / model.config.attn_scale
        assert torch.all(w[f"blocks.{i}.attn.b_Q"][:, -1] == q_factor)
        assert torch.all(w[f"blocks.{i}.attn.W_O"][:, -1] == 0)


def test_a_model_that_writes_the_one_direction_is_refused():
    model = compile_program("examples/reverse.rasp", vocab="abc", max_len=4)
    one = [e["start"] for e in model.spec.layout if e["name"] == "one"][0]
    with torch.no_grad():
        model.transformer.blocks[0].mlp.b_out[one] = 0.5
    with pytest.raises(ExportError, match="writes to the 'one' direction"):
        tl_weights(model)


def test_attn_scale_one_is_kept_exact():
    model = compile_program("examples/count_a.rasp", vocab="abcd", max_len=4, head_masks=False)
    shape, w = tl_weights(model)
    assert model.config.attn_scale == 1.0  # the compiler's scale (integer scores stay exact)
    # TransformerLens 4 refuses attn_scale 1 with d_head > 1: scale 2, W_Q doubled (exact)
    assert shape.d_head > 1 and shape.attn_scale == 2.0
    W_Q = model.transformer.blocks[0].attn.W_Q
    assert torch.equal(w["blocks.0.attn.W_Q"][:, :, : W_Q.shape[-1]], 2.0 * W_Q)


# ---------------------------------------------------------------- the export directory


def test_the_export_directory(tmp_path):
    model = compile_program("examples/sort.rasp", vocab="abcd", max_len=6, head_masks=False)
    shape = save_transformer_lens(model, tmp_path / "tl")
    names = sorted(p.name for p in (tmp_path / "tl").iterdir())
    assert names == ["README.md", "config.json", "model.safetensors", "tokenizer.json"]
    header = json.loads((tmp_path / "tl" / "config.json").read_text())
    assert header["format"] == "rasp-compiler-transformer-lens"
    cfg = header["hooked_transformer_config"]
    assert cfg["normalization_type"] is None and cfg["attention_dir"] == "bidirectional"
    assert cfg["attn_scale"] == shape.attn_scale and cfg["d_head"] == shape.d_head
    assert len(header["labels"]) == cfg["d_model"]
    save_transformer_lens(model, tmp_path / "tl")  # an export directory is replaced
    save_model(model, tmp_path / "model")
    with pytest.raises(ModelFileError, match="not a rasp-compiler-transformer-lens directory"):
        save_transformer_lens(model, tmp_path / "model")
    with pytest.raises(ModelFileError, match="not a rasp-compiler model directory"):
        save_model(model, tmp_path / "tl")


# ---------------------------------------------------------------- without TransformerLens


@pytest.mark.skipif(TL_INSTALLED, reason="TransformerLens is installed here")
def test_without_transformer_lens_the_api_says_how_to_install_it():
    model = compile_program("examples/reverse.rasp", vocab="abc", max_len=4)
    with pytest.raises(MissingDependency, match=re.escape(INSTALL_HINT)):
        to_transformer_lens(model)


@pytest.mark.skipif(TL_INSTALLED, reason="TransformerLens is installed here")
def test_without_transformer_lens_the_command_says_how_to_install_it(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["export", "examples/reverse.rasp", "--vocab", "abc", "--max-len", "4"]
    assert main([*args, "--format", "transformer-lens", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "export error: --format transformer-lens needs TransformerLens" in err
    assert INSTALL_HINT in err and not out.exists()


def test_export_usage_errors(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["export", "examples/reverse.rasp", "--format", "onnx", "-o", out]) == 2
    assert "invalid choice: 'onnx'" in capsys.readouterr().err
    assert main(["export", "examples/reverse.rasp", "-o", out]) == 2
    assert "--format" in capsys.readouterr().err
    if TL_INSTALLED:  # the dependency check comes first otherwise
        args = ["export", "examples/reverse.rasp", "--format", "transformer-lens", "-o", out]
        assert main([*args, "--vocab", "abc"]) == 2
        assert "needs --max-len" in capsys.readouterr().err


def test_a_model_with_masked_heads_is_refused_with_the_way_out():
    model = compile_program("examples/sort.rasp", vocab="abcd", max_len=6)
    assert model.config.head_masks is not None  # its "indices <" is a mask
    with pytest.raises(ExportError, match=r"layer 0 head 1 \(key < query\).*--no-head-masks"):
        tl_weights(model)
