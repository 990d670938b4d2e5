"""Peers of any activation, written from its SymPy expression (``symbolic``): what a user would
run instead of actgen, timed forward, backward and for a training step.

- ``torch_eager``    the torch expression; autograd differentiates it (one kernel per op, the
                     intermediates saved);
- ``torch_compile``  the same under ``torch.compile`` (Inductor, CPU; a fresh compile per dtype,
                     size and thread count, since Inductor writes the thread count into its
                     OpenMP loops); its first calls are reported as compile time;
- ``jax``            ``jax.jit`` of the jax.numpy expression: forward; ``jax.vjp`` (y and the
                     residuals) and its pullback of dy as two jitted programs; float64 runs with
                     ``jax_enable_x64``;
- ``numexpr``        the forward formula and dy * f'(x) (SymPy's derivative), where numexpr has
                     the functions;
- ``actgen_torch``   actgen's kernels through ``actgen.torch.function`` (an autograd Function):
                     what a PyTorch user of actgen runs.

The ops: ``forward`` (inference: no graph is recorded), ``backward`` (dx for a graph or residuals
saved once: torch, jax; from x and dy: actgen, numexpr; parameters get no gradient) and
``train`` (forward, then backward with dy: dx and the gradient of every learnable parameter).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from .symbolic import Inexpressible, NumExprSource, PeerSource, jax_source, numexpr_source, torch_source

USER_IMPLS = ("actgen_torch", "torch_eager", "torch_compile", "jax")
USER_OPS = ("forward", "backward", "train")


@dataclass
class Libraries:
    """The optional libraries the peers need, or why each is missing."""

    torch: object = None
    jax: object = None
    numexpr: object = None
    actgen_torch: object = None
    missing: dict = field(default_factory=dict)      # library -> reason


def libraries() -> Libraries:
    """Import torch, jax (with float64 enabled) and numexpr if installed."""
    libs = Libraries()
    try:
        import torch

        import actgen.torch as actgen_torch        # actgen's torch integration imports torch itself

        libs.torch, libs.actgen_torch = torch, actgen_torch
    except ImportError:
        libs.missing["torch"] = "torch not installed"
    try:
        import jax
        import jax.scipy.special  # noqa: F401 - the printed functions name jax.scipy.special.erf

        jax.config.update("jax_enable_x64", True)   # float64 arrays stay float64
        # each timed call waits for its result: dispatching it to another thread only adds a
        # handoff, which cost 270 us against 75 us a call at 2^12 on a busy 2-CPU machine
        with contextlib.suppress(AttributeError, KeyError):
            jax.config.update("jax_cpu_enable_async_dispatch", False)
        libs.jax = jax
    except ImportError:
        libs.missing["jax"] = "jax not installed"
    try:
        import numexpr

        libs.numexpr = numexpr
    except ImportError:
        libs.missing["numexpr"] = "numexpr not installed"
    return libs


@dataclass
class Sources:
    """An activation's generated peers, or why each is absent."""

    torch: PeerSource | None
    jax: PeerSource | None
    numexpr: NumExprSource | None
    reasons: dict                                   # impl -> reason

    def as_dict(self) -> dict:
        """The generated code (for the report), or the reason there is none."""
        ne = self.numexpr
        return {"torch": self.torch.text if self.torch else None, "jax": self.jax.text if self.jax else None,
                "numexpr": {"forward": ne.forward, "backward": ne.backward, "constants": ne.constants}
                if ne else None, "reasons": dict(self.reasons)}


def sources(act) -> Sources:
    """The torch, JAX and numexpr versions of a parsed activation (``actgen.activation``)."""
    reasons, out = {}, {}
    for key, make, impls in (("torch", torch_source, ("torch_eager", "torch_compile")),
                             ("jax", jax_source, ("jax",)), ("numexpr", numexpr_source, ("numexpr",))):
        try:
            out[key] = make(act)
        except Inexpressible as exc:
            out[key] = None
            reasons.update({impl: str(exc) for impl in impls})
    return Sources(out["torch"], out["jax"], out["numexpr"], reasons)


@contextlib.contextmanager
def cold_compiles(torch):
    """torch.compile without its caches from earlier runs (a fresh Inductor cache directory,
    removed afterwards), so that its compile times are those of a new expression."""
    import torch._inductor.utils as inductor_utils

    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    fresh = getattr(inductor_utils, "fresh_cache", None) or getattr(inductor_utils, "fresh_inductor_cache", None)
    # two activations with one expression (swish with beta, x * sigmoid(a x)) would otherwise
    # find each other's graphs in the caches of this run (a compile of 0.4 s instead of 4 s)
    patches = [inductor_config.patch(fx_graph_cache=False)]
    if hasattr(functorch_config, "enable_autograd_cache"):
        patches.append(functorch_config.patch(enable_autograd_cache=False))
    with contextlib.ExitStack() as stack:
        if fresh is not None:
            stack.enter_context(fresh())
        for patch in patches:
            stack.enter_context(patch)
        yield


def warm_up(libs: Libraries, impls) -> dict:
    """{library: seconds} of the one-time start of torch.compile (importing and starting Inductor)
    and of JAX (its CPU client), on a trivial function: the compile times reported per activation
    leave it out."""
    out = {}
    if libs.torch is not None and "torch_compile" in impls:
        t0 = time.perf_counter()
        libs.torch.compile(lambda x: x + 1, dynamic=False)(libs.torch.ones(8))
        out["torch_compile"] = time.perf_counter() - t0
    if libs.jax is not None and "jax" in impls:
        t0 = time.perf_counter()
        libs.jax.jit(lambda x: x + 1)(libs.jax.numpy.ones(8)).block_until_ready()
        out["jax"] = time.perf_counter() - t0
    return out


def _first_calls(fn) -> float:
    """Seconds of the first call of ``fn`` beyond its second (a compile, for a JIT)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    fn()
    return max(0.0, first - (time.perf_counter() - t0))


def torch_cells(torch, source: PeerSource, x, dy, params: dict, *, compiled: bool, impl: str):
    """([(op, impl, fn)], {what: compile seconds}) of the torch expression, eager or compiled."""
    f = source.function({"torch": torch})          # a fresh function: a fresh torch.compile cache
    if compiled:
        f = torch.compile(f, dynamic=False)
    tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
    tp = [torch.tensor(params[p], dtype=tx.dtype) for p in source.args]
    tpg = [t.clone().requires_grad_() for t in tp]

    def forward():
        with torch.no_grad():
            return f(tx, *tp)

    def train():
        with torch.enable_grad():
            xg = tx.detach().requires_grad_()
            return torch.autograd.grad(f(xg, *tpg), (xg, *tpg), tdy)

    compile_s = {"forward": _first_calls(forward), "train": _first_calls(train)} if compiled else {}
    # the graph the backward cell runs on, recorded once and kept (retain_graph). A compiled
    # backward that donates its saved buffers to its outputs refuses to run twice, so this graph
    # is compiled on its own (a function of its own), without buffer donation
    fb, keep = f, contextlib.nullcontext()
    if compiled:
        import torch._functorch.config as functorch_config

        fb = torch.compile(source.function({"torch": torch}), dynamic=False)
        if hasattr(functorch_config, "donated_buffer"):
            keep = functorch_config.patch(donated_buffer=False)
    with torch.enable_grad(), keep:
        xg = tx.detach().requires_grad_()
        yg = fb(xg, *tp)

    def backward():
        with torch.enable_grad():
            return torch.autograd.grad(yg, xg, tdy, retain_graph=True)

    return [("forward", impl, forward), ("backward", impl, backward), ("train", impl, train)], compile_s


def jax_cells(jax, source: PeerSource, x, dy, params: dict):
    """([(op, "jax", fn)], {what: compile seconds}). A training step's forward and backward are
    two jitted programs, as in a network, where the layers after the activation run between
    them: ``jax.vjp`` of f (y and the residuals its pullback keeps), then the pullback of dy.
    (One jitted function of x and dy would fuse f and f' into one loop, which a network's step
    cannot do.) The backward cell is the pullback of residuals computed once, as torch's runs on
    a graph recorded once."""
    jnp = jax.numpy
    f = source.function({"jax": jax, "jnp": jnp})
    jx, jdy = jax.device_put(x), jax.device_put(dy)
    jp = [jnp.asarray(params[p], dtype=x.dtype) for p in source.args]
    fwd = jax.jit(f)
    fwd_x = jax.jit(lambda x, *p: jax.vjp(lambda x: f(x, *p), x))      # parameters get no gradient
    fwd_all = jax.jit(lambda x, *p: jax.vjp(f, x, *p))
    pull = jax.jit(lambda pullback, dy: pullback(dy))

    def forward():
        return fwd(jx, *jp).block_until_ready()

    def train():
        y, pullback = fwd_all(jx, *jp)
        return jax.block_until_ready((y, pull(pullback, jdy)))

    compile_s = {"forward": _first_calls(forward), "train": _first_calls(train)}
    kept = fwd_x(jx, *jp)[1]
    cells = [("forward", "jax", forward),
             ("backward", "jax", lambda: jax.block_until_ready(pull(kept, jdy))),
             ("train", "jax", train)]
    return cells, compile_s


def numexpr_cells(ne, source: NumExprSource, x, dy, y, dx, params: dict):
    """forward(), backward() of generated numexpr formulas, writing into y and dx."""
    names = {k: x.dtype.type(v) for k, v in source.constants.items()}
    names.update({p: x.dtype.type(params[p]) for p in source.args})
    fdict, bdict = {"x": x, **names}, {"x": x, "dy": dy, **names}
    return (lambda: ne.evaluate(source.forward, local_dict=fdict, out=y),
            lambda: ne.evaluate(source.backward, local_dict=bdict, out=dx))


def actgen_train(act, x, dy, y, dx, params: dict):
    """actgen's training step as actgen.torch runs it: the forward, then the backward from the
    saved output where the spec allows it and no parameter needs a gradient, else from x, and
    the parameter gradients."""
    if act.learnable:
        def train():
            act(x, out=y, **params)
            act.backward(x, dy, out=dx, **params)
            return act.param_grads(x, dy, **params)
    elif act.saves_output and act.output_derivative_holds(str(x.dtype), **params):
        def train():
            act(x, out=y, **params)
            return act.backward_from_output(y, dy, out=dx, **params)
    else:
        def train():
            act(x, out=y, **params)
            return act.backward(x, dy, out=dx, **params)
    return train


def actgen_torch_cells(torch, fn, learnable, x, dy, params: dict):
    """[(op, "actgen_torch", fn)]: actgen's kernels through its autograd Function."""
    tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
    fixed = {p: v for p, v in params.items() if p not in learnable}
    tp = {p: torch.tensor(params[p], dtype=tx.dtype) for p in learnable}
    tpg = {p: t.clone().requires_grad_() for p, t in tp.items()}

    def forward():
        with torch.no_grad():
            return fn(tx, **fixed, **tp)

    def train():
        with torch.enable_grad():
            xg = tx.detach().requires_grad_()
            return torch.autograd.grad(fn(xg, **fixed, **tpg), (xg, *tpg.values()), tdy)

    with torch.enable_grad():
        xg = tx.detach().requires_grad_()
        yg = fn(xg, **fixed, **tp)

    def backward():
        with torch.enable_grad():
            return torch.autograd.grad(yg, xg, tdy, retain_graph=True)

    return [("forward", "actgen_torch", forward), ("backward", "actgen_torch", backward),
            ("train", "actgen_torch", train)]
