"""Every built-in, both backends, both dtypes, every exported function, against the
independent mpmath reference (actgen.verify: the same checks as `actgen verify`).

Points (per activation and dtype, the sweep of actgen verify, with random draws other than
those of the sweep that chose each kernel's form): a dense grid on
[-30, 30], log-spaced magnitudes of both signs from the smallest subnormal to the largest
finite float, -0 and 0, +-1e-30, +-30, every kink and its float neighbours, random draws, +-inf
and nan. Budgets (actgen.verify.BUDGETS, or the spec's own `budgets` with the reason in a
comment): forward kernels 4 ULP (float32) and 8 ULP (float64) of the correctly rounded value;
backward kernels the same in ULPs of max(|value|, |dy| * sum of the magnitudes of the
derivative's terms) (next to a root of f' no fixed precision keeps relative accuracy);
parameter gradients 64 eps * sum |dy * df/dp| (a sum has no useful ULP error). The default run
uses the quick sweep, the slow set (and `actgen verify --all`) the full one.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import actgen
from actgen import library
from actgen.spec import parse_spec_text
from actgen.specfile import read_tables, resolve_table
from actgen.verify import check, format_table
from actgen.sweep import make_sweep

NAMES = library.names()


@functools.lru_cache(maxsize=None)
def _activation(name):
    display = library.display_path(name)
    tables = read_tables(library.read(name), path=display)
    from actgen.spec import parse_table

    return parse_table(name, resolve_table(tables, name, display), path=display)


@functools.lru_cache(maxsize=None)
def _sweep(name, dtype, quick):
    # with other random draws than the one that chose the forms (seed 1)
    return make_sweep(_activation(name), dtype, seed=7, quick=quick)


@pytest.mark.parametrize("sweep", ["quick", pytest.param("full", marks=pytest.mark.slow)])
@pytest.mark.parametrize("backend", ["c", "numpy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_every_function_within_its_budget(name, dtype, backend, sweep):
    """The default run checks actgen verify's quick sweep (about a third of the points: every
    special value, kink and decade, fewer grid points and draws); the slow set the full one."""
    results = check(actgen.load(name, backend=backend), _sweep(name, dtype, sweep == "quick"))
    failed = [r for r in results if not r.passed]
    assert not failed, "\n" + format_table(failed)


ELEMENTWISE = [n for n in NAMES if _activation(n).kind == "elementwise"]


@pytest.mark.parametrize("backend", ["c", "numpy"])
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_nan_in_nan_out_in_every_kernel(name, backend):
    loaded = actgen.load(name, backend=backend)
    for dtype in ("float32", "float64"):
        x = np.array([np.nan, 1.0, np.nan], dtype)
        dy = np.array([1.0, np.nan, 1.0], dtype)
        assert np.isnan(loaded(x)[[0, 2]]).all() and not np.isnan(loaded(x)[1])
        assert np.isnan(loaded.backward(x, dy)).all()
        y, d = loaded.forward_with_derivative(x)
        assert np.isnan(y[[0, 2]]).all() and np.isnan(d[[0, 2]]).all()
        for value in loaded.param_grads(x, np.ones_like(x)).values():
            assert np.isnan(value)


@pytest.mark.parametrize("name", ELEMENTWISE)
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
            same = (a == b) | (np.isnan(a) & np.isnan(b))          # equal infinities (log1mexp(0))
            assert np.isfinite(a[~same]).all() and np.isfinite(b[~same]).all(), name
            a, b = a[~same].astype(np.float64), b[~same].astype(np.float64)
            scale = np.maximum(1.0, np.abs(a))
            assert np.max(np.abs(a - b) / scale, initial=0.0) <= 64 * eps, name


def test_the_verifier_catches_a_wrong_kernel(tmp_path):
    """A kernel that is off (a constant off by one in the last digits, a branch missing) is
    reported over budget: the checks can fail."""
    good = '[t]\nexpr = "x * sigmoid(x)"\n'
    (act,) = parse_spec_text(good, path="t.toml")
    sweep = make_sweep(act, "float64", quick=True)
    spec = tmp_path / "t.toml"
    # the same name and points, but the kernel computes a slightly different function
    spec.write_text('[t]\nexpr = "x * sigmoid(1.0000001 * x)"\n')
    wrong = actgen.load("t", spec=spec)
    bad = [r for r in check(wrong, sweep) if not r.passed]
    assert {r.kernel for r in bad} >= {"forward", "backward"}
    spec.write_text('[t]\nexpr = "Piecewise((x * sigmoid(x), x > -10), (0, True))"\n')  # a branch lost
    wrong = actgen.load("t", spec=spec)
    bad = [r for r in check(wrong, sweep) if not r.passed]
    assert "forward" in {r.kernel for r in bad}
    spec.write_text(good)
    assert all(r.passed for r in check(actgen.load("t", spec=spec), sweep))
