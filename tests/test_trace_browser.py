"""The trace page in a real browser: headless Chromium, driven with the standard library.

``chromium --dump-dom`` gives the page after its scripts ran: the script records each
heatmap's drawn size and position (``data-drawn``, ``data-at``), how many heatmaps it
drew (``#render-status``) and any script error (``#script-errors``); Chromium's own log
(``--enable-logging=stderr``) shows every console message.  ``chromium --screenshot``
gives the pixels: the attention heatmap of reverse is checked cell by cell.

Skipped, with the reason, only when no Chromium is installed; CI installs Debian's
``chromium`` package and sets ``RASP_COMPILER_REQUIRE_CHROMIUM=1``, which turns the skip
into a failure.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from rasp_compiler import cli

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
LETTERS = "abcdefghijklmnopqrstuvwxyz"
WIDTH, HEIGHT = 1280, 2400
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--force-device-scale-factor=1", f"--window-size={WIDTH},{HEIGHT}",
    "--enable-logging=stderr", "--v=0",
]  # fmt: skip

#: CI sets this: there a missing Chromium is a failure, not a skip
REQUIRED = bool(os.environ.get("RASP_COMPILER_REQUIRE_CHROMIUM"))
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not REQUIRED,
    reason="chromium is not installed (apt-get install -y chromium)",
)


def test_chromium_is_installed():
    assert CHROMIUM is not None, "RASP_COMPILER_REQUIRE_CHROMIUM is set but chromium is missing"


def chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip


class Elements(HTMLParser):
    """Every element's attributes, by tag; the text of ``#script-errors``."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, list[dict[str, str]]] = {}
        self.errors: list[str] = []
        self._in_errors = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = {k: v or "" for k, v in attrs}
        self.tags.setdefault(tag, []).append(d)
        self._in_errors = d.get("id") == "script-errors"

    def handle_endtag(self, tag: str) -> None:
        self._in_errors = False

    def handle_data(self, data: str) -> None:
        if self._in_errors and data.strip():
            self.errors.append(data.strip())


def dump_dom(tmp_path: Path, page: Path) -> tuple[Elements, str]:
    proc = chromium(tmp_path, page, "--dump-dom")
    dom = Elements()
    dom.feed(proc.stdout)
    return dom, proc.stderr


def console_messages(log: str) -> list[str]:
    return [line for line in log.splitlines() if ":CONSOLE" in line]


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit, non-interlaced PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r) for r in rows]


@pytest.fixture(scope="module")
def reverse_page(tmp_path_factory) -> Path:
    """The page ``rasp-compiler trace`` writes for reverse on "hello"."""
    page = tmp_path_factory.mktemp("page") / "reverse.html"
    args = ["trace", str(ROOT / "examples" / "reverse.rasp"), "--vocab", LETTERS]
    assert cli.main([*args, "--max-len", "8", "--input", "hello", "-o", str(page)]) == 0
    return page


def test_heatmaps_render_without_script_errors(tmp_path, reverse_page):
    dom, log = dump_dom(tmp_path, reverse_page)
    maps = [e for e in dom.tags["svg"] if e.get("class") == "heatmap"]
    assert len(maps) == 2 + 5  # two heads, the residual after the embeddings and 4 sublayers
    status = next(e for e in dom.tags["p"] if e.get("id") == "render-status")
    assert status["data-drawn"] == status["data-total"] == "7"
    for svg in maps:  # drawn at their own size, with every cell
        assert svg["data-drawn"] == f"{svg['width']}x{svg['height']}", svg["id"]
        assert int(svg["data-cells-drawn"]) == int(svg["data-rows"]) * int(svg["data-cols"])
    assert dom.errors == [] and console_messages(log) == []


def test_dyck2_page_renders_every_heatmap_and_the_graph(tmp_path):
    page = tmp_path / "dyck2.html"
    args = ["trace", str(ROOT / "examples" / "dyck2.rasp"), "--vocab", "(){}", "--max-len", "8"]
    assert cli.main([*args, "--input", "({)}", "-o", str(page)]) == 0
    dom, log = dump_dom(tmp_path, page)
    maps = [e for e in dom.tags["svg"] if e.get("class") == "heatmap"]
    heads = [e for e in maps if e["id"].startswith("head-")]
    assert len(heads) == 5 and len(maps) == 5 + 11  # 5 layers: 11 residual snapshots
    status = next(e for e in dom.tags["p"] if e.get("id") == "render-status")
    assert status["data-drawn"] == status["data-total"] == str(len(maps))
    graph = [e for e in dom.tags["svg"] if e.get("class") != "heatmap"]
    assert len(graph) == 1 and float(graph[0]["width"]) > 0
    assert dom.errors == [] and console_messages(log) == []


def test_the_error_check_sees_an_error(tmp_path, reverse_page):
    broken = tmp_path / "broken.html"
    text = reverse_page.read_text(encoding="utf-8")
    broken.write_text(text.replace("<pre id=", "<script>notDefined();</script><pre id=", 1))
    dom, log = dump_dom(tmp_path, broken)
    assert any("notDefined is not defined" in e for e in dom.errors)
    assert any("notDefined is not defined" in line for line in console_messages(log))


def test_screenshot_shows_the_attention_heatmap(tmp_path, reverse_page):
    dom, _ = dump_dom(tmp_path, reverse_page)
    svg = next(e for e in dom.tags["svg"] if e.get("id") == "head-1-0")  # reverse's head
    x0, y0 = (int(v) for v in svg["data-at"].split(","))
    left, top, cell = int(svg["data-left"]), int(svg["data-top"]), int(svg["data-cell"])
    shot = tmp_path / "reverse.png"
    chromium(tmp_path, reverse_page, f"--screenshot={shot}")
    width, height, rows = read_png(shot)
    assert (width, height) == (WIDTH, HEIGHT)
    bpp = len(rows[0]) // width
    assert y0 + top + 6 * cell < HEIGHT, "the heatmap is inside the screenshot"

    def pixel(query: int, key: int) -> tuple[int, int, int]:
        x, y = x0 + left + key * cell + 6, y0 + top + query * cell + 6  # clear of text and marks
        r, g, b = rows[y][x * bpp : x * bpp + 3]
        return r, g, b

    n = 5  # "hello"; BOS is row and column 0
    for q in range(1, n + 1):
        for k in range(n + 1):
            r, g, b = pixel(q, k)
            if k == n + 1 - q:  # the mirror position: full attention, dark blue
                assert r < 60 and g < 90 and b > 80, (q, k, (r, g, b))
            else:
                assert min(r, g, b) > 230, (q, k, (r, g, b))
    region = {
        rows[y][x * bpp : x * bpp + 3]
        for y in range(y0 + top, y0 + top + (n + 1) * cell)
        for x in range(x0 + left, x0 + left + (n + 1) * cell)
    }
    assert len(region) > 3  # not blank: white, blue, grid lines, outlines
