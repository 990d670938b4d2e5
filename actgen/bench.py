"""`actgen bench`: throughput of actgen's kernels against NumPy and PyTorch, in one run.

For each activation, dtype, array size and thread count it measures (median of repeats, after a
warm-up) the forward, backward, backward_from_output and forward_with_derivative kernels of

- ``actgen``        the C kernels, called with ``out=``;
- ``actgen_numpy``  actgen's NumPy backend, with ``out=``;
- ``numpy``         NumPy as users write it (a hand-written formula per common activation, allocating);
- ``torch_out``     PyTorch's CPU kernels with a preallocated ``out=`` (``grad_input=`` for backward);
- ``torch``         PyTorch's ordinary allocating calls;
- ``numexpr``       numexpr (when installed) evaluating the formula as users write it, ``out=``
                    preallocated, with the same thread count;
- ``copy``          the copy bandwidth (the faster of a threaded ``torch`` copy and ``np.copyto``),
                    the yardstick of a memory-bound kernel.

and reports Gelem/s, GB/s (bytes read + written), the ratios of actgen to ``torch_out``, ``torch``,
``numpy``, ``numexpr`` and the best peer, and the % of the copy bandwidth. Timings are printed and,
optionally, written as JSON and markdown with a description of the machine, and drawn as
throughput against size (``--plot``, matplotlib). Only light imports at top level.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import subprocess
import sys
import time

HELP = "measure kernel throughput against NumPy and PyTorch"
DESCRIPTION = ("Measure Gelem/s of actgen's C kernels (forward, backward, backward_from_output, "
               "forward_with_derivative), actgen's NumPy backend, NumPy as users write it, PyTorch "
               "(out= and allocating) and numexpr when installed, and the copy bandwidth, in one run (medians of "
               "repeats after a warm-up), and print the ratios. Without --size/--threads it runs the "
               "standard set: 2^24 elements with all threads, and 2^16 and 2^12 elements with 1 thread "
               "(call overhead).")

OPS = ("forward", "backward", "backward_from_output", "forward_with_derivative")
#: arrays read + written per element, for GB/s and the % of the copy bandwidth
STREAMS = {"forward": 2, "backward": 3, "backward_from_output": 3, "forward_with_derivative": 3, "copy": 2}
IMPLS = ("actgen", "actgen_numpy", "numpy", "torch_out", "torch", "numexpr")
PEERS = ("numpy", "torch_out", "torch", "numexpr")
SHORT = {"forward": "fwd", "backward": "bwd", "backward_from_output": "bwd(y)",
         "forward_with_derivative": "fwd+d"}
STANDARD = ((1 << 24, None), (1 << 16, 1), (1 << 12, 1))   # (size, threads); None: all CPUs


def _size(text: str) -> int:
    """An element count: 4096, 2^12, 2**12 or 1e6."""
    t = text.strip().replace("**", "^")
    try:
        if "^" in t:
            base, exp = t.split("^", 1)
            value = int(base) ** int(exp)
        else:
            value = int(float(t)) if "e" in t.lower() else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an element count: {text!r} (e.g. 4096, 2^24, 1e6)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"an element count must be >= 1, not {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="built-in activations or spec files (.toml: all its elementwise tables); "
                        "default: every built-in elementwise activation (as --all)")
    p.add_argument("--all", action="store_true", help="every built-in elementwise activation")
    p.add_argument("--size", "--sizes", dest="size", nargs="+", type=_size, metavar="N",
                   help="element counts, e.g. 2^24 65536 (default: the standard set, see above)")
    p.add_argument("--threads", nargs="+", type=_positive, metavar="T",
                   help="thread counts (default: the standard set; all CPUs with --size)")
    p.add_argument("--dtype", nargs="+", choices=["float32", "float64"], default=["float32", "float64"])
    p.add_argument("--repeats", type=_positive, default=5, help="timed repeats; the median is reported "
                   "(default: 5; a cell slower than 4 s in all gets fewer: at least 3, 1 for calls over 0.5 s)")
    p.add_argument("--min-time", type=float, default=0.02, metavar="SECONDS",
                   help="each repeat runs the call often enough to take at least this long (default 0.02)")
    p.add_argument("--impl", nargs="+", choices=IMPLS, default=list(IMPLS),
                   help="which implementations to measure (default: all; torch ones when installed)")
    p.add_argument("--progress", action="store_true", help="a line per activation on stderr")
    p.add_argument("--json", metavar="FILE", help="write all measurements and ratios as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write the ratio tables and the machine as markdown")
    p.add_argument("--plot", metavar="FILE.png", help="draw Gelem/s against the array size, per activation "
                   "and op, every implementation and the copy bandwidth's limit (needs matplotlib)")


# ---- peers: NumPy as users write it, PyTorch ------------------------------------------------

def _numpy_formulas(np):
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


def _torch_peers(torch):
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


def _numexpr_formulas():
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


def _numexpr_calls(ne, formula, x, dy, y, dx):
    """forward() and backward() of one numexpr formula on these arrays, writing into y and dx."""
    _, fwd, bwd, consts = formula
    names = {k: x.dtype.type(v) for k, v in consts.items()}
    fdict, bdict = {"x": x, **names}, {"x": x, "dy": dy, **names}
    return (lambda: ne.evaluate(fwd, local_dict=fdict, out=y)), (lambda: ne.evaluate(bwd, local_dict=bdict, out=dx))


def _defaults_match(wanted: dict, act) -> bool:
    return all(p in act.params and math.isclose(act.params[p], v) for p, v in wanted.items()) and \
        all(p in wanted or _trivial_default(p, v) for p, v in act.params.items())


def _trivial_default(param: str, value: float) -> bool:
    """Parameters a peer without them equals (relu's negative_slope 0, max_value inf, threshold 0)."""
    return (param, value) in {("negative_slope", 0.0), ("max_value", math.inf), ("threshold", 0.0)}


# ---- timing ------------------------------------------------------------------------------

def _time(fn, repeats: int, min_time: float, max_time: float = 4.0) -> dict:
    """Median seconds per call of ``fn()`` over ``repeats`` repeats, after a warm-up; each repeat
    loops enough calls to last ``min_time``. A slow cell (a repeat over ``max_time`` / repeats)
    gets fewer repeats: at least 3, or 1 for calls over ``max_time`` / 8 (seconds each)."""
    return _time_together([fn], repeats, min_time, max_time)[0]


def _time_together(fns, repeats: int, min_time: float, max_time: float = 4.0) -> list[dict]:
    """_time for several functions (one activation's kernels and their peers), their repeats
    interleaved: repeat 1 of each, then repeat 2 of each, ... A busy spell of a shared machine
    then slows actgen and its peers alike, and the ratios of their medians keep their meaning."""
    plans = []
    for fn in fns:
        t0 = time.perf_counter()
        fn()                                                # warm-up (page faults, caches, threads)
        single = max(time.perf_counter() - t0, 1e-7)
        if single < min_time:
            t0 = time.perf_counter()
            fn()
            single = max(time.perf_counter() - t0, 1e-7)
        number = max(1, int(min_time / single))
        floor = 1 if single > max_time / 8 else 3
        plans.append((number, max(min(repeats, floor), min(repeats, int(max_time / (single * number))))))
    times = [[] for _ in fns]
    for k in range(max((r for _, r in plans), default=0)):
        for i, fn in enumerate(fns):
            number, count = plans[i]
            if k >= count:
                continue
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            times[i].append((time.perf_counter() - t0) / number)
    out = []
    for (number, count), ts in zip(plans, times):
        med = statistics.median(ts)
        out.append({"seconds": med, "best": min(ts), "spread": (max(ts) - min(ts)) / med if med > 0 else 0.0,
                    "calls": number, "repeats": count})
    return out


# ---- the machine ---------------------------------------------------------------------------

def machine() -> dict:
    """CPU model, cores, compiler, glibc, library versions, actgen's build flags."""
    import numpy as np

    info = {"cpu": platform.processor() or platform.machine(), "cpu_flags": [], "logical_cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and info["cpu"] in ("", platform.machine(), platform.processor()):
                    info["cpu"] = value
                elif key == "flags" and not info["cpu_flags"]:
                    flags = value.split()
                    info["cpu_flags"] = [f for f in ("avx2", "fma", "avx512f", "avx512dq", "avx512vl")
                                         if f in flags]
    except OSError:
        pass
    libc, version = platform.libc_ver()
    info["libc"] = f"{libc} {version}".strip()
    try:
        from .build import toolchain

        tc = toolchain()
        info["cc"] = tc.version
        info["cflags"] = " ".join(tc.flags)
    except Exception as exc:                                # noqa: BLE001 - reported, not fatal
        info["cc"] = f"unavailable ({exc})"
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    for module in ("scipy", "numexpr"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    from . import __version__

    info["actgen"] = __version__
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.abspath(__file__)), timeout=5)
        if rev.returncode == 0:
            info["actgen_commit"] = rev.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


# ---- the run -------------------------------------------------------------------------------

def _targets(names: list[str]) -> list[tuple[str, str | None]]:
    """(name, spec path or None) of each elementwise activation asked for."""
    import actgen
    from .specfile import read_spec_text, read_tables

    if not names:
        out = []
        for n in actgen.builtins():
            from . import library

            table = read_tables(library.read(n), path=library.display_path(n))[n]
            if table.get("kind", "elementwise") == "elementwise" and "gate" not in table:
                out.append((n, None))
        return out
    out = []
    for n in names:
        if n.endswith(".toml"):
            tables = read_tables(read_spec_text(n), path=n)
            for t, table in tables.items():
                if isinstance(table, dict) and table.get("kind", "elementwise") == "elementwise" \
                        and "gate" not in table:
                    out.append((t, n))
        else:
            out.append((n, None))
    return out


def _configs(args) -> list[tuple[int, int]]:
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if args.size is None and args.threads is None:
        return [(n, t or ncpu) for n, t in STANDARD]
    return [(n, t) for n in (args.size or [1 << 24]) for t in (args.threads or [ncpu])]


def bench(names: list[str] | None = None, *, sizes_threads=None, dtypes=("float32", "float64"),
          repeats: int = 5, min_time: float = 0.02, impls=IMPLS, log=None) -> dict:
    """Run the benchmark; return {"machine", "config", "results", "ratios"} (see the module doc)."""
    import numpy as np

    import actgen

    log = log or (lambda msg: None)
    try:
        import torch
    except ImportError:
        torch = None
    try:
        import numexpr
    except ImportError:
        numexpr = None
    impls = [i for i in impls if (torch is not None or not i.startswith("torch"))
             and (numexpr is not None or i != "numexpr")]
    targets = _targets(list(names or []))
    sizes_threads = list(sizes_threads or [(n, t or (os.cpu_count() or 1)) for n, t in STANDARD])
    formulas = _numpy_formulas(np)
    tpeers = _torch_peers(torch) if torch is not None else {}
    nepeers = _numexpr_formulas() if numexpr is not None else {}
    acts = {}
    for name, spec in targets:
        acts[name] = {"c": actgen.load(name, spec=spec) if "actgen" in impls else None,
                      "numpy": actgen.load(name, spec=spec, backend="numpy") if "actgen_numpy" in impls else None}
    rng = np.random.default_rng(0)
    results = []
    saved_threads = actgen.get_num_threads()
    saved_torch = torch.get_num_threads() if torch is not None else None
    saved_numexpr = numexpr.get_num_threads() if numexpr is not None else None

    def record(name, dtype, n, threads, op, impl, timing):
        streams = STREAMS[op] if op in STREAMS else 2
        itemsize = np.dtype(dtype).itemsize
        results.append({"name": name, "dtype": dtype, "size": n, "threads": threads, "op": op, "impl": impl,
                        "seconds": timing["seconds"], "best_seconds": timing["best"], "spread": timing["spread"],
                        "calls": timing["calls"], "repeats": timing["repeats"],
                        "gelem_s": n / timing["seconds"] / 1e9,
                        "gb_s": n * streams * itemsize / timing["seconds"] / 1e9})

    try:
        for n, threads in sizes_threads:
            actgen.set_num_threads(threads)
            if torch is not None:
                torch.set_num_threads(threads)
            if numexpr is not None:
                numexpr.set_num_threads(threads)
            for dtype in dtypes:
                x = (rng.standard_normal(n) * 3).astype(dtype)
                dy = rng.standard_normal(n).astype(dtype)
                bufs = [np.ones(n, dtype) for _ in range(2)]         # preallocated, pages touched
                log(f"{dtype} n={n} threads={threads}: copy")
                copies = [_time(lambda: np.copyto(bufs[0], x), repeats, min_time)]
                if torch is not None:
                    tx, tb = torch.from_numpy(x), torch.from_numpy(bufs[0])
                    copies.append(_time(lambda: tb.copy_(tx), repeats, min_time))
                record("copy", dtype, n, threads, "copy", "copy", min(copies, key=lambda t: t["seconds"]))
                for name, _ in targets:
                    c, npb = acts[name]["c"], acts[name]["numpy"]
                    some = c or npb or actgen.load(name, spec=dict(targets)[name])
                    y = some(x)
                    log(f"{dtype} n={n} threads={threads}: {name}")
                    # a copy, timed with this activation's cells: the bandwidth a shared machine
                    # gives varies over a run, and % copy bw compares cells measured together
                    cells = [("copy", "copy", lambda: np.copyto(bufs[0], x))]  # (op, impl, fn): timed together
                    if torch is not None:
                        cells.append(("copy", "copy_torch", lambda tb=torch.from_numpy(bufs[0]),
                                      tx=torch.from_numpy(x): tb.copy_(tx)))
                    for impl, act in (("actgen", c), ("actgen_numpy", npb)):
                        if act is None:
                            continue
                        cells.append(("forward", impl, lambda act=act: act(x, out=bufs[0])))
                        cells.append(("backward", impl, lambda act=act: act.backward(x, dy, out=bufs[0])))
                        if act.has_output_derivative and act.kind == "elementwise":
                            cells.append(("backward_from_output", impl,
                                          lambda act=act: act.backward_from_output(y, dy, out=bufs[0])))
                        cells.append(("forward_with_derivative", impl,
                                      lambda act=act: act.forward_with_derivative(x, out=bufs[0], deriv_out=bufs[1])))
                    if "numpy" in impls and name in formulas and _defaults_match(formulas[name][0], some):
                        _, fwd, bwd = formulas[name]
                        cells.append(("forward", "numpy", lambda fwd=fwd: fwd(x)))
                        cells.append(("backward", "numpy", lambda bwd=bwd: bwd(x, dy)))
                    if torch is not None and name in tpeers and _defaults_match(tpeers[name][0], some):
                        _, fo, fa, bo, ba = tpeers[name]
                        tx, ty, tdy = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(dy)
                        tout = torch.from_numpy(bufs[0])
                        if "torch_out" in impls and fo is not None:
                            cells.append(("forward", "torch_out", lambda fo=fo, tx=tx, tout=tout: fo(tx, tout)))
                        if "torch_out" in impls and bo is not None:
                            cells.append(("backward", "torch_out",
                                          lambda bo=bo, tx=tx, ty=ty, tdy=tdy, tout=tout: bo(tx, ty, tdy, tout)))
                        if "torch" in impls and fa is not None:
                            cells.append(("forward", "torch", lambda fa=fa, tx=tx: fa(tx)))
                        if "torch" in impls and ba is not None:
                            cells.append(("backward", "torch", lambda ba=ba, tx=tx, ty=ty, tdy=tdy: ba(tx, ty, tdy)))
                    if "numexpr" in impls and name in nepeers and _defaults_match(nepeers[name][0], some):
                        fwd, bwd = _numexpr_calls(numexpr, nepeers[name], x, dy, bufs[0], bufs[1])
                        cells.append(("forward", "numexpr", fwd))
                        cells.append(("backward", "numexpr", bwd))
                    grad = torch.no_grad() if torch is not None else contextlib.nullcontext()
                    with grad, np.errstate(all="ignore"):
                        timings = _time_together([fn for _, _, fn in cells], repeats, min_time)
                    copies = [t for (op, _, _), t in zip(cells, timings) if op == "copy"]
                    record(name, dtype, n, threads, "copy", "copy", min(copies, key=lambda t: t["seconds"]))
                    for (op, impl, _), timing in zip(cells, timings):
                        if op != "copy":
                            record(name, dtype, n, threads, op, impl, timing)
    finally:
        actgen.set_num_threads(saved_threads)
        if torch is not None:
            torch.set_num_threads(saved_torch)
        if numexpr is not None:
            numexpr.set_num_threads(saved_numexpr)
    return {"machine": machine(),
            "config": {"names": [t for t, _ in targets], "sizes_threads": [list(c) for c in sizes_threads],
                       "dtypes": list(dtypes), "repeats": repeats, "min_time": min_time, "impls": list(impls)},
            "results": results, "ratios": ratios(results)}


def ratios(results: list[dict]) -> list[dict]:
    """Per (name, dtype, size, threads, op) of actgen's C kernel: Gelem/s of every implementation,
    actgen / torch_out, actgen / torch, actgen / numpy, actgen / the best peer, and the % of the copy
    bandwidth (bytes moved per second / the copy's)."""
    by = {}
    copy = {}                       # (name, dtype, size, threads): the copy timed with name's cells
    for r in results:
        key = (r["dtype"], r["size"], r["threads"])
        if r["op"] == "copy":
            copy[(r["name"], *key)] = r
        else:
            by.setdefault((r["name"], *key, r["op"]), {})[r["impl"]] = r
    # a backward peer with no backward_from_output counterpart is compared with both of actgen's
    rows = []
    for (name, dtype, size, threads, op), impls in by.items():
        if "actgen" not in impls:
            continue
        peers_op = "backward" if op == "backward_from_output" else op
        peer = by.get((name, dtype, size, threads, peers_op), {})
        a = impls["actgen"]["gelem_s"]
        row = {"name": name, "dtype": dtype, "size": size, "threads": threads, "op": op,
               "gelem_s": {i: r["gelem_s"] for i, r in impls.items()}, "peer_op": peers_op}
        for p in PEERS:
            row["gelem_s"].update({p: peer[p]["gelem_s"]} if p in peer else {})
            row[f"vs_{p}"] = a / peer[p]["gelem_s"] if p in peer else None
        best = [peer[p]["gelem_s"] for p in PEERS if p in peer]
        row["vs_best_peer"] = a / max(best) if best else None
        c = copy.get((name, dtype, size, threads)) or copy.get(("copy", dtype, size, threads))
        row["pct_copy"] = (100.0 * impls["actgen"]["gb_s"] / c["gb_s"]) if c else None
        row["copy_gb_s"] = c["gb_s"] if c else None
        rows.append(row)
    return rows


# ---- output --------------------------------------------------------------------------------

def _fmt(v, spec=".2f", none="-"):
    return none if v is None else format(v, spec)


def _tables(report: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) per (dtype, size, threads)."""
    groups = {}
    for r in report["ratios"]:
        groups.setdefault((r["dtype"], r["size"], r["threads"]), []).append(r)
    copies = {(r["dtype"], r["size"], r["threads"]): r for r in report["results"]
              if r["op"] == "copy" and r["name"] == "copy"}
    out = []
    header = ["activation", "op", "actgen", "actgen numpy", "numpy", "torch out=", "torch", "numexpr",
              "vs torch out=", "vs torch", "vs numpy", "vs best peer", "% copy bw"]
    for (dtype, size, threads), rows in groups.items():
        c = copies.get((dtype, size, threads))
        exp = math.log2(size)
        shown = f"2^{int(exp)}" if exp == int(exp) else str(size)
        title = (f"{dtype}, {shown} elements, {threads} thread{'s' if threads > 1 else ''}: Gelem/s "
                 f"(copy: {c['gelem_s']:.2f} Gelem/s, {c['gb_s']:.1f} GB/s)" if c else
                 f"{dtype}, {shown} elements, {threads} threads: Gelem/s")
        body = []
        for r in rows:
            g = r["gelem_s"]
            body.append([r["name"], SHORT[r["op"]], _fmt(g.get("actgen")), _fmt(g.get("actgen_numpy")),
                         _fmt(g.get("numpy")), _fmt(g.get("torch_out")), _fmt(g.get("torch")),
                         _fmt(g.get("numexpr")), _fmt(r["vs_torch_out"]), _fmt(r["vs_torch"]),
                         _fmt(r["vs_numpy"], ".1f"), _fmt(r.get("vs_best_peer")), _fmt(r["pct_copy"], ".0f")])
        out.append((title, header, body))
    return out


def format_text(report: dict) -> str:
    lines = []
    for title, header, body in _tables(report):
        widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]
        lines.append(title)
        lines.append("  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
        for row in body:
            lines.append("  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
        lines.append("")
    lines.append("ratios: actgen's C kernel / the peer (> 1: actgen faster); bwd(y) is compared with the "
                 "peers' backward; % copy bw: bytes read + written per second / those of a copy")
    return "\n".join(lines)


def format_markdown(report: dict, command: str | None = None) -> str:
    m = report["machine"]
    cfg = report["config"]
    lines = ["# actgen benchmark", ""]
    if command:
        lines += ["Produced by", "", "```", command, "```", ""]
    lines += ["## Machine", "",
              f"- CPU: {m.get('cpu')} ({m.get('usable_cpus')} usable of {m.get('logical_cpus')} logical CPUs; "
              f"{', '.join(m.get('cpu_flags') or []) or 'no AVX flags'})",
              f"- compiler: {m.get('cc')}; flags: `{m.get('cflags', '')}`",
              f"- libc: {m.get('libc')}; Python {m.get('python')}; NumPy {m.get('numpy')}; "
              f"SciPy {m.get('scipy')}; PyTorch {m.get('torch')}; numexpr {m.get('numexpr')}",
              f"- actgen {m.get('actgen')}" + (f" (commit {m['actgen_commit']})" if m.get("actgen_commit") else ""),
              f"- {cfg['repeats']} timed repeats per cell after a warm-up, median reported; each repeat lasts "
              f">= {cfg['min_time']} s; cells slower than 4 s in all get fewer repeats (at least 3, or 1 for "
              "calls over 0.5 s: the JSON records each cell's repeats and spread)", "",
              "Gelem/s (10^9 elements per second). Ratios are actgen's C kernel over the peer (> 1: actgen "
              "faster). `bwd(y)` is actgen's backward from the saved output, compared with the peers' "
              "backward; `fwd+d` produces y and f'(x) in one pass. `% copy bw` is the bytes read and written "
              "per second over those of a plain copy with the same threads (the memory-bound limit). "
              "`numpy` is NumPy as users write it (allocating); `torch out=` calls PyTorch's kernels with a "
              "preallocated output, `torch` its ordinary allocating call, `numexpr` evaluates the formula "
              "as users write it into a preallocated output; `vs best peer` is over the fastest of them.", ""]
    for title, header, body in _tables(report):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        lines.append("")
    return "\n".join(lines)


def run(args) -> int:
    import json

    from .errors import ActgenError

    if args.all and args.names:
        raise ActgenError("actgen bench: give activation names or --all, not both")
    if args.plot and not _has_matplotlib():
        raise ActgenError("actgen bench: --plot needs matplotlib, which is not installed: pip install "
                          "matplotlib (or 'actgen[compare]'), or leave out --plot")
    configs = _configs(args)
    report = bench(args.names, sizes_threads=configs, dtypes=tuple(args.dtype), repeats=args.repeats,
                   min_time=args.min_time, impls=tuple(args.impl),
                   log=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True) if args.progress else None)
    command = "actgen bench " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 and sys.argv[1] == "bench" else None
    report["command"] = command
    print(format_text(report))
    try:
        if args.json:
            _write(args.json, json.dumps(report, indent=1, default=float) + "\n")
        if args.markdown:
            _write(args.markdown, format_markdown(report, command))
        if args.plot:
            plot(report, args.plot)
    except OSError as exc:
        raise ActgenError(f"cannot write {exc.filename}: {exc.strerror}") from None
    return 0


def _has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


#: how each implementation is drawn (colour, label)
STYLE = {"actgen": ("C0", "actgen C"), "actgen_numpy": ("C1", "actgen NumPy"), "numpy": ("C2", "NumPy"),
         "torch_out": ("C3", "PyTorch out="), "torch": ("C4", "PyTorch"), "numexpr": ("C5", "numexpr")}


def plot(report: dict, path: str) -> None:
    """Gelem/s against the number of elements: a panel per activation (rows) and op (columns),
    a colour per implementation, solid float32 and dashed float64 lines, one line per thread count;
    the grey lines are the copy bandwidth's limit for the op (bytes a copy moves per second over the
    op's bytes per element). Written atomically (PNG, or whatever the suffix says)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [r for r in report["results"] if r["op"] != "copy"]
    names = list(dict.fromkeys(r["name"] for r in results))
    ops = [op for op in OPS if any(r["op"] == op for r in results)]
    copies = {(r["dtype"], r["threads"], r["size"]): r["gb_s"] for r in report["results"]
              if r["op"] == "copy" and r["name"] == "copy"}
    fig, axes = plt.subplots(len(names), len(ops), figsize=(4.2 * len(ops), 2.9 * len(names)),
                             squeeze=False, sharex=True)
    for i, name in enumerate(names):
        for j, op in enumerate(ops):
            ax = axes[i][j]
            lines = {}
            for r in results:
                if r["name"] == name and r["op"] == op:
                    lines.setdefault((r["impl"], r["dtype"], r["threads"]), []).append((r["size"], r["gelem_s"]))
            for (impl, dtype, threads), points in sorted(lines.items()):
                points.sort()
                colour, label = STYLE.get(impl, ("k", impl))
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=3, color=colour,
                        ls="-" if dtype == "float32" else "--", lw=1.4 if impl == "actgen" else 1.0,
                        label=f"{label}, {dtype}, {threads} thr")
            for dtype in dict.fromkeys(d for _, d, _ in lines):
                itemsize = 4 if dtype == "float32" else 8
                for threads in dict.fromkeys(t for _, d, t in lines if d == dtype):
                    limit = sorted((size, gb / (STREAMS[op] * itemsize)) for (d, t, size), gb in copies.items()
                                   if d == dtype and t == threads)
                    if limit:
                        ax.plot([p[0] for p in limit], [p[1] for p in limit], color="0.6", lw=0.8,
                                ls="-" if dtype == "float32" else "--")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{name}: {SHORT[op]}", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            if j == 0:
                ax.set_ylabel("Gelem/s")
            if i == len(names) - 1:
                ax.set_xlabel("elements")
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=4, fontsize=7,
               bbox_to_anchor=(0.5, 1.0))
    m = report["machine"]
    fig.suptitle(f"actgen bench: {m.get('cpu')}, {m.get('usable_cpus')} CPUs (grey: copy bandwidth)",
                 fontsize=10, y=1.0 + 0.12 / max(1, len(names)))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / max(1, len(names))))
    suffix = os.path.splitext(path)[1] or ".png"
    tmp = f"{path}.{os.getpid()}.tmp{suffix}"
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write(path: str, text: str) -> None:
    """Write atomically: no half-written file on failure."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
