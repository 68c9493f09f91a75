"""Definition-time evaluation: a RASP syntax tree -> IR s-ops and selectors.

A :class:`Session` runs statements in order in one global scope whose parent holds the
library (``library.rasp``) and, above that, the builtins.  Evaluating an expression
gives a *value*: an atom, a list or dict (definition-time only), an IR node
(:mod:`rasp_compiler.ir`), a :class:`Function` or a builtin.  Functions expand when
called, in a fresh scope whose parent is the scope they were defined in, so free
names are looked up at call time.  ``for`` runs in the enclosing scope; each
comprehension item gets its own nested scope.  An atom condition makes ``a if c else b``
an ordinary, lazy conditional (so recursion over atoms terminates); an s-op condition
makes it elementwise.  Operator meanings live in :mod:`lower_ops`.

Public API: Session, StatementResult, Function, load_program, load_source, get_sop.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib.resources
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import RaspError, RaspNameError, RaspTypeError, RaspValueError, Span
from . import ir
from . import lower_ops as ops
from . import syntax as S
from .ir import Atom
from .parser import parse

__all__ = [
    "Session",
    "StatementResult",
    "Function",
    "Scope",
    "DrawHook",
    "load_program",
    "load_source",
    "get_sop",
    "BUILTIN_NAMES",
]

DrawHook = Callable[[ir.SOp, "list[Atom] | str | None", Span], None]

TOKEN_NAMES = {f"tokens_{conv}": conv for conv in ir.TOKEN_CONVERSIONS}
# Names bound by the builtins scope, plus ``select`` (syntax) and ``out`` (set only by
# expression statements): none of them can be assigned.
BUILTIN_NAMES = frozenset(
    [*TOKEN_NAMES, "indices", "length", "True", "False", "select", "out"]
    + [b.name for b in ops.BUILTIN_FUNCTIONS]
)
MAX_CALL_DEPTH = 400  # nested RASP function calls before we call it runaway recursion
_PY_RECURSION_LIMIT = 40_000  # enough Python frames for MAX_CALL_DEPTH nested calls


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
    "for", or "command" (value: the command's syntax node).
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


@functools.cache
def _library_program() -> S.Program:
    """library.rasp, parsed once per process."""
    text = importlib.resources.files("rasp_compiler.language").joinpath("library.rasp").read_text()
    return parse(text, "library.rasp")


@contextlib.contextmanager
def _deep_recursion() -> Iterator[None]:
    """Room for deep (but bounded, see MAX_CALL_DEPTH) definition-time recursion."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, _PY_RECURSION_LIMIT))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


class _Lowerer:
    """The evaluation engine behind a Session: statements and expressions -> values."""

    def __init__(self, base_dir: Path | None, draw_hook: DrawHook | None):
        self.base_dir = base_dir
        self.draw_hook = draw_hook
        self.prims = ops.Prims(indices=ir.Indices(), length=ir.Length())
        self.builtins = Scope(None, "<builtins>")
        for name, conv in TOKEN_NAMES.items():
            self.builtins.vars[name] = ir.Tokens(conv=conv)
        self.builtins.vars.update(
            {
                "indices": self.prims.indices,
                "length": self.prims.length,
                "True": True,
                "False": False,
            }
        )
        for b in ops.BUILTIN_FUNCTIONS:
            self.builtins.vars[b.name] = b
        self.site: Span | None = None  # user call site while a library function expands
        self.depth = 0
        self.loading: list[Path] = []
        self.last_sop: str | None = None
        # The library runs with only the builtins reserved; afterwards its names are too.
        self.reserved: frozenset[str] = BUILTIN_NAMES
        self.library_source = _library_program().source
        self.library = Scope(self.builtins, "<library>")
        self.top = self.library  # no user scope yet: library bindings are not "user" ones
        with _deep_recursion():
            for st in _library_program().statements:
                self.exec_stmt(st, self.library)
        self.library_names = frozenset(self.library.vars) - {"tokens"}
        self.reserved = BUILTIN_NAMES | self.library_names
        self.top = Scope(self.library, "<program>")
        self.last_sop = None

    # ------------------------------------------------------------ statements

    def exec_stmt(self, st: S.Stmt, scope: Scope) -> list[StatementResult]:
        """Run one statement in ``scope``; what it did, for printing."""
        match st:
            case S.ExprStmt(span=span, expr=expr):
                value = self.eval(expr, scope)
                self._bind_name(scope, "out", value)
                return [StatementResult("expr", "out", value, span)]
            case S.Assign():
                return self._assign(st, scope)
            case S.Def(span=span, name=name, params=params):
                self._check_params(params)
                fn = Function(name.id, tuple(p.id for p in params), (*st.body, st.ret), scope, span)
                self._bind(scope, name, fn)
                return [StatementResult("def", name.id, fn, span)]
            case S.For():
                self._for(st, scope)
                return [StatementResult("for", None, None, st.span)]
            case S.Load(span=span, path=path):
                return [StatementResult("load", path, self._load(st, scope), span)]
            case S.Draw():
                return [self._draw(st, scope)]
            case S.SetExample() | S.ShowExample() | S.ToggleExamples() | S.ToggleFullSeqDisplay():
                return [StatementResult("command", None, st, st.span)]
            case S.Exit():
                return [StatementResult("command", None, st, st.span)]
        raise AssertionError(f"unknown statement {st!r}")

    def _assign(self, st: S.Assign, scope: Scope) -> list[StatementResult]:
        values = [self.eval(v, scope) for v in st.values]
        value = values[0] if len(values) == 1 else values
        results = []
        for target, v in zip(st.targets, self._unpack(st.targets, value, st.span), strict=True):
            self._bind(scope, target, v)
            results.append(StatementResult("assign", target.id, v, st.span))
        return results

    def _unpack(self, targets: tuple[S.Name, ...], value: object, span: Span) -> list[object]:
        if len(targets) == 1:
            return [value]
        if not isinstance(value, list):
            raise RaspTypeError(
                f"cannot unpack {ops.describe(value)} into {len(targets)} names", span
            )
        if len(value) != len(targets):
            raise RaspTypeError(f"expected {len(targets)} values, got {len(value)}", span)
        return value

    def _check_params(self, params: tuple[S.Name, ...]) -> None:
        seen: set[str] = set()
        for p in params:
            self._check_reserved(p)
            if p.id in seen:
                raise RaspNameError(f"parameter '{p.id}' appears twice", p.span)
            seen.add(p.id)

    def _for(self, st: S.For, scope: Scope) -> None:
        iterable = self.eval(st.iterable, scope)
        if not isinstance(iterable, (list, dict)):
            raise RaspTypeError(
                f"a for loop needs a list or dict to loop over, not {ops.describe(iterable)}",
                st.iterable.span,
            )
        for item in list(iterable):
            for target, v in zip(
                st.targets, self._unpack(st.targets, item, st.iterable.span), strict=True
            ):
                self._bind(scope, target, v)
            for body_st in st.body:
                self.exec_stmt(body_st, scope)  # type: ignore[arg-type]

    def _load(self, st: S.Load, scope: Scope) -> dict[str, object]:
        path = self._find_file(st)
        if path in self.loading:
            raise RaspValueError(f"'{st.path}' is already being loaded (circular load)", st.span)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RaspNameError(f"cannot read '{path}': {exc.strerror}", st.span) from None
        except UnicodeDecodeError:
            raise RaspValueError(
                f"'{path}' is not a RASP program (not UTF-8 text)", st.span
            ) from None
        program = parse(text, str(path))
        file_scope = Scope(self.library, st.path, export_to=scope)
        self.loading.append(path)
        try:
            for file_st in program.statements:
                if isinstance(file_st, S.Exit):
                    break
                self.exec_stmt(file_st, file_scope)
        finally:
            self.loading.pop()
        return {k: v for k, v in file_scope.vars.items() if not k.startswith("_") and k != "out"}

    def _find_file(self, st: S.Load) -> Path:
        names = [f"{st.path}.rasp"] + ([st.path] if st.path.endswith(".rasp") else [])
        dirs = ([self.base_dir] if self.base_dir is not None else []) + [Path.cwd()]
        for d in dirs:
            for n in names:
                if (d / n).is_file():
                    return (d / n).resolve()
        where = " or ".join(str(d) for d in dict.fromkeys(dirs))
        raise RaspNameError(f'cannot load "{st.path}": no file {names[0]} in {where}', st.span)

    def _draw(self, st: S.Draw, scope: Scope) -> StatementResult:
        node = self.eval(st.sop, scope)
        if not isinstance(node, ir.SOp):
            raise RaspTypeError(f"draw needs an s-op, not {ops.describe(node)}", st.sop.span)
        inp = None
        if st.input is not None:
            inp = self._input(self.eval(st.input, scope), st.input.span)
        if self.draw_hook is not None:
            self.draw_hook(node, inp, st.span)
        return StatementResult("draw", None, (node, inp), st.span)

    # ------------------------------------------------------------ binding

    def _check_reserved(self, name: S.Name) -> None:
        if name.id in self.reserved:
            what = "a library name" if name.id in self.library_names else "a built-in name"
            raise RaspNameError(f"cannot assign to '{name.id}': it is {what}", name.span)

    def _bind(self, scope: Scope, name: S.Name, value: object) -> None:
        self._check_reserved(name)
        self._bind_name(scope, name.id, value)

    def _bind_name(self, scope: Scope, name: str, value: object) -> None:
        scope.bind(name, value)
        if scope is self.top and isinstance(value, ir.SOp):
            self.last_sop = name

    def lookup(self, scope: Scope, name: S.Name) -> object:
        try:
            return scope.lookup(name.id)
        except KeyError:
            pass
        if name.id == "select":
            raise RaspNameError(
                "'select' is not a value: write select(keys, queries, comparison)", name.span
            )
        close = difflib.get_close_matches(name.id, sorted(scope.visible_names()), n=3)
        notes = (f"did you mean {' or '.join(repr(c) for c in close)}?",) if close else ()
        raise RaspNameError(f"undefined name '{name.id}'", name.span, notes)

    # ------------------------------------------------------------ expressions

    def _nspan(self, span: Span) -> Span:
        """The span recorded on a new IR node (the user's call site inside the library)."""
        return self.site or span

    def eval(self, e: S.Expr, scope: Scope) -> object:
        """The definition-time value of expression ``e`` in ``scope``."""
        match e:
            case S.Num(value=v) | S.Str(value=v):
                return v
            case S.Name():
                return self.lookup(scope, e)
            case S.ListExpr(items=items):
                return [self.eval(x, scope) for x in items]
            case S.DictExpr(items=items):
                return {self._key(k, scope): self.eval(v, scope) for k, v in items}
            case S.ListComp() | S.DictComp():
                return self._comprehension(e, scope)
            case S.Unary(span=span, op=op, operand=x):
                return ops.unary(op, self.eval(x, scope), span, self._nspan(span))
            case S.Binary(span=span, op="in", left=a, right=b):
                return ops.contains(
                    self.eval(a, scope), self.eval(b, scope), span, self._nspan(span)
                )
            case S.Binary(span=span, op=op, left=a, right=b):
                return ops.binary(
                    op, self.eval(a, scope), self.eval(b, scope), span, self._nspan(span)
                )
            case S.IfExpr():
                return self._if(e, scope)
            case S.Index(span=span, target=t, index=i):
                target, idx = self.eval(t, scope), self.eval(i, scope)
                return ops.index(target, idx, span, self._nspan(span), self.prims)
            case S.Call():
                return self._call(e, scope)
            case S.SelectExpr(span=span, keys=k, queries=q, cmp=cmp):
                keys, queries = self.eval(k, scope), self.eval(q, scope)
                return ops.select(keys, queries, cmp, span, self._nspan(span))
        raise AssertionError(f"unknown expression {e!r}")

    def _key(self, e: S.Expr, scope: Scope) -> Atom:
        key = self.eval(e, scope)
        if not ops.is_atom(key):
            raise RaspTypeError(f"a dict key must be an atom, not {ops.describe(key)}", e.span)
        return key  # type: ignore[return-value]

    def _comprehension(self, e: S.ListComp | S.DictComp, scope: Scope) -> list | dict:
        iterable = self.eval(e.iterable, scope)
        if not isinstance(iterable, (list, dict)):
            raise RaspTypeError(
                f"a comprehension needs a list or dict to loop over, not {ops.describe(iterable)}",
                e.iterable.span,
            )
        out_list: list[object] = []
        out_dict: dict[Atom, object] = {}
        for item in list(iterable):
            inner = Scope(scope, "<comprehension>")
            for target, v in zip(
                e.targets, self._unpack(e.targets, item, e.iterable.span), strict=True
            ):
                self._bind(inner, target, v)
            if isinstance(e, S.ListComp):
                out_list.append(self.eval(e.elt, inner))
            else:
                key = self._key(e.key, inner)
                out_dict[key] = self.eval(e.value, inner)
        return out_list if isinstance(e, S.ListComp) else out_dict

    def _if(self, e: S.IfExpr, scope: Scope) -> object:
        cond = self.eval(e.test, scope)
        if isinstance(cond, ir.SOp):
            body, orelse = self.eval(e.body, scope), self.eval(e.orelse, scope)
            return ops.where(cond, body, orelse, e.span, self._nspan(e.span))
        if isinstance(cond, ir.Selector):
            raise RaspTypeError("the condition of 'if' cannot be a selector", e.test.span)
        # Definition-time conditional: only the chosen branch is evaluated.
        return self.eval(e.body if cond else e.orelse, scope)

    def _call(self, e: S.Call, scope: Scope) -> object:
        fn = self.eval(e.func, scope)
        args = [self.eval(a, scope) for a in e.args]
        match fn:
            case Function():
                return self._call_function(fn, args, e.span)
            case ops.Builtin():
                if len(args) < fn.min_args or (fn.max_args is not None and len(args) > fn.max_args):
                    raise RaspTypeError(
                        f"{fn.name}() takes {_arity_words(fn.min_args, fn.max_args)}, "
                        f"got {len(args)}",
                        e.span,
                    )
                return fn.fn(args, e.span, self._nspan(e.span), self.prims)
            case ir.SOp() | ir.Selector():
                return self._apply(fn, args, e.span)
        raise RaspTypeError(f"cannot call {ops.describe(fn)}", e.func.span)

    def _call_function(self, fn: Function, args: list[object], span: Span) -> object:
        if len(args) != len(fn.params):
            raise RaspTypeError(
                f"{fn.name}() takes {_arity_words(len(fn.params), len(fn.params))}, "
                f"got {len(args)}",
                span,
            )
        if self.depth >= MAX_CALL_DEPTH:
            raise RaspValueError(
                f"more than {MAX_CALL_DEPTH} nested function calls",
                span,
                ("does a recursion never reach its base case?",),
            )
        entering_library = self.site is None and fn.span.source is self.library_source
        if entering_library:
            self.site = span
        self.depth += 1
        try:
            scope = Scope(fn.closure_scope, fn.name)
            scope.vars.update(zip(fn.params, args, strict=True))
            *body, ret = fn.body
            for st in body:
                self.exec_stmt(st, scope)  # type: ignore[arg-type]
            assert isinstance(ret, S.Return)
            values = [self.eval(v, scope) for v in ret.values]
        except RaspError as err:
            if entering_library and err.span is not None and err.span.source is self.library_source:
                note = f"inside library function '{fn.name}' ({err.span.location})"
                raise type(err)(err.message, span, (*err.notes, note)) from None
            raise
        finally:
            self.depth -= 1
            if entering_library:
                self.site = None
        return values[0] if len(values) == 1 else values

    def _input(self, value: object, span: Span) -> list[Atom] | str:
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(ops.is_atom(v) for v in value):
            return value  # type: ignore[return-value]
        raise RaspTypeError(
            f"an input must be a string or a list of atoms, not {ops.describe(value)}", span
        )

    def _apply(self, node: ir.SOp | ir.Selector, args: list[object], span: Span) -> list:
        """``sop(input)``: the value of an s-op (list) or selector (list of bool rows)."""
        if len(args) != 1:
            raise RaspTypeError(
                f"applying {ops.describe(node)} takes one input, got {len(args)}", span
            )
        inp = self._input(args[0], span)
        from . import interpret  # the reference semantics; imported only when needed

        try:
            value = interpret.evaluate(node, inp)
        except RaspError as err:
            if err.span is None:
                raise type(err)(err.message, span, err.notes) from None
            raise
        if isinstance(value, np.ndarray):  # a selector: n x n bools, row = query
            return [[bool(x) for x in row] for row in value.tolist()]
        return list(value)


def _arity_words(lo: int, hi: int | None) -> str:
    if hi == lo:
        return f"{lo} argument{'s' if lo != 1 else ''}"
    if hi is None:
        return f"at least {lo} arguments"
    return f"{lo} to {hi} arguments"


# ------------------------------------------------------------------ public API


class Session:
    """One global environment with the library loaded; runs programs statement by statement.

    ``base_dir``: where ``load "name";`` looks for ``name.rasp`` first (then the current
    directory).  ``draw_hook(sop, input_or_None, span)`` is called by ``draw(...)``.
    A REPL keeps one Session and calls :meth:`execute` for each entry.
    """

    def __init__(self, base_dir: Path | str | None = None, draw_hook: DrawHook | None = None):
        self._lw = _Lowerer(Path(base_dir) if base_dir is not None else None, draw_hook)

    @property
    def library_names(self) -> frozenset[str]:
        """The names the library defines (all reserved)."""
        return self._lw.library_names

    @property
    def reserved_names(self) -> frozenset[str]:
        """Every name a program cannot assign: builtins and library names."""
        return self._lw.reserved

    def execute(self, program: S.Program) -> list[StatementResult]:
        """Run ``program``'s statements in order; stops after an ``exit``/``quit``.

        Raises the first RaspError a statement causes (earlier statements stay done).
        """
        results: list[StatementResult] = []
        with _deep_recursion():
            for st in program.statements:
                try:
                    results.extend(self._lw.exec_stmt(st, self._lw.top))
                except RecursionError:
                    raise RaspValueError("definitions nest too deeply", st.span) from None
                if isinstance(st, S.Exit):
                    break
        return results

    def evaluate(self, expr: S.Expr) -> object:
        """The value of one expression in the global scope (e.g. ``set example E``)."""
        with _deep_recursion():
            return self._lw.eval(expr, self._lw.top)

    def lookup(self, name: str) -> object:
        """The value ``name`` has for the program (user, library or builtin)."""
        try:
            return self._lw.top.lookup(name)
        except KeyError:
            raise RaspNameError(f"undefined name '{name}'") from None

    def names(self) -> dict[str, object]:
        """The names the user's program bound at the top level (library excluded)."""
        return dict(self._lw.top.vars)

    def last_sop_name(self) -> str | None:
        """The last top-level name the program bound to an s-op (``out`` for an expression
        statement); names brought in by ``load`` do not count.  None if there is none."""
        return self._lw.last_sop


def load_source(
    text: str,
    name: str = "<input>",
    base_dir: Path | str | None = None,
    draw_hook: DrawHook | None = None,
) -> Session:
    """Parse and run ``text`` in a new Session."""
    session = Session(base_dir, draw_hook)
    session.execute(parse(text, name))
    return session


def load_program(path: str | Path, draw_hook: DrawHook | None = None) -> Session:
    """Parse and run the file ``path`` in a new Session (loads resolve next to it first)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RaspNameError(f"cannot read program '{path}': {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RaspValueError(f"'{path}' is not a RASP program (not UTF-8 text)") from None
    return load_source(text, str(path), base_dir=path.resolve().parent, draw_hook=draw_hook)


def get_sop(session: Session, name: str) -> ir.SOp:
    """The s-op bound to ``name``: RaspNameError if undefined, RaspTypeError if not an s-op."""
    try:
        value = session.lookup(name)
    except RaspNameError:
        sops = sorted(n for n, v in session.names().items() if isinstance(v, ir.SOp))
        notes = (f"s-ops the program defines: {', '.join(sops)}",) if sops else ()
        raise RaspNameError(f"the program does not define '{name}'", None, notes) from None
    if not isinstance(value, ir.SOp):
        raise RaspTypeError(f"'{name}' is {ops.describe(value)}, not an s-op")
    return value
