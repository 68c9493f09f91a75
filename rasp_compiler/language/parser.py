"""RASP source text -> :class:`syntax.Program`.

``parse(text, name)`` runs Lark's LALR parser on ``grammar/rasp.lark`` (shipped as
the package ``rasp_compiler.grammar``) and transforms the parse tree into the frozen
dataclasses of :mod:`syntax`, each with its :class:`Span`.  Every syntax problem is a
:class:`RaspSyntaxError` at the offending token with what was expected; when the text
simply stops too early the error is an :class:`IncompleteInputError` (a subclass), which
a REPL can use to ask for another line.  Lark's own exceptions never escape.

Limits (:mod:`rasp_compiler.limits`), each a located syntax error: the text is at most
MAX_SOURCE_BYTES; constructs nest at most MAX_NESTING deep (checked on Lark's tree
before it is transformed, without recursion, so any nesting is reported rather than
overflowing the stack); an integer literal has at most MAX_INT_DIGITS digits, a float
literal as many characters and a finite value; a string literal at most MAX_STRING_LEN
characters.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
from collections.abc import Iterable
from pathlib import Path

import lark
from lark import Token, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError
from lark.tree import Meta
from lark.visitors import Transformer_NonRecursive

from ..errors import RaspSyntaxError, Source, Span
from ..limits import MAX_INT_DIGITS, MAX_SOURCE_BYTES, MAX_STRING_LEN
from . import syntax as S
from .files import check_source_size
from .nesting import check_nesting

__all__ = ["parse", "IncompleteInputError", "KEYWORDS"]


class IncompleteInputError(RaspSyntaxError):
    """The input ended in the middle of a statement (a REPL should read more)."""


# Words the grammar spells out; none of them can be a name.
KEYWORDS = frozenset(
    "on off example examples selector round indicator set show load draw def return for in "
    "if else and or not exit quit".split()
)


@functools.cache
def _lark() -> lark.Lark:
    """The LALR parser, built once per process from the packaged grammar."""
    try:
        text = importlib.resources.files("rasp_compiler.grammar").joinpath("rasp.lark").read_text()
    except ModuleNotFoundError:
        # Running from a source checkout that is not installed: grammar/ sits beside
        # the package directory instead of inside it.
        text = (Path(__file__).resolve().parents[2] / "grammar" / "rasp.lark").read_text()
    return lark.Lark(
        text,
        parser="lalr",
        lexer="basic",
        propagate_positions=True,
        maybe_placeholders=True,
        postlex=_SetExampleLineEnd(),
    )


class _SetExampleLineEnd:
    """Post-lexer: ends the expression of ``set [...] example E`` at the end of its line.

    REPL commands have no ``;``; without this, a statement on the next line that starts
    with ``-``, ``(`` or ``[`` would continue E.  A ``_LINE_END`` token goes after the
    last token of E's line, outside brackets, when that token can end an expression.
    """

    always_accept: tuple[str, ...] = ()
    _ENDS_EXPR = {"NAME", "INT", "FLOAT", "STRING", "RPAR", "RSQB", "RBRACE"}
    _OPEN = {"LPAR", "LSQB", "LBRACE"}
    _CLOSE = {"RPAR", "RSQB", "RBRACE"}

    def process(self, stream: Iterable[Token]) -> Iterable[Token]:
        in_set, depth, prev = False, 0, None
        for tok in stream:
            if (
                in_set
                and depth == 0
                and prev is not None
                and prev.type in self._ENDS_EXPR
                and (tok.line or 0) > (prev.end_line or 0)
            ):
                yield Token.new_borrow_pos("_LINE_END", "", prev)
                in_set = False
            if tok.type == "SET":
                in_set, depth = True, 0
            elif in_set:
                depth += (tok.type in self._OPEN) - (tok.type in self._CLOSE)
                if tok.type == "SEMICOLON" and depth == 0:
                    in_set = False
            prev = tok
            yield tok


def parse(text: str, name: str = "<input>") -> S.Program:
    """Parse RASP source ``text`` (named ``name`` in error messages) into a Program.

    Raises RaspSyntaxError (IncompleteInputError when the text ends mid-statement), or
    an InputError when the text is longer than MAX_SOURCE_BYTES.
    """
    n_bytes = len(text) if len(text) > MAX_SOURCE_BYTES else len(text.encode("utf-8", "replace"))
    check_source_size(n_bytes, f"'{name}'")
    source = Source(name, text)
    parser = _lark()
    try:
        tree = parser.parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(e, source, parser) from None
    check_nesting(tree, source)
    try:
        program = _ToSyntax(source).transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, RaspSyntaxError):
            raise e.orig_exc from None
        raise
    assert isinstance(program, S.Program)
    return program


# ------------------------------------------------------------------ tree -> syntax


def _span(source: Source, meta: Meta) -> Span:
    return Span(source, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(source: Source, tok: Token) -> Span:
    return Span(source, tok.line, tok.column, tok.end_line, tok.end_column)  # type: ignore[arg-type]


@v_args(meta=True, inline=True)
class _ToSyntax(Transformer_NonRecursive):
    """Builds one syntax node per grammar rule (see grammar/rasp.lark), without recursion."""

    def __init__(self, source: Source):
        super().__init__()
        self.src = source

    def _s(self, meta: Meta) -> Span:
        return _span(self.src, meta)

    def _name(self, tok: Token) -> S.Name:
        return S.Name(_tok_span(self.src, tok), str(tok))

    # -- program and statements

    def start(self, meta: Meta, *stmts: S.Stmt | S.Return) -> S.Program:
        _reject_returns(stmts, "at the top level")
        lines = self.src.text.splitlines() or [""]
        span = Span(self.src, 1, 1, len(lines), len(lines[-1]) + 1)
        return S.Program(span, tuple(stmts), self.src)  # type: ignore[arg-type]

    def expr_stmt(self, meta: Meta, expr: S.Expr) -> S.ExprStmt:
        return S.ExprStmt(self._s(meta), expr)

    def assign(self, meta: Meta, targets: tuple[S.Name, ...], values: tuple[S.Expr, ...]):
        return S.Assign(self._s(meta), targets, values)

    def load(self, meta: Meta, path: Token) -> S.Load:
        return S.Load(self._s(meta), str(path)[1:-1])

    def draw(self, meta: Meta, sop: S.Expr, inp: S.Expr | None) -> S.Draw:
        return S.Draw(self._s(meta), sop, inp)

    def return_stmt(self, meta: Meta, values: tuple[S.Expr, ...]) -> S.Return:
        return S.Return(self._s(meta), values)

    def funcdef(self, meta: Meta, name: Token, params, *stmts: S.Stmt | S.Return) -> S.Def:
        fname = self._name(name)
        _reject_returns(stmts[:-1], "before the end of a function body")
        if not stmts or not isinstance(stmts[-1], S.Return):
            raise RaspSyntaxError(
                f"function '{fname.id}' must end with a return statement",
                fname.span,
                ("a def body is statements followed by exactly one `return e1, e2;`",),
            )
        return S.Def(self._s(meta), fname, params or (), stmts[:-1], stmts[-1])  # type: ignore

    def for_loop(self, meta: Meta, targets, iterable: S.Expr, *stmts: S.Stmt | S.Return) -> S.For:
        _reject_returns(stmts, "inside a for loop")
        return S.For(self._s(meta), targets, iterable, stmts)  # type: ignore[arg-type]

    def names(self, meta: Meta, *toks: Token) -> tuple[S.Name, ...]:
        return tuple(self._name(t) for t in toks)

    def exprs(self, meta: Meta, *items: S.Expr) -> tuple[S.Expr, ...]:
        return items

    # -- REPL commands

    def set_example(self, meta: Meta, subset: str | None, example: S.Expr) -> S.SetExample:
        return S.SetExample(self._s(meta), subset, example)

    def show_example(self, meta: Meta, subset: str | None) -> S.ShowExample:
        return S.ShowExample(self._s(meta), subset)

    def toggle_examples(self, meta: Meta, subset: str | None, on: bool) -> S.ToggleExamples:
        return S.ToggleExamples(self._s(meta), subset, on)

    def toggle_full_seq(self, meta: Meta, _kw: Token, on: bool) -> S.ToggleFullSeqDisplay:
        return S.ToggleFullSeqDisplay(self._s(meta), on)

    def exit_cmd(self, meta: Meta) -> S.Exit:
        return S.Exit(self._s(meta))

    def sop_subset(self, meta: Meta, _tok: Token) -> str:
        return "s-op"

    def selector_subset(self, meta: Meta) -> str:
        return "selector"

    def switch_on(self, meta: Meta) -> bool:
        return True

    def switch_off(self, meta: Meta) -> bool:
        return False

    # -- expressions

    def contains(self, meta: Meta, item: S.Expr, container: S.Expr) -> S.Binary:
        return S.Binary(self._s(meta), "in", item, container)

    def ternary(self, meta: Meta, body: S.Expr, test: S.Expr, orelse: S.Expr) -> S.IfExpr:
        return S.IfExpr(self._s(meta), body, test, orelse)

    def and_expr(self, meta: Meta, left: S.Expr, right: S.Expr) -> S.Binary:
        return S.Binary(self._s(meta), "and", left, right)

    def or_expr(self, meta: Meta, left: S.Expr, right: S.Expr) -> S.Binary:
        return S.Binary(self._s(meta), "or", left, right)

    def binop(self, meta: Meta, left: S.Expr, op: Token, right: S.Expr) -> S.Binary:
        return S.Binary(self._s(meta), str(op), left, right)

    def not_expr(self, meta: Meta, operand: S.Expr) -> S.Unary:
        return S.Unary(self._s(meta), "not", operand)

    def sign_expr(self, meta: Meta, op: Token, operand: S.Expr) -> S.Unary:
        return S.Unary(self._s(meta), str(op), operand)

    def round_expr(self, meta: Meta, operand: S.Expr) -> S.Unary:
        return S.Unary(self._s(meta), "round", operand)

    def indicator_expr(self, meta: Meta, operand: S.Expr) -> S.Unary:
        return S.Unary(self._s(meta), "indicator", operand)

    def index(self, meta: Meta, target: S.Expr, idx: S.Expr) -> S.Index:
        return S.Index(self._s(meta), target, idx)

    def call(self, meta: Meta, func: S.Expr, args: tuple[S.Expr, ...] | None) -> S.Call:
        return S.Call(self._s(meta), func, args or ())

    def int_lit(self, meta: Meta, tok: Token) -> S.Num:
        self._check_number_length(meta, tok)
        return S.Num(self._s(meta), int(tok))

    def float_lit(self, meta: Meta, tok: Token) -> S.Num:
        self._check_number_length(meta, tok)
        value = float(tok)
        if math.isinf(value):
            raise RaspSyntaxError(
                "this number is too large for a float (the largest is about 1.8e308)",
                self._s(meta),
            )
        return S.Num(self._s(meta), value)

    def _check_number_length(self, meta: Meta, tok: Token) -> None:
        if len(tok) > MAX_INT_DIGITS:
            raise RaspSyntaxError(
                f"a number literal of {len(tok):,} characters; the limit is "
                f"{MAX_INT_DIGITS:,} digits",
                self._s(meta),
            )

    def str_lit(self, meta: Meta, tok: Token) -> S.Str:
        text = str(tok)[1:-1]
        if len(text) > MAX_STRING_LEN:
            raise RaspSyntaxError(
                f"a string literal of {len(text):,} characters; the limit is {MAX_STRING_LEN:,}",
                self._s(meta),
            )
        return S.Str(self._s(meta), text)

    def name(self, meta: Meta, tok: Token) -> S.Name:
        return self._name(tok)

    def list_lit(self, meta: Meta, items: tuple[S.Expr, ...] | None) -> S.ListExpr:
        return S.ListExpr(self._s(meta), items or ())

    def list_comp(self, meta: Meta, elt: S.Expr, targets, iterable: S.Expr) -> S.ListComp:
        return S.ListComp(self._s(meta), elt, targets, iterable)

    def dict_lit(self, meta: Meta, pairs) -> S.DictExpr:
        return S.DictExpr(self._s(meta), pairs or ())

    def dict_comp(self, meta: Meta, key: S.Expr, value: S.Expr, targets, iterable: S.Expr):
        return S.DictComp(self._s(meta), key, value, targets, iterable)

    def pairs(self, meta: Meta, *pairs: tuple[S.Expr, S.Expr]):
        return pairs

    def pair(self, meta: Meta, key: S.Expr, value: S.Expr) -> tuple[S.Expr, S.Expr]:
        return (key, value)

    def select_expr(self, meta: Meta, _kw: Token, keys: S.Expr, queries: S.Expr, cmp: str):
        return S.SelectExpr(self._s(meta), keys, queries, cmp)

    def select_cmp(self, meta: Meta, tok: Token) -> str:
        return str(tok)


def _reject_returns(stmts: Iterable[object], where: str) -> None:
    for st in stmts:
        if isinstance(st, S.Return):
            raise RaspSyntaxError(
                f"'return' is not allowed {where}",
                Span(st.span.source, st.span.line, st.span.col, st.span.line, st.span.col + 6),
                ("`return` may only be the last statement of a def body",),
            )


# ------------------------------------------------------------------ error messages

# How to describe a terminal the parser expected (anything missing: its literal text).
_TERMINAL_WORDS = {
    "NAME": "a name",
    "INT": "a number",
    "FLOAT": "a number",
    "STRING": "a string",
    "CMP_OP": "a comparison (== < > <= >=)",
    "NE_OP": "'!='",
    "SIGN": "'+' or '-'",
    "MUL_OP": "'*' or '/'",
    "SELECT": "select(...)",
    "FULL_SEQ_DISPLAY": "'full seq display'",
    "S_OP": "'s-op'",
    "$END": "end of input",
    "_LINE_END": "the end of the line",
}
# Terminals that can begin an expression: listed together as "an expression".
_EXPR_START = {
    "NAME",
    "INT",
    "FLOAT",
    "STRING",
    "LPAR",
    "LSQB",
    "LBRACE",
    "SIGN",
    "NOT",
    "ROUND",
    "INDICATOR",
    "SELECT",
}
_STMT_START = {"LOAD", "DRAW", "DEF", "FOR", "SET", "SHOW", "EXIT", "QUIT", "EXAMPLES"}


def _describe_terminal(name: str, parser: lark.Lark) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    try:
        pattern = parser.get_terminal(name).pattern
    except KeyError:
        return name
    return f"'{pattern.value}'" if pattern.type == "str" else name


def _describe_expected(expected: set[str], parser: lark.Lark) -> str:
    if expected and expected <= {"CMP_OP", "NE_OP"}:
        return "a comparison operator (==, !=, <, >, <=, >=)"
    parts: list[str] = []
    rest = set(expected)
    if _STMT_START & rest and "NAME" in rest:
        parts.append("a statement")
        rest -= _STMT_START | _EXPR_START | {"RETURN", "SELECTOR", "S_OP", "FULL_SEQ_DISPLAY"}
    elif "NAME" in rest and len(_EXPR_START & rest) > 3:
        parts.append("an expression")
        rest -= _EXPR_START
    # Binary operators are noise in an "expected" list: they are always possible
    # after an expression, and listing them hides the one token that is missing.
    rest -= {"CMP_OP", "SIGN", "MUL_OP", "MOD_OP", "POW_OP", "AND", "OR", "IF", "IN", "LSQB"}
    if "LPAR" in rest and (parts or len(rest) > 1):  # a call: also always possible
        rest.discard("LPAR")
    words = sorted({_describe_terminal(t, parser) for t in rest})
    parts.extend(words)
    if not parts:
        return "something else"
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def _accepted(e: UnexpectedToken) -> set[str]:
    """The terminals the parser would really accept where it failed.

    LALR's ``expected`` can over-approximate (merged states); asking the interactive
    parser to try each terminal gives the exact set.
    """
    if e.interactive_parser is not None:
        try:
            return set(e.interactive_parser.accepts())
        except Exception:  # noqa: BLE001 - fall back to Lark's approximation
            pass
    return set(e.expected)


def _describe_token(tok: Token) -> str:
    if tok.type == "$END":
        return "end of input"
    if tok.type == "NAME":
        return f"name '{tok}'"
    if str(tok).lower() in KEYWORDS or tok.type in _STMT_START:
        return f"keyword '{tok}'"
    return f"'{tok}'"


def _previous_token(text: str, parser: lark.Lark, pos: int) -> Token | None:
    """The last token that ends at or before character offset ``pos``."""
    prev = None
    try:
        for tok in parser.lex(text):
            if tok.start_pos is not None and tok.start_pos >= pos:
                break
            prev = tok
    except UnexpectedInput:
        pass
    return prev


def _end(tok: Token) -> tuple[int, int]:
    """Line and column just after ``tok``."""
    return tok.end_line or 1, tok.end_column or 1


def _syntax_error(e: UnexpectedInput, source: Source, parser: lark.Lark) -> RaspSyntaxError:
    """A user-facing RaspSyntaxError for a Lark parse failure."""
    if isinstance(e, UnexpectedCharacters):
        line, col, pos = e.line, e.column, e.pos_in_stream or 0
        ch = source.text[pos] if pos < len(source.text) else ""
        span = Span(source, line, col, line, col + 1)
        if ch == '"':
            return RaspSyntaxError(
                "unterminated string", span, ("strings end with '\"' on the same line",)
            )
        return RaspSyntaxError(f"unexpected character {ch!r}", span)
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    expected = _accepted(e)
    if tok.type == "$END":
        prev = _previous_token(source.text, parser, len(source.text))
        line, col = _end(prev) if prev is not None else (1, 1)
        span = Span(source, line, col, line, col + 1)
        want = _describe_expected(expected, parser)
        return IncompleteInputError(f"unexpected end of input; expected {want}", span)
    span = _tok_span(source, tok)
    if "NAME" in expected and str(tok) in KEYWORDS:
        return RaspSyntaxError(f"'{tok}' is a keyword and cannot be used as a name", span)
    if "SEMICOLON" in expected:
        prev = _previous_token(source.text, parser, tok.start_pos or 0)
        if prev is not None and (prev.end_line or 0) < (tok.line or 0):
            line, col = _end(prev)
            return RaspSyntaxError(
                "missing ';' at the end of the statement",
                Span(source, line, col, line, col + 1),
                (f"the next line starts with {_describe_token(tok)}",),
            )
    want = _describe_expected(expected, parser)
    return RaspSyntaxError(f"unexpected {_describe_token(tok)}; expected {want}", span)
