"""attn: build attention cascades, compile them with attnc, call them from numpy.

    import attn
    kernel = attn.compile(attn.variants.causal(head_dim=128), target="cpu")
    o, lse = kernel(q, k, v)            # numpy float32 [b, h, m, 128] in
    print(attn.check(kernel))           # against the float64 reference

Modules: :mod:`attn.builder` (cascades and Einsums), :mod:`attn.variants`
(standard variants), :mod:`attn.compiler` (``compile``, the ctypes
loader), :mod:`attn.reference` (float64 references), :mod:`attn.checks`
(``check``, ``bench``). Command line: ``python -m attn --help``.
See docs/python.md.
"""

from . import builder, variants, reference
from .builder import Cascade, BuilderError
from .compiler import (ArgInfo, Kernel, KernelError, Library, TARGETS,
                       compile, load_library)
from .checks import CheckResult, BenchResult, TOLERANCES, bench, check
from ._tools import ToolError, find_tool

__version__ = "0.1.0"

__all__ = [
    "builder", "variants", "reference", "Cascade", "BuilderError", "ArgInfo",
    "Kernel", "KernelError", "Library", "TARGETS", "compile", "load_library",
    "CheckResult", "BenchResult", "TOLERANCES", "bench", "check",
    "ToolError", "find_tool", "__version__",
]
