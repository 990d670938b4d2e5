"""The activation objects ``actgen.load`` returns (actgen/loading.py): ``LoadedActivation``
(elementwise; public as ``actgen.Activation``) here, the gated and rowwise kinds in
actgen/kinds.py.

Every call brings its arrays to the layout of the exported functions (actgen/roles.py):
contiguous, of a kernel dtype, seen as (n,), (outer, channels, inner), (outer, 2, half) or
(rows, n); both backends get the same layouts. The common case (contiguous float32/float64
arrays, scalar parameters, no ``out=`` or a fitting one) takes a short path so that small
arrays are not dominated by Python: for the elementwise roles of the C backend one C call
(actgen/fastcall.py: NumPy's C API checks the arrays and calls the kernel's address; ~0.2 us
above the kernel, measured with 1 thread on the development machine), elsewhere a few
attribute checks and one call of a per-dtype closure made at load time (~1.3 us above it
through cffi).
"""

from __future__ import annotations

import numpy as np

from .arguments import FLOAT_TAGS, ArgumentChecks, narrow
from .errors import KernelArgumentError
from .kernels import KERNELS
from .orders import derived_table, is_derived

_FLOAT_TAGS = FLOAT_TAGS        # read by tests/test_fastcall.py


class LoadedActivation(ArgumentChecks):
    """An elementwise activation: ``act(x, **params)``, ``act.backward(x, dy, **params)``,
    ``act.param_grads(x, dy, **params)``, and, for training loops,
    ``act.forward_with_derivative(x)`` (y and f'(x) in one pass) and, where the spec gives
    f' in terms of y, ``act.backward_from_output(y, dy)``.

    Inputs of any shape (Python scalars and lists too); float32 and float64 keep their dtype,
    float16 is computed in float32 (a result beyond float16's range is inf), integers and
    booleans are converted to float64 (as NumPy's ufuncs do); complex, object, string and
    float128 arrays are rejected with a KernelArgumentError. Non-contiguous, Fortran-ordered and
    byte-swapped inputs are copied; read-only inputs are fine. ``out=`` must have the result's
    shape and dtype and be writable; it may be the input itself (in place), and an ``out=`` that overlaps an
    input in any other way is computed through a temporary, so the result is always the
    out-of-place one. The GIL is released during the C call: Python threads run kernels in
    parallel.
    Mixed dtypes: x decides the dtype computed in. ``dy`` and array parameters are converted to
    it only where no value changes, as NumPy's "safe" casting says: ``backward(x64, dy32)``
    computes in float64; ``backward(x32, dy64)`` and a float64 parameter array with float32 x
    are refused with a KernelArgumentError saying how to round on purpose
    (``dy.astype(np.float32)``). Python numbers and lists (which carry no dtype) are taken in
    the dtype computed in, as NumPy takes a Python number next to an array. ``out=`` is written
    directly and never converted: it must have the result's dtype.
    Parameters left out take their defaults. A parameter may be an array: per channel along
    ``param_axis`` (a 1-d array of x.shape[param_axis] values, as PyTorch's PReLU on axis 1), or
    without ``param_axis`` any array that broadcasts against x (as Keras' PReLU with shared
    axes); ``param_grads`` then reduces each gradient to its parameter's shape.
    """

    def __init__(self, meta: dict, module, backend: str, table: dict, spec_path: str, *, loader=None):
        self.name: str = meta["name"]
        self.kind: str = meta.get("kind", "elementwise")
        self.params: dict[str, float] = {p: v for p, v in meta["params"]}
        self.learnable: tuple[str, ...] = tuple(meta["learnable"])
        self.description: str = meta["description"]
        self.expr_text: str = meta["expr_text"]
        self.backend = backend
        self.meta = meta
        self._table, self._spec_path = table, spec_path
        self._kernels = KERNELS[backend](module, meta)
        self._defaults = tuple(self.params.values())
        self._activation = None
        # loading.load_table (passed in: loading imports this module): how derivative_activation
        # loads another order of this activation
        self._loader, self._orders = loader, {}
        #: 0 for a spec's activation, k for its k-th derivative (derivative_activation(k))
        self.order: int = self._table["order"] if is_derived(self._table) else 0
        # the call paths of the common case: {dtype: run(...)}. An elementwise backward_y holds
        # only where output_derivative_valid does: its short path is for the defaults, if valid.
        self._fast_forward, self._fast_backward, self._fast_backward_y = {}, {}, {}
        for dtype, tag in FLOAT_TAGS.items():
            self._fast_forward[dtype] = self._kernels.fast("forward", tag, self.kind)
            self._fast_backward[dtype] = self._kernels.fast("backward", tag, self.kind)
            if "backward_y" in meta["functions"] and (
                    self.kind != "elementwise" or self._kernels.valid(tag, self._defaults)):
                self._fast_backward_y[dtype] = self._kernels.fast("backward_y", tag, self.kind)
        # the C fast path (actgen/fastcall.py): elementwise roles of the C backend
        self._fastcall, entries = self._kernels.entries(self._defaults)
        self._entry_forward = entries.get("forward")
        self._entry_backward = entries.get("backward")
        self._entry_backward_y = entries.get("backward_y")
        self._entry_forward_deriv = entries.get("forward_deriv")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        kind = "" if self.kind == "elementwise" else f" {self.kind}"
        return f"<actgen{kind} activation {self.name}({params}) = {self.expr_text} [{self.backend}]>"

    @property
    def has_output_derivative(self) -> bool:
        """True if ``backward_from_output`` exists (the spec gives f' in terms of y = f(x))."""
        return "backward_y" in self.meta["functions"]

    @property
    def saves_output(self) -> bool:
        """True if framework wrappers should keep y rather than x for the backward: the spec gives
        ``output_derivative`` and does not say ``save_output = false`` (the built-in sigmoid, tanh,
        elu... do: their y-forms lose relative accuracy in a tail, y * (1 - y) as y -> 1, so they
        keep x; ``backward_from_output`` stays there for callers who choose that speed)."""
        return self.has_output_derivative and self._table.get("save_output", True) is not False

    def output_derivative_holds(self, dtype="float64", **params) -> bool:
        """True if ``backward_from_output(y, dy, **params)`` may be used for arrays of ``dtype``:
        the spec gives f' in terms of y and its ``output_derivative_valid`` condition holds for
        these (scalar) parameters. Framework wrappers ask this (and ``saves_output``) to decide
        whether the forward keeps y or x for the backward."""
        if not self.has_output_derivative:
            return False
        values, arrays = self._params(params)
        if arrays:
            return False
        if "backward_y_valid" not in self.meta["functions"]:
            return True
        return self._kernels.valid(FLOAT_TAGS[np.dtype(dtype)], values)

    # symbolic view (imports SymPy on first use) -------------------------------------------
    @property
    def activation(self):
        """The parsed ``actgen.activation.Activation`` (SymPy expression, parameters)."""
        if self._activation is None:
            from .higher import parse_any

            self._activation = parse_any(self.name, self._table, path=self._spec_path)
        return self._activation

    @property
    def expr(self):
        """The activation (the gate, the score) as a SymPy expression in ``x`` and the parameters."""
        return self.activation.expr

    # the kernels -------------------------------------------------------------------------
    # Each method first tries the common case (contiguous float32/float64 arrays, scalar
    # parameters given as Python numbers, no out= or a fitting one): in C through fastcall's
    # entry where the C backend has one, else inline, a few attribute checks and one call of
    # the backend. Anything else goes through the general path below it, which converts,
    # checks and explains.

    def __call__(self, x, out=None, *, param_axis=None, **params):
        """y = f(x) elementwise."""
        if (entry := self._entry_forward) is not None:
            if (values := self._scalar_values(params) if params else self._defaults) is not None:
                y = self._fastcall(entry, x, out, values)
                if y is not None:
                    return y
        elif type(x) is np.ndarray:
            run = self._fast_forward.get(x.dtype)
            if (run is not None and (f := x.flags).c_contiguous and f.aligned
                    and (values := self._scalar_values(params) if params else self._defaults) is not None):
                if out is None:
                    y = np.empty_like(x)
                    run(x, y, values)
                    return y if x.ndim else y[()]
                # two arrays that each own their memory (np.empty, np.zeros...) are apart: a flag
                # read instead of np.may_share_memory (30 ns instead of 190 ns, per array)
                if (type(out) is np.ndarray and out.dtype is x.dtype and out.shape == x.shape
                        and (g := out.flags).carray
                        and (out is x or (g.owndata and f.owndata) or not np.may_share_memory(out, x))):
                    run(x, out, values)
                    return out
        xa, result = self._array(x, "x")
        values, arrays = self._params(params, xa.dtype)
        y, copy_to = self._target(out, xa.shape, xa.dtype, result, (xa,))
        tag = FLOAT_TAGS[xa.dtype]
        if arrays is None:
            self._kernels.forward(tag, xa, y, values)
        else:
            layout, block, aligned = self._layout(xa.shape, arrays, param_axis, xa.dtype)
            self._kernels.forward_pc(tag, xa, y, layout, self._vectors(values, arrays, block, aligned, xa.dtype))
        return self._finish(y, copy_to, result, out is None and np.ndim(x) == 0)

    def _fast_backward_call(self, table, x, dy, out):
        """The common case of backward_from_output (as inlined in backward), or None where it
        does not apply."""
        run = table.get(x.dtype)
        if (run is None or dy.dtype is not x.dtype or dy.shape != x.shape
                or not ((fx := x.flags).c_contiguous and fx.aligned) or not ((fd := dy.flags).c_contiguous and fd.aligned)):
            return None
        if out is None:
            dx = np.empty_like(x)
            run(x, dy, dx, self._defaults)
            return dx if x.ndim else dx[()]
        if (type(out) is np.ndarray and out.dtype is x.dtype and out.shape == x.shape
                and (g := out.flags).carray
                and (out is x or (g.owndata and fx.owndata) or not np.may_share_memory(out, x))
                and (out is dy or (g.owndata and fd.owndata) or not np.may_share_memory(out, dy))):
            run(x, dy, out, self._defaults)
            return out
        return None

    def backward(self, x, dy, out=None, *, param_axis=None, order=1, **params):
        """dL/dx = dy * f'(x) elementwise, given dL/dy = dy (same shape as x); with ``order=k``,
        dy * f^(k)(x) (the backward of derivative_activation(k - 1))."""
        if order != 1:
            return self.derivative_activation(_order(order, self.name) - 1).backward(
                x, dy, out, param_axis=param_axis, **params)
        if (entry := self._entry_backward) is not None:
            if (values := self._scalar_values(params) if params else self._defaults) is not None:
                dx = self._fastcall(entry, x, dy, out, values)
                if dx is not None:
                    return dx
        elif type(x) is np.ndarray and type(dy) is np.ndarray:
            run = self._fast_backward.get(x.dtype)
            if (run is not None and dy.dtype is x.dtype and dy.shape == x.shape
                    and (fx := x.flags).c_contiguous and fx.aligned and (fd := dy.flags).c_contiguous and fd.aligned
                    and (values := self._scalar_values(params) if params else self._defaults) is not None):
                if out is None:
                    dx = np.empty_like(x)
                    run(x, dy, dx, values)
                    return dx if x.ndim else dx[()]
                if (type(out) is np.ndarray and out.dtype is x.dtype and out.shape == x.shape
                        and (g := out.flags).carray
                        and (out is x or (g.owndata and fx.owndata) or not np.may_share_memory(out, x))
                        and (out is dy or (g.owndata and fd.owndata) or not np.may_share_memory(out, dy))):
                    run(x, dy, out, values)
                    return out
        xa, result = self._array(x, "x")
        dya = self._dy(dy, xa.shape, xa.dtype)
        values, arrays = self._params(params, xa.dtype)
        dx, copy_to = self._target(out, xa.shape, xa.dtype, result, (xa, dya))
        tag = FLOAT_TAGS[xa.dtype]
        if arrays is None:
            self._kernels.backward(tag, xa, dya, dx, values)
        else:
            layout, block, aligned = self._layout(xa.shape, arrays, param_axis, xa.dtype)
            self._kernels.backward_pc(tag, xa, dya, dx, layout,
                                      self._vectors(values, arrays, block, aligned, xa.dtype))
        return self._finish(dx, copy_to, result, out is None and np.ndim(x) == 0)

    def backward_from_output(self, y, dy, out=None, **params):
        """dL/dx from the saved output y = f(x) instead of x (no transcendental function for
        sigmoid, tanh, elu...; PyTorch's backward does the same). Only where the spec gives
        ``output_derivative`` and its ``output_derivative_valid`` condition holds."""
        if not params:
            if (entry := self._entry_backward_y) is not None:
                dx = self._fastcall(entry, y, dy, out, self._defaults)
                if dx is not None:
                    return dx
            elif type(y) is np.ndarray and type(dy) is np.ndarray:
                dx = self._fast_backward_call(self._fast_backward_y, y, dy, out)
                if dx is not None:
                    return dx
        if not self.has_output_derivative:
            raise KernelArgumentError(
                f"{self.name} has no backward_from_output: f'(x) is not written in terms of y = f(x) in its "
                "spec (key output_derivative); use backward(x, dy)")
        ya, result = self._array(y, "y")
        dya = self._dy(dy, ya.shape, ya.dtype)
        values, arrays = self._params(params)
        self._scalar_only(arrays, "backward_from_output")
        tag = FLOAT_TAGS[ya.dtype]
        if not self._kernels.valid(tag, values):
            raise KernelArgumentError(
                f"{self.name}: backward_from_output does not hold for these parameters "
                f"({', '.join(f'{p}={v:g}' for p, v in zip(self.params, values))}): y does not determine "
                "f'(x) there; use backward(x, dy)")
        dx, copy_to = self._target(out, ya.shape, ya.dtype, result, (ya, dya))
        self._kernels.backward_y(tag, ya, dya, dx, values)
        return self._finish(dx, copy_to, result, out is None and np.ndim(y) == 0)

    # derivatives of any order (actgen/orders.py) -------------------------------------------
    def derivative_activation(self, k: int = 1) -> "LoadedActivation":
        """The k-th derivative f^(k) as an activation of its own (k = 0: this one), with this
        one's backend and parameters: calling it gives f^(k)(x), its ``backward`` dy * f^(k+1)(x)
        and its ``param_grads`` the mixed derivatives sum(dy * d f^(k) / dp) (what the double
        backward of a model with learnable activations needs). Orders add up: the derivative
        activation of a derivative activation is a higher order of the same spec. Built through
        the same pipeline and cache as the spec (``actgen build`` builds order 1, whose backward
        is f''; higher orders are built on first use, then load from the cache without SymPy).
        For a gated or rowwise activation (not a scalar function) order k is the k-th derivative
        of its elementwise gate or score g, k >= 0 (k = 0: g itself, elementwise)."""
        k = _order(k, self.name, least=0)
        if k == 0 and self.kind == "elementwise":
            return self
        if k not in self._orders:
            if self._loader is None:
                raise KernelArgumentError(f"{self.name}: this activation was not made by actgen.load, so it cannot "
                                          "load its derivatives; load it with actgen.load")
            name, table = derived_table(self.name, self._table, k)
            self._orders[k] = self._loader(name, table, self._spec_path, self.backend)
        return self._orders[k]

    def _no_order(self) -> KernelArgumentError:
        return KernelArgumentError(
            f"{self.name} is {self.kind}, not a scalar function: it has no derivative or backward of order k; "
            f"derivative_activation(k) is the k-th derivative of its {'gate' if self.kind == 'gated' else 'score'}")

    def derivative(self, x, order: int = 1, out=None, *, param_axis=None, **params):
        """f^(order)(x) elementwise, for any order >= 1 (the backward of derivative_activation(order - 1)
        with dy = 1, exact: order 1 needs no other module, order 2 the one ``actgen build`` builds)."""
        k = _order(order, self.name)
        if self.kind != "elementwise":
            raise self._no_order()
        xa = np.asarray(x)
        dy = np.ones(xa.shape, xa.dtype if xa.dtype.kind == "f" else np.float64)
        return self.derivative_activation(k - 1).backward(x, dy, out, param_axis=param_axis, **params)

    def forward_with_derivative(self, x, out=None, deriv_out=None, **params):
        """(y, f'(x)) in one pass over x: a training loop keeps f'(x) and later computes
        dx = dy * f'(x) without recomputing anything. ``out`` and ``deriv_out`` must be two
        separate arrays; either may be x (then computed through a temporary)."""
        if (entry := self._entry_forward_deriv) is not None:
            if (values := self._scalar_values(params) if params else self._defaults) is not None:
                pair = self._fastcall(entry, x, out, deriv_out, values)
                if pair is not None:
                    return pair
        xa, result = self._array(x, "x")
        values, arrays = self._params(params)
        self._scalar_only(arrays, "forward_with_derivative")
        if isinstance(out, np.ndarray) and isinstance(deriv_out, np.ndarray) and np.may_share_memory(out, deriv_out):
            raise KernelArgumentError(f"{self.name}: out= and deriv_out= share memory; pass two separate arrays")
        # the loop writes y[i] and then reads x[i] again for f'(x[i]): outputs never alias x
        y, copy_y = self._target(out, xa.shape, xa.dtype, result, apart=(xa,))
        d, copy_d = self._target(deriv_out, xa.shape, xa.dtype, result, apart=(xa,), what="deriv_out")
        self._kernels.forward_deriv(FLOAT_TAGS[xa.dtype], xa, y, d, values)
        scalar = np.ndim(x) == 0
        return (self._finish(y, copy_y, result, out is None and scalar),
                self._finish(d, copy_d, result, deriv_out is None and scalar))

    def param_grads(self, x, dy, *, param_axis=None, **params) -> dict:
        """{p: dL/dp} for every learnable parameter: sum(dy * df/dp), accumulated in float64,
        reduced to the shape of p (a scalar, or the array given for p)."""
        xa, result = self._array(x, "x")
        dya = self._dy(dy, xa.shape, xa.dtype)
        values, arrays = self._params(params, xa.dtype)
        tag = FLOAT_TAGS[xa.dtype]
        if arrays is None:
            return {p: narrow(self._kernels.grad(tag, p, xa, dya, values), result) for p in self.learnable}
        layout, block, aligned = self._layout(xa.shape, arrays, param_axis, xa.dtype)
        vectors = self._vectors(values, arrays, block, aligned, xa.dtype)
        grads = {}
        for p in self.learnable:
            acc = self._kernels.grad_pc(tag, p, xa, dya, layout, vectors)
            if p not in arrays:
                grads[p] = narrow(np.sum(acc), result)
                continue
            full = acc.reshape(block)
            axes = tuple(i for i, s in enumerate(aligned[p]) if s == 1 and block[i] != 1)
            reduced = np.sum(full, axis=axes, keepdims=True) if axes else full
            grads[p] = narrow(reduced.reshape(arrays[p].shape), result)
        return grads


def _order(k, name: str, least: int = 1) -> int:
    """``k`` as the order of a derivative (an integer >= ``least``), or a KernelArgumentError."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < least:
        raise KernelArgumentError(f"{name}: the order of a derivative is an integer >= {least}, not {k!r}")
    return int(k)
