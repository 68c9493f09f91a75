"""The RASP syntax tree: what ``parser.parse`` produces and ``lower`` consumes.

Every node is a frozen dataclass whose first field is ``span``, the region of source
it came from.  Expressions and statements are plain data: no evaluation happens here.
Operators are kept as their source spelling (``"+"``, ``"and"``, ``"in"``, ...), so the
tree reads like the program; ``lower.py`` maps them to IR operations.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import Source, Span

# ------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Num:
    """An int literal (``3``) or a float literal (``2.5``, always ``D.D``)."""

    span: Span
    value: int | float


@dataclass(frozen=True)
class Str:
    """A string literal; ``value`` is the text between the double quotes."""

    span: Span
    value: str


@dataclass(frozen=True)
class Name:
    """A use of a name (also used for binding targets and parameters)."""

    span: Span
    id: str


@dataclass(frozen=True)
class ListExpr:
    """``[a, b, c]``."""

    span: Span
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class DictExpr:
    """``{k1: v1, k2: v2}``."""

    span: Span
    items: tuple[tuple[Expr, Expr], ...]


@dataclass(frozen=True)
class ListComp:
    """``[elt for t1, t2 in iterable]``."""

    span: Span
    elt: Expr
    targets: tuple[Name, ...]
    iterable: Expr


@dataclass(frozen=True)
class DictComp:
    """``{key: value for t1, t2 in iterable}``."""

    span: Span
    key: Expr
    value: Expr
    targets: tuple[Name, ...]
    iterable: Expr


UNARY_OPS = ("not", "-", "+", "round", "indicator")


@dataclass(frozen=True)
class Unary:
    """A prefix operator or ``round(e)`` / ``indicator(e)``; ``op`` is in UNARY_OPS."""

    span: Span
    op: str
    operand: Expr


BINARY_OPS = ("^", "*", "/", "%", "+", "-", "==", "<=", ">=", "<", ">", "and", "or", "in")


@dataclass(frozen=True)
class Binary:
    """``left op right``; ``op`` is in BINARY_OPS (``in`` included)."""

    span: Span
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class IfExpr:
    """``body if test else orelse``."""

    span: Span
    body: Expr
    test: Expr
    orelse: Expr


@dataclass(frozen=True)
class Index:
    """``target[index]``."""

    span: Span
    target: Expr
    index: Expr


@dataclass(frozen=True)
class Call:
    """``func(args)``: a function call, a builtin, or an s-op applied to an input."""

    span: Span
    func: Expr
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class SelectExpr:
    """``select(keys, queries, cmp)``; ``cmp`` is in :data:`ir.COMPARISONS`."""

    span: Span
    keys: Expr
    queries: Expr
    cmp: str


Expr = (
    Num
    | Str
    | Name
    | ListExpr
    | DictExpr
    | ListComp
    | DictComp
    | Unary
    | Binary
    | IfExpr
    | Index
    | Call
    | SelectExpr
)

# -------------------------------------------------------------- statements


@dataclass(frozen=True)
class ExprStmt:
    """``e;`` -- the value is bound to ``out``."""

    span: Span
    expr: Expr


@dataclass(frozen=True)
class Assign:
    """``a, b = e1, e2;`` (or ``a, b = f(x);``, or plainly ``a = e;``)."""

    span: Span
    targets: tuple[Name, ...]
    values: tuple[Expr, ...]


@dataclass(frozen=True)
class Return:
    """``return e1, e2;`` -- only ever the last statement of a ``def`` body."""

    span: Span
    values: tuple[Expr, ...]


@dataclass(frozen=True)
class Def:
    """``def name(params) { body; return ...; }``; ``body`` excludes the return."""

    span: Span
    name: Name
    params: tuple[Name, ...]
    body: tuple[Stmt, ...]
    ret: Return


@dataclass(frozen=True)
class For:
    """``for t1, t2 in iterable { body }``."""

    span: Span
    targets: tuple[Name, ...]
    iterable: Expr
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class Load:
    """``load "path";`` -- runs ``path.rasp``."""

    span: Span
    path: str


@dataclass(frozen=True)
class Draw:
    """``draw(sop);`` or ``draw(sop, input);``."""

    span: Span
    sop: Expr
    input: Expr | None


# ------------------------------------------------------------ REPL commands
# ``subset`` is None (both), "s-op" or "selector", as in the reference REPL.


@dataclass(frozen=True)
class SetExample:
    """``set [s-op|selector] example E``."""

    span: Span
    subset: str | None
    example: Expr


@dataclass(frozen=True)
class ShowExample:
    """``show [s-op|selector] example``."""

    span: Span
    subset: str | None


@dataclass(frozen=True)
class ToggleExamples:
    """``[s-op|selector] examples on|off``."""

    span: Span
    subset: str | None
    on: bool


@dataclass(frozen=True)
class ToggleFullSeqDisplay:
    """``full seq display on|off``."""

    span: Span
    on: bool


@dataclass(frozen=True)
class Exit:
    """``exit`` / ``quit`` (optionally with ``()``)."""

    span: Span


Command = SetExample | ShowExample | ToggleExamples | ToggleFullSeqDisplay | Exit

Stmt = ExprStmt | Assign | Def | For | Load | Draw | Command


@dataclass(frozen=True)
class Program:
    """A parsed source: its statements in order, and the source they came from."""

    span: Span
    statements: tuple[Stmt, ...]
    source: Source
