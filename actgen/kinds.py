"""The gated (GLU family) and rowwise (softmax family) kinds of loaded activation: the same
kernels interface and argument checks as the elementwise one, other layouts."""

from __future__ import annotations

import math

import numpy as np

from .arguments import FLOAT_TAGS, fits, narrow, normalize_axis
from .errors import KernelArgumentError
from .runtime import LoadedActivation


class GatedActivation(LoadedActivation):
    """A gated activation (the GLU family): x splits in two halves a, b along ``axis``
    (default the last); ``act(x) = a * f(b)``, whose ``axis`` is half as long.
    ``backward(x, dy)`` returns dL/dx for both halves in one pass."""

    def _split(self, shape, axis):
        if len(shape) == 0:
            raise KernelArgumentError(f"{self.name}: a gated activation needs an array with an axis to split")
        ax = normalize_axis(axis, len(shape), self.name, "axis")
        if shape[ax] % 2:
            raise KernelArgumentError(f"{self.name}: axis {axis} has length {shape[ax]}; a gated activation "
                                      "splits it in two halves, so it must be even")
        outer = math.prod(shape[:ax])
        half = shape[ax] // 2 * math.prod(shape[ax + 1:])
        return outer, half, shape[:ax] + (shape[ax] // 2,) + shape[ax + 1:]

    def __call__(self, x, out=None, *, axis=-1, **params):
        if (axis == -1 and type(x) is np.ndarray and x.ndim and (f := x.flags).c_contiguous and f.aligned
                and (values := self._scalar_values(params) if params else self._defaults) is not None):
            run, last = self._fast_forward.get(x.dtype), x.shape[-1]
            if run is not None and last and not last % 2:
                yshape = x.shape[:-1] + (last // 2,)
                if out is None or fits(out, yshape, x.dtype, apart=(x,)):
                    y = np.empty(yshape, x.dtype) if out is None else out
                    run(x, y, x.size // last, last // 2, values)
                    return y
        xa, result = self._array(x, "x")
        values, arrays = self._params(params)
        self._scalar_only(arrays, "__call__")
        outer, half, yshape = self._split(xa.shape, axis)
        y, copy_to = self._target(out, yshape, xa.dtype, result, apart=(xa,))
        self._kernels.gated_forward(FLOAT_TAGS[xa.dtype], xa, y, outer, half, values)
        return self._finish(y, copy_to, result, False)

    def backward(self, x, dy, out=None, *, axis=-1, order=1, **params):
        if order != 1:
            raise self._no_order()
        if (axis == -1 and type(x) is np.ndarray and type(dy) is np.ndarray and x.ndim
                and (f := x.flags).c_contiguous and f.aligned and (f := dy.flags).c_contiguous and f.aligned
                and dy.dtype is x.dtype
                and (values := self._scalar_values(params) if params else self._defaults) is not None):
            run, last = self._fast_backward.get(x.dtype), x.shape[-1]
            if (run is not None and last and not last % 2 and dy.shape == x.shape[:-1] + (last // 2,)
                    and (out is None or fits(out, x.shape, x.dtype, apart=(x, dy)))):
                dx = np.empty_like(x) if out is None else out
                run(x, dy, dx, x.size // last, last // 2, values)
                return dx
        xa, result = self._array(x, "x")
        values, arrays = self._params(params)
        self._scalar_only(arrays, "backward")
        outer, half, yshape = self._split(xa.shape, axis)
        dya = self._dy(dy, yshape, xa.dtype)
        # the loop writes da[j] and then reads a[j] again for db[j]: dx never aliases x
        dx, copy_to = self._target(out, xa.shape, xa.dtype, result, apart=(xa, dya))
        self._kernels.gated_backward(FLOAT_TAGS[xa.dtype], xa, dya, dx, outer, half, values)
        return self._finish(dx, copy_to, result, False)

    def param_grads(self, x, dy, *, axis=-1, **params) -> dict:
        xa, result = self._array(x, "x")
        values, arrays = self._params(params)
        self._scalar_only(arrays, "param_grads")
        outer, half, yshape = self._split(xa.shape, axis)
        dya = self._dy(dy, yshape, xa.dtype)
        tag = FLOAT_TAGS[xa.dtype]
        return {p: narrow(self._kernels.gated_grad(tag, p, xa, dya, outer, half, values), result)
                for p in self.learnable}

    @property
    def has_output_derivative(self) -> bool:
        return False

    def backward_from_output(self, *args, **kwargs):
        raise KernelArgumentError(f"{self.name} is gated: its backward needs x (both halves); use backward(x, dy)")

    def forward_with_derivative(self, *args, **kwargs):
        raise KernelArgumentError(f"{self.name} is gated: use {self.name}(x) and backward(x, dy)")


class RowwiseActivation(LoadedActivation):
    """A rowwise activation (softmax, log_softmax, softmin, ...): along ``axis`` (default the
    last) the scores s = f(x) are normalised. ``backward(x, dy)`` is the Jacobian-vector
    product; ``backward_from_output(y, dy)`` starts from the saved output where f' is constant."""

    def _rows(self, a, axis):
        """(a as a C-contiguous (rows, n) array, rows, n, whether the axis was moved)."""
        if a.ndim == 0:
            raise KernelArgumentError(f"{self.name}: a rowwise activation needs an array with an axis")
        ax = normalize_axis(axis, a.ndim, self.name, "axis")
        moved = ax != a.ndim - 1
        if moved:
            a = np.ascontiguousarray(np.moveaxis(a, ax, -1))
        n = a.shape[-1]
        return a, (a.size // n if n else 0), n, moved, ax

    def _fast(self, table, x, others, out, axis, params, in_place):
        """The common case (axis -1, contiguous arrays of a kernel dtype, default parameters, no
        out= or a fitting one): the result, or None where it does not apply."""
        if (axis != -1 or type(x) is not np.ndarray or not x.ndim
                or not ((f := x.flags).c_contiguous and f.aligned)):
            return None
        values = self._scalar_values(params)
        if values is None:
            return None
        run, n = table.get(x.dtype), x.shape[-1]
        if run is None or not n:
            return None
        for a in others:
            if (type(a) is not np.ndarray or a.dtype is not x.dtype or a.shape != x.shape
                    or not ((f := a.flags).c_contiguous and f.aligned)):
                return None
        inputs = (x, *others)
        if out is None:
            target = np.empty_like(x)
        elif fits(out, x.shape, x.dtype, *((inputs, ()) if in_place else ((), inputs))):
            target = out
        else:
            return None
        run(*inputs, target, x.size // n, n, values)
        return target

    def _run(self, run, inputs, out, result, axis, in_place, what="out"):
        """Call ``run(arrays as rows, target, rows, n)`` on the inputs moved so that the axis is
        last, and put the result back in the caller's layout. ``in_place``: the target may be
        one of the inputs (the loop reads a row's element j before writing element j, and never
        after); otherwise a target sharing memory with an input is a temporary."""
        prepared = [self._rows(a, axis) for a in inputs]
        a0, rows, n, moved, ax = prepared[0]
        shape = inputs[0].shape
        if not moved:
            overlap = (tuple(inputs), ()) if in_place else ((), tuple(inputs))
            target, copy_to = self._target(out, shape, a0.dtype, result, *overlap, what=what)
            if rows and n:
                run(*[p[0] for p in prepared], target, rows, n)
            return self._finish(target, copy_to, result, False)
        target = np.empty(a0.shape, a0.dtype)
        if rows and n:
            run(*[p[0] for p in prepared], target, rows, n)
        value = np.moveaxis(target, -1, ax)
        if out is not None:
            self._target(out, shape, a0.dtype, result, what=what)      # validates out
        with np.errstate(over="ignore"):                              # float16: beyond its range is inf
            if out is not None:
                out[...] = value
                return out
            return np.ascontiguousarray(value, dtype=result)

    def __call__(self, x, out=None, *, axis=-1, **params):
        y = self._fast(self._fast_forward, x, (), out, axis, params, True)
        if y is not None:
            return y
        xa, result = self._array(x, "x")
        values, arrays = self._params(params)
        self._scalar_only(arrays, "__call__")
        tag = FLOAT_TAGS[xa.dtype]
        return self._run(lambda a, t, rows, n: self._kernels.row_forward(tag, a, t, rows, n, values),
                         [xa], out, result, axis, in_place=True)

    def backward(self, x, dy, out=None, *, axis=-1, order=1, **params):
        if order != 1:
            raise self._no_order()
        # the loop writes softmax(row) into dx first and then reads dy and x again: no aliasing
        dx = self._fast(self._fast_backward, x, (dy,), out, axis, params, False)
        if dx is not None:
            return dx
        xa, result = self._array(x, "x")
        dya = self._dy(dy, xa.shape, xa.dtype)
        values, arrays = self._params(params)
        self._scalar_only(arrays, "backward")
        tag = FLOAT_TAGS[xa.dtype]
        return self._run(lambda a, g, t, rows, n: self._kernels.row_backward(tag, a, g, t, rows, n, values),
                         [xa, dya], out, result, axis, in_place=False)

    @property
    def has_output_derivative(self) -> bool:
        return "backward_y" in self.meta["functions"]

    def backward_from_output(self, y, dy, out=None, *, axis=-1, **params):
        dx = self._fast(self._fast_backward_y, y, (dy,), out, axis, params, True)
        if dx is not None:
            return dx
        if not self.has_output_derivative:
            raise KernelArgumentError(f"{self.name}: the score's derivative depends on x, so the backward "
                                      "needs x; use backward(x, dy)")
        ya, result = self._array(y, "y")
        dya = self._dy(dy, ya.shape, ya.dtype)
        values, arrays = self._params(params)
        self._scalar_only(arrays, "backward_from_output")
        tag = FLOAT_TAGS[ya.dtype]
        return self._run(lambda a, g, t, rows, n: self._kernels.row_backward_y(tag, a, g, t, rows, n, values),
                         [ya, dya], out, result, axis, in_place=True)

    def forward_with_derivative(self, *args, **kwargs):
        raise KernelArgumentError(f"{self.name} is rowwise: its derivative is a Jacobian, not elementwise; "
                                  "use backward(x, dy) or backward_from_output(y, dy)")

    def param_grads(self, x, dy, *, axis=-1, **params) -> dict:
        xa, result = self._array(x, "x")
        dya = self._dy(dy, xa.shape, xa.dtype)
        values, arrays = self._params(params)
        self._scalar_only(arrays, "param_grads")
        tag = FLOAT_TAGS[xa.dtype]
        a, rows, n, _, _ = self._rows(xa, axis)
        g, _, _, _, _ = self._rows(dya, axis)
        return {p: narrow(self._kernels.row_grad(tag, p, a, g, rows, n, values) if rows and n else 0.0, result)
                for p in self.learnable}
