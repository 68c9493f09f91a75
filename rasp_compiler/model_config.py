"""The shape of a compiled model: :class:`ModelConfig` and each layer's :class:`LayerShape`
(re-exported by :mod:`rasp_compiler.model`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .errors import ModelFileError

ACT_FNS = ("relu",)
#: a head's static mask: the keys it may attend, ``key index CMP query index`` (BOS,
#: position 0, always), or "all"
HEAD_MASKS = ("all", "<", "<=", ">", ">=", "==", "!=")
#: Most layers a saved model may have: each costs Python objects (about 14 KB) and build
#: time beyond its parameters.  ``serialize`` checks it, with the compiler's parameter
#: limit, before allocating a loaded model; it lives here so the compiler can import it.
MAX_LAYERS = 1 << 12
#: Largest model (parameters) the compiler builds and a model file may hold: 2^28
#: float32 weights are 1 GiB.
MAX_PARAMS = 1 << 28

# ---------------------------------------------------------------- config


@dataclass(frozen=True)
class LayerShape:
    """One layer's attention heads, head width and MLP hidden units."""

    n_heads: int
    d_head: int
    d_mlp: int

    def __post_init__(self) -> None:
        for name in ("n_heads", "d_head", "d_mlp"):
            _check_int(name, getattr(self, name), minimum=0)


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a :class:`Transformer`.

    ``d_vocab`` counts the input token ids (the vocabulary plus BOS and pad),
    ``d_vocab_out`` the output logits, ``n_ctx`` the positions (BOS included).
    ``n_layers``, ``n_heads``, ``d_head`` and ``d_mlp`` may be 0.  Attention scores
    are ``q . k / attn_scale``.  ``layer_shapes`` gives each layer's own shape (none of
    them larger than ``n_heads``, ``d_head``, ``d_mlp``); without it every layer has
    that largest shape.  Constructing a bad config raises ``ValueError``.
    """

    d_model: int
    n_layers: int
    n_heads: int
    d_head: int
    d_mlp: int
    d_vocab: int
    d_vocab_out: int
    n_ctx: int
    attn_scale: float
    act_fn: str = "relu"
    layer_shapes: tuple[LayerShape, ...] | None = None
    #: per layer, per head, the head's mask (:data:`HEAD_MASKS`); None: every head "all"
    head_masks: tuple[tuple[str, ...], ...] | None = None

    def __post_init__(self) -> None:
        for name in ("d_model", "d_vocab", "d_vocab_out", "n_ctx"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("n_layers", "n_heads", "d_head", "d_mlp"):
            _check_int(name, getattr(self, name), minimum=0)
        scale = self.attn_scale
        if isinstance(scale, bool) or not isinstance(scale, int | float):
            raise ValueError(f"attn_scale must be a number, got {scale!r}")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"attn_scale must be finite and > 0, got {scale!r}")
        object.__setattr__(self, "attn_scale", float(scale))
        if self.act_fn not in ACT_FNS:
            raise ValueError(f"act_fn must be one of {ACT_FNS}, got {self.act_fn!r}")
        if self.layer_shapes is not None:
            shapes = tuple(
                s if isinstance(s, LayerShape) else LayerShape(**_shape_dict(s))
                for s in self.layer_shapes
            )
            if len(shapes) != self.n_layers:
                raise ValueError(
                    f"layer_shapes has {len(shapes)} entries for {self.n_layers} layers"
                )
            for i, s in enumerate(shapes):
                if s.n_heads > self.n_heads or s.d_head > self.d_head or s.d_mlp > self.d_mlp:
                    raise ValueError(f"layer {i}'s shape {s} is larger than the model's")
            object.__setattr__(self, "layer_shapes", shapes)
        if self.head_masks is not None:
            self._check_masks()

    def _check_masks(self) -> None:
        masks = self.head_masks
        if isinstance(masks, str) or not isinstance(masks, list | tuple):
            raise ValueError(f"head_masks must be a list per layer, got {masks!r}")
        if len(masks) != self.n_layers:
            raise ValueError(f"head_masks has {len(masks)} entries for {self.n_layers} layers")
        out = []
        for i, row in enumerate(masks):
            if isinstance(row, str) or not isinstance(row, list | tuple):
                raise ValueError(f"head_masks[{i}] must be a list, got {row!r}")
            if len(row) != self.layer(i).n_heads:
                raise ValueError(
                    f"head_masks[{i}] has {len(row)} entries for {self.layer(i).n_heads} heads"
                )
            if any(m not in HEAD_MASKS for m in row):
                raise ValueError(f"head_masks[{i}]: each must be one of {HEAD_MASKS}, got {row!r}")
            out.append(tuple(row))
        object.__setattr__(self, "head_masks", tuple(out))

    def masks(self, i: int) -> tuple[str, ...]:
        """Layer ``i``'s head masks ("all" where a head has none)."""
        if self.head_masks is None:
            return ("all",) * self.layer(i).n_heads
        return self.head_masks[i]

    def layer(self, i: int) -> LayerShape:
        """Layer ``i``'s shape."""
        if self.layer_shapes is None:
            return LayerShape(self.n_heads, self.d_head, self.d_mlp)
        return self.layer_shapes[i]

    def padded(self) -> ModelConfig:
        """The same model with every layer at the largest shape (the uniform view)."""
        masks = None
        if self.head_masks is not None:
            masks = tuple(m + ("all",) * (self.n_heads - len(m)) for m in self.head_masks)
        return replace(self, layer_shapes=None, head_masks=masks)

    @property
    def n_params(self) -> int:
        """The scalar parameters a :class:`Transformer` of this shape holds, computed
        without allocating (equal to ``Transformer(cfg).count_params()``)."""
        M = self.d_model
        blocks = 0
        for i in range(self.n_layers):
            shape = self.layer(i)
            H, D, F = shape.n_heads, shape.d_head, shape.d_mlp
            blocks += 4 * H * M * D + 3 * H * D + M  # W_Q, W_K, W_V, W_O; b_Q, b_K, b_V; b_O
            blocks += 2 * M * F + F + M  # W_in, W_out; b_in; b_out
        embed = (self.d_vocab + self.n_ctx) * M  # W_E, W_pos
        unembed = (M + 1) * self.d_vocab_out  # W_U, b_U
        return embed + blocks + unembed

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (``head_masks`` only when a head has one)."""
        out = asdict(self)
        if out["head_masks"] is None:
            del out["head_masks"]
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """Build a config from :meth:`to_dict` output; ``ModelFileError`` on a bad dict."""
        if not isinstance(d, Mapping):
            raise ModelFileError(f"model config must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        required = names - {"act_fn", "layer_shapes", "head_masks"}
        missing = sorted(required - d.keys())
        unexpected = sorted(set(d.keys()) - names)
        if missing or unexpected:
            raise ModelFileError(
                f"model config: missing fields {missing}, unexpected fields {unexpected}"
            )
        try:
            return cls(**d)
        except (ValueError, TypeError) as e:
            raise ModelFileError(f"model config: {e}") from None


def _shape_dict(s: object) -> dict[str, Any]:
    """A layer shape as read from JSON: an object with exactly the three fields."""
    keys = {"n_heads", "d_head", "d_mlp"}
    if not isinstance(s, Mapping) or set(s) != keys:
        raise ValueError(f"a layer shape must be an object with fields {sorted(keys)}, got {s!r}")
    return dict(s)


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
