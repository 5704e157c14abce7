"""Shared pytest fixtures: the CLI binary (env ATTNFLOW_CLI, set by CTest) and a runner."""
import os
import subprocess
from pathlib import Path

import pytest

SOURCE_DIR = Path(os.environ.get("ATTNFLOW_SOURCE_DIR", Path(__file__).resolve().parents[2]))


def _cli_path():
    env = os.environ.get("ATTNFLOW_CLI")
    if env:
        return env
    return str(SOURCE_DIR / "build" / "attnflow")


@pytest.fixture(scope="session")
def cli():
    path = _cli_path()
    if not os.path.exists(path):
        pytest.fail(f"attnflow CLI not found at {path}: build first (make) or set ATTNFLOW_CLI")
    return path


@pytest.fixture
def run_cli(cli):
    """Runs the CLI with arguments; returns CompletedProcess (text mode)."""

    def run(*args, check=False, timeout=600, env=None):
        e = dict(os.environ)
        if env:
            e.update(env)
        return subprocess.run([cli, *map(str, args)], capture_output=True, text=True,
                              timeout=timeout, check=check, env=e)

    return run
