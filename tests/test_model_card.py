"""The self-describing model directory: README.md (the model card), tokenizer.json,
labels, source and compiler version in config.json.

The main test runs the numpy forward pass *as printed in each example's model card*
(nothing from rasp_compiler is imported by that code) on random inputs and compares
it with the runtime."""

from __future__ import annotations

import importlib.util
import json
import random
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from check import example_vocab

from rasp_compiler import __version__, compile_program, load_model, save_model
from rasp_compiler.errors import ModelFileError
from rasp_compiler.model_files import (
    residual_labels,
    special_tokens,
    token_strings,
    tokenizer_json,
)
from rasp_compiler.serialize import header_sha256

EXAMPLES = sorted(Path(__file__).resolve().parent.parent.glob("examples/*.rasp"))
MAX_LEN = 6


def card_code(card: str) -> str:
    """The python block under the card's numpy heading."""
    section = card.split("## Load it with safetensors and numpy", 1)[1]
    return section.split("```python\n", 1)[1].split("\n```", 1)[0]


@pytest.fixture(scope="module", params=EXAMPLES, ids=lambda p: p.stem)
def saved_example(request, tmp_path_factory):
    path: Path = request.param
    vocab = example_vocab(path)
    model = compile_program(path, vocab=vocab, max_len=MAX_LEN)
    out = tmp_path_factory.mktemp(path.stem) / "model"
    save_model(model, out)
    return path, vocab, model, out


def test_the_numpy_code_in_the_card_reproduces_the_model(saved_example, capsys):
    path, vocab, model, out = saved_example
    card = (out / "README.md").read_text(encoding="utf-8")
    namespace: dict = {"MODEL_DIR": str(out)}
    exec(compile(card_code(card), f"{out}/README.md", "exec"), namespace)  # noqa: S102
    printed = capsys.readouterr().out.strip()
    rng = random.Random(path.stem)
    inputs = ["".join(rng.choice(vocab) for _ in range(rng.randint(1, MAX_LEN))) for _ in range(40)]
    expected = model.run_batch(inputs)
    for inp, want in zip(inputs, expected, strict=True):
        got = namespace["run"](str(out), inp)
        assert got == want and [type(v) for v in got] == [type(v) for v in want], inp
    example = card_code(card).rsplit("print(run(MODEL_DIR, ", 1)[1].rsplit("))", 1)[0]
    assert printed == str(model.run(eval(example)))  # noqa: S307 - our own card's literal


def test_the_card_describes_the_model(saved_example):
    path, vocab, model, out = saved_example
    card = (out / "README.md").read_text(encoding="utf-8")
    header = json.loads((out / "config.json").read_text(encoding="utf-8"))
    source = path.read_text(encoding="utf-8")
    assert header["source"] == source and source.rstrip() in card
    assert header["compiler_version"] == __version__
    assert f"s-op | `{model.spec.sop_name}`" in card
    assert f"attn_scale = {model.config.attn_scale!r}" in card
    for needle in ("BOS", "bidirectional", "No layer norm", "pad", "TransformerLens"):
        assert needle in card
    for layer in model.spec.layers:  # every head and MLP, with its source line's text
        for item in layer["attn"] + layer["mlp"]:
            line = source.splitlines()[item["line"] - 1].strip()
            row = f"{item['implements']} | {item['line']} | `{line[:120]}`"
            assert row.replace("|", "\\|").replace("\\| ", "| ") in card or row in card


def test_labels_name_every_residual_dimension(saved_example):
    path, vocab, model, out = saved_example
    labels = json.loads((out / "config.json").read_text(encoding="utf-8"))["labels"]
    assert len(labels) == model.config.d_model == len(set(labels))
    assert labels[:2] == ["one", "bos"]
    words = token_strings(model.spec.vocab)
    tokens = [lab for lab in labels if lab.startswith("tokens:")]
    assert sorted(tokens) == sorted(f"tokens:{w}" for w in words) or all(
        "|" in lab or lab[7:] in words for lab in tokens
    )
    out_spec = model.spec.output
    if out_spec.encoding == "categorical":  # the output s-op's one-hot is read off W_U
        W_U = model.transformer.unembed.W_U.detach().numpy()
        coded = [i for i, lab in enumerate(labels) if lab.endswith(":code")]
        for k, value in enumerate(out_spec.values):
            dims = set(np.flatnonzero(W_U[:, k]))
            if coded:  # a coded output: every logit reads the code (and the constant;
                # the middle code is 0, and its logit the constant 0)
                assert dims - {0} <= set(coded), (k, value)
                assert k == (len(out_spec.values) - 1) / 2 or dims, (k, value)
            else:
                (dim,) = dims
                assert labels[dim].endswith(f":{value}")


def test_reverse_labels_are_readable(tmp_path):
    model = compile_program("examples/reverse.rasp", vocab="abc", max_len=4)
    save_model(model, tmp_path / "m")
    labels = json.loads((tmp_path / "m" / "config.json").read_text())["labels"]
    for label in ("one", "bos", "tokens:a", "tokens:c", "indices:0", "indices:3", "reverse:b"):
        assert label in labels
    # an intermediate one-hot (its block name is the compiler's): values not recorded
    assert any(re.fullmatch(r"opp_index\S*\[0\]", label) for label in labels)


# ---------------------------------------------------------------- tokenizer.json


def test_tokenizer_json_structure():
    model = compile_program("examples/reverse.rasp", vocab="abc", max_len=4)
    tj = tokenizer_json(model.spec)
    assert tj["model"] == {
        "type": "WordLevel",
        "vocab": {"a": 0, "b": 1, "c": 2, "<bos>": 3, "<pad>": 4},
        "unk_token": "<unk>",
    }
    assert [t["content"] for t in tj["added_tokens"]] == ["<bos>", "<pad>"]
    assert all(t["special"] for t in tj["added_tokens"])
    assert tj["post_processor"]["special_tokens"]["<bos>"]["ids"] == [3]
    assert tj["padding"]["pad_id"] == 4 and tj["padding"]["direction"] == "Right"
    assert tj["pre_tokenizer"]["type"] == "Sequence"  # one-character tokens: split "abc"


def test_token_words_of_mixed_atoms():
    assert token_strings([1, 2.5, True, "x"]) == ["1", "2.5", "true", "x"]
    assert token_strings([1, "1"]) == ["1", '"1"']  # a clash: every atom is its JSON
    assert special_tokens(["<bos>", "a"]) == ("<<bos>>", "<pad>", "<unk>")


tokenizers_missing = importlib.util.find_spec("tokenizers") is None


@pytest.mark.skipif(
    tokenizers_missing, reason="the HF tokenizers library is not installed (optional)"
)
def test_the_tokenizers_library_loads_it(tmp_path):
    import tokenizers

    model = compile_program("examples/sort.rasp", vocab="abcd", max_len=6)
    save_model(model, tmp_path / "m")
    tok = tokenizers.Tokenizer.from_file(str(tmp_path / "m" / "tokenizer.json"))
    tokens, _ = model.encode(["dcab", "ba"])
    batch = tok.encode_batch(["dcab", "b a"])
    assert [e.ids for e in batch] == tokens.tolist()
    with pytest.raises(Exception, match="(?i)unk"):
        tok.encode("abz")
    words = compile_program("examples/sort.rasp", vocab=[10, 2, 3], max_len=4)
    save_model(words, tmp_path / "w")
    tok = tokenizers.Tokenizer.from_file(str(tmp_path / "w" / "tokenizer.json"))
    assert tok.encode("3 10 2").ids == words.encode([[3, 10, 2]])[0][0].tolist()


# ---------------------------------------------------------------- integrity and loading


def test_a_modified_card_or_tokenizer_is_refused(tmp_path):
    model = compile_program("examples/reverse.rasp", vocab="abc", max_len=4)
    for name in ("README.md", "tokenizer.json"):
        save_model(model, tmp_path / name)
        with open(tmp_path / name / name, "a", encoding="utf-8") as f:
            f.write(" ")
        with pytest.raises(ModelFileError, match=f"{name}: SHA-256 .* modified file"):
            load_model(tmp_path / name)
        (tmp_path / name / name).unlink()
        with pytest.raises(ModelFileError, match=f"{name}: missing file"):
            load_model(tmp_path / name)
        save_model(model, tmp_path / name)  # still ours: replaced
        assert load_model(tmp_path / name).run("abc") == ["c", "b", "a"]


def test_labels_and_source_are_covered_by_the_hash(tmp_path):
    save_model(compile_program("examples/reverse.rasp", vocab="abc", max_len=4), tmp_path / "m")
    config = tmp_path / "m" / "config.json"
    for field, value in (("labels", ["x"]), ("source", "reverse = tokens;")):
        header = json.loads(config.read_text())
        original = config.read_text()
        header[field] = value
        config.write_text(json.dumps(header))
        with pytest.raises(ModelFileError, match="corrupt or modified config"):
            load_model(tmp_path / "m")
        config.write_text(original)


def test_a_directory_saved_before_the_card_still_loads(tmp_path):
    model = compile_program("examples/reverse.rasp", vocab="abc", max_len=4)
    save_model(model, tmp_path / "m")
    config = tmp_path / "m" / "config.json"
    header = json.loads(config.read_text())
    for key in ("labels", "source", "compiler_version", "files", "sha256"):
        header.pop(key)
    header["sha256"] = header_sha256(header)
    config.write_text(json.dumps(header))
    for name in ("README.md", "tokenizer.json"):
        (tmp_path / "m" / name).unlink()
    assert load_model(tmp_path / "m").run("abc") == ["c", "b", "a"]
    save_model(model, tmp_path / "m")  # an old directory is replaced by a new one
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "README.md", "circuit.json", "config.json", "model.safetensors", "tokenizer.json"
    ]  # fmt: skip


def test_a_foreign_file_is_still_refused(tmp_path):
    save_model(compile_program("examples/reverse.rasp", vocab="abc", max_len=4), tmp_path / "m")
    (tmp_path / "m" / "notes.txt").write_text("mine")
    with pytest.raises(ModelFileError, match="not a rasp-compiler model directory.*notes.txt"):
        save_model(compile_program("examples/reverse.rasp", vocab="ab", max_len=4), tmp_path / "m")
    assert (tmp_path / "m" / "notes.txt").read_text() == "mine"


def test_source_given_or_unknown(tmp_path):
    text = "flip = select(indices, length - indices - 1, ==);\nr = aggregate(flip, tokens);\n"
    model = compile_program(text, vocab="ab", max_len=3)
    save_model(model, tmp_path / "none")
    header = json.loads((tmp_path / "none" / "config.json").read_text())
    assert header["source"] is None
    assert "not recorded" in (tmp_path / "none" / "README.md").read_text()
    save_model(model, tmp_path / "given", source=text)
    assert json.loads((tmp_path / "given" / "config.json").read_text())["source"] == text


def test_the_card_code_needs_only_numpy_and_safetensors(tmp_path):
    """The card's code run as a user would, in a fresh interpreter: it imports neither
    torch nor rasp_compiler, and prints reverse's outputs."""
    model = compile_program("examples/reverse.rasp", vocab="abcdefghlo", max_len=8)
    save_model(model, tmp_path / "rev")
    code = card_code((tmp_path / "rev" / "README.md").read_text(encoding="utf-8"))
    script = tmp_path / "user.py"
    script.write_text(
        f"MODEL_DIR = {str(tmp_path / 'rev')!r}\n{code}\n"
        "import sys\n"
        "print(run(MODEL_DIR, 'hello'), run(MODEL_DIR, 'abcdefgh'))\n"
        "print(sorted(m for m in ('torch', 'rasp_compiler') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1] == "['o', 'l', 'l', 'e', 'h'] ['h', 'g', 'f', 'e', 'd', 'c', 'b', 'a']"
    assert lines[1] == f"{model.run('hello')} {model.run('abcdefgh')}"
    assert lines[2] == "[]"


def test_labels_from_recorded_directions():
    """A layout entry that lists its directions (``name=repr(value)``) is labelled by them."""
    model = compile_program("examples/reverse.rasp", vocab="abc", max_len=4)
    layout = [dict(e) for e in model.spec.layout]
    block = next(e for e in layout if e["name"].startswith("opp_index"))
    block["directions"] = [f"{block['name']}={v!r}" for v in range(block["size"])]
    spec = replace(model.spec, layout=tuple(layout))
    weights = {k: v.numpy() for k, v in model.transformer.state_dict().items()}
    labels = residual_labels(spec, weights)
    start = block["start"]
    for v, label in enumerate(labels[start : start + block["size"]]):
        assert label.startswith("opp_index") and label.endswith(f":{v}"), label
