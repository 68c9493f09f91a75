"""The dtypes a compiled model may run in: the one table the compiler's certification,
the runtime, serialization and the command line all read."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    import torch

#: dtype name -> unit round-off (half the gap between 1 and the next representable number)
UNIT_ROUNDOFF: dict[str, float] = {"float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}
#: dtype name -> its largest finite number
MAX_FINITE: dict[str, float] = {
    "float32": 3.4028234663852886e38,
    "float16": 65504.0,
    "bfloat16": 3.3895313892515355e38,
}
#: the dtype names, in the order the command line lists them
DTYPE_NAMES: tuple[str, ...] = tuple(UNIT_ROUNDOFF)


def narrow_bits(name: str) -> int:
    """The significant bits of a dtype narrower than float32 (8 in bfloat16, 11 in
    float16); 0 for float32."""
    if UNIT_ROUNDOFF[name] <= UNIT_ROUNDOFF["float32"]:
        return 0
    return round(-math.log2(UNIT_ROUNDOFF[name]))


def check_dtype(name: str) -> str:
    """``name`` if it is a known dtype, else an :class:`InputError` naming the choices."""
    if name not in UNIT_ROUNDOFF:
        raise InputError(f"--dtype must be one of {', '.join(DTYPE_NAMES)}, got {name!r}")
    return name


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype called ``name`` (one of :data:`DTYPE_NAMES`)."""
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[
        check_dtype(name)
    ]
