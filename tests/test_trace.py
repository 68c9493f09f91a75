"""The trace: data gathered without a browser (rasp_compiler.trace.collect), the page,
the SVG figures and the ``trace`` command."""

from __future__ import annotations

import dataclasses
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rasp_compiler import cli
from rasp_compiler.compiler.pipeline import compile_program
from rasp_compiler.trace import trace_program
from rasp_compiler.trace.collect import SOpTrace, Trace, same_atom
from rasp_compiler.trace.figures import all_heatmaps, heatmap_svg, residual_heatmap, write_figures
from rasp_compiler.trace.html import render

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
LETTERS = "abcdefghijklmnopqrstuvwxyz"
CASES = {
    "reverse": ("hello", LETTERS, 8),
    "sort": ("hello", LETTERS, 8),
    "dyck2": ("({)}", "(){}", 8),
}
_cache: dict[str, Trace] = {}


def traced(name: str) -> Trace:
    if name not in _cache:
        inp, vocab, max_len = CASES[name]
        _cache[name] = trace_program(EXAMPLES / f"{name}.rasp", inp, vocab, max_len)
    return _cache[name]


def main(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ collected data


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_decoded_sop_equals_the_interpreter(name):
    t = traced(name)
    held = [s for s in t.sops if s.decoded is not None]
    assert held, "some s-op is held in the residual"
    for s in held:
        assert s.agrees is True, (s.name, s.decoded, s.interpreter)
        assert len(s.decoded) == len(t.tokens) - 1
    assert t.ok and t.output == t.expected
    # the output s-op itself is held, and read back as the model outputs it
    out = [s for s in t.sops if s.name == t.sop_name]
    assert len(out) == 1 and out[0].decoded == t.expected


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_head_appears_with_its_source_line(name):
    t = traced(name)
    inp, vocab, max_len = CASES[name]
    model = compile_program(EXAMPLES / f"{name}.rasp", vocab=vocab, max_len=max_len)
    want = [
        (layer, h["head"], h["implements"], h["line"])
        for layer, desc in enumerate(model.spec.layers)
        for h in desc["attn"]
    ]
    assert [(h.layer, h.head, h.implements, h.line) for h in t.heads] == want
    source = (EXAMPLES / f"{name}.rasp").read_text().splitlines()
    n = len(inp) + 1
    for h in t.heads:
        assert h.line is not None and h.source_line == source[h.line - 1].strip()
        assert len(h.pattern) == n and all(len(row) == n for row in h.pattern)
        for row in h.pattern:  # a softmax over the keys
            assert sum(row) == pytest.approx(1.0, abs=1e-5)


def test_reverse_head_attends_to_the_mirror_position():
    t = traced("reverse")
    head = next(h for h in t.heads if h.line == 12)  # (line 10's head copies the length)
    assert head.kind == "aggregate" and head.source_line == "reverse = aggregate(flip, tokens);"
    assert head.selector_text == "select(indices, opp_index, ==)"
    n = len(t.tokens) - 1
    for q in range(1, n + 1):  # query at position q (BOS is 0) reads key n + 1 - q
        row = head.pattern[q]
        assert max(range(n + 1), key=row.__getitem__) == n + 1 - q
        assert row[n + 1 - q] > 0.99
    assert head.selector == [[k == n - 1 - q for k in range(n)] for q in range(n)]


def test_sops_not_held_are_listed_with_the_interpreter_value():
    t = traced("dyck2")  # "not pair_ok" lives only inside the MLP that computes "bad"
    below = next(s for s in t.sops if s.name == "not pair_ok")
    assert below.decoded is None and below.agrees is None
    assert below.interpreter == [True] * 4
    reverse = traced("reverse")
    length = next(s for s in reverse.sops if s.name == "length")
    assert length.agrees is True and reverse.snapshots[length.stage] == "layer 0 attention"
    assert length.decoded == [5] * 5  # one head copies the last token's position


def test_classes_agree_when_they_hold_the_interpreter_value():
    held = SOpTrace(1, "x", "x", 1, interpreter=[2, 0], encoding="classes", stage=2)
    held.classes = [[1, 2], [0]]
    assert held.agrees is True
    held.classes = [[1, 2], [1]]
    assert held.agrees is False


def test_residual_stream_has_a_labelled_row_per_dimension():
    t = traced("dyck2")
    assert len(t.residuals) == 2 * t.n_layers + 1 == len(t.snapshots)
    assert len(t.dims) == t.d_model and t.dims[:2] == ["one", "bos"]
    for snap in t.residuals:
        assert len(snap) == len(t.tokens) and all(len(row) == t.d_model for row in snap)
    assert sum(size for _, _, size in t.blocks) == t.d_model
    # the embedding holds the token one-hot: tokens_str='(' is 1 at position 1 only
    d = t.dims.index("tokens_str='('")
    assert [row[d] for row in t.residuals[0]] == [0.0, 1.0, 0.0, 0.0, 0.0]


def test_a_number_is_read_back_and_rounded():
    t = traced("dyck2")
    depth = next(s for s in t.sops if s.name == "depth")
    assert depth.encoding == "numerical" and depth.decoded == [1, 2, 1, 0]
    assert depth.raw == pytest.approx([1, 2, 1, 0], abs=1e-3)


def test_same_atom_keeps_types_apart():
    assert same_atom(1, 1.0) and same_atom("a", "a")
    assert not same_atom(True, 1) and not same_atom("1", 1)


# ------------------------------------------------------------------ page and figures


@pytest.mark.parametrize("name", sorted(CASES))
def test_page_is_self_contained_with_one_heatmap_per_head(name):
    t = traced(name)
    page = render(t)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "<link" not in page and "@import" not in page
    for h in t.heads:
        assert f'id="head-{h.layer}-{h.head}"' in page
        assert f"line {h.line}: {h.implements}".replace('"', "&quot;") in page
    assert page.count('class="heatmap"') == len(t.heads) + len(t.residuals)
    assert 'class="verdict ok"' in page and 'class="bad"' not in page


def test_a_disagreement_is_shown_in_red():
    t = traced("reverse")
    bad = [
        dataclasses.replace(s, decoded=list(reversed(s.decoded))) if s.name == "reverse" else s
        for s in t.sops
    ]
    wrong = dataclasses.replace(t, sops=bad)
    assert not wrong.ok and [s.name for s in wrong.disagreements] == ["reverse"]
    page = render(wrong)
    assert 'class="verdict bad"' in page and "disagrees with the interpreter on: reverse" in page
    assert "<tr class=\"bad\" data-sop='reverse'" in page


def test_figures_are_valid_svg_with_a_cell_per_value(tmp_path):
    t = traced("reverse")
    paths = write_figures(t, tmp_path / "figs")
    assert sorted(p.name for p in paths) == sorted(
        [f"head-{h.layer}-{h.head}.svg" for h in t.heads]
        + [f"residual-{k}.svg" for k in range(len(t.residuals))]
    )
    ns = "{http://www.w3.org/2000/svg}"
    for path, hm in zip(paths, all_heatmaps(t)):
        root = ET.parse(path).getroot()
        cells = root.find(f"{ns}g").findall(f"{ns}rect")
        assert len(cells) == len(hm.rows) * len(hm.cols)
        assert [float(c.get("data-v")) for c in cells[: len(hm.cols)]] == pytest.approx(
            hm.values[0], abs=1e-5
        )
    inline = heatmap_svg(all_heatmaps(t)[0])
    assert "xmlns" not in inline  # the page's inline copy needs none


# ------------------------------------------------------------------ the command


def test_trace_command_writes_the_page(capsys, tmp_path):
    out = tmp_path / "rev.html"
    code, stdout, err = main(
        capsys, "trace", str(EXAMPLES / "reverse.rasp"), "--vocab", LETTERS, "--max-len", "8",
        "--input", "hello", "-o", str(out), "--svg-dir", str(tmp_path / "svg"),
    )  # fmt: skip
    assert code == 0, err
    assert f"trace: wrote {out} (2 layers, 2 heads, 1 MLP job; 6 of 6 s-ops" in stdout
    assert "equal the interpreter's: [o, l, l, e, h] (strings)" in stdout
    assert "wrote 8 SVG figures" in stdout and (tmp_path / "svg" / "graph.svg").is_file()
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<h2>Computation graph</h2>" in page


def test_trace_command_exits_1_on_a_disagreement(capsys, tmp_path, monkeypatch):
    import rasp_compiler.trace as trace_pkg

    real = trace_pkg.Traced.trace

    def tampered(self, inp):
        t = real(self, inp)
        sops = [dataclasses.replace(s, decoded=["x"] * len(s.interpreter)) if s.name ==
                "reverse" else s for s in t.sops]  # fmt: skip
        return dataclasses.replace(t, sops=sops)

    monkeypatch.setattr(trace_pkg.Traced, "trace", tampered)
    out = tmp_path / "bad.html"
    code, stdout, _ = main(
        capsys, "trace", str(EXAMPLES / "reverse.rasp"), "--vocab", LETTERS, "--max-len", "6",
        "--input", "abc", "-o", str(out),
    )  # fmt: skip
    assert code == 1
    assert "trace: reverse: the model gives ['x', 'x', 'x']" in stdout
    assert 'class="verdict bad"' in out.read_text()


def test_trace_a_saved_model(capsys, tmp_path, monkeypatch):
    program = tmp_path / "rev.rasp"
    program.write_text((EXAMPLES / "reverse.rasp").read_text())
    monkeypatch.chdir(tmp_path)
    code, _, err = main(capsys, "compile", "rev.rasp", "--vocab", "abc", "--max-len", "4",
                        "-o", "model")  # fmt: skip
    assert code == 0, err
    code, stdout, err = main(capsys, "trace", "model", "--input-json", '["c", "a"]')
    assert code == 0, err
    assert "wrote model.trace.html" in stdout and (tmp_path / "model.trace.html").is_file()
    # the program file changed or is gone: the source the model directory records is used
    program.write_text("x = indices + 1;\nreverse = aggregate(select(x, x, ==), tokens);\n")
    code, stdout, err = main(capsys, "trace", "model", "--input", "ab")
    assert code == 0, err
    assert "opp_index = length - indices - 1;" in (tmp_path / "model.trace.html").read_text()
    program.unlink()
    code, stdout, err = main(capsys, "trace", "model", "--input", "ab", "-o", "gone.html")
    assert code == 0 and "[b, a] (strings)" in stdout, err


def test_trace_a_saved_model_without_its_source(capsys, tmp_path, monkeypatch):
    """A directory that records no source (the program file was gone when it was saved):
    the program file is read, and must still compile to the model."""
    from rasp_compiler.serialize import save_model

    program = tmp_path / "rev.rasp"
    program.write_text((EXAMPLES / "reverse.rasp").read_text())
    monkeypatch.chdir(tmp_path)
    model = compile_program("rev.rasp", vocab="abc", max_len=4)
    program.unlink()
    save_model(model, "model")
    assert json.loads((tmp_path / "model" / "config.json").read_text()).get("source") is None
    code, _, err = main(capsys, "trace", "model", "--input", "ab")
    assert code == 1 and "records no program source" in err and "'rev.rasp'" in err
    program.write_text((EXAMPLES / "reverse.rasp").read_text())
    code, stdout, err = main(capsys, "trace", "model", "--input", "ab")
    assert code == 0 and "[b, a] (strings)" in stdout, err
    program.write_text("x = indices + 1;\nreverse = aggregate(select(x, x, ==), tokens);\n")
    code, _, err = main(capsys, "trace", "model", "--input", "ab")
    assert code == 1 and "does not match the program rev.rasp" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["--input", "hello"], 2, "needs --vocab and --max-len"),
        (["--vocab", "abc", "--max-len", "4"], 2, "one of the arguments --input --input-json"),
        (["--vocab", "abc", "--max-len", "4", "--input", "abz"], 1, "token 'z' at position 2"),
        (["--vocab", "abc", "--max-len", "2", "--input", "abc"], 1, "too long"),
        (["--vocab", "abc", "--max-len", "4", "--input", ""], 2, "--input is empty"),
    ],
)
def test_trace_command_errors(capsys, args, status, message):
    code, _, err = main(capsys, "trace", str(EXAMPLES / "reverse.rasp"), *args)
    assert code == status and message in err and "Traceback" not in err


def test_residual_figures_leave_out_dimensions_that_stay_zero():
    t = traced("reverse")
    hm = residual_heatmap(t, 0)
    kept = set(hm.rows)
    assert "tokens_str='h'" in kept and "tokens_str='z'" not in kept  # "hello" has no z
    for d, label in enumerate(t.dims):
        nonzero = any(row[d] != 0.0 for snap in t.residuals for row in snap)
        assert (label in kept) == nonzero
    page = render(t)
    left_out = len(t.dims) - len(kept)
    assert f"{left_out} of {len(t.dims)} dimensions are 0 at every position" in page
    assert "<code>tokens_str=&#x27;z&#x27;</code>" in page


def example_cases() -> list[tuple[str, str, str]]:
    """(program, vocabulary, example input) from each example's header comments."""
    out = []
    for path in sorted(EXAMPLES.glob("*.rasp")):
        text = path.read_text()
        vocab = re.search(r"^# Vocabulary: (.*)$", text, re.M)
        example = re.search(r'^# Example: "(.*?)"', text, re.M)
        if vocab and example:
            out.append((path.name, vocab[1], example[1]))
    return out


@pytest.mark.parametrize("program, vocab, inp", example_cases())
def test_every_example_traces_in_agreement(program, vocab, inp):
    t = trace_program(EXAMPLES / program, inp, vocab, max(len(inp), 4))
    assert t.ok, [(s.name, s.decoded, s.classes, s.interpreter) for s in t.disagreements]
    assert any(s.agrees for s in t.sops) and len(t.heads) >= 1
    page = render(t)
    assert page.count('class="heatmap"') == len(t.heads) + len(t.residuals)


def test_classes_of_one_value_are_shown_as_values():
    t = traced("reverse")
    opp = next(s for s in t.sops if s.name == "opp_index")
    whole = dataclasses.replace(opp, decoded=None, classes=[[4], [3], [2], [1], [0]])
    split = dataclasses.replace(opp, decoded=None, classes=[[4, 5], [3], [2], [1], [0]])
    for sop, shown in ((whole, "[4, 3, 2, 1, 0] (ints)"), (split, "[{4, 5}, {3}, {2}, {1}, {0}]")):
        page = render(dataclasses.replace(t, sops=[sop]))
        row = page[page.index("data-sop='opp_index'") :].split("</tr>")[0]
        assert f"<td class='mono'>{shown}</td>" in row


def test_a_rewritten_bos_width_is_traced_through_its_count(tmp_path):
    # the reference's BOS width is compiled as a count (compiler/rewrite.py): the trace
    # reads the program as planned, so every s-op of it is found in the residual
    program = tmp_path / "bos.rasp"
    program.write_text(
        "def counted(sel) {\n"
        "    with_first = sel or select(indices, 0, ==);\n"
        "    return 1 / aggregate(with_first, indicator(indices == 0)) - 1;\n"
        "}\n"
        "same = counted(select(tokens, tokens, ==));\n"
    )
    t = trace_program(program, "§abca", "§abc", 8)
    assert t.ok and t.output == t.expected == [0.0, 2.0, 1.0, 1.0, 2.0]
    named = [s for s in t.sops if s.name == "same"]
    assert len(named) == 1 and named[0].decoded == t.expected
    assert all(s.decoded is not None and s.agrees for s in t.sops if s.name in ("same",))
