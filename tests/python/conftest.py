"""Shared pytest fixtures: the CLI binary (env ATTNFLOW_CLI, set by CTest) and a runner."""
import os
import signal
import subprocess
import time
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


def kill_after_first_checkpoint(argv, out_dir):
    """Starts the CLI command argv (its --out is out_dir), SIGKILLs it shortly after its first
    checkpoint.bin appears (or lets it finish if it is faster), and returns its exit status."""
    p = subprocess.Popen([str(a) for a in argv], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (out_dir / "checkpoint.bin").exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    if p.poll() is None:
        time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
    return p.wait()
