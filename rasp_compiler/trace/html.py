"""Render a :class:`~rasp_compiler.trace.collect.Trace` as one self-contained HTML page.

Everything is inline (styles, the heatmaps as SVG, a small script): the page needs no
network when viewed.  Layer by layer it shows each head's attention heatmap titled with
the source line and expression it implements (the interpreter's selector outlined),
each MLP with what it computes, and the s-ops readable after each sublayer; then every
s-op's decoded value next to the interpreter's (a disagreement in red) and the residual
stream after every sublayer with one labelled row per dimension.

The script shows a hovered cell's query, key and weight under its heatmap, and records
what it drew: each heatmap's drawn size and page position go into its ``data-drawn``
and ``data-at`` attributes, a count into ``#render-status``; any script error is written
into ``#script-errors``.  (The browser test reads those with ``chromium --dump-dom``.)
"""

from __future__ import annotations

from html import escape

from ..language.display import format_sop
from ..language.ir import Atom
from .collect import HeadTrace, SOpTrace, Trace
from .figures import active_dims, head_heatmap, heatmap_svg, residual_heatmap

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1400px; }
code, pre, .mono { font-family: ui-monospace, monospace; }
h1 { font-size: 22px; } h2 { font-size: 18px; border-bottom: 1px solid #ccc; }
h3 { font-size: 15px; margin-bottom: 4px; }
.verdict { padding: 8px 12px; border-radius: 6px; font-weight: bold; }
.verdict.ok { background: #e6f4ea; color: #1e6b34; }
.verdict.bad, .bad { background: #fde2e1; color: #b00020; }
.source { background: #f7f7f7; padding: 8px; border-radius: 6px; line-height: 1.4; }
.source .ln { color: #999; display: inline-block; width: 3em; text-align: right;
  margin-right: 1em; user-select: none; }
.source .used { background: #fff3bf; }
.figures { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
figure { margin: 0; border: 1px solid #ddd; border-radius: 6px; padding: 8px; }
figcaption { max-width: 520px; font-size: 13px; margin-top: 6px; }
.readout { font-size: 12px; color: #555; min-height: 1.2em; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.ok { color: #1e6b34; } td.none { color: #888; }
#script-errors:empty { display: none; }
#script-errors { background: #fde2e1; color: #b00020; padding: 8px; }
"""

# Error capture comes first, so an error anywhere later is recorded.
SCRIPT_HEAD = """
window.__traceErrors = [];
window.addEventListener('error', function (e) {
  var msg = (e.message || 'error') + (e.lineno ? ' (line ' + e.lineno + ')' : '');
  window.__traceErrors.push(msg);
  var box = document.getElementById('script-errors');
  if (box) { box.textContent = window.__traceErrors.join('\\n'); }
});
"""

SCRIPT_BODY = """
(function () {
  var maps = document.querySelectorAll('svg.heatmap');
  var drawn = 0;
  maps.forEach(function (svg) {
    var box = svg.getBoundingClientRect();
    var cells = svg.querySelectorAll('g.cells rect').length;
    var want = Number(svg.dataset.rows) * Number(svg.dataset.cols);
    svg.dataset.drawn = Math.round(box.width) + 'x' + Math.round(box.height);
    svg.dataset.at = Math.round(box.left + window.scrollX) + ',' +
      Math.round(box.top + window.scrollY);
    svg.dataset.cellsDrawn = String(cells);
    if (box.width > 0 && box.height > 0 && cells === want) { drawn += 1; }
    var readout = svg.parentNode.querySelector('.readout');
    svg.addEventListener('mouseover', function (e) {
      var t = e.target.querySelector && e.target.querySelector('title');
      if (readout && t) { readout.textContent = t.textContent; }
    });
  });
  var status = document.getElementById('render-status');
  status.textContent = drawn + ' of ' + maps.length + ' heatmaps drawn';
  status.dataset.drawn = String(drawn);
  status.dataset.total = String(maps.length);
  var box = document.getElementById('script-errors');
  box.textContent = window.__traceErrors.join('\\n');
})();
"""


def render(trace: Trace, graph: str | None = None) -> str:
    """The trace page's HTML text; ``graph``, an SVG of the computation graph (from
    ``draw``), is shown after the layers."""
    title = f"Trace of {trace.sop_name} ({trace.program}) on {_input_text(trace)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        f"<style>{STYLE}</style>",
        f"<script>{SCRIPT_HEAD}</script>",
        "</head><body>",
        '<pre id="script-errors"></pre>',
        f"<h1>{_e(title)}</h1>",
        _verdict(trace),
        _summary(trace),
        _source(trace),
    ]
    for layer in range(trace.n_layers):
        parts.append(_layer(trace, layer))
    if graph is not None:
        parts.append(
            "<h2>Computation graph</h2><p>Every node of the program, grouped by the layer "
            "and head that compute it, with its value on the input (a selector as a grid).</p>"
            f"<div class='graph'>{graph}</div>"
        )
    parts += [_sop_table(trace), _residuals(trace)]
    parts += ['<p id="render-status" class="readout"></p>', f"<script>{SCRIPT_BODY}</script>"]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------ sections


def _verdict(trace: Trace) -> str:
    n = sum(1 for s in trace.sops if s.agrees is not None)
    if trace.ok:
        return (
            '<p class="verdict ok" id="verdict">The model agrees with the interpreter: the '
            f"output and all {n} s-ops read back from the residual stream are equal.</p>"
        )
    bad = ", ".join(s.name for s in trace.disagreements) or "the output"
    return (
        '<p class="verdict bad" id="verdict">The model disagrees with the interpreter on: '
        f"{_e(bad)}.</p>"
    )


def _summary(trace: Trace) -> str:
    rows = [
        ("input", " ".join(trace.tokens[1:])),
        ("model output", _show(trace.output)),
        ("interpreter output", _show(trace.expected)),
        ("model", f"{_n(trace.n_layers, 'layer')}, {_n(len(trace.heads), 'head')}, "
                  f"{_n(len(trace.mlps), 'MLP job')}, d_model {trace.d_model}, "
                  f"max length {trace.max_len}"),
        ("vocabulary", " ".join(str(t) for t in trace.vocab)),
    ]  # fmt: skip
    body = "".join(f"<tr><th>{_e(k)}</th><td class='mono'>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _source(trace: Trace) -> str:
    used = {h.line for h in trace.heads} | {m.line for m in trace.mlps}
    lines = []
    for i, text in enumerate(trace.source, start=1):
        cls = ' class="used"' if i in used else ""
        lines.append(f'<span id="line-{i}"{cls}><span class="ln">{i}</span>{_e(text)}</span>')
    return "<h2>Program</h2><pre class='source'>" + "\n".join(lines) + "</pre>"


def _layer(trace: Trace, layer: int) -> str:
    out = [f'<section class="layer" id="layer-{layer}"><h2>Layer {layer}</h2>']
    heads = trace.heads_in(layer)
    out.append(f"<h3>Attention: {_n(len(heads), 'head')}</h3>")
    if heads:
        out.append('<div class="figures">')
        out += [_head(trace, h) for h in heads]
        out.append("</div>")
    out.append(_written(trace, 2 * layer + 1))
    mlps = trace.mlps_in(layer)
    out.append(f"<h3>MLP: {_n(len(mlps), 'job')}</h3>")
    if mlps:
        items = "".join(
            f"<li>{_line_link(m.line)} computes <code>{_e(m.implements)}</code> "
            f"({m.hidden_units} hidden units){_quote(m.source_line)}</li>"
            for m in mlps
        )
        out.append(f"<ul class='mlps'>{items}</ul>")
    out.append(_written(trace, 2 * layer + 2))
    out.append("</section>")
    return "\n".join(out)


def _head(trace: Trace, h: HeadTrace) -> str:
    svg = heatmap_svg(head_heatmap(h, trace.tokens))
    what = (
        "copies (or averages) the values at the keys it attends to"
        if h.kind == "aggregate"
        else "attends to BOS and the selected keys equally: its output at BOS, "
        "1/(width+1), gives the selector's width"
    )
    sel = (
        f"Outlined: the cells the selector <code>{_e(h.selector_text)}</code> selects, "
        "as the interpreter computes it."
        if h.selector is not None
        else "It has no selector: every query attends the last token, whose position is the length."
        if h.implements == "Length"
        else "Every key is selected."
    )
    return (
        f'<figure class="head" id="fig-head-{h.layer}-{h.head}">{svg}'
        '<div class="readout"></div>'
        f"<figcaption>{_line_link(h.line)} <code>{_e(h.implements)}</code>"
        f"{_quote(h.source_line)}<br>This {h.kind} head {what} (sharpness {h.beta:g}). "
        f"Rows are queries, columns keys; BOS is position 0. {sel}</figcaption></figure>"
    )


def _written(trace: Trace, stage: int) -> str:
    sops = trace.written_at(stage)
    if not sops:
        return ""
    items = "".join(
        f"<li><b>{_e(s.name)}</b> = <span class='mono'>{_e(_decoded(s))}</span> "
        f"{_agree_mark(s)}</li>"
        for s in sops
    )
    return f"<p>Readable after this sublayer:</p><ul>{items}</ul>"


def _sop_table(trace: Trace) -> str:
    head = (
        "<tr><th>s-op</th><th>line</th><th>source</th><th>held as</th><th>read after</th>"
        "<th>interpreter</th><th>decoded from the residual</th><th>read-out</th><th></th></tr>"
    )
    rows = [head]
    for s in trace.sops:
        cls = ' class="bad"' if s.agrees is False else ""
        where = trace.snapshots[s.stage] if s.stage is not None else "-"
        held = s.encoding or "not held on its own"
        decoded = _show(s.decoded) if s.decoded is not None else _classes(s)
        raw = ", ".join(f"{x:.3g}" for x in s.raw[:12]) + (" ..." if len(s.raw) > 12 else "")
        rows.append(
            f"<tr{cls} data-sop='{_e(s.name)}' data-agrees='{s.agrees}'>"
            f"<td><b>{_e(s.name)}</b></td><td>{_line_link(s.line)}</td>"
            f"<td class='mono'>{_e(s.text)}</td><td>{_e(held)}</td><td>{_e(where)}</td>"
            f"<td class='mono'>{_e(_show(s.interpreter))}</td><td class='mono'>{_e(decoded)}</td>"
            f"<td class='mono'>{_e(raw)}</td><td>{_agree_mark(s)}</td></tr>"
        )
    note = (
        "<p>Each s-op is read from the residual stream right after the sublayer that writes "
        "it: a one-hot by its largest read-out (the read-out column shows that value), a "
        "number by its read-out rounded to the nearest value the s-op can take; 'classes' "
        "are groups of values the heads reading the s-op treat alike, one read-out each "
        "(the class read back must hold the interpreter's value). An s-op "
        "'not held on its own' is computed inside a head or an MLP that needs it.</p>"
    )
    return "<h2>Every s-op: interpreter and model</h2>" + note + f"<table>{''.join(rows)}</table>"


def _residuals(trace: Trace) -> str:
    out = [
        "<h2>Residual stream</h2>",
        "<p>After the embeddings and after every sublayer: one row per residual dimension, "
        "labelled with the direction it holds (<code>name=value</code> for a one-hot), one "
        "column per position. Blocks: "
        + ", ".join(f"<code>{_e(n)}</code> [{s}, {s + z})" for n, s, z in trace.blocks)
        + ".</p>",
    ]
    active = set(active_dims(trace))
    zero = [d for i, d in enumerate(trace.dims) if i not in active]
    if zero:
        listed = ", ".join(f"<code>{_e(d)}</code>" for d in zero)
        out.append(
            f"<details><summary>{len(zero)} of {len(trace.dims)} dimensions are 0 at every "
            f"position after every sublayer and are left out of the figures</summary>"
            f"<p>{listed}</p></details>"
        )
    for k in range(len(trace.residuals)):
        svg = heatmap_svg(residual_heatmap(trace, k))
        out.append(
            f'<details open class="residual"><summary>after {_e(trace.snapshots[k])}</summary>'
            f'<figure>{svg}<div class="readout"></div></figure></details>'
        )
    return "\n".join(out)


# ------------------------------------------------------------------ helpers


def _decoded(s: SOpTrace) -> str:
    return _show(s.decoded) if s.decoded is not None else _classes(s)


def _classes(s: SOpTrace) -> str:
    """Classes read back, ``[{0}, {1, 2}]`` (the values when every class has one);
    ``-`` when none."""
    if s.classes is None:
        return "-"
    if all(len(c) == 1 for c in s.classes):  # each class one value: the values themselves
        return _show([c[0] for c in s.classes])
    return "[" + ", ".join("{" + ", ".join(map(str, c)) + "}" for c in s.classes) + "]"


def _agree_mark(s: SOpTrace) -> str:
    if s.agrees is None:
        return "<span class='none'>(not held)</span>"
    if s.agrees:
        return "<span class='ok'>= interpreter</span>"
    return f"<span class='bad'>interpreter says {_e(_show(s.interpreter))}</span>"


def _n(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _line_link(line: int | None) -> str:
    return f'<a href="#line-{line}">line {line}</a>' if line is not None else "(library)"


def _quote(text: str) -> str:
    return f"<br><code class='src'>{_e(text)}</code>" if text else ""


def _input_text(trace: Trace) -> str:
    toks = trace.tokens[1:]
    if all(len(t) == 1 for t in toks):
        return '"' + "".join(toks) + '"'
    return "[" + ", ".join(toks) + "]"


def _show(values: list[Atom]) -> str:
    return format_sop(values)


def _e(text: str) -> str:
    return escape(text, quote=True)
