"""Save and load compiled models: a directory with ``model.safetensors`` and ``config.json``.

``config.json`` is::

    {"format": "rasp-compiler-model", "version": 1,
     "config": ModelConfig.to_dict(), "spec": ModelSpec.to_dict(),
     "weights_sha256": "<sha256 of model.safetensors>"}

Weights are stored as float32 (exact for float32/float16/bfloat16 models) and loaded back
in the spec's dtype.  Atoms keep their JSON types (str, int, float, bool); non-finite
floats are written as Python's ``NaN`` / ``Infinity`` tokens.

Saving is atomic: both files are written and fsynced in a temporary sibling directory,
which then replaces ``path`` with ``os.replace`` (an existing model directory is moved
aside first and deleted only after the swap).  A failed or interrupted save removes its
temporary directory and leaves the old model in place.  (A process killed between the two
renames leaves no model at ``path`` but both complete versions in hidden siblings.)

Loading rejects anything wrong with a one-line :class:`ModelFileError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from .dtypes import torch_dtype
from .errors import ModelFileError
from .model import ModelConfig, Transformer
from .runtime import CompiledModel, ModelSpec

FORMAT = "rasp-compiler-model"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_HEADER_KEYS = {"format", "version", "config", "spec", "weights_sha256"}


# ---------------------------------------------------------------- saving


def save_model(model: CompiledModel, path: str | os.PathLike[str]) -> None:
    """Write ``model`` to the directory ``path`` atomically (replacing a model already there).

    Raises ModelFileError if ``path`` exists and is not a model directory, ValueError if the
    weights cannot be stored exactly in float32 or the spec is not JSON-serialisable.
    """
    path = Path(path)
    _check_replaceable(path)
    data = safetensors.torch.save(_float32_weights(model.transformer), metadata={"format": "pt"})
    header = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "spec": model.spec.to_dict(),
        "weights_sha256": hashlib.sha256(data).hexdigest(),
    }
    try:
        text = json.dumps(header, indent=2) + "\n"
    except (TypeError, ValueError) as e:
        raise ValueError(f"model spec is not JSON-serialisable: {e}") from None

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        _write_weights(tmp / WEIGHTS_FILE, data)
        _write_file(tmp / CONFIG_FILE, text.encode("utf-8"))
        _fsync_dir(tmp)
        _swap_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_replaceable(path: Path) -> None:
    """ModelFileError unless ``path`` is absent, an empty dir, or holds only model files."""
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_symlink() or not path.is_dir():
        raise ModelFileError(f"{path}: exists and is not a model directory; not replacing it")
    extra = sorted(set(os.listdir(path)) - {CONFIG_FILE, WEIGHTS_FILE})
    if extra:
        raise ModelFileError(f"{path}: not a model directory (it holds {extra}); not replacing it")


def _float32_weights(transformer: Transformer) -> dict[str, torch.Tensor]:
    """The state_dict as contiguous float32 CPU tensors; ValueError if that loses precision."""
    out = {}
    for name, t in transformer.state_dict().items():
        t = t.detach().cpu()
        t32 = t.to(torch.float32).contiguous()
        if not torch.equal(t32.to(t.dtype), t):
            raise ValueError(f"weight {name} ({t.dtype}) cannot be stored exactly as float32")
        out[name] = t32
    return out


def _write_weights(path: Path, data: bytes) -> None:
    """Write the safetensors bytes (a separate step so tests can make it fail)."""
    _write_file(path, data)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    if not hasattr(os, "O_DIRECTORY"):  # no directory fsync on this platform
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_into_place(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path``; an existing ``path`` is moved aside, then deleted."""
    old = None
    if path.exists():
        old = path.parent / f".{path.name}.old-{uuid.uuid4().hex}"
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        if old is not None:
            os.replace(old, path)
        raise
    _fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- loading


def load_model(path: str | os.PathLike[str]) -> CompiledModel:
    """Load a model saved by :func:`save_model`, on the CPU in its spec's dtype.

    Raises ModelFileError (one line, naming the file) on any missing, corrupt or
    inconsistent file.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: model directory not found")
    if not path.is_dir():
        raise ModelFileError(f"{path}: not a directory (a model is a directory)")
    config_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE

    header = _read_header(config_path)
    try:
        config = ModelConfig.from_dict(header["config"])
    except ModelFileError as e:
        raise ModelFileError(f"{config_path}: {_one_line(e.message)}") from None
    try:
        spec = ModelSpec.from_dict(header["spec"])
        spec.check_config(config)
    except (ValueError, TypeError) as e:
        raise ModelFileError(f"{config_path}: bad model spec: {_one_line(str(e))}") from None

    tensors = _read_weights(weights_path, header["weights_sha256"])
    transformer = Transformer(config)
    try:
        transformer.load_weights(tensors)
    except ModelFileError as e:
        raise ModelFileError(f"{weights_path}: {_one_line(e.message)}") from None
    return CompiledModel(transformer, spec).to(torch_dtype(spec.dtype))


def _read_header(config_path: Path) -> dict[str, Any]:
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelFileError(f"{config_path}: missing file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{config_path}: cannot read: {_one_line(str(e))}") from None
    try:
        header = json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelFileError(
            f"{config_path}: invalid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{config_path}: expected a JSON object")
    if header.get("format") != FORMAT:
        raise ModelFileError(
            f"{config_path}: format is {header.get('format')!r}, expected {FORMAT!r}"
        )
    if header.get("version") != VERSION:
        raise ModelFileError(
            f"{config_path}: unsupported version {header.get('version')!r} (this reader: {VERSION})"
        )
    if header.keys() != _HEADER_KEYS:
        raise ModelFileError(
            f"{config_path}: missing fields {sorted(_HEADER_KEYS - header.keys())}, "
            f"unexpected fields {sorted(header.keys() - _HEADER_KEYS)}"
        )
    sha = header["weights_sha256"]
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise ModelFileError(f"{config_path}: weights_sha256 is not a SHA-256 hex digest")
    return header


def _read_weights(weights_path: Path, sha256: str) -> dict[str, torch.Tensor]:
    try:
        data = weights_path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{weights_path}: missing file") from None
    except OSError as e:
        raise ModelFileError(f"{weights_path}: cannot read: {_one_line(str(e))}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ModelFileError(
            f"{weights_path}: SHA-256 {actual[:12]}... does not match config.json's "
            f"{sha256[:12]}... (corrupt or modified weights)"
        )
    try:
        tensors = safetensors.torch.load(data)
    except Exception as e:  # safetensors raises its own SafetensorError and others
        raise ModelFileError(
            f"{weights_path}: not a valid safetensors file: {_one_line(str(e))}"
        ) from None
    bad = sorted(name for name, t in tensors.items() if t.dtype != torch.float32)
    if bad:
        raise ModelFileError(f"{weights_path}: tensors {bad} are not float32")
    return tensors


def _one_line(text: str) -> str:
    return " ".join(text.split())
