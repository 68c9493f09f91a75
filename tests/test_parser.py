"""The grammar and parser: every precedence row of LANGUAGE.md section 3, every
statement form, comments, REPL commands, and syntax errors with their locations.

Precedence is checked by value: atom-only expressions are computed at definition time
(``lower``), so each test picks an expression whose value differs between the
intended grouping and the tempting wrong one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rasp_compiler.errors import RaspSyntaxError
from rasp_compiler.language import syntax as S
from rasp_compiler.language.lower import load_source
from rasp_compiler.language.parser import IncompleteInputError, parse

REPO = Path(__file__).resolve().parent.parent


def value(expr: str) -> object:
    """The definition-time value of an atom-only (or list/dict) expression."""
    return load_source(f"x = {expr};").lookup("x")


def expr_tree(expr: str) -> S.Expr:
    (stmt,) = parse(f"{expr};").statements
    assert isinstance(stmt, S.ExprStmt)
    return stmt.expr


def syntax_error(text: str) -> RaspSyntaxError:
    with pytest.raises(RaspSyntaxError) as info:
        parse(text, "prog.rasp")
    return info.value


# ------------------------------------------------------------ precedence table


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        # level 1: parentheses, indexing, calls bind tightest
        ("(1 + 2) * 3", 9),
        ("[10, 20, 30][1]", 20),
        ("[[1, 2], [3, 4]][1][0]", 3),
        ('"abc"[-1]', "c"),
        ("-[1, 2][0]", -1),
        ('{"a": 5}["a"] * 2', 10),
        # level 2: prefix not / - / + bind tighter than every binary operator
        ("-2^2", 4),
        ("-2 ^ 3", -8),
        ("not 0 + 1", 2),  # (not 0) + 1
        ("not True and False", False),  # (not True) and False
        ("not 1 == 1", False),  # (not 1) == 1
        ("not 0 == 1", True),  # (not 0) == 1, i.e. True == 1
        ("- -3", 3),
        ("+-3", -3),
        # level 3: round(...), indicator(...)
        ("round(2.5)", 2),
        ("round(3.5)", 4),
        ("-round(2.6)", -3),
        ("round(1.5) ^ 2", 4),
        ("indicator(5)", 1),
        ("indicator(0) + 1", 1),
        # level 4: ^ is left-associative and tighter than *
        ("2^3^2", 64),
        ("2 * 3 ^ 2", 18),
        # level 5: * and / (true division)
        ("7 / 2", 3.5),
        ("8 / 4 / 2", 1.0),
        ("2 * 3 / 4", 1.5),
        # level 6: % is looser than *
        ("10 % 4 * 2", 2),  # 10 % (4 * 2)
        ("2 * 5 % 3", 1),  # (2 * 5) % 3
        ("1 + 7 % 4", 4),  # % is tighter than +
        ("10 - 7 % 4", 7),
        # level 7: + and -, left-associative
        ("10 - 3 - 2", 5),
        ("1 - 2 + 3", 2),
        # level 8: comparisons, no chaining
        ("1 < 2 < 3", True),  # (1 < 2) < 3
        ("3 > 2 > 1", False),  # (3 > 2) > 1, i.e. True > 1; Python chaining says True
        ("2 == 2 == 2", False),  # True == 2
        ("1 + 1 == 2", True),
        ("2 >= 2", True),
        ("1 <= 0", False),
        # level 10: and / or share one level, left-associative
        ("True or False and False", False),  # (True or False) and False
        ("False and True or True", True),
        ("1 == 1 and 2 < 1", False),
        ("0 or 5", 5),  # Python semantics between atoms
        # level 11: ternary, left-associative, looser than and/or
        ("1 if True else 2 if False else 3", 3),  # (1 if True else 2) if False else 3
        ("1 if False else 2 if True else 3", 2),
        ("1 if True and False else 2", 2),
        ("True and False if True else 5", False),
        ("0 if False else True and False", False),
        ("1 if False else 2 + 3", 5),
        # level 12: literals, lists, dicts, comprehensions, range
        ("2.5 * 2", 5.0),
        ('"ab" + "c"', "abc"),
        ("[1, 2] + [3]", [1, 2, 3]),
        ("[x * x for x in range(4)]", [0, 1, 4, 9]),
        ("{x: x + 1 for x in [1, 2]}", {1: 2, 2: 3}),
        ("range(2, 10, 3)", [2, 5, 8]),
        ("[a + b for a, b in zip([1, 2], [10, 20])]", [11, 22]),
        ("[]", []),
        ("{}", {}),
        # level 13: in is the loosest binary operator
        ("1 + 1 in [2]", True),
        ("2 in [1] + [2]", True),
        ("0 if True else 2 in [0]", True),  # (0 if True else 2) in [0]
        ("1 in [1] in [True]", True),  # (1 in [1]) in [True]
        ("3 in [1, 2] or True", False),  # 3 in ([1, 2] or True)
        # level 14: zip(...), len(...)
        ("len([1, 2, 3])", 3),
        ("len(zip([1], [2]))", 1),
        ("len(range(4)) * 2", 8),
    ],
)
def test_precedence_value(expr: str, expected: object) -> None:
    got = value(expr)
    assert got == expected and type(got) is type(expected)


def test_prefix_not_binds_tighter_than_comparison() -> None:
    tree = expr_tree("not x == 1")
    assert isinstance(tree, S.Binary) and tree.op == "=="
    assert isinstance(tree.left, S.Unary) and tree.left.op == "not"


def test_prefix_minus_applies_to_index_and_call_results() -> None:
    tree = expr_tree("-f(x)[0]")
    assert isinstance(tree, S.Unary)
    assert isinstance(tree.operand, S.Index) and isinstance(tree.operand.target, S.Call)


def test_select_arguments_are_full_expressions() -> None:
    tree = expr_tree("select(indices + 1, x if c else y, <=) and select(a, b, !=)")
    assert isinstance(tree, S.Binary) and tree.op == "and"
    sel = tree.left
    assert isinstance(sel, S.SelectExpr) and sel.cmp == "<="
    assert isinstance(sel.keys, S.Binary) and isinstance(sel.queries, S.IfExpr)
    assert isinstance(tree.right, S.SelectExpr) and tree.right.cmp == "!="


@pytest.mark.parametrize("cmp", ["==", "!=", "<", ">", "<=", ">="])
def test_select_comparisons(cmp: str) -> None:
    tree = expr_tree(f"select(k, q, {cmp})")
    assert isinstance(tree, S.SelectExpr) and tree.cmp == cmp


def test_select_allows_space_before_paren() -> None:
    assert isinstance(expr_tree("select (k, q, ==)"), S.SelectExpr)


def test_in_is_loosest() -> None:
    tree = expr_tree("a + b in l if c else m")
    assert isinstance(tree, S.Binary) and tree.op == "in"
    assert isinstance(tree.left, S.Binary) and tree.left.op == "+"
    assert isinstance(tree.right, S.IfExpr)


def test_ternary_is_left_associative() -> None:
    tree = expr_tree("a if b else c if d else e")
    assert isinstance(tree, S.IfExpr) and isinstance(tree.body, S.IfExpr)
    assert isinstance(tree.orelse, S.Name) and tree.orelse.id == "e"


def test_no_not_equal_outside_select() -> None:
    err = syntax_error("x = a != b;")
    assert (err.span.line, err.span.col) == (1, 7)


def test_literals() -> None:
    tree = expr_tree('[1, 2.25, "a b#c", True]')
    assert isinstance(tree, S.ListExpr)
    one, quarter, text, true = tree.items
    assert isinstance(one, S.Num) and one.value == 1 and type(one.value) is int
    assert isinstance(quarter, S.Num) and quarter.value == 2.25
    assert isinstance(text, S.Str) and text.value == "a b#c"
    assert isinstance(true, S.Name) and true.id == "True"


def test_float_literals_are_digits_dot_digits_only() -> None:
    syntax_error("x = 1.;")
    syntax_error("x = .5;")


# ------------------------------------------------------------ statements


def test_assignment_and_expression_statement() -> None:
    prog = parse("x = 1;\nx + 2;")
    assign, stmt = prog.statements
    assert isinstance(assign, S.Assign) and [t.id for t in assign.targets] == ["x"]
    assert isinstance(stmt, S.ExprStmt) and isinstance(stmt.expr, S.Binary)


def test_multi_assignment_forms() -> None:
    a, b = parse("a, b = 1, 2;\nc, d = f(x);").statements
    assert isinstance(a, S.Assign) and len(a.targets) == 2 and len(a.values) == 2
    assert isinstance(b, S.Assign) and len(b.targets) == 2 and len(b.values) == 1
    session = load_source("def f(x) { return x, x + 1; }\na, b = 1, 2;\nc, d = f(5);")
    assert [session.lookup(n) for n in "abcd"] == [1, 2, 5, 6]


def test_def_with_nested_def_and_comments() -> None:
    text = """
def outer(a, b) {  # a comment after the brace
    # a comment line
    def inner(c) {
        return c * 2;
    }
    x = inner(a);  # trailing comment
    return x, b;
    # comment before the brace
}
"""
    (d,) = parse(text).statements
    assert isinstance(d, S.Def) and d.name.id == "outer"
    assert [p.id for p in d.params] == ["a", "b"]
    assert isinstance(d.body[0], S.Def) and isinstance(d.body[1], S.Assign)
    assert isinstance(d.ret, S.Return) and len(d.ret.values) == 2


def test_def_without_parameters() -> None:
    (d,) = parse("def f() { return 1; }").statements
    assert isinstance(d, S.Def) and d.params == ()


def test_for_loops() -> None:
    one, two = parse(
        "for x in [1, 2] { y = x; }\nfor a, b in zip(l1, l2) { def g(z) { return z; } }"
    ).statements
    assert isinstance(one, S.For) and [t.id for t in one.targets] == ["x"]
    assert isinstance(two, S.For) and [t.id for t in two.targets] == ["a", "b"]
    assert isinstance(two.iterable, S.Call) and isinstance(two.body[0], S.Def)


def test_load_and_draw() -> None:
    load, draw1, draw2 = parse('load "lib/extra";\ndraw(tokens);\ndraw(x + 1, "abc");').statements
    assert isinstance(load, S.Load) and load.path == "lib/extra"
    assert isinstance(draw1, S.Draw) and draw1.input is None
    assert isinstance(draw2, S.Draw) and isinstance(draw2.input, S.Str)


def test_applying_an_sop_to_an_input_is_a_call() -> None:
    tree = expr_tree('reverse("abc")')
    assert isinstance(tree, S.Call) and isinstance(tree.args[0], S.Str)


def test_statement_spanning_lines_and_two_on_one_line() -> None:
    prog = parse("x =\n  1 +\n  2; y = 3;")
    assert len(prog.statements) == 2
    assert prog.statements[0].span.line == 1 and prog.statements[0].span.end_line == 3


def test_comments_and_empty_program() -> None:
    assert parse("").statements == ()
    assert parse("# only a comment\n\n   # another\n").statements == ()
    (stmt,) = parse('x = "# not a comment"; # a comment').statements
    assert isinstance(stmt, S.Assign) and isinstance(stmt.values[0], S.Str)


def test_spans() -> None:
    (stmt,) = parse("\n  foo = bar + 12;", "f.rasp").statements
    assert isinstance(stmt, S.Assign)
    assert stmt.span.location == "f.rasp:2:3"
    value = stmt.values[0]
    assert (value.span.line, value.span.col, value.span.end_col) == (2, 9, 17)
    assert value.span.text == "bar + 12"


# ------------------------------------------------------------ REPL commands


@pytest.mark.parametrize(
    ("text", "cls", "fields"),
    [
        ('set example "hello"', S.SetExample, {"subset": None}),
        ("set s-op example [1, 2]", S.SetExample, {"subset": "s-op"}),
        ('set selector example "ab"', S.SetExample, {"subset": "selector"}),
        ("show example", S.ShowExample, {"subset": None}),
        ("show s-op example", S.ShowExample, {"subset": "s-op"}),
        ("examples on", S.ToggleExamples, {"subset": None, "on": True}),
        ("examples off", S.ToggleExamples, {"subset": None, "on": False}),
        ("selector examples off", S.ToggleExamples, {"subset": "selector", "on": False}),
        ("s-op examples on", S.ToggleExamples, {"subset": "s-op", "on": True}),
        ("full seq display on", S.ToggleFullSeqDisplay, {"on": True}),
        ("full  seq display off", S.ToggleFullSeqDisplay, {"on": False}),
        ("exit", S.Exit, {}),
        ("quit", S.Exit, {}),
        ("exit()", S.Exit, {}),
        ("quit()", S.Exit, {}),
    ],
)
def test_repl_commands(text: str, cls: type, fields: dict[str, object]) -> None:
    (cmd,) = parse(text).statements
    assert isinstance(cmd, cls)
    for key, expected in fields.items():
        assert getattr(cmd, key) == expected


def test_repl_commands_between_statements() -> None:
    prog = parse('x = 1;\nset example "abc"\nshow example\ny = x;\nexamples off\n')
    kinds = [type(s).__name__ for s in prog.statements]
    assert kinds == ["Assign", "SetExample", "ShowExample", "Assign", "ToggleExamples"]


def test_set_example_ends_at_the_end_of_its_line() -> None:
    prog = parse('set example "abc"\n-indices;\nset example [1,\n  2] +\n  [3]\n(x);')
    kinds = [type(s).__name__ for s in prog.statements]
    assert kinds == ["SetExample", "ExprStmt", "SetExample", "ExprStmt"]
    second = prog.statements[2]
    assert isinstance(second, S.SetExample) and isinstance(second.example, S.Binary)
    assert value("[1,\n  2] +\n  [3]") == [1, 2, 3]


def test_set_example_expression() -> None:
    (cmd,) = parse("set example [1, 2] + [3]").statements
    assert isinstance(cmd, S.SetExample) and isinstance(cmd.example, S.Binary)


# ------------------------------------------------------------ syntax errors


@pytest.mark.parametrize(
    ("text", "line", "col", "words"),
    [
        ("x = 1 2;", 1, 7, "expected ',' or ';'"),
        ("x = = 2;", 1, 5, "expected an expression"),
        ("x = 1\ny = 2;", 1, 6, "missing ';'"),
        ("a = 1;\nb = (1 + ;", 2, 10, "expected an expression"),
        ("x = [1, 2;", 1, 10, "expected ']'"),
        ("x = 1 $ 2;", 1, 7, "unexpected character '$'"),
        ('x = "abc;', 1, 5, "unterminated string"),
        ("x = select(a, b, c);", 1, 18, "comparison operator"),
        ("on = 1;", 1, 1, "'on' is a keyword"),
        ("def = 2;", 1, 5, "expected a name"),
        ("x = example + 1;", 1, 5, "'example' is a keyword"),
        ("def f(a) { x = 1; }", 1, 5, "must end with a return"),
        ("def f(a) {\n  return 1;\n  x = 2;\n  return x;\n}", 2, 3, "'return' is not allowed"),
        ("return 1;", 1, 1, "'return' is not allowed at the top level"),
        ("for x in l { return 1; }", 1, 14, "inside a for loop"),
        ("f(1,);", 1, 5, "expected an expression"),
        ("x = 1 if 2;", 1, 11, "expected 'else'"),
        ("load foo;", 1, 6, "expected a string"),
    ],
)
def test_syntax_errors(text: str, line: int, col: int, words: str) -> None:
    err = syntax_error(text)
    assert err.span is not None
    assert (err.span.line, err.span.col) == (line, col), err.render()
    assert words in err.message, err.render()
    rendered = err.render()
    assert rendered.startswith(f"prog.rasp:{line}:{col}: syntax error: ")
    assert "^" in rendered


def test_incomplete_input_is_reported_as_such() -> None:
    for text in ["x = (1 + 2", "def f(a) {", "x = 1", "set example"]:
        with pytest.raises(IncompleteInputError) as info:
            parse(text)
        assert "end of input" in info.value.message
    err = syntax_error("x = 1 2;")
    assert not isinstance(err, IncompleteInputError)


def test_caret_rendering() -> None:
    err = syntax_error("total = a +* b;")
    assert err.render() == (
        "prog.rasp:1:12: syntax error: unexpected '*'; expected an expression\n"
        "    total = a +* b;\n"
        "               ^"
    )


# ------------------------------------------------------------ packaging


def test_grammar_loads_from_an_installed_copy(tmp_path: Path) -> None:
    """Build a wheel from a copy of the sources, install it into a directory, and parse
    from another working directory with only that directory on the path."""
    pip = [sys.executable, "-m", "pip"]
    assert subprocess.run([*pip, "--version"], capture_output=True).returncode == 0, "no pip"
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg in ("rasp_compiler", "grammar"):
        shutil.copytree(REPO / pkg, src / pkg, ignore=ignore)
    wheels, site, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    quiet = {"capture_output": True, "text": True}
    build = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(src)],
        **quiet,
    )
    assert build.returncode == 0, f"cannot build a wheel: {build.stderr[-500:]}"
    (wheel,) = wheels.glob("*.whl")
    install = [*pip, "install", "--no-deps", "-q", "--target", str(site), str(wheel)]
    assert subprocess.run(install, **quiet).returncode == 0
    code = (
        "import rasp_compiler, rasp_compiler.language.parser as p\n"
        f"assert rasp_compiler.__file__.startswith({str(site)!r})\n"
        "print(type(p.parse('x = -2^2;').statements[0]).__name__)\n"
        "print(rasp_compiler.load_source('y = sort(tokens, tokens);').last_sop_name())\n"
        "m = rasp_compiler.compile_program('r = aggregate(select(indices, length - indices - 1,"
        " ==), tokens);', vocab='ab', max_len=4)\n"
        "print(''.join(m.run('aab')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    run = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, **quiet)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["Assign", "y", "baa"]
