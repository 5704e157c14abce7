"""Build of the attnflow Python package by the project's CMake build (pyproject.toml).

`pip install .` (or `python3 -m build --wheel`) runs CMake on this source tree for the
interpreter doing the install, builds only the `_attnflow` extension target (and the static
libraries it links), and packages it with the pure-Python files of python/attnflow.

Environment knobs (all optional):
  ATTNFLOW_CMAKE_ARGS   extra CMake arguments, split on spaces (e.g. "-DATTNFLOW_NATIVE=OFF"
                        for a wheel that runs on other x86-64 CPUs)
  ATTNFLOW_BUILD_JOBS   parallel build jobs (default: the CPU count)
  CMAKE_CXX_COMPILER_LAUNCHER  e.g. ccache (read by CMake itself)
"""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def project_version():
    """The version of project(attnflow VERSION x.y.z) in CMakeLists.txt (one source of truth)."""
    text = (ROOT / "CMakeLists.txt").read_text()
    m = re.search(r"project\(\s*attnflow\s+VERSION\s+([0-9][0-9.]*)", text)
    if not m:
        raise RuntimeError("setup.py: no 'project(attnflow VERSION x.y.z)' in CMakeLists.txt")
    return m.group(1)


class CMakeExtension(Extension):
    def __init__(self, name, target):
        super().__init__(name, sources=[])
        self.target = target


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        out = Path(self.get_ext_fullpath(ext.name)).resolve()
        # One level below the source root, like the project's build/, so that compiler caches
        # (ccache with base_dir) see the same relative paths as a `make` build.
        build = ROOT / f"build-cp{sys.version_info[0]}{sys.version_info[1]}"
        build.mkdir(parents=True, exist_ok=True)
        args = [
            f"-DATTNFLOW_PYTHON={sys.executable}",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DCMAKE_BUILD_TYPE=Release",
            "-DATTNFLOW_BUILD_TESTS=OFF",
            "-DATTNFLOW_BUILD_BENCH=OFF",
            "-DATTNFLOW_BUILD_PYTHON=ON",
        ]
        try:  # the pybind11 Python package (isolated builds) ships its CMake config
            import pybind11

            args.append(f"-Dpybind11_DIR={pybind11.get_cmake_dir()}")
        except ImportError:
            pass  # the system's (Debian: pybind11-dev)
        args += shlex.split(os.environ.get("ATTNFLOW_CMAKE_ARGS", ""))
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), *args], check=True)
        jobs = os.environ.get("ATTNFLOW_BUILD_JOBS", str(os.cpu_count() or 1))
        subprocess.run(["cmake", "--build", str(build), "--target", ext.target, "-j", jobs],
                       check=True)
        built = list((build / "python" / "attnflow").glob("_attnflow*.so"))
        if len(built) != 1:
            raise RuntimeError(f"setup.py: expected one _attnflow*.so in {build}/python/attnflow, "
                               f"found {[p.name for p in built]}")
        out.parent.mkdir(parents=True, exist_ok=True)
        self.copy_file(str(built[0]), str(out))
        info = build / "python" / "attnflow" / "_build_info.py"
        if info.exists():
            self.copy_file(str(info), str(out.parent / info.name))


setup(
    version=project_version(),
    ext_modules=[CMakeExtension("attnflow._attnflow", target="_attnflow")],
    cmdclass={"build_ext": CMakeBuild},
    # setuptools' own build tree outside build/ (the CMake build directory of `make`).
    options={"build": {"build_base": "build-pip"}},
    zip_safe=False,
)
