"""The cascade builder: its text parses and matches the example files."""

import math
import subprocess

import pytest

import attn
from attn import variants
from attn.builder import BuilderError, Cascade, exp, log


def attn_opt(text: str) -> str:
    """attn-opt's canonical print of a cascade text (fails the test if it
    does not parse or verify)."""
    tool = attn.find_tool("attn-opt")
    proc = subprocess.run([tool, "-"], input=text, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.returncode == 0, f"attn-opt rejected:\n{text}\n{proc.stderr}"
    return proc.stdout


# Each variant with its defaults is the cascade of an example file.
SAME_AS_EXAMPLE = [
    (variants.mha, {}, "mha.mlir"),
    (variants.causal, {}, "causal.mlir"),
    (variants.causal_bottom_right, {}, "causal-bottom-right.mlir"),
    (variants.window, {"window": 32}, "sliding-window.mlir"),
    (variants.alibi, {}, "alibi.mlir"),
    (variants.gqa, {"group": 4}, "gqa.mlir"),
    (variants.softcap, {"cap": 30.0}, "softcap.mlir"),
    (variants.prefix_lm, {}, "prefix-lm.mlir"),
]


@pytest.mark.parametrize("fn,kwargs,example", SAME_AS_EXAMPLE,
                         ids=[e for _, _, e in SAME_AS_EXAMPLE])
def test_variant_matches_example(repo, fn, kwargs, example):
    built = attn_opt(fn(**kwargs).text())
    want = attn_opt((repo / "examples" / example).read_text())
    assert built == want


def test_head_dim_and_scale():
    text = variants.causal(head_dim=128).text()
    assert "e = 128, f = 128" in text
    assert f"* {1 / math.sqrt(128)!r} sum(e)" in text
    attn_opt(text)
    text = variants.mha(head_dim=59, value_dim=7, scale=0.5, lse=False).text()
    assert "e = 59, f = 7" in text and "* 0.5 sum(e)" in text
    assert "lse" not in text
    attn_opt(text)


def test_general_einsum_builder_parses():
    c = Cascade("sinks", ["b", "h", "m", "p", ("e", 16), ("f", 16)],
                comment="Sliding window with 4 attention sinks.")
    b, h, m, p, e, f = c.rank_exprs()
    q = c.input("q", [b, h, m, e])
    k = c.input("k", [b, h, p, e])
    v = c.input("v", [b, h, p, f])
    qk = c.einsum("qk", [b, h, m, p], q[b, h, m, e] * k[b, h, p, e] * 0.25,
                  reduce="sum", over=[e],
                  cond=(p <= m) & ((p >= m - 8) | (p < 4)),
                  otherwise=float("-inf"))
    gm = c.einsum("gm", [b, h, m], qk[b, h, m, p], reduce="max", over=[p])
    sn = c.einsum("sn", [b, h, m, p], exp(qk[b, h, m, p] - gm[b, h, m]),
                  cond=gm[b, h, m] > float("-inf"))
    sd = c.einsum("sd", [b, h, m], sn[b, h, m, p], reduce="sum", over=[p])
    o = c.einsum("o", [b, h, m, f], sn[b, h, m, p] * v[b, h, p, f] / sd[b, h, m],
                 reduce="sum", over=[p], cond=sd[b, h, m] > 0)
    c.output("o", o)
    c.output("lse", c.einsum("lse", [b, h, m], gm[b, h, m] + log(sd[b, h, m])))
    text = c.text()
    assert text.startswith("// Sliding window with 4 attention sinks.\n")
    assert "if (p <= m and (p >= m - 8 or p < 4)) else -inf" in text
    printed = attn_opt(text)
    assert "attn.cascade @sinks" in printed


def test_expression_precedence():
    c = Cascade("x", ["m", "p"])
    m, p = c.rank_exprs()
    assert str((m - p) * 2) == "(m - p) * 2"
    assert str(m - (p - 1)) == "m - (p - 1)"
    assert str(m - p - 1) == "m - p - 1"
    assert str(-(m + 1)) == "-(m + 1)"
    assert str(~(m < p) | (p == 0)) == "not m < p or p == 0"
    assert str(m // 4) == "m floordiv 4"
    assert str(attn.builder.const(1e-5)) == "1.0e-05"
    assert str(attn.builder.const(2.0)) == "2.0"


def test_builder_errors():
    with pytest.raises(BuilderError, match="no rank 'z'"):
        Cascade("a", ["m"]).rank("z")
    with pytest.raises(BuilderError, match="appears twice"):
        Cascade("a", ["m", "m"])
    with pytest.raises(BuilderError, match="not an identifier"):
        Cascade("a-b", ["m"])
    with pytest.raises(BuilderError, match="reserved"):
        Cascade("a", ["sum"])
    c = Cascade("a", ["m", "p"])
    m, p = c.rank_exprs()
    q = c.input("q", [m, p])
    with pytest.raises(BuilderError, match="unknown rank 'z'"):
        c.input("k", ["z"])
    with pytest.raises(BuilderError, match="2 dimensions"):
        q[m]
    with pytest.raises(BuilderError, match="unknown element type"):
        c.input("k", [m], "float32")
    with pytest.raises(BuilderError, match="truth value"):
        if m <= p:
            pass
    with pytest.raises(BuilderError, match="needs the ranks"):
        c.einsum("s", [m], q[m, p], reduce="sum")
    with pytest.raises(BuilderError, match="already used"):
        c.einsum("q", [m, p], q[m, p])
    with pytest.raises(BuilderError, match="no output"):
        c.text()
