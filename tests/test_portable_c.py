"""The standalone C of ``actgen emit`` (no Python, no cffi) built by the toolchains a user may have
instead of x86-64 gcc with glibc's libmvec, and run there: aarch64 (Debian's gcc-aarch64-linux-gnu,
run under qemu-user with the aarch64 glibc) and clang with LLVM's libomp on x86-64 (what a macOS
user has). The values are checked against mpmath, as actgen verify checks the cffi build: f within
its ULP budget, dy * f' within its budget in ULPs of max(|dy f'|, |dy| sum |terms|) (the
derivative's own condition), NaN and infinities where the reference has them. Never bit for bit:
libm differs between hosts, and libmvec, x86-64 glibc's, is declared nowhere else (the loops call
the scalar libm functions there; actgen's own helpers are plain C on every target).

The activations cover actgen's helpers: exp and expm1 (elu), erfc with a float-float argument
(gelu), sigmoid, softplus, tanh (the _d32 helpers of float32 kernels computed in double: mish,
tanh). Each runs on two threads (the threshold is lowered) and in a serial build.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from actgen import library
from actgen.derive import derive
from actgen.emit import emit
from actgen.measure import conditioned_distance, term_scale
from actgen.select import candidates
from actgen.spec import parse_spec_text
from actgen.measure import ulp_distance
from actgen.sweep import make_sweep

NAMES = ["elu", "gelu", "sigmoid", "softplus", "mish", "tanh"]
DTYPES = ["float32", "float64"]
#: (compiler, how to run what it built, Debian packages that provide them)
TOOLCHAINS = {
    "aarch64-gcc-qemu": (["aarch64-linux-gnu-gcc"], ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"],
                         "gcc-aarch64-linux-gnu qemu-user"),
    "x86_64-clang-libomp": (["clang"], [], "clang libomp-dev"),
}
#: the flags of the README's build command, warnings as errors, OpenMP from 64 elements on
FLAGS = ["-O2", "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-DACTGEN_OMP_MIN_ELEMENTS=64"]

DRIVER = """\
/* reads n inputs and n dL/dy from two files (the dtype's bytes), writes f and dy * f' to two files */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "{name}.h"

static void *slurp(const char *path, long *bytes)
{{
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0) exit(2);
    *bytes = ftell(f);
    rewind(f);
    void *data = malloc((size_t)*bytes + 1);
    if (!data || fread(data, 1, (size_t)*bytes, f) != (size_t)*bytes) exit(3);
    fclose(f);
    return data;
}}

static void spill(const char *path, const void *data, long bytes)
{{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, (size_t)bytes, f) != (size_t)bytes) exit(4);
    fclose(f);
}}

int main(int argc, char **argv)
{{
    long bytes, dbytes;
    if (argc != 7) return 1;
    const int threads = atoi(argv[2]);
    void *x = slurp(argv[3], &bytes), *dy = slurp(argv[4], &dbytes), *y = malloc((size_t)bytes + 1),
         *dx = malloc((size_t)bytes + 1);
    if (strcmp(argv[1], "float32") == 0) {{
        const int64_t n = bytes / (long)sizeof(float);
        actgen_{name}_forward_f32(x, y, n{args_f32}, threads);
        actgen_{name}_backward_f32(x, dy, dx, n{args_f32}, threads);
    }} else {{
        const int64_t n = bytes / (long)sizeof(double);
        actgen_{name}_forward_f64(x, y, n{args_f64}, threads);
        actgen_{name}_backward_f64(x, dy, dx, n{args_f64}, threads);
    }}
    spill(argv[5], y, bytes);
    spill(argv[6], dx, bytes);
    return 0;
}}
"""


def _activation(name):
    (act,) = parse_spec_text(library.read(name), path=library.display_path(name))
    return act


def _toolchain(key, tmp_path):
    cc, runner, packages = TOOLCHAINS[key]
    missing = [tool for tool in [cc[0], *runner[:1]] if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (Debian: apt-get install {packages})")
    probe = tmp_path / "probe.c"
    probe.write_text("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
    built = subprocess.run([*cc, "-fopenmp", str(probe), "-o", str(tmp_path / "probe")], capture_output=True,
                           text=True)
    if built.returncode != 0:
        pytest.skip(f"{cc[0]} cannot build an OpenMP program here (Debian: apt-get install {packages}): "
                    f"{built.stderr.strip()[:200]}")
    ran = subprocess.run([*runner, str(tmp_path / "probe")], capture_output=True, text=True)
    if ran.returncode != 0:
        pytest.skip(f"{' '.join(runner) or 'the host'} cannot run what {cc[0]} built: {ran.stderr.strip()[:200]}")
    return cc, runner


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    """The standalone sources of NAMES (actgen emit) and a driver per activation."""
    out = tmp_path_factory.mktemp("emitted")
    for name in NAMES:
        emit(name, None, out)
        act = _activation(name)
        args = {tag: "".join(f", (({ctype})ACTGEN_{name.upper()}_{p.upper()}_DEFAULT)" for p in act.params)
                for tag, ctype in (("f32", "float"), ("f64", "double"))}
        (out / f"{name}_driver.c").write_text(DRIVER.format(name=name, args_f32=args["f32"], args_f64=args["f64"]))
    return out


@pytest.fixture(scope="module")
def sweeps():
    """{(name, dtype): the inputs and mpmath references actgen verify --quick uses}."""
    return {(n, d): make_sweep(_activation(n), d, quick=True) for n in NAMES for d in DTYPES}


def _errors(act, sweep, y, dx):
    """(forward error in ULPs, backward error in conditioned ULPs, points where finiteness differs)."""
    back = {k.name: k for k in derive(act)}["backward"]
    scale = term_scale(candidates(act, back)[0][1].stable, sweep.xs, sweep.params) * np.abs(sweep.dys)
    out = []
    mismatches = 0
    for got, ref, s in ((y, sweep.refs["forward"], None), (dx, sweep.refs["backward"], scale)):
        dist = conditioned_distance(got, ref, s)
        finite = np.isfinite(got) == np.isfinite(ref)
        mismatches += int(np.sum(~finite))
        out.append(float(np.max(np.where(finite, dist, 0.0))))
    return out[0], out[1], mismatches


@pytest.mark.slow          # cross-compiled and run under qemu, and clang (the slow set, which .ci/run runs)
@pytest.mark.parametrize("threads", [2, 1], ids=["2-threads", "serial"])
@pytest.mark.parametrize("toolchain", list(TOOLCHAINS))
def test_standalone_c_on_other_toolchains_is_within_budget(emitted, sweeps, tmp_path, toolchain, threads):
    cc, runner = _toolchain(toolchain, tmp_path)
    openmp = ["-fopenmp"] if threads > 1 else []
    report = []
    for name in NAMES:
        exe = tmp_path / f"{name}_driver"
        built = subprocess.run([*cc, *FLAGS, *openmp, f"{name}.c", f"{name}_driver.c", "-lm", "-o", str(exe)],
                               cwd=emitted, capture_output=True, text=True)
        assert built.returncode == 0 and not built.stderr, f"{name}: {built.stderr}"
        act = _activation(name)
        for dtype in DTYPES:
            sweep = sweeps[name, dtype]
            paths = [tmp_path / f"{name}_{dtype}_{what}.bin" for what in ("x", "dy", "y", "dx")]
            sweep.xs.tofile(paths[0])
            sweep.dys.tofile(paths[1])
            ran = subprocess.run([*runner, str(exe), dtype, str(threads), *map(str, paths)], capture_output=True,
                                 text=True, timeout=300)
            assert ran.returncode == 0, f"{name} {dtype}: exit {ran.returncode} {ran.stderr}"
            y, dx = (np.fromfile(p, dtype=dtype) for p in paths[2:])
            forward, backward, mismatches = _errors(act, sweep, y, dx)
            report.append((name, dtype, forward, backward, mismatches))
            assert forward <= act.budget("forward", dtype), report[-1]
            assert backward <= act.budget("backward", dtype), report[-1]
            assert mismatches == 0, report[-1]
    print("\n".join(f"{toolchain} {threads} thread(s): {n} {d}: f {f:.3g} ULP, dy f' {b:.3g} ULP (conditioned)"
                    for n, d, f, b, _ in report))
