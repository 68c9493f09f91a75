"""Ground-truth circuits: which heads, MLP units and residual directions compute every
s-op of a compiled program, and the edges between them (``circuit.json``).

The circuit is read off the compiler's own plan, so it is the model's circuit by
construction, not a guess.  :func:`build_circuit` returns a JSON-ready dict::

    {"format": "rasp-compiler-circuit", "version": 1, "program", "sop", "max_len",
     "directions": [one label per residual dimension, as config.json's "labels"],
     "components": [...], "edges": [...], "sops": [...], "output": {...}}

A **component** is one of ``embed`` (the token embedding, which also sets ``one`` and,
for the BOS token, ``bos``), ``pos_embed``, a head ``L{layer}.H{head}``, an MLP job
``L{layer}.M{job}`` (the contiguous hidden units ``units = [start, stop)`` of layer
``layer`` that compute one table), or a BOS clean-up unit ``L{layer}.bos`` (on only at
the BOS position, it subtracts what the layer's heads wrote there; ``"positions":
"bos"``).  Each lists the residual dimensions it ``reads`` (heads: ``query``, ``key``
and ``value`` separately) and ``writes``, and ``stage``: the residual snapshot it
writes (0 the embeddings, ``2l+1`` after layer l's attention, ``2l+2`` after its MLP).
A head that is one part of a selector split over several heads (a width over an ``or``
of selectors, one head per disjoint part) says ``"part": [i, n]``; every head lists its
``score_terms`` (query read-out, key read-out, weight; BOS book-keeping terms apart),
which say exactly which query/key value pairs it selects.

An **edge** ``{"from", "to", "directions"}`` joins a component to a later one that
reads a dimension it writes.  An **s-op** entry gives the program node (``id``,
``name``, ``text``, ``line``, ``inputs``: the s-ops it is made from), how the residual
holds it (``encoding``: categorical, numerical, reciprocal (a count held as its head's
``1/(w+1)``), classes, or null when the model never holds it on its own), the snapshot
``stage`` it is first readable at, its read-out ``directions``, and ``computed_by``: the
components that write those directions at the positions it is read (the embedding
for s-ops that are free linear read-outs).

:func:`downstream` gives the s-ops an ablated component changes: those computed by it
or by any component reachable from it along edges.  ``tests/test_circuits.py`` checks
that by zeroing each head and MLP job on many inputs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .compiler.assemble import build_layout, layer_units
from .compiler.pipeline import make_plan, planned_program
from .compiler.plan.types import HeadKind, Plan, Rep
from .compiler.residual import BOS, ONE, Layout, Lin
from .errors import InputError
from .language import ir
from .model_files import residual_labels
from .runtime import CompiledModel
from .trace.collect import _held_rep, _planner, _text_of, reciprocal_rep, snapshot_names

FORMAT = "rasp-compiler-circuit"
VERSION = 1
CIRCUIT_FILE = "circuit.json"


def build_circuit(
    sop: ir.SOp, model: CompiledModel, names: Mapping[int, str], plan: Plan | None = None
) -> dict[str, Any]:
    """The circuit of ``model``, compiled from ``sop`` (``names``: node id -> name).  With
    ``plan`` (the compiler's own, ``model.compiled_from``), ``sop`` is the program as
    planned and nothing is planned again but the read-outs.

    Raises InputError when the model was not compiled from ``sop`` (layouts differ)."""
    spec = model.spec
    if plan is None:
        root = planned_program(sop, spec.max_len)
        plan = make_plan(
            root,
            spec.vocab,
            spec.max_len,
            dict(names),
            dtype=spec.dtype,
            head_masks=model.config.head_masks is not None,
        )
    else:
        root = sop
    layout = build_layout(plan)
    if _shape(layout.describe()) != _shape(spec.layout):
        raise InputError(
            f"the model does not match the program {spec.program_name}: its residual layout "
            "differs from the one the compiler plans now"
        )
    index = layout.index()
    weights = {k: v.detach().float().cpu().numpy() for k, v in model.transformer.state_dict()
               .items() if k in ("embed.W_E", "pos_embed.W_pos", "unembed.W_U")}  # fmt: skip
    components = _components(plan, layout)
    edges = _edges(components)
    _mark_output_kind(components, edges)
    planner = _planner(root, spec.vocab, spec.max_len, dict(names), plan)
    sops, snapshots = [], snapshot_names(plan.n_layers)
    written = {n.id for n in ir.walk(sop)}
    for node in ir.walk(root):
        if isinstance(node, ir.SOp):
            entry = _sop_entry(node, planner, index, names, components, snapshots)
            if entry["encoding"] is None:
                entry["held_inside"] = _held_inside(node, layout, components)
            if node.id not in written:  # made by the compiler's rewrite of the program
                kind = type(node).__name__.lower() + (
                    f" {node.op}" if isinstance(node, ir.Map) else ""
                )
                entry["name"], entry["rewritten"] = (
                    f"{kind} (rewrite of line {entry['line']})",
                    True,
                )
            sops.append(entry)
    # s-ops are numbered in the order listed (node ids differ from session to session)
    number = {s["id"]: i for i, s in enumerate(sops)}
    for s in sops:
        s["id"], s["inputs"] = number[s["id"]], [number[i] for i in s["inputs"]]
    out_dirs = _dims(plan.output.lins(), index)
    out_id = number[root.id]
    return {
        "format": FORMAT,
        "version": VERSION,
        "program": spec.program_name,
        "sop": spec.sop_name,
        "max_len": spec.max_len,
        "directions": residual_labels(spec, weights),
        "components": components,
        "edges": edges,
        "sops": sops,
        "output": {"sop": out_id, "directions": out_dirs, "read_by": "unembed.W_U"},
    }


def _shape(blocks: Sequence[Mapping[str, Any]]) -> list[tuple[str, int, int]]:
    return [(re.sub(r"#\d+", "", b["name"]), b["start"], b["size"]) for b in blocks]


def _dims(lins: Sequence[Lin], index: Mapping[str, int]) -> list[int]:
    """The directions the read-outs ``lins`` read; the constant direction only where it
    is all they read (a coded output's logits add constants to the code they read)."""
    names = {d for lin in lins for d in lin.names()}
    return sorted(index[d] for d in (names - {ONE} or names))


def _components(plan: Plan, layout: Layout) -> list[dict[str, Any]]:
    idx = layout.index()
    token_dirs = [d for t in plan.tokens for d in t.dirs]
    out: list[dict[str, Any]] = [
        {"id": "embed", "kind": "token_embedding", "stage": 0, "reads": [],
         "writes": sorted(idx[d] for d in {ONE, BOS, *token_dirs})},
        {"id": "pos_embed", "kind": "positional_embedding", "stage": 0, "reads": [],
         "writes": sorted(idx[e.dir] for e in plan.positional)},
    ]  # fmt: skip
    parts = _split_parts(plan)
    for layer in range(plan.n_layers):
        for hi, h in enumerate(plan.heads_in(layer)):
            scored = [t for t in h.qk if not set(t[1].names()) <= {BOS}]
            head: dict[str, Any] = {
                "id": f"L{layer}.H{hi}", "kind": "head", "layer": layer, "head": hi,
                "stage": 2 * layer + 1, "head_kind": h.kind.value, "implements": h.label,
                "line": getattr(h.span, "line", None),
                "reads": _dims([lin for q, k, _ in h.qk for lin in (q, k)]
                               + [lin for _, lin in h.values], idx),
                "query": _dims([q for q, _, _ in h.qk], idx),
                "key": _dims([k for _, k, _ in h.qk], idx),
                "value": _dims([lin for _, lin in h.values], idx),
                "writes": sorted(idx[d] for d, _ in h.values),
                "score_terms": [[_lin(q, idx), _lin(k, idx), c] for q, k, c in scored],
            }  # fmt: skip
            if h.id in parts:
                head["part"] = parts[h.id]
            if h.mask is not None:  # attends only keys whose index compares so (and BOS)
                head["mask"] = h.mask
            kinds = plan.output_kinds
            if kinds is not None and any(d in kinds.width.lin.names() for d, _ in h.values):
                # counts the output aggregate's keys for the unembedding's second logit
                head["output_kind"] = True
            out.append(head)
        units = layer_units(plan, layer)
        start = 0
        for j, (job, table) in enumerate(plan.mlps_in(layer)):
            mine = units[start : start + len(table.units)]
            out.append(
                {
                    "id": f"L{layer}.M{j}",
                    "kind": "mlp",
                    "layer": layer,
                    "job": j,
                    "stage": 2 * layer + 2,
                    "implements": job.label,
                    "line": getattr(job.span, "line", None),
                    "units": [start, start + len(table.units)],
                    "reads": _dims([u.pre for u in mine], idx),
                    "writes": sorted({idx[d] for u in mine for d, _ in u.out}),
                }  # fmt: skip
            )
            start += len(table.units)
        if start < len(units):  # the BOS clean-up unit, last in the layer
            (u,) = units[start:]
            out.append(
                {
                    "id": f"L{layer}.bos",
                    "kind": "bos_cleanup",
                    "layer": layer,
                    "stage": 2 * layer + 2,
                    "positions": "bos",
                    "units": [start, start + 1],
                    "implements": f"removes at BOS what layer {layer}'s heads wrote there",
                    "line": None,
                    "reads": _dims([u.pre], idx),
                    "writes": sorted(idx[d] for d, _ in u.out),
                }  # fmt: skip
            )
    return out


def _split_parts(plan: Plan) -> dict[int, list[int]]:
    """Head id -> [i, n] for the heads that each count one part of a selector split over
    n heads (width heads writing ``NAME#ID:x0``, ``NAME#ID:x1``, ... of one s-op)."""
    groups: dict[str, list[int]] = {}
    for h in plan.heads:
        if h.kind is HeadKind.WIDTH and len(h.values) == 1:
            block = h.values[0][0].rpartition(":")[0]
            groups.setdefault(block, []).append(h.id)
    return {
        hid: [i + 1, len(ids)] for ids in groups.values() if len(ids) > 1
        for i, hid in enumerate(ids)
    }  # fmt: skip


def _lin(lin: Lin, idx: Mapping[str, int]) -> list[list[float]]:
    """A read-out as ``[[dimension, coefficient], ...]``."""
    return [[idx[d], c] for d, c in lin.terms]


def _mark_output_kind(
    components: Sequence[dict[str, Any]], edges: Sequence[Mapping[str, Any]]
) -> None:
    """Also mark ``output_kind`` the MLPs whose every reader is marked so: they write only
    what the head counting the output aggregate's keys reads (its selector's classes)."""
    readers: dict[str, set[str]] = {}
    for e in edges:
        readers.setdefault(e["from"], set()).add(e["to"])
    marked = {c["id"] for c in components if c.get("output_kind")}
    changed = bool(marked)
    while changed:
        changed = False
        for c in components:
            to = readers.get(c["id"], set())
            if c["kind"] == "mlp" and c["id"] not in marked and to and to <= marked:
                c["output_kind"] = True
                marked.add(c["id"])
                changed = True


def _edges(components: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    edges = []
    for a in components:
        written = set(a["writes"])
        for b in components:
            if b["stage"] > a["stage"] and written & set(b["reads"]):
                dims = sorted(written & set(b["reads"]))
                edges.append({"from": a["id"], "to": b["id"], "directions": dims})
    return edges


def _sop_entry(
    node: ir.SOp,
    planner: Any,
    index: dict[str, int],
    names: Mapping[int, str],
    components: Sequence[Mapping[str, Any]],
    snapshots: Sequence[str],
) -> dict[str, Any]:
    encoding, stage, dims = _held(node, planner, index)
    computed_by = [
        c["id"]
        for c in components
        if stage is not None
        and c["stage"] <= stage
        and c.get("positions") != "bos"
        and set(c["writes"]) & set(dims)
    ]
    inputs: list[int] = []
    for child in _operands(node):
        if child.id not in inputs:
            inputs.append(child.id)
    span = node.span
    return {
        "id": node.id,
        "name": names.get(node.id) or _text_of(node),
        "text": _text_of(node),
        "line": span.line if span else None,
        "inputs": inputs,
        "encoding": encoding,
        "stage": stage,
        "snapshot": None if stage is None else snapshots[min(stage, len(snapshots) - 1)],
        "directions": dims,
        "computed_by": computed_by,
    }


def _held_inside(
    node: ir.SOp, layout: Layout, components: Sequence[Mapping[str, Any]]
) -> dict[str, list[Any]]:
    """For an s-op the model never holds on its own: the directions of its roles (a
    width's ``1/(width+1)``, ``NAME#ID:x0``) and the components that write them."""
    idx, role = layout.index(), re.compile(rf"#{node.id}:")
    dims = sorted(idx[d] for b in layout.blocks if role.search(b.name) for d in b.directions)
    writers = [c["id"] for c in components if set(c["writes"]) & set(dims)
               and c.get("positions") != "bos"]  # fmt: skip
    return {"directions": dims, "components": writers}


def _operands(node: ir.Node) -> list[ir.SOp]:
    """The s-ops ``node`` is made from (through its selector, for an aggregate or width)."""
    out: list[ir.SOp] = []
    for child in node.children():
        if isinstance(child, ir.SOp):
            out.append(child)
        elif isinstance(child, ir.Selector):
            out += _operands(child)
    return out


def _held(
    node: ir.SOp, planner: Any, index: dict[str, int]
) -> tuple[str | None, int | None, list[int]]:
    """(encoding, stage, directions) of the read-out :mod:`.trace.collect` decodes."""
    rep: Rep | None = _held_rep(node, planner, index)
    if rep is not None:
        encoding = "numerical" if hasattr(rep, "lin") else "categorical"
        if rep is reciprocal_rep(node, planner):
            encoding = "reciprocal"  # a count's 1/(w+1), as its head writes it
        return encoding, rep.stage, _dims(rep.lins(), index)
    for (nid, _), crep in getattr(planner, "_cat_groups", {}).items():
        if nid == node.id and all(d in index for lin in crep.lins() for d in lin.names()):
            return "classes", crep.stage, _dims(crep.lins(), index)
    return None, None, []


# ---------------------------------------------------------------- using a circuit


def downstream(circuit: Mapping[str, Any], component: str) -> set[int]:
    """The ids of the s-ops that ablating ``component`` changes: those computed by it
    or by a component reachable from it along the circuit's edges."""
    reach, todo = {component}, [component]
    following: dict[str, list[str]] = {}
    for e in circuit["edges"]:
        following.setdefault(e["from"], []).append(e["to"])
    while todo:
        for nxt in following.get(todo.pop(), []):
            if nxt not in reach:
                reach.add(nxt)
                todo.append(nxt)
    return {s["id"] for s in circuit["sops"] if reach & set(s["computed_by"])}


def circuit_for(model: CompiledModel, source: str | None = None) -> dict[str, Any] | None:
    """The circuit of ``model``, planned again from its program: the file its spec names,
    else ``source`` (the program's text).  None when neither gives the model's s-op with
    the model's residual layout (a program changed since, a session without a file)."""
    from .compiler.pipeline import names_of
    from .errors import RaspError
    from .language.lower import choose_sop, load_program, load_source

    spec = model.spec
    if model.compiled_from is not None:  # compiled in this process: its plan is at hand
        root, plan, names = model.compiled_from
        return build_circuit(root, model, names, plan=plan)
    try:
        if os.path.isfile(spec.program_name):
            session = load_program(spec.program_name)
        elif source is not None:
            session = load_source(source)
        else:
            return None
        _, sop = choose_sop(session, spec.sop_name, spec.program_name)
        return build_circuit(sop, model, names_of(session))
    except (RaspError, OSError, RecursionError):
        return None
