"""Reading RASP source files, and where ``load "name";`` finds them.

:func:`read_source` reads one program file: a regular file (not a directory, FIFO or
device: ``/dev/zero`` is refused before anything is read) of at most
:data:`~rasp_compiler.limits.MAX_SOURCE_BYTES`, UTF-8 text without NUL bytes.  Its
errors name the file, never its content.

:func:`resolve_load` is the ``load`` rule:

* ``load "name";`` reads ``name.rasp`` (or ``name`` itself when it already ends in
  ``.rasp``) from the directory of the file that holds the ``load`` statement; for
  source without a file (the REPL, ``load_source``) from the session's base directory,
  by default the current directory.
* ``name`` is a relative path of plain names joined by ``/``: no leading ``/``, no
  ``.`` or ``..`` component, no backslash.  So a program reaches only files in its own
  directory and below.
* The file, symbolic links followed, must lie inside the *root*: the directory of the
  top-level program (or the session's base directory).  A link that leads elsewhere
  is refused without reading the target.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import InputError, RaspNameError, RaspValueError, Span
from ..limits import MAX_SOURCE_BYTES

__all__ = ["read_source", "resolve_load", "check_source_size"]


def check_source_size(n_bytes: int, what: str, span: Span | None = None) -> None:
    """InputError unless ``n_bytes`` is within :data:`MAX_SOURCE_BYTES`."""
    if n_bytes > MAX_SOURCE_BYTES:
        raise InputError(
            f"{what} is {n_bytes:,} bytes, more than the limit of {MAX_SOURCE_BYTES:,} "
            "for RASP source",
            span,
        )


def read_source(path: Path | str, span: Span | None = None) -> str:
    """The text of the RASP file ``path``; a RaspError (at ``span``) if it cannot be one."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        raise InputError(f"'{path}' is a directory, not a RASP program", span) from None
    except OSError as exc:
        raise RaspNameError(f"cannot read '{path}': {exc.strerror}", span) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"'{path}' is a directory, not a RASP program", span)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(
                f"'{path}' is not a regular file (a device, FIFO or socket), so not a RASP program",
                span,
            )
        check_source_size(info.st_size, f"'{path}'", span)
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_SOURCE_BYTES:  # the file may grow while we read it
            chunk = os.read(fd, MAX_SOURCE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise RaspNameError(f"cannot read '{path}': {exc.strerror}", span) from None
    finally:
        os.close(fd)
    check_source_size(size, f"'{path}'", span)
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise RaspValueError(f"'{path}' is not a RASP program (not UTF-8 text)", span) from None
    if "\x00" in text:
        raise RaspValueError(f"'{path}' is not a RASP program (it holds NUL bytes)", span)
    return text


def resolve_load(name: str, here: Path, root: Path, span: Span) -> Path:
    """The file ``load "name";`` reads, for a ``load`` in directory ``here`` (see module doc).

    Returns the resolved path; RaspNameError if the name breaks the rule or no file exists.
    """
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or any(p in ("", ".", "..") for p in parts)
        or Path(name).is_absolute()
    ):
        raise RaspNameError(
            f'cannot load "{name}": a load path is a relative name like "lib" or "sub/lib", '
            "without a leading '/', '.', '..' or '\\' (files load from the loading "
            "file's directory and below)",
            span,
        )
    candidates = [f"{name}.rasp"] + ([name] if name.endswith(".rasp") else [])
    root = root.resolve()
    for candidate in candidates:
        path = here / candidate
        if not (path.exists() or path.is_symlink()):
            continue
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise RaspNameError(
                f'cannot load "{name}": {candidate} is a broken or looping link', span
            ) from None
        if not real.is_relative_to(root):
            raise RaspNameError(
                f'cannot load "{name}": {candidate} leads outside {root} (a symbolic link?); '
                "a program loads only files in its own directory and below",
                span,
            )
        return real
    raise RaspNameError(f'cannot load "{name}": no file {candidates[0]} in {here}', span)
