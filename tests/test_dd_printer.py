"""actgen.printers.dd: kernel expressions printed as double-double C (actgen_dd.h), compiled and
compared with mpmath.

Naive spellings (log(1 + exp(x)) - log(2), sqrt(x^2 + 1) - 1, acos(tanh(x))) come out within
1 ULP of double wherever their cancellation is below about 2^50: double-double carries 106 bits,
and a form that cancels 2^c loses c of them. Each expression's sweep is kept to that range and
says so; the bits a naive form cancels beyond it are lost in any fixed precision.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import mpmath as mp
import numpy as np
import pytest
import sympy as sp
from sympy.codegen.cfunctions import Cbrt, exp2, expm1, hypot, log1p, log2, log10
from sympy.printing.codeprinter import PrintMethodNotImplementedError

from actgen import functions
from actgen.functions import confine, sigmoid, softplus
from actgen.printers.dd import KernelDDPrinter, dd_function

HEADER_DIR = Path(__file__).resolve().parent.parent / "actgen" / "csrc"
CC = shutil.which("gcc") or shutil.which("cc")
x, beta = sp.symbols("x beta")
cbrt = getattr(functions, "cbrt", Cbrt)          # actgen's real cube root where it exists


def p(e, **kw):
    return KernelDDPrinter(**kw).doprint(e)


# --- exact strings ---------------------------------------------------------------------------------

def test_inputs_numbers_and_arithmetic():
    assert p(x) == "actgen_dd_from(x)"
    assert p(x, dd_symbols={"x"}) == "x"
    assert p(sp.pi) == "actgen_dd_make(3.141592653589793, 1.2246467991473532e-16)"
    assert p(sp.Rational(1, 2)) == "actgen_dd_from(0.5)"
    assert p(x + 1) == "actgen_dd_add_d(actgen_dd_from(x), 1.0)"
    assert p(x * beta) == "actgen_dd_mul_d(actgen_dd_from(beta), x)"
    assert p(x / 3) == "actgen_dd_mul_d(actgen_dd_make(0.3333333333333333, 1.850371707708594e-17), x)"
    assert p(1 - sp.exp(x)) == "actgen_dd_sub(actgen_dd_from(1.0), actgen_dd_exp(actgen_dd_from(x)))"
    assert p(-sp.exp(x)) == "actgen_dd_neg(actgen_dd_exp(actgen_dd_from(x)))"
    assert p(sp.sqrt(sp.Integer(2)) * x) == "actgen_dd_mul_d(actgen_dd_make(1.4142135623730951, -9.667293313452913e-17), x)"
    assert p(sp.exp(sp.Integer(800))) == "actgen_dd_from(INFINITY)"      # beyond the largest double


def test_powers():
    assert p(x ** 2) == "actgen_dd_sqr(actgen_dd_from(x))"
    assert p(x ** 3) == "actgen_dd_powi(actgen_dd_from(x), 3)"
    assert p(x ** -1) == "actgen_dd_div(actgen_dd_from(1.0), actgen_dd_from(x))"
    assert p(sp.sqrt(x)) == "actgen_dd_sqrt(actgen_dd_from(x))"
    assert p(x ** sp.Rational(3, 2)) == "actgen_dd_mul(actgen_dd_powi(actgen_dd_from(x), 1), actgen_dd_sqrt(actgen_dd_from(x)))"
    assert p(1 / sp.sqrt(x)) == "actgen_dd_div(actgen_dd_from(1.0), actgen_dd_sqrt(actgen_dd_from(x)))"
    assert p(x ** beta) == "actgen_dd_pow(actgen_dd_from(x), actgen_dd_from(beta))"
    # divided one factor at a time: no overflow of cosh(x)^2 where x/cosh(x)/cosh(x) is finite
    assert p(x / sp.cosh(x) ** 2) == ("actgen_dd_div(actgen_dd_div(actgen_dd_from(x), actgen_dd_cosh(actgen_dd_from(x))), "
                                      "actgen_dd_cosh(actgen_dd_from(x)))")


def test_functions_of_the_grammar():
    u = "actgen_dd_from(x)"
    for f, name in [(sp.exp, "exp"), (sp.log, "log"), (sp.tanh, "tanh"), (sp.sinh, "sinh"), (sp.cosh, "cosh"),
                    (sp.atan, "atan"), (sp.sin, "sin"), (sp.cos, "cos"), (sp.tan, "tan"), (sp.asin, "asin"),
                    (sp.acos, "acos"), (sp.asinh, "asinh"), (sp.acosh, "acosh"), (sp.atanh, "atanh"), (sp.erf, "erf"),
                    (sp.erfc, "erfc"), (functions.erfc, "erfc"), (sigmoid, "sigmoid"), (softplus, "softplus"),
                    (log1p, "log1p"), (expm1, "expm1"), (exp2, "exp2"), (log2, "log2"), (log10, "log10"),
                    (cbrt, "cbrt"), (Cbrt, "cbrt"), (sp.Abs, "abs"), (sp.sign, "sign")]:
        assert p(f(x)) == f"actgen_dd_{name}({u})", f
    assert p(hypot(x, beta)) == f"actgen_dd_hypot({u}, actgen_dd_from(beta))"
    assert p(sp.atan2(x, beta)) == f"actgen_dd_atan2({u}, actgen_dd_from(beta))"
    assert p(sp.Heaviside(x)) == f"actgen_dd_heaviside({u}, actgen_dd_from(0.5))"
    assert p(sp.Max(x, 0)) == f"actgen_dd_max(actgen_dd_from(0.0), {u})"
    assert p(sp.Min(x, 0, beta)) == f"actgen_dd_min(actgen_dd_from(0.0), actgen_dd_min(actgen_dd_from(beta), {u}))"
    assert p(sp.UnevaluatedExpr(x) * 2) == f"actgen_dd_mul_d({u}, 2.0)"
    assert p(confine(x, -1, sp.oo, 0)) == (f"actgen_dd_select((actgen_dd_ge({u}, actgen_dd_from(-1.0))), {u}, "
                                           "actgen_dd_from(0.0))")


def test_piecewise_is_a_flat_chain_of_selects():
    e = sp.Piecewise((x, x > 1), (x ** 2, (x > 0) & (beta <= 1)), (0, True))
    u, b = "actgen_dd_from(x)", "actgen_dd_from(beta)"
    assert p(e) == (f"actgen_dd_select(actgen_dd_gt({u}, actgen_dd_from(1.0)), {u}, "
                    f"actgen_dd_select(((actgen_dd_le({b}, actgen_dd_from(1.0))) & (actgen_dd_gt({u}, actgen_dd_from(0.0)))), "
                    f"actgen_dd_sqr({u}), actgen_dd_from(0.0)))")
    # a last piece whose condition is not True gives NaN where no condition holds
    assert p(sp.Piecewise((x, x > 0), (-x, x < 0))).endswith(
        f"actgen_dd_select(actgen_dd_lt({u}, actgen_dd_from(0.0)), actgen_dd_neg({u}), actgen_dd_from(NAN)))")


def test_refuses_what_it_cannot_print():
    for bad in (sp.floor(x), sp.gamma(x), sp.Mod(x, 2), sp.I * x, sp.Integral(x, x), sp.besselj(0, x), sp.zoo * x):
        with pytest.raises(PrintMethodNotImplementedError):
            p(bad)
    with pytest.raises(ValueError):
        dd_function("f", x * beta)                          # beta is not declared


def test_records_the_functions_it_calls():
    pr = KernelDDPrinter()
    pr.doprint(sp.exp(x) * sp.erf(x) + 1)
    assert pr.functions == {"from", "exp", "erf", "mul", "add_d"}


# --- compiled against mpmath -----------------------------------------------------------------------

def _reference(e):
    """the expression for mpmath: the helpers in their exact forms"""
    e = e.replace(sigmoid, lambda z: 1 / (1 + sp.exp(-z))).replace(softplus, lambda z: sp.log(1 + sp.exp(z)))
    e = e.replace(sp.Heaviside, lambda *a: sp.Heaviside(*a).rewrite(sp.Piecewise))
    e = e.replace(exp2, lambda z: 2 ** z).replace(log2, lambda z: sp.log(z) / sp.log(2))
    e = e.replace(log10, lambda z: sp.log(z) / sp.log(10)).replace(log1p, lambda z: sp.log(1 + z))
    e = e.replace(expm1, lambda z: sp.exp(z) - 1).replace(hypot, lambda a, b: sp.sqrt(a ** 2 + b ** 2))
    return e.replace(cbrt, lambda z: sp.sign(z) * sp.Abs(z) ** sp.Rational(1, 3))


def _compile(tmp: Path, name, e, params):
    src = dd_function(name, e, params)
    args = ", ".join(f", double {q}" for q in params).lstrip(", ")
    call = ", ".join(["x[i]", *map(str, params)])
    src += (f"void {name}_v(const double *x, double *y, long n{', ' + args if args else ''}) "
            f"{{ for (long i = 0; i < n; i++) y[i] = {name}({call}); }}\n")
    c, so = tmp / f"{name}.c", tmp / f"{name}.so"
    c.write_text(src)
    subprocess.run([CC, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-I", str(HEADER_DIR),
                    str(c), "-o", str(so), "-lm"], check=True, capture_output=True, text=True)
    lib = ctypes.CDLL(str(so))
    fn = getattr(lib, f"{name}_v")
    fn.argtypes = [ctypes.POINTER(ctypes.c_double)] * 2 + [ctypes.c_long] + [ctypes.c_double] * len(params)
    return fn


def _grid(lo, hi, signed=True, n=120):
    """log-spaced magnitudes in [lo, hi], both signs if asked, plus a uniform sweep"""
    mags = np.geomspace(lo, hi, n)
    pts = np.concatenate([mags, -mags]) if signed else mags
    return np.concatenate([pts, np.linspace(-hi if signed else lo, hi, n)])


def _log1p_exp_grid():
    return np.concatenate([_grid(1e-300, 30), np.geomspace(30, 700, 60)])


CASES = [
    # name, expression, parameters (values), inputs; why the range where it is restricted
    ("shifted_softplus", sp.log(1 + sp.exp(x)) - sp.log(2), {}, _grid(2.0 ** -40, 700)),   # exp overflows above 709.78
    ("acos_tanh", sp.acos(sp.tanh(x)), {}, _grid(1e-300, 15)),      # 1 - tanh(x) = 2e^-2x cancels 2^(2.9x) bits
    ("x_tanh_exp", x * sp.tanh(sp.exp(x)), {}, _grid(1e-300, 1e4)),     # mpmath: tanh(exp(1e300)) exhausts memory
    ("sqrt_cancel", sp.sqrt(x ** 2 + 1) - 1, {}, _grid(2.0 ** -20, 1e150)),           # cancels 2^(2 log2(1/x))
    ("huber", sp.Piecewise((x ** 2 / 2, sp.Abs(x) <= 1), (sp.Abs(x) - sp.Rational(1, 2), True)), {}, _grid(1e-300, 1e300)),
    ("relu6_leaky", sp.Min(sp.Max(0, x), 6) + sp.Max(x, -x / 10) - sp.Min(0, x / 100), {}, _grid(1e-300, 1e300)),
    ("swish", x * sigmoid(beta * x), {"beta": 1.7}, _grid(1e-300, 1e300)),
    ("gelu", x / 2 * functions.erfc(-x / sp.sqrt(2)), {}, _grid(1e-300, 37)),
    # log(1 + e^x): below x = -30, 1 + e^x holds e^x to 2^-106 of 1 only (the naive log cancels)
    ("serf", x * sp.erf(sp.log(1 + sp.exp(x))), {}, _log1p_exp_grid()),
    ("mish_naive", x * sp.tanh(sp.log(1 + sp.exp(x))), {}, _log1p_exp_grid()),
    ("expm1_over_x", (sp.exp(x) - 1) / x, {}, _grid(2.0 ** -40, 700)),               # cancels 2^(log2(1/x))
    ("mixed", cbrt(x) * hypot(x, 1) + sp.atan(x) - sp.asinh(x) / 3 + sp.sign(x) * sp.Heaviside(x), {}, _grid(1e-100, 1e100)),
    ("powers", x ** sp.Rational(3, 2) + x ** beta + log10(1 + x ** 2) + log2(2 + x) * exp2(-x), {"beta": 2.5},
     _grid(1e-100, 1e10, signed=False)),
    ("inverse", sp.atanh(x / (1 + sp.Abs(x))) + sp.asin(x / (2 + sp.Abs(x))) + softplus(-x) * expm1(-sp.Abs(x)) / 7
     + log1p(sp.Abs(x)), {}, _grid(1e-300, 2.0 ** 40)),      # x/(1 + |x|) = 1 - 1/|x| cancels 2^log2|x| in atanh
]


@pytest.mark.skipif(CC is None, reason="no C compiler")
@pytest.mark.parametrize("name,expr,params,xs", CASES, ids=[c[0] for c in CASES])
def test_within_one_ulp(tmp_path, name, expr, params, xs):
    fn = _compile(tmp_path, name, expr, list(params))
    xs = np.ascontiguousarray(xs, dtype=np.float64)
    ys = np.empty_like(xs)
    P = ctypes.POINTER(ctypes.c_double)
    fn(xs.ctypes.data_as(P), ys.ctypes.data_as(P), len(xs), *params.values())
    ref = sp.lambdify([x, *[sp.Symbol(q) for q in params]], _reference(expr), "mpmath")
    worst, where = 0.0, None
    with mp.workprec(1500):     # log(1 + exp(-700)) needs more than 1010 bits
        for xv, yv in zip(xs, ys):
            try:
                e = ref(mp.mpf(xv), *[mp.mpf(v) for v in params.values()])
            except (ValueError, ZeroDivisionError, OverflowError, MemoryError):
                continue
            if isinstance(e, mp.mpc) or mp.isnan(e) or mp.isinf(e) or abs(e) > mp.mpf(np.finfo(float).max):
                assert not np.isfinite(yv) or isinstance(e, mp.mpc) or mp.isnan(e) or abs(e) > 1e308, (xv, yv, e)
                continue
            ulp = mp.mpf(np.spacing(abs(float(e)))) if e != 0 else mp.mpf(5e-324)
            err = float(abs(mp.mpf(yv) - e) / ulp)
            if err > worst:
                worst, where = err, (xv, yv, e)
    assert worst <= 1.0, f"{name}: {worst:.3g} ULP at x = {where[0]!r}: {where[1]!r}, exact {where[2]}"


@pytest.mark.skipif(CC is None, reason="no C compiler")
def test_nan_makes_every_comparison_false(tmp_path):
    e = sp.Piecewise((1, x > 0), (2, x < -1), (3, True))
    fn = _compile(tmp_path, "nan_pw", e, [])
    xs = np.array([np.nan, 1.0, -2.0, -0.5])
    ys = np.empty(4)
    P = ctypes.POINTER(ctypes.c_double)
    fn(xs.ctypes.data_as(P), ys.ctypes.data_as(P), 4)
    assert list(ys) == [3.0, 1.0, 2.0, 3.0]
