"""The Python API: actgen.load(...), act(x), act.backward(x, dy), act.param_grads(x, dy)."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
import sympy as sp

import actgen
from actgen.ir import X, param_symbol
from actgen.errors import KernelArgumentError, SpecError, UnknownActivationError
from actgen.functions import sigmoid

BACKENDS = ["c", "numpy"]


@pytest.fixture(params=BACKENDS)
def swish(request):
    return actgen.load("swish", backend=request.param)


def test_load_exposes_expr_params_and_learnable(swish):
    beta = param_symbol("beta")
    assert swish.expr == X * sigmoid(beta * X)
    assert swish.params == {"beta": 1.0}
    assert swish.learnable == ("beta",)
    assert swish.name == "swish" and "swish" in repr(swish)


def test_values_gradients_and_defaults(swish):
    x = np.linspace(-3, 3, 7)
    expected = x / (1 + np.exp(-1.5 * x))
    assert np.allclose(swish(x, beta=1.5), expected, rtol=1e-14, atol=1e-300)
    assert np.allclose(swish(x), x / (1 + np.exp(-x)), rtol=1e-14)
    s = 1 / (1 + np.exp(-1.5 * x))
    dy = np.linspace(0.5, 2, 7)
    assert np.allclose(swish.backward(x, dy, beta=1.5), dy * (s + 1.5 * x * s * (1 - s)), rtol=1e-12)
    g = swish.param_grads(x, dy, beta=1.5)
    assert set(g) == {"beta"}
    assert g["beta"] == pytest.approx(np.sum(dy * x * x * s * (1 - s)), rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_in_is_dtype_out_for_any_shape(swish, dtype):
    for shape in [(), (0,), (5,), (3, 4), (2, 3, 4)]:
        x = np.asarray(np.random.default_rng(0).normal(size=shape), dtype=dtype)
        y = swish(x)
        assert y.dtype == dtype and np.shape(y) == shape
        dx = swish.backward(x, np.ones_like(x))
        assert dx.dtype == dtype and np.shape(dx) == shape
        assert all(v.dtype == dtype for v in swish.param_grads(x, np.ones_like(x)).values())


def test_zero_d_input_gives_a_scalar(swish):
    y = swish(np.float32(2.0))
    assert np.ndim(y) == 0 and y.dtype == np.float32


def test_integers_and_bools_become_float64_float16_computes_in_float32(swish):
    assert swish(np.arange(5)).dtype == np.float64
    assert swish([True, False]).dtype == np.float64
    assert swish([1, 2, 3]).dtype == np.float64
    h = swish(np.array([1.0, -2.0], np.float16))
    assert h.dtype == np.float16
    assert np.allclose(h, swish(np.array([1.0, -2.0], np.float32)), rtol=1e-3)


def test_complex_and_object_inputs_are_rejected_clearly(swish):
    with pytest.raises(KernelArgumentError, match="dtype complex128: activations are real functions"):
        swish(np.array([1 + 2j]))
    with pytest.raises(KernelArgumentError, match="has dtype object; pass a float32 or float64 array"):
        swish(np.array(["a"], dtype=object))


def test_non_contiguous_and_fortran_inputs(swish):
    base = np.random.default_rng(1).normal(size=(6, 8))
    for x in (base[::2, ::3], base.T, np.asfortranarray(base), base[::-1]):
        assert np.array_equal(swish(x), swish(np.ascontiguousarray(x)))


def test_out_and_in_place(swish):
    x = np.linspace(-2, 2, 9)
    expected = swish(x)
    out = np.empty_like(x)
    assert swish(x, out=out) is out and np.array_equal(out, expected)
    y = x.copy()
    assert swish(y, out=y) is y and np.array_equal(y, expected)
    strided_out = np.empty(18)[::2]
    assert np.array_equal(swish(x, out=strided_out), expected)
    overlap = x.copy()
    swish(overlap[:-1], out=overlap[1:])          # partial overlap: computed via a temporary
    assert np.array_equal(overlap[1:], expected[:-1])
    dx_out = np.empty_like(x)
    assert swish.backward(x, np.ones_like(x), out=dx_out) is dx_out


@pytest.mark.parametrize("bad_out, message", [
    (np.empty(3), r"out= has shape \(3,\), expected \(9,\)"),
    (np.empty(9, np.float32), "out= has dtype float32, expected float64"),
    ([0.0] * 9, "out= must be a numpy array"),
])
def test_bad_out_is_rejected(swish, bad_out, message):
    with pytest.raises(KernelArgumentError, match=message):
        swish(np.linspace(-2, 2, 9), out=bad_out)


def test_read_only_out_is_rejected_read_only_input_is_fine(swish):
    x = np.linspace(-1, 1, 4)
    x.flags.writeable = False
    assert swish(x).shape == (4,)
    with pytest.raises(KernelArgumentError, match="read-only"):
        swish(np.ones(4), out=x)


def test_unknown_and_bad_parameters(swish):
    with pytest.raises(KernelArgumentError, match=r"unknown parameter\(s\) alpha; its parameters are: beta"):
        swish(np.ones(3), alpha=2.0)
    with pytest.raises(KernelArgumentError, match=r"parameter beta of shape \(4,\) does not broadcast"):
        swish(np.ones(3), beta=np.ones(4))
    with pytest.raises(KernelArgumentError, match=r"with param_axis=0 it must have shape \(3,\)"):
        swish(np.ones((3, 2)), beta=np.ones(2), param_axis=0)
    with pytest.raises(KernelArgumentError, match="param_axis=2 is out of range"):
        swish(np.ones((3, 2)), beta=np.ones(3), param_axis=2)
    with pytest.raises(KernelArgumentError, match="must be a real number"):
        swish(np.ones(3), beta="big")


def test_dy_must_match_x(swish):
    with pytest.raises(KernelArgumentError, match="dy has shape"):
        swish.backward(np.ones(3), np.ones(4))


def test_activations_without_learnables_give_empty_param_grads():
    assert actgen.load("tanh").param_grads(np.ones(3), np.ones(3)) == {}


def test_unknown_builtin_suggests_names():
    with pytest.raises(UnknownActivationError, match="did you mean .*swish"):
        actgen.load("swsh")
    with pytest.raises(ValueError, match="backend must be one of c, numpy"):
        actgen.load("swish", backend="cuda")


def test_load_from_a_user_spec(tmp_path):
    spec = tmp_path / "mine.toml"
    spec.write_text('[twice]\nexpr = "2 * x * a"\nparams = { a = 0.5 }\nlearnable = ["a"]\n')
    for backend in BACKENDS:
        act = actgen.load("twice", spec=spec, backend=backend)
        assert act(np.array([1.0, 2.0])).tolist() == [1.0, 2.0]
        assert act.param_grads(np.array([1.0, 2.0]), np.ones(2)) == {"a": 6.0}
    with pytest.raises(UnknownActivationError, match="no activation named 'thrice'"):
        actgen.load("thrice", spec=spec)
    bad = tmp_path / "bad.toml"
    bad.write_text('[oops]\nexpr = "x * nope"\n')
    with pytest.raises(SpecError, match=r"bad.toml \[oops\] expr: unknown name `nope`"):
        actgen.load("oops", spec=bad)


def test_many_python_threads_at_once_get_right_answers():
    act = actgen.load("gelu")
    x = np.random.default_rng(2).normal(size=200_000)
    expected = act(x)
    results = [None] * 8

    def work(i):
        results[i] = act(x)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(r, expected) for r in results)


def test_import_does_not_import_sympy_and_cached_load_does_not_either(fresh_cache):
    # built by another process into a cache of its own (other tests corrupt and rebuild entries
    # of theirs on purpose; an in-process load would not see that)
    subprocess.run([sys.executable, "-c", "import actgen; actgen.load('elu')"], check=True)
    code = ("import sys, actgen; a = actgen.load('elu'); a([1.0]); "
            "print('sympy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
    code = "import sys, actgen; print('sympy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_expr_of_a_loaded_activation_parses_lazily():
    act = actgen.load("relu")
    assert isinstance(act.expr, sp.Piecewise)
