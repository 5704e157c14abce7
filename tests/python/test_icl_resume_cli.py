"""attnflow icl checkpoints and --resume end to end: a run stopped after K checkpoints (the
ATTNFLOW_STOP_AFTER_CHECKPOINTS hook, a simulated kill) or SIGKILLed, then resumed, writes
risk.csv and final.json byte for byte equal to an uninterrupted run, for SGD (softmax and
linear attention) and for the infinite-prompt ODE (rk4 and the adaptive dopri5); a resume with
a changed config and a fresh run into an existing output directory are refused."""
import json
import signal

import pytest
from conftest import kill_after_first_checkpoint

STOP = {"ATTNFLOW_STOP_AFTER_CHECKPOINTS": "2"}

# Small and quick: 40 SGD steps (checkpoints at 10, 20, 30) with rows every 3 steps, so the
# stop falls between logged rows; d = 3.
SGD = ["--set", "data.d=3", "--set", "train.steps=40", "--set", "train.prompt=30",
       "--set", "train.batch=8", "--set", "train.log_every=3", "--set", "eval.prompts=32",
       "--set", "train.checkpoint_every=10"]
ODE = ["--set", "train.prompt=infinite", "--set", "train.steps=400", "--set", "train.lr=0.01",
       "--set", "train.log_every=7", "--set", "train.checkpoint_every=50"]
CASES = {
    "sgd_softmax": SGD + ["--set", "model.kind=softmax"],
    "sgd_linear": SGD + ["--set", "model.kind=linear"],
    "ode_rk4": ODE,
    "ode_dopri5": ODE + ["--set", "train.method=dopri5", "--set", "train.ode_dt=0.05"],
}


@pytest.fixture
def config(tmp_path, run_cli):
    path = tmp_path / "icl.toml"
    path.write_text(run_cli("icl", "--print-default-config", check=True).stdout)
    return path


def icl(run_cli, config, out, *args, env=None):
    return run_cli("icl", config, "--out", out, "--no-plots", "--quiet", *args, env=env)


def assert_same_results(whole, cut):
    for name in ("risk.csv", "final.json", "config.toml"):
        assert (whole / name).read_bytes() == (cut / name).read_bytes(), name
    a, b = (json.loads((d / "summary.json").read_text()) for d in (whole, cut))
    for key in ("seconds", "threads"):  # timing and the thread count of the last call
        a.pop(key), b.pop(key)
    assert a == b
    assert not (cut / "checkpoint.bin").exists()


def test_default_config_documents_checkpoint_every(run_cli):
    text = run_cli("icl", "--print-default-config", check=True).stdout
    assert "checkpoint_every = 1000" in text


@pytest.mark.parametrize("case", sorted(CASES))
def test_stopped_run_resumed_equals_uninterrupted(run_cli, config, tmp_path, case):
    args = CASES[case]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    r = icl(run_cli, config, whole, *args)
    assert r.returncode == 0, r.stderr
    r = icl(run_cli, config, cut, *args, env=STOP)
    assert r.returncode == 3 and "stopped after 2 checkpoint(s)" in r.stdout, r.stderr
    assert "continue with --resume" in r.stdout
    assert (cut / "checkpoint.bin").exists() and (cut / "config.toml").exists()
    assert not (cut / "final.json").exists() and not (cut / "risk.csv").exists()
    # A second interruption, then the rest on another thread count.
    r = icl(run_cli, config, cut, *args, "--resume", env={"ATTNFLOW_STOP_AFTER_CHECKPOINTS": "1"})
    assert r.returncode == 3, r.stderr
    r = icl(run_cli, config, cut, *args, "--resume", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert_same_results(whole, cut)
    r = icl(run_cli, config, cut, *args, "--resume")
    assert r.returncode == 0 and "already finished" in r.stdout


def test_sigkilled_run_resumed_equals_uninterrupted(cli, run_cli, config, tmp_path):
    # About 3 s on one thread; the kill lands soon after the first checkpoint (step 200).
    args = ["--set", "data.d=3", "--set", "train.steps=6000", "--set", "train.prompt=200",
            "--set", "train.batch=64", "--set", "eval.prompts=32", "--set", "train.log_every=5",
            "--set", "train.checkpoint_every=200"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert icl(run_cli, config, whole, *args).returncode == 0
    status = kill_after_first_checkpoint([cli, "icl", config, "--out", cut, "--no-plots", "--quiet",
                                          "--threads", "1", *args], cut)
    assert status == -signal.SIGKILL and not (cut / "final.json").exists()
    r = icl(run_cli, config, cut, *args, "--resume", "--threads", "2")
    assert r.returncode == 0, r.stderr
    for f in cut.glob("*.tmp.*"):
        f.unlink()  # a temporary file of the killed process's interrupted atomic write
    assert_same_results(whole, cut)


def test_resume_with_a_changed_config_is_refused(run_cli, config, tmp_path):
    out = tmp_path / "cut"
    assert icl(run_cli, config, out, *CASES["sgd_softmax"], env=STOP).returncode == 3
    before = (out / "checkpoint.bin").read_bytes()
    r = icl(run_cli, config, out, *CASES["sgd_softmax"], "--set", "train.lr=0.02", "--resume")
    assert r.returncode != 0
    assert "attnflow: error: icl: --resume: the configuration differs from the one the checkpoint" \
        in r.stderr
    assert "config.toml" in r.stderr
    assert (out / "checkpoint.bin").read_bytes() == before  # nothing touched


def test_existing_output_without_resume_is_refused(run_cli, config, tmp_path):
    stopped, done = tmp_path / "stopped", tmp_path / "done"
    assert icl(run_cli, config, stopped, *CASES["ode_rk4"], env=STOP).returncode == 3
    assert icl(run_cli, config, done, *CASES["ode_rk4"]).returncode == 0
    for out in (stopped, done):
        r = icl(run_cli, config, out, *CASES["ode_rk4"])
        assert r.returncode != 0 and "already holds a run (use --resume" in r.stderr
    assert (stopped / "checkpoint.bin").exists() and (done / "final.json").exists()


def test_resume_without_a_checkpoint_starts_over(run_cli, config, tmp_path):
    whole, fresh = tmp_path / "whole", tmp_path / "fresh"
    assert icl(run_cli, config, whole, *CASES["sgd_linear"]).returncode == 0
    r = icl(run_cli, config, fresh, *CASES["sgd_linear"], "--resume")
    assert r.returncode == 0, r.stderr
    assert_same_results(whole, fresh)


def test_checkpoint_every_is_validated_by_name(run_cli, config, tmp_path):
    out = tmp_path / "bad"
    r = icl(run_cli, config, out, "--set", "train.checkpoint_every=-1")
    assert r.returncode != 0 and "train.checkpoint_every = -1, must be >= 0" in r.stderr
    assert not out.exists()
