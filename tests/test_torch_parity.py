"""Every built-in elementwise and gated activation against PyTorch 2.13: forward values and
autograd gradients (input and learnable parameters), float32 and float64, over a dense range,
log-spaced magnitudes of both signs and the edges (0, -0, +-1e-30, kinks, +-100, +-inf, nan).

PyTorch is the anchor for conventions, not for accuracy (it cancels in gelu's tail, overflows
in softplus, returns NaN at -inf for silu/gelu/mish...). So the rule, per element:

- NaN in gives NaN out (in actgen; PyTorch's elu and celu backward give 1 there);
- at a kink (a Piecewise boundary, a Max/Min tie, Abs at 0) actgen's value and derivative
  equal PyTorch's within TOL ULPs: the kink conventions follow PyTorch;
- elsewhere actgen equals PyTorch within TOL ULPs of max(|actgen|, |torch|) (relative, down
  to the smallest normal), or, where they differ by more, actgen is at least as close to the
  correctly rounded mpmath reference as PyTorch is (or within TOL ULPs of it): where the two
  disagree, actgen is the one that is right;
- at x = +-inf, where PyTorch gives NaN but the limit exists (silu, gelu, mish, hardswish
  at -inf), actgen's value is the limit (tests/test_runtime_edges.py checks the limits);
  elsewhere the two infinities agree.

Activations PyTorch has no built-in for (exponential, lisht, snake, squareplus, sparse_plus,
sparse_sigmoid, log1mexp, hard_sigmoid_keras2, and swish's and celu's parameter gradients) are
compared with the composition a PyTorch user writes; the gated ones (reglu, geglu, swiglu)
with a * g(b) of the two halves. Row-wise ones and per-channel PReLU: tests/test_kinds.py.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

import actgen
from actgen.ir import X, param_symbol
from actgen.derive import derive, differentiate, kink_points
from actgen.reference import reference
from actgen.select import candidates
from actgen.measure import term_scale
from actgen.sweep import param_values

torch = pytest.importorskip("torch")
F = torch.nn.functional

#: ULPs (of the larger magnitude) within which actgen and PyTorch count as equal
TOL = 16

#: name -> (PyTorch forward of a tensor, {param: PyTorch forward of (x, p) for its gradient})
TORCH = {
    "linear": (lambda x: x * 1, {}),
    "relu": (F.relu, {}),
    "relu6": (F.relu6, {}),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.01), {}),
    "prelu": (lambda x: F.prelu(x, torch.tensor([0.25], dtype=x.dtype)),
              {"alpha": lambda x, a: torch.where(x > 0, x, a * x)}),
    "rrelu": (lambda x: F.rrelu(x, 1 / 8, 1 / 3, training=False), {}),
    "elu": (F.elu, {}),
    "celu": (F.celu, {"alpha": lambda x, a: torch.where(x > 0, x, a * torch.expm1(x / a))}),
    "selu": (F.selu, {}),
    "gelu": (F.gelu, {}),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), {}),
    "silu": (F.silu, {}),
    "swish": (F.silu, {"beta": lambda x, b: x * torch.sigmoid(b * x)}),
    "mish": (F.mish, {}),
    "softplus": (F.softplus, {}),
    "softplus_plain": (lambda x: F.softplus(x, threshold=1e30), {}),
    "log_sigmoid": (F.logsigmoid, {}),
    "sigmoid": (torch.sigmoid, {}),
    "tanh": (torch.tanh, {}),
    "softsign": (F.softsign, {}),
    "hard_sigmoid": (F.hardsigmoid, {}),
    "hard_sigmoid_keras2": (lambda x: F.hardtanh(0.2 * x + 0.5, 0.0, 1.0), {}),
    "hard_swish": (F.hardswish, {}),
    "hardtanh": (F.hardtanh, {}),
    "hardshrink": (F.hardshrink, {}),
    "softshrink": (F.softshrink, {}),
    "tanhshrink": (F.tanhshrink, {}),
    "threshold": (lambda x: F.threshold(x, 0.0, 0.0), {}),
    "exponential": (torch.exp, {}),
    "lisht": (lambda x: x * torch.tanh(x), {}),
    "snake": (lambda x: x + torch.sin(x) ** 2, {}),
    "squareplus": (lambda x: (x + torch.sqrt(x * x + 4)) / 2, {}),
    "sparse_plus": (lambda x: torch.where(x <= -1, 0 * x, torch.where(x >= 1, x, (x + 1) ** 2 / 4)), {}),
    "sparse_sigmoid": (lambda x: 0.5 * F.hardtanh(x + 1, 0.0, 2.0), {}),
    "log1mexp": (lambda x: torch.log(-torch.expm1(-x.abs())), {}),
}

#: (name, kink) -> why PyTorch's value differs there, by design
KINK_DIFFERENCES = {
    ("log1mexp", 0.0): "the composition's d|x|/dx = 0 at 0 gives 0 * inf = NaN; actgen gives the "
                       "limit from the zero's side (+-inf), as documented",
}

GATES = {"reglu": F.relu, "geglu": F.gelu, "swiglu": F.silu}


def test_every_builtin_is_compared():
    """A new built-in needs its PyTorch counterpart here (or a place in tests/test_kinds.py)."""
    kinds = {n: actgen.load(n).kind for n in actgen.library.names()}
    covered = set(TORCH) | set(GATES) | {"glu", "softmax", "log_softmax", "softmin", "sparsemax"}
    assert set(kinds) == covered, set(kinds) ^ covered


def _inputs(kinks: list[float]) -> np.ndarray:
    mags = np.logspace(-30, 3, 67)
    return np.concatenate([np.linspace(-12, 12, 1201), mags, -mags, np.array(kinks, float),
                           [0.0, -0.0, 1e-30, -1e-30, 100.0, -100.0, math.inf, -math.inf, math.nan]])


@functools.cache
def _symbolic(name: str):
    """(activation, f, f') at the default parameters, and the backward kernel's stable form
    (whose terms' magnitudes scale the derivative's rounding: next to a root of f', as in
    actgen verify, no fixed precision keeps relative accuracy)."""
    act = actgen.load(name).activation
    subs = {param_symbol(p): v for p, v in act.params.items() if math.isfinite(v)}
    backward = next(k for k in derive(act) if k.kind == "backward")
    return act, act.expr.subs(subs), differentiate(act.expr, X).subs(subs), candidates(act, backward)[0][1].stable


def _derivative_floor(name: str, xs: np.ndarray, dtype) -> np.ndarray:
    """The magnitude f'(x) is computed from: the sum of its terms' magnitudes, as derived and
    in the kernel's form (snake's 1 + sin(2x) is (sin x + cos x)**2 there: one term)."""
    act, _, _, stable = _symbolic(name)
    values = param_values(act, dtype.__name__)
    derived = differentiate(act.expr, X)
    with np.errstate(all="ignore"):
        scale = np.maximum(term_scale(stable, xs, values), term_scale(derived, xs, values))
    return np.where(np.isfinite(scale), scale, 0.0)


def _ulps(a: np.ndarray, b: np.ndarray, dtype, floor=0.0) -> np.ndarray:
    """|a - b| in ULPs of the larger of |a|, |b| and ``floor`` (and the smallest normal); equal
    values (infinities included) are 0, NaN against a number inf."""
    fi = np.finfo(dtype)
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        scale = np.maximum(np.maximum(np.abs(a64), np.abs(b64)), np.maximum(floor, float(fi.tiny)))
        d = np.abs(a64 - b64) / (scale * float(fi.eps))
    d = np.where((a64 == b64) | (np.isnan(a64) & np.isnan(b64)), 0.0, d)
    return np.where(np.isnan(d), np.inf, d)


def _compare(label, xs, got, want, ref_at, dtype, *, kinks=(), floor=None, exceptions=()):
    """The rule of the module docstring, for one kernel. ``ref_at(i)``: the correctly rounded
    reference at element i; ``floor``: the scale below which errors are absolute (the terms'
    magnitudes for a derivative). Returns how many points were checked against mpmath."""
    x64, got, want = xs.astype(np.float64).ravel(), got.ravel(), want.ravel()
    floor = np.zeros(x64.shape) if floor is None else np.broadcast_to(floor, x64.shape).ravel()
    # NaN in gives NaN out (PyTorch's elu/celu backward gives 1 at NaN: not a convention to copy)
    assert np.isnan(got[np.isnan(x64)]).all(), (label, "NaN in must give NaN out")
    finite_x = np.isfinite(x64)
    # +-inf: equal, or PyTorch NaN (where actgen gives the limit if there is one)
    bad = np.isinf(x64) & ~((got == want) | np.isnan(want))
    assert not bad.any(), (label, x64[bad], got[bad], want[bad])
    d = _ulps(got, want, dtype, floor)
    kink = np.isin(x64, np.asarray(kinks, float)) & finite_x
    for k in x64[kink & (d > TOL)]:
        if float(k) not in exceptions:
            i = np.flatnonzero(x64 == k)[0]
            pytest.fail(f"{label} at the kink x = {k!r}: actgen {got[i]!r}, PyTorch {want[i]!r}")
    checked = 0
    for i in np.flatnonzero(finite_x & ~kink & (d > TOL)):
        ref = ref_at(i)
        mine = _ulps(got[i], ref, dtype, floor[i])
        theirs = _ulps(want[i], ref, dtype, floor[i])
        assert mine <= max(theirs, TOL), (
            f"{label} at x = {x64[i]!r}: actgen {got[i]!r} ({mine:.3g} ULP from mpmath's {ref!r}), "
            f"PyTorch {want[i]!r} ({theirs:.3g} ULP)")
        checked += 1
    return checked


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(TORCH))
def test_elementwise_builtin_matches_pytorch(name, dtype):
    forward, param_forwards = TORCH[name]
    sym, expr, dexpr, _ = _symbolic(name)
    kinks = [k for k in kink_points(sym) if math.isfinite(k)]
    xs = _inputs(kinks).astype(dtype)
    kinks = [float(dtype(k)) for k in kinks]           # the floats a kernel sees
    act = actgen.load(name)
    tx = torch.tensor(xs, requires_grad=True)
    ty = forward(tx)
    ty.backward(torch.ones_like(ty))
    want_y, want_dx = ty.detach().numpy(), tx.grad.numpy()
    got_y, got_dx = act(xs), act.backward(xs, np.ones_like(xs))
    assert got_y.dtype == got_dx.dtype == dtype
    exceptions = {k for (n, k) in KINK_DIFFERENCES if n == name}
    dt = dtype.__name__
    _compare(f"{name} {dt} forward", xs, got_y, want_y, lambda i: reference(expr, {X: float(xs[i])}, dt),
             dtype, kinks=kinks, exceptions=exceptions)
    _compare(f"{name} {dt} f'", xs, got_dx, want_dx, lambda i: reference(dexpr, {X: float(xs[i])}, dt),
             dtype, kinks=kinks, floor=_derivative_floor(name, xs, dtype), exceptions=exceptions)

    # learnable parameters: the reduced gradient over the dense range, against autograd of the
    # composition with the parameter broadcast (its per-element terms give the scale)
    dense = np.linspace(-12, 12, 1201).astype(dtype)
    dy = np.random.default_rng(3).uniform(-1, 1, dense.shape).astype(dtype)
    grads = act.param_grads(dense, dy)
    assert set(grads) == set(param_forwards)
    for p, fn in param_forwards.items():
        tp = torch.full(dense.shape, act.params[p], dtype=torch.float64, requires_grad=True)
        out = fn(torch.tensor(dense, dtype=torch.float64), tp)
        out.backward(torch.tensor(dy, dtype=torch.float64))
        terms = tp.grad.numpy()
        eps = float(np.finfo(dtype).eps)
        assert abs(float(grads[p]) - terms.sum()) <= TOL * eps * np.abs(terms).sum(), (name, p, grads[p], terms.sum())


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(GATES))
def test_gated_builtin_matches_pytorch(name, dtype):
    """y = a * g(b) and both halves' gradients, by the same rule (references from g's)."""
    rng = np.random.default_rng(5)
    a = (rng.normal(size=(32, 40)) * 4).astype(dtype)
    b = np.concatenate([rng.normal(size=(32, 20)) * 4, np.linspace(-12, 12, 32 * 20).reshape(32, 20)], axis=1)
    b[0, :6] = [0.0, -0.0, 1e-30, -1e-30, 100.0, -100.0]
    b = b.astype(dtype)
    x = np.concatenate([a, b], axis=-1)
    dy = rng.uniform(-1, 1, size=a.shape).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ta, tb = tx.chunk(2, -1)
    ty = ta * GATES[name](tb)
    ty.backward(torch.tensor(dy))
    act = actgen.load(name)
    got_y, got_dx = act(x), act.backward(x, dy)
    assert got_y.shape == a.shape and got_dx.shape == x.shape
    gate = actgen.load(name).activation.gate
    _, g, dg, _ = _symbolic(gate)
    A, B, D = (v.ravel().astype(np.float64) for v in (a, b, dy))
    dt = dtype.__name__
    want_dx = tx.grad.numpy()

    def ref(expr, factor):
        return lambda i: float(dtype(reference(expr, {X: B[i]}, "float64") * factor[i]))

    _compare(f"{name} {dt} forward", b, got_y, ty.detach().numpy(), ref(g, A), dtype)
    _compare(f"{name} {dt} da", b, got_dx[:, :40], want_dx[:, :40], ref(g, D), dtype)
    _compare(f"{name} {dt} db", b, got_dx[:, 40:], want_dx[:, 40:], ref(dg, D * A), dtype,
             floor=_derivative_floor(gate, b, dtype).ravel() * np.abs(D * A))
