"""Gated (GLU family) and rowwise (softmax family, sparsemax) activations, per-channel parameters, the
backward from the saved output, the fused forward-and-derivative, threads.

Against NumPy formulas everywhere and against PyTorch where it is installed (float32 and
float64, values and autograd gradients). Tolerances: the kernels are verified in ULPs by
tests/test_accuracy.py and `actgen verify`; here the comparison with an independent
implementation allows a few roundings of the computation: rtol 4 eps (float32: 4.8e-7) plus an
absolute 4 eps * scale for values that cancel (backward passes).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import actgen
from actgen.errors import KernelArgumentError, SpecError
from actgen.spec import parse_spec_text

from conftest import requires_cc

BACKENDS = ["c", "numpy"]
DTYPES = [np.float32, np.float64]
RNG = np.random.default_rng(2024)


def close(got, want, dtype, scale=1.0, ulps=4):
    eps = np.finfo(dtype).eps
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    same_nan = np.isnan(got) == np.isnan(want)
    ok = np.isclose(got, want, rtol=ulps * eps, atol=ulps * eps * scale, equal_nan=True)
    return bool(same_nan.all() and ok.all())


def softmax_ref(x, axis):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(z):
    return 0.5 * (1 + np.tanh(z / 2))


# ---- rowwise ----------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_family_values_and_jvp(backend, dtype, axis):
    x = (RNG.normal(size=(5, 7, 6)) * 4).astype(dtype)
    dy = RNG.normal(size=x.shape).astype(dtype)
    for name, sign in (("softmax", 1), ("softmin", -1)):
        act = actgen.load(name, backend=backend)
        y = act(x, axis=axis)
        p = softmax_ref(sign * x, axis)
        assert y.dtype == dtype and y.shape == x.shape
        assert close(y, p, dtype)
        want = sign * p * (dy - np.sum(dy * p, axis=axis, keepdims=True))
        assert close(act.backward(x, dy, axis=axis), want, dtype)
        assert close(act.backward_from_output(y, dy, axis=axis), want, dtype)
    lsm = actgen.load("log_softmax", backend=backend)
    p = softmax_ref(x, axis)
    assert close(lsm(x, axis=axis), np.log(p), dtype, scale=10)
    want = dy - p * np.sum(dy, axis=axis, keepdims=True)
    assert close(lsm.backward(x, dy, axis=axis), want, dtype, scale=4)
    assert close(lsm.backward_from_output(lsm(x, axis=axis), dy, axis=axis), want, dtype, scale=4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_rows_with_nan_and_infinities_follow_pytorch(backend):
    act = actgen.load("softmax", backend=backend)
    x = np.array([[0.0, 1.0, np.nan], [np.inf, 0.0, 1.0], [-np.inf, -np.inf, -np.inf],
                  [-np.inf, 0.0, 0.0], [1e308, -1e308, 0.0]])
    y = act(x)
    assert np.isnan(y[0]).all() and np.isnan(y[1]).all() and np.isnan(y[2]).all()
    assert np.array_equal(y[3], [0.0, 0.5, 0.5]) and np.array_equal(y[4], [1.0, 0.0, 0.0])
    lsm = actgen.load("log_softmax", backend=backend)
    assert np.array_equal(lsm(x[3:4]), [[-np.inf, -np.log(2), -np.log(2)]])
    # the largest element's log-probability keeps its bits (no cancellation in log(sum))
    assert lsm(np.array([0.0, -50.0]))[0] == -np.exp(-50.0)


@requires_cc
def test_float32_rows_compute_exp_in_float_within_two_ulp():
    """float32 rows whose score is computed in float take exp in float (actgen_exp_f32, s - m as
    an exact float pair) and the reciprocal of the sum: within 2 ULP of the float64 kernel rounded,
    over wide spreads (exp underflowing), ties and short and long rows; NaN rows stay NaN."""
    from actgen.measure import ulp_distance

    rng = np.random.default_rng(7)
    acts = [actgen.load(n) for n in ("softmax", "log_softmax", "softmin")]
    for sigma, cols in ((0.1, 10), (3.0, 3), (30.0, 37), (100.0, 1000)):
        x = (rng.standard_normal((300, cols)) * sigma).astype(np.float32)
        x[::7, 0] = x[::7].max(axis=1)                          # ties at the maximum, some rows
        for act in acts:
            got, want = np.asarray(act(x)), np.asarray(act(x.astype(np.float64))).astype(np.float32)
            assert ulp_distance(got, want).max() <= 2, (act.name, sigma, cols)
    x = np.array([[0.0, np.nan, 1.0], [-np.inf, 0.0, 0.0]], np.float32)
    y = np.asarray(acts[0](x))
    assert np.isnan(y[0]).all() and np.array_equal(y[1], [0.0, 0.5, 0.5])


def test_temperature_softmax_is_a_spec_not_code(tmp_path):
    spec = tmp_path / "ts.toml"
    spec.write_text('[tsoftmax]\nkind = "rowwise"\nnormalizer = "softmax"\nexpr = "x / T"\n'
                    'params = { T = 1.0 }\nlearnable = ["T"]\n')
    x = RNG.normal(size=(4, 9)) * 3
    dy = RNG.normal(size=x.shape)
    for backend in BACKENDS:
        act = actgen.load("tsoftmax", spec=spec, backend=backend)
        p = softmax_ref(x / 2.5, -1)
        assert close(act(x, T=2.5), p, np.float64)
        g = p * (dy - np.sum(dy * p, axis=-1, keepdims=True))
        assert close(act.backward(x, dy, T=2.5), g / 2.5, np.float64)
        grad = act.param_grads(x, dy, T=2.5)["T"]
        assert grad == pytest.approx(np.sum(-x / 2.5**2 * g), rel=1e-12)


def sparsemax_ref(x, axis):
    """Row by row, as the paper writes it (sort descending, the largest k with 1 + k z_k > the
    sum of the k largest, t = (that sum - 1) / k); with fractions.Fraction, so exactly."""
    from fractions import Fraction

    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    out = np.empty(x.shape)
    for idx in np.ndindex(x.shape[:-1]):
        row = [Fraction(float(v)) for v in x[idx]]
        z = sorted(row, reverse=True)
        acc, k, total = Fraction(0), 0, Fraction(0)
        for i, zi in enumerate(z, 1):
            acc += zi
            if 1 + i * zi > acc:
                k, total = i, acc
        t = (total - 1) / k
        out[idx] = [float(max(v - t, 0)) for v in row]
    return np.moveaxis(out, -1, axis)


def sparsemax_jvp(y, dy, axis):
    """J dy with J = diag(s) - s s^T / k, s the support (y > 0), k its size."""
    s = (np.asarray(y) > 0).astype(np.float64)
    dy = np.asarray(dy, np.float64)
    return s * (dy - np.sum(s * dy, axis=axis, keepdims=True) / np.sum(s, axis=axis, keepdims=True))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_sparsemax_values_and_jvp(backend, dtype, axis):
    x = (RNG.normal(size=(5, 7, 6)) * 2).astype(dtype)
    dy = RNG.normal(size=x.shape).astype(dtype)
    act = actgen.load("sparsemax", backend=backend)
    y = act(x, axis=axis)
    p = sparsemax_ref(x, axis)
    assert y.dtype == dtype and y.shape == x.shape
    # exact zeros where the reference has them; the rest within a few roundings of max|x|
    assert np.array_equal(y == 0, p == 0)
    assert close(y, p, dtype, scale=8)
    assert close(np.sum(y, axis=axis, dtype=np.float64), 1.0, dtype, scale=8)
    assert 0 < np.mean(p == 0) < 1                          # the rows are sparse, not one-hot
    want = sparsemax_jvp(p, dy, axis)
    assert close(act.backward(x, dy, axis=axis), want, dtype, scale=4)
    assert close(act.backward_from_output(y, dy, axis=axis), want, dtype, scale=4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparsemax_rows_at_the_edges(backend):
    act = actgen.load("sparsemax", backend=backend)
    x = np.array([[0.0, 1.0, np.nan, 0.0], [np.inf, 0.0, 1.0, 0.0], [-np.inf] * 4,
                  [-np.inf, 0.5, 0.0, -np.inf], [1e30, -1e30, 0.0, 1.0], [0.0, -0.0, 1e-30, -1e-30],
                  [3.0, 3.0, 3.0, -7.0], [-1e300, -1e300, -1e300 * (1 - 2**-52), 0.0]])
    dy = np.array([[1.0, -2.0, 0.5, 4.0]] * len(x))
    y = act(x)
    assert np.isnan(y[:3]).all()                        # NaN, +inf, all -inf: a NaN row (TF Addons)
    assert np.array_equal(y[3], [0.0, 0.75, 0.25, 0.0])  # -inf masks an element
    assert np.array_equal(y[4], [1.0, 0.0, 0.0, 0.0])    # the largest keeps its bits at 1e30
    assert np.array_equal(y[5], [0.25] * 4)
    assert np.array_equal(y[6], [1 / 3, 1 / 3, 1 / 3, 0.0])
    assert np.array_equal(y[7], [0.0, 0.0, 0.0, 1.0])
    dx = act.backward(x, dy)
    assert np.isnan(dx[:3]).all()
    assert np.array_equal(dx[3], [0.0, -1.25, 1.25, 0.0])  # off the support exactly 0 (not inf * 0)
    assert np.array_equal(dx[4], [0.0] * 4)                # one element in the support
    assert np.array_equal(dx[5], dy[5] - dy[5].mean())
    assert np.array_equal(act.backward_from_output(y[3:], dy[3:]), dx[3:])
    assert np.isnan(act.backward_from_output(y[:3], dy[:3])).all()
    assert np.array_equal(act(np.array([[-5.0]])), [[1.0]])
    assert act(np.zeros((3, 0))).shape == (3, 0)


def _shedding_row(n):
    """A row on which Michelot's iteration sheds about one element per pass: each element sits
    just below the threshold of the ones above it, the gaps growing by a factor ~k (they cannot
    grow slower), so such a row stays within 1 of its maximum only up to n ~ 16 (16 passes in
    float64, the bisection joining after 8; 9 once rounded to float32)."""
    z, total, delta = [0.0, -0.5], -0.5, 1e-15
    for k in range(3, n + 1):
        t = (total - 1.0) / (k - 1)
        z.append(t - delta)
        total += z[-1]
        delta *= 1.5 * k
    return np.array(z)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparsemax_long_rows_and_slow_iterations_agree_with_the_sort(dtype):
    """C finds the threshold without sorting (Michelot's iteration, bisection after 8 passes);
    long rows take ~10 passes, a crafted row sheds one element per pass."""
    c, nb = actgen.load("sparsemax", backend="c"), actgen.load("sparsemax", backend="numpy")
    rows = np.stack([RNG.uniform(size=20000), RNG.normal(size=20000), np.linspace(0, 1, 20000) ** 3,
                     RNG.uniform(size=20000) ** 8]).astype(dtype)
    y = c(rows)
    assert close(y, nb(rows), dtype, scale=8)
    assert np.array_equal(y == 0, nb(rows) == 0)
    assert close(np.sum(y, axis=1, dtype=np.float64), np.ones(4), dtype, scale=64)
    row = _shedding_row(16)[::-1].astype(dtype)
    want = sparsemax_ref(row[None], -1)[0]
    assert close(c(row[None])[0], want, dtype, scale=8)


def test_sparsemax_with_a_learnable_temperature(tmp_path):
    spec = tmp_path / "ts.toml"
    spec.write_text('[tsparsemax]\nkind = "rowwise"\nnormalizer = "sparsemax"\nexpr = "x / T"\n'
                    'params = { T = 1.0 }\nlearnable = ["T"]\n')
    x = RNG.normal(size=(4, 9)) * 3
    dy = RNG.normal(size=x.shape)
    for backend in BACKENDS:
        act = actgen.load("tsparsemax", spec=spec, backend=backend)
        y = act(x, T=2.5)
        assert close(y, sparsemax_ref(x / 2.5, -1), np.float64, scale=4)
        g = sparsemax_jvp(y, dy, -1)
        assert close(act.backward(x, dy, T=2.5), g / 2.5, np.float64, scale=4)
        grad = act.param_grads(x, dy, T=2.5)["T"]
        assert grad == pytest.approx(np.sum(-x / 2.5**2 * g), rel=1e-12)
        # and by central differences of L = sum(dy * y) (piecewise linear in 1/T: h stays small)
        h = 1e-6
        fd = (np.sum(dy * act(x, T=2.5 + h)) - np.sum(dy * act(x, T=2.5 - h))) / (2 * h)
        assert grad == pytest.approx(fd, rel=1e-6)


# ---- gated ------------------------------------------------------------------------------------

GATES = {"glu": sigmoid, "reglu": lambda b: np.maximum(b, 0.0), "swiglu": lambda b: b * sigmoid(b)}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(GATES))
@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_gated_family_splits_halves_and_fuses_both_gradients(backend, dtype, name, axis):
    x = (RNG.normal(size=(4, 6, 8)) * 3).astype(dtype)
    act = actgen.load(name, backend=backend)
    a, b = np.split(x.astype(np.float64), 2, axis=axis)
    y = act(x, axis=axis)
    assert y.dtype == dtype and y.shape == a.shape
    assert close(y, a * GATES[name](b), dtype, scale=4)
    dy = RNG.normal(size=y.shape).astype(dtype)
    dx = act.backward(x, dy, axis=axis)
    assert dx.shape == x.shape
    da, db = np.split(dx.astype(np.float64), 2, axis=axis)
    assert close(da, dy * GATES[name](b), dtype, scale=4)
    h = 1e-6
    numeric = (GATES[name](b + h) - GATES[name](b - h)) / (2 * h)
    np.testing.assert_allclose(db, dy * a * numeric, rtol=1e-4, atol=1e-4)


def test_gated_errors_are_clear():
    glu = actgen.load("glu")
    with pytest.raises(KernelArgumentError, match="axis -1 has length 3; .* must be even"):
        glu(np.ones((2, 3)))
    with pytest.raises(KernelArgumentError, match=r"dy has shape \(2, 4\), expected \(2, 2\)"):
        glu.backward(np.ones((2, 4)), np.ones((2, 4)))
    with pytest.raises(KernelArgumentError, match="needs an array with an axis"):
        glu(np.float64(1.0))


def test_a_gate_from_the_same_spec_file_or_inline(tmp_path):
    spec = tmp_path / "g.toml"
    spec.write_text('[mygate]\nexpr = "x * tanh(x)"\n\n[mglu]\ngate = "mygate"\n\n'
                    '[inline]\nkind = "gated"\nexpr = "x * tanh(x)"\n')
    x = RNG.normal(size=(3, 10))
    a, b = x[:, :5], x[:, 5:]
    for name in ("mglu", "inline"):
        assert close(actgen.load(name, spec=spec)(x), a * b * np.tanh(b), np.float64, scale=4)
    spec.write_text('[mglu]\ngate = "nonexistent"\n')
    with pytest.raises(SpecError, match="gate 'nonexistent' is neither a table of this file nor a built-in"):
        actgen.load("mglu", spec=spec)


# ---- per-channel parameters -------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_prelu_per_channel_like_pytorch_and_keras(backend, dtype):
    prelu = actgen.load("prelu", backend=backend)
    x = RNG.normal(size=(2, 3, 4, 5)).astype(dtype)
    dy = RNG.normal(size=x.shape).astype(dtype)
    alpha = np.array([0.1, 0.2, 0.3], dtype)
    a4 = alpha[None, :, None, None].astype(np.float64)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    # PyTorch: num_parameters = C on axis 1
    assert close(prelu(x, alpha=alpha, param_axis=1), np.where(x64 > 0, x64, a4 * x64), dtype)
    assert close(prelu.backward(x, dy, alpha=alpha, param_axis=1), dy64 * np.where(x64 > 0, 1, a4), dtype)
    g = prelu.param_grads(x, dy, alpha=alpha, param_axis=1)["alpha"]
    assert g.shape == (3,) and g.dtype == dtype
    assert close(g, np.sum(np.where(x64 > 0, 0, x64) * dy64, axis=(0, 2, 3)), dtype, scale=10)
    # Keras: alpha of shape x.shape[1:] with shared_axes=[2] -> (3, 1, 5), broadcast
    ka = RNG.uniform(0, 0.5, size=(3, 1, 5)).astype(dtype)
    assert close(prelu(x, alpha=ka), np.where(x64 > 0, x64, ka * x64), dtype)
    gk = prelu.param_grads(x, dy, alpha=ka)["alpha"]
    assert gk.shape == (3, 1, 5)
    assert close(gk, np.sum(np.where(x64 > 0, 0, x64) * dy64, axis=(0, 2), keepdims=True)[0], dtype, scale=10)
    # channels last: shape (C,) broadcasts along the last axis
    cl = RNG.uniform(0, 0.5, size=5).astype(dtype)
    assert close(prelu(x, alpha=cl), np.where(x64 > 0, x64, cl * x64), dtype)
    assert prelu.param_grads(x, dy, alpha=cl)["alpha"].shape == (5,)


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_channel_kernels_equal_the_scalar_ones_bit_for_bit(backend):
    swish = actgen.load("swish", backend=backend)
    x = RNG.normal(size=(3, 4, 70000)).astype(np.float32)    # several chunks per row, threads
    dy = RNG.normal(size=x.shape).astype(np.float32)
    # beta = 2 is outside the box where selection certified swish's float path (0.5..1.5: there a
    # scalar beta computes in float, a per-channel one in double; tests/test_float_range.py)
    beta = np.full(4, 2.0, np.float32)
    assert np.array_equal(swish(x, beta=beta, param_axis=1), swish(x, beta=2.0))
    assert np.array_equal(swish.backward(x, dy, beta=beta, param_axis=1), swish.backward(x, dy, beta=2.0))
    g = swish.param_grads(x, dy, beta=beta, param_axis=1)["beta"]
    assert np.sum(g, dtype=np.float64) == pytest.approx(float(swish.param_grads(x, dy, beta=2.0)["beta"]),
                                                        rel=1e-6)


# ---- from the output, fused -------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_from_output_needs_a_valid_output_derivative(backend, tmp_path):
    spec = tmp_path / "e.toml"
    spec.write_text('[myelu]\nexpr = "Piecewise((x, x > 0), (alpha * expm1(x), True))"\n'
                    'params = { alpha = 1.0 }\noutput_derivative = "Piecewise((1, y > 0), (y + alpha, True))"\n'
                    'output_derivative_valid = "alpha >= 0"\n')
    act = actgen.load("myelu", spec=spec, backend=backend)
    assert act.has_output_derivative
    x = np.linspace(-5, 5, 101)
    dy = np.linspace(1, 2, 101)
    assert close(act.backward_from_output(act(x), dy), act.backward(x, dy), np.float64, scale=2)
    with pytest.raises(KernelArgumentError, match="does not hold for these parameters"):
        act.backward_from_output(act(x, alpha=-1.0), dy, alpha=-1.0)
    with pytest.raises(KernelArgumentError, match="has no backward_from_output"):
        actgen.load("gelu", backend=backend).backward_from_output(x, dy)


def test_a_wrong_output_derivative_is_refused():
    with pytest.raises(SpecError, match=r"output_derivative.* is not f'\(x\) written with y = f\(x\)"):
        parse_spec_text('[t]\nexpr = "tanh(x)"\noutput_derivative = "1 - y**3"\n', path="t.toml")
    with pytest.raises(SpecError, match="uses x"):
        parse_spec_text('[t]\nexpr = "tanh(x)"\noutput_derivative = "1 - x**2"\n', path="t.toml")
    # a slope that could be negative makes y > 0 no longer mean x > 0: refused unless restricted
    with pytest.raises(SpecError, match=r"alpha = -0.25"):
        parse_spec_text('[p]\nexpr = "Piecewise((x, x > 0), (alpha * x, True))"\nparams = { alpha = 0.25 }\n'
                        'output_derivative = "Piecewise((1, y > 0), (alpha, True))"\n', path="p.toml")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_with_derivative_equals_the_two_passes(backend, dtype):
    """The same element functions; the fused loop may vectorise differently (libmvec and scalar
    libm differ by an ULP or two), so equal within a few ULPs, not bit for bit."""
    from actgen.measure import ulp_distance

    for name in ("gelu", "mish", "swish", "relu"):
        act = actgen.load(name, backend=backend)
        x = (RNG.normal(size=1000) * 5).astype(dtype)
        y, d = act.forward_with_derivative(x)
        assert y.dtype == d.dtype == dtype
        assert np.max(ulp_distance(y, act(x))) <= 4, name
        plain = act.backward(x, np.ones_like(x))
        assert close(d, plain, dtype, scale=1, ulps=8), name


# ---- threads ----------------------------------------------------------------------------------

def test_threads_change_nothing_but_speed():
    act = actgen.load("gelu")
    x = RNG.normal(size=300_000).astype(np.float32)
    before = actgen.get_num_threads()
    try:
        actgen.set_num_threads(1)
        one = act(x), act.param_grads(x, x) if act.learnable else None
        actgen.set_num_threads(2)
        two = act(x), act.param_grads(x, x) if act.learnable else None
    finally:
        actgen.set_num_threads(before)
    assert np.array_equal(one[0], two[0])
    with pytest.raises(ValueError):
        actgen.set_num_threads(0)


def test_a_forked_child_runs_the_kernels_on_one_thread():
    """GNU OpenMP cannot start threads after fork: the child must not hang."""
    code = ("import os, numpy as np, actgen\n"
            "act = actgen.load('silu'); x = np.ones(1 << 20, np.float32)\n"
            "act(x)\n"                               # the parent has used OpenMP threads
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    ok = actgen.get_num_threads() == 1 and float(act(x)[0]) > 0.7\n"
            "    os._exit(0 if ok else 3)\n"
            "_, status = os.waitpid(pid, 0)\n"
            "print(os.waitstatus_to_exitcode(status))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"


# ---- PyTorch ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch_module():
    return pytest.importorskip("torch")


def _torch_sparsemax(t, v):
    """Sparsemax by sorting, along the last dim, in PyTorch ops: autograd through it gives the
    Jacobian-vector product on the support, independently of actgen's formula."""
    z, _ = t.sort(v, dim=-1, descending=True)
    c = z.cumsum(-1)
    r = t.arange(1, v.shape[-1] + 1, dtype=v.dtype)
    k = (1 + r * z > c).sum(-1, keepdim=True)
    tau = (c.gather(-1, k - 1) - 1) / k.to(v.dtype)
    return t.clamp(v - tau, min=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rowwise_gated_and_prelu_against_pytorch_autograd(torch_module, dtype):
    t = torch_module
    tdtype = {np.float32: t.float32, np.float64: t.float64}[dtype]
    x = (RNG.normal(size=(6, 10)) * 3).astype(dtype)
    x[0, 3] = 0.0
    dy = RNG.normal(size=x.shape).astype(dtype)
    cases = {"softmax": lambda v: t.softmax(v, -1), "log_softmax": lambda v: t.log_softmax(v, -1),
             "softmin": lambda v: t.nn.functional.softmin(v, -1), "glu": lambda v: t.nn.functional.glu(v, -1)}
    cases["sparsemax"] = lambda v: _torch_sparsemax(t, v)
    for name, fn in cases.items():
        act = actgen.load(name)
        tx = t.tensor(x, dtype=tdtype, requires_grad=True)
        ty = fn(tx)
        tdy = t.tensor(dy[:, :ty.shape[1]])
        ty.backward(tdy)
        assert close(act(x), ty.detach().numpy(), dtype, scale=4), name
        assert close(act.backward(x, dy[:, :ty.shape[1]]), tx.grad.numpy(), dtype, scale=8), name
    # PReLU with one slope per channel (num_parameters = C, axis 1), weight gradient included
    xs = (RNG.normal(size=(4, 3, 5, 5))).astype(dtype)
    dys = RNG.normal(size=xs.shape).astype(dtype)
    w = np.array([0.25, 0.1, -0.3], dtype)
    m = t.nn.PReLU(num_parameters=3).to(tdtype)
    with t.no_grad():
        m.weight.copy_(t.tensor(w))
    tx = t.tensor(xs, requires_grad=True)
    out = m(tx)
    out.backward(t.tensor(dys))
    prelu = actgen.load("prelu")
    assert close(prelu(xs, alpha=w, param_axis=1), out.detach().numpy(), dtype)
    assert close(prelu.backward(xs, dys, alpha=w, param_axis=1), tx.grad.numpy(), dtype)
    g = prelu.param_grads(xs, dys, alpha=w, param_axis=1)["alpha"]
    assert close(g, m.weight.grad.numpy(), dtype, scale=50, ulps=8)


def test_save_output_is_a_boolean_that_needs_an_output_derivative():
    with pytest.raises(SpecError, match="save_output"):
        parse_spec_text('[t]\nexpr = "tanh(x)"\nsave_output = false\n', path="t.toml")
    with pytest.raises(SpecError, match="save_output"):
        parse_spec_text('[t]\nexpr = "tanh(x)"\noutput_derivative = "1 - y**2"\nsave_output = "no"\n',
                        path="t.toml")
    # the built-ins whose y-form cancels in a tail keep x in the wrappers; exact y-forms keep y
    assert not actgen.load("sigmoid").saves_output and not actgen.load("elu").saves_output
    assert actgen.load("relu").saves_output and actgen.load("exponential").saves_output
    assert not actgen.load("gelu").saves_output
