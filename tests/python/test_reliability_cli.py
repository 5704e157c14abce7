"""Reliability end to end (the README's "Reliability" section): no command deletes or replaces
a file it did not write (demo into a directory holding a user's file, --out ., a FIFO as
output); every command that fails part-way (a simulated full disk) leaves no output, neither
a new directory nor files in an existing empty one; a resume removes the temporaries a
SIGKILLed run left; SIGINT / SIGTERM stop run, icl, sweep and ot at a safe point with a checkpoint,
exit 130 / 143 and print the exact command that resumes, whose result equals an uninterrupted
run byte for byte; a checkpoint with one flipped bit is refused."""
import json
import os
import shlex
import signal
import stat
import subprocess
import time

import numpy as np
import pytest

from test_run_cli import SMALL as RUN  # the small run config the run CLI tests use

# Long enough that a signal sent after the first checkpoint arrives well before the end.
LONG_RUN = RUN.replace("n = 20", "n = 60").replace("t_end = 2.0", "t_end = 10.0") \
    .replace("every = 0.5", "every = 0.1").replace("dt = 0.1", "dt = 0.02")

from test_sweep_cli import SWEEP as _SWEEP  # noqa: E402

SWEEP = _SWEEP.replace("measure.seed = [0, 1, 2]", "measure.seed = [0, 1]")  # 4 points

FIT = ["--set", "task.train_size=16", "--set", "task.test_size=8", "--set", "task.n_min=6",
       "--set", "task.n_max=10", "--set", "train.steps=20", "--set", "train.eval_every=10",
       "--set", "model.depth=1", "--set", "model.mlp_hidden=4", "--quiet", "--no-plots"]
ICL = ["--set", "data.d=3", "--set", "train.steps=40", "--set", "train.prompt=30", "--set", "train.batch=8",
       "--set", "train.log_every=3", "--set", "eval.prompts=32", "--set", "train.checkpoint_every=10",
       "--quiet", "--no-plots"]
LARGEPROMPT = ["--set", "experiment.lengths=[16, 32, 64]", "--set", "experiment.prompts=4",
               "--set", "experiment.queries=2", "--quiet", "--no-plots"]


def files_under(d):
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def same_tree(a, b):
    assert files_under(a) == files_under(b)
    for name in files_under(a):
        if (a / name).is_file() and not name.endswith("summary.json"):  # it holds the timing
            if name == "report.json":  # ot's: the same, but for the timing
                ra, rb = (json.loads((d / name).read_text()) for d in (a, b))
                ra.pop("seconds"), rb.pop("seconds")
                assert ra == rb, name
                continue
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture
def inputs(tmp_path, run_cli):
    """Point clouds, a model file and configs for every command."""
    d = tmp_path / "inputs"
    d.mkdir()
    rng = np.random.default_rng(3)
    np.save(d / "x.npy", rng.standard_normal((12, 2)))
    np.save(d / "y.npy", rng.standard_normal((10, 2)))
    (d / "run.toml").write_text(RUN)
    (d / "sweep.toml").write_text(SWEEP)
    for cmd in ("fit", "icl", "largeprompt"):
        (d / f"{cmd}.toml").write_text(run_cli(cmd, "--print-default-config", check=True).stdout)
    r = run_cli("fit", d / "fit.toml", "--out", d / "fitted", *FIT, "--set", "task.dim=2")
    assert r.returncode == 0, r.stderr
    return d


def command(name, d, out):
    """argv (after the binary) of each command writing to `out`."""
    return {
        "run": ["run", d / "run.toml", "--out", out, "--no-plots", "--quiet"],
        "sweep": ["sweep", d / "sweep.toml", "--out", out, "--no-plots", "--quiet"],
        "icl": ["icl", d / "icl.toml", "--out", out, *ICL],
        "fit": ["fit", d / "fit.toml", "--out", out, *FIT],
        "largeprompt": ["largeprompt", d / "largeprompt.toml", "--out", out, *LARGEPROMPT],
        "ot": ["ot", "--x", d / "x.npy", "--y", d / "y.npy", "--eps", "0.5", "--out", out],
        "apply": ["apply", "--model", d / "fitted/model.afm", "--x", d / "x.npy", "--out", out],
        "demo": ["demo", "--out", out, "--set", "integrate.t_end=0.5", "--no-plots"],
    }[name]


COMMANDS = ["run", "sweep", "icl", "fit", "largeprompt", "ot", "apply", "demo"]


@pytest.mark.parametrize("name", COMMANDS)
def test_a_command_failing_part_way_leaves_no_output(run_cli, inputs, tmp_path, name):
    # The second file write fails as on a full disk: the first output file already exists.
    full_disk = {"ATTNFLOW_FAIL_AFTER_WRITES": "1"}
    new = tmp_path / "new"
    r = run_cli(*command(name, inputs, new), env=full_disk)
    assert r.returncode != 0 and "No space left on device" in r.stderr, (r.stdout, r.stderr)
    assert not new.exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp." in p.name]  # no staging directory left
    # Into an existing empty directory: it stays empty.
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli(*command(name, inputs, empty), env=full_disk)
    assert r.returncode != 0 and "No space left on device" in r.stderr
    assert files_under(empty) == []
    # Without the failure the same command writes its directory.
    r = run_cli(*command(name, inputs, empty))
    assert r.returncode == 0, r.stderr
    assert (empty / "summary.json").exists()


def test_single_file_commands_failing_leave_nothing(run_cli, inputs, tmp_path):
    out = tmp_path / "o"
    for argv in (["attention", "--x", inputs / "x.npy", "--out", out / "a.npy"],
                 ["theory", "equiangular", "--out", out / "e.csv", "--samples", "5"]):
        out.mkdir()
        r = run_cli(*argv, env={"ATTNFLOW_FAIL_AFTER_WRITES": "0"})
        assert r.returncode != 0 and "No space left on device" in r.stderr, r.stderr
        assert files_under(out) == []  # neither the file nor its temporary
        out.rmdir()


@pytest.mark.parametrize("name", COMMANDS)
def test_a_foreign_non_empty_directory_is_refused_untouched(run_cli, inputs, tmp_path, name):
    out = tmp_path / "mine"
    (out / "mydata").mkdir(parents=True)
    (out / "mydata" / "thesis.tex").write_text("years of work")
    r = run_cli(*command(name, inputs, out))
    assert r.returncode != 0 and "is not empty and not a previous" in r.stderr, (r.stdout, r.stderr)
    assert files_under(out) == ["mydata", "mydata/thesis.tex"]


def test_demo_replaces_only_its_own_files(run_cli, inputs, tmp_path, cli):
    cli = os.path.abspath(cli)
    out = tmp_path / "D"
    assert run_cli(*command("demo", inputs, out)).returncode == 0
    (out / "mydata").mkdir()
    (out / "mydata" / "thesis.tex").write_text("years of work")
    r = run_cli(*command("demo", inputs, out))
    assert r.returncode == 0, r.stderr
    assert (out / "mydata" / "thesis.tex").read_text() == "years of work"
    assert (out / "final.npy").exists()
    # --out . in a directory with a user's file: refused, nothing removed.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "notes.txt").write_text("keep")
    r = subprocess.run([cli, "demo", "--out", ".", "--no-plots", "--set", "integrate.t_end=0.5"], cwd=cwd,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and "not a previous demo's output" in r.stderr
    assert files_under(cwd) == ["notes.txt"]
    # --out . in a previous demo's directory: its files are replaced, the user's file stays.
    r = subprocess.run([cli, "demo", "--out", ".", "--no-plots", "--set", "integrate.t_end=0.5"], cwd=out,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (out / "mydata" / "thesis.tex").exists() and (out / "summary.json").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp." in p.name]


def test_outputs_never_replace_a_fifo_or_a_directory(run_cli, inputs, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for argv in (["attention", "--x", inputs / "x.npy", "--out", fifo],
                 ["theory", "equiangular", "--out", fifo, "--samples", "5"]):
        r = run_cli(*argv)
        assert r.returncode != 0 and "it exists and is a FIFO" in r.stderr, r.stderr
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    d = tmp_path / "dir.npy"
    d.mkdir()
    r = run_cli("attention", "--x", inputs / "x.npy", "--out", d)
    assert r.returncode != 0 and "it exists and is a directory" in r.stderr
    assert d.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.npy", "fifo", "inputs"]


def wait_for(predicate, p, limit=60):
    deadline = time.time() + limit
    while not predicate() and p.poll() is None and time.time() < deadline:
        time.sleep(0.005)


def test_resume_removes_the_temporaries_of_a_killed_run(cli, run_cli, tmp_path):
    cfg = tmp_path / "long.toml"
    cfg.write_text(LONG_RUN)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run_cli("run", cfg, "--out", whole, "--no-plots", "--quiet").returncode == 0
    p = subprocess.Popen([cli, "run", cfg, "--out", cut, "--no-plots", "--quiet"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_for(lambda: (cut / "checkpoint.bin").exists(), p)
    p.kill()
    assert p.wait() == -signal.SIGKILL
    # What a kill in the middle of two atomic writes leaves: "<name>.tmp.<pid>" of the dead pid.
    (cut / f"checkpoint.bin.tmp.{p.pid}").write_bytes(b"half a checkpoint")
    (cut / "snapshots" / f"snap_000002.npy.tmp.{p.pid}").write_bytes(b"half a snapshot")
    (cut / "snapshots" / "notes.tmp.txt").write_text("not ours")
    r = run_cli("run", cfg, "--out", cut, "--resume", "--no-plots", "--quiet")
    assert r.returncode == 0, r.stderr
    assert (cut / "snapshots" / "notes.tmp.txt").exists()
    (cut / "snapshots" / "notes.tmp.txt").unlink()
    same_tree(whole, cut)


SIGNAL_CASES = {
    "run_sigint": ("run", signal.SIGINT),
    "run_sigterm": ("run", signal.SIGTERM),
    "icl_sigint": ("icl", signal.SIGINT),
    "icl_sigterm": ("icl", signal.SIGTERM),
    "sweep_sigint": ("sweep", signal.SIGINT),
    "ot_sigint": ("ot", signal.SIGINT),
    "ot_sigterm": ("ot", signal.SIGTERM),
}


@pytest.mark.parametrize("case", SIGNAL_CASES)
def test_a_signal_stops_at_a_checkpoint_and_the_printed_command_resumes(cli, run_cli, tmp_path, case):
    name, sig = SIGNAL_CASES[case]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    if name == "run":
        cfg = tmp_path / "run.toml"
        cfg.write_text(LONG_RUN)
        argv = ["run", cfg, "--no-plots", "--quiet"]
        first = lambda: (cut / "checkpoint.bin").exists()
    elif name == "icl":
        cfg = tmp_path / "icl.toml"
        cfg.write_text(run_cli("icl", "--print-default-config", check=True).stdout)
        argv = ["icl", cfg, "--no-plots", "--quiet", "--set", "data.d=3", "--set", "train.steps=3000",
                "--set", "train.prompt=30", "--set", "train.batch=8", "--set", "train.log_every=50",
                "--set", "eval.prompts=32", "--set", "train.checkpoint_every=10"]
        first = lambda: (cut / "checkpoint.bin").exists()
    elif name == "ot":  # about 3 s on one thread, a checkpoint after every iteration
        rng = np.random.default_rng(0)
        for side in ("x", "y"):
            np.save(tmp_path / f"{side}.npy", rng.uniform(size=(3000, 2)))
        argv = ["ot", "--x", tmp_path / "x.npy", "--y", tmp_path / "y.npy", "--eps", "0.005", "--quiet",
                "--threads", "1", "--checkpoint-every", "0"]
        first = lambda: (cut / "checkpoint.bin").exists()
    else:
        cfg = tmp_path / "sweep.toml"
        cfg.write_text(SWEEP.replace("t_end = 1.0", "t_end = 100.0").replace("n = 10", "n = 40"))
        argv = ["sweep", cfg, "--no-plots", "--quiet", "--jobs", "2"]
        first = lambda: any((cut / "points").glob("*/checkpoint.bin"))
    assert run_cli(*argv, "--out", whole).returncode == 0
    p = subprocess.Popen([cli, *map(str, argv), "--out", str(cut)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    wait_for(first, p)
    p.send_signal(sig)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 128 + sig, (out, err)
    assert f"interrupted by {signal.Signals(sig).name}" in out
    assert not (cut / "summary.json").exists()
    resume = out.strip().splitlines()[-1].strip()
    assert resume.endswith("--resume") and str(cut) in resume
    r = subprocess.run(shlex.split(resume), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    same_tree(whole, cut)


def test_an_interrupted_demo_writes_nothing(cli, tmp_path):
    out = tmp_path / "D"
    p = subprocess.Popen([cli, "demo", "--out", str(out), "--no-plots", "--set", "integrate.t_end=2000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(tmp_path.glob("D.tmp.*/checkpoint.bin")), p)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 130, (stdout, stderr)
    assert "interrupted; nothing written" in stdout
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_with_a_flipped_bit_is_refused(run_cli, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(RUN)
    cut = tmp_path / "cut"
    r = run_cli("run", cfg, "--out", cut, "--no-plots", env={"ATTNFLOW_STOP_AFTER_CHECKPOINTS": "2"})
    assert r.returncode == 3
    data = bytearray((cut / "checkpoint.bin").read_bytes())
    data[-9] ^= 0x04  # the last state value, just before the 8-byte checksum
    (cut / "checkpoint.bin").write_bytes(bytes(data))
    r = run_cli("run", cfg, "--out", cut, "--resume", "--no-plots")
    assert r.returncode != 0 and "checkpoint.bin is corrupt: its checksum" in r.stderr, r.stderr
    assert not (cut / "final.npy").exists()


# Commands with nothing to resume: a signal removes what they were writing (a staged
# directory, an atomic file's temporary), prints what happened and exits 128 + signal. The
# hook ATTNFLOW_PAUSE_IN_WRITES=1 holds every write half done (temporary written, not renamed),
# so the signal arrives while an output exists only in part.
ABANDON_CASES = {
    "fit_sigint": ("fit", signal.SIGINT),
    "apply_sigterm": ("apply", signal.SIGTERM),
    "largeprompt_sigint": ("largeprompt", signal.SIGINT),
    "attention_sigint": ("attention", signal.SIGINT),
}


@pytest.mark.parametrize("case", ABANDON_CASES)
def test_a_signal_removes_a_half_written_output(cli, inputs, tmp_path, case):
    name, sig = ABANDON_CASES[case]
    work = tmp_path / "work"
    work.mkdir()
    if name == "attention":  # a single file into an existing directory of the user's
        (work / "mine.txt").write_text("keep")
        argv = ["attention", "--x", inputs / "x.npy", "--out", work / "a.npy"]
    else:
        argv = command(name, inputs, work / "out")
    env = dict(os.environ, ATTNFLOW_PAUSE_IN_WRITES="1")
    p = subprocess.Popen([cli, *map(str, argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    half = lambda: any(".tmp." in q.name for q in work.rglob("*"))
    wait_for(half, p)
    assert half() and p.poll() is None  # paused in a write: the output exists only in part
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 128 + sig, (out, err)
    assert f"interrupted by {signal.Signals(sig).name}" in err
    if name == "attention":
        assert files_under(work) == ["mine.txt"]
    else:
        assert f"nothing written to {work / 'out'}" in err
        assert files_under(work) == []
