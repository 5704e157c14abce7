#!/usr/bin/env bash
# Bundles the header and library dependencies that scripts/gpu-check.sh needs on the bare GPU
# machine (which has the CUDA toolkit, CMake and PyTorch but none of our Debian packages and no
# network): downloads the Debian packages HERE with `apt-get download` and extracts them with
# `dpkg -x` into .gpu-deps/ (ignored by git; name it in the device tool's carry list).
#   libeigen3-dev  Eigen headers (+ CMake config)
#   libfmt-dev     fmt headers, CMake config, libfmt.so -> libfmt9's libfmt.so.9
#   libgtest-dev   GoogleTest headers and static libraries (+ CMake config)
#   liblemon-dev   LEMON headers (src/ot's exact OT; for cuda_wiring_tests)
# About 10 MiB extracted (docs removed). Re-running replaces .gpu-deps/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.gpu-deps"
pkgs=(libeigen3-dev libfmt-dev libfmt9 libgtest-dev liblemon-dev)
. "$root/scripts/deb-extract.sh"
rm -rf "$dest.new"
deb_extract "$dest.new" "${pkgs[@]}"
rm -rf "$dest"
mv "$dest.new" "$dest"
echo "gpu-bundle: $(du -sh "$dest" | cut -f1) in $dest:"
cat "$dest/PACKAGES"
