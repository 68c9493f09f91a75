"""``draw``: the layered layout routes edges between boxes, never through one; with a
compiled model nodes are grouped by layer and head; selectors are grids; no text is cut."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rasp_compiler import cli
from rasp_compiler.compiler.pipeline import compile_sop, names_of, parse_vocab
from rasp_compiler.draw import CHAR_W, make_draw_hook, svg_document
from rasp_compiler.language.lower import choose_sop, load_program, load_source
from rasp_compiler.trace.collect import snapshot_names

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
NS = "{http://www.w3.org/2000/svg}"
CASES = {
    "reverse": ("hello", "abcdefghijklmnopqrstuvwxyz"),
    "sort": ("hello", "abcdefghijklmnopqrstuvwxyz"),
    "dyck2": ("({)}", "(){}"),
    "sort_by_frequency": ("abca", "abc"),
    "max_prefix": ("acbda", "abcd"),
    "double_histogram": ("aabc", "abcd"),
}


def drawing(name: str, compiled: bool) -> tuple[ET.Element, object]:
    inp, vocab = CASES[name]
    session = load_program(EXAMPLES / f"{name}.rasp")
    sop_name, sop = choose_sop(session, None, name)
    names = names_of(session)
    model = compile_sop(sop, parse_vocab(vocab), 6, names=names) if compiled else None
    svg = svg_document(sop, inp, names, f"{sop_name} on {inp!r}", model)
    return ET.fromstring(svg), model


def boxes(root: ET.Element) -> dict[str, tuple[float, float, float, float]]:
    """node id -> (x, y, width, height) of its box."""
    out = {}
    for g in root.iter(f"{NS}g"):
        if g.get("class") == "node":
            r = g.find(f"{NS}rect")
            out[g.get("data-id")] = tuple(float(r.get(k)) for k in ("x", "y", "width", "height"))
    return out


def path_points(d: str, steps: int = 24) -> list[tuple[float, float]]:
    """Points along an SVG path of M, L and C commands (curves sampled)."""
    nums = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", d)]
    cmds = re.findall(r"[MLC]", d)
    pts, i, cur = [], 0, (0.0, 0.0)
    for c in cmds:
        if c in "ML":
            cur = (nums[i], nums[i + 1])
            i += 2
            pts.append(cur)
        else:
            (x1, y1, x2, y2, x3, y3), i = nums[i : i + 6], i + 6
            x0, y0 = cur
            for k in range(1, steps + 1):
                t = k / steps
                a, b, c2, e = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
                pts.append((a * x0 + b * x1 + c2 * x2 + e * x3, a * y0 + b * y1 + c2 * y2 + e * y3))
            cur = (x3, y3)
    return pts


@pytest.mark.parametrize("compiled", [False, True], ids=["plain", "compiled"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_no_edge_passes_through_a_box(name, compiled):
    root, _ = drawing(name, compiled)
    where = boxes(root)
    edges = [p for p in root.iter(f"{NS}path") if p.get("class") == "edge"]
    assert edges
    for edge in edges:
        ends = {edge.get("data-from"), edge.get("data-to")}
        points = path_points(edge.get("d"))
        assert all(y1 <= y2 + 0.01 for (_, y1), (_, y2) in zip(points, points[1:])), "downwards"
        for x, y in points:
            for node, (bx, by, bw, bh) in where.items():
                if node not in ends:
                    inside = bx + 1 < x < bx + bw - 1 and by + 1 < y < by + bh - 1
                    assert not inside, (name, edge.get("data-from"), edge.get("data-to"), node)


@pytest.mark.parametrize("name", sorted(CASES))
def test_boxes_do_not_overlap_and_text_is_never_cut(name):
    root, _ = drawing(name, True)
    where = list(boxes(root).values())
    for i, (ax, ay, aw, ah) in enumerate(where):
        for bx, by, bw, bh in where[i + 1 :]:
            assert ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay
    width = float(root.get("width"))
    for g in root.iter(f"{NS}g"):
        if g.get("class") != "node":
            continue
        box_w = float(g.find(f"{NS}rect").get("width"))
        for t in g.findall(f"{NS}text"):
            assert "…" not in (t.text or "")
            assert len(t.text or "") * CHAR_W <= box_w
    for t in root.iter(f"{NS}text"):
        assert float(t.get("x", 0)) + len(t.text or "") * CHAR_W * 0.95 <= width + 1


def test_compiled_nodes_are_grouped_by_layer_and_head():
    root, model = drawing("sort", True)
    texts = [t.text or "" for t in root.iter(f"{NS}text")]
    bands = ["embeddings", "layer 0 attention", "layer 0 MLP", "layer 1 attention"]
    assert [t for t in texts if t in bands] == bands
    frames = {}
    for g in root.iter(f"{NS}g"):
        if g.get("class") == "block":
            r = g.find(f"{NS}rect")
            title = " ".join(t.text for t in g.findall(f"{NS}text"))
            frames[title] = tuple(float(r.get(k)) for k in ("x", "y", "width", "height"))
    for layer, desc in enumerate(model.spec.layers):
        for h in desc["attn"]:  # every head has a frame titled with its line
            assert any(f"layer {layer} head" in t and f"line {h['line']}" in t for t in frames)
    # the aggregate sits inside its head's frame
    head = next(f for t, f in frames.items() if t.startswith("layer 1 head 0"))
    nodes = {g.find(f"{NS}title").text: g for g in root.iter(f"{NS}g") if g.get("class") == "node"}
    agg = next(g for tip, g in nodes.items() if tip.startswith("Aggregate"))
    x, y = float(agg.find(f"{NS}rect").get("x")), float(agg.find(f"{NS}rect").get("y"))
    assert head[0] <= x <= head[0] + head[2] and head[1] <= y <= head[1] + head[3]


def test_dyck2_is_as_deep_as_its_model():
    plain, _ = drawing("dyck2", False)
    grouped, model = drawing("dyck2", True)
    strips = [g for g in grouped.iter(f"{NS}g") if g.get("class") == "band"]
    names = [g.find(f"{NS}text").text for g in strips]
    # a strip per residual snapshot that computes something: at most 2 * layers + 1
    assert names[0] == "embeddings" and len(names) <= 2 * model.config.n_layers + 1
    assert names == [n for n in snapshot_names(model.config.n_layers) if n in names]
    # without a model, a row per depth: the longest chain of the program, no strips
    depth_rows = {round(y) for _, y, _, _ in boxes(plain).values()}
    assert len(depth_rows) > 2 * len(names)
    assert not [g for g in plain.iter(f"{NS}g") if g.get("class") == "band"]


def test_selector_is_a_grid_with_query_and_key_labels():
    session = load_source("rev = aggregate(select(indices, length - indices - 1, ==), tokens);")
    _, sop = choose_sop(session, None, "<source>")
    root = ET.fromstring(svg_document(sop, "abc", names_of(session)))
    grid = next(g for g in root.iter(f"{NS}g") if g.get("class") == "selector-grid")
    cells = [int(r.get("data-on")) for r in grid.findall(f"{NS}rect")]
    assert cells == [0, 0, 1, 0, 1, 0, 1, 0, 0]  # query i selects key 2 - i
    labels = [t.text for t in grid.findall(f"{NS}text")]
    assert labels == ["a", "b", "c", "a", "b", "c"]  # keys across, queries down
    assert "pairs selected" not in ET.tostring(root, encoding="unicode")


def test_a_long_title_is_not_clipped():
    session = load_source("x = tokens;\n")
    _, sop = choose_sop(session, None, "<source>")
    title = "x on a very long input name " * 6
    root = ET.fromstring(svg_document(sop, None, {}, title))
    assert float(root.get("width")) >= len(title.strip()) * CHAR_W


def test_draw_in_a_file_uses_the_eval_input(capsys, tmp_path, monkeypatch):
    program = tmp_path / "p.rasp"
    program.write_text(
        "rev = aggregate(select(indices, length - indices - 1, ==), tokens);\ndraw(rev);\n"
    )
    monkeypatch.chdir(tmp_path)
    assert cli.main(["eval", str(program), "--input", "xyz"]) == 0
    texts = [t.text for t in ET.parse(tmp_path / "rev.svg").getroot().iter(f"{NS}text")]
    assert texts[0] == 'rev on "xyz"' and "= [z, y, x] (strings)" in texts


def test_the_hook_reports_the_file(tmp_path):
    session_names: dict[str, object] = {}
    said: list[str] = []
    hook = make_draw_hook(lambda: session_names, tmp_path, said.append, lambda: "ab")
    session = load_source("y = indices + 1;")
    _, sop = choose_sop(session, None, "<source>")
    session_names.update(session.names())
    hook(sop, None, None)  # type: ignore[arg-type]
    assert said == [f"draw: wrote {tmp_path / 'y.svg'}"]
    assert "[1, 2] (ints)" in (tmp_path / "y.svg").read_text()


TANGLED = """same = select(indices, indices, ==);
a = aggregate(same, tokens);
b = a == "x";
c = aggregate(select(indices, indices, >) and same, tokens, "y");
d = b and (c == "y");
w = selector_width(same) + selector_width(select(tokens, tokens, ==));
e = d or (w > 2);
"""


def test_shared_selectors_and_free_read_outs_stay_in_their_band():
    """Heads of one layer sharing a selector are one frame; a read-out of a head's output
    (b = a == "x") sits with the head; every edge runs downwards between boxes."""
    session = load_source(TANGLED, "tangled.rasp")
    _, sop = choose_sop(session, None, "tangled.rasp")
    names = names_of(session)
    model = compile_sop(sop, parse_vocab("xyz"), 5, names=names)
    root = ET.fromstring(svg_document(sop, "xyzx", names, None, model))
    frames = [
        " ".join(t.text for t in g.findall(f"{NS}text"))
        for g in root.iter(f"{NS}g")
        if g.get("class") == "block"
    ]
    shared = [f for f in frames if "a = aggregate(same, tokens)" in f]
    assert len(shared) == 1 and "selector_width(same)" in shared[0] and "c =" in shared[0]
    where = boxes(root)
    for edge in (p for p in root.iter(f"{NS}path") if p.get("class") == "edge"):
        points = path_points(edge.get("d"))
        assert all(y1 <= y2 + 0.01 for (_, y1), (_, y2) in zip(points, points[1:]))
        ends = {edge.get("data-from"), edge.get("data-to")}
        for x, y in points:
            for node, (bx, by, bw, bh) in where.items():
                assert node in ends or not (bx + 1 < x < bx + bw - 1 and by + 1 < y < by + bh - 1)
