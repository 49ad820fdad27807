#!/usr/bin/env bash
# The main job: build, then for every example variant check it, analyse it
# and run it on seeded random data with the float64 reference interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh attn-opt attn-run
sizes=(--size b=1 --size h=4 --size g=1 --size m=113 --size p=113)
printf '%-26s %-8s %-40s %s\n' variant status "analysis (passes over the key rank)" "output (reference interpreter)"
for f in examples/*.mlir; do
  name=$(basename "$f" .mlir)
  if ! build/bin/attn-opt "$f" -o /dev/null 2>/tmp/attn-err.txt; then
    printf '%-26s %-8s %s\n' "$name" FAILED "$(head -1 /tmp/attn-err.txt)"; exit 1
  fi
  passes=$(build/bin/attn-opt "$f" --attn-analyze -o /dev/null 2>&1 | grep -o 'passes(p) = [0-9]*' | head -1 || true)
  start=$(date +%s%N)
  out=$(build/bin/attn-run "$f" "${sizes[@]}" --seed 1 | head -1)
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  printf '%-26s %-8s %-40s %s (%d ms)\n' "$name" ok "${passes:-n/a}" "$out" "$ms"
done
