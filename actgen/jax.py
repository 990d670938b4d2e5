"""JAX integration (``pip install actgen[jax]``): any compiled activation as a ``jax.custom_vjp``
function whose forward and backward call the compiled kernels through ``jax.pure_callback``, so
that ``jax.grad``, ``jax.jit`` and ``jax.vmap`` work.

    import actgen.jax
    serf = actgen.jax.function("serf", spec="serf.toml")
    y = jax.jit(serf)(x)
    swish = actgen.jax.function("swish")
    g = jax.grad(lambda beta: swish(x, beta=beta).sum())(1.5)     # d/d beta, a learnable parameter

``f(x, axis=-1, param_axis=None, **params)``: ``axis`` is the axis a gated activation splits or a
rowwise one normalises; ``param_axis`` says along which axis of x a 1-d parameter gives one value
per channel (without it an array parameter must broadcast against x).

Parameters: a parameter given as a JAX array (a tracer under ``jit`` or ``grad``) is an argument of
the function and gets a gradient; only the spec's learnable parameters can be given so (the
kernels have no gradient for the others). Python numbers and NumPy arrays are constants. A
non-learnable parameter under ``jit`` is therefore a static argument
(``jax.jit(f, static_argnames=...)``) or a closed-over constant.

The kernels run on the host CPU in float32 or float64 (float16 and bfloat16 are computed in
float32; float64 needs ``jax_enable_x64``). The backward is first order only: differentiating it
again (``jax.hessian``, grad of grad) raises ``actgen.errors.HigherDerivativeError``. Under ``vmap`` the
callbacks receive the batch as leading dimensions (``vmap_method="expand_dims"``): one kernel
call when only x is batched, one per batch element when a parameter is.
"""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp

from .arguments import normalize_axis
from .loading import load
from .errors import HigherDerivativeError, KernelArgumentError

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

    def _out_shape(self, shape: tuple, axis: int) -> tuple:
        if self.act.kind != "gated":
            return shape
        if not shape:
            raise KernelArgumentError(f"{self.name}: a gated activation needs an array with an axis to split")
        ax = normalize_axis(axis, len(shape), self.name, "axis")
        if shape[ax] % 2:
            raise KernelArgumentError(f"{self.name}: axis {axis} has length {shape[ax]}; a gated activation splits "
                                      "it in two halves, so it must be even")
        return shape[:ax] + (shape[ax] // 2,) + shape[ax + 1:]

    def _second_order(self, primals, tangents):
        """The JVP rule of the callbacks: reached only when a derivative is differentiated again."""
        raise HigherDerivativeError(
            f"actgen activation {self.name}: its derivative was differentiated (jax.hessian, grad of grad), "
            "but actgen generates first derivatives only; use a JAX implementation of the "
            "activation where second derivatives are needed")

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
        ndim = x.ndim
        # negative axes stay right when vmap puts batch dimensions in front
        if act.kind == "elementwise":
            if param_axis is not None:
                param_axis = normalize_axis(param_axis, ndim, self.name, "param_axis") - ndim
            where = {"param_axis": param_axis}
        else:
            where = {"axis": normalize_axis(axis, ndim, self.name, "axis") - ndim}
        names, values, fixed = self._split(params, x.dtype)
        dtype = np.dtype(x.dtype)
        y_type = jax.ShapeDtypeStruct(self._out_shape(x.shape, axis), dtype)
        ndims = (ndim, *[v.ndim for v in values])
        from_output = (not names and act.kind != "gated"
                       and act.saves_output and act.output_derivative_holds(dtype.name, **fixed))

        def kernel_params(dyn):
            return {**fixed, **dict(zip(names, dyn))}

        def forward_host(xa, *dyn):
            return (act(xa, **where, **kernel_params(dyn)),)

        @jax.custom_jvp
        def forward(x, *dyn):
            (y,) = jax.pure_callback(lambda *a: _batched(forward_host, a, ndims, 1, True), (y_type,), x, *dyn,
                                     vmap_method="expand_dims")
            return y

        forward.defjvp(self._second_order)

        def backward_host(saved, dy, *dyn):
            p = kernel_params(dyn)
            if from_output:
                axis_kw = {} if act.kind == "elementwise" else where
                return (act.backward_from_output(saved, dy, **axis_kw, **p),)
            dx = act.backward(saved, dy, **where, **p)
            if not names:
                return (dx,)
            grads = act.param_grads(saved, dy, **where, **p)
            return (dx, *[np.asarray(grads[n], dtype).reshape(np.shape(v)) for n, v in zip(names, dyn)])

        grad_types = (jax.ShapeDtypeStruct(x.shape, dtype),
                      *[jax.ShapeDtypeStruct(v.shape, dtype) for v in values])

        @jax.custom_vjp
        def f(x, *dyn):
            return forward(x, *dyn)

        def f_fwd(x, *dyn):
            y = forward(x, *dyn)
            return y, ((y if from_output else x), *dyn)

        @jax.custom_jvp
        def backward(saved, dy, *dyn):
            ndims_b = (ndim, len(y_type.shape), *[v.ndim for v in dyn])
            return tuple(jax.pure_callback(
                lambda *a: _batched(backward_host, a, ndims_b, 2, not names),
                grad_types, saved, dy, *dyn, vmap_method="expand_dims"))

        backward.defjvp(self._second_order)

        def f_bwd(res, dy):
            saved, *dyn = res
            return backward(saved, dy.astype(dtype), *dyn)

        f.defvjp(f_fwd, f_bwd)
        return f(x, *values)


def function(name: str, spec=None, backend: str = "c") -> ActivationFunction:
    """The activation ``name`` (a built-in, or a table of the spec file ``spec``) as a
    differentiable JAX function: ``f = actgen.jax.function("swish"); y = f(x, beta=b)``."""
    return ActivationFunction(name, spec=spec, backend=backend)


__all__ = ["ActivationFunction", "function"]
