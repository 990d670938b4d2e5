"""actgen's own exp for float64 kernels (actgen_exp_f64 and, for exp(-|z|), actgen_exp_neg_f64 of
actgen/csrc/actgen_math.h) and the sigmoid and softplus helpers built on it, compiled on their own and compared with
correctly rounded mpmath values and with NumPy's (glibc's) exp, in ULPs of double. Within
1 ULP of exp (faithful: one of the two doubles around the exact value), subnormal results
rounded once, NaN/inf/0 as exp; on the baseline x86-64 build (no fused multiply-add) too."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from actgen.measure import ulp_distance

from conftest import double_helpers, requires_cc

HELPERS = ("exp", "exp_neg", "sigmoid", "softplus")
TINY = 5e-324


@pytest.fixture(scope="module", params=["target", "no-fma"])
def helpers(request, tmp_path_factory):
    return double_helpers("_actgen_double_test", HELPERS, "f64", request.param,
                          tmp_path_factory.mktemp("double"))


def _exact(f, xs):
    """f at each x (mpmath, 200 bits), correctly rounded to double."""
    with mpmath.workprec(200):
        return np.array([float(f(mpmath.mpf(float(x)))) for x in xs])


def _exact_error(got, xs, f):
    """max |got - exact| in ULPs of the exact value (< 1: faithfully rounded)."""
    worst = 0.0
    with mpmath.workprec(200):
        for g, x in zip(got, xs):
            exact = f(mpmath.mpf(float(x)))
            step = np.spacing(abs(float(exact))) if float(exact) != 0 else TINY
            worst = max(worst, float(abs(mpmath.mpf(float(g)) - exact) / max(step, TINY)))
    return worst


def _negatives(rng, n):
    return np.concatenate([-rng.uniform(0, 746, n), -np.exp(rng.uniform(-700, np.log(746), n)),
                           -rng.uniform(708, 746, n // 4),            # subnormal and tiny normal results
                           -rng.uniform(0, 0.35, n // 4)])            # k = 0: the polynomial alone


@requires_cc
def test_exp_neg_is_faithful(helpers):
    rng = np.random.default_rng(3)
    a = _negatives(rng, 1500)
    got = helpers("exp_neg", a)
    assert _exact_error(got, a, mpmath.exp) < 1.0          # measured: 0.87 (without fma 0.85)
    # a large sample against glibc's exp (within 1 ULP as well): at most 1 ULP apart (9% differ)
    a = np.concatenate([np.linspace(-746.0, 0.0, 1_000_001), _negatives(rng, 200_000)])
    assert ulp_distance(helpers("exp_neg", a), np.exp(a)).max() <= 1


@requires_cc
def test_exp_is_faithful_over_the_whole_range(helpers):
    rng = np.random.default_rng(5)
    a = np.concatenate([_negatives(rng, 1000), -_negatives(rng, 1000)[:1500] * (709.78 / 746)])
    got = helpers("exp", a)
    assert _exact_error(got, a, mpmath.exp) < 1.0           # measured: 0.80 (without fma 0.83)
    a = np.concatenate([np.linspace(-746.0, 709.78, 1_000_001), rng.uniform(-30, 30, 200_000)])
    assert ulp_distance(helpers("exp", a), np.exp(a)).max() <= 1
    neg = -rng.uniform(0, 746, 100_000)                          # exp_neg's values, where both apply
    assert np.array_equal(helpers("exp", neg), helpers("exp_neg", neg))


@requires_cc
def test_exp_special_values(helpers):
    a = np.array([0.0, -0.0, 1e-30, -1e-30, np.inf, -np.inf, np.nan, 709.78, 709.79, 710.0, 1e4, 1e308,
                  -745.1332191019411, -746.0, -1e308])
    got = helpers("exp", a)
    assert got[:4].tolist() == [1.0, 1.0, 1.0, 1.0] and got[4] == np.inf and got[5] == 0.0 and np.isnan(got[6])
    assert got[7] == np.exp(709.78) and np.isfinite(got[7]) and np.all(got[8:12] == np.inf)
    assert got[12] == TINY and got[13] == got[14] == 0.0


@requires_cc
def test_exp_neg_special_values(helpers):
    a = np.array([0.0, -0.0, -1e-30, -TINY, -np.inf, np.nan, -746.0, -1e4, -1e308,
                  -745.1332191019411, -708.3964185322641, -709.0])
    got = helpers("exp_neg", a)
    assert got[:4].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert got[4] == 0.0 and np.isnan(got[5]) and got[6] == got[7] == got[8] == 0.0
    assert got[9] == TINY                                   # the smallest subnormal, rounded once
    assert ulp_distance(got[10:], np.exp(a[10:])).max() <= 1


@requires_cc
def test_sigmoid_and_softplus_f64(helpers):
    rng = np.random.default_rng(4)
    z = np.concatenate([rng.uniform(-40, 40, 1500), rng.uniform(-800, 800, 500), -rng.uniform(700, 746, 300),
                        np.geomspace(1e-300, 1, 200), -np.geomspace(1e-300, 1, 200)])
    sig = helpers("sigmoid", z)
    assert ulp_distance(sig, _exact(lambda v: 1 / (1 + mpmath.exp(-v)), z)).max() <= 3   # measured: 2
    soft = helpers("softplus", z)
    assert ulp_distance(soft, _exact(lambda v: mpmath.log1p(mpmath.exp(v)), z)).max() <= 2  # measured: 1
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e300, -1e300])
    got = helpers("sigmoid", specials)
    assert got[:4].tolist() == [0.5, 0.5, 1.0, 0.0] and np.isnan(got[4]) and got[5] == 1.0 and got[6] == 0.0
    got = helpers("softplus", specials)
    assert got[2] == np.inf and got[3] == 0.0 and np.isnan(got[4]) and got[5] == 1e300 and got[6] == 0.0
    assert got[0] == got[1] == np.log(2.0)
