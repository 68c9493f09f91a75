"""Progress of a compile: its stages in order, and a status line only on a terminal,
only after a second, cleared at the end."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.progress import Progress

ROOT = Path(__file__).resolve().parent.parent


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_compiler_reports_its_stages_in_order():
    seen: list[tuple[str, int, int]] = []
    compile_program(
        str(ROOT / "examples" / "sort.rasp"), vocab="abcd", max_len=8,
        progress=lambda stage, done, total: seen.append((stage, done, total)),
    )  # fmt: skip
    stages = [s for s, _, _ in seen]
    order = ["checking the program", "value sets", "planning heads and MLPs", "MLP tables",
             "certifying", "weights"]  # fmt: skip
    assert [s for s in dict.fromkeys(stages)] == order
    tables = [(d, t) for s, d, t in seen if s == "MLP tables"]
    assert tables and [d for d, _ in tables] == list(range(len(tables)))
    assert all(t == len(tables) for _, t in tables)


def test_a_status_line_appears_after_the_delay_and_is_cleared():
    now = [0.0]
    out = _Tty()
    with Progress(out, clock=lambda: now[0], delay=1.0) as progress:
        progress("value sets")
        assert out.getvalue() == ""  # quick work stays silent
        now[0] = 2.0
        progress("MLP tables", 3, 12)
        line = out.getvalue()
        assert "compiling: MLP tables [######..................] 3/12 (2 s)" in line
    assert out.getvalue().endswith("\r\x1b[K")  # cleared


def test_no_status_line_off_a_terminal_or_when_quiet():
    for stream, enabled in ((io.StringIO(), None), (_Tty(), False)):
        with Progress(stream, enabled=enabled, delay=0.0) as progress:
            progress("MLP tables", 1, 2)
        assert stream.getvalue() == ""


def test_the_command_line_shows_progress_on_a_terminal_and_not_with_quiet(tmp_path):
    # a real pseudo-terminal (with no silent start): the stages show, with --quiet none
    program = ROOT / "examples" / "sort.rasp"

    def run(*extra: str) -> str:
        leader, follower = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "rasp_compiler", "compile", str(program), "--vocab", "ab",
             "--max-len", "8", "-o", str(tmp_path / "m"), *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower, cwd=ROOT,
            env={**os.environ, "RASP_COMPILER_PROGRESS_DELAY": "0"},
        )  # fmt: skip
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=120)
        os.close(leader)
        assert proc.returncode == 0
        return b"".join(chunks).decode()

    shown = run()
    assert "compiling: " in shown and shown.endswith("\r\x1b[K")
    assert "compiling: " not in run("--quiet")
