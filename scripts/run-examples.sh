#!/usr/bin/env bash
# The main job: build, then for every example variant check it, analyse it
# and run it on seeded random data with the float64 reference interpreter;
# then run the kernels attnc compiled from them against that interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh attn-opt attn-run attnc attn-examples
sizes=(--size b=1 --size h=4 --size g=1 --size m=113 --size p=113)

# Runtime metadata (integer arguments) of some examples, and the sizes of
# ranks the common ones above do not cover (a later --size wins).
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
npy_i32() { # FILE SHAPE PYTHON-LIST: writes an int32 .npy (standard library only)
  python3 - "$@" <<'PY'
import struct, sys
path, shape, values = sys.argv[1], eval(sys.argv[2]), eval(sys.argv[3])
header = "{'descr': '<i4', 'fortran_order': False, 'shape': %r, }" % (shape,)
header += " " * (63 - (10 + len(header)) % 64) + "\n"
with open(path, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    f.write(struct.pack("<%di" % len(values), *values))
PY
}
npy_i32 "$data/prefix_len.npy" "(1,)" "[40]"
npy_i32 "$data/seg.npy" "(1, 113)" "[i // 30 for i in range(113)]"
npy_i32 "$data/cu_q.npy" "(4,)" "[0, 50, 80, 113]"
npy_i32 "$data/cu_k.npy" "(4,)" "[0, 40, 40, 100]"
npy_i32 "$data/block_table.npy" "(1, 8)" "[5, 1, 7, 3, 0, 6, 2, 4]"
npy_i32 "$data/seq_lens.npy" "(1,)" "[113]"
npy_i32 "$data/block_offsets.npy" "(1, 4, 5)" "[0, 1, 3, 5, 7] * 4"
npy_i32 "$data/block_indices.npy" "(1, 4, 7)" "[0, 0, 1, 1, 2, 0, 3] * 4"
npy_i32 "$data/key_indices.npy" "(1, 4, 113, 16)" "[(i * 37) % 113 for i in range(4 * 113 * 16)]"
declare -A extra=(
  [prefix-lm]="--input prefix_len=$data/prefix_len.npy"
  [document-mask]="--input seg_q=$data/seg.npy --input seg_k=$data/seg.npy"
  [varlen]="--input cu_seqlens_q=$data/cu_q.npy --input cu_seqlens_k=$data/cu_k.npy"
  [paged-kv]="--size n=8 --input block_table=$data/block_table.npy --input seq_lens=$data/seq_lens.npy"
  [block-sparse]="--input block_offsets=$data/block_offsets.npy --input block_indices=$data/block_indices.npy"
  [sparse-indices]="--size l=16 --input key_indices=$data/key_indices.npy"
  [decode-split-kv]="--size h=8"
  [shared-prefix]="--size s=113"
)

printf '%-26s %-8s %-40s %s\n' variant status "analysis (passes over the key rank)" "output (reference interpreter)"
for f in examples/*.mlir; do
  name=$(basename "$f" .mlir)
  if ! build/bin/attn-opt "$f" -o /dev/null 2>/tmp/attn-err.txt; then
    printf '%-26s %-8s %s\n' "$name" FAILED "$(head -1 /tmp/attn-err.txt)"; exit 1
  fi
  passes=$(build/bin/attn-opt "$f" --attn-analyze -o /dev/null 2>&1 | grep -o 'passes(p) = [0-9]*' | head -1 || true)
  start=$(date +%s%N)
  read -r -a more <<<"${extra[$name]:-}"
  out=$(build/bin/attn-run "$f" "${sizes[@]}" "${more[@]}" --seed 1 | head -1)
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  printf '%-26s %-8s %-40s %s (%d ms)\n' "$name" ok "${passes:-n/a}" "$out" "$ms"
done

# The compiled kernels: attnc built them into static libraries at build time
# (test/e2e); each is checked against the interpreter and timed.
echo
echo "== kernels compiled by attnc (CPU), checked against the float64 interpreter"
build/bin/attn-examples --threads "$(nproc)" --n 1024
