#!/usr/bin/env bash
# Installs the Debian packages attnflow needs, only those that are missing (idempotent:
# apt-get runs only when something is missing). Usage: scripts/install-deps.sh [build|bench|fuzz]
#   build (default): compiler, CMake, libraries, Python module and test dependencies, and the
#     viewer's plotting library (npm ci in viewer/, the version pinned in viewer/package-lock.json)
#   bench: additionally the peers the benchmarks compare against (PyTorch, POT, OpenBLAS)
#   fuzz: additionally clang-15, libFuzzer and libomp-15 (make fuzz, and the fuzz step of make test)
set -euo pipefail
BUILD_PKGS=(g++ cmake make pkg-config ccache libeigen3-dev libcli11-dev libtomlplusplus-dev libfmt-dev
  nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev liblemon-dev pybind11-dev
  python3-dev python3-numpy python3-matplotlib python3-pytest
  python3-torch python3-pandas python3-setuptools python3-wheel python3-pip python3-venv python3-build
  python3-pot nodejs chromium ffmpeg libopenmpi-dev openmpi-bin)
# ccache: the build compiles through it (CMakeLists.txt, ATTNFLOW_CCACHE), so the pip-install
# test's second build of the library, and rebuilds, reuse the objects; python3-torch: attnflow.torch (autograd Functions) is tested in `make test`; python3-pandas:
# results' to_pandas(); setuptools/wheel/pip/venv: `pip install .` and its venv test;
# python3-build: `python3 -m build --wheel`, the offline wheel of that test;
# python3-pot: the OT tests' peer reference; nodejs (npm ci below), chromium, ffmpeg:
# attnflow view, its browser tests, attnflow animate. libopenmpi-dev, openmpi-bin: the MPI layer
# (mpirun -np P attnflow sweep|run|attention|ot, docs/usage/mpi.md) and its tests in make test.
BENCH_PKGS=(libopenblas0-pthread time)
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
# npm: Debian's nodejs lacks it (package npm), NodeSource's nodejs bundles it.
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "attnflow: installing missing Debian packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "attnflow: error: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The viewer's JavaScript library from the npm registry, exactly as locked (only when missing or
# when the lock file changed since the last npm ci).
VIEWER="$(cd "$(dirname "$0")/.." && pwd)/viewer"
if [ ! -e "$VIEWER/node_modules/.package-lock.json" ] || [ "$VIEWER/package-lock.json" -nt "$VIEWER/node_modules/.package-lock.json" ]; then
  echo "attnflow: npm ci in $VIEWER (plotly.js for attnflow view)"
  (cd "$VIEWER" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
