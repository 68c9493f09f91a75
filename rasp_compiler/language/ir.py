"""The RASP intermediate representation: a DAG of s-op and selector nodes.

Lowering (``lower.py``) produces these nodes; the reference interpreter
(``interpret.py``) and the compiler (``graph.py`` onwards) consume them.  Nodes are
frozen and compared by identity; every node records the source span that made it.
Operations are data: an elementwise :class:`Map` names its operation in
:data:`MAP_OPS` and carries any table it needs (a lookup list/dict, a membership
set) in ``data``, so the compiler can enumerate it over value sets.

Conventions
-----------
* ``Select(keys, queries, cmp)``: entry (query i, key j) is ``keys[j] cmp queries[i]``.
* An operand of a Map, Select or Aggregate may be a :class:`Const` (an atom).
* ``Aggregate.default`` is an atom (0 when the program omits it).

Sizes are bounded (:mod:`rasp_compiler.limits`): an operation whose result would be an
int of more than MAX_INT_DIGITS digits, a string of more than MAX_STRING_LEN characters
or a list of more than MAX_LIST_LEN elements raises OverflowError (one of MAP_ERRORS)
instead of computing it; a power is estimated before it is computed.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..errors import RaspError, RaspTypeError, RaspValueError, Span
from ..limits import MAX_INT_DIGITS, MAX_LIST_LEN, MAX_STRING_LEN

Atom = int | float | str | bool
#: The Python types of atoms (exactly these: a numpy scalar is unwrapped first).
ATOM_TYPES = (str, int, float, bool)

_ids = itertools.count()


def _next_id() -> int:
    return next(_ids)


@dataclass(frozen=True)
class Const:
    """An atom used as an operand (``tokens + 1``: the ``1``)."""

    value: Atom


@dataclass(frozen=True, eq=False)
class Node:
    """Base of all IR nodes.  ``span`` is where the node was made."""

    span: Span | None = field(default=None, kw_only=True, repr=False)
    id: int = field(default_factory=_next_id, kw_only=True, repr=False)

    def children(self) -> tuple[Node, ...]:
        """The nodes this node reads (Const operands excluded)."""
        return ()


class SOp(Node):
    """A sequence operator: input sequence -> sequence of the same length."""


class Selector(Node):
    """A selector: input sequence -> n x n boolean matrix (row query, column key)."""


Operand = SOp | Const

# ---------------------------------------------------------------- s-ops


#: ``tokens_<conv>`` -> the function it applies to each raw input token.
_TOKEN_CONVERTERS: dict[str, Callable[[Atom], Atom]] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "asis": lambda tok: tok,
}
TOKEN_CONVERSIONS: tuple[str, ...] = tuple(_TOKEN_CONVERTERS)
#: What :func:`convert_token` raises on a token it cannot convert (``int("a")``,
#: ``int(float("inf"))``).
TOKEN_ERRORS = (TypeError, ValueError, OverflowError)


def convert_token(conv: str, tok: Atom) -> Atom:
    """``tokens_<conv>`` applied to one raw token (raises one of TOKEN_ERRORS on failure).

    The one definition the interpreter and the compiler's value sets and embedding share.
    """
    if conv not in _TOKEN_CONVERTERS:
        raise ValueError(f"unknown token conversion {conv!r}")
    out = _TOKEN_CONVERTERS[conv](tok)
    return check_int(out) if type(out) is int else out


@dataclass(frozen=True, eq=False)
class Tokens(SOp):
    """The input, each element passed through ``conv`` (one of TOKEN_CONVERSIONS)."""

    conv: str = "str"


@dataclass(frozen=True, eq=False)
class Indices(SOp):
    """[0, 1, ..., n-1]."""


@dataclass(frozen=True, eq=False)
class Length(SOp):
    """[n, n, ..., n] (the library's ``length``, a primitive here)."""


@dataclass(frozen=True, eq=False)
class Full(SOp):
    """A constant s-op: ``value`` at every position."""

    value: Atom = 0


@dataclass(frozen=True, eq=False)
class Map(SOp):
    """Elementwise ``MAP_OPS[op]`` over ``args`` (s-ops or Consts), position by position.

    ``data`` carries the table of table-driven ops:
    ``in``: the tuple of atoms to test membership in;
    ``lookup``: a tuple of (key, value) pairs (a list ``l`` is ``enumerate(l)`` plus
    negative keys, a string likewise, a dict its items).
    """

    op: str = ""
    args: tuple[Operand, ...] = ()
    data: tuple = ()

    def children(self) -> tuple[Node, ...]:
        return tuple(a for a in self.args if isinstance(a, Node))


@dataclass(frozen=True, eq=False)
class Aggregate(SOp):
    """``aggregate(selector, values, default)``; ``values`` may be a Const."""

    selector: Selector = None  # type: ignore[assignment]
    values: Operand = None  # type: ignore[assignment]
    default: Atom = 0

    def children(self) -> tuple[Node, ...]:
        vals = (self.values,) if isinstance(self.values, Node) else ()
        return (self.selector, *vals)


@dataclass(frozen=True, eq=False)
class SelectorWidth(SOp):
    """Number of keys each query selects."""

    selector: Selector = None  # type: ignore[assignment]

    def children(self) -> tuple[Node, ...]:
        return (self.selector,)


# ------------------------------------------------------------ selectors

COMPARISONS = ("==", "!=", "<", ">", "<=", ">=")


@dataclass(frozen=True, eq=False)
class Select(Selector):
    """Entry (query i, key j) is ``keys[j] cmp queries[i]``."""

    keys: Operand = None  # type: ignore[assignment]
    queries: Operand = None  # type: ignore[assignment]
    cmp: str = "=="

    def children(self) -> tuple[Node, ...]:
        return tuple(a for a in (self.keys, self.queries) if isinstance(a, Node))


@dataclass(frozen=True, eq=False)
class SelectorAnd(Selector):
    left: Selector = None  # type: ignore[assignment]
    right: Selector = None  # type: ignore[assignment]

    def children(self) -> tuple[Node, ...]:
        return (self.left, self.right)


@dataclass(frozen=True, eq=False)
class SelectorOr(Selector):
    left: Selector = None  # type: ignore[assignment]
    right: Selector = None  # type: ignore[assignment]

    def children(self) -> tuple[Node, ...]:
        return (self.left, self.right)


@dataclass(frozen=True, eq=False)
class SelectorNot(Selector):
    inner: Selector = None  # type: ignore[assignment]

    def children(self) -> tuple[Node, ...]:
        return (self.inner,)


# ----------------------------------------------------- comparisons, ops


def compare(cmp: str, a: Atom, b: Atom) -> bool:
    """``a cmp b`` with Python semantics (TypeError for ordering str against int)."""
    match cmp:
        case "==":
            return a == b
        case "!=":
            return a != b
        case "<":
            return a < b  # type: ignore[operator]
        case ">":
            return a > b  # type: ignore[operator]
        case "<=":
            return a <= b  # type: ignore[operator]
        case ">=":
            return a >= b  # type: ignore[operator]
    raise ValueError(f"unknown comparison {cmp!r}")


# An int of at most this many bits surely has at most MAX_INT_DIGITS digits.
_SAFE_INT_BITS = int(MAX_INT_DIGITS * math.log2(10))
_INT_BOUND = 10**MAX_INT_DIGITS


def _too_big(what: str, limit: int) -> OverflowError:
    return OverflowError(f"the result would be {what}; the limit is {limit:,}")


def check_int(x: int) -> int:
    """``x`` if it has at most MAX_INT_DIGITS digits, else OverflowError."""
    if x.bit_length() > _SAFE_INT_BITS and abs(x) >= _INT_BOUND:
        raise _too_big(f"an integer of more than {MAX_INT_DIGITS:,} digits", MAX_INT_DIGITS)
    return x


def _check_size(x: str | list, size: int) -> None:
    """OverflowError if a string (list) of ``size`` characters (elements) is too long."""
    if isinstance(x, str) and size > MAX_STRING_LEN:
        raise _too_big(f"a string of {size:,} characters", MAX_STRING_LEN)
    if isinstance(x, list) and size > MAX_LIST_LEN:
        raise _too_big(f"a list of {size:,} elements", MAX_LIST_LEN)


def _bounded(r: Atom) -> Atom:
    """An operation's result, checked against the size limits."""
    if type(r) is int:
        return check_int(r)
    if isinstance(r, (str, list)):
        _check_size(r, len(r))
    return r


def _mul(a: Atom, b: Atom) -> Atom:
    # Repeating a string or list: check the size before building it.
    for seq, n in ((a, b), (b, a)):
        if isinstance(seq, (str, list)) and isinstance(n, int) and n > 0:
            _check_size(seq, len(seq) * n)
    return _bounded(a * b)  # type: ignore[operator]


# A %-format's width or precision (``"%0999999999d" % 1`` would build a huge string).
_FORMAT_SIZES = re.compile(r"%[-#0 +]*(\d*)(?:\.(\d*))?")


def _mod(a: Atom, b: Atom) -> Atom:
    if isinstance(a, str):
        for m in _FORMAT_SIZES.finditer(a):
            for digits in m.groups():
                if digits and (len(digits) > 6 or int(digits) > MAX_STRING_LEN):
                    raise _too_big(f"a string formatted {digits} characters wide", MAX_STRING_LEN)
    return _bounded(a % b)  # type: ignore[operator]


def _round(x: Atom) -> int:
    if isinstance(x, str):
        raise TypeError("round of a string")
    return round(x)  # Python's round: banker's rounding, returns int


def _pow(a: Atom, b: Atom) -> Atom:
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) >= 2:
        # |a|^b >= 2^((bits(a) - 1) * b): refuse before computing what could not be kept.
        if (abs(a).bit_length() - 1) * b > _SAFE_INT_BITS:
            digits = b * math.log10(abs(a))
            raise _too_big(f"an integer of about {digits:,.0f} digits", MAX_INT_DIGITS)
    r = _bounded(a**b)  # type: ignore[operator]
    if isinstance(r, complex):
        raise ValueError("power has no real value")
    return r


def _div(a: Atom, b: Atom) -> Atom:
    return a / b  # type: ignore[operator]


def _joint(data: tuple, *args: Atom) -> Atom:
    # data = (finders, sizes, classes): per operand a function from a value to its index
    # in the operand's value set and that set's size, and the class of every mixed-radix
    # code of (args[0], args[1], ...) (the first operand varies slowest).
    finders, sizes, classes = data
    code = 0
    for find, size, a in zip(finders, sizes, args, strict=True):
        i = find(a)
        if i is None:
            raise KeyError(a)
        code = code * size + i
    return classes[code]


def _lookup(data: tuple, key: Atom) -> Atom:
    # Python container semantics: keys are unique under ==, so the first match is it.
    for k, v in data:
        if k == key:
            return v
    raise KeyError(key)


@dataclass(frozen=True)
class MapOp:
    """An elementwise operation: its arity, symbol for display, and per-atom function.

    ``fn(data, *args)`` computes one position; it raises one of :data:`MAP_ERRORS` on
    bad atoms, which the interpreter turns into the RaspError :func:`map_error_class`
    names, at the node's span.
    """

    arity: int
    symbol: str
    fn: Callable[..., Atom]


MAP_OPS: dict[str, MapOp] = {
    # unary
    "neg": MapOp(1, "-", lambda d, a: -a),
    "pos": MapOp(1, "+", lambda d, a: +a),
    "not": MapOp(1, "not", lambda d, a: not a),
    "round": MapOp(1, "round", lambda d, a: _round(a)),
    "indicator": MapOp(1, "indicator", lambda d, a: 1 if a else 0),
    "in": MapOp(1, "in", lambda d, a: a in d),
    "lookup": MapOp(1, "[]", lambda d, a: _lookup(d, a)),
    # binary
    "add": MapOp(2, "+", lambda d, a, b: _bounded(a + b)),
    "sub": MapOp(2, "-", lambda d, a, b: _bounded(a - b)),
    "mul": MapOp(2, "*", lambda d, a, b: _mul(a, b)),
    "div": MapOp(2, "/", lambda d, a, b: _div(a, b)),
    "mod": MapOp(2, "%", lambda d, a, b: _mod(a, b)),
    "pow": MapOp(2, "^", lambda d, a, b: _pow(a, b)),
    "eq": MapOp(2, "==", lambda d, a, b: a == b),
    "lt": MapOp(2, "<", lambda d, a, b: a < b),
    "gt": MapOp(2, ">", lambda d, a, b: a > b),
    "le": MapOp(2, "<=", lambda d, a, b: a <= b),
    "ge": MapOp(2, ">=", lambda d, a, b: a >= b),
    # as in the reference, ``and``/``or`` on s-ops give booleans by truthiness
    # (``indices or 0`` is [F, T, T]), not Python's operand
    "and": MapOp(2, "and", lambda d, a, b: bool(a) and bool(b)),
    "or": MapOp(2, "or", lambda d, a, b: bool(a) or bool(b)),
    # ternary: where(cond, a, b) = a if cond else b
    "where": MapOp(3, "if", lambda d, c, a, b: a if c else b),
    # compiler-internal, any arity: the class of several s-ops' joint value (``data``:
    # their value sets and the class table), so one head can read a selector over all
    "joint": MapOp(-1, "joint", lambda d, *args: _joint(d, *args)),
}


#: The Python exceptions an elementwise operation (or definition-time arithmetic on
#: atoms) may raise on bad atoms: a program error, not a bug.
MAP_ERRORS: tuple[type[Exception], ...] = (
    TypeError,
    ValueError,
    ZeroDivisionError,
    KeyError,
    IndexError,
    OverflowError,
)


def map_error_class(exc: BaseException) -> type[RaspError]:
    """The RaspError the user sees for ``exc`` (one of MAP_ERRORS): a TypeError is a
    RaspTypeError, the rest (a bad value) are RaspValueErrors."""
    return RaspTypeError if isinstance(exc, TypeError) else RaspValueError


def apply_map(node: Map, args: tuple[Atom, ...]) -> Atom:
    """One position of ``node`` on the atoms ``args`` (raises as MapOp.fn does)."""
    return MAP_OPS[node.op].fn(node.data, *args)


def is_number(x: object) -> bool:
    """int or float, not bool."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def type_name(x: Atom) -> str:
    """'bool', 'int', 'float' or 'str'."""
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int):
        return "int"
    if isinstance(x, float):
        return "float"
    return "str"


def atom_key(x: Atom) -> tuple[str, Atom]:
    """A key that keeps 1, 1.0 and True apart (Python says they are equal, but they are
    different atoms) while numbers still sort by value."""
    return (type_name(x), x)


def plain_atom(x: object) -> Atom:
    """``x`` as a plain Python str/int/float/bool (numpy scalars unwrapped); else TypeError."""
    if isinstance(x, np.generic):
        x = x.item()
    if type(x) in ATOM_TYPES:
        return x  # type: ignore[return-value]
    raise TypeError(f"{x!r} ({type(x).__name__}) is not an atom (str, int, float or bool)")


def finite(x: Atom) -> bool:
    return not (isinstance(x, float) and (math.isnan(x) or math.isinf(x)))


# ------------------------------------------------------------ traversal


def walk(roots: Node | tuple[Node, ...] | list[Node]) -> Iterator[Node]:
    """Every node reachable from ``roots``, each once, children before parents."""
    if isinstance(roots, Node):
        roots = (roots,)
    seen: set[int] = set()
    order: list[Node] = []
    stack: list[tuple[Node, bool]] = [(r, False) for r in reversed(list(roots))]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node.id in seen:
            continue
        seen.add(node.id)
        stack.append((node, True))
        for child in reversed(node.children()):
            if child.id not in seen:
                stack.append((child, False))
    return iter(order)
