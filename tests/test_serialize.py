"""save_model / load_model: bit-exact round trips, atomic saves, and every corruption."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from rasp_compiler import serialize
from rasp_compiler.errors import ModelFileError
from rasp_compiler.model import ModelConfig, Transformer
from rasp_compiler.runtime import CompiledModel, ModelSpec, OutputSpec
from rasp_compiler.serialize import load_model, save_model

VOCAB = ("a", 1, 2.5, False, "1")
VALUES = (True, 0, 0.1, "x", -0.0)


def make_model(seed: int = 0, output: OutputSpec | None = None, dtype: str = "float32"):
    """A random-weight model with mixed-type vocab and output atoms."""
    output = output or OutputSpec("categorical", VALUES)
    cfg = ModelConfig(
        d_model=6, n_layers=2, n_heads=2, d_head=3, d_mlp=4, d_vocab=len(VOCAB) + 2,
        d_vocab_out=output.d_vocab_out, n_ctx=5, attn_scale=0.5,
    )  # fmt: skip
    transformer = Transformer(cfg)
    rng = np.random.default_rng(seed)
    transformer.load_weights(
        {
            k: rng.normal(size=tuple(v.shape)).astype(np.float32)
            for k, v in transformer.state_dict().items()
        }
    )
    spec = ModelSpec(
        program_name="prog",
        sop_name="result",
        vocab=VOCAB,
        max_len=4,
        output=output,
        dtype=dtype,
        layout=[{"name": "one", "start": 0, "size": 1}, {"name": "tokens", "start": 1, "size": 5}],
        layers=[
            {"attn": ["head 0: select(indices, indices, ==)"], "mlp": []},
            {"attn": [], "mlp": ["map"]},
        ],
        extra={"source": "result = tokens;", "margins": {"float32": 0.25}, "big": 2**70},
    )
    return CompiledModel(transformer, spec)


def entries(parent: Path) -> list[str]:
    return sorted(os.listdir(parent))


def assert_same_model(a: CompiledModel, b: CompiledModel) -> None:
    sa, sb = a.transformer.state_dict(), b.transformer.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert a.config == b.config and a.spec == b.spec


def rewrite_header(path: Path, change) -> None:
    header = json.loads((path / "config.json").read_text())
    change(header)
    (path / "config.json").write_text(json.dumps(header))


def rewrite_weights(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write new weights and a matching hash, so only their content is wrong."""
    data = safetensors.torch.save(tensors)
    (path / "model.safetensors").write_bytes(data)
    rewrite_header(path, lambda h: h.update(weights_sha256=hashlib.sha256(data).hexdigest()))


# ---------------------------------------------------------------- round trips


def test_round_trip_is_bit_exact(tmp_path):
    model = make_model()
    save_model(model, tmp_path / "m")
    assert entries(tmp_path) == ["m"]
    assert entries(tmp_path / "m") == ["config.json", "model.safetensors"]
    loaded = load_model(tmp_path / "m")
    assert_same_model(model, loaded)
    assert loaded.dtype == torch.float32
    inputs = [["a", 1, 2.5, False], ["1"], [False, False]]
    assert loaded.run_batch(inputs) == model.run_batch(inputs)


def test_round_trip_keeps_atom_types(tmp_path):
    save_model(make_model(), tmp_path / "m")
    spec = load_model(tmp_path / "m").spec
    assert [type(t) for t in spec.vocab] == [str, int, float, bool, str]
    assert [type(t) for t in spec.token_ids] == [str, int, float, bool, str]
    assert list(spec.token_ids.values()) == [0, 1, 2, 3, 4]
    assert spec.output.values is not None
    assert [type(v) for v in spec.output.values] == [bool, int, float, str, float]
    assert str(spec.output.values[-1]) == "-0.0"
    assert spec.extra["big"] == 2**70
    header = json.loads((tmp_path / "m" / "config.json").read_text())
    assert header["format"] == "rasp-compiler-model" and header["version"] == 1
    assert header["spec"]["token_ids"][3] == [False, 3]


@pytest.mark.parametrize(
    "output",
    [
        OutputSpec("numerical", max_denominator=12),
        OutputSpec("numerical", values=(0, 0.5, True)),
        OutputSpec("numerical", integer=True),
    ],
)
def test_round_trip_numerical(tmp_path, output):
    model = make_model(output=output)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.spec.output == output
    assert [type(v) for v in loaded.spec.output.values or ()] == [
        type(v) for v in output.values or ()
    ]
    assert loaded.run("a1") == model.run("a1")


def test_load_uses_spec_dtype(tmp_path):
    model = make_model(dtype="float16").to(torch.float16)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.dtype == torch.float16
    assert_same_model(model, loaded)
    weights = safetensors.torch.load_file(tmp_path / "m" / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in weights.values())


def test_save_rejects_lossy_float64(tmp_path):
    model = make_model().to(torch.float64)
    with torch.no_grad():
        model.transformer.embed.W_E[0, 0] = 0.1  # not a float32 number
    with pytest.raises(ValueError, match="embed.W_E"):
        save_model(model, tmp_path / "m")
    assert entries(tmp_path) == []


def test_save_rejects_unserialisable_extra(tmp_path):
    model = make_model()
    model.spec.extra["oops"] = object()
    with pytest.raises(ValueError, match="JSON"):
        save_model(model, tmp_path / "m")
    assert entries(tmp_path) == []


# ---------------------------------------------------------------- atomic saving


def test_overwrite_replaces_model(tmp_path):
    save_model(make_model(seed=1), tmp_path / "m")
    new = make_model(seed=2)
    save_model(new, tmp_path / "m")
    assert_same_model(new, load_model(tmp_path / "m"))
    assert entries(tmp_path) == ["m"]


def test_refuses_to_replace_other_things(tmp_path):
    (tmp_path / "file").write_text("keep me")
    with pytest.raises(ModelFileError, match="not a model directory"):
        save_model(make_model(), tmp_path / "file")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "notes.txt").write_text("keep me")
    with pytest.raises(ModelFileError, match="notes.txt"):
        save_model(make_model(), tmp_path / "dir")
    assert (tmp_path / "file").read_text() == "keep me"
    assert entries(tmp_path / "dir") == ["notes.txt"]
    assert entries(tmp_path) == ["dir", "file"]
    (tmp_path / "empty").mkdir()
    save_model(make_model(), tmp_path / "empty")  # an empty directory is fine
    load_model(tmp_path / "empty")


@pytest.mark.parametrize("exc", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_interrupted_save_keeps_old_model(tmp_path, monkeypatch, exc):
    old = make_model(seed=1)
    save_model(old, tmp_path / "m")

    def fail(path, data):
        path.write_bytes(data[: len(data) // 2])  # half a file, then the interruption
        raise exc

    monkeypatch.setattr(serialize, "_write_weights", fail)
    with pytest.raises(type(exc)):
        save_model(make_model(seed=2), tmp_path / "m")
    assert entries(tmp_path) == ["m"]  # no temporary directories left behind
    assert_same_model(old, load_model(tmp_path / "m"))


def test_interrupted_first_save_leaves_nothing(tmp_path, monkeypatch):
    def fail(path, data):
        raise OSError("no space left on device")

    monkeypatch.setattr(serialize, "_write_weights", fail)
    with pytest.raises(OSError):
        save_model(make_model(), tmp_path / "m")
    assert entries(tmp_path) == []


def test_failed_swap_restores_old_model(tmp_path, monkeypatch):
    old = make_model(seed=1)
    save_model(old, tmp_path / "m")
    real_replace = os.replace
    calls = []

    def flaky_replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the new model moving into place
            raise OSError("simulated failure")
        real_replace(src, dst)

    monkeypatch.setattr(serialize.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="simulated"):
        save_model(make_model(seed=2), tmp_path / "m")
    monkeypatch.undo()
    assert entries(tmp_path) == ["m"]
    assert_same_model(old, load_model(tmp_path / "m"))


# ---------------------------------------------------------------- corruption


@pytest.fixture
def saved(tmp_path) -> Path:
    path = tmp_path / "m"
    save_model(make_model(), path)
    return path


def assert_load_fails(path: Path, *fragments: str) -> None:
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    msg = info.value.message
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


def test_missing_directory(tmp_path):
    assert_load_fails(tmp_path / "nope", "not found")
    (tmp_path / "f").write_text("")
    assert_load_fails(tmp_path / "f", "not a directory")


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_missing_file(saved, name):
    (saved / name).unlink()
    assert_load_fails(saved, name, "missing")


def test_invalid_json(saved):
    text = (saved / "config.json").read_text()
    (saved / "config.json").write_text(text[: len(text) // 2])
    assert_load_fails(saved, "config.json", "invalid JSON")
    (saved / "config.json").write_bytes(b"\xff\xfe{}")
    assert_load_fails(saved, "config.json")
    (saved / "config.json").write_text("[1, 2]")
    assert_load_fails(saved, "config.json", "JSON object")


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda h: h.update(format="something-else"), "format"),
        (lambda h: h.update(version=2), "version"),
        (lambda h: h.pop("weights_sha256"), "weights_sha256"),
        (lambda h: h.update(weights_sha256="abc"), "weights_sha256"),
        (lambda h: h.update(colour="red"), "colour"),
        (lambda h: h["config"].update(n_layers=-1), "n_layers"),
        (lambda h: h["config"].update(d_model="6"), "d_model"),
        (lambda h: h["config"].pop("attn_scale"), "attn_scale"),
        (lambda h: h["config"].update(d_vocab=8), "d_vocab"),
        (lambda h: h["config"].update(n_ctx=4), "n_ctx"),
        (lambda h: h["spec"].update(vocab=["a", 1, 2.5, 0, "1"]), "token_ids"),
        (lambda h: h["spec"].update(token_ids={"a": 0}), "token_ids"),
        (lambda h: h["spec"].update(bos_id=0), "bos_id"),
        (lambda h: h["spec"].update(dtype="int8"), "dtype"),
        (lambda h: h["spec"].update(max_len="4"), "max_len"),
        (lambda h: h["spec"].update(output={"encoding": "categorical"}), "values"),
        (
            lambda h: h["spec"].update(output={"encoding": "numerical", "values": None}),
            "d_vocab_out",
        ),
        (lambda h: h["spec"].update(vocab=[["a"], 1, 2.5, False, "1"]), "atom"),
        (lambda h: h["spec"].pop("layers"), "layers"),
    ],
)
def test_bad_config(saved, change, fragment):
    rewrite_header(saved, change)
    assert_load_fails(saved, "config.json", fragment)


def test_truncated_weights(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[:-10])
    assert_load_fails(saved, "model.safetensors", "SHA-256")


def test_flipped_byte(saved):
    data = bytearray((saved / "model.safetensors").read_bytes())
    data[-5] ^= 0x01
    (saved / "model.safetensors").write_bytes(bytes(data))
    assert_load_fails(saved, "model.safetensors", "corrupt")


def test_unparseable_weights_with_matching_hash(saved):
    data = b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}"
    (saved / "model.safetensors").write_bytes(data)
    rewrite_header(saved, lambda h: h.update(weights_sha256=hashlib.sha256(data).hexdigest()))
    assert_load_fails(saved, "model.safetensors", "safetensors")


def test_wrong_shape_missing_and_extra_keys(saved):
    tensors = safetensors.torch.load_file(saved / "model.safetensors")
    tensors["unembed.W_U"] = torch.zeros(6, 4)
    rewrite_weights(saved, tensors)
    assert_load_fails(saved, "model.safetensors", "unembed.W_U", "[6, 4]", "[6, 5]")
    del tensors["unembed.W_U"]
    tensors["blocks.2.attn.W_Q"] = torch.zeros(2, 6, 3)
    rewrite_weights(saved, tensors)
    assert_load_fails(saved, "model.safetensors", "unembed.W_U", "blocks.2.attn.W_Q")


def test_non_float32_weights(saved):
    tensors = safetensors.torch.load_file(saved / "model.safetensors")
    tensors["embed.W_E"] = tensors["embed.W_E"].to(torch.float16)
    rewrite_weights(saved, tensors)
    assert_load_fails(saved, "model.safetensors", "embed.W_E", "float32")
