"""attn.compile: kernels built by attnc --emit=shared, called through ctypes
on numpy data and compared with float64 numpy references."""

import numpy as np
import pytest

import attn
from attn import reference as ref
from attn import variants
from attn.builder import Cascade, exp, log

TOL = 2e-5  # |got - want| <= TOL + TOL * |want| for float32 kernels


def rand(rng, *shape, dtype=np.float32):
    return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)


def assert_close(got, want, tol=TOL):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    both_inf = np.isinf(got) & np.isinf(want) & (np.sign(got) == np.sign(want))
    with np.errstate(invalid="ignore"):
        err = np.where(both_inf, 0.0, np.abs(got - want))
    bound = tol + tol * np.where(np.isfinite(want), np.abs(want), 0.0)
    worst = np.max(err / bound)
    assert worst <= 1.0, f"worst error {worst:.3g} x tolerance (max |err| {err.max():.3g})"


# (variant, its kwargs, numpy reference, reference kwargs, KV heads divisor)
CASES = [
    ("mha", {}, ref.mha, {}, 1),
    ("causal", {}, ref.causal, {}, 1),
    ("causal_bottom_right", {}, ref.causal_bottom_right, {}, 1),
    ("window", {"window": 17}, ref.window, {"window": 17}, 1),
    ("alibi", {}, ref.alibi, {}, 1),
    ("gqa", {"group": 2}, ref.gqa, {"group": 2}, 2),
    ("softcap", {"cap": 5.0}, ref.softcap, {"cap": 5.0}, 1),
]


@pytest.mark.parametrize("name,kwargs,reffn,refkw,group", CASES,
                         ids=[c[0] for c in CASES])
def test_variant_numerics_odd_shapes(name, kwargs, reffn, refkw, group):
    """Head dim 59, 113 queries, 77 or 113 keys, against numpy float64."""
    kernel = attn.compile(getattr(variants, name)(head_dim=59, **kwargs))
    rng = np.random.default_rng(1)
    b, h = 2, 4
    for m, p in ((113, 113), (113, 77), (1, 113)):
        q = rand(rng, b, h, m, 59)
        k = rand(rng, b, h // group, p, 59)
        v = rand(rng, b, h // group, p, 59)
        o, lse = kernel(q, k, v)
        assert o.dtype == np.float32 and o.shape == (b, h, m, 59)
        assert lse.dtype == np.float32 and lse.shape == (b, h, m)
        ro, rl = reffn(q, k, v, **refkw)
        assert_close(o, ro)
        assert_close(lse, rl)


def test_masked_rows_give_zero_and_minus_inf():
    """Bottom-right causal with more queries than keys: the first rows see
    no key (O = 0, LSE = -inf)."""
    kernel = attn.compile(variants.causal_bottom_right(head_dim=59))
    rng = np.random.default_rng(2)
    q, k, v = rand(rng, 1, 2, 113, 59), rand(rng, 1, 2, 50, 59), rand(rng, 1, 2, 50, 59)
    o, lse = kernel(q, k, v)
    assert np.all(o[:, :, :63] == 0) and np.all(np.isneginf(lse[:, :, :63]))
    ro, rl = ref.causal_bottom_right(q, k, v)
    assert_close(o, ro)
    assert_close(lse, rl)


def test_general_builder_kernel():
    """A variant written with the Einsum builder (a window with attention
    sinks, head dim 59) compiled and compared with numpy."""
    c = Cascade("sinks", ["b", "h", "m", "p", ("e", 59), ("f", 59)])
    b, h, m, p, e, f = c.rank_exprs()
    q, k, v = (c.input(n, [b, h, r, d]) for n, r, d in
               (("q", m, e), ("k", p, e), ("v", p, f)))
    qk = c.einsum("qk", [b, h, m, p], q[b, h, m, e] * k[b, h, p, e] * 0.125,
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
    kernel = attn.compile(c)
    rng = np.random.default_rng(3)
    qa, ka, va = (rand(rng, 1, 3, 113, 59) for _ in range(3))
    got_o, got_lse = kernel(qa, ka, va)
    mi, pi = np.arange(113)[:, None], np.arange(113)[None, :]
    mask = (pi <= mi) & ((pi >= mi - 8) | (pi < 4))
    ro, rl = ref.attention(qa, ka, va, scale=0.125, mask=mask)
    assert_close(got_o, ro)
    assert_close(got_lse, rl)


def test_rank_sizes_file_and_check_with_interpreter(repo):
    """A .mlir file with its head dim set to 59, checked by attn.check
    against the reference interpreter (attn-run, float64)."""
    result = attn.check(repo / "examples" / "causal.mlir", {"b": 1, "h": 2, "m": 113, "p": 113},
                        rank_sizes={"e": 59, "f": 59})
    assert result.ok, str(result)
    assert [o.name for o in result.outputs] == ["o", "lse"]
    assert result.outputs[0].shape == (1, 2, 113, 59)
    assert 0 < result.outputs[0].max_abs_error < 1e-5


def test_check_detects_a_wrong_kernel():
    """attn.check fails when kernel and reference differ (causal kernel,
    non-causal reference)."""
    kernel = attn.compile(variants.causal(head_dim=59))
    result = attn.check(kernel, reference=ref.mha)
    assert not result.ok
    assert result.outputs[0].failures > 0
    assert "FAIL" in str(result)
    # The same kernel against its own reference passes.
    assert attn.check(kernel, reference=ref.causal).ok


def test_check_interpreter_gqa_bf16_f16():
    r = attn.check(variants.gqa(group=4, head_dim=59), {"b": 1, "g": 2})
    assert r.ok, str(r)
    assert r.sizes["h"] == 8 and r.outputs[0].shape == (1, 8, 113, 59)
    r = attn.check(variants.causal(head_dim=59, dtype="bf16"), {"b": 1, "h": 2})
    assert r.ok and r.atol == attn.TOLERANCES["bfloat16"][0]
    r = attn.check(variants.causal(head_dim=59, dtype="f16"), {"b": 1, "h": 2})
    assert r.ok and r.atol == attn.TOLERANCES["float16"][0]


def test_lse_optional_threads_and_named_arguments():
    kernel = attn.compile(variants.causal(head_dim=59))
    rng = np.random.default_rng(4)
    q, k, v = (rand(rng, 1, 2, 113, 59) for _ in range(3))
    o, lse = kernel(q, k, v)
    o_only = kernel(q, k, v, return_optional=False)
    assert isinstance(o_only, np.ndarray)
    np.testing.assert_array_equal(o_only, o)
    o1, lse1 = kernel(v=v, q=q, k=k, num_threads=1)
    np.testing.assert_array_equal(o1, o)
    np.testing.assert_array_equal(lse1, lse)


class DLPackOnly:
    """An object that only speaks DLPack (like a framework tensor)."""

    def __init__(self, a):
        self._a = a

    def __dlpack__(self, stream=None):
        return self._a.__dlpack__()

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


class ArrayInterfaceOnly:
    def __init__(self, a):
        self.__array_interface__ = a.__array_interface__
        self._keep = a


def test_dlpack_array_interface_and_strided_inputs():
    kernel = attn.compile(variants.mha(head_dim=59))
    rng = np.random.default_rng(5)
    q, k, v = (rand(rng, 2, 2, 113, 59) for _ in range(3))
    want_o, want_lse = kernel(q, k, v)
    o, lse = kernel(DLPackOnly(q), ArrayInterfaceOnly(k), v)
    np.testing.assert_array_equal(o, want_o)
    # A [b, m, h, e] buffer seen as [b, h, m, e] (strided, no copy), a
    # Fortran-ordered array and a negatively strided view (copied).
    q_bmhe = np.ascontiguousarray(q.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
    k_f = np.asfortranarray(k)
    v_rev = np.ascontiguousarray(v[:, :, ::-1])[:, :, ::-1]
    assert not q_bmhe.flags.c_contiguous and v_rev.strides[2] < 0
    o2, lse2 = kernel(q_bmhe, k_f, v_rev)
    assert_close(o2, want_o, 1e-6)
    assert_close(lse2, want_lse, 1e-6)


def test_bad_arguments_raise_clear_errors():
    kernel = attn.compile(variants.gqa(group=2, head_dim=59))
    rng = np.random.default_rng(6)
    q = rand(rng, 1, 4, 113, 59)
    k = rand(rng, 1, 2, 100, 59)
    v = rand(rng, 1, 2, 100, 59)
    kernel(q, k, v)  # fine
    with pytest.raises(TypeError, match=r"q must be float32, got float64"):
        kernel(q.astype(np.float64), k, v)
    with pytest.raises(ValueError, match=r"k must have 4 dimensions \[b, g, p, e\]"):
        kernel(q, k[0], v)
    with pytest.raises(ValueError, match=r"v dimension 2 \(rank p\) has size 99, but p is 100"):
        kernel(q, k, v[:, :, :99])
    with pytest.raises(ValueError, match=r"q dimension 3 \(rank e\) has size 64, but e is 59"):
        kernel(rand(rng, 1, 4, 113, 64), k, v)
    with pytest.raises(ValueError, match=r"\|h\| must be 2 \* \|g\|"):
        kernel(rand(rng, 1, 6, 113, 59), k, v)
    bf = attn.compile(variants.mha(head_dim=59, dtype="bf16"))
    with pytest.raises(TypeError, match="q must be bfloat16, got float32"):
        bf(q, k, v)
    with pytest.raises(TypeError, match="expected a numpy array"):
        kernel([[1.0]], k, v)
    with pytest.raises(TypeError, match="missing input"):
        kernel(q, k)
    with pytest.raises(TypeError, match="unknown argument 'x'"):
        kernel(q, k, v=v, x=v)


def test_runtime_errors_become_kernel_errors():
    """Bypassing the Python checks, the entry point's own validation comes
    back as KernelError with attn_last_error()."""
    kernel = attn.compile(variants.mha(head_dim=59))
    rng = np.random.default_rng(7)
    arrays = {"q": rand(rng, 1, 2, 10, 59), "k": rand(rng, 1, 2, 12, 59),
              "v": rand(rng, 1, 2, 11, 59), "o": np.empty((1, 2, 10, 59), np.float32),
              "lse": np.empty((1, 2, 10), np.float32)}
    with pytest.raises(attn.KernelError, match="ATTN_ERR_SHAPE: .*v") as info:
        kernel._run(arrays, 1)
    assert info.value.status == 5


def test_compile_errors():
    with pytest.raises(ValueError, match="unknown target"):
        attn.compile(variants.mha(), target="sm_90a")
    with pytest.raises(FileNotFoundError):
        attn.compile("no/such/file.mlir")
    with pytest.raises(attn.ToolError, match="attnc failed"):
        attn.compile("attn.cascade @broken ranks(m) (%q: !attn.t<[m], f32>) -> () {}")
    with pytest.raises(ValueError, match="no rank named z"):
        attn.compile(variants.mha(), rank_sizes={"z": 3})
