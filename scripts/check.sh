#!/usr/bin/env bash
# Builds everything and runs every test (lit suite and Catch2 unit tests)
# under ctest. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
cd build
ctest --output-on-failure -j2
