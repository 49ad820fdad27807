"""``attn.check`` (compiled kernel vs a float64 reference) and ``attn.bench``."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Union

import numpy as np

from .builder import Cascade
from .compiler import Kernel, bf16_from_float, bf16_to_float, compile as compile_kernel
from .reference import interpret

__all__ = ["check", "bench", "CheckResult", "OutputCheck", "BenchResult",
           "TOLERANCES", "random_inputs", "default_sizes"]

#: Default (atol, rtol) by the lowest-precision float input dtype: a result
#: passes where |got - want| <= atol + rtol * |want|. The kernels compute in
#: float32 (bf16/f16 are widened on load) with polynomial exp/log, hence the
#: float32 bound also for float64 inputs.
TOLERANCES = {
    "float64": (2e-5, 2e-5),
    "float32": (2e-5, 2e-5),
    "float16": (5e-3, 5e-3),
    "bfloat16": (3e-2, 3e-2),
}

_PRECISION_ORDER = ["bfloat16", "float16", "float32", "float64"]


@dataclass
class OutputCheck:
    """How one output compares: the largest absolute error, the largest
    error relative to atol + rtol * |want| (<= 1 passes), where it is, and
    how many elements fail."""

    name: str
    shape: tuple
    max_abs_error: float
    worst_ratio: float
    worst_index: tuple
    got: float
    want: float
    failures: int

    @property
    def ok(self) -> bool:
        return self.failures == 0

    def __str__(self) -> str:
        s = (f"  {self.name} {list(self.shape)}: max |err| {self.max_abs_error:.3g}, "
             f"worst err/tol {self.worst_ratio:.3g}")
        if not self.ok:
            s += (f"  FAIL ({self.failures} elements; at {list(self.worst_index)}"
                  f" got {self.got!r} want {self.want!r})")
        return s


@dataclass
class CheckResult:
    """The outcome of :func:`check`; true when every output passes."""

    kernel: str
    sizes: Dict[str, int]
    atol: float
    rtol: float
    outputs: List[OutputCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outputs)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        head = (f"{'PASS' if self.ok else 'FAIL'} {self.kernel} ({sizes}; "
                f"atol {self.atol:g}, rtol {self.rtol:g})")
        return "\n".join([head] + [str(o) for o in self.outputs])


def default_sizes(kernel: Kernel, sizes: Optional[Mapping[str, int]] = None,
                  length: int = 113, other: int = 2) -> Dict[str, int]:
    """Sizes for every dynamic rank: ``sizes`` where given; ranks fixed by a
    relation are left to it; ``m`` and ``p`` get ``length`` (113, odd); the
    other dynamic ranks ``other`` (2)."""
    sig = kernel.signature
    out = {r: int(n) for r, n in (sizes or {}).items()}
    derived = {lhs for lhs, _, _ in sig.relations}
    for r, static in sig.ranks.items():
        if static is not None or r in out or r in derived:
            continue
        out[r] = length if r in ("m", "p") else other
    for lhs, factor, rhs in sig.relations:
        if lhs not in out and rhs in out:
            out[lhs] = factor * out[rhs]
        elif lhs not in out and sig.ranks.get(rhs) is not None:
            out[lhs] = factor * sig.ranks[rhs]
    return out


def random_inputs(kernel: Kernel, sizes: Mapping[str, int], seed: int = 0,
                  given: Optional[Mapping[str, np.ndarray]] = None
                  ) -> Dict[str, np.ndarray]:
    """Uniform [-1, 1) inputs in each argument's dtype; integer arguments
    (metadata, indices) must be in ``given``."""
    rng = np.random.default_rng(seed)
    sig = kernel.signature
    out: Dict[str, np.ndarray] = {}
    for a in kernel.inputs:
        if given and a.name in given:
            out[a.name] = np.asarray(given[a.name])
            continue
        dt = a.numpy_dtype
        if a.dtype == "bfloat16":
            shape = [sig.ranks[r] or sizes[r] for r in a.ranks]
            out[a.name] = bf16_from_float(rng.uniform(-1.0, 1.0, size=shape))
            continue
        if dt is None or dt.kind != "f":
            raise ValueError(f"{kernel.name}: input {a.name} is {a.dtype}; "
                             f"give it with inputs={{'{a.name}': ...}}")
        shape = []
        for r in a.ranks:
            n = sig.ranks[r] if sig.ranks[r] is not None else sizes.get(r)
            if n is None:
                raise ValueError(f"{kernel.name}: no size for rank {r}")
            shape.append(n)
        out[a.name] = rng.uniform(-1.0, 1.0, size=shape).astype(dt)
    return out


def _as_kernel(source, target, cascade, rank_sizes) -> Kernel:
    if isinstance(source, Kernel):
        return source
    return compile_kernel(source, target, cascade=cascade, rank_sizes=rank_sizes)


def check(source: Union[Kernel, Cascade, str, os.PathLike],
          sizes: Optional[Mapping[str, int]] = None, *,
          target: str = "host", cascade: Optional[str] = None,
          rank_sizes: Optional[Mapping[str, int]] = None, seed: int = 0,
          inputs: Optional[Mapping[str, np.ndarray]] = None,
          reference: Optional[Callable[..., object]] = None,
          atol: Optional[float] = None, rtol: Optional[float] = None,
          num_threads: int = 0) -> CheckResult:
    """Compiles ``source`` (or takes a compiled :class:`Kernel`), runs it on
    seeded random inputs and compares every output with a float64 reference.

    ``sizes``: dynamic rank sizes (default: see :func:`default_sizes`).
    ``reference``: a function ``f(**inputs_as_float64) -> output or tuple of
    outputs`` (e.g. ``attn.reference.causal``); default: the reference
    interpreter (attn-run) on the same cascade. Tolerances default to
    :data:`TOLERANCES` of the lowest-precision float input. Returns a
    :class:`CheckResult` (truthy when it passes; ``print`` it for a report).
    """
    kernel = _as_kernel(source, target, cascade, rank_sizes)
    sizes = default_sizes(kernel, sizes)
    args = random_inputs(kernel, sizes, seed, inputs)
    got = kernel(**args, num_threads=num_threads, sizes=sizes)
    got = got if isinstance(got, tuple) else (got,)
    names = [a.name for a in kernel.outputs]
    bf16 = {a.name for a in kernel.inputs + kernel.outputs if a.dtype == "bfloat16"}
    as64 = {n: (bf16_to_float(a).astype(np.float64) if n in bf16 and a.dtype == np.uint16
                else a.astype(np.float64) if a.dtype.kind == "f" else a)
            for n, a in args.items()}
    got = tuple(bf16_to_float(g) if a.name in bf16 and g.dtype == np.uint16 else g
                for a, g in zip(kernel.outputs, got))
    if reference is None:
        with open(kernel.library.source, encoding="utf-8") as f:
            text = f.read()
        want_map = interpret(text, as64, names, cascade=kernel.cascade,
                             sizes=sizes)
        want = [want_map[n] for n in names]
    else:
        r = reference(**as64)
        want = list(r) if isinstance(r, (tuple, list)) else [r]
        if len(want) < len(got):
            raise ValueError(f"the reference returned {len(want)} outputs, the "
                             f"kernel {len(got)} ({', '.join(names)})")
    floats = [a.dtype for a in kernel.inputs if a.dtype in _PRECISION_ORDER]
    worst = min(floats, key=_PRECISION_ORDER.index) if floats else "float32"
    d_atol, d_rtol = TOLERANCES[worst]
    atol = d_atol if atol is None else atol
    rtol = d_rtol if rtol is None else rtol
    result = CheckResult(kernel.name, dict(sizes), atol, rtol)
    for name, g, w in zip(names, got, want):
        g64 = np.asarray(g, dtype=np.float64)
        w64 = np.asarray(w, dtype=np.float64)
        if g64.shape != w64.shape:
            raise ValueError(f"{kernel.name}: output {name} has shape "
                             f"{g64.shape}, the reference {w64.shape}")
        with np.errstate(invalid="ignore"):
            err = np.abs(g64 - w64)
            same = (g64 == w64) | (np.isnan(g64) & np.isnan(w64))
            err = np.where(same, 0.0, err)
            err = np.where(np.isnan(err), np.inf, err)
            ratio = err / (atol + rtol * np.where(np.isfinite(w64), np.abs(w64), 0))
        fails = int(np.count_nonzero(ratio > 1))
        idx = np.unravel_index(int(np.argmax(ratio)), ratio.shape) if ratio.size else ()
        result.outputs.append(OutputCheck(
            name, g64.shape, float(err.max()) if err.size else 0.0,
            float(ratio.max()) if ratio.size else 0.0, tuple(int(i) for i in idx),
            float(g64[idx]) if ratio.size else 0.0,
            float(w64[idx]) if ratio.size else 0.0, fails))
    return result


@dataclass
class BenchResult:
    """Times of :func:`bench` in seconds; ``flops`` is the dense-attention
    equivalent 2 * b * h * m * p * (e + f) when the kernel has those ranks
    (masks not discounted), else None."""

    kernel: str
    sizes: Dict[str, int]
    times: List[float]
    flops: Optional[float]

    @property
    def median(self) -> float:
        return float(np.median(self.times))

    @property
    def best(self) -> float:
        return float(min(self.times))

    def __str__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        s = (f"{self.kernel} ({sizes}): median {self.median * 1e3:.3f} ms, "
             f"best {self.best * 1e3:.3f} ms over {len(self.times)} runs")
        if self.flops:
            s += f"; {self.flops / self.median / 1e9:.1f} GFLOP/s (dense equivalent)"
        return s


def bench(source: Union[Kernel, Cascade, str, os.PathLike],
          sizes: Optional[Mapping[str, int]] = None, *, target: str = "host",
          cascade: Optional[str] = None,
          rank_sizes: Optional[Mapping[str, int]] = None, repeat: int = 10,
          warmup: int = 1, num_threads: int = 0,
          inputs: Optional[Mapping[str, np.ndarray]] = None) -> BenchResult:
    """Times a kernel on random inputs (``repeat`` calls after ``warmup``)."""
    kernel = _as_kernel(source, target, cascade, rank_sizes)
    sizes = default_sizes(kernel, sizes, length=1024)
    args = random_inputs(kernel, sizes, 0, inputs)
    for _ in range(max(warmup, 0)):
        kernel(**args, num_threads=num_threads, sizes=sizes)
    times = []
    for _ in range(max(repeat, 1)):
        t0 = time.perf_counter()
        kernel(**args, num_threads=num_threads, sizes=sizes)
        times.append(time.perf_counter() - t0)
    full = {**{r: s for r, s in kernel.signature.ranks.items() if s is not None}, **sizes}
    flops = None
    if all(r in full for r in "bhmpef"):
        flops = 2.0 * full["b"] * full["h"] * full["m"] * full["p"] * (full["e"] + full["f"])
    return BenchResult(kernel.name, dict(sizes), times, flops)
