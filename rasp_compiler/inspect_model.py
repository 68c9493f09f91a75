"""What ``rasp-compiler inspect`` prints, for a program it compiles or a saved model.

Besides the model's summary (shapes, residual layout, what each head and MLP job
implements) it lists every hidden unit of every layer: the contiguous range each MLP
job's units take, and the BOS clean-up unit (on only at BOS, where it removes what the
layer's heads wrote); and every head, with the part of a split selector it computes
(a width over an ``or`` of selectors is counted by one head per disjoint part, summed
by the MLP after them), what its queries, keys and values read and what it writes.
These come from the model's ground-truth circuit (:mod:`rasp_compiler.circuits`) when
there is one; without one (a saved directory written without circuit.json) the unit
ranges are still read off the layer descriptions and shapes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .runtime import CompiledModel


def saved_circuit(path: str | Path) -> dict[str, Any] | None:
    """The circuit.json of a saved model directory that ``load_model`` has checked (its
    hash is in config.json), or None when the directory has none."""
    file = Path(path) / "circuit.json"
    header = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    if "circuit.json" not in header.get("files", {}):
        return None
    circuit = json.loads(file.read_text(encoding="utf-8"))
    return circuit if isinstance(circuit, dict) else None


def unit_ranges(model: CompiledModel, circuit: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every layer's hidden units by what computes them: ``{"layer", "units": [start,
    stop), "component", "kind" ("mlp" or "bos_cleanup"), "implements", "line"}``."""
    if circuit is not None:
        return [
            {k: c.get(k) for k in ("layer", "units", "implements", "line")}
            | {"component": c["id"], "kind": c["kind"]}
            for c in circuit["components"]
            if c["kind"] in ("mlp", "bos_cleanup")
        ]
    out = []
    for layer, desc in enumerate(model.spec.layers):
        start = 0
        for j, job in enumerate(desc.get("mlp", [])):
            stop = start + int(job["hidden_units"])
            out.append({"layer": layer, "units": [start, stop], "implements": job["implements"],
                        "line": job.get("line"), "component": f"L{layer}.M{j}",
                        "kind": "mlp"})  # fmt: skip
            start = stop
        if model.config.layer(layer).d_mlp > start:  # one more: the BOS clean-up
            out.append({"layer": layer, "units": [start, start + 1], "line": None,
                        "implements": f"removes at BOS what layer {layer}'s heads wrote there",
                        "component": f"L{layer}.bos", "kind": "bos_cleanup"})  # fmt: skip
    return out


def describe(
    model: CompiledModel,
    circuit: Mapping[str, Any] | None,
    as_json: bool,
    certified: Mapping[str, int] | None = None,
) -> str:
    """The text ``inspect`` prints (one JSON object with ``as_json``)."""
    units = unit_ranges(model, circuit)
    if as_json:
        return json.dumps(_info(model, units, circuit, certified), ensure_ascii=False, default=str)
    lines = [model.summary(), "hidden units:"]
    if not units:
        lines.append("  (none)")
    for u in units:
        start, stop = u["units"]
        where = f" (line {u['line']})" if u["line"] else ""
        what = "BOS clean-up" if u["kind"] == "bos_cleanup" else u["implements"] + where
        note = f": {u['implements']}" if u["kind"] == "bos_cleanup" else ""
        lines.append(f"  layer {u['layer']} [{start}, {stop}) {u['component']}  {what}{note}")
    if circuit is None:
        lines.append("(no circuit.json: heads' parts and reads are not recorded)")
        return "\n".join(lines)
    lines.append("heads:")
    labels = circuit["directions"]
    for c in circuit["components"]:
        if c["kind"] != "head":
            continue
        part = f"part {c['part'][0]} of {c['part'][1]} of " if "part" in c else ""
        lines.append(f"  {c['id']} {c['head_kind']}: {part}{c['implements']}")
        values = _named(labels, _inputs(labels, c["value"]))
        lines.append(
            f"      queries read {_bases(labels, c['query'])}; keys read "
            f"{_bases(labels, c['key'])}; values read {values}; "
            f"{len(c['score_terms'])} score terms; writes {_named(labels, c['writes'])}"
            + (
                f"; only keys with key index {c['mask']} query index (and BOS)"
                if "mask" in c
                else ""
            )
        )
    return "\n".join(lines)


def _bases(labels: Sequence[str], dims: Sequence[int]) -> str:
    """The blocks the dimensions belong to (``tokens``, ``indices``), without one and bos."""
    out: list[str] = []
    for d in dims:
        base = labels[d].split(":")[0].split("[")[0]
        if base not in ("one", "bos") and base not in out:
            out.append(base)
    return ", ".join(out) or "nothing (a constant)"


def _inputs(labels: Sequence[str], dims: Sequence[int]) -> list[int]:
    return [d for d in dims if labels[d] not in ("one", "bos")]


def _named(labels: Sequence[str], dims: Sequence[int], most: int = 6) -> str:
    shown = [labels[d] for d in dims[:most]]
    if not shown:
        return "nothing (a constant)"
    return ", ".join(shown) + (f", ... ({len(dims)} in all)" if len(dims) > most else "")


def _info(
    model: CompiledModel,
    units: list[dict[str, Any]],
    circuit: Mapping[str, Any] | None,
    certified: Mapping[str, int] | None,
) -> dict[str, Any]:
    cfg, spec = model.config, model.spec
    return {
        "program": spec.program_name,
        "sop": spec.sop_name,
        "vocab": list(spec.vocab),
        "max_len": spec.max_len,
        "output": spec.output.to_dict(),
        "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads,
        "d_model": cfg.d_model,
        "d_mlp": cfg.d_mlp,
        "d_head": cfg.d_head,
        "layer_shapes": [
            {"n_heads": sh.n_heads, "d_head": sh.d_head, "d_mlp": sh.d_mlp}
            for sh in (cfg.layer(i) for i in range(cfg.n_layers))
        ],
        "d_vocab": cfg.d_vocab,
        "d_vocab_out": cfg.d_vocab_out,
        "n_ctx": cfg.n_ctx,
        "n_params": model.transformer.count_params(),
        "heads_used": sum(len(layer.get("attn", []) or []) for layer in spec.layers),
        "mlps_used": sum(len(layer.get("mlp", []) or []) for layer in spec.layers),
        "compile_seconds": spec.extra.get("compile_seconds"),
        "layers": list(spec.layers),
        "layout": list(spec.layout),
        "dtype": spec.dtype,
        "certified_max_len": None if certified is None else dict(certified),
        "units": units,
        "circuit": circuit,
    }
