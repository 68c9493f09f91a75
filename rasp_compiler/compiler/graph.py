"""The dataflow graph: IR nodes as a networkx DiGraph of typed node records.

Edges run from an input to the node that reads it.  The graph is what ``inspect``
and ``draw`` show, and where structural checks live (a selector may only feed an
aggregate, a selector_width or another selector).
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from ..errors import RaspError, Span
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
    """The DAG of everything ``root`` depends on; each node carries a :class:`NodeRecord`
    (attribute ``record``) and the IR node (attribute ``node``)."""
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


#: The longest chain of operations the compiler plans (each link is a step of planning's
#: recursion); a longer program is refused at the operation that goes past it.
MAX_CHAIN = 2000


def depth_problems(g: nx.DiGraph) -> list[RaspError]:
    """[a located error] when some chain of operations is longer than :data:`MAX_CHAIN`."""
    depth: dict[int, int] = {}
    for n in nx.topological_sort(g):
        depth[n] = 1 + max((depth[m] for m in g.predecessors(n)), default=0)
        if depth[n] > MAX_CHAIN:
            node = g.nodes[n]["node"]
            return [
                RaspError(
                    f"this operation ends a chain of more than {MAX_CHAIN:,} operations, each "
                    f"reading the one before (the limit)",
                    node.span,
                )
            ]
    return []


def structure_problems(g: nx.DiGraph) -> list[RaspError]:
    """Selectors read where an s-op belongs, and s-ops read where a selector belongs
    (an aggregate's or a selector_width's selector, an operand of and/or/not).  The
    lowering never builds these; an IR built by hand may."""
    problems: list[RaspError] = []
    for n in g.nodes:
        node = g.nodes[n]["node"]
        for m in g.successors(n):
            reader = g.nodes[m]["node"]
            in_selector_slot = any(node is x for x in _selector_slots(reader))
            if isinstance(node, ir.Selector) != in_selector_slot:
                what = "a selector" if isinstance(node, ir.Selector) else "an s-op"
                problems.append(
                    RaspError(f"{what} cannot be read here by {type(reader).__name__}", reader.span)
                )
    return problems


def _selector_slots(reader: ir.Node) -> tuple[ir.Node, ...]:
    match reader:
        case ir.Aggregate() | ir.SelectorWidth():
            return (reader.selector,)
        case ir.SelectorAnd() | ir.SelectorOr() | ir.SelectorNot():
            return reader.children()
    return ()


def spans_of_use(g: nx.DiGraph) -> dict[int, Span]:
    """node id -> the span of the first operation that reads it, for nodes without a
    span of their own (``length`` from the library): errors about them point there."""
    out: dict[int, Span] = {}
    for n in g.nodes:
        if g.nodes[n]["node"].span is None:
            for m in g.successors(n):
                span = g.nodes[m]["node"].span
                if span is not None:
                    out[n] = span
                    break
    return out
