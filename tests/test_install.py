"""A non-editable install (a wheel) works from another directory: templates ship inside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=600, **kw)


@pytest.mark.slow          # builds and installs a wheel into a fresh venv
def test_wheel_install_builds_from_another_directory(tmp_path):
    # from a copy of the checkout: setuptools builds in the source tree (build/, *.egg-info),
    # which must stay as the developer left it
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "*.so", "*.o"))
    wheels = tmp_path / "wheels"
    built = run(sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                "-w", str(wheels), "-q")
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("actgen-*.whl")
    import zipfile
    names = zipfile.ZipFile(wheel).namelist()
    assert "actgen/templates/c/kernels.jinja" in names and "actgen/library/swish.toml" in names
    assert "actgen/csrc/actgen_math.h" in names and "actgen/csrc/actgen_fastcall.c" in names
    assert not any(n.endswith((".so", ".o")) for n in names)

    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", "--system-site-packages", str(venv)).returncode == 0
    py = venv / "bin" / "python"
    # --ignore-installed: the venv sees the system site-packages, where CI has already installed
    # actgen itself; without it pip says "already satisfied" and installs nothing into the venv
    installed = run(str(py), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q",
                    str(wheel))
    assert installed.returncode == 0, installed.stderr

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "ACTGEN_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": ""}
    where = run(str(py), "-c", "import actgen; print(actgen.__file__)", cwd=work, env=env)
    assert str(venv) in where.stdout, where.stdout + where.stderr
    new = run(str(venv / "bin" / "actgen"), "new", "demo", cwd=work, env=env)
    (work / "demo.toml").write_text(new.stdout)
    build = run(str(venv / "bin" / "actgen"), "build", "demo.toml", "gelu", cwd=work, env=env)
    assert build.returncode == 0, build.stderr
    assert "demo" in build.stdout and "gelu" in build.stdout
    load = run(str(py), "-c", "import actgen; print(actgen.load('demo', spec='demo.toml')([0.0, 1.0]))",
               cwd=work, env=env)
    assert load.returncode == 0 and "[0." in load.stdout, load.stderr
