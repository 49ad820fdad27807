// attn-run executes a cascade with the reference interpreter.
// RUN: attn-run %attn_src/examples/mha.mlir --size b=1 --size h=2 --size m=3 --size p=5 --seed 7 | FileCheck %s
// CHECK: o: shape [1, 2, 3, 64]
// CHECK: lse: shape [1, 2, 3] {{.*}} nan 0

// The 1-pass cascade gives the same outputs (sums printed to 7 digits).
// RUN: attn-run %attn_src/examples/mha.mlir --size b=1 --size h=2 --size m=3 --size p=77 --seed 7 > %t.plain
// RUN: attn-run %attn_src/examples/flash-1pass.mlir --size b=1 --size h=2 --size m=3 --size p=77 --seed 7 > %t.flash
// RUN: diff %t.plain %t.flash

// Outputs can be written as .npy and read back as inputs.
// RUN: rm -rf %t.dir && mkdir -p %t.dir
// RUN: attn-run %attn_src/examples/mha.mlir --size b=1 --size h=1 --size m=2 --size p=2 --output-dir %t.dir
// RUN: attn-run %attn_src/examples/linear.mlir --input q=%t.dir/o.npy --input k=%t.dir/o.npy --size p=2 | FileCheck %s --check-prefix=NPY
// NPY: o: shape [1, 1, 2, 64]

// Errors: a missing rank size, an integer argument without data, a bad file.
// RUN: not attn-run %attn_src/examples/mha.mlir --size b=1 --size h=1 --size m=2 2>&1 | FileCheck %s --check-prefix=NOSIZE
// NOSIZE: the size of rank 'p' is unknown
// RUN: not attn-run %attn_src/examples/mha.mlir --input q=/nonexistent.npy 2>&1 | FileCheck %s --check-prefix=NOFILE
// NOFILE: attn-run: npy file '/nonexistent.npy'
