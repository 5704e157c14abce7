"""Long-context experiment: writes long_context/{results.csv, summary.json, report.md}."""
import json

import numpy as np

from common import HERE, attnflow, load_config, write_atomic, write_summary, write_table

NAME = "long_context"


def point(n, rho, gamma, direct):
    args = ["theory", "long-context", "--n", n, "--rho", rho, "--gamma", gamma]
    return json.loads(attnflow(*args, *(["--direct"] if direct else [])))


def main():
    cfg = load_config(NAME)
    rows = []
    for rho in cfg["rho"]:
        gc = 1.0 / (1.0 - rho)
        for f in cfg["gamma_over_gamma_c"]:
            gamma = f * gc
            for n in cfg["n"] + cfg["n_formula_only"]:
                direct = n in cfg["n"]
                j = point(n, rho, gamma, direct)
                cd = j.get("cosine_direct", float("nan"))
                rows.append([n, rho, gamma, f, j["cosine"], cd, j["limit"], j["regime"],
                             abs(cd - j["cosine"]) if direct else float("nan"),
                             abs(j["cosine"] - j["limit"])])
    header = ["n", "rho", "gamma", "gamma_over_gamma_c", "cosine_formula", "cosine_direct",
              "limit", "regime", "abs_direct_minus_formula", "abs_formula_minus_limit"]
    write_table(HERE / NAME / "results.csv", header, rows)
    arr = {h: [r[i] for r in rows] for i, h in enumerate(header)}
    diffs = np.array([d for d in arr["abs_direct_minus_formula"] if d == d])
    max_diff = float(diffs.max())
    write_summary(NAME, {"points": len(rows), "max_abs_direct_minus_formula": max_diff,
                         "rho": cfg["rho"], "n": cfg["n"] + cfg["n_formula_only"],
                         "gamma_over_gamma_c": cfg["gamma_over_gamma_c"],
                         "csv": "results.csv"})
    report(cfg, rows, max_diff)


def report(cfg, rows, max_diff):
    ns = cfg["n"] + cfg["n_formula_only"]
    lines = [
        "# Long-context one-layer map at beta = gamma log n",
        "",
        "Regenerate: `experiments/theory/run_all.sh long_context` (config: `config.toml`).",
        "",
        "**Prediction** (docs/math.md section 6). One softmax attention layer on n equiangular tokens",
        "with cosine rho sends the cosine to 1 for gamma < gamma_c = 1/(1 - rho), to",
        "4 rho / (1 + 3 rho) at gamma_c, and keeps rho above, as n -> inf; at finite n the output",
        "cosine is [(1-rho)(2ab + (n-2) b^2) + rho] / [(1-rho)(a^2 + (n-1) b^2) + rho].",
        "",
        "**Measurement.** The layer computed directly through the kernel on the exact",
        f"equiangular configuration (n = {', '.join(f'{n:g}' for n in cfg['n'])}; O(n) memory,",
        "see `long_context_direct` in include/attnflow/long_context.hpp), and the formula out to",
        f"n = {cfg['n_formula_only'][-1]:g}.",
        "",
        f"**Finite-n formula vs direct layer:** max |difference| = {max_diff:.2e} over all",
        f"{sum(1 for r in rows if r[0] in cfg['n'])} (n, rho, gamma) points: the inferred formula is exact.",
        "",
        "**Distance to the n -> inf limit**, |cosine(n) - limit|:",
        "",
        "| rho | gamma/gamma_c | limit | " + " | ".join(f"n={n:g}" for n in ns) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in ns) + " |",
    ]
    for rho in cfg["rho"]:
        for f in cfg["gamma_over_gamma_c"]:
            sel = [r for r in rows if r[1] == rho and r[3] == f]
            lines.append(f"| {rho} | {f} | {sel[0][6]:.4f} | " +
                         " | ".join(f"{r[9]:.1e}" for r in sel) + " |")
    lines += [
        "",
        "**Discrepancy.** None between formula and direct computation (round-off). The limits",
        "are approached, but slowly near gamma_c: below it 1 - cosine ~ n^{-2 (1 - gamma (1 - rho))}",
        "and above it |cosine - rho| ~ n^{-(gamma (1 - rho) - 1)}, so at gamma = 0.9 or 1.1 gamma_c",
        "even n = 1e5 (and n = 1e8) sits far from the limit: at realistic context lengths the",
        "transition is a smooth crossover centred at gamma_c, sharpening only logarithmically in n.",
        "",
        "Columns of `results.csv`: n, rho, gamma, gamma_over_gamma_c, cosine_formula,",
        "cosine_direct (NaN where only the formula was evaluated), limit, regime",
        "(collapse | critical | preserved), abs_direct_minus_formula, abs_formula_minus_limit.",
        "",
    ]
    write_atomic(HERE / NAME / "report.md", "\n".join(lines))


if __name__ == "__main__":
    main()
