"""The reference interpreter: RASP IR evaluated on one input (LANGUAGE.md section 4).

``evaluate(node, inp)`` gives an s-op's value as a list of Python atoms, or a
selector's value as an n x n numpy bool matrix (row = query i, column = key j,
entry = ``keys[j] cmp queries[i]``).  :class:`Interpreter` holds one input and a
memo, so a graph whose nodes share sub-graphs is computed once per node;
``evaluate_many`` returns every node's value, which the compiler's verifier compares
against the compiled model.

Per-position semantics come from :mod:`rasp_compiler.language.ir` (``apply_map``, ``compare``),
so the interpreter and the compiler agree on what each operation means.  Selects
and aggregates are vectorised with numpy, but only where that is exact: a mean is
the exact sum of the selected values divided by their count, rounded once, which is
what Python's ``sum(vals) / len(vals)`` gives whenever that sum is exact (always for
ints below 2**53 and for values such as halves and quarters).

An input has at most MAX_INPUT_LEN tokens, each int of at most MAX_INT_DIGITS digits and
each string of at most MAX_STRING_LEN characters (:mod:`rasp_compiler.limits`); the
selector matrices of an input are n x n, so this bounds the memory a run takes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from ..errors import InputError, MixedAggregateError, RaspTypeError, RaspValueError, Span
from ..limits import MAX_INPUT_LEN, MAX_INT_DIGITS, MAX_STRING_LEN
from . import ir
from .arith import INT_SAFE, arith
from .ir import Atom
from .order import evaluation_steps

SOpValue = list[Atom]
Value = list[Atom] | np.ndarray

# The homogeneity rule: the set of Python types in a sequence -> its kind.
#: ints below this are within every size limit (MAX_INT_DIGITS digits)
_INT_SAFE = INT_SAFE

_KINDS: dict[frozenset[type], str] = {
    frozenset({str}): "str",
    frozenset({bool}): "bool",
    frozenset({int}): "int",
    frozenset({float}): "float",
    frozenset({int, float}): "float",
}

_TYPE_WORDS = {str: "strings", bool: "bools", int: "ints", float: "floats"}

_NUMPY_CMP = {
    "==": np.equal,
    "!=": np.not_equal,
    "<": np.less,
    ">": np.greater,
    "<=": np.less_equal,
    ">=": np.greater_equal,
}

_FLOAT_EXACT_INT = 2**53  # ints up to this magnitude convert to float64 exactly


# ------------------------------------------------------------------ public API


def evaluate(node: ir.SOp | ir.Selector, inp: Sequence[Atom] | str) -> Value:
    """The value of ``node`` on ``inp``: a list of atoms (s-op) or an n x n bool matrix.

    Raises InputError for a bad input and RaspTypeError / RaspValueError (at the span
    of the failing node) when the program fails on this input.
    """
    return Interpreter(inp).value(node)


def evaluate_many(
    nodes: Iterable[ir.SOp | ir.Selector], inp: Sequence[Atom] | str
) -> dict[int, Value]:
    """Every node reachable from ``nodes``, evaluated on ``inp``: ``{node.id: value}``.

    Shared sub-graphs are computed once.  Lists are fresh copies; matrices are
    read-only arrays.
    """
    interp = Interpreter(inp)
    for node in nodes:
        interp.value(node)
    return interp.values()


class Interpreter:
    """One input and a memo of node values: each node is computed at most once.

    ``Interpreter(inp)`` checks the input (a non-empty string, split into characters,
    or a non-empty sequence of atoms) and raises InputError when it is bad.
    """

    def __init__(self, inp: Sequence[Atom] | str):
        self.tokens: tuple[Atom, ...] = _check_input(inp)
        self.n = len(self.tokens)
        self._memo: dict[int, Value] = {}
        self._kinds: dict[int, str] = {}

    def value(self, node: ir.SOp | ir.Selector) -> Value:
        """``node``'s value on this input (an s-op's list is a fresh copy)."""
        self._ensure(node)
        val = self._memo[node.id]
        return list(val) if isinstance(val, list) else val

    def values(self) -> dict[int, Value]:
        """Every value computed so far, ``{node.id: value}`` (lists copied)."""
        return {k: list(v) if isinstance(v, list) else v for k, v in self._memo.items()}

    # ------------------------------------------------------------ traversal

    def _ensure(self, root: ir.Node) -> None:
        """Compute ``root`` and whatever it needs, children first, without recursion (in
        the order :func:`.order.evaluation_steps` finds once per program)."""
        if root.id in self._memo:
            return
        memo, kinds = self._memo, self._kinds
        for node, unit in evaluation_steps(root):
            if node.id not in memo:
                if unit is not None and kinds.get(unit[0]) in unit[1]:  # x + 0: x itself
                    memo[node.id], kinds[node.id] = list(memo[unit[0]]), kinds[unit[0]]  # type: ignore[call-overload]
                    continue
                if isinstance(node, ir.Map):
                    fast = arith(node, self.n, memo, self._kinds)
                    if fast is not None:  # its kind is known: no scan of its types
                        memo[node.id], self._kinds[node.id] = fast
                        continue
                self._store(node, self._compute(node))

    def _store(self, node: ir.Node, val: Value) -> None:
        if isinstance(val, np.ndarray):
            val.flags.writeable = False
        else:
            self._kinds[node.id] = _homogeneous_kind(val, node)
        self._memo[node.id] = val

    def _compute(self, node: ir.Node) -> Value:
        match node:
            case ir.Tokens():
                return self._tokens(node)
            case ir.Indices():
                return list(range(self.n))
            case ir.Length():
                return [self.n] * self.n
            case ir.Full(value=v):
                return [v] * self.n
            case ir.Map():
                return self._map(node)
            case ir.Aggregate():
                return self._aggregate(node)
            case ir.SelectorWidth(selector=sel):
                return self._matrix(sel).sum(axis=1).tolist()
            case ir.Select():
                return self._select(node)
            case ir.SelectorAnd(left=a, right=b):
                return self._matrix(a) & self._matrix(b)
            case ir.SelectorOr(left=a, right=b):
                return self._matrix(a) | self._matrix(b)
            case ir.SelectorNot(inner=a):
                return ~self._matrix(a)
        raise TypeError(f"not an IR node the interpreter knows: {node!r}")

    # --------------------------------------------------------------- access

    def _matrix(self, sel: ir.Selector) -> np.ndarray:
        val = self._memo[sel.id]
        assert isinstance(val, np.ndarray)
        return val

    def _operand(self, arg: ir.Operand) -> tuple[list[Atom], str]:
        """An operand's values and kind; a Const is broadcast to every position."""
        if isinstance(arg, ir.Const):
            return [arg.value] * self.n, _homogeneous_kind([arg.value], None)
        val = self._memo[arg.id]
        assert isinstance(val, list)
        return val, self._kinds[arg.id]

    # ----------------------------------------------------------- operations

    def _tokens(self, node: ir.Tokens) -> SOpValue:
        if node.conv not in ir.TOKEN_CONVERSIONS:
            raise RaspValueError(f"unknown token conversion {node.conv!r}", node.span)
        if node.conv == "asis":
            if frozenset(map(type, self.tokens)) not in _KINDS:
                raise InputError(
                    f"input mixes {_type_words(self.tokens)}: {_preview(self.tokens)}"
                    " (tokens_asis needs all strings, all bools, all ints, or numbers)",
                    node.span,
                )
            return list(self.tokens)
        out: list[Atom] = []
        try:
            for tok in self.tokens:
                out.append(ir.convert_token(node.conv, tok))
        except ir.TOKEN_ERRORS as exc:
            pos = len(out)
            raise RaspValueError(
                f"tokens_{node.conv}: input token {self.tokens[pos]!r} at position {pos}"
                f" is not a valid {node.conv}",
                node.span,
            ) from exc
        return out

    def _map(self, node: ir.Map) -> SOpValue:
        op = ir.MAP_OPS[node.op]
        assert op.arity == len(node.args), f"{node.op} takes {op.arity} operands"
        operands = [self._operand(a) for a in node.args]
        columns = [values for values, _ in operands]
        out: list[Atom] = []
        apply = _table_map(node) or (lambda *args: ir.apply_map(node, args))
        try:
            for args in zip(*columns, strict=True):
                out.append(apply(*args))
        except ir.MAP_ERRORS as exc:
            pos = len(out)
            args = tuple(col[pos] for col in columns)
            shown = ", ".join(repr(a) for a in args)
            raise ir.map_error_class(exc)(
                f"'{op.symbol}' fails at position {pos} on ({shown}): {exc}", node.span
            ) from exc
        return out

    def _select(self, node: ir.Select) -> np.ndarray:
        keys, kkind = self._operand(node.keys)
        queries, qkind = self._operand(node.queries)
        n = self.n
        if (kkind == "str") != (qkind == "str"):
            # str against a number or bool: never equal, and not ordered
            match node.cmp:
                case "==":
                    return np.zeros((n, n), dtype=bool)
                case "!=":
                    return np.ones((n, n), dtype=bool)
            raise RaspTypeError(
                f"select cannot order {_TYPE_WORDS[type(keys[0])]} against"
                f" {_TYPE_WORDS[type(queries[0])]} with '{node.cmp}'"
                f" (key {keys[0]!r} {node.cmp} query {queries[0]!r} at query 0, key 0)",
                node.span,
            )
        arrays = _typed_pair(keys, kkind, queries, qkind)
        if arrays is not None:
            k, q = arrays
            return _NUMPY_CMP[node.cmp](k[np.newaxis, :], q[:, np.newaxis])
        return _select_slow(keys, queries, node)

    def _aggregate(self, node: ir.Aggregate) -> SOpValue:
        matrix = self._matrix(node.selector)
        vals, kind = self._operand(node.values)
        counts = matrix.sum(axis=1)
        many = np.flatnonzero(counts >= 2)
        if many.size and kind in ("str", "bool"):
            i = int(many[0])
            chosen = [vals[j] for j in np.flatnonzero(matrix[i])]
            raise MixedAggregateError(
                f"aggregate selects {len(chosen)} values at position {i}"
                f" ({_preview(chosen)}) and would average them, but a mean needs numbers,"
                f" not {_TYPE_WORDS[type(chosen[0])]}",
                node.span,
                notes=("an aggregate over non-numbers must select at most one key per query",),
            )
        means = _means(matrix, vals, kind, many) if many.size else {}
        first = matrix.argmax(axis=1)
        out: list[Atom] = []
        for i, c in enumerate(counts.tolist()):
            if c == 0:
                out.append(node.default)
            elif c == 1:
                out.append(vals[int(first[i])])
            else:
                out.append(means[i])
        if frozenset(map(type, out)) not in _KINDS and 0 in counts:
            raise RaspTypeError(
                f"aggregate mixes {_type_words(out)}: {_preview(out)}",
                node.span,
                notes=(
                    f"positions that select nothing get the default {node.default!r};"
                    " give aggregate a default of the values' type",
                ),
            )
        return out


# ---------------------------------------------------------------- helpers


def _table_map(node: ir.Map) -> Callable[[Atom], Atom] | None:
    """A fast per-position function for a table-driven Map (``in``, ``lookup``), or None.

    Tables may be long (a list of MAX_LIST_LEN elements), so they become a set or dict
    once per evaluation instead of a scan per position; atoms hash consistently with
    ``==`` (``in`` also matches the very same object, like a scan of a tuple; a lookup
    compares with ``==`` alone, so a NaN finds nothing).
    """
    if node.op == "in":
        try:
            members = frozenset(node.data)
        except TypeError:
            return None
        return lambda a: a in members
    if node.op == "lookup":
        try:
            table = dict(reversed(node.data))  # the first of equal keys wins, as in a scan
        except TypeError:
            return None

        def lookup(a: Atom) -> Atom:
            if a != a or a not in table:
                raise KeyError(a)
            return table[a]

        return lookup
    return None


def _check_input(inp: Sequence[Atom] | str) -> tuple[Atom, ...]:
    """The input as a tuple of Python atoms (numpy scalars unwrapped); InputError if bad."""
    if len(inp) > MAX_INPUT_LEN:
        raise InputError(
            f"the input has {len(inp):,} tokens, more than the limit of {MAX_INPUT_LEN:,}"
        )
    tokens = list(inp)
    if not tokens:
        raise InputError("empty input: a RASP program needs at least one token")
    out: list[Atom] = []
    for i, tok in enumerate(tokens):
        try:
            atom = ir.plain_atom(tok)
        except TypeError:
            raise InputError(
                f"input token {tok!r} at position {i} is not an atom (str, int, float or bool)"
            ) from None
        if type(atom) is int:
            try:
                ir.check_int(atom)
            except OverflowError:
                raise InputError(
                    f"input token at position {i} is an integer of more than "
                    f"{MAX_INT_DIGITS:,} digits (the limit)"
                ) from None
        elif isinstance(atom, str) and len(atom) > MAX_STRING_LEN:
            raise InputError(
                f"input token at position {i} is a string of {len(atom):,} characters, "
                f"more than the limit of {MAX_STRING_LEN:,}"
            )
        out.append(atom)
    return tuple(out)


def _homogeneous_kind(values: Sequence[Atom], node: ir.Node | None) -> str:
    """'str', 'bool', 'int' or 'float' (ints and floats mixed); RaspTypeError otherwise."""
    types = frozenset(map(type, values))
    kind = _KINDS.get(types)
    if kind is None:
        span: Span | None = node.span if node is not None else None
        raise RaspTypeError(
            f"this s-op mixes {_type_words(values)}: {_preview(values)}; a sequence must be"
            " all strings, all bools, all ints, or numbers",
            span,
        )
    return kind


def _type_words(values: Iterable[Atom]) -> str:
    words = sorted({_TYPE_WORDS.get(type(v), type(v).__name__) for v in values})
    return " and ".join(words)


def _preview(values: Sequence[Atom], limit: int = 8) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    more = f", ... ({len(values)} values)" if len(values) > limit else ""
    return f"[{shown}{more}]"


def _typed_pair(
    keys: list[Atom], kkind: str, queries: list[Atom], qkind: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """Keys and queries as numpy arrays that compare exactly like Python, or None.

    Both sides are the same family (strings, or numbers and bools).  None means "use
    Python comparisons": ints too large for int64, ints beside floats that float64
    cannot hold exactly, or strings ending in NUL (numpy drops trailing NULs).
    """
    if kkind == "str":
        if any(s.endswith("\x00") for s in (*keys, *queries)):  # type: ignore[union-attr]
            return None
        return np.array(keys, dtype=str), np.array(queries, dtype=str)
    if "float" not in (kkind, qkind):
        try:
            return np.array(keys, dtype=np.int64), np.array(queries, dtype=np.int64)
        except OverflowError:
            return None
    for vals, kind in ((keys, kkind), (queries, qkind)):
        if kind != "bool" and not _ints_fit_float(vals):
            return None
    return np.array(keys, dtype=np.float64), np.array(queries, dtype=np.float64)


def _ints_fit_float(vals: list[Atom]) -> bool:
    """Every int in ``vals`` converts to float64 exactly."""
    return all(abs(v) <= _FLOAT_EXACT_INT for v in vals if type(v) is int)  # type: ignore[arg-type]


def _select_slow(keys: list[Atom], queries: list[Atom], node: ir.Select) -> np.ndarray:
    """The selector matrix by Python comparisons, one entry at a time."""
    n = len(keys)
    out = np.zeros((n, n), dtype=bool)
    for i, q in enumerate(queries):
        for j, k in enumerate(keys):
            try:
                out[i, j] = ir.compare(node.cmp, k, q)
            except TypeError as exc:
                raise RaspTypeError(
                    f"select cannot compare key {k!r} {node.cmp} query {q!r}"
                    f" (query {i}, key {j}): {exc}",
                    node.span,
                ) from exc
    return out


def _means(matrix: np.ndarray, vals: list[Atom], kind: str, rows: np.ndarray) -> dict[int, float]:
    """The mean of the selected values of each row in ``rows`` (each selects >= 2 keys).

    Fast path: when every subset sum of ``vals`` is exact in float64, one matrix
    product gives the exact sums and one division rounds each mean.  Otherwise each
    row is summed exactly (Python ints, or ``math.fsum``) and divided once.
    """
    x = _exact_float_vector(vals, kind, len(vals))
    if x is not None:
        sums = matrix[rows].astype(np.float64) @ x
        means = sums / matrix[rows].sum(axis=1)
        return dict(zip(rows.tolist(), means.tolist(), strict=True))
    out: dict[int, float] = {}
    for i in rows.tolist():
        chosen = [vals[j] for j in np.flatnonzero(matrix[i])]
        out[i] = _exact_mean(chosen, kind)
    return out


def _exact_mean(chosen: list[Atom], kind: str) -> float:
    """sum(chosen) / len(chosen) with the sum computed exactly."""
    if kind == "int":
        return sum(chosen) / len(chosen)  # type: ignore[arg-type]  # exact int sum
    try:
        return math.fsum(chosen) / len(chosen)  # type: ignore[arg-type]
    except (ValueError, OverflowError):  # inf - inf, or a sum past float range
        return sum(chosen) / len(chosen)  # type: ignore[arg-type]


def _exact_float_vector(vals: list[Atom], kind: str, n: int) -> np.ndarray | None:
    """``vals`` as float64 if every sum of at most n of them is exact in float64, else None.

    Each value is m * 2**e (53-bit m); if all are multiples of 2**lo and smaller than
    2**hi, every partial sum is a multiple of 2**lo below n * 2**hi, which float64
    holds exactly when hi - lo + bits(n) <= 53, in whatever order it is added.
    """
    if kind == "int" and not _ints_fit_float(vals):
        return None
    x = np.array(vals, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        return None
    nonzero = x[x != 0]
    if nonzero.size == 0:
        return x
    mant, exp = np.frexp(nonzero)  # nonzero = mant * 2**exp, 0.5 <= |mant| < 1
    m = (mant * 2.0**53).astype(np.int64)  # nonzero = m * 2**(exp - 53), exactly
    lowest_bit = np.log2((m & -m).astype(np.float64)).astype(np.int64)
    lo = int((exp - 53 + lowest_bit).min())
    hi = int(exp.max())
    return x if hi - lo + n.bit_length() <= 53 else None
