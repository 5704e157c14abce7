"""Entropic and exact optimal transport between two point clouds (docs/math.md section 3).

Log-domain Sinkhorn with eps-scaling for |x - y|^2, the debiased Sinkhorn divergence, the
barycentric map, and the exact cost by network simplex as eps -> 0.
Run: PYTHONPATH=build/python python3 examples/optimal_transport.py [OUT_DIR]
"""
import os
import sys

import numpy as np

import attnflow
from attnflow import plot

out_dir = sys.argv[1] if len(sys.argv) > 1 else "."
os.makedirs(out_dir, exist_ok=True)

# Source: 60 Gaussian points; target: 50 points on a shifted circle, non-uniform weights.
rng = attnflow.Rng(3)
x = attnflow.sample_gaussian(60, 2, rng, 0.5)
y = 1.5 * attnflow.sample_sphere(50, 2, rng) + np.array([2.0, 0.0])
b = np.linspace(1.0, 2.0, 50)  # normalized to mass 1 by the library

# Exact OT (network simplex): W2^2 is the optimal <C, pi>.
w2 = attnflow.wasserstein(x, y, 2, None, b)
print("exact W2^2 = %.6f" % w2 ** 2)

# Entropic OT for decreasing eps: the cost <C, pi_eps> approaches W2^2
# (docs/math.md section 1.5, fact 2).
for eps in (1.0, 0.1, 0.01):
    r = attnflow.sinkhorn(x, y, None, b, eps=eps, tol=1e-9)
    print("eps = %-5g cost = %.6f  iterations %4d  converged %s" % (eps, r.cost, r.iterations, r.converged))

# The debiased Sinkhorn divergence is >= 0 and zero iff the measures are equal.
print("S_eps(mu, nu) = %.6f, S_eps(mu, mu) = %.2e" % (
    attnflow.sinkhorn_divergence(x, y, None, b, eps=0.1).value,
    attnflow.sinkhorn_divergence(x, x, eps=0.1).value))

# Barycentric map T(x_i) = sum_j pi_ij y_j / a_i: where each source point is sent.
cost = attnflow.TransportCost.sqeuclidean(x, y)
sol = attnflow.sinkhorn(x, y, None, b, eps=0.01, tol=1e-9)
moved = attnflow.barycentric_map(cost, sol, y)
print("mean displacement |T(x) - x| = %.4f" % np.linalg.norm(moved - x, axis=1).mean())

# The plan as a heatmap (rows: source points, columns: target points by angle).
order = np.argsort(np.arctan2(y[:, 1], y[:, 0] - 2.0))
plot.heatmap(attnflow.transport_plan(cost, sol)[:, order], os.path.join(out_dir, "ot_plan.png"),
             title="entropic OT plan, eps = 0.01", xlabel="target j (by angle)", ylabel="source i")
print("wrote ot_plan.png in", out_dir)
