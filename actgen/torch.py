"""PyTorch integration (``pip install actgen[torch]``, PyTorch 2.4 or later): any compiled
activation as ``torch.library`` custom ops and an ``nn.Module``.

    import actgen.torch
    act = actgen.torch.Activation("serf", spec="serf.toml")          # an nn.Module
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), act, torch.nn.Linear(32, 10))

Learnable parameters of the spec become ``nn.Parameter``s of the module (a scalar, or one value
per channel with ``num_parameters=C`` along ``param_axis``, default 1 as ``nn.PReLU``); the others
are plain attributes (a float) or buffers (an array). ``actgen.torch.function(name, spec=...)`` is
the functional form: ``f(x, dim=-1, param_axis=None, **params)``, parameters given as numbers or
tensors (a tensor that requires grad gets its gradient if the parameter is learnable).

Each activation is a family of custom ops in the ``actgen`` namespace (actgen/torch_ops.py:
forward, backward, parameter gradients, backward from the output), each with a fake
implementation, so ``torch.compile(model, fullgraph=True)`` traces a model without graph breaks
and calls the kernels as opaque ops. The kernels run on CPU tensors, which they read and write
in place: a contiguous float32/float64 tensor is handed to C as it is (``Tensor.numpy()`` shares
memory) and the output is allocated by PyTorch and filled through ``out=``. A non-contiguous
input is made contiguous first; float16 and bfloat16 are computed in float32 and rounded back;
CUDA tensors, integers and complex numbers are refused with an error that says what to do.

Derivatives of every order: the backward of order k is an op whose autograd calls order k+1's
(``act.derivative_activation``), with the mixed derivatives in the parameters (d/dp of each
order as an activation of its own, actgen/derived.py), so a double backward, a gradient
penalty, ``torch.autograd.grad`` nested to any depth and ``torch.autograd.functional.hessian``
work. The forward keeps only what the backward needs: the output y where the spec writes f'
with y (``output_derivative``, its ``output_derivative_valid`` holds for the parameters, and
the spec does not say ``save_output = false``, as the built-in sigmoid, tanh, elu and celu do
because their y-forms cancel in a tail) and no parameter needs a gradient, otherwise the input
x; from y, the second order differentiates the output derivative h(y) (f' = h(f)).

torch.func: ``vmap`` works (a batching rule per op). ``grad``, ``vjp`` and ``jacrev`` fail with
PyTorch's "must override the setup_context staticmethod": PyTorch 2.13 runs an op's registered
autograd as an ``autograd.Function`` in the old ``forward(ctx, ...)`` style, which functorch
refuses (pytorch/pytorch#170834; use ``torch.autograd.grad``). Forward mode (``jvp``,
``jacfwd``, ``hessian``, ``torch.autograd.forward_ad``) has no rule for custom ops (their tangent
would be 0): actgen raises a KernelArgumentError saying so.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.autograd import forward_ad

from .arguments import normalize_axis
from .errors import KernelArgumentError
from .loading import load
from .torch_ops import family

_KERNEL_DTYPES = (torch.float32, torch.float64)
_VIA_FLOAT32 = (torch.float16, torch.bfloat16)


def _refuse_forward_mode(name: str, x, tensors) -> None:
    """Forward-mode AD (torch.func.jvp, jacfwd, hessian; torch.autograd.forward_ad) has no rule
    for a torch.library custom op in PyTorch 2.13: its tangent would silently be 0. Say so."""
    interpreters = torch._C._functorch.get_interpreter_stack() or ()
    jvp = any(i.key() == torch._C._functorch.TransformType.Jvp for i in interpreters)
    if not jvp and forward_ad._current_level >= 0:
        jvp = any(forward_ad.unpack_dual(t).tangent is not None for t in (x, *tensors))
    if jvp:
        raise KernelArgumentError(
            f"{name}: forward-mode differentiation (torch.func.jvp, jacfwd, hessian, torch.autograd.forward_ad) "
            "reached an actgen op, and PyTorch's custom ops have no forward-mode rule: the tangent would be 0. "
            "Use reverse mode (torch.autograd.grad nested, torch.autograd.functional.hessian)")


class ActivationFunction:
    """A compiled activation as a differentiable function of PyTorch tensors:
    ``f(x, dim=-1, param_axis=None, **params)``.

    ``dim``: the axis a gated activation splits or a rowwise one normalises (default the last).
    ``param_axis``: for elementwise activations with a parameter given per channel (a 1-d tensor of
    ``x.shape[param_axis]`` values); without it an array parameter must broadcast against x.
    A parameter is a number or a tensor; a tensor that requires grad gets its gradient (reduced
    to its shape) if the spec declares the parameter learnable.
    """

    def __init__(self, name: str, spec=None, backend: str = "c"):
        self.act = load(name, spec=spec, backend=backend)
        self.name = self.act.name
        self.ops = family(self.act)
        self._defaults = [float(v) for v in self.act.params.values()]
        self._args = (name, None if spec is None else str(spec), backend)

    def __reduce__(self):
        # pickled and deep-copied (copy.deepcopy(model)) by what loads it, not the compiled module
        return (type(self), self._args)

    def __repr__(self) -> str:
        return f"actgen.torch.function({self.act!r})"

    def output_shape(self, shape: tuple, dim: int) -> tuple:
        if self.act.kind != "gated":
            return shape
        if not shape:
            raise KernelArgumentError(f"{self.name}: a gated activation needs a tensor with a dimension to split")
        ax = normalize_axis(dim, len(shape), self.name, "dim")
        if shape[ax] % 2:
            raise KernelArgumentError(f"{self.name}: dim {dim} has length {shape[ax]}; a gated activation splits "
                                      "it in two halves, so it must be even")
        return shape[:ax] + (shape[ax] // 2,) + shape[ax + 1:]

    def _check_tensor(self, x) -> None:
        if not isinstance(x, torch.Tensor):
            raise KernelArgumentError(f"{self.name}: expected a torch.Tensor, got {type(x).__name__} "
                                      "(for NumPy arrays use actgen.load)")
        if x.device.type != "cpu":
            raise KernelArgumentError(
                f"{self.name}: x is on {x.device}; actgen's compiled kernels run on the CPU. Move the tensor "
                "with x.cpu() (and the model with model.cpu()), or use a GPU implementation there")
        if x.dtype not in _KERNEL_DTYPES and x.dtype not in _VIA_FLOAT32:
            raise KernelArgumentError(
                f"{self.name}: x has dtype {x.dtype}, which has no kernel; pass float32 or float64 (float16 and "
                "bfloat16 are computed in float32), e.g. x.float()")
        if x.is_sparse or x.layout != torch.strided:
            raise KernelArgumentError(f"{self.name}: x has layout {x.layout}; pass a dense tensor (x.to_dense())")

    def _split_params(self, params: dict, x: torch.Tensor):
        """(a number per parameter, the tensors given, their positions) for the ops."""
        unknown = [k for k in params if k not in self.act.params]
        if unknown:
            names = ", ".join(self.act.params) or "none"
            raise KernelArgumentError(f"{self.name}() got unknown parameter(s) {', '.join(unknown)}; "
                                      f"its parameters are: {names}")
        scalars, tensors, slots = list(self._defaults), [], []
        for i, p in enumerate(self.act.params):
            if p not in params:
                continue
            v = params[p]
            if isinstance(v, (np.ndarray, list, tuple)):
                # an array carries its dtype (checked by the kernels); a list is taken in x's dtype
                v = torch.from_numpy(v) if isinstance(v, np.ndarray) else torch.as_tensor(v, dtype=x.dtype)
            if not isinstance(v, torch.Tensor):
                try:
                    scalars[i] = float(v)
                except (TypeError, ValueError):
                    raise KernelArgumentError(f"{self.name}: parameter {p} is {v!r:.40}; pass a number or a "
                                              "tensor") from None
                continue
            if v.device.type != "cpu":
                raise KernelArgumentError(f"{self.name}: parameter {p} is on {v.device}; actgen's kernels run "
                                          "on the CPU (move it with .cpu())")
            if not v.is_floating_point():
                v = v.to(torch.get_default_dtype())
            if v.requires_grad and p not in self.act.learnable:
                learnable = ", ".join(self.act.learnable) or "none"
                raise KernelArgumentError(
                    f"{self.name}: parameter {p} requires grad, but the spec does not declare it learnable "
                    f"(learnable: {learnable}), so no gradient kernel exists for it; add it to `learnable` in "
                    f"the spec, or pass {p}.detach()")
            tensors.append(v)
            slots.append(i)
        return scalars, tensors, slots

    def __call__(self, x: torch.Tensor, *, dim: int = -1, param_axis: int | None = None, **params):
        self._check_tensor(x)
        scalars, tensors, slots = self._split_params(params, x)
        if param_axis is not None and self.act.kind != "elementwise":
            raise KernelArgumentError(f"{self.name} is {self.act.kind}: its parameters are scalars (no param_axis)")
        if not torch.compiler.is_compiling():
            _refuse_forward_mode(self.name, x, tensors)
        xk = x.float() if x.dtype in _VIA_FLOAT32 else x
        if self.act.kind == "elementwise":
            y = self.ops.fwd(xk, scalars, tensors, slots, param_axis)
        else:
            self.output_shape(tuple(x.shape), dim)          # a clear error for an odd gated dim
            y = self.ops.fwd(xk, scalars, tensors, slots, dim)
        return y.to(x.dtype) if xk is not x else y


def function(name: str, spec=None, backend: str = "c") -> ActivationFunction:
    """The activation ``name`` (a built-in, or a table of the spec file ``spec``) as a
    differentiable function of tensors: ``f = actgen.torch.function("swish"); y = f(x, beta=b)``."""
    return ActivationFunction(name, spec=spec, backend=backend)


class ActivationModule(nn.Module):
    """A compiled activation as an ``nn.Module`` (public as ``actgen.torch.Activation``):
    ``actgen.torch.Activation("serf", spec="serf.toml", backend="c", **param_defaults)``.

    Learnable parameters (the spec's ``learnable``) are ``nn.Parameter``s named as in the spec
    (``module.beta``): scalars, or with ``num_parameters=C`` one value per channel along
    ``param_axis`` (default 1, channels of an (N, C, ...) tensor, as ``nn.PReLU``). The other
    parameters are float attributes (or buffers, if given as arrays). ``dim`` is the axis a
    gated activation splits or a rowwise one normalises (default the last).
    """

    def __init__(self, name: str, spec=None, backend: str = "c", *, num_parameters: int = 1,
                 param_axis: int = 1, dim: int = -1, **param_defaults):
        super().__init__()
        fn = function(name, spec=spec, backend=backend)
        act = fn.act
        unknown = [k for k in param_defaults if k not in act.params]
        if unknown:
            names = ", ".join(act.params) or "none"
            raise KernelArgumentError(f"actgen.torch.Activation({name!r}) got unknown parameter(s) "
                                      f"{', '.join(unknown)}; its parameters are: {names}")
        num_parameters = int(num_parameters)
        if num_parameters < 1:
            raise KernelArgumentError(f"{name}: num_parameters must be at least 1, not {num_parameters}")
        if num_parameters > 1 and not act.learnable:
            raise KernelArgumentError(f"{name}: num_parameters={num_parameters}, but it has no learnable parameter "
                                      "to give per channel")
        if num_parameters > 1 and act.kind != "elementwise":
            raise KernelArgumentError(f"{name} is {act.kind}: its parameters are scalars; per-channel parameters "
                                      "(num_parameters > 1) are for elementwise activations")
        object.__setattr__(self, "_fn", fn)          # not a submodule, not a parameter
        self.name, self.num_parameters, self.param_axis, self.dim = act.name, num_parameters, param_axis, dim
        self._names = tuple(act.params)
        for p, default in act.params.items():
            if hasattr(self, p):
                raise KernelArgumentError(
                    f"{name}: its parameter {p!r} has the name of an nn.Module attribute; rename the parameter in "
                    f"the spec, or use actgen.torch.function({name!r}) and pass {p} yourself")
            value = param_defaults.get(p, default)
            if p in act.learnable:
                t = torch.as_tensor(value, dtype=torch.get_default_dtype()).detach().clone()
                if num_parameters > 1 and t.ndim == 0:
                    t = t.repeat(num_parameters)
                if t.shape not in ((), (num_parameters,)) or (num_parameters > 1) != (t.ndim == 1):
                    raise KernelArgumentError(f"{name}: the initial value of {p} has shape {tuple(t.shape)}; "
                                              f"give a number or {num_parameters} values")
                self.register_parameter(p, nn.Parameter(t))
            elif np.ndim(value) == 0:
                setattr(self, p, float(value))
            else:
                self.register_buffer(p, torch.as_tensor(value, dtype=torch.get_default_dtype()))

    @property
    def act(self):
        """The loaded actgen activation (NumPy-level API: act(x), act.backward(x, dy), ...)."""
        return self._fn.act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = {p: getattr(self, p) for p in self._names}
        per_channel = self.num_parameters > 1 or any(isinstance(v, torch.Tensor) and v.ndim > 0
                                                     for v in params.values())
        return self._fn(x, dim=self.dim, param_axis=self.param_axis if per_channel else None, **params)

    def extra_repr(self) -> str:
        parts = [repr(self.name)]
        for p in self._names:
            v = getattr(self, p)
            if isinstance(v, torch.Tensor):
                parts.append(f"{p}={v.item():g}" if v.ndim == 0 else f"{p}=[{v.numel()} values]")
            else:
                parts.append(f"{p}={v:g}")
        if self.num_parameters > 1:
            parts.append(f"num_parameters={self.num_parameters}, param_axis={self.param_axis}")
        if self.act.kind != "elementwise":
            parts.append(f"dim={self.dim}")
        parts.append(f"backend={self.act.backend!r}")
        return ", ".join(parts)


#: the public name of the module class
Activation = ActivationModule

__all__ = ["Activation", "ActivationModule", "ActivationFunction", "function"]
