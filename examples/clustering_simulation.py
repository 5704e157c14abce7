"""Tokens as interacting particles on the circle: self-attention dynamics cluster them.

dx_i/dt = P_{x_i}(sum_j softmax_j(beta <x_i, x_j>) x_j) (SA, docs/math.md section 5), integrated
with RK4 + renormalization; observables and cluster-coloured trajectories are plotted.
Run: PYTHONPATH=build/python python3 examples/clustering_simulation.py [OUT_DIR]
"""
import os
import sys

import numpy as np

import attnflow
from attnflow import plot

out_dir = sys.argv[1] if len(sys.argv) > 1 else "."
os.makedirs(out_dir, exist_ok=True)

# 48 tokens uniform on the circle S^1 (seeded: the same picture every time).
n, d, beta = 48, 2, 9.0
x0 = attnflow.sample_sphere(n, d, attnflow.Rng(7))

# The SA flow; enum options accept their names ("sa", "rk4").
options = attnflow.FlowOptions()
options.kind, options.beta = "sa", beta
flow = attnflow.Flow(options, n, d)
integrator = attnflow.IntegratorOptions("rk4", 0.05)

# Advance to each observation time, keeping snapshots and observables.
state, flow_state = flow.initial_state(x0), flow.initial_flow_state()
times = np.linspace(0.0, 40.0, 81)
snapshots, rows = [], []
obs_options = attnflow.ObserveOptions(beta, 1e-3)
for t in times:
    state = flow.advance(state, flow_state, t, integrator)
    points = flow.positions(state)
    snapshots.append(points)
    rows.append([t, 0] + attnflow.observable_values(attnflow.observe(points, None, obs_options, t)))

# The theory's prediction: the fastest-growing Fourier mode around the uniform measure.
print("predicted clusters (linear modes):", attnflow.predict_clusters(beta).predicted_clusters)
print("clusters at t = %g: %d" % (times[-1], attnflow.observe(snapshots[-1], None, obs_options).clusters))

# Plots: trajectories coloured by final cluster, and the observables over time.
table = dict(zip(["t", "system"] + attnflow.observable_names(), np.array(rows).T))
plot.trajectories(np.array(snapshots), times, os.path.join(out_dir, "clusters_trajectories.png"), delta=1e-3)
plot.observables(table, os.path.join(out_dir, "clusters_observables.png"), title=f"SA, beta = {beta:g}, n = {n}")
print("wrote clusters_trajectories.png and clusters_observables.png in", out_dir)
