"""actgen.torch's ops beyond the first order: gradgradcheck (scalar, learnable, per-channel
parameters, the saved-output path, gated, rowwise), a third derivative against SymPy evaluated
with mpmath, torch.library.opcheck, torch.compile(fullgraph=True) without graph breaks, the
torch.func transforms that work and the ones that do not, and a PINN trained on u''(x)."""

from __future__ import annotations

import math

import mpmath
import pytest
import sympy as sp

from conftest import away_from_zero as _away_from_zero, requires_cc

torch = pytest.importorskip("torch")
F = torch.nn.functional

import actgen.torch as at  # noqa: E402  (after importorskip)
from actgen.errors import KernelArgumentError  # noqa: E402
from actgen.ir import X, param_symbol  # noqa: E402

pytestmark = requires_cc
F64 = torch.float64


def test_gradgradcheck_learnable_scalar_and_per_channel_parameters():
    f = at.function("swish")
    x = _away_from_zero((3, 4))
    beta = torch.tensor(0.8, dtype=F64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, b: f(a, beta=b), (x, beta))
    per_channel = torch.tensor([0.5, 1.0, 2.0, -0.7], dtype=F64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, b: f(a, beta=b, param_axis=1), (x, per_channel))
    m = at.Activation("prelu", num_parameters=4, param_axis=-1).double()
    assert torch.autograd.gradgradcheck(m, (x,))


def test_gradgradcheck_where_the_forward_saves_its_output(tmp_path):
    (tmp_path / "s.toml").write_text('[sigmoid_y]\nexpr = "sigmoid(x)"\noutput_derivative = "y * (1 - y)"\n')
    sig = at.Activation("sigmoid_y", spec=tmp_path / "s.toml")
    x = _away_from_zero((20,))
    (saved,) = sig(x).grad_fn.saved_tensors
    assert saved.data_ptr() != x.data_ptr()                   # y is kept, not x
    assert torch.autograd.gradgradcheck(sig, (x,))
    assert torch.autograd.gradgradcheck(at.Activation("relu"), (x,))      # relu saves y too


@pytest.mark.parametrize("name", ["glu", "softmax", pytest.param("log_softmax", marks=pytest.mark.slow),
                                  pytest.param("sparsemax", marks=pytest.mark.slow)])
def test_gradgradcheck_gated_and_rowwise(name):
    f = at.function(name)
    x = _away_from_zero((4, 6), seed=1)
    for dim in (-1, 0):
        assert torch.autograd.gradgradcheck(lambda a: f(a, dim=dim), (x,))


def _sympy_derivative(name: str, order: int, params: dict):
    """The order-th derivative of a built-in, by SymPy, as a float64 function (mpmath at 50 digits)."""
    act = at.function(name).act
    expr = sp.diff(act.expr, X, order).subs({param_symbol(p): sp.Float(v, 30) for p, v in params.items()})
    fn = sp.lambdify(X, expr, modules="mpmath")

    def value(t: float) -> float:
        with mpmath.workdps(50):
            return float(fn(mpmath.mpf(t)))
    return value


@pytest.mark.parametrize("name, params", [("gelu", {}), pytest.param("tanh", {}, marks=pytest.mark.slow),
                                          pytest.param("swish", {"beta": 1.25}, marks=pytest.mark.slow)])
def test_third_derivative_nested_three_deep_equals_sympy(name, params):
    f = at.function(name)
    x = torch.linspace(-4, 4, 33, dtype=F64).requires_grad_()
    y = f(x, **params)
    (d1,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), x, create_graph=True)
    (d3,) = torch.autograd.grad(d2.sum(), x)
    for d, order in ((d1, 1), (d2, 2), (d3, 3)):
        ref = _sympy_derivative(name, order, {**f.act.params, **params})
        want = torch.tensor([ref(t) for t in x.detach().tolist()], dtype=F64)
        # each order's kernel is held to its verified budget (8 ULP); 1e-12 relative of the
        # row's largest value leaves room for the zeros of f''' inside the range
        torch.testing.assert_close(d.detach(), want, rtol=1e-12, atol=1e-12 * want.abs().max().item())


def test_opcheck_passes_for_the_ops_of_an_elementwise_family():
    f = at.function("swish")
    x = torch.randn(3, 4, dtype=F64, requires_grad=True)
    dy = torch.randn(3, 4, dtype=F64, requires_grad=True)
    tensors = [torch.tensor(0.8, dtype=F64, requires_grad=True)]
    torch.library.opcheck(f.ops.fwd, (x, [1.0], tensors, [0], None))
    torch.library.opcheck(f.ops.bwd, (x, dy, [1.0], tensors, [0], None))
    torch.library.opcheck(f.ops.pgrad, (x, dy, [1.0], tensors, [0], None))


@pytest.mark.slow
def test_opcheck_passes_per_channel_gated_rowwise():
    f = at.function("swish")
    x = torch.randn(3, 4, dtype=F64, requires_grad=True)
    dy = torch.randn(3, 4, dtype=F64, requires_grad=True)
    tensors = [torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=F64, requires_grad=True)]
    torch.library.opcheck(f.ops.fwd, (x, [1.0], tensors, [0], 1))
    torch.library.opcheck(f.ops.bwd, (x, dy, [1.0], tensors, [0], 1))
    torch.library.opcheck(f.ops.pgrad, (x, dy, [1.0], tensors, [0], 1))
    t = at.function("tanh")
    torch.library.opcheck(t.ops.fwd, (x, [], [], [], None))
    torch.library.opcheck(t.ops.bwd, (x, dy, [], [], [], None))
    for name in ("glu", "softmax"):
        g = at.function(name)
        torch.library.opcheck(g.ops.fwd, (x, [], [], [], -1))
        torch.library.opcheck(g.ops.bwd, (x, torch.randn(g.output_shape((3, 4), -1), dtype=F64), [], [], [], -1))


def test_two_loads_of_one_spec_share_the_op_and_names_are_unique(tmp_path):
    (tmp_path / "a.toml").write_text('[my_act]\nexpr = "x * tanh(x)"\n')
    (tmp_path / "b.toml").write_text('[my_act]\nexpr = "x * sigmoid(x)"\n')
    a1, a2 = at.function("my_act", spec=tmp_path / "a.toml"), at.function("my_act", spec=tmp_path / "a.toml")
    b = at.function("my_act", spec=tmp_path / "b.toml")
    assert a1.ops is a2.ops and a1.ops.fwd is a2.ops.fwd
    names = {a1.ops.fwd._qualname, b.ops.fwd._qualname}
    assert len(names) == 2 and all(n.startswith("actgen::my_act_") for n in names)
    x = torch.randn(5, dtype=F64)
    torch.testing.assert_close(b(x), x * torch.sigmoid(x), rtol=1e-14, atol=1e-15)


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), at.Activation("swish"), torch.nn.Linear(16, 16),
                               at.Activation("gelu"), torch.nn.Linear(16, 8), at.Activation("glu"),
                               torch.nn.Linear(4, 4), at.Activation("log_softmax"))


def test_torch_compile_fullgraph_without_graph_breaks_gives_the_eager_results():
    from torch._dynamo.utils import counters

    model = _model()
    x = torch.randn(32, 6)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, fullgraph=True)
    y = compiled(x)
    y.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    assert not counters["graph_break"]
    model.zero_grad()
    want = model(x)
    want.square().sum().backward()
    torch.testing.assert_close(y, want, rtol=1e-6, atol=1e-6)
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-6)
    assert model[1].beta.grad is not None                     # the learnable beta through the compiled graph
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


def test_torch_func_vmap_works_and_reverse_transforms_say_why_not():
    from torch.func import grad, jacfwd, jacrev, vmap

    f = at.function("swish")
    xs = torch.randn(3, 5, dtype=F64)
    beta = torch.tensor([0.5, 1.0, 2.0, 1.5, 0.7], dtype=F64)
    torch.testing.assert_close(vmap(lambda a: f(a, beta=1.3))(xs), f(xs, beta=1.3), rtol=0, atol=0)
    torch.testing.assert_close(vmap(lambda a: f(a, beta=beta, param_axis=0))(xs),
                               f(xs, beta=beta, param_axis=1), rtol=0, atol=0)
    # torch.func.grad/jacrev: PyTorch 2.13's custom ops run their registered autograd as an
    # autograd.Function without a setup_context staticmethod, which functorch refuses
    with pytest.raises(RuntimeError, match="setup_context"):
        grad(lambda a: f(a).sum())(xs[0])
    with pytest.raises(RuntimeError, match="setup_context"):
        jacrev(f)(xs[0])
    # forward mode has no rule for custom ops: refused rather than a tangent of 0
    with pytest.raises(KernelArgumentError, match="forward-mode"):
        jacfwd(f)(xs[0])
    # the reverse-mode Hessian works
    x = torch.randn(4, dtype=F64)
    h = torch.autograd.functional.hessian(lambda a: f(a).sum(), x)
    want = torch.diag(torch.autograd.functional.hessian(lambda a: F.silu(a).sum(), x).diagonal())
    torch.testing.assert_close(h, want, rtol=1e-12, atol=1e-14)


PINN_SPEC = """
# an adaptive activation (Jagtap, Kawaguchi, Karniadakis 2020) with a learnable slope a
[adaptive_sin]
expr = "sin(a * x)"
params = { a = 1.0 }
learnable = ["a"]
"""


class _TorchAdaptiveSin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return torch.sin(self.a * x)


def _pinn(act_factory):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(1, 12), act_factory(), torch.nn.Linear(12, 12), act_factory(),
                               torch.nn.Linear(12, 1)).double()


def _poisson_loss(model, x):
    """u'' = -pi^2 sin(pi x) on [-1, 1], u(+-1) = 0: the residual needs u''(x), so the loss's
    gradient with respect to the weights needs the activation's third derivative."""
    x = x.requires_grad_()
    u = model(x)
    (du,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    (d2u,) = torch.autograd.grad(du.sum(), x, create_graph=True)
    residual = d2u + math.pi ** 2 * torch.sin(math.pi * x)
    ends = model(torch.tensor([[-1.0], [1.0]], dtype=F64))
    return residual.square().mean() + ends.square().mean()


def test_pinn_with_a_learnable_spec_activation_trains_as_the_torch_network(tmp_path):
    (tmp_path / "pinn.toml").write_text(PINN_SPEC)
    ours = _pinn(lambda: at.Activation("adaptive_sin", spec=tmp_path / "pinn.toml"))
    ref = _pinn(_TorchAdaptiveSin)
    ref.load_state_dict(ours.state_dict())
    x = torch.linspace(-1, 1, 64, dtype=F64).reshape(-1, 1)
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in (ours, ref)]
    losses = ([], [])
    for _ in range(5):
        for m, opt, record in zip((ours, ref), opts, losses):
            opt.zero_grad()
            loss = _poisson_loss(m, x.clone())
            loss.backward()
            record.append(loss.item())
        for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
            # float64 throughout: the two differ by rounding only (sin and its derivatives
            # are each within 8 ULP); 1e-9 relative leaves room for the sums over 64 points
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-12, msg=name)
        for opt in opts:
            opt.step()
    assert losses[0][-1] < losses[0][0]
    assert ours[1].a.grad is not None and ours[1].a.grad.abs().item() > 0
    for a, b in zip(*losses):
        assert a == pytest.approx(b, rel=1e-10)
