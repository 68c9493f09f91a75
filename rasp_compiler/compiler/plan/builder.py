"""How each s-op is represented: the :class:`Planner`.

Each s-op the output depends on gets one or both representations in the residual:

* categorical (:class:`CatRep`): one read-out per possible value, ~1 when the s-op
  has that value and ~0 otherwise;
* numerical (:class:`NumRep`): one read-out holding the number.

A read-out is a :class:`~rasp_compiler.compiler.residual.Lin`, so many s-ops cost
nothing: any function of a single categorical s-op is a linear map of its one-hot, and
sums, differences and constant multiples of numerical s-ops are linear too.  Only what
is not linear is built: attention heads for ``aggregate``, ``selector_width`` and
``length`` (see ``attention``), and MLPs for elementwise operations of several inputs
and for turning a number into a category (see ``elementwise``).

Scheduling is as-soon-as-possible over *stages*: the embedding is stage 0, layer
``l``'s attention writes stage ``2l+1`` and its MLP stage ``2l+2``.  A head can be in
layer ``l`` when its inputs exist at stage ``2l``; an MLP when they exist at ``2l+1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

from ...dtypes import UNIT_ROUNDOFF
from ...language import ir
from ...language.ir import Atom
from ..numbers import num
from ..residual import ONE, Lin, lin_sum, onehot_dirs
from ..value_sets import ValueSet, lookup_value
from . import attention, elementwise, length
from .fusion import critical_path_inputs
from .state import MapKind, NodeFailed, PlanState, fused_fn
from .types import CatRep, NumRep, Rep

R = TypeVar("R", CatRep, NumRep)

#: the block of the one-hot of indices, and the direction of the index as a number
INDICES = "indices"
INDEX_NUMBER = "indices:num"


class Planner(PlanState):
    """Makes representations on demand and remembers them (and failures) per s-op."""

    def cat(self, node: ir.Operand) -> CatRep:
        if isinstance(node, ir.Const):
            return CatRep((node.value,), (Lin.unit(ONE),), 0)
        if node.id not in self._cat:
            self._cat[node.id] = self._remember(node, True, self._make_cat)
        return self._cat[node.id]

    def num(self, node: ir.Operand) -> NumRep:
        if isinstance(node, ir.Const):
            return NumRep(Lin.const(num(node.value)), (node.value,), 0)
        if node.id not in self._num:
            self._num[node.id] = self._remember(node, False, self._make_num)
        return self._num[node.id]

    def adopt(self, node: ir.SOp, rep: Rep) -> None:
        """Make ``rep`` the s-op's representation of its kind (the output's coded form,
        which only the unembedding reads: see ``make.output_rep``)."""
        if isinstance(rep, CatRep):
            self._cat[node.id] = rep
        else:
            assert isinstance(rep, NumRep)
            self._num[node.id] = rep

    def cat_groups(self, node: ir.Operand, groups: tuple[tuple[Atom, ...], ...]) -> CatRep:
        """A read-out per group of values (~1 when the s-op's value is in the group).

        Where the one-hot is free (an embedding, a linear map of one, a head's copy) or
        already made, a group's row is the sum of its values' rows; where an MLP would
        have to write it, the MLP writes one direction per group instead."""
        if (
            isinstance(node, ir.Const)
            or node.id in self._cat
            or not elementwise.writes_categories(self, node)
        ):
            full = self.cat(node)
            rows = tuple(lin_sum(_present(full, v) for v in members) for members in groups)
            return CatRep(tuple(range(len(groups))), rows, full.stage, full.sources)
        key = (node.id, groups)
        if key not in self._cat_groups:
            self._cat_groups[key] = self._remember(
                node, True, lambda n: elementwise.mlp_classes(self, n, groups)
            )
        return self._cat_groups[key]

    def count_feature(self, node: ir.SOp, role: str, f: Callable[[int], float]) -> NumRep:
        assert isinstance(node, ir.SelectorWidth)
        return elementwise.count_feature(self, node, role, f)

    def fused_stage(self, node: ir.Map) -> int | None:
        fused = critical_path_inputs(self, node)
        return None if fused is None else 2 * max(0, math.ceil((fused.stage - 1) / 2)) + 2

    def _remember(self, node: ir.SOp, categorical: bool, make: Callable[[ir.SOp], R]) -> R:
        """``make(node)``, or NodeFailed again for an s-op whose planning failed before
        (so nothing downstream of a failure is planned twice or reported twice)."""
        key = (node.id, categorical)
        if key in self._failed:
            raise NodeFailed()
        try:
            return make(node)
        except NodeFailed:
            self._failed.add(key)
            raise

    # ------------------------------------------------------------ categorical

    def _make_cat(self, node: ir.SOp) -> CatRep:
        vals = self.values(node)
        match node:
            case ir.Tokens(conv=conv):
                if conv not in self.token_onehots:
                    dirs = onehot_dirs(f"tokens_{conv}", vals)
                    self.add_block(f"tokens_{conv}", dirs, f"one-hot of tokens_{conv}", True)
                    self.token_onehots[conv] = (vals, dirs)
                return CatRep(vals, tuple(Lin.unit(d) for d in self.token_onehots[conv][1]), 0)
            case ir.Indices():
                dirs = onehot_dirs(INDICES, vals)
                if dirs[0] not in self.positional:
                    self.add_block(INDICES, dirs, "one-hot of indices", True)
                    for i, d in enumerate(dirs):
                        self.positional[d] = _onehot(i, self.max_len)
                return CatRep(vals, tuple(Lin.unit(d) for d in dirs), 0)
            case ir.Full(value=v):
                return CatRep((v,), (Lin.unit(ONE),), 0)
            case ir.Map() if self.map_kind(node) == MapKind.CAT1:
                return self._cat1_cat(node)
            case ir.Aggregate() if self.agg_is_categorical(node):
                rep = attention.aggregate(self, node)
                assert isinstance(rep, CatRep)
                return rep
        rep = elementwise.mlp_output(self, node, categorical=True)
        assert isinstance(rep, CatRep)
        return rep

    # ------------------------------------------------------------ numerical

    def _make_num(self, node: ir.SOp) -> NumRep:
        vals = self.values(node)
        if not ValueSet(vals).numeric:
            raise self.fail("needs a number here but its values are not all numbers", node)
        match node:
            case ir.Indices():
                if INDICES not in self.positional:
                    self.add_block(INDEX_NUMBER, (INDICES,), "indices as a number")
                    self.positional[INDICES] = tuple(float(i) for i in range(self.max_len))
                return NumRep(Lin.unit(INDICES), vals, 0)
            case ir.Full(value=v):
                return NumRep(Lin.const(num(v)), vals, 0)
            case ir.Length():
                return length.length_number(self, node)
            case ir.Tokens():
                c = self.cat(node)
                return NumRep(_weighted(c.values, c.rows), vals, 0)
            case ir.Map() if self.map_kind(node) == MapKind.CAT1:
                return self._cat1_num(node)
            case ir.Map() if self.map_kind(node) == MapKind.LINEAR:
                return self._linear(node)
            case ir.Aggregate() if not self.agg_is_categorical(node):
                rep = attention.aggregate(self, node)
                assert isinstance(rep, NumRep)
                return rep
            case ir.Aggregate():
                c = self.cat(node)
                scale = max(abs(num(v)) for v in c.values) * len(c.values) or 1.0
                return NumRep(
                    _weighted(c.values, c.rows), vals, c.stage, tuple((h, scale) for h in c.sources)
                )
        rep = elementwise.mlp_output(self, node, categorical=False)
        assert isinstance(rep, NumRep)
        return rep

    # ------------------------------------------------------------ free elementwise

    def _cat1_parts(self, node: ir.Map) -> tuple[CatRep, list[tuple[Atom, Lin]]]:
        """The categorical s-op ``node`` is a function of, and (output, row) per value."""
        nodes = [a for a in node.args if isinstance(a, ir.SOp)]
        src = nodes[0] if len(nodes) == 1 and self.cheap_cat(nodes[0]) else self.chain_leaf(node)
        assert src is not None
        fn = fused_fn(node, [src])
        if self.eps > UNIT_ROUNDOFF["float32"] and self._grouped(src):
            # a narrow plan: an MLP writes one direction per output of this map instead
            # of the source's whole one-hot (a count's ``w > 0`` is one step, not 2 per
            # count, and each step is one that dtype must hold exactly)
            found: dict[tuple, tuple[Atom, list[Atom]]] = {}
            for v in self.values(src):
                y = fn((v,))
                if y is not None:
                    found.setdefault(ir.atom_key(y), (y, []))[1].append(v)
            groups = tuple(tuple(members) for _, members in found.values())
            c = self.cat_groups(src, groups)
            return c, [(y, row) for (y, _), row in zip(found.values(), c.rows)]
        c = self.cat(src)
        outs = []
        for v, row in zip(c.values, c.rows):
            y = fn((v,))
            if y is not None:
                outs.append((y, row))
        return c, outs

    def _grouped(self, src: ir.SOp) -> bool:
        """Is ``src`` a count whose one-hot no one has made yet (an MLP would write it)?"""
        return (
            isinstance(src, ir.SelectorWidth)
            and src.id not in self._cat
            and elementwise.writes_categories(self, src)
        )

    def _cat1_cat(self, node: ir.Map) -> CatRep:
        c, outs = self._cat1_parts(node)
        vals = self.values(node)
        find = lookup_value(vals)
        rows: list[list[Lin]] = [[] for _ in vals]
        for out, r in outs:
            i = find(out)
            if i is not None:
                rows[i].append(r)
        return CatRep(vals, tuple(lin_sum(rs) for rs in rows), c.stage, c.sources)

    def _cat1_num(self, node: ir.Map) -> NumRep:
        c, outs = self._cat1_parts(node)
        scale = max((abs(num(out)) for out, _ in outs), default=1.0) or 1.0
        return NumRep(
            lin_sum(r.scale(num(out)) for out, r in outs),
            self.values(node),
            c.stage,
            tuple((h, scale * len(outs)) for h in c.sources),
        )

    def _linear(self, node: ir.Map) -> NumRep:
        reps = [self.num(a) for a in node.args]
        lins = [r.lin for r in reps]
        stage = max(r.stage for r in reps)
        coefs = [1.0] * len(reps)
        match node.op:
            case "add":
                lin = lins[0] + lins[1]
            case "sub":
                lin = lins[0] - lins[1]
                coefs = [1.0, -1.0]
            case "neg":
                lin = lins[0].scale(-1.0)
                coefs = [-1.0]
            case "pos":
                lin = lins[0]
            case "mul" | "div":
                const = node.args[0] if isinstance(node.args[0], ir.Const) else node.args[1]
                assert isinstance(const, ir.Const)
                k = num(const.value)
                var = lins[1] if const is node.args[0] else lins[0]
                lin = var.scale(k if node.op == "mul" else 1.0 / k)
                coefs = [abs(_scale_in(lin, r.lin)) for r in reps]
        sources = tuple((h, c * k) for r, k in zip(reps, coefs) for h, c in r.sources)
        return NumRep(lin, self.values(node), stage, sources)


def _weighted(values: tuple[Atom, ...], rows: tuple[Lin, ...]) -> Lin:
    """``sum value * row``: the number a one-hot stands for."""
    return lin_sum(r.scale(num(v)) for v, r in zip(values, rows))


def _present(rep: CatRep, value: Atom) -> Lin:
    row = rep.row(value)
    assert row is not None, f"{value!r} is not one of the s-op's values"
    return row


def _onehot(i: int, n: int) -> tuple[float, ...]:
    return tuple(1.0 if j == i else 0.0 for j in range(n))


def _scale_in(combined: Lin, part: Lin) -> float:
    """The factor by which ``part`` appears in ``combined`` (for scaled copies)."""
    pd, cd = part.as_dict(), combined.as_dict()
    for k, v in pd.items():
        if v and k in cd:
            return cd[k] / v
    return 1.0
