"""What a saved model directory says about itself besides its weights: per-dimension
residual-stream labels and a word-level tokenizer file.

:func:`residual_labels` names every residual dimension, e.g. ``one``, ``bos``,
``tokens:a``, ``indices:3``, ``reverse:h``, ``length:x0``.  A layout entry that lists
its ``directions`` (``name=repr(value)``) is labelled from them; otherwise values are
read off the weights where the weights fix them exactly: a token one-hot from ``W_E``,
a position one-hot from ``W_pos``, the output s-op's one-hot from ``W_U``.  Any other
dimension of a block of several is ``block[i]`` (its i-th direction, value not
recorded); a block of one dimension is its name.  ``#id`` suffixes are dropped when the
name stays unique.

:func:`tokenizer_json` is a HuggingFace ``tokenizers`` file (``Tokenizer.from_file``):
a WordLevel model over the vocabulary (ids as the model's: the vocabulary in order, then
BOS, then pad), a BOS added in front by the post-processor, right padding with the pad
id, and no unknown token (an unknown word is an error, never a silent id).  See
:func:`token_strings` for how atoms become words.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from .errors import ModelFileError
from .language.ir import Atom
from .runtime import CompiledModel, ModelSpec

BOS_TOKEN, PAD_TOKEN, UNK_TOKEN = "<bos>", "<pad>", "<unk>"
#: the files config.json lists (``files``) with their sha256, besides the weights
DESCRIBED_FILES = ("README.md", "tokenizer.json", "circuit.json")
_ID_SUFFIX = re.compile(r"#\d+")
_HEX = re.compile(r"[0-9a-f]{64}")


# ---------------------------------------------------------------- labels


def residual_labels(spec: ModelSpec, weights: Mapping[str, np.ndarray]) -> list[str]:
    """One label per residual dimension, in order (see the module docstring).

    ``weights`` holds at least ``embed.W_E``, ``pos_embed.W_pos`` and ``unembed.W_U``
    as arrays (float32 numpy)."""
    W_E, W_pos, W_U = (np.asarray(weights[k]) for k in ("embed.W_E", "pos_embed.W_pos",
                                                         "unembed.W_U"))  # fmt: skip
    bases = _block_bases([e["name"] for e in spec.layout])
    labels: list[str] = []
    for entry, base in zip(spec.layout, bases, strict=True):
        start, size = entry["start"], entry["size"]
        directions = entry.get("directions")
        if isinstance(directions, list) and len(directions) == size:
            labels += [_from_direction(base, str(d)) for d in directions]
        elif size == 1:
            labels.append(base)
        else:
            labels += [
                _inferred(spec, base, start + i, i, W_E, W_pos, W_U) or f"{base}[{i}]"
                for i in range(size)
            ]
    return _unique(labels)


def _block_bases(names: Sequence[str]) -> list[str]:
    """Block names without ``#id`` (and ``tokens_str`` as ``tokens``) where that keeps
    them unique."""

    def short(name: str) -> str:
        name = _ID_SUFFIX.sub("", name)
        return "tokens" if re.fullmatch(r"tokens_[a-z]+", name) else name

    counts: dict[str, int] = {}
    for n in names:
        counts[short(n)] = counts.get(short(n), 0) + 1
    return [short(n) if counts[short(n)] == 1 else n for n in names]


def _from_direction(base: str, direction: str) -> str:
    _, eq, value = direction.partition("=")
    if not eq:
        return direction
    try:
        return f"{base}:{format_atom(ast.literal_eval(value))}"
    except (ValueError, SyntaxError):
        return f"{base}:{value}"


def _inferred(
    spec: ModelSpec,
    base: str,
    dim: int,
    i: int,
    W_E: np.ndarray,
    W_pos: np.ndarray,
    W_U: np.ndarray,
) -> str | None:
    n = len(spec.vocab)
    col = W_E[:n, dim]
    if base.startswith("tokens") and np.all((col == 0) | (col == 1)) and col.any():
        return f"{base}:" + "|".join(format_atom(spec.vocab[t]) for t in np.flatnonzero(col))
    pos = W_pos[1:, dim]
    if base.startswith("indices") and np.all((pos == 0) | (pos == 1)) and pos.sum() == 1:
        return f"{base}:{int(np.flatnonzero(pos)[0])}"
    out = spec.output
    if out.encoding == "categorical" and out.values is not None:
        row = W_U[dim]
        nz = np.flatnonzero(row)
        if len(nz) == 1 and row[nz[0]] == 1 and np.count_nonzero(W_U[:, nz[0]]) == 1:
            return f"{base}:{format_atom(out.values[int(nz[0])])}"
    return None


def _unique(labels: list[str]) -> list[str]:
    """Labels made unique by appending ``~2``, ``~3``, ... to repeats."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}~{seen[label]}")
    return out


def format_atom(atom: Atom) -> str:
    """An atom as a label shows it: a str as itself, a number or bool as Python prints it."""
    return atom if isinstance(atom, str) else repr(atom)


# ---------------------------------------------------------------- tokenizer


def token_strings(vocab: Sequence[Atom]) -> list[str]:
    """The word for each vocabulary atom: a str is itself, any other atom its JSON
    (``1``, ``1.5``, ``true``); if that makes two words equal (``"1"`` and ``1``),
    every atom is its JSON (``"1"`` with its quotes)."""
    words = [t if isinstance(t, str) else json.dumps(t) for t in vocab]
    if len(set(words)) != len(words):
        words = [json.dumps(t) for t in vocab]
    return words


def special_tokens(words: Sequence[str]) -> tuple[str, str, str]:
    """BOS, pad and unknown words that are not vocabulary words (``<bos>``, ``<pad>``,
    ``<unk>``, with more brackets around them if needed)."""
    taken = set(words)
    out = []
    for name in (BOS_TOKEN, PAD_TOKEN, UNK_TOKEN):
        while name in taken:
            name = f"<{name}>"
        out.append(name)
    return out[0], out[1], out[2]


def tokenizer_json(spec: ModelSpec) -> dict[str, Any]:
    """The ``tokenizer.json`` object (see the module docstring).  One-character
    vocabularies split text into characters (``"hello"`` or ``"h e l l o"``); others
    split on whitespace (``"12 7 3"``)."""
    words = token_strings(spec.vocab)
    bos, pad, unk = special_tokens(words)
    vocab = {w: i for i, w in enumerate(words)}
    vocab[bos], vocab[pad] = spec.bos_id, spec.pad_id
    chars = all(len(w) == 1 and not w.isspace() for w in words)
    whitespace: dict[str, Any] = {"type": "WhitespaceSplit"}
    isolate = {"type": "Split", "pattern": {"Regex": "."}, "behavior": "Isolated", "invert": False}
    pre = {"type": "Sequence", "pretokenizers": [whitespace, isolate]} if chars else whitespace

    def added(content: str, i: int) -> dict[str, Any]:
        return {
            "id": i, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": False, "special": True,
        }  # fmt: skip

    bos_piece = {"SpecialToken": {"id": bos, "type_id": 0}}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": {
            "strategy": "BatchLongest",
            "direction": "Right",
            "pad_to_multiple_of": None,
            "pad_id": spec.pad_id,
            "pad_type_id": 0,
            "pad_token": pad,
        },
        "added_tokens": [added(bos, spec.bos_id), added(pad, spec.pad_id)],
        "normalizer": None,
        "pre_tokenizer": pre,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [bos_piece, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                bos_piece,
                {"Sequence": {"id": "A", "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {bos: {"id": bos, "ids": [spec.bos_id], "tokens": [bos]}},
        },
        "decoder": {"type": "Fuse"} if chars else None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": unk},
    }


# ---------------------------------------------------------------- for saving


class Described(NamedTuple):
    """What config.json records about the model besides config and spec."""

    source: str | None
    labels: list[str]
    tokenizer: bytes


def described_files(
    model: CompiledModel, weights: dict[str, torch.Tensor], source: str | None
) -> Described:
    arrays = {k: weights[k].numpy() for k in ("embed.W_E", "pos_embed.W_pos", "unembed.W_U")}
    labels = residual_labels(model.spec, arrays)
    tokenizer = json.dumps(tokenizer_json(model.spec), indent=2, ensure_ascii=False) + "\n"
    return Described(source, labels, tokenizer.encode("utf-8"))


def program_source(program_name: str) -> str | None:
    """The text of the program file ``program_name`` names, or None (no such file, not
    a regular file, too large, not UTF-8)."""
    from .errors import RaspError
    from .language.files import read_source

    if program_name.startswith("<") or not os.path.isfile(program_name):
        return None
    try:
        return read_source(program_name)
    except (RaspError, OSError):
        return None


def check_described(
    config_path: Path, header: Mapping[str, Any], read: Callable[[Path], bytes]
) -> None:
    """The optional fields' types, and that every file ``files`` lists is there,
    unmodified (README.md, tokenizer.json and circuit.json describe the model; a changed one
    is refused like a changed config)."""
    labels, source, version = (header.get(k) for k in ("labels", "source", "compiler_version"))
    if not (isinstance(labels, list | None) and all(isinstance(x, str) for x in labels or [])):
        raise ModelFileError(f"{config_path}: labels must be a list of strings")
    if not (isinstance(source, str | None) and isinstance(version, str | None)):
        raise ModelFileError(f"{config_path}: source and compiler_version must be strings")
    files = header.get("files", {})
    if not (isinstance(files, dict) and set(files) <= set(DESCRIBED_FILES)):
        raise ModelFileError(
            f"{config_path}: files must map some of {list(DESCRIBED_FILES)} to SHA-256 digests"
        )
    for name, digest in files.items():
        if not (isinstance(digest, str) and _HEX.fullmatch(digest)):
            raise ModelFileError(f"{config_path}: files[{name!r}] is not a SHA-256 hex digest")
        file = config_path.parent / name
        actual = hashlib.sha256(read(file)).hexdigest()
        if actual != digest:
            raise ModelFileError(
                f"{file}: SHA-256 {actual[:12]}... does not match config.json's "
                f"{digest[:12]}... (corrupt or modified file)"
            )
