"""``draw(sop)``: a picture of an s-op's computation graph as a standalone SVG file.

The layout is layered: a node's layer is the length of the longest path to it from
an input (tokens, indices, length, constants), inputs at the top.  Within a layer,
nodes are ordered by the mean position of the nodes they read (fewer crossings).
Each box shows the user's name for the node (when it has one), the source text that
made it, the operation, and, when an input is given, the node's value on it.
Arrows run from an input of an operation to the operation.

``svg_document(root, ...)`` gives the SVG text; ``write_svg`` writes it;
``make_draw_hook`` gives the :data:`rasp_compiler.language.scope.DrawHook` the command line
installs, which writes ``<name>.svg`` into a directory and reports where.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from html import escape
from pathlib import Path

import networkx as nx
import numpy as np

from .compiler.graph import NodeRecord, build_graph
from .errors import RaspError, Span
from .language import ir
from .language.display import format_sop
from .language.ir import Atom

__all__ = ["svg_document", "write_svg", "make_draw_hook", "drawing_name"]

FONT = 12  # px, monospace
CHAR_W = 7.3  # px per character at FONT (a safe over-estimate for common fonts)
LINE_H = 16
PAD_X, PAD_Y = 10, 8
GAP_X, GAP_Y = 28, 56  # between boxes in a layer / between layers
MARGIN = 20
MAX_CHARS = 64  # longer texts are cut with an ellipsis

# Box colours by IR kind: inputs grey, elementwise maps green, attention (select and
# aggregate) orange/blue, selector widths purple.
_FILL = {
    "Tokens": "#eeeeee",
    "Indices": "#eeeeee",
    "Length": "#eeeeee",
    "Full": "#eeeeee",
    "Map": "#e3f4e1",
    "Aggregate": "#dde9f8",
    "SelectorWidth": "#ece1f6",
    "Select": "#fde8d4",
    "SelectorAnd": "#fde8d4",
    "SelectorOr": "#fde8d4",
    "SelectorNot": "#fde8d4",
}


def svg_document(
    root: ir.SOp,
    inp: Sequence[Atom] | str | None = None,
    names: Mapping[int, str] | None = None,
    title: str | None = None,
) -> str:
    """The SVG text picturing ``root`` and everything it depends on.

    ``names`` maps node ids to the user's names for them; ``inp``, when given, adds
    each node's value on that input.
    """
    g = build_graph(root)
    names = names or {}
    values, error = _values(root, inp)
    boxes = {n: _box_lines(g.nodes[n]["record"], names.get(n), values.get(n)) for n in g}
    layers = _layers(g)

    size = {n: _box_size(lines) for n, lines in boxes.items()}
    x: dict[int, float] = {}
    y: dict[int, float] = {}
    widths = [sum(size[n][0] for n in layer) + GAP_X * (len(layer) - 1) for layer in layers]
    total_w = max(widths, default=0)
    top: float = MARGIN + (2 * LINE_H if title or error else 0)
    for layer, width in zip(layers, widths, strict=True):
        left = MARGIN + (total_w - width) / 2
        height = max(size[n][1] for n in layer)
        for n in layer:
            x[n], y[n] = left, top
            left += size[n][0] + GAP_X
        top += height + GAP_Y
    doc_w = total_w + 2 * MARGIN
    doc_h = top - GAP_Y + MARGIN

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{doc_w:.0f}" height="{doc_h:.0f}" '
        f'viewBox="0 0 {doc_w:.0f} {doc_h:.0f}" font-family="monospace" font-size="{FONT}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
        f'<rect width="{doc_w:.0f}" height="{doc_h:.0f}" fill="white"/>',
    ]
    heading = " ".join(s for s in (title, error) if s)
    if heading:
        out.append(
            f'<text x="{MARGIN}" y="{MARGIN + FONT}" font-weight="bold">{_esc(heading)}</text>'
        )
    exits, entries = _ports(g, x, size)
    for src, dst in g.edges:
        x1, y1 = exits[src, dst], y[src] + size[src][1]
        x2, y2 = entries[src, dst], y[dst]
        mid = (y1 + y2) / 2
        out.append(
            f'<path d="M {x1:.1f} {y1:.1f} C {x1:.1f} {mid:.1f}, {x2:.1f} {mid:.1f}, '
            f'{x2:.1f} {y2:.1f}" fill="none" stroke="#555" marker-end="url(#arrow)"/>'
        )
    for n, lines in boxes.items():
        rec: NodeRecord = g.nodes[n]["record"]
        w, h = size[n]
        fill = _FILL.get(rec.kind, "#ffffff")
        out.append(f"<g><title>{_esc(_tooltip(rec))}</title>")
        out.append(
            f'<rect x="{x[n]:.1f}" y="{y[n]:.1f}" width="{w:.1f}" height="{h:.1f}" rx="6" '
            f'fill="{fill}" stroke="#333"/>'
        )
        for i, (text, style) in enumerate(lines):
            ty = y[n] + PAD_Y + FONT + i * LINE_H
            attrs = {"bold": ' font-weight="bold"', "dim": ' fill="#666"', "": ""}[style]
            out.append(f'<text x="{x[n] + PAD_X:.1f}" y="{ty:.1f}"{attrs}>{_esc(text)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_svg(
    root: ir.SOp,
    path: str | Path,
    inp: Sequence[Atom] | str | None = None,
    names: Mapping[int, str] | None = None,
    title: str | None = None,
) -> Path:
    """Write :func:`svg_document` to ``path`` (replacing it); returns the path."""
    path = Path(path)
    path.write_text(svg_document(root, inp, names, title), encoding="utf-8")
    return path


def drawing_name(root: ir.SOp, bindings: Mapping[str, object]) -> str:
    """A file stem for a drawing of ``root``: the user's name for it if it has one
    (``out`` only as a last resort), else ``drawing``."""
    found = [name for name, value in bindings.items() if value is root]
    preferred = [n for n in found if n != "out"] or found
    stem = preferred[0] if preferred else "drawing"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "drawing"


def make_draw_hook(
    bindings: Callable[[], Mapping[str, object]],
    out_dir: str | Path | None = None,
    echo: Callable[[str], None] = print,
    default_input: Callable[[], Sequence[Atom] | str | None] | None = None,
) -> Callable[[ir.SOp, Sequence[Atom] | str | None, Span], None]:
    """A draw hook for :class:`rasp_compiler.language.lower.Session`.

    ``bindings()`` gives the program's current top-level names (to name the file and
    the boxes); the picture goes to ``out_dir`` (default: the current directory) as
    ``<name>.svg``, and ``echo`` reports the path.  Without an input in ``draw(sop, input)``
    the values shown are those on ``default_input()`` (if any).  Raises a RaspError
    naming the draw statement if the file cannot be written.
    """

    def hook(sop: ir.SOp, inp: Sequence[Atom] | str | None, span: Span) -> None:
        names_now = dict(bindings())
        if inp is None and default_input is not None:
            inp = default_input()
        stem = drawing_name(sop, names_now)
        ids: dict[int, str] = {}
        for name, value in names_now.items():
            if isinstance(value, ir.Node) and (value.id not in ids or ids[value.id] == "out"):
                ids[value.id] = name
        title = f"{stem}" + (f" on {_show_input(inp)}" if inp is not None else "")
        path = Path(out_dir) if out_dir is not None else Path.cwd()
        target = path / f"{stem}.svg"
        try:
            write_svg(sop, target, inp, ids, title)
        except OSError as exc:
            raise RaspError(f"draw: cannot write {target}: {exc.strerror}", span) from None
        echo(f"draw: wrote {target}")

    return hook


# ------------------------------------------------------------------ helpers


def _values(root: ir.SOp, inp: Sequence[Atom] | str | None) -> tuple[dict[int, object], str | None]:
    if inp is None:
        return {}, None
    from .language.interpret import evaluate_many

    try:
        return dict(evaluate_many([root], inp)), None
    except RaspError as err:
        return {}, f"(no values: {err.message})"


def _layers(g: nx.DiGraph) -> list[list[int]]:
    """Nodes grouped by longest-path depth from the inputs, ordered to reduce crossings."""
    depth: dict[int, int] = {}
    for n in nx.topological_sort(g):
        depth[n] = max((depth[p] + 1 for p in g.predecessors(n)), default=0)
    layers: list[list[int]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for n in sorted(depth):  # creation order within a layer to start with
        layers[depth[n]].append(n)
    order: dict[int, float] = {}
    for layer in layers:
        key: dict[int, float] = {}
        for i, n in enumerate(layer):
            preds = [order[p] for p in g.predecessors(n)]
            key[n] = sum(preds) / len(preds) if preds else float(i)
        layer.sort(key=key.__getitem__)
        order.update((n, float(i)) for i, n in enumerate(layer))
    return layers


def _ports(
    g: nx.DiGraph, x: Mapping[int, float], size: Mapping[int, tuple[float, float]]
) -> tuple[dict[tuple[int, int], float], dict[tuple[int, int], float]]:
    """Where each edge leaves its source's bottom and enters its target's top: spread
    evenly over the middle of the box, in left-to-right order of the other end."""

    def spread(n: int, others: list[int]) -> dict[int, float]:
        others = sorted(others, key=lambda o: x[o] + size[o][0] / 2)
        w = size[n][0]
        return {
            o: x[n] + w / 2 + (i - (len(others) - 1) / 2) * min(24.0, 0.6 * w / len(others))
            for i, o in enumerate(others)
        }

    exits: dict[tuple[int, int], float] = {}
    entries: dict[tuple[int, int], float] = {}
    for n in g:
        for dst, px in spread(n, list(g.successors(n))).items():
            exits[n, dst] = px
        for src, px in spread(n, list(g.predecessors(n))).items():
            entries[src, n] = px
    return exits, entries


def _box_lines(rec: NodeRecord, name: str | None, value: object) -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = []
    if name is not None and name != rec.label:
        lines.append((name, "bold"))
    lines.append((rec.label, "" if lines else "bold"))
    same = rec.operation.lower() == rec.kind.lower()
    lines.append((rec.kind if same else f"{rec.kind} {rec.operation}", "dim"))
    if isinstance(value, list):
        lines.append(("= " + format_sop(value), ""))
    elif isinstance(value, np.ndarray):
        lines.append((f"= {int(value.sum())} of {value.size} pairs selected", ""))
    return [(_cut(text), style) for text, style in lines]


def _box_size(lines: list[tuple[str, str]]) -> tuple[float, float]:
    width = max(len(text) for text, _ in lines) * CHAR_W + 2 * PAD_X
    return max(width, 60.0), len(lines) * LINE_H + 2 * PAD_Y - (LINE_H - FONT)


def _tooltip(rec: NodeRecord) -> str:
    where = f" ({rec.span.location})" if rec.span is not None else ""
    return f"{rec.kind} {rec.operation}: {rec.label}{where}"


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"


def _esc(text: str) -> str:
    return escape(text, quote=True)


def _show_input(inp: Sequence[Atom] | str) -> str:
    return f'"{inp}"' if isinstance(inp, str) else "[" + ", ".join(map(str, inp)) + "]"
