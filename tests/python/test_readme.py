"""Documented claims come from outputs: README.md is exactly what
scripts/make_readme.py generates, the numbers it fills in come from committed outputs, those
outputs are what the program prints today, and a claim without an answer is an error."""
import csv
import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from conftest import SOURCE_DIR

SCRIPT = SOURCE_DIR / "scripts" / "make_readme.py"
DEMO = SOURCE_DIR / "docs" / "outputs" / "demo" / "observables.csv"
# The committed demo output and a fresh run do the same float64 arithmetic; only a different
# compiler or vector width could move the last bits.
FLOAT_RTOL = 1e-9


def load_generator():
    spec = importlib.util.spec_from_file_location("make_readme", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def read(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], np.array(rows[1:], dtype=float)


def test_readme_is_up_to_date_with_its_generator():
    r = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_committed_demo_output_is_what_the_demo_prints_today(run_cli, tmp_path):
    r = run_cli("demo", "--out", tmp_path / "demo", "--no-plots")
    assert r.returncode == 0, r.stderr
    header, fresh = read(tmp_path / "demo" / "observables.csv")
    committed_header, committed = read(DEMO)
    assert header == committed_header, "refresh: scripts/make_readme.py --refresh-demo build/attnflow"
    exact = [header.index(c) for c in ("t", "system", "clusters", "largest_cluster")]
    np.testing.assert_array_equal(fresh[:, exact], committed[:, exact])
    np.testing.assert_allclose(fresh, committed, rtol=FLOAT_RTOL, atol=1e-15)


def test_the_readme_sentence_is_the_demo_output():
    # The sentence the issue found wrong ("4 clusters until t = 116"; the output drops at 112).
    gen = load_generator()
    header, rows = read(DEMO)
    clusters, t = rows[:, header.index("clusters")], rows[:, header.index("t")]
    drop = t[np.nonzero((clusters < 4) & (t > t[np.argmax(clusters == 4)]))[0][0]]
    readme = (SOURCE_DIR / "README.md").read_text()
    assert f"then 4 clusters until t = {drop:g}," in readme
    assert f"{int(clusters[0])} components at t = 0" in readme
    assert "{{" not in gen.generate()


def test_a_claim_without_an_answer_is_an_error():
    gen = load_generator()
    rows = [{"t": float(k), "system": 0.0, "clusters": c} for k, c in enumerate([9.0, 5.0, 5.0, 4.0, 4.0])]
    assert gen.table_value(rows, "from(clusters == 5)", "x") == 1.0
    assert gen.table_value(rows, "until(clusters == 5)", "x") == 3.0
    assert gen.table_value(rows, "at(0, clusters)", "x") == 9.0
    assert gen.table_value(rows, "last(clusters)", "x") == 4.0
    with pytest.raises(ValueError, match="'clusters == 4' holds until the end"):
        gen.table_value(rows, "until(clusters == 4)", "x")
    with pytest.raises(ValueError, match="'clusters == 6' never holds"):
        gen.table_value(rows, "from(clusters == 6)", "x")
    with pytest.raises(ValueError, match="no observation at t = 7"):
        gen.table_value(rows, "at(7, clusters)", "x")
    with pytest.raises(ValueError, match="unknown source 'nope'"):
        gen.fill("a {{nope:last(t)}} b", "doc.md", {})


def test_committed_cluster_prediction_is_what_the_cli_prints_today(run_cli):
    # docs/usage/theory.md quotes `attnflow theory clusters --d 2 --beta 8` from the committed
    # experiment summary; the CLI must still say the same.
    import json

    gen = load_generator()
    committed = gen.json_value("experiments/theory/cluster_count/summary.json:table.3", "x")
    r = run_cli("theory", "clusters", "--d", "2", "--beta", "8")
    assert r.returncode == 0, r.stderr
    assert committed["beta"] == 8.0
    assert json.loads(r.stdout)["predicted_clusters"] == committed["predicted_clusters"]
