"""Exporting compiled models to other libraries.

``to_transformer_lens(model)`` gives a ready TransformerLens model (``HookedTransformer``
with TransformerLens 3.x, the native ``TransformerBridge`` with 4.x) with an encoder, a
decoder and the residual labels; ``save_transformer_lens`` / ``load_transformer_lens``
write and read an exported directory.  TransformerLens is optional
(``pip install 'rasp-compiler[transformer-lens]'``): this package imports without it.
"""

from __future__ import annotations

from .files import load_transformer_lens, save_transformer_lens
from .transformer_lens import (
    INSTALL_HINT,
    MissingDependency,
    TransformerLensModel,
    to_transformer_lens,
    transformer_lens_version,
)
from .weights import BIG, ExportError, TLShape, tl_weights

__all__ = [
    "BIG",
    "ExportError",
    "INSTALL_HINT",
    "MissingDependency",
    "TLShape",
    "TransformerLensModel",
    "load_transformer_lens",
    "save_transformer_lens",
    "tl_weights",
    "to_transformer_lens",
    "transformer_lens_version",
]
