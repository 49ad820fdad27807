#!/usr/bin/env bash
# Configures (once) and builds the project in build/ with Ninja.
set -euo pipefail
cd "$(dirname "$0")/.."
"$(dirname "$0")/install-deps.sh"
if [ ! -f build/build.ninja ]; then
  cmake -G Ninja -S . -B build -DCMAKE_BUILD_TYPE=Release
fi
start=$(date +%s)
ninja -C build "$@"
echo "== build finished in $(( $(date +%s) - start )) s"
