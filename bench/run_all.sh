#!/usr/bin/env bash
# Runs every side-by-side comparison script in bench/ (each prints its README table rows).
# Usage: bench/run_all.sh [BUILD_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
for script in "$here"/*_compare.py; do
  echo "== $(basename "$script")"
  /usr/bin/python3 "$script" "$build"
done
