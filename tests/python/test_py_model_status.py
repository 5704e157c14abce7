"""Sinkhorn convergence of model layers reaches the Python objects: apply_layer, evaluate and
transport with with_status=True, and FitResult.sinkhorn (a layer with max_iterations 1 on a
tolerance run reports not converged; a fixed number of iterations defines the layer)."""
import numpy as np

import attnflow


def sinkhorn_model(iterations, max_iterations, rng_seed=3):
    spec = attnflow.ModelSpec()
    spec.dim = 2
    spec.depth = 2
    spec.heads = 2
    spec.normalization = attnflow.Normalization.sinkhorn
    opt = attnflow.SinkhornNormalizationOptions()
    opt.iterations = iterations
    opt.max_iterations = max_iterations
    spec.sinkhorn = opt
    return attnflow.random_model(spec, attnflow.Rng(rng_seed))


def measure():
    rng = np.random.default_rng(4)
    return attnflow.Measure(rng.standard_normal((9, 2)), rng.uniform(0.5, 1.5, 9))


def test_layer_with_one_iteration_reports_not_converged():
    model = sinkhorn_model(0, 1)
    mu = measure()
    out, stats = attnflow.apply_layer(model.layers[0], mu, mu.points, with_status=True)
    assert out.shape == (9, 2)
    assert not stats.converged
    assert stats.solves == 2 and stats.not_converged == 2
    assert stats.max_marginal_error > 1e-9
    assert "not converged after 1 iterations" in stats.message
    plain = attnflow.apply_layer(model.layers[0], mu, mu.points)
    np.testing.assert_array_equal(plain, out)
    _, ev = attnflow.evaluate(model, mu, mu.points, with_status=True)
    _, tr = attnflow.transport(model, mu, with_status=True)
    assert ev.not_converged == tr.not_converged == 4
    pf, ps = attnflow.push_forward(model, mu, with_status=True)
    assert pf.points.shape == (9, 2) and ps.not_converged == 4


def test_defaults_converge_and_fixed_iterations_are_exact():
    mu = measure()
    _, tol = attnflow.evaluate(sinkhorn_model(0, 10000), mu, mu.points, with_status=True)
    assert tol.converged and tol.solves == 4 and tol.max_marginal_error <= 1e-9
    assert tol.message == ""
    _, fixed = attnflow.evaluate(sinkhorn_model(3, 10000), mu, mu.points, with_status=True)
    assert fixed.converged and fixed.max_iterations == 3


def test_fit_result_carries_sinkhorn_status():
    t = attnflow.TaskOptions()
    t.n_min, t.n_max, t.train_size, t.test_size = 6, 8, 8, 4
    data = attnflow.make_task(t)
    fo = attnflow.FitOptions()
    fo.steps, fo.batch_size, fo.eval_every = 2, 2, 2
    model = sinkhorn_model(0, 1)
    res = attnflow.fit_model(model, data.train, data.test, fo)
    assert not res.sinkhorn.converged
    assert res.sinkhorn.not_converged == res.sinkhorn.solves > 0


def test_task_target_solve_is_an_option_and_a_miss_is_an_error():
    """The sinkhorn task's target plan runs to target_sinkhorn.tol (1e-11 by default); a cap it
    cannot meet is an error naming the solve, never a silently loose target."""
    t = attnflow.TaskOptions()
    t.kind = attnflow.TaskKind.sinkhorn
    t.dim = 2
    assert t.target_sinkhorn.tol == 1e-11 and t.target_sinkhorn.max_iterations == 100000
    mu = measure()
    tight = attnflow.task_target(t, mu)
    opt = t.target_sinkhorn
    opt.max_iterations = 2
    t.target_sinkhorn = opt
    try:
        attnflow.task_target(t, mu)
    except RuntimeError as e:
        assert "task sinkhorn: the target plan: not converged after 2 iterations" in str(e)
    else:
        raise AssertionError("a target solve that misses its tol must raise")
    opt.max_iterations, opt.tol = 100000, 1e-6
    t.target_sinkhorn = opt
    loose = attnflow.task_target(t, mu)
    assert np.abs(loose - tight).max() < 1e-4
