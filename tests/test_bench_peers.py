"""The peers `actgen bench` writes from an activation's SymPy expression (torch, JAX, numexpr):
what they print, and that they compute what actgen's kernels compute."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import ROOT, requires_cc

CORPUS = ROOT / "tests" / "bench_corpus"


def parsed(text: str, name: str = "a"):
    from actgen.spec import parse_spec_text

    return {a.name: a for a in parse_spec_text(text)}[name]


def builtin(name: str):
    from actgen import library
    from actgen.spec import parse_spec_text

    return {a.name: a for a in parse_spec_text(library.read(name))}[name]


def body(source) -> str:
    return source.text.split("return ", 1)[1].strip()


def test_torch_peer_is_the_expression_a_user_writes():
    from actgen.benchmark.symbolic import torch_source

    swish = torch_source(builtin("swish"))
    assert swish.text == "def f(x, beta):\n    return x*torch.sigmoid(beta*x)\n" and swish.args == ("beta",)
    # not learnable: the defaults are numbers, 1.0 as 1 (softplus' beta, threshold)
    assert body(torch_source(builtin("softplus"))) == \
        "torch.where((x > 20), x, torch.nn.functional.softplus(x))"
    # SymPy's TorchPrinter writes Max(x + 3, 0) as torch.max(0, x + 3), a reduction
    assert body(torch_source(builtin("hard_sigmoid"))) == "(1/6)*torch.clamp(torch.clamp(x + 3, min=0), max=6)"
    assert body(torch_source(builtin("elu"))) == "torch.where((x > 0), x, torch.exp(x) - 1)"
    # a where of two numbers is a tensor of x's dtype, not of the default one
    assert "x.new_tensor(0)" in body(torch_source(builtin("relu")))
    assert body(torch_source(parsed('[a]\nexpr = "x * Heaviside(x)"'))) == \
        "x*torch.heaviside(x, x.new_tensor(1/2))"
    assert body(torch_source(parsed('[a]\nexpr = "x / sqrt(2) + pi"'))) == "0.70710678118654752*x + 3.1415926535897932"


def test_jax_peer_is_the_expression_a_user_writes():
    from actgen.benchmark.symbolic import jax_source

    # SymPy's JaxPrinter writes math.erf (no arrays) and jax.numpy.select for Piecewise
    assert body(jax_source(builtin("gelu"))) == "(1/2)*x*(jax.scipy.special.erf(0.70710678118654752*x) + 1)"
    assert body(jax_source(builtin("leaky_relu"))) == "jnp.where((x > 0), x, 0.01*x)"
    assert body(jax_source(builtin("mish"))) == "x*jnp.tanh(jax.nn.softplus(x))"
    assert body(jax_source(builtin("hardtanh"))) == "jnp.minimum(jnp.maximum(x, -1), 1)"
    assert body(jax_source(builtin("hardshrink"))) == "jnp.where(((x > 0.5) | (x < -0.5)), x, 0)"


def test_numexpr_peer_names_its_constants_and_refuses_erf():
    from actgen.benchmark.symbolic import Inexpressible, numexpr_source

    leaky = numexpr_source(builtin("leaky_relu"))
    assert leaky.forward == "where((x > 0), x, c0*x)" and leaky.constants == {"c0": 0.01}
    assert leaky.backward == "dy*where((x > 0), 1, c0)"
    assert numexpr_source(builtin("mish")).forward == "x*tanh(log1p(exp(x)))"
    with pytest.raises(Inexpressible, match="^no erf in numexpr$"):
        numexpr_source(builtin("gelu"))
    sign = numexpr_source(parsed('[a]\nexpr = "x * sign(x)"'))
    assert "copysign" not in sign.forward and "math." not in sign.backward


def test_what_no_library_has_is_refused_with_the_reason():
    from actgen.benchmark.symbolic import Inexpressible, jax_source, torch_source
    from actgen.benchmark.user_peers import sources

    act = parsed('[a]\nexpr = "x * erf(x)"')
    srcs = sources(act)
    assert srcs.numexpr is None and srcs.reasons == {"numexpr": "no erf in numexpr"}
    import sympy as sp

    from actgen.ir import X

    odd = type("besselish", (sp.Function,), {})
    strange = act.__class__(**{**act.__dict__, "expr": X * odd(X)})
    with pytest.raises(Inexpressible, match="no besselish in torch"):
        torch_source(strange)
    with pytest.raises(Inexpressible, match="no besselish in jax"):
        jax_source(strange)


#: spec text, name: activations whose peers must match actgen's kernels (Piecewise, Max/Min,
#: Heaviside, Abs, actgen's sigmoid/softplus/erfc, a learnable parameter)
AGREE = [
    (CORPUS / "gated.toml", "swish_a"),
    (CORPUS / "gated.toml", "clipped_elu"),
    (CORPUS / "serf.toml", "serf_plain"),
    (None, "gelu"),
    (None, "softplus"),
    (None, "hard_swish"),
    (None, "log_sigmoid"),
    (None, "softsign"),
]
KINKS = (0.0, -3.0, 3.0, 6.0, np.log(7.0))


def _inputs(dtype="float64"):
    x = np.linspace(-6, 6, 401)
    x = x[np.all([np.abs(x - k) > 1e-3 for k in KINKS], axis=0)]
    return x.astype(dtype), np.linspace(-1.5, 1.5, x.size).astype(dtype)


def _expected(name, spec, x, dy, params):
    import actgen

    act = actgen.load(name, spec=str(spec) if spec else None)
    return act, np.asarray(act(x, **params)), np.asarray(act.backward(x, dy, **params))


@requires_cc
@pytest.mark.parametrize("spec,name", AGREE, ids=[n for _, n in AGREE])
def test_torch_peer_agrees_with_actgen(spec, name):
    torch = pytest.importorskip("torch")
    from actgen.benchmark.symbolic import torch_source

    x, dy = _inputs()
    act, y, dx = _expected(name, spec, x, dy, {})
    src = torch_source(act.activation)
    f = src.function({"torch": torch})
    tx = torch.from_numpy(x).requires_grad_()
    params = [torch.tensor(act.params[p], dtype=torch.float64) for p in src.args]
    ty = f(tx, *params)
    (tdx,) = torch.autograd.grad(ty, tx, torch.from_numpy(dy))
    np.testing.assert_allclose(ty.detach().numpy(), y, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(tdx.numpy(), dx, rtol=1e-11, atol=1e-12)


@requires_cc
@pytest.mark.parametrize("spec,name", AGREE, ids=[n for _, n in AGREE])
def test_jax_peer_agrees_with_actgen(spec, name):
    from actgen.benchmark.user_peers import libraries

    libs = libraries()
    if libs.jax is None:
        pytest.skip("jax is not installed")
    from actgen.benchmark.symbolic import jax_source

    jax = libs.jax
    x, dy = _inputs()
    act, y, dx = _expected(name, spec, x, dy, {})
    src = jax_source(act.activation)
    f = src.function({"jax": jax, "jnp": jax.numpy})
    params = [jax.numpy.asarray(act.params[p], dtype=np.float64) for p in src.args]
    jy, pullback = jax.vjp(lambda x: f(x, *params), jax.device_put(x))
    assert jy.dtype == np.float64
    np.testing.assert_allclose(np.asarray(jy), y, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(np.asarray(pullback(jax.device_put(dy))[0]), dx, rtol=1e-11, atol=1e-12)


@requires_cc
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("spec,name", AGREE, ids=[n for _, n in AGREE])
def test_numexpr_peer_agrees_with_actgen_and_keeps_the_dtype(spec, name, dtype):
    ne = pytest.importorskip("numexpr")
    from actgen.benchmark.symbolic import Inexpressible, numexpr_source
    from actgen.benchmark.user_peers import numexpr_cells

    x, dy = _inputs(dtype)
    act, y, dx = _expected(name, spec, x, dy, {})
    try:
        src = numexpr_source(act.activation)
    except Inexpressible as exc:
        assert "erf" in str(exc)                    # gelu, serf: numexpr has no erf
        return
    got_y, got_dx = np.empty_like(x), np.empty_like(x)
    fwd, bwd = numexpr_cells(ne, src, x, dy, got_y, got_dx, dict(act.params))
    assert fwd() is got_y and bwd() is got_dx and got_y.dtype == np.dtype(dtype)
    tol = 2e-5 if dtype == "float32" else 1e-11
    np.testing.assert_allclose(got_y, y, rtol=tol, atol=tol)
    np.testing.assert_allclose(got_dx, dx, rtol=tol, atol=tol)
