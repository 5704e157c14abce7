"""Softmax vs Sinkhorn attention between two point clouds: compare the couplings.

Softmax attention normalizes each query's row of exp(beta <x_i, y_j>) (a conditional law);
Sinkhorn attention normalizes rows AND columns (a coupling in Pi(a, b)). docs/math.md section 1.
Run: PYTHONPATH=build/python python3 examples/softmax_vs_sinkhorn.py [OUT_DIR]
"""
import os
import sys

import numpy as np

import attnflow
from attnflow import plot

out_dir = sys.argv[1] if len(sys.argv) > 1 else "."
os.makedirs(out_dir, exist_ok=True)

# Two point clouds in the plane (queries x: 40 points, keys y: 30 points), uniform weights.
rng = attnflow.Rng(2026)
x = attnflow.sample_gaussian(40, 2, rng)
y = attnflow.sample_gaussian(30, 2, rng) + np.array([1.0, 0.0])
a, b = np.full(40, 1 / 40), np.full(30, 1 / 30)
beta = 2.0

# Values = the identity (30, 30): attention then returns the weight matrix P itself (40, 30).
eye = np.eye(30)
p_soft = attnflow.attention(x, y, eye, beta=beta, normalization="softmax")
p_sink = attnflow.attention(x, y, eye, beta=beta, normalization="sinkhorn", tol=1e-12)

# Joint laws a_i P_ij: both have first marginal a; only Sinkhorn's has second marginal b.
pi_soft, pi_sink = a[:, None] * p_soft, a[:, None] * p_sink
print("row marginal error  softmax %.2e  sinkhorn %.2e" % (abs(pi_soft.sum(1) - a).sum(), abs(pi_sink.sum(1) - a).sum()))
print("col marginal error  softmax %.2e  sinkhorn %.2e" % (abs(pi_soft.sum(0) - b).sum(), abs(pi_sink.sum(0) - b).sum()))

# The same coupling from entropic OT with cost C = -beta <x, y> and eps = 1
# (docs/math.md section 1.5, fact 2).
cost = attnflow.TransportCost.bilinear(x, y, beta)
opts = attnflow.SinkhornOptions()
opts.eps, opts.tol = 1.0, 1e-12
sol = attnflow.sinkhorn(a, b, cost, opts)
print("max |pi_attention - pi_ot| = %.2e" % np.abs(attnflow.transport_plan(cost, sol) - pi_sink).max())

# Heatmaps of the two couplings (queries and keys sorted by first coordinate, for readability).
rows, cols = np.argsort(x[:, 0]), np.argsort(y[:, 0])
plot.heatmap(pi_soft[rows][:, cols], os.path.join(out_dir, "coupling_softmax.png"), title="softmax: a_i P_ij")
plot.heatmap(pi_sink[rows][:, cols], os.path.join(out_dir, "coupling_sinkhorn.png"), title="sinkhorn: pi_ij")
print("wrote coupling_softmax.png and coupling_sinkhorn.png in", out_dir)
