"""The examples/ scripts run as written (into a temporary directory) and draw their PNGs."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(os.environ.get("ATTNFLOW_SOURCE_DIR", Path(__file__).resolve().parents[2]))
EXAMPLES = {
    "softmax_vs_sinkhorn.py": ["coupling_softmax.png", "coupling_sinkhorn.png"],
    "clustering_simulation.py": ["clusters_trajectories.png", "clusters_observables.png"],
    "optimal_transport.py": ["ot_plan.png"],
}


@pytest.mark.parametrize("script", sorted(EXAMPLES))
def test_example_runs(script, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, str(SOURCE / "examples" / script), str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    for png in EXAMPLES[script]:
        data = (tmp_path / png).read_bytes()
        assert data[:4] == b"\x89PNG" and len(data) > 1000
