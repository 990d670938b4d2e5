"""Printers: exact strings for the cases each override exists for."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from sympy.codegen.cfunctions import expm1

from actgen.ir import X
from actgen.functions import erfc, sigmoid, softplus
from actgen.numpy_runtime import piecewise
from actgen.printers.c import KernelCPrinter
from actgen.printers.numpy import KernelNumPyPrinter

B = sp.Symbol("beta", real=True)
F32, F64 = KernelCPrinter("float"), KernelCPrinter("double")


def test_float32_uses_float_functions_and_literals_and_no_double_macros():
    p = KernelCPrinter("float")
    assert p.doprint(sp.log(X) + sp.sqrt(2) * X) == "1.4142135623730950488F*x + logf(x)"
    assert p.doprint(sp.Float("0.70710678118654752440084436", 30) * X) == "0.707106781186547524401F*x"
    assert p.doprint(sp.pi * X) == "3.14159265358979323846F*x"
    assert "M_" not in p.doprint(sp.pi * sp.E * X)
    # exp in float is actgen's own (within 1 ULP; libmvec's expf: 3), not a libm call
    assert p.doprint(sp.exp(X)) == "actgen_exp_f32(x)"


def test_powers():
    assert F64.doprint(X**2) == "(x*x)"
    assert F64.doprint(X**-2) == "((1.0/x)*(1.0/x))"          # no overflow of x*x
    assert F64.doprint(sp.sqrt(X)) == "sqrt(x)"
    assert F64.doprint(X**sp.Rational(3, 2)) == "(x*sqrt(x))"
    assert F64.doprint(X**sp.Rational(-1, 2)) == "(1.0/(sqrt(x)))"
    assert F64.doprint(X**20) == "pow(x, 20.0)"
    assert F64.doprint(X / sp.cosh(X)**2) == "x/cosh(x)/cosh(x)"             # no overflow of cosh**2
    assert F64.doprint(-X / (3 * (1 + X)**2)) == "(-x)/3.0/(x + 1.0)/(x + 1.0)"


def test_rational_coefficients_divide():
    assert F32.doprint(X / 6) == "x/6.0F"
    assert F32.doprint(X / 4) == "0.25F*x"                   # dyadic: an exact multiplication
    assert F64.doprint(2 * X / 3) == "(2.0*x)/3.0"                 # 2x exact: one rounding
    # any other numerator rounds anyway: a decimal written in a spec (gelu_tanh's 0.044715 =
    # 8943/200000) multiplies by its nearest double instead of dividing each element
    assert F64.doprint(sp.Rational(8943, 200000) * X**3) == "0.044715*(x*x*x)"
    assert KernelNumPyPrinter().doprint(sp.Rational(8943, 200000) * X) == "0.044715*x"


def test_exp_of_a_nonpositive_argument_skips_the_overflow_scaling():
    p = KernelCPrinter("double")
    assert p.doprint(sp.exp(-sp.Abs(X))) == "actgen_exp_neg_f64(-fabs(x))"
    assert F64.doprint(sp.exp(X)) == "actgen_exp_f64(x)"
    assert KernelCPrinter("float").doprint(sp.exp(-2 * sp.Abs(X))) == "actgen_exp_neg_f32(-2.0F*fabsf(x))"


def test_piecewise_is_a_single_select_and_helpers_propagate_nan():
    pw = sp.Piecewise((X, X > 0), (B * X, True))
    assert F32.doprint(pw) == "((x > 0.0F) ? (x) : (beta*x))"
    # a branch that calls a function is computed before the select (a call in a ?: arm makes
    # gcc emit control flow and the loop stays scalar)
    # (C99: statements the element function runs first, not a GNU statement expression)
    pw = sp.Piecewise((X, X > 0), (B * expm1(X), True))
    p = KernelCPrinter("float")
    assert p.doprint(pw) == "((x > 0.0F) ? (x) : (actgen_b1))"
    assert p.take_statements() == ("const float actgen_b1 = beta*expm1f(x);",) and p.take_statements() == ()
    # more pieces: a flat chain of selects on one variable, the last piece first
    pw = sp.Piecewise((sp.exp(X), X > 1), (X, X > 0), (expm1(X), True))
    p = KernelCPrinter("double")
    assert p.doprint(pw) == "actgen_s3"
    assert p.take_statements() == ("const double actgen_b1 = actgen_exp_f64(x);",
                                   "const double actgen_b2 = expm1(x);", "double actgen_s3 = actgen_b2;",
                                   "actgen_s3 = (x > 0.0) ? (x) : actgen_s3;",
                                   "actgen_s3 = (x > 1.0) ? (actgen_b1) : actgen_s3;")
    # conditions combine with & and |, not the short-circuit && and ||
    pw = sp.Piecewise((0, (X > 1) & ((B > 0) | (X < -1))), (X, True))
    assert F64.doprint(pw) == "((((x > 1.0) & (((beta > 0.0) | (x < -1.0))))) ? (0.0) : (x))"
    assert F64.doprint(sp.Max(0, X)) == "actgen_max_f64(0.0, x)"
    assert F32.doprint(sp.Min(1, X, B)) == "actgen_min_f32(1.0F, actgen_min_f32(beta, x))"
    assert F64.doprint(sigmoid(X) + softplus(X)) == "actgen_sigmoid_f64(x) + actgen_softplus_f64(x)"
    assert F64.doprint(sp.Heaviside(X)) == "actgen_heaviside_f64(x, 0.5)"
    assert F64.doprint(erfc(-X)) == "erfc(-x)"


def test_numpy_literals_are_weak_python_floats():
    p = KernelNumPyPrinter()
    assert p.doprint(sp.sqrt(2) * X) == "1.4142135623730951*x"   # the nearest double, not 1.414213562373095
    assert p.doprint(X / 6) == "x/6.0"
    assert p.doprint(sp.Max(0, X)) == "numpy.maximum(0.0, x)"
    assert p.doprint(sp.erf(X)) == "rt.erf(x)"
    x32 = np.linspace(-1, 1, 5, dtype=np.float32)
    assert eval(p.doprint(sp.sqrt(2) * X), {"x": x32}).dtype == np.float32


def test_numpy_piecewise_evaluates_each_branch_only_where_taken():
    p = KernelNumPyPrinter()
    text = p.doprint(sp.Piecewise((sp.log(X), X > 0), (0, True)))
    assert text.startswith("rt.piecewise((x, ), (lambda x: numpy.greater(x, 0.0), lambda x: numpy.log(x))")
    x = np.array([-1.0, 0.0, 2.0, np.nan])
    with np.errstate(all="raise"):          # log(-1) would raise if evaluated
        out = eval(text, {"rt": __import__("actgen.numpy_runtime", fromlist=["x"]), "numpy": np, "x": x})
    assert out[0] == 0 and out[1] == 0 and out[2] == np.log(2.0)


def test_piecewise_helper_broadcasts_scalars_and_keeps_dtype():
    x = np.array([-2.0, 3.0], np.float32)
    out = piecewise((x, np.float32(0.5)), (lambda x, a: x > 0, lambda x, a: x), (None, lambda x, a: a * x))
    assert out.dtype == np.float32 and out.tolist() == [-1.0, 3.0]


@pytest.mark.slow          # gcc -fopt-info over every built-in (test_vectorised checks a sample by default)
def test_generated_simd_loops_vectorise_with_gcc(tmp_path):
    """Every loop that carries a SIMD pragma, in every generated source, is vectorised: gcc
    reports no "control flow in loop" for it. Each has broken once: a call in a ?: arm (elu,
    gelu), a nested ?: with a & condition (swish's f'), sin and cos merged into a scalar sincos
    (snake's f'), forward_with_derivative's serial loop reading x twice (gelu, mish, selu), a
    helper gcc did not inline (actgen_erfc_ff: "dr in a call"; the float helpers are always_inline).
    Loops without a SIMD pragma (snake's per-channel chunk loops) may stay scalar."""
    import subprocess
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    import pytest

    from actgen.build import toolchain

    tc = toolchain()
    if "clang" in tc.version.lower() or "-fno-tree-sink" not in tc.flags:
        pytest.skip("vectoriser reports are gcc's")
    # (actgen_fastcall.c, the C fast path of a call, has no SIMD loop and needs Python's headers)
    sources = sorted(p for p in (Path(__file__).resolve().parent.parent / "generated" / "c").glob("*.c")
                     if p.name != "actgen_fastcall.c")
    assert len(sources) >= 40

    def scalar_simd_loops(src):
        proc = subprocess.run([*tc.cc, *tc.flags, "-fopt-info-vec-missed", "-c", str(src),
                               "-o", str(tmp_path / f"{src.stem}.o")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        lines = src.read_text().splitlines()
        bad = []
        for report in proc.stderr.splitlines():
            if "dr in a call" in report and "= actgen_" in report:
                bad.append((src.name, report.split("dr in a call")[1].strip()))   # a helper not inlined
            elif "control flow in loop" in report and report.startswith(f"{src}:"):
                line = int(report.split(":")[1])    # a line of the loop: find its for
                loop = next(i for i in range(line - 1, -1, -1) if lines[i].lstrip().startswith("for ("))
                if "simd" in lines[loop - 1]:        # the pragma right above the for
                    bad.append((src.name, loop + 1, lines[loop].strip()))
        return bad

    with ThreadPoolExecutor(2) as pool:
        bad = [b for found in pool.map(scalar_simd_loops, sources) for b in found]
    assert not bad, bad


def test_compensated_arguments_in_float_are_float_float_pairs():
    """A float32 kernel computed in float gets float-float arguments (actgen_ff_*) for exp and
    erfc, with constants split into two floats; the NumPy model prints the same operations."""
    import pytest

    from actgen.ir import Form

    from actgen.compensate import compensate, float_compensable

    arg = -sp.Float("0.70710678118654752440084436", 30) * X
    c = KernelCPrinter("float", compensate=True)
    assert c.doprint(erfc(arg)) == ("actgen_erfc_ff(actgen_ff_mul(actgen_ff_make(-0.70710677F, "
                                    "-1.21016175e-08F), actgen_ff_make(x, 0.0F)))")
    assert c.doprint(sp.exp(-X**2 / 2)) == ("actgen_exp_ff(actgen_ff_mul(actgen_ff_make(-0.5F, 0.0F), "
                                           "actgen_ff_mul(actgen_ff_make(x, 0.0F), actgen_ff_make(x, 0.0F))))")
    n = KernelNumPyPrinter(compensate=True, c_float=True)
    assert n.doprint(erfc(arg)) == ("rt.erfc_ff(rt.ff_mul((numpy.float32(-0.7071067690849304), "
                                    "numpy.float32(-1.2101617485882343e-08)), rt.ff(x)))")
    # a learnable b times x: the exact product of two floats, as the pair ff_mul gives, in 2 operations
    b = sp.Symbol("b", real=True)
    assert c.doprint(sigmoid(b * X)) == "actgen_sigmoid_ff(actgen_ff_prod(b, x))"
    assert n.doprint(sigmoid(b * X)) == "rt.sigmoid_ff(rt.ff_prod(b, x))"
    # double keeps double-double; no float-float softplus: such forms are not computed in float
    assert KernelCPrinter("double", compensate=True).doprint(sp.exp(3 * X)).startswith("actgen_exp_dd(")
    with pytest.raises(ValueError, match="no float-float softplus"):
        c.doprint(softplus(3 * X))
    assert float_compensable(compensate(Form((), erfc(arg))))
    assert float_compensable(compensate(Form((), sigmoid(arg))))
    assert not float_compensable(compensate(Form((), softplus(arg))))
