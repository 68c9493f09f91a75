"""rasp_compiler: RASP programs -> exact transformer weights in PyTorch.

The public API::

    from rasp_compiler import compile_program, load_program, evaluate, verify

    session = load_program("examples/reverse.rasp")     # parse and lower a program
    sop = get_sop(session, "reverse")
    evaluate(sop, "abc")                                 # the reference interpreter
    model = compile_program("examples/reverse.rasp", vocab="abc", max_len=8)
    model.run("abc")                                     # the compiled transformer
    save_model(model, "out/reverse"); load_model("out/reverse")
    verify(sop, model, "abc", 8)                         # model vs interpreter

Names are imported on first use, so ``import rasp_compiler`` (and the command line's
interpreter-only commands) do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "compile_program": "rasp_compiler.compiler.pipeline",
    "compile_sop": "rasp_compiler.compiler.pipeline",
    "load_program": "rasp_compiler.language.lower",
    "load_source": "rasp_compiler.language.lower",
    "get_sop": "rasp_compiler.language.lower",
    "evaluate": "rasp_compiler.language.interpret",
    "save_model": "rasp_compiler.serialize",
    "load_model": "rasp_compiler.serialize",
    "verify": "rasp_compiler.verification",
    "CompiledModel": "rasp_compiler.runtime",
    "RaspError": "rasp_compiler.errors",
    "CompileError": "rasp_compiler.errors",
}

__all__ = [
    "__version__",
    "compile_program",
    "compile_sop",
    "load_program",
    "load_source",
    "get_sop",
    "evaluate",
    "save_model",
    "load_model",
    "verify",
    "CompiledModel",
    "RaspError",
    "CompileError",
]

if TYPE_CHECKING:
    from .compiler.pipeline import compile_program, compile_sop
    from .errors import CompileError, RaspError
    from .language.interpret import evaluate
    from .language.lower import get_sop, load_program, load_source
    from .runtime import CompiledModel
    from .serialize import load_model, save_model
    from .verification import verify


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rasp_compiler' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
