"""Hand-written peers of the built-in activations: NumPy as users write it, PyTorch's own CPU
kernels (with ``out=`` and allocating), and numexpr formulas."""

from __future__ import annotations

import math


def numpy_formulas(np):
    """{name: (defaults, forward(x), backward(x, dy))}: idiomatic NumPy, allocating, as found in
    tutorials; ``defaults`` are the parameter values they hard-code (compared with the spec's)."""
    try:
        from scipy.special import erf
    except ImportError:                                      # pragma: no cover - scipy is common
        erf = None

    def sig(x):
        return 1 / (1 + np.exp(-x))

    def silu_b(x, dy):
        s = sig(x)
        return dy * (s * (1 + x * (1 - s)))

    def gelu_tanh_f(x):
        return 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))

    def gelu_tanh_b(x, dy):
        t = np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3))
        return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * 0.7978845608028654 * (1 + 3 * 0.044715 * x * x))

    def mish_b(x, dy):
        t = np.tanh(np.log1p(np.exp(x)))
        return dy * (t + x * (1 - t * t) * sig(x))

    def lisht_b(x, dy):
        t = np.tanh(x)
        return dy * (t + x * (1 - t * t))

    f = {
        "relu": ({}, lambda x: np.maximum(x, 0), lambda x, dy: dy * (x > 0)),
        "leaky_relu": ({"negative_slope": 0.01}, lambda x: np.where(x > 0, x, 0.01 * x),
                       lambda x, dy: np.where(x > 0, dy, 0.01 * dy)),
        "prelu": ({"alpha": 0.25}, lambda x: np.where(x > 0, x, 0.25 * x),
                  lambda x, dy: np.where(x > 0, dy, 0.25 * dy)),
        "elu": ({"alpha": 1.0}, lambda x: np.where(x > 0, x, np.exp(x) - 1),
                lambda x, dy: np.where(x > 0, dy, dy * np.exp(x))),
        "sigmoid": ({}, sig, lambda x, dy: dy * sig(x) * (1 - sig(x))),
        "tanh": ({}, np.tanh, lambda x, dy: dy * (1 - np.tanh(x) ** 2)),
        "silu": ({}, lambda x: x * sig(x), silu_b),
        "swish": ({"beta": 1.0}, lambda x: x * sig(x), silu_b),
        "gelu_tanh": ({}, gelu_tanh_f, gelu_tanh_b),
        "mish": ({}, lambda x: x * np.tanh(np.log1p(np.exp(x))), mish_b),
        "softplus": ({"beta": 1.0, "threshold": 20.0}, lambda x: np.log1p(np.exp(x)), lambda x, dy: dy * sig(x)),
        "softsign": ({}, lambda x: x / (1 + np.abs(x)), lambda x, dy: dy / (1 + np.abs(x)) ** 2),
        "hard_sigmoid": ({}, lambda x: np.clip(x / 6 + 0.5, 0, 1), lambda x, dy: dy * ((x > -3) & (x < 3)) / 6),
        "hard_sigmoid_keras2": ({}, lambda x: np.clip(0.2 * x + 0.5, 0, 1),
                                lambda x, dy: dy * 0.2 * ((x > -2.5) & (x < 2.5))),
        "hard_swish": ({}, lambda x: x * np.clip(x + 3, 0, 6) / 6,
                       lambda x, dy: dy * np.where(x < -3, 0, np.where(x > 3, 1, (2 * x + 3) / 6))),
        "hardtanh": ({}, lambda x: np.clip(x, -1, 1), lambda x, dy: dy * ((x > -1) & (x < 1))),
        "lisht": ({}, lambda x: x * np.tanh(x), lisht_b),
        "linear": ({}, lambda x: x.copy(), lambda x, dy: dy.copy()),
    }
    if erf is not None:
        f["gelu"] = ({}, lambda x: 0.5 * x * (1 + erf(x / np.sqrt(2).astype(x.dtype))),
                     lambda x, dy: dy * (0.5 * (1 + erf(x * x.dtype.type(0.7071067811865476)))
                                         + x * np.exp(-0.5 * x * x) * x.dtype.type(0.3989422804014327)))
    return f


def torch_peers(torch):
    """{name: (defaults, fwd_out(x, y), fwd(x), bwd_out(x, y, dy, dx) | None, bwd(x, y, dy) | None)}.
    Backward is aten's own backward op (what autograd runs), taking y where PyTorch does."""
    A = torch.ops.aten
    nn = torch._C._nn

    def silu():
        return ({}, lambda x, y: nn.silu(x, out=y), torch.nn.functional.silu,
                lambda x, y, dy, dx: A.silu_backward.grad_input(dy, x, grad_input=dx),
                lambda x, y, dy: A.silu_backward(dy, x))

    def leaky(slope, key):
        return ({key: slope}, lambda x, y: nn.leaky_relu(x, slope, out=y),
                lambda x: torch.nn.functional.leaky_relu(x, slope),
                lambda x, y, dy, dx: A.leaky_relu_backward.grad_input(dy, x, slope, False, grad_input=dx),
                lambda x, y, dy: A.leaky_relu_backward(dy, x, slope, False))

    def gelu(approximate):
        return ({}, lambda x, y: nn.gelu(x, approximate=approximate, out=y),
                lambda x: torch.nn.functional.gelu(x, approximate=approximate),
                lambda x, y, dy, dx: A.gelu_backward.grad_input(dy, x, approximate=approximate, grad_input=dx),
                lambda x, y, dy: A.gelu_backward(dy, x, approximate=approximate))

    # log_sigmoid_forward writes a second output, exp(-|x|), into this buffer (resized by out=);
    # PyTorch's CPU log_sigmoid_backward reads it (no exp of its own: a zeroed buffer changes its
    # result), so its backward gets the buffer of the same x, made once outside the timing
    empty = {t: torch.empty(0, dtype=t) for t in (torch.float32, torch.float64)}
    saved = [None, None]

    def buffer_of(x):
        if saved[0] is not x:
            saved[0], saved[1] = x, A.log_sigmoid_forward(x)[1]
        return saved[1]

    def hardtanh(lo, hi, defaults):
        return (defaults, lambda x, y: nn.hardtanh(x, lo, hi, out=y),
                lambda x: torch.nn.functional.hardtanh(x, lo, hi),
                lambda x, y, dy, dx: A.hardtanh_backward.grad_input(dy, x, lo, hi, grad_input=dx),
                lambda x, y, dy: A.hardtanh_backward(dy, x, lo, hi))

    def elu(alpha, scale, input_scale, defaults):
        """elu, celu (input_scale 1/alpha) and selu are one aten kernel with three constants."""
        return (defaults, lambda x, y: nn.elu(x, alpha, scale, input_scale, out=y),
                lambda x: nn.elu(x, alpha, scale, input_scale),
                lambda x, y, dy, dx: A.elu_backward.grad_input(dy, alpha, scale, input_scale, False, x,
                                                               grad_input=dx),
                lambda x, y, dy: A.elu_backward(dy, alpha, scale, input_scale, False, x))

    return {
        "relu": ({}, lambda x, y: torch.clamp_min(x, 0, out=y), torch.relu,
                 lambda x, y, dy, dx: A.threshold_backward.grad_input(dy, x, 0, grad_input=dx),
                 lambda x, y, dy: A.threshold_backward(dy, x, 0)),
        "leaky_relu": leaky(0.01, "negative_slope"),
        "prelu": leaky(0.25, "alpha"),
        "elu": elu(1.0, 1.0, 1.0, {"alpha": 1.0}),
        "sigmoid": ({}, lambda x, y: torch.sigmoid(x, out=y), torch.sigmoid,
                    lambda x, y, dy, dx: A.sigmoid_backward.grad_input(dy, y, grad_input=dx),
                    lambda x, y, dy: A.sigmoid_backward(dy, y)),
        "tanh": ({}, lambda x, y: torch.tanh(x, out=y), torch.tanh,
                 lambda x, y, dy, dx: A.tanh_backward.grad_input(dy, y, grad_input=dx),
                 lambda x, y, dy: A.tanh_backward(dy, y)),
        "silu": silu(),
        "swish": ({"beta": 1.0},) + silu()[1:],
        "gelu": gelu("none"),
        "gelu_tanh": gelu("tanh"),
        "mish": ({}, lambda x, y: nn.mish(x, out=y), torch.nn.functional.mish, None,
                 lambda x, y, dy: A.mish_backward(dy, x)),
        "softplus": ({"beta": 1.0, "threshold": 20.0}, lambda x, y: nn.softplus(x, 1, 20, out=y),
                     torch.nn.functional.softplus,
                     lambda x, y, dy, dx: A.softplus_backward.grad_input(dy, x, 1, 20, grad_input=dx),
                     lambda x, y, dy: A.softplus_backward(dy, x, 1, 20)),
        "softsign": ({}, None, torch.nn.functional.softsign, None, None),
        "hard_sigmoid": ({}, lambda x, y: nn.hardsigmoid(x, out=y), torch.nn.functional.hardsigmoid,
                         lambda x, y, dy, dx: A.hardsigmoid_backward.grad_input(dy, x, grad_input=dx),
                         lambda x, y, dy: A.hardsigmoid_backward(dy, x)),
        "hard_swish": ({}, lambda x, y: nn.hardswish(x, out=y), torch.nn.functional.hardswish,
                       lambda x, y, dy, dx: A.hardswish_backward.out(dy, x, out=dx),
                       lambda x, y, dy: A.hardswish_backward(dy, x)),
        "hardtanh": hardtanh(-1.0, 1.0, {"min_val": -1.0, "max_val": 1.0}),
        "relu6": hardtanh(0.0, 6.0, {}),
        "rrelu": ({"lower": 0.125, "upper": 1 / 3},) + leaky((0.125 + 1 / 3) / 2, "negative_slope")[1:],
        "celu": elu(1.0, 1.0, 1.0, {"alpha": 1.0}),
        "selu": elu(1.6732632423543772, 1.0507009873554805, 1.0,
                    {"alpha": 1.6732632423543772, "scale": 1.0507009873554805}),
        "softplus_plain": ({}, lambda x, y: nn.softplus(x, 1, 20, out=y), torch.nn.functional.softplus,
                           lambda x, y, dy, dx: A.softplus_backward.grad_input(dy, x, 1, 20, grad_input=dx),
                           lambda x, y, dy: A.softplus_backward(dy, x, 1, 20)),
        "log_sigmoid": ({}, lambda x, y: A.log_sigmoid_forward.output(x, output=y, buffer=empty[x.dtype]),
                        torch.nn.functional.logsigmoid,
                        lambda x, y, dy, dx: A.log_sigmoid_backward.grad_input(dy, x, buffer_of(x), grad_input=dx),
                        lambda x, y, dy: A.log_sigmoid_backward(dy, x, buffer_of(x))),
        "hardshrink": ({"lambd": 0.5}, lambda x, y: A.hardshrink.out(x, 0.5, out=y),
                       lambda x: torch.nn.functional.hardshrink(x, 0.5),
                       lambda x, y, dy, dx: A.hardshrink_backward.grad_input(dy, x, 0.5, grad_input=dx),
                       lambda x, y, dy: A.hardshrink_backward(dy, x, 0.5)),
        "softshrink": ({"lambd": 0.5}, lambda x, y: nn.softshrink(x, 0.5, out=y),
                       lambda x: torch.nn.functional.softshrink(x, 0.5),
                       lambda x, y, dy, dx: A.softshrink_backward.grad_input(dy, x, 0.5, grad_input=dx),
                       lambda x, y, dy: A.softshrink_backward(dy, x, 0.5)),
        "threshold": ({"threshold": 0.0, "value": 0.0}, lambda x, y: A.threshold.out(x, 0.0, 0.0, out=y),
                      lambda x: torch.nn.functional.threshold(x, 0.0, 0.0),
                      lambda x, y, dy, dx: A.threshold_backward.grad_input(dy, x, 0.0, grad_input=dx),
                      lambda x, y, dy: A.threshold_backward(dy, x, 0.0)),
        # autograd of exp multiplies by the saved output; of tanhshrink, x - tanh(x), it runs
        # tanh_backward and a subtraction (no fused aten op, so no out= form)
        "exponential": ({}, lambda x, y: torch.exp(x, out=y), torch.exp,
                        lambda x, y, dy, dx: torch.mul(dy, y, out=dx), lambda x, y, dy: dy * y),
        "tanhshrink": ({}, None, torch.nn.functional.tanhshrink, None,
                       lambda x, y, dy: dy - A.tanh_backward(dy, torch.tanh(x))),
    }


def numexpr_formulas():
    """{name: (defaults, forward, backward, constants)}: numexpr expressions in x (and dy) as users
    write them. A float literal would make numexpr compute a float32 array in float64, so the
    constants are named and passed in the array's dtype."""
    sig_b = "dy / ((1 + exp(-x)) * (1 + exp(x)))"
    silu_f, silu_b = "x / (1 + exp(-x))", "dy / (1 + exp(-x)) * (1 + x / (1 + exp(x)))"
    leaky = ("where(x > 0, x, a * x)", "where(x > 0, dy, a * dy)")
    elu = ("where(x > 0, x, a * expm1(x))", "where(x > 0, dy, dy * a * exp(x))")
    shrink_b = "where(abs(x) > l, dy, 0)"
    gt = "tanh(c * (x + k * x * x * x))"
    gelu_tanh = {"h": 0.5, "c": 0.7978845608028654, "k": 0.044715, "k3": 3 * 0.044715}
    sp = "tanh(log1p(exp(x)))"
    return {
        "relu": ({}, "where(x > 0, x, 0)", "where(x > 0, dy, 0)", {}),
        "leaky_relu": ({"negative_slope": 0.01}, *leaky, {"a": 0.01}),
        "prelu": ({"alpha": 0.25}, *leaky, {"a": 0.25}),
        "elu": ({"alpha": 1.0}, *elu, {"a": 1.0}),
        "celu": ({"alpha": 1.0}, *elu, {"a": 1.0}),
        "selu": ({"alpha": 1.6732632423543772, "scale": 1.0507009873554805},
                 "s * where(x > 0, x, a * expm1(x))", "dy * s * where(x > 0, 1, a * exp(x))",
                 {"a": 1.6732632423543772, "s": 1.0507009873554805}),
        "sigmoid": ({}, "1 / (1 + exp(-x))", sig_b, {}),
        "log_sigmoid": ({}, "-log1p(exp(-x))", "dy / (1 + exp(x))", {}),
        "exponential": ({}, "exp(x)", "dy * exp(x)", {}),
        "tanh": ({}, "tanh(x)", "dy * (1 - tanh(x) ** 2)", {}),
        "silu": ({}, silu_f, silu_b, {}),
        "swish": ({"beta": 1.0}, silu_f, silu_b, {}),
        "gelu_tanh": ({}, f"h * x * (1 + {gt})",
                      f"dy * (h * (1 + {gt}) + h * x * (1 - {gt} ** 2) * c * (1 + k3 * x * x))", gelu_tanh),
        "mish": ({}, f"x * {sp}", f"dy * ({sp} + x * (1 - {sp} ** 2) / (1 + exp(-x)))", {}),
        "softplus": ({"beta": 1.0, "threshold": 20.0}, "log1p(exp(x))", "dy / (1 + exp(-x))", {}),
        "softplus_plain": ({}, "log1p(exp(x))", "dy / (1 + exp(-x))", {}),
        "softsign": ({}, "x / (1 + abs(x))", "dy / (1 + abs(x)) ** 2", {}),
        "hard_sigmoid": ({}, "where(x <= -3, 0, where(x >= 3, 1, x / 6 + h))",
                         "where((x > -3) & (x < 3), dy / 6, 0)", {"h": 0.5}),
        "hard_swish": ({}, "x * where(x <= -3, 0, where(x >= 3, 6, x + 3)) / 6",
                       "dy * where(x < -3, 0, where(x > 3, 1, (2 * x + 3) / 6))", {}),
        "hardtanh": ({"min_val": -1.0, "max_val": 1.0}, "where(x < -1, -1, where(x > 1, 1, x))",
                     "where((x > -1) & (x < 1), dy, 0)", {}),
        "relu6": ({}, "where(x < 0, 0, where(x > 6, 6, x))", "where((x > 0) & (x < 6), dy, 0)", {}),
        "hardshrink": ({"lambd": 0.5}, "where(abs(x) > l, x, 0)", shrink_b, {"l": 0.5}),
        "softshrink": ({"lambd": 0.5}, "where(x > l, x - l, where(x < -l, x + l, 0))", shrink_b, {"l": 0.5}),
        "lisht": ({}, "x * tanh(x)", "dy * (tanh(x) + x * (1 - tanh(x) ** 2))", {}),
    }


def numexpr_calls(ne, formula, x, dy, y, dx):
    """forward() and backward() of one numexpr formula on these arrays, writing into y and dx."""
    _, fwd, bwd, consts = formula
    names = {k: x.dtype.type(v) for k, v in consts.items()}
    fdict, bdict = {"x": x, **names}, {"x": x, "dy": dy, **names}
    return (lambda: ne.evaluate(fwd, local_dict=fdict, out=y)), (lambda: ne.evaluate(bwd, local_dict=bdict, out=dx))


def defaults_match(wanted: dict, act) -> bool:
    return all(p in act.params and math.isclose(act.params[p], v) for p, v in wanted.items()) and \
        all(p in wanted or _trivial_default(p, v) for p, v in act.params.items())


def _trivial_default(param: str, value: float) -> bool:
    """Parameters a peer without them equals (relu's negative_slope 0, max_value inf, threshold 0)."""
    return (param, value) in {("negative_slope", 0.0), ("max_value", math.inf), ("threshold", 0.0)}
