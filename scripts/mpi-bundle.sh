#!/usr/bin/env bash
# Bundles what the MPI scaling measurement needs on the bare 16-core GPU machine (which has no
# Debian packages, no OpenMPI and no network; its image is newer than Debian 12, so Debian's
# binaries run there): .mpi-deps/ (ignored by git; name it in the device tool's carry list).
#   usr/, lib/      OpenMPI 4.1 (openmpi-bin, libopenmpi3 and the libraries it loads: hwloc,
#                   libevent, PMIx, udev) and the CLI's own shared libraries (fmt, toml++,
#                   libgomp), from `apt-get download` + `dpkg -x`, without Fortran, Java,
#                   InfiniBand, UCX and libfabric (one node: shared memory and TCP)
#   bin/attnflow-v3, bin/attnflow-v4
#                   the CLI built here with MPI for x86-64-v3 (AVX2) and x86-64-v4 (AVX-512)
#                   instead of -march=native (the device's CPU is not this one)
#   env.sh          `. .mpi-deps/env.sh`: PATH, LD_LIBRARY_PATH, OPAL_PREFIX and the PMIx
#                   component path pointing into the bundle, and ATTNFLOW_CLI set to the build
#                   the CPU runs (v4 where /proc/cpuinfo has avx512f)
# scripts/mpi-device-check.sh runs the measurement there. About 30 MiB; re-running replaces it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.mpi-deps"
pkgs=(openmpi-bin openmpi-common libopenmpi3 libhwloc15 libevent-core-2.1-7 libevent-pthreads-2.1-7
      libpmix2 libudev1 libfmt9 libtomlplusplus3 libgomp1)
tmp="$(mktemp -d)"  # build logs
trap 'rm -rf "$tmp"' EXIT
. "$root/scripts/deb-extract.sh"
rm -rf "$dest.new"
deb_extract "$dest.new" "${pkgs[@]}"
mkdir -p "$dest.new/bin"
# The launcher names that Debian's alternatives would create.
for n in mpirun mpiexec; do ln -s "$n.openmpi" "$dest.new/usr/bin/$n"; done

# The CLI for the device: MPI on, no tests, benchmarks or Python module.
for level in v3 v4; do
  b="$root/build-mpi-$level"
  cmake -S "$root" -B "$b" -DCMAKE_BUILD_TYPE=Release -DATTNFLOW_NATIVE=OFF \
    -DCMAKE_CXX_FLAGS="-march=x86-64-$level" -DATTNFLOW_BUILD_TESTS=OFF -DATTNFLOW_BUILD_BENCH=OFF \
    -DATTNFLOW_BUILD_PYTHON=OFF >"$tmp/cmake-$level.log" 2>&1 || { tail -20 "$tmp/cmake-$level.log"; exit 1; }
  cmake --build "$b" --target attnflow -j "$(nproc)" >"$tmp/build-$level.log" 2>&1 ||
    { tail -30 "$tmp/build-$level.log"; exit 1; }
  case "$(ldd "$b/attnflow")" in  # (not ldd | grep -q: with pipefail, grep's early exit fails ldd)
    *libmpi*) ;;
    *) echo "mpi-bundle: $b/attnflow is built without MPI" >&2; exit 1 ;;
  esac
  cp "$b/attnflow" "$dest.new/bin/attnflow-$level"
  strip --strip-unneeded "$dest.new/bin/attnflow-$level"
done

cat >"$dest.new/env.sh" <<'ENV'
# . .mpi-deps/env.sh: the bundle's OpenMPI and libraries first (see scripts/mpi-bundle.sh).
B="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export OPAL_PREFIX="$B/usr"
export PMIX_MCA_mca_base_component_path="$B/usr/lib/x86_64-linux-gnu/pmix2/lib/pmix"
export PATH="$B/usr/bin:$PATH"
export LD_LIBRARY_PATH="$B/usr/lib/x86_64-linux-gnu:$B/lib/x86_64-linux-gnu:$B/usr/lib/x86_64-linux-gnu/openmpi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if grep -qw avx512f /proc/cpuinfo; then export ATTNFLOW_CLI="$B/bin/attnflow-v4"; else export ATTNFLOW_CLI="$B/bin/attnflow-v3"; fi
ENV
rm -rf "$dest"
mv "$dest.new" "$dest"
echo "mpi-bundle: $(du -sh "$dest" | cut -f1) in $dest:"
cat "$dest/PACKAGES"
