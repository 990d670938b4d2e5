"""``actgen vectorised``: gcc's vectoriser reports mapped to the SIMD loops of a C source, per target
(docs/vectorisation.md is its output for generated/c)."""

from __future__ import annotations

from pathlib import Path

import pytest

from actgen.build import toolchain
from actgen.vectorised import analyse, simd_loops

from conftest import requires_cc, run_cli

GENERATED = Path(__file__).resolve().parent.parent / "generated" / "c"

SOURCE = """\
#include <stdint.h>
double opaque(double);                  /* no SIMD variant: the loop that calls it stays scalar */

void scalar(const double *x, double *y, int64_t n)
{
    #pragma omp simd
    for (int64_t i = 0; i < n; ++i)
        y[i] = opaque(x[i]);
}

static inline double total(const float *x, int64_t n)
{
    double s = 0.0;
    #pragma omp simd reduction(+:s)
    for (int64_t i = 0; i < n; ++i) {
        s += (double)x[i] * 2.0;
    }
    return s;
}

double twice(const float *x, const float *z, int64_t n) { return total(x, n) + total(z, n); }
"""


def _gcc():
    if "clang" in toolchain().version.lower():
        pytest.skip("the report reads gcc's -fopt-info-vec")


def test_simd_loops_are_found_with_their_function_and_extent():
    loops = simd_loops(SOURCE)
    assert [(lp.function, lp.first, lp.last) for lp in loops] == [("scalar", 6, 8), ("total", 14, 17)]
    assert loops[0].text == "y[i] = opaque(x[i]);" and loops[1].text == "s += (double)x[i] * 2.0;"


@requires_cc
def test_a_loop_calling_an_opaque_function_is_scalar_and_a_reduction_vectorises(tmp_path):
    _gcc()
    opaque, total = analyse(SOURCE, tmp_path, targets=("x86-64", "x86-64-v3"))
    for target in ("x86-64", "x86-64-v3"):
        assert opaque.scalar(target) and opaque.cell(target).startswith("**scalar**: ")
        assert not total.scalar(target)           # both inlined copies vectorised
    assert total.cell("x86-64") == "16 B" and total.cell("x86-64-v3") == "32 B"


@requires_cc
@pytest.mark.parametrize("name", ["mish", "lisht", "tanhshrink", "gelu", "log_softmax"])
def test_no_kernel_loop_stays_scalar_with_avx2(name):
    """Issue 23: no loop is left scalar on AVX2 (x86-64-v3; docs/vectorisation.md: none of the 470).
    A guard: tanh_d32's users (mish, lisht, tanhshrink) were scalar there before 201d015
    (-fno-trapping-math, the select last); gelu: the float-float helpers; log_softmax: the row
    helpers, inlined into several functions. The opaque-call test above shows a scalar loop is seen."""
    _gcc()
    loops = analyse((GENERATED / f"{name}.c").read_text(), GENERATED, targets=("x86-64-v3",))
    assert loops
    assert [(lp.function, lp.first, lp.cell("x86-64-v3")) for lp in loops if lp.scalar("x86-64-v3")] == []


@requires_cc
def test_the_cli_prints_the_markdown_report(tmp_path):
    _gcc()
    proc = run_cli("vectorised", "relu", "--march", "x86-64-v4", "--from", str(GENERATED))
    assert proc.returncode == 0, proc.stderr
    assert "| x86-64-v4 | 16 | 16 | 0 |" in proc.stdout
    assert "`actgen_relu_forward_f32` | line" in proc.stdout and "| 64 B |" in proc.stdout
    bad = run_cli("vectorised", "nope")
    assert bad.returncode == 1 and "no built-in activation 'nope'" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli("vectorised", "relu", "--from", str(tmp_path))
    assert missing.returncode == 1 and "no relu.c" in missing.stderr
