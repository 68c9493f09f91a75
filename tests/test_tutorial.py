"""docs/tutorial.md is true: its files are written, its commands run and their outputs
compared, its Python sessions run as doctests, in order, in one fresh directory.

The markdown's conventions: a ```` ```rasp ```` block after ``<!-- file: NAME -->`` is a
file to write; in a ```` ```console ```` block a line ``$ rasp-compiler ...`` is a
command (run in this process through the entry point, ``cli.main``) and the lines up
to the next command its expected output (stdout and stderr),
where ``...`` matches any text and a last line ``(exit status N)`` the exit status
(0 otherwise); a ```` ```pycon ```` block is a doctest.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import re
import shlex
from pathlib import Path

import pytest

from rasp_compiler import cli

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial.md"
BLOCK = re.compile(r"(?:<!-- file: (?P<file>\S+) -->\n)?```(?P<kind>\w+)\n(?P<body>.*?)```", re.S)


def blocks() -> list[tuple[str, str | None, str]]:
    """(kind, file name or None, body) of every fenced block, in order."""
    text = TUTORIAL.read_text(encoding="utf-8")
    return [(m["kind"], m["file"], m["body"]) for m in BLOCK.finditer(text)]


def commands(body: str) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        else:
            assert out, f"output before any command: {line!r}"
            out[-1][1].append(line)
    return out


def matches(expected: list[str], actual: str) -> bool:
    pattern = "\n".join(".*".join(map(re.escape, line.split("..."))) for line in expected)
    return re.fullmatch(pattern, actual.rstrip("\n")) is not None


def test_the_tutorial_has_every_kind_of_block():
    kinds = [k for k, _, _ in blocks()]
    assert kinds.count("console") >= 4 and "rasp" in kinds and "pycon" in kinds
    assert (ROOT / "docs" / "images" / "trace-reverse-hello.png").is_file()


def run_command(argv: list[str]) -> tuple[int, str]:
    """``rasp-compiler ARGS`` in this process (what the entry point calls): exit status,
    stdout and stderr interleaved as a terminal shows them."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        status = cli.main(argv)
    return status, out.getvalue()


def test_every_command_and_output_in_the_tutorial(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ran = 0
    for kind, name, body in blocks():
        if kind == "rasp":
            assert name is not None, "a rasp block names its file"
            (tmp_path / name).write_text(body, encoding="utf-8")
        elif kind == "console":
            for command, expected in commands(body):
                argv = shlex.split(command)
                assert argv[0] == "rasp-compiler", command
                status = 0
                if expected and (m := re.fullmatch(r"\(exit status (\d+)\)", expected[-1])):
                    status, expected = int(m[1]), expected[:-1]
                code, got = run_command(argv[1:])
                assert code == status, (command, got)
                shown = "\n".join(expected)
                assert matches(expected, got), f"$ {command}\nexpected:\n{shown}\ngot:\n{got}"
                ran += 1
        elif kind == "pycon":
            test = doctest.DocTestParser().get_doctest(body, {}, "tutorial", str(TUTORIAL), 0)
            runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
            result = runner.run(test, out=lambda s: pytest.fail(s))
            assert result.failed == 0 and result.attempted > 0
            ran += result.attempted
    assert ran >= 10
    assert (tmp_path / "reverse.html").is_file() and (tmp_path / "figures" / "graph.svg").is_file()
