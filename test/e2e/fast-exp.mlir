// exp on every element, once through the scalar path (x read along the row
// rank m: no vector lanes) and once through the vector path (a buffer read
// across 16 rows). test/e2e/FastExpTest.cpp compares both with std::exp.
attn.cascade @fexp ranks(m, e = 16)
    (%x: !attn.t<[m, e], f32>)
    -> (ys: !attn.t<[m, e], f32>, yv: !attn.t<[m, e], f32>) {
  %ys = attn.einsum [m, e] = exp(%x[m, e]) : f32
  %xc = attn.einsum [m, e] = %x[m, e] : f32
  %yv = attn.einsum [m, e] = exp(%xc[m, e]) : f32
  attn.yield %ys, %yv : !attn.t<[m, e], f32>, !attn.t<[m, e], f32>
}
