"""Standard attention variants as cascades (the forms of examples/*.mlir).

Every function returns a :class:`attn.builder.Cascade` in the plain 3-pass
form (``attnc`` derives the 1-pass online form itself), with arguments
``q [b, h, m, e]``, ``k [b, h|g, p, e]``, ``v [b, h|g, p, f]`` and results
``o [b, h, m, f]`` and (unless ``lse=False``) ``lse [b, h, m]``. ``m`` are
queries, ``p`` keys, ``e``/``f`` the head dims (static), ``b``/``h`` batch
and heads (dynamic). ``scale`` defaults to ``1/sqrt(head_dim)``. Fully
masked rows give O = 0 and LSE = -inf.

    >>> import attn
    >>> print(attn.variants.causal(head_dim=128))      # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Callable, Optional

from .builder import Cascade, Expr, Value, exp, exp2, log, size, tanh

__all__ = ["mha", "causal", "causal_bottom_right", "window", "alibi", "gqa",
           "softcap", "prefix_lm", "softmax_attention", "VARIANTS"]

NEG_INF = float("-inf")


def softmax_attention(
    name: str,
    head_dim: int = 64,
    value_dim: Optional[int] = None,
    scale: Optional[float] = None,
    dtype: str = "f32",
    lse: bool = True,
    group: Optional[int] = None,
    score: Optional[Callable[[Cascade, Value, dict], Expr]] = None,
    mask: Optional[Callable[[dict], Expr]] = None,
    sparse: Optional[str] = None,
    comment: str = "",
) -> Cascade:
    """The general softmax-attention skeleton every variant here uses.

    ``group``: query heads per KV head (GQA; ranks ``h = group * g``).
    ``score(c, s, r)``: rewrites the scaled scores ``s`` (an einsum value)
    into the final logits, e.g. adding a bias (``r`` maps rank names to
    :class:`Rank`). ``mask(r)``: the condition under which key p is visible
    to query m (masked logits are -inf); ``sparse`` is its mask class.
    """
    if not isinstance(head_dim, int) or head_dim < 1:
        raise ValueError(f"head_dim must be a positive int, got {head_dim!r}")
    value_dim = head_dim if value_dim is None else value_dim
    if not isinstance(value_dim, int) or value_dim < 1:
        raise ValueError(f"value_dim must be a positive int, got {value_dim!r}")
    scale = 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
    ranks = ["b", "h"] + (["g"] if group else []) + ["m", "p", ("e", head_dim), ("f", value_dim)]
    relations = [("h", group, "g")] if group else []
    c = Cascade(name, ranks, relations, comment=comment)
    r = {x.name: x for x in c.rank_exprs()}
    b, h, m, p, e, f = (r[x] for x in "bhmpef")
    kvh = (h // group) if group else h
    kv_rank = "g" if group else "h"
    q = c.input("q", [b, h, m, e], dtype)
    k = c.input("k", [b, kv_rank, p, e], dtype)
    v = c.input("v", [b, kv_rank, p, f], dtype)
    dot = q[b, h, m, e] * k[b, kvh, p, e] * scale
    cond = mask(r) if mask else None
    otherwise = NEG_INF if mask else None
    if score is None:
        qk = c.einsum("qk", [b, h, m, p], dot, reduce="sum", over=[e],
                      cond=cond, otherwise=otherwise, sparse=sparse)
    else:
        s = c.einsum("s", [b, h, m, p], dot, reduce="sum", over=[e])
        qk = c.einsum("qk", [b, h, m, p], score(c, s, r), cond=cond,
                      otherwise=otherwise, sparse=sparse)
    gm = c.einsum("gm", [b, h, m], qk[b, h, m, p], reduce="max", over=[p])
    sn = c.einsum("sn", [b, h, m, p], exp(qk[b, h, m, p] - gm[b, h, m]),
                  cond=(gm[b, h, m] > NEG_INF) if mask else None)
    sd = c.einsum("sd", [b, h, m], sn[b, h, m, p], reduce="sum", over=[p])
    o = c.einsum("o", [b, h, m, f], sn[b, h, m, p] * v[b, kvh, p, f] / sd[b, h, m],
                 reduce="sum", over=[p], cond=(sd[b, h, m] > 0) if mask else None)
    c.output("o", o)
    if lse:
        l = c.einsum("lse", [b, h, m], gm[b, h, m] + log(sd[b, h, m]))
        c.output("lse", l)
    return c


def mha(head_dim: int = 64, *, value_dim: Optional[int] = None,
        scale: Optional[float] = None, dtype: str = "f32", lse: bool = True,
        name: str = "mha") -> Cascade:
    """Multi-head attention: ``O = softmax(scale * Q K^T) V``."""
    return softmax_attention(name, head_dim, value_dim, scale, dtype, lse,
                             comment="Multi-head attention (attn.variants.mha).")


def causal(head_dim: int = 64, *, value_dim: Optional[int] = None,
           scale: Optional[float] = None, dtype: str = "f32", lse: bool = True,
           name: str = "causal") -> Cascade:
    """Causal attention, top-left aligned: key p is visible to query m iff
    ``p <= m``."""
    return softmax_attention(
        name, head_dim, value_dim, scale, dtype, lse,
        mask=lambda r: r["p"] <= r["m"], sparse="causal",
        comment="Causal attention, top-left aligned (attn.variants.causal).")


def causal_bottom_right(head_dim: int = 64, *, value_dim: Optional[int] = None,
                        scale: Optional[float] = None, dtype: str = "f32",
                        lse: bool = True,
                        name: str = "causal_bottom_right") -> Cascade:
    """Causal attention aligned at the bottom right (the last query sees
    every key): ``p <= m + |p| - |m|``."""
    return softmax_attention(
        name, head_dim, value_dim, scale, dtype, lse,
        mask=lambda r: r["p"] <= r["m"] + size("p") - size("m"),
        sparse="causal_bottom_right",
        comment="Causal attention, bottom-right aligned "
                "(attn.variants.causal_bottom_right).")


def window(window: int = 32, head_dim: int = 64, *,
           value_dim: Optional[int] = None, scale: Optional[float] = None,
           dtype: str = "f32", lse: bool = True,
           name: str = "sliding_window") -> Cascade:
    """Sliding-window (local causal) attention: query m sees keys
    ``m - window <= p <= m`` (``window + 1`` keys)."""
    if not isinstance(window, int) or window < 0:
        raise ValueError(f"window must be an int >= 0, got {window!r}")
    return softmax_attention(
        name, head_dim, value_dim, scale, dtype, lse,
        mask=lambda r: (r["p"] <= r["m"]) & (r["p"] >= r["m"] - window),
        sparse="window",
        comment=f"Sliding-window attention, keys m - {window} <= p <= m "
                "(attn.variants.window).")


def alibi(head_dim: int = 64, *, value_dim: Optional[int] = None,
          scale: Optional[float] = None, dtype: str = "f32", lse: bool = True,
          name: str = "alibi") -> Cascade:
    """ALiBi (Press et al. 2022), causal: ``score + slope(h) * (p - m)`` with
    ``slope(h) = 2^(-8 (h + 1) / |h|)``."""
    def score(c: Cascade, s: Value, r: dict) -> Expr:
        b, h, m, p = r["b"], r["h"], r["m"], r["p"]
        return s[b, h, m, p] + exp2(-8.0 * (h + 1) / h.size) * (p - m)
    return softmax_attention(
        name, head_dim, value_dim, scale, dtype, lse, score=score,
        mask=lambda r: r["p"] <= r["m"], sparse="causal",
        comment="ALiBi, causal (attn.variants.alibi).")


def gqa(group: int = 4, head_dim: int = 64, *, value_dim: Optional[int] = None,
        scale: Optional[float] = None, dtype: str = "f32", lse: bool = True,
        causal: bool = False, name: str = "gqa") -> Cascade:
    """Grouped-query attention: ``group`` query heads share one KV head
    (``h = group * g``; query head h reads KV head ``h floordiv group``).
    K and V are ``[b, g, p, e|f]``. ``causal=True`` adds the top-left causal
    mask."""
    if not isinstance(group, int) or group < 1:
        raise ValueError(f"group must be a positive int, got {group!r}")
    return softmax_attention(
        name, head_dim, value_dim, scale, dtype, lse, group=group,
        mask=(lambda r: r["p"] <= r["m"]) if causal else None,
        sparse="causal" if causal else None,
        comment=f"Grouped-query attention, {group} query heads per KV head "
                "(attn.variants.gqa).")


def softcap(cap: float = 30.0, head_dim: int = 64, *,
            value_dim: Optional[int] = None, scale: Optional[float] = None,
            dtype: str = "f32", lse: bool = True,
            name: str = "softcap") -> Cascade:
    """Logit soft-capping (Gemma 2): ``s = cap * tanh(s / cap)``."""
    cap = float(cap)
    if not cap > 0:
        raise ValueError(f"cap must be > 0, got {cap!r}")

    def score(c: Cascade, s: Value, r: dict) -> Expr:
        b, h, m, p = r["b"], r["h"], r["m"], r["p"]
        return cap * tanh(s[b, h, m, p] / cap)
    return softmax_attention(name, head_dim, value_dim, scale, dtype, lse,
                             score=score,
                             comment="Logit soft-capping (attn.variants.softcap).")


def prefix_lm(head_dim: int = 64, *, value_dim: Optional[int] = None,
              scale: Optional[float] = None, dtype: str = "f32",
              lse: bool = True, name: str = "prefix_lm") -> Cascade:
    """Prefix-LM: keys before ``prefix_len[b]`` (an int32 ``[b]`` argument)
    are visible to every query, the others causally."""
    scale_ = 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
    value_dim = head_dim if value_dim is None else value_dim
    c = Cascade(name, ["b", "h", "m", "p", ("e", head_dim), ("f", value_dim)],
                comment="Prefix-LM attention (attn.variants.prefix_lm).")
    b, h, m, p, e, f = c.rank_exprs()
    q = c.input("q", [b, h, m, e], dtype)
    k = c.input("k", [b, h, p, e], dtype)
    v = c.input("v", [b, h, p, f], dtype)
    pl = c.input("prefix_len", [b], "i32", sparse="seq_lens")
    qk = c.einsum("qk", [b, h, m, p], q[b, h, m, e] * k[b, h, p, e] * scale_,
                  reduce="sum", over=[e], cond=(p < pl[b]) | (p <= m),
                  otherwise=NEG_INF, sparse="prefix")
    gm = c.einsum("gm", [b, h, m], qk[b, h, m, p], reduce="max", over=[p])
    # Key 0 is visible to every query (p <= m): no row is fully masked, so
    # no guards are needed.
    sn = c.einsum("sn", [b, h, m, p], exp(qk[b, h, m, p] - gm[b, h, m]))
    sd = c.einsum("sd", [b, h, m], sn[b, h, m, p], reduce="sum", over=[p])
    o = c.einsum("o", [b, h, m, f], sn[b, h, m, p] * v[b, h, p, f] / sd[b, h, m],
                 reduce="sum", over=[p])
    c.output("o", o)
    if lse:
        c.output("lse", c.einsum("lse", [b, h, m], gm[b, h, m] + log(sd[b, h, m])))
    return c


#: name -> constructor, for the command line (``python -m attn emit causal``).
VARIANTS = {
    "mha": mha, "causal": causal, "causal_bottom_right": causal_bottom_right,
    "window": window, "alibi": alibi, "gqa": gqa, "softcap": softcap,
    "prefix_lm": prefix_lm,
}
