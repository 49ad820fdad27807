"""``attn.compile``: cascade -> attnc -> shared library -> a numpy callable.

``compile`` writes the cascade text into a cache directory, runs
``attnc --emit=shared`` on it (one ``lib<name>.so`` and ``<name>.h``), reads
the kernel signatures back from the generated header and loads the library
with ctypes. The returned :class:`Kernel` takes numpy arrays (or any object
with ``__dlpack__`` or the array interface), checks their dtypes and shapes
in Python with clear exceptions, allocates the outputs and calls the entry
point through the C ABI of docs/abi.md (``attn_tensor`` is DLPack's
DLTensor).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ._tools import ToolError, find_tool, run_tool
from .builder import Cascade

__all__ = ["compile", "Kernel", "Library", "ArgInfo", "KernelError",
           "TARGETS", "cascade_text", "set_rank_sizes", "cascade_names",
           "bf16_from_float", "bf16_to_float"]

#: Targets of attnc; "cpu" is an alias of "host".
TARGETS = ("host", "cpu", "x86_64-avx512", "x86_64-avx2")

# --- the C ABI (include/attn/runtime.h) ---------------------------------------


class _Device(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8),
                ("lanes", ctypes.c_uint16)]


class _Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _Device),
                ("ndim", ctypes.c_int32), ("dtype", _DType),
                ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class _Launch(ctypes.Structure):
    _fields_ = [("num_threads", ctypes.c_int32),
                ("parallel_for", ctypes.c_void_p),
                ("parallel_for_user", ctypes.c_void_p),
                ("stream", ctypes.c_void_p)]


_STATUS = {
    0: "ATTN_OK", 1: "ATTN_ERR_NULL_POINTER", 2: "ATTN_ERR_DEVICE",
    3: "ATTN_ERR_DTYPE", 4: "ATTN_ERR_NDIM", 5: "ATTN_ERR_SHAPE",
    6: "ATTN_ERR_STRIDE", 7: "ATTN_ERR_ALIGNMENT", 8: "ATTN_ERR_METADATA",
    9: "ATTN_ERR_NO_KERNEL", 10: "ATTN_ERR_OUT_OF_MEMORY",
    11: "ATTN_ERR_THREADS", 12: "ATTN_ERR_INVALID_ARGUMENT",
    13: "ATTN_ERR_NO_DEVICE", 14: "ATTN_ERR_DRIVER",
}

# Header dtype name -> (DLPack code, bits, numpy dtype or None).
_DTYPES = {
    "float64": (2, 64, np.float64), "float32": (2, 32, np.float32),
    "float16": (2, 16, np.float16), "bfloat16": (4, 16, None),
    "int64": (0, 64, np.int64), "int32": (0, 32, np.int32),
    "int8": (0, 8, np.int8), "uint8": (1, 8, np.uint8),
}


def bf16_from_float(x) -> np.ndarray:
    """bfloat16 bits (uint16) of float values, rounded to nearest even;
    numpy has no bfloat16, so bfloat16 tensors travel as their bits."""
    f = np.ascontiguousarray(x, dtype=np.float32)
    u = f.view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    out = rounded.astype(np.uint16)
    return np.where(np.isnan(f), np.uint16(0x7FC0), out)


def bf16_to_float(bits) -> np.ndarray:
    """float32 values of bfloat16 bits (uint16)."""
    b = np.ascontiguousarray(bits, dtype=np.uint16)
    return (b.astype(np.uint32) << 16).view(np.float32)


class KernelError(RuntimeError):
    """A generated entry point returned an error status. ``status`` is the
    attn_status value, ``status_name`` its enum name; the message is
    attn_last_error()."""

    def __init__(self, kernel: str, status: int, message: str):
        self.status = status
        self.status_name = _STATUS.get(status, f"status {status}")
        super().__init__(f"{kernel}: {self.status_name}: {message}")


# --- kernel signatures, read from the generated header ------------------------


@dataclass
class ArgInfo:
    """One tensor of a kernel: its C name, role ("input", "output" or
    "optional output"), header dtype name ("float32"...) and ranks."""

    name: str
    role: str
    dtype: str
    ranks: List[str]

    @property
    def numpy_dtype(self) -> Optional[np.dtype]:
        t = _DTYPES.get(self.dtype, (0, 0, None))[2]
        return None if t is None else np.dtype(t)


@dataclass
class KernelSignature:
    name: str
    ranks: Dict[str, Optional[int]]
    relations: List[Tuple[str, int, str]]
    args: List[ArgInfo]


_ARG_RE = re.compile(
    r"const attn_tensor \*(\w+); /\* (input|output|optional output), "
    r"(\w+) \[([^\]]*)\] \*/")


def parse_header(text: str) -> Dict[str, KernelSignature]:
    """The kernels of a header written by attnc (lib/Emit/Library.cpp,
    writeHeader): entry name -> signature."""
    m = re.search(r"^ \* Kernels:(.*)$", text, re.M)
    if not m:
        raise ToolError("not an attnc header (no 'Kernels:' line)")
    out: Dict[str, KernelSignature] = {}
    for name in m.group(1).split():
        start = text.find(f"/*===- {name} ")
        end = text.find(f"}} {name}_args;", start)
        if start < 0 or end < 0:
            raise ToolError(f"attnc header: no declaration of kernel {name}")
        block = text[start:end]
        ranks: Dict[str, Optional[int]] = {}
        rm = re.search(r"^ \* Ranks: (.*)$", block, re.M)
        if not rm:
            raise ToolError(f"attnc header: kernel {name} has no 'Ranks:' line")
        for r in rm.group(1).split(","):
            rname, _, rsize = r.strip().partition(" = ")
            ranks[rname] = int(rsize) if rsize else None
        relations = []
        rel = re.search(r"^ \* Relations: (.*)$", block, re.M)
        if rel:
            for part in rel.group(1).split(","):
                mm = re.match(r"\s*\|(\w+)\| = (\d+) \* \|(\w+)\|\s*$", part)
                if not mm:
                    raise ToolError(f"attnc header: bad relation {part!r}")
                relations.append((mm.group(1), int(mm.group(2)), mm.group(3)))
        struct = block[block.find(f"typedef struct {name}_args"):]
        args = []
        for am in _ARG_RE.finditer(struct):
            dims = [d.strip().split("=")[0] for d in am.group(4).split(",")
                    if d.strip()]
            args.append(ArgInfo(am.group(1), am.group(2), am.group(3), dims))
        if not args:
            raise ToolError(f"attnc header: kernel {name} has no arguments")
        out[name] = KernelSignature(name, ranks, relations, args)
    return out


# --- cascade text helpers -----------------------------------------------------

_CASCADE_RE = re.compile(r"attn\.cascade\s+@([A-Za-z_][A-Za-z0-9_]*)")


def cascade_names(text: str) -> List[str]:
    """The symbols of the cascades in a .mlir text, in order."""
    return [m.group(1) for m in _CASCADE_RE.finditer(_strip_comments(text))]


def _strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", text)


def set_rank_sizes(text: str, sizes: Mapping[str, int]) -> str:
    """Sets static rank sizes in every cascade's ``ranks(...)`` clause
    (like attnc --rank-size): ``{"e": 59, "f": 59}``. Raises ValueError if
    no cascade has one of the ranks."""
    if not sizes:
        return text
    found = set()

    def fix(m: "re.Match[str]") -> str:
        items = []
        for item in m.group(2).split(","):
            name = item.split("=")[0].strip()
            if name in sizes:
                found.add(name)
                items.append(f"{name} = {int(sizes[name])}")
            else:
                items.append(item.strip())
        return m.group(1) + ", ".join(items) + ")"

    out = re.sub(r"(attn\.cascade\s+@\w+\s+ranks\()([^)]*)\)", fix,
                 _strip_comments(text))
    missing = set(sizes) - found
    if missing:
        raise ValueError("no rank named " + ", ".join(sorted(missing)))
    return out


def cascade_text(source: Union[Cascade, str, os.PathLike]) -> Tuple[str, str]:
    """(text, stem) of a source: a Cascade, a path to a .mlir file, or the
    text itself (a string containing ``attn.cascade``)."""
    if isinstance(source, Cascade):
        return source.text(), source.name
    if isinstance(source, str) and "attn.cascade" in source:
        names = cascade_names(source)
        return source, names[0] if names else "kernel"
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no such cascade file: {path}")
    return path.read_text(encoding="utf-8"), path.stem


def _c_name(s: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", s)
    return s if s and not s[0].isdigit() else "k_" + s


# --- loading ------------------------------------------------------------------


class Library:
    """A compiled shared library: ``kernels`` maps the cascade symbol to its
    :class:`Kernel`. Keeps the ctypes handle alive."""

    def __init__(self, so_path: str, header_path: str, lib_name: str,
                 source_path: str):
        self.path = so_path
        self.header = header_path
        self.name = lib_name
        self.source = source_path
        self._dll = ctypes.CDLL(so_path, mode=getattr(os, "RTLD_LOCAL", 0))
        self._dll.attn_last_error.restype = ctypes.c_char_p
        self._dll.attn_last_error.argtypes = []
        with open(header_path, encoding="utf-8") as f:
            sigs = parse_header(f.read())
        self.kernels: Dict[str, Kernel] = {}
        for entry, sig in sigs.items():
            cascade = entry[len(lib_name) + 1:]
            self.kernels[cascade] = Kernel(self, sig, cascade)

    def last_error(self) -> str:
        return (self._dll.attn_last_error() or b"").decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"Library({self.path}, kernels={list(self.kernels)})"


def _as_array(x, what: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "__dlpack__"):
        try:
            return np.from_dlpack(x)
        except (TypeError, RuntimeError, BufferError, ValueError) as e:
            raise TypeError(f"{what}: cannot read it through __dlpack__ "
                            f"(CPU memory only): {e}") from None
    if (hasattr(x, "__array_interface__") or hasattr(x, "__array_struct__")
            or hasattr(x, "__array__")):
        return np.asarray(x)
    raise TypeError(f"{what}: expected a numpy array or an object with "
                    f"__dlpack__ or __array_interface__, got "
                    f"{type(x).__name__}")


def _dtype_ok(arr: np.ndarray, info: ArgInfo) -> bool:
    want = info.numpy_dtype
    if want is not None:
        return arr.dtype == want
    # bfloat16: ml_dtypes' bfloat16, or its raw bits as uint16.
    return arr.dtype.name == "bfloat16" or arr.dtype == np.uint16


class Kernel:
    """One generated entry point, callable on numpy arrays.

    ``kernel(q, k, v)`` (positionally, in the cascade's argument order, or
    by name) returns the outputs: O alone if the cascade has one result,
    else the tuple ``(o, lse, ...)``. Keyword options:

    - ``return_optional=False``: pass NULL for the optional outputs (the
      kernel then does not compute LSE) and return O alone;
    - ``num_threads``: 0 (default) one thread per hardware thread, 1 the
      calling thread only.

    Raises TypeError for a wrong dtype or a non-array argument, ValueError
    for a wrong number of dimensions or sizes that disagree (the message
    names the tensor, dimension and rank), and :class:`KernelError` if the
    entry point itself rejects the call.
    """

    def __init__(self, library: Library, sig: KernelSignature, cascade: str):
        self.library = library
        self.signature = sig
        self.name = sig.name
        self.cascade = cascade
        self.inputs = [a for a in sig.args if a.role == "input"]
        self.outputs = [a for a in sig.args if a.role != "input"]
        fn = getattr(library._dll, sig.name)
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Launch)]
        self._fn = fn
        self._args_type = ctypes.POINTER(_Tensor) * len(sig.args)

    def __repr__(self) -> str:
        ins = ", ".join(f"{a.name}: {a.dtype}[{', '.join(a.ranks)}]" for a in self.inputs)
        outs = ", ".join(f"{a.name}: {a.dtype}[{', '.join(a.ranks)}]" for a in self.outputs)
        return f"<attn.Kernel {self.name}({ins}) -> ({outs})>"

    # -- shape checking ------------------------------------------------------
    def resolve_sizes(self, arrays: Mapping[str, np.ndarray],
                      sizes: Optional[Mapping[str, int]] = None) -> Dict[str, int]:
        """The size of every rank, from the inputs' shapes, the static sizes,
        the relations and ``sizes``; ValueError if they disagree or a rank an
        output needs stays unknown."""
        sig = self.signature
        known: Dict[str, int] = {}
        origin: Dict[str, str] = {}
        for r, s in sig.ranks.items():
            if s is not None:
                known[r], origin[r] = s, "its static size"
        for r, s in (sizes or {}).items():
            if r not in sig.ranks:
                raise ValueError(f"{self.name}: no rank named {r!r}")
            if r in known and known[r] != s:
                raise ValueError(f"{self.name}: rank {r} is {known[r]} "
                                 f"({origin[r]}), not {s}")
            known[r], origin[r] = int(s), "sizes="
        for a in self.inputs:
            arr = arrays[a.name]
            if arr.ndim != len(a.ranks):
                raise ValueError(
                    f"{self.name}: {a.name} must have {len(a.ranks)} "
                    f"dimensions [{', '.join(a.ranks)}], got shape "
                    f"{tuple(arr.shape)}")
            for d, (r, n) in enumerate(zip(a.ranks, arr.shape)):
                if r in known and known[r] != n:
                    raise ValueError(
                        f"{self.name}: {a.name} dimension {d} (rank {r}) has "
                        f"size {n}, but {r} is {known[r]} (from {origin[r]})")
                if r not in known:
                    known[r], origin[r] = int(n), f"{a.name} dimension {d}"
        changed = True
        while changed:
            changed = False
            for lhs, factor, rhs in sig.relations:
                if lhs in known and rhs in known:
                    if known[lhs] != factor * known[rhs]:
                        raise ValueError(
                            f"{self.name}: |{lhs}| must be {factor} * |{rhs}|, "
                            f"got {lhs} = {known[lhs]} ({origin[lhs]}) and "
                            f"{rhs} = {known[rhs]} ({origin[rhs]})")
                elif rhs in known:
                    known[lhs], origin[lhs] = factor * known[rhs], "a relation"
                    changed = True
                elif lhs in known:
                    if known[lhs] % factor:
                        raise ValueError(
                            f"{self.name}: |{lhs}| = {known[lhs]} is not a "
                            f"multiple of {factor} (|{lhs}| = {factor} * |{rhs}|)")
                    known[rhs], origin[rhs] = known[lhs] // factor, "a relation"
                    changed = True
        for a in self.outputs:
            for r in a.ranks:
                if r not in known:
                    raise ValueError(f"{self.name}: the size of rank {r} (of "
                                     f"output {a.name}) does not follow from "
                                     "the inputs; pass sizes={...}")
        return known

    # -- call ----------------------------------------------------------------
    def __call__(self, *args, return_optional: bool = True,
                 num_threads: int = 0,
                 sizes: Optional[Mapping[str, int]] = None, **named):
        if len(args) > len(self.inputs):
            raise TypeError(f"{self.name} takes {len(self.inputs)} inputs "
                            f"({', '.join(a.name for a in self.inputs)}), "
                            f"got {len(args)}")
        given: Dict[str, object] = {}
        for a, x in zip(self.inputs, args):
            given[a.name] = x
        for key, x in named.items():
            if key not in {a.name for a in self.inputs}:
                raise TypeError(f"{self.name}: unknown argument {key!r} "
                                f"(inputs: {', '.join(a.name for a in self.inputs)})")
            if key in given:
                raise TypeError(f"{self.name}: argument {key!r} given twice")
            given[key] = x
        missing = [a.name for a in self.inputs if a.name not in given]
        if missing:
            raise TypeError(f"{self.name}: missing input(s) {', '.join(missing)}")
        if not isinstance(num_threads, int) or num_threads < 0:
            raise ValueError(f"num_threads must be an int >= 0, got {num_threads!r}")

        arrays: Dict[str, np.ndarray] = {}
        for a in self.inputs:
            arr = _as_array(given[a.name], f"{self.name}: {a.name}")
            if not _dtype_ok(arr, a):
                if a.numpy_dtype is not None:
                    want = a.numpy_dtype.name
                    hint = f" (convert with .astype(np.{want}))"
                else:
                    want = "bfloat16"
                    hint = (" (ml_dtypes.bfloat16, or its bits as uint16: "
                            "attn.compiler.bf16_from_float)")
                raise TypeError(f"{self.name}: {a.name} must be {want}, got "
                                f"{arr.dtype}{hint}")
            arrays[a.name] = arr
        known = self.resolve_sizes(arrays, sizes)

        results: Dict[str, np.ndarray] = {}
        for a in self.outputs:
            if a.role == "optional output" and not return_optional:
                continue
            dt = a.numpy_dtype if a.numpy_dtype is not None else np.dtype(np.uint16)
            results[a.name] = np.empty([known[r] for r in a.ranks], dtype=dt)
        self._run({**arrays, **results}, num_threads)
        outs = [results[a.name] for a in self.outputs if a.name in results]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _run(self, arrays: Mapping[str, np.ndarray], num_threads: int) -> None:
        keep = []  # ctypes objects that must live until the call returns
        ptrs = self._args_type()
        for i, a in enumerate(self.signature.args):
            arr = arrays.get(a.name)
            if arr is None:
                continue  # an optional output that is not wanted: NULL
            item = arr.itemsize
            if (not arr.flags.aligned or
                    any(s < 0 or s % item for s in arr.strides)):
                if a.role != "input":
                    raise ValueError(f"{self.name}: output {a.name} has "
                                     "unsupported strides")
                arr = np.ascontiguousarray(arr)
            keep.append(arr)
            code, bits, _ = _DTYPES[a.dtype]
            shape = (ctypes.c_int64 * max(arr.ndim, 1))(*arr.shape)
            strides = (ctypes.c_int64 * max(arr.ndim, 1))(
                *[s // item for s in arr.strides])
            t = _Tensor(data=arr.ctypes.data if arr.size else None,
                        device=_Device(1, 0), ndim=arr.ndim,
                        dtype=_DType(code, bits, 1),
                        shape=ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64)),
                        strides=ctypes.cast(strides, ctypes.POINTER(ctypes.c_int64)),
                        byte_offset=0)
            keep.extend([shape, strides, t])
            ptrs[i] = ctypes.pointer(t)
        launch = _Launch(num_threads=num_threads)
        status = self._fn(ctypes.cast(ptrs, ctypes.c_void_p), ctypes.byref(launch))
        if status != 0:
            raise KernelError(self.name, status, self.library.last_error())


# --- compile ------------------------------------------------------------------


def _cache_root(cache_dir: Optional[Union[str, os.PathLike]]) -> Path:
    if cache_dir:
        return Path(cache_dir)
    env = os.environ.get("ATTN_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    return Path(xdg) / "attn"


def compile(source: Union[Cascade, str, os.PathLike], target: str = "host", *,
            cascade: Optional[str] = None,
            rank_sizes: Optional[Mapping[str, int]] = None,
            name: Optional[str] = None,
            flags: Sequence[str] = (),
            cache_dir: Optional[Union[str, os.PathLike]] = None,
            attnc: Optional[str] = None) -> Kernel:
    """Compiles a cascade to a shared library and returns its :class:`Kernel`.

    ``source``: a :class:`~attn.builder.Cascade`, a path to a .mlir file or
    dialect text. ``target``: ``"host"`` (alias ``"cpu"``: this machine's
    CPU), ``"x86_64-avx512"`` or ``"x86_64-avx2"``. ``cascade``: which
    cascade of a file with several (default: the only one).
    ``rank_sizes``: static sizes to set before compiling (``{"e": 59,
    "f": 59}``, like attnc --rank-size). ``flags``: more attnc flags
    (``["--row-tile=32"]``). Libraries are cached under ``cache_dir``
    ($ATTN_CACHE_DIR, else ~/.cache/attn) by a hash of the text, target,
    flags and the attnc binary. attnc is found as :func:`attn._tools.find_tool`
    says (``attnc=`` overrides).
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r} (expected one of "
                         f"{', '.join(TARGETS)})")
    text, stem = cascade_text(source)
    text = set_rank_sizes(text, rank_sizes or {})
    names = cascade_names(text)
    if not names:
        raise ValueError("the source has no attn.cascade")
    if cascade is None:
        if len(names) > 1:
            raise ValueError("the source has several cascades ("
                             + ", ".join(names) + "): pass cascade=NAME")
        cascade = names[0]
    elif cascade not in names:
        raise ValueError(f"no cascade @{cascade} (cascades: {', '.join(names)})")
    lib = load_library(text, target, name=name or _c_name(stem), flags=flags,
                       cache_dir=cache_dir, attnc=attnc)
    return lib.kernels[cascade]


_LOADED: Dict[str, Library] = {}


def load_library(text: str, target: str = "host", *, name: str = "attn",
                 flags: Sequence[str] = (),
                 cache_dir: Optional[Union[str, os.PathLike]] = None,
                 attnc: Optional[str] = None) -> Library:
    """Compiles (or finds in the cache) the library of a .mlir text and
    loads it; every cascade of the text becomes a kernel."""
    name = _c_name(name)
    tool = find_tool("attnc", attnc)
    st = os.stat(tool)
    atarget = "host" if target == "cpu" else target
    key = hashlib.sha256("\0".join(
        [text, atarget, name, *flags, tool, str(st.st_size),
         str(st.st_mtime_ns)]).encode()).hexdigest()[:24]
    root = _cache_root(cache_dir)
    final = root / f"{name}-{key}"
    so = final / f"lib{name}.so"
    header = final / f"{name}.h"
    if not (so.is_file() and header.is_file()):
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        try:
            src = work / f"{name}.mlir"
            src.write_text(text, encoding="utf-8")
            run_tool([tool, str(src), "-o", str(work / name), "--emit=shared",
                      f"--target={atarget}", *flags], "attnc")
            try:
                os.rename(work, final)
            except OSError:
                if not so.is_file():  # lost a race only if the other won
                    raise
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    cached = _LOADED.get(str(so))
    if cached is None:
        cached = Library(str(so), str(header), name, str(final / f"{name}.mlir"))
        _LOADED[str(so)] = cached
    return cached
