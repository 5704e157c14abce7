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


SHARED = """
[measure]
n = 6
d = {d}
systems = 37
seed = 3
[integrate]
method = "{method}"
dt = 0.1
t_end = 0.6
[observe]
every = 0.2
delta = 0.01
[output]
checkpoint_every = 0
snapshots = true
[compute]
precision = "{precision}"
[sweep]
model.beta = [1.0, 4.0, 9.0]
measure.seed = [3, 4]
"""


def test_points_sharing_their_start_equal_runs_alone(run_cli, tmp_path):
    """A sweep's points that share their measure and seed share their start (the sampled
    points; for d > n the span form of the reduced path, start_cache.hpp), two at a time:
    every point's files equal, byte for byte, a run of its config alone (which samples its
    own), in both precisions, d < n and d > n, across two seeds in the same sweep."""
    files = ["observables.csv", "ensemble.csv", "final.npy", "snapshots/snap_000000.npy",
             "snapshots/snap_000003.npy"]
    for d, method, precision in [(20, "residual", "float64"), (20, "rk4", "float32"), (4, "euler", "float64"),
                                 (4, "residual", "float32")]:
        case = tmp_path / f"d{d}_{precision}"
        case.mkdir()
        cfg = case / "s.toml"
        cfg.write_text(SHARED.format(d=d, method=method, precision=precision))
        r = run_cli("sweep", cfg, "--out", case / "sweep", "--jobs", "2", "--no-plots", "--quiet")
        assert r.returncode == 0, r.stderr
        finals = set()
        for p in range(6):
            point = case / "sweep" / "points" / f"point_{p:06d}"
            alone = case / f"alone{p}"
            r = run_cli("run", point / "config.toml", "--out", alone, "--no-plots", "--quiet")
            assert r.returncode == 0, r.stderr
            for f in files:
                assert (point / f).read_bytes() == (alone / f).read_bytes(), (d, precision, p, f)
            finals.add((point / "final.npy").read_bytes())
            # The start is the sampled measure: t = 0 is the same at every beta of a seed.
            if p >= 2:
                first = case / "sweep" / "points" / f"point_{p % 2:06d}"
                assert (point / "snapshots/snap_000000.npy").read_bytes() == \
                    (first / "snapshots/snap_000000.npy").read_bytes()
        assert len(finals) == 6  # and the flows differ
