"""The definition-time evaluator behind a :class:`~.lower.Session`: RASP statements and
expressions -> values (atoms, lists, dicts, IR s-ops and selectors, functions).

Statements run in order in one global scope whose parent holds the library
(``library.rasp``) and, above that, the builtins (:mod:`.scope`).  Functions expand when
called, in a fresh scope whose parent is the scope they were defined in, so free
names are looked up at call time.  ``for`` runs in the enclosing scope; each
comprehension item gets its own nested scope.  An atom condition makes ``a if c else b``
an ordinary, lazy conditional (so recursion over atoms terminates); an s-op condition
makes it elementwise.  Operator meanings live in :mod:`.lower_ops`.

Limits (:mod:`rasp_compiler.limits`): at most MAX_STEPS definition-time steps
(statements, function calls, loop and comprehension iterations) per run, MAX_CALL_DEPTH
nested calls and MAX_LOAD_DEPTH nested loads; ``load`` follows the rule in
:mod:`.files`.  A chain of binary operators is evaluated along its left spine without
recursion, so only real nesting (at most MAX_NESTING per statement) recurses.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib.resources
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import RaspError, RaspNameError, RaspTypeError, RaspValueError, Source, Span
from ..limits import MAX_CALL_DEPTH, MAX_LOAD_DEPTH, MAX_RECURSION_FRAMES, MAX_STEPS
from . import ir
from . import lower_ops as ops
from . import syntax as S
from .files import read_source, resolve_load
from .ir import Atom
from .parser import parse
from .scope import BUILTIN_NAMES, DrawHook, Function, Scope, StatementResult, builtins_scope

__all__ = ["Lowerer", "MAX_CALL_DEPTH", "deep_recursion", "library_program"]


@functools.cache
def library_program() -> S.Program:
    """library.rasp, parsed once per process."""
    text = importlib.resources.files("rasp_compiler.language").joinpath("library.rasp").read_text()
    return parse(text, "library.rasp")


@contextlib.contextmanager
def deep_recursion() -> Iterator[None]:
    """Room for deep but bounded (MAX_RECURSION_FRAMES) definition-time recursion; a
    deeper one is a RecursionError, which Session reports at the statement."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, MAX_RECURSION_FRAMES))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


#: names the reference's grammar keeps for itself beyond the keywords the parser knows
RESERVED_WORDS = frozenset({"get"})


class Lowerer:
    """The evaluation engine behind a Session: statements and expressions -> values.

    ``top`` is the program's global scope; ``last_sop`` the last top-level name bound to
    an s-op there (see :meth:`Session.last_sop_name`).
    """

    def __init__(self, base_dir: Path | None, draw_hook: DrawHook | None):
        self.base_dir = base_dir
        self.draw_hook = draw_hook
        self.prims = ops.Prims(indices=ir.Indices(), length=ir.Length())
        self.builtins = builtins_scope(self.prims)
        self.site: Span | None = None  # user call site while a library function expands
        self.depth = 0
        self.steps = 0  # definition-time steps of the current run (see MAX_STEPS)
        self.loading: list[Path] = []  # the files being loaded, outermost first
        self.file_dirs: dict[Source, Path] = {}  # a loaded file's source -> its directory
        self.last_sop: str | None = None
        # The library runs with only the builtins reserved; afterwards its names are too.
        self.reserved: frozenset[str] = BUILTIN_NAMES
        self.library_source = library_program().source
        self.library = Scope(self.builtins, "<library>")
        self.top = self.library  # no user scope yet: library bindings are not "user" ones
        with deep_recursion():
            for st in library_program().statements:
                self.exec_stmt(st, self.library)
        self.library_names = frozenset(self.library.vars) - {"tokens"}
        self.reserved = BUILTIN_NAMES | self.library_names
        self.top = Scope(self.library, "<program>")
        self.last_sop = None

    # ------------------------------------------------------------ statements

    def tick(self, span: Span) -> None:
        """Count one definition-time step; RaspValueError at ``span`` past MAX_STEPS."""
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise RaspValueError(
                f"the program runs more than {MAX_STEPS:,} definition-time steps (the limit)",
                span,
                ("statements run, function calls and loop and comprehension iterations count",),
            )

    def exec_stmt(self, st: S.Stmt, scope: Scope) -> list[StatementResult]:
        """Run one statement in ``scope``; what it did, for printing."""
        self.tick(st.span)
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
                names, reported = self._load(st, scope)
                return [*reported, StatementResult("load", path, names, span)]
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
            self.tick(st.span)
            for target, v in zip(
                st.targets, self._unpack(st.targets, item, st.iterable.span), strict=True
            ):
                self._bind(scope, target, v)
            for body_st in st.body:
                self.exec_stmt(body_st, scope)  # type: ignore[arg-type]

    def _load(self, st: S.Load, scope: Scope) -> tuple[dict[str, object], list[StatementResult]]:
        """Run a loaded file: (the names it brings in, its REPL commands and the errors
        of its statements, in order).  As in the reference, a statement that fails is
        reported and the file goes on; a REPL command in it takes effect in the REPL."""
        root = (self.base_dir if self.base_dir is not None else Path.cwd()).resolve()
        here = self.file_dirs.get(st.span.source, root)
        path = resolve_load(st.path, here, root, st.span)
        if path in self.loading:
            raise RaspValueError(f"'{st.path}' is already being loaded (circular load)", st.span)
        if len(self.loading) >= MAX_LOAD_DEPTH:
            raise RaspValueError(
                f"more than {MAX_LOAD_DEPTH} nested loads (the limit)",
                st.span,
                ("a file that loads a file that loads ... counts one level per file",),
            )
        program = parse(read_source(path, st.span), str(path))
        self.file_dirs[program.source] = path.parent
        file_scope = Scope(self.library, st.path, export_to=scope)
        self.loading.append(path)
        reported: list[StatementResult] = []
        try:
            for file_st in program.statements:
                if isinstance(file_st, S.Exit):
                    break
                try:
                    done = self.exec_stmt(file_st, file_scope)
                except RaspError as err:
                    reported.append(StatementResult("error", None, err, file_st.span))
                    continue
                reported += [r for r in done if r.kind in ("command", "error")]
        finally:
            self.loading.pop()
        names = {k: v for k, v in file_scope.vars.items() if not k.startswith("_") and k != "out"}
        return names, reported

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
        if name.id in RESERVED_WORDS:
            raise RaspNameError(
                f"cannot assign to '{name.id}': it is a reserved word in RASP", name.span
            )
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
            case S.Binary():
                return self._binary_chain(e, scope)
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

    def _binary_chain(self, e: S.Binary, scope: Scope) -> object:
        """``a op b op c ...``: left to right along the left spine, without recursion."""
        spine: list[S.Binary] = []
        node: S.Expr = e
        while isinstance(node, S.Binary):
            spine.append(node)
            node = node.left
        value = self.eval(node, scope)
        for b in reversed(spine):
            right = self.eval(b.right, scope)
            if b.op == "in":
                value = ops.contains(value, right, b.span, self._nspan(b.span))
            else:
                value = ops.binary(b.op, value, right, b.span, self._nspan(b.span))
        return value

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
            self.tick(e.span)
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
        self.tick(span)
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
