"""The command line: every subcommand, every user-error path, the REPL, draw.

A few tests run ``python -m rasp_compiler`` in a subprocess (what a user types, exit
status and no traceback); the rest call ``cli.main([...])`` in-process, which is faster.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import xml.dom.minidom
from pathlib import Path

import pytest
import torch

from rasp_compiler import cli
from rasp_compiler.errors import RaspValueError
from rasp_compiler.language.lower import get_sop, load_source
from rasp_compiler.verification import VerifyReport, exhaustive_length, verify

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
REVERSE = str(EXAMPLES / "reverse.rasp")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rasp_compiler", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def main(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def broken(tmp_path):
    path = tmp_path / "broken.rasp"
    path.write_text("x = tokens;\ny = select(x, x, ==;\n")
    return path


# ------------------------------------------------------------------ as a user runs it


def test_eval_reverse_subprocess():
    proc = run_cli("eval", "examples/reverse.rasp", "--input", "hello")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "[o, l, l, e, h] (strings)\n"


def test_run_reverse_json_subprocess():
    proc = run_cli(
        "run", "examples/reverse.rasp", "--vocab", LETTERS, "--max-len", "16",
        "--input", "hello", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == '["o", "l", "l", "e", "h"]\n'


def test_broken_program_subprocess(broken):
    proc = run_cli("eval", str(broken), "--input", "abc")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"{broken}:2:" in proc.stderr
    assert "^" in proc.stderr
    assert proc.stdout == ""


def test_missing_file_and_bad_usage_subprocess():
    proc = run_cli("eval", "no/such/program.rasp", "--input", "abc")
    assert proc.returncode == 1
    assert "program.rasp" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("frobnicate")
    assert proc.returncode == 2
    assert "usage:" in proc.stderr and "Traceback" not in proc.stderr


def test_repl_through_a_pipe_subprocess():
    script = (
        "reverse = aggregate(select(indices, length - indices - 1, ==),\n"
        "                    tokens);\n"
        'set example "abc"\n'
        "y = nope + 1;\n"
        "reverse;\n"
        "unfinished = 1 +\n"
    )
    proc = run_cli("repl", stdin=script)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    out = proc.stdout
    assert "     s-op: reverse\n" in out
    assert ' \t Example: reverse("hello") = [o, l, l, e, h] (strings)\n' in out
    assert "<stdin>:4:5: name error: undefined name 'nope'" in out
    # The session went on after the error, with the new running example.
    assert ' \t Example: reverse("abc") = [c, b, a] (strings)\n' in out
    assert "unexpected end of input" in out


# ------------------------------------------------------------------ eval


def test_eval_inputs_json_and_sop(capsys):
    code, out, _ = main(
        capsys, "eval", REVERSE, "--input", "hello", "--input-json", '["hi", "there", "you"]'
    )
    assert code == 0
    assert out == "[o, l, l, e, h] (strings)\n[you, there, hi] (strings)\n"
    code, out, _ = main(capsys, "eval", REVERSE, "--sop", "opp_index", "--input", "abc", "--json")
    assert code == 0 and out == "[2, 1, 0]\n"
    code, out, _ = main(capsys, "eval", str(EXAMPLES / "frac_prevs.rasp"), "--input", "abca")
    assert out == "[1, 0.5, 0.333, 0.5] (floats)\n"


def test_eval_errors(capsys, tmp_path):
    code, _, err = main(capsys, "eval", REVERSE, "--sop", "nope", "--input", "ab")
    assert code == 1 and "does not define 'nope'" in err and "reverse" in err
    code, _, err = main(capsys, "eval", REVERSE, "--sop", "flip", "--input", "ab")
    assert code == 1 and "not an s-op" in err
    code, _, err = main(capsys, "eval", REVERSE, "--input", "")
    assert code == 1 and "input error" in err
    code, _, err = main(capsys, "eval", REVERSE)
    assert code == 2 and "--input" in err
    code, _, err = main(capsys, "eval", REVERSE, "--input-json", "[1, [2]]")
    assert code == 2 and "--input-json" in err
    undefined = tmp_path / "undefined.rasp"
    undefined.write_text("a = tokens;\nb = a + missing_name;\n")
    code, _, err = main(capsys, "eval", str(undefined), "--input", "ab")
    assert code == 1
    assert f"{undefined}:2:9: name error: undefined name 'missing_name'" in err
    assert "^^^^" in err
    failing = tmp_path / "failing.rasp"
    failing.write_text("q = 10 / indices;\n")
    code, _, err = main(capsys, "eval", str(failing), "--input", "ab")
    assert code == 1 and f"{failing}:1:" in err
    code, _, err = main(capsys, "eval", str(tmp_path), "--input", "ab")
    assert code == 1 and "directory" in err
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"\xff\xfe\x00binary")
    code, _, err = main(capsys, "eval", str(binary), "--input", "ab")
    assert code == 1 and "not UTF-8" in err


def test_program_without_sop(capsys, tmp_path):
    path = tmp_path / "atoms.rasp"
    path.write_text("a = 1;\n")
    code, _, err = main(capsys, "eval", str(path), "--input", "ab")
    assert code == 1 and "--sop" in err


# ------------------------------------------------------------------ compile and run


def test_compile_then_run_saved_model(capsys, tmp_path):
    model_dir = tmp_path / "rev"
    code, out, _ = main(
        capsys, "compile", REVERSE, "--vocab", "abcde", "--max-len", "6", "-o", str(model_dir)
    )
    assert code == 0
    assert "layers" in out and "heads" in out and "d_model" in out and "params" in out
    assert str(model_dir) in out
    code, out, _ = main(
        capsys, "run", str(model_dir), "--input", "abc", "--input-json", '["e", "d"]', "--json"
    )
    assert code == 0 and out == '["c", "b", "a"]\n["d", "e"]\n'
    code, _, err = main(capsys, "run", str(model_dir), "--vocab", "ab", "--input", "ab")
    assert code == 2 and "--vocab" in err


def test_run_errors(capsys, tmp_path):
    args = ["run", REVERSE, "--vocab", "abcdefgh", "--max-len", "6"]
    code, _, err = main(capsys, *args, "--input", "hello")
    assert code == 1 and "'l'" in err and "not in the vocabulary" in err
    code, _, err = main(capsys, *args, "--input", "abcdefg")
    assert code == 1 and "too long" in err
    code, _, err = main(capsys, "run", REVERSE, "--input", "ab")
    assert code == 2 and "--vocab" in err
    code, _, err = main(
        capsys, "run", REVERSE, "--vocab", "[1, 2", "--max-len", "4", "--input", "a"
    )
    assert code == 1 and "JSON" in err
    code, _, err = main(capsys, "run", REVERSE, "--vocab", "ab", "--max-len", "0", "--input", "a")
    assert code == 2 and "--max-len" in err


def test_run_json_vocabulary(capsys):
    code, out, _ = main(
        capsys, "run", REVERSE, "--vocab", '["hi", "there", "you"]', "--max-len", "3",
        "--input-json", '["hi", "there", "you"]',
    )  # fmt: skip
    assert code == 0 and out == "[you, there, hi] (strings)\n"


def test_corrupt_and_foreign_model_dirs(capsys, tmp_path):
    model_dir = tmp_path / "rev"
    assert (
        cli.main(["compile", REVERSE, "--vocab", "ab", "--max-len", "3", "-o", str(model_dir)]) == 0
    )
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-7] + b"garbage")
    code, _, err = main(capsys, "run", str(model_dir), "--input", "ab")
    assert code == 1 and "model file error" in err and "Traceback" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = main(capsys, "run", str(empty), "--input", "ab")
    assert code == 1 and "model file error" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_run_cuda_without_cuda(capsys):
    code, _, err = main(
        capsys, "run", REVERSE, "--vocab", "ab", "--max-len", "3", "--input", "ab",
        "--device", "cuda",
    )  # fmt: skip
    assert code == 1 and "CUDA is not available" in err


def test_compile_error_names_the_line(capsys, tmp_path):
    path = tmp_path / "bad.rasp"
    # The mean of up to 4 values of (w + 7 i)^12, up to 25^12: millions of possible values.
    path.write_text(
        "big = (selector_width(select(tokens, tokens, ==)) + 7 * indices) ^ 12;\n"
        "x = aggregate(select(indices, indices, <=), big);\n"
    )
    code, _, err = main(capsys, "compile", str(path), "--vocab", "ab", "--max-len", "4",
                        "-o", str(tmp_path / "m"))  # fmt: skip
    assert code == 1 and f"{path}:2:5:" in err and "too many" in err and "^^^" in err
    assert "Traceback" not in err
    assert not (tmp_path / "m").exists()


# ------------------------------------------------------------------ verify and inspect


def test_verify_ok(capsys):
    code, out, _ = main(
        capsys, "verify", REVERSE, "--vocab", "abc", "--max-len", "5", "--samples", "20",
        "--exhaustive-len", "3",
    )  # fmt: skip
    assert code == 0
    assert out.startswith(
        "verify: OK 59 inputs checked (39 exhaustive up to length 3, 20 random up to 5), "
        "0 mismatches"
    )


def test_verify_counts_program_errors_as_skipped(capsys, tmp_path):
    path = tmp_path / "div.rasp"
    path.write_text("q = 12 / (indices - 1);\n")
    code, out, _ = main(
        capsys, "verify", str(path), "--vocab", "ab", "--max-len", "3", "--samples", "0"
    )
    # Inputs of length >= 2 divide by zero at position 1: 2 of 14 inputs run, which is
    # too little to call the model checked
    assert code != 0
    assert "verify: FAILED 2 inputs checked" in out and "12 skipped (program error)" in out
    assert "rejected 12 of 14 inputs, so the check compared too little" in out


class _WrongModel:
    """Stands in for a CompiledModel that answers ``[x, ...]`` to everything."""

    def run_batch(self, inputs):
        return [["x"] * len(inp) for inp in inputs]


def test_verify_reports_the_first_counterexample():
    sop = get_sop(
        load_source("r = aggregate(select(indices, length - indices - 1, ==), tokens);"), "r"
    )
    report = verify(sop, _WrongModel(), ("a", "x"), 3, samples=5, seed=1)
    assert isinstance(report, VerifyReport)
    assert (report.exhaustive, report.random, report.skipped) == (14, 5, 0)
    assert report.checked == 19 and report.exhaustive_len == 3
    assert report.mismatches > 0 and not report.ok
    ce = report.first_counterexample
    assert ce is not None and ce.input == ("a",) and ce.expected == ("a",) and ce.got == ("x",)
    line = report.verdict()
    assert line.startswith("verify: FAILED") and 'input ["a"] expected ["a"] got ["x"]' in line


def test_verify_random_inputs_reach_max_len():
    seen: list[int] = []

    class Recorder(_WrongModel):
        def run_batch(self, inputs):
            seen.extend(len(i) for i in inputs)
            return [list(i) for i in inputs]

    sop = get_sop(load_source("t = tokens;"), "t")
    report = verify(sop, Recorder(), ("a", "b"), 9, samples=8, exhaustive_len=2, seed=3)
    assert report.ok and report.checked == 6 + 8
    assert max(seen) == 9 and seen[:6] == [1, 1, 2, 2, 2, 2]


def test_exhaustive_length():
    assert exhaustive_length(4, 16) == 6  # 4 + 16 + ... + 4096 = 5460
    assert exhaustive_length(8, 16) == 4
    assert exhaustive_length(2, 3) == 3
    assert exhaustive_length(30_000, 5) == 0


def test_inspect_text_and_json(capsys):
    args = ["inspect", str(EXAMPLES / "sort.rasp"), "--vocab", "abc", "--max-len", "5"]
    code, out, _ = main(capsys, *args)
    assert code == 0 and "layer 0:" in out and "residual layout" in out
    assert "selector_width(goes_before)" in out
    code, out, _ = main(capsys, *args, "--json")
    assert code == 0
    info = json.loads(out)
    for key in ("n_layers", "n_heads", "d_model", "d_mlp", "d_head", "n_params",
                "compile_seconds", "layers", "layout"):  # fmt: skip
        assert key in info, key
    assert info["n_layers"] == len(info["layers"]) and info["n_params"] > 0


# ------------------------------------------------------------------ draw


def test_draw_writes_an_svg(capsys, tmp_path, monkeypatch):
    program = tmp_path / "drawn.rasp"
    program.write_text(
        'rev = aggregate(select(indices, length - indices - 1, ==), tokens);\ndraw(rev, "abc");\n'
    )
    monkeypatch.chdir(tmp_path)
    code, out, err = main(capsys, "eval", str(program), "--input", "ab")
    assert code == 0 and out == "[b, a] (strings)\n"
    svg = tmp_path / "rev.svg"
    assert svg.is_file() and "rev.svg" in err
    doc = xml.dom.minidom.parse(str(svg))
    texts = " ".join(t.firstChild.data for t in doc.getElementsByTagName("text") if t.firstChild)
    assert "aggregate(select(indices, length - indices - 1, ==), tokens)" in texts
    assert "[c, b, a] (strings)" in texts  # the values on the draw input
    assert len(doc.getElementsByTagName("rect")) > 5


# ------------------------------------------------------------------ REPL in-process


def repl(capsys, monkeypatch, text: str) -> str:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    assert cli.main(["repl"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def test_repl_printing(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    out = repl(
        capsys, monkeypatch,
        "a = 3;\nl = [1, 2];\ndef f(x) {\n  return x + 1;\n}\n"
        "sel = select(indices, indices, <);\n"
        "shift(tokens, 1, \"_\");\nout;\n"
        "aggregate(sel, indices)(\"abcd\");\n"
        "show example\nset s-op example [1, 2]\nshow s-op example\n"
        "examples off\nindices;\nexit\nindices;\n",
    )  # fmt: skip
    lines = out.splitlines()
    assert "    value: a =  3" in lines
    assert "     list: l = [1, 2]" in lines
    assert "     console function: f(x)" in lines
    assert "     selector: sel" in lines
    assert any(line.strip() == "e | 1" for line in lines)  # the matrix on "hello"
    assert lines.count("     s-op: out") == 2
    assert ' \t Example: out("hello") = [_, h, e, l, l] (strings)' in lines
    assert "\t =  [0, 0, 0.5, 1.0] (floats)" in lines
    assert '\ts-op example: "hello"' in lines and '\tselector example: "hello"' in lines
    assert "\ts-op example: [1, 2]" in lines
    assert lines[-1] == "     s-op: indices"  # examples off; nothing after exit


def test_repl_errors_do_not_end_the_session(capsys, monkeypatch):
    out = repl(
        capsys,
        monkeypatch,
        'x = ;\nset example 5\ny = select(tokens, tokens, ==)("");\nz = tokens + 1;\nw = 1;\n',
    )
    assert "<stdin>:1:5: syntax error" in out
    assert "<stdin>:2:13: type error: an example must be" in out
    assert "input error" in out
    assert "     s-op: z" in out and "type error" in out.split("s-op: z")[1]
    assert out.rstrip().endswith("    value: w =  1")


def test_repl_full_seq_display_and_draw(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    out = repl(
        capsys,
        monkeypatch,
        "full seq display on\nh = selector_width(select(tokens, tokens, ==));\n"
        "c = length;\ndraw(h);\n",
    )
    assert " \t\tinput:   h e l l o \t (strings)" in out
    assert " \t\toutput:  1 1 2 2 1 \t (ints)" in out
    assert "[skipped full display: identical values]" in out
    assert (tmp_path / "h.svg").is_file() and "h.svg" in out
    assert "\t =  [1, 1, 2, 2, 1] (ints)" in out


def test_repl_load(capsys, monkeypatch, tmp_path):
    (tmp_path / "lib.rasp").write_text(
        "rev = aggregate(select(indices, length - indices - 1, ==), tokens);\n_p = 1;\n"
    )
    monkeypatch.chdir(tmp_path)
    out = repl(capsys, monkeypatch, 'load "lib";\nrev("ab");\n')
    assert "     s-op: rev\n" in out and "_p" not in out
    assert "\t =  [b, a] (strings)" in out


# ------------------------------------------------------------------ main's safety net


def test_help_and_version(capsys):
    code, out, _ = main(capsys, "--help")
    assert code == 0 and "eval" in out and "verify" in out
    code, out, _ = main(capsys, "--version")
    assert code == 0 and "rasp-compiler" in out


def test_interrupt_and_internal_errors(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    def buggy(args):
        raise ValueError("oops")

    monkeypatch.setattr(cli, "cmd_eval", interrupted)
    code, out, err = main(capsys, "eval", REVERSE, "--input", "a")
    assert code == 130 and out == err == ""
    monkeypatch.setattr(cli, "cmd_eval", buggy)
    code, _, err = main(capsys, "eval", REVERSE, "--input", "a")
    assert code == 1 and "internal error: ValueError: oops" in err and "Traceback" not in err


def test_rasp_errors_without_a_span(capsys, monkeypatch):
    def fails(args):
        raise RaspValueError("something went wrong")

    monkeypatch.setattr(cli, "cmd_eval", fails)
    code, _, err = main(capsys, "eval", REVERSE, "--input", "a")
    assert code == 1 and err == "value error: something went wrong\n"


def test_a_vocabulary_the_token_conversion_rejects_is_located_at_its_use(tmp_path):
    prog = tmp_path / "floats.rasp"
    prog.write_text("tokens = tokens_float;\nx = tokens + 1;\n")
    res = run_cli(
        "compile", str(prog), "--vocab", "abc", "--max-len", "4", "-o", str(tmp_path / "m")
    )
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "floats.rasp:2:5" in res.stderr and "tokens_float" in res.stderr
    assert not (tmp_path / "m").exists()


def test_a_mean_of_strings_is_refused_unless_allowed_and_then_warned(tmp_path, capsys):
    # a mean of strings: the reference raises wherever two keys are selected, so the
    # model's answer on those inputs would mean nothing -- refused, located, with the way
    # out; --allow-partial compiles it with a located warning
    prog = tmp_path / "multi.rasp"
    prog.write_text("y = aggregate(select(indices, indices, <=), tokens);\n")
    out = tmp_path / "m"
    args = ["compile", str(prog), "--vocab", "ab", "--max-len", "4", "-o", str(out)]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "multi.rasp:1:5: cannot compile" in err and "mean needs numbers" in err
    assert "--allow-partial" in err and "Traceback" not in err and not out.exists()
    for command in (["run", str(prog), "--input", "ab"], ["verify", str(prog)]):
        assert cli.main([*command, "--vocab", "ab", "--max-len", "4"]) == 1
        assert "--allow-partial" in capsys.readouterr().err
    assert cli.main([*args, "--allow-partial"]) == 0
    err = capsys.readouterr().err
    assert "warning: the interpreter rejects" in err and "multi.rasp:1:5" in err
    assert "mean needs numbers" in err
    assert cli.main(["compile", REVERSE, "--vocab", "ab", "--max-len", "4", "-o", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err
