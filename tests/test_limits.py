"""Every resource a program or a command line can ask for has a limit that ends in a
user error (located where there is source), never a hang, a MemoryError or an internal
error (issue 11).  The tests use the constants of rasp_compiler.limits, patched smaller
where the real limit would make a slow test, so each runs well under a second."""

from __future__ import annotations

import io
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from rasp_compiler import cli, limits, repl
from rasp_compiler.errors import (
    InputError,
    RaspError,
    RaspNameError,
    RaspSyntaxError,
    RaspValueError,
    Source,
    Span,
)
from rasp_compiler.language import lowerer
from rasp_compiler.language.display import format_sop
from rasp_compiler.language.files import read_source
from rasp_compiler.language.interpret import evaluate
from rasp_compiler.language.lower import Session, get_sop, load_program, load_source
from rasp_compiler.language.parser import parse
from rasp_compiler.limits import (
    MAX_INPUT_LEN,
    MAX_INT_DIGITS,
    MAX_LEN,
    MAX_LIST_LEN,
    MAX_NESTING,
    MAX_SOURCE_BYTES,
    MAX_STRING_LEN,
    MAX_VERIFY_INPUTS,
    MAX_VOCAB_SIZE,
)

N = MAX_NESTING


def error(text: str, kind: type[RaspError] = RaspError, **kw: object) -> RaspError:
    with pytest.raises(kind) as info:
        load_source(text, "prog.rasp", **kw)  # type: ignore[arg-type]
    return info.value


def at(err: RaspError) -> tuple[int, int]:
    assert err.span is not None, err.render()
    return err.span.line, err.span.col


def main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    assert "internal error" not in err and "Traceback" not in err
    return code, out, err


# ------------------------------------------------------------------ nesting


@pytest.mark.parametrize(
    ("prefix", "suffix", "starts"),
    [
        ("-", "", 0),
        ("+", "", 0),
        ("not ", "", 0),
        ("[", "]", 0),
        ("f(", ")", 0),
        ("(1 if ", " else 0)", 1),  # the ternary starts after its parenthesis
    ],
)
def test_nesting_up_to_the_limit_runs_and_one_more_is_a_located_error(prefix, suffix, starts):
    def program(k: int) -> str:  # the assignment is level 1, each construct one more
        return "def f(a) { return a; }\nx = " + prefix * k + "tokens_int" + suffix * k + ";"

    x = load_source(program(N - 1)).lookup("x")
    assert isinstance(x, list) or len(evaluate(x, [1, 2])) == 2  # type: ignore[arg-type]
    err = error(program(N), RaspSyntaxError)
    assert f"nested more than {N} levels deep" in err.message
    line, col = at(err)
    assert line == 2 and col == 5 + len(prefix) * (N - 1) + starts  # the construct past it
    assert "^" in err.render()


def test_nesting_of_blocks_and_any_nesting_depth_is_reported_not_overflowed():
    body = "for i in [1] {\n" * N + "x = 1;\n" + "}\n" * N
    err = error(body, RaspSyntaxError)
    assert at(err) == (N, 10)  # the loop at level N is fine, its list is one level too deep
    for depth in (10 * N, 100 * N):
        err = error("x = " + "-" * depth + "1;", RaspSyntaxError)
        assert at(err) == (1, 4 + N)


def test_chains_of_binary_operators_and_parentheses_are_not_nesting():
    session = load_source(
        "x = 1" + " + 1" * (8 * N) + ";\ny = " + "(" * (8 * N) + "2" + ")" * (8 * N) + ";"
    )
    assert session.lookup("x") == 8 * N + 1 and session.lookup("y") == 2
    chain = load_source("s = tokens_int" + " + 1" * (4 * N) + " == 0 or tokens_int > 0;")
    assert evaluate(get_sop(chain, "s"), [1]) == [True]


def test_maximal_nesting_inside_recursion_works_and_past_the_stack_is_located():
    def program(calls: int) -> str:
        return (
            "def f(n) {\n  return "
            + "-" * (N - 10)
            + "(f(n - 1) if n > 0 else tokens_int);\n}\n"
            + f"x = f({calls});\n"
        )

    sop = get_sop(load_source(program(20)), "x")
    assert evaluate(sop, [3]) == [3 * (-1) ** (21 * (N - 10))]
    err = error(program(limits.MAX_CALL_DEPTH - 2), RaspValueError)
    assert "nest too deeply" in err.message and at(err) == (4, 1)


# ------------------------------------------------------------------ literals and numbers


def test_literal_sizes():
    assert load_source(f"x = {'9' * MAX_INT_DIGITS};").lookup("x") == 10**MAX_INT_DIGITS - 1
    err = error(f"x = {'1' * (MAX_INT_DIGITS + 1)};", RaspSyntaxError)
    assert at(err) == (1, 5) and f"{MAX_INT_DIGITS:,} digits" in err.message
    err = error(f"x = {'1' * 5000};", RaspSyntaxError)  # past Python's own int-str limit
    assert at(err) == (1, 5)
    err = error(f"x = {'1' * 400}.0;", RaspSyntaxError)
    assert "too large for a float" in err.message
    assert len(load_source(f'x = "{"a" * MAX_STRING_LEN}";').lookup("x")) == MAX_STRING_LEN  # type: ignore[arg-type]
    err = error(f'x = "{"a" * (MAX_STRING_LEN + 1)}";', RaspSyntaxError)
    assert at(err) == (1, 5) and f"{MAX_STRING_LEN:,}" in err.message


def test_numbers_past_the_limit_are_refused_before_they_are_computed():
    biggest = load_source(f"x = 10^{MAX_INT_DIGITS - 1} * 9;").lookup("x")
    assert format_sop([biggest]).startswith("[9000")  # type: ignore[list-item]  # printable
    started = time.perf_counter()
    for text in ("x = 10^5000;", "x = 10^(2^40);", "x = (-7)^(10^30);"):
        err = error("\n" + text, RaspValueError)
        assert at(err) == (2, 5) and f"limit is {MAX_INT_DIGITS:,}" in err.message
    assert time.perf_counter() - started < 1
    err = error("x = 2;\nfor i in range(100) { x = x * x; }", RaspValueError)
    assert at(err) == (2, 27) and "digits" in err.message
    sop = get_sop(load_source("x = tokens_int ^ 5000;\ny = tokens_int + 10^999 * 9;"), "x")
    with pytest.raises(RaspValueError, match="digits") as info:
        evaluate(sop, [10])
    assert at(info.value) == (1, 5)
    assert evaluate(sop, [1]) == [1]
    with pytest.raises(RaspValueError, match="digits"):
        evaluate(get_sop(load_source("x = tokens_int + 10^999 * 9;"), "x"), [10**999])
    with pytest.raises(RaspValueError, match="not a valid int"):
        evaluate(get_sop(load_source("x = tokens_int;"), "x"), ["9" * (MAX_INT_DIGITS + 1)])


def test_strings_and_lists_past_the_limit():
    for text in (
        f'x = "ab" * {MAX_STRING_LEN};',
        f'x = "a" * {MAX_STRING_LEN // 2 + 1} + "a" * {MAX_STRING_LEN // 2};',
        'x = "%0999999999d" % 5;',
        f"x = [0] * {MAX_LIST_LEN + 1};",
        "x = range(10^9);",
        "x = range(0, 10^100, 1);",
        "x = [1];\nfor i in range(30) { x = x + x; }",
    ):
        err = error(text, RaspValueError)
        assert err.span is not None and "limit" in err.message, text
    assert len(load_source(f"x = range({MAX_LIST_LEN});").lookup("x")) == MAX_LIST_LEN  # type: ignore[arg-type]
    sop = get_sop(load_source("x = tokens * 1000000000;"), "x")
    with pytest.raises(RaspValueError, match="string of 1,000,000,000 characters"):
        evaluate(sop, "ab")


def test_lookups_in_long_tables_are_fast():
    session = load_source(
        f"t = range({MAX_LIST_LEN});\nx = t[indices];\ny = indices in t;\nz = [5, 6][indices];"
    )
    started = time.perf_counter()
    inp = ["a"] * 2000
    assert evaluate(get_sop(session, "x"), inp) == list(range(2000))
    assert evaluate(get_sop(session, "y"), inp) == [True] * 2000
    assert time.perf_counter() - started < 1
    with pytest.raises(RaspValueError, match="fails at position 2"):
        evaluate(get_sop(session, "z"), "abc")


# ------------------------------------------------------------------ steps and loads


def test_definition_time_steps(monkeypatch):
    monkeypatch.setattr(lowerer, "MAX_STEPS", 1000)
    err = error("for i in range(100) {\n  for j in range(100) { x = 1; }\n}", RaspValueError)
    assert "more than 1,000 definition-time steps" in err.message and err.span is not None
    err = error("def fib(n) { return fib(n - 1) + fib(n - 2) if n > 1 else n; }\nx = fib(30);")
    assert "steps" in err.message
    session = Session()
    for _ in range(3):  # the budget is per run: a session runs many programs
        session.execute(parse("for i in range(300) { x = i; }"))


def test_load_depth(tmp_path, monkeypatch):
    monkeypatch.setattr(lowerer, "MAX_LOAD_DEPTH", 3)
    for i in range(5):
        (tmp_path / f"f{i}.rasp").write_text(f'load "f{i + 1}";\n' if i < 4 else "x = 1;\n")
    err = error('load "f0";', RaspValueError, base_dir=tmp_path)
    assert "more than 3 nested loads" in err.message and err.span is not None


# ------------------------------------------------------------------ source size and files


def test_source_size(tmp_path):
    text = "#" * (MAX_SOURCE_BYTES + 1)
    with pytest.raises(InputError, match=f"limit of {MAX_SOURCE_BYTES:,}"):
        parse(text)
    big = tmp_path / "big.rasp"
    big.write_text(text)
    with pytest.raises(InputError, match=f"limit of {MAX_SOURCE_BYTES:,}"):
        load_program(big)
    (tmp_path / "main.rasp").write_text('x = 1;\nload "big";\n')
    with pytest.raises(InputError) as info:
        load_program(tmp_path / "main.rasp")
    assert at(info.value) == (2, 1)
    parse("#" * MAX_SOURCE_BYTES)  # exactly the limit is fine


def test_only_regular_files_are_read(tmp_path):
    started = time.perf_counter()
    with pytest.raises(InputError, match="not a regular file"):
        read_source("/dev/zero")
    fifo = tmp_path / "pipe.rasp"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):  # and no hang on open
        read_source(fifo)
    (tmp_path / "dir.rasp").mkdir()
    for name in ("pipe", "dir"):
        with pytest.raises(InputError) as info:
            load_source(f'load "{name}";', base_dir=tmp_path)
        assert at(info.value) == (1, 1)
    nul = tmp_path / "nul.rasp"
    nul.write_bytes(b"x = 1;\x00\n")
    with pytest.raises(RaspValueError, match="NUL"):
        read_source(nul)
    assert time.perf_counter() - started < 1


# ------------------------------------------------------------------ load paths


def test_load_paths_are_relative_names_without_dots(tmp_path):
    (tmp_path / "lib.rasp").write_text("y = 1;\n")
    for name in (
        str(tmp_path / "lib"),
        "../lib",
        "./lib",
        "sub/../lib",
        "a\\\\lib",
        "",
        "sub//lib",
    ):
        err = error(f'\nload "{name}";', RaspNameError, base_dir=tmp_path / "sub")
        assert at(err) == (2, 1) and "relative name" in err.message, name


def test_load_is_relative_to_the_loading_file(tmp_path, monkeypatch):
    (tmp_path / "proj" / "sub").mkdir(parents=True)
    (tmp_path / "proj" / "main.rasp").write_text('load "sub/a";\nx = tokens;\n')
    (tmp_path / "proj" / "sub" / "a.rasp").write_text('load "b";\nfrom_a = from_b + 1;\n')
    (tmp_path / "proj" / "sub" / "b.rasp").write_text("from_b = 1;\n")
    (tmp_path / "b.rasp").write_text("from_b = 100;\n")  # the cwd's b is not the one
    monkeypatch.chdir(tmp_path)
    session = load_program(tmp_path / "proj" / "main.rasp")
    assert session.lookup("from_a") == 2


def test_load_never_follows_a_link_out_of_the_program_directory(tmp_path):
    secret = tmp_path / "outside" / "secret.rasp"
    secret.parent.mkdir()
    secret.write_text("password: hunter2 not rasp\n")
    proj = tmp_path / "proj"
    (proj / "sub").mkdir(parents=True)
    (proj / "sub" / "ok.rasp").write_text("ok = 1;\n")
    (proj / "evil.rasp").symlink_to(secret)
    (proj / "deep.rasp").symlink_to(proj / "sub" / "ok.rasp")
    (proj / "loop.rasp").symlink_to(proj / "loop.rasp")
    assert load_source('load "deep";', base_dir=proj).lookup("ok") == 1
    for name in ("evil", "loop"):
        err = error(f'load "{name}";', RaspNameError, base_dir=proj)
        assert at(err) == (1, 1) and "hunter2" not in err.render(), name
    (proj / "sub" / "nested.rasp").write_text('load "up";\n')
    (proj / "sub" / "up.rasp").symlink_to(secret)
    err = error('load "sub/nested";', RaspNameError, base_dir=proj)
    assert "outside" in err.message and "hunter2" not in err.render()


# ------------------------------------------------------------------ inputs


def test_input_limits():
    sop = get_sop(load_source("x = tokens;"), "x")
    assert len(evaluate(sop, "a" * MAX_INPUT_LEN)) == MAX_INPUT_LEN
    with pytest.raises(InputError, match=f"limit of {MAX_INPUT_LEN:,}"):
        evaluate(sop, "a" * (MAX_INPUT_LEN + 1))
    with pytest.raises(InputError, match="digits"):
        evaluate(sop, [10**MAX_INT_DIGITS])
    with pytest.raises(InputError, match="characters"):
        evaluate(sop, ["a" * (MAX_STRING_LEN + 1)])
    err = error('x = tokens;\ny = x("' + "a" * (MAX_INPUT_LEN + 1) + '");', InputError)
    assert at(err) == (2, 5)


# ------------------------------------------------------------------ the command line


@pytest.fixture
def prog(tmp_path: Path) -> str:
    path = tmp_path / "p.rasp"
    path.write_text("x = tokens;\n")
    return str(path)


def test_max_len_is_refused_early(capsys, prog):
    started = time.perf_counter()
    for n in (MAX_LEN + 1, 10**9, 10**100):
        code, _, err = main(
            capsys, "compile", prog, "--vocab", "ab", "--max-len", str(n), "-o", "m"
        )
        assert code == 2 and f"at most {MAX_LEN:,}" in err
    assert time.perf_counter() - started < 1


@pytest.mark.parametrize(
    ("vocab", "says"),
    [
        ("[1, 1.0, true]", "1, 1.0 and true, which Python treats as one value"),
        ('["a", 0, false]', "0 and false"),
        ("[Infinity, 1]", "Infinity"),
        ("[NaN]", "NaN"),
        ("[1e999]", "too large for a float"),
        ("[" + "1" * 5000 + "]", f"limit is {MAX_INT_DIGITS:,}"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("[[1], 2]", "expected a JSON list"),
        (json.dumps(["a" * (MAX_STRING_LEN + 1)]), f"limit is {MAX_STRING_LEN:,}"),
        (json.dumps(list(range(MAX_VOCAB_SIZE + 1))), f"limit of {MAX_VOCAB_SIZE:,}"),
    ],
)
def test_vocab_limits(capsys, prog, vocab, says):
    code, _, err = main(capsys, "inspect", prog, "--vocab", vocab, "--max-len", "4")
    assert code == 1 and says in err and "--vocab" in err


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("[NaN]", "NaN"),
        ("[" + "1" * 5000 + "]", "digits"),
        (json.dumps(["a"] * (MAX_INPUT_LEN + 1)), f"limit is {MAX_INPUT_LEN:,}"),
    ],
)
def test_input_json_limits(capsys, prog, given, says):
    code, _, err = main(capsys, "eval", prog, "--input-json", given)
    assert code == 2 and says in err and "--input-json" in err


def test_eval_input_length_and_program_files(capsys, prog, tmp_path):
    code, _, err = main(capsys, "eval", prog, "--input", "a" * 100_000)
    assert code == 1 and f"limit is {MAX_INPUT_LEN:,}" in err
    code, out, _ = main(capsys, "eval", prog, "--input", "a" * MAX_INPUT_LEN, "--json")
    assert code == 0 and len(json.loads(out)) == MAX_INPUT_LEN
    code, _, err = main(capsys, "eval", "/dev/zero", "--input", "a")
    assert code == 1 and "not a regular file" in err
    big = tmp_path / "big.rasp"
    big.write_text("#" * (MAX_SOURCE_BYTES + 1))
    code, _, err = main(capsys, "eval", str(big), "--input", "a")
    assert code == 1 and f"{MAX_SOURCE_BYTES:,}" in err


def test_verify_input_count(capsys, prog):
    code, _, err = main(
        capsys, "verify", prog, "--vocab", "abcd", "--max-len", "16", "--exhaustive-len", "16"
    )
    assert code == 1 and f"limit of {MAX_VERIFY_INPUTS:,} inputs" in err
    code, _, err = main(
        capsys, "verify", prog, "--vocab", "ab", "--max-len", "4",
        "--samples", str(MAX_VERIFY_INPUTS + 1),
    )  # fmt: skip
    assert code == 1 and f"limit of {MAX_VERIFY_INPUTS:,} inputs" in err


# ------------------------------------------------------------------ the REPL survives


def run_repl(text: str) -> str:
    out = io.StringIO()
    repl.Repl(out=out).run(_reader(text))
    return out.getvalue()


def _reader(text: str):
    lines = iter(text.splitlines())
    return lambda prompt: next(lines, None)


def test_repl_applies_a_loaded_files_commands_and_reports_its_errors(tmp_path, monkeypatch):
    (tmp_path / "lib.rasp").write_text(
        'set example "xyz"\nfull seq display on\nbad = no_such_name;\n'
        "m = aggregate(select(indices, indices, <=), indices);\n"
    )
    monkeypatch.chdir(tmp_path)
    out = run_repl('load "lib";\nm;')
    assert "undefined name 'no_such_name'" in out and "lib.rasp:3:" in out
    # the example set in the file is used, at full float precision (1.5, 0.5, 1.0)
    assert re.search(r"x\s+y\s+z", out) and re.search(r"0\s+0\.5\s+1\.0", out)


def test_repl_survives_every_limit():
    entries = [
        "a = 1;",
        "x = " + "-" * (10 * N) + "1;",
        "x = [" * (10 * N) + "]" * (10 * N) + ";",
        f"y = {'1' * 5000};",
        "z = 10^5000;",
        "w = 10^(2^40);",
        "r = range(10^9);",
        'set example "' + "a" * (MAX_INPUT_LEN + 1) + '"',
        "s = tokens;",
        "a;",
    ]
    out = run_repl("\n".join(entries) + "\n")
    assert "internal error" not in out
    assert out.count("syntax error") == 3 and out.count("value error") == 4
    assert "<stdin>:5:5: value error" in out
    assert ' \t Example: s("hello") = [h, e, l, l, o] (strings)' in out  # the example stayed
    assert out.rstrip().endswith("value: a =  1")


def test_repl_survives_an_internal_error_in_the_parser(monkeypatch):
    calls = []

    def broken_parse(text: str, name: str = "<input>"):
        if not calls:
            calls.append(text)
            raise ValueError("boom")
        return parse(text, name)

    monkeypatch.setattr(repl, "parse", broken_parse)
    out = run_repl("a = 1;\nb = 2;\n")
    assert "internal error (a bug in rasp_compiler): ValueError: boom" in out
    assert "value: b =  2" in out


def test_repl_entry_size_and_linear_parsing(monkeypatch):
    monkeypatch.setattr(repl, "MAX_SOURCE_BYTES", 1000)
    out = run_repl("x = (1\n" + "+ 1\n" * 400 + ");\ny = 2;\n")
    assert "<stdin>:1: input error: this entry is longer than the limit of 1,000 bytes" in out
    assert "value: y =  2" in out
    monkeypatch.undo()
    parses = []

    def counting_parse(text: str, name: str = "<input>"):
        parses.append(len(text))
        return parse(text, name)

    monkeypatch.setattr(repl, "parse", counting_parse)
    out = run_repl("x = (1\n" + "+ 1\n" * 2000 + ");\ny = 2;\n")
    assert "value: x =  2001" in out and "value: y =  2" in out
    assert len(parses) <= repl.REPL_EAGER_LINES + 3


def test_repl_pipe_reader_drops_an_overlong_line(monkeypatch):
    monkeypatch.setattr(repl, "MAX_SOURCE_BYTES", 100)
    monkeypatch.setattr(sys, "stdin", io.StringIO("a" * 1000 + "\nb = 2;\n"))
    read = repl.stdin_reader(interactive=False)
    assert len(read("")) == 101  # type: ignore[arg-type]
    assert read("") == "b = 2;"
    monkeypatch.setattr(sys, "stdin", io.StringIO("a" * 1000 + "\nb = 2;\n"))
    out = io.StringIO()
    repl.Repl(out=out).run(repl.stdin_reader(interactive=False))
    assert "longer than the limit of 100 bytes" in out.getvalue()
    assert "value: b =  2" in out.getvalue()


# ------------------------------------------------------------------ messages


def test_a_caret_under_a_very_long_line_shows_a_window():
    line = "x = " + "1" * 5000 + " + y;"
    caret = Span(Source("f.rasp", line), 1, 5006, 1, 5007).caret()
    shown, marks = caret.splitlines()
    assert len(shown) < 200 and shown.strip().startswith("...")
    assert shown[marks.index("^")] == "+"


def test_an_operation_shared_along_a_deep_chain_is_planned_once():
    # each step reads x three times: walked as a tree, planning visits 3^40 paths (it
    # hung); walked as the graph it is, each operation is visited once
    from rasp_compiler.compiler.pipeline import compile_program

    src = (
        "x = indices;\n"
        "for i in range(40) {\n    x = (x if x > 2 else x + 1) % 7;\n}\n"
        "y = aggregate(select(indices, x, ==), tokens);\n"
    )
    model = compile_program(src, None, "ab", 4)
    assert model.run("abab") == model.run(["a", "b", "a", "b"])
    from rasp_compiler.language.interpret import evaluate
    from rasp_compiler.language.lower import choose_sop, load_source

    _, sop = choose_sop(load_source(src), None, "<test>")
    assert model.run("abba") == evaluate(sop, "abba")
