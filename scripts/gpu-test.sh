#!/usr/bin/env bash
# On a machine with an NVIDIA GPU (sm_80..sm_89 or sm_90) and its driver:
# builds what the GPU tests need and runs them. Unlike ctest, a skipped
# numeric test (no driver or no GPU found) fails here (exit 77).
#   scripts/gpu-test.sh            # build + ctest -R '^gpu-' + the numeric test
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh attnc attn-gpu-ptxas-check attn-gpu-host-tests \
  attn-gpu-numeric-tests attn-fake-cuda
cd build
ctest -R '^gpu-' --output-on-failure
echo "== the GPU numeric test, on the GPU"
bin/attn-gpu-numeric-tests
