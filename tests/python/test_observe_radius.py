"""Observables under a scheme that moves the radius: the demo with
model.scheme = "pre-ln" reported 1 cluster of 256 tokens and energy inf from t = 12, while the
normalized final.npy has 12 clusters. The observables are now the directions' (checked against
an independent NumPy computation on final.npy), the radius has its own columns."""
import json

import numpy as np

import attnflow


def numpy_clusters(theta, delta):
    adj = theta @ theta.T > 1 - delta
    labels = -np.ones(len(theta), dtype=int)
    count = 0
    for i in range(len(theta)):
        if labels[i] >= 0:
            continue
        stack, labels[i] = [i], count
        while stack:
            j = stack.pop()
            for k in np.nonzero(adj[j] & (labels < 0))[0]:
                labels[k] = count
                stack.append(k)
        count += 1
    return count


def test_pre_ln_demo_observes_the_directions(run_cli, tmp_path):
    out = tmp_path / "demo"
    r = run_cli("demo", "--out", out, "--no-plots", "--set", "model.scheme=pre-ln")
    assert r.returncode == 0, r.stderr
    x = np.load(out / "final.npy")
    radius = np.linalg.norm(x, axis=1)
    theta = x / radius[:, None]
    beta, delta = 9.0, 0.01
    energy = np.exp(beta * theta @ theta.T).sum() / (2 * beta * len(x) ** 2)
    names = ["t", "system"] + attnflow.observable_names()
    table = np.genfromtxt(out / "observables.csv", delimiter=",", names=True)
    assert list(table.dtype.names) == names
    assert np.all(np.isfinite(np.column_stack([table[n] for n in names])))
    last = table[-1]
    assert last["clusters"] == numpy_clusters(theta, delta) > 1
    assert abs(last["energy"] - energy) <= 1e-10 * energy
    assert abs(last["order"] - np.linalg.norm(theta.mean(axis=0))) <= 1e-12
    # Eigen's and NumPy's norms may round differently: a few ulps.
    assert abs(last["radius_max"] - radius.max()) <= 1e-14 * radius.max()
    assert abs(last["radius_min"] - radius.min()) <= 1e-14 * radius.min() and radius.min() > 50
    assert abs(last["radius_mean"] - radius.mean()) <= 1e-12 * radius.mean()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"][0]["clusters"] == last["clusters"] and summary["warnings"] == []


def test_python_observe_reports_the_radius_apart():
    rng = np.random.default_rng(3)
    theta = rng.normal(size=(30, 3))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    r = rng.uniform(1, 40, size=30)
    a = attnflow.observe(theta * r[:, None], None, attnflow.ObserveOptions(9.0, 0.01))
    b = attnflow.observe(theta, None, attnflow.ObserveOptions(9.0, 0.01))
    assert a.clusters == b.clusters and abs(a.log_energy - b.log_energy) < 1e-12
    assert abs(a.radius_mean - r.mean()) < 1e-12 * r.mean() and abs(a.radius_max - r.max()) < 1e-13 * r.max()
