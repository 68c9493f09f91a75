"""How the logits at one position of a compiled model decode to an output atom (see
:class:`OutputSpec`); part of a model's spec (:mod:`rasp_compiler.runtime`)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from .language.ir import Atom, plain_atom

ENCODINGS = ("categorical", "numerical")
_NUMERIC_FIELDS = {"max_denominator", "integer", "kinds", "reciprocal"}


def _nearest(values: Sequence[Atom], x: float) -> Atom:
    """The value of sorted ``values`` nearest to ``x`` (the first, smaller, on a tie)."""
    i = bisect.bisect_left(values, x)  # values[i - 1] < x <= values[i]
    near = values[max(i - 1, 0) : i + 1]
    return min(near, key=lambda v: abs(float(v) - x))  # type: ignore[arg-type]


@dataclass(frozen=True)
class OutputSpec:
    """How the logits at one position decode to an output atom.

    categorical: ``values[argmax(logits)]`` (``d_vocab_out == len(values)``).
    numerical: the single logit x (``d_vocab_out == 1``) decodes to the nearest of
    ``values`` (kept sorted; ties go to the smaller) if given, else to ``round(x)``
    if ``integer``, else to ``float(Fraction(x).limit_denominator(max_denominator))``
    if ``max_denominator``, else to ``float(x)``.  A non-finite x decodes to ``float(x)``.

    numerical with ``kinds = (default, single)`` (an aggregate's mean, whose values
    include an int and a float that are equal, 1 and 1.0): a second logit m is
    1/(w+1) for the w keys the aggregate selected, and decides the kind as the
    interpreter does: no key gives ``default``, one key the value it holds (the nearest
    of ``single``), several keys their mean, a float (the nearest of ``values``).

    numerical with ``reciprocal`` (a ``selector_width`` output, read straight from its
    counting head): the logit x is ``1/(v+1)`` for the value v; it decodes as the
    number ``1/x - 1`` would (to the nearest of ``values``, then as above).
    """

    encoding: str
    values: tuple[Atom, ...] | None = None
    max_denominator: int | None = None
    integer: bool = False
    kinds: tuple[Atom, tuple[Atom, ...]] | None = None
    reciprocal: bool = False

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"output encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if self.encoding == "categorical" and not self.values:
            raise ValueError("a categorical output needs a non-empty list of values")
        if self.values is not None:
            if isinstance(self.values, str) or not isinstance(self.values, Sequence):
                raise ValueError(f"output values must be a list, got {self.values!r}")
            values = tuple(plain_atom(v) for v in self.values)
            if self.encoding == "numerical":
                if not values or any(isinstance(v, str) for v in values):
                    raise ValueError(f"numerical output values must be numbers, got {values!r}")
                values = tuple(sorted(values))
            object.__setattr__(self, "values", values)
        if self.encoding == "categorical" and (self.max_denominator is not None or self.integer):
            raise ValueError("max_denominator and integer apply to numerical outputs only")
        md = self.max_denominator
        if md is not None and (isinstance(md, bool) or not isinstance(md, int) or md < 1):
            raise ValueError(f"max_denominator must be a positive int or None, got {md!r}")
        if not isinstance(self.integer, bool):
            raise ValueError(f"integer must be a bool, got {self.integer!r}")
        if not isinstance(self.reciprocal, bool):
            raise ValueError(f"reciprocal must be a bool, got {self.reciprocal!r}")
        if self.reciprocal and (self.encoding != "numerical" or self.kinds is not None):
            raise ValueError("reciprocal applies to numerical outputs without kinds only")
        if self.kinds is not None:
            self._check_kinds()

    def _check_kinds(self) -> None:
        kinds = self.kinds
        if isinstance(kinds, Mapping):  # the JSON form
            check_keys("output kinds", kinds, required={"default", "single"}, optional=set())
            kinds = (kinds["default"], kinds["single"])
        if self.encoding != "numerical" or self.values is None:
            raise ValueError("kinds apply to numerical outputs with a list of values only")
        if not isinstance(kinds, tuple | list) or len(kinds) != 2:
            raise ValueError(f"output kinds must be (default, single values), got {kinds!r}")
        default, single = kinds
        if isinstance(single, str) or not isinstance(single, Sequence) or not single:
            raise ValueError(f"output kinds need a non-empty list of values, got {single!r}")
        atoms = tuple(sorted(plain_atom(v) for v in single))
        if any(isinstance(v, str) for v in atoms):
            raise ValueError(f"output kinds' values must be numbers, got {atoms!r}")
        object.__setattr__(self, "kinds", (plain_atom(default), atoms))

    @property
    def d_vocab_out(self) -> int:
        """The number of logits this output needs."""
        if self.encoding == "categorical":
            return len(self.values)  # type: ignore[arg-type]
        return 1 if self.kinds is None else 2

    def decode_logits(self, logits: torch.Tensor, lengths: Sequence[int]) -> list[list[Atom]]:
        """logits [B, T, d_vocab_out] (BOS at 0) -> row b's atoms at positions 1..lengths[b].

        One argmax (or one copy of the numbers) for the whole batch."""
        if self.encoding == "categorical":
            assert self.values is not None
            ids = logits.argmax(dim=-1).tolist()  # [B, T]
            return [[self.values[i] for i in ids[b][1 : 1 + n]] for b, n in enumerate(lengths)]
        if self.reciprocal:
            logits = _from_reciprocal(logits[:, :, :1].double())
        if self.values is not None and self.kinds is None:
            return self._nearest_values(logits[:, :, 0], lengths)
        xs = logits[:, :, 0].double().tolist()  # [B, T]
        if self.kinds is not None:
            ms = logits[:, :, 1].float().tolist()  # [B, T]: 1/(w+1)
            return [
                [self.decode_kind(x, m) for x, m in zip(xs[b][1 : 1 + n], ms[b][1 : 1 + n])]
                for b, n in enumerate(lengths)
            ]
        return [[self.decode_number(x) for x in xs[b][1 : 1 + n]] for b, n in enumerate(lengths)]

    def _nearest_values(self, x: torch.Tensor, lengths: Sequence[int]) -> list[list[Atom]]:
        """:meth:`decode_number` over a [B, T] tensor at once: the nearest of ``values``
        (the smaller on a tie) by one ``searchsorted``; non-finite numbers stay floats."""
        assert self.values is not None
        xs = x.detach().to("cpu", torch.float64).numpy()  # [B, T]; float32 -> float64 exactly
        grid = np.array([float(v) for v in self.values])  # sorted
        i = np.searchsorted(grid, xs, side="left")  # grid[i-1] < x <= grid[i]
        lo, hi = np.clip(i - 1, 0, len(grid) - 1), np.clip(i, 0, len(grid) - 1)
        with np.errstate(invalid="ignore"):
            pick = np.where(np.abs(grid[lo] - xs) <= np.abs(grid[hi] - xs), lo, hi).tolist()
        finite = np.isfinite(xs)
        values = self.values
        out = []
        for b, n in enumerate(lengths):
            row = [values[j] for j in pick[b][1 : 1 + n]]
            if not finite[b, 1 : 1 + n].all():
                ok = finite[b, 1 : 1 + n]
                row = [v if ok[k] else float(xs[b, 1 + k]) for k, v in enumerate(row)]
            out.append(row)
        return out

    def decode_kind(self, x: float, m: float) -> Atom:
        """A number and its aggregate's 1/(w+1) -> an atom of the interpreter's kind."""
        assert self.kinds is not None
        default, single = self.kinds
        if not (math.isfinite(x) and math.isfinite(m)) or m <= 0.0:
            return float(x)
        keys = round(1.0 / m) - 1
        if keys <= 0:
            return default
        if keys == 1:
            return _nearest(single, x)
        return float(self.decode_number(x))

    def decode_number(self, x: float) -> Atom:
        """One numerical logit -> an atom (see the class docstring)."""
        if self.reciprocal:
            x = float(_from_reciprocal(torch.tensor(x, dtype=torch.float64)))
        if not math.isfinite(x):
            return float(x)
        if self.values is not None:
            return _nearest(self.values, x)
        if self.integer:
            return int(round(x))
        if self.max_denominator is not None:
            return float(Fraction(x).limit_denominator(self.max_denominator))
        return float(x)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: categorical ``{"encoding", "values"}``; numerical adds
        ``"max_denominator"`` and ``"integer"`` (``values`` may be null)."""
        values = None if self.values is None else list(self.values)
        if self.encoding == "categorical":
            return {"encoding": "categorical", "values": values}
        out: dict[str, Any] = {
            "encoding": "numerical",
            "values": values,
            "max_denominator": self.max_denominator,
            "integer": self.integer,
        }
        if self.kinds is not None:
            out["kinds"] = {"default": self.kinds[0], "single": list(self.kinds[1])}
        if self.reciprocal:
            out["reciprocal"] = True
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OutputSpec:
        """Inverse of :meth:`to_dict`; ValueError on a bad dict."""
        check_keys("output", d, required={"encoding", "values"}, optional=_NUMERIC_FIELDS)
        return cls(**d)

    def describe(self) -> str:
        """One line, e.g. ``categorical over 3 values`` or ``numerical (integer)``."""
        if self.encoding == "categorical":
            return f"categorical over {len(self.values or ())} values"
        how = []
        if self.values is not None:
            how.append(f"nearest of {len(self.values)} values")
        if self.reciprocal:
            how.append("read as 1/(value+1)")
        if self.integer:
            how.append("integer")
        if self.max_denominator is not None:
            how.append(f"max_denominator {self.max_denominator}")
        return "numerical" + (f" ({', '.join(how)})" if how else "")


def _from_reciprocal(x: torch.Tensor) -> torch.Tensor:
    """1/x - 1 (float64): a count w from its head's 1/(w+1); 0 and non-positive x
    give a non-finite or negative number, which decodes as any such number does."""
    return 1.0 / x - 1.0


def check_keys(what: str, d: object, required: set[str], optional: set[str]) -> None:
    if not isinstance(d, Mapping):
        raise ValueError(f"{what} must be a JSON object, got {type(d).__name__}")
    missing = sorted(required - d.keys())
    unexpected = sorted(d.keys() - required - optional)
    if missing or unexpected:
        raise ValueError(f"{what}: missing fields {missing}, unexpected fields {unexpected}")
