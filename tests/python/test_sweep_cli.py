"""attnflow sweep end to end: the grid, the tidy table, --set on the [sweep] lists, and a
killed sweep resumed equal to an uninterrupted one."""
import csv
import json

SWEEP = """
[measure]
n = 10
d = 3
[model]
beta = 2.0
[integrate]
dt = 0.1
t_end = 1.0
[observe]
every = 0.5
[output]
checkpoint_every = 1
snapshots = false
[sweep]
model.beta = [1.0, 4.0]
measure.seed = [0, 1, 2]
"""


def test_sweep_writes_tidy_table(run_cli, tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP)
    out = tmp_path / "out"
    r = run_cli("sweep", cfg, "--out", out, "--set", "sweep.model.beta=[1.0, 4.0, 9.0]", "--no-plots")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert len(rows) == 9 * 3  # grid points x observation times
    assert list(rows[0])[:5] == ["point", "model.beta", "measure.seed", "t", "system"]  # the file's order
    assert {r["model.beta"] for r in rows} == {"1.0", "4.0", "9.0"}
    assert "energy" in rows[0] and "clusters" in rows[0]
    s = json.loads((out / "summary.json").read_text())
    assert s["kind"] == "sweep" and s["points"] == 9 and s["status"] == "finished"
    assert (out / "points/point_000008/final.npy").exists()


def test_bad_sweep_names_the_key(run_cli, tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP.replace("measure.seed = [0, 1, 2]", "measure.n = [4, 0]"))
    out = tmp_path / "out"
    r = run_cli("sweep", cfg, "--out", out)
    assert r.returncode != 0 and "measure.n = 0, must be >= 1" in r.stderr and "sweep point 1: model.beta=1.0, measure.n=0" in r.stderr
    assert not out.exists()


def test_killed_sweep_resumed_equals_uninterrupted(run_cli, tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run_cli("sweep", cfg, "--out", whole, "--jobs", "2", "--no-plots").returncode == 0
    r = run_cli("sweep", cfg, "--out", cut, "--jobs", "1", "--no-plots", env={"ATTNFLOW_STOP_AFTER_POINTS": "2"})
    assert r.returncode == 3 and not (cut / "sweep.csv").exists()
    r = run_cli("sweep", cfg, "--out", cut, "--resume", "--no-plots")
    assert r.returncode == 0, r.stderr
    assert (whole / "sweep.csv").read_bytes() == (cut / "sweep.csv").read_bytes()
    s = json.loads((cut / "summary.json").read_text())
    assert s["skipped"] == 2 and s["ran"] == 4
