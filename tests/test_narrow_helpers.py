"""actgen's own exp, expm1, log1p on [0, 1], sigmoid and softplus for float32 kernels computed in
double (the ``_d32`` helpers of actgen/csrc/actgen_math.h), compiled on their own and compared
with NumPy's double functions (within 1 ULP of double): their relative error must stay far below
float32's 2^-24, so that rounding the kernel's double result to float32 is all that is left.
NaN, +-inf, +-0, overflow and underflow as the functions they replace."""

from __future__ import annotations


import numpy as np
import pytest


from conftest import double_helpers, requires_cc

BOUND = 2.0 ** -33   # relative error allowed (float32: 2^-24); measured: exp 2^-36.6, expm1 2^-35, log1p 2^-39.3

HELPERS = ("exp", "expm1", "log1p_unit", "tanh", "cosh", "sigmoid", "softplus")


@pytest.fixture(scope="module", params=["target", "no-fma"])
def helpers(request, tmp_path_factory):
    """The helpers built for this machine, and for baseline x86-64 (ACTGEN_MARCH=x86-64: no fused
    multiply-add, so ACTGEN_MAD is a multiply and an add)."""
    return double_helpers("_actgen_narrow_test", HELPERS, "d32", request.param,
                          tmp_path_factory.mktemp("narrow"))


def _relative(got, ref):
    with np.errstate(all="ignore"):
        return np.where(got == ref, 0.0, np.abs(got - ref) / np.abs(ref))


def _specials():
    return np.array([0.0, -0.0, 1e-30, -1e-30, np.inf, -np.inf, np.nan, 1e300, -1e300])


@requires_cc
def test_exp_d32(helpers):
    rng = np.random.default_rng(1)
    x = np.concatenate([np.linspace(-745.2, 709.8, 400001), rng.uniform(-30, 30, 200000),
                        np.geomspace(1e-300, 1.0, 2000), -np.geomspace(1e-300, 1.0, 2000)])
    with np.errstate(over="ignore"):
        ref = np.exp(x)
    got = helpers("exp", x)
    normal = ref >= np.finfo(np.float64).tiny
    assert _relative(got, ref)[normal].max() < BOUND
    # subnormal doubles: 0 in a float32 result anyway, but rounded once, not garbage
    assert np.all(np.abs(got[~normal] - ref[~normal]) <= 2.0 ** -1074 * 2 + BOUND * ref[~normal])
    got = helpers("exp", _specials())
    assert got[:4].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert got[4] == np.inf and got[5] == 0.0 and np.isnan(got[6]) and got[7] == np.inf and got[8] == 0.0
    assert helpers("exp", np.array([709.79, 710.0, -745.2, -746.0, -1e4])).tolist() == [np.inf, np.inf, 0.0, 0.0, 0.0]


@requires_cc
def test_expm1_d32(helpers):
    x = np.concatenate([np.linspace(-40.0, 88.0, 300001), np.geomspace(1e-310, 2.0, 5000),
                        -np.geomspace(1e-310, 2.0, 5000), np.linspace(-0.36, 0.36, 100001)])
    got, ref = helpers("expm1", x), np.expm1(x)
    assert _relative(got, ref).max() < BOUND
    got = helpers("expm1", _specials())
    assert [np.copysign(1, v) for v in got[:2]] == [1.0, -1.0] and got[0] == 0 and got[1] == 0
    assert got[2] == 1e-30 and got[3] == -1e-30
    assert got[4] == np.inf and got[5] == -1.0 and np.isnan(got[6]) and got[7] == np.inf and got[8] == -1.0


@requires_cc
def test_log1p_unit_d32(helpers):
    e = np.concatenate([np.linspace(0.0, 1.0, 300001), np.geomspace(5e-324, 1.0, 20000)])
    got, ref = helpers("log1p_unit", e), np.log1p(e)
    assert _relative(got, ref).max() < BOUND
    assert helpers("log1p_unit", np.array([0.0, np.nan]))[0] == 0.0
    assert np.isnan(helpers("log1p_unit", np.array([np.nan]))[0])


@requires_cc
def test_sigmoid_and_softplus_d32(helpers):
    z = np.concatenate([np.linspace(-800.0, 800.0, 400001), np.linspace(-20.0, 20.0, 200001)])
    e = np.exp(-np.abs(z))
    sigmoid = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    softplus = np.maximum(z, 0) + np.log1p(e)
    for name, ref in (("sigmoid", sigmoid), ("softplus", softplus)):
        got = helpers(name, z)
        normal = np.abs(ref) >= np.finfo(np.float64).tiny
        assert _relative(got, ref)[normal].max() < 2 * BOUND, name
    got = helpers("sigmoid", _specials())
    assert got[:4].tolist() == [0.5, 0.5, 0.5, 0.5] and got[4] == 1.0 and got[5] == 0.0 and np.isnan(got[6])
    got = helpers("softplus", _specials())
    assert got[4] == np.inf and got[5] == 0.0 and np.isnan(got[6]) and got[7] == 1e300 and got[8] == 0.0


@requires_cc
def test_tanh_and_cosh_d32(helpers):
    a = np.concatenate([np.linspace(-40.0, 40.0, 400001), np.geomspace(1e-310, 1.0, 5000),
                        -np.geomspace(1e-310, 1.0, 5000), np.linspace(-800.0, 800.0, 100001)])
    assert _relative(helpers("tanh", a), np.tanh(a)).max() < BOUND
    with np.errstate(over="ignore"):
        ref = np.cosh(a)
    assert _relative(helpers("cosh", a), ref).max() < BOUND
    got = helpers("tanh", _specials())
    assert got[0] == 0 and np.copysign(1, got[1]) == -1 and got[2] == 1e-30 and got[3] == -1e-30
    assert got[4] == 1.0 and got[5] == -1.0 and np.isnan(got[6]) and got[7] == 1.0 and got[8] == -1.0
    got = helpers("cosh", _specials())
    assert got[:4].tolist() == [1.0, 1.0, 1.0, 1.0] and got[4] == got[5] == got[7] == got[8] == np.inf
    assert np.isnan(got[6])
