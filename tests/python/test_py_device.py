"""Device selection (docs/usage/gpu.md): one process-wide setting beside the thread count.
Python set_device / current_device, the CLI's --device / --precision and the configs'
[compute] keys; device = cpu gives the same bits as the default; asking for cuda gives the
message that applies to this build (no backend, or a backend without a usable GPU); results and
summary.json say where the reductions ran."""
import json

import numpy as np
import pytest

import attnflow
from attnflow import _attnflow as ext

NO_BACKEND = ("device = cuda: this attnflow was built without CUDA (rebuild with a CUDA compiler: "
              "nvcc on PATH or -DCMAKE_CUDA_COMPILER=..., and -DATTNFLOW_CUDA=AUTO or ON; "
              "docs/usage/gpu.md)")
NO_GPU = "device = cuda: no usable CUDA device (cuda"

RUN_SETS = ["measure.n=12", "measure.d=3", "measure.systems=3", "integrate.t_end=1",
            "observe.every=0.5", "model.beta=2"]


@pytest.fixture(autouse=True)
def restore_device():
    yield
    ext.set_device("cpu")


def data():
    rng = np.random.default_rng(4)
    return rng.standard_normal((41, 3)), rng.standard_normal((57, 3)), rng.standard_normal((57, 2))


def expect_cuda_refused(call):
    """call() asks for cuda: the error that applies to this build, the setting unchanged."""
    if ext.cuda_available():
        pytest.fail("this test runs where no GPU is usable; scripts/gpu-check.sh covers the GPU")
    if ext.cuda_compiled():
        with pytest.raises(RuntimeError) as e:
            call()
        assert str(e.value).startswith(NO_GPU), str(e.value)
    else:
        with pytest.raises(ValueError) as e:
            call()
        assert str(e.value) == NO_BACKEND
    assert ext.current_device() == ("cpu", "float64")


def test_default_is_cpu_float64():
    assert ext.current_device() == ("cpu", "float64")
    assert attnflow.current_device() == ("cpu", "float64")


def test_set_device_cpu_is_bit_identical():
    x, y, v = data()
    before = attnflow.attention_result(x, y, v, beta=1.7)
    sk_before = attnflow.attention(x, y, v, beta=0.8, normalization="sinkhorn")
    attnflow.set_device("cpu")
    assert attnflow.current_device() == ("cpu", "float64")
    after = attnflow.attention_result(x, y, v, beta=1.7)
    sk_after = attnflow.attention(x, y, v, beta=0.8, normalization="sinkhorn")
    assert np.array_equal(before.out, after.out)
    assert np.array_equal(before.lse[0], after.lse[0])
    assert np.array_equal(sk_before, sk_after)
    assert after.device == "cpu"


def test_set_device_cuda_refused_here():
    expect_cuda_refused(lambda: attnflow.set_device("cuda"))
    expect_cuda_refused(lambda: attnflow.set_device("cuda", "float32"))


def test_bad_device_and_precision():
    with pytest.raises(ValueError, match=r"^set_device: device = gpu, must be one of cpu, cuda$"):
        attnflow.set_device("gpu")
    with pytest.raises(ValueError,
                       match=r"^set_device: precision = half, must be one of float64, float32$"):
        attnflow.set_device("cpu", "half")
    with pytest.raises(ValueError, match=r"precision = float32, must be float64 with device = cpu"):
        attnflow.set_device("cpu", "float32")
    assert attnflow.current_device() == ("cpu", "float64")


def run_config(tmp_path, run_cli, extra=()):
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(run_cli("run", "--print-default-config").stdout)
    cfg = attnflow.Config.from_file(str(cfg_path))
    for s in [*RUN_SETS, *extra]:
        cfg.set(s)
    return cfg


def test_run_config_device_keys(tmp_path, run_cli):
    rc = attnflow.parse_run_config(run_config(tmp_path, run_cli))
    assert (rc.device, rc.precision) == ("", "")
    rc = attnflow.parse_run_config(run_config(tmp_path, run_cli, ["compute.device=cpu"]))
    assert rc.device == "cpu"
    with pytest.raises(ValueError,
                       match=r'compute.device = "gpu", must be one of cpu, cuda \(\"\" = --device\)'):
        attnflow.parse_run_config(run_config(tmp_path, run_cli, ["compute.device=gpu"]))
    # float32 on the CPU: the batched ensemble's single precision (the run checks its systems).
    rc = attnflow.parse_run_config(run_config(tmp_path, run_cli, ["compute.device=cpu",
                                                                  "compute.precision=float32"]))
    assert (rc.device, rc.precision) == ("cpu", "float32")
    with pytest.raises(ValueError, match=r'compute.precision = "float16", must be one of float64, float32'):
        attnflow.parse_run_config(run_config(tmp_path, run_cli, ["compute.precision=float16"]))


def test_run_experiment_device_cpu_equals_default(tmp_path, run_cli):
    outs = {}
    for name, extra in (("default", []), ("cpu", ["compute.device=cpu"])):
        cfg = run_config(tmp_path, run_cli, extra)
        opts = attnflow.RunOptions()
        opts.out_dir, opts.progress = str(tmp_path / name), False
        res = attnflow.run_experiment(attnflow.parse_run_config(cfg), cfg.resolved(), opts)
        assert res.finished and res.device == "cpu"
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert (summary["device"], summary["precision"], summary["device_fallback"]) == \
            ("cpu", "float64", "")
        outs[name] = tmp_path / name
    assert np.array_equal(np.load(outs["default"] / "final.npy"), np.load(outs["cpu"] / "final.npy"))
    assert (outs["default"] / "observables.csv").read_text() == \
        (outs["cpu"] / "observables.csv").read_text()


def test_run_experiment_cuda_refused_before_any_output(tmp_path, run_cli):
    cfg = run_config(tmp_path, run_cli, ["compute.device=cuda"])
    opts = attnflow.RunOptions()
    opts.out_dir, opts.progress = str(tmp_path / "gpu"), False
    rc = attnflow.parse_run_config(cfg)
    expect_cuda_refused(lambda: attnflow.run_experiment(rc, cfg.resolved(), opts))
    assert not (tmp_path / "gpu").exists()


# ---- CLI -----------------------------------------------------------------------------------


def write_attention_inputs(tmp_path):
    x, y, v = data()
    for name, a in (("x", x), ("y", y), ("v", v)):
        np.save(tmp_path / f"{name}.npy", a)


def attention_args(tmp_path, out):
    return ["attention", "--x", tmp_path / "x.npy", "--y", tmp_path / "y.npy", "--v",
            tmp_path / "v.npy", "--beta", "1.3", "--out", tmp_path / out]


def test_cli_device_cpu_is_bit_identical(tmp_path, run_cli):
    write_attention_inputs(tmp_path)
    r0 = run_cli(*attention_args(tmp_path, "a.npy"))
    r1 = run_cli(*attention_args(tmp_path, "b.npy"), "--device", "cpu", "--precision", "float64")
    assert r0.returncode == 0 and r1.returncode == 0, r0.stderr + r1.stderr
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    assert r0.stdout.replace("a.npy", "b.npy") == r1.stdout


def test_cli_every_numeric_command_has_device(run_cli):
    for cmd in ("attention", "ot", "run", "sweep", "demo", "fit", "apply", "icl", "largeprompt"):
        h = run_cli(cmd, "--help")
        if h.returncode != 0:
            continue  # a command this build does not have
        assert "--device" in h.stdout and "--precision" in h.stdout, cmd


def test_cli_device_errors(tmp_path, run_cli):
    write_attention_inputs(tmp_path)
    r = run_cli(*attention_args(tmp_path, "c.npy"), "--device", "gpu")
    assert r.returncode != 0 and "--device = gpu, must be one of cpu, cuda" in r.stderr, r.stderr
    r = run_cli(*attention_args(tmp_path, "c.npy"), "--precision", "float32")
    assert r.returncode != 0 and \
        "--precision = float32, must be float64 unless --device cuda" in r.stderr, r.stderr
    r = run_cli(*attention_args(tmp_path, "c.npy"), "--device", "cuda")
    assert r.returncode != 0, r.stderr
    if ext.cuda_compiled():
        assert NO_GPU in r.stderr, r.stderr
    else:
        assert NO_BACKEND in r.stderr, r.stderr
    assert not (tmp_path / "c.npy").exists()


def test_cli_run_summary_carries_device(tmp_path, run_cli):
    cfg = tmp_path / "c.toml"
    cfg.write_text(run_cli("run", "--print-default-config").stdout)
    sets = [a for s in RUN_SETS for a in ("--set", s)]
    outs = []
    for name, extra in (("a", []), ("b", ["--device", "cpu"]), ("c", ["--set", "compute.device=cpu"])):
        r = run_cli("run", cfg, *sets, *extra, "--quiet", "--no-plots", "--out", tmp_path / name)
        assert r.returncode == 0, r.stderr
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert (summary["device"], summary["precision"], summary["device_fallback"]) == \
            ("cpu", "float64", "")
        outs.append(np.load(tmp_path / name / "final.npy"))
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])
    r = run_cli("run", cfg, *sets, "--set", "compute.device=cuda", "--quiet", "--no-plots",
                "--out", tmp_path / "gpu")
    assert r.returncode != 0
    assert (NO_GPU if ext.cuda_compiled() else NO_BACKEND) in r.stderr, r.stderr
    assert not (tmp_path / "gpu").exists()


SWEEP = """
[measure]
n = 10
[integrate]
t_end = 0.5
[observe]
every = 0.5
[output]
snapshots = false
[sweep]
model.beta = [1.0, 4.0]
"""


def test_cli_sweep_device(tmp_path, run_cli):
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP)
    r = run_cli("sweep", cfg, "--out", tmp_path / "a", "--no-plots", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert (s["kind"], s["device"], s["precision"]) == ("sweep", "cpu", "float64")
    # One process-wide device: a sweep cannot vary it between points running at once.
    cfg.write_text(SWEEP + 'compute.device = ["cpu", "cuda"]\n')
    r = run_cli("sweep", cfg, "--out", tmp_path / "b", "--no-plots")
    assert r.returncode != 0
    assert "sweep.compute.device = [ 'cpu', 'cuda' ], must be a key outside [compute]" in r.stderr, \
        r.stderr
    assert not (tmp_path / "b").exists()


def test_cli_sweep_cuda_refused_before_any_output(tmp_path, run_cli):
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP.replace("[sweep]", '[compute]\ndevice = "cuda"\n[sweep]'))
    r = run_cli("sweep", cfg, "--out", tmp_path / "c", "--no-plots")
    assert r.returncode != 0
    assert (NO_GPU if ext.cuda_compiled() else NO_BACKEND) in r.stderr, r.stderr
    assert not (tmp_path / "c").exists()
