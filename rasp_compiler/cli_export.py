"""``rasp-compiler export``: a compiled model in another library's format.

::

    export MODEL_DIR --format transformer-lens -o OUT
    export PROGRAM.rasp [--sop NAME] --vocab V --max-len N --format transformer-lens -o OUT

Writes ``OUT`` (:mod:`rasp_compiler.export.files`): the weights by ``HookedTransformer``
names with padding made invisible, config.json, tokenizer.json and a README on loading it.
Before writing, the exported model is built with the installed TransformerLens and run
on random padded batches; the command fails unless its outputs equal the compiled
model's.  Without TransformerLens it says how to install it and exits 1.
"""

from __future__ import annotations

import argparse
import random
from typing import Any

from .cli import _compile, is_saved_model, model_args, program_args

FORMATS = ("transformer-lens",)
CHECKED_INPUTS = 64  # random inputs the exported model is run on before it is written


def register(sub: Any) -> None:
    """Add the ``export`` subcommand to the subparsers ``sub``."""
    p = sub.add_parser("export", help="export a compiled model (to TransformerLens)")
    program_args(p, "PROGRAM.rasp|MODEL_DIR")
    model_args(p, required=False)
    p.add_argument("--format", required=True, choices=FORMATS, help="the format to export to")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the directory to write")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs checked (default 0)")
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from .export import INSTALL_HINT, MissingDependency, transformer_lens_version

    version = transformer_lens_version()  # before compiling anything
    if version is None:
        raise MissingDependency(
            f"--format transformer-lens needs TransformerLens, which is not installed; "
            f"install it with: {INSTALL_HINT}"
        )
    model = _model(args)
    tl = _checked_export(model, args.seed)
    from .export import save_transformer_lens

    shape = save_transformer_lens(model, args.output)
    print(
        f"exported {model.spec.sop_name!r} for TransformerLens {version} ({tl.kind}): "
        f"{shape.n_layers} layers, per layer {shape.n_heads} head(s) of width {shape.d_head}, "
        f"d_model {shape.d_model}; outputs equal the compiled model's on {CHECKED_INPUTS} "
        f"random padded inputs -> {args.output}"
    )
    return 0


def _model(args: argparse.Namespace) -> Any:
    if is_saved_model(args):
        from .serialize import load_model

        return load_model(args.program)
    args.no_head_masks = True  # TransformerLens has one attention mask per model
    _, model = _compile(args)
    return model


def _checked_export(model: Any, seed: int) -> Any:
    """The TransformerLens model, run on random padded batches against ``model``."""
    from .export import ExportError, to_transformer_lens

    tl = to_transformer_lens(model)
    rng = random.Random(seed)
    vocab, max_len = model.spec.vocab, model.spec.max_len
    inputs = [
        [rng.choice(vocab) for _ in range(rng.randint(1, max_len))] for _ in range(CHECKED_INPUTS)
    ]
    got, want = tl.run(inputs), model.run_batch(inputs)
    for inp, g, w in zip(inputs, got, want, strict=True):
        if g != w:
            raise ExportError(
                f"the exported model's output {g!r} differs from the compiled model's {w!r} "
                f"on the input {inp!r}; nothing was written"
            )
    return tl
