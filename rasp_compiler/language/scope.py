"""Definition-time values and scopes: what names are bound to while a program lowers.

A :class:`Scope` maps names to values (atoms, lists, dicts, IR nodes, a
:class:`Function` or a builtin) and has a parent; the outermost one holds the builtins
(:func:`builtins_scope`), the library's sits above it, then the program's.  A
:class:`StatementResult` says what one statement did, for a REPL to print.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import Span
from . import ir
from . import lower_ops as ops
from . import syntax as S
from .ir import Atom

DrawHook = Callable[[ir.SOp, "list[Atom] | str | None", Span], None]

TOKEN_NAMES = {f"tokens_{conv}": conv for conv in ir.TOKEN_CONVERSIONS}
# Names bound by the builtins scope, plus ``select`` (syntax) and ``out`` (set only by
# expression statements): none of them can be assigned.
BUILTIN_NAMES = frozenset(
    [*TOKEN_NAMES, "indices", "length", "True", "False", "select", "out"]
    + [b.name for b in ops.BUILTIN_FUNCTIONS]
)


@dataclass(frozen=True, eq=False)
class Function:
    """A ``def``: ``body`` is its statements ending with the :class:`syntax.Return`;
    ``closure_scope`` is the scope it was defined in (free names resolve there)."""

    name: str
    params: tuple[str, ...]
    body: tuple[S.Stmt | S.Return, ...] = field(repr=False)
    closure_scope: Scope = field(repr=False)
    span: Span = field(repr=False)

    def __str__(self) -> str:
        return f"function: {self.name}({', '.join(self.params)})"


@dataclass(frozen=True)
class StatementResult:
    """What one statement did, for a REPL to print.

    kind: "expr" (name "out"), "assign" (one result per name), "def", "load" (name: the
    path as written, value: the names it brought in), "draw" (value: (s-op, input)),
    "for", "command" (value: the command's syntax node: a REPL command in a loaded
    file, for the REPL to apply), or "error" (value: the RaspError a statement of a
    loaded file raised; the reference reports it and goes on with the file's rest).
    """

    kind: str
    name: str | None
    value: object
    span: Span


class Scope:
    """A mutable mapping of names to values with a parent scope.

    ``export_to`` (set for a loaded file) receives a copy of every binding except
    ``out`` and names starting with ``_``.
    """

    def __init__(self, parent: Scope | None, name: str, export_to: Scope | None = None):
        self.parent = parent
        self.name = name
        self.export_to = export_to
        self.vars: dict[str, object] = {}

    def lookup(self, name: str) -> object:
        """The value bound to ``name`` here or in an ancestor (KeyError if none)."""
        scope: Scope | None = self
        while scope is not None:
            if name in scope.vars:
                return scope.vars[name]
            scope = scope.parent
        raise KeyError(name)

    def bind(self, name: str, value: object) -> None:
        self.vars[name] = value
        if self.export_to is not None and not name.startswith("_") and name != "out":
            self.export_to.bind(name, value)

    def visible_names(self) -> set[str]:
        names: set[str] = set()
        scope: Scope | None = self
        while scope is not None:
            names.update(scope.vars)
            scope = scope.parent
        return names


def builtins_scope(prims: ops.Prims) -> Scope:
    """The outermost scope: ``tokens_*``, ``indices``, ``length``, the bools and the
    builtin functions (every name in BUILTIN_NAMES but ``select`` and ``out``)."""
    scope = Scope(None, "<builtins>")
    for name, conv in TOKEN_NAMES.items():
        scope.vars[name] = ir.Tokens(conv=conv)
    scope.vars.update(
        {"indices": prims.indices, "length": prims.length, "True": True, "False": False}
    )
    for b in ops.BUILTIN_FUNCTIONS:
        scope.vars[b.name] = b
    return scope
