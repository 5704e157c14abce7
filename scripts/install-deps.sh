#!/usr/bin/env bash
# Installs the Debian packages attnflow needs, only those that are missing (idempotent:
# apt-get runs only when something is missing). Usage: scripts/install-deps.sh [build|bench|fuzz]
#   build (default): compiler, CMake, libraries, Python module and test dependencies
#   bench: additionally the peers the benchmarks compare against (PyTorch, POT, OpenBLAS)
#   fuzz: additionally clang-15, libFuzzer and libomp-15 (make fuzz, and the fuzz step of make test)
set -euo pipefail
BUILD_PKGS=(g++ cmake make pkg-config libeigen3-dev libcli11-dev libtomlplusplus-dev libfmt-dev
  nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev liblemon-dev pybind11-dev
  python3-dev python3-numpy python3-matplotlib python3-pytest)
BENCH_PKGS=(python3-torch python3-pot libopenblas0-pthread time)
# fuzz: clang-15 with libFuzzer (libclang-common-15-dev) and its OpenMP runtime (make fuzz)
FUZZ_PKGS=(clang-15 libclang-common-15-dev libomp-15-dev)
pkgs=("${BUILD_PKGS[@]}")
[ "${1:-build}" = "bench" ] && pkgs+=("${BENCH_PKGS[@]}")
[ "${1:-build}" = "fuzz" ] && pkgs+=("${FUZZ_PKGS[@]}")

missing=()
for p in "${pkgs[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "attnflow: installing missing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "attnflow: error: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
