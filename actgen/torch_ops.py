"""The ``torch.library`` custom ops behind actgen.torch: one op family per loaded activation,
in the ``actgen`` namespace, each op with a fake (meta) implementation for torch.compile and an
autograd formula whose backward is itself made of differentiable ops.

An elementwise activation g has four ops (``actgen::<name>_<content key>_<backend>_<role>``):

    fwd(x, scalars, tensors, slots, param_axis)        y = g(x)
    bwd(x, dy, scalars, tensors, slots, param_axis)    dx = dy * g'(x)          (one fused kernel)
    pgrad(x, dy, scalars, tensors, slots, param_axis)  [sum(dy * dg/dp) per tensor parameter]
    bwdy(y, dy, scalars)                               dx from y, where the spec writes g' with y

Parameters: ``scalars`` holds one number per parameter of the spec (in its order); the ones
given as tensors (learnable ones, per-channel ones) are ``tensors``, at the positions ``slots``.
The autograd of each op calls the ops of derived activations (actgen/derived.py): the derivative
of order k+1 (``act.derivative_activation``), the partial derivative with respect to a parameter,
the output derivative written as a function; each is an elementwise activation with its own
family, so every order of every mixed derivative is a kernel.

Gated and rowwise activations have fused fwd, bwd, pgrad (and rowwise bwdy) ops for the first
order; a backward taken with ``create_graph=True`` (a double backward) goes through the same
function written with torch ops around the ops of its gate or score (an elementwise family), so
that it differentiates again.
"""

from __future__ import annotations

import re
import threading

import numpy as np
import torch

from .derived import output_derivative_activation, param_derivative_activation, score_slope

#: op families by op name: registering the same op twice (two loads of one spec) reuses it
_FAMILIES: dict[str, object] = {}
_LOCK = threading.RLock()


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of a contiguous CPU tensor (no copy), or of its values where the tensor is
    a lazy negated or conjugated view (torch._neg_view, .conj()): those are materialised first,
    since NumPy cannot see the bit."""
    return t.detach().resolve_neg().resolve_conj().numpy()


def op_base(act) -> str:
    """A valid, unique op name for the activation: its name (made an identifier), the first
    16 hex digits of its content key (a spec's table, actgen's code, the toolchain) and the
    backend."""
    name = re.sub(r"\W", "_", act.name)
    return f"{name}_{act.meta['key'][:16]}_{act.backend}"


def family(act):
    """The op family of a loaded activation (registered on first use)."""
    base = op_base(act)
    fam = _FAMILIES.get(base)
    if fam is None:
        with _LOCK:
            fam = _FAMILIES.get(base)
            if fam is None:
                cls = {"elementwise": Elementwise, "gated": Gated, "rowwise": Rowwise}[act.kind]
                fam = _FAMILIES[base] = cls(act, base)
    return fam


def _params(act, scalars, tensors, slots) -> dict:
    """{name: float or ndarray} for the kernels; {} where everything is a default number."""
    names = tuple(act.params)
    values = {names[i]: v for i, v in enumerate(scalars)} if scalars else {}
    for slot, t in zip(slots, tensors):
        values[names[slot]] = float(t.item()) if t.ndim == 0 else _as_numpy(t.contiguous())
    return values


def _plain(tensors) -> bool:
    """Whether the parameter tensors are numbers known now that need no gradient: 0-d tensors
    (not the fake or functional ones torch.compile traces with, whose values are unknown)."""
    return all(t.ndim == 0 and not t.requires_grad and type(t) in (torch.Tensor, torch.nn.Parameter)
               for t in tensors)


def _folded(scalars, tensors, slots) -> list:
    """The numbers of all parameters, the 0-d tensors among them read (see _plain)."""
    values = list(scalars)
    for slot, t in zip(slots, tensors):
        values[slot] = float(t.item())
    return values


def _spread(g: torch.Tensor, ndim: int, param_axis) -> torch.Tensor:
    """A parameter's gradient (its shape) as a tensor that broadcasts against x elementwise."""
    if g.ndim == 1 and param_axis is not None:
        shape = [1] * ndim
        shape[param_axis % ndim] = g.shape[0]
        return g.reshape(shape)
    return g


def _define(base: str, role: str, schema: str, impl, fake):
    op = torch.library.custom_op(f"actgen::{base}_{role}", impl, mutates_args=(), schema=schema)
    op.register_fake(fake)
    return op


_EW_ARGS = "float[] scalars, Tensor[] tensors, int[] slots, int? param_axis"


class Elementwise:
    """The ops of an elementwise activation (see the module docstring)."""

    def __init__(self, act, base: str):
        self.act = act
        self._next = None
        self._partials: dict[str, Elementwise] = {}
        self._of_y = None
        self.fwd = _define(base, "fwd", f"(Tensor x, {_EW_ARGS}) -> Tensor", self._fwd, _fake_like_x)
        self.bwd = _define(base, "bwd", f"(Tensor x, Tensor dy, {_EW_ARGS}) -> Tensor", self._bwd, _fake_like_x)
        self.pgrad = _define(base, "pgrad", f"(Tensor x, Tensor dy, {_EW_ARGS}) -> Tensor[]", self._pgrad,
                             _fake_pgrad)
        self.fwd.register_autograd(self._fwd_backward, setup_context=self._fwd_setup)
        self.bwd.register_autograd(self._bwd_backward, setup_context=_save_all)
        self.pgrad.register_autograd(self._pgrad_backward, setup_context=_save_all)
        self.bwdy = None
        if act.has_output_derivative:
            self.bwdy = _define(base, "bwdy", "(Tensor y, Tensor dy, float[] scalars) -> Tensor", self._bwdy,
                                _fake_like_x)
            self.bwdy.register_autograd(self._bwdy_backward, setup_context=_save_all)
        self.fwd.register_vmap(_vmap_rule(self.fwd, 1, reduces=False))
        self.bwd.register_vmap(_vmap_rule(self.bwd, 2, reduces=False))
        self.pgrad.register_vmap(_vmap_rule(self.pgrad, 2, reduces=True))

    # derived families, made on first use ----------------------------------------------------
    def next(self) -> "Elementwise":
        """The family of g' (whose fwd is g', bwd dy * g'')."""
        if self._next is None:
            self._next = family(self.act.derivative_activation(1))
        return self._next

    def partial(self, name: str) -> "Elementwise":
        """The family of dg/dp."""
        if name not in self._partials:
            self._partials[name] = family(param_derivative_activation(self.act, name))
        return self._partials[name]

    def of_y(self) -> "Elementwise":
        """The family of h, where g'(x) = h(g(x)) is the spec's output derivative."""
        if self._of_y is None:
            self._of_y = family(output_derivative_activation(self.act))
        return self._of_y

    # kernels --------------------------------------------------------------------------------
    def _fwd(self, x, scalars, tensors, slots, param_axis):
        xc = x.contiguous()
        y = torch.empty(xc.shape, dtype=xc.dtype)
        kw = {} if param_axis is None else {"param_axis": param_axis}
        self.act(_as_numpy(xc), out=y.numpy(), **kw, **_params(self.act, scalars, tensors, slots))
        return y

    def _bwd(self, x, dy, scalars, tensors, slots, param_axis):
        xc = x.contiguous()
        dx = torch.empty(xc.shape, dtype=xc.dtype)
        kw = {} if param_axis is None else {"param_axis": param_axis}
        self.act.backward(_as_numpy(xc), _as_numpy(dy.to(xc.dtype).contiguous()), out=dx.numpy(), **kw,
                          **_params(self.act, scalars, tensors, slots))
        return dx

    def _pgrad(self, x, dy, scalars, tensors, slots, param_axis):
        kw = {} if param_axis is None else {"param_axis": param_axis}
        xn = _as_numpy(x.contiguous())
        by_name = self.act.param_grads(xn, _as_numpy(dy.to(x.dtype).contiguous()), **kw,
                                       **_params(self.act, scalars, tensors, slots))
        names = tuple(self.act.params)
        return [torch.as_tensor(np.asarray(by_name[names[s]])).to(t.dtype).reshape(t.shape)
                if names[s] in by_name else torch.zeros_like(t)
                for s, t in zip(slots, tensors)]

    def _bwdy(self, y, dy, scalars):
        yc = y.contiguous()
        dx = torch.empty(yc.shape, dtype=yc.dtype)
        self.act.backward_from_output(_as_numpy(yc), _as_numpy(dy.to(yc.dtype).contiguous()), out=dx.numpy(),
                                      **_params(self.act, scalars, (), ()))
        return dx

    # autograd -------------------------------------------------------------------------------
    def _fwd_setup(self, ctx, inputs, output):
        x, scalars, tensors, slots, param_axis = inputs
        ctx.args = (scalars, slots, param_axis)
        ctx.from_output = (self.bwdy is not None and self.act.saves_output and _plain(tensors)
                           and self.act.output_derivative_holds(str(x.dtype).removeprefix("torch."),
                                                                **_params(self.act, scalars, tensors, slots)))
        ctx.save_for_backward(output if ctx.from_output else x, *tensors)

    def _fwd_backward(self, ctx, g):
        saved, *tensors = ctx.saved_tensors
        scalars, slots, param_axis = ctx.args
        if ctx.from_output:
            return self.bwdy(saved, g, _folded(scalars, tensors, slots)), _none_for(scalars), [None] * len(tensors), _none_for(slots), None
        need_x, _, need_t, _, _ = ctx.needs_input_grad
        dx = self.bwd(saved, g, scalars, tensors, slots, param_axis) if need_x else None
        dp = self.pgrad(saved, g, scalars, tensors, slots, param_axis) if any(need_t) else None
        return dx, _none_for(scalars), dp if dp is not None else [None] * len(tensors), _none_for(slots), None

    def _bwd_backward(self, ctx, gg):
        x, dy, *tensors = ctx.saved_tensors
        scalars, slots, param_axis = ctx.args
        need_x, need_dy, _, need_t, _, _ = ctx.needs_input_grad
        gx = gdy = gp = None
        if need_x or any(need_t):
            nxt, w = self.next(), dy * gg
            gx = nxt.bwd(x, w, scalars, tensors, slots, param_axis) if need_x else None
            gp = nxt.pgrad(x, w, scalars, tensors, slots, param_axis) if any(need_t) else None
        if need_dy:
            gdy = self.bwd(x, gg, scalars, tensors, slots, param_axis)
        return gx, gdy, _none_for(scalars), gp if gp is not None else [None] * len(tensors), _none_for(slots), None

    def _pgrad_backward(self, ctx, grads):
        x, dy, *tensors = ctx.saved_tensors
        scalars, slots, param_axis = ctx.args
        need_x, need_dy, _, need_t, _, _ = ctx.needs_input_grad
        names = tuple(self.act.params)
        gx = gdy = None
        gp = [None] * len(tensors)
        for s, g in zip(slots, grads):
            if g is None or names[s] not in self.act.learnable:
                continue
            part, gb = self.partial(names[s]), _spread(g, x.ndim, param_axis)
            if need_dy:
                term = gb * part.fwd(x, scalars, tensors, slots, param_axis)
                gdy = term if gdy is None else gdy + term
            if need_x:
                term = part.bwd(x, dy * gb, scalars, tensors, slots, param_axis)
                gx = term if gx is None else gx + term
            if any(need_t):
                for j, term in enumerate(part.pgrad(x, dy * gb, scalars, tensors, slots, param_axis)):
                    gp[j] = term if gp[j] is None else gp[j] + term
        return gx, gdy, _none_for(scalars), gp, _none_for(slots), None

    def _bwdy_backward(self, ctx, gg):
        y, dy = ctx.saved_tensors
        (scalars,) = ctx.args
        need_y, need_dy, _ = ctx.needs_input_grad
        gy = self.of_y().bwd(y, dy * gg, scalars, [], [], None) if need_y else None
        gdy = self.bwdy(y, gg, scalars) if need_dy else None
        return gy, gdy, None


def _save_all(ctx, inputs, output):
    """setup_context of the ops whose inputs are (tensor, tensor, non-tensor args...)."""
    a, b, *rest = inputs
    tensors = rest[1] if len(rest) > 1 else []
    ctx.args = (rest[0], *rest[2:]) if len(rest) > 1 else tuple(rest)
    ctx.save_for_backward(a, b, *tensors)


def _fake_like_x(x, *args):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def _fake_pgrad(x, dy, scalars, tensors, slots, param_axis):
    return [torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in tensors]


def _none_for(args: list):
    """The gradient of a non-differentiable list argument (an empty list is a list to autograd)."""
    return None if args else []


def _vmap_rule(op, leading: int, reduces: bool):
    """torch.vmap of an elementwise op: the batch dimension of each batched tensor argument
    becomes the leading one (an unbatched one is expanded), a param_axis counted from the front
    moves by one. Where a parameter tensor is batched, or the op sums over x (pgrad), each batch
    element is computed on its own and the results stacked."""

    def rule(info, in_dims, *args):
        lead, (scalars, tensors, slots, param_axis) = args[:leading], args[leading:]
        lead_dims, t_dims = in_dims[:leading], in_dims[leading + 1]
        t_dims = t_dims if isinstance(t_dims, (list, tuple)) else [t_dims] * len(tensors)
        batch = info.batch_size
        if reduces or any(d is not None for d in t_dims):
            outs = []
            for b in range(batch):
                la = [a if d is None else a.select(d, b) for a, d in zip(lead, lead_dims)]
                ta = [t if d is None else t.select(d, b) for t, d in zip(tensors, t_dims)]
                outs.append(op(*la, scalars, ta, slots, param_axis))
            if reduces:
                return [torch.stack(list(z)) for z in zip(*outs)], [0] * len(tensors)
            return torch.stack(outs), 0
        la = [a.movedim(d, 0) if d is not None else a.expand(batch, *a.shape) for a, d in zip(lead, lead_dims)]
        moved = param_axis + 1 if param_axis is not None and param_axis >= 0 else param_axis
        return op(*la, scalars, tensors, slots, moved), 0

    return rule


_ROW_ARGS = "float[] scalars, Tensor[] tensors, int[] slots, int dim"


class _Grouped:
    """The fused first-order ops of a gated or rowwise activation (x and dy have their own
    layouts); a double backward goes through ``composed`` (torch ops around the ops of the
    gate or the score, an elementwise family)."""

    def __init__(self, act, base: str):
        self.act = act
        self.names = tuple(act.params)
        self._inner = None
        self.fwd = _define(base, "fwd", f"(Tensor x, {_ROW_ARGS}) -> Tensor", self._fwd, self._fake_fwd)
        self.bwd = _define(base, "bwd", f"(Tensor x, Tensor dy, {_ROW_ARGS}) -> Tensor", self._bwd, _fake_like_x)
        self.pgrad = _define(base, "pgrad", f"(Tensor x, Tensor dy, {_ROW_ARGS}) -> Tensor[]", self._pgrad,
                             _fake_pgrad)
        self.fwd.register_autograd(self._fwd_backward, setup_context=self._fwd_setup)
        self.bwd.register_autograd(self._bwd_backward, setup_context=_save_all)

    def _bwd_backward(self, ctx, gg):
        """The bwd op differentiated: the vector-Jacobian product of the torch-op form's
        gradient (bwd is called directly only by opcheck or a user; the ops' own backward takes
        the torch-op form whenever a graph is being built)."""
        x, dy, *tensors = ctx.saved_tensors
        scalars, slots, dim = ctx.args
        with torch.enable_grad():
            xr = x if x.requires_grad else x.detach().requires_grad_()
            dyr = dy if dy.requires_grad else dy.detach().requires_grad_()
            wrt = [t for t in tensors if t.requires_grad]
            y = self._torch_forward(xr, scalars, tensors, slots, dim)
            (dx,) = torch.autograd.grad(y, xr, dyr, create_graph=True)
            grads = list(torch.autograd.grad(dx, [xr, dyr, *wrt], gg, create_graph=torch.is_grad_enabled(),
                                             allow_unused=True, materialize_grads=True))
        gx, gdy, rest = grads[0], grads[1], grads[2:]
        gp = [rest.pop(0) if t.requires_grad else None for t in tensors]
        return gx, gdy, _none_for(scalars), gp, _none_for(slots), None

    def _fake_fwd(self, x, scalars, tensors, slots, dim):
        return torch.empty(x.shape, dtype=x.dtype, device=x.device)

    def _fwd(self, x, scalars, tensors, slots, dim):
        xc = x.contiguous()
        y = torch.empty(self._fake_fwd(xc, scalars, tensors, slots, dim).shape, dtype=xc.dtype)
        self.act(_as_numpy(xc), out=y.numpy(), axis=dim, **_params(self.act, scalars, tensors, slots))
        return y

    def _bwd(self, x, dy, scalars, tensors, slots, dim):
        xc = x.contiguous()
        dx = torch.empty(xc.shape, dtype=xc.dtype)
        self.act.backward(_as_numpy(xc), _as_numpy(dy.to(xc.dtype).contiguous()), out=dx.numpy(), axis=dim,
                          **_params(self.act, scalars, tensors, slots))
        return dx

    def _pgrad(self, x, dy, scalars, tensors, slots, dim):
        by_name = self.act.param_grads(_as_numpy(x.contiguous()), _as_numpy(dy.to(x.dtype).contiguous()),
                                       axis=dim, **_params(self.act, scalars, tensors, slots))
        return [torch.as_tensor(np.asarray(by_name[self.names[s]])).to(t.dtype).reshape(t.shape)
                if self.names[s] in by_name else torch.zeros_like(t)
                for s, t in zip(slots, tensors)]

    def inner(self) -> Elementwise:
        """The family of the gate or the score."""
        if self._inner is None:
            self._inner = family(self.act.derivative_activation(0))
        return self._inner

    def _fwd_setup(self, ctx, inputs, output):
        x, scalars, tensors, slots, dim = inputs
        ctx.args = (scalars, slots, dim)
        ctx.from_output = self._from_output(x, scalars, tensors, slots)
        ctx.save_for_backward(output if ctx.from_output else x, *tensors)

    def _from_output(self, x, scalars, tensors, slots) -> bool:
        return False

    def _fwd_backward(self, ctx, g):
        saved, *tensors = ctx.saved_tensors
        scalars, slots, dim = ctx.args
        need_x, _, need_t, _, _ = ctx.needs_input_grad
        if torch.is_grad_enabled():              # create_graph=True: a graph that differentiates again
            dx, dp = self.composed(ctx.from_output, saved, g, scalars, tensors, slots, dim, need_x, need_t)
        elif ctx.from_output:
            dx, dp = self.bwdy(saved, g, _folded(scalars, tensors, slots), dim), None
        else:
            dx = self.bwd(saved, g, scalars, tensors, slots, dim) if need_x else None
            dp = self.pgrad(saved, g, scalars, tensors, slots, dim) if any(need_t) else None
        return dx, _none_for(scalars), dp if dp is not None else [None] * len(tensors), _none_for(slots), None

    def composed(self, from_output, saved, g, scalars, tensors, slots, dim, need_x, need_t):
        """(dx, [dp]) through the activation written with torch ops, differentiable again."""
        wrt = [t for t, need in zip(tensors, need_t) if need]
        inputs = ([saved] if need_x else []) + wrt
        y = self._torch_forward(saved, scalars, tensors, slots, dim)
        grads = list(torch.autograd.grad(y, inputs, g, create_graph=True, allow_unused=True,
                                         materialize_grads=True))
        dx = grads.pop(0) if need_x else None
        dp = [grads.pop(0) if need else None for need in need_t]
        return dx, dp


class Gated(_Grouped):
    def _fake_fwd(self, x, scalars, tensors, slots, dim):
        shape = list(x.shape)
        shape[dim] //= 2
        return torch.empty(shape, dtype=x.dtype, device=x.device)

    def _torch_forward(self, x, scalars, tensors, slots, dim):
        a, b = x.chunk(2, dim)
        return a * self.inner().fwd(b, scalars, tensors, slots, None)


def _sparsemax(s: torch.Tensor, dim: int) -> torch.Tensor:
    """Sparsemax along dim in torch ops (Martins & Astudillo 2016), for a double backward."""
    z = s.movedim(dim, -1)
    zs = z.sort(-1, descending=True).values
    k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    cs = zs.cumsum(-1)
    size = (1 + k * zs > cs).sum(-1, keepdim=True)
    tau = (cs.gather(-1, size - 1) - 1) / size.to(z.dtype)
    return torch.clamp(z - tau, min=0).movedim(-1, dim)


class Rowwise(_Grouped):
    def __init__(self, act, base: str):
        super().__init__(act, base)
        self.bwdy = None
        if act.has_output_derivative:
            self.bwdy = _define(base, "bwdy", "(Tensor y, Tensor dy, float[] scalars, int dim) -> Tensor",
                                self._bwdy, _fake_like_x)

    def _bwdy(self, y, dy, scalars, dim):
        yc = y.contiguous()
        dx = torch.empty(yc.shape, dtype=yc.dtype)
        self.act.backward_from_output(_as_numpy(yc), _as_numpy(dy.to(yc.dtype).contiguous()), out=dx.numpy(),
                                      axis=dim, **_params(self.act, scalars, (), ()))
        return dx

    def _from_output(self, x, scalars, tensors, slots) -> bool:
        return (self.bwdy is not None and self.act.saves_output and _plain(tensors)
                and self.act.output_derivative_holds(str(x.dtype).removeprefix("torch."),
                                                     **_params(self.act, scalars, tensors, slots)))

    def _torch_forward(self, x, scalars, tensors, slots, dim):
        s = self.inner().fwd(x, scalars, tensors, slots, None)
        normalizer = self.act.meta["normalizer"]
        if normalizer == "softmax":
            return torch.softmax(s, dim)
        if normalizer == "log_softmax":
            return torch.log_softmax(s, dim)
        return _sparsemax(s, dim)

    def composed(self, from_output, saved, g, scalars, tensors, slots, dim, need_x, need_t):
        if not from_output:
            return super().composed(from_output, saved, g, scalars, tensors, slots, dim, need_x, need_t)
        # y saved (no parameter needs a gradient, the score is c * x + d): the backward from y in
        # torch ops, which autograd differentiates through y = f(x) again
        y, c = saved, score_slope(self.act, _params(self.act, _folded(scalars, tensors, slots), (), ()))
        normalizer = self.act.meta["normalizer"]
        if normalizer == "softmax":
            return c * y * (g - (g * y).sum(dim, keepdim=True)), [None] * len(tensors)
        if normalizer == "log_softmax":
            return c * (g - y.exp() * g.sum(dim, keepdim=True)), [None] * len(tensors)
        m = (y > 0).to(y.dtype)
        return c * m * (g - (m * g).sum(dim, keepdim=True) / m.sum(dim, keepdim=True)), [None] * len(tensors)
