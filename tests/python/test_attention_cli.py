"""attnflow attention end to end: outputs against a dense NumPy reference of docs/math.md section 1,
error messages for every bad input of docs/math.md section 0, no output left behind on failure."""
import numpy as np
import pytest

# The CLI and this reference are both float64; they differ by summation order only.
RTOL = 1e-10
ATOL = 1e-12


def dense_attention(x, y, v, wy, beta, q=None, k=None, normalization="softmax"):
    qx = x @ q.T if q is not None else x
    ky = y @ k.T if k is not None else y
    s = beta * qx @ ky.T
    if normalization == "none":
        p = wy[None, :] * np.exp(s)
    else:
        s = s - s.max(axis=1, keepdims=True)
        p = wy[None, :] * np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
    return p @ v


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 3))
    y = rng.standard_normal((53, 3))
    v = rng.standard_normal((53, 2))
    wy = rng.uniform(0.1, 1.0, 53)
    q = rng.standard_normal((2, 3))
    k = rng.standard_normal((2, 3))
    files = {}
    for name, arr in dict(x=x, y=y, v=v, wy=wy, q=q, k=k).items():
        files[name] = tmp_path / f"{name}.npy"
        np.save(files[name], arr)
    return dict(x=x, y=y, v=v, wy=wy / wy.sum(), q=q, k=k, files=files, dir=tmp_path)


@pytest.mark.parametrize("normalization", ["softmax", "none"])
def test_matches_dense_reference(run_cli, data, normalization):
    f = data["files"]
    out = data["dir"] / "out.npy"
    r = run_cli("attention", "--x", f["x"], "--y", f["y"], "--v", f["v"], "--wy", f["wy"],
                "--beta", 1.7, "--q", f["q"], "--k", f["k"], "--normalization", normalization,
                "--out", out, "--threads", 2)
    assert r.returncode == 0, r.stderr
    got = np.load(out)
    ref = dense_attention(data["x"], data["y"], data["v"], data["wy"], 1.7, data["q"], data["k"],
                          normalization)
    assert got.dtype == np.float64 and got.shape == (37, 2)
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)


def test_defaults_self_attention_and_float32(run_cli, data, tmp_path):
    x32 = data["x"].astype(np.float32)
    np.save(tmp_path / "x32.npy", x32)
    out = tmp_path / "o.npy"
    r = run_cli("attention", "--x", tmp_path / "x32.npy", "--beta", 2.0, "--out", out)
    assert r.returncode == 0, r.stderr
    x = x32.astype(np.float64)
    ref = dense_attention(x, x, x, np.full(len(x), 1 / len(x)), 2.0)
    np.testing.assert_allclose(np.load(out), ref, rtol=RTOL, atol=ATOL)


def test_beta_1000_is_finite(run_cli, tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.save(tmp_path / "x.npy", x)
    r = run_cli("attention", "--x", tmp_path / "x.npy", "--beta", 1000, "--out", tmp_path / "o.npy")
    assert r.returncode == 0, r.stderr
    got = np.load(tmp_path / "o.npy")
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, dense_attention(x, x, x, np.full(200, 1 / 200), 1000.0),
                               rtol=1e-9, atol=1e-9)


def bad_case(tmp_path, name, arr):
    p = tmp_path / name
    np.save(p, arr)
    return p


@pytest.mark.parametrize("case, message", [
    ("nan_x", "queries (--x, --wx): points[1, 2] = nan, must be finite"),
    ("inf_y", "keys (--y, --wy): points[0, 0] = inf, must be finite"),
    ("negative_w", "keys (--y, --wy): weights[3] = -1, must be >= 0"),
    ("zero_mass", "keys (--y, --wy): total weight = 0, must be > 0"),
    ("dim_mismatch", "queries have dimension 3 and keys 2, must be equal"),
    ("weights_size", "keys (--y, --wy): weights size = 4, must equal the number of points (5)"),
    ("empty", "empty measure"),
    ("fortran", "fortran_order = True, must be C order"),
    ("int_dtype", "dtype = '<i8', must be float64"),
    ("bad_normalization", "normalization = \"hardmax\", must be one of softmax, sinkhorn, none"),
    ("values_rows", "values have 3 rows, must equal the number of keys (5)"),
])
def test_bad_input_is_rejected_with_message_and_no_output(run_cli, tmp_path, case, message):
    x = np.ones((4, 3))
    y = np.ones((5, 3))
    args = {"--x": bad_case(tmp_path, "x.npy", x), "--y": bad_case(tmp_path, "y.npy", y)}
    extra = []
    if case == "nan_x":
        x[1, 2] = np.nan
        args["--x"] = bad_case(tmp_path, "x.npy", x)
    elif case == "inf_y":
        y[0, 0] = np.inf
        args["--y"] = bad_case(tmp_path, "y.npy", y)
    elif case == "negative_w":
        args["--wy"] = bad_case(tmp_path, "w.npy", np.array([1.0, 1, 1, -1, 1]))
    elif case == "zero_mass":
        args["--wy"] = bad_case(tmp_path, "w.npy", np.zeros(5))
    elif case == "dim_mismatch":
        args["--y"] = bad_case(tmp_path, "y.npy", np.ones((5, 2)))
    elif case == "weights_size":
        args["--wy"] = bad_case(tmp_path, "w.npy", np.ones(4))
    elif case == "empty":
        args["--y"] = bad_case(tmp_path, "y.npy", np.ones((0, 3)))
    elif case == "fortran":
        args["--x"] = bad_case(tmp_path, "x.npy", np.asfortranarray(np.ones((4, 3))))
    elif case == "int_dtype":
        args["--x"] = bad_case(tmp_path, "x.npy", np.ones((4, 3), dtype=np.int64))
    elif case == "bad_normalization":
        extra = ["--normalization", "hardmax"]
    elif case == "values_rows":
        args["--v"] = bad_case(tmp_path, "v.npy", np.ones((3, 2)))
    out = tmp_path / "out.npy"
    flat = [str(a) for kv in args.items() for a in kv]
    r = run_cli("attention", *flat, *extra, "--out", out)
    assert r.returncode != 0
    assert r.stderr.startswith("attnflow: error: "), r.stderr
    assert message in r.stderr, r.stderr
    assert not out.exists()
    assert not any(p.name.startswith("out.npy.tmp") for p in tmp_path.iterdir())


def test_unnormalized_overflow_is_an_error_not_inf(run_cli, tmp_path):
    x = np.eye(3)
    np.save(tmp_path / "x.npy", x)
    r = run_cli("attention", "--x", tmp_path / "x.npy", "--beta", 1000, "--normalization", "none",
                "--out", tmp_path / "o.npy")
    assert r.returncode != 0
    assert "is not finite" in r.stderr and "overflows" in r.stderr
    assert not (tmp_path / "o.npy").exists()


def test_help_version_and_usage_errors(run_cli):
    r = run_cli("--help")
    assert r.returncode == 0 and "attention" in r.stdout and "demo" in r.stdout
    r = run_cli("attention", "--help")
    assert r.returncode == 0 and "--normalization" in r.stdout and "--threads" in r.stdout
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("attnflow ")
    r = run_cli("attention", "--out", "x.npy")
    assert r.returncode != 0 and r.stderr.startswith("attnflow: error: ")
    assert "--x is required" in r.stderr
    r = run_cli("frobnicate")
    assert r.returncode != 0 and "attnflow: error: " in r.stderr


def test_csv_input_equals_npy_input(run_cli, tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 2))
    np.save(tmp_path / "x.npy", x)
    np.savetxt(tmp_path / "x.csv", x, delimiter=",", header="a,b", comments="", fmt="%.17g")
    assert run_cli("attention", "--x", tmp_path / "x.npy", "--out", tmp_path / "a.npy").returncode == 0
    r = run_cli("attention", "--x", tmp_path / "x.csv", "--out", tmp_path / "b.npy")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
