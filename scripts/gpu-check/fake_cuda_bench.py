#!/usr/bin/python3
"""Stand-in for cuda_bench (same arguments, same RESULT lines, NumPy arithmetic) for a CPU dry
run of bench/cuda_compare.py where no GPU is available:
    python3 bench/cuda_compare.py --bench scripts/gpu-check/fake_cuda_bench.py --quick \\
        --torch-device cpu
It checks the driver script only; its numbers mean nothing."""
import sys
import time

import numpy as np


def main():
    what, rest = sys.argv[1], sys.argv[2:]
    a = dict(zip([k[2:] for k in rest[::2]], rest[1::2]))
    n, k = int(a["n"]), int(a.get("k", 3))
    t0 = time.perf_counter()
    if what == "attention":
        x = np.fromfile(a["input"]).reshape(n, k)
        s = x @ x.T
        w = np.exp(s - s.max(1, keepdims=True))
        out = (w @ x) / w.sum(1, keepdims=True)
        if "dump" in a:
            out.tofile(a["dump"])
        print(f"RESULT kind=attention n={n} k={k} prec={a['prec']} "
              f"seconds={time.perf_counter() - t0:.6g} chunks=1 identical=1")
    else:
        print("ITER iteration=0 error=1 seconds=1")
        print(f"RESULT kind=sinkhorn n={n} k={k} prec={a['prec']} seconds=1 iterations=0 "
              f"error=1 dual=1 converged=0")


if __name__ == "__main__":
    main()
