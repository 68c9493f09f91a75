"""Definition-time evaluation: a RASP program -> IR s-ops and selectors.

A :class:`Session` runs a program's statements in order in one global scope whose
parent holds the library (``library.rasp``) and, above that, the builtins; evaluating
gives each name a *value*: an atom, a list or dict (definition-time only), an IR node
(:mod:`.ir`), a :class:`Function` or a builtin.  The evaluator itself is
:class:`.lowerer.Lowerer`; values and scopes are in :mod:`.scope`.

Public API: Session, StatementResult, Function, load_program, load_source, get_sop,
choose_sop.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError, RaspError, RaspNameError, RaspTypeError, RaspValueError
from ..limits import MAX_RECURSION_FRAMES
from . import ir
from . import lower_ops as ops
from . import syntax as S
from .files import read_source
from .lowerer import MAX_CALL_DEPTH, Lowerer, deep_recursion
from .parser import parse
from .scope import BUILTIN_NAMES, DrawHook, Function, Scope, StatementResult

__all__ = [
    "Session",
    "StatementResult",
    "Function",
    "Scope",
    "DrawHook",
    "load_program",
    "load_source",
    "get_sop",
    "choose_sop",
    "BUILTIN_NAMES",
    "MAX_CALL_DEPTH",
]


_TOO_DEEP = (
    f"definitions nest too deeply (past the limit of {MAX_RECURSION_FRAMES:,} Python frames "
    "for nested calls and the nesting inside them)"
)


class Session:
    """One global environment with the library loaded; runs programs statement by statement.

    ``base_dir``: the directory ``load "name";`` reads ``name.rasp`` from, for statements
    that are not in a loaded file, and the root no loaded file may lie outside (default:
    the current directory; the rule is in :mod:`.files`).  ``draw_hook(sop,
    input_or_None, span)`` is called by ``draw(...)``.  A REPL keeps one Session and
    calls :meth:`execute` for each entry; each call may run MAX_STEPS steps.
    """

    def __init__(self, base_dir: Path | str | None = None, draw_hook: DrawHook | None = None):
        self._lw = Lowerer(Path(base_dir) if base_dir is not None else None, draw_hook)

    @property
    def library_names(self) -> frozenset[str]:
        """The names the library defines (all reserved)."""
        return self._lw.library_names

    @property
    def reserved_names(self) -> frozenset[str]:
        """Every name a program cannot assign: builtins and library names."""
        return self._lw.reserved

    def execute(self, program: S.Program, keep_going: bool = False) -> list[StatementResult]:
        """Run ``program``'s statements in order; stops after an ``exit``/``quit``.

        Raises the first RaspError a statement causes (earlier statements stay done), also
        one inside a loaded file.  With ``keep_going``, as the reference runs a file, a
        failing statement is reported as an "error" result and the rest still runs.
        """
        results: list[StatementResult] = []
        self._lw.steps = 0
        with deep_recursion():
            for st in program.statements:
                try:
                    try:
                        done = self._lw.exec_stmt(st, self._lw.top)
                    except RecursionError:
                        raise RaspValueError(_TOO_DEEP, st.span) from None
                    except MemoryError:
                        raise RaspValueError(
                            "out of memory running this statement", st.span
                        ) from None
                except RaspError as err:
                    if not keep_going:
                        raise
                    results.append(StatementResult("error", None, err, st.span))
                    continue
                failed = [r for r in done if r.kind == "error"]
                if failed and not keep_going:
                    raise failed[0].value  # type: ignore[misc]
                results.extend(done)
                if isinstance(st, S.Exit):
                    break
        return results

    def evaluate(self, expr: S.Expr) -> object:
        """The value of one expression in the global scope (e.g. ``set example E``)."""
        self._lw.steps = 0
        with deep_recursion():
            try:
                return self._lw.eval(expr, self._lw.top)
            except RecursionError:
                raise RaspValueError(_TOO_DEEP, expr.span) from None

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
    """Parse and run the file ``path`` in a new Session (its loads resolve next to it)."""
    path = Path(path)
    text = read_source(path)
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


def choose_sop(session: Session, name: str | None, program: str) -> tuple[str, ir.SOp]:
    """The s-op a command works on and its name: ``name`` if given (see :func:`get_sop`),
    else the last one the program binds (:meth:`Session.last_sop_name`); an InputError
    saying so, with ``program`` naming the program, if it binds none."""
    if name is None:
        name = session.last_sop_name()
        if name is None:
            raise InputError(f"{program} assigns no s-op; name one with --sop")
    return name, get_sop(session, name)
