// attn-lower-gpu: an MHA-family cascade in the 1-pass form becomes one
// FlashAttention-2 style kernel in a gpu.module (docs/gpu.md). The inputs are
// written as the paper writes them; attn-derive-online (tiles of 32 here, to
// keep the unrolled kernel short) gives the 1-pass form first.
// RUN: attn-opt %s -split-input-file --attn-derive-online=tile=32 --attn-lower-gpu 2>/dev/null | FileCheck %s
// RUN: attn-opt %s -split-input-file --attn-derive-online=tile=32 --attn-lower-gpu --attn-gpu-to-nvvm=chip=sm_80 --gpu-module-to-binary=format=isa 2>/dev/null | FileCheck %s --check-prefix=PTX80
// RUN: attn-opt %s -split-input-file --attn-derive-online=tile=32 --attn-lower-gpu --attn-gpu-to-nvvm=chip=sm_90a --gpu-module-to-binary=format=isa 2>/dev/null | FileCheck %s --check-prefix=PTX90

/// Causal attention in bf16 with LSE. The kernel: grid (query tiles of 64,
/// b*h), 128 threads; K tile (32 keys) and V tile (also the Q staging area:
/// 64 rows) in shared memory, rows padded from 32 to 40 elements.
// CHECK: module attributes {gpu.container_module}
// CHECK: gpu.module @causal_gpu
// CHECK-LABEL: gpu.func @causal_kernel(
// CHECK-SAME: %[[Q:[a-z0-9]+]]: memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>,
// CHECK-SAME: %[[K:[a-z0-9]+]]: memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>,
// CHECK-SAME: %[[V:[a-z0-9]+]]: memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>,
// CHECK-SAME: %[[O:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, 1], offset: ?>>,
// CHECK-SAME: %[[LSE:[a-z0-9]+]]: memref<?x?x?xf32, strided<[?, ?, 1], offset: ?>>)
// CHECK-SAME: workgroup(%[[SK:[a-z0-9]+]] : memref<32x40xbf16, #gpu.address_space<workgroup>>, %[[SV:[a-z0-9]+]] : memref<64x40xbf16, #gpu.address_space<workgroup>>)
/// attn_launch: how attnc's host side launches it (grid x over m in blocks of
/// 64 rows, grid y over b*h; 16-byte aligned rows of q, k, v, 2-element
/// aligned rows of o).
// CHECK-SAME: kernel attributes {attn_launch = {arg_align_bytes = array<i64: 16, 16, 16, 8, 4>, arg_stride_multiple = array<i64: 8, 8, 8, 2, 1>, block_rows = 64 : i64, dynamic_shared_bytes = 0 : i64, grid_y_ranks = ["b", "h"], row_rank = "m"}, known_block_size = array<i32: 128, 1, 1>, nvvm.maxntid = array<i32: 128, 1, 1>}
/// Block x is the query tile, block y the flattened (b, h).
// CHECK: gpu.thread_id x
// CHECK: %[[TILE:.*]] = gpu.block_id x
// CHECK: gpu.block_id y
/// The causal conjunct p <= m ends the key loop at the tile holding the
/// block's last row: min(ceildiv(|p|, 32), floordiv(last row, 32) + 1).
// CHECK: %[[NT:.*]] = arith.ceildivui
// CHECK: %[[R0:.*]] = arith.muli %[[TILE]], %c64
// CHECK: arith.floordivsi
// CHECK: %[[END:.*]] = arith.minsi
/// Q: 16-byte cp.async copies (zero-filled past |m|) into the V buffer, then
/// one ldmatrix.x4 A fragment per 16 columns, kept in registers.
// CHECK: nvgpu.device_async_copy %[[Q]][{{.*}}], %[[SV]][{{.*}}], 8, %{{.*}} {bypassL1}
// CHECK: %[[GQ:.*]] = nvgpu.device_async_create_group
// CHECK: nvgpu.device_async_wait %[[GQ]] {numGroups = 0 : i32}
// CHECK-NEXT: gpu.barrier
// CHECK: nvgpu.ldmatrix %[[SV]][{{.*}}] {numTiles = 4 : i32, transpose = false} : {{.*}} -> vector<4x2xbf16>
// CHECK: nvgpu.ldmatrix %[[SV]][{{.*}}] {numTiles = 4 : i32, transpose = false} : {{.*}} -> vector<4x2xbf16>
// CHECK-NEXT: gpu.barrier
/// The first K tile, then the key loop over the visible tiles. Carried: the
/// O fragments (32 columns = 4 n8 tiles x 4 f32), the running max and the
/// partial sums of the lane's two rows.
// CHECK: nvgpu.device_async_copy %[[K]]{{.*}}, %[[SK]]
// CHECK: nvgpu.device_async_create_group
// CHECK: %[[LOOP:.*]]:20 = scf.for %[[J:.*]] = %{{.*}} to %{{.*}} step
// CHECK-SAME: -> (f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32)
/// V(j) is in flight during S = Q K(j)^T; waiting for all but one group
/// completes K(j).
// CHECK: nvgpu.device_async_copy %[[V]]{{.*}}, %[[SV]]
// CHECK: %[[GV:.*]] = nvgpu.device_async_create_group
// CHECK: nvgpu.device_async_wait %[[GV]] {numGroups = 1 : i32}
// CHECK-NEXT: gpu.barrier
/// S on tensor cores: K fragments by ldmatrix.x2 (rows of K are the n
/// dimension), bf16 mma.sync through NVVM (nvgpu.mma.sync cannot type bf16
/// in MLIR 22).
// CHECK: nvgpu.ldmatrix %[[SK]][{{.*}}] {numTiles = 2 : i32, transpose = false} : {{.*}} -> vector<2x2xbf16>
// CHECK: nvvm.mma.sync A[{{.*}}] B[{{.*}}] C[{{.*}}] {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>, shape = #nvvm.shape<m = 16, n = 8, k = 16>}
// CHECK: gpu.barrier
/// K(j+1) is in flight during the softmax and P V.
// CHECK: nvgpu.device_async_copy %[[K]]{{.*}}, %[[SK]]
// CHECK: nvgpu.device_async_create_group
/// The mask: key < |p| and the cascade's p1 * 32 + p0 <= m; scores are
/// scaled by 0.125 * log2(e) and masked to -inf.
// CHECK: %[[C:.*]] = arith.constant 0.180336878 : f32
// CHECK: arith.cmpi slt
// CHECK: arith.muli %{{.*}}, %c32_i32
// CHECK: arith.cmpi sle
// CHECK: arith.andi
// CHECK: arith.mulf %{{.*}}, %[[C]] : f32
// CHECK: arith.select %{{.*}}, %{{.*}}, %cst : f32
/// Row max over the lane's values, then over the quad of lanes sharing the
/// row; the correction and p use ex2.approx.
// CHECK: arith.maxnumf
// CHECK: gpu.shuffle  xor %{{.*}}, %c1_i32{{.*}}, %c32_i32{{.*}} : f32
// CHECK: gpu.shuffle  xor %{{.*}}, %c2_i32{{.*}}, %c32_i32{{.*}} : f32
// CHECK: arith.cmpf oeq
// CHECK: llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f"
/// P V: wait for V(j); P's C fragments are rounded to bf16 and used as A
/// fragments; V fragments by ldmatrix.trans from the row-major V tile.
// CHECK: nvgpu.device_async_wait %[[GV]] {numGroups = 1 : i32}
// CHECK-NEXT: gpu.barrier
// CHECK: arith.truncf %{{.*}} : vector<2xf32> to vector<2xbf16>
// CHECK: nvgpu.ldmatrix %[[SV]][{{.*}}] {numTiles = 2 : i32, transpose = true} : {{.*}} -> vector<2x2xbf16>
// CHECK: nvvm.mma.sync
// CHECK: gpu.barrier
// CHECK-NEXT: scf.yield
/// After the loop: drain the copies, sum l over the quad, write O / l
/// (0 for a row without keys) as aligned pairs and LSE = (m + log2 l) ln 2
/// from the quad's first lane, rows past |m| skipped.
// CHECK: nvgpu.device_async_wait %[[GQ]] {numGroups = 0 : i32}
// CHECK: gpu.shuffle  xor
// CHECK: arith.cmpf ogt
// CHECK: scf.if
// CHECK: vector.store %{{.*}}, %[[O]][{{.*}}] {alignment = 8 : i64} : memref<?x?x?x?xf32, strided<[?, ?, ?, 1], offset: ?>>, vector<2xf32>
/// lse is optional: a null pointer skips the store.
// CHECK: %[[LSEPTR:.*]] = memref.extract_aligned_pointer_as_index %[[LSE]]
// CHECK: arith.cmpi ne, %[[LSEPTR]], %c0
// CHECK: llvm.call_intrinsic "llvm.nvvm.lg2.approx.ftz.f"
// CHECK: memref.store %{{.*}}, %[[LSE]][{{.*}}]
// CHECK: gpu.return

/// The PTX (LLVM's NVPTX back end): the same kernel for sm_80 and sm_90a.
// PTX80: gpu.binary @causal_gpu
// PTX80-SAME: chip = "sm_80"
// PTX80-SAME: .target sm_80
// PTX80-SAME: .visible .entry causal_kernel(
// PTX80-SAME: .maxntid 128, 1, 1
// PTX80-SAME: .shared .align 2 .b8 __wg_causal_kernel_0[2560]
// PTX80-SAME: .shared .align 2 .b8 __wg_causal_kernel_1[5120]
// PTX80-SAME: cp.async.cg.shared.global [%rd{{[0-9]+}}], [%rd{{[0-9]+}}], 16, %r{{[0-9]+}};
// PTX80-SAME: cp.async.commit_group;
// PTX80-SAME: ldmatrix.sync.aligned.m8n8.x4.shared.b16
// PTX80-SAME: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// PTX80-SAME: shfl.sync.bfly.b32
// PTX80-SAME: ex2.approx.ftz.f32
// PTX80-SAME: ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16
// PTX80-SAME: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// PTX80-SAME: cp.async.wait_group
// PTX80-SAME: lg2.approx.ftz.f32
// PTX90: gpu.binary @causal_gpu
// PTX90-SAME: .target sm_90a
// PTX90-SAME: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
attn.cascade @causal ranks(b, h, m, p, e = 32, f = 32)
    (%q: !attn.t<[b, h, m, e], bf16>, %k: !attn.t<[b, h, p, e], bf16>, %v: !attn.t<[b, h, p, f], bf16>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) if (p <= m) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}

// -----

/// MHA in f16 without LSE, one head rank, O in f16: nvgpu.mma.sync; no
/// mask but keys past |p|, and no bound on the key loop but ceildiv(|p|, 32).
// CHECK-LABEL: gpu.func @mha_f16_kernel(
// CHECK-SAME: %[[Q:[a-z0-9]+]]: memref<?x?x?xf16, strided<[?, ?, 1], offset: ?>>,
// CHECK-SAME: %[[O:[a-z0-9]+]]: memref<?x?x?xf16, strided<[?, ?, 1], offset: ?>>)
// CHECK-NOT: arith.minsi
// CHECK: scf.for
// CHECK: nvgpu.mma.sync(%{{.*}}, %{{.*}}, %{{.*}}) {mmaShape = [16, 8, 16]} : (vector<4x2xf16>, vector<2x2xf16>, vector<2x2xf32>) -> vector<2x2xf32>
// CHECK-NOT: arith.cmpi sle
// CHECK: arith.truncf %{{.*}} : vector<2xf32> to vector<2xf16>
// CHECK: nvgpu.ldmatrix {{.*}} {numTiles = 2 : i32, transpose = true}
// CHECK: scf.yield
// CHECK: arith.truncf %{{.*}} : vector<2xf32> to vector<2xf16>
// CHECK: vector.store %{{.*}}, %[[O]]
// CHECK-NOT: memref.store
// CHECK: gpu.return
// PTX80: gpu.binary @mha_f16_gpu
// PTX80-SAME: mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32
attn.cascade @mha_f16 ranks(h, m, p, e = 32, f = 32)
    (%q: !attn.t<[h, m, e], f16>, %k: !attn.t<[h, p, e], f16>, %v: !attn.t<[h, p, f], f16>)
    -> (o: !attn.t<[h, m, f], f16>) {
  %qk = attn.einsum [h, m, p] = %q[h, m, e] * %k[h, p, e] * 0.17677669529663687 sum(e) : f32
  %gm = attn.einsum [h, m] = %qk[h, m, p] max(p) : f32
  %sn = attn.einsum [h, m, p] = exp(%qk[h, m, p] - %gm[h, m]) : f32
  %sd = attn.einsum [h, m] = %sn[h, m, p] sum(p) : f32
  %o = attn.einsum [h, m, f] = %sn[h, m, p] * %v[h, p, f] / %sd[h, m] sum(p) : f16
  attn.yield %o : !attn.t<[h, m, f], f16>
}

// -----

/// A sliding window (p <= m and p >= m - 48): the loop also starts late, at
/// the tile of the first key the block's first row sees.
// CHECK-LABEL: gpu.func @window_kernel(
// CHECK: arith.ceildivsi
// CHECK: arith.floordivsi
// CHECK: arith.maxsi
// CHECK: arith.minsi
// CHECK: scf.for
// CHECK: arith.cmpi sle
// CHECK: arith.cmpi sge
attn.cascade @window ranks(b, m, p, e = 32, f = 32)
    (%q: !attn.t<[b, m, e], bf16>, %k: !attn.t<[b, p, e], bf16>, %v: !attn.t<[b, p, f], bf16>)
    -> (o: !attn.t<[b, m, f], f32>) {
  %qk = attn.einsum [b, m, p] = %q[b, m, e] * %k[b, p, e] * 0.125 sum(e) if (p <= m and p >= m - 48) else -inf : f32
  %gm = attn.einsum [b, m] = %qk[b, m, p] max(p) : f32
  %sn = attn.einsum [b, m, p] = exp(%qk[b, m, p] - %gm[b, m]) if (%gm[b, m] > -inf) : f32
  %sd = attn.einsum [b, m] = %sn[b, m, p] sum(p) : f32
  %o = attn.einsum [b, m, f] = %sn[b, m, p] * %v[b, p, f] / %sd[b, m] sum(p) if (%sd[b, m] > 0) : f32
  attn.yield %o : !attn.t<[b, m, f], f32>
}
