"""The published phase-diagram step as an independent batched NumPy reference (the residual
step and the phase diagram): x <- normalize(x + dt softmax(beta x x^T) x) for S systems at
once, with the probability
estimated as the fraction of pairs i != j with <x_i, x_j> > 1 - delta. attnflow's residual
method (batched ensemble path) must follow the same trajectories from the same points, and
its own uniform sampling must give the same probabilities within sampling error."""
import csv

import numpy as np
import pytest


def published_step(x, beta, dt):
    """One step of the published code for x (S, n, d): no tangent projection."""
    s = beta * np.einsum("sik,sjk->sij", x, x)
    s -= s.max(axis=-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=-1, keepdims=True)
    x = x + dt * np.einsum("sij,sjk->sik", p, x)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def clustered_fraction(x, delta):
    """Per system: fraction of ordered pairs i != j with <x_i, x_j> > 1 - delta."""
    n = x.shape[1]
    g = np.einsum("sik,sjk->sij", x, x)
    off = ~np.eye(n, dtype=bool)
    return ((g > 1 - delta) & off).sum(axis=(1, 2)) / (n * (n - 1))


def reference_curve(x, beta, dt, steps, delta):
    """p(t) of every system at t = 0, dt, ..., steps dt: array (steps + 1, S)."""
    out = [clustered_fraction(x, delta)]
    for _ in range(steps):
        x = published_step(x, beta, dt)
        out.append(clustered_fraction(x, delta))
    return x, np.array(out)


def uniform_sphere(rng, systems, n, d):
    x = rng.standard_normal((systems, n, d))
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def config(n, d, systems, beta, t_end, init, extra=""):
    return f"""
[measure]
n = {n}
d = {d}
systems = {systems}
seed = 5
{init}
[model]
kind = "sa"
beta = {beta}
[integrate]
method = "residual"
dt = 0.1
t_end = {t_end}
[observe]
every = 0.1
delta = 0.001
{extra}
[output]
snapshots = false
checkpoint_every = 0
"""


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_same_points_follow_the_published_trajectories(run_cli, tmp_path):
    rng = np.random.default_rng(1)
    systems, n, d, beta = 12, 32, 8, 2.0
    x0 = uniform_sphere(rng, systems, n, d)
    np.save(tmp_path / "x0.npy", x0)
    cfg = tmp_path / "run.toml"
    cfg.write_text(config(n, d, systems, beta, 6.0, f'init = "file"\nfile = "{tmp_path / "x0.npy"}"'))
    r = run_cli("run", cfg, "--out", tmp_path / "out", "--no-plots", "--quiet", "--threads", 2)
    assert r.returncode == 0, r.stderr
    x, p = reference_curve(x0, beta, 0.1, 60, 1e-3)
    got = np.load(tmp_path / "out" / "final.npy")
    assert np.allclose(got, x, rtol=0, atol=1e-10)
    rows = read_rows(tmp_path / "out" / "observables.csv")
    assert len(rows) == 61 * systems
    cp = np.array([float(row["clustered_pairs"]) for row in rows]).reshape(61, systems)
    # The same pairs are clustered at every step (at most one pair flips at a threshold tie).
    assert np.abs(cp - p).max() <= 2.0 / (n * (n - 1))
    assert p[-1].mean() > 0.2 and p[0].mean() < 0.05  # the window sees the clustering


def test_float32_follows_the_published_trajectories_to_float_accuracy(run_cli, tmp_path):
    """compute.precision = float32 (the batched ensemble in single precision, PyTorch's default
    dtype) against the published step in float64 from the same points, d = 8 (the points) and
    d = 40 > n (coordinates in the span): positions within float accuracy after 60 steps, and
    the clustered-pair fractions of the same pairs (a pair at the threshold may flip)."""
    rng = np.random.default_rng(2)
    systems, n, beta = 20, 32, 2.0
    for d in (8, 40):
        x0 = uniform_sphere(rng, systems, n, d)
        np.save(tmp_path / f"x0_{d}.npy", x0)
        cfg = tmp_path / f"run{d}.toml"
        cfg.write_text(config(n, d, systems, beta, 6.0, f'init = "file"\nfile = "{tmp_path / f"x0_{d}.npy"}"')
                       + '[compute]\nprecision = "float32"\n')
        out = tmp_path / f"out{d}"
        r = run_cli("run", cfg, "--out", out, "--no-plots", "--quiet", "--threads", 2)
        assert r.returncode == 0, r.stderr
        x, p = reference_curve(x0, beta, 0.1, 60, 1e-3)
        err = np.abs(np.load(out / "final.npy") - x).max()
        assert 0 < err < 2e-6, err  # float (6e-8 per operation) over 60 steps: measured 2e-7
        rows = read_rows(out / "observables.csv")
        cp = np.array([float(row["clustered_pairs"]) for row in rows]).reshape(61, systems)
        assert np.abs(cp - p).max() <= 4.0 / (n * (n - 1))
        assert np.abs(cp.mean(axis=1) - p.mean(axis=1)).max() <= 1e-3
        assert p[-1].mean() > 0.2


def published_checkpoint_steps(times, dt, max_time):
    """The published code's observation loop (do_single_beta): after each step, time += dt
    (accumulated); while time >= times[ckpt], checkpoint ckpt gets this step's statistics.
    Returns the step each checkpoint was recorded at."""
    steps, ckpt, cur, s = {}, 0, 0.0, 0
    while True:
        s += 1
        cur += dt
        while ckpt < len(times) and cur >= times[ckpt]:
            steps[ckpt] = s
            ckpt += 1
        if cur >= max_time or ckpt >= len(times):
            return steps


def test_on_steps_observes_at_the_published_checkpoints(run_cli, tmp_path):
    """observe.on_steps with every = t_end / (K - 1): the published code's K times
    linspace(0, t_end, K), each observed on the first step at or after it. Its steps are those
    the published loop records (checkpoints 1 .. K - 2: the loop records checkpoint 0 after the
    first step, and its accumulated time reaches t_end a step late), and the clustered
    fractions there are the published step's."""
    rng = np.random.default_rng(4)
    systems, n, d, beta, t_end, count = 10, 32, 8, 2.0, 6.0, 40
    x0 = uniform_sphere(rng, systems, n, d)
    np.save(tmp_path / "x0.npy", x0)
    every = t_end / (count - 1)
    cfg = tmp_path / "run.toml"
    cfg.write_text(config(n, d, systems, beta, t_end, f'init = "file"\nfile = "{tmp_path / "x0.npy"}"')
                   .replace("every = 0.1\n", f"every = {every!r}\non_steps = true\n"))
    r = run_cli("run", cfg, "--out", tmp_path / "out", "--no-plots", "--quiet", "--threads", 2)
    assert r.returncode == 0, r.stderr
    rows = read_rows(tmp_path / "out" / "observables.csv")
    assert len(rows) == count * systems
    t = np.array([float(row["t"]) for row in rows]).reshape(count, systems)[:, 0]
    cp = np.array([float(row["clustered_pairs"]) for row in rows]).reshape(count, systems)
    published = published_checkpoint_steps(np.linspace(0, t_end, count), 0.1, t_end)
    _, p = reference_curve(x0, beta, 0.1, 60, 1e-3)
    for k in range(1, count - 1):
        step = int(round(t[k] / 0.1))
        assert step == published[k], (k, t[k], published[k])
        assert np.abs(cp[k] - p[step]).max() <= 2.0 / (n * (n - 1))
    assert t[0] == 0.0 and t[-1] == t_end and np.all(np.diff(t) > 0)
    assert p[60].mean() > 0.2  # the window sees the clustering


@pytest.mark.parametrize("d, beta", [(2, 1.0), (8, 4.0), (32, 4.0)])
def test_probability_agrees_within_sampling_error(run_cli, tmp_path, d, beta):
    """attnflow's own i.i.d. uniform tokens (batched ensemble, ensemble.csv summaries) vs
    independent NumPy samples through the published step: the same probability curve."""
    systems, n, t_end = 512, 32, 10.0
    cfg = tmp_path / "run.toml"
    cfg.write_text(config(n, d, systems, beta, t_end, 'init = "uniform_sphere"',
                          "clusters = false\nper_system = false\nquantiles = [0.5]"))
    r = run_cli("run", cfg, "--out", tmp_path / "out", "--no-plots", "--quiet", "--threads", 2)
    assert r.returncode == 0, r.stderr
    rows = read_rows(tmp_path / "out" / "ensemble.csv")
    mean = np.array([float(row["clustered_pairs"]) for row in rows if row["statistic"] == "mean"])
    se = np.array([float(row["clustered_pairs"]) for row in rows if row["statistic"] == "stderr"])
    assert len(mean) == 101
    rng = np.random.default_rng(100 + d)
    _, p = reference_curve(uniform_sphere(rng, systems, n, d), beta, 0.1, 100, 1e-3)
    ref_mean = p.mean(axis=1)
    ref_se = p.std(axis=1, ddof=1) / np.sqrt(systems)
    for k in (25, 50, 75, 100):  # t = 2.5, 5, 7.5, 10
        tol = 4.5 * np.hypot(se[k], ref_se[k]) + 1e-3
        assert abs(mean[k] - ref_mean[k]) <= tol, (k, mean[k], ref_mean[k], tol)
    assert ref_mean[-1] > 0.05  # clustering under way: the comparison is not between zeros


def test_python_flow_accepts_residual_and_takes_the_published_step():
    import attnflow

    rng = np.random.default_rng(3)
    x0 = uniform_sphere(rng, 1, 16, 5)[0]
    o = attnflow.FlowOptions()
    o.beta = 3.0
    flow = attnflow.Flow(o, 16, 5)
    integ = attnflow.IntegratorOptions("residual", 0.1)
    assert integ.method == attnflow.Method.residual
    x = flow.advance(flow.initial_state(x0), flow.initial_flow_state(), 1.0, integ)
    ref, _ = reference_curve(x0[None], 3.0, 0.1, 10, 1e-3)
    assert np.allclose(flow.positions(x), ref[0], rtol=0, atol=1e-12)
    euler = flow.advance(flow.initial_state(x0), flow.initial_flow_state(), 1.0,
                         attnflow.IntegratorOptions("euler", 0.1))
    assert np.abs(flow.positions(euler) - ref[0]).max() > 1e-4


BENCH_PEERS = """
import json, sys, importlib.util
import numpy as np, torch
spec = importlib.util.spec_from_file_location("ensemble_compare", sys.argv[1])
ec = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ec)
x0 = np.load(sys.argv[2])
steps = int(sys.argv[3])
xp, pp = ec.published_run(torch, torch.from_numpy(x0.copy()), steps)
xt, pt = ec.torch_run(torch, torch.from_numpy(x0.copy()), steps)
xn, pn = ec.numpy_run(x0.copy(), steps)
np.save(sys.argv[4], np.stack([xp.numpy(), xt.numpy(), xn]))
print(json.dumps({"published": pp, "torch": pt, "numpy": [float(v) for v in pn],
                  "constants": [ec.N, ec.DT, ec.DELTA, ec.BETA]}))
"""


def test_bench_peers_take_the_published_step(tmp_path):
    """bench/ensemble_compare.py's peers, whose times the README's ensemble row reports:
    published_run (the published code's step and its observation at its checkpoints, operation
    for operation), torch_run and numpy_run (the step written compactly, observed every step)
    take this file's published step and give its clustered fractions, the published code's at
    the steps its loop records them (published_checkpoint_steps). Run apart: the bench sets
    thread variables when loaded."""
    import json
    import subprocess
    import sys

    from conftest import SOURCE_DIR

    rng = np.random.default_rng(6)
    systems, n, d, steps = 6, 32, 5, 60
    x0 = uniform_sphere(rng, systems, n, d)
    np.save(tmp_path / "x0.npy", x0)
    r = subprocess.run([sys.executable, "-c", BENCH_PEERS, str(SOURCE_DIR / "bench" / "ensemble_compare.py"),
                        str(tmp_path / "x0.npy"), str(steps), str(tmp_path / "x.npy")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    n_, dt, delta, beta = got["constants"]
    assert n_ == n
    x, p = reference_curve(x0, beta, dt, steps, delta)
    for xs in np.load(tmp_path / "x.npy"):
        assert np.abs(xs - x).max() < 1e-12
    mean = p.mean(axis=1)  # every system has n (n - 1) ordered pairs: the batch's fraction
    assert np.allclose(got["torch"], mean[1:], rtol=0, atol=1e-15)
    assert np.allclose(got["numpy"], mean[1:], rtol=0, atol=1e-15)
    recorded = published_checkpoint_steps(np.linspace(0, 30, 200), dt, 30.0)
    expect = [mean[recorded[k]] for k in sorted(recorded) if recorded[k] <= steps]
    assert len(got["published"]) == len(expect) >= 35
    assert np.allclose(got["published"], expect, rtol=0, atol=1e-15)
    assert mean[-1] > 0.05  # clustering under way: not a comparison of zeros
