#!/usr/bin/env python3
"""attnflow under mpirun (docs/usage/mpi.md): every distributed command's outputs compared byte
for byte with a single-process run (the reference: no MPI launcher, so MPI is never started),
for 2 ranks and 3 ranks (oversubscribed) at 1 or 2 OpenMP threads per rank; a killed MPI job
resumed; bad input on one rank reported once, on rank 0, with a non-zero exit and no hang.

Usage: run_mpi_tests.py GROUP  (sweep, ensemble, attention, ot, resume, failure, split). CTest runs
each group (cmake/mpi.cmake) with ATTNFLOW_CLI = the CLI and MPIEXEC = mpirun. Every mpirun
runs under a timeout: a hang fails the test instead of blocking the suite."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLI = os.environ.get("ATTNFLOW_CLI", "build/attnflow")
MPIEXEC = os.environ.get("MPIEXEC") or shutil.which("mpirun") or "mpirun"
TIMEOUT = 120
# Running as root (containers, CI) needs OpenMPI's consent; more ranks than cores needs
# --oversubscribe; the shared-memory transport's single-copy mechanism (CMA) needs ptrace
# rights containers often lack, so it is off (copies through the shared segment instead).
MPI_FLAGS = ["--allow-run-as-root", "--oversubscribe", "--mca", "btl_vader_single_copy_mechanism", "none",
             "--mca", "mpi_yield_when_idle", "1", "--bind-to", "none"]

failures = []


def env_for(threads, extra=None):
    env = dict(os.environ)
    # Never let the reference see an MPI launcher's variables (it must run as one process).
    for k in list(env):
        if k.startswith(("OMPI_", "PMIX_", "PMI_")):
            del env[k]
    env["OMP_NUM_THREADS"] = str(threads)
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    env.update(extra or {})
    return env


def run(args, ranks=0, threads=1, extra_env=None, expect=0):
    """ranks = 0: the CLI alone; otherwise mpirun -np ranks."""
    cmd = [CLI] + [str(a) for a in args]
    if ranks:
        cmd = [MPIEXEC, "-np", str(ranks)] + MPI_FLAGS + ["-x", "OMP_NUM_THREADS", "-x", "OMP_WAIT_POLICY"] + \
              [x for k in (extra_env or {}) for x in ("-x", k)] + cmd
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env_for(threads, extra_env))
    except subprocess.TimeoutExpired:
        raise AssertionError(f"timed out after {TIMEOUT} s (a hang): {' '.join(cmd)}")
    if expect is not None and (r.returncode == 0) != (expect == 0):
        raise AssertionError(f"exit {r.returncode}, expected {'0' if expect == 0 else 'non-zero'}: "
                             f"{' '.join(cmd)}\nstdout: {r.stdout}\nstderr: {r.stderr}")
    return r


def same_files(ref, got, names, label):
    missing = [n for n in names if not (Path(got) / n).exists()]
    if missing:
        raise AssertionError(f"{label}: missing {missing}")
    differ = [n for n in names if (Path(ref) / n).read_bytes() != (Path(got) / n).read_bytes()]
    if differ:
        raise AssertionError(f"{label}: {differ} differ from the single-process run")


def proc_state(pid):
    """The state letter of /proc/PID/stat ("R", "S", "Z", ...), None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[0]


def session_pids(sid):
    """The processes of session SID (zombies included)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[3]) == sid:
                pids.append(int(d.name))
    return pids


def kill_session(proc):
    """SIGKILL to every process of mpirun's session (started with start_new_session): mpirun puts
    each rank in a process group of its own, so killing mpirun's group would leave the ranks
    running (and writing) for a while. Waits until none is left, as after a node's loss."""

    def members():
        return [pid for pid in session_pids(proc.pid) if proc_state(pid) not in ("Z", None)]

    t0 = time.time()
    while (left := members()) and time.time() - t0 < 30:
        for pid in left:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    proc.wait(timeout=30)
    assert not members(), "processes of the killed job survived"


def check(name, fn):
    try:
        fn()
        print(f"ok   {name}")
    except AssertionError as e:
        failures.append(name)
        print(f"FAIL {name}: {e}")


# The sweep CLI tests' small grid (tests/python/test_sweep_cli.py), one seed more: 8 points.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from test_sweep_cli import SWEEP as _SWEEP  # noqa: E402

SWEEP = _SWEEP.replace("measure.seed = [0, 1, 2]", "measure.seed = [0, 1, 2, 3]")
assert "measure.seed = [0, 1, 2, 3]" in SWEEP

# An ensemble on the batched path (SA, identity head, euler) and one off it (rk4 with noise
# and a scheme would be slower; dopri5 takes the per-system path), snapshots and checkpoints.
ENSEMBLE = """
[measure]
n = 12
d = 3
systems = 7
seed = 5
[model]
beta = 3.0
[integrate]
method = "{method}"
dt = 0.05
t_end = 1.5
[observe]
every = 0.25
per_system = {per_system}
[output]
checkpoint_every = 2
snapshots = true
"""


# One system larger than the batched path's n (so the per-system field and its symmetric
# kernel pass run), split across the ranks.
ONE_SYSTEM = """
[measure]
n = 700
d = 3
seed = 5
[model]
kind = "{kind}"
beta = 2.0
{heads}[integrate]
method = "rk4"
dt = 0.05
t_end = 0.5
[observe]
every = 0.1
[output]
checkpoint_every = 2
snapshots = true
"""


def sweep_points(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).glob("points/*/*")
                  if p.name in ("observables.csv", "final.npy"))


def group_sweep(tmp):
    cfg = tmp / "s.toml"
    cfg.write_text(SWEEP)
    ref = tmp / "ref"
    run(["sweep", cfg, "--out", ref, "--no-plots", "--quiet", "--jobs", "1"])
    names = ["sweep.csv", "grid.csv", "base.toml"] + sweep_points(ref)
    assert len(names) == 3 + 2 * 8
    for ranks, threads in ((2, 1), (3, 2)):
        def t(ranks=ranks, threads=threads):
            out = tmp / f"p{ranks}t{threads}"
            r = run(["sweep", cfg, "--out", out, "--no-plots", "--jobs", str(threads)], ranks, threads)
            same_files(ref, out, names, f"sweep -np {ranks}")
            assert r.stdout.count("wrote ") == 1, f"rank 0 alone prints: {r.stdout}"
        check(f"sweep -np {ranks} threads {threads} equals one process", t)


def ensemble_outputs(root):
    return ["observables.csv", "ensemble.csv", "final.npy", "config.toml"] + \
        sorted(str(p.relative_to(root)) for p in Path(root).glob("snapshots/*.npy"))


def group_ensemble(tmp):
    for method in ("euler", "dopri5"):
        cfg = tmp / f"e_{method}.toml"
        # dopri5 without per-system rows: ensemble.csv and summary.json's "final_ensemble" only.
        cfg.write_text(ENSEMBLE.format(method=method, per_system="true" if method == "euler" else "false"))
        ref = tmp / f"ref_{method}"
        run(["run", cfg, "--out", ref, "--no-plots", "--quiet"])
        names = ensemble_outputs(ref)
        assert len(names) > 6
        for ranks, threads in ((2, 1), (3, 2)):
            def t(ranks=ranks, threads=threads, cfg=cfg, ref=ref, names=names, method=method):
                out = tmp / f"{method}_p{ranks}t{threads}"
                run(["run", cfg, "--out", out, "--no-plots"], ranks, threads)
                same_files(ref, out, names, f"run ({method}) -np {ranks}")
                import json
                a = json.loads((ref / "summary.json").read_text())
                b = json.loads((out / "summary.json").read_text())
                for k in ("steps", "field_evaluations", "final", "final_ensemble", "observation_times", "converged"):
                    assert a.get(k) == b.get(k), f"summary.json {k}: {a.get(k)} != {b.get(k)}"
            check(f"run ensemble ({method}) -np {ranks} threads {threads} equals one process", t)
    # One large system: every rank advances it, the field's kernel pass split across them
    # (n = 700). SA and USA with Q = K: the symmetric pass by row tiles (three tiles of 256
    # rows; 2 ranks own 2 + 1 tiles, 3 ranks one each). Sinkhorn with two random heads: the
    # Sinkhorn half-steps and the general pass by query rows. rk4 (four evaluations a step),
    # snapshots and checkpoints.
    for kind, heads in (("sa", ""), ("usa", ""), ("sinkhorn", 'heads = 2\nqkv = "gaussian"\nqkv_seed = 3\n')):
        cfg = tmp / f"one_{kind}.toml"
        cfg.write_text(ONE_SYSTEM.format(kind=kind, heads=heads))
        ref = tmp / f"one_ref_{kind}"
        run(["run", cfg, "--out", ref, "--no-plots", "--quiet"])
        names = ["observables.csv", "final.npy", "config.toml"] + \
            sorted(str(p.relative_to(ref)) for p in Path(ref).glob("snapshots/*.npy"))
        for ranks, threads in ((2, 1), (3, 2)):
            def t(ranks=ranks, threads=threads, cfg=cfg, ref=ref, names=names, kind=kind):
                out = tmp / f"one_{kind}_p{ranks}t{threads}"
                r = run(["run", cfg, "--out", out, "--no-plots"], ranks, threads)
                same_files(ref, out, names, f"run (one system, {kind}) -np {ranks}")
                import json
                a = json.loads((ref / "summary.json").read_text())
                b = json.loads((out / "summary.json").read_text())
                for k in ("steps", "field_evaluations", "final", "final_ensemble", "observation_times", "converged"):
                    assert a.get(k) == b.get(k), f"summary.json {k}: {a.get(k)} != {b.get(k)}"
                assert r.stdout.count("wrote ") == 1, f"rank 0 alone prints: {r.stdout}"
            check(f"run one system ({kind}, field split) -np {ranks} threads {threads} equals one process", t)
    # d > n: each rank advances coordinates in a basis of each system's span (the batched
    # path's reduction); rank 0 gathers coordinates and bases, forms the points and checkpoints.
    cfg = tmp / "e_reduced.toml"
    cfg.write_text(ENSEMBLE.format(method="euler", per_system="true").replace("d = 3", "d = 20"))
    ref = tmp / "ref_reduced"
    run(["run", cfg, "--out", ref, "--no-plots", "--quiet"])
    check("run ensemble (d > n, reduced) -np 3 threads 2 equals one process",
          lambda: (run(["run", cfg, "--out", tmp / "reduced_p3", "--no-plots"], 3, 2),
                   same_files(ref, tmp / "reduced_p3", ensemble_outputs(ref), "run (reduced) -np 3")))
    # float32 (compute.precision on the CPU): 37 systems in blocks of 16 lanes, split 13 / 12 /
    # 12 across the ranks (other blocks, other lane positions), d > n (coordinates), rk4.
    cfg = tmp / "e_float32.toml"
    cfg.write_text(ENSEMBLE.format(method="rk4", per_system="true").replace("d = 3", "d = 20").replace("systems = 7", "systems = 37")
                   + '[compute]\nprecision = "float32"\n')
    ref = tmp / "ref_float32"
    run(["run", cfg, "--out", ref, "--no-plots", "--quiet"])
    check("run ensemble (float32, d > n) -np 3 threads 2 equals one process",
          lambda: (run(["run", cfg, "--out", tmp / "float32_p3", "--no-plots"], 3, 2),
                   same_files(ref, tmp / "float32_p3", ensemble_outputs(ref), "run (float32) -np 3")))
    # More ranks than systems: some ranks own none.
    cfg = tmp / "two.toml"
    cfg.write_text(ENSEMBLE.format(method="euler", per_system="true").replace("systems = 7", "systems = 2"))
    run(["run", cfg, "--out", tmp / "two_ref", "--no-plots", "--quiet"])
    check("run ensemble of 2 systems on 3 ranks equals one process",
          lambda: (run(["run", cfg, "--out", tmp / "two_p3", "--no-plots"], 3, 1),
                   same_files(tmp / "two_ref", tmp / "two_p3", ensemble_outputs(tmp / "two_ref"), "run -np 3")))


def clouds(tmp, n, m, d, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, d)), rng.normal(size=(m, d)) + 0.5
    np.save(tmp / "x.npy", x)
    np.save(tmp / "y.npy", y)
    np.save(tmp / "wy.npy", rng.uniform(0.5, 1.5, m))
    return tmp / "x.npy", tmp / "y.npy"


def group_attention(tmp):
    # 700 queries: 256-row parts plus a short one (3 ranks: 256, 256, 188).
    x, y = clouds(tmp, 700, 300, 3, 1)
    for norm, extra in (("softmax", []), ("sinkhorn", ["--tol", "1e-10"]), ("none", [])):
        args = ["attention", "--x", x, "--y", y, "--wy", tmp / "wy.npy", "--beta", "0.7", "--normalization", norm] + extra
        run(args + ["--out", tmp / f"ref_{norm}.npy"])
        for ranks, threads in ((2, 1), (3, 2)):
            def t(ranks=ranks, threads=threads, args=args, norm=norm):
                out = tmp / f"{norm}_p{ranks}t{threads}.npy"
                r = run(args + ["--out", out], ranks, threads)
                assert out.read_bytes() == (tmp / f"ref_{norm}.npy").read_bytes(), "out.npy differs"
                # Each rank read and held only its rows of the points.
                assert r.stderr.count(f"points split across {ranks} processes") == 1, r.stderr
            check(f"attention ({norm}) -np {ranks} threads {threads} equals one process", t)
    # Self-attention (keys = queries) with a head's Q and K, and values of their own; a CSV
    # input keeps the points whole on every rank (the same bytes).
    rng = np.random.default_rng(5)
    np.save(tmp / "q.npy", rng.normal(size=(2, 3)))
    np.save(tmp / "k.npy", rng.normal(size=(2, 3)))
    np.save(tmp / "v.npy", rng.normal(size=(700, 4)))
    np.savetxt(tmp / "x.csv", np.load(x), delimiter=",")
    for name, extra in (("self", ["--x", x, "--q", tmp / "q.npy", "--k", tmp / "k.npy", "--v", tmp / "v.npy",
                                  "--normalization", "sinkhorn"]),
                        ("csv", ["--x", tmp / "x.csv", "--y", y, "--normalization", "softmax"])):
        args = ["attention", "--beta", "0.7"] + extra
        run(args + ["--out", tmp / f"ref_{name}.npy"])

        def t(args=args, name=name):
            out = tmp / f"{name}_p3.npy"
            r = run(args + ["--out", out], 3, 1)
            assert out.read_bytes() == (tmp / f"ref_{name}.npy").read_bytes(), "out.npy differs"
            assert ("points split across 3 processes" in r.stderr) == (name != "csv"), r.stderr
        check(f"attention ({name}) -np 3 equals one process", t)


def group_ot(tmp):
    # n = 517: parts 256 + 261 on 2 ranks (a 5-row remainder joins its neighbour); 4 ranks
    # (oversubscribed) leave one rank without rows.
    x, y = clouds(tmp, 517, 260, 2, 2)
    args = ["ot", "--x", x, "--y", y, "--b", tmp / "wy.npy", "--eps", "0.05", "--tol", "1e-8"]
    run(args + ["--out", tmp / "ref"])
    for ranks, threads in ((2, 1), (3, 2), (4, 1)):
        def t(ranks=ranks, threads=threads):
            out = tmp / f"p{ranks}t{threads}"
            run(args + ["--out", out], ranks, threads)
            same_files(tmp / "ref", out, ["f.npy", "g.npy"], f"ot -np {ranks}")
            import json
            a = json.loads((tmp / "ref/report.json").read_text())
            b = json.loads((out / "report.json").read_text())
            for k in ("cost", "objective", "iterations", "marginal_error", "converged", "max_cost_bound"):
                assert a[k] == b[k], f"report.json {k}: {a[k]!r} != {b[k]!r}"
            # Each rank read and held only its rows of the points (one process: all of them).
            assert b["points_split"] is True and a["points_split"] is False, (a["points_split"], b["points_split"])
            assert not list(tmp.glob(f"p{ranks}t{threads}.tmp.*")), "a staging directory was left"
        check(f"ot -np {ranks} threads {threads} equals one process", t)
    # Over-relaxed (docs/math.md section 3.3): the relaxed updates of the gathered potentials are
    # the same on every rank; -np 3 equals one process.
    sor = args + ["--overrelax", "1.6"]
    run(sor + ["--out", tmp / "sor_ref"])

    def t_sor():
        import json
        out = tmp / "sor_p3"
        run(sor + ["--out", out], 3, 1)
        same_files(tmp / "sor_ref", out, ["f.npy", "g.npy"], "ot --overrelax 1.6 -np 3")
        a = json.loads((tmp / "sor_ref/report.json").read_text())
        b = json.loads((out / "report.json").read_text())
        for k in ("cost", "iterations", "marginal_error", "converged", "overrelax"):
            assert a[k] == b[k], f"report.json {k}: {a[k]!r} != {b[k]!r}"
        assert b["overrelax"] == 1.6 and b["converged"] is True
    check("ot --overrelax 1.6 -np 3 equals one process", t_sor)
    # The dense plan (entropic, from the gathered potentials) and the exact solve: rank 0 alone
    # computes them; the files equal one process's.
    xs, ys = clouds(tmp, 60, 45, 2, 3)
    for name, extra in (("plan", ["--eps", "0.05", "--tol", "1e-8", "--plan"]), ("exact", ["--exact", "--plan"])):
        a = ["ot", "--x", xs, "--y", ys] + extra
        run(a + ["--out", tmp / f"{name}_ref"])
        files = ["f.npy", "g.npy", "plan.npy"]

        def t(a=a, name=name, files=files):
            out = tmp / f"{name}_p3"
            r = run(a + ["--out", out], 3, 1)
            same_files(tmp / f"{name}_ref", out, files, f"ot ({name}) -np 3")
            assert r.stdout.count("ot (") == 1, f"rank 0 alone prints: {r.stdout}"
            import json
            assert json.loads((out / "report.json").read_text())["points_split"] is False, "a plan needs every point"
        check(f"ot ({name}) -np 3 equals one process", t)


def group_resume(tmp):
    # ot: the points split across 3 ranks, stopped after 25 checkpoints (the test hook on rank 0,
    # agreed by all), resumed on 2 ranks: the potentials of one process.
    x, y = clouds(tmp, 517, 260, 2, 4)
    ot_args = ["ot", "--x", x, "--y", y, "--b", tmp / "wy.npy", "--eps", "0.05", "--tol", "1e-8", "--quiet",
               "--checkpoint-every", "0"]
    run(ot_args + ["--out", tmp / "ot_ref"])

    def ot_resume():
        out = tmp / "ot_cut"
        r = run(ot_args + ["--out", out], 3, 1, {"ATTNFLOW_STOP_AFTER_CHECKPOINTS": "25"}, expect=1)
        assert r.returncode == 3 and (out / "checkpoint.bin").exists() and not (out / "f.npy").exists(), r.stderr
        assert r.stdout.count("continue with --resume") == 1, f"reported once: {r.stdout}"
        run(ot_args + ["--out", out, "--resume"], 2, 1)
        same_files(tmp / "ot_ref", out, ["f.npy", "g.npy"], "resumed ot")
        assert not (out / "checkpoint.bin").exists()
    check("ot stopped under mpirun -np 3, resumed with -np 2, equals one process", ot_resume)

    def ot_sigterm():
        # SIGTERM to mpirun once a checkpoint exists: every rank stops at the same iteration with
        # a checkpoint, rank 0 prints the resume command once; resumed on 3 ranks.
        rng = np.random.default_rng(6)
        for side in ("sx", "sy"):
            np.save(tmp / f"{side}.npy", rng.uniform(size=(3000, 2)))
        args = ["ot", "--x", tmp / "sx.npy", "--y", tmp / "sy.npy", "--eps", "0.005", "--quiet",
                "--checkpoint-every", "0"]
        out = tmp / "ot_term"
        cmd = [MPIEXEC, "-np", "2"] + MPI_FLAGS + [CLI] + [str(a) for a in args] + ["--out", str(out)]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_for(1))
        t0 = time.time()
        while not (out / "checkpoint.bin").exists() and time.time() - t0 < 60 and p.poll() is None:
            time.sleep(0.02)
        assert p.poll() is None, "the solve finished before the signal: make it slower"
        p.send_signal(signal.SIGTERM)
        stdout, stderr = p.communicate(timeout=TIMEOUT)
        assert p.returncode != 0 and stdout.count("interrupted by SIGTERM") == 1, (stdout, stderr)
        assert (out / "checkpoint.bin").exists() and not (out / "f.npy").exists()
        run(args + ["--out", tmp / "ot_term_ref"])
        run(args + ["--out", out, "--resume"], 3, 1)
        same_files(tmp / "ot_term_ref", out, ["f.npy", "g.npy"], "ot stopped by SIGTERM and resumed")
    check("ot under mpirun -np 2 stopped by SIGTERM (checkpoint), resumed with -np 3, equals one process",
          ot_sigterm)

    # Sweep: the test hook stops each rank after its first finished point, as if killed.
    cfg = tmp / "s.toml"
    cfg.write_text(SWEEP)
    run(["sweep", cfg, "--out", tmp / "ref", "--no-plots", "--quiet", "--jobs", "1"])

    def sweep_resume():
        out = tmp / "cut"
        r = run(["sweep", cfg, "--out", out, "--no-plots", "--jobs", "1"], 2, 1,
                {"ATTNFLOW_STOP_AFTER_POINTS": "1"}, expect=1)
        assert r.returncode == 3 and not (out / "sweep.csv").exists(), r.stderr
        assert r.stdout.count("continue with --resume") == 1, f"reported once: {r.stdout}"
        run(["sweep", cfg, "--out", out, "--no-plots", "--resume", "--jobs", "1"], 3, 1)
        same_files(tmp / "ref", out, ["sweep.csv"] + sweep_points(tmp / "ref"), "resumed sweep")
    check("sweep stopped under mpirun -np 2, resumed with -np 3, equals one process", sweep_resume)

    ens = tmp / "e.toml"
    ens.write_text(ENSEMBLE.format(method="euler", per_system="true"))
    run(["run", ens, "--out", tmp / "eref", "--no-plots", "--quiet"])

    def run_resume():
        out = tmp / "ecut"
        r = run(["run", ens, "--out", out, "--no-plots"], 3, 1, {"ATTNFLOW_STOP_AFTER_CHECKPOINTS": "1"}, expect=1)
        assert r.returncode == 3 and (out / "checkpoint.bin").exists() and not (out / "final.npy").exists(), r.stderr
        run(["run", ens, "--out", out, "--no-plots", "--resume"], 2, 2)
        same_files(tmp / "eref", out, ensemble_outputs(tmp / "eref"), "resumed run")
        assert not (out / "checkpoint.bin").exists()
    check("ensemble run stopped under mpirun -np 3, resumed with -np 2, equals one process", run_resume)

    reduced = tmp / "e_reduced.toml"
    reduced.write_text(ENSEMBLE.format(method="euler", per_system="true").replace("d = 3", "d = 20"))
    run(["run", reduced, "--out", tmp / "rref", "--no-plots", "--quiet"])

    def reduced_resume():  # the checkpoint holds coordinates and bases (d > n)
        out = tmp / "rcut"
        r = run(["run", reduced, "--out", out, "--no-plots"], 2, 1, {"ATTNFLOW_STOP_AFTER_CHECKPOINTS": "1"},
                expect=1)
        assert r.returncode == 3 and (out / "checkpoint.bin").exists(), r.stderr
        run(["run", reduced, "--out", out, "--no-plots", "--resume"], 3, 1)
        same_files(tmp / "rref", out, ensemble_outputs(tmp / "rref"), "resumed run (reduced)")
    check("ensemble run with d > n stopped under mpirun -np 2, resumed with -np 3, equals one process",
          reduced_resume)

    def killed_resume():
        # A real kill: SIGKILL to every rank once the first checkpoint exists; then --resume.
        out = tmp / "ekill"
        slow = ens.read_text().replace("t_end = 1.5", "t_end = 60.0").replace("every = 0.25", "every = 0.5")
        cfg2 = tmp / "slow.toml"
        cfg2.write_text(slow)
        cmd = [MPIEXEC, "-np", "2"] + MPI_FLAGS + [CLI, "run", str(cfg2), "--out", str(out), "--no-plots"]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env_for(1),
                             start_new_session=True)
        t0 = time.time()
        while not (out / "checkpoint.bin").exists() and time.time() - t0 < 60 and p.poll() is None:
            time.sleep(0.05)
        assert (out / "checkpoint.bin").exists(), "no checkpoint within 60 s"
        kill_session(p)
        assert not (out / "summary.json").exists()
        run(["run", cfg2, "--out", tmp / "slowref", "--no-plots", "--quiet"])
        run(["run", cfg2, "--out", out, "--no-plots", "--resume"], 2, 1)
        same_files(tmp / "slowref", out, ["observables.csv", "ensemble.csv", "final.npy"], "killed and resumed run")
    check("ensemble run killed (SIGKILL) under mpirun -np 2, resumed, equals one process", killed_resume)

    def killed_sweep():
        # SIGKILL to every rank once two points have finished; --resume skips the finished points
        # and continues the half-done ones from their checkpoints.
        slow = tmp / "slow_sweep.toml"
        slow.write_text(SWEEP.replace("t_end = 1.0", "t_end = 150.0").replace("checkpoint_every = 1", "checkpoint_every = 20"))
        run(["sweep", slow, "--out", tmp / "slow_ref", "--no-plots", "--quiet", "--jobs", "1"])
        out = tmp / "skill"
        cmd = [MPIEXEC, "-np", "2"] + MPI_FLAGS + [CLI, "sweep", str(slow), "--out", str(out), "--no-plots",
                                                   "--jobs", "1"]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env_for(1),
                             start_new_session=True)
        t0 = time.time()
        while len(list(out.glob("points/*/summary.json"))) < 2 and time.time() - t0 < 60 and p.poll() is None:
            time.sleep(0.02)
        kill_session(p)
        assert not (out / "sweep.csv").exists(), "the sweep finished before the kill: make it slower"
        run(["sweep", slow, "--out", out, "--no-plots", "--resume", "--jobs", "1"], 2, 1)
        same_files(tmp / "slow_ref", out, ["sweep.csv"] + sweep_points(tmp / "slow_ref"), "killed and resumed sweep")
    check("sweep killed (SIGKILL) under mpirun -np 2, resumed, equals one process", killed_sweep)

    def zombie_sweep():
        # Killed while writing, its ranks never reaped (a container whose init reaps nothing: each
        # killed rank stays a zombie, and kill(pid, 0) still finds it). The temporaries the ranks
        # left are stale all the same, and --resume must take the directory as its own. This test
        # process becomes the ranks' subreaper and leaves them unreaped until the resume is done.
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.prctl(36, 1, 0, 0, 0) == 0, "PR_SET_CHILD_SUBREAPER"
        try:
            out = tmp / "zkill"
            pause = {"ATTNFLOW_PAUSE_IN_WRITES": "1"}  # every write holds its temporary for 60 s
            cmd = [MPIEXEC, "-np", "2"] + MPI_FLAGS + ["-x", "ATTNFLOW_PAUSE_IN_WRITES", CLI, "sweep", str(cfg),
                                                       "--out", str(out), "--no-plots", "--jobs", "1"]
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env_for(1, pause),
                                 start_new_session=True)
            t0 = time.time()
            while not list(out.rglob("*.tmp.*")) and time.time() - t0 < 60 and p.poll() is None:
                time.sleep(0.02)
            temps = list(out.rglob("*.tmp.*"))
            assert temps, "no write in progress within 60 s"
            os.kill(p.pid, signal.SIGSTOP)  # mpirun cannot reap its ranks now
            ranks = [pid for pid in session_pids(p.pid) if pid != p.pid]
            for pid in ranks:
                os.kill(pid, signal.SIGKILL)
            while any(proc_state(pid) not in ("Z", None) for pid in ranks):
                time.sleep(0.02)
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=30)
            owners = {int(t.name.rsplit(".tmp.", 1)[1]) for t in temps}
            assert owners and all(proc_state(pid) == "Z" for pid in owners), \
                f"the writers {owners} should linger as zombies: {[proc_state(x) for x in owners]}"
            run(["sweep", cfg, "--out", out, "--no-plots", "--resume", "--jobs", "1"], 2, 1)
            same_files(tmp / "ref", out, ["sweep.csv"] + sweep_points(tmp / "ref"), "resumed after zombies")
            assert not list(out.rglob("*.tmp.*")), "the stale temporaries are cleared"
        finally:
            libc.prctl(36, 0, 0, 0, 0)
            while True:  # reap the zombies we adopted
                try:
                    if os.waitpid(-1, os.WNOHANG)[0] == 0:
                        break
                except ChildProcessError:
                    break
    check("sweep killed mid-write under mpirun -np 2, ranks left as unreaped zombies, resumed", zombie_sweep)


def group_failure(tmp):
    x, y = clouds(tmp, 300, 200, 2, 3)
    bad = tmp / "bad.npy"
    np.save(bad, np.array([[np.nan, 1.0]] * 300))
    # A wrapper that gives rank 1 a bad --x: only that rank fails, the others wait in a collective.
    wrap = tmp / "wrap.sh"
    wrap.write_text('#!/bin/sh\nif [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then X="$BAD"; else X="$GOOD"; fi\n'
                    'exec "$CLI" "$@" --x "$X"\n')
    wrap.chmod(0o755)
    extra = {"BAD": str(bad), "GOOD": str(x), "CLI": str(Path(CLI).resolve())}
    for cmd in (["ot", "--y", y, "--eps", "0.1", "--out", tmp / "ot_out"],
                ["attention", "--y", y, "--normalization", "sinkhorn", "--out", tmp / "att.npy"]):
        def t(cmd=cmd, ranks=3):
            full = [MPIEXEC, "-np", str(ranks)] + MPI_FLAGS + [x for k in extra for x in ("-x", k)] + \
                   [str(wrap)] + [str(a) for a in cmd]
            try:
                r = subprocess.run(full, capture_output=True, text=True, timeout=TIMEOUT, env=env_for(1, extra))
            except subprocess.TimeoutExpired:
                raise AssertionError("hang: one failing rank blocked the others")
            assert r.returncode != 0
            errors = [l for l in r.stderr.splitlines() if l.startswith("attnflow: error:")]
            assert len(errors) == 1, f"one report, got: {r.stderr}"
            assert "--x" in errors[0] and "finite" in errors[0], errors[0]
            assert "MPI_ABORT" not in r.stderr and "Segmentation" not in r.stderr, r.stderr
            assert not (tmp / "ot_out").exists() and not (tmp / "att.npy").exists()
        check(f"{cmd[0]}: bad input on rank 1 of 3 reported once, all ranks exit non-zero", t)

    # A sweep point that fails on one rank only (its grid point is bad), and the same bad
    # config on every rank: one report each time, nothing left behind.
    cfg = tmp / "s.toml"
    cfg.write_text(SWEEP.replace("measure.seed = [0, 1, 2, 3]", "measure.n = [4, 0]"))

    def bad_sweep():
        r = run(["sweep", cfg, "--out", tmp / "bad_sweep", "--no-plots"], 2, 1, expect=1)
        errors = [l for l in r.stderr.splitlines() if l.startswith("attnflow: error:")]
        assert len(errors) == 1 and "measure.n = 0, must be >= 1" in errors[0], r.stderr
        assert not (tmp / "bad_sweep").exists()
    check("sweep with a bad grid point under mpirun -np 2: one report, nothing written", bad_sweep)

    run_cfg = tmp / "r.toml"
    run_cfg.write_text(ENSEMBLE.format(method="euler", per_system="true"))
    (tmp / "taken").mkdir()
    (tmp / "taken" / "mine.txt").write_text("not a run")

    def refused_dir():
        r = run(["run", run_cfg, "--out", tmp / "taken", "--no-plots"], 3, 1, expect=1)
        errors = [l for l in r.stderr.splitlines() if l.startswith("attnflow: error:")]
        assert len(errors) == 1, r.stderr
        assert (tmp / "taken" / "mine.txt").read_text() == "not a run"
    check("run into a foreign directory under mpirun -np 3: refused once, untouched", refused_dir)

    def not_distributed():
        r = run(["demo", "--out", tmp / "demo"], 2, 1, expect=1)
        errors = [l for l in r.stderr.splitlines() if l.startswith("attnflow: error:")]
        assert len(errors) == 1 and 'command = "demo" with 2 ranks' in errors[0], r.stderr
        assert not (tmp / "demo").exists()
    check("a command that does not distribute is refused once under mpirun -np 2", not_distributed)


SPLIT = """
[measure]
n = 33000
d = 3
seed = 7
[model]
kind = "{kind}"
beta = 3.0
{heads}[integrate]
method = "{method}"
dt = 0.05
t_end = 0.1
[observe]
every = 0.05
[output]
checkpoint_every = 1
snapshots = true
"""


def group_split(tmp):
    """run --split-points: one system of n = 33000 (65 tiles of 512) whose tokens are split across
    the ranks, each holding only its rows: SA with Q = K (the symmetric reduction streamed tile by
    tile) under rk4, USA with two random heads under euler; stopped on 3 ranks and resumed on 2;
    what cannot split is refused once, naming the option."""
    import json
    for kind, heads, method in (("sa", "", "rk4"), ("usa", 'heads = 2\nqkv = "gaussian"\nqkv_seed = 3\n', "euler")):
        cfg = tmp / f"split_{kind}.toml"
        cfg.write_text(SPLIT.format(kind=kind, heads=heads, method=method))
        ref = tmp / f"split_ref_{kind}"
        run(["run", cfg, "--out", ref, "--no-plots", "--quiet"], threads=2)
        names = ["observables.csv", "final.npy", "config.toml"] + \
            sorted(str(p.relative_to(ref)) for p in Path(ref).glob("snapshots/*.npy"))
        assert len(names) == 6, names
        for ranks, threads in ((2, 1), (3, 1)):
            def t(ranks=ranks, threads=threads, cfg=cfg, ref=ref, names=names, kind=kind):
                out = tmp / f"split_{kind}_p{ranks}"
                r = run(["run", cfg, "--out", out, "--no-plots", "--split-points"], ranks, threads)
                same_files(ref, out, names, f"run --split-points ({kind}) -np {ranks}")
                a = json.loads((ref / "summary.json").read_text())
                b = json.loads((out / "summary.json").read_text())
                for k in ("steps", "field_evaluations", "final", "final_ensemble", "observation_times", "converged"):
                    assert a.get(k) == b.get(k), f"summary.json {k}: {a.get(k)} != {b.get(k)}"
                assert a["points_split"] is False and b["points_split"] is True, (a["points_split"], b["points_split"])
                assert f"tokens split across {ranks} processes" in r.stderr, r.stderr
            check(f"run --split-points ({kind}) -np {ranks} equals one process", t)

    def resumed():
        cfg, out = tmp / "split_sa.toml", tmp / "split_cut"
        r = run(["run", cfg, "--out", out, "--no-plots", "--split-points"], 3, 1,
                {"ATTNFLOW_STOP_AFTER_CHECKPOINTS": "1"}, expect=1)
        assert r.returncode == 3 and (out / "checkpoint.bin").exists() and not (out / "final.npy").exists(), r.stderr
        run(["run", cfg, "--out", out, "--no-plots", "--split-points", "--resume"], 2, 1)
        ref = tmp / "split_ref_sa"
        same_files(ref, out, ["observables.csv", "final.npy"] +
                   sorted(str(p.relative_to(ref)) for p in ref.glob("snapshots/*.npy")), "resumed split run")
    check("run --split-points stopped on 3 ranks, resumed on 2, equals one process", resumed)

    def refused(name, text, expect):
        cfg = tmp / f"refuse_{name}.toml"
        cfg.write_text(text)
        r = run(["run", cfg, "--out", tmp / f"refused_{name}", "--no-plots", "--split-points"], 2, 1, expect=1)
        errors = [l for l in r.stderr.splitlines() if l.startswith("attnflow: error:")]
        assert len(errors) == 1 and expect in errors[0], r.stderr
        assert not (tmp / f"refused_{name}").exists()
    small = SPLIT.format(kind="sa", heads="", method="euler").replace("n = 33000", "n = 2000")
    check("run --split-points with n = 2000 is refused once, naming measure.n",
          lambda: refused("small", small, "measure.n = 2000, must be >= 32768"))
    check("run --split-points with a Sinkhorn field is refused once, naming model.kind",
          lambda: refused("sinkhorn", SPLIT.format(kind="sinkhorn", heads="", method="euler"),
                          'model.kind = "sinkhorn", must be sa or usa'))
    check("run --split-points with dopri5 is refused once, naming integrate.method",
          lambda: refused("dopri5", SPLIT.format(kind="sa", heads="", method="dopri5"),
                          'integrate.method = "dopri5", must be euler, residual or rk4'))
    check("run --split-points with an ensemble is refused once, naming measure.systems",
          lambda: refused("ensemble", small.replace("n = 2000", "n = 2000\nsystems = 3"), "measure.systems = 3"))


def main():
    group = sys.argv[1] if len(sys.argv) > 1 else ""
    groups = {"sweep": group_sweep, "ensemble": group_ensemble, "attention": group_attention, "ot": group_ot,
              "resume": group_resume, "failure": group_failure, "split": group_split}
    if group not in groups:
        print(f"usage: run_mpi_tests.py {{{','.join(groups)}}}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix=f"attnflow_mpi_{group}_") as d:
        try:
            groups[group](Path(d))
        except AssertionError as e:
            failures.append(f"{group} setup")
            print(f"FAIL {group} setup: {e}")
    if failures:
        print(f"{len(failures)} failed: {', '.join(failures)}")
        return 1
    print(f"all {group} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
