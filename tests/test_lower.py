"""Lowering: names and scopes, functions, loops, comprehensions, load, the library,
reserved names, the IR each construct produces, and every error with its location."""

from __future__ import annotations

from pathlib import Path

import pytest

from rasp_compiler.errors import RaspError, RaspNameError, RaspTypeError, RaspValueError
from rasp_compiler.language import ir
from rasp_compiler.language import syntax as S
from rasp_compiler.language.interpret import evaluate
from rasp_compiler.language.lower import (
    BUILTIN_NAMES,
    Function,
    Session,
    StatementResult,
    get_sop,
    load_program,
    load_source,
)
from rasp_compiler.language.parser import parse

LIBRARY_NAMES = {
    "full_s", "has_focus", "count", "contains", "max", "min", "average", "load_from_location",
    "shift", "mark_first_instance", "mark_last_instance", "select_from_first",
    "select_from_last", "sort", "select_next_identical",
}  # fmt: skip


def run(text: str, **kw: object) -> Session:
    return load_source(text, "prog.rasp", **kw)  # type: ignore[arg-type]


def value(text: str, name: str = "x") -> object:
    return run(text).lookup(name)


def on(text: str, inp: str | list = "hello", name: str = "x") -> list:
    """The value on ``inp`` of the s-op ``name`` that ``text`` defines."""
    return evaluate(get_sop(run(text), name), inp)  # type: ignore[return-value]


def error(text: str, cls: type[RaspError] = RaspError, **kw: object) -> RaspError:
    with pytest.raises(cls) as info:
        run(text, **kw)
    return info.value


def at(err: RaspError) -> tuple[int, int]:
    assert err.span is not None, err.render()
    return err.span.line, err.span.col


# ------------------------------------------------------------ builtins and library


def test_library_defines_exactly_the_documented_names() -> None:
    session = Session()
    assert session.library_names == LIBRARY_NAMES
    assert session.reserved_names == BUILTIN_NAMES | LIBRARY_NAMES
    assert "tokens" not in session.reserved_names
    assert session.names() == {}
    assert session.last_sop_name() is None


def test_tokens_and_primitives() -> None:
    session = Session()
    tokens = session.lookup("tokens")
    assert isinstance(tokens, ir.Tokens) and tokens.conv == "str"
    assert tokens is session.lookup("tokens_str")
    for conv in ir.TOKEN_CONVERSIONS:
        node = session.lookup(f"tokens_{conv}")
        assert isinstance(node, ir.Tokens) and node.conv == conv
    assert isinstance(session.lookup("indices"), ir.Indices)
    assert isinstance(session.lookup("length"), ir.Length)
    assert session.lookup("True") is True and session.lookup("False") is False


def test_tokens_may_be_reassigned() -> None:
    session = run("tokens = tokens_int;\nx = tokens + 1;")
    x = session.lookup("x")
    assert isinstance(x, ir.Map) and x.args[0] is session.lookup("tokens_int")
    assert evaluate(x, [1, 2]) == [2, 3]


def test_selector_width_is_a_primitive() -> None:
    x = value("x = selector_width(select(tokens, tokens, ==));")
    assert isinstance(x, ir.SelectorWidth) and isinstance(x.selector, ir.Select)


def test_sessions_share_the_parsed_library() -> None:
    a, b = Session(), Session()
    fa, fb = a.lookup("sort"), b.lookup("sort")
    assert isinstance(fa, Function) and isinstance(fb, Function)
    assert fa.body[0] is fb.body[0]  # parsed once per process
    assert fa.closure_scope is not fb.closure_scope


# ------------------------------------------------------------ IR of each construct


def test_elementwise_operators_become_maps() -> None:
    table = {
        "-tokens_int": ("neg", 1), "+indices": ("pos", 1), "not tokens_bool": ("not", 1),
        "round(indices)": ("round", 1), "indicator(indices)": ("indicator", 1),
        "indices + 1": ("add", 2), "1 - indices": ("sub", 2), "indices * indices": ("mul", 2),
        "indices / 2": ("div", 2), "indices % 2": ("mod", 2), "indices ^ 2": ("pow", 2),
        "indices == 1": ("eq", 2), "indices < 1": ("lt", 2), "indices > 1": ("gt", 2),
        "indices <= 1": ("le", 2), "indices >= 1": ("ge", 2), "tokens_bool and True": ("and", 2),
        "False or tokens_bool": ("or", 2),
    }  # fmt: skip
    for expr, (op, arity) in table.items():
        x = value(f"x = {expr};")
        assert isinstance(x, ir.Map) and x.op == op and len(x.args) == arity, expr
        assert op in ir.MAP_OPS
    x = value("x = 1 - indices;")
    assert isinstance(x, ir.Map) and x.args[0] == ir.Const(1)
    assert isinstance(x.args[1], ir.Indices)


def test_sop_condition_makes_an_elementwise_where() -> None:
    x = value('x = "a" if indices == 0 else tokens;')
    assert isinstance(x, ir.Map) and x.op == "where"
    cond, body, orelse = x.args
    assert isinstance(cond, ir.Map) and body == ir.Const("a") and isinstance(orelse, ir.Tokens)
    assert on('x = "a" if indices == 0 else tokens;') == ["a", "e", "l", "l", "o"]


def test_membership_in_a_list() -> None:
    x = value('x = tokens in ["h", "o"];')
    assert isinstance(x, ir.Map) and x.op == "in" and x.data == ("h", "o")


def test_atom_in_sop_occurs_anywhere() -> None:
    x = value('x = "l" in tokens;')
    assert isinstance(x, ir.Map) and x.op == "gt" and x.args[1] == ir.Const(0)
    agg = x.args[0]
    assert isinstance(agg, ir.Aggregate) and agg.values == ir.Const(1) and agg.default == 0
    sel = agg.selector
    assert isinstance(sel, ir.Select) and isinstance(sel.keys, ir.Tokens)
    assert sel.queries == ir.Const("l") and sel.cmp == "=="
    assert on('x = "l" in tokens;') == [True] * 5
    assert on('x = "z" in tokens;') == [False] * 5


def test_lookup_tables() -> None:
    x = value("x = [10, 20, 30][indices];")
    assert isinstance(x, ir.Map) and x.op == "lookup"
    assert x.data == ((0, 10), (1, 20), (2, 30), (-3, 10), (-2, 20), (-1, 30))
    y = value('x = {"a": 1, "b": 2}[tokens];')
    assert isinstance(y, ir.Map) and y.data == (("a", 1), ("b", 2))
    z = value('x = "xyz"[0 - indices];')
    assert isinstance(z, ir.Map) and ("x" in dict(z.data).values())
    assert on('x = "xyz"[0 - indices];', "abc") == ["x", "z", "y"]


def test_sop_indexed_by_an_int() -> None:
    session = run("x = tokens[1];\ny = tokens[-1];")
    x, y = session.lookup("x"), session.lookup("y")
    assert isinstance(x, ir.Aggregate) and isinstance(x.values, ir.Tokens)
    sel = x.selector
    assert isinstance(sel, ir.Select) and sel.keys is session.lookup("indices")
    assert sel.queries == ir.Const(1) and sel.cmp == "=="
    assert isinstance(y, ir.Aggregate) and isinstance(y.selector, ir.Select)
    q = y.selector.queries
    assert isinstance(q, ir.Map) and q.op == "add" and q.args[0] is session.lookup("length")
    assert q.args[1] == ir.Const(-1)
    assert evaluate(x, "hello") == ["e"] * 5 and evaluate(y, "hello") == ["o"] * 5


def test_select_and_selector_logic() -> None:
    session = run(
        "a = select(indices, 0, <);\nb = select(1, 1, ==);\nc = a and b;\nd = a or not b;\n"
    )
    a, b, c, d = (session.lookup(n) for n in "abcd")
    assert isinstance(a, ir.Select) and a.queries == ir.Const(0) and a.cmp == "<"
    assert isinstance(b, ir.Select) and b.keys == ir.Const(1)
    assert isinstance(c, ir.SelectorAnd) and c.left is a and c.right is b
    assert isinstance(d, ir.SelectorOr) and isinstance(d.right, ir.SelectorNot)
    assert d.right.inner is b


def test_aggregate_default_and_atom_values() -> None:
    session = run(
        "s = select(indices, indices, <);\nx = aggregate(s, 1);\ny = aggregate(s, tokens, 7);"
    )
    x, y = session.lookup("x"), session.lookup("y")
    assert isinstance(x, ir.Aggregate) and x.values == ir.Const(1) and x.default == 0
    assert isinstance(y, ir.Aggregate) and y.default == 7


def test_ir_nodes_carry_the_span_of_their_expression() -> None:
    x = value("x =  indices + 1;")
    assert x.span is not None and x.span.location == "prog.rasp:1:6"
    assert x.span.text == "indices + 1"


def test_library_nodes_carry_the_users_call_site() -> None:
    x = value("\nx = sort(tokens, indices);")
    nodes = list(ir.walk(x))
    made = [n for n in nodes if not isinstance(n, (ir.Tokens, ir.Indices, ir.Length))]
    assert made and all(n.span is not None and n.span.location == "prog.rasp:2:5" for n in made)


def test_definition_time_lists_of_sops() -> None:
    session = run("l = [tokens, indices];\nx = l[1] + 1;\nn = len(l);")
    assert isinstance(session.lookup("x"), ir.Map) and session.lookup("n") == 2


# ------------------------------------------------------------ names and scopes


def test_rebinding_does_not_change_earlier_sops() -> None:
    session = run("a = indices + 1;\nb = a * 2;\na = tokens;\n")
    b = session.lookup("b")
    assert isinstance(b, ir.Map) and isinstance(b.args[0], ir.Map)
    assert evaluate(b, "abc") == [2, 4, 6]


def test_free_names_are_looked_up_at_call_time() -> None:
    text = "k = 1;\ndef f(x) { return x + k; }\nbefore = f(10);\nk = 100;\nafter = f(10);\n"
    session = run(text)
    assert session.lookup("before") == 11 and session.lookup("after") == 110


def test_function_scope_does_not_leak() -> None:
    session = run("def f(x) { inner = x; return inner; }\ny = f(3);")
    assert session.lookup("y") == 3
    with pytest.raises(RaspNameError):
        session.lookup("inner")


def test_nested_def_sees_enclosing_parameters() -> None:
    text = """
def outer(a) {
    def inner(b) {
        return a * 10 + b;
    }
    return inner(1), inner(2);
}
x, y = outer(4);
"""
    session = run(text)
    assert (session.lookup("x"), session.lookup("y")) == (41, 42)


def test_function_returning_several_values_gives_a_list() -> None:
    assert value("def f() { return 1, 2; }\nx = f();") == [1, 2]
    assert value("x = 1, 2;") == [1, 2]


def test_recursion_over_atoms() -> None:
    text = """
def fact(n) { return 1 if n == 0 else n * fact(n - 1); }
def fib(n) { return n if n < 2 else fib(n - 1) + fib(n - 2); }
x = fact(20);
y = fib(15);
"""
    session = run(text)
    assert session.lookup("x") == 2432902008176640000 and session.lookup("y") == 610


def test_recursion_building_sops() -> None:
    text = """
def shift_n(s, n) { return s if n == 0 else shift(shift_n(s, n - 1), 1, "_"); }
x = shift_n(tokens, 3);
"""
    assert on(text) == ["_", "_", "_", "h", "e"]


def test_deep_recursion_within_the_limit_works() -> None:
    assert value("def down(n) { return 0 if n == 0 else down(n - 1); }\nx = down(300);") == 0


def test_runaway_recursion_is_an_error() -> None:
    err = error("def f(n) { return f(n + 1); }\nx = f(0);", RaspValueError)
    assert "nested function calls" in err.message


def test_for_loop_runs_in_the_enclosing_scope() -> None:
    text = "acc = 0;\nfor i in range(5) { acc = acc + i; last = i; }\n"
    session = run(text)
    assert session.lookup("acc") == 10 and session.lookup("last") == 4
    assert session.lookup("i") == 4


def test_for_loop_unpacking_and_dicts() -> None:
    text = """
s = 0;
for a, b in zip([1, 2], [10, 20]) { s = s + a * b; }
keys = "";
for k in {"p": 1, "q": 2} { keys = keys + k; }
for pair in [[1, 2]] { whole = pair; }
"""
    session = run(text)
    assert session.lookup("s") == 50 and session.lookup("keys") == "pq"
    assert session.lookup("whole") == [1, 2]


def test_for_loop_builds_sops() -> None:
    text = "x = indices;\nfor i in range(3) { x = x + 1; }\n"
    assert on(text, "ab") == [3, 4]


def test_comprehensions_use_a_nested_scope() -> None:
    session = run("y = 5;\nl = [y * 2 for y in [1, 2]];\nd = {k: y for k in [1]};")
    assert session.lookup("l") == [2, 4] and session.lookup("y") == 5
    assert session.lookup("d") == {1: 5}
    with pytest.raises(RaspNameError):
        session.lookup("k")


def test_comprehension_over_sops() -> None:
    x = value('l = [tokens == c for c in ["a", "b"]];\nx = l[0] or l[1];')
    assert on("l = [tokens == c for c in [\"a\", \"b\"]];\nx = l[0] or l[1];", "abc") == [
        True, True, False,
    ]  # fmt: skip
    assert isinstance(x, ir.Map) and x.op == "or"


def test_expression_statements_bind_out() -> None:
    session = run("indices + 1;\n")
    assert isinstance(session.lookup("out"), ir.Map)
    assert session.last_sop_name() == "out"


def test_last_sop_name_and_names() -> None:
    session = run(
        "a = tokens;\nb = select(a, a, ==);\nc = 3;\ndef f(x) { y = indices; return x; }\n"
    )
    assert session.last_sop_name() == "a"
    assert set(session.names()) == {"a", "b", "c", "f"}
    session.execute(parse("d, e = indices, tokens;"))
    assert session.last_sop_name() == "e"


def test_one_session_runs_entries_in_turn() -> None:
    session = Session()
    session.execute(parse("x = indices;"))
    session.execute(parse("y = x + 1;"))
    assert evaluate(get_sop(session, "y"), "ab") == [1, 2]


# ------------------------------------------------------------ load


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_load_copies_public_names_only(tmp_path: Path) -> None:
    write(tmp_path / "lib.rasp", "_private = 1;\npublic = _private + 1;\nindices + 1;\n"
          "def helper(x) { return x + _private; }\n")  # fmt: skip
    session = run('load "lib";\ny = helper(1);', base_dir=tmp_path)
    names = session.names()
    assert names["public"] == 2 and "_private" not in names and "out" not in names
    assert session.lookup("y") == 2  # the function still sees the file's private name


def test_load_runs_in_a_fresh_environment(tmp_path: Path) -> None:
    write(tmp_path / "lib.rasp", "t = tokens;\nsorted = sort(tokens, tokens);\n")
    session = run('secret = 1;\ntokens = tokens_int;\nload "lib";', base_dir=tmp_path)
    assert session.lookup("t") is session.lookup("tokens_str")  # the library's tokens
    err = error('secret = 1;\nload "uses_secret";', base_dir=write_dir(tmp_path))
    assert "secret" in err.message


def write_dir(tmp_path: Path) -> Path:
    d = tmp_path / "other"
    write(d / "uses_secret.rasp", "y = secret;\n")
    return d


def test_load_relative_to_cwd_and_nested(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "a.rasp", 'load "sub/b";\nfrom_a = from_b + 1;\n')
    write(tmp_path / "sub" / "b.rasp", "from_b = 1;\n_hidden = 2;\n")
    monkeypatch.chdir(tmp_path)
    session = run('load "a";')
    assert session.lookup("from_a") == 2 and session.lookup("from_b") == 1
    assert "_hidden" not in session.names()
    assert session.last_sop_name() is None  # loaded names do not count as the program's


def test_load_result_and_program_files(tmp_path: Path) -> None:
    write(tmp_path / "lib.rasp", "double = indices * 2;\n")
    prog = write(tmp_path / "main.rasp", 'load "lib";\nx = double + 1;\n')
    session = load_program(prog)
    assert session.last_sop_name() == "x"
    results = Session(base_dir=tmp_path).execute(parse('load "lib";'))
    (res,) = results
    assert res.kind == "load" and res.name == "lib" and set(res.value) == {"double"}  # type: ignore[arg-type]


def test_load_errors(tmp_path: Path) -> None:
    err = error('\nload "missing";', RaspNameError, base_dir=tmp_path)
    assert at(err) == (2, 1) and "missing.rasp" in err.message
    write(tmp_path / "loop.rasp", 'load "loop";\n')
    err = error('load "loop";', RaspValueError, base_dir=tmp_path)
    assert "circular" in err.message
    write(tmp_path / "bad.rasp", "x = = 1;\n")
    err = error('load "bad";', base_dir=tmp_path)
    assert err.span is not None and err.span.source.name.endswith("bad.rasp")


def test_a_failing_statement_in_a_loaded_file_is_reported_and_the_file_goes_on(
    tmp_path: Path,
) -> None:
    # as in the reference: the error is reported, the statements after it still run
    write(tmp_path / "lib.rasp", "a = indices + 1;\nb = no_such_name;\nc = a * 2;\n")
    results = Session(base_dir=tmp_path).execute(parse('load "lib";'), keep_going=True)
    errors = [r for r in results if r.kind == "error"]
    assert len(errors) == 1 and "no_such_name" in errors[0].value.message  # type: ignore[attr-defined]
    assert errors[0].span.source.name.endswith("lib.rasp") and errors[0].span.line == 2
    (load,) = [r for r in results if r.kind == "load"]
    assert set(load.value) == {"a", "c"}  # type: ignore[arg-type]
    # a program that needs every statement (compile, run) still stops at the first one
    err = error('load "lib";', RaspNameError, base_dir=tmp_path)
    assert "no_such_name" in err.message


def test_repl_commands_in_a_loaded_file_take_effect(tmp_path: Path) -> None:
    from rasp_compiler.language.syntax import SetExample, ToggleFullSeqDisplay

    write(tmp_path / "lib.rasp", 'set example "xyz"\nfull seq display on\nx = indices;\n')
    results = Session(base_dir=tmp_path).execute(parse('load "lib";'))
    commands = [r.value for r in results if r.kind == "command"]
    assert [type(c) for c in commands] == [SetExample, ToggleFullSeqDisplay]


def test_get_is_reserved_as_in_the_reference() -> None:
    err = error("get = 3;", RaspNameError)
    assert "reserved" in err.message and at(err) == (1, 1)


# ------------------------------------------------------------ reserved names


@pytest.mark.parametrize(
    "text",
    [
        "length = 1;",
        "indices = tokens;",
        "tokens_str = tokens;",
        "True = 1;",
        "select = 1;",
        "aggregate = 1;",
        "selector_width = 2;",
        "range = 2;",
        "out = 1;",
        "sort = 1;",
        "full_s = 1;",
        "a, max = 1, 2;",
        "def count(x) { return x; }",
        "def f(indices) { return 1; }",
        "for length in [1] { y = 1; }",
        "y = [1 for shift in [1]];",
        "def f() { sort = 1; return sort; }\ny = f();",
    ],
)
def test_reserved_names_cannot_be_assigned(text: str) -> None:
    err = error(text, RaspNameError)
    assert "cannot assign" in err.message and err.span is not None
    assert err.span.text in err.message


def test_reserved_name_error_location() -> None:
    err = error("x = 1;\n  y, length = 1, 2;", RaspNameError)
    assert at(err) == (2, 6) and "'length'" in err.message


# ------------------------------------------------------------ applying, drawing, results


def test_applying_an_sop_or_selector_to_an_input() -> None:
    session = run(
        "reverse = aggregate(select(indices, length - indices - 1, ==), tokens);\n"
        'r = reverse("abc");\nl = reverse(["x", "y"]);\nm = select(indices, indices, <)("ab");\n'
    )
    assert session.lookup("r") == ["c", "b", "a"] and session.lookup("l") == ["y", "x"]
    assert session.lookup("m") == [[False, False], [True, False]]


def test_draw_calls_the_hook() -> None:
    calls: list[tuple] = []
    session = Session(draw_hook=lambda node, inp, span: calls.append((node, inp, span)))
    results = session.execute(parse('x = indices;\ndraw(x);\ndraw(x + 1, "ab");', "p.rasp"))
    assert [c[1] for c in calls] == [None, "ab"]
    assert calls[0][0] is session.lookup("x") and calls[1][2].location == "p.rasp:3:1"
    assert [r.kind for r in results] == ["assign", "draw", "draw"]


def test_statement_results() -> None:
    text = (
        "x = 1;\na, b = 2, 3;\nindices;\ndef f(y) { return y; }\nfor i in [1] { z = i; }\n"
        'set example "abc"\nshow example\nexamples off\nfull seq display on\n'
    )
    results = Session().execute(parse(text))
    kinds = [(r.kind, r.name) for r in results]
    assert kinds == [
        ("assign", "x"), ("assign", "a"), ("assign", "b"), ("expr", "out"), ("def", "f"),
        ("for", None), ("command", None), ("command", None), ("command", None),
        ("command", None),
    ]  # fmt: skip
    assert all(isinstance(r, StatementResult) for r in results)
    assert isinstance(results[4].value, Function) and results[4].value.params == ("y",)
    assert isinstance(results[6].value, S.SetExample)


def test_set_example_expression_can_be_evaluated() -> None:
    session = run('word = "hey";')
    (cmd,) = parse('set example word + "!"').statements
    assert isinstance(cmd, S.SetExample)
    assert session.evaluate(cmd.example) == "hey!"


def test_exit_stops_the_program() -> None:
    session = Session()
    results = session.execute(parse("x = 1;\nexit\ny = 2;"))
    assert [r.kind for r in results] == ["assign", "command"]
    assert "y" not in session.names()


def test_get_sop_errors() -> None:
    session = run("x = indices;\ns = select(indices, indices, ==);")
    assert get_sop(session, "x") is session.lookup("x")
    with pytest.raises(RaspNameError) as info:
        get_sop(session, "nope")
    assert "x" in info.value.render()
    with pytest.raises(RaspTypeError) as tinfo:
        get_sop(session, "s")
    assert "selector" in tinfo.value.message


# ------------------------------------------------------------ errors with locations


@pytest.mark.parametrize(
    ("text", "cls", "line", "col", "words"),
    [
        ("x = undefined_thing + 1;", RaspNameError, 1, 5, "undefined name 'undefined_thing'"),
        ("x = select;", RaspNameError, 1, 5, "select(keys, queries, comparison)"),
        ("x = select([1, 2], indices, ==);", RaspTypeError, 1, 5, "not a list"),
        ("x = aggregate([1], tokens);", RaspTypeError, 1, 5, "must be a selector"),
        ("s = select(indices, indices, ==);\nx = aggregate(s, s);", RaspTypeError, 2, 5,
         "second argument must be an s-op or an atom, not a selector"),
        ("x = aggregate(select(indices, 1, ==), tokens, indices);", RaspTypeError, 1, 5,
         "default must be an atom"),
        ("x = aggregate(select(indices, 1, ==));", RaspTypeError, 1, 5, "2 to 3 arguments"),
        ("x = 3(1);", RaspTypeError, 1, 5, "cannot call the int 3"),
        ("l = [1];\nx = l(1);", RaspTypeError, 2, 5, "cannot call a list"),
        ("def f(a, b) { return a; }\nx = f(1);", RaspTypeError, 2, 5,
         "f() takes 2 arguments, got 1"),
        ("x = sort(tokens);", RaspTypeError, 1, 5, "sort() takes 2 arguments, got 1"),
        ("x, y = 1, 2, 3;", RaspTypeError, 1, 1, "expected 2 values, got 3"),
        ("x, y = tokens;", RaspTypeError, 1, 1, "cannot unpack an s-op"),
        ("x = 1 + \"a\";", RaspTypeError, 1, 5, "'+'"),
        ("x = 1 / 0;", RaspValueError, 1, 5, "'/'"),
        ("x = [1, 2][5];", RaspValueError, 1, 5, "out of range"),
        ("x = {\"a\": 1}[\"b\"];", RaspValueError, 1, 5, "not in the dict"),
        ("x = tokens[indices];", RaspTypeError, 1, 5, "indexed by an int"),
        ("x = tokens[\"a\"];", RaspTypeError, 1, 5, "indexed by an int"),
        ("x = select(indices, 1, ==) + 1;", RaspTypeError, 1, 5, "selector"),
        ("x = select(indices, 1, ==) and indices;", RaspTypeError, 1, 5, "both must be selectors"),
        ("x = -select(indices, 1, ==);", RaspTypeError, 1, 5, "cannot apply '-'"),
        ("x = 1 if select(indices, 1, ==) else 2;", RaspTypeError, 1, 10, "selector"),
        ("x = [tokens][indices];", RaspTypeError, 1, 5, "table of atoms"),
        ("x = tokens in [tokens];", RaspTypeError, 1, 5, "list of atoms"),
        ("x = tokens + [1];", RaspTypeError, 1, 5, "not a list"),
        ("for x in 3 { y = 1; }", RaspTypeError, 1, 10, "list or dict"),
        ("x = [1 for y in tokens];", RaspTypeError, 1, 17, "list or dict"),
        ("x = {[1]: 2};", RaspTypeError, 1, 6, "dict key must be an atom"),
        ("x = range(1.5);", RaspTypeError, 1, 5, "int arguments"),
        ("x = zip([1], [1, 2]);", RaspValueError, 1, 5, "one length"),
        ("x = len(3);", RaspTypeError, 1, 5, "len needs"),
        ("draw([1]);", RaspTypeError, 1, 6, "draw needs an s-op"),
        ("x = tokens(1, 2);", RaspTypeError, 1, 5, "one input"),
        ("x = tokens(5);", RaspTypeError, 1, 5, "string or a list of atoms"),
        ("x = indices(\"\");", RaspError, 1, 5, "empty"),
        ("def f(a, a) { return a; }", RaspNameError, 1, 10, "appears twice"),
    ],
)  # fmt: skip
def test_errors(text: str, cls: type[RaspError], line: int, col: int, words: str) -> None:
    err = error(text, cls)
    assert at(err) == (line, col), err.render()
    assert words in err.message, err.render()
    assert err.render().startswith(f"prog.rasp:{line}:{col}: ")


def test_undefined_name_suggests_close_names() -> None:
    err = error("x = indeces;", RaspNameError)
    assert any("indices" in n for n in err.notes)


def test_errors_inside_the_library_point_at_the_call() -> None:
    err = error("x = 1;\ny = sort(tokens, [1, 2]);", RaspTypeError)
    assert at(err) == (2, 5)
    assert any("library function 'sort'" in n and "library.rasp" in n for n in err.notes)


def test_errors_inside_user_functions_point_into_the_function() -> None:
    err = error("def f(a) {\n  return a + [1];\n}\nx = f(tokens);", RaspTypeError)
    assert at(err) == (2, 10)


# ------------------------------------------------------------ end to end (section 6)


@pytest.mark.parametrize(
    ("expr", "inp", "expected"),
    [
        ("aggregate(select(indices, length - indices - 1, ==), tokens)", ["hi", "there", "you"],
         ["you", "there", "hi"]),
        ("selector_width(select(tokens, tokens, ==))", "aabbbc", [2, 2, 3, 3, 3, 1]),
        ("sort(tokens, tokens)", "banana", list("aaabnn")),
        ("sort(indices, tokens)", "hello", [1, 0, 2, 3, 4]),
        ("aggregate(select(indices, indices, >), indices, -1)", "hello", [2.5, 3.0, 3.5, 4, -1]),
        ("shift(indices, -1, 99)", "hello", [1, 2, 3, 4, 99]),
        ('mark_first_instance(tokens, "l")', "hello", [False, False, True, False, False]),
        ('count(tokens, "l")', "hello", [2] * 5),
        ("max(indices, length - indices - 1)", "hello", [4, 3, 2, 3, 4]),
        ("round(indices + 0.5)", "hello", [0, 2, 2, 4, 4]),
        ("selector_width(select_next_identical(tokens))", "hello", [0, 0, 1, 0, 0]),
        ('aggregate(select_from_last(tokens, "l"), indices)', "hello", [3] * 5),
        ("load_from_location(tokens, length - 1)", "abc", ["c"] * 3),
        ("min(indices, 2)", "hello", [0, 1, 2, 2, 2]),
    ],
)  # fmt: skip
def test_section_6_outputs(expr: str, inp: str | list, expected: list) -> None:
    assert on(f"x = {expr};", inp) == expected


def test_a_file_that_is_not_utf8_is_a_clear_error(tmp_path):
    from rasp_compiler.errors import RaspError
    from rasp_compiler.language.lower import load_program

    binary = tmp_path / "bin.rasp"
    binary.write_bytes(b"\xff\xfe\x00bad")
    loader = tmp_path / "main.rasp"
    loader.write_text('load "bin";\nx = tokens;\n')
    with pytest.raises(RaspError, match="not UTF-8"):
        load_program(binary)
    with pytest.raises(RaspError, match="not UTF-8") as err:
        load_program(loader)
    assert "main.rasp:1:1" in err.value.render()
