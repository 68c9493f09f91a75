"""Common sub-expressions shared: structurally equal IR nodes become one node.

A program may build the same s-op twice (a library function called twice with the
same arguments, a ternary that repeats an operand).  Each copy would otherwise get its
own heads and MLPs; nested repetition makes that exponential.  Two nodes are equal
when they have the same type, the same fields (atoms compared with their type, so 1,
1.0 and True differ) and equal children.  The first of equal nodes is kept, with its
id and span, so names and error locations still point at the user's code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import Any

from ..language import ir


def share_common(root: ir.SOp) -> ir.SOp:
    """``root`` with structurally equal sub-expressions merged (see the module doc)."""
    canon: dict[tuple[Hashable, ...], ir.Node] = {}
    new: dict[int, ir.Node] = {}  # old id -> the node standing for it
    for node in ir.walk(root):
        changed: dict[str, Any] = {}
        key: list[Hashable] = [type(node).__name__]
        for f in dataclasses.fields(node):
            if f.name in ("span", "id"):
                continue
            value = getattr(node, f.name)
            shared = _operand(value, new)
            if shared is not value:
                changed[f.name] = shared
            key.append((f.name, _key(shared)))
        k = tuple(key)
        if k in canon:
            new[node.id] = canon[k]
            continue
        node = dataclasses.replace(node, **changed) if changed else node  # keeps id and span
        canon[k] = node
        new[node.id] = node
    out = new[root.id]
    assert isinstance(out, ir.SOp)
    return out


def _operand(value: object, new: dict[int, ir.Node]) -> object:
    if isinstance(value, ir.Node):
        return new[value.id]
    if isinstance(value, tuple) and any(isinstance(v, ir.Node) for v in value):
        return tuple(new[v.id] if isinstance(v, ir.Node) else v for v in value)
    return value


def _key(value: object) -> Hashable:
    if isinstance(value, ir.Node):
        return ("node", value.id)
    if isinstance(value, ir.Const):
        return ("const", ir.atom_key(value.value))
    if isinstance(value, tuple):
        return ("tuple", tuple(_key(v) for v in value))
    if isinstance(value, str | int | float | bool):
        return ("atom", ir.atom_key(value))
    return ("repr", repr(value))
