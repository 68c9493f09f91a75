"""Definition-time meaning of RASP operators and builtins, for ``lower.py``.

Each function takes already-evaluated operand values and returns a value: an atom,
a list or dict (computed now, with Python semantics), or a new IR node when an s-op
or selector is involved.  Two spans travel with every call: ``span`` is where an
error is reported, ``nspan`` is recorded on the IR nodes made (they differ only while
a library function expands, whose nodes carry the user's call site).

Atom-only arithmetic reuses :data:`ir.MAP_OPS`, so "1 + 2 now" and "tokens + 2 per
position" are the same Python code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import RaspTypeError, RaspValueError, Span
from ..limits import MAX_LIST_LEN
from . import ir
from .ir import Atom

# syntax operator spelling -> ir.MAP_OPS name
UNARY_OPS = {"-": "neg", "+": "pos", "not": "not", "round": "round", "indicator": "indicator"}
BINARY_OPS = {
    "+": "add",
    "-": "sub",
    "*": "mul",
    "/": "div",
    "%": "mod",
    "^": "pow",
    "==": "eq",
    "<": "lt",
    ">": "gt",
    "<=": "le",
    ">=": "ge",
    "and": "and",
    "or": "or",
}


def is_atom(v: object) -> bool:
    return isinstance(v, ir.ATOM_TYPES)


def describe(v: object) -> str:
    """A short phrase naming what ``v`` is, for error messages."""
    match v:
        case ir.SOp():
            return "an s-op"
        case ir.Selector():
            return "a selector"
        case bool():
            return f"the bool {v}"
        case int() | float():
            return f"the {ir.type_name(v)} {v!r}"
        case str():
            return f'the string "{v}"'
        case list():
            return "a list"
        case dict():
            return "a dict"
    name = getattr(v, "name", None)
    return f"the function '{name}'" if name else "a function"


def _python(fn: Callable[[], object], span: Span, what: str) -> object:
    """Run definition-time Python ``fn``, turning its failures into RaspErrors."""
    try:
        return fn()
    except ir.MAP_ERRORS as exc:
        raise ir.map_error_class(exc)(f"{what} failed: {exc}", span) from None


def operand(v: object, what: str, span: Span) -> ir.Operand:
    """An s-op, or an atom wrapped in Const; anything else is a RaspTypeError."""
    if isinstance(v, ir.SOp):
        return v
    if is_atom(v):
        return ir.Const(v)  # type: ignore[arg-type]
    raise RaspTypeError(f"{what} must be an s-op or an atom, not {describe(v)}", span)


def _plain(v: object) -> bool:
    """A definition-time value on which Python operators act directly."""
    return is_atom(v) or isinstance(v, (list, dict))


# ------------------------------------------------------------------ operators


def unary(op: str, v: object, span: Span, nspan: Span) -> object:
    """``op v`` for op in ``- + not round indicator``."""
    name = UNARY_OPS[op]
    if isinstance(v, ir.SOp):
        return ir.Map(op=name, args=(v,), span=nspan)
    if isinstance(v, ir.Selector):
        if op == "not":
            return ir.SelectorNot(inner=v, span=nspan)
        raise RaspTypeError(f"cannot apply '{op}' to a selector (only not, and, or)", span)
    if not _plain(v):
        raise RaspTypeError(f"cannot apply '{op}' to {describe(v)}", span)
    return _python(lambda: ir.MAP_OPS[name].fn((), v), span, f"'{op}'")


def binary(op: str, a: object, b: object, span: Span, nspan: Span) -> object:
    """``a op b`` for the arithmetic, comparison and logical operators (not ``in``)."""
    if isinstance(a, ir.Selector) or isinstance(b, ir.Selector):
        if op not in ("and", "or"):
            raise RaspTypeError(f"cannot apply '{op}' to a selector (only not, and, or)", span)
        if not (isinstance(a, ir.Selector) and isinstance(b, ir.Selector)):
            other = b if isinstance(a, ir.Selector) else a
            raise RaspTypeError(
                f"'{op}' between a selector and {describe(other)}: both must be selectors", span
            )
        cls = ir.SelectorAnd if op == "and" else ir.SelectorOr
        return cls(left=a, right=b, span=nspan)
    name = BINARY_OPS[op]
    if isinstance(a, ir.SOp) or isinstance(b, ir.SOp):
        args = (operand(a, f"left side of '{op}'", span), operand(b, f"right side of '{op}'", span))
        return ir.Map(op=name, args=args, span=nspan)
    for side, v in (("left", a), ("right", b)):
        if not _plain(v):
            raise RaspTypeError(f"{side} side of '{op}' cannot be {describe(v)}", span)
    if op in ("and", "or"):  # between atoms: Python's own (an operand, not a bool)
        return (a and b) if op == "and" else (a or b)
    return _python(lambda: ir.MAP_OPS[name].fn((), a, b), span, f"'{op}'")


def where(cond: ir.SOp, a: object, b: object, span: Span, nspan: Span) -> ir.Map:
    """``a if cond else b`` with an s-op condition: elementwise choice."""
    args = (cond, operand(a, "the 'if' branch", span), operand(b, "the 'else' branch", span))
    return ir.Map(op="where", args=args, span=nspan)


def contains(item: object, container: object, span: Span, nspan: Span) -> object:
    """``item in container``."""
    if isinstance(item, ir.SOp):
        if isinstance(container, dict):
            container = list(container)
        if not isinstance(container, list) or not all(is_atom(x) for x in container):
            raise RaspTypeError(
                f"'s-op in X' needs X to be a list of atoms, not {describe(container)}", span
            )
        return ir.Map(op="in", args=(item,), data=tuple(container), span=nspan)
    if isinstance(container, ir.SOp):
        if not is_atom(item):
            raise RaspTypeError(f"cannot test whether {describe(item)} is in an s-op", span)
        # "occurs anywhere": each query selects the keys holding the atom; averaging
        # 1 over them gives 1 if there is any such key and the default 0 if not.
        sel = ir.Select(keys=container, queries=ir.Const(item), cmp="==", span=nspan)  # type: ignore[arg-type]
        found = ir.Aggregate(selector=sel, values=ir.Const(1), default=0, span=nspan)
        return ir.Map(op="gt", args=(found, ir.Const(0)), span=nspan)
    if not _plain(item):
        raise RaspTypeError(f"cannot test whether {describe(item)} is in something", span)
    if not isinstance(container, (list, dict, str)):
        raise RaspTypeError(
            f"'in' needs a list, dict, string or s-op, not {describe(container)}", span
        )
    return _python(lambda: item in container, span, "'in'")  # type: ignore[operator]


def _lookup_table(table: list | str | dict, span: Span) -> tuple[tuple[Atom, Atom], ...]:
    if isinstance(table, dict):
        pairs = list(table.items())
    else:
        n = len(table)
        pairs = [(i, table[i]) for i in range(n)] + [(i - n, table[i]) for i in range(n)]
    for _, v in pairs:
        if not is_atom(v):
            raise RaspTypeError(
                f"indexing with an s-op needs a table of atoms, but it holds {describe(v)}", span
            )
    return tuple(pairs)


def index(target: object, idx: object, span: Span, nspan: Span, prims: Prims) -> object:
    """``target[idx]``: list/string/dict access, an elementwise lookup, or ``s[k]``."""
    if isinstance(target, (list, str, dict)) and isinstance(idx, ir.SOp):
        return ir.Map(op="lookup", args=(idx,), data=_lookup_table(target, span), span=nspan)
    match target:
        case list() | str():
            what = "list" if isinstance(target, list) else "string"
            if not isinstance(idx, int):
                raise RaspTypeError(f"a {what} index must be an int, not {describe(idx)}", span)
            if not -len(target) <= idx < len(target):
                raise RaspValueError(
                    f"index {idx} is out of range for a {what} of length {len(target)}", span
                )
            return target[idx]
        case dict():
            if not is_atom(idx):
                raise RaspTypeError(f"a dict key must be an atom, not {describe(idx)}", span)
            if idx not in target:
                raise RaspValueError(f"key {idx!r} is not in the dict", span)
            return target[idx]
        case ir.SOp():
            if not isinstance(idx, int) or isinstance(idx, bool):
                raise RaspTypeError(
                    f"an s-op can only be indexed by an int, not {describe(idx)}", span
                )
            # s[k]: every query selects the key at position k (n + k when k < 0).
            where_k: ir.Operand = ir.Const(idx)
            if idx < 0:
                where_k = ir.Map(op="add", args=(prims.length, ir.Const(idx)), span=nspan)
            sel = ir.Select(keys=prims.indices, queries=where_k, cmp="==", span=nspan)
            return ir.Aggregate(selector=sel, values=target, default=0, span=nspan)
    raise RaspTypeError(f"cannot index into {describe(target)}", span)


def select(keys: object, queries: object, cmp: str, span: Span, nspan: Span) -> ir.Select:
    """``select(keys, queries, cmp)``; atoms become Consts."""
    k = operand(keys, "select's keys", span)
    q = operand(queries, "select's queries", span)
    return ir.Select(keys=k, queries=q, cmp=cmp, span=nspan)


# ------------------------------------------------------------------ builtins


@dataclass(frozen=True)
class Prims:
    """The primitive s-ops shared by every node a session makes."""

    indices: ir.Indices
    length: ir.Length


@dataclass(frozen=True, eq=False)
class Builtin:
    """A function implemented in Python: ``fn(args, span, nspan, prims) -> value``.

    It takes between ``min_args`` and ``max_args`` arguments (None: no upper bound).
    """

    name: str
    fn: Callable[[list[object], Span, Span, Prims], object]
    min_args: int
    max_args: int | None


def _aggregate(args: list[object], span: Span, nspan: Span, prims: Prims) -> ir.Aggregate:
    sel, seq = args[0], args[1]
    default = args[2] if len(args) == 3 else 0
    if not isinstance(sel, ir.Selector):
        raise RaspTypeError(
            f"aggregate's first argument must be a selector, not {describe(sel)}", span
        )
    values = operand(seq, "aggregate's second argument", span)
    if not is_atom(default):
        raise RaspTypeError(f"aggregate's default must be an atom, not {describe(default)}", span)
    return ir.Aggregate(selector=sel, values=values, default=default, span=nspan)  # type: ignore[arg-type]


def _selector_width(args: list[object], span: Span, nspan: Span, prims: Prims) -> ir.SelectorWidth:
    if not isinstance(args[0], ir.Selector):
        raise RaspTypeError(f"selector_width needs a selector, not {describe(args[0])}", span)
    return ir.SelectorWidth(selector=args[0], span=nspan)


def _range(args: list[object], span: Span, nspan: Span, prims: Prims) -> list[int]:
    ints: list[int] = []
    for a in args:
        if not isinstance(a, int) or isinstance(a, bool):
            raise RaspTypeError(f"range needs int arguments, not {describe(a)}", span)
        ints.append(a)
    r = _python(lambda: range(*ints), span, "range")
    assert isinstance(r, range)
    try:
        n: int | None = len(r)
    except OverflowError:  # more elements than a machine word counts
        n = None
    if n is None or n > MAX_LIST_LEN:
        size = f"{n:,}" if n is not None else "more than 2^63"
        raise RaspValueError(
            f"range would make a list of {size} elements, more than the limit of {MAX_LIST_LEN:,}",
            span,
        )
    return list(r)


def _zip(args: list[object], span: Span, nspan: Span, prims: Prims) -> list[list[object]]:
    for i, a in enumerate(args, 1):
        if not isinstance(a, list):
            raise RaspTypeError(f"zip needs lists, but argument {i} is {describe(a)}", span)
    lengths = {len(a) for a in args}  # type: ignore[arg-type]
    if len(lengths) > 1:
        raise RaspValueError(f"zip needs lists of one length, got lengths {sorted(lengths)}", span)
    return [list(t) for t in zip(*args, strict=True)]  # type: ignore[call-overload]


def _len(args: list[object], span: Span, nspan: Span, prims: Prims) -> int:
    if not isinstance(args[0], (list, dict, str)):
        raise RaspTypeError(f"len needs a list, dict or string, not {describe(args[0])}", span)
    return len(args[0])


BUILTIN_FUNCTIONS: tuple[Builtin, ...] = (
    Builtin("aggregate", _aggregate, 2, 3),
    Builtin("selector_width", _selector_width, 1, 1),
    Builtin("range", _range, 1, 3),
    Builtin("zip", _zip, 1, None),
    Builtin("len", _len, 1, 1),
)
