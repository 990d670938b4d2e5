"""Every kernel call at the edges: dtypes, 0-d, empty, scalars and lists, strides and orders,
read-only arrays, out= (wrong, aliased, overlapping), wrong dy and parameter shapes, NaN and
infinities, more than 2^31 elements, many Python threads, the GIL.

The calls (activation, method) cover the three kinds and every method: elementwise (swish with
a learnable parameter; an ELU with an output-form derivative for backward_from_output), gated
(swiglu) and rowwise (log_softmax), on both backends. Each edge case is compared with the same
call on a plain contiguous float array, bit for bit where the computation is the same.
"""

from __future__ import annotations

import mmap
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
import threading

import numpy as np
import pytest

import actgen
from actgen.errors import KernelArgumentError

BACKENDS = ["c", "numpy"]
# the same table and file name as tests/test_kinds.py: one build per session
ELU_SPEC = ('[myelu]\nexpr = "Piecewise((x, x > 0), (alpha * expm1(x), True))"\n'
            'params = { alpha = 1.0 }\noutput_derivative = "Piecewise((1, y > 0), (y + alpha, True))"\n'
            'output_derivative_valid = "alpha >= 0"\n')

CALLS = [("swish", "forward"), ("swish", "backward"), ("swish", "fused"), ("swish", "grads"),
         ("myelu", "from_output"), ("swiglu", "forward"), ("swiglu", "backward"),
         ("log_softmax", "forward"), ("log_softmax", "backward"), ("log_softmax", "from_output")]
WITH_OUT = [c for c in CALLS if c[1] != "grads"]


@pytest.fixture(scope="module")
def acts(tmp_path_factory):
    spec = tmp_path_factory.mktemp("spec") / "e.toml"
    spec.write_text(ELU_SPEC)
    loaded = {}
    for backend in BACKENDS:
        for name in ("swish", "swiglu", "log_softmax"):
            loaded[name, backend] = actgen.load(name, backend=backend)
        loaded["myelu", backend] = actgen.load("myelu", spec=spec, backend=backend)
    return loaded


def dy_for(act, x, dtype=None):
    """A dL/dy for x: the output's shape (half the last axis for a gated activation)."""
    shape = np.shape(x)
    if act.kind == "gated" and shape:
        shape = shape[:-1] + (shape[-1] // 2,)
    size = int(np.prod(shape))
    given = np.asarray(x).dtype
    # x's dtype by default: a float64 dy for float32 x is refused (it would be rounded)
    return np.linspace(0.5, 1.5, size).reshape(shape).astype(dtype or (given if given.kind == "f" else np.float64))


def run(act, method, x, dy=None, out=None, **kw):
    if dy is None and method not in ("forward", "fused"):
        dy = dy_for(act, x)
    if method == "forward":
        return act(x, **kw) if out is None else act(x, out=out, **kw)
    if method == "backward":
        return act.backward(x, dy, out=out, **kw)
    if method == "from_output":
        return act.backward_from_output(x, dy, out=out, **kw)     # x plays the saved output y
    if method == "fused":
        return act.forward_with_derivative(x, out=out, **kw)
    return act.param_grads(x, dy, **kw)


def same(a, b) -> bool:
    """Equal values (NaN equal to NaN) and dtypes, through tuples and dicts."""
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(u, v) for u, v in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def outputs(result):
    return list(result) if isinstance(result, tuple) else [result]


def sample(shape, dtype=np.float64, seed=0):
    return (np.random.default_rng(seed).normal(size=shape) * 2).astype(dtype)


# ---- dtypes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, method", CALLS)
def test_float16_computes_in_float32_integers_and_bools_in_float64(acts, backend, name, method):
    act = acts[name, backend]
    x = sample((3, 4))
    h = x.astype(np.float16)
    dy = dy_for(act, h, np.float16)                             # float16 dy is exact in float32 too
    got = run(act, method, h, dy=dy)
    want = run(act, method, h.astype(np.float32), dy=dy)
    if method == "grads":
        assert all(v.dtype == np.float16 for v in got.values())
        assert all(np.isclose(got[k], want[k], rtol=2e-3) for k in got)
    else:
        assert all(g.dtype == np.float16 for g in outputs(got))
        assert all(same(g, w.astype(np.float16)) for g, w in zip(outputs(got), outputs(want)))
    for ints in (np.arange(-6, 6).reshape(3, 4), np.arange(12).reshape(3, 4) % 3 == 0,
                 np.arange(-6, 6, dtype=np.int8).reshape(3, 4), np.arange(12, dtype=np.uint64).reshape(3, 4)):
        assert same(run(act, method, ints), run(act, method, ints.astype(np.float64)))
    swapped = x.astype(np.float32).astype(">f4")              # byte-swapped floats: converted
    assert same(run(act, method, swapped), run(act, method, x.astype(np.float32)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_float16_results_beyond_its_range_are_inf_without_a_warning(backend):
    elu, prelu = actgen.load("elu", backend=backend), actgen.load("prelu", backend=backend)
    h = np.array([-0.0, -60000.0, 1.0], np.float16)
    dy = np.full(3, 60000.0, np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert elu.backward(h, dy, alpha=2.0).tolist() == [np.inf, 0.0, 60000.0]
        assert elu.backward(h, dy, out=np.empty(3, np.float16), alpha=2.0)[0] == np.inf
        assert prelu.param_grads(h, dy) == {"alpha": -np.inf}
        assert prelu.param_grads(h, dy, alpha=np.full(3, 0.25, np.float16))["alpha"].tolist() == [0.0, -np.inf, 0.0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, method", CALLS)
def test_complex_object_string_and_longdouble_are_refused_naming_the_activation(acts, backend, name, method):
    act = acts[name, backend]
    bad = {"complex128: activations are real functions": np.ones((2, 4), complex),
           "dtype object; pass a float32 or float64 array": np.ones((2, 4), object),
           "holds strings": np.full((2, 4), "1.0"),
           "float128, which has no kernel; pass float64": np.ones((2, 4), np.longdouble)}
    for message, x in bad.items():
        if x.dtype == np.float64:       # a platform whose long double is double
            continue
        with pytest.raises(KernelArgumentError, match=f"^{name}: (x|y) .*{message}"):
            run(act, method, x, dy=dy_for(act, np.ones((2, 4))))
    if method not in ("forward", "fused"):
        with pytest.raises(KernelArgumentError, match=f"^{name}: dy has dtype complex128"):
            run(act, method, np.ones((2, 4)), dy=dy_for(act, np.ones((2, 4))).astype(complex))
    with pytest.raises(KernelArgumentError, match=f"^{name}: (x|y) is not an array of numbers"):
        run(act, method, [[1.0, 2.0], [3.0]], dy=np.ones(2))


# ---- shapes: 0-d, empty, Python scalars and lists ---------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, method", CALLS)
def test_zero_d_empty_scalars_and_lists(acts, backend, name, method):
    act = acts[name, backend]
    for shape in [(0,), (0, 4), (3, 0), (2, 0, 4)]:
        x = np.ones(shape)
        result = run(act, method, x)
        if method == "grads":
            assert all(np.all(v == 0) for v in result.values())
        else:
            assert all(r.shape == (x.shape if method != "forward" or act.kind != "gated"
                                   else shape[:-1] + (shape[-1] // 2,)) for r in outputs(result))
    nested = [[0.5, -1.0, 2.0, 3.0], [1.0, 2.0, -3.0, 0.0]]
    assert same(run(act, method, nested), run(act, method, np.array(nested)))
    if act.kind != "elementwise":
        with pytest.raises(KernelArgumentError, match=f"^{name}: a (gated|rowwise) activation needs an array"):
            run(act, method, 1.5, dy=1.0)
        return
    for scalar in (1.5, 2, np.float32(1.5), np.array(-0.5)):
        result = run(act, method, scalar, dy=1.0)
        one = np.asarray(scalar).reshape(1)
        want = run(act, method, one, dy=np.ones(1, one.dtype if one.dtype.kind == "f" else np.float64))
        for r, w in zip(outputs(result) if method != "grads" else result.values(),
                        outputs(want) if method != "grads" else want.values()):
            assert np.ndim(r) == 0 and r.dtype == w.dtype and r == w.reshape(())


# ---- strides and orders ------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, method", CALLS)
def test_strided_negative_strides_fortran_and_transposed(acts, backend, name, method):
    act = acts[name, backend]
    base = sample((8, 12))
    views = [base[::2, ::3], base[::-1, ::-2], np.asfortranarray(base), base.T, base[:, 2:10],
             np.lib.stride_tricks.as_strided(base, shape=(3, 4), strides=(8, 0)),    # a zero stride
             unaligned(base)]
    for x in views:
        dy_c = dy_for(act, x)
        dy_f = np.asfortranarray(dy_c)[...]     # and a non-contiguous dy
        want = run(act, method, np.ascontiguousarray(x), dy=dy_c)
        assert same(run(act, method, x, dy=dy_f), want)
    if method == "grads":
        return
    x = base[::2, ::3]
    want = run(act, method, np.ascontiguousarray(x))
    rows, cols = want_shape(want)
    big = np.full((2 * rows, 2 * cols), np.nan)[::2, ::-2]                       # non-contiguous out
    got = run(act, method, x, out=big)
    assert (got[0] if method == "fused" else got) is big
    assert same(got, want)
    odd = unaligned(np.zeros((rows, cols)))
    got = run(act, method, unaligned(x), out=odd)
    assert (got[0] if method == "fused" else got) is odd
    assert same(got, want)


def unaligned(a: np.ndarray) -> np.ndarray:
    """A C-contiguous, writable copy of a whose data starts one byte off its dtype's alignment."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    u = np.frombuffer(buf.data, a.dtype, count=a.size, offset=1).reshape(a.shape)
    u[...] = a
    assert u.flags.c_contiguous and not u.flags.aligned and u.flags.writeable
    return u


def want_shape(result):
    return (result[0] if isinstance(result, tuple) else result).shape


# ---- read-only arrays, out= -------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, method", CALLS)
def test_read_only_inputs_are_fine_read_only_out_is_refused(acts, backend, name, method):
    act = acts[name, backend]
    x = sample((3, 4))
    dy = dy_for(act, x)
    want = run(act, method, x, dy=dy)
    x.flags.writeable = False
    dy.flags.writeable = False
    assert same(run(act, method, x, dy=dy), want)
    if method != "grads":
        frozen = np.zeros(want_shape(want))
        frozen.flags.writeable = False
        with pytest.raises(KernelArgumentError, match=f"^{name}: out= is read-only"):
            run(act, method, x, dy=dy, out=frozen)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, method", WITH_OUT)
def test_out_of_the_wrong_shape_dtype_or_type_is_refused(acts, backend, name, method):
    act = acts[name, backend]
    x = sample((3, 4))
    shape = want_shape(run(act, method, x))
    for bad, message in [(np.empty((4, 3)), r"out= has shape \(4, 3\), expected"),
                         (np.empty(shape[::-1] + (1,)), "out= has shape"),
                         (np.empty(shape, np.float32), "out= has dtype float32, expected float64"),
                         (np.empty(shape, np.float16), "out= has dtype float16, expected float64"),
                         (np.zeros(shape).tolist(), "out= must be a numpy array, got list")]:
        with pytest.raises(KernelArgumentError, match=f"^{name}: {message}"):
            run(act, method, x, out=bad)
    with pytest.raises(KernelArgumentError, match="out= has dtype float32, expected float16"):
        run(act, method, x.astype(np.float16), out=np.empty(shape, np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, method", WITH_OUT)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_aliasing_an_input_exactly_or_partly_gives_the_out_of_place_result(acts, backend, name, method,
                                                                                dtype):
    act = acts[name, backend]
    x = sample((4, 6), dtype)
    dy = dy_for(act, x, dtype)
    want = run(act, method, x, dy=dy)
    shape = want_shape(want)
    # in place: out is x (or dy) itself, where the shapes allow it
    for target in ("x", "dy"):
        xc, dyc = x.copy(), dy.copy()
        alias = {"x": xc, "dy": dyc}[target]
        if alias.shape != shape or (target == "dy" and method in ("forward", "fused")):
            continue
        got = run(act, method, xc, dy=dyc, out=alias)
        assert (got[0] if method == "fused" else got) is alias
        assert same(got, want), f"out={target}"
    # partial overlap: out starts one element after x in the same buffer
    buf = np.concatenate([x.ravel(), np.zeros(x.size + 8, dtype)])
    xv = buf[:x.size].reshape(x.shape)
    outv = buf[1:1 + int(np.prod(shape))].reshape(shape)
    got = run(act, method, xv, dy=dy, out=outv)
    assert same(got, want)
    if method != "forward" and method != "fused":
        buf = np.concatenate([dy.ravel(), np.zeros(dy.size + x.size + 8, dtype)])
        dyv = buf[:dy.size].reshape(dy.shape)
        outv = buf[3:3 + int(np.prod(shape))].reshape(shape)
        assert same(run(act, method, x, dy=dyv, out=outv), want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_outputs_may_alias_x_but_not_each_other(acts, backend):
    act = acts["swish", backend]
    x = sample(1000)
    want = act.forward_with_derivative(x)
    for kw in ("out", "deriv_out"):
        xc = x.copy()
        got = act.forward_with_derivative(xc, **{kw: xc})
        assert same(got, want) and got[0 if kw == "out" else 1] is xc
    d = np.empty_like(x)
    with pytest.raises(KernelArgumentError, match="out= and deriv_out= share memory"):
        act.forward_with_derivative(x, out=d, deriv_out=d)
    buf = np.empty(1500)
    with pytest.raises(KernelArgumentError, match="out= and deriv_out= share memory"):
        act.forward_with_derivative(x, out=buf[:1000], deriv_out=buf[500:])


# ---- wrong dy, wrong parameters -----------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, method", [c for c in CALLS if c[1] not in ("forward", "fused")])
def test_dy_of_the_wrong_shape_is_refused(acts, backend, name, method):
    act = acts[name, backend]
    x = np.ones((3, 4))
    expected = dy_for(act, x).shape
    for bad in (np.ones((4, 3)), np.ones(12), np.ones((3, 4, 1)), 1.0, np.ones((1, 4))):
        if np.shape(bad) == expected:
            continue
        message = re.escape(f"{name}: dy has shape {np.shape(bad)}, expected {expected}")
        with pytest.raises(KernelArgumentError, match=f"^{message}$"):
            run(act, method, x, dy=bad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_parameters_of_the_wrong_shape_or_kind_are_refused(acts, backend):
    swish = acts["swish", backend]
    x = np.ones((2, 3, 4))
    dy = np.ones_like(x)
    for method in ("forward", "backward", "grads"):
        with pytest.raises(KernelArgumentError, match=r"parameter beta has shape \(4,\); with param_axis=1 it "
                                                      r"must have shape \(3,\)"):
            run(swish, method, x, dy=dy, beta=np.ones(4), param_axis=1)
        with pytest.raises(KernelArgumentError, match=r"parameter beta has shape \(3, 1\); with param_axis=1"):
            run(swish, method, x, dy=dy, beta=np.ones((3, 1)), param_axis=1)
        with pytest.raises(KernelArgumentError, match=r"parameter beta of shape \(3,\) does not broadcast"):
            run(swish, method, x, dy=dy, beta=np.ones(3))
        with pytest.raises(KernelArgumentError, match="param_axis=3 is out of range"):
            run(swish, method, x, dy=dy, beta=np.ones(3), param_axis=3)
        with pytest.raises(KernelArgumentError, match="param_axis needs an array with dimensions"):
            run(swish, method, 1.0, dy=1.0, beta=np.ones(1), param_axis=0)
        for bad in ("big", 1j, np.ones(4, complex), np.array(["a"] * 4), None, True, [1.0, "a"]):
            with pytest.raises(KernelArgumentError, match="parameter beta must be a real number"):
                run(swish, method, x, dy=dy, beta=bad)
    # per-channel arrays where only scalars work
    for name, method in [("swish", "fused"), ("myelu", "from_output")]:
        p = "beta" if name == "swish" else "alpha"
        with pytest.raises(KernelArgumentError, match=f"takes scalar parameters only; {p} is an array"):
            run(acts[name, backend], method, x, **{p: np.ones(4)})
    # per channel along an axis, channels last, broadcasting: the same as a loop over channels
    beta = np.array([0.5, 1.0, 2.0])
    want = np.stack([swish(x[:, c], beta=b) for c, b in enumerate(beta)], axis=1)
    assert same(swish(x, beta=beta, param_axis=1), want)
    assert same(swish(x, beta=beta.reshape(3, 1)), want)


@pytest.mark.parametrize("channels", [4097, 2**21])
def test_per_channel_gradients_of_very_many_channels(channels):
    """2^21 channels crashed the C per-channel gradient (its per-thread accumulators live on the
    stack); 4097 crosses the runtime's slab size by one."""
    c, npy = actgen.load("prelu"), actgen.load("prelu", backend="numpy")
    rng = np.random.default_rng(7)
    alpha = np.linspace(0.1, 0.3, channels, dtype=np.float32)
    for shape in [(2, channels), (2, channels, 2)]:
        x, dy = rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32)
        got = c.param_grads(x, dy, alpha=alpha, param_axis=1)["alpha"]
        want = npy.param_grads(x, dy, alpha=alpha, param_axis=1)["alpha"]
        assert got.shape == (channels,) and np.allclose(got, want, rtol=1e-6, atol=1e-6)


# ---- NaN and infinities ----------------------------------------------------------------------------

SPECIALS = [np.nan, -np.inf, np.inf, -0.0, 0.0, 1.0, -1e30, 1e30, -2.0]
#: activations whose derivative has no limit at +-inf (snake: 1 + sin(2 f x) oscillates), where
#: NaN is the right answer (PyTorch's autograd gives NaN too)
NO_DERIVATIVE_LIMIT_AT_INF = {"snake"}


@pytest.mark.parametrize("name", [n for n in actgen.library.names()])
def test_nan_propagates_and_infinities_give_the_limits_on_every_path(name):
    c, npy = actgen.load(name), actgen.load(name, backend="numpy")
    for dtype in (np.float32, np.float64):
        if c.kind == "gated":      # a = 1 or NaN, b = the specials
            x = np.stack([np.r_[np.nan, np.ones(len(SPECIALS) - 1)], SPECIALS], axis=0).astype(dtype)
            x = np.concatenate([x[0], x[1]])[None, :]
            nan_at = np.zeros(len(SPECIALS), bool)
            nan_at[0] = True
        elif c.kind == "rowwise":  # a NaN row is NaN, a row of finite values is not
            x = np.array([[np.nan, 1.0, 2.0], [0.5, -1.0, 3.0]], dtype)
            y = c(x)
            assert np.isnan(y[0]).all() and not np.isnan(y[1]).any()
            assert np.isnan(c.backward(x, np.ones_like(x))[0]).all()
            assert np.isnan(c(x.T.copy(), axis=0)[:, 0]).all()
            continue
        else:
            x = np.array(SPECIALS, dtype)
            nan_at = np.isnan(x)
        dy = np.ones(c(x).shape, dtype)
        results = {"forward": (c(x), npy(x)), "backward": (c.backward(x, dy), npy.backward(x, dy))}
        if c.kind == "elementwise":
            results["fused"] = (np.concatenate(c.forward_with_derivative(x)),
                                np.concatenate(npy.forward_with_derivative(x)))
            nan_fused = np.concatenate([nan_at, nan_at])
            strided = np.repeat(x, 2)[::-2][::-1]                       # non-contiguous, same values
            results["strided"] = (c(strided), npy(strided))
            if c.params:                                               # per-channel parameters
                p = next(iter(c.params))
                vec = np.full(len(SPECIALS), c.params[p], dtype)
                results["per-channel"] = (c(x[None], **{p: vec}, param_axis=1)[0], npy(x[None], **{p: vec},
                                                                                        param_axis=1)[0])
        for what, (got, ref) in results.items():
            where = nan_fused if what == "fused" else nan_at
            if name in NO_DERIVATIVE_LIMIT_AT_INF and what in ("backward", "fused"):
                infinite = np.isinf(x.ravel())
                where = where | (np.concatenate([np.zeros_like(infinite), infinite]) if what == "fused"
                                 else infinite)
            if what == "backward" and c.kind == "gated":    # da, then db
                where = np.concatenate([nan_at, nan_at])
            got, ref = got.ravel(), ref.ravel()
            assert np.isnan(got[where]).all(), (name, dtype, what, got)
            assert not np.isnan(got[~where]).any(), (name, dtype, what, got)   # the limits at +-inf
            eps = np.finfo(dtype).eps
            assert np.allclose(got, ref, rtol=8 * eps, atol=0, equal_nan=True), (name, dtype, what, got, ref)
    h = np.array(SPECIALS[:3], np.float16)     # float16 goes through float32: NaN stays NaN
    if c.kind == "elementwise":
        assert np.isnan(c(h)[0]) and not np.isnan(c(h)[1:]).any()


# ---- more than 2^31 elements ---------------------------------------------------------------------------

def _zero_pages(n: int) -> np.ndarray:
    """A float32 array of n zeros backed by a private anonymous mapping: untouched pages are the
    kernel's shared zero page, so reading 8 GB of it costs no memory."""
    flags = mmap.MAP_PRIVATE | getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform == "linux" else 0)
    try:
        m = mmap.mmap(-1, n * 4, flags=flags)
    except (OSError, OverflowError, ValueError) as exc:
        pytest.skip(f"cannot map {n * 4} bytes: {exc}")
    if hasattr(mmap, "MADV_HUGEPAGE"):
        m.madvise(mmap.MADV_HUGEPAGE)        # the huge zero page where the kernel has it: fewer faults
    return np.frombuffer(m, np.float32)


@pytest.mark.skipif(sys.maxsize < 2**40 or not sys.platform.startswith("linux"),
                    reason="needs a 64-bit Linux address space")
def test_more_than_2_31_elements_use_64_bit_indices():
    """prelu's alpha gradient sums x over x < 0 (dy = x here): values placed on both sides of
    index 2^31 must all be counted, each once (32-bit indices or a 32-bit n would drop or
    repeat them)."""
    n = 2**31 + 64
    x = _zero_pages(n)
    marks = {0: -2.0, 2**31 - 1: 7.0, 2**31: -5.0, 2**31 + 3: -3.0, n - 1: -1.0}
    for i, v in marks.items():
        x[i] = v
    act = actgen.load("prelu")
    assert act.param_grads(x, x) == {"alpha": np.float32(4 + 25 + 9 + 1)}
    # per channel, rows of 2^30 + 32 elements: row 1 holds everything past 2^31
    rows = x.reshape(2, -1)
    grads = act.param_grads(rows, rows, alpha=np.array([0.25, 0.5], np.float32), param_axis=0)
    assert grads["alpha"].tolist() == [4.0, 25 + 9 + 1]


# ---- threads, the GIL, fork -------------------------------------------------------------------------

def test_eight_python_threads_calling_every_method_at_once_get_the_serial_results(acts):
    rng = np.random.default_rng(5)
    jobs = []
    for (name, method) in CALLS:
        act = acts[name, "c"]
        for dtype in (np.float32, np.float64):
            x = (rng.normal(size=(64, 1024)) * 3).astype(dtype)       # above the one-thread threshold
            jobs.append((act, method, x, dy_for(act, x, dtype)))
    expected = [run(act, method, x, dy=dy) for act, method, x, dy in jobs]
    failures = []

    def worker(k):
        for i in range(len(jobs)):
            j = (i + k) % len(jobs)
            act, method, x, dy = jobs[j]
            out = None
            if method != "grads":
                out = np.empty(want_shape(expected[j]), x.dtype)
            if not same(run(act, method, x, dy=dy, out=out), expected[j]):
                failures.append((k, act.name, method, x.dtype))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_the_gil_is_released_during_a_kernel():
    """With a thread switch interval of 1000 s, another Python thread can run only while the
    calling thread has released the GIL. A second thread counts while a phase flag says "in
    the kernel"; the flag is set and cleared by the calling thread right around the C call,
    with no other GIL release in between (the arrays' pointers are made beforehand)."""
    act = actgen.load("gelu")
    kernels = act._kernels
    x = np.random.default_rng(3).normal(size=1 << 22)
    y = np.empty_like(x)
    fn, ffi = kernels.fn["forward", "float64"], kernels.ffi
    px, py = ffi.from_buffer("double[]", x), ffi.from_buffer("double[]", y)
    phase = [0]
    counted = [0]
    go = threading.Event()

    def counter():
        go.wait()
        spins = 0
        while phase[0] != 2:
            if phase[0] == 1:
                counted[0] += 1
            spins += 1
            if spins % 256 == 0:
                time.sleep(0.0002)      # releases the GIL: the caller gets it back after its call
    old = sys.getswitchinterval()
    thread = threading.Thread(target=counter)
    thread.start()
    try:
        sys.setswitchinterval(1000.0)
        go.set()
        for _ in range(20):                     # until the counter thread was scheduled during a call
            phase[0] = 1
            fn(px, py, x.size, 1)
            phase[0] = 0
            if counted[0]:
                break
        phase[0] = 2
    finally:
        phase[0] = 2
        sys.setswitchinterval(old)
        thread.join()
    assert counted[0] > 0
    assert np.array_equal(y, act(x))


def test_a_child_forked_while_another_thread_loads_can_load():
    """fork copies a held lock as held: the child gets a fresh one (and one OpenMP thread; see
    tests/test_kinds.py for kernels after fork)."""
    code = ("import os, threading, warnings, numpy as np, actgen\n"
            "from actgen import loading\n"
            "warnings.simplefilter('ignore', DeprecationWarning)\n"
            "actgen.load('tanh'); loading._LOADED.clear()\n"       # in the cache, not loaded
            "held, release = threading.Event(), threading.Event()\n"
            "def hold():\n"
            "    with loading._LOCK:\n"
            "        held.set(); release.wait()\n"
            "t = threading.Thread(target=hold); t.start(); held.wait()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    ok = abs(float(actgen.load('tanh')(np.array([0.5]))[0]) - 0.46211715726000974) < 1e-15\n"
            "    os._exit(0 if ok and actgen.get_num_threads() == 1 else 3)\n"
            "release.set(); t.join()\n"
            "_, status = os.waitpid(pid, 0)\n"
            "print(os.waitstatus_to_exitcode(status))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parent.parent)      # this checkout's actgen
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"


# ---- mixed dtypes (issue 29, item 4): converted where no value changes, refused where one could round

@pytest.mark.parametrize("backend", BACKENDS)
def test_dy_of_another_dtype_is_converted_only_where_no_value_changes(backend):
    act = actgen.load("swish", backend=backend)
    x64 = np.linspace(-4.0, 4.0, 33)
    x32 = x64.astype(np.float32)
    dy32 = np.linspace(0.5, 1.5, 33, dtype=np.float32)
    # float32 dy for float64 x: exact, computed in float64
    dx = act.backward(x64, dy32)
    assert dx.dtype == np.float64 and np.array_equal(dx, act.backward(x64, dy32.astype(np.float64)))
    assert act.backward(x64, dy32.astype(np.float16)).dtype == np.float64
    # float64 dy for float32 x: it would be rounded, so it is refused with the way to do it on purpose
    with pytest.raises(KernelArgumentError, match=r"dy has dtype float64.*dy.astype\(np.float32\)"):
        act.backward(x32, dy32.astype(np.float64))
    with pytest.raises(KernelArgumentError, match="dy has dtype int64"):
        act.backward(x32, np.ones(33, np.int64))
    with pytest.raises(KernelArgumentError, match="dy has dtype float64"):
        act.param_grads(x32, dy32.astype(np.float64))
    # numbers and lists carry no dtype: taken in x's
    listed = act.backward(x32, dy32.tolist())
    assert listed.dtype == np.float32 and np.array_equal(listed, act.backward(x32, dy32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_of_another_dtype_is_refused_even_where_it_could_hold_the_result(backend):
    act = actgen.load("swish", backend=backend)
    x32 = np.linspace(-4.0, 4.0, 33, dtype=np.float32)
    for out in (np.empty(33, np.float64), np.empty(33, np.float16)):
        with pytest.raises(KernelArgumentError, match=f"out= has dtype {out.dtype}, expected float32 .*never converted"):
            act(x32, out=out)
    with pytest.raises(KernelArgumentError, match="out= has dtype float32, expected float64"):
        act.backward(x32.astype(np.float64), np.ones(33), out=np.empty(33, np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_array_parameters_of_another_dtype_follow_the_same_rule(backend):
    prelu = actgen.load("prelu", backend=backend)
    x32 = np.random.default_rng(0).normal(size=(4, 3, 5)).astype(np.float32)
    w32 = np.array([0.25, 0.1, 0.3], np.float32)
    with pytest.raises(KernelArgumentError, match=r"parameter alpha has dtype float64.*alpha.astype\(np.float32\)"):
        prelu(x32, alpha=w32.astype(np.float64), param_axis=1)
    with pytest.raises(KernelArgumentError, match="parameter alpha has dtype float64"):
        prelu.param_grads(x32, np.ones_like(x32), alpha=w32.astype(np.float64), param_axis=1)
    # float32 weights for float64 x: exact
    x64 = x32.astype(np.float64)
    assert np.array_equal(prelu(x64, alpha=w32, param_axis=1), prelu(x64, alpha=w32.astype(np.float64), param_axis=1))
    # a list, and a Python number, carry no dtype: taken in x's (the number is rounded like any literal)
    assert np.array_equal(prelu(x32, alpha=[0.25, 0.1, 0.3], param_axis=1), prelu(x32, alpha=w32, param_axis=1))
    assert prelu(x32, alpha=0.1).dtype == np.float32


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["softmax", "glu"])
def test_the_row_wise_and_gated_kinds_follow_the_dtype_rule(backend, name):
    act = actgen.load(name, backend=backend)
    x32 = np.random.default_rng(1).normal(size=(3, 8)).astype(np.float32)
    dy_shape = act(x32).shape
    with pytest.raises(KernelArgumentError, match="dy has dtype float64"):
        act.backward(x32, np.ones(dy_shape))
    x64 = x32.astype(np.float64)
    dy32 = np.ones(act(x64).shape, np.float32)
    assert np.array_equal(act.backward(x64, dy32), act.backward(x64, dy32.astype(np.float64)))
