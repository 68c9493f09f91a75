"""The TransformerLens export, run with TransformerLens (3.x: HookedTransformer; 4.x:
the native TransformerBridge): on 100 random inputs per example, in one padded batch
with no attention mask, the logits, every residual stream (``hook_resid_pre``,
``hook_resid_mid``, ``hook_resid_post``) and every attention pattern equal the runtime's
(masked) forward pass, and the decoded outputs are the runtime's.

Skipped when TransformerLens is not installed (it is an optional extra:
``pip install 'rasp-compiler[transformer-lens]'``)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch
from check import example_vocab, seeded_inputs

#: CI sets this in its TransformerLens environments: there a missing TransformerLens is a
#: failure (an import error below), not a skip
REQUIRED = bool(os.environ.get("RASP_COMPILER_REQUIRE_TRANSFORMER_LENS"))
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("transformer_lens") is None and not REQUIRED,
    reason="TransformerLens is not installed (pip install 'rasp-compiler[transformer-lens]')",
)

from rasp_compiler import compile_program, save_model  # noqa: E402
from rasp_compiler.cli import main  # noqa: E402
from rasp_compiler.errors import ModelFileError  # noqa: E402
from rasp_compiler.export import load_transformer_lens, to_transformer_lens  # noqa: E402

EXAMPLES = sorted(Path(__file__).resolve().parent.parent.glob("examples/*.rasp"))
MAX_LEN = 8
N_INPUTS = 100


def random_inputs(vocab: str, n: int, seed: str) -> list[str]:
    return seeded_inputs(vocab, n, seed, MAX_LEN)


def assert_equal_to_runtime(tl, model, inputs):
    tokens = tl.encode(inputs)
    ref_tokens, mask = model.encode(inputs)
    assert torch.equal(tokens, ref_tokens) and not mask.all()  # padded, and no mask given
    with torch.no_grad():
        logits, cache = tl.model.run_with_cache(tokens)
        ref = model.transformer(ref_tokens, mask, return_residuals=True)
    # compared at the real positions (and BOS), to 1e-3: a pad position is never read
    # (pad keys get weight 0, checked below), and a last MLP with large pre-activations
    # (long_addition's) turns two summation orders' 1e-5 into 1e-4; outputs are read by
    # rounding, and the decoded outputs are compared exactly at the end
    real_pos = mask[:, :, None]

    def close(got, want):
        torch.testing.assert_close(got * real_pos, want * real_pos, rtol=1e-5, atol=1e-3)

    close(logits, ref.logits)
    for layer in range(model.config.n_layers):
        for hook, index in (("resid_pre", 2 * layer), ("resid_post", 2 * layer + 2)):
            close(cache[f"blocks.{layer}.hook_{hook}"], ref.residuals[index])
        mid = f"blocks.{layer}.hook_resid_mid"  # absent in an attention-only HookedTransformer
        want_mid = ref.residuals[2 * layer + 1]
        if mid in cache:
            close(cache[mid], want_mid)
        else:
            close(cache[f"blocks.{layer}.hook_resid_post"], want_mid)
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]  # [B, heads, query, key]
        real = ref.patterns[layer].shape[1]
        assert real == tl.heads_per_layer[layer]
        torch.testing.assert_close(pattern[:, :real], ref.patterns[layer], rtol=1e-5, atol=1e-6)
        assert torch.all(pattern.masked_select(~mask[:, None, None, :]) == 0)  # pad keys: 0
    assert tl.decode(logits, tokens) == model.run_batch(inputs)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_transformer_lens_equals_the_runtime(path):
    vocab = example_vocab(path)
    model = compile_program(path, vocab=vocab, max_len=MAX_LEN, head_masks=False)
    tl = to_transformer_lens(model)
    assert tl.kind in ("HookedTransformer", "TransformerBridge")
    assert len(tl.labels) == model.config.d_model
    assert_equal_to_runtime(tl, model, random_inputs(vocab, N_INPUTS, path.stem))


@pytest.mark.parametrize(
    "source",
    ["x = tokens;", 'y = tokens == "a";', "w = selector_width(select(tokens, tokens, ==));"],
)
def test_models_without_layers_heads_or_units(source):
    model = compile_program(source, vocab="abc", max_len=MAX_LEN, head_masks=False)
    assert_equal_to_runtime(to_transformer_lens(model), model, random_inputs("abc", 20, source))


def test_the_command_exports_a_saved_model_that_loads(tmp_path, capsys):
    model = compile_program("examples/sort.rasp", vocab="abcd", max_len=MAX_LEN, head_masks=False)
    save_model(model, tmp_path / "sort")
    out = tmp_path / "sort_tl"
    assert (
        main(["export", str(tmp_path / "sort"), "--format", "transformer-lens", "-o", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert printed.startswith("exported 'sorted_tokens' for TransformerLens ")
    assert "outputs equal the compiled model's on 64 random padded inputs" in printed
    tl = load_transformer_lens(out)
    assert_equal_to_runtime(tl, model, random_inputs("abcd", 50, "sort-export"))
    config = json.loads((out / "config.json").read_text())
    assert config["labels"] == tl.labels


def test_the_command_compiles_a_program(tmp_path, capsys):
    out = tmp_path / "rev"
    args = ["export", "examples/reverse.rasp", "--vocab", "abc", "--max-len", "5"]
    assert main([*args, "--format", "transformer-lens", "-o", str(out)]) == 0
    assert load_transformer_lens(out).run(["abc", "ab"]) == [["c", "b", "a"], ["b", "a"]]
    capsys.readouterr()
    header = json.loads((out / "config.json").read_text())
    header["hooked_transformer_config"]["attn_scale"] *= 2
    (out / "config.json").write_text(json.dumps(header))
    with pytest.raises(ModelFileError, match="corrupt or modified"):
        load_transformer_lens(out)


def test_the_tokenizer_matches_encode():
    if importlib.util.find_spec("tokenizers") is None:
        pytest.skip("the HF tokenizers library is not installed")
    model = compile_program("examples/reverse.rasp", vocab="abcd", max_len=MAX_LEN)
    tl = to_transformer_lens(model)
    batch = tl.tokenizer.encode_batch(["abc", "d a"])
    assert [e.ids for e in batch] == tl.encode(["abc", "da"]).tolist()
    assert tl.token_ids["<bos>"] == tl.bos_id and tl.token_ids["<pad>"] == tl.pad_id
