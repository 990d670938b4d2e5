"""Derivation: kink conventions (PyTorch's) and derivatives checked against finite differences."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp

from actgen import library
from actgen.ir import X, param_symbol
from actgen.derive import derive, differentiate, kink_points
from actgen.errors import DerivationError
from actgen.reference import evaluate
from actgen.spec import parse_spec_text

A = sp.Symbol("a", real=True)


def deriv_at(expr, point, var=X, **params):
    d = differentiate(expr, var)
    return d.subs({param_symbol(k): v for k, v in params.items()}).subs(X, point)


@pytest.mark.parametrize("expr, point, expected", [
    (sp.Max(0, X), 0, 0),                        # relu'(0) = 0 (PyTorch, JAX), not Heaviside(0) = 1/2
    (sp.Max(X, 0), 0, 0),
    (sp.Min(sp.Max(0, X), 6), 0, 0),             # relu6 (PyTorch hardtanh_backward): 0 at both edges
    (sp.Min(sp.Max(0, X), 6), 6, 0),
    (sp.Min(sp.Max(0, X), 6), 3, 1),
    (sp.Min(sp.Max(X + 3, 0), 6) / 6, -3, 0),    # hardsigmoid
    (sp.Min(sp.Max(X + 3, 0), 6) / 6, 3, 0),
    (sp.Abs(X), 0, 0),                           # abs'(0) = sgn(0) = 0
    (sp.Abs(X), -2, -1),
    (sp.sign(X) * X**2, 0, 0),                   # DiracDelta terms are 0
    (sp.Heaviside(X) * X, 1, 1),
    (sp.Max(X, 2 * X), 0, sp.Rational(3, 2)),    # both sides depend on x: the average
])
def test_kink_conventions(expr, point, expected):
    assert deriv_at(expr, point) == expected


def test_piecewise_boundary_belongs_to_the_branch_whose_condition_holds():
    leaky = sp.Piecewise((X, X > 0), (A * X, True))
    assert deriv_at(leaky, 0) == A                 # PyTorch leaky_relu: slope at 0
    inclusive = sp.Piecewise((X, X >= 0), (A * X, True))
    assert deriv_at(inclusive, 0) == 1


def test_sympy_heaviside_is_gone_from_max_derivatives():
    d = differentiate(sp.Max(0, X), X)
    assert not d.has(sp.Heaviside) and not d.has(sp.DiracDelta)


def test_parameter_derivative_treats_x_as_constant():
    prelu = sp.Piecewise((X, X > 0), (A * X, True))
    d = differentiate(prelu, A)
    assert d.subs(X, -2) == -2 and d.subs(X, 0) == 0 and d.subs(X, 3) == 0


def test_derive_lists_forward_backward_and_one_kernel_per_learnable():
    (act,) = parse_spec_text('[s]\nexpr = "x*sigmoid(b*x) + c*x"\nparams = {b = 1.0, c = 0.5}\n'
                             'learnable = ["c", "b"]\n', path="s.toml")
    kernels = derive(act)
    assert [k.name for k in kernels] == ["forward", "backward", "grad_c", "grad_b"]
    assert [k.kind for k in kernels] == ["forward", "backward", "param_grad", "param_grad"]
    assert kernels[2].exact == X


def test_derivative_size_limit_gives_a_clear_error():
    expr = X
    for _ in range(9):
        expr = sp.sin(expr * sp.exp(expr) + expr**3)
    with pytest.raises(DerivationError, match="operations; simplify the expression"):
        differentiate(expr, X)


def test_kink_points_of_builtins():
    expected = {"relu": [0.0], "leaky_relu": [0.0], "hard_sigmoid": [-3.0, 3.0],
                "hard_sigmoid_keras2": [-2.5, 2.5], "softplus": [20.0], "sigmoid": []}
    for name, points in expected.items():
        (act,) = parse_spec_text(library.read(name), path=name)
        assert kink_points(act) == points, name


# ---- every built-in derivative against high-precision finite differences ------------------

def _points_away_from_kinks(act, n=24, seed=3):
    rng = np.random.default_rng(seed)
    xs = np.concatenate([rng.uniform(-8, 8, n), [-25.0, -4.5, 0.3, 7.0, 25.0]])
    kinks = kink_points(act)
    return [float(x) for x in xs if all(abs(x - k) > 1e-3 for k in kinks)]


@pytest.mark.parametrize("name", library.names())
def test_symbolic_derivatives_match_finite_differences(name):
    (act,) = parse_spec_text(library.read(name), path=name)
    params = {param_symbol(p): v for p, v in act.params.items()}
    for kernel in derive(act):
        if kernel.kind == "forward":
            continue
        var = X if kernel.kind in ("backward", "backward_y") else param_symbol(kernel.param)
        for x in _points_away_from_kinks(act):
            values = {**params, X: x}

            def f(t):
                return evaluate(act.expr, {**values, var: t}, 300)

            with mpmath.workprec(300):
                fd = mpmath.diff(f, mpmath.mpf(values[var]), h=mpmath.mpf(2) ** -60)
            if kernel.kind == "backward_y":       # f' written with y = f(x)
                from actgen.ir import Y

                exact = evaluate(kernel.exact, {**params, Y: evaluate(act.expr, values, 300)}, 300)
            else:
                exact = evaluate(kernel.exact, values, 300)
            scale = max(abs(fd), mpmath.mpf(1e-300))
            assert abs(exact - fd) <= mpmath.mpf(1e-25) * max(scale, 1), (name, kernel.name, x, exact, fd)
