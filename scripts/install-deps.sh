#!/usr/bin/env bash
# Installs the Debian 12 packages the build needs, if any is missing.
# Idempotent: does nothing (and needs no network) when all are present.
set -euo pipefail
packages=(cmake ninja-build g++ llvm-22-dev llvm-22-tools libmlir-22-dev mlir-22-tools
          catch2 libfmt-dev python3 python3-numpy libopenblas-openmp-dev
          python3-pytest python3-setuptools python3-wheel python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
