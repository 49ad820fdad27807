// Every example variant parses, verifies and prints back to text that parses
// to the same text, in the custom and in the generic form.
// RUN: bash -c 'for f in %attn_src/examples/*.mlir; do attn-opt "$f" > %t.a && attn-opt %t.a > %t.b && diff %t.a %t.b && attn-opt -mlir-print-op-generic "$f" | attn-opt > %t.c && diff %t.a %t.c || { echo "FAILED: $f"; exit 1; }; done; echo ALL-EXAMPLES-ROUNDTRIP'
// RUN: bash -c 'ls %attn_src/examples/*.mlir | wc -l' | FileCheck %s --check-prefix=COUNT
// COUNT: {{[1-9][0-9]+}}
