"""A compiled model as a ready TransformerLens model.

:func:`to_transformer_lens` builds a ``HookedTransformer`` when TransformerLens 3.x is
installed, or, with TransformerLens 4.x (which has no ``HookedTransformer``), the native
``TransformerBridge`` (``TransformerBridge.boot_native``), and loads the weights of
:func:`~rasp_compiler.export.weights.tl_weights` into it strictly (every parameter set,
none left at its initial value).  Both have the usual hook names
(``blocks.{l}.hook_resid_pre``, ``hook_resid_mid``, ``hook_resid_post``,
``blocks.{l}.attn.hook_pattern``, ...).

It comes back as a :class:`TransformerLensModel`: the model, plus ``encode`` (inputs ->
token ids: BOS, the tokens, pad ids), ``decode`` (logits -> output values, the way the
runtime decodes), the residual ``labels``, the tokenizer's ``token_ids`` (word -> id)
and, when the HF ``tokenizers`` library is installed, a ``tokenizers.Tokenizer``.
TransformerLens itself is an optional dependency: importing this module does not need it.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..language.ir import Atom
from ..model_files import residual_labels, tokenizer_json
from ..runtime import CompiledModel, Input, ModelSpec
from .weights import ExportError, TLShape, tl_weights

INSTALL_HINT = "pip install 'rasp-compiler[transformer-lens]'"


class MissingDependency(ExportError):
    """An optional dependency (TransformerLens) is not installed."""


def transformer_lens_version() -> str | None:
    """The installed TransformerLens version, or None."""
    if importlib.util.find_spec("transformer_lens") is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformer_lens")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class TransformerLensModel:
    """An exported model and what its numbers mean.

    ``model`` is a ``HookedTransformer`` (``kind == "HookedTransformer"``) or a
    ``TransformerBridge`` (``kind == "TransformerBridge"``).  Its residual stream is the
    compiled model's, dimension for dimension (``labels``); each head has one extra last
    column in ``hook_q`` / ``hook_k`` (the pad key column), and layers have
    ``heads_per_layer[l]`` real heads followed by zero padding heads.
    """

    model: Any
    kind: str
    spec: ModelSpec
    shape: TLShape
    labels: list[str]
    heads_per_layer: list[int]
    token_ids: dict[str, int]
    tokenizer: Any = None
    _compiled: CompiledModel | None = field(default=None, repr=False)

    @property
    def bos_id(self) -> int:
        return self.spec.bos_id

    @property
    def pad_id(self) -> int:
        return self.spec.pad_id

    def encode(self, inputs: Sequence[Input]) -> torch.Tensor:
        """Inputs (a str is one token per character, or a list of atoms) -> token ids
        [B, T]: BOS, the tokens, then pad ids.  No attention mask is needed."""
        compiled = self._compiled or _spec_only(self.spec)
        tokens, _ = compiled.encode(list(inputs))
        return tokens.to(_device(self.model))

    def decode(self, logits: torch.Tensor, tokens: torch.Tensor) -> list[list[Atom]]:
        """logits [B, T, d_vocab_out] for ``tokens`` [B, T] -> each row's output values
        (at the non-pad positions after BOS), decoded as the runtime decodes them."""
        lengths = ((tokens != self.pad_id).sum(dim=1) - 1).tolist()
        return self.spec.output.decode_logits(logits.detach().float().cpu(), lengths)

    def run(self, inputs: Sequence[Input]) -> list[list[Atom]]:
        """Encode, run the TransformerLens model, decode."""
        tokens = self.encode(inputs)
        with torch.no_grad():
            logits = self.model(tokens)
        return self.decode(logits, tokens)


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _spec_only(spec: ModelSpec) -> CompiledModel:
    """A CompiledModel with zero weights: enough to encode inputs for ``spec``."""
    from ..model import ModelConfig, Transformer

    cfg = ModelConfig(
        d_model=1, n_layers=0, n_heads=0, d_head=0, d_mlp=0, d_vocab=spec.d_vocab,
        d_vocab_out=spec.output.d_vocab_out, n_ctx=spec.max_len + 1, attn_scale=1.0,
    )  # fmt: skip
    return CompiledModel(Transformer(cfg), spec)


def to_transformer_lens(model: CompiledModel, device: str | torch.device = "cpu") -> Any:
    """``model`` as a :class:`TransformerLensModel` (float32, on ``device``).

    Raises :class:`MissingDependency` when TransformerLens is not installed,
    :class:`ExportError` when the model cannot be exported exactly."""
    version = transformer_lens_version()
    if version is None:
        raise MissingDependency(
            f"TransformerLens is not installed; install it with: {INSTALL_HINT}"
        )
    shape, weights = tl_weights(model)  # float32 copies on the CPU; model is left as it is
    return build(model.spec, shape, weights, device, compiled=model)


def build(
    spec: ModelSpec,
    shape: TLShape,
    weights: Mapping[str, torch.Tensor],
    device: str | torch.device = "cpu",
    compiled: CompiledModel | None = None,
) -> TransformerLensModel:
    """A :class:`TransformerLensModel` from exported weights (``HookedTransformer`` names)."""
    if _has_hooked_transformer():
        tl_model, kind = _hooked_transformer(shape, weights), "HookedTransformer"
    else:
        tl_model, kind = _bridge(shape, weights), "TransformerBridge"
    if torch.device(device) != torch.device("cpu"):
        tl_model = tl_model.to(device)
    tl_model.eval()
    arrays = {k: weights[k].numpy() for k in ("embed.W_E", "pos_embed.W_pos", "unembed.W_U")}
    tj = tokenizer_json(spec)
    return TransformerLensModel(
        model=tl_model,
        kind=kind,
        spec=spec,
        shape=shape,
        labels=residual_labels(spec, arrays),
        heads_per_layer=[_real_heads(spec, i) for i in range(shape.n_layers)],
        token_ids=dict(tj["model"]["vocab"]),
        tokenizer=_hf_tokenizer(tj),
        _compiled=compiled,
    )


def _has_hooked_transformer() -> bool:
    """TransformerLens 3.x (4.x raises ImportError on ``HookedTransformer``)."""
    try:
        from transformer_lens import HookedTransformer  # noqa: F401
    except ImportError:
        return False
    return True


def _real_heads(spec: ModelSpec, layer: int) -> int:
    if layer < len(spec.layers):
        attn = spec.layers[layer].get("attn")
        if isinstance(attn, list):
            return len(attn)
    return 0


def _hf_tokenizer(tj: dict[str, Any]) -> Any:
    if importlib.util.find_spec("tokenizers") is None:
        return None
    import tokenizers

    return tokenizers.Tokenizer.from_str(json.dumps(tj))


def _hooked_transformer(shape: TLShape, weights: Mapping[str, torch.Tensor]) -> Any:
    """TransformerLens 3.x: a HookedTransformer with every parameter loaded."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        **shape.hooked_config(), init_weights=False, device="cpu", dtype=torch.float32
    )
    tl_model = HookedTransformer(cfg, tokenizer=None, move_to_device=False)
    params = dict(tl_model.named_parameters())
    _check_keys(params.keys(), weights.keys())
    state = tl_model.state_dict()  # buffers (masks) as TransformerLens made them
    state.update({k: weights[k] for k in params})
    tl_model.load_state_dict(state, strict=True)
    return tl_model


def _bridge(shape: TLShape, weights: Mapping[str, torch.Tensor]) -> Any:
    """TransformerLens 4.x: the native TransformerBridge, its weights from ours."""
    from transformer_lens import TransformerBridge, TransformerBridgeConfig

    kwargs = shape.hooked_config()
    kwargs.pop("default_prepend_bos")
    cfg = TransformerBridgeConfig(**kwargs, init_weights=False)
    bridge = TransformerBridge.boot_native(cfg, dtype=torch.float32)
    native = bridge.original_model
    state = native.state_dict()
    ours = _native_weights(shape, weights)
    names = {k: k.replace("._original_component", "") for k in state}
    missing = sorted(set(names.values()) - ours.keys())
    if missing or ("head.bias" not in names.values() and torch.any(ours["head.bias"])):
        raise ExportError(
            f"cannot load the TransformerLens bridge: weights missing {missing}, or its "
            "unembedding has no bias for a nonzero b_U"
        )
    native.load_state_dict({k: ours[n] for k, n in names.items()}, strict=True)
    return bridge


def _native_weights(shape: TLShape, w: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HookedTransformer-named weights -> the TL-native model's ``nn.Linear`` layout
    (with the bridge's aliases: more names than any one version uses)."""
    H, D, M = shape.n_heads, shape.d_head, shape.d_model
    out = {
        "tok_embed.weight": w["embed.W_E"],
        "pos.weight": w["pos_embed.W_pos"],
        "head.weight": w["unembed.W_U"].T,
        "head.bias": w["unembed.b_U"],
    }
    for i in range(shape.n_layers):
        p, n = f"blocks.{i}.", f"layers.{i}."
        for x in ("q", "k", "v"):
            W_x = w[f"{p}attn.W_{x.upper()}"]  # [H, M, D]
            out[f"{n}attn.{x}.weight"] = W_x.permute(0, 2, 1).reshape(H * D, M)
            out[f"{n}attn.{x}.bias"] = w[f"{p}attn.b_{x.upper()}"].reshape(H * D)
        out[f"{n}attn.o.weight"] = w[p + "attn.W_O"].reshape(H * D, M).T
        out[f"{n}attn.o.bias"] = w[p + "attn.b_O"]
        if shape.d_mlp:  # the bridge also names fc_in / fc_out ``in`` / ``out``
            for fc, alias, W_name, b_name in (
                ("fc_in", "in", "W_in", "b_in"),
                ("fc_out", "out", "W_out", "b_out"),
            ):
                for name in (fc, alias):
                    out[f"{n}mlp.{name}.weight"] = w[f"{p}mlp.{W_name}"].T
                    out[f"{n}mlp.{name}.bias"] = w[f"{p}mlp.{b_name}"]
    return {k: v.contiguous() for k, v in out.items()}


def _check_keys(want: Any, have: Any) -> None:
    missing, unexpected = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if missing or unexpected:
        raise ExportError(
            f"TransformerLens model and exported weights differ: missing {missing}, "
            f"unexpected {unexpected}"
        )
