"""The dataflow graph: IR nodes as a networkx DiGraph of typed node records.

Edges run from an input to the node that reads it.  The graph is what ``inspect``
and ``draw`` show, and where structural checks live (a selector may only feed an
aggregate, a selector_width or another selector).
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from ..errors import Span
from ..language import ir


@dataclass(frozen=True)
class NodeRecord:
    """One graph node: what it computes, from what, and where in the source."""

    id: int
    kind: str  # the IR class name: Tokens, Map, Select, Aggregate, ...
    operation: str  # e.g. "add", "==", "tokens_str"
    inputs: tuple[int, ...]
    label: str
    span: Span | None


def _operation(node: ir.Node) -> str:
    match node:
        case ir.Tokens(conv=c):
            return f"tokens_{c}"
        case ir.Map(op=op):
            return op
        case ir.Select(cmp=cmp):
            return cmp
        case ir.Full(value=v):
            return repr(v)
        case ir.Aggregate(default=d):
            return f"default={d!r}"
    return type(node).__name__.lower()


def build_graph(root: ir.Node) -> nx.DiGraph:
    """The DAG of everything ``root`` depends on; each node carries a :class:`NodeRecord`."""
    g = nx.DiGraph()
    for node in ir.walk(root):
        label = node.span.text.strip() if node.span is not None else type(node).__name__
        rec = NodeRecord(
            node.id,
            type(node).__name__,
            _operation(node),
            tuple(c.id for c in node.children()),
            label,
            node.span,
        )
        g.add_node(node.id, record=rec, node=node)
        for child in node.children():
            g.add_edge(child.id, node.id)
    assert nx.is_directed_acyclic_graph(g)
    return g
