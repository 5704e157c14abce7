"""Side-by-side timings of `attnflow theory` commands and their SciPy/NumPy peers.

    /usr/bin/python3 bench/theory_compare.py [path/to/attnflow]

attnflow times are whole commands (process start included, measured against `attnflow
--version` as the baseline); peers run in-process. Median of 5 runs; prints a Markdown table.
SciPy/NumPy are needed only here, never by the library or the tests.
"""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp
from scipy.special import iv, logsumexp

# Argument: the attnflow executable or the build directory holding it (default build/).
CLI = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "build")
if Path(CLI).is_dir():
    CLI = str(Path(CLI) / "attnflow")
REPEATS = 5


def median_time(fn):
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def cli(*args):
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, check=True).stdout


def scipy_equiangular(n, beta, rho0, t_end, rtol):
    def rhs(t, y):  # u = 1 - rho, SA
        u = y[0]
        q = np.exp(-beta * u)
        return [-2 * q / (1 + (n - 1) * q) * u * (1 + (n - 1) * (1 - u))]
    return solve_ivp(rhs, (0, t_end), [1 - rho0], method="DOP853", rtol=rtol, atol=1e-30,
                     t_eval=np.linspace(0, t_end, 201))


def numpy_long_context(n, rho, gamma):
    beta = gamma * np.log(n)
    p, c = np.sqrt(1 - rho), np.sqrt(rho)
    keys = np.zeros((n, 3))
    keys[:, 2] = c
    keys[0, 0] = keys[1, 1] = p
    x0, x1 = np.array([p, 0, c]), np.array([0, p, c])
    lse = [logsumexp(beta * keys @ q) for q in (x0, x1, 2 * x0, 2 * x1, x0 + x1)]
    p01 = np.exp(lse[4] - lse[0] - lse[1])
    p00, p11 = np.exp(lse[2] - 2 * lse[0]), np.exp(lse[3] - 2 * lse[1])
    return ((1 - rho) * p01 + rho) / np.sqrt(((1 - rho) * p00 + rho) * ((1 - rho) * p11 + rho))


def main():
    base = median_time(lambda: cli("--version"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "eq.csv"
        eq_args = ("theory", "equiangular", "--model", "sa", "--n", 32, "--beta", 4, "--rho0", 0,
                   "--t-end", 20, "--out", out)
        t_a = median_time(lambda: cli(*eq_args))
        t_p = median_time(lambda: scipy_equiangular(32, 4.0, 0.0, 20.0, 1e-12))
        ours = np.loadtxt(out, delimiter=",", skiprows=1)[:, 2]
        ref = scipy_equiangular(32, 4.0, 0.0, 20.0, 1e-12).y[0]
        rows.append(("equiangular ODE, SA n=32 beta=4, t in [0, 20], rtol 1e-12 (201 outputs)",
                     t_a, t_p, "scipy solve_ivp DOP853", float(np.max(np.abs(ours - ref) / ref)),
                     "attnflow " + " ".join(map(str, eq_args[:-2])) + " --out eq.csv"))
    lc_args = ("theory", "long-context", "--n", 100000, "--rho", 0.5, "--gamma", 2, "--direct")
    t_a = median_time(lambda: cli(*lc_args))
    t_p = median_time(lambda: numpy_long_context(100000, 0.5, 2.0))
    got = json.loads(cli(*lc_args))["cosine_direct"]
    rows.append(("long-context layer, n=1e5, direct through the kernel", t_a, t_p,
                 "NumPy logsumexp (same O(n) scheme)", abs(got - numpy_long_context(100000, 0.5, 2.0)),
                 "attnflow " + " ".join(map(str, lc_args))))
    cl_args = ("theory", "clusters", "--d", 2, "--beta", 100)
    t_a = median_time(lambda: cli(*cl_args))
    ks = np.arange(1, 200)
    t_p = median_time(lambda: int(ks[np.argmax(ks ** 2 * iv(ks, 100.0))]))
    same = json.loads(cli(*cl_args))["predicted_clusters"] == int(ks[np.argmax(ks ** 2 * iv(ks, 100.0))])
    rows.append(("cluster prediction, beta=100", t_a, t_p, "scipy.special.iv argmax",
                 0.0 if same else 1.0, "attnflow " + " ".join(map(str, cl_args))))
    print(f"process start (attnflow --version): {base * 1e3:.1f} ms\n")
    print("| task | attnflow (ms, incl. start) | peer (ms) | peer | max rel. diff | command |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, a, p, peer, diff, cmd in rows:
        print(f"| {name} | {a * 1e3:.1f} | {p * 1e3:.1f} | {peer} | {diff:.1e} | `{cmd}` |")


if __name__ == "__main__":
    main()
