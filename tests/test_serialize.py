"""save_model / load_model: bit-exact round trips, atomic saves, and every corruption."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from rasp_compiler import cli, serialize
from rasp_compiler.compiler import assemble
from rasp_compiler.errors import ModelFileError
from rasp_compiler.model import ModelConfig, Transformer
from rasp_compiler.runtime import CompiledModel, ModelSpec, OutputSpec
from rasp_compiler.serialize import load_model, save_model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
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


def tamper_header(path: Path, change) -> None:
    """Change config.json as an editor would, leaving its sha256 as it was."""
    header = json.loads((path / "config.json").read_text())
    change(header)
    (path / "config.json").write_text(json.dumps(header))


def rewrite_header(path: Path, change) -> None:
    """Change config.json and recompute its sha256, so only the content is wrong."""

    def change_and_rehash(header):
        change(header)
        if "sha256" in header:
            header["sha256"] = serialize.header_sha256(header)

    tamper_header(path, change_and_rehash)


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
    assert entries(tmp_path / "m") == [
        "README.md", "config.json", "model.safetensors", "tokenizer.json"
    ]  # fmt: skip
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
    assert header["format"] == "rasp-compiler-model" and header["version"] == 2
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
    with pytest.raises(ModelFileError, match="not a rasp-compiler model directory"):
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


# ---------------------------------------------------------------- what saving may replace


def test_never_deletes_directories_named_like_model_files(tmp_path):
    target = tmp_path / "data"
    for name in ("config.json", "model.safetensors"):
        (target / name).mkdir(parents=True)
        (target / name / "precious.txt").write_text("keep me")
    with pytest.raises(ModelFileError, match="config.json is not a regular file"):
        save_model(make_model(), target)
    for name in ("config.json", "model.safetensors"):
        assert (target / name / "precious.txt").read_text() == "keep me"
    assert entries(tmp_path) == ["data"]


@pytest.mark.parametrize(
    "files, fragment",
    [
        ({"config.json": '{"model_type": "bert"}', "model.safetensors": "w"}, "not one of ours"),
        ({"config.json": '{"format": "rasp-compiler-mod', "model.safetensors": "w"}, "not one"),
        ({"config.json": '["rasp-compiler-model"]'}, "not one of ours"),
        ({"model.safetensors": "weights"}, "no config.json"),
        ({"config.json": "{}", "model.safetensors": "w", "README": "x"}, "README"),
    ],
)
def test_never_replaces_foreign_model_files(tmp_path, files, fragment):
    target = tmp_path / "other"
    target.mkdir()
    for name, text in files.items():
        (target / name).write_text(text)
    with pytest.raises(ModelFileError, match=fragment):
        save_model(make_model(), target)
    assert {name: (target / name).read_text() for name in entries(target)} == files
    assert entries(tmp_path) == ["other"]


@pytest.mark.skipif(os.name != "posix", reason="symlinks and FIFOs")
def test_never_follows_links_or_opens_fifos_when_replacing(tmp_path):
    save_model(make_model(), tmp_path / "real")
    links = tmp_path / "links"
    links.mkdir()
    for name in ("config.json", "model.safetensors"):
        (links / name).symlink_to(tmp_path / "real" / name)
    with pytest.raises(ModelFileError, match="not a regular file"):
        save_model(make_model(seed=3), links)
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    with pytest.raises(ModelFileError, match="not a rasp-compiler model directory"):
        save_model(make_model(seed=3), tmp_path / "alias")
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "config.json")
    with pytest.raises(ModelFileError, match="not a regular file"):
        save_model(make_model(seed=3), fifo)
    assert_same_model(make_model(), load_model(tmp_path / "real"))
    assert entries(tmp_path) == ["alias", "fifo", "links", "real"]
    assert entries(links) == ["config.json", "model.safetensors"]


def test_replaces_our_directories_of_any_version(tmp_path):
    path = tmp_path / "m"
    save_model(make_model(seed=1), path)
    tamper_header(path, lambda h: (h.update(version=1), h.pop("sha256")))  # as version 1 wrote
    save_model(make_model(seed=2), path)
    assert_same_model(make_model(seed=2), load_model(path))
    (path / "model.safetensors").unlink()  # weights lost: config.json still says it is ours
    save_model(make_model(seed=3), path)
    assert_same_model(make_model(seed=3), load_model(path))
    assert entries(tmp_path) == ["m"]


def test_files_added_during_a_save_are_kept(tmp_path, monkeypatch):
    path = tmp_path / "m"
    save_model(make_model(seed=1), path)
    real_write = serialize._write_weights

    def write_and_meddle(p, data):
        real_write(p, data)
        (path / "notes.txt").write_text("keep me")  # after the check, before the swap

    monkeypatch.setattr(serialize, "_write_weights", write_and_meddle)
    save_model(make_model(seed=2), path)
    assert_same_model(make_model(seed=2), load_model(path))
    [kept] = tmp_path.glob(".m.rasp-compiler-old-*")
    assert entries(kept) == ["notes.txt"]  # our old files went, theirs stayed
    assert (kept / "notes.txt").read_text() == "keep me"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize(
    "umask, dir_mode, file_mode",
    [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600), (0o002, 0o775, 0o664)],
)
def test_saving_honours_the_umask(tmp_path, umask, dir_mode, file_mode):
    path = tmp_path / "models" / "m"
    old = os.umask(umask)
    try:
        save_model(make_model(), path)
        save_model(make_model(), path)  # replacing too
    finally:
        os.umask(old)
    for p in (path.parent, path):
        assert stat.S_IMODE(os.stat(p).st_mode) == dir_mode, p
    for name in ("config.json", "model.safetensors"):
        assert stat.S_IMODE(os.stat(path / name).st_mode) == file_mode, name


KILLED_SAVE = """
import os, signal, sys
from rasp_compiler import cli, serialize
from rasp_compiler.compiler import assemble

def die(path, data):
    path.write_bytes(data[: len(data) // 2])
    os.kill(os.getpid(), signal.SIGKILL)

serialize._write_weights = die
serialize.save_model(serialize.load_model(sys.argv[1]), sys.argv[2])
"""


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and PIDs")
def test_the_next_save_cleans_up_after_a_killed_one(tmp_path):
    save_model(make_model(seed=1), tmp_path / "src")
    out = tmp_path / "out"
    save_model(make_model(seed=2), out / "m")
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_SAVE, str(tmp_path / "src"), str(out / "m")],
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [left] = [n for n in entries(out) if n != "m"]
    assert left.startswith(".m.rasp-compiler-tmp-")  # obviously ours
    assert_same_model(make_model(seed=2), load_model(out / "m"))  # the old model is intact

    dead = dead_pid()
    stale_old = out / f".m.rasp-compiler-old-{dead}-{'2' * 32}"  # killed between renames
    stale_old.mkdir()
    (stale_old / "config.json").write_text("{}")
    (stale_old / "model.safetensors").write_bytes(b"")
    keep = {
        f".m.rasp-compiler-tmp-{os.getppid()}-{'0' * 32}": "a save still running",
        f".m.rasp-compiler-old-{dead}-{'1' * 32}": "someone else's file inside",
        f".n.rasp-compiler-tmp-{dead}-{'3' * 32}": "another model's",
        f".m.rasp-compiler-tmp-{dead}": "not our pattern",
    }
    for name in keep:
        (out / name).mkdir()
        (out / name / "notes.txt").write_text("keep me")
    save_model(make_model(seed=3), out / "m")
    assert entries(out) == sorted([*keep, "m"])
    for name in keep:
        assert entries(out / name) == ["notes.txt"]
    assert_same_model(make_model(seed=3), load_model(out / "m"))


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
        (lambda h: h.update(version=3), "version"),
        (lambda h: h.update(version="2"), "version"),
        (lambda h: h.update(version=2.0), "version"),
        (lambda h: h.pop("sha256"), "sha256"),
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


# ---------------------------------------------------------------- config.json is covered


def swap_vocab(h):
    """Swap the tokens "a" and "1" (ids 0 and 4) consistently: a well-formed spec."""
    vocab = h["spec"]["vocab"]
    vocab[0], vocab[4] = vocab[4], vocab[0]
    h["spec"]["token_ids"] = [[t, i] for i, t in enumerate(vocab)]


def swap_values(h):
    values = h["spec"]["output"]["values"]
    values[0], values[3] = values[3], values[0]


TAMPERINGS = {
    "attn_scale": lambda h: h["config"].update(attn_scale=h["config"]["attn_scale"] * 100),
    "dtype": lambda h: h["spec"]["dtype"] == "float32" and h["spec"].update(dtype="float16"),
    "vocab": swap_vocab,
    "output values": swap_values,
    "output encoding": lambda h: h["spec"]["output"].update(
        encoding="numerical", values=[0, 1, 2, 3, 4], max_denominator=None, integer=False
    ),
    "program name": lambda h: h["spec"].update(program_name="other"),
    "extra": lambda h: h["spec"]["extra"].update(big=2**70 + 1),
}


@pytest.mark.parametrize("field", sorted(TAMPERINGS))
def test_a_modified_config_is_refused(saved, field):
    tamper_header(saved, TAMPERINGS[field])
    assert_load_fails(saved, "config.json", "modified config")


@pytest.mark.parametrize("field", ["attn_scale", "dtype", "vocab", "output values"])
def test_the_hash_is_what_stops_the_change(saved, field):
    """Recomputing the hash (which an editor does not) lets each change load -- and the
    model then answers differently, so every one of these bytes decides outputs."""
    inputs = [list(t) for n in (1, 2, 3) for t in itertools.product(VOCAB, repeat=n)]
    before = load_model(saved)
    rewrite_header(saved, TAMPERINGS[field])
    after = load_model(saved)
    if field == "dtype":
        assert (before.dtype, after.dtype) == (torch.float32, torch.float16)
    else:
        assert after.run_batch(inputs) != before.run_batch(inputs)


def test_weights_from_another_model_are_refused(tmp_path, saved):
    save_model(make_model(seed=5), tmp_path / "other")
    shutil.copy(tmp_path / "other" / "model.safetensors", saved / "model.safetensors")
    assert_load_fails(saved, "model.safetensors", "SHA-256")
    other = json.loads((tmp_path / "other" / "config.json").read_text())["weights_sha256"]
    tamper_header(saved, lambda h: h.update(weights_sha256=other))
    assert_load_fails(saved, "config.json", "modified config")


def test_reformatting_is_harmless_and_a_second_key_is_not(saved):
    text = (saved / "config.json").read_text()
    compact = json.dumps(json.loads(text), separators=(",", ":"), sort_keys=True)
    (saved / "config.json").write_text(compact)
    assert_same_model(make_model(), load_model(saved))
    (saved / "config.json").write_text(text.replace('"attn_scale": 0.5,', '"attn_scale": 50.0,'))
    assert_load_fails(saved, "config.json", "modified config")
    # JSON keeps the last of two equal keys: the hash is of what the reader reads
    (saved / "config.json").write_text(text.replace('"attn_scale": 0.5,', _TWICE))
    assert_load_fails(saved, "config.json", "modified config")


_TWICE = '"attn_scale": 0.5, "attn_scale": 50.0,'


def test_a_version_1_directory_asks_for_a_recompile(saved):
    tamper_header(saved, lambda h: (h.update(version=1), h.pop("sha256")))
    assert_load_fails(saved, "config.json", "version 1", "recompile")


def test_the_cli_refuses_a_sort_model_with_a_modified_attn_scale(tmp_path, capsys):
    model_dir = tmp_path / "sort"
    sort = str(EXAMPLES / "sort.rasp")
    assert (
        cli.main(["compile", sort, "--vocab", "abcd", "--max-len", "8", "-o", str(model_dir)]) == 0
    )
    assert cli.main(["run", str(model_dir), "--input", "dcab", "--json"]) == 0
    assert capsys.readouterr().out.endswith('["a", "b", "c", "d"]\n')
    tamper_header(model_dir, TAMPERINGS["attn_scale"])
    code = cli.main(["run", str(model_dir), "--input", "dcab", "--json"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err.startswith("model file error: ") and err.count("\n") == 1, err
    assert "config.json" in err and "modified config" in err


# ---------------------------------------------------------------- limits before allocating


@pytest.mark.parametrize(
    "shape",
    [
        dict(d_model=6, n_layers=2, n_heads=2, d_head=3, d_mlp=4, d_vocab=7, d_vocab_out=5),
        dict(d_model=1, n_layers=0, n_heads=0, d_head=0, d_mlp=0, d_vocab=3, d_vocab_out=1),
        dict(d_model=5, n_layers=3, n_heads=0, d_head=7, d_mlp=0, d_vocab=4, d_vocab_out=2),
        dict(d_model=3, n_layers=1, n_heads=4, d_head=1, d_mlp=9, d_vocab=3, d_vocab_out=8),
    ],
)
def test_n_params_counts_without_allocating(shape):
    cfg = ModelConfig(**shape, n_ctx=5, attn_scale=1.0)
    assert cfg.n_params == Transformer(cfg).count_params()


def test_the_limit_is_the_compilers():
    assert serialize.MAX_PARAMS is assemble.MAX_PARAMS


def no_allocation(cfg):
    raise AssertionError("allocated a Transformer for an oversized config")


@pytest.mark.parametrize(
    "change, fragment",
    [
        (dict(d_model=10**9), "parameters"),
        (dict(d_mlp=10**8), "parameters"),
        (dict(d_vocab=10**12), "parameters"),
        (dict(n_ctx=10**12), "parameters"),
        (dict(n_layers=10**7, n_heads=0, d_mlp=0), "layers"),
    ],
)
def test_an_oversized_config_is_refused_before_allocating(saved, monkeypatch, change, fragment):
    rewrite_header(saved, lambda h: h["config"].update(change))
    monkeypatch.setattr(serialize, "Transformer", no_allocation)
    assert_load_fails(saved, "config.json", "too large", fragment, "limit")


def test_save_refuses_what_load_would_refuse(tmp_path, monkeypatch):
    model = make_model()
    monkeypatch.setattr(serialize, "MAX_PARAMS", model.config.n_params - 1)
    with pytest.raises(ModelFileError, match="parameters"):
        save_model(model, tmp_path / "m")
    monkeypatch.setattr(serialize, "MAX_PARAMS", model.config.n_params)
    monkeypatch.setattr(serialize, "MAX_LAYERS", 1)
    with pytest.raises(ModelFileError, match="layers"):
        save_model(model, tmp_path / "m")
    monkeypatch.setattr(serialize, "MAX_LAYERS", 2)
    monkeypatch.setattr(serialize, "MAX_CONFIG_BYTES", 1000)
    with pytest.raises(ModelFileError, match="config.json would be"):
        save_model(model, tmp_path / "m")
    assert entries(tmp_path) == []
    monkeypatch.setattr(serialize, "MAX_CONFIG_BYTES", 1 << 20)
    save_model(model, tmp_path / "m")  # exactly at the limits
    assert_same_model(model, load_model(tmp_path / "m"))


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_dev_zero_is_refused_not_read(saved, name):
    (saved / name).unlink()
    (saved / name).symlink_to("/dev/zero")
    assert_load_fails(saved, name, "not a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_a_fifo_is_refused_without_blocking(saved, name):
    (saved / name).unlink()
    os.mkfifo(saved / name)
    assert_load_fails(saved, name, "not a regular file")


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_a_directory_in_place_of_a_file(saved, name):
    (saved / name).unlink()
    (saved / name).mkdir()
    assert_load_fails(saved, name, "not a regular file")


def test_a_symlink_to_a_regular_file_is_read(tmp_path, saved):
    shutil.move(saved / "config.json", tmp_path / "elsewhere.json")
    (saved / "config.json").symlink_to(tmp_path / "elsewhere.json")
    assert_same_model(make_model(), load_model(saved))


def test_huge_files_are_refused_before_reading(saved):
    with open(saved / "config.json", "r+b") as f:
        f.truncate(serialize.MAX_CONFIG_BYTES + 1)  # sparse: cheap to make, never read
    assert_load_fails(saved, "config.json", "more than the limit")
    shutil.rmtree(saved)
    save_model(make_model(), saved)
    with open(saved / "model.safetensors", "r+b") as f:
        f.truncate(1 << 30)
    assert_load_fails(saved, "model.safetensors", "more than the limit")
