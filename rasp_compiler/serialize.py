"""Save and load compiled models: a directory with ``model.safetensors``, ``config.json``,
the model card ``README.md``, ``tokenizer.json`` (:mod:`.model_card`, :mod:`.model_files`)
and, when the program can be planned again, the ground-truth ``circuit.json``
(:mod:`.circuits`).

``config.json`` (format version 2) is::

    {"format": "rasp-compiler-model", "version": 2, "compiler_version": "0.1.0",
     "config": ModelConfig.to_dict(), "spec": ModelSpec.to_dict(),
     "labels": [one per residual dimension], "source": "<program text>" or null,
     "weights_sha256": "<sha256 of model.safetensors>",
     "files": {"README.md": "<sha256>", "tokenizer.json": "<sha256>",
               "circuit.json": "<sha256>"},
     "sha256": "<sha256 of the canonical JSON of every other field>"}

(``compiler_version``, ``labels``, ``source``, ``files`` are optional when loading; a file
``files`` lists must be there, unmodified.)

``sha256`` covers the config (shapes, ``attn_scale``), the spec (vocabulary, output values,
dtype, ...) and, through ``weights_sha256``, every byte of the weights: a change to anything
that decides outputs is refused.  The canonical JSON is of the *parsed* fields (sorted keys,
no spaces, ASCII): re-indenting the file is harmless, while any change to a value the
reader uses (a second copy of a key included) is caught.
Version 1 directories (whose config.json was not covered) are refused with a message
asking to recompile.

Weights are stored as float32 (exact for float32/float16/bfloat16 models) and loaded back
in the spec's dtype.  Atoms keep their JSON types (str, int, float, bool); non-finite
floats are written as Python's ``NaN`` / ``Infinity`` tokens.

Limits, checked before anything is allocated (and on saving, so that nothing unloadable is
written): at most ``MAX_PARAMS`` parameters (the compiler's own limit, counted exactly by
:attr:`ModelConfig.n_params`) and ``model.MAX_LAYERS`` layers; config.json at most
:data:`MAX_CONFIG_BYTES` and model.safetensors at most its float32s plus a header; both
must be regular files (a FIFO or ``/dev/zero`` is refused, not read).

Saving is atomic: all files are written and fsynced in a hidden sibling directory
``.NAME.rasp-compiler-tmp-PID-HEX`` (created with the umask's permissions), which then
replaces ``path`` with ``os.replace``; an existing model directory is first moved aside to
``.NAME.rasp-compiler-old-PID-HEX``.  Saving replaces only an empty directory or one of
ours (a regular ``config.json`` with our format marker, and regular files named in
:data:`OUR_FILES`, nothing else) and deletes only those files.  A failed save removes its
temporary directory; those a killed process (its PID no longer running) left behind are
removed by the next successful save to the same path.  (A process killed between the two renames
leaves no model at ``path`` but both complete versions in hidden siblings.)

Loading rejects anything wrong with a one-line :class:`ModelFileError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import uuid
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from .dtypes import torch_dtype
from .errors import ModelFileError
from .model import MAX_LAYERS, MAX_PARAMS, ModelConfig, Transformer
from .model_card import model_card
from .model_files import Described, check_described, described_files, program_source
from .runtime import CompiledModel, ModelSpec

FORMAT = "rasp-compiler-model"
VERSION = 2
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
TOKENIZER_FILE = "tokenizer.json"
CIRCUIT_FILE = "circuit.json"
#: every file a model directory may hold (and the only ones saving replaces or deletes)
OUR_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE, TOKENIZER_FILE, CIRCUIT_FILE)
_HEADER_KEYS = {"format", "version", "config", "spec", "weights_sha256", "sha256"}
#: written since the model card; a directory saved before them still loads
_OPTIONAL_KEYS = {"compiler_version", "source", "labels", "files"}

#: Largest config.json read (and written): far above any compilable model's spec.
MAX_CONFIG_BYTES = 64 << 20

_TAG = "rasp-compiler"  # in the names of our hidden temporary directories
_HEX = re.compile(r"[0-9a-f]{64}")
# never block opening a file (a FIFO swapped in after the stat), binary on Windows
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


# ---------------------------------------------------------------- saving


def save_model(
    model: CompiledModel,
    path: str | os.PathLike[str],
    source: str | None = None,
    circuit: dict[str, Any] | None = None,
) -> None:
    """Write ``model`` to the directory ``path`` atomically (replacing a model already there).

    Besides the weights and config.json it writes the model card ``README.md`` and
    ``tokenizer.json``.  ``source`` is the program's text for the card and config.json;
    by default ``model.spec.extra["source"]`` if set, else the file
    ``model.spec.program_name`` names, read now (none is recorded if it cannot be read).
    ``circuit`` (:func:`.circuits.build_circuit`) is written as circuit.json; by default
    :func:`.circuits.circuit_for` plans the program again for it (none if it cannot).

    Raises ModelFileError if ``path`` exists and is not an empty or model directory, or the
    model is over the loading limits; ValueError if the weights cannot be stored exactly in
    float32 or the spec is not JSON-serialisable.
    """
    path = Path(path)
    if path.name in ("", ".", ".."):
        path = path.resolve()
    _check_limits(model.config, f"{path}: cannot save this model")
    weights = _float32_weights(model.transformer)
    data = safetensors.torch.save(weights, metadata={"format": "pt"})
    if source is None:
        given = model.spec.extra.get("source")
        source = given if isinstance(given, str) else program_source(model.spec.program_name)
    described = described_files(model, weights, source)
    if circuit is None:
        from .circuits import circuit_for

        circuit = circuit_for(model, source)
    extra = {} if circuit is None else {CIRCUIT_FILE: (json.dumps(circuit) + "\n").encode()}
    text, card = _header_text(model, hashlib.sha256(data).hexdigest(), described, extra)
    if len(text) > MAX_CONFIG_BYTES:
        raise ModelFileError(
            f"{path}: cannot save this model: its {CONFIG_FILE} would be {len(text):,} bytes, "
            f"more than the limit of {MAX_CONFIG_BYTES:,}"
        )
    files = {
        WEIGHTS_FILE: data,
        TOKENIZER_FILE: described.tokenizer,
        CARD_FILE: card,
        **extra,
        CONFIG_FILE: text,
    }
    write_directory(path, files, (FORMAT,))


def write_directory(path: Path, files: dict[str, bytes], formats: tuple[str, ...]) -> None:
    """Atomically make ``path`` a directory of exactly ``files`` (names from
    :data:`OUR_FILES`, written in order: config.json last), replacing only an empty
    directory or one whose config.json has one of the ``formats`` markers (see the
    module docstring)."""
    _check_replaceable(path, formats)
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / _hidden_name(path.name, "tmp")
    os.mkdir(tmp)  # mode 0o777 less the umask, like the files below
    try:
        for name, data in files.items():
            assert name in OUR_FILES, name
            (_write_weights if name == WEIGHTS_FILE else _write_file)(tmp / name, data)
        _fsync_dir(tmp)
        _swap_into_place(tmp, path)
    except BaseException:
        _remove_ours(tmp)
        raise
    _remove_stale(parent, path.name)  # only once the new directory is in place


def _header_text(
    model: CompiledModel, weights_sha256: str, described: Described, extra: dict[str, bytes]
) -> tuple[bytes, bytes]:
    """config.json's bytes, with ``sha256`` computed over the fields as a reader parses
    them, and the model card's (README.md) bytes."""
    from . import __version__

    header = {
        "format": FORMAT,
        "version": VERSION,
        "compiler_version": __version__,
        "config": model.config.to_dict(),
        "spec": model.spec.to_dict(),
        "labels": described.labels,
        "source": described.source,
        "weights_sha256": weights_sha256,
    }
    try:
        header = json.loads(json.dumps(header))
    except (TypeError, ValueError) as e:
        raise ValueError(f"model spec is not JSON-serialisable: {e}") from None
    card = model_card(header, circuit=CIRCUIT_FILE in extra).encode("utf-8")
    header["files"] = {
        CARD_FILE: hashlib.sha256(card).hexdigest(),
        TOKENIZER_FILE: hashlib.sha256(described.tokenizer).hexdigest(),
        **{name: hashlib.sha256(data).hexdigest() for name, data in extra.items()},
    }
    header["sha256"] = header_sha256(header)
    return (json.dumps(header, indent=2) + "\n").encode("utf-8"), card


def header_sha256(header: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces, ASCII) of every field of a
    parsed config.json except ``sha256`` itself."""
    fields = {k: v for k, v in header.items() if k != "sha256"}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _check_limits(config: ModelConfig, what: str) -> None:
    """ModelFileError (starting with ``what``) if ``config`` is over the loading limits."""
    if config.n_layers > MAX_LAYERS:
        raise ModelFileError(
            f"{what}: {config.n_layers:,} layers, more than the limit of {MAX_LAYERS:,}"
        )
    if config.n_params > MAX_PARAMS:
        raise ModelFileError(
            f"{what}: {config.n_params:,} parameters (d_model {config.d_model}, d_mlp "
            f"{config.d_mlp}, {config.n_layers} layers), more than the limit of {MAX_PARAMS:,}"
        )


def _check_replaceable(path: Path, formats: tuple[str, ...] = (FORMAT,)) -> None:
    """ModelFileError unless ``path`` is absent, an empty directory, or one of our model
    directories: a regular config.json with one of the ``formats`` markers, at most
    regular files of the other :data:`OUR_FILES` names besides, and nothing else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    what = "rasp-compiler model" if formats == (FORMAT,) else formats[0]
    refuse = f"{path}: exists and is not a {what} directory; not replacing it"
    if not stat.S_ISDIR(st.st_mode):
        raise ModelFileError(refuse)
    names = sorted(os.listdir(path))
    extra = [n for n in names if n not in OUR_FILES]
    if extra:
        shown = ", ".join(extra[:5]) + (f", ... ({len(extra) - 5} more)" if len(extra) > 5 else "")
        raise ModelFileError(f"{refuse} (it holds {shown})")
    if not names:
        return
    for name in names:
        if not stat.S_ISREG(os.lstat(path / name).st_mode):
            raise ModelFileError(f"{refuse} ({name} is not a regular file)")
    if CONFIG_FILE not in names:
        raise ModelFileError(f"{refuse} (it has {WEIGHTS_FILE} but no {CONFIG_FILE})")
    try:
        header = json.loads(_read_regular(path / CONFIG_FILE, MAX_CONFIG_BYTES))
    except (ModelFileError, ValueError):
        header = None
    if not (isinstance(header, dict) and header.get("format") in formats):
        raise ModelFileError(f"{refuse} (its {CONFIG_FILE} is not one of ours)")


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
    with open(path, "xb") as f:  # mode 0o666 less the umask
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
    """Rename ``tmp`` to ``path``; an existing ``path`` is moved aside, then its files
    (ours, checked by :func:`_check_replaceable`) are deleted."""
    old = None
    if os.path.lexists(path):
        old = path.parent / _hidden_name(path.name, "old")
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        if old is not None:
            os.replace(old, path)
        raise
    _fsync_dir(path.parent)
    if old is not None:
        _remove_ours(old)


# ---------------------------------------------------------------- our hidden directories


def _hidden_name(name: str, kind: str) -> str:
    """``.NAME.rasp-compiler-KIND-PID-HEX``: obviously ours, and whose."""
    return f".{name}.{_TAG}-{kind}-{os.getpid()}-{uuid.uuid4().hex}"


def _remove_ours(directory: Path) -> None:
    """Delete our file names (:data:`OUR_FILES`, regular files only) in ``directory``,
    then the directory if that emptied it.  Anything else is left where it is; errors are
    ignored."""
    for name in OUR_FILES:
        try:
            if stat.S_ISREG(os.lstat(directory / name).st_mode):
                os.unlink(directory / name)
        except OSError:
            pass
    try:
        os.rmdir(directory)
    except OSError:
        pass


def _remove_stale(parent: Path, name: str) -> None:
    """Remove the hidden directories earlier saves to ``parent / name`` left behind when
    their process was killed (on POSIX, where a dead PID can be told from a live one)."""
    if os.name != "posix":
        return
    pattern = re.compile(re.escape(f".{name}.{_TAG}-") + r"(?:tmp|old)-(\d+)-[0-9a-f]{32}")
    try:
        entries = os.listdir(parent)
    except OSError:
        return
    for entry in entries:
        m = pattern.fullmatch(entry)
        if m and not _pid_alive(int(m.group(1))):
            try:
                is_dir = stat.S_ISDIR(os.lstat(parent / entry).st_mode)
            except OSError:
                continue
            if is_dir:
                _remove_ours(parent / entry)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another save in this process may be using it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        pass  # someone else's process, or unknown: leave it
    return True


# ---------------------------------------------------------------- loading


def load_model(path: str | os.PathLike[str]) -> CompiledModel:
    """Load a model saved by :func:`save_model`, on the CPU in its spec's dtype.

    Raises ModelFileError (one line, naming the file) on any missing, corrupt, modified,
    oversized or inconsistent file.
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
    _check_limits(config, f"{config_path}: model too large")
    try:
        spec = ModelSpec.from_dict(header["spec"])
        spec.check_config(config)
    except (ValueError, TypeError) as e:
        raise ModelFileError(f"{config_path}: bad model spec: {_one_line(str(e))}") from None

    tensors = _read_weights(weights_path, header["weights_sha256"], config)
    transformer = Transformer(config)
    try:
        transformer.load_weights(tensors)
    except ModelFileError as e:
        raise ModelFileError(f"{weights_path}: {_one_line(e.message)}") from None
    return CompiledModel(transformer, spec).to(torch_dtype(spec.dtype))


def _read_regular(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path`` (symlinks followed), refusing anything else
    and anything over ``limit`` bytes before reading it."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ModelFileError(f"{path}: not a regular file")
        with open(os.open(path, _READ_FLAGS), "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):  # replaced since the stat above
                raise ModelFileError(f"{path}: not a regular file")
            if st.st_size > limit:
                raise ModelFileError(
                    f"{path}: {st.st_size:,} bytes, more than the limit of {limit:,} for this file"
                )
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: missing file") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read: {_one_line(str(e))}") from None
    if len(data) > limit:
        raise ModelFileError(f"{path}: more than the limit of {limit:,} bytes for this file")
    return data


def _read_header(config_path: Path) -> dict[str, Any]:
    data = _read_regular(config_path, MAX_CONFIG_BYTES)
    try:
        header = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ModelFileError(f"{config_path}: cannot read: {_one_line(str(e))}") from None
    except json.JSONDecodeError as e:
        raise ModelFileError(
            f"{config_path}: invalid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    except RecursionError:
        raise ModelFileError(f"{config_path}: invalid JSON: nested too deeply") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{config_path}: expected a JSON object")
    if header.get("format") != FORMAT:
        raise ModelFileError(
            f"{config_path}: format is {header.get('format')!r}, expected {FORMAT!r}"
        )
    version = header.get("version")
    if version == 1 and type(version) is int:
        raise ModelFileError(
            f"{config_path}: format version 1 (an older rasp-compiler, whose integrity hash "
            f"did not cover config.json) is no longer loaded; recompile the program"
        )
    if version != VERSION or type(version) is not int:
        raise ModelFileError(
            f"{config_path}: unsupported version {version!r} (this reader: {VERSION})"
        )
    unexpected = header.keys() - _HEADER_KEYS - _OPTIONAL_KEYS
    if not header.keys() >= _HEADER_KEYS or unexpected:
        raise ModelFileError(
            f"{config_path}: missing fields {sorted(_HEADER_KEYS - header.keys())}, "
            f"unexpected fields {sorted(unexpected)}"
        )
    for key in ("sha256", "weights_sha256"):
        if not (isinstance(header[key], str) and _HEX.fullmatch(header[key])):
            raise ModelFileError(f"{config_path}: {key} is not a SHA-256 hex digest")
    try:
        actual = header_sha256(header)
    except (TypeError, ValueError, RecursionError) as e:  # e.g. NaN is fine, deep nesting not
        raise ModelFileError(f"{config_path}: cannot hash: {_one_line(str(e))}") from None
    if actual != header["sha256"]:
        raise ModelFileError(
            f"{config_path}: contents hash to {actual[:12]}..., not the recorded sha256 "
            f"{header['sha256'][:12]}... (corrupt or modified config)"
        )
    check_described(config_path, header, lambda p: _read_regular(p, MAX_CONFIG_BYTES))
    return header


def _read_weights(weights_path: Path, sha256: str, config: ModelConfig) -> dict[str, torch.Tensor]:
    n_tensors = 4 + 12 * config.n_layers
    limit = 4 * config.n_params + 8 + 4096 + 256 * n_tensors  # float32s, safetensors header
    data = _read_regular(weights_path, limit)
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
