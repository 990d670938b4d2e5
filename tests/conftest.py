"""Shared fixtures. Every test session builds into its own cache directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """A cache directory for the whole session (the user's cache is never touched)."""
    path = tmp_path_factory.mktemp("actgen-cache")
    old = os.environ.get("ACTGEN_CACHE_DIR")
    os.environ["ACTGEN_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("ACTGEN_CACHE_DIR", None)
    else:
        os.environ["ACTGEN_CACHE_DIR"] = old


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache directory for one test; forgets activations loaded earlier."""
    from actgen import runtime

    cache = tmp_path / "cache"
    monkeypatch.setenv("ACTGEN_CACHE_DIR", str(cache))
    monkeypatch.setattr(runtime, "_LOADED", {})
    return cache / "v1"


def run_cli(*args, cwd=None, env=None, input=None):
    """Run the actgen CLI in a subprocess, as a user would, and return the CompletedProcess.

    It runs this checkout's actgen (``python -m actgen.cli`` with the checkout first on the
    path), not whatever ``actgen`` console script is installed; tests/test_install.py tests the
    console script of the installed wheel."""
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "actgen.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, input=input, timeout=600)


def have_compiler() -> bool:
    from actgen.build import _compiler_command

    return _compiler_command() is not None


requires_cc = pytest.mark.skipif(not have_compiler(), reason="no C compiler on this machine")
