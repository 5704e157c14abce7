"""`make install` (cmake --install) into a temporary prefix gives: headers and static libraries
that a tiny consumer finds with find_package(attnflow) and links as attnflow::core, the CLI,
and the Python package importable from <prefix>/lib/python3/dist-packages."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CONSUMER_CMAKE = """cmake_minimum_required(VERSION 3.25)
project(consumer CXX)
set(CMAKE_CXX_STANDARD 20)
find_package(attnflow 0.1 REQUIRED)
add_executable(consumer main.cpp)
target_link_libraries(consumer PRIVATE attnflow::core)
"""
# long_context.hpp needs only Eigen/Core: the cheapest header to compile against.
CONSUMER_MAIN = """#include <cstdio>
#include "attnflow/theory/long_context.hpp"
int main() { std::printf("%.17g\\n", attnflow::long_context_cosine(1000.0, 0.5, 1.5)); }
"""


def build_dir():
    cli = os.environ.get("ATTNFLOW_CLI")
    if not cli or not (Path(cli).parent / "cmake_install.cmake").exists():
        pytest.fail("needs ATTNFLOW_CLI inside a CMake build directory")
    return Path(cli).parent


def test_install_and_find_package(tmp_path):
    build, prefix = build_dir(), tmp_path / "prefix"
    r = subprocess.run(["cmake", "--install", str(build), "--prefix", str(prefix)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    assert (prefix / "include" / "attnflow" / "attention" / "attention.hpp").exists()
    assert (prefix / "include" / "attnflow" / "attnflow.hpp").exists()  # the umbrella header
    assert (prefix / "lib" / "cmake" / "attnflow" / "attnflowConfig.cmake").exists()
    # The CLI runs from the prefix.
    cli = prefix / "bin" / "attnflow"
    assert subprocess.run([str(cli), "--help"], capture_output=True).returncode == 0
    # The Python package imports from the prefix's dist-packages (not from the build tree).
    site = prefix / "lib" / "python3" / "dist-packages"
    code = ("import attnflow, attnflow.plot, sys; assert attnflow.__file__.startswith(sys.argv[1]); "
            "print(repr(attnflow.long_context_cosine(1000.0, 0.5, 1.5)))")
    env = dict(os.environ, PYTHONPATH=str(site))
    r = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    py_value = float(r.stdout)
    # A consumer project: find_package(attnflow) + attnflow::core.
    src = tmp_path / "consumer"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(CONSUMER_CMAKE)
    (src / "main.cpp").write_text(CONSUMER_MAIN)
    r = subprocess.run(["cmake", "-S", str(src), "-B", str(src / "build"), "-DCMAKE_BUILD_TYPE=Release",
                        f"-DCMAKE_PREFIX_PATH={prefix}"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    r = subprocess.run(["cmake", "--build", str(src / "build")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    out = subprocess.run([str(src / "build" / "consumer")], capture_output=True, text=True)
    assert out.returncode == 0 and float(out.stdout) == py_value
