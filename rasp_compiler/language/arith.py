"""``+ - *`` on numbers without the per-position dispatch (the interpreter's hot path:
a program is evaluated on thousands of inputs by ``verify``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from . import ir
from .ir import Atom

#: ints below this are within every size limit (MAX_INT_DIGITS digits)
INT_SAFE = 10**15

#: elementwise operations on numbers that a plain Python operator computes as MAP_OPS does
#: (given int or float operands: no bools, no strings), for :func:`arith`
_ARITH: dict[str, Callable[[Atom, Atom], Atom]] = {
    "add": lambda a, b: a + b,  # type: ignore[operator]
    "sub": lambda a, b: a - b,  # type: ignore[operator]
    "mul": lambda a, b: a * b,  # type: ignore[operator]
}

#: the kind of a constant broadcast to every position, by its type
_CONST_KINDS: dict[type, str] = {str: "str", bool: "bool", int: "int", float: "float"}


def arith(
    node: ir.Map, n: int, memo: Mapping[int, object], kinds: Mapping[int, str]
) -> tuple[list[Atom], str] | None:
    """``node``'s values when it is ``+ - *`` on int or float operands (computed as plain
    Python operators, which is what ``ir.apply_map`` does for them), with the result's
    kind: int from two ints, else float (ints and floats mixed).  None where the general
    path must compute it: another operation or kind, no positions, or an int past the
    size limit (which the general path names)."""
    fast = _ARITH.get(node.op)
    if fast is None or not n:
        return None
    same = _identity(node, kinds)
    if same is not None:  # ``x + 0``, ``x - 0``, ``x * 1``: x itself, of its own kind
        return list(memo[same.id]), kinds[same.id]  # type: ignore[call-overload]
    found: list[str] = []
    columns: list[list[Atom]] = []
    for a in node.args:
        if isinstance(a, ir.Const):
            kind = _CONST_KINDS.get(type(a.value), "")
            column = [a.value] * n
        else:
            kind, column = kinds[a.id], memo[a.id]  # type: ignore[assignment]
        if kind not in ("int", "float"):
            return None
        found.append(kind)
        columns.append(column)
    out = list(map(fast, *columns))
    if found == ["int", "int"]:
        if any(abs(y) >= INT_SAFE for y in out):  # type: ignore[arg-type]
            return None
        return out, "int"
    if any(type(y) is int and abs(y) >= INT_SAFE for y in out):
        return None
    return out, "float"


def _identity(node: ir.Map, kinds: Mapping[int, str]) -> ir.SOp | None:
    """The operand ``node`` leaves unchanged at every position: ``x + 0`` or ``0 + x``
    for int x (a float's -0.0 + 0 is 0.0), ``x - 0`` and ``x * 1`` or ``1 * x`` for int
    or float x (the constant an int, not a bool: ``x + 0.0`` turns an int into a float)."""
    a, b = node.args
    unit = {"add": 0, "sub": 0, "mul": 1}[node.op]
    for const, other in ((b, a), (a, b)):
        if not (isinstance(const, ir.Const) and type(const.value) is int and const.value == unit):
            continue
        if not isinstance(other, ir.SOp) or isinstance(other, ir.Const):
            continue
        if node.op == "sub" and const is a:
            continue  # 0 - x is -x
        kind = kinds.get(other.id)
        if kind == "int" or (kind == "float" and node.op != "add"):
            return other
    return None


def unit_operand(node: ir.Node) -> tuple[int, frozenset[str]] | None:
    """For ``x + 0``, ``0 + x``, ``x - 0``, ``x * 1``, ``1 * x`` (int constants): the id
    of ``x`` and the kinds of ``x`` it leaves unchanged (:func:`_identity`, found once
    per program instead of once per input)."""
    if not (isinstance(node, ir.Map) and node.op in _ARITH and len(node.args) == 2):
        return None
    a, b = node.args
    for const, other in ((b, a), (a, b)):
        if not (isinstance(const, ir.Const) and type(const.value) is int):
            continue
        if not isinstance(other, ir.SOp) or isinstance(other, ir.Const):
            continue
        if const.value != {"add": 0, "sub": 0, "mul": 1}.get(node.op):
            continue
        if node.op == "sub" and const is a:
            continue
        kinds = frozenset({"int"} if node.op == "add" else {"int", "float"})
        return other.id, kinds
    return None
