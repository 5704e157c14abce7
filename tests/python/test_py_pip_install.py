"""`pip install` of a clean copy of the source tree: a fresh venv with
--system-site-packages (NumPy, pytest, torch from the system), `pip install
--no-build-isolation <copy>` (offline: setuptools drives the CMake build of the _attnflow
target only), then the installed package is imported from another directory by the venv's
interpreter and used: __version__, attention, the POT-shaped calls, attnflow.torch, and the
Python tests of the package run against the installed copy. Also: a clear ImportError when
NumPy is missing. CTest runs this file as its own test (python_pip_install); the compile
goes through ccache when it is installed (the project's default), so the objects of the main
build are reused."""
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

SOURCE = Path(os.environ.get("ATTNFLOW_SOURCE_DIR", Path(__file__).resolve().parents[2]))
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's interpreter with python3-numpy / -setuptools


def tracked_files(src):
    """The files of the source tree as git tracks them (or, outside git, every file but build
    outputs): what a clean clone holds, with the working tree's content."""
    r = subprocess.run(["git", "-C", str(src), "ls-files", "-z"], capture_output=True)
    if r.returncode == 0 and r.stdout:
        return [p for p in r.stdout.decode().split("\0") if p and (src / p).is_file()]
    skip = re.compile(r"^(build[^/]*|\.git|runs|sweeps)(/|$)|__pycache__")
    return [str(p.relative_to(src)) for p in src.rglob("*")
            if p.is_file() and not skip.search(str(p.relative_to(src)))]


def clean_copy(src, dst):
    for rel in tracked_files(src):
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dst / rel)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, copy dir, pip output) after pip install of a clean copy."""
    root = tmp_path_factory.mktemp("pip")
    src = root / "attnflow-src"
    clean_copy(SOURCE, src)
    assert (src / "pyproject.toml").exists() and (src / "setup.py").exists()
    assert not (src / "build").exists()
    env_dir = root / "venv"
    r = subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", str(env_dir)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    py = env_dir / "bin" / "python"
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # nothing from the build tree
    env["PIP_NO_INDEX"] = "1"  # offline
    env["ATTNFLOW_BUILD_JOBS"] = env.get("ATTNFLOW_BUILD_JOBS", "2")
    # ccache, when installed, is the build's own default (CMakeLists.txt, ATTNFLOW_CCACHE): the
    # copy's unity batches and paths read the same as the build tree's, so the library's objects
    # come from the cache the main build filled. Nothing here chooses the launcher.
    # Dependencies (NumPy) are checked and found in the system site-packages: nothing downloads.
    r = subprocess.run([str(py), "-m", "pip", "install", "--no-build-isolation", str(src)],
                       capture_output=True, text=True, env=env, timeout=1500, cwd=root)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return py, src, elsewhere, env


def run_py(py, code, cwd, env):
    return subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def test_installed_package_imports_and_computes(installed):
    py, src, elsewhere, env = installed
    code = r"""
import sys, numpy as np, attnflow
assert "site-packages" in attnflow.__file__ and sys.prefix in attnflow.__file__, attnflow.__file__
print(attnflow.__version__)
x = np.random.default_rng(0).standard_normal((20, 3))
out = attnflow.attention(x, beta=2.0)
assert out.shape == (20, 3)
M = ((x[:10, None, :] - x[None, 10:, :]) ** 2).sum(-1)
a = np.full(10, 0.1)
r = attnflow.sinkhorn(a, a, M, 0.5)
assert r.converged
print(repr(r)[:40])
print(attnflow.emd2(a, a, M))
import attnflow.torch, torch
xt = torch.tensor(x, requires_grad=True)
attnflow.torch.attention(xt).sum().backward()
assert xt.grad.shape == (20, 3)
"""
    r = run_py(py, code, elsewhere, env)
    assert r.returncode == 0, r.stderr
    version = r.stdout.splitlines()[0]
    cmake = (src / "CMakeLists.txt").read_text()
    assert version == re.search(r"project\(attnflow VERSION ([0-9.]+)", cmake).group(1)
    assert r.stdout.splitlines()[1].startswith("SinkhornResult(")
    # pip knows the distribution and its version.
    show = subprocess.run([str(py), "-m", "pip", "show", "attnflow"], capture_output=True,
                          text=True, cwd=elsewhere, env=env)
    assert show.returncode == 0 and f"Version: {version}" in show.stdout


def test_package_tests_pass_against_the_installed_copy(installed):
    # The NumPy-API and torch tests of this suite, run by the venv's interpreter from another
    # directory with nothing on PYTHONPATH: they import the installed attnflow.
    py, src, elsewhere, env = installed
    tests = [str(src / "tests" / "python" / f) for f in ("test_py_ecosystem.py", "test_py_torch.py")]
    r = subprocess.run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                       capture_output=True, text=True, cwd=elsewhere, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout


def test_wheel_builds_offline(installed):
    # `python3 -m build --wheel` (no isolation: offline) gives a wheel with the extension,
    # the package and its stubs; the CMake build directory of the install above is reused.
    import zipfile
    py, src, elsewhere, env = installed
    out = elsewhere.parent / "dist"
    r = subprocess.run([str(py), "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
                        str(src)], capture_output=True, text=True, env=env, timeout=900,
                       cwd=elsewhere)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    wheels = list(out.glob("attnflow-*.whl"))
    assert len(wheels) == 1
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    for name in ("attnflow/__init__.py", "attnflow/torch.py", "attnflow/plot.py",
                 "attnflow/_attnflow.pyi", "attnflow/py.typed", "attnflow/_build_info.py"):
        assert name in names, name
    assert any(n.startswith("attnflow/_attnflow.cpython-") and n.endswith(".so") for n in names)


def test_missing_numpy_is_a_clear_import_error(installed):
    py, _, elsewhere, env = installed
    code = ("import sys; sys.modules['numpy'] = None\n"
            "try:\n    import attnflow\nexcept ImportError as e:\n    print(e)\n")
    r = run_py(py, code, elsewhere, env)
    assert r.returncode == 0, r.stderr
    assert "attnflow needs NumPy" in r.stdout and "pip install numpy" in r.stdout
