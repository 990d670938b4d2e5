"""Crashes and tracebacks found by probing the runtime (issue 30, items 4-7): each becomes one
clear error or works. The cache's own damage is in tests/test_cache_integrity.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import actgen
from actgen import loading, threads
from actgen.build import FORMAT
from actgen.errors import CacheFullError, ConfigurationError, KernelArgumentError

from conftest import requires_cc, run_cli

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ["c", "numpy"]
TINY = '[tiny]\nexpr = "x * tanh(a * x)"\nparams = { a = 1.5 }\n'


def python(code: str, *args: str, **env) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with this checkout's actgen and ``env`` added."""
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=full,
                          timeout=600)


# ---- thread counts (item 4) -------------------------------------------------------------

@pytest.mark.parametrize("bad", [0, -1, 65536, 70000, threads.MAX_THREADS + 1, 1.7, "2", True, None])
def test_a_thread_count_out_of_range_is_refused_and_nothing_changes(bad):
    act = actgen.load("relu")
    before = actgen.get_num_threads()
    with pytest.raises(ConfigurationError, match="set_num_threads") as info:
        actgen.set_num_threads(bad)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)                   # as before: a ValueError
    assert actgen.get_num_threads() == before
    x = np.linspace(-1.0, 1.0, 1 << 16)                          # large enough to go parallel
    assert np.array_equal(act(x), np.maximum(x, 0))


def test_a_thread_count_within_the_range_is_taken():
    before = actgen.get_num_threads()
    try:
        actgen.set_num_threads(np.int64(3))
        assert actgen.get_num_threads() == 3
    finally:
        actgen.set_num_threads(before)


@pytest.mark.parametrize("variable", ["ACTGEN_NUM_THREADS", "OMP_NUM_THREADS"])
@pytest.mark.parametrize("value", ["100000", "0", "many"])
def test_a_thread_count_from_the_environment_out_of_range_is_one_clear_error(variable, value):
    code = ("import actgen\n"
            "from actgen.errors import ConfigurationError\n"
            "try:\n"
            "    actgen.load('relu')\n"
            "except ConfigurationError as exc:\n"
            "    print(exc)\n"
            "    raise SystemExit(3)\n")
    env = {"ACTGEN_NUM_THREADS": "", "OMP_NUM_THREADS": "", variable: value}
    proc = python(code, **env)
    assert proc.returncode == 3, proc.stderr
    assert variable in proc.stdout and ("1 to 1024" in proc.stdout or "not a number" in proc.stdout), proc.stdout
    shown = run_cli("verify", "relu", "--dtype", "float32", "--backend", "c", "--quick", env=env)
    assert shown.returncode == 1 and "Traceback" not in shown.stderr, shown.stderr
    assert shown.stderr.startswith("actgen: error:") and variable in shown.stderr, shown.stderr


def test_the_environment_thread_count_is_used():
    proc = python("import actgen; actgen.load('relu'); print(actgen.get_num_threads())", ACTGEN_NUM_THREADS="3")
    assert proc.returncode == 0 and proc.stdout.strip() == "3", proc.stderr


# ---- parameters and axes (items 6, 7) -----------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("huge", [10**400, -10**400])
def test_an_integer_parameter_beyond_float64_is_refused_in_one_line(backend, huge):
    act = actgen.load("swish", backend=backend)
    x = np.linspace(-1.0, 1.0, 5)
    for call in (lambda: act(x, beta=huge), lambda: act.backward(x, np.ones_like(x), beta=huge),
                 lambda: act.param_grads(x, np.ones_like(x), beta=huge),
                 lambda: act.forward_with_derivative(x, beta=huge)):
        with pytest.raises(KernelArgumentError, match="parameter beta is an integer of 1329 bits"):
            call()
    assert np.allclose(act(x, beta=10**300), np.where(x > 0, x, 0.0))        # within range: computed


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis", [1.7, 1.0, "1", True, [1]])
def test_an_axis_that_is_not_an_integer_is_refused(backend, axis):
    x = np.ones((2, 3, 4))
    prelu = actgen.load("prelu", backend=backend)
    with pytest.raises(KernelArgumentError, match="param_axis must be an integer"):
        prelu(x, alpha=np.full(3, 0.25), param_axis=axis)
    with pytest.raises(KernelArgumentError, match="axis must be an integer"):
        actgen.load("softmax", backend=backend)(x, axis=axis)
    with pytest.raises(KernelArgumentError, match="axis must be an integer"):
        actgen.load("glu", backend=backend)(np.ones((2, 4)), axis=axis)
    assert prelu(x, alpha=np.full(3, 0.25), param_axis=np.int64(1)).shape == x.shape       # NumPy ints work


# ---- torch tensors with a negative or conjugate bit (item 6) -------------------------------

@pytest.mark.parametrize("name", ["relu", "swish", "softmax"])
def test_a_lazily_negated_torch_tensor_is_computed_from_its_values(name):
    torch = pytest.importorskip("torch")
    import actgen.torch

    x = torch.linspace(-3.0, 3.0, 12, dtype=torch.float64).reshape(3, 4)
    negated = torch._neg_view(x)
    assert negated.is_neg()
    f = actgen.torch.function(name)
    want = f(-x.clone())
    leaf = x.clone().requires_grad_()
    got = f(torch._neg_view(leaf))
    assert torch.equal(got, want)
    got.backward(torch._neg_view(torch.ones_like(got)))        # a negated dy too
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    module = actgen.torch.Activation(name)
    assert torch.equal(module(negated), want)


def test_a_conjugated_real_view_is_its_values():
    torch = pytest.importorskip("torch")
    import actgen.torch

    x = torch.linspace(-3.0, 3.0, 7, dtype=torch.float64)
    assert torch.equal(actgen.torch.function("relu")(x.conj()), torch.relu(x))


# ---- a cached reference of the wrong shape (item 6) ---------------------------------------

def test_a_cached_reference_of_the_wrong_shape_is_computed_again(fresh_cache, tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    x = np.linspace(-3.0, 3.0, 11)
    actgen.load("tiny", spec=spec, backend="numpy")
    refs = sorted((fresh_cache / "refs").iterdir())
    assert refs
    for path in refs:
        np.save(path, np.zeros(3))
    shutil.rmtree(fresh_cache / "index")
    shutil.rmtree(fresh_cache / "artifacts")
    loading._LOADED.clear()
    act = actgen.load("tiny", spec=spec, backend="numpy")      # lowers again, reading the memos
    assert np.allclose(act(x), x * np.tanh(1.5 * x))
    assert all(np.load(path).shape != (3,) for path in refs)   # written again, whole


# ---- a full disk (item 5) ------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (root only, where mounting is allowed); yields (its path, fill(free_kb))."""
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")

    def fill(free_kb: int) -> None:
        filler = where / "filler"
        filler.unlink(missing_ok=True)
        available = shutil.disk_usage(where).free // 1024
        with open(filler, "wb") as handle:
            handle.write(b"\0" * max(0, available - free_kb) * 1024)

    try:
        yield where, fill
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


LOADER = r"""
import sys, numpy as np, actgen
from actgen.errors import ActgenError
try:
    act = actgen.load("tiny", spec=sys.argv[1], backend=sys.argv[2])
    x = np.linspace(-3.0, 3.0, 11)
    assert np.allclose(act(x), x * np.tanh(1.5 * x))
    print("ok")
except ActgenError as exc:
    print(type(exc).__name__, exc)
    raise SystemExit(3)
"""


def _leftovers(root: Path) -> list[str]:
    """What a build that ran out of space may not leave behind: temporaries, empty files, a
    compile log blaming the compiler."""
    bad = [str(p) for sub in ("tmp", "failed") if (root / sub).exists() for p in (root / sub).iterdir()]
    bad += [str(p) for p in root.rglob("*") if p.is_file() and p.stat().st_size == 0 and p.parent.name != "locks"]
    bad += [str(p) for p in root.rglob("*.tmp*")]
    return bad


@requires_cc
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("free_kb", [4, *(pytest.param(kb, marks=pytest.mark.slow) for kb in (40, 160, 250, 400))])
def test_a_full_disk_is_one_clear_line_and_leaves_nothing_behind(small_disk, tmp_path, backend, free_kb):
    disk, fill = small_disk
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    cache = disk / "cache"
    fill(free_kb)
    env = {"ACTGEN_CACHE_DIR": str(cache)}
    proc = python(LOADER, str(spec), backend, **env)
    assert "Traceback" not in proc.stderr, proc.stderr
    root = cache / f"v{FORMAT}"
    if proc.returncode == 3:
        assert proc.stdout.startswith("CacheFullError") and "No space left on device" in proc.stdout, proc.stdout
        assert "ACTGEN_CACHE_DIR" in proc.stdout
        assert _leftovers(root) == []
        cli = run_cli("build", str(spec), "--backend", backend, env=env)
        assert cli.returncode == 1 and "Traceback" not in cli.stderr, cli.stderr
        errors = [line for line in cli.stderr.splitlines() if line.startswith("actgen: error:")]
        assert errors and all("No space left on device" in line for line in errors), cli.stderr
        assert _leftovers(root) == []
    else:
        assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.stdout, proc.stderr)
    fill(1500)                                                    # space again: it builds
    proc = python(LOADER, str(spec), backend, **env)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.stdout, proc.stderr)
    assert _leftovers(root) == []


def test_cache_full_error_is_a_build_error():
    assert issubclass(CacheFullError, actgen.BuildError)
