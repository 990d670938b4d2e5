"""The mpmath reference and the ULP metric themselves."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from actgen.ir import X
from actgen.functions import sigmoid
from actgen.reference import reference, round_to_format
from actgen.reference import limit_at_infinity
from actgen.measure import ulp_distance


def test_rounding_to_float32_and_float64_is_correct_including_subnormals_and_overflow():
    import mpmath

    assert round_to_format(mpmath.mpf(1) / 3, 24, -126, 127) == float(np.float32(1 / 3))
    assert round_to_format(mpmath.mpf(1) / 3, 53, -1022, 1023) == 1 / 3
    tiny = mpmath.mpf(2) ** -149 * mpmath.mpf("1.5")          # halfway between 1 and 2 quanta: even
    assert round_to_format(tiny, 24, -126, 127) == 2 * 2.0**-149
    assert round_to_format(mpmath.mpf(2) ** 128, 24, -126, 127) == math.inf
    assert round_to_format(-mpmath.mpf(2) ** 2000, 53, -1022, 1023) == -math.inf
    assert round_to_format(mpmath.mpf(2) ** -1080, 53, -1022, 1023) == 0.0


@pytest.mark.parametrize("expr, x, expected", [
    (sp.exp(X) - 1, -6.18874e-65, -6.18874e-65),                  # total cancellation at 96 bits
    (sp.log(1 + X), 1e-200, 1e-200),
    (X / 2 * (1 + sp.erf(X / sp.sqrt(2))), -30.0, -1.472014178144456e-196),
    (sp.sqrt(X**2 + 1) - 1, 1e-10, 5e-21),
])
def test_reference_raises_precision_until_cancellation_resolves(expr, x, expected):
    assert reference(expr, {X: x}) == pytest.approx(expected, rel=1e-15)


def test_reference_of_an_exact_zero_is_zero():
    assert reference(sp.sin(sp.pi * X), {X: 1.0}) == 0.0 or abs(reference(sp.sin(sp.pi * X), {X: 1.0})) < 1e-300


def test_limits_at_infinity_see_through_max_min_and_piecewise():
    hs = sp.Min(sp.Max(X + 3, 0), 6) / 6
    assert limit_at_infinity(hs, {}, 1, "float64") == 1.0
    assert limit_at_infinity(hs, {}, -1, "float64") == 0.0
    assert limit_at_infinity(X * sigmoid(X), {}, -1, "float32") == 0.0
    assert math.isnan(limit_at_infinity(sp.sin(X), {}, 1, "float64"))


def test_ulp_distance():
    a = np.array([1.0, 1.0, 0.0, -0.0, np.nan, np.nan, 1.0, np.inf])
    b = np.array([np.nextafter(1.0, 2.0), 1.0, -0.0, 5e-324, np.nan, 1.0, np.inf, np.inf])
    assert ulp_distance(a, b).tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, math.inf, math.inf, 0.0]
    c = np.array([1.0], np.float32)
    assert ulp_distance(c, np.array([np.nextafter(np.float32(1), np.float32(0))])).tolist() == [1.0]
    # across zero the distance counts the floats in between (no int64 overflow, no rounding)
    assert ulp_distance(np.array([-5e-324]), np.array([5e-324])).tolist() == [2.0]
    assert ulp_distance(np.array([1.0]), np.array([1.0 + 2**-52 * 3])).tolist() == [3.0]


@pytest.mark.parametrize("x, dtype", [(0.0, "float64"), (0.5, "float64"), (-3.0, "float32"), (40.0, "float32"),
                                      (300.0, "float64"), (-350.0, "float64"), (1e6, "float64")])
def test_the_derivative_of_tanh_is_evaluated_without_its_cancellation(x, dtype):
    # 1 - tanh(u)**2 (SymPy's d/du tanh) cancels ~2.9|u| bits; the reference evaluates it as
    # sech(u)**2, and must agree with mpmath's sech at a precision that needs no cancellation
    import mpmath

    with mpmath.workprec(256):
        exact = mpmath.sech(mpmath.mpf(x)) ** 2
    expected = round_to_format(exact, *{"float32": (24, -126, 127), "float64": (53, -1022, 1023)}[dtype])
    assert reference(1 - sp.tanh(X) ** 2, {X: x}, dtype) == expected
    assert reference(X * (1 - sp.tanh(2 * X) ** 2) + 1, {X: x}, dtype) == \
        reference(X * sp.cosh(2 * X) ** -2 + 1, {X: x}, dtype)
    assert math.isnan(reference(1 - sp.tanh(X) ** 2, {X: math.nan}, dtype))


@pytest.mark.parametrize("x, dtype", [(-30.0, "float64"), (-9.0, "float32"), (-1e38, "float32"), (0.0, "float64"),
                                      (2.5, "float64"), (1e300, "float64")])
def test_one_plus_erf_is_evaluated_as_erfc(x, dtype):
    # 1 + erf(u) = erfc(-u): literally it cancels ~1.44 u**2 bits at negative u; gelu's forward
    # and f' and every erf gate have it
    import mpmath

    fmt = {"float32": (24, -126, 127), "float64": (53, -1022, 1023)}[dtype]
    with mpmath.workprec(256):
        u = mpmath.mpf(x) / mpmath.sqrt(2)
        exact = mpmath.mpf(x) * mpmath.erfc(-u) / 2 if abs(x) < 1e100 else (mpmath.mpf(x) if x > 0 else mpmath.mpf(0))
    got = reference(X * (1 + sp.erf(X / sp.sqrt(2))) / 2, {X: x}, dtype)
    assert got == round_to_format(exact, *fmt)
    assert math.copysign(1.0, got) == math.copysign(1.0, x) or x == 0.0     # x * (tiny > 0): the sign of x
    assert reference(3 - 3 * sp.erf(X), {X: -x}, dtype) == reference(3 * sp.erfc(X), {X: -x}, dtype)
    assert math.isnan(reference(1 + sp.erf(X), {X: math.nan}, dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("x", [-30.0, -100.0, -316.2, -740.0, -1000.0, -1e300])
def test_a_log_of_a_computed_value_near_1_raises_the_precision(x, dtype):
    """log(1 + exp(x)) at x = -316 is log1p(exp(x)), i.e. exp(x) to the last bit; the sum 1 + exp(x) cancels nothing,
    but at any precision below 456 bits it rounds to 1 and the log to 0 (the selection sweep's
    reference said 0 there, and every candidate but log(exp(x) + 1) itself looked 1e18 ULP off)."""
    import mpmath

    with mpmath.workprec(4000):
        want = mpmath.log1p(mpmath.exp(x))
        shifted = mpmath.log((1 + mpmath.exp(5 * x)) / (1 + mpmath.exp(5 * (x - 1)))) / 5
    fmt = {"float32": (24, -126, 127), "float64": (53, -1022, 1023)}[dtype]
    assert reference(sp.log(1 + sp.exp(X)), {X: x}, dtype) == round_to_format(want, *fmt)
    expr = sp.log((1 + sp.exp(5 * X)) / (1 + sp.exp(5 * (X - 1)))) / 5
    assert reference(expr, {X: x}, dtype) == round_to_format(shifted, *fmt)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_limits_that_grow_like_a_log_or_shrink_past_the_subnormals(dtype):
    """asinh(x) and its textbook spelling log(x + sqrt(x^2 + 1)) grow without bound, too slowly to
    overflow at x = 2**16384 (the limit was NaN, and verify called the kernel's inf at x = inf
    infinitely wrong); the derivative of the spelling shrinks to 0 at -inf, but cancels twice, and
    at x = -2**16384 its evaluation ran out of precision (NaN) before two points agreed."""
    spelled = sp.log(X + sp.sqrt(X**2 + 1))
    for expr in (sp.asinh(X), spelled):
        assert limit_at_infinity(expr, {}, 1, dtype) == math.inf
        assert limit_at_infinity(expr, {}, -1, dtype) == -math.inf
    assert limit_at_infinity(sp.diff(spelled, X), {}, -1, dtype) == 0.0
    assert limit_at_infinity(sp.atan(X), {}, 1, dtype) == pytest.approx(math.pi / 2)
    assert math.isnan(limit_at_infinity(sp.sin(X), {}, 1, dtype))
    assert math.isnan(limit_at_infinity(X * sp.sin(X), {}, 1, dtype))


def test_the_fixed_precision_model_underflows_as_double_double_does():
    """m-arcsinh's derivative as printed for double-double, (asinh(x)/24) / sqrt(x): at x = 5e-324
    the first product is below the smallest subnormal, 0 in the kernel whatever the division
    after it does; the model (mpmath at 100 bits, one product at a time, results below 2**-969 on
    the subnormal grid) says so too, and selection no longer takes that form there."""
    from actgen.reference import evaluate_fixed

    t0 = sp.Symbol("t0", positive=True)              # sqrt(x), a temporary of the kernel
    expr = sp.asinh(X) / (24 * t0)
    tiny, big = float(np.finfo(np.float64).smallest_subnormal), float(np.finfo(np.float64).max)
    at = {X: tiny, t0: math.sqrt(tiny)}
    assert evaluate_fixed(expr, at, 100, big, tiny) == 0
    assert evaluate_fixed(expr, at, 100, big) > 0                  # no quantum: no underflow
    at = {X: 1e-300, t0: 1e-150}
    assert float(evaluate_fixed(expr, at, 100, big, tiny)) == pytest.approx(1e-150 / 24, rel=1e-15)
