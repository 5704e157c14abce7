"""One head class (include/attnflow/attention/head.hpp) in Python: Head is what attention
(AttentionHead adds a normalization), model layers (AttentionLayer.heads) and flows
(FlowOptions.heads; FlowHead is the same class) take; AttentionLayer keeps q, k, v, w as
per-head lists; every user rejects a bad head with the one check's message."""
import re

import numpy as np
import pytest

import attnflow


def small_model(seed=5):
    spec = attnflow.ModelSpec()
    spec.dim, spec.depth, spec.heads, spec.head_dim = 2, 1, 2, 3
    return attnflow.random_model(spec, attnflow.Rng(seed))


def test_flowhead_and_attentionhead_are_heads():
    assert attnflow.FlowHead is attnflow.Head
    assert issubclass(attnflow.AttentionHead, attnflow.Head)
    h = attnflow.FlowHead(np.eye(2), np.eye(2), np.eye(2))  # the old three-matrix form
    assert h.w.shape == (0, 0) and not h.is_identity() and attnflow.Head().is_identity()
    a = attnflow.AttentionHead(q=np.eye(2), normalization="none")
    assert a.normalization == attnflow.Normalization.none
    assert set(a.to_dict()) == {"q", "k", "v", "w", "normalization"}
    assert all(isinstance(x, attnflow.Head) for x in attnflow.make_heads(2, 3, "gaussian", 1))


def test_attention_layer_q_k_v_w_are_views_of_heads():
    model = small_model()
    layer = model.layers[0]
    assert layer.head_count() == 2 and len(layer.heads) == 2
    for name in "qkvw":
        got = getattr(layer, name)
        assert len(got) == 2
        for h in range(2):
            np.testing.assert_array_equal(got[h], getattr(layer.heads[h], name))
    # Assigning the lists (the layout before heads) builds the same layer, byte for byte.
    rebuilt = attnflow.AttentionLayer()
    rebuilt.beta, rebuilt.step = layer.beta, layer.step
    rebuilt.q, rebuilt.k, rebuilt.v, rebuilt.w = layer.q, layer.k, layer.v, layer.w
    copy = attnflow.Model()
    copy.dim, copy.layers = model.dim, [rebuilt]
    assert copy.to_bytes() == model.to_bytes()
    # And assigning heads does too.
    rebuilt.heads = layer.heads
    copy.layers = [rebuilt]
    assert copy.to_bytes() == model.to_bytes()


def test_each_user_rejects_a_bad_head_with_the_one_message():
    x = np.random.default_rng(1).standard_normal((5, 3))
    bad_k = "heads[1].k has shape (4, 3), must be (2, 3) (heads[1].k has 4 rows, must be d_k = 2"
    heads = [attnflow.AttentionHead(), attnflow.AttentionHead(np.ones((2, 3)), np.ones((4, 3)))]
    with pytest.raises(ValueError, match="^attention: " + re.escape(bad_k)):
        attnflow.attention(x, heads=heads)
    o = attnflow.FlowOptions()
    o.heads = [attnflow.Head(), attnflow.Head(np.ones((2, 3)), np.ones((4, 3)))]
    with pytest.raises(ValueError) as e:
        attnflow.Flow(o, 5, 3)
    assert str(e.value).startswith("flow: " + bad_k)
    model = small_model()
    layer = model.layers[0]
    layer.k = [layer.k[0], np.ones((4, 2))]
    model.layers = [layer]
    with pytest.raises(ValueError) as e:
        model.validate()
    assert str(e.value).startswith("model: layers[0] (attention): heads[1].k has shape (4, 2), "
                                   "must be (3, 2) (heads[1].k has 4 rows, must be d_k = 3")


def test_flow_head_output_map_equals_the_folded_value_map():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((12, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q, k, v, w = (rng.standard_normal(s) for s in [(3, 3), (3, 3), (2, 3), (3, 2)])
    fields = []
    for head in (attnflow.Head(q, k, v, w), attnflow.Head(q, k, w @ v)):
        o = attnflow.FlowOptions()
        o.beta, o.heads = 1.5, [head]
        f = attnflow.Flow(o, 12, 3)
        fields.append(f.field(0.0, f.initial_state(x)))
    np.testing.assert_allclose(fields[0], fields[1], rtol=1e-12, atol=1e-12)
