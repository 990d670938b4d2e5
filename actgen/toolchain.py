"""The C toolchain: which compiler, probed once per process for the flags it takes and for
OpenMP. Its identity (command, version, flags) is part of every artifact's key."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ToolchainError, warn_once

#: Flags that never change results: -fno-math-errno only stops libm from setting errno
#: (which lets gcc inline sqrt and call SIMD variants); -fno-trapping-math only lets gcc compute
#: an operation that may raise a floating-point exception flag where the C source would not
#: (clang's default): both arms of a select, so that a division in an arm no longer keeps the
#: loop scalar before AVX-512, which has masked division (gcc 12, x86-64-v3: 135 kernel loops
#: of the library were left scalar, now none). Kernels never read the exception flags.
#: Never -ffast-math: it breaks NaN/Inf.
BASE_FLAGS = ("-O3", "-fPIC", "-shared", "-fno-math-errno", "-fno-trapping-math", "-std=gnu11")
NO_SINK_FLAGS = ("-fno-tree-sink", "-fno-tree-pre")
#: gcc merges sin(u) and cos(u) of one argument into a scalar sincos call, which has no SIMD
#: declaration: snake's f' ran one element at a time (0.09 Gelem/s). Without the builtins the
#: two stay separate calls to libmvec's vector sin and cos. (The printer writes every number
#: as a literal, so nothing is lost by not folding sin/cos of constants.)
NO_SINCOS_FLAGS = ("-fno-builtin-sin", "-fno-builtin-cos", "-fno-builtin-sinf", "-fno-builtin-cosf")


@dataclass(frozen=True)
class Toolchain:
    cc: tuple[str, ...]           # the compiler command (CC may carry arguments)
    version: str                  # its --version banner, first line
    flags: tuple[str, ...]        # every flag used for a kernel module
    openmp: bool                  # threads available (else -fopenmp-simd: SIMD only)
    notes: tuple[str, ...] = field(default=())

    @property
    def identity(self) -> dict:
        return {"cc": list(self.cc), "version": self.version, "flags": list(self.flags)}


def _compiler_command() -> tuple[str, ...] | None:
    env = os.environ.get("CC")
    if env:
        parts = shlex.split(env)
        if parts and shutil.which(parts[0]):
            return tuple(parts)
        return None
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return (path,)
    return None


def quick_toolchain_id() -> dict:
    """What identifies the toolchain without running it (for the spec index)."""
    cc = _compiler_command()
    ident = {"cc": list(cc) if cc else None, "march": os.environ.get("ACTGEN_MARCH", "native"),
             "python": sysconfig.get_config_var("EXT_SUFFIX"), "machine": platform.machine()}
    if cc:
        with contextlib.suppress(OSError):
            st = Path(shutil.which(cc[0])).resolve().stat()
            ident["cc_stat"] = [st.st_size, int(st.st_mtime)]
    return ident


def _try_compile(cc, flags, source: str) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="actgen-probe-") as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text(source)
        proc = subprocess.run([*cc, *flags, str(src), "-o", str(Path(tmp) / "probe.so")],
                              capture_output=True, text=True)
        return proc.returncode == 0, proc.stderr


def _try_compile_all(cc, flag_lists) -> list[tuple[bool, str]]:
    """_try_compile for each list of flags, all at the same time."""
    with ThreadPoolExecutor(max_workers=len(flag_lists)) as pool:
        return list(pool.map(lambda flags: _try_compile(cc, flags, _PROBE), flag_lists))


_PROBE = """#include <math.h>
#include <stdint.h>
void probe(const float *restrict x, float *restrict y, int64_t n) {
    #pragma omp parallel for simd schedule(static) if(parallel: n >= 1000)
    for (int64_t i = 0; i < n; ++i) y[i] = expf(x[i]);
}
"""


@functools.lru_cache(maxsize=1)
def toolchain() -> Toolchain:
    """Find and probe the C compiler once per process. Raises ToolchainError if there is none."""
    cc = _compiler_command()
    if cc is None:
        raise ToolchainError("no C compiler found (looked at $CC, cc, gcc, clang); "
                             "install gcc or clang, or use the NumPy backend")
    proc = subprocess.run([*cc, "--version"], capture_output=True, text=True)
    version = (proc.stdout or proc.stderr).splitlines()[0] if (proc.stdout or proc.stderr) else "unknown"
    flags = list(BASE_FLAGS)
    notes = []
    march = os.environ.get("ACTGEN_MARCH", "native")
    candidate = []
    if march and march != "none":
        candidate = [f"-march={march}"]
        if platform.machine() in ("x86_64", "AMD64") and march == "native":
            candidate.append("-mprefer-vector-width=512")
    # gcc sinks a pure call into the branch of a select that uses it (tree-sink) or splits the
    # select around it (tree-pre); the loop then has control flow and is not vectorised. Kernels
    # compute every branch before selecting (printers/c.py), so keep them where they are.
    # The probes are independent compilations: run them at once (~0.06 s each).
    options = (list(NO_SINK_FLAGS), list(NO_SINCOS_FLAGS), ["-fopenmp"])
    probes = _try_compile_all(cc, [flags + candidate] + [flags + candidate + o for o in options])
    if candidate and not probes[0][0]:
        notes.append(f"the compiler rejected -march={march}; building for its default target")
        candidate = []
        probes = [probes[0]] + _try_compile_all(cc, [flags + o for o in options])
    flags += candidate
    (ok, err), (ok_sincos, err_sincos), (openmp, _) = probes[1:]
    if ok and not err.strip():                     # clang accepts them with a warning: leave out
        flags += NO_SINK_FLAGS
    if ok_sincos and not err_sincos.strip():
        flags += NO_SINCOS_FLAGS
    if openmp:
        flags.append("-fopenmp")
    else:
        flags.append("-fopenmp-simd")
        notes.append("OpenMP is not available with this compiler (-fopenmp failed): kernels are "
                     "built single-threaded (SIMD only). Install libgomp/libomp for threads.")
    for note in notes:
        warn_once(note)
    return Toolchain(tuple(cc), version, tuple(flags), openmp, tuple(notes))
