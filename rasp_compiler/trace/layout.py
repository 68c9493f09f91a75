"""A layered graph layout with edge routing, in pure Python (used by ``draw``).

Nodes are grouped into *blocks* (an attention head, an MLP, or one node alone) and
blocks into *bands* stacked top to bottom (the embedding, then each layer's attention
and MLP; or, without a compiled model, one band per depth).  The layout is the layered
(Sugiyama) scheme twice over:

* inside a block, nodes sit on levels by longest path over the block's own edges;
* across bands, blocks are ordered by the mean position of what they read (a few sweeps
  down and up) and placed near it without overlapping.

Edges never run through a box: an edge that skips levels or bands gets a *dummy* at each
level or band it crosses, a slot of its own in that row's order, so it passes between
boxes.  Edges from one node share their dummies (a bundle).  An edge that leaves a node
above the bottom of its block runs down a dummy chain to the block's bottom first, and
one that enters a node below the top of its block comes down a chain from the top.
"""

from __future__ import annotations

import textwrap
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

GAP_X = 24  # between neighbours in a row
GAP_Y = 34  # between levels inside a block
GAP_BAND = 46  # between bands
DUMMY_W = 8  # the width a passing edge takes in a row
PAD = 10  # inside a block's frame
TITLE_H = 20  # a band's title row
LINE_H = 16  # a line of a block's title
CHAR_W = 7.3  # px per character of a title

Point = tuple[float, float]


@dataclass
class Block:
    """A group of nodes drawn together (in a frame when it has a title)."""

    key: Hashable
    band: int
    title: str = ""
    nodes: list[int] = field(default_factory=list)
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0
    levels: list[list[int | tuple[str, int, int]]] = field(default_factory=list)
    title_lines: list[str] = field(default_factory=list)  # the title, wrapped to the width
    exits: dict[int, float] = field(default_factory=dict)  # node -> x at the block's bottom
    entries: dict[int, float] = field(default_factory=dict)  # node -> x at the block's top
    #: dummy -> (x, top, bottom) inside the block
    slots: dict[tuple, tuple[float, float, float]] = field(default_factory=dict)
    #: node -> the bottom of its level inside the block (a shorter node leaves a gap)
    level_bottom: dict[int, float] = field(default_factory=dict)


@dataclass
class Layout:
    """Where everything goes: node boxes (top-left), blocks, bands and edge routes."""

    pos: dict[int, Point]
    blocks: list[Block]
    bands: list[tuple[int, float, float]]  # (band, top, height)
    routes: dict[tuple[int, int], list[Point]]  # every edge: points from source to target
    width: float
    height: float


def layered(
    sizes: Mapping[int, tuple[float, float]],
    edges: Sequence[tuple[int, int]],
    place: Mapping[int, tuple[int, Hashable]],
    titles: Mapping[Hashable, str] | None = None,
    band_title_h: float = TITLE_H,
) -> Layout:
    """Lay out nodes of ``sizes`` (width, height), edges source -> target, each node in
    ``place[node] = (band, block key)``; ``titles`` name framed blocks."""
    titles = titles or {}
    blocks: dict[Hashable, Block] = {}
    for n in sorted(sizes):
        band, key = place[n]
        blocks.setdefault(key, Block(key, band, titles.get(key, ""))).nodes.append(n)
    block_of = {n: blocks[place[n][1]] for n in sizes}
    leaves = {u for u, v in edges if block_of[u] is not block_of[v]}  # read outside
    enters = {v for u, v in edges if block_of[u] is not block_of[v]}  # read from outside
    inner: dict[Hashable, list[tuple[int, int]]] = {b.key: [] for b in blocks.values()}
    for u, v in edges:
        if block_of[u] is block_of[v]:
            inner[block_of[u].key].append((u, v))
    for b in blocks.values():
        _inside(b, sizes, inner[b.key], leaves, enters)
    rel = {n: p for b in blocks.values() for n, p in _level_positions(b, sizes).items()}

    # the band rows: blocks and, per source node, one dummy in each band it passes
    bands = sorted({b.band for b in blocks.values()})
    row: dict[int, list[Hashable]] = {band: [] for band in bands}
    for b in sorted(blocks.values(), key=lambda b: min(b.nodes)):
        row[b.band].append(("block", b.key))
    last: dict[int, int] = {}
    for u, v in edges:
        if block_of[u] is not block_of[v]:
            last[u] = max(last.get(u, -1), block_of[v].band)
    for u, far in last.items():
        for band in bands:
            if block_of[u].band < band < far:
                row[band].append(("dummy", u))
    item_w: dict[Hashable, float] = {("block", b.key): b.w for b in blocks.values()}
    preds: dict[Hashable, list[Hashable]] = {}
    for u, v in edges:
        bu, bv = block_of[u], block_of[v]
        if bu is bv:
            continue
        src: Hashable = ("block", bu.key)
        for band in bands:
            if bu.band < band < bv.band:
                preds.setdefault(("dummy", u, band), []).append(src)
                src = ("dummy", u, band)
        preds.setdefault(("block", bv.key), []).append(src)

    def key_of(item: Hashable, band: int) -> Hashable:
        return ("dummy", item[1], band) if item[0] == "dummy" else item  # type: ignore[index]

    centre: dict[Hashable, float] = {}
    for _ in range(3):  # barycentre sweeps: place, then reorder by where inputs are
        for band in bands:
            items = row[band]
            want = {}
            for i, it in enumerate(items):
                ps = [centre[p] for p in preds.get(key_of(it, band), []) if p in centre]
                want[it] = sum(ps) / len(ps) if ps else centre.get(key_of(it, band), i * 50.0)
            items.sort(key=lambda it: want[it])
            right = -float("inf")
            for it in items:
                w = item_w.get(it, DUMMY_W)
                x = max(want[it] - w / 2, right + GAP_X)
                centre[key_of(it, band)] = x + w / 2
                right = x + w

    # coordinates: bands stacked, blocks at their centres, everything shifted to x >= 0
    shift = min(centre[key_of(it, band)] - item_w.get(it, DUMMY_W) / 2 for band in bands
                for it in row[band])  # fmt: skip
    band_rows, top = [], 0.0
    for band in bands:
        h = max((b.h for b in blocks.values() if b.band == band), default=0.0)
        band_rows.append((band, top, h + band_title_h))
        for b in blocks.values():
            if b.band == band:
                b.x = centre[("block", b.key)] - b.w / 2 - shift
                b.y = top + band_title_h
        top += h + band_title_h + GAP_BAND
    band_top = {band: (t, h) for band, t, h in band_rows}
    pos = {n: (block_of[n].x + rel[n][0], block_of[n].y + rel[n][1]) for n in sizes}
    width = max((b.x + b.w for b in blocks.values()), default=0.0)
    for band in bands:
        for it in row[band]:
            if it[0] == "dummy":  # type: ignore[index]
                width = max(width, centre[key_of(it, band)] - shift + DUMMY_W)

    routes: dict[tuple[int, int], list[Point]] = {}
    for u, v in edges:
        bu, bv = block_of[u], block_of[v]
        (ux, uy), (vx, vy) = pos[u], pos[v]
        start = (ux + sizes[u][0] / 2, uy + sizes[u][1])
        end = (vx + sizes[v][0] / 2, vy)
        # straight down to the bottom of the source's level first: a node shorter than
        # its level's tallest would otherwise send its edge across a neighbour's box
        below = (start[0], bu.y + bu.level_bottom[u])
        if below[1] > start[1]:
            start_pts = [start, below]
        else:
            start_pts = [start]
        if bu is bv:
            pts = start_pts + _chain(bu, ("edge", u, v)) + [end]
        else:
            t, h = band_top[bu.band]  # down to the band's bottom: nothing is below a block
            x = bu.x + bu.exits[u]
            pts = start_pts + _chain(bu, ("exit", u, 0)) + [(x, bu.y + bu.h), (x, t + h)]
            for band in bands:
                if bu.band < band < bv.band:
                    t, h = band_top[band]
                    x = centre[("dummy", u, band)] - shift
                    pts += [(x, t), (x, t + h)]
            pts += [(bv.x + bv.entries[v], bv.y)] + _chain(bv, ("entry", v, 0)) + [end]
        routes[u, v] = pts
    return Layout(pos, list(blocks.values()), band_rows, routes, width, max(top - GAP_BAND, 0))


# ------------------------------------------------------------------ inside a block

_DummyKey = tuple[str, int, int]


def _inside(
    b: Block,
    sizes: Mapping[int, tuple[float, float]],
    inner: Sequence[tuple[int, int]],
    leaves: set[int],
    enters: set[int],
) -> None:
    """Levels (nodes and dummies) of one block, their order, and the block's size."""
    level = {n: 0 for n in b.nodes}
    for _ in range(len(b.nodes)):  # longest path (blocks are small)
        for u, v in inner:
            level[v] = max(level[v], level[u] + 1)
    depth = max(level.values(), default=0) + 1
    rows: list[list[int | _DummyKey]] = [[] for _ in range(depth)]
    for n in b.nodes:
        rows[level[n]].append(n)
    for u, v in inner:  # a dummy on every level an inner edge skips
        for lv in range(level[u] + 1, level[v]):
            rows[lv].append(("edge", u, v, lv))  # type: ignore[arg-type]
    for n in b.nodes:
        if n in leaves:
            for lv in range(level[n] + 1, depth):
                rows[lv].append(("exit", n, lv))
        if level[n] > 0 and n in enters:
            for lv in range(level[n]):
                rows[lv].append(("entry", n, lv))
    order: dict[object, float] = {}
    for r in rows:  # by the mean order of what each reads on the level above
        key = {}
        for i, it in enumerate(r):
            src = [order[p] for p in _above(it, inner) if p in order]
            key[it] = sum(src) / len(src) if src else float(i)
        r.sort(key=lambda it: key[it])
        order.update((_name(it), float(i)) for i, it in enumerate(r))
    b.levels = rows  # type: ignore[assignment]
    widths = [sum(_w(it, sizes) for it in r) + GAP_X * (len(r) - 1) for r in rows]
    heights = [max((sizes[it][1] if isinstance(it, int) else 0) for it in r) for r in rows]
    inner_w = max(widths)
    if b.title:
        chars = max(int(inner_w / CHAR_W), 40)
        b.title_lines = textwrap.wrap(b.title, chars, break_on_hyphens=False) or [""]
        inner_w = max(inner_w, max(len(t) for t in b.title_lines) * CHAR_W)
    b.w = inner_w + 2 * PAD * bool(b.title)
    b.h = sum(heights) + GAP_Y * (depth - 1) + _title_h(b) + 2 * PAD * bool(b.title)


def _title_h(b: Block) -> float:
    return LINE_H * len(b.title_lines) + 4 if b.title_lines else 0.0


def _above(it: object, inner: Sequence[tuple[int, int]]) -> list[object]:
    if isinstance(it, int):
        return [u for u, v in inner if v == it]
    return [it[1]]  # type: ignore[index]


def _name(it: object) -> object:
    """What an item stands for when the level below is ordered: a node, or the node a
    dummy chain carries."""
    return it if isinstance(it, int) else it[1]  # type: ignore[index]


def _w(it: object, sizes: Mapping[int, tuple[float, float]]) -> float:
    return sizes[it][0] if isinstance(it, int) else DUMMY_W


def _level_positions(b: Block, sizes: Mapping[int, tuple[float, float]]) -> dict[int, Point]:
    """Node positions inside the block (each level centred); records dummy slots,
    exits and entries on the block."""
    y = PAD * bool(b.title) + _title_h(b)
    out: dict[int, Point] = {}
    for r in b.levels:
        width = sum(_w(it, sizes) for it in r) + GAP_X * (len(r) - 1)
        x = (b.w - width) / 2
        h = max((sizes[it][1] if isinstance(it, int) else 0) for it in r)
        for it in r:
            w = _w(it, sizes)
            if isinstance(it, int):
                out[it] = (x, y)
                b.level_bottom[it] = y + h
            else:
                b.slots[it] = (x + w / 2, y, y + h)
            x += w + GAP_X
        y += h + GAP_Y
    for n in b.nodes:
        cx = out[n][0] + sizes[n][0] / 2
        bottom = [s for k, s in b.slots.items() if k[0] == "exit" and k[1] == n]
        b.exits[n] = bottom[-1][0] if bottom else cx
        top = [s for k, s in b.slots.items() if k[0] == "entry" and k[1] == n]
        b.entries[n] = min(top, key=lambda s: s[1])[0] if top else cx
    return out


def _chain(b: Block, which: tuple[str, int, int]) -> list[Point]:
    """The points of a dummy chain in block ``b``: ("exit", node, 0), ("entry", node, 0)
    or ("edge", u, v); absolute coordinates, top to bottom."""
    kind = which[0]
    chosen = [
        s for k, s in b.slots.items()
        if k[0] == kind and k[1] == which[1] and (kind != "edge" or k[2] == which[2])
    ]  # fmt: skip
    pts: list[Point] = []
    for x, top, bottom in sorted(chosen, key=lambda s: s[1]):
        pts += [(b.x + x, b.y + top), (b.x + x, b.y + bottom)]
    return pts
