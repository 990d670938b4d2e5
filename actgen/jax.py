"""JAX integration (``pip install actgen[jax]``): any compiled activation as a ``jax.custom_jvp``
function whose value and tangent call the compiled kernels through ``jax.pure_callback``: the
tangent rule calls the derivative kernel (``act.derivative``, order k + 1), itself a
``custom_jvp`` function whose rule calls the next order (actgen/orders.py), so derivatives of any
order exist and forward and reverse mode both work: ``jax.grad``, ``jax.jvp``, ``jax.jacfwd``,
``jax.jacrev``, ``jax.hessian``, ``jit`` and ``vmap``.

    import actgen.jax
    serf = actgen.jax.function("serf", spec="serf.toml")
    y = jax.jit(serf)(x)
    swish = actgen.jax.function("swish")
    g = jax.grad(lambda beta: swish(x, beta=beta).sum())(1.5)     # d/d beta, a learnable parameter
    d2 = jax.grad(jax.grad(lambda t: swish(t)))(0.5)               # swish''(0.5)

``f(x, axis=-1, param_axis=None, **params)``: ``axis`` is the axis a gated activation splits or a
rowwise one normalises; ``param_axis`` says along which axis of x a 1-d parameter gives one value
per channel (without it an array parameter must broadcast against x).

Parameters: a parameter given as a JAX array (a tracer under ``jit`` or ``grad``) is an argument of
the function and gets a gradient; only the spec's learnable parameters can be given so (the
kernels have no gradient for the others). Python numbers and NumPy arrays are constants. A
non-learnable parameter under ``jit`` is therefore a static argument
(``jax.jit(f, static_argnames=...)``) or a closed-over constant. A parameter's tangent uses the
mixed derivative d f^(k) / dp elementwise (``derivative_activation(k).param_grads`` with the
parameter spread over x): any number of x-derivatives and one parameter derivative, which is
what training on a loss of derivatives (a physics-informed network) needs; a second derivative
with respect to a parameter (d2f/dp2, the Hessian in the parameters) is not generated and raises
a KernelArgumentError.

Gated activations are ``a * g(b)`` with g the gate as an elementwise function (its derivative
activations, order 0 upwards); rowwise ones call the row kernel for the value and differentiate
the normalisation (softmax, log_softmax, sparsemax) with jax.numpy around the score's derivative
kernels, so they have every order too.

The kernels run on the host CPU in float32 or float64 (float16 and bfloat16 are computed in
float32; float64 needs ``jax_enable_x64``). Under ``vmap`` the callbacks receive the batch as
leading dimensions (``vmap_method="expand_dims"``): one kernel call when only x is batched, one
per batch element when a parameter is.
"""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from .arguments import normalize_axis
from .loading import load
from .errors import KernelArgumentError

_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _batched(fn, arrays, ndims, n_data: int, fused: bool):
    """Call ``fn`` (written for unbatched arrays of ``ndims`` dimensions) on arrays that vmap's
    ``expand_dims`` gave leading batch dimensions (of size 1 where an argument is unbatched). The
    first ``n_data`` arrays are data (x, dy), the others parameters. Where ``fused`` (the outputs
    have no per-batch reduction) and no parameter is batched, the batch dimensions are leading
    dimensions of one kernel call; otherwise ``fn`` runs once per batch element. Returns a tuple
    of arrays with the batch dimensions in front."""
    arrays = [np.asarray(a) for a in arrays]
    extra = arrays[0].ndim - ndims[0]
    if extra == 0:
        return fn(*arrays)
    leads = [a.shape[:extra] for a in arrays]
    batch = np.broadcast_shapes(*leads)
    if fused and all(all(s == 1 for s in lead) for lead in leads[n_data:]):
        data = [np.broadcast_to(a, batch + a.shape[extra:]) for a in arrays[:n_data]]
        return fn(*data, *[a.reshape(a.shape[extra:]) for a in arrays[n_data:]])
    results = None
    for index in np.ndindex(batch):
        args = [a[tuple(i if s > 1 else 0 for i, s in zip(index, lead))] for a, lead in zip(arrays, leads)]
        out = fn(*args)
        if results is None:
            results = [np.empty(batch + np.shape(o), np.asarray(o).dtype) for o in out]
        for r, o in zip(results, out):
            r[index] = o
    return tuple(results)


class ActivationFunction:
    """A compiled activation as a differentiable JAX function: ``f(x, axis=-1, param_axis=None,
    **params)``. ``f.act`` is the loaded actgen activation (NumPy-level API)."""

    def __init__(self, name: str, spec=None, backend: str = "c"):
        self.act = load(name, spec=spec, backend=backend)
        self.name = self.act.name
        self._args = (name, None if spec is None else str(spec), backend)

    def __reduce__(self):
        # pickled and deep-copied (copy.deepcopy(model)) by what loads it, not the compiled module
        return (type(self), self._args)
        self.__name__ = f"actgen_{self.name}"

    def __repr__(self) -> str:
        return f"actgen.jax.function({self.act!r})"

    # arguments ---------------------------------------------------------------------------
    def _split(self, params: dict, dtype):
        """(names of the traced/array parameters, their values as arrays of dtype, constants)."""
        act = self.act
        unknown = [k for k in params if k not in act.params]
        if unknown:
            names = ", ".join(act.params) or "none"
            raise KernelArgumentError(f"{self.name}() got unknown parameter(s) {', '.join(unknown)}; "
                                      f"its parameters are: {names}")
        names, values, fixed = [], [], {}
        for p, v in params.items():
            if isinstance(v, jax.Array):
                if p not in act.learnable:
                    if isinstance(v, jax.core.Tracer):
                        learnable = ", ".join(act.learnable) or "none"
                        raise KernelArgumentError(
                            f"{self.name}: parameter {p} is a traced value, but the spec does not declare it "
                            f"learnable (learnable: {learnable}), so no gradient kernel exists for it; pass a "
                            f"Python number (under jit: a static argument, jax.jit(f, static_argnames=...)) or add "
                            f"{p} to `learnable` in the spec")
                    fixed[p] = np.asarray(v)
                    continue
                names.append(p)
                values.append(jnp.asarray(v, dtype=dtype))
            else:
                fixed[p] = v
        return tuple(names), values, fixed

    # the function -----------------------------------------------------------------------
    def __call__(self, x, *, axis: int = -1, param_axis: int | None = None, **params):
        act = self.act
        x = jnp.asarray(x)
        if x.dtype in (jnp.float16, jnp.bfloat16):
            return self(x.astype(jnp.float32), axis=axis, param_axis=param_axis, **params).astype(x.dtype)
        if x.dtype not in _KERNEL_DTYPES:
            raise KernelArgumentError(
                f"{self.name}: x has dtype {x.dtype}, which has no kernel; pass float32 or float64 (float64 needs "
                "jax.config.update('jax_enable_x64', True)), e.g. x.astype(jnp.float32)")
        if param_axis is not None and act.kind != "elementwise":
            raise KernelArgumentError(f"{self.name} is {act.kind}: its parameters are scalars (no param_axis)")
        names, values, fixed = self._split(params, x.dtype)
        if act.kind == "elementwise":
            if param_axis is not None:
                param_axis = normalize_axis(param_axis, x.ndim, self.name, "param_axis")
            values = [self._spread(n, v, x.shape, param_axis) for n, v in zip(names, values)]
            fixed = {n: self._spread(n, v, x.shape, param_axis) if np.ndim(v) else v for n, v in fixed.items()}
            return _Orders(act, x, names, fixed)(0, None)(x, *values)
        if not x.ndim:
            raise KernelArgumentError(f"{self.name}: a {act.kind} activation needs an array with an axis")
        ax = normalize_axis(axis, x.ndim, self.name, "axis")
        if act.kind == "gated":
            if x.shape[ax] % 2:
                raise KernelArgumentError(f"{self.name}: axis {axis} has length {x.shape[ax]}; a gated activation "
                                          "splits it in two halves, so it must be even")
            a, b = jnp.split(x, 2, axis=ax)
            return a * _Orders(act.derivative_activation(0), b, names, fixed)(0, None)(b, *values)
        return _rowwise(act, x, ax, names, values, fixed)

    def _spread(self, name, v, shape, param_axis):
        """A parameter array as an array that broadcasts against x (a per-channel 1-d array along
        ``param_axis`` gets unit axes around it): the kernels then see one layout under vmap too."""
        if param_axis is not None and np.ndim(v):
            if np.ndim(v) != 1 or v.shape[0] != shape[param_axis]:
                raise KernelArgumentError(
                    f"{self.name}: parameter {name} along param_axis={param_axis} must be a 1-d array of "
                    f"x.shape[{param_axis}] = {shape[param_axis]} values, not of shape {tuple(np.shape(v))}")
            return v.reshape(tuple(-1 if i == param_axis else 1 for i in range(len(shape))))
        if np.ndim(v) and np.broadcast_shapes(np.shape(v), shape) != tuple(shape):
            raise KernelArgumentError(f"{self.name}: parameter {name} of shape {tuple(np.shape(v))} does not "
                                      f"broadcast against x of shape {tuple(shape)}; give param_axis for one value "
                                      "per channel")
        return v


class _Orders:
    """The elementwise derivatives of one activation as ``custom_jvp`` functions of (x, *traced
    parameters): ``self(k, None)`` is f^(k), ``self(k, p)`` the mixed derivative d f^(k) / dp
    elementwise. Each one's tangent rule is a linear combination of the next ones (k + 1, and
    the parameter ones), so JAX differentiates them any number of times, forward or reverse."""

    def __init__(self, act, x, names, fixed):
        self.act, self.names, self.fixed = act, tuple(names), fixed
        self.dtype = np.dtype(x.dtype)
        self.out_type = jax.ShapeDtypeStruct(x.shape, self.dtype)
        self.ndim = x.ndim
        self.made = {}

    def host(self, k, p):
        act, dtype, names, fixed = self.act, self.dtype, self.names, self.fixed

        def run(xa, *dyn):
            params = {**fixed, **dict(zip(names, dyn))}
            if p is None:
                y = act.derivative(xa, k, **params) if k else act(xa, **params)
                return (np.asarray(y, dtype),)
            # d f^(k) / dp at each element: the mixed-derivative sum with p spread over x, dy = 1
            params[p] = np.broadcast_to(np.asarray(params[p], dtype), xa.shape)
            grads = act.derivative_activation(k).param_grads(xa, np.ones(xa.shape, dtype), **params)
            return (np.asarray(grads[p], dtype).reshape(xa.shape),)
        return run

    def __call__(self, k: int, p: str | None):
        if (k, p) in self.made:
            return self.made[k, p]
        # the derivative activation the callback calls is loaded (built, if new) here, at trace time:
        # a build error is raised to the caller, and selection does not run in XLA's callback threads,
        # which flush subnormals to zero (measured there, its mpmath references failed: math domain error)
        self.act.derivative_activation(k - 1 if p is None and k else k)
        run = self.host(k, p)

        @jax.custom_jvp
        def fn(x, *dyn):
            ndims = (self.ndim, *[v.ndim for v in dyn])
            (y,) = jax.pure_callback(lambda *a: _batched(run, a, ndims, 1, True), (self.out_type,), x, *dyn,
                                     vmap_method="expand_dims")
            return y

        def jvp(primals, tangents):
            x, *dyn = primals
            if p is not None and any(not isinstance(t, SymbolicZero) for t in tangents[1:]):
                raise KernelArgumentError(
                    f"actgen activation {self.act.name}: a second derivative with respect to a parameter "
                    f"(d2f/d{p}d...) was asked for (a Hessian in the parameters); actgen generates the derivatives "
                    "in x of any order and one parameter derivative of each (the mixed ones), not d2f/dp2")
            y = fn(x, *dyn)
            ty = self.tangent(k, p, x, dyn, tangents)
            return y, (jnp.zeros_like(y) if ty is None else ty)

        fn.defjvp(jvp, symbolic_zeros=True)
        self.made[k, p] = fn
        return fn

    def tangent(self, k, p, x, dyn, tangents):
        """The tangent of f^(k) (or of d f^(k)/dp) at x: f^(k+1) * tx + sum over the traced
        parameters q of d f^(k)/dq * tq; None where every tangent is a symbolic zero."""
        tx, *tdyn = tangents
        ty = None if isinstance(tx, SymbolicZero) else self(k + 1, p)(x, *dyn) * tx
        if p is None:
            for q, t in zip(self.names, tdyn):
                if not isinstance(t, SymbolicZero):
                    term = self(k, q)(x, *dyn) * t
                    ty = term if ty is None else ty + term
        return ty


def _rowwise(act, x, ax, names, values, fixed):
    """y = normalise(s(x)) along ``ax``: the row kernel for the value; the tangent from the score's
    tangent ts (its derivative kernels: _Orders of the score) by the normaliser's JVP in
    jax.numpy, around y itself (differentiable again: y is this function's output)."""
    score = _Orders(act.derivative_activation(0), x, names, fixed)
    normalizer, dtype = act.meta["normalizer"], np.dtype(x.dtype)
    where = ax - x.ndim                     # negative: right when vmap puts batch axes in front
    y_type = jax.ShapeDtypeStruct(x.shape, dtype)

    def run(xa, *dyn):
        return (np.asarray(act(xa, axis=where, **fixed, **dict(zip(names, dyn))), dtype),)

    @jax.custom_jvp
    def rows(x, *dyn):
        ndims = (x.ndim, *[v.ndim for v in dyn])
        (y,) = jax.pure_callback(lambda *a: _batched(run, a, ndims, 1, not names), (y_type,), x, *dyn,
                                 vmap_method="expand_dims")
        return y

    def jvp(primals, tangents):
        x, *dyn = primals
        y = rows(x, *dyn)
        ts = score.tangent(0, None, x, dyn, tangents)
        if ts is None:
            return y, jnp.zeros_like(y)
        if normalizer == "softmax":
            return y, y * (ts - jnp.sum(y * ts, axis=ax, keepdims=True))
        if normalizer == "log_softmax":
            return y, ts - jnp.sum(jnp.exp(y) * ts, axis=ax, keepdims=True)
        support = (y > 0).astype(y.dtype)               # sparsemax: piecewise linear in s
        return y, support * (ts - jnp.sum(support * ts, axis=ax, keepdims=True)
                             / jnp.sum(support, axis=ax, keepdims=True))

    rows.defjvp(jvp, symbolic_zeros=True)
    return rows(x, *[jnp.asarray(v, dtype) for v in values])


def function(name: str, spec=None, backend: str = "c") -> ActivationFunction:
    """The activation ``name`` (a built-in, or a table of the spec file ``spec``) as a
    differentiable JAX function: ``f = actgen.jax.function("swish"); y = f(x, beta=b)``."""
    return ActivationFunction(name, spec=spec, backend=backend)


__all__ = ["ActivationFunction", "function"]
