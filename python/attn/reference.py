"""Float64 references.

- :func:`interpret` runs any cascade with ``attn-run``, the reference
  interpreter (float64, lib/Interpreter), over .npy files.
- :func:`attention` and the per-variant functions are plain numpy float64
  references of the standard variants (attn.variants), independent of the
  compiler.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from ._tools import find_tool, run_tool

__all__ = ["interpret", "attention", "mha", "causal", "causal_bottom_right",
           "window", "alibi", "gqa", "softcap", "prefix_lm"]


def interpret(text: str, inputs: Mapping[str, np.ndarray],
              output_names: Sequence[str], cascade: Optional[str] = None,
              sizes: Optional[Mapping[str, int]] = None,
              attn_run: Optional[str] = None) -> Dict[str, np.ndarray]:
    """Runs a cascade (its .mlir text) in float64 with attn-run.

    ``inputs`` maps argument names to arrays (converted to float64, or kept
    as int32/int64 for integer arguments); ``output_names`` are the results
    to read back; ``sizes`` gives dynamic ranks no input determines."""
    tool = find_tool("attn-run", attn_run)
    with tempfile.TemporaryDirectory(prefix="attn-ref-") as tmp:
        src = Path(tmp) / "cascade.mlir"
        src.write_text(text, encoding="utf-8")
        args = [tool, str(src), "--output-dir", tmp]
        if cascade:
            args.append(f"--cascade={cascade}")
        for name, arr in inputs.items():
            arr = np.asarray(arr)
            if arr.dtype.kind == "f" or arr.dtype.name == "bfloat16":
                arr = arr.astype(np.float64)
            path = Path(tmp) / f"in_{name}.npy"
            np.save(path, np.ascontiguousarray(arr))
            args.append(f"--input={name}={path}")
        for r, n in (sizes or {}).items():
            args.append(f"--size={r}={int(n)}")
        run_tool(args, "attn-run (reference interpreter)")
        return {n: np.load(Path(tmp) / f"{n}.npy") for n in output_names}


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray,
              scale: Optional[float] = None, mask: Optional[np.ndarray] = None,
              bias: Optional[np.ndarray] = None, cap: Optional[float] = None,
              group: int = 1):
    """Softmax attention in float64: q [b, h, m, e], k [b, h/group, p, e],
    v [b, h/group, p, f]; ``mask`` (bool, broadcast to [b, h, m, p]; True =
    visible), ``bias`` (added to the scaled scores), ``cap`` (soft-capping
    before bias and mask). Returns (o [b, h, m, f], lse [b, h, m]); a row
    without visible keys gives o = 0, lse = -inf."""
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    if group > 1:
        k = np.repeat(k, group, axis=1)
        v = np.repeat(v, group, axis=1)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = np.einsum("bhme,bhpe->bhmp", q, k) * scale
    if cap is not None:
        s = cap * np.tanh(s / cap)
    if bias is not None:
        s = s + bias
    if mask is not None:
        s = np.where(np.broadcast_to(mask, s.shape), s, -np.inf)
    gm = s.max(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.where(np.isfinite(gm), np.exp(s - gm), 0.0)
        sd = e.sum(axis=-1, keepdims=True)
        o = np.where(sd > 0, np.einsum("bhmp,bhpf->bhmf", e, v) / np.where(sd > 0, sd, 1), 0.0)
        lse = (gm + np.log(sd))[..., 0]
    return o, lse


def _mp(m: int, p: int):
    return np.arange(m)[:, None], np.arange(p)[None, :]


def mha(q, k, v, scale=None):
    return attention(q, k, v, scale)


def causal(q, k, v, scale=None):
    mi, pi = _mp(q.shape[2], k.shape[2])
    return attention(q, k, v, scale, mask=pi <= mi)


def causal_bottom_right(q, k, v, scale=None):
    m, p = q.shape[2], k.shape[2]
    mi, pi = _mp(m, p)
    return attention(q, k, v, scale, mask=pi <= mi + p - m)


def window(q, k, v, window=32, scale=None):
    mi, pi = _mp(q.shape[2], k.shape[2])
    return attention(q, k, v, scale, mask=(pi <= mi) & (pi >= mi - window))


def alibi(q, k, v, scale=None):
    h = q.shape[1]
    mi, pi = _mp(q.shape[2], k.shape[2])
    slopes = np.exp2(-8.0 * (np.arange(h) + 1) / h)[None, :, None, None]
    return attention(q, k, v, scale, mask=pi <= mi,
                     bias=slopes * (pi - mi)[None, None])


def gqa(q, k, v, group=4, scale=None, causal=False):
    mask = None
    if causal:
        mi, pi = _mp(q.shape[2], k.shape[2])
        mask = pi <= mi
    return attention(q, k, v, scale, mask=mask, group=group)


def softcap(q, k, v, cap=30.0, scale=None):
    return attention(q, k, v, scale, cap=cap)


def prefix_lm(q, k, v, prefix_len, scale=None):
    mi, pi = _mp(q.shape[2], k.shape[2])
    pl = np.asarray(prefix_len)[:, None, None, None]
    return attention(q, k, v, scale, mask=(pi[None, None] < pl) | (pi <= mi)[None, None])
