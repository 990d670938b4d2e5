"""actgen verify --orders for the built-ins (issue 27): the causes found by running it on all 43
(each test failed before its fix), the docs page's table of orders 2 and 3, and (slow) the
sweep itself: every built-in's f'' and f''' within its stated budget."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from actgen import docs, library
from actgen.derive import derive
from actgen.functions import sigmoid
from actgen.guards import asymptotic_expansion
from actgen.higher import derived_activation, parse_any
from actgen.ir import X, Form
from actgen.loading import spec_table
from actgen.measure import evaluate_form, term_scale
from actgen.rewrite import stable_form


def _builtin(name):
    table, path = spec_table(name, None)
    return parse_any(name, table, path=str(path))


def test_a_sum_inside_a_piecewise_or_a_product_is_measured_by_its_terms():
    # softplus's f''' (its threshold makes it a Piecewise) cancels near 0 as softplus_plain's
    # does: its error is relative to the terms (1/4), not to the value (-x/8): it was measured
    # in ULPs of the value, 8.7e15 "ULP" at x = 6.6e-77
    s, u = sigmoid(-X), sigmoid(X)
    cancelling = s**2 * u - s * u**2
    xs = np.array([6.6437e-77, -1e-30, 1.0])
    want = np.array([0.25, 0.25, float(sp.N((s * u).subs(X, 1)))])
    piecewise = sp.Piecewise((0, X > 20), (cancelling, True))
    assert np.allclose(term_scale(piecewise, xs, {}), want, rtol=1e-12)
    product = sp.Symbol("beta", real=True) ** 2 * cancelling
    assert np.allclose(term_scale(product, xs, {"beta": 2.0}), 4 * want, rtol=1e-12)
    # above the threshold: the constant branch
    assert term_scale(piecewise, np.array([25.0]), {})[0] == 0


def test_derived_orders_are_differentiated_from_the_stable_rewrite():
    # softplus_plain is log(1 + exp(x)): differentiated as written, f'' was
    # exp(x)/(exp(x) + 1) - exp(2x)/(exp(x) + 1)^2, inf/inf = NaN from x = 355 (no rewrite of
    # that sum recovers it); from softplus(x), it is sigmoid(x) sigmoid(-x)
    act = _builtin("softplus_plain")
    xs = np.array([-800.0, -30.0, 0.0, 1e-30, 30.0, 400.0, 1.58e6])
    for k in (2, 3):
        derived = derived_activation(act, k - 1)
        kernel = {kk.name: kk for kk in derive(derived)}["backward"]          # f^(k)
        got = evaluate_form(stable_form(kernel, derived.expr), xs, {}, "float64", "dtype")
        assert np.isfinite(got).all(), (k, got)
        assert not derived.expr.has(sp.exp)
    third = sp.diff(sp.log(1 + sp.exp(X)), X, 3)
    want = [float(third.subs(X, v).evalf(50)) for v in (-3.0, 0.5, 2.0)]
    got = evaluate_form(stable_form(kernel, derived.expr), np.array([-3.0, 0.5, 2.0]), {}, "float64", "dtype")
    assert np.allclose(got, want, rtol=1e-14)


def _record(activation, kernel, kind, dtype, order, error, budget, of, max_ulp=None):
    return dict(activation=activation, backend="c", dtype=dtype, kernel=kernel, kind=kind, points=100,
                max_ulp=error if max_ulp is None else max_ulp, p99_ulp=1.0, worst_x=0.5, worst_got=0.0,
                worst_ref=0.0, nonfinite_extra=0, nonfinite_missing=0, budget=budget, error=error, unit="ulp",
                order=order, of=of, passed=error <= budget)


def test_the_verification_page_has_a_table_of_orders_two_and_three():
    records = [_record("tanh", "forward", "forward", "float64", 0, 1.0, 3.0, "tanh"),
               _record("tanh", "backward", "backward", "float64", 1, 2.0, 8.0, "tanh"),
               _record("tanh_d1", "forward", "forward", "float64", 1, 2.0, 8.0, "tanh"),
               _record("tanh_d1", "backward", "backward", "float64", 2, 3.0, 8.0, "tanh", max_ulp=5e6),
               _record("tanh_d2", "forward", "forward", "float64", 2, 4.0, 8.0, "tanh"),
               _record("tanh_d2", "backward", "backward", "float64", 3, 9.0, 8.0, "tanh")]
    text = docs.render_verification(records, "actgen verify tanh --orders 3")
    orders = text.split("## Higher derivatives", 1)[1].split("\n## ", 1)[0]
    assert "| tanh | float64 | c | 2 | 2 | 5e+06 | 4 | 8 | tanh_d2 forward | 0 | ok |" in orders
    assert "| tanh | float64 | c | 3 | 1 | 9 | 9 | 8 | tanh_d2 backward | 0 | OVER BUDGET |" in orders
    assert "| tanh | float64 | c | 1 |" not in orders
    assert "## Higher derivatives" not in docs.render_verification(records[:2], "actgen verify tanh")


@pytest.mark.slow       # all 43 built-ins, orders 2 and 3, both dtypes, C, quick sweep: 8m45s on 2 CPUs
def test_every_builtin_is_within_budget_at_orders_two_and_three():
    from actgen.verify import verify

    failures = []
    for name in library.names():
        act = _builtin(name)
        for r in verify(act, backends=("c",), quick=True, orders=3):
            if (r.order or 0) >= 2 and not r.passed:
                failures.append(f"{name} {r.activation} {r.kernel} {r.dtype} order {r.order}: "
                                f"{r.error:g} > {r.budget:g} at x = {r.worst_x:g}")
    assert not failures, "\n".join(failures)


def test_an_expansion_at_infinity_is_counted_from_its_leading_power():
    # squareplus's f''' for x > 1 (its stable form overflows x**2 from 1e154 on: NaN at 8.9e170):
    # -3b/2 x^-4 + 15b^2/4 x^-6 - ..., every other power; the first series orders asked for
    # (t^6, t^8, t^12) held 4 terms at most, and no expansion was found (the build was refused)
    act = derived_activation(_builtin("squareplus"), 2)
    b = sp.Symbol("b", real=True)
    tail = -3 * b / (2 * sp.sqrt((b + X**2) / X**2) * (b + X**2) ** 2)
    found = asymptotic_expansion(tail, act, 1)
    assert found is not None
    expansion, edge = found
    assert sp.expand(expansion - (-3 * b / (2 * X**4) + 15 * b**2 / (4 * X**6) - 105 * b**3 / (16 * X**8)
                                  + 315 * b**4 / (32 * X**10))) == 0
    assert 1 < edge <= 2.0**12


def test_tanhshrink_third_derivative_is_within_the_size_limit():
    # its Pade branch's polynomials in Horner form: differentiated three times, over
    # differentiate's limit (the derived order 2 could not be built); expanded first, and the
    # stable source falling back to the exact derivative where the rewritten one is too large
    from actgen.rewrite import stable_source

    derived = derived_activation(_builtin("tanhshrink"), 2)
    third = {k.name: k for k in derive(derived)}["backward"]
    source, _ = stable_source(third, derived.expr)
    xs = np.array([-1.5, -0.25, 1e-3, 0.5, 1.999, 3.0])
    got = evaluate_form(stable_form(third, derived.expr), xs, {}, "float64", "dtype")
    exact = sp.diff(X - sp.tanh(X), X, 3)
    want = np.array([float(exact.subs(X, v).evalf(30)) for v in xs])
    assert np.allclose(got, want, rtol=1e-9, atol=1e-12)     # (the Pade branch is within 1e-16 of tanh)
    assert sp.count_ops(source) < 2000


def test_derivative_orders_are_chosen_on_the_full_sweep(monkeypatch):
    # mish's third derivative chosen on the quick sweep (81 grid points on [-30, 30]) was cut into
    # regimes at x = 9.78 with 5 ULP at 9.0 and 9.75 and 14 at 9.5, which only verify's full
    # sweep has (15 ULP on the host, over the budget of 8)
    from actgen import select

    asked = []
    real = select.make_sweep
    monkeypatch.setattr(select, "make_sweep", lambda *a, **kw: asked.append(kw["quick"]) or real(*a, **kw))
    monkeypatch.setattr(select, "choose", lambda act, k, sweep, limits=None: None)
    linear = _builtin("linear")
    select.choose_all(linear)
    select.choose_all(derived_activation(linear, 1))
    assert asked == [True, True, False, False]
