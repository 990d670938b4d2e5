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
    """A cache directory for the whole session (the user's cache is never touched), shared by
    pytest-xdist's workers: the cache is built for concurrent processes (test_build_robustness),
    and each built-in's selection, compile and mpmath references then happen once per run rather
    than once per worker."""
    base = tmp_path_factory.getbasetemp()
    path = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "actgen-cache"
    path.mkdir(exist_ok=True)
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
    from actgen import loading
    from actgen.build import FORMAT

    cache = tmp_path / "cache"
    monkeypatch.setenv("ACTGEN_CACHE_DIR", str(cache))
    monkeypatch.setattr(loading, "_LOADED", {})
    return cache / f"v{FORMAT}"


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
    from actgen.toolchain import _compiler_command

    return _compiler_command() is not None


requires_cc = pytest.mark.skipif(not have_compiler(), reason="no C compiler on this machine")


def double_helpers(name: str, helpers, tag: str, variant: str, tmp):
    """build_math_module with an eval_<h>(x, y, n) loop over actgen_<h>_<tag> for each of
    ``helpers`` (double -> double); returns call(h, x) -> y. The no-fma build is checked to be one."""
    import numpy as np

    loops = "\n".join(
        f"void eval_{h}(const double *x, double *y, int64_t n) "
        f"{{ for (int64_t i = 0; i < n; ++i) y[i] = actgen_{h}_{tag}(x[i]); }}" for h in helpers)
    loops += "\nint fast_fma(void) {\n#ifdef FP_FAST_FMA\nreturn 1;\n#else\nreturn 0;\n#endif\n}"
    cdef = "\n".join(f"void eval_{h}(const double *x, double *y, int64_t n);" for h in helpers)
    module = build_math_module(name, loops, cdef + "\nint fast_fma(void);", variant, tmp)
    if variant == "no-fma":
        assert module.lib.fast_fma() == 0           # ACTGEN_MAD is a multiply and an add here

    def call(h, x):
        x = np.ascontiguousarray(x, dtype=np.float64)
        y = np.empty_like(x)
        getattr(module.lib, f"eval_{h}")(module.ffi.from_buffer("double[]", x),
                                        module.ffi.from_buffer("double[]", y), x.size)
        return y
    return call


def build_math_module(name: str, code: str, cdef: str, variant: str, tmp):
    """Compile actgen/csrc/actgen_math.h itself (included, as the kernels include it) and C
    ``code`` after it, exporting ``cdef``, for this machine (variant "target") or for baseline
    x86-64 ("no-fma": no fused multiply-add, so ACTGEN_FMAF / ACTGEN_MAD are a multiply and an
    add; skipped where that build is not gcc on x86-64); the loaded cffi module."""
    import dataclasses
    import importlib.util
    import platform

    from actgen.build import compile_c, toolchain
    from actgen.resources import csrc_root

    tc = toolchain()
    if variant == "no-fma":
        if platform.machine() not in ("x86_64", "AMD64") or "clang" in tc.version.lower():
            pytest.skip("the no-fma build is checked with gcc on x86-64")
        # -mno-fma alone is not enough: AVX-512F has its own FMA (FP_FAST_FMA stays defined)
        flags = [f for f in tc.flags if not f.startswith(("-march=", "-mprefer-vector-width="))]
        tc = dataclasses.replace(tc, flags=(*flags, "-march=x86-64"))
    tc = dataclasses.replace(tc, flags=(*tc.flags, f"-I{csrc_root()}"))
    source = f'#include <string.h>\n#include "actgen_math.h"\n{code}\n'
    output = compile_c(name, source, cdef, tmp, tc)
    spec = importlib.util.spec_from_file_location(name, tmp / output)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.pop(name, None)
    return module


def away_from_zero(shape, seed=0):
    """Random float64 torch inputs at least 0.1 from the kinks at 0, requiring grad (gradcheck's
    finite differences step 1e-6 must not cross a kink). torch is imported by the caller's module."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    return (x + 0.1 * torch.sign(x)).requires_grad_()
