"""The package's submodules (attnflow.measure, .attention, .ot, .flow, .theory, .icl, .model,
.io, .run): real module files with an explicit __all__ whose entries exist; every name of the
extension is in exactly one of them; the flat namespace attnflow.<name> re-exports exactly
those (plus a short list of package-only helpers)."""
import importlib
import inspect
import types
from pathlib import Path

import numpy as np
import pytest

import attnflow
from attnflow import _attnflow as ext

SUBMODULES = ["measure", "attention", "ot", "flow", "theory", "icl", "model", "io", "run"]
# Public names of the package that are in no submodule's __all__.
TOP_LEVEL_ONLY = {"set_num_threads", "num_threads", "set_device", "current_device", "cuda_compiled",
                  "cuda_available", "cuda_device_description"}
# Submodules of the package that are not groups of the extension (imported on request).
OPTIONAL_SUBMODULES = {"plot", "view", "animate", "torch"}


def submodule(name):
    return importlib.import_module(f"attnflow.{name}")


@pytest.mark.parametrize("name", SUBMODULES)
def test_each_submodule_is_a_file_with_an_explicit_all(name):
    mod = submodule(name)
    assert isinstance(mod, types.ModuleType)
    assert Path(mod.__file__).name == f"{name}.py"
    source = Path(mod.__file__).read_text()
    assert "__all__ = [" in source  # written out, not computed
    assert mod.__all__ and len(set(mod.__all__)) == len(mod.__all__)
    for entry in mod.__all__:
        assert hasattr(mod, entry), f"attnflow.{name}.__all__ names {entry}, which it lacks"
        assert getattr(mod, entry) is getattr(ext, entry), f"attnflow.{name}.{entry}"
    assert mod.__doc__ and mod.__doc__.startswith(f"attnflow.{name}: ")


def owners():
    out = {}
    for name in SUBMODULES:
        for entry in submodule(name).__all__:
            out.setdefault(entry, []).append(name)
    return out


def test_every_extension_name_is_in_exactly_one_submodule():
    own = owners()
    public = {n for n in dir(ext) if not n.startswith("_")}
    missing = sorted(public - set(own) - TOP_LEVEL_ONLY)
    assert not missing, f"in no submodule's __all__ (add them to python/attnflow/<group>.py): {missing}"
    twice = {n: m for n, m in own.items() if len(m) > 1}
    assert not twice, twice
    assert not (TOP_LEVEL_ONLY & set(own))


def test_flat_namespace_reexports_exactly_the_submodules():
    own = owners()
    flat = {n for n in dir(attnflow) if not n.startswith("_")}
    flat -= OPTIONAL_SUBMODULES  # present once imported (attnflow.torch, attnflow.plot, ...)
    extra = sorted(flat - set(own) - TOP_LEVEL_ONLY - set(SUBMODULES))
    assert not extra, f"flat names in no submodule: {extra}"
    missing = sorted(set(own) - flat)
    assert not missing, f"submodule names not re-exported flat: {missing}"
    for name, (mod,) in own.items():
        flat_obj = getattr(attnflow, name)
        if name in SUBMODULES:  # attention: the flat name is the submodule, callable as it
            assert flat_obj is submodule(name) and callable(flat_obj)
            continue
        assert flat_obj is getattr(submodule(mod), name), name
    for name in TOP_LEVEL_ONLY:
        assert getattr(attnflow, name) is getattr(ext, name)
    assert attnflow.__version__ == ext.__version__
    assert set(attnflow.__all__) == set(own) | TOP_LEVEL_ONLY


def test_attention_is_a_module_and_the_function():
    x = np.random.default_rng(1).standard_normal((5, 2))
    assert inspect.ismodule(attnflow.attention)
    np.testing.assert_array_equal(attnflow.attention(x, beta=0.5),
                                  attnflow.attention.attention(x, beta=0.5))
    from attnflow.attention import AttentionHead, attention
    assert attention is ext.attention and AttentionHead is ext.AttentionHead
    import attnflow.attention as att
    assert att is attnflow.attention
    ns = {}
    exec("from attnflow import *", ns)
    assert ns["attention"] is attnflow.attention and ns["sinkhorn"] is ext.sinkhorn
    assert "io" not in ns  # a star-import does not shadow the standard io


def test_submodules_group_the_library_modules():
    assert attnflow.ot.sinkhorn is ext.sinkhorn and attnflow.ot.emd2 is ext.emd2
    assert attnflow.flow.Flow is ext.Flow and attnflow.measure.Measure is ext.Measure
    assert attnflow.icl.concentration is ext.concentration
    assert attnflow.model.fit_model is ext.fit_model
    assert attnflow.io.read_npy_matrix is ext.read_npy_matrix
    assert attnflow.run.run_experiment is ext.run_experiment
    assert attnflow.theory.predict_clusters is ext.predict_clusters
