#!/usr/bin/python3
"""Reference for tests/cpp/flow_reference_test.cpp: the dense NumPy step of the published
sphere-clustering code (Geshkovski et al.), written independently of attnflow:

    A = exp(beta X X^T); A /= A.sum(1)          (dense n x n, row-normalized)
    V = A @ X                                    (attention average)
    X = X + dt * (V - <X, V> X)                  (Euler step of SA, tangent projection P_x)
    X = X / |X|                                  (renormalize onto the sphere)

Cases: (n, d, beta, dt, steps) below; initial points uniform on the sphere from NumPy's
PCG64 with a fixed seed. Writes <case>_x.npy of shape (steps + 1, n, d) (float64).
Run: /usr/bin/python3 tests/reference/flow/make_sa_euler.py   (NumPy only; rerun gives the same files)
"""
import os

import numpy as np

CASES = {
    "sa_euler_beta1": dict(n=16, d=3, beta=1.0, dt=0.1, steps=10, seed=1),
    "sa_euler_beta9": dict(n=32, d=4, beta=9.0, dt=0.05, steps=8, seed=2),
}


def sa_euler(x, beta, dt, steps):
    out = [x.copy()]
    for _ in range(steps):
        a = np.exp(beta * x @ x.T)
        a /= a.sum(axis=1, keepdims=True)
        v = a @ x
        x = x + dt * (v - np.sum(x * v, axis=1, keepdims=True) * x)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        out.append(x.copy())
    return np.stack(out)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    for name, c in CASES.items():
        rng = np.random.default_rng(c["seed"])
        x0 = rng.standard_normal((c["n"], c["d"]))
        x0 /= np.linalg.norm(x0, axis=1, keepdims=True)
        traj = sa_euler(x0, c["beta"], c["dt"], c["steps"])
        np.save(os.path.join(here, name + "_x.npy"), traj.astype(np.float64))
        print(name, traj.shape)


if __name__ == "__main__":
    main()
