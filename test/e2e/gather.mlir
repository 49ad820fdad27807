// A gather into an argument: row l of the result reads the key row that
// idx[m, l] names. test/e2e/GatherTest.cpp passes indices in range and out
// of range (negative, past the end): attn-lower-cpu clamps them into the
// dimension instead of reading outside the tensor.
attn.cascade @gather ranks(m, l, p, e = 16)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>, %idx: !attn.t<[m, l], i32>)
    -> (s: !attn.t<[m, l], f32>) {
  %s = attn.einsum [m, l] = %q[m, e] * %k[%idx[m, l], e] sum(e) : f32
  attn.yield %s : !attn.t<[m, l], f32>
}
