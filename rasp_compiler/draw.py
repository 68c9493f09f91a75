"""``draw(sop)``: a picture of an s-op's computation graph as a standalone SVG file.

Each box shows the user's name for the node (when it has one), the source text that
made it (wrapped, never cut), the operation and, when an input is given, the node's
value on it; a selector's value is a grid, queries down and keys across, labelled
with the input's tokens, selected pairs filled.  Arrows run from an input of an
operation to the operation.

With a compiled model (``model=``), nodes are grouped the way the model computes them
(:mod:`rasp_compiler.trace.placement`): a band per residual snapshot (the embedding,
then each layer's attention and MLP), a frame per attention head (its selector and
the s-op it computes, titled with its source line) and per MLP job.  Without one, a
node's row is its depth (the longest path to it from an input).  The layout is
layered with edge routing in pure Python (:mod:`rasp_compiler.trace.layout`): an edge
that skips rows passes between boxes, never through one.

``svg_document(root, ...)`` gives the SVG text; ``write_svg`` writes it;
``make_draw_hook`` gives the :data:`rasp_compiler.language.scope.DrawHook` the command line
installs, which writes ``<name>.svg`` into a directory and reports where.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Hashable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from .compiler.graph import NodeRecord, build_graph
from .errors import RaspError, Span
from .language import ir
from .language.display import format_sop
from .language.ir import Atom
from .trace.layout import TITLE_H, layered

__all__ = ["svg_document", "write_svg", "make_draw_hook", "drawing_name"]

FONT = 12  # px, monospace
CHAR_W = 7.3  # px per character at FONT (a safe over-estimate for common fonts)
LINE_H = 16
PAD_X, PAD_Y = 10, 8
MARGIN = 20
WRAP = 44  # characters per line in a box; longer texts wrap
CELL = 13  # px, a selector grid's cell
MAX_GRID = 16  # inputs longer than this show a selector as a count, not a grid

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
    model: Any = None,
) -> str:
    """The SVG text picturing ``root`` and everything it depends on.

    ``names`` maps node ids to the user's names for them; ``inp``, when given, adds each
    node's value on that input; ``model``, a CompiledModel compiled from ``root`` with
    ``names``, groups the nodes by the layer and head that compute them.
    """
    names = dict(names or {})
    bands: list[str] = []
    titles: dict[Hashable, str] = {}
    if model is not None:
        from .trace.placement import placement

        where = placement(root, model, names)
        root, bands, titles = where.root, where.bands, where.titles
    g = build_graph(root)
    if model is not None:
        place = where.place
    else:
        place = {n: (d, ("node", n)) for n, d in _depths(g).items()}
    values, error = _values(root, inp)
    tokens = [str(t) for t in inp] if inp is not None else []
    boxes = {n: _Box(g.nodes[n]["record"], names.get(n), values.get(n), tokens) for n in g}
    lay = layered(
        {n: (b.w, b.h) for n, b in boxes.items()},
        list(g.edges),
        place,
        titles,
        band_title_h=TITLE_H if bands else 0,
    )
    heading = " ".join(s for s in (title, error) if s)
    top = MARGIN + (2 * LINE_H if heading else 0)
    doc_w = max(lay.width, len(heading) * CHAR_W) + 2 * MARGIN
    doc_h = top + lay.height + MARGIN
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{doc_w:.0f}" height="{doc_h:.0f}" '
        f'viewBox="0 0 {doc_w:.0f} {doc_h:.0f}" font-family="monospace" font-size="{FONT}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
        f'<rect width="{doc_w:.0f}" height="{doc_h:.0f}" fill="white"/>',
    ]
    if heading:
        out.append(
            f'<text x="{MARGIN}" y="{MARGIN + FONT}" font-weight="bold">{_esc(heading)}</text>'
        )
    ox, oy = MARGIN, top
    for band, y, h in lay.bands if bands else ():
        out.append(
            f'<g class="band"><rect x="{MARGIN / 2}" y="{oy + y - 6:.1f}" '
            f'width="{doc_w - MARGIN:.0f}" height="{h + 12:.1f}" fill="#f6f7f9" rx="4"/>'
            f'<text x="{MARGIN}" y="{oy + y + FONT:.1f}" fill="#555" font-weight="bold">'
            f"{_esc(bands[band])}</text></g>"
        )
    for blk in lay.blocks:
        if blk.title:
            stroke = "#e8590c" if str(blk.title).startswith("layer") else "#2f9e44"
            out.append(
                f'<g class="block"><rect x="{ox + blk.x:.1f}" y="{oy + blk.y:.1f}" '
                f'width="{blk.w:.1f}" height="{blk.h:.1f}" rx="8" fill="white" '
                f'stroke="{stroke}" stroke-dasharray="5 3"/>'
            )
            for i, line in enumerate(blk.title_lines):
                tx, ty = ox + blk.x + 8, oy + blk.y + FONT + 4 + i * LINE_H
                out.append(f'<text x="{tx:.1f}" y="{ty:.1f}" fill="{stroke}">{_esc(line)}</text>')
            out.append("</g>")
    for (src, dst), pts in lay.routes.items():
        out.append(
            f'<path class="edge" data-from="{src}" data-to="{dst}" d="{_path(pts, ox, oy)}" '
            'fill="none" stroke="#555" marker-end="url(#arrow)"/>'
        )
    for n, box in boxes.items():
        x, y = lay.pos[n]
        out += box.svg(ox + x, oy + y)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_svg(
    root: ir.SOp,
    path: str | Path,
    inp: Sequence[Atom] | str | None = None,
    names: Mapping[int, str] | None = None,
    title: str | None = None,
    model: Any = None,
) -> Path:
    """Write :func:`svg_document` to ``path`` (replacing it); returns the path."""
    path = Path(path)
    path.write_text(svg_document(root, inp, names, title, model), encoding="utf-8")
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


# ------------------------------------------------------------------ boxes


class _Box:
    """One node's box: text lines and, for a selector on an input, its grid."""

    def __init__(self, rec: NodeRecord, name: str | None, value: object, tokens: list[str]):
        self.rec = rec
        self.lines: list[tuple[str, str]] = []
        if name is not None and name != rec.label:
            self.lines.append((name, "bold"))
        style = "" if self.lines else "bold"
        self.lines += [(part, style) for part in _wrap(rec.label)]
        same = rec.operation.lower() == rec.kind.lower()
        self.lines.append((rec.kind if same else f"{rec.kind} {rec.operation}", "dim"))
        self.grid: np.ndarray | None = None
        self.tokens = tokens
        if isinstance(value, list):
            self.lines += [(part, "") for part in _wrap("= " + format_sop(value))]
        elif isinstance(value, np.ndarray):
            if len(tokens) <= MAX_GRID:
                self.grid = value
            else:
                self.lines.append((f"= {int(value.sum())} of {value.size} pairs selected", ""))
        if self.grid is not None:
            self.lines.append(("queries down, keys across", "dim"))
        longest = max((len(t) for t in tokens), default=0)
        self.upright = longest <= 2
        self.label_w = longest * CHAR_W + 6
        self.top_w = LINE_H if self.upright else self.label_w
        text_w = max(len(text) for text, _ in self.lines) * CHAR_W
        grid_w = self.label_w + CELL * len(tokens) if self.grid is not None else 0.0
        self.w = max(text_w, grid_w, 46.0) + 2 * PAD_X
        self.text_h = len(self.lines) * LINE_H
        grid_h = (self.top_w + CELL * len(tokens) + 4) if self.grid is not None else 0.0
        self.h = self.text_h + grid_h + 2 * PAD_Y - (LINE_H - FONT)

    def svg(self, x: float, y: float) -> list[str]:
        rec = self.rec
        out = [
            f'<g class="node" data-id="{rec.id}"><title>{_esc(_tooltip(rec))}</title>',
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{self.w:.1f}" height="{self.h:.1f}" rx="6" '
            f'fill="{_FILL.get(rec.kind, "#ffffff")}" stroke="#333"/>',
        ]
        for i, (text, style) in enumerate(self.lines):
            ty = y + PAD_Y + FONT + i * LINE_H
            attrs = {"bold": ' font-weight="bold"', "dim": ' fill="#666"', "": ""}[style]
            out.append(f'<text x="{x + PAD_X:.1f}" y="{ty:.1f}"{attrs}>{_esc(text)}</text>')
        if self.grid is not None:
            out += self._grid(x + PAD_X, y + PAD_Y + self.text_h)
        out.append("</g>")
        return out

    def _grid(self, x: float, y: float) -> list[str]:
        """Queries down, keys across: a filled cell where the key is selected."""
        assert self.grid is not None
        gx, gy = x + self.label_w, y + self.top_w
        out = [f'<g class="selector-grid" data-n="{len(self.tokens)}">']
        for j, tok in enumerate(self.tokens):  # keys across the top
            cx = gx + j * CELL + CELL / 2
            if self.upright:
                out.append(
                    f'<text x="{cx:.1f}" y="{gy - 3:.1f}" font-size="10" '
                    f'text-anchor="middle">{_esc(tok)}</text>'
                )
            else:  # written upwards
                out.append(
                    f'<text x="{cx + 4:.1f}" y="{gy - 3:.1f}" font-size="10" '
                    f'transform="rotate(-90 {cx + 4:.1f} {gy - 3:.1f})">{_esc(tok)}</text>'
                )
        for i, tok in enumerate(self.tokens):
            out.append(
                f'<text x="{gx - 3:.1f}" y="{gy + i * CELL + CELL - 3:.1f}" font-size="10" '
                f'text-anchor="end">{_esc(tok)}</text>'
            )
            for j in range(len(self.tokens)):
                on = bool(self.grid[i, j])
                out.append(
                    f'<rect x="{gx + j * CELL:.1f}" y="{gy + i * CELL:.1f}" width="{CELL}" '
                    f'height="{CELL}" fill="{"#e8590c" if on else "white"}" stroke="#bbb" '
                    f'data-on="{int(on)}"/>'
                )
        out.append("</g>")
        return out


# ------------------------------------------------------------------ helpers


def _values(root: ir.SOp, inp: Sequence[Atom] | str | None) -> tuple[dict[int, object], str | None]:
    if inp is None:
        return {}, None
    from .language.interpret import evaluate_many

    try:
        return dict(evaluate_many([root], inp)), None
    except RaspError as err:
        return {}, f"(no values: {err.message})"


def _depths(g: Any) -> dict[int, int]:
    """Longest-path depth of each node from the inputs."""
    import networkx as nx

    depth: dict[int, int] = {}
    for n in nx.topological_sort(g):
        depth[n] = max((depth[p] + 1 for p in g.predecessors(n)), default=0)
    return depth


def _path(points: list[tuple[float, float]], ox: float, oy: float) -> str:
    """A smooth path through ``points``: straight down a dummy, curves between rows."""
    (x0, y0), rest = points[0], points[1:]
    parts = [f"M {x0 + ox:.1f} {y0 + oy:.1f}"]
    px, py = x0, y0
    for x, y in rest:
        if abs(x - px) < 0.5:
            parts.append(f"L {x + ox:.1f} {y + oy:.1f}")
        else:
            mid = (py + y) / 2 + oy
            parts.append(
                f"C {px + ox:.1f} {mid:.1f}, {x + ox:.1f} {mid:.1f}, {x + ox:.1f} {y + oy:.1f}"
            )
        px, py = x, y
    return " ".join(parts)


def _wrap(text: str) -> list[str]:
    text = " ".join(text.split())
    return textwrap.wrap(text, WRAP, break_long_words=True, break_on_hyphens=False) or [""]


def _tooltip(rec: NodeRecord) -> str:
    where = f" ({rec.span.location})" if rec.span is not None else ""
    return f"{rec.kind} {rec.operation}: {rec.label}{where}"


def _esc(text: str) -> str:
    return escape(text, quote=True)


def _show_input(inp: Sequence[Atom] | str) -> str:
    return f'"{inp}"' if isinstance(inp, str) else "[" + ", ".join(map(str, inp)) + "]"
