"""Speed of actgen_dd.h: ns per element of each function (2^16 elements, 1 thread), next to the
double libm function where C has one, and whether gcc vectorised the loop.

    python benchmarks/dd_math.py [--cc gcc] [--march x86-64-v3] [--reps 15] [--json F]

Each loop is `#pragma omp simd` over arrays of double-double inputs (hi, lo), compiled with
actgen's flags (-O3 -fno-math-errno -fno-trapping-math -std=gnu11 -fopenmp -fno-tree-sink
-fno-tree-pre -fno-builtin-sin -fno-builtin-cos); -fopt-info-vec
tells which loops vectorised. The numbers are medians of --reps runs; on a shared machine they
are noisy: compare the ratio to the double function of the same run. Times are the thread's
CPU time (CLOCK_THREAD_CPUTIME_ID), so that waiting for a shared core is not counted.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HEADER_DIR = Path(__file__).resolve().parent.parent / "actgen" / "csrc"
#: actgen's build flags (actgen/build.py): without -fno-tree-pre, gcc 12 makes the table loads of
#: exp conditional (masked), which it cannot vectorise without AVX-512
NO_SINK_FLAGS = ("-fno-tree-sink", "-fno-tree-pre")
NO_SINCOS_FLAGS = ("-fno-builtin-sin", "-fno-builtin-cos")

#: function -> (inputs: C expression of i and u in [0, 1), the libm double peer or None)
UNARY = {
    "exp": ("-700.0 + 1400.0 * u", "exp"), "expm1": ("-10.0 + 20.0 * u", "expm1"),
    "exp2": ("-1000.0 + 2000.0 * u", "exp2"), "log": ("exp(-700.0 + 1400.0 * u)", "log"),
    "log1p": ("-0.9 + 10.0 * u", "log1p"), "log2": ("exp(-700.0 + 1400.0 * u)", "log2"),
    "log10": ("exp(-700.0 + 1400.0 * u)", "log10"), "sqrt": ("1e-3 + 1e3 * u", "sqrt"),
    "cbrt": ("-1e3 + 2e3 * u", "cbrt"), "sin": ("-100.0 + 200.0 * u", "sin"),
    "cos": ("-100.0 + 200.0 * u", "cos"), "tan": ("-100.0 + 200.0 * u", "tan"),
    "asin": ("-1.0 + 2.0 * u", "asin"), "acos": ("-1.0 + 2.0 * u", "acos"),
    "atan": ("-100.0 + 200.0 * u", "atan"), "sinh": ("-20.0 + 40.0 * u", "sinh"),
    "cosh": ("-20.0 + 40.0 * u", "cosh"), "tanh": ("-20.0 + 40.0 * u", "tanh"),
    "asinh": ("-100.0 + 200.0 * u", "asinh"), "acosh": ("1.0 + 100.0 * u", "acosh"),
    "atanh": ("-1.0 + 2.0 * u", "atanh"), "erf": ("-6.0 + 12.0 * u", "erf"),
    "erfc": ("-6.0 + 33.0 * u", "erfc"), "sigmoid": ("-40.0 + 80.0 * u", None),
    "softplus": ("-40.0 + 80.0 * u", None),
}
BINARY = {
    "pow": ("0.01 + 10.0 * u", "-5.0 + 10.0 * v", "pow"),
    "hypot": ("-10.0 + 20.0 * u", "-10.0 + 20.0 * v", "hypot"),
    "atan2": ("-10.0 + 20.0 * u", "-10.0 + 20.0 * v", "atan2"),
}

PRELUDE = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "actgen_dd.h"
#define N (1L << 16)
static double now(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static double xh[N], xl[N], wh[N], wl[N], yh[N], yl[N];
static double sink;
"""


def _source(reps: int) -> str:
    parts = [PRELUDE]
    calls = []
    # libmvec's variants are declared only for the peers here (the header declares its own)
    peers = sorted({p for _, p in UNARY.values() if p} | {p for *_, p in BINARY.values()})
    parts.append("#if defined(__x86_64__) && defined(__GLIBC__)")
    for p in peers:
        args = "double, double" if p in ("pow", "hypot", "atan2") else "double"
        parts.append(f"#pragma omp declare simd notinbranch\ndouble {p}({args}) __attribute__((const, nothrow));")
    parts.append("#endif")
    for f, (_, peer) in UNARY.items():
        parts.append(f"static void dd_{f}(void) {{\n#pragma omp simd\n    for (long i = 0; i < N; i++) {{ actgen_dd r = "
                     f"actgen_dd_{f}(actgen_dd_make(xh[i], xl[i])); yh[i] = r.hi; yl[i] = r.lo; }}\n}}")
        if peer:
            parts.append(f"static void d_{f}(void) {{\n#pragma omp simd\n    for (long i = 0; i < N; i++) yh[i] = {peer}(xh[i]);\n}}")
    for f, (*_, peer) in BINARY.items():
        parts.append(f"static void dd_{f}(void) {{\n#pragma omp simd\n    for (long i = 0; i < N; i++) {{ actgen_dd r = "
                     f"actgen_dd_{f}(actgen_dd_make(xh[i], xl[i]), actgen_dd_make(wh[i], wl[i])); yh[i] = r.hi; yl[i] = r.lo; }}\n}}")
        parts.append(f"static void d_{f}(void) {{\n#pragma omp simd\n    for (long i = 0; i < N; i++) yh[i] = {peer}(xh[i], wh[i]);\n}}")
    parts.append(f"static double timed(void (*k)(void)) {{ double t[{reps}]; k();\n"
                 f"    for (int r = 0; r < {reps}; r++) {{ double t0 = now(); k(); t[r] = (now() - t0) / N * 1e9; sink += yh[r]; }}\n"
                 f"    qsort(t, {reps}, sizeof t[0], cmp); return t[{reps} / 2]; }}")
    body = ["int main(void) {", "    srand(1);"]

    def fill(xe, we="0.0"):
        return [f"    for (long i = 0; i < N; i++) {{ double u = rand() / (RAND_MAX + 1.0), v = rand() / (RAND_MAX + 1.0);"
                f" xh[i] = {xe}; wh[i] = {we}; xl[i] = xh[i] * 0x1p-60 * (u - 0.5); wl[i] = wh[i] * 0x1p-60 * (v - 0.5); (void)v; }}"]
    for f, (xe, peer) in UNARY.items():
        body += fill(xe)
        body.append(f'    printf("%s %.3f %.3f\\n", "{f}", timed(dd_{f}), {"timed(d_" + f + ")" if peer else "-1.0"});')
    for f, (xe, we, peer) in BINARY.items():
        body += fill(xe, we)
        body.append(f'    printf("%s %.3f %.3f\\n", "{f}", timed(dd_{f}), timed(d_{f}));')
    body += ['    return sink == 12345.0;', "}"]
    calls = "\n".join(body)
    return "\n".join(parts) + "\n" + calls + "\n"


def run(cc: str = "gcc", march: str = "x86-64-v3", reps: int = 15) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "dd_bench.c"
        src.write_text(_source(reps))
        exe = Path(tmp) / "dd_bench"
        flags = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-std=gnu11", "-fopenmp", f"-march={march}",
                 *NO_SINK_FLAGS, *NO_SINCOS_FLAGS]
        info = ["-fopt-info-vec-optimized"] if cc.startswith("gcc") else ["-Rpass=loop-vectorize"]
        build = subprocess.run([cc, *flags, *info, "-I", str(HEADER_DIR), str(src), "-o", str(exe), "-lm"],
                               capture_output=True, text=True, check=True)
        lines = src.read_text().splitlines()
        vectorised = set()
        for m in re.finditer(r"dd_bench\.c:(\d+):\d+: (?:optimized|remark): (?:loop )?vectorized", build.stderr):
            line = int(m.group(1))
            for back in range(line - 1, -1, -1):     # the function the loop is in
                fm = re.match(r"static void (d_|dd_)(\w+)\(void\)", lines[back])
                if fm:
                    vectorised.add(fm.group(1) + fm.group(2))
                    break
        out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        name, dd, d = line.split()
        rows[name] = {"dd_ns": float(dd), "double_ns": None if float(d) < 0 else float(d),
                      "dd_vectorised": "dd_" + name in vectorised, "double_vectorised": "d_" + name in vectorised}
    return {"cc": cc, "march": march, "reps": reps, "elements": 1 << 16, "functions": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cc", default="gcc")
    ap.add_argument("--march", default="x86-64-v3")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    res = run(args.cc, args.march, args.reps)
    print(f"| function | dd ns/elem | vectorised | double ns/elem | vectorised | ratio |")
    print("|---|---:|---|---:|---|---:|")
    for name, r in res["functions"].items():
        d = r["double_ns"]
        dd_v = "yes" if r["dd_vectorised"] else "no"
        if d is None:
            print(f"| {name} | {r['dd_ns']:.1f} | {dd_v} | - | - | - |")
        else:
            d_v = "yes" if r["double_vectorised"] else "no"
            print(f"| {name} | {r['dd_ns']:.1f} | {dd_v} | {d:.1f} | {d_v} | {r['dd_ns'] / d:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
