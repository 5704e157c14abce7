"""Hostile input end to end: every repro of C1, C2, H1-H3, S3, S4 and M1-M6 is a
clean `attnflow: error: ...` naming the key or argument, never a crash, hang, abort or raw C++
text. Each case runs with a timeout, so a regression to an unbounded loop fails, not hangs."""
import struct

import numpy as np
import pytest

# Texts that must never reach a user (M2).
RAW = ("std::bad_alloc", "_M_default_append", "stoll", "basic_string", "terminate called")


def assert_clean_error(res, *needles):
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])
    err = res.stderr
    assert err.startswith("attnflow: error: "), err[-2000:]
    for raw in RAW:
        assert raw not in err, err
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"
    assert len(err) < 2000, err[:3000]


def write(path, text):
    path.write_text(text)
    return path


# C1: a section name holding a value where a table is expected (exit 139 before).
@pytest.mark.parametrize("cmd,text,key", [
    ("run", "model = 3\n", "model = 3, must be a table"),
    ("run", 'measure = "x"\n', "measure = x, must be a table"),
    ("run", "model = []\n", "model = [], must be a table"),
    ("icl", "train = 1\n", "train = 1, must be a table"),
    ("fit", "task = 1\n", "task = 1, must be a table"),
    ("largeprompt", "experiment = 1\n", "experiment = 1, must be a table"),
    ("sweep", "[sweep]\nmodel = [1, 2]\n", "sweep.model = [ 1, 2 ], must be a table of lists of section.key values"),
])
def test_section_holding_a_value_is_an_error(run_cli, tmp_path, cmd, text, key):
    cfg = write(tmp_path / "c.toml", text)
    res = run_cli(cmd, cfg, "--out", tmp_path / "o", timeout=120)
    assert_clean_error(res, key)


def test_demo_set_section_to_value(run_cli, tmp_path):
    res = run_cli("demo", "--out", tmp_path / "o", "--set", "model=3", timeout=120)
    assert_clean_error(res, "--set: model = 3, must be section.key=value (model is a section)")


# C2 / H3: sizes that cannot fit are refused before allocating, naming key, value, estimate.
@pytest.mark.parametrize("cmd,text,needle", [
    ("icl", "[train]\nprompt = 1000000000000\n", "train.prompt = 1000000000000 needs about"),
    ("icl", "[train]\nbatch = 1e13\n", "train.batch = 10000000000000 needs about"),
    ("run", "[measure]\nsystems = 1e11\n", "measure.systems x measure.n x measure.d = 100000000000 x 64 x 3 needs about"),
    ("run", "[measure]\nn = 1e13\n", "needs about"),
    ("run", "[measure]\nd = 1e12\n", "needs about"),
    ("run", "[model]\nheads = 1e9\n", "model.heads = 1000000000 (with measure.d = 3) needs about"),
    ("run", "[integrate]\nt_end = 1e15\n[output]\nsnapshots = true\n",
     "integrate.t_end / observe.every = 1e+15 / 1 gives 1e+15 observations, must be <= 1e+06"),
    ("run", "[observe]\nevery = 1e-12\n", "integrate.t_end / observe.every = 15 / 1e-12 gives"),
    ("fit", "[model]\nheads = 1000000000\n", "model.depth x model.heads x model.head_dim"),
])
def test_absurd_sizes_are_refused_up_front(run_cli, tmp_path, cmd, text, needle):
    cfg = write(tmp_path / "c.toml", text)
    res = run_cli(cmd, cfg, "--out", tmp_path / "o", timeout=120)
    assert_clean_error(res, needle, "ATTNFLOW_NO_SIZE_LIMITS=1")
    assert not (tmp_path / "o" / "snapshots").exists()


def test_theory_samples_bound(run_cli, tmp_path):
    res = run_cli("theory", "equiangular", "--samples", "100000000000", "--out", tmp_path / "t.csv",
                  timeout=120)
    assert_clean_error(res, "--samples = 100000000000, must be in [2, 1e+06]")


# H1: the eps schedule is validated; none of these may loop (timeout = failure).
@pytest.mark.parametrize("xs,args,needle", [
    ([[0.0], [1.4e154]], ["--eps", "0.1"], "sinkhorn: cost scale = inf, must be finite"),
    ([[0.0], [1.0]], ["--eps", "5e-324"], "sinkhorn: eps = 5e-324, must be >= cost scale / 1.8e308"),
    ([[0.0], [1.0]], ["--eps", "0.01", "--scaling", "0.9999999999999999"],
     "sinkhorn: eps-scaling stages = log(eps_start / eps) / -log(scaling) ="),
])
def test_sinkhorn_schedule_is_bounded(run_cli, tmp_path, xs, args, needle):
    np.save(tmp_path / "x.npy", np.array(xs))
    res = run_cli("ot", "--x", tmp_path / "x.npy", "--y", tmp_path / "x.npy", *args,
                  "--out", tmp_path / "o", timeout=60)
    assert_clean_error(res, needle)


# H2: a model header whose heads * dk exceed the file is refused before reserving memory.
def fnv1a_64(data):
    h = 14695981039346656037
    for b in data:
        h = ((h ^ b) * 1099511628211) % (1 << 64)
    return h


def test_model_file_with_huge_heads_times_dk(run_cli, tmp_path):
    body = b"ATFMODEL" + struct.pack("<III", 1, 2, 1) + struct.pack("<II", 1, 0)
    body += struct.pack("<dd", 1.0, 1.0) + struct.pack("<idi", 0, 1e-9, 100)
    body += struct.pack("<III", 65536, 65536, 1) + bytes(64)
    (tmp_path / "m.afm").write_bytes(body + struct.pack("<Q", fnv1a_64(body)))
    np.save(tmp_path / "x.npy", np.zeros((3, 2)))
    res = run_cli("apply", "--model", tmp_path / "m.afm", "--x", tmp_path / "x.npy",
                  "--out", tmp_path / "o", timeout=60)
    assert_clean_error(res, "(heads, dk, dv) declare 65536 x 262148")


# S3: an empty --q is an error, not the identity.
@pytest.mark.parametrize("shape", [(0, 3), (20, 0), (0, 0)])
def test_empty_q_is_rejected(run_cli, tmp_path, shape):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((5, 3)))
    np.save(tmp_path / "q.npy", np.zeros(shape))
    res = run_cli("attention", "--x", tmp_path / "x.npy", "--q", tmp_path / "q.npy",
                  "--out", tmp_path / "o.npy")
    assert_clean_error(res, f"--q {tmp_path / 'q.npy'}: shape = ({shape[0]}, {shape[1]}), "
                       "must have >= 1 row and >= 1 column")
    assert not (tmp_path / "o.npy").exists()


# S4 / M2 / M5: npy headers.
def raw_npy(path, dict_text, payload=bytes(480)):
    header = dict_text
    while (10 + len(header) + 1) % 64:
        header += " "
    header += "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload)
    return path


@pytest.mark.parametrize("shape,needle", [
    ("(-20, 3)", "shape = (-20, 3), must be a tuple of non-negative integers"),
    ("(20, -3)", "shape = (20, -3), must be a tuple of non-negative integers"),
    ("((20, 3), 3)", "must be a flat tuple of non-negative integers"),
    ("(1, 2305843009213693952)", "shape = (1, 2305843009213693952), must be a tuple of integers <= 9007199254740992"),
    ("(4503599627370496, 4503599627370496)", "header shape (4503599627370496, 4503599627370496) needs more"),
    ("(12345678901234567890123456789, 3)", "must be a tuple of integers <= 9007199254740992"),
])
def test_bad_npy_shapes(run_cli, tmp_path, shape, needle):
    x = raw_npy(tmp_path / "x.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': %s, }" % shape)
    res = run_cli("attention", "--x", x, "--out", tmp_path / "o.npy")
    assert_clean_error(res, needle)


def test_garbage_npy_header_is_escaped_and_capped(run_cli, tmp_path):
    x = tmp_path / "x.npy"
    x.write_bytes(b"\x93NUMPY\x01\x00\x00\x10" + bytes(range(256)) * 16)
    res = run_cli("attention", "--x", x, "--out", tmp_path / "o.npy")
    assert_clean_error(res, "malformed header", "\\x00\\x01", "bytes in all)")
    assert all(0x20 <= ord(c) < 0x7f or c == "\n" for c in res.stderr)


def test_huge_string_value_is_capped(run_cli, tmp_path):
    cfg = write(tmp_path / "c.toml", '[model]\nbeta = "' + "b" * 10_000_000 + '"\n')
    res = run_cli("run", cfg, "--out", tmp_path / "o", timeout=120)
    assert_clean_error(res, "model.beta = bbbb", "... (10000000 bytes in all), must be a number")


# M1: overflow names the real normalization.
@pytest.mark.parametrize("normalization", ["softmax", "sinkhorn"])
def test_overflow_names_the_real_normalization(run_cli, tmp_path, normalization):
    np.save(tmp_path / "x.npy", np.array([[1.0, 2.0], [-3.0, 0.5], [2.0, -1.0]]))
    res = run_cli("attention", "--x", tmp_path / "x.npy", "--beta", "1e308",
                  "--normalization", normalization, "--out", tmp_path / "o.npy", timeout=60)
    assert_clean_error(res, f"for normalization '{normalization}'")
    assert "'none'" not in res.stderr


# M3: weights whose sum overflows are normalized, not "total weight = 0".
def test_weights_1e308_are_normalized(run_cli, tmp_path):
    x = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", np.full(3, 1e308))
    res = run_cli("attention", "--x", tmp_path / "x.npy", "--wx", tmp_path / "w.npy",
                  "--out", tmp_path / "a.npy")
    assert res.returncode == 0, res.stderr
    res = run_cli("attention", "--x", tmp_path / "x.npy", "--out", tmp_path / "b.npy")
    assert res.returncode == 0, res.stderr
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


# M4: option ranges are stated, not a 309-digit number.
@pytest.mark.parametrize("args,needle", [
    (["--threads", "0"], "--threads = 0, must be an integer in [1, 1024]"),
    (["--threads", "-1"], "--threads = -1, must be an integer in [1, 1024]"),
    (["--threads", "abc"], "--threads = abc, must be an integer in [1, 1024]"),
    (["--sinkhorn-iters", "0"], "--sinkhorn-iters = 0, must be an integer in [1, 100000000]"),
])
def test_option_ranges(run_cli, tmp_path, args, needle):
    np.save(tmp_path / "x.npy", np.zeros((2, 2)))
    res = run_cli("attention", "--x", tmp_path / "x.npy", "--out", tmp_path / "o.npy", *args)
    assert res.returncode != 0
    assert needle in res.stderr, res.stderr
    assert "1.79769" not in res.stderr and len(res.stderr) < 400, res.stderr


# M6: init file with a 1e308 entry, beta = 1e308.
def test_init_file_with_huge_entry(run_cli, tmp_path):
    x = np.random.default_rng(1).standard_normal((4, 3))
    x[0, 1] = 1e308
    np.save(tmp_path / "x0.npy", x)
    cfg = write(tmp_path / "c.toml", f'[measure]\nn = 4\ninit = "file"\nfile = "{tmp_path / "x0.npy"}"\n')
    res = run_cli("run", cfg, "--out", tmp_path / "o", "--no-plots", timeout=120)
    assert_clean_error(res, "|x_0| = inf, must be > 0 and finite", "rescale the points")
    assert "is zero" not in res.stderr


def test_beta_1e308_runs_with_a_finite_log_energy(run_cli, tmp_path):
    # Used to fail as "non-finite points": log(2 beta) overflowed, the points were fine.
    cfg = write(tmp_path / "c.toml", "[measure]\nn = 4\n[model]\nbeta = 1e308\n[integrate]\nt_end = 1.0\n")
    res = run_cli("run", cfg, "--out", tmp_path / "o", "--no-plots", "--quiet", timeout=120)
    assert res.returncode == 0, res.stderr
    rows = (tmp_path / "o" / "observables.csv").read_text().splitlines()
    log_energy = [float(r.split(",")[2]) for r in rows[1:]]
    assert len(log_energy) == 2 and all(np.isfinite(log_energy)), rows
