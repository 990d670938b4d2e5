"""float32 kernels computed in float on an interval only (select.Choice.float_range).

silu's x * sigmoid(x) in float loses 51 ULP where sigmoid(x) is subnormal (x < -87) and the
product is not; everywhere else it is within 1-2 ULP. Selection then keeps the float form on
the interval where it measured within its share of the budget and the double form elsewhere:
the C loops check each block of render.FLOAT_BLOCK inputs and compute a block with any input
outside the interval (NaN, and +-inf where that bound is finite) in double, and every block in
double where the parameters lie outside the box selection certified the interval for (a learnable
parameter's default +- 50%: training moves it at every step). These tests check the choice, each path of the loops, that the paths really differ
(so that the tests can fail) and that both stay accurate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from scipy.special import erfc

import actgen
from actgen import library
from actgen.render import FLOAT_BLOCK
from actgen.derive import derive
from actgen.ranges import RANGE_MIN, box_points, float_range, param_box
from actgen.select import choose_all
from actgen.show import describe_choice
from actgen.spec import parse_spec_text
from actgen.measure import ulp_distance
from actgen.sweep import make_sweep
from actgen.verify import check, check_param_box

from conftest import requires_cc

TOP = float(np.finfo(np.float32).max)


def _choices(name):
    act = next(a for a in parse_spec_text(library.read(name)) if a.name == name)
    return choose_all(act)


@pytest.mark.parametrize("name", ["silu", "swish"])
def test_silu_and_swish_compute_in_float_above_the_subnormal_sigmoid(name):
    choices = _choices(name)
    for kernel in ("forward", "backward"):
        c = choices[kernel, "float32"]
        assert c.c_compute == "float" and c.fallback is not None, kernel
        lo, hi = c.float_range
        # the float form gives at +inf what the double one gives: the bound is open there (but for
        # swish's f' at beta = 1.5, where beta x overflows from x = 2.3e38 and f' = t + u t (1 - t)
        # is inf * 0 in float: it holds below that)
        open_above = hi == math.inf or (name, kernel) == ("swish", "backward") and hi > 1e38
        assert -88.0 <= lo <= -RANGE_MIN and open_above, (kernel, c.float_range)
        assert c.error <= 2.0
        assert choices[kernel, "float64"].float_range is None
    # sums are not split into blocks: a parameter's gradient is never ranged
    for (kernel, dtype), c in choices.items():
        if kernel.startswith("grad_"):
            assert c.float_range is None


def test_float_range_is_the_interval_around_zero_clear_of_the_bad_points():
    xs = np.array([-200.0, -90.0, -88.0, -40.0, -1.0, 0.0, 1.0, 50.0, 1e30, np.nan, np.inf], np.float32)
    dist = np.array([0, 9, 0, 0, 0, 0, 0, 0, 0, np.inf, np.inf])
    # the nearest bad point below is -90; the last good one inside is -88, pulled in by 1/32
    assert float_range(xs, dist, 2.0) == (-85.0, TOP)
    dist[7] = 3.0                           # 50 over: hi = floor(1 * 31/32) -> too narrow
    assert float_range(xs, dist, 2.0) is None
    dist[7] = 0.0
    dist[5] = 3.0                           # 0 itself over: no interval
    assert float_range(xs, dist, 2.0) is None


def _rounded_double(act, x, **params):
    """The float64 kernel rounded to float32: within 1 ULP of the correctly rounded value."""
    return np.asarray(act(x.astype(np.float64), **params)).astype(np.float32)


@requires_cc
def test_in_range_blocks_compute_in_float_and_blocks_with_an_outlier_in_double():
    silu = actgen.load("silu")
    x = np.linspace(-84.0, 84.0, 16 * FLOAT_BLOCK, dtype=np.float32)
    fast = np.asarray(silu(x))
    mixed = x.copy()
    mixed[::FLOAT_BLOCK] = np.nan            # every block has a NaN: all of it in double
    slow = np.asarray(silu(mixed))
    keep = ~np.isnan(mixed)
    ref = _rounded_double(silu, x)
    assert np.isnan(slow[~keep]).all()
    assert (fast[keep] != slow[keep]).any()  # the two paths are different code
    assert ulp_distance(fast, ref).max() <= 2
    assert ulp_distance(slow[keep], ref[keep]).max() <= 1
    # one input below the interval sends its block (only) to double, and is accurate there
    low = x.copy()
    low[3 * FLOAT_BLOCK + 7] = -100.0
    got = np.asarray(silu(low))
    block = slice(3 * FLOAT_BLOCK, 4 * FLOAT_BLOCK)
    np.testing.assert_array_equal(np.delete(got, np.r_[block]), np.delete(fast, np.r_[block]))
    assert ulp_distance(got[block], _rounded_double(silu, low)[block]).max() <= 1
    assert got[3 * FLOAT_BLOCK + 7] != 0 and got[3 * FLOAT_BLOCK + 7] > -1e-40   # subnormal, kept
    # the backward (dx = dy f') takes the same paths
    dy = np.ones_like(x)
    dfast = np.asarray(silu.backward(x, dy))
    dslow = np.asarray(silu.backward(mixed, dy))
    assert (dfast[keep] != dslow[keep]).any()


def test_a_bound_opens_only_where_the_float_form_agrees_at_that_infinity():
    from actgen.ir import X
    from actgen.ir import Form
    from actgen.ranges import open_ended as _open_ended
    twice, nan_there, one = Form((), X + X), Form((), X - X), Form((), sp.Integer(1))
    for form in (twice, nan_there):           # +-inf in both; NaN in both
        assert _open_ended((-85.0, TOP), form, form, {}, "float32") == (-85.0, math.inf)
        assert _open_ended((-TOP, 12.0), form, form, {}, "float32") == (-math.inf, 12.0)
        assert _open_ended((-TOP, TOP), form, form, {}, "float32") == (-math.inf, math.inf)
    assert _open_ended((-85.0, 40.0), twice, twice, {}, "float32") == (-85.0, 40.0)
    assert _open_ended((-85.0, TOP), twice, one, {}, "float32") == (-85.0, TOP)     # inf against 1


def test_the_float_variant_drops_the_guards_its_blocks_never_need():
    """silu's float32 blocks hold x in [-85, inf]: the guard at x = -inf is dead there, the one
    at +inf (f' = 1, where the form gives inf * 0) is not."""
    from actgen.ranges import within
    choices = _choices("silu")
    forward, backward = choices["forward", "float32"], choices["backward", "float32"]
    assert len(forward.form.guards) == 1 and len(backward.form.guards) == 2
    assert within(forward.form, forward.float_range).guards == ()
    assert not within(forward.form, forward.float_range).result.has(sp.Piecewise)
    kept = within(backward.form, backward.float_range)
    assert len(kept.guards) == 1 and float(kept.guards[0]) == 1.0
    # on a closed interval both go; on the whole line both stay
    assert within(backward.form, (-85.0, 80.0)).guards == ()
    assert len(within(backward.form, (-math.inf, math.inf)).guards) == 2


@requires_cc
def test_an_infinite_input_stays_on_the_float_path_where_the_bound_is_open():
    silu = actgen.load("silu")
    x = np.linspace(-84.0, 84.0, 4 * FLOAT_BLOCK, dtype=np.float32)
    fast = np.asarray(silu(x))
    up = x.copy()
    up[::FLOAT_BLOCK] = np.inf                # open above: every block still in float
    got = np.asarray(silu(up))
    keep = ~np.isinf(up)
    np.testing.assert_array_equal(got[keep], fast[keep])
    assert (got[~keep] == np.inf).all()
    down = x.copy()
    down[::FLOAT_BLOCK] = -np.inf             # closed below: every block in double
    got = np.asarray(silu(down))
    assert (got[keep] != fast[keep]).any() and (got[~keep] == 0).all()
    dy = np.ones_like(x)
    assert (np.asarray(silu.backward(up, dy))[~keep] == 1).all()


@requires_cc
def test_in_place_with_mixed_blocks_matches_out_of_place():
    silu = actgen.load("silu")
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 40.0, 10 * FLOAT_BLOCK + 13).astype(np.float32)    # some below -85
    x[::97] = np.nan
    want = np.asarray(silu(x))
    work = x.copy()
    silu(work, out=work)
    np.testing.assert_array_equal(work, want)
    dy = rng.normal(size=x.shape).astype(np.float32)
    want = np.asarray(silu.backward(x, dy))
    work = x.copy()
    silu.backward(work, dy, out=work)          # dx over x: each block checks x before writing
    np.testing.assert_array_equal(work, want)


@requires_cc
def test_parameters_outside_the_certified_box_compute_in_double():
    """swish's interval is certified for beta in [0.5, 1.5]: sigmoid(2 x) is subnormal from
    x < -43.6, so at beta = 2 the float form would lose bits inside [-57, inf]. The loop then
    computes every block in double, as the per-channel loop (which never computes in float) does."""
    swish = actgen.load("swish")
    x = np.linspace(-84.0, 84.0, 8 * FLOAT_BLOCK, dtype=np.float32)
    per_channel = np.asarray(swish(x.reshape(1, 1, -1), beta=np.array([2.0], np.float32),
                                   param_axis=1)).ravel()
    np.testing.assert_array_equal(np.asarray(swish(x, beta=2.0)), per_channel)
    assert ulp_distance(np.asarray(swish(x, beta=2.0)), _rounded_double(swish, x, beta=2.0)).max() <= 1
    # at beta = 1 the same comparison differs: the float path is taken
    per_channel = np.asarray(swish(x.reshape(1, 1, -1), beta=np.array([1.0], np.float32),
                                   param_axis=1)).ravel()
    assert (np.asarray(swish(x, beta=1.0)) != per_channel).any()


def test_gelu_computes_in_float_float_above_its_subnormal_tail():
    """GELU's float32 kernels: x/2 erfc(-x/sqrt 2) with the argument as a float-float pair and
    actgen's float erfc (the plain float form loses 95 ULP: -x/sqrt 2 rounds, and erfc magnifies
    that by 2u^2). Below x = -13.1 erfc(u) is subnormal before x/2 erfc(u) is: double there."""
    choices = _choices("gelu")
    for kernel in ("forward", "backward"):
        c = choices[kernel, "float32"]
        assert c.label == "compensated" and c.form.compensated and c.c_compute == "float", kernel
        lo, hi = c.float_range
        assert -13.0 <= lo <= -RANGE_MIN and hi == math.inf, (kernel, c.float_range)
        assert c.error <= 2.0
        assert not c.fallback.compensated                 # double needs no compensation
        plain = next(m for m in c.measured if m.label == "rewritten" and m.compute == "dtype")
        assert plain.error > 4.0                          # what compensation gained


@requires_cc
def test_gelu_float_path_is_taken_and_accurate():
    gelu = actgen.load("gelu")
    x = np.linspace(-12.0, 12.0, 16 * FLOAT_BLOCK, dtype=np.float32)
    fast = np.asarray(gelu(x))
    mixed = x.copy()
    mixed[::FLOAT_BLOCK] = -30.0             # every block has an input below -12: all in double
    slow = np.asarray(gelu(mixed))
    keep = mixed != -30.0
    ref = _rounded_double(gelu, x)
    assert (fast[keep] != slow[keep]).any()  # the two paths are different code
    assert ulp_distance(fast, ref).max() <= 2
    assert ulp_distance(slow[keep], ref[keep]).max() <= 1
    assert slow[0] == np.float32(0.5 * -30.0 * math.erfc(30.0 / math.sqrt(2.0)))   # 0: underflow
    dy = np.ones_like(x)
    dfast, dslow = np.asarray(gelu.backward(x, dy)), np.asarray(gelu.backward(mixed, dy))
    assert (dfast[keep] != dslow[keep]).any()
    dref = np.asarray(gelu.backward(x.astype(np.float64), dy.astype(np.float64))).astype(np.float32)
    # f' in ULPs of max(|f'|, sum |terms|), as verify measures it (f' has a root at x = -0.75)
    xd = x.astype(np.float64)
    terms = np.abs(xd * np.exp(-0.5 * xd**2) / math.sqrt(2 * math.pi)) + 0.5 * erfc(-xd / math.sqrt(2))
    unit = np.spacing(np.maximum(np.abs(dref.astype(np.float64)), terms).astype(np.float32)).astype(np.float64)
    assert (np.abs(dfast.astype(np.float64) - dref) / unit).max() <= 3


def _swish():
    return next(a for a in parse_spec_text(library.read("swish")) if a.name == "swish")


def test_swish_float_path_is_certified_for_a_box_of_beta():
    """beta * x rounds in float unless beta is a power of two, and sigmoid magnifies that by
    |beta x| towards -inf: the form that measured 1 ULP at beta = 1 is 3 ULP off at beta = 0.75,
    x = -3.5. Selection takes the compensated form (beta * x as an exact float pair), which holds
    for beta in [0.5, 1.5] on an interval that is narrower than at beta = 1 alone (sigmoid(1.5 x)
    is subnormal from x < -58)."""
    choices = _choices("swish")
    for kernel in ("forward", "backward"):
        c = choices[kernel, "float32"]
        assert c.param_box == (("beta", 0.5, 1.5),), kernel
        assert c.label == "compensated" and c.form.compensated, kernel
        assert -60.0 <= c.float_range[0] <= -RANGE_MIN, (kernel, c.float_range)
    assert "for beta in [0.5, 1.5]" in choices["forward", "float32"].range_text()
    # actgen show (and show --spec FILE) says it
    assert "in C in float on [-57, inf] for beta in [0.5, 1.5], else in double" in describe_choice(
        choices["forward", "float32"])


def test_the_box_grid_has_its_corners_ends_and_halfway_points():
    defaults = {"a": 1.0, "b": -2.0, "c": 0.5}
    box = param_box(defaults, ("a", "b"), 0.5)
    assert box == (("a", 0.5, 1.5), ("b", -3.0, -1.0), ("c", 0.5, 0.5))
    points = box_points(box, defaults)
    corners = [{"a": a, "b": b, "c": 0.5} for a in (0.5, 1.5) for b in (-3.0, -1.0)]
    assert points[:4] == corners
    assert {"a": 0.75, "b": -2.0, "c": 0.5} in points and {"a": 1.0, "b": -1.5, "c": 0.5} in points
    assert defaults not in points and len(points) == 4 + 2 * 4      # 4 corners, 4 on each axis
    assert param_box({"z": 0.0}, ("z",), 0.5) == (("z", -0.5, 0.5),)   # a zero default: +- span
    assert box_points(param_box(defaults, (), 0.5), defaults) == []


@requires_cc
@pytest.mark.parametrize("beta", [0.5, 0.9, 1.1, 1.5])
def test_swish_off_its_default_takes_the_float_path_within_budget(beta):
    """At 10% and 50% from beta = 1 the float32 loops compute in float (their results differ from
    the per-channel loop's, which computes in double), and are within budget against mpmath."""
    swish = actgen.load("swish")
    x = np.linspace(-50.0, 50.0, 8 * FLOAT_BLOCK, dtype=np.float32)
    dy = np.ones_like(x)
    in_double = np.asarray(swish(x.reshape(1, 1, -1), beta=np.array([beta], np.float32), param_axis=1)).ravel()
    d_double = np.asarray(swish.backward(x.reshape(1, 1, -1), dy.reshape(1, 1, -1),
                                         beta=np.array([beta], np.float32), param_axis=1)).ravel()
    assert (np.asarray(swish(x, beta=beta)) != in_double).any()
    assert (np.asarray(swish.backward(x, dy, beta=beta)) != d_double).any()
    act = _swish()
    sweep = make_sweep(act, "float32", quick=True, params={"beta": beta},
                       kernels=[k for k in derive(act) if k.kind in ("forward", "backward")])
    results = check(swish, sweep)
    assert results and all(r.passed for r in results), [r for r in results if not r.passed]


@requires_cc
def test_verify_measures_the_box_it_was_certified_for():
    swish = actgen.load("swish")
    results = check_param_box(swish, _swish(), "float32", quick=True)
    measured = {r.kernel.split(" at ")[1] for r in results}
    assert measured == {"beta=0.5", "beta=0.75", "beta=1.25", "beta=1.5"}
    assert all(r.passed for r in results), [r for r in results if not r.passed]
    assert check_param_box(swish, _swish(), "float64", quick=True) == []
