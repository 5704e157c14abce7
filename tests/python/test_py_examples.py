"""The examples/ scripts run as written (in this process, via runpy, into a temporary
directory) and draw their PNGs."""
import os
import runpy
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
def test_example_runs(script, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [script, str(tmp_path)])
    runpy.run_path(str(SOURCE / "examples" / script), run_name="__main__")
    assert "wrote" in capsys.readouterr().out
    for png in EXAMPLES[script]:
        data = (tmp_path / png).read_bytes()
        assert data[:4] == b"\x89PNG" and len(data) > 1000
