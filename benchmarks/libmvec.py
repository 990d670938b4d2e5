"""What replaces glibc's libmvec where it does not exist (aarch64, macOS, musl): the same emitted C
compiled with -DACTGEN_NO_LIBMVEC, so that a SIMD loop calls the scalar libm function per element.

    python benchmarks/libmvec.py [NAME ...] [--n 1048576] [--repeats 15] > benchmarks/libmvec.md

Emits each activation with ``actgen emit``, compiles a small driver twice (gcc -O3 -march=native
-fopenmp, with and without -DACTGEN_NO_LIBMVEC) and prints the median time of the float32 and
float64 forward and backward loops on one thread, and the ratio. Prints the CPU it ran on."""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "NAME.h"
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static int cmp(const void *a, const void *b) { double d = *(const double *)a - *(const double *)b; return (d > 0) - (d < 0); }
#define TIME(label, call) do { double t[64]; for (int r = 0; r < reps; r++) { double s = now(); call; t[r] = now() - s; } \
    qsort(t, reps, sizeof t[0], cmp); printf("%s %.3f\n", label, 1e9 * t[reps / 2] / n); } while (0)
int main(int argc, char **argv) {
    long n = atol(argv[1]); int reps = atoi(argv[2]);
    float *xf = malloc(n * sizeof *xf), *yf = malloc(n * sizeof *yf), *df = malloc(n * sizeof *df);
    double *xd = malloc(n * sizeof *xd), *yd = malloc(n * sizeof *yd), *dd = malloc(n * sizeof *dd);
    for (long i = 0; i < n; i++) { xd[i] = -8.0 + 16.0 * (double)i / n; xf[i] = (float)xd[i]; df[i] = 1.0f; dd[i] = 1.0; }
    TIME("float32_forward", actgen_NAME_forward_f32(xf, yf, n, 1));
    TIME("float32_backward", actgen_NAME_backward_f32(xf, df, yf, n, 1));
    TIME("float64_forward", actgen_NAME_forward_f64(xd, yd, n, 1));
    TIME("float64_backward", actgen_NAME_backward_f64(xd, dd, yd, n, 1));
    return 0;
}
"""


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            flags = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags"))
            simd = [f for f in ("avx2", "fma", "avx512f") if f" {f}" in flags]
            return f"{line.split(':', 1)[1].strip()} ({', '.join(simd)})"
    return platform.processor() or platform.machine()


def run(name: str, n: int, repeats: int, work: Path) -> dict:
    out = work / name
    subprocess.run([sys.executable, "-m", "actgen", "emit", name, "--c", str(out)], check=True,
                   capture_output=True, text=True)
    (out / "driver.c").write_text(DRIVER.replace("NAME", name))
    times = {}
    for label, extra in (("libmvec", []), ("scalar libm", ["-DACTGEN_NO_LIBMVEC"])):
        exe = out / ("driver_" + ("vec" if not extra else "scalar"))
        subprocess.run(["gcc", "-O3", "-march=native", "-fopenmp", "-std=c99", *extra, f"{name}.c", "driver.c",
                        "-lm", "-o", str(exe)], check=True, cwd=out)
        result = subprocess.run([str(exe), str(n), str(repeats)], check=True, capture_output=True, text=True)
        times[label] = dict(line.split() for line in result.stdout.splitlines())
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=["tanh", "mish", "gelu", "gelu_tanh", "log_sigmoid", "silu", "sigmoid"],
                        help="built-ins without parameters (the driver passes none)")
    parser.add_argument("--n", type=int, default=1 << 20)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    print(f"CPU: {cpu()}; gcc -O3 -march=native -fopenmp, 1 thread, {args.n} elements in [-8, 8], "
          f"median of {args.repeats}: ns per element\n")
    print("| activation | loop | libmvec | scalar libm (-DACTGEN_NO_LIBMVEC) | slowdown |")
    print("|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names:
            times = run(name, args.n, args.repeats, Path(tmp))
            for loop, vec in times["libmvec"].items():
                scalar = times["scalar libm"][loop]
                print(f"| {name} | {loop.replace('_', ' ')} | {float(vec):.2f} | {float(scalar):.2f} | "
                      f"{float(scalar) / float(vec):.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
