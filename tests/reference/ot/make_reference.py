#!/usr/bin/env python3
"""Committed POT reference problems for tests/cpp/ot_reference_test.cpp.

Run from anywhere with Debian's python3-pot (POT 0.8.2 here):
    /usr/bin/python3 tests/reference/ot/make_reference.py
Writes, next to this script, for each problem P: P_x.npy, P_y.npy, P_a.npy, P_b.npy,
P_plan.npy, and reference.json with eps, cost <C, pi> and the generator's version. The C++ test
compares plans, costs and marginals (never raw potentials, which are defined up to a constant).
Cost: squared Euclidean (ot.dist default), the convention of attnflow's "sqeuclidean".
"""
import json
import os

import numpy as np
import ot

HERE = os.path.dirname(os.path.abspath(__file__))


def save(name, **arrays):
    for key, value in arrays.items():
        np.save(os.path.join(HERE, f"{name}_{key}.npy"), np.ascontiguousarray(value, dtype=np.float64))


def weights(rng, n):
    w = 0.1 + rng.uniform(size=n)
    return w / w.sum()


def main():
    rng = np.random.default_rng(20261121)
    ref = {"generator": f"POT {ot.__version__}, numpy {np.__version__}", "problems": {}}
    # Entropic problems: ot.sinkhorn(method="sinkhorn_log") run far past attnflow's tolerance.
    for name, n, m, d, rel in [("sinkhorn_a", 30, 20, 3, 0.05), ("sinkhorn_b", 25, 25, 2, 0.2)]:
        x = rng.normal(size=(n, d))
        y = rng.normal(size=(m, d)) * 1.5 + 0.5
        a, b = weights(rng, n), weights(rng, m)
        cost = ot.dist(x, y)
        eps = rel * cost.max()
        plan = ot.sinkhorn(a, b, cost, eps, method="sinkhorn_log", numItermax=200000, stopThr=1e-14)
        err = np.abs(plan.sum(1) - a).sum() + np.abs(plan.sum(0) - b).sum()
        assert err < 1e-12, (name, err)
        save(name, x=x, y=y, a=a, b=b, plan=plan)
        ref["problems"][name] = {"method": "sinkhorn_log", "eps": eps, "cost": float((plan * cost).sum()),
                                 "marginal_error": float(err)}
    # Exact problem: ot.emd (network simplex).
    x = rng.normal(size=(30, 3))
    y = rng.normal(size=(40, 3)) + 1.0
    a, b = weights(rng, 30), weights(rng, 40)
    cost = ot.dist(x, y)
    plan = ot.emd(a, b, cost)
    save("exact", x=x, y=y, a=a, b=b, plan=plan)
    ref["problems"]["exact"] = {"method": "emd", "cost": float((plan * cost).sum())}
    with open(os.path.join(HERE, "reference.json"), "w") as fh:
        json.dump(ref, fh, indent=2)
        fh.write("\n")


if __name__ == "__main__":
    main()
