"""The model card: the ``README.md`` written into every saved model directory.

It is generated from what ``config.json`` holds (the header :mod:`rasp_compiler.serialize`
writes) and says everything needed to use the weights without this package: the program,
its s-op and source, the vocabulary and token ids, the conventions (BOS at position 0,
pad, bidirectional attention, no layer norm, the attention scale, output decoding), a
table of every head and MLP with the source line it implements, the residual labels, and
a complete forward pass in plain numpy.  ``tests/test_model_card.py`` runs that numpy
code, as printed in the card, and compares it with the runtime.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# The forward pass printed in the card (and run by the tests, as printed).  It is the
# whole model: nothing in it is specific to one program.
NUMPY_FORWARD = '''\
import bisect
import json
import math
from fractions import Fraction

import numpy as np
from safetensors.numpy import load_file

def load(model_dir):
    header = json.load(open(f"{model_dir}/config.json", encoding="utf-8"))
    return header["config"], header["spec"], load_file(f"{model_dir}/model.safetensors")

def forward(cfg, w, ids):
    """ids: [T] int token ids, BOS first, no padding -> logits [T, d_vocab_out]."""
    T = len(ids)
    x = w["embed.W_E"][ids] + w["pos_embed.W_pos"][:T]            # [T, d_model]
    for l in range(cfg["n_layers"]):
        p = f"blocks.{l}."
        q = np.einsum("tm,hmd->htd", x, w[p + "attn.W_Q"]) + w[p + "attn.b_Q"][:, None]
        k = np.einsum("tm,hmd->htd", x, w[p + "attn.W_K"]) + w[p + "attn.b_K"][:, None]
        v = np.einsum("tm,hmd->htd", x, w[p + "attn.W_V"]) + w[p + "attn.b_V"][:, None]
        scores = q @ k.transpose(0, 2, 1) / cfg["attn_scale"]      # [H, T, T]
        for h, m in enumerate((cfg.get("head_masks") or [[]] * (l + 1))[l]):
            if m != "all":  # key position j allowed for query i when j CMP i, or j = 0 (BOS)
                j, i = np.arange(T)[None, :], np.arange(T)[:, None]
                allowed = {"<": j < i, "<=": j <= i, ">": j > i, ">=": j >= i,
                           "==": j == i, "!=": j != i}[m] | (j == 0)
                scores[h] = np.where(allowed, scores[h], -np.inf)
        scores = scores - scores.max(axis=-1, keepdims=True)
        pattern = np.exp(scores) / np.exp(scores).sum(axis=-1, keepdims=True)
        z = pattern @ v                                            # [H, T, d_head]
        x = x + np.einsum("htd,hdm->tm", z, w[p + "attn.W_O"]) + w[p + "attn.b_O"]
        hidden = np.maximum(x @ w[p + "mlp.W_in"] + w[p + "mlp.b_in"], 0.0)   # ReLU
        x = x + hidden @ w[p + "mlp.W_out"] + w[p + "mlp.b_out"]   # no layer norm anywhere
    return x @ w["unembed.W_U"] + w["unembed.b_U"]

def decode(spec, logits):
    """logits [T, d_vocab_out] -> the output values at positions 1..T-1 (BOS dropped)."""
    out = spec["output"]
    if out["encoding"] == "categorical":
        return [out["values"][i] for i in logits[1:].argmax(axis=-1)]
    def nearest(values, x):  # sorted: the nearest value, a tie to the smaller
        i = bisect.bisect_left(values, x)
        return min(values[max(i - 1, 0) : i + 1], key=lambda v: abs(v - x))

    result = []
    for x, m in zip(logits[1:, 0].tolist(), logits[1:, -1].tolist()):
        if out.get("reciprocal"):  # the logit is 1/(w+1) for the count w
            x = 1 / x - 1 if x != 0 else math.inf
        if not math.isfinite(x):
            result.append(x)
        elif out.get("kinds") and math.isfinite(m) and m > 0:  # an aggregate's kind:
            keys = round(1 / m) - 1  # the second logit is 1/(keys + 1)
            if keys <= 0:
                result.append(out["kinds"]["default"])
            elif keys == 1:  # one key: its value, as it is
                result.append(nearest(out["kinds"]["single"], x))
            else:  # several: their mean, a float
                result.append(float(nearest(out["values"], x)))
        elif out["values"] is not None:
            result.append(nearest(out["values"], x))
        elif out["integer"]:
            result.append(int(round(x)))
        elif out["max_denominator"] is not None:
            result.append(float(Fraction(x).limit_denominator(out["max_denominator"])))
        else:
            result.append(float(x))
    return result

def run(model_dir, tokens):
    """tokens: a list of vocabulary atoms (a str for one-character vocabularies)."""
    cfg, spec, w = load(model_dir)
    ids = {json.dumps(t): i for t, i in spec["token_ids"]}
    x = [spec["bos_id"]] + [ids[json.dumps(t)] for t in tokens]
    return decode(spec, forward(cfg, w, np.array(x)))
'''


def model_card(header: Mapping[str, Any], circuit: bool = False) -> str:
    """The README.md text for a config.json header (its ``config``, ``spec``, ``labels``,
    ``source`` and ``compiler_version`` fields); ``circuit``: circuit.json is saved too."""
    cfg, spec = header["config"], header["spec"]
    name, sop = spec["program_name"], spec["sop_name"]
    out = spec["output"]
    vocab = spec["vocab"]
    lines = [
        f"# `{sop}` from `{name}`: a compiled RASP model",
        "",
        f"Compiled by rasp-compiler {header.get('compiler_version', '?')} from the RASP "
        f"program `{name}` (source below); the model computes the s-op `{sop}` for every "
        f"input of 1 to {spec['max_len']} tokens over the vocabulary below, exactly: its "
        "outputs equal the RASP interpreter's.",
        "",
        "| | |",
        "|---|---|",
        f"| s-op | `{sop}` |",
        f"| output | {_output_text(out)} |",
        f"| vocabulary ({len(vocab)}) | {_code(', '.join(json.dumps(t) for t in vocab))} |",
        f"| max length | {spec['max_len']} tokens (n_ctx {cfg['n_ctx']} with BOS) |",
        f"| dtype | certified exact in {spec['dtype']}; weights stored as float32 |",
        f"| shape | d_model {cfg['d_model']}, {cfg['n_layers']} layers, n_heads {cfg['n_heads']}"
        f", d_head {cfg['d_head']}, d_mlp {cfg['d_mlp']} (largest per layer), d_vocab "
        f"{cfg['d_vocab']}, d_vocab_out {cfg['d_vocab_out']} |",
        "",
        "## Files",
        "",
        "* `model.safetensors`: the weights, float32, TransformerLens names and shapes (below).",
        "* `config.json`: `config` (shapes, `attn_scale`), `spec` (vocabulary, `token_ids`, "
        "`bos_id`, `pad_id`, `output`, residual `layout`, `layers`), `labels` (one per "
        "residual dimension), `source`, `compiler_version`, and SHA-256 sums of everything "
        "(`rasp-compiler` refuses a modified directory).",
        "* `tokenizer.json`: a word-level tokenizer for the HuggingFace `tokenizers` library "
        "(`Tokenizer.from_file`): it adds BOS and pads with the pad id.",
        *(
            [
                "* `circuit.json`: the ground-truth circuit: for every s-op, the heads, MLP units "
                "and residual dimensions that compute it, and the edges between them "
                "(`rasp-compiler inspect` on this directory lists them; see the project's "
                "docs/circuits.md)."
            ]
            if circuit
            else []
        ),
        "* `README.md`: this card.",
        "",
        "## Conventions",
        "",
        f"* Input ids: the vocabulary in order (`{_first(vocab)}` is 0), then BOS = "
        f"{spec['bos_id']}, then pad = {spec['pad_id']}.  Position 0 always holds BOS; the "
        f"input's tokens are at positions 1..n.",
        "* Padding (a batch of different lengths): pad ids after the tokens, and pad *keys* "
        "must be masked out of attention (score -inf).  The pad id embeds to zero.",
        "* Attention is bidirectional: every query sees every (non-pad) key, except in heads "
        "with a static mask (`config.head_masks`, per layer and head: `<` lets query position "
        "i see key positions j < i, and so on; BOS, position 0, is always seen).",
        f"* Scores are `q . k / attn_scale` with `attn_scale = {cfg['attn_scale']!r}` (not "
        "`sqrt(d_head)` of each layer); biases are zero but part of the maths.",
        "* No layer norm, no final norm, ReLU MLPs; the residual stream is `x = W_E[ids] + "
        "W_pos[:T]`, then per layer `x += attn(x)`, `x += mlp(x)`; logits = `x @ W_U + b_U`.",
        "* Layers have their own shapes (`config.layer_shapes`): a layer's tensors have "
        "exactly its heads, head width and units.  Padding every layer with zeros to the "
        "largest shape gives the same function.",
        f"* Output: {_decoding_text(out)}  Position 0 (BOS) is not an output.",
        "",
        "## Layers",
        "",
        "Every head and MLP, and the source line it implements:",
        "",
        "| layer | part | kind | implements | line | source |",
        "|---|---|---|---|---|---|",
    ]
    source_lines = (header.get("source") or "").splitlines()
    shapes = cfg.get("layer_shapes") or [None] * cfg["n_layers"]
    for i, layer in enumerate(spec["layers"]):
        lines += _layer_rows(i, layer, source_lines)
        shape = shapes[i] if i < len(shapes) else None
        if isinstance(shape, Mapping):
            lines.append(
                f"| {i} | shape | | heads: {shape['n_heads']} of width {shape['d_head']}, "
                f"{shape['d_mlp']} MLP units (the last one, if any, cleans BOS) | | |"
            )
    lines += [
        "",
        "## The residual stream",
        "",
        "One label per dimension (`config.json` `labels`): `block:value` is the one-hot "
        "direction of that value, `block[i]` the i-th direction of a block whose values are "
        "not recorded, a bare name a one-dimensional (numerical or helper) direction; "
        "`one` is 1 at every position, `bos` 1 at BOS only.",
        "",
        "| dims | labels |",
        "|---|---|",
    ]
    labels = header.get("labels") or []
    for e in spec["layout"]:
        start, size = e["start"], e["size"]
        shown = ", ".join(f"`{lab}`" for lab in labels[start : start + size])
        lines.append(f"| {start}..{start + size - 1} | {_cell(shown)} |")
    lines += [
        "",
        "## Load it with safetensors and numpy",
        "",
        "This is the whole forward pass (one input, no padding needed):",
        "",
        "```python",
        NUMPY_FORWARD.rstrip(),
        "",
        f"print(run(MODEL_DIR, {_example(vocab, spec['max_len'])!r}))",
        "```",
        "",
        "## Load it with TransformerLens",
        "",
        "```python",
        "from rasp_compiler import load_model",
        "from rasp_compiler.export import to_transformer_lens",
        "",
        "# pip install 'rasp-compiler[transformer-lens]'",
        "tl = to_transformer_lens(load_model(MODEL_DIR))",
        f"tokens = tl.encode({[_example(vocab, spec['max_len'])]!r})  # BOS first, pad ids after",
        "logits, cache = tl.model.run_with_cache(tokens)  # no attention mask needed",
        "print(tl.decode(logits, tokens))",
        "```",
        "",
        "The exported model has the same residual stream and the same weights, padded to "
        "one shape per layer, plus one extra column per head that makes pad keys "
        "invisible, so padded batches need no mask (see docs/transformer-lens.md in "
        "rasp-compiler).",
        "",
        "## Program source",
        "",
    ]
    source = header.get("source")
    if source is None:
        lines.append("(not recorded: the program did not come from a file)")
    else:
        lines += [f"`{name}`:", "", "```", source.rstrip("\n"), "```"]
    return "\n".join(lines) + "\n"


def _layer_rows(i: int, layer: Mapping[str, Any], source_lines: list[str]) -> list[str]:
    """Table rows for one layer's heads and MLPs (entries as the compiler writes them;
    anything else is shown as text)."""
    rows = []
    for part in ("attn", "mlp"):
        items = layer.get(part) or []
        for item in items if isinstance(items, list) else [items]:
            if not isinstance(item, Mapping):
                rows.append(f"| {i} | {part} | | {_cell(str(item))} | | |")
                continue
            line = item.get("line")
            what = (
                f"head {item.get('head')} | {item.get('kind')}"
                if part == "attn"
                else f"MLP | {item.get('hidden_units')} units"
            )
            rows.append(
                f"| {i} | {what} | {_cell(str(item.get('implements', '')))} | "
                f"{line if line is not None else ''} | {_source_cell(source_lines, line)} |"
            )
    return rows


def _output_text(out: Mapping[str, Any]) -> str:
    if out["encoding"] == "categorical":
        return f"categorical over {len(out['values'])} values"
    if out.get("kinds"):
        return "numerical (two logits: the number and its aggregate's 1/(keys + 1))"
    if out.get("reciprocal"):
        return "numerical (one logit, 1/(count + 1))"
    return "numerical (one logit)"


def _decoding_text(out: Mapping[str, Any]) -> str:
    if out["encoding"] == "categorical":
        values = ", ".join(json.dumps(v) for v in out["values"])
        return (
            f"categorical: logit i is the value `values[i]`, the output at a position is "
            f"`values[argmax]`, with values {_code(values)}."
        )
    if out["values"] is not None:
        how = f"the nearest of {_code(', '.join(json.dumps(v) for v in out['values']))}"
        how += " (a tie goes to the smaller)"
    elif out["integer"]:
        how = "rounded to an int"
    elif out["max_denominator"] is not None:
        how = f"the nearest fraction with denominator at most {out['max_denominator']}"
    else:
        how = "the float itself"
    if out.get("kinds"):
        default = json.dumps(out["kinds"]["default"])
        return (
            f"numerical: logit 0 is the number x, logit 1 is 1/(keys + 1) for the keys the "
            f"output aggregate selects, which decides the kind as the interpreter does: no "
            f"key gives the default {_code(default)}, one key the value it holds (the nearest "
            f"of the aggregated s-op's values), several keys their mean, {how}, as a float."
        )
    if out.get("reciprocal"):
        return (
            "numerical: the single logit x at a position is 1/(w + 1) for the count w (the "
            f"output is a selector_width, read from its counting head); 1/x - 1 decodes to {how}."
        )
    return f"numerical: the single logit x at a position decodes to {how}."


def _code(text: str) -> str:
    return f"`{text.replace('`', chr(39))}`" if len(text) < 400 else f"`{text[:400]}` ..."


def _first(vocab: list[Any]) -> str:
    return json.dumps(vocab[0])


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _source_cell(lines: list[str], line: int | None) -> str:
    if line is None or not 1 <= line <= len(lines):
        return ""
    text = lines[line - 1].strip()
    return f"`{_cell(text[:120])}`" if text else ""


def _example(vocab: list[Any], max_len: int) -> Any:
    tokens = [vocab[i % len(vocab)] for i in range(min(3, max_len))]
    return "".join(tokens) if all(isinstance(t, str) and len(t) == 1 for t in tokens) else tokens
