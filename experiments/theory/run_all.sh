#!/usr/bin/env bash
# Regenerates the theory experiments (CSV, summary.json, report.md in each folder).
#   experiments/theory/run_all.sh [NAME ...]   NAME in: long_context equiangular schemes
#                                              phase_diagram cluster_count metastability (default: all)
# Uses the CLI at $ATTNFLOW_CLI, else build/attnflow; $PYTHON (default /usr/bin/python3) with NumPy.
# Times on 2 shared cores: long_context 5 s, equiangular 5 s, schemes 5 s, phase_diagram ~3 min on 2 idle cores (published scale: 4 d x 90 betas x 2048 systems),
# metastability ~15 min, cluster_count ~3 min. Plots: python3 -m attnflow.plot experiments/theory/NAME (when available).
set -euo pipefail
cd "$(dirname "$0")"
# Debian's python3 (with NumPy) unless PYTHON says otherwise.
PYTHON=${PYTHON:-$( [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3 )}
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(long_context equiangular schemes phase_diagram cluster_count metastability)
for name in "${names[@]}"; do
  echo "== $name"
  "$PYTHON" "$name.py"
  if "$PYTHON" -c "import attnflow.plot" 2>/dev/null; then
    for dir in "$name" "$name"/*/; do
      [ -f "$dir/summary.json" ] || continue
      "$PYTHON" -m attnflow.plot "$dir" || echo "plots failed for $dir (results are written)"
    done
  fi
done
"$PYTHON" plots.py . || echo "theory figures failed (results are written)"  # the cd above: this folder
