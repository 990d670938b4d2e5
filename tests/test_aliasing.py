"""out= that is an input, or overlaps one, gives the out-of-place result: every built-in, every role
of every kind (forward, backward, from the output, fused, parameter gradients, per-channel
parameters, gated halves, rows), both dtypes, both backends.

The runtime hands an out= that is exactly x, dy or the saved y straight to the loops that may run
in place (roles.IN_PLACE) and any other overlap through a temporary; the C loops must then not
declare those pointers `restrict` (issue 30: softmax's float64 row computed in place summed to
0.6). Each result is compared bit for bit with the same call on fresh arrays: the same kernel on
the same values.
"""

from __future__ import annotations

import numpy as np
import pytest

import actgen
from actgen import library

from conftest import requires_cc

BACKENDS = [pytest.param("c", marks=requires_cc), "numpy"]
DTYPES = [np.float32, np.float64]


def same(a, b) -> bool:
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(u, v) for u, v in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def sample(shape, dtype, seed):
    x = np.random.default_rng(seed).normal(size=shape) * 3
    x.flat[0], x.flat[-1] = 0.0, -0.0
    return x.astype(dtype)


def calls(act, dtype):
    """[(label, run(x, dy, **out) -> result, shape of x, shape of dy or None, output shapes by keyword)]
    for every role of ``act`` that writes an array."""
    gated, rows = act.kind == "gated", act.kind == "rowwise"
    shape = (3, 8)
    yshape = (3, 4) if gated else shape
    out = [("forward", lambda x, dy, **o: act(x, **o), shape, None, {"out": yshape}),
           ("backward", lambda x, dy, **o: act.backward(x, dy, **o), shape, yshape, {"out": shape})]
    if act.has_output_derivative and (rows or act.output_derivative_holds(np.dtype(dtype).name)):
        out.append(("from_output", lambda y, dy, **o: act.backward_from_output(y, dy, **o), shape, shape,
                    {"out": shape}))
    if act.kind == "elementwise":
        out.append(("fused", lambda x, dy, **o: act.forward_with_derivative(x, **o), shape, None,
                    {"out": shape, "deriv_out": shape}))
        if act.params:
            # per-channel parameters (each its default, per channel): channels in the middle
            # (rows of inner elements) and last (the parameters vary along the SIMD loop)
            for axis, pshape in ((1, (2, 3, 4)), (-1, (2, 4, 3))):
                per = {p: np.full(pshape[axis], v, dtype) for p, v in act.params.items()}
                out += [(f"forward_pc{axis}", lambda x, dy, per=per, axis=axis, **o:
                         act(x, param_axis=axis, **per, **o), pshape, None, {"out": pshape}),
                        (f"backward_pc{axis}", lambda x, dy, per=per, axis=axis, **o:
                         act.backward(x, dy, param_axis=axis, **per, **o), pshape, pshape, {"out": pshape})]
    return out


def grad_calls(act, dtype):
    """[(label, run(x, dy) -> {p: grad}, shape of x, shape of dy)] for the learnable parameters."""
    if not act.learnable:
        return []
    shape = (3, 8)
    dshape = (3, 4) if act.kind == "gated" else shape
    out = [("param_grads", lambda x, dy: act.param_grads(x, dy), shape, dshape)]
    if act.kind == "elementwise":
        per = {p: np.full(3, v, dtype) for p, v in act.params.items()}
        out.append(("param_grads_pc", lambda x, dy: act.param_grads(x, dy, param_axis=1, **per), (2, 3, 4),
                    (2, 3, 4)))
    return out


def views(buffer_size, dtype, pieces):
    """Contiguous arrays of the given (offset, shape) in one buffer."""
    buf = np.zeros(buffer_size, dtype)
    return [buf[o:o + int(np.prod(s))].reshape(s) for o, s in pieces]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", library.names())
def test_out_that_is_or_overlaps_an_input_gives_the_out_of_place_result(name, dtype, backend):
    act = actgen.load(name, backend=backend)
    checked = 0
    for label, run, xshape, dshape, outs in calls(act, dtype):
        x = sample(xshape, dtype, 1)
        dy = sample(dshape, dtype, 2) if dshape else None
        want = run(x.copy(), None if dy is None else dy.copy())
        wants = dict(zip(outs, want if isinstance(want, tuple) else (want,)))
        for key, oshape in outs.items():
            # exactly an input (x, or dy), where the shapes allow it
            for which, a in (("x", x), ("dy", dy)):
                if a is None or a.shape != oshape:
                    continue
                xc, dc = x.copy(), None if dy is None else dy.copy()
                target = xc if which == "x" else dc
                got = run(xc, dc, **{key: target})
                got = dict(zip(outs, got if isinstance(got, tuple) else (got,)))
                assert got[key] is target, f"{label}: {key}={which} not returned"
                assert all(same(got[k], wants[k]) for k in outs), f"{label}: {key}={which}"
                checked += 1
            # overlapping an input: out starting inside it and ending inside it, by a few elements
            for which, a in (("x", x), ("dy", dy)):
                if a is None:
                    continue
                n, m = a.size, int(np.prod(oshape))
                for a_at, out_at in ((0, 1), (3, 0), (0, 5)):
                    av, ov = views(n + m + 8, dtype, [(a_at, a.shape), (out_at, oshape)])
                    av[...] = a
                    xs, ds = (av, dy) if which == "x" else (x, av)
                    got = run(xs, ds, **{key: ov})
                    got = dict(zip(outs, got if isinstance(got, tuple) else (got,)))
                    assert got[key] is ov, f"{label}: {key} overlapping {which} not returned"
                    assert all(same(got[k], wants[k]) for k in outs), \
                        f"{label}: {key} overlapping {which} at {out_at - a_at:+d} elements"
                    checked += 1
        if act.kind == "gated" and label == "forward":
            # out= exactly the a half or the b half of a one-row x
            x1 = sample((1, 8), dtype, 3)
            want1 = run(x1.copy(), None)
            for half in (slice(0, 4), slice(4, 8)):
                xc = x1.copy()
                got = run(xc, None, out=xc[:, half])
                assert same(got, want1), f"gated forward into x[:, {half.start}:{half.stop}]"
                checked += 1
    for label, run, xshape, dshape in grad_calls(act, dtype):
        x, dy = sample(xshape, dtype, 1), sample(dshape, dtype, 2)
        want = run(x.copy(), dy.copy())
        if dshape == xshape:                    # dy is x
            assert same(run(x, x), run(x.copy(), x.copy())), f"{label}: dy is x"
        for gap in (1, -2):                     # dy overlapping x
            xv, dv = views(x.size + dy.size + 8, dtype, [(max(0, -gap), xshape), (max(0, gap), dshape)])
            xv[...] = x
            dv[...] = dy
            assert same(run(xv, dv), run(xv.copy(), dv.copy())), f"{label}: dy overlapping x by {gap}"
        assert same(run(x, dy), want)
        checked += 1
    assert checked
