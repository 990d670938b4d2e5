"""Every built-in, both backends, both dtypes, against the independent mpmath reference.

Points: a dense grid on [-30, 30], log-spaced magnitudes of both signs from the smallest
subnormal to 30, -0 and 0, +-1e-30, +-30, every kink and its float neighbours, random draws
(about 390 per dtype). Budgets are in ULPs of the correctly rounded result.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import actgen
from actgen import library
from actgen.derive import derive
from actgen.spec import parse_spec_text
from actgen.verify import check, make_sweep, param_values, reference_values, sample_points, ulp_distance

#: (kernel kind, dtype) -> max ULPs allowed by default. glibc's vector math promises 4 ULP per
#: function; a forward kernel may chain a few of them.
BUDGET = {("forward", "float32"): 4, ("forward", "float64"): 8,
          ("backward", "float32"): 8, ("backward", "float64"): 8}

#: Measured exceptions (max over both backends, plus ~20%), each with its cause. Issue 4
#: (accuracy-driven rewriting: evaluating float32 in double, compensated arguments) removes them.
EXCEPTIONS = {
    # tails: erfc(-x/sqrt(2)) magnifies the rounding of x/sqrt(2) ~x^2 times
    ("gelu", "forward", "float32"): 160, ("gelu", "forward", "float64"): 900,
    # tails: sigmoid(u), u = c1 x + c3 x^3, magnifies u's rounding |u| times
    ("gelu_tanh", "forward", "float32"): 80, ("gelu_tanh", "forward", "float64"): 450,
    ("gelu_tanh", "backward", "float64"): 1200,
    # roots of f' (gelu -0.752, gelu_tanh -0.752, silu -1.278, mish -1.192): the terms cancel,
    # and the grid points -0.75 and -1.25 sit next to them; relative error is unbounded there
    ("gelu", "backward", "float32"): 600, ("gelu", "backward", "float64"): 400,
    ("gelu_tanh", "backward", "float32"): 600,
    ("silu", "backward", "float32"): 52, ("silu", "backward", "float64"): 42,
    ("swish", "backward", "float32"): 52, ("swish", "backward", "float64"): 42,
    ("mish", "backward", "float32"): 53, ("mish", "backward", "float64"): 56,
}

CASES = [(name, dtype) for name in library.names() for dtype in ("float32", "float64")]


@functools.lru_cache(maxsize=None)
def _activation(name):
    (act,) = parse_spec_text(library.read(name), path=library.display_path(name))
    return act


@functools.lru_cache(maxsize=None)
def _reference(name, dtype):
    """Points, dy, and the reference forward and backward values (shared by both backends)."""
    act = _activation(name)
    xs = sample_points(act, dtype, max_magnitude=30.0)
    dys = np.random.default_rng(7).uniform(-2, 2, xs.size).astype(dtype)
    params = param_values(act, dtype)
    kernels = {k.kind: k for k in derive(act)}
    return (xs, dys, reference_values(kernels["forward"].exact, xs, dtype, params),
            reference_values(kernels["backward"].exact, xs, dtype, params, dys=dys))


@pytest.mark.parametrize("backend", ["c", "numpy"])
@pytest.mark.parametrize("name, dtype", CASES, ids=[f"{n}-{d}" for n, d in CASES])
def test_forward_and_backward_within_budget(name, dtype, backend):
    act = _activation(name)
    xs, dys, ref_y, ref_dx = _reference(name, dtype)
    loaded = actgen.load(name, backend=backend)
    params = param_values(act, dtype)
    y = loaded(xs, **params)
    dx = loaded.backward(xs, dys, **params)
    assert y.dtype == dx.dtype == np.dtype(dtype)
    for kind, got, ref in (("forward", y, ref_y), ("backward", dx, ref_dx)):
        budget = EXCEPTIONS.get((name, kind, dtype), BUDGET[kind, dtype])
        dist = ulp_distance(got, ref)
        worst = int(np.argmax(dist))
        assert dist[worst] <= budget, (
            f"{name} {kind} {dtype} [{backend}]: {dist[worst]:g} ULP > {budget} at x = {xs[worst]!r} "
            f"(got {got[worst]!r}, reference {ref[worst]!r})")


@pytest.mark.parametrize("backend", ["c", "numpy"])
@pytest.mark.parametrize("name", [n for n in library.names() if _activation(n).learnable])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_parameter_gradients_within_the_sum_condition(name, dtype, backend):
    act = _activation(name)
    sweep = make_sweep(act, dtype, max_magnitude=30.0, specials=False)
    for result in check(actgen.load(name, backend=backend), sweep):
        if result.kind == "param_grad":
            # |kernel - exact| / (eps * sum|dy * df/dp|): the terms are accumulated in float64
            assert result.passed, result


@pytest.mark.parametrize("backend", ["c", "numpy"])
@pytest.mark.parametrize("name", library.names())
def test_nan_in_nan_out_in_every_kernel(name, backend):
    act = _activation(name)
    loaded = actgen.load(name, backend=backend)
    for dtype in ("float32", "float64"):
        x = np.array([np.nan, 1.0, np.nan], dtype)
        dy = np.array([1.0, np.nan, 1.0], dtype)
        assert np.isnan(loaded(x)[[0, 2]]).all() and not np.isnan(loaded(x)[1])
        assert np.isnan(loaded.backward(x, dy)).all()
        for value in loaded.param_grads(x, np.ones_like(x)).values():
            assert np.isnan(value)
    assert act.name == name


@pytest.mark.parametrize("name", library.names())
def test_backends_agree_within_rounding(name):
    """C and NumPy agree to a few roundings of the computation's scale (max(1, |value|));
    in ULPs of the result that is unbounded next to a root of f', so it is not stated in ULPs."""
    xs = np.linspace(-12, 12, 1001)
    c, n = actgen.load(name, backend="c"), actgen.load(name, backend="numpy")
    for dtype in ("float32", "float64"):
        x = xs.astype(dtype)
        dy = np.full_like(x, 0.75)
        eps = float(np.finfo(dtype).eps)
        for a, b in ((c(x), n(x)), (c.backward(x, dy), n.backward(x, dy))):
            scale = np.maximum(1.0, np.abs(a.astype(np.float64)))
            assert np.max(np.abs(a.astype(np.float64) - b) / scale) <= 64 * eps, name
