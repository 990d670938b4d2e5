"""actgen.torch: gradcheck in float64 (scalar and per-channel parameters, gated, rowwise), values
against PyTorch's own activations, what the forward saves, errors, and a small model that trains."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import away_from_zero as _away_from_zero, requires_cc

torch = pytest.importorskip("torch")
F = torch.nn.functional

import actgen.torch as at  # noqa: E402  (after importorskip)
from actgen.errors import KernelArgumentError  # noqa: E402

pytestmark = requires_cc
F64 = torch.float64


def test_importing_actgen_does_not_import_torch():
    import subprocess

    code = "import actgen, sys; actgen.load('relu'); print('torch' in sys.modules, 'jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_gradcheck_scalar_learnable_parameter():
    m = at.Activation("swish", beta=1.3).double()
    assert isinstance(m.beta, torch.nn.Parameter) and m.beta.shape == ()
    x = _away_from_zero((4, 5))
    assert torch.autograd.gradcheck(m, (x,))
    # the parameter's gradient too (gradcheck through the functional form, beta an input)
    f = at.function("swish")
    beta = torch.tensor(0.7, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: f(a, beta=b), (x, beta))
    want = x * torch.sigmoid(m.beta * x)        # beta is 1.3 rounded to float32 (the default dtype)
    torch.testing.assert_close(m(x), want, rtol=1e-14, atol=1e-15)


def test_gradcheck_per_channel_prelu_matches_torch():
    m = at.Activation("prelu", num_parameters=3).double()
    ref = torch.nn.PReLU(3).double()
    with torch.no_grad():
        m.alpha.copy_(torch.tensor([0.1, 0.25, -0.5]))
        ref.weight.copy_(m.alpha)
    assert m.alpha.shape == (3,)
    x = _away_from_zero((2, 3, 4, 2))
    assert torch.autograd.gradcheck(m, (x,))
    y = m(x)
    torch.testing.assert_close(y, ref(x), rtol=0, atol=0)
    y.square().sum().backward()
    ref(x).square().sum().backward()
    torch.testing.assert_close(m.alpha.grad, ref.weight.grad, rtol=1e-12, atol=1e-12)
    # channels last: param_axis=-1; a non-contiguous view gives the same numbers
    last = at.Activation("prelu", num_parameters=2, param_axis=-1, alpha=[0.1, 0.3]).double()
    assert torch.autograd.gradcheck(last, (x,))
    xt = x.detach().transpose(1, 2)                       # (2, 4, 3, 2), not contiguous
    torch.testing.assert_close(last(xt), last(xt.contiguous()), rtol=0, atol=0)


@pytest.mark.parametrize("name, reference", [
    ("glu", lambda x, dim: F.glu(x, dim)),
    ("swiglu", lambda x, dim: x.chunk(2, dim)[0] * F.silu(x.chunk(2, dim)[1])),
])
def test_gradcheck_gated(name, reference):
    f = at.function(name)
    x = _away_from_zero((3, 4, 6))
    for dim in (-1, 1):
        assert torch.autograd.gradcheck(lambda a: f(a, dim=dim), (x,))
        torch.testing.assert_close(f(x, dim=dim), reference(x, dim), rtol=1e-14, atol=1e-15)
    assert f(x).shape == (3, 4, 3)
    with pytest.raises(KernelArgumentError, match="must be even"):
        f(torch.zeros(3, 5))


def test_gradcheck_rowwise_softmax_saves_the_output():
    f = at.function("softmax")
    x = _away_from_zero((3, 4, 5))
    for dim in (-1, 1):
        assert torch.autograd.gradcheck(lambda a: f(a, dim=dim), (x,))
        y = f(x, dim=dim)
        torch.testing.assert_close(y, torch.softmax(x, dim), rtol=1e-14, atol=1e-16)
        (saved,) = y.grad_fn.saved_tensors
        assert saved.data_ptr() == y.data_ptr()


def test_gradcheck_rowwise_sparsemax():
    f = at.function("sparsemax")
    x = (3 * _away_from_zero((3, 4, 6))).detach().requires_grad_()
    for dim in (-1, 1):
        assert torch.autograd.gradcheck(lambda a: f(a, dim=dim), (x,))
        y = f(x, dim=dim)
        assert (y == 0).any() and (y > 0).sum() > y.numel() // y.shape[dim]     # sparse, not one-hot
        torch.testing.assert_close(y.sum(dim), torch.ones(()).expand_as(y.sum(dim)).to(F64))


SPEC = """
[sigmoid_y]
expr = "sigmoid(x)"
output_derivative = "y * (1 - y)"

[elu_y]
expr = "Piecewise((x, x > 0), (alpha * (exp(x) - 1), True))"
params = { alpha = 1.0 }
learnable = ["alpha"]
output_derivative = "Piecewise((1, y > 0), (y + alpha, True))"
output_derivative_valid = "alpha >= 0"
"""


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("torch-spec") / "memory.toml"
    path.write_text(SPEC)
    return path


def test_forward_saves_y_where_the_spec_writes_the_derivative_with_y(spec_file):
    x = torch.randn(1000, dtype=F64, requires_grad=True)
    sig = at.Activation("sigmoid_y", spec=spec_file)
    y = sig(x)
    (saved,) = y.grad_fn.saved_tensors
    assert saved.data_ptr() == y.data_ptr() and saved.data_ptr() != x.data_ptr()
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, torch.sigmoid(x) * torch.sigmoid(-x), rtol=1e-12, atol=1e-300)
    assert torch.autograd.gradcheck(sig, (x[:20].detach().requires_grad_(),))

    # the built-in sigmoid writes f' with x (y * (1 - y) cancels for large x): it keeps x
    y = at.Activation("sigmoid")(x)
    (saved,) = y.grad_fn.saved_tensors
    assert saved.data_ptr() == x.data_ptr()


def test_forward_saves_x_where_y_does_not_determine_the_gradient(spec_file):
    elu = at.Activation("elu_y", spec=spec_file, alpha=0.5).double()
    x = _away_from_zero((50,))
    # alpha needs a gradient: param_grads needs x
    y = elu(x)
    assert y.grad_fn.saved_tensors[0].data_ptr() == x.data_ptr()
    # alpha frozen and valid (alpha >= 0): y is enough
    elu.alpha.requires_grad_(False)
    y = elu(x)
    assert y.grad_fn.saved_tensors[0].data_ptr() == y.data_ptr()
    assert torch.autograd.gradcheck(elu, (x,))
    # alpha < 0 breaks output_derivative_valid: x again, and the gradient is still right
    with torch.no_grad():
        elu.alpha.fill_(-0.5)
    y = elu(x)
    assert y.grad_fn.saved_tensors[0].data_ptr() == x.data_ptr()
    assert torch.autograd.gradcheck(elu, (x,))


def test_dtypes_and_errors():
    relu = at.Activation("relu")
    x = torch.randn(8, 4)
    torch.testing.assert_close(relu(x), F.relu(x), rtol=0, atol=0)
    for dt in (torch.float16, torch.bfloat16):
        y = relu(x.to(dt))
        assert y.dtype == dt
        torch.testing.assert_close(y, F.relu(x.to(dt)), rtol=0, atol=0)
    with pytest.raises(KernelArgumentError, match="dtype torch.int64.*float32 or float64"):
        relu(torch.arange(4))
    with pytest.raises(KernelArgumentError, match="on meta.*CPU"):
        relu(torch.zeros(4, device="meta"))
    f = at.function("elu")
    with pytest.raises(KernelArgumentError, match="alpha requires grad.*not declare it learnable"):
        f(x, alpha=torch.tensor(1.0, requires_grad=True))
    with pytest.raises(KernelArgumentError, match="unknown parameter.*beta"):
        at.Activation("elu", beta=2.0)
    with pytest.raises(KernelArgumentError, match="no learnable parameter"):
        at.Activation("elu", num_parameters=4)
    swish = at.Activation("swish").double()
    xg = torch.randn(5, dtype=F64, requires_grad=True)
    (gx,) = torch.autograd.grad(swish(xg).sum(), xg, create_graph=True)
    (gt,) = torch.autograd.grad(F.silu(xg).sum(), xg, create_graph=True)
    torch.testing.assert_close(gx, gt, rtol=1e-13, atol=1e-15)
    # a double backward (once HigherDerivativeError): silu''
    torch.testing.assert_close(torch.autograd.grad(gx.sum(), xg)[0], torch.autograd.grad(gt.sum(), xg)[0],
                               rtol=1e-12, atol=1e-14)


def test_numpy_backend_gradcheck():
    m = at.Activation("swish", backend="numpy", beta=0.8).double()
    assert torch.autograd.gradcheck(m, (_away_from_zero((3, 4)),))


def test_a_small_model_trains_with_a_learnable_activation():
    torch.manual_seed(0)
    n = 512
    x = torch.randn(n, 2)
    label = ((x[:, 0] ** 2 + x[:, 1] ** 2) > 1.4).long()           # a circle: not linearly separable
    act = at.Activation("swish", num_parameters=16)
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), act, torch.nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), label)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    accuracy = (model(x).argmax(1) == label).float().mean().item()
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])
    assert accuracy > 0.9
    assert not torch.allclose(act.beta, torch.ones(16))              # beta was trained


def test_three_line_usage_from_a_spec_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "serf.toml").write_text('[serf]\nexpr = "x * erf(log(1 + exp(x)))"\n')

    import actgen.torch
    act = actgen.torch.Activation("serf", spec="serf.toml")
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), act, torch.nn.Linear(8, 1))

    x = torch.randn(32, 4, dtype=F64)
    h = torch.randn(32, 8, dtype=F64)
    torch.testing.assert_close(act(h), h * torch.erf(F.softplus(h)), rtol=1e-13, atol=1e-15)
    assert torch.autograd.gradcheck(act, (h.requires_grad_(),))
    model(x.float()).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert np.isfinite(model[0].weight.grad.numpy()).all()


class _Recorder:
    """Stands in for the loaded activation and records the arrays the kernels receive."""

    def __init__(self, act):
        self._act, self.calls = act, []

    def __getattr__(self, name):
        return getattr(self._act, name)

    def __call__(self, x, out=None, **kw):
        self.calls.append(("forward", x, out))
        return self._act(x, out=out, **kw)

    def backward(self, x, dy, out=None, **kw):
        self.calls.append(("backward", x, out))
        return self._act.backward(x, dy, out=out, **kw)


def test_contiguous_cpu_tensors_reach_the_kernels_without_copies(monkeypatch):
    f = at.function("swish")
    rec = _Recorder(f.act)
    monkeypatch.setattr(f.ops, "act", rec)        # the op family calls the loaded activation
    x = torch.randn(64, 32, requires_grad=True)
    y = f(x)
    y.backward(torch.ones_like(y))
    (_, xf, yf), (_, xb, dxb) = rec.calls
    base = x.detach().numpy()
    assert np.shares_memory(xf, base) and np.shares_memory(xb, base)
    assert np.shares_memory(yf, y.detach().numpy()) and np.shares_memory(dxb, x.grad.numpy())
    # a non-contiguous view is made contiguous once (a copy), with the same numbers
    rec.calls.clear()
    xt = x.detach().t()
    torch.testing.assert_close(f(xt), f(xt.contiguous()), rtol=0, atol=0)
    assert not np.shares_memory(rec.calls[0][1], base)


def test_modules_deep_copy_and_pickle():
    import copy
    import pickle

    m = at.Activation("swish", num_parameters=3, beta=[0.5, 1.0, 2.0])
    x = torch.randn(2, 3, 4)
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        torch.testing.assert_close(clone(x), m(x), rtol=0, atol=0)
        assert clone.beta.data_ptr() != m.beta.data_ptr()
