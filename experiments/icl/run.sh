#!/usr/bin/env bash
# Reproduces experiments/icl/report.md: the published in-context regression setting for
# L = 10 .. 1000 and infinite (softmax and linear attention), and the concentration
# experiment for Gaussian and Rademacher tokens. Usage: experiments/icl/run.sh [CLI] [OUT]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cli=${1:-$here/../../build/attnflow}
out=${2:-$here/out}
threads=${THREADS:-2}
mkdir -p "$out"
for model in softmax linear; do
  for L in 10 30 100 300 1000; do
    "$cli" icl "$here/published.toml" --out "$out/${model}_L$L" --threads "$threads" --no-plots \
      --set model.kind="\"$model\"" --set train.prompt=$L
  done
done
"$cli" icl "$here/published.toml" --out "$out/infinite" --threads "$threads" --no-plots \
  --set train.prompt=infinite --set train.ode_dt=0.005
for law in gaussian rademacher; do
  "$cli" largeprompt "$here/concentration.toml" --out "$out/concentration_$law" \
    --threads "$threads" --no-plots --set tokens.law="\"$law\""
done
# A milder tilt (|U| halved): Gaussian weights e^{<a, X>} then have light enough tails for 1/L.
"$cli" largeprompt "$here/concentration.toml" --out "$out/concentration_gaussian_u0.5" \
  --threads "$threads" --no-plots --set operator.u_scale=0.5
/usr/bin/python3 "$here/report.py" "$out" > "$here/report.md"
echo "wrote $here/report.md"
