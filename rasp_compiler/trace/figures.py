"""Heatmaps as SVG: inline in the trace page, and as files for papers and slides.

:class:`Heatmap` is a grid of numbers with row and column labels; :func:`heatmap_svg`
draws it (one ``<rect>`` per cell, the value in the cell's tooltip and, when the cells
are large enough, written in it).  :func:`head_heatmap` and :func:`residual_heatmap`
make the trace's figures; :func:`write_figures` writes every one as a standalone
``.svg`` file.  No plotting library is needed: the SVG is written by hand.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from .collect import HeadTrace, Trace

FONT = 12
CHAR_W = 7.2  # px per monospace character at FONT
CELL = 30  # px, the side of a cell
TITLE_H = 22
AXIS_H = 16  # the column axis's name, above the column labels


@dataclass
class Heatmap:
    """A grid to draw: ``values[row][col]``; ``marks[row][col]`` outlines a cell."""

    id: str
    title: str
    rows: list[str]
    cols: list[str]
    values: list[list[float]]
    row_axis: str = ""
    col_axis: str = ""
    diverging: bool = False  # blue below zero, red above; else white to blue from 0 to 1
    marks: list[list[bool]] | None = None
    cell: int = CELL

    @property
    def scale(self) -> float:
        """The magnitude drawn at full colour."""
        if not self.diverging:
            return 1.0
        top = max((abs(v) for row in self.values for v in row), default=0.0)
        return top or 1.0


def head_heatmap(h: HeadTrace, tokens: Sequence[str]) -> Heatmap:
    """A head's attention pattern, queries down, keys across, BOS included; the cells
    the interpreter's selector selects are outlined."""
    marks = None
    if h.selector is not None:  # the selector has no BOS row or column
        n = len(h.selector)
        marks = [[False] * (n + 1)] + [[False] + list(row) for row in h.selector]
    where = f"line {h.line}: " if h.line is not None else ""
    return Heatmap(
        id=f"head-{h.layer}-{h.head}",
        title=f"layer {h.layer} head {h.head} ({h.kind}) - {where}{h.implements}",
        rows=list(tokens),
        cols=list(tokens),
        values=h.pattern,
        row_axis="query",
        col_axis="key",
        marks=marks,
        cell=cell_size(len(tokens)),
    )


def residual_heatmap(trace: Trace, snapshot: int) -> Heatmap:
    """The residual stream after one sublayer: a row per dimension (labelled with the
    direction it holds) that is non-zero somewhere in the trace, a column per position."""
    resid = trace.residuals[snapshot]  # [position][dimension]
    dims = active_dims(trace)
    return Heatmap(
        id=f"residual-{snapshot}",
        title=f"residual stream after {trace.snapshots[snapshot]}",
        rows=[trace.dims[d] for d in dims],
        cols=list(trace.tokens),
        values=[[resid[p][d] for p in range(len(resid))] for d in dims],
        row_axis="dimension",
        col_axis="position",
        diverging=True,
        cell=cell_size(len(trace.tokens), 26),
    )


def active_dims(trace: Trace) -> list[int]:
    """The residual dimensions non-zero at some position after some sublayer (the others,
    e.g. the one-hot rows of tokens the input does not use, are left out of figures)."""
    return [
        d
        for d in range(len(trace.dims))
        if any(row[d] != 0.0 for snap in trace.residuals for row in snap)
    ]


def cell_size(n: int, largest: int = CELL) -> int:
    """A cell's side for an n-column grid: smaller for long inputs (at least 12 px)."""
    return max(12, min(largest, 480 // max(n, 1)))


def all_heatmaps(trace: Trace) -> list[Heatmap]:
    """Every figure of a trace: one per head, then one per residual snapshot."""
    heads = [head_heatmap(h, trace.tokens) for h in trace.heads]
    return heads + [residual_heatmap(trace, k) for k in range(len(trace.residuals))]


def write_figures(trace: Trace, directory: str | Path) -> list[Path]:
    """Write every heatmap of ``trace`` as ``<id>.svg`` into ``directory`` (made if
    missing); returns the paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for hm in all_heatmaps(trace):
        path = out / f"{_file_stem(hm.id)}.svg"
        path.write_text(heatmap_svg(hm, standalone=True), encoding="utf-8")
        paths.append(path)
    return paths


# ------------------------------------------------------------------ drawing


def heatmap_size(hm: Heatmap) -> tuple[int, int, int, int]:
    """(width, height, left, top): the SVG's size and where the grid starts."""
    left = int(max((len(r) for r in hm.rows), default=0) * CHAR_W) + 16 + (FONT + 6)
    top = TITLE_H + AXIS_H + int(max((len(c) for c in hm.cols), default=0) * CHAR_W * 0.75) + 12
    width = left + hm.cell * len(hm.cols) + 10
    width = max(width, int(len(hm.title) * CHAR_W) + 12)
    height = top + hm.cell * len(hm.rows) + 10
    return width, height, left, top


def heatmap_svg(hm: Heatmap, standalone: bool = False) -> str:
    """The SVG text of ``hm`` (with an XML namespace and white background when
    ``standalone``)."""
    width, height, left, top = heatmap_size(hm)
    c = hm.cell
    ns = ' xmlns="http://www.w3.org/2000/svg"' if standalone else ""
    out = [
        f'<svg{ns} class="heatmap" id="{_e(hm.id)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="{FONT}" '
        f'data-rows="{len(hm.rows)}" data-cols="{len(hm.cols)}" data-cell="{c}" '
        f'data-left="{left}" data-top="{top}">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="4" y="{FONT + 4}" font-weight="bold">{_e(hm.title)}</text>',
    ]
    if hm.col_axis:
        out.append(
            f'<text x="{left}" y="{TITLE_H + FONT - 2}" fill="#666">{_e(hm.col_axis)} →</text>'
        )
    if hm.row_axis:
        x, y = FONT, top + c * len(hm.rows) / 2
        out.append(
            f'<text x="{x}" y="{y:.0f}" fill="#666" text-anchor="middle" '
            f'transform="rotate(-90 {x} {y:.0f})">{_e(hm.row_axis)} →</text>'
        )
    for j, label in enumerate(hm.cols):
        cx, cy = left + j * c + c // 2, top - 6
        out.append(f'<text x="{cx}" y="{cy}" transform="rotate(-45 {cx} {cy})">{_e(label)}</text>')
    for i, label in enumerate(hm.rows):
        y = top + i * c + c / 2 + FONT / 2 - 2
        out.append(f'<text x="{left - 6}" y="{y:.0f}" text-anchor="end">{_e(label)}</text>')
    scale = hm.scale
    row_name, col_name = hm.row_axis or "row", hm.col_axis or "column"
    out.append('<g class="cells">')
    for i, row in enumerate(hm.values):
        for j, v in enumerate(row):
            fill, ink = _colour(v / scale, hm.diverging)
            x, y = left + j * c, top + i * c
            tip = f"{row_name} {hm.rows[i]} ({i}), {col_name} {hm.cols[j]} ({j}): {v:.4g}"
            out.append(
                f'<rect x="{x}" y="{y}" width="{c}" height="{c}" fill="{fill}" stroke="#ddd" '
                f'data-v="{v:.6g}"><title>{_e(tip)}</title></rect>'
            )
            if c >= 24 and abs(v) >= 0.005:
                out.append(
                    f'<text x="{x + c / 2:.0f}" y="{y + c / 2 + 4:.0f}" text-anchor="middle" '
                    f'font-size="9" fill="{ink}" pointer-events="none">{_short(v)}</text>'
                )
    out.append("</g>")
    if hm.marks is not None:
        for i, row_marks in enumerate(hm.marks):
            for j, on in enumerate(row_marks):
                if on:
                    out.append(
                        f'<rect class="mark" x="{left + j * c + 1.5}" y="{top + i * c + 1.5}" '
                        f'width="{c - 3}" height="{c - 3}" fill="none" stroke="#e8590c" '
                        'stroke-width="2" pointer-events="none"/>'
                    )
    out.append("</svg>")
    return "\n".join(out)


def _colour(x: float, diverging: bool) -> tuple[str, str]:
    """(fill, text colour) for ``x`` in [-1, 1] (diverging) or [0, 1]."""
    x = max(-1.0, min(1.0, x))
    if diverging:
        target = (178, 24, 43) if x > 0 else (33, 102, 172)
        t = abs(x)
    else:
        target, t = (8, 48, 107), max(0.0, x)
    rgb = tuple(round(255 + (c - 255) * t) for c in target)
    ink = "white" if t > 0.55 else "black"
    return "#{:02x}{:02x}{:02x}".format(*rgb), ink


def _short(v: float) -> str:
    if abs(v - round(v)) < 0.005:
        return str(int(round(v)))
    text = f"{v:.2f}"
    return text.replace("0.", ".", 1) if text.startswith(("0.", "-0.")) else text


def _file_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def _e(text: str) -> str:
    return escape(text, quote=True)
