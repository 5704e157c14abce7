#!/usr/bin/env bash
# Runs every side-by-side comparison in bench/ (each prints its README table rows).
# Usage: bench/run_all.sh [BUILD_DIR]      QUICK=1 skips the runs that take many minutes
# (n = 131072 attention is kept: it takes seconds; flow n = 1e5 x 100 steps is skipped).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
py=/usr/bin/python3
run() { echo "== $*"; "$py" "$@"; }
run "$here/attention_compare.py" "$build"
if [ "${QUICK:-0}" = 1 ]; then run "$here/flow_compare.py" "$build" --skip-large
else run "$here/flow_compare.py" "$build"; fi
run "$here/ensemble_compare.py" "$build"
run "$here/ot_compare.py" "$build"
run "$here/icl_compare.py" "$build"
run "$here/model_compare.py" "$build"
run "$here/theory_compare.py" "$build"
run "$here/python_compare.py" "$build"
echo "== torch_compare.py"; PYTHONPATH="$build/python" "$py" "$here/torch_compare.py"
