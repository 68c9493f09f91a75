"""Where each node of a program sits in its compiled model (for ``draw``).

The residual snapshots are the *bands*: 0 is the embedding, ``2l+1`` layer ``l``'s
attention, ``2l+2`` its MLP.  An s-op the model holds sits in the band whose residual
first holds it (the compiler's own read-outs say which, as in :mod:`.collect`); an
aggregate with the head that computes it; a selector with the head that carries it out;
an s-op the model never holds on its own (``length - indices`` inside an MLP's table)
with the node that reads it.  Within a band, nodes are grouped into *blocks*: one per
attention head, and per connected group of nodes elsewhere (an MLP job with the s-ops
fused into it), titled with what the model file says each implements.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from ..compiler.assemble import build_layout
from ..compiler.pipeline import make_plan, planned_program
from ..language import ir
from ..runtime import CompiledModel
from .collect import _planner, held_stage, snapshot_names


@dataclass
class Placement:
    """Per node id: (band, block key); block titles; band names (by band index)."""

    place: dict[int, tuple[int, Hashable]]
    titles: dict[Hashable, str]
    bands: list[str]
    root: ir.SOp  # the s-op as compiled (equal sub-expressions shared)


def placement(sop: ir.SOp, model: CompiledModel, names: dict[int, str]) -> Placement:
    """Where every node of ``sop`` sits in ``model`` (compiled from it with ``names``)."""
    spec = model.spec
    root = planned_program(sop, spec.max_len)  # planned once: the layout's names are its
    plan = make_plan(
        root,
        spec.vocab,
        spec.max_len,
        names,
        dtype=spec.dtype,
        head_masks=model.config.head_masks is not None,
    )
    index = build_layout(plan).index()
    planner = _planner(root, spec.vocab, spec.max_len, names, plan)
    heads: dict[str, list[tuple[int, int]]] = {}
    for layer, desc in enumerate(spec.layers):
        for h in desc.get("attn", []):
            heads.setdefault(h["implements"], []).append((layer, h["head"]))

    band: dict[int, int] = {}
    block: dict[int, Hashable] = {}
    titles: dict[Hashable, str] = {}
    nodes = list(ir.walk(root))
    for node in nodes:
        if not isinstance(node, ir.SOp):
            continue
        label = planner.label(node)
        stage = held_stage(node, planner, index)
        if isinstance(node, ir.Aggregate | ir.SelectorWidth | ir.Length) and label in heads:
            layer, first = heads[label][0]
            key = ("head", layer, first)
            numbers = ", ".join(str(h) for _, h in heads[label])
            line = f"line {node.span.line}: " if node.span is not None else ""
            titles[key] = (
                f"layer {layer} head{'s' * (len(heads[label]) > 1)} {numbers}: {line}{label}"
            )
            for sel in ir.walk(node.children()[0]) if not isinstance(node, ir.Length) else ():
                if isinstance(sel, ir.Selector) and sel.id not in band:
                    band[sel.id], block[sel.id] = 2 * layer + 1, key
            if isinstance(node, ir.Aggregate) or stage in (None, 2 * layer + 1):
                band[node.id], block[node.id] = 2 * layer + 1, key
                continue
        if stage is not None:
            band[node.id] = min(stage, 2 * model.config.n_layers)
    readers: dict[int, list[int]] = {}
    for node in nodes:
        for child in node.children():
            readers.setdefault(child.id, []).append(node.id)
    for node in reversed(nodes):  # readers first: a node not held sits with its reader
        if node.id not in band:
            placed = [r for r in readers.get(node.id, []) if r in band]
            if placed:
                first = min(placed, key=band.__getitem__)
                band[node.id] = band[first]
                if first in block and block[first][0] == "head":  # type: ignore[index]
                    block[node.id] = block[first]
            else:
                band[node.id] = 2 * model.config.n_layers
    for node in nodes:  # never above what it reads
        for child in node.children():
            if band[child.id] > band[node.id]:
                band[node.id] = band[child.id]
                block.pop(node.id, None)
    _group(nodes, band, block)
    _merge_in_band(nodes, band, block, titles)
    for layer, desc in enumerate(spec.layers):
        for m in desc.get("mlp", []):
            for node in nodes:
                job = block[node.id]
                if band[node.id] == 2 * layer + 2 and _implements(m["implements"], planner, node):
                    titles[job] = "; ".join(
                        t for t in (titles.get(job), "MLP: " + m["implements"]) if t
                    )
    place = {n.id: (band[n.id], block[n.id]) for n in nodes}
    return Placement(place, titles, snapshot_names(model.config.n_layers), root)


def _merge_in_band(
    nodes: list[ir.Node],
    band: dict[int, int],
    block: dict[int, Hashable],
    titles: dict[Hashable, str],
) -> None:
    """Blocks of one band joined by an edge become one (a head's key kept, both titles):
    heads of a layer that share a selector, a free read-out of a head's output."""
    for node in nodes:
        for child in node.children():
            a, b = block[child.id], block[node.id]
            if a == b or band[child.id] != band[node.id]:
                continue
            if b[0] == "head" and a[0] != "head":  # type: ignore[index]
                a, b = b, a
            titles[a] = "; ".join(t for t in (titles.get(a), titles.pop(b, None)) if t)
            for n, key in list(block.items()):
                if key == b:
                    block[n] = a


def _group(nodes: list[ir.Node], band: dict[int, int], block: dict[int, Hashable]) -> None:
    """Nodes not in a head's block: one block per connected group within a band."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    free = [n for n in nodes if n.id not in block]
    free_ids = {n.id for n in free}
    for node in free:
        for child in node.children():
            if child.id in free_ids and band[child.id] == band[node.id]:
                parent[find(node.id)] = find(child.id)
    for node in free:
        block[node.id] = ("group", band[node.id], find(node.id))


def _implements(text: str, planner: object, node: ir.Node) -> bool:
    label = planner.label(node)  # type: ignore[attr-defined]
    return text == label or text == f"categories of {label}"
