"""Hostile input through the Python package: the interpreter never dies, errors
are ValueError with the library's message naming the argument."""
import numpy as np
import pytest

import attnflow


# C1: this killed the interpreter (a segfault in the config accessor).
@pytest.mark.parametrize("text,needle", [
    ("measure = 3\n", "config: measure = 3, must be a table (the section [measure], which holds 'n')"),
    ("model = []\n", "model = [], must be a table"),
    ('integrate = "x"\n', "integrate = x, must be a table"),
])
def test_parse_run_config_section_holding_a_value(text, needle):
    with pytest.raises(ValueError) as e:
        attnflow.parse_run_config(attnflow.Config.parse(text))
    assert needle in str(e.value)


# C2: icl_train(prompt_length=10**12) aborted inside an OpenMP region.
def test_icl_train_huge_prompt_is_refused_before_allocating():
    data = attnflow.IclData(attnflow.toeplitz_covariance(3, 0.5))
    o = attnflow.IclTrainOptions()
    o.prompt_length = 10**12
    o.steps = 1
    with pytest.raises(ValueError) as e:
        attnflow.icl_train(data, attnflow.IclParams(np.eye(3), 1.0), o)
    assert "icl: prompt_length = 1000000000000 needs about" in str(e.value)
    assert "ATTNFLOW_NO_SIZE_LIMITS=1" in str(e.value)


# H3: the override is explicit and documented.
def test_size_limit_override(monkeypatch):
    text = "[integrate]\nt_end = 100.0\n[observe]\nevery = 1e-5\n[output]\nsnapshots = false\n"
    with pytest.raises(ValueError) as e:
        attnflow.parse_run_config(attnflow.Config.parse(text, "big.toml"))
    assert ("big.toml: integrate.t_end / observe.every = 100 / 1e-05 gives 1e+07 observations, "
            "must be <= 1e+06") in str(e.value)
    monkeypatch.setenv("ATTNFLOW_NO_SIZE_LIMITS", "1")
    assert attnflow.parse_run_config(attnflow.Config.parse(text)).every == 1e-5


# S3: an empty q or heads=[] is not the identity.
@pytest.mark.parametrize("shape", [(0, 3), (20, 0), (0, 0)])
def test_empty_q_is_rejected(shape):
    x = np.random.default_rng(0).standard_normal((5, 3))
    with pytest.raises(ValueError) as e:
        attnflow.attention(x, q=np.zeros(shape))
    assert f"attention: q has shape ({shape[0]}, {shape[1]}), must be (d_k, d) with d_k, d >= 1" in str(e.value)


def test_empty_heads_list_is_rejected():
    x = np.random.default_rng(0).standard_normal((5, 3))
    with pytest.raises(ValueError, match=r"attention: heads = \[\], must be a non-empty list"):
        attnflow.attention(x, heads=[])


# S4: complex input is refused, not silently made real.
def test_complex_input_is_rejected():
    x = np.random.default_rng(0).standard_normal((5, 3)) * (1 + 1j)
    with pytest.raises(ValueError, match=r"attention: x has complex dtype complex128, must be real"):
        attnflow.attention(x)
    with pytest.raises(ValueError, match=r"Measure\(\): points has complex dtype"):
        attnflow.Measure(x)
    with pytest.raises(ValueError, match=r"y has complex dtype"):
        attnflow.attention(x.real, y=x)
    # Real input is untouched by the check (same result as before).
    np.testing.assert_array_equal(attnflow.attention(x.real), attnflow._attnflow.attention(x.real))


# M1: overflow is a ValueError naming the real normalization.
@pytest.mark.parametrize("normalization", ["softmax", "sinkhorn"])
def test_overflow_is_value_error_with_real_normalization(normalization):
    x = np.array([[1.0, 2.0], [-3.0, 0.5], [2.0, -1.0]])
    with pytest.raises(ValueError) as e:
        attnflow.attention(x, beta=1e308, normalization=normalization)
    assert f"for normalization '{normalization}'" in str(e.value)


# M3: weights whose sum overflows.
def test_weights_summing_to_inf_are_normalized():
    w = attnflow.normalized_weights(np.full(4, 1e308), 4)
    np.testing.assert_array_equal(w, np.full(4, 0.25))


# M4: thread counts.
@pytest.mark.parametrize("threads", [0, -3, 5000])
def test_set_num_threads_rejects_bad_counts(threads):
    before = attnflow.num_threads()
    with pytest.raises(ValueError, match=rf"set_num_threads: threads = {threads}, must be in \[1, 1024\]"):
        attnflow.set_num_threads(threads)
    assert attnflow.num_threads() == before
