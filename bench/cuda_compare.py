"""attnflow's CUDA reduction vs PyTorch on the same GPU, one table.

    python3 bench/cuda_compare.py --bench build-gpu/cuda_bench \
        [--library-bench build-gpu/cuda_library_bench] [--quick] [--deadline S]

Rows (inputs made here with a fixed seed and handed to both sides as raw float64 files):
  attention n = 16384, d = 3: out_i = sum_j softmax_j(<x_i, x_j>) x_j, x ~ N(0, I_3).
      attnflow fp64 vs PyTorch dense fp64 (softmax(X X^T) X); attnflow fp32 vs PyTorch dense
      fp32 and SDPA fp32 (scale 1). Median of 10 after a warm-up, inputs on the GPU.
  attention n = 131072, d = 3, fp64: attnflow vs PyTorch in row chunks of 8192 (and SDPA fp32).
  Sinkhorn n = m = 1e5, x, y ~ U[0,1]^3, cost |x - y|^2, eps = 0.03, tol 1e-6 on the L1 row
      marginal (read off each f half-step, the same rule on both sides): attnflow (GPU
      half-steps, fp64 and fp32) vs PyTorch online log-domain Sinkhorn (row chunks of
      torch.logsumexp, the n x m matrix never whole).
  Sinkhorn n = m = 1e6 fp32: attnflow only (PyTorch takes about an hour): solved to the same
      tolerance, at most --big-iter iterations (default 200), stopped after --big-seconds or at
      the --deadline (0: skipped); a stopped solve reports its iterations, error and time per
      iteration so far (cuda_bench's ITER lines).
With --ensemble-bench, the published phase diagram per d (90 betas x 2048 systems x 300 residual
steps of n = 32, observed every step): attnflow's batched ensemble on the GPU
(build-gpu/cuda_ensemble_bench, every beta) vs the published step batched over systems in
PyTorch on the same card (bench/ensemble_compare.py's torch_run, timed on --torch-betas betas and
scaled to 90); attnflow with an ensemble per beta, all from the same points (as `attnflow sweep`
runs the betas of one measure and seed), its observations many per launch
(advance_observe_each), the next beta's ensemble built while the GPU runs; then with fresh points
per beta, the same drawn in turn with a round trip per observation (the job as it ran before),
and the steps alone (--phase-together: also all betas' systems in one ensemble).
With --library-bench, rows "API" time the public calls (attnflow::attention, attnflow::sinkhorn
after set_device(cuda)) on the same inputs: host copies at every reduction included.
Error columns: attention, max |out - out_torch_fp64| / max |x|; Sinkhorn, relative difference
of the dual value <f, a> + <g, b> against PyTorch fp64. attnflow's "identical" = a repeated
run gave bit-identical output.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, reps):
    fn()
    sync()
    ts = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def parse_kv(line):
    return dict(kv.split("=", 1) for kv in line.split()[1:])


def run_bench(bench, *args, timeout=None):
    """The RESULT line's keys; on a timeout {"timeout": "1"} plus the last ITER line's keys."""
    cmd = [bench, *map(str, args)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout or b""
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        iters = [l for l in out.splitlines() if l.startswith("ITER ")]
        return {"timeout": "1", **(parse_kv(iters[-1]) if iters else {})}
    if p.returncode != 0:
        print(f"FAILED: {' '.join(cmd)}\n{p.stdout}{p.stderr}", file=sys.stderr)
        return {"failed": "1"}
    line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return parse_kv(line)


def dense_attention(x):
    return torch.softmax(x @ x.T, dim=1) @ x


def chunked_attention(x, chunk=8192):
    out = torch.empty_like(x)
    for i in range(0, x.shape[0], chunk):
        out[i:i + chunk] = torch.softmax(x[i:i + chunk] @ x.T, dim=1) @ x
    return out


def sdpa(x):
    if not hasattr(F, "scaled_dot_product_attention"):  # PyTorch < 2.0 (a CPU dry run)
        return dense_attention(x)
    q = x[None, None]
    return F.scaled_dot_product_attention(q, q, q, scale=1.0)[0, 0]


def torch_sinkhorn(x, y, eps, tol, max_iter, chunk):
    """Online log-domain Sinkhorn: f_i = |x_i|^2 - eps lse_j(<x_i, 2y_j/eps> + (g_j - |y_j|^2)/eps
    + log b_j), in row chunks; stop rule as cuda_bench (L1 row marginal at each f half-step)."""
    n = x.shape[0]
    log_w = -np.log(n)
    x2, y2 = (x * x).sum(1), (y * y).sum(1)
    f = torch.zeros(n, dtype=x.dtype, device=x.device)
    g = torch.zeros_like(f)

    def half(u, u2, v, v2, pot):
        col = (pot - v2) / eps + log_w
        lse = torch.empty_like(u2)
        for i in range(0, u.shape[0], chunk):
            s = (u[i:i + chunk] @ v.T) * (2 / eps) + col
            lse[i:i + chunk] = torch.logsumexp(s, dim=1)
        return u2 - eps * lse

    it = 0
    while True:
        fn = half(x, x2, y, y2, g)
        err = float((torch.exp((f - fn) / eps) - 1).abs().sum() / n)
        f = fn
        if err < tol or it >= max_iter:
            break
        g = half(y, y2, x, x2, f)
        it += 1
    sync()
    dual = float((f.double() + g.double()).mean())
    return it, err, dual


def phase_rows(args, dev, row):
    """The published phase diagram per d: attnflow's GPU ensemble (all betas) vs the published
    step in PyTorch (timed on a few betas, scaled to all). The like-for-like rows (an ensemble
    per beta, observed every step) come first for every d; then the steps observed once, and
    all betas in one ensemble."""
    saved = dict(os.environ)  # ensemble_compare sets thread variables for its own CPU runs
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import ensemble_compare as ec
    os.environ.clear()
    os.environ.update(saved)
    betas, systems, steps = (2, 256, 20) if args.quick else (90, 2048, 300)
    extra = ["--device", "cpu"] if dev.type == "cpu" else []  # a dry run without a GPU
    torch_t = {}

    def work(d):
        return f"phase diagram d={d} ({betas} betas x {systems} x {steps} steps)"

    def ensemble(d, *more):
        return run_bench(args.ensemble_bench, "--d", d, "--betas", betas, "--systems", systems, "--steps", steps,
                         *more, *extra)

    for d in args.phase_dims:
        r = ensemble(d)
        ts = []
        for k in range(max(1, min(args.torch_betas, betas))):
            x = torch.randn(systems, ec.N, d, dtype=torch.float64, device=dev,
                            generator=torch.Generator(device=dev).manual_seed(k))
            x = x / x.norm(dim=-1, keepdim=True)
            sync()
            t0 = time.perf_counter()
            ec.torch_run(torch, x, steps)
            sync()
            ts.append(time.perf_counter() - t0)
        torch_t[d] = statistics.median(ts) * betas
        if "seconds" not in r:
            row(work(d), "attnflow ensemble", None, "published step", torch_t[d], "", "FAILED")
            continue
        row(work(d), "attnflow ensemble", float(r["seconds"]), "published step", torch_t[d], "",
            f"gpu={r['gpu']}; {float(r['per_beta']):.3g} s per beta; points drawn once (as attnflow sweep): "
            f"{float(r['setup']):.3g} s on the host, {float(r['waited']):.3g} s of it waited for; "
            f"PyTorch timed on {len(ts)} betas; p(t_end) {r['p_end']}")
    def drawing(r):
        return f"drawing {float(r['setup']):.3g} s"

    # The other variants, each for every d: (title suffix, bench arguments, note of a result).
    variants = [
        # Each beta from its own points (drawn while the GPU runs the previous beta).
        (", fresh points per beta", ("--points", "fresh"),
         lambda r: f"{drawing(r)} on the host, {float(r['waited']):.3g} s waited for; p(t_end) {r['p_end']}"),
        # The job as it ran before advance_observe_each: fresh points drawn in turn, a round
        # trip per observation (advance_observe).
        (", fresh points drawn in turn, a round trip per observation",
         ("--points", "fresh", "--launch-observations", 1, "--overlap", 0),
         lambda r: f"{drawing(r)}; p(t_end) {r['p_end']}"),
        # The steps alone, one launch per beta (observed once, at t_end): the GPU's stepping
        # without the observations.
        (", observed at t_end only", ("--observe-every", steps),
         lambda r: f"{drawing(r)}, {float(r['waited']):.3g} s waited for "
                   "(not like for like: PyTorch observes every step)"),
    ]
    if args.phase_together:  # all betas' systems in one ensemble (one launch per step): the same curve
        variants.append((", one ensemble", ("--together", 1), lambda r: f"{drawing(r)}; p(t_end) {r['p_end']}"))
    for suffix, more, note in variants:
        for d in args.phase_dims:
            r = ensemble(d, *more)
            ok = "seconds" in r
            row(work(d) + suffix, "attnflow ensemble", float(r["seconds"]) if ok else None, "published step",
                torch_t[d], "", f"gpu={r['gpu']}; {note(r)}" if ok else "FAILED")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="path of the cuda_bench program")
    ap.add_argument("--library-bench", default=None,
                    help="path of cuda_library_bench (rows timing the public API)")
    ap.add_argument("--ensemble-bench", default=None,
                    help="path of cuda_ensemble_bench (the phase-diagram rows)")
    ap.add_argument("--phase-dims", type=int, nargs="+", default=[2, 8, 32, 128])
    ap.add_argument("--phase-together", action="store_true",
                    help="also the phase rows with all betas' systems in one ensemble")
    ap.add_argument("--torch-betas", type=int, default=3,
                    help="betas of the published PyTorch step timed per d (scaled to 90)")
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test of this script)")
    ap.add_argument("--sections", default="attention,sinkhorn,phase,big",
                    help="rows to run, comma-separated: attention, sinkhorn (1e5, with the API rows), "
                         "phase (the phase diagram), big (Sinkhorn 1e6)")
    ap.add_argument("--big-seconds", type=float, default=300.0,
                    help="time limit of the n = 1e6 fp32 Sinkhorn (0: skip)")
    ap.add_argument("--deadline", type=float, default=0.0,
                    help="seconds from the start by which this script ends (0: none); the 1e6 "
                         "solve gets what is left")
    ap.add_argument("--torch-max-iter", type=int, default=100)
    ap.add_argument("--big-iter", type=int, default=200,
                    help="most iterations of the n = 1e6 fp32 Sinkhorn")
    ap.add_argument("--out", default=None, help="also write the table to this file")
    ap.add_argument("--torch-device", default="cuda",
                    help="PyTorch's device (cpu only for a dry run of this script)")
    args = ap.parse_args()
    sections = set(args.sections.split(","))
    t_begin = time.perf_counter()
    dev = torch.device(args.torch_device)
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu (dry run)"
    n_att, n_big, n_ot = (2048, 8192, 1000) if args.quick else (16384, 131072, 100000)
    eps, tol = 0.03, 1e-6
    rows = []
    tmp = tempfile.mkdtemp(prefix="cuda_compare_")
    gen = torch.Generator().manual_seed(0)

    def raw(a, path):
        a.detach().cpu().double().numpy().tofile(path)
        return path

    head = ("work", "attnflow", "time", "PyTorch", "time", "speedup", "error", "note")

    def table():
        lines = [f"GPU: {name}; PyTorch {torch.__version__}", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])

    def row(work, ours, ours_t, theirs, theirs_t, err="", note=""):
        speed = f"{theirs_t / ours_t:.1f}x" if ours_t and theirs_t else "-"
        rows.append((work, ours, f"{ours_t:.4g} s" if ours_t else "-", theirs,
                     f"{theirs_t:.4g} s" if theirs_t else "-", speed, err, note))
        print("  " + " | ".join(rows[-1]), flush=True)
        if args.out:  # rewritten after every row: a run stopped by its time limit keeps its rows
            with open(args.out, "w") as fh:
                fh.write(table() + "\n")

    if "attention" in sections:
        # Attention, n = 16384.
        x = torch.randn(n_att, 3, dtype=torch.float64, generator=gen)
        px = raw(x, f"{tmp}/att.bin")
        xg = x.to(dev)
        ref = dense_attention(xg)
        scale = float(x.abs().max())
        t64 = timed(lambda: dense_attention(xg), 10)
        xg32 = xg.float()
        t32 = timed(lambda: dense_attention(xg32), 10)
        ts32 = timed(lambda: sdpa(xg32), 10)
        e_sdpa = float((sdpa(xg32).double() - ref).abs().max()) / scale
        for prec, tt, tname in (("f64", t64, "dense fp64"), ("f32", ts32, "SDPA fp32")):
            r = run_bench(args.bench, "attention", "--n", n_att, "--k", 3, "--prec", prec, "--input", px,
                          "--dump", f"{tmp}/out_{prec}.bin", "--reps", 10)
            if "seconds" not in r:
                row(f"attention n={n_att} d=3 {prec}", "attnflow", None, tname, tt, "", "FAILED")
                continue
            out = torch.from_numpy(np.fromfile(f"{tmp}/out_{prec}.bin").reshape(n_att, 3)).to(dev)
            err = float((out - ref).abs().max()) / scale
            row(f"attention n={n_att} d=3 {prec}", "attnflow", float(r["seconds"]), tname, tt,
                f"{err:.2e}", f"identical={r['identical']} chunks={r['chunks']}")
        if args.library_bench:
            for prec, tt, tname in (("f64", t64, "dense fp64"), ("f32", ts32, "SDPA fp32")):
                r = run_bench(args.library_bench, "attention", "--n", n_att, "--prec", prec, "--input", px,
                              "--reps", 10)
                row(f"attention n={n_att} d=3 {prec}, API", "attnflow::attention",
                    float(r["seconds"]) if "seconds" in r else None, tname, tt, "",
                    f"device={r.get('device', '?')} identical={r.get('identical', '?')}"
                    if "seconds" in r else "FAILED")
        row(f"attention n={n_att} d=3 fp32 (ref)", "-", None, "dense fp32", t32, "", "")
        row(f"attention n={n_att} d=3 fp32 (ref)", "-", None, "SDPA fp32", ts32, f"{e_sdpa:.2e}", "")

        # Attention, n = 131072, fp64.
        xb = torch.randn(n_big, 3, dtype=torch.float64, generator=gen)
        pb = raw(xb, f"{tmp}/attb.bin")
        xbg = xb.to(dev)
        tc = timed(lambda: chunked_attention(xbg), 3)
        refb = chunked_attention(xbg)
        try:  # SDPA in fp32 at d = 3 falls back to the math kernel, which materializes n x n
            tsb = timed(lambda: sdpa(xbg.float()), 3)
        except torch.OutOfMemoryError:
            tsb = None
            torch.cuda.empty_cache()
        r = run_bench(args.bench, "attention", "--n", n_big, "--k", 3, "--prec", "f64", "--input", pb,
                      "--dump", f"{tmp}/outb.bin", "--reps", 5)
        if "seconds" in r:
            out = torch.from_numpy(np.fromfile(f"{tmp}/outb.bin").reshape(n_big, 3)).to(dev)
            err = float((out - refb).abs().max()) / float(xb.abs().max())
            row(f"attention n={n_big} d=3 f64", "attnflow", float(r["seconds"]), "chunked fp64", tc,
                f"{err:.2e}", f"identical={r['identical']}; SDPA fp32 " + (f"{tsb:.4g} s" if tsb else "out of memory"))
        else:
            row(f"attention n={n_big} d=3 f64", "attnflow", None, "chunked fp64", tc, "", "FAILED")
        del refb, xbg

    if "sinkhorn" in sections:
        # Sinkhorn, n = m = 1e5.
        xs = torch.rand(n_ot, 3, dtype=torch.float64, generator=gen)
        ys = torch.rand(n_ot, 3, dtype=torch.float64, generator=gen)
        pxs, pys = raw(xs, f"{tmp}/x.bin"), raw(ys, f"{tmp}/y.bin")
        chunk = max(1, (1 << 28) // n_ot)
        duals, torch_t = {}, {}
        for prec, dtype in (("f64", torch.float64), ("f32", torch.float32)):
            xd, yd = xs.to(dev, dtype), ys.to(dev, dtype)
            sync()
            t0 = time.perf_counter()
            it, err, dual = torch_sinkhorn(xd, yd, eps, tol, args.torch_max_iter, chunk)
            tt = time.perf_counter() - t0
            duals[prec] = dual
            torch_t[prec] = tt
            r = run_bench(args.bench, "sinkhorn", "--n", n_ot, "--k", 3, "--prec", prec, "--x", pxs,
                          "--y", pys, "--eps", eps, "--tol", tol, "--max-iter", args.torch_max_iter)
            if "seconds" not in r:
                row(f"Sinkhorn n=m={n_ot} {prec}", "attnflow", None, "online", tt, "", "FAILED")
                continue
            rel = abs(float(r["dual"]) - duals["f64"]) / abs(duals["f64"])
            row(f"Sinkhorn n=m={n_ot} {prec} tol {tol:g}", "attnflow", float(r["seconds"]),
                f"online {prec}", tt, f"{rel:.2e}",
                f"iters {r['iterations']} / torch {it}; err {float(r['error']):.2e} / torch {err:.2e}")

        if args.library_bench:
            for prec, scaling in (("f64", 0), ("f32", 0), ("f64", 1)):
                r = run_bench(args.library_bench, "sinkhorn", "--n", n_ot, "--prec", prec, "--x", pxs,
                              "--y", pys, "--eps", eps, "--tol", tol, "--scaling", scaling,
                              "--max-iter", args.torch_max_iter)
                work = f"Sinkhorn n=m={n_ot} {prec} tol {tol:g}, API" + (", eps-scaling" if scaling else "")
                if "seconds" not in r:
                    row(work, "attnflow::sinkhorn", None, f"online {prec}", torch_t[prec], "", "FAILED")
                    continue
                rel = abs(float(r["dual"]) - duals["f64"]) / abs(duals["f64"])
                row(work, "attnflow::sinkhorn", float(r["seconds"]), f"online {prec}", torch_t[prec],
                    f"{rel:.2e}", f"iters {r['iterations']}; err {float(r['error']):.2e}; "
                    f"converged={r['converged']}")

    if args.ensemble_bench and "phase" in sections:
        phase_rows(args, dev, row)

    # Sinkhorn, n = m = 1e6, fp32, attnflow only.
    if args.big_seconds > 0 and not args.quick and "big" in sections:
        n6 = 1000000
        x6 = torch.rand(n6, 3, dtype=torch.float64, generator=gen)
        y6 = torch.rand(n6, 3, dtype=torch.float64, generator=gen)
        p6x, p6y = raw(x6, f"{tmp}/x6.bin"), raw(y6, f"{tmp}/y6.bin")
        limit = args.big_seconds
        if args.deadline > 0:
            limit = min(limit, args.deadline - (time.perf_counter() - t_begin) - 5)
        limit = max(limit, 20.0)
        r = run_bench(args.bench, "sinkhorn", "--n", n6, "--k", 3, "--prec", "f32", "--x", p6x,
                      "--y", p6y, "--eps", eps, "--tol", tol, "--max-iter", args.big_iter,
                      timeout=limit)
        work = f"Sinkhorn n=m={n6} f32 tol {tol:g}"
        if "seconds" in r:
            its = max(int(r.get("iterations", r.get("iteration", "0"))), 1)
            status = ("solved" if r.get("converged") == "1" else
                      f"stopped by the {limit:.0f} s limit" if "timeout" in r else
                      f"not converged in {its} iterations")
            row(work, "attnflow", float(r["seconds"]), "-", None, "",
                f"{status}: {its} iterations, {float(r['seconds']) / its:.3g} s per iteration, "
                f"err {float(r['error']):.2e}")
        else:
            row(work, "attnflow", None, "-", None, "",
                f"no iteration within {limit:.0f} s" if "timeout" in r else "FAILED")

    print("\n" + table())


if __name__ == "__main__":
    main()
