"""attnflow fit / apply end to end: outputs, push-forward merging, corrupt model files."""
import json
import os
import subprocess

import numpy as np
import pytest

CLI = os.environ.get("ATTNFLOW_CLI", "attnflow")


def run(*args, check=True):
    r = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"{args} failed: {r.stderr}")
    return r


SMALL = ["--set", "task.train_size=16", "--set", "task.test_size=8", "--set", "task.n_min=6",
         "--set", "task.n_max=10", "--set", "train.steps=20", "--set", "train.eval_every=10",
         "--set", "model.depth=1", "--set", "model.mlp_hidden=4", "--quiet", "--no-plots"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    d = tmp_path_factory.mktemp("fit")
    cfg = d / "fit.toml"
    cfg.write_text(run("fit", "--print-default-config").stdout)
    out = d / "out"
    run("fit", cfg, "--out", out, *SMALL)
    return cfg, out


def test_fit_writes_loss_model_summary(fitted):
    _, out = fitted
    rows = np.genfromtxt(out / "loss.csv", delimiter=",", names=True)
    assert list(rows.dtype.names) == ["step", "train_loss", "test_loss"]
    assert list(rows["step"]) == [0, 10, 20]
    assert np.all(np.isfinite(rows["test_loss"]))
    s = json.loads((out / "summary.json").read_text())
    assert s["kind"] == "fit" and "attnflow_version" in s and s["steps"] == 20
    assert s["final_test_loss"] == pytest.approx(rows["test_loss"][-1], rel=1e-12)
    assert (out / "model.afm").read_bytes()[:8] == b"ATFMODEL"
    assert "steps = 20" in (out / "config.toml").read_text()


def test_fit_is_reproducible(fitted, tmp_path):
    cfg, out = fitted
    run("fit", cfg, "--out", tmp_path / "again", "--threads", "1", *SMALL)
    assert (tmp_path / "again" / "model.afm").read_bytes() == (out / "model.afm").read_bytes()


def test_fit_rejects_unknown_keys_and_leaves_nothing(fitted, tmp_path):
    cfg, _ = fitted
    r = run("fit", cfg, "--out", tmp_path / "bad", "--set", "model.depht=2", check=False)
    assert r.returncode != 0 and "attnflow: error:" in r.stderr and "depht" in r.stderr
    r = run("fit", cfg, "--out", tmp_path / "bad", "--set", "train.lr=-1", check=False)
    assert r.returncode != 0 and "lr = -1, must be finite and > 0" in r.stderr
    assert not (tmp_path / "bad").exists()


def test_apply_pushes_forward_and_merges_coincident_atoms(fitted, tmp_path):
    _, out = fitted
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 2))
    x = np.vstack([x, x[1], x[1], x[4]])  # 6 distinct atoms, 9 rows
    w = rng.uniform(0.5, 1.5, size=9)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    run("apply", "--model", out / "model.afm", "--x", tmp_path / "x.npy", "--w", tmp_path / "w.npy",
        "--out", tmp_path / "pf")
    px, pw = np.load(tmp_path / "pf" / "x.npy"), np.load(tmp_path / "pf" / "w.npy")
    assert px.shape == (6, 2) and pw.shape == (6,)
    wn = w / w.sum()
    assert pw[1] == pytest.approx(wn[1] + wn[6] + wn[7], rel=1e-14)
    assert pw[4] == pytest.approx(wn[4] + wn[8], rel=1e-14)
    assert pw.sum() == pytest.approx(1.0, rel=1e-14)
    assert json.loads((tmp_path / "pf" / "summary.json").read_text())["atoms_out"] == 6
    # A Dirac stays a Dirac.
    np.save(tmp_path / "d.npy", np.full((5, 2), 0.25))
    run("apply", "--model", out / "model.afm", "--x", tmp_path / "d.npy", "--out", tmp_path / "pd")
    assert np.load(tmp_path / "pd" / "x.npy").shape == (1, 2)
    assert np.load(tmp_path / "pd" / "w.npy").tolist() == [1.0]


def test_apply_rejects_corrupt_and_truncated_models(fitted, tmp_path):
    _, out = fitted
    data = (out / "model.afm").read_bytes()
    np.save(tmp_path / "x.npy", np.zeros((3, 2)))
    cases = {"trunc.afm": (data[:-20], "checksum mismatch"),
             "flip.afm": (data[:40] + bytes([data[40] ^ 1]) + data[41:], "checksum mismatch"),
             "junk.afm": (b"not a model at all", "not an attnflow model file"),
             "v2.afm": (data[:8] + b"\x02" + data[9:], "format version = 2, must be 1")}
    for name, (content, text) in cases.items():
        (tmp_path / name).write_bytes(content)
        r = run("apply", "--model", tmp_path / name, "--x", tmp_path / "x.npy", "--out",
                tmp_path / ("o" + name), check=False)
        assert r.returncode != 0 and text in r.stderr, (name, r.stderr)
        assert not (tmp_path / ("o" + name)).exists()


def test_fit_summary_reports_sinkhorn_non_convergence(fitted, tmp_path):
    """A Sinkhorn model whose layers miss their tolerance is not reported converged."""
    cfg, _ = fitted
    common = [*SMALL, "--set", 'model.normalization="sinkhorn"', "--set",
              "model.sinkhorn_iterations=0"]
    run("fit", cfg, "--out", tmp_path / "capped", *common, "--set",
        "model.sinkhorn_max_iterations=1")
    s = json.loads((tmp_path / "capped" / "summary.json").read_text())
    assert s["converged"] is False
    assert s["sinkhorn_not_converged"] == s["sinkhorn_solves"] > 0
    assert "not converged after 1 iterations" in s["message"]
    run("fit", cfg, "--out", tmp_path / "ok", *common)
    s = json.loads((tmp_path / "ok" / "summary.json").read_text())
    assert s["converged"] is True and s["sinkhorn_not_converged"] == 0 and s["sinkhorn_solves"] > 0
