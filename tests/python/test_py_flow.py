"""Flows, integrators, observables and ensembles from Python (docs/math.md section 5) against dense
NumPy formulas and closed forms; ValueError texts; determinism across thread counts."""
import numpy as np
import pytest

import attnflow

# Library (streaming kernel) vs dense NumPy, both float64: summation order only.
RTOL = 1e-10
ATOL = 1e-12


def dense_sa_field(x, beta, usa=False):
    """P_x(sum_j w_j e^{beta <x_i, x_j>} x_j / Z_i), uniform w, Z = 1 for USA."""
    n = len(x)
    k = np.exp(beta * x @ x.T) / n
    a = (k @ x) if usa else (k @ x) / k.sum(1, keepdims=True)
    return a - (a * x).sum(1, keepdims=True) * x


@pytest.fixture
def tokens():
    return attnflow.sample_sphere(20, 3, attnflow.Rng(4))


@pytest.mark.parametrize("kind", ["sa", "usa"])
def test_field_matches_dense_formula(tokens, kind):
    o = attnflow.FlowOptions()
    o.kind, o.beta = kind, 2.5  # enums accept their names
    flow = attnflow.Flow(o, 20, 3)
    got = flow.field(0.0, flow.initial_state(tokens))
    np.testing.assert_allclose(got, dense_sa_field(tokens, 2.5, kind == "usa"), rtol=RTOL, atol=ATOL)


def test_energy_and_observables_match_numpy(tokens):
    beta = 3.0
    e = (np.exp(beta * tokens @ tokens.T)).sum() / (2 * beta * 400)
    np.testing.assert_allclose(attnflow.log_energy(tokens, None, beta), np.log(e), rtol=RTOL)
    obs = attnflow.observe(tokens, None, attnflow.ObserveOptions(beta, 1e-3))
    g = tokens @ tokens.T
    off = g[~np.eye(20, dtype=bool)]
    np.testing.assert_allclose(obs.mean_cosine, off.mean(), rtol=1e-9)
    np.testing.assert_allclose(obs.min_cosine, off.min(), rtol=1e-12)
    np.testing.assert_allclose(obs.order, np.linalg.norm(tokens.mean(0)), rtol=1e-12)
    assert obs.clusters == 20 and sorted(obs.cluster_sizes) == [1] * 20
    names = attnflow.observable_names()
    assert len(attnflow.observable_values(obs)) == len(names) and names[0] == "log_energy"


def test_python_field_with_library_integrators():
    # dx/dt = -x: x(t) = x0 e^{-t}; RK4 with dt = 0.01 has global error ~ 1e-10 at t = 1.
    x0 = np.array([[1.0, -2.0], [0.5, 3.0]])
    for method, tol in (("rk4", 1e-9), ("dopri5", 1e-6)):
        st = attnflow.IntegratorState()
        opts = attnflow.IntegratorOptions(method, 0.01)
        x = attnflow.advance(lambda t, y: -y, x0, st, 1.0, opts)
        np.testing.assert_allclose(x, x0 * np.exp(-1.0), rtol=tol)
        assert st.t == 1.0 and st.steps > 0
    with pytest.raises(ValueError, match="field returned shape"):
        attnflow.advance(lambda t, y: y[:1], x0, attnflow.IntegratorState(), 1.0,
                         attnflow.IntegratorOptions("euler", 0.1))


def test_flow_advance_clusters_and_is_thread_independent(tokens):
    o = attnflow.FlowOptions()
    o.beta = 1.0
    flow = attnflow.Flow(o, 20, 3)
    integ = attnflow.IntegratorOptions("rk4", 0.1)
    runs = []
    before = attnflow.num_threads()
    try:
        for threads in (1, 2):
            attnflow.set_num_threads(threads)
            fs = flow.initial_flow_state()
            runs.append(flow.advance(flow.initial_state(tokens), fs, 30.0, integ))
    finally:
        attnflow.set_num_threads(before)
    assert np.array_equal(runs[0], runs[1])
    final = flow.positions(runs[0])
    # d >= 3 and generic data: one cluster (docs/math.md section 5.3, known behaviour).
    assert attnflow.observe(final, None, attnflow.ObserveOptions(1.0, 1e-3)).clusters == 1


def test_ensemble_equals_individual_flows(tokens):
    o1, o2 = attnflow.FlowOptions(), attnflow.FlowOptions()
    o1.beta, o2.beta = 1.0, 4.0
    pts = [tokens, attnflow.sample_sphere(20, 3, attnflow.Rng(9))]
    integ = attnflow.IntegratorOptions("euler", 0.05)
    ens = attnflow.Ensemble([o1, o2], pts, integ)
    ens.advance(2.0)
    for s, o in enumerate((o1, o2)):
        f = attnflow.Flow(o, 20, 3)
        x = f.advance(f.initial_state(pts[s]), f.initial_flow_state(), 2.0, integ)
        assert np.array_equal(ens.positions(s), f.positions(x))
    stats = attnflow.summarize(ens.observe(attnflow.ObserveOptions()))
    assert [s.name for s in stats.stats] == attnflow.observable_names()


def test_ensemble_advance_observe_equals_advance_then_observe():
    """The batched path (10 systems of n = 16, residual steps) observed block by block right
    after the steps gives the states and observables of advance() then observe()."""
    opts = []
    for k in range(10):
        o = attnflow.FlowOptions()
        o.beta = 1.0 + 0.5 * k
        opts.append(o)
    pts = [attnflow.sample_sphere(16, 3, attnflow.Rng(k)) for k in range(10)]
    integ = attnflow.IntegratorOptions("residual", 0.1)
    a = attnflow.Ensemble(opts, pts, integ)
    b = attnflow.Ensemble(opts, pts, integ)
    a.batched = b.batched = True
    assert a.batchable()
    oo = attnflow.ObserveOptions()
    for t in (0.15, 0.3, 1.0):
        a.advance(t)
        ra = a.observe(oo)
        rb = b.advance_observe(t, oo)
        for s in range(10):
            assert np.array_equal(a.state(s), b.state(s))
            assert ra[s].log_energy == rb[s].log_energy and ra[s].clusters == rb[s].clusters
            assert ra[s].min_cosine == rb[s].min_cosine and ra[s].t == rb[s].t == t


def test_ensemble_advance_observe_each_equals_one_advance_observe_per_time():
    """advance_observe_each hands one list of observables per time, the same as one
    advance_observe per time (repeated times included); decreasing times are refused, naming
    the entry."""
    opts = []
    for k in range(6):
        o = attnflow.FlowOptions()
        o.beta = 0.5 + k
        opts.append(o)
    pts = [attnflow.sample_sphere(8, 3, attnflow.Rng(40 + k)) for k in range(6)]
    integ = attnflow.IntegratorOptions("residual", 0.1)
    a = attnflow.Ensemble(opts, pts, integ)
    b = attnflow.Ensemble(opts, pts, integ)
    a.batched = b.batched = True
    b.gpu_launch_observations = 2
    assert b.gpu_launch_observations == 2
    oo = attnflow.ObserveOptions()
    assert b.observations_per_pass(oo) == 65536 // 6  # the CPU's batched path: automatic
    b.cpu_pass_observations = 2  # times per pass over the blocks
    assert b.observations_per_pass(oo) == 2
    times = [0.1, 0.3, 0.3, 0.75, 1.0]
    each = b.advance_observe_each(times, oo, False)
    assert len(each) == len(times)
    for t, obs in zip(times, each):
        ref = a.advance_observe(t, oo, False)
        assert len(obs) == 6
        for s in range(6):
            assert obs[s].t == ref[s].t == t
            assert obs[s].log_energy == ref[s].log_energy and obs[s].min_cosine == ref[s].min_cosine
            assert obs[s].clustered_pairs == ref[s].clustered_pairs
    for s in range(6):
        assert np.array_equal(a.state(s), b.state(s))
    with pytest.raises(ValueError, match=r"times\[1\]"):
        b.advance_observe_each([2.0, 1.5], oo)
    b.cpu_pass_observations = -1
    with pytest.raises(ValueError, match="cpu_pass_observations"):
        b.advance_observe_each([2.0], oo)


def test_ensemble_reduced_span_from_python():
    """d > n on the batched path: coordinates in a basis of the points' span. Equal to the
    points path (reduce_span = False) to 1e-12; saved_state is [C | B] with C B the points and
    B orthonormal rows; restore_state continues bit for bit."""
    n, d = 5, 24
    opts = []
    for k in range(9):
        o = attnflow.FlowOptions()
        o.beta = 1.0 + 0.5 * k
        opts.append(o)
    pts = [attnflow.sample_sphere(n, d, attnflow.Rng(k)) for k in range(9)]
    integ = attnflow.IntegratorOptions("rk4", 0.1)
    a, b, c = (attnflow.Ensemble(opts, pts, integ) for _ in range(3))
    a.batched = b.batched = c.batched = True
    b.reduce_span = False
    assert a.reduces_span() and not b.reduces_span()
    a.advance(1.0)
    b.advance(1.0)
    c.advance(0.2)
    for s in range(9):
        x = a.state(s)
        assert np.linalg.norm(x - b.state(s)) <= 1e-12 * np.linalg.norm(b.state(s))
        saved = a.saved_state(s)
        assert saved.shape == (n, n + d)
        coords, basis = saved[:, :n], saved[:, n:]
        assert np.abs(coords @ basis - x).max() < 1e-14
        assert np.abs(basis @ basis.T - np.eye(n)).max() < 1e-14
        c.restore_state(s, saved, a.flow_state(s))
    a.advance(2.0)
    c.advance(2.0)
    for s in range(9):
        assert np.array_equal(a.state(s), c.state(s))


@pytest.mark.parametrize("call, text", [
    (lambda: attnflow.FieldKind("saa"), 'flow: kind = "saa", must be one of sa, usa'),
    (lambda: attnflow.Flow(_opts(beta=float("nan")), 4, 3), "flow: beta = nan, must be finite"),
    (lambda: attnflow.IntegratorOptions("rk4", -0.1).validate(), "integrate: dt = -0.1, must be > 0"),
    (lambda: attnflow.ObserveOptions(1.0, 2.0).validate(), "observe: delta = 2, must be in (0, 2)"),
])
def test_errors_are_value_errors_with_text(call, text):
    with pytest.raises(ValueError) as e:
        call()
    assert text in str(e.value)


def test_enum_fields_take_names_and_reject_others():
    o = attnflow.FlowOptions()
    o.kind = "usa"
    assert o.kind == attnflow.FieldKind.usa
    # An unknown name fails with the CLI's message, and the field keeps its value.
    with pytest.raises(ValueError, match=r'flow: kind = "saa", must be one of sa, usa, '):
        o.kind = "saa"
    assert o.kind == attnflow.FieldKind.usa


def _opts(**kw):
    o = attnflow.FlowOptions()
    for k, v in kw.items():
        setattr(o, k, v)
    return o


def test_run_experiment_equals_cli_run(run_cli, tmp_path):
    if "\n  run " not in run_cli("--help").stdout:
        pytest.fail("no run subcommand in this build")
    sets = ["measure.n=12", "measure.d=3", "integrate.t_end=1", "observe.every=0.5", "model.beta=2"]
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(run_cli("run", "--print-default-config").stdout)
    args = [a for s in sets for a in ("--set", s)]
    r = run_cli("run", cfg_path, *args, "--quiet", "--no-plots", "--out", tmp_path / "cli")
    assert r.returncode == 0, r.stderr
    cfg = attnflow.Config.from_file(str(cfg_path))
    for s in sets:
        cfg.set(s)
    rc = attnflow.parse_run_config(cfg)
    opts = attnflow.RunOptions()
    opts.out_dir, opts.progress = str(tmp_path / "py"), False
    rows = []
    opts.on_observation = lambda obs: rows.append(obs[0].t)
    res = attnflow.run_experiment(rc, cfg.resolved(), opts)
    assert res.finished and rows == [0.0, 0.5, 1.0]
    assert np.array_equal(np.load(tmp_path / "py" / "final.npy"), np.load(tmp_path / "cli" / "final.npy"))
    assert (tmp_path / "py" / "observables.csv").read_text() == (tmp_path / "cli" / "observables.csv").read_text()
