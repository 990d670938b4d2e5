"""Derivatives of any order (actgen/orders.py): act.derivative, backward(order=k),
derivative_activation(k) and its mixed parameter derivatives, against SymPy's derivatives
evaluated in mpmath; kinks at the kink; the derived tables' cache keys.

Tolerances: f^(k) of the float64 kernels within 2^-40 relative to max(|f^(k)|, 1) (the
derivative kernels are verified to 8 conditioned ULPs by actgen verify --orders; this checks
the plumbing, orders and parameters, with room for the conditioning of the smallest values).
"""

from __future__ import annotations

import subprocess
import sys

import mpmath
import numpy as np
import pytest
import sympy as sp

import actgen
from actgen.errors import KernelArgumentError
from actgen.orders import derived_table
from conftest import ROOT, requires_cc, run_cli

pytestmark = requires_cc

XS = np.array([-7.5, -3.0, -1.25, -0.5, -1e-3, 0.0, 0.3, 1.0, 2.5, 6.0])


def _symbolic(expr_text, k, params=None):
    """d^k/dx^k of an expression in x, as a function of x in 60-digit mpmath."""
    x = sp.Symbol("x", real=True)
    syms = {p: sp.Symbol(p, real=True) for p in (params or {})}
    expr = sp.sympify(expr_text, locals={"x": x, **syms}).subs({syms[p]: v for p, v in (params or {}).items()})
    d = sp.lambdify(x, sp.diff(expr, x, k), "mpmath")
    with mpmath.workdps(60):
        return np.array([float(d(mpmath.mpf(float(v)))) for v in XS])


def _close(got, want):
    scale = np.maximum(np.abs(want), 1.0)
    assert np.all(np.abs(np.asarray(got, np.float64) - want) <= 2.0 ** -40 * scale), (got, want)


@pytest.mark.parametrize("backend", ["c", pytest.param("numpy", marks=pytest.mark.slow)])
def test_tanh_orders_one_to_three(backend):
    act = actgen.load("tanh", backend=backend)
    for k in (1, 2, 3):
        want = _symbolic("tanh(x)", k)
        _close(act.derivative(XS, k), want)
        dy = np.linspace(-2, 2, XS.size)
        _close(act.backward(XS, dy, order=k) / np.where(dy == 0, 1, dy), np.where(dy == 0, 0, want))
    d2 = act.derivative_activation(2)
    assert d2.order == 2 and d2.backend == act.backend
    _close(d2(XS), _symbolic("tanh(x)", 2))
    assert act.derivative_activation(0) is act
    assert act.derivative_activation(1).derivative_activation(1) is d2       # orders add up
    assert act.backward(XS, np.ones(XS.size), order=1).tolist() == act.backward(XS, np.ones(XS.size)).tolist()


def test_float32_and_scalar_inputs():
    act = actgen.load("tanh")
    got = act.derivative(XS.astype(np.float32), 2)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _symbolic("tanh(x)", 2), rtol=2e-6, atol=2e-7)
    assert act.derivative(0.5, 2) == pytest.approx(-2 * np.tanh(0.5) / np.cosh(0.5) ** 2, rel=1e-14)


def test_relu_and_hardtanh_kinks_follow_pytorch():
    """relu'(0) = 0 and relu'' = 0 everywhere, the kink included (PyTorch: threshold_backward,
    and the double backward of relu is 0); hardtanh' = 0 at -1 and 1 (hardtanh_backward)."""
    relu = actgen.load("relu")
    x = np.array([-1.0, -0.0, 0.0, 1e-300, 2.0])
    assert relu.derivative(x, 1).tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    for k in (2, 3):
        assert relu.derivative(x, k).tolist() == [0.0] * 5
    hardtanh = actgen.load("hardtanh")
    x = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    assert hardtanh.derivative(x, 1).tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert hardtanh.derivative(x, 2).tolist() == [0.0] * 5


@pytest.mark.slow          # builds three orders of a new spec (about a minute on 2 cores)
def test_mixed_derivatives_of_a_learnable_parameter(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text('[swish_a]\nexpr = "x * sigmoid(a * x)"\nparams = { a = 1.0 }\nlearnable = ["a"]\n')
    act = actgen.load("swish_a", spec=spec)
    x, a = sp.symbols("x a", real=True)
    f = x / (1 + sp.exp(-a * x))
    dy = np.linspace(0.5, 1.5, XS.size)
    for k in (1, 2):
        mixed = sp.lambdify((x, a), sp.diff(f, x, k, a, 1), "mpmath")
        with mpmath.workdps(60):
            want = float(mpmath.fsum(mpmath.mpf(float(d)) * mixed(mpmath.mpf(float(v)), mpmath.mpf(0.75))
                                     for v, d in zip(XS, dy)))
        got = act.derivative_activation(k).param_grads(XS, dy, a=0.75)["a"]
        assert got == pytest.approx(want, rel=1e-12, abs=1e-14)
    for k in (2, 3):
        _close(act.derivative(XS, k, a=0.75), _symbolic("x / (1 + exp(-0.75 * x))", k))


def test_errors():
    act = actgen.load("tanh")
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(KernelArgumentError, match="order of a derivative"):
            act.derivative(XS, bad)
    with pytest.raises(KernelArgumentError, match="order of a derivative"):
        act.derivative_activation(-1)
    softmax = actgen.load("softmax")
    with pytest.raises(KernelArgumentError, match="not a scalar function"):
        softmax.derivative(np.ones((2, 3)), 2)
    with pytest.raises(KernelArgumentError, match="not a scalar function"):
        softmax.backward(np.ones((2, 3)), np.ones((2, 3)), order=2)


@pytest.mark.slow
def test_gated_and_rowwise_orders_are_the_gate_and_the_score():
    glu = actgen.load("glu")
    gate = glu.derivative_activation(0)
    assert gate.kind == "elementwise" and gate.order == 0
    _close(gate(XS), 1 / (1 + np.exp(-XS)))
    _close(glu.derivative_activation(1)(XS), _symbolic("1/(1+exp(-x))", 1))


def test_derived_keys_depend_on_the_parent_content_and_order():
    from actgen.build import spec_key

    table = {"expr": "tanh(x)"}
    name1, t1 = derived_table("t", table, 1)
    name2, t2 = derived_table("t", table, 2)
    _, t1b = derived_table("t", {"expr": "tanh(x) + 0"}, 1)
    assert name1 == "t_d1" and name2 == "t_d2"
    assert derived_table(name1, t1, 1) == (name2, t2)                   # orders add up
    keys = {spec_key(n, t, "c") for n, t in ((name1, t1), (name2, t2), (name1, t1b))}
    assert len(keys) == 3


def test_a_cached_derived_order_loads_without_sympy():
    actgen.load("tanh").derivative_activation(2)            # built (or found) in this session's cache
    code = ("import sys, numpy as np, actgen\n"
            "a = actgen.load('tanh')\n"
            "v = a.derivative(np.array([0.5]), 3)\n"
            "assert 'sympy' not in sys.modules, 'sympy imported'\n"
            "print(float(v[0]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    t = np.tanh(0.5)
    assert float(out.stdout) == pytest.approx(-2 * (1 - t * t) * (1 - 3 * t * t), rel=1e-14)


def test_show_order_prints_the_derivative_and_its_forms():
    out = run_cli("show", "relu", "--order", "2")
    assert out.returncode == 0, out.stderr
    assert "\n  f''(x) = d^2/dx^2 (Piecewise((max_value" in out.stdout
    assert "f'''(x) = " in out.stdout and "float64: " in out.stdout
    bad = run_cli("show", "relu", "--order", "-1")
    assert bad.returncode == 2 and "the order is an integer" in bad.stderr


@pytest.mark.slow           # builds and verifies two derived orders of relu and sigmoid
def test_verify_orders_covers_second_and_third_derivatives():
    out = run_cli("verify", "relu", "sigmoid", "--orders", "3", "--quick", "--backend", "c")
    assert out.returncode == 0, out.stdout + out.stderr
    for name in ("relu_d1", "relu_d2", "sigmoid_d1", "sigmoid_d2"):
        assert f"\n{name} " in out.stdout
    assert "0 over budget" in out.stdout
