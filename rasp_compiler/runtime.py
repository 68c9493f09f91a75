"""The compiled model a user runs: a :class:`Transformer` plus what its numbers mean.

:class:`ModelSpec` says how inputs become token ids and logits become output atoms:

* input ids ``0 .. len(vocab)-1`` are ``vocab`` in order, then ``bos_id = len(vocab)``
  and ``pad_id = len(vocab) + 1`` (so ``d_vocab = len(vocab) + 2``);
* position 0 holds BOS and the input's tokens sit at positions ``1..n``
  (so ``n_ctx = max_len + 1``); padding keys are masked out of attention;
* :class:`OutputSpec` decodes the logits at positions ``1..n``: categorical outputs take
  ``values[argmax]``; numerical outputs read the single logit and round it to the
  nearest of ``values``, to an int, or to a fraction.

Both dataclasses are frozen and round-trip through JSON with ``to_dict`` / ``from_dict``
with every atom's type (str, int, float, bool) intact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from .dtypes import DTYPE_NAMES
from .errors import InputError
from .language.ir import Atom, atom_key, plain_atom
from .model import ModelConfig, Transformer
from .output_spec import OutputSpec, check_keys

Input = str | Sequence[Atom]  # a str is one token per character

_MAX_LISTED = 100  # vocabulary entries shown in an error message


# ---------------------------------------------------------------- specs


@dataclass(frozen=True)
class ModelSpec:
    """Everything about a compiled model besides its weights.

    ``token_ids`` maps each vocab atom to its id; it defaults to (and must equal)
    ``{vocab[i]: i}``.  ``layout`` (residual directions: dicts with at least ``name``,
    ``start``, ``size``), ``layers`` (one dict per layer describing its heads and MLPs,
    e.g. ``{"attn": [...], "mlp": [...]}``) and ``extra`` are informational and must
    be JSON-serialisable.  ``dtype`` is the dtype the compiler certified the model for.
    """

    program_name: str
    sop_name: str
    vocab: tuple[Atom, ...]
    max_len: int
    output: OutputSpec
    dtype: str = "float32"
    token_ids: dict[Atom, int] = field(default_factory=dict)
    layout: tuple[dict[str, Any], ...] = ()
    layers: tuple[dict[str, Any], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("program_name", "sop_name"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a str, got {getattr(self, name)!r}")
        if isinstance(self.vocab, str) or not isinstance(self.vocab, Sequence):
            raise ValueError(f"vocab must be a list of atoms, got {self.vocab!r}")
        vocab = tuple(plain_atom(t) for t in self.vocab)
        if not vocab:
            raise ValueError("vocab must not be empty")
        if len({atom_key(t) for t in vocab}) != len(vocab):
            raise ValueError(f"vocab has duplicate tokens: {vocab!r}")
        canonical = {t: i for i, t in enumerate(vocab)}
        if len(canonical) != len(vocab):
            raise ValueError(
                f"vocab has tokens that Python treats as equal (1, 1.0, True): {vocab!r}"
            )
        token_ids = dict(self.token_ids) or canonical
        if token_ids != canonical or any(
            atom_key(t) != atom_key(u) for t, u in zip(token_ids, vocab, strict=True)
        ):
            raise ValueError("token_ids must map vocab[i] to i, in vocab order")
        ml = self.max_len
        if isinstance(ml, bool) or not isinstance(ml, int) or ml < 1:
            raise ValueError(f"max_len must be a positive int, got {ml!r}")
        if not isinstance(self.output, OutputSpec):
            raise ValueError(f"output must be an OutputSpec, got {self.output!r}")
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype must be one of {DTYPE_NAMES}, got {self.dtype!r}")
        for name in ("layout", "layers"):
            entries = getattr(self, name)
            if isinstance(entries, str | Mapping) or not isinstance(entries, Sequence):
                raise ValueError(f"{name} must be a list of dicts, got {entries!r}")
            if not all(isinstance(e, Mapping) for e in entries):
                raise ValueError(f"every {name} entry must be a dict")
            object.__setattr__(self, name, tuple(dict(e) for e in entries))
        for e in self.layout:
            if not (
                isinstance(e.get("name"), str)
                and isinstance(e.get("start"), int)
                and isinstance(e.get("size"), int)
            ):
                raise ValueError(f"layout entry needs str name, int start, int size: {e!r}")
        if not isinstance(self.extra, Mapping):
            raise ValueError(f"extra must be a dict, got {self.extra!r}")
        object.__setattr__(self, "vocab", vocab)
        object.__setattr__(self, "token_ids", token_ids)
        object.__setattr__(self, "extra", dict(self.extra))

    @property
    def bos_id(self) -> int:
        return len(self.vocab)

    @property
    def pad_id(self) -> int:
        return len(self.vocab) + 1

    @property
    def d_vocab(self) -> int:
        """Input ids: the vocabulary, BOS and pad."""
        return len(self.vocab) + 2

    def check_config(self, cfg: ModelConfig) -> None:
        """ValueError unless ``cfg`` has the vocab, context and output sizes this spec needs."""
        want = {
            "d_vocab": self.d_vocab,
            "n_ctx": self.max_len + 1,
            "d_vocab_out": self.output.d_vocab_out,
        }
        wrong = [
            f"{k} = {getattr(cfg, k)}, expected {v}"
            for k, v in want.items()
            if getattr(cfg, k) != v
        ]
        if wrong:
            raise ValueError("model config does not fit the spec: " + "; ".join(wrong))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form.  ``token_ids`` becomes a list of ``[token, id]`` pairs."""
        return {
            "program_name": self.program_name,
            "sop_name": self.sop_name,
            "vocab": list(self.vocab),
            "token_ids": [[t, i] for t, i in self.token_ids.items()],
            "bos_id": self.bos_id,
            "pad_id": self.pad_id,
            "max_len": self.max_len,
            "output": self.output.to_dict(),
            "dtype": self.dtype,
            "layout": [dict(e) for e in self.layout],
            "layers": [dict(e) for e in self.layers],
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict`; ValueError on a bad dict."""
        keys = {
            "program_name", "sop_name", "vocab", "token_ids", "bos_id", "pad_id", "max_len",
            "output", "dtype", "layout", "layers", "extra",
        }  # fmt: skip
        check_keys("spec", d, required=keys, optional=set())
        pairs = d["token_ids"]
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 for p in pairs
        ):
            raise ValueError("spec token_ids must be a list of [token, id] pairs")
        vocab = d["vocab"]
        if not isinstance(vocab, list):
            raise ValueError(f"spec vocab must be a list, got {vocab!r}")
        if [atom_key(plain_atom(t)) for t, _ in pairs] != [atom_key(plain_atom(t)) for t in vocab]:
            raise ValueError("spec token_ids do not list the vocab in order")
        if not isinstance(d["output"], Mapping):
            raise ValueError(f"spec output must be a dict, got {d['output']!r}")
        spec = cls(
            program_name=d["program_name"],
            sop_name=d["sop_name"],
            vocab=tuple(vocab),
            max_len=d["max_len"],
            output=OutputSpec.from_dict(d["output"]),
            dtype=d["dtype"],
            token_ids={t: i for t, i in pairs},
            layout=d["layout"],
            layers=d["layers"],
            extra=d["extra"],
        )
        if (d["bos_id"], d["pad_id"]) != (spec.bos_id, spec.pad_id):
            raise ValueError(
                f"spec bos_id/pad_id {d['bos_id']}/{d['pad_id']} should be "
                f"{spec.bos_id}/{spec.pad_id}"
            )
        return spec


# ---------------------------------------------------------------- the model


def _length(inp: object) -> int:
    """An input's length for grouping (0 for what is not a sequence: encode names it)."""
    return len(inp) if isinstance(inp, str | Sequence) else 0


#: activation memory a forward pass of :meth:`CompiledModel.run_batch` aims to stay under
ACTIVATION_BUDGET = 1 << 30


class CompiledModel(nn.Module):
    """A compiled RASP program: ``run("abc")`` returns the output s-op's values.

    ``transformer`` holds the weights, ``spec`` the meaning of its inputs and outputs.
    ``device`` and ``dtype`` follow ``.to(...)``.
    """

    def __init__(self, transformer: Transformer, spec: ModelSpec):
        super().__init__()
        spec.check_config(transformer.cfg)
        self.transformer = transformer
        self.spec = spec
        #: what the compiler found worth saying (not saved with the model)
        self.warnings: list[str] = []
        #: (the s-op as planned, its Plan, node names) when compiled in this process
        self.compiled_from: tuple[Any, Any, dict[int, str]] | None = None
        self._ids = {atom_key(t): i for t, i in spec.token_ids.items()}
        # fast path for the common case, string tokens (type checked exactly: True != 1)
        self._str_ids = {t: i for t, i in spec.token_ids.items() if type(t) is str}

    @classmethod
    def build(
        cls,
        config: ModelConfig,
        spec: ModelSpec,
        weights: Mapping[str, np.ndarray | torch.Tensor],
    ) -> CompiledModel:
        """A float32 model from a config, a spec and a full set of weights (see
        :meth:`Transformer.load_weights`)."""
        transformer = Transformer(config)
        transformer.load_weights(weights)
        return cls(transformer, spec)

    @property
    def config(self) -> ModelConfig:
        return self.transformer.cfg

    @property
    def device(self) -> torch.device:
        return self.transformer.embed.W_E.device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.embed.W_E.dtype

    def forward(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """tokens [B, T], attention_mask [B, T] bool -> logits [B, T, d_vocab_out]."""
        return self.transformer(tokens, attention_mask)

    # ---- inputs and outputs

    def encode(self, inputs: Sequence[Input]) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of inputs -> (tokens [B, 1 + n_max] int64, mask [B, 1 + n_max] bool).

        Each input is a str (one token per character) or a sequence of atoms.  Row b
        is BOS, the input's ids, then pad; ``mask`` is True on BOS and the tokens.
        Raises InputError on an empty input, an unknown token or a too-long input.
        """
        rows = [self._encode_one(inp, b, len(inputs)) for b, inp in enumerate(inputs)]
        T = 1 + max((len(r) for r in rows), default=0)
        tokens = np.full((len(rows), T), self.spec.pad_id, dtype=np.int64)  # [B, T]
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        tokens[:, 0] = self.spec.bos_id
        for b, ids in enumerate(rows):
            tokens[b, 1 : 1 + len(ids)] = ids
        mask = np.arange(T)[None, :] <= lengths[:, None]  # [B, T]: BOS and the tokens
        return (
            torch.from_numpy(tokens).to(self.device),
            torch.from_numpy(mask).to(self.device),
        )

    def _encode_one(self, inp: Input, b: int, batch: int) -> list[int]:
        where = f"input {b}: " if batch > 1 else ""
        if not isinstance(inp, str | Sequence):
            raise InputError(f"{where}expected a string or a list of tokens, got {inp!r}")
        if len(inp) == 0:
            raise InputError(f"{where}empty input: the model needs at least one token")
        if len(inp) > self.spec.max_len:
            raise InputError(
                f"{where}input of length {len(inp)} is too long: "
                f"this model accepts at most {self.spec.max_len} tokens"
            )
        if isinstance(inp, str) or all(type(t) is str for t in inp):
            try:
                return [self._str_ids[t] for t in cast("Sequence[str]", inp)]
            except KeyError:
                pass  # the slow path below names the token
        ids = []
        for pos, tok in enumerate(inp):
            try:
                key = atom_key(plain_atom(tok))
            except TypeError:
                key = None
            if key not in self._ids:
                raise InputError(
                    f"{where}token {tok!r} at position {pos} is not in the vocabulary "
                    f"{self._vocab_text()}"
                )
            ids.append(self._ids[key])
        return ids

    def _vocab_text(self) -> str:
        vocab = self.spec.vocab
        shown = ", ".join(repr(t) for t in vocab[:_MAX_LISTED])
        more = f", ... ({len(vocab) - _MAX_LISTED} more)" if len(vocab) > _MAX_LISTED else ""
        return "{" + shown + more + "}"

    def decode(self, logits: torch.Tensor, lengths: Sequence[int]) -> list[list[Atom]]:
        """logits [B, T, d_vocab_out], input lengths -> each row's atoms at positions 1..n."""
        return self.spec.output.decode_logits(logits, lengths)

    @torch.no_grad()
    def run_batch(
        self,
        inputs: Sequence[Input],
        chunk_size: int = 256,
        memory_budget: int = ACTIVATION_BUDGET,
    ) -> list[list[Atom]]:
        """Run every input (padded, pad keys masked), at most ``chunk_size`` inputs per
        forward pass and as many as keep the pass's activations under about
        ``memory_budget`` bytes (:meth:`activation_bytes`; at least one input).  Inputs
        are grouped by length, so a pass pads little; outputs come in input order."""
        order = sorted(range(len(inputs)), key=lambda i: _length(inputs[i]))
        out: list[list[Atom] | None] = [None] * len(inputs)
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and end - start < chunk_size:
                T = len(inputs[order[end]]) + 1  # the longest so far (sorted)
                if (end - start + 1) * self.activation_bytes(T) > memory_budget:
                    break
                end += 1
            chunk = [inputs[i] for i in order[start:end]]
            try:
                tokens, mask = self.encode(chunk)
            except InputError:
                for i in sorted(order[start:end]):  # the message names the input's own index
                    self._encode_one(inputs[i], i, len(inputs))
                raise
            logits = self.transformer(tokens, mask)  # [B, T, d_vocab_out]
            for i, row in zip(order[start:end], self.decode(logits, [len(x) for x in chunk])):
                out[i] = row
            start = end
        return out  # type: ignore[return-value]

    def activation_bytes(self, T: int) -> int:
        """About the activation memory one input of ``T`` positions (BOS included) takes
        in a forward pass: the residual, the widest layer's Q/K/V and MLP hidden units,
        and its attention scores and pattern, as ``[T, T]`` per head."""
        cfg = self.config
        size = torch.finfo(self.dtype).bits // 8
        widest = 0
        for i in range(cfg.n_layers):
            s = cfg.layer(i)
            per_head = 3 * s.d_head + 3 * T  # q, k, v; scores, pattern, mask per key
            widest = max(widest, T * (s.n_heads * per_head + 2 * s.d_mlp))
        return size * (widest + 4 * T * cfg.d_model)

    def run(self, inp: Input) -> list[Atom]:
        """Run one input (a str is one token per character) -> the output s-op's values."""
        return self.run_batch([inp])[0]

    # ---- description

    def summary(self) -> str:
        """A readable description: config, parameter count, residual layout, layers."""
        cfg, spec = self.config, self.spec
        dtype = str(self.dtype).removeprefix("torch.")
        lines = [
            f"program {spec.program_name!r}, output s-op {spec.sop_name!r}: "
            f"{spec.output.describe()}",
            f"vocabulary ({len(spec.vocab)}): {self._vocab_text()}, max_len {spec.max_len}",
            f"d_model {cfg.d_model}, n_layers {cfg.n_layers}, n_heads {cfg.n_heads}, "
            f"d_head {cfg.d_head}, d_mlp {cfg.d_mlp}, d_vocab {cfg.d_vocab}, "
            f"d_vocab_out {cfg.d_vocab_out}, n_ctx {cfg.n_ctx}",
            f"attn_scale {cfg.attn_scale:g}, act_fn {cfg.act_fn}; per layer (heads x d_head, "
            "d_mlp): "
            + ", ".join(
                f"{sh.n_heads}x{sh.d_head}, {sh.d_mlp}"
                for sh in (cfg.layer(i) for i in range(cfg.n_layers))
            ),
            f"parameters {self.transformer.count_params():,}, dtype {dtype} "
            f"(certified for {spec.dtype})",
        ]
        if spec.layout:
            lines.append(f"residual layout ({cfg.d_model} dims):")
            for e in spec.layout:
                start, size = e["start"], e["size"]
                lines.append(f"  {f'[{start}, {start + size})':<12} {e['name']}")
        for layer, desc in enumerate(spec.layers):
            lines.append(f"layer {layer}:")
            for key, value in desc.items():
                items = value if isinstance(value, list) else [value]
                if not items:
                    lines.append(f"  {key}: (none)")
                for item in items:
                    lines.append(f"  {key}: {_describe(item)}")
        return "\n".join(lines)


def _describe(item: object) -> str:
    if isinstance(item, Mapping):
        return ", ".join(f"{k}={v}" for k, v in item.items())
    return str(item)
