"""actgen.jax at higher orders (custom_jvp): jax.grad nested three deep against SymPy's
derivatives in mpmath, jvp/jacfwd/jacrev/hessian under jit and vmap against the same function in
jax.numpy, parameters through the mixed derivatives, the gated and rowwise kinds, and a
physics-informed training loop.

Tolerances: against mpmath, 2^-40 relative to max(|f^(k)|, 1); against jax.numpy in float64,
1e-13 relative + 1e-14 absolute: JAX differentiates tanh as 1 - tanh(x)**2, which cancels for
large |x| (at x = 8 its Hessian entry, 3.6e-6, is 1e-15 off, 3e-10 relative; actgen's f' is
cosh(x)**-2); elsewhere they agree to 3e-16.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp

from conftest import requires_cc

jax = pytest.importorskip("jax")
jnp = jax.numpy

import actgen.jax as aj  # noqa: E402  (after importorskip)
from actgen.errors import KernelArgumentError  # noqa: E402

pytestmark = requires_cc
XS = np.array([-6.0, -2.5, -1.0, -0.25, 0.0, 0.4, 1.5, 3.0, 8.0])


def _close(got, want, rtol=1e-13, atol=1e-14):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=rtol, atol=atol)


def test_nested_grad_three_deep_is_the_symbolic_third_derivative():
    th = aj.function("tanh")
    x = sp.Symbol("x", real=True)
    with jax.enable_x64(True):
        f = th
        for k in (1, 2, 3):
            f = jax.grad(f)
            got = np.array([float(f(jnp.float64(v))) for v in XS])
            d = sp.lambdify(x, sp.diff(sp.tanh(x), x, k), "mpmath")
            with mpmath.workdps(50):
                want = np.array([float(d(mpmath.mpf(float(v)))) for v in XS])
            assert np.all(np.abs(got - want) <= 2.0 ** -40 * np.maximum(np.abs(want), 1)), (k, got, want)


def test_forward_and_reverse_transformations_under_jit_and_vmap():
    th = aj.function("tanh")
    with jax.enable_x64(True):
        x = jnp.asarray(XS)
        w = jnp.linspace(-1.0, 2.0, XS.size)

        def loss(f):
            return lambda a: jnp.sum(w * f(a) ** 2)

        _close(jax.jvp(th, (x,), (w,))[1], jax.jvp(jnp.tanh, (x,), (w,))[1])
        _close(jax.jacfwd(th)(x), jax.jacfwd(jnp.tanh)(x))
        _close(jax.jacrev(th)(x), jax.jacrev(jnp.tanh)(x))
        _close(jax.hessian(loss(th))(x), jax.hessian(loss(jnp.tanh))(x))
        _close(jax.jit(jax.hessian(loss(th)))(x), jax.hessian(loss(jnp.tanh))(x))
        third = jax.vmap(jax.grad(jax.grad(jax.grad(th))))
        _close(jax.jit(third)(x), jax.vmap(jax.grad(jax.grad(jax.grad(jnp.tanh))))(x))
        batch = jnp.stack([x, 0.5 * x])
        _close(jax.vmap(jax.hessian(loss(th)))(batch), jax.vmap(jax.hessian(loss(jnp.tanh)))(batch))
        # reverse over forward (the Hessian-vector product)
        hvp = jax.jvp(jax.grad(loss(th)), (x,), (w,))[1]
        _close(hvp, jax.jvp(jax.grad(loss(jnp.tanh)), (x,), (w,))[1])
        # float32 keeps its dtype at every order
        g2 = jax.vmap(jax.grad(jax.grad(th)))(x.astype(jnp.float32))
        assert g2.dtype == jnp.float32
        _close(g2, jax.vmap(jax.grad(jax.grad(jnp.tanh)))(x), rtol=4e-6, atol=1e-7)


@pytest.mark.slow           # builds the swish orders 1 and 2 (about a minute on 2 cores)
def test_learnable_parameters_through_mixed_derivatives():
    sw = aj.function("swish")
    with jax.enable_x64(True):
        x = jnp.asarray(XS).reshape(3, 3)

        def ref(a, b):
            return a * jax.nn.sigmoid(b * a)

        def u2(f):      # sum of f''(x) over x, as a function of beta
            return lambda b: jnp.sum(jax.vmap(jax.vmap(jax.grad(jax.grad(lambda t: f(t, b)))))(x))

        _close(jax.grad(u2(lambda t, b: sw(t, beta=b)))(1.3), jax.grad(u2(ref))(1.3))
        # one value per channel (param_axis): the Hessian in x and the gradient in beta of f''
        betas = jnp.array([0.5, 1.0, 2.0])
        h = jax.hessian(lambda t: jnp.sum(sw(t, beta=betas, param_axis=1) ** 2))(x)
        _close(h, jax.hessian(lambda t: jnp.sum(ref(t, betas[None, :]) ** 2))(x))
        g = jax.grad(lambda b: jnp.sum(jax.hessian(lambda t: jnp.sum(sw(t, beta=b, param_axis=1)))(x)))(betas)
        _close(g, jax.grad(lambda b: jnp.sum(jax.hessian(lambda t: jnp.sum(ref(t, b[None, :])))(x)))(betas))
        with pytest.raises(KernelArgumentError, match="second derivative with respect to a parameter"):
            jax.hessian(lambda b: sw(x, beta=b).sum())(1.0)


@pytest.mark.slow           # builds the gate's and the scores' orders 0 and 1
@pytest.mark.parametrize("name, ref", [("softmax", jax.nn.softmax), ("log_softmax", jax.nn.log_softmax),
                                       ("glu", jax.nn.glu)])
def test_gated_and_rowwise_hessians(name, ref):
    f = aj.function(name)
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(3).normal(size=(4, 4)) * 2)
        for axis in (-1, 0):
            loss = (lambda g: lambda a: jnp.sum(jnp.sin(g(a, axis=axis))))
            _close(jax.hessian(loss(f))(x), jax.hessian(loss(ref))(x), atol=1e-14)
            _close(jax.jacfwd(lambda a: f(a, axis=axis))(x), jax.jacfwd(lambda a: ref(a, axis=axis))(x), atol=1e-14)


PINN_SPEC = """
[swish_a]
expr = "x * sigmoid(a * x)"
params = { a = 1.0 }
learnable = ["a"]
"""


@pytest.mark.slow           # builds a new spec's orders 1 and 2 (about a minute on 2 cores)
def test_pinn_training_on_the_second_derivative(tmp_path):
    """u(x) = W2 f(W1 x + b1) with f a learnable user spec; the loss is the residual of
    u'' = -sin(x) plus a boundary term; gradients in every weight and in f's parameter a agree
    with the same network written in jax.numpy, step after step (float64: rtol 1e-10, the
    third derivative's kernels are within a few ULPs of f''' and the sums compound them)."""
    spec = tmp_path / "pinn.toml"
    spec.write_text(PINN_SPEC)
    f = aj.function("swish_a", spec=spec)
    with jax.enable_x64(True):
        rng = np.random.default_rng(7)
        params = {"w1": jnp.asarray(rng.normal(size=(16,))), "b1": jnp.asarray(rng.normal(size=(16,))),
                  "w2": jnp.asarray(rng.normal(size=(16,)) / 4), "a": jnp.float64(1.0)}
        xs = jnp.linspace(-np.pi, np.pi, 33)

        def make_loss(act):
            def u(p, x):
                return jnp.dot(p["w2"], act(p["w1"] * x + p["b1"], p["a"]))

            def loss(p):
                u_xx = jax.vmap(jax.grad(jax.grad(u, argnums=1), argnums=1), in_axes=(None, 0))(p, xs)
                return jnp.mean((u_xx + jnp.sin(xs)) ** 2) + (u(p, -np.pi) ** 2 + u(p, np.pi) ** 2)
            return jax.jit(jax.value_and_grad(loss))

        ours = make_loss(lambda z, a: f(z, a=a))
        theirs = make_loss(lambda z, a: z * jax.nn.sigmoid(a * z))
        p_ours, p_theirs, losses = params, params, []
        for _ in range(5):
            (l1, g1), (l2, g2) = ours(p_ours), theirs(p_theirs)
            assert l1 == pytest.approx(float(l2), rel=1e-10)
            for k in params:
                _close(g1[k], g2[k], rtol=1e-10, atol=1e-12)
            losses.append(float(l1))
            p_ours = jax.tree_util.tree_map(lambda v, g: v - 1e-3 * g, p_ours, g1)
            p_theirs = jax.tree_util.tree_map(lambda v, g: v - 1e-3 * g, p_theirs, g2)
        assert losses[-1] < losses[0]
