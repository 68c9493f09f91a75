"""An exported TransformerLens directory: what ``rasp-compiler export`` writes.

``OUT/`` holds

* ``model.safetensors``: the exported weights (:func:`~.weights.tl_weights`), float32,
  by ``HookedTransformer`` names: ``HookedTransformer(cfg).load_state_dict(...)`` takes
  them as they are (TransformerLens 4's native bridge takes them through
  :func:`load_transformer_lens`);
* ``config.json``: ``{"format": "rasp-compiler-transformer-lens", "version": 1,
  "compiler_version", "transformer_lens_version", "hooked_transformer_config": {...},
  "spec": ModelSpec.to_dict(), "labels": [...], "pad_key_score": BIG, "weights_sha256",
  "sha256"}`` (``sha256`` as in :mod:`rasp_compiler.serialize`: every other field);
* ``tokenizer.json``: the same word-level tokenizer a model directory has;
* ``README.md``: how to load it.

It is written atomically and replaces only an empty directory or an export directory
(:func:`rasp_compiler.serialize.write_directory`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import safetensors.torch

from .. import __version__
from ..errors import ModelFileError
from ..model_files import residual_labels, tokenizer_json
from ..runtime import CompiledModel, ModelSpec
from ..serialize import (
    CARD_FILE,
    CONFIG_FILE,
    MAX_CONFIG_BYTES,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    header_sha256,
    write_directory,
)
from .transformer_lens import TransformerLensModel, build, transformer_lens_version
from .weights import BIG, TLShape, tl_weights

EXPORT_FORMAT = "rasp-compiler-transformer-lens"
EXPORT_VERSION = 1


def save_transformer_lens(model: CompiledModel, path: str | os.PathLike[str]) -> TLShape:
    """Write ``model``, exported for TransformerLens, to the directory ``path``.

    Needs torch and safetensors only (TransformerLens is needed to load it)."""
    path = Path(path)
    if path.name in ("", ".", ".."):
        path = path.resolve()
    shape, weights = tl_weights(model)
    data = safetensors.torch.save(weights, metadata={"format": "pt"})
    arrays = {k: weights[k].numpy() for k in ("embed.W_E", "pos_embed.W_pos", "unembed.W_U")}
    header: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "compiler_version": __version__,
        "transformer_lens_version": transformer_lens_version(),
        "hooked_transformer_config": shape.hooked_config(),
        "spec": model.spec.to_dict(),
        "labels": residual_labels(model.spec, arrays),
        "pad_key_score": BIG,
        "weights_sha256": hashlib.sha256(data).hexdigest(),
    }
    header = json.loads(json.dumps(header))
    header["sha256"] = header_sha256(header)
    tokenizer = json.dumps(tokenizer_json(model.spec), indent=2, ensure_ascii=False) + "\n"
    files = {
        WEIGHTS_FILE: data,
        TOKENIZER_FILE: tokenizer.encode("utf-8"),
        CARD_FILE: _readme(header).encode("utf-8"),
        CONFIG_FILE: (json.dumps(header, indent=2) + "\n").encode("utf-8"),
    }
    write_directory(path, files, (EXPORT_FORMAT,))
    return shape


def load_transformer_lens(
    path: str | os.PathLike[str], device: str = "cpu"
) -> TransformerLensModel:
    """A directory :func:`save_transformer_lens` wrote, as a :class:`TransformerLensModel`
    (needs TransformerLens).  ModelFileError on a missing, foreign or modified file."""
    path = Path(path)
    config_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    try:
        header = json.loads(_read(config_path, MAX_CONFIG_BYTES))
    except ValueError as e:
        raise ModelFileError(f"{config_path}: invalid JSON: {e}") from None
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise ModelFileError(f"{config_path}: not a rasp-compiler TransformerLens export")
    if header.get("version") != EXPORT_VERSION or header.get("sha256") != header_sha256(header):
        raise ModelFileError(f"{config_path}: unsupported version, or corrupt or modified")
    data = _read(weights_path, 1 << 32)
    if hashlib.sha256(data).hexdigest() != header["weights_sha256"]:
        raise ModelFileError(f"{weights_path}: corrupt or modified weights")
    try:
        spec = ModelSpec.from_dict(header["spec"])
        c = header["hooked_transformer_config"]
        shape = TLShape(
            n_layers=c["n_layers"], d_model=c["d_model"], n_heads=c["n_heads"],
            d_head=c["d_head"], d_mlp=c["d_mlp"] or 0, d_vocab=c["d_vocab"],
            d_vocab_out=c["d_vocab_out"], n_ctx=c["n_ctx"], attn_scale=c["attn_scale"],
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{config_path}: bad export config: {e}") from None
    weights = safetensors.torch.load(data)
    return build(spec, shape, weights, device)


def _read(path: Path, limit: int) -> bytes:
    try:
        if not path.is_file():
            raise ModelFileError(f"{path}: missing file")
        if path.stat().st_size > limit:
            raise ModelFileError(f"{path}: larger than the limit of {limit:,} bytes")
        return path.read_bytes()
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read: {e.strerror or e}") from None


def _readme(header: dict[str, Any]) -> str:
    spec, c = header["spec"], header["hooked_transformer_config"]
    return f"""# `{spec["sop_name"]}` from `{spec["program_name"]}`, exported for TransformerLens

Exported by rasp-compiler {header["compiler_version"]} (TransformerLens \
{header["transformer_lens_version"]} installed at export time).

```python
from rasp_compiler.export import load_transformer_lens

tl = load_transformer_lens("THIS_DIRECTORY")   # HookedTransformer (TL 3) or bridge (TL 4)
tokens = tl.encode(["INPUT"])                  # BOS, the tokens, pad ids: no mask needed
logits, cache = tl.model.run_with_cache(tokens)
print(tl.decode(logits, tokens))
```

Or by hand with TransformerLens 3:

```python
import json
from safetensors.torch import load_file
from transformer_lens import HookedTransformer, HookedTransformerConfig

header = json.load(open("THIS_DIRECTORY/config.json"))
model = HookedTransformer(HookedTransformerConfig(**header["hooked_transformer_config"]))
state = model.state_dict()
state.update(load_file("THIS_DIRECTORY/model.safetensors"))
model.load_state_dict(state, strict=True)
```

Conventions: token ids are the vocabulary in order, then BOS = {spec["bos_id"]}, then pad =
{spec["pad_id"]}; position 0 holds BOS; attention is bidirectional; no layer norm;
`attn_scale = {c["attn_scale"]!r}`; {c["n_heads"]} heads of width {c["d_head"]} per layer
(the last column of each head is the pad key column: pad keys score about
-{header["pad_key_score"]:.3g} / attn_scale, so they get attention weight exactly 0 and
padded batches need no mask).  `labels` in config.json names every residual dimension.
Outputs: `spec.output` in config.json (categorical: `values[argmax]`; numerical: the
single logit, rounded as described there); position 0 is not an output.
"""
