"""attnflow ot checkpoints and --resume end to end: a solve stopped after K checkpoints (the
ATTNFLOW_STOP_AFTER_CHECKPOINTS hook, a simulated kill), interrupted by SIGTERM or SIGKILLed,
then resumed (on another thread count), writes f.npy, g.npy and report.json byte for byte equal
to an uninterrupted solve; a resume with other inputs or options and a fresh solve into an
existing output directory are refused."""
import json
import signal
import subprocess
import time

import numpy as np
import pytest
from conftest import kill_after_first_checkpoint

# About 3 s on one thread (n = m = 3000, eps 0.005 of a unit square: several hundred iterations).
SLOW = ["--eps", "0.005", "--checkpoint-every", "0"]


@pytest.fixture
def clouds(tmp_path):
    rng = np.random.default_rng(0)
    paths = {}
    for name, (n, shift) in {"x": (3000, 0.0), "y": (3000, 0.3), "sx": (300, 0.0), "sy": (200, 0.5)}.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], rng.uniform(size=(n, 2)) + shift)
    paths["b"] = tmp_path / "b.npy"
    np.save(paths["b"], rng.uniform(0.5, 1.5, 200))
    return paths


def small(clouds):
    return ["--x", clouds["sx"], "--y", clouds["sy"], "--b", clouds["b"], "--eps", "0.01", "--tol", "1e-9",
            "--quiet", "--checkpoint-every", "0"]


def assert_same_results(whole, cut):
    for name in ("f.npy", "g.npy"):
        assert (whole / name).read_bytes() == (cut / name).read_bytes(), name
    a, b = (json.loads((d / "report.json").read_text()) for d in (whole, cut))
    for key in ("seconds", "threads"):  # timing and the thread count of the last call
        a.pop(key, None), b.pop(key, None)
    assert a == b
    assert a["converged"] is True
    assert not (cut / "checkpoint.bin").exists()


def test_stopped_solve_resumed_equals_uninterrupted(run_cli, clouds, tmp_path):
    args = small(clouds)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run_cli("ot", *args, "--out", whole).returncode == 0
    r = run_cli("ot", *args, "--out", cut, env={"ATTNFLOW_STOP_AFTER_CHECKPOINTS": "40"})
    assert r.returncode == 3 and "stopped after 40 checkpoint(s)" in r.stdout, r.stderr
    assert "continue with --resume" in r.stdout
    assert (cut / "checkpoint.bin").exists() and not (cut / "f.npy").exists()
    # A second interruption, then the rest on another thread count.
    r = run_cli("ot", *args, "--out", cut, "--resume", env={"ATTNFLOW_STOP_AFTER_CHECKPOINTS": "7"})
    assert r.returncode == 3, r.stderr
    r = run_cli("ot", *args, "--out", cut, "--resume", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert_same_results(whole, cut)
    r = run_cli("ot", *args, "--out", cut, "--resume")
    assert r.returncode == 0 and "already finished" in r.stdout


def test_sigterm_checkpoints_then_resume(cli, run_cli, clouds, tmp_path):
    args = ["--x", clouds["x"], "--y", clouds["y"], "--quiet"] + SLOW
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run_cli("ot", *args, "--out", whole).returncode == 0
    p = subprocess.Popen([str(a) for a in [cli, "ot", *args, "--out", cut, "--threads", "1"]], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (cut / "checkpoint.bin").exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    assert p.poll() is None, "the solve finished before the signal: make it slower"
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in out and "--resume" in out, out
    assert (cut / "checkpoint.bin").exists() and not (cut / "f.npy").exists()
    r = run_cli("ot", *args, "--out", cut, "--resume", "--threads", "2")
    assert r.returncode == 0, r.stderr
    assert_same_results(whole, cut)


def test_sigkilled_solve_resumed_equals_uninterrupted(cli, run_cli, clouds, tmp_path):
    args = ["--x", clouds["x"], "--y", clouds["y"], "--quiet"] + SLOW
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run_cli("ot", *args, "--out", whole).returncode == 0
    status = kill_after_first_checkpoint([cli, "ot", *args, "--out", cut, "--threads", "1"], cut)
    assert status == -signal.SIGKILL and not (cut / "f.npy").exists()
    r = run_cli("ot", *args, "--out", cut, "--resume")
    assert r.returncode == 0, r.stderr
    for f in cut.glob("*.tmp.*"):
        f.unlink()  # a temporary file of the killed process's interrupted atomic write
    assert_same_results(whole, cut)


def test_overrelaxed_solve_resumed_at_relaxed_and_plain_iterations_equals_uninterrupted(run_cli, clouds, tmp_path):
    # The checkpoint records whether its g is over-relaxed (docs/math.md section 3.3): stops at a
    # relaxed iteration and at the plain one before the end resume to the same bytes.
    args = small(clouds) + ["--overrelax", "1.6"]
    whole = tmp_path / "whole"
    assert run_cli("ot", *args, "--out", whole).returncode == 0
    report = json.loads((whole / "report.json").read_text())
    plain = tmp_path / "plain"
    assert run_cli("ot", *small(clouds), "--out", plain).returncode == 0
    assert report["overrelax"] == 1.6 and report["converged"] is True
    assert report["iterations"] < json.loads((plain / "report.json").read_text())["iterations"]
    for k in (report["stages"] + 2, report["iterations"]):
        cut = tmp_path / f"cut{k}"
        r = run_cli("ot", *args, "--out", cut, env={"ATTNFLOW_STOP_AFTER_CHECKPOINTS": str(k)})
        assert r.returncode == 3, r.stderr
        r = run_cli("ot", *args, "--out", cut, "--resume", "--threads", "1")
        assert r.returncode == 0, r.stderr
        assert_same_results(whole, cut)
    # Another omega is another solve: its resume is refused.
    cut = tmp_path / "other"
    assert run_cli("ot", *args, "--out", cut, env={"ATTNFLOW_STOP_AFTER_CHECKPOINTS": "3"}).returncode == 3
    r = run_cli("ot", *small(clouds), "--overrelax", "1.5", "--out", cut, "--resume")
    assert r.returncode != 0 and "--resume: the configuration differs" in r.stderr, r.stderr
    r = run_cli("ot", *small(clouds), "--overrelax", "2", "--out", tmp_path / "bad")
    assert r.returncode != 0 and "overrelax = 2, must be in (0, 2)" in r.stderr, r.stderr


def test_resume_with_other_inputs_or_options_is_refused(run_cli, clouds, tmp_path):
    out = tmp_path / "cut"
    args = small(clouds)
    assert run_cli("ot", *args, "--out", out, env={"ATTNFLOW_STOP_AFTER_CHECKPOINTS": "1"}).returncode == 3
    before = (out / "checkpoint.bin").read_bytes()
    np.save(clouds["b"], np.ones(200))  # the same path, other contents
    for changed in (args, [a if a != "0.01" else "0.02" for a in args]):  # other contents; another eps
        r = run_cli("ot", *changed, "--out", out, "--resume")
        assert r.returncode != 0 and "--resume: the configuration differs" in r.stderr, r.stderr
    assert (out / "checkpoint.bin").read_bytes() == before  # nothing touched


def test_existing_output_without_resume_is_refused(run_cli, clouds, tmp_path):
    stopped, done = tmp_path / "stopped", tmp_path / "done"
    args = small(clouds)
    assert run_cli("ot", *args, "--out", stopped, env={"ATTNFLOW_STOP_AFTER_CHECKPOINTS": "1"}).returncode == 3
    assert run_cli("ot", *args, "--out", done).returncode == 0
    for out in (stopped, done):
        r = run_cli("ot", *args, "--out", out)
        assert r.returncode != 0 and "already holds a run (use --resume" in r.stderr
    assert (stopped / "checkpoint.bin").exists() and (done / "f.npy").exists()
