"""actgen.jax: values and jax.grad against jax.nn, jit, vmap, gradients of learnable parameters
against finite differences, float64 under jax_enable_x64, errors.

Tolerances (measured, with margin):
  float64 kernels vs jax.nn in float64: values rtol 1e-12; gradients rtol 1e-12, atol 1e-15
    (JAX writes sigmoid', tanh', elu' with the output, y * (1 - y) etc., which loses relative
    accuracy where f' is tiny; actgen's stay accurate there).
  float32 kernels vs jax.nn in float64 (the truth, rounded): rtol 2^-22 (2 ULP; measured <= 1.34);
    gradients, as actgen verify measures them, also within 2 ULP of the sum of the magnitudes
    of the derivative's terms (near a root of f', e.g. silu's at x = -1.28, no fixed precision
    keeps relative accuracy; silu's float32 f' is computed in float: 0.2 of those ULPs there).
  Everywhere atol >= the smallest normal number: XLA flushes subnormals to zero, actgen does not.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import requires_cc

jax = pytest.importorskip("jax")
jnp = jax.numpy

import actgen.jax as aj  # noqa: E402  (after importorskip)
from actgen.errors import KernelArgumentError  # noqa: E402

pytestmark = requires_cc

# (actgen name, jax.nn function, actgen parameters that give jax.nn's definition)
ELEMENTWISE = [
    ("silu", jax.nn.silu, {}),
    ("gelu", lambda x: jax.nn.gelu(x, approximate=False), {}),      # jax.nn.gelu defaults to the tanh form
    ("softplus", jax.nn.softplus, {"threshold": np.inf}),           # actgen's default is PyTorch's (x > 20: x)
    ("sigmoid", jax.nn.sigmoid, {}),
    ("relu", jax.nn.relu, {}),
    ("elu", jax.nn.elu, {}),
    ("leaky_relu", jax.nn.leaky_relu, {}),
]
XS = np.concatenate([np.linspace(-30, 30, 3001), [0.0, -100.0, 100.0, 1e-30, -1e-30]])


def _close(got, want, rtol, atol):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def _grad_of_sum(f):
    return jax.grad(lambda a: f(a).sum())


def _kink_free(name, x):
    """leaky_relu'(0): actgen follows PyTorch (x > 0 ? 1 : slope, so the slope at 0), jax.nn uses
    x >= 0 (1 at 0). The points other than 0 must agree."""
    return x != 0 if name == "leaky_relu" else np.ones(x.shape, bool)


@pytest.mark.parametrize("name, ref, params", ELEMENTWISE, ids=[c[0] for c in ELEMENTWISE])
def test_float64_matches_jax_nn(name, ref, params):
    f = aj.function(name)
    with jax.enable_x64(True):
        x = jnp.asarray(XS, jnp.float64)
        y = f(x, **params)
        assert y.dtype == jnp.float64
        tiny = np.finfo(np.float64).tiny
        _close(y, ref(x), 1e-12, tiny)
        keep = _kink_free(name, XS)
        _close(np.asarray(_grad_of_sum(lambda a: f(a, **params))(x))[keep],
               np.asarray(_grad_of_sum(ref)(x))[keep], 1e-12, 1e-15)


@pytest.mark.parametrize("name, ref, params", ELEMENTWISE, ids=[c[0] for c in ELEMENTWISE])
def test_float32_matches_jax_nn_in_float64(name, ref, params):
    f = aj.function(name)
    x32 = jnp.asarray(XS, jnp.float32)
    y = f(x32, **params)
    g = _grad_of_sum(lambda a: f(a, **params))(x32)
    assert y.dtype == g.dtype == jnp.float32
    with jax.enable_x64(True):
        x64 = jnp.asarray(np.asarray(x32), jnp.float64)         # the same points
        want, dwant = ref(x64), _grad_of_sum(ref)(x64)
    tiny = np.finfo(np.float32).tiny
    _close(y, want, 2.0 ** -22, tiny)
    keep = _kink_free(name, XS)
    terms = _derivative_terms(name, np.asarray(x32, np.float64), params)
    got, dwant = np.asarray(g, np.float64)[keep], np.asarray(dwant, np.float64)[keep]
    bound = 2.0 ** -22 * np.maximum(np.abs(dwant), terms[keep]) + 1e-15 + tiny
    assert (np.abs(got - dwant) <= bound).all(), np.max(np.abs(got - dwant) / bound)


def _derivative_terms(name, xs, params):
    """sum |terms| of the f' actgen generates (actgen.select.term_scale), at xs."""
    from actgen import library
    from actgen.derive import derive
    from actgen.select import candidates
    from actgen.measure import term_scale
    from actgen.spec import parse_spec_text

    act = next(a for a in parse_spec_text(library.read(name)) if a.name == name)
    back = next(k for k in derive(act) if k.kind == "backward")
    values = {p: float(params.get(p, v)) for p, v in act.params.items()}
    return term_scale(candidates(act, back)[0][1].stable, xs, values)


def test_leaky_relu_kink_follows_pytorch():
    g = _grad_of_sum(lambda a: aj.function("leaky_relu")(a, negative_slope=0.2))(jnp.zeros(1))
    assert float(g[0]) == pytest.approx(0.2)


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_and_glu_match_jax_nn(axis):
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=(4, 6)) * 3)
        ct = jnp.asarray(rng.normal(size=(4, 6)))
        for name, ref, shape in (("softmax", jax.nn.softmax, (4, 6)),
                                 ("glu", jax.nn.glu, (2, 6) if axis == 0 else (4, 3))):
            f = aj.function(name)
            y, vjp = jax.vjp(lambda a: f(a, axis=axis), x)
            want, vjp_want = jax.vjp(lambda a: ref(a, axis=axis), x)
            assert y.shape == shape
            _close(y, want, 1e-13, 1e-300)
            _close(vjp(ct[:shape[0], :shape[1]])[0], vjp_want(ct[:shape[0], :shape[1]])[0], 1e-12, 1e-15)
    x32 = jnp.asarray(np.asarray(x), jnp.float32)
    _close(aj.function("softmax")(x32, axis=axis), jax.nn.softmax(x32, axis=axis), 1e-6, 1e-7)


def _jnp_sparsemax(v, axis):
    """Sparsemax by sorting, in jax.numpy; jax.vjp through it is the reference backward."""
    v = jnp.moveaxis(v, axis, -1)
    z = -jnp.sort(-v, axis=-1)
    c = jnp.cumsum(z, axis=-1)
    r = jnp.arange(1, v.shape[-1] + 1, dtype=v.dtype)
    k = jnp.sum(1 + r * z > c, axis=-1, keepdims=True)
    tau = (jnp.take_along_axis(c, k - 1, axis=-1) - 1) / k
    return jnp.moveaxis(jnp.maximum(v - tau, 0), -1, axis)


@pytest.mark.parametrize("axis", [-1, 0])
def test_sparsemax_matches_a_sort_in_jax(axis):
    rng = np.random.default_rng(2)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=(5, 7)) * 2)
        ct = jnp.asarray(rng.normal(size=(5, 7)))
        f = aj.function("sparsemax")
        y, vjp = jax.vjp(lambda a: f(a, axis=axis), x)
        want, vjp_want = jax.vjp(lambda a: _jnp_sparsemax(a, axis), x)
        assert bool((y == 0).any())
        _close(y, want, 1e-13, 1e-15)
        _close(vjp(ct)[0], vjp_want(ct)[0], 1e-12, 1e-15)


def test_jit():
    swish = aj.function("swish")
    x = jnp.linspace(-6.0, 6.0, 101)
    step = jax.jit(lambda a, b: swish(a, beta=b))
    np.testing.assert_array_equal(step(x, 1.5), swish(x, beta=1.5))
    np.testing.assert_array_equal(step(x, 1.5), step(x, 1.5))              # the compiled function again
    loss = jax.jit(jax.value_and_grad(lambda a, b: (swish(a, beta=b) ** 2).sum(), argnums=(0, 1)))
    value, (dx, dbeta) = loss(x, 1.5)
    np.testing.assert_allclose(dx, jax.grad(lambda a: (a * jax.nn.sigmoid(1.5 * a)) ** 2 @ jnp.ones(101))(x),
                               rtol=1e-5, atol=1e-6)
    assert dbeta.shape == ()
    # a non-learnable parameter under jit: static, not traced
    elu = jax.jit(lambda a, alpha: aj.function("elu")(a, alpha=alpha), static_argnames="alpha")
    np.testing.assert_allclose(elu(x, alpha=0.5), jax.nn.elu(x, alpha=0.5), rtol=1e-6, atol=1e-7)


def _central_difference(fun, p, eps=1e-6):
    p = np.asarray(p, np.float64)
    grad = np.zeros_like(p)
    for i in np.ndindex(p.shape):
        up, down = p.copy(), p.copy()
        up[i] += eps
        down[i] -= eps
        grad[i] = (fun(up) - fun(down)) / (2 * eps)
    return grad


def test_gradient_of_learnable_parameters_against_finite_differences():
    rng = np.random.default_rng(2)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=(3, 4, 5)) * 2)
        w = jnp.asarray(rng.normal(size=(3, 4, 5)))
        swish = aj.function("swish")

        def loss(beta):
            return float(jnp.sum(w * swish(x, beta=jnp.asarray(beta))))

        g = jax.grad(lambda b: jnp.sum(w * swish(x, beta=b)))(1.3)
        np.testing.assert_allclose(g, _central_difference(loss, 1.3), rtol=1e-7)

        # per channel along axis 1, and x too
        prelu = aj.function("prelu")
        alpha = np.array([0.1, -0.3, 0.25, 0.5])
        xs = x + 0.1 * jnp.sign(x)                               # away from the kink at 0
        ga, gx = jax.grad(lambda a, z: jnp.sum(w * prelu(z, alpha=a, param_axis=1)), argnums=(0, 1))(
            jnp.asarray(alpha), xs)
        assert ga.shape == (4,)
        np.testing.assert_allclose(
            ga, _central_difference(lambda a: float(jnp.sum(w * prelu(xs, alpha=jnp.asarray(a), param_axis=1))),
                                    alpha), rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(gx, w * jnp.where(xs > 0, 1.0, alpha[None, :, None]), rtol=0, atol=0)


def test_vmap_over_x_and_over_a_parameter():
    swish = aj.function("swish")
    x = jnp.linspace(-4.0, 4.0, 12).reshape(3, 4)
    np.testing.assert_array_equal(jax.vmap(lambda r: swish(r, beta=1.2))(x), swish(x, beta=1.2))
    betas = jnp.array([0.5, 1.0, 2.0])
    by_beta = jax.vmap(lambda b: swish(x, beta=b))(betas)
    for i, b in enumerate([0.5, 1.0, 2.0]):
        np.testing.assert_array_equal(by_beta[i], swish(x, beta=b))
    grads = jax.vmap(jax.grad(lambda b: swish(x, beta=b).sum()))(betas)
    for i, b in enumerate([0.5, 1.0, 2.0]):
        np.testing.assert_allclose(grads[i], jax.grad(lambda c: swish(x, beta=c).sum())(b), rtol=1e-6)
    softmax = aj.function("softmax")
    np.testing.assert_allclose(jax.vmap(softmax)(x), jax.nn.softmax(x), rtol=1e-6)


def test_errors():
    elu = aj.function("elu")
    x = jnp.ones(3)
    with pytest.raises(KernelArgumentError, match="alpha is a traced value.*not declare it learnable"):
        jax.grad(lambda a: elu(x, alpha=a).sum())(1.0)
    with pytest.raises(KernelArgumentError, match="dtype int32.*float32 or float64"):
        elu(jnp.arange(3, dtype=jnp.int32))    # (int64 where another test enabled x64)
    with pytest.raises(KernelArgumentError, match="unknown parameter"):
        elu(x, beta=1.0)
    swish = aj.function("swish")
    with pytest.raises(KernelArgumentError, match="second derivative with respect to a parameter"):
        jax.hessian(lambda b: swish(x, beta=b).sum())(1.0)
    y = swish(x.astype(jnp.bfloat16))
    assert y.dtype == jnp.bfloat16
