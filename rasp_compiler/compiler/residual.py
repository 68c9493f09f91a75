"""Named residual directions, linear read-outs, and the residual layout.

Every residual direction has a name (``"one"``, ``"bos"``, ``"tokens=a"``,
``"indices"``, ``"sop12=3"``...).  A :class:`Lin` is a linear functional on the
residual stream written over names, so a value that is a linear function of other
values (``length - indices - 1``, ``tokens == "a"`` read off the one-hot of
``tokens``) needs no space and no layer of its own.  :class:`Layout` is the only
place that turns names into integer positions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

ONE = "one"  # 1 at every position, BOS included
BOS = "bos"  # 1 at the BOS position (position 0) only


@dataclass(frozen=True)
class Lin:
    """``sum(coef * residual[name])``: a linear read-out of the residual stream."""

    terms: tuple[tuple[str, float], ...] = ()

    @staticmethod
    def of(mapping: Mapping[str, float]) -> Lin:
        return Lin(tuple(sorted((k, float(v)) for k, v in mapping.items() if v != 0)))

    @staticmethod
    def unit(name: str, coef: float = 1.0) -> Lin:
        return Lin(((name, float(coef)),))

    @staticmethod
    def const(value: float) -> Lin:
        return Lin.unit(ONE, value) if value else Lin()

    def as_dict(self) -> dict[str, float]:
        return dict(self.terms)

    def __add__(self, other: Lin) -> Lin:
        d = self.as_dict()
        for k, v in other.terms:
            d[k] = d.get(k, 0.0) + v
        return Lin.of(d)

    def scale(self, c: float) -> Lin:
        return Lin.of({k: v * c for k, v in self.terms})

    def __sub__(self, other: Lin) -> Lin:
        return self + other.scale(-1.0)

    def names(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.terms)


def onehot_dirs(block: str, values: Iterable[object]) -> tuple[str, ...]:
    """The directions of a one-hot: ``block=value`` per value (``repr`` keeps the atoms
    1, 1.0, '1' and True apart)."""
    return tuple(f"{block}={v!r}" for v in values)


def role_dir(block: str, role: str) -> str:
    """A direction with a role in an s-op's block, e.g. ``x#3:x0`` (a width head's
    output) or ``x#3:key-7.5`` (a positional key)."""
    return f"{block}:{role}"


def lin_sum(items: Iterable[Lin]) -> Lin:
    d: dict[str, float] = {}
    for lin in items:
        for k, v in lin.terms:
            d[k] = d.get(k, 0.0) + v
    return Lin.of(d)


@dataclass(frozen=True)
class Block:
    """A contiguous group of directions that belong to one s-op (or a role)."""

    name: str
    directions: tuple[str, ...]
    description: str = ""
    #: a one-hot: at most one of its directions is (about) 1 at a position, the rest 0
    one_hot: bool = False


@dataclass(frozen=True)
class Layout:
    """The residual stream: ordered named directions grouped in blocks."""

    blocks: tuple[Block, ...]

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(d for b in self.blocks for d in b.directions)

    @property
    def d_model(self) -> int:
        return sum(len(b.directions) for b in self.blocks)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    def index(self) -> dict[str, int]:
        """direction name -> position (computed once)."""
        return self._index

    def vector(self, lin: Lin) -> np.ndarray:
        """The read-out ``lin`` as a column of length d_model."""
        idx = self.index()
        v = np.zeros(self.d_model)
        for k, c in lin.terms:
            v[idx[k]] += c
        return v

    def describe(self) -> list[dict]:
        out, start = [], 0
        for b in self.blocks:
            out.append(
                {
                    "name": b.name,
                    "start": start,
                    "size": len(b.directions),
                    "description": b.description,
                }
            )
            start += len(b.directions)
        return out
