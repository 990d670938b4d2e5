"""The C fast path of a call (actgen/fastcall.py): it gives what the general path gives, bit for
bit, and hands every call that is not its common case back to the general path."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

import actgen
from actgen import fastcall, runtime
from actgen.errors import KernelArgumentError

from conftest import requires_cc

pytestmark = requires_cc

DTYPES = (np.float32, np.float64)


def same(a, b) -> bool:
    """Equal bit for bit (NaN payloads aside), of one dtype and shape."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def general(act, role, *arrays, params=None):
    """The role computed through the backend's general call (no fast path); forward_deriv: (y, f')."""
    values = act._defaults if params is None else act._scalar_values(params)
    tag = runtime._FLOAT_TAGS[arrays[0].dtype]
    outs = [np.empty_like(arrays[0]) for _ in range(2 if role == "forward_deriv" else 1)]
    getattr(act._kernels, role)(tag, *[np.ascontiguousarray(a) for a in arrays], *outs, values)
    return tuple(outs) if len(outs) > 1 else outs[0]


def inputs(dtype, shape=(3, 257), seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    x.flat[:8] = [0.0, -0.0, 1e-30, -1e-30, np.inf, -np.inf, np.nan, 3.0][:x.size]
    return x, rng.standard_normal(shape).astype(dtype)


@pytest.fixture(scope="module")
def acts():
    return {name: actgen.load(name) for name in ("relu", "prelu", "sigmoid", "elu", "silu")}


def test_the_extension_is_built_and_every_elementwise_role_has_an_entry(acts):
    assert fastcall.module() is not None and fastcall.loaded() is fastcall.module()
    sigmoid = acts["sigmoid"]
    assert sigmoid._entry_forward is not None and sigmoid._entry_backward is not None
    assert sigmoid._entry_backward_y is not None                 # valid at its defaults
    assert sigmoid._entry_forward_deriv is not None
    assert actgen.load("relu", backend="numpy")._entry_forward is None   # the NumPy backend: Python path
    assert actgen.load("softmax")._entry_forward is None                 # rowwise: its own path
    assert actgen.load("glu")._entry_forward is None                     # gated: its own path


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "prelu", "sigmoid", "elu", "silu"])
def test_results_are_those_of_the_general_path(acts, name, dtype):
    act = acts[name]
    x, dy = inputs(dtype)
    assert same(act(x), general(act, "forward", x))
    assert same(act.backward(x, dy), general(act, "backward", x, dy))
    y = act(x)
    out = np.empty_like(x)
    assert act(x, out=out) is out and same(out, y)
    dx = np.empty_like(x)
    assert act.backward(x, dy, out=dx) is dx and same(dx, general(act, "backward", x, dy))
    if act._entry_backward_y is not None:
        assert same(act.backward_from_output(y, dy), general(act, "backward_y", y, dy))
    want_y, want_d = general(act, "forward_deriv", x)
    got_y, got_d = act.forward_with_derivative(x)
    assert same(got_y, want_y) and same(got_d, want_d)
    d = np.empty_like(x)
    got = act.forward_with_derivative(x, out=out, deriv_out=d)
    assert got[0] is out and got[1] is d and same(out, want_y) and same(d, want_d)
    got = act.forward_with_derivative(x, deriv_out=d)
    assert got[1] is d and same(got[0], want_y) and same(d, want_d)


@pytest.mark.parametrize("dtype", DTYPES)
def test_parameters_given_as_numbers_go_to_the_kernel(acts, dtype):
    act = acts["elu"]
    x, dy = inputs(dtype)
    for params in ({"alpha": 0.25}, {"alpha": 2}):
        assert same(act(x, **params), general(act, "forward", x, params=params))
        assert same(act.backward(x, dy, **params), general(act, "backward", x, dy, params=params))
    # a NumPy scalar, a bool, an array: the general path (which converts or broadcasts)
    assert same(act(x, alpha=np.float64(0.25)), general(act, "forward", x, params={"alpha": 0.25}))
    # (per-channel values run the _pc kernel, whose float32 form may differ in the last bit)
    assert np.allclose(act(x, alpha=np.full(x.shape[-1], 0.25, dtype)), general(act, "forward", x, params={"alpha": 0.25}),
                       rtol=4 * np.finfo(dtype).eps, atol=0, equal_nan=True)
    with pytest.raises(KernelArgumentError, match="unknown parameter"):
        act(x, beta=1.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_shapes_zero_d_empty_and_large(acts, dtype):
    act = acts["silu"]
    zero_d = np.array(-2.5, dtype)
    y = act(zero_d)
    assert type(y) is np.dtype(dtype).type and same(y, general(act, "forward", zero_d)[()])
    out = np.empty((), dtype)
    assert act(zero_d, out=out) is out and same(out, y)
    empty = np.empty((0, 4), dtype)
    assert act(empty).shape == (0, 4) and act.backward(empty, empty).shape == (0, 4)
    # past the GIL threshold and the OpenMP one: the kernel runs without the GIL, on threads
    big, dbig = inputs(dtype, shape=(fastcall.GIL_ELEMENTS * 5 + 3,), seed=1)
    assert same(act(big), general(act, "forward", big))
    assert same(act.backward(big, dbig), general(act, "backward", big, dbig))


@pytest.mark.parametrize("dtype", DTYPES)
def test_in_place_and_aliasing(acts, dtype):
    act = acts["sigmoid"]
    x, dy = inputs(dtype)
    want, dwant = general(act, "forward", x), general(act, "backward", x, dy)
    a = x.copy()
    assert act(a, out=a) is a and same(a, want)                       # out is x: element i read first
    g = dy.copy()
    assert act.backward(x, g, out=g) is g and same(g, dwant)           # out is dy
    a = x.copy()
    assert act.backward(a, dy, out=a) is a and same(a, dwant)          # out is x
    # out overlapping x shifted by one element: not the common case; the general path uses a temporary
    buf = np.concatenate([x.ravel(), [0]]).astype(dtype)
    view_in, view_out = buf[:-1].reshape(x.shape), buf[1:].reshape(x.shape)
    assert act(view_in, out=view_out) is view_out and same(view_out, want)
    # the same memory seen through another array object (a view): exact alias, general path
    a = x.copy()
    assert act(a, out=a.view()) is not None and same(a, want)
    # forward_with_derivative reads x[i] again after writing y[i]: an output that is x, or two
    # outputs that are one array, are not the common case (a temporary; an error)
    want_d = general(act, "forward_deriv", x)[1]
    a = x.copy()
    y, d = act.forward_with_derivative(a, out=a)
    assert y is a and same(a, want) and same(d, want_d)
    with pytest.raises(KernelArgumentError, match="share memory"):
        shared = np.empty_like(x)
        act.forward_with_derivative(x, out=shared, deriv_out=shared)


@pytest.mark.parametrize("dtype", DTYPES)
def test_what_the_fast_path_hands_back(acts, dtype):
    act = acts["relu"]
    x, dy = inputs(dtype, shape=(6, 40))
    want = general(act, "forward", x)
    cases = {
        "strided": x[:, ::2], "fortran order": np.asfortranarray(x), "byte-swapped": x.astype(x.dtype.newbyteorder()),
        "subclass": x.view(np.matrix), "list": x.tolist(),
    }
    for label, value in cases.items():
        got = np.asarray(act(value))
        expect = general(act, "forward", np.ascontiguousarray(np.asarray(value), dtype=x.dtype).reshape(got.shape))
        assert same(got.astype(x.dtype), expect), label
    assert act(x.astype(np.float16)).dtype == np.float16
    assert act(np.arange(-3, 4)).dtype == np.float64
    # out= the fast path declines, and the general path explains
    with pytest.raises(KernelArgumentError, match="read-only"):
        ro = np.empty_like(x)
        ro.setflags(write=False)
        act(x, out=ro)
    with pytest.raises(KernelArgumentError, match="shape"):
        act(x, out=np.empty((40, 6), dtype))
    with pytest.raises(KernelArgumentError, match="dtype"):
        act(x, out=np.empty(x.shape, np.float32 if dtype is np.float64 else np.float64))
    with pytest.raises(KernelArgumentError, match="numpy array"):
        act(x, out=[0.0] * x.size)
    strided_out = np.empty((6, 80), dtype)[:, ::2]
    assert act(x, out=strided_out) is strided_out and same(np.ascontiguousarray(strided_out), want)
    with pytest.raises(KernelArgumentError, match="shape"):
        act.backward(x, dy[:, :20])


def test_threads_follow_set_num_threads(acts):
    fc = fastcall.module()
    saved = actgen.get_num_threads()
    try:
        actgen.set_num_threads(1)
        assert fc.get_threads() == 1
        actgen.set_num_threads(2)
        assert fc.get_threads() == 2
    finally:
        actgen.set_num_threads(saved)
    assert fc.get_threads() == saved


def test_python_threads_call_at_once(acts):
    act = acts["silu"]
    x, _ = inputs(np.float32, shape=(fastcall.GIL_ELEMENTS * 2,), seed=3)
    want = general(act, "forward", x)
    results, errors = [None] * 4, []

    def work(i):
        try:
            out = np.empty_like(x)
            for _ in range(20):
                act(x, out=out)
            results[i] = out
        except Exception as exc:                       # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(same(r, want) for r in results)


def test_the_extension_rejects_bad_arguments():
    fc = fastcall.module()
    x = np.ones(4, np.float32)
    with pytest.raises(TypeError, match="Entry"):
        fc.call(object(), x, None, ())
    e = fc.entry(1, 1, True, 0, 0, 1, fc)    # no functions: every call is handed back
    assert fc.call(e, x, None, (1.0,)) is None
    with pytest.raises(TypeError, match="1 input"):
        fc.call(e, x, x, None, (1.0,))
    with pytest.raises(TypeError, match="tuple of 1"):
        fc.call(e, x, None, (1.0, 2.0))
    with pytest.raises(TypeError, match="must be real number"):
        fc.call(e, x, None, ("1",))
    with pytest.raises(ValueError, match="parameters"):
        fc.entry(1, 1, True, 0, 0, fastcall.MAX_PARAMS + 1, fc)
    with pytest.raises(ValueError, match="inputs and outputs"):
        fc.entry(2, 2, True, 0, 0, 0, fc)
    with pytest.raises(TypeError):
        fc.Entry()                             # made by entry() only


def test_without_the_extension_calls_take_the_python_path(monkeypatch, fresh_cache):
    """A toolchain that cannot build it: said once, and every call still gives the same result."""
    from actgen.errors import BuildError

    monkeypatch.setattr(fastcall, "_STATE", {"tried": False, "module": None})

    def broken():
        raise BuildError("the C compiler failed building _actgen_fastcall: test")
    monkeypatch.setattr(fastcall, "build", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        act = actgen.load("elu")
    assert any("fast path" in str(w.message) for w in caught), [str(w.message) for w in caught]
    assert act._entry_forward is None and fastcall.loaded() is None
    x, dy = inputs(np.float32)
    assert same(act(x), general(act, "forward", x))
    assert same(act.backward(x, dy), general(act, "backward", x, dy))
    assert same(act.backward_from_output(act(x), dy), general(act, "backward_y", act(x), dy))
