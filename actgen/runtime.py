"""Loaded callables: ``actgen.load(...)`` and the activation objects it returns.

Loading an unchanged spec does not import SymPy: the spec table's key (its content, actgen's
own code and templates, the toolchain) is looked up in the cache index, and the built module
is wrapped using the metadata stored beside it.

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

import math
import os
import threading
from pathlib import Path

import numpy as np

from . import fastcall, library
from .build import (ActgenWarning, cache_root, import_module_file, locked, lookup_artifact, read_index, spec_key,
                    warn_once, write_index)
from .errors import KernelArgumentError, ToolchainError
from .specfile import find_table, read_spec_text, read_tables, resolve_table

BACKENDS = ("c", "numpy")
_FLOAT_TAGS = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}
_F64 = np.dtype(np.float64)
# channels per call of a C per-channel gradient (its per-thread accumulator copy: 32 KB of stack)
_PC_GRAD_CHANNELS = 4096
_LOADED: dict[str, "Activation"] = {}
_LOCK = threading.RLock()


# ---- threads -----------------------------------------------------------------------------------

def _default_threads() -> int:
    for var in ("ACTGEN_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").split(",")[0].strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_THREADS = [_default_threads()]
_FORKED = [False]


def set_num_threads(n: int) -> None:
    """The number of OpenMP threads the C kernels use (default: ACTGEN_NUM_THREADS, else
    OMP_NUM_THREADS, else the CPUs this process may run on). Small arrays use one thread
    whatever this says. In a child process created by fork it is 1: GNU OpenMP's thread pool
    does not survive fork, so a child that asks for more threads gets a warning and one thread."""
    n = int(n)
    if n < 1:
        raise ValueError(f"the number of threads must be at least 1, not {n}")
    if _FORKED[0] and n > 1:
        warn_once("this process was forked from one that may have used OpenMP threads; GNU OpenMP "
                  "cannot start threads after fork, so actgen's kernels run on one thread here "
                  "(start worker processes with the 'spawn' or 'forkserver' method to use threads)")
        n = 1
    _THREADS[0] = n
    if (fc := fastcall.loaded()) is not None:
        fc.set_threads(n)


def get_num_threads() -> int:
    return _THREADS[0]


def _after_fork_in_child() -> None:
    global _LOCK
    _FORKED[0] = True
    _THREADS[0] = 1
    if (fc := fastcall.loaded()) is not None:
        fc.set_threads(1)
    _LOCK = threading.RLock()       # a load running in another thread of the parent never ends here


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ---- backends: one interface over the C module and the NumPy module ------------------------------------

class _CKernels:
    """Calls into a cffi module: arrays become pointers, parameters C scalars or arrays.

    cffi's API mode releases the GIL around every call, so Python threads run kernels in
    parallel. Every array handed over is C-contiguous, of the kernel's dtype, and an output is
    writable (the callers check it), so ``from_buffer`` needs no further checks."""

    def __init__(self, module, meta):
        self.ffi, lib = module.ffi, module.lib
        self.fn = {(role, dtype): getattr(lib, symbol)
                   for role, symbols in meta["functions"].items() for dtype, symbol in symbols.items()}
        self.buf = self.ffi.from_buffer
        # the array types as cffi objects (a type given as a string is looked up on every call)
        self.ctype = {"float32": self.ffi.typeof("float[]"), "float64": self.ffi.typeof("double[]")}
        self.lib, self.meta = lib, meta

    def entries(self, defaults) -> tuple[object, dict]:
        """(fastcall's call, {role: its Entry}) for the C fast path of the elementwise roles; a
        backward_y entry only for the dtypes where output_derivative_valid holds at the
        defaults. (None, {}) where the path does not apply or the extension is unavailable."""
        valid = {dtype: "backward_y_valid" not in self.meta["functions"] or self.valid(dtype, defaults)
                 for dtype in self.ctype} if "backward_y" in self.meta["functions"] else {}
        found = fastcall.entries(self.lib, self.ffi, self.meta,
                                 usable=lambda role, dtype: role != "backward_y" or valid[dtype])
        fc = fastcall.loaded()
        if fc is None or not found:
            return None, {}
        fc.set_threads(_THREADS[0])
        return fc.call, found

    def fast(self, role, dtype, kind="elementwise"):
        """The call path of the common case, everything that does not depend on the arrays
        looked up once: for an elementwise activation ``run(x, y, params)`` (forward) or
        ``run(x, dy, dx, params)`` (backward, backward_y), params a tuple of floats; for gated
        and rowwise ones the same with the two layout sizes ((outer, half) or (rows, n)) before
        params."""
        fn, ct, buf, threads = self.fn[role, dtype], self.ctype[dtype], self.buf, _THREADS
        if kind == "elementwise":
            if role == "forward":
                return lambda x, y, p: fn(buf(ct, x), buf(ct, y), x.size, *p, threads[0])
            return lambda x, dy, dx, p: fn(buf(ct, x), buf(ct, dy), buf(ct, dx), x.size, *p, threads[0])
        if role == "forward":
            return lambda x, y, m, n, p: fn(buf(ct, x), buf(ct, y), m, n, *p, threads[0])
        return lambda x, dy, dx, m, n, p: fn(buf(ct, x), buf(ct, dy), buf(ct, dx), m, n, *p, threads[0])

    def _in(self, dtype, a):
        return self.buf(self.ctype[dtype], a)

    _out = _in

    # elementwise, scalar parameters
    def forward(self, dtype, x, y, params):
        self.fn["forward", dtype](self._in(dtype, x), self._out(dtype, y), x.size, *params, _THREADS[0])

    def backward(self, dtype, x, dy, dx, params):
        self.fn["backward", dtype](self._in(dtype, x), self._in(dtype, dy), self._out(dtype, dx), x.size,
                                   *params, _THREADS[0])

    def backward_y(self, dtype, y, dy, dx, params):
        self.fn["backward_y", dtype](self._in(dtype, y), self._in(dtype, dy), self._out(dtype, dx), y.size,
                                     *params, _THREADS[0])

    def valid(self, dtype, params) -> bool:
        return bool(self.fn["backward_y_valid", dtype](*params))

    def forward_deriv(self, dtype, x, y, d, params):
        self.fn["forward_deriv", dtype](self._in(dtype, x), self._out(dtype, y), self._out(dtype, d), x.size,
                                        *params, _THREADS[0])

    def grad(self, dtype, param, x, dy, params) -> float:
        return self.fn[f"grad_{param}", dtype](self._in(dtype, x), self._in(dtype, dy), x.size, *params,
                                                _THREADS[0])

    # elementwise, per-channel parameters (arrays of `channels` values)
    def forward_pc(self, dtype, x, y, layout, vectors):
        self.fn["forward_pc", dtype](self._in(dtype, x), self._out(dtype, y), *layout,
                                     *[self._in(dtype, v) for v in vectors], _THREADS[0])

    def backward_pc(self, dtype, x, dy, dx, layout, vectors):
        self.fn["backward_pc", dtype](self._in(dtype, x), self._in(dtype, dy), self._out(dtype, dx), *layout,
                                      *[self._in(dtype, v) for v in vectors], _THREADS[0])

    def grad_pc(self, dtype, param, x, dy, layout, vectors) -> np.ndarray:
        fn, ct, buf = self.fn[f"grad_{param}_pc", dtype], self.ctype[dtype], self.buf
        outer, channels, inner = layout
        if channels <= _PC_GRAD_CHANNELS:
            acc = np.empty(channels, np.float64)
            fn(buf(ct, x), buf(ct, dy), *layout, *[buf(ct, v) for v in vectors], buf("double[]", acc), _THREADS[0])
            return acc
        # The loop's OpenMP array reduction keeps a private copy of the channels' accumulators
        # on each thread's stack: 2^21 channels (16 MB) overflowed the 8 MB main stack, even on
        # one thread. Slabs of channels keep that copy small; a slab of one outer index is
        # contiguous.
        acc, part = np.zeros(channels, np.float64), np.empty(_PC_GRAD_CHANNELS, np.float64)
        xf, dyf = x.reshape(-1), dy.reshape(-1)
        for o in range(outer):
            for c0 in range(0, channels, _PC_GRAD_CHANNELS):
                c1 = min(c0 + _PC_GRAD_CHANNELS, channels)
                lo, hi = (o * channels + c0) * inner, (o * channels + c1) * inner
                fn(buf(ct, xf[lo:hi]), buf(ct, dyf[lo:hi]), 1, c1 - c0, inner,
                   *[buf(ct, v[c0:c1]) for v in vectors], buf("double[]", part), _THREADS[0])
                acc[c0:c1] += part[:c1 - c0]
        return acc

    # gated: x is (outer, 2, half)
    def gated_forward(self, dtype, x, y, outer, half, params):
        self.fn["forward", dtype](self._in(dtype, x), self._out(dtype, y), outer, half, *params, _THREADS[0])

    def gated_backward(self, dtype, x, dy, dx, outer, half, params):
        self.fn["backward", dtype](self._in(dtype, x), self._in(dtype, dy), self._out(dtype, dx), outer, half,
                                   *params, _THREADS[0])

    def gated_grad(self, dtype, param, x, dy, outer, half, params) -> float:
        return self.fn[f"grad_{param}", dtype](self._in(dtype, x), self._in(dtype, dy), outer, half, *params,
                                                _THREADS[0])

    # rowwise: x is (rows, n)
    def row_forward(self, dtype, x, y, rows, n, params):
        self.fn["forward", dtype](self._in(dtype, x), self._out(dtype, y), rows, n, *params, _THREADS[0])

    def row_backward(self, dtype, x, dy, dx, rows, n, params):
        self.fn["backward", dtype](self._in(dtype, x), self._in(dtype, dy), self._out(dtype, dx), rows, n,
                                   *params, _THREADS[0])

    def row_backward_y(self, dtype, y, dy, dx, rows, n, params):
        self.fn["backward_y", dtype](self._in(dtype, y), self._in(dtype, dy), self._out(dtype, dx), rows, n,
                                     *params, _THREADS[0])

    def row_grad(self, dtype, param, x, dy, rows, n, params) -> float:
        return self.fn[f"grad_{param}", dtype](self._in(dtype, x), self._in(dtype, dy), rows, n, *params,
                                                _THREADS[0])


class _NumPyKernels:
    """Calls the generated NumPy module on the same layouts; IEEE results without warnings."""

    def __init__(self, module, meta):
        self.fn = {(role, dtype): getattr(module, symbol)
                   for role, symbols in meta["functions"].items() for dtype, symbol in symbols.items()}

    @staticmethod
    def entries(defaults) -> tuple[object, dict]:
        """No C fast path: the NumPy backend's calls take the Python one."""
        return None, {}

    @staticmethod
    def _scalars(dtype, params):
        t = np.dtype(dtype).type
        return [t(p) for p in params]

    def fast(self, role, dtype, kind="elementwise"):
        """As _CKernels.fast."""
        method = getattr(self, {"gated": "gated_", "rowwise": "row_"}.get(kind, "") + role)
        if kind == "elementwise":
            if role == "forward":
                return lambda x, y, p: method(dtype, x, y, p)
            return lambda x, dy, dx, p: method(dtype, x, dy, dx, p)
        if role == "forward":
            return lambda x, y, m, n, p: method(dtype, x, y, m, n, p)
        return lambda x, dy, dx, m, n, p: method(dtype, x, dy, dx, m, n, p)

    def forward(self, dtype, x, y, params):
        with np.errstate(all="ignore"):
            y[...] = self.fn["forward", dtype](x, *self._scalars(dtype, params))

    def backward(self, dtype, x, dy, dx, params):
        with np.errstate(all="ignore"):
            dx[...] = self.fn["backward", dtype](x, dy, *self._scalars(dtype, params))

    def backward_y(self, dtype, y, dy, dx, params):
        with np.errstate(all="ignore"):
            dx[...] = self.fn["backward_y", dtype](y, dy, *self._scalars(dtype, params))

    def valid(self, dtype, params) -> bool:
        with np.errstate(all="ignore"):
            return bool(self.fn["backward_y_valid", dtype](*self._scalars(dtype, params)))

    def forward_deriv(self, dtype, x, y, d, params):
        with np.errstate(all="ignore"):
            y[...], d[...] = self.fn["forward_deriv", dtype](x, *self._scalars(dtype, params))

    def grad(self, dtype, param, x, dy, params) -> float:
        with np.errstate(all="ignore"):
            return float(np.sum(self.fn[f"grad_{param}", dtype](x, dy, *self._scalars(dtype, params))))

    @staticmethod
    def _channels(layout, vectors):
        outer, channels, inner = layout
        return [v.reshape(1, channels, 1) for v in vectors], (outer, channels, inner)

    def forward_pc(self, dtype, x, y, layout, vectors):
        ps, shape = self._channels(layout, vectors)
        with np.errstate(all="ignore"):
            y.reshape(shape)[...] = self.fn["forward", dtype](x.reshape(shape), *ps)

    def backward_pc(self, dtype, x, dy, dx, layout, vectors):
        ps, shape = self._channels(layout, vectors)
        with np.errstate(all="ignore"):
            dx.reshape(shape)[...] = self.fn["backward", dtype](x.reshape(shape), dy.reshape(shape), *ps)

    def grad_pc(self, dtype, param, x, dy, layout, vectors) -> np.ndarray:
        ps, shape = self._channels(layout, vectors)
        with np.errstate(all="ignore"):
            terms = self.fn[f"grad_{param}", dtype](x.reshape(shape), dy.reshape(shape), *ps)
            return np.sum(np.broadcast_to(terms, shape), axis=(0, 2))

    def gated_forward(self, dtype, x, y, outer, half, params):
        x3 = x.reshape(outer, 2, half)
        with np.errstate(all="ignore"):
            y.reshape(outer, half)[...] = self.fn["forward", dtype](x3[:, 0], x3[:, 1],
                                                                    *self._scalars(dtype, params))

    def gated_backward(self, dtype, x, dy, dx, outer, half, params):
        x3, d3 = x.reshape(outer, 2, half), dx.reshape(outer, 2, half)
        with np.errstate(all="ignore"):
            d3[:, 0], d3[:, 1] = self.fn["backward", dtype](x3[:, 0], x3[:, 1], dy.reshape(outer, half),
                                                            *self._scalars(dtype, params))

    def gated_grad(self, dtype, param, x, dy, outer, half, params) -> float:
        x3 = x.reshape(outer, 2, half)
        with np.errstate(all="ignore"):
            return float(np.sum(self.fn[f"grad_{param}", dtype](x3[:, 0], x3[:, 1], dy.reshape(outer, half),
                                                                *self._scalars(dtype, params))))

    def row_forward(self, dtype, x, y, rows, n, params):
        with np.errstate(all="ignore"):
            y.reshape(rows, n)[...] = self.fn["forward", dtype](x.reshape(rows, n), -1,
                                                                *self._scalars(dtype, params))

    def row_backward(self, dtype, x, dy, dx, rows, n, params):
        with np.errstate(all="ignore"):
            dx.reshape(rows, n)[...] = self.fn["backward", dtype](x.reshape(rows, n), dy.reshape(rows, n), -1,
                                                                  *self._scalars(dtype, params))

    def row_backward_y(self, dtype, y, dy, dx, rows, n, params):
        with np.errstate(all="ignore"):
            dx.reshape(rows, n)[...] = self.fn["backward_y", dtype](y.reshape(rows, n), dy.reshape(rows, n), -1,
                                                                    *self._scalars(dtype, params))

    def row_grad(self, dtype, param, x, dy, rows, n, params) -> float:
        with np.errstate(all="ignore"):
            return float(np.sum(self.fn[f"grad_{param}", dtype](x.reshape(rows, n), dy.reshape(rows, n), -1,
                                                                *self._scalars(dtype, params))))


# ---- argument handling ----------------------------------------------------------------------------

def _exact_alias(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides)


def _narrow(value, result: np.dtype):
    """A float64 sum (a gradient) as the result dtype: a value beyond its range is inf (as IEEE
    rounding gives), without NumPy's overflow warning."""
    if result == _F64:
        return result.type(value)
    with np.errstate(over="ignore"):
        return result.type(value) if np.ndim(value) == 0 else np.asarray(value).astype(result)


def _kernel_ready(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``a`` as a C-contiguous, aligned array of ``dtype`` (a copy only where needed: a C loop
    may assume its pointers aligned)."""
    return np.require(a, dtype, "CA")


def _fits(out, shape, dtype, in_place=(), apart=()) -> bool:
    """Whether a kernel can write straight into ``out``: the right array, C-contiguous,
    writable, exactly one of ``in_place`` or apart from them, apart from ``apart``."""
    return (type(out) is np.ndarray and out.dtype is dtype and out.shape == shape and out.flags.carray
            and all(out is a or _apart(out, a) for a in in_place)
            and all(out is not a and _apart(out, a) for a in apart))


def _apart(a, b) -> bool:
    """Whether two distinct arrays share no memory: certainly if each owns its own (a flag
    read, where np.may_share_memory costs ~190 ns), else as NumPy's bounds check says."""
    return (a.flags.owndata and b.flags.owndata) or not np.may_share_memory(a, b)


def _dtype_advice(dt: np.dtype) -> str:
    """The end of a message about an array of dtype ``dt`` that no kernel takes."""
    if dt.kind == "c":
        return (f"has dtype {dt}: activations are real functions, there is no complex kernel; pass a real "
                "float32 or float64 array (x.real, if the imaginary parts are 0)")
    if dt.kind == "f":
        return (f"has dtype {dt}, which has no kernel; pass float64 (x.astype(np.float64), which rounds it) "
                "or float32")
    if dt.kind == "O":
        return ("has dtype object; pass a float32 or float64 array (np.asarray(x, dtype=np.float64) if its "
                "items are numbers)")
    if dt.kind in "US":
        return f"holds strings (dtype {dt}); pass a float32 or float64 array of numbers"
    return (f"has dtype {dt}, which has no kernel; pass float32 or float64 (float16, integers and booleans "
            "are converted)")


def _normalize_axis(axis, ndim: int, name: str, what: str) -> int:
    try:
        axis = int(axis)
    except (TypeError, ValueError):
        raise KernelArgumentError(f"{name}: {what} must be an integer, got {axis!r}") from None
    if not -ndim <= axis < ndim:
        raise KernelArgumentError(f"{name}: {what}={axis} is out of range for an array of {ndim} dimension(s)")
    return axis % ndim


class Activation:
    """An elementwise activation: ``act(x, **params)``, ``act.backward(x, dy, **params)``,
    ``act.param_grads(x, dy, **params)``, and, for training loops,
    ``act.forward_with_derivative(x)`` (y and f'(x) in one pass) and, where the spec gives
    f' in terms of y, ``act.backward_from_output(y, dy)``.

    Inputs of any shape (Python scalars and lists too); float32 and float64 keep their dtype,
    float16 is computed in float32 (a result beyond float16's range is inf), integers and
    booleans are converted to float64 (as NumPy's ufuncs do); complex, object, string and
    float128 arrays are rejected with a KernelArgumentError. Non-contiguous, Fortran-ordered and
    byte-swapped inputs are copied; read-only inputs are fine. ``out=`` must have the result's
    shape and dtype and be writable; it may be the input itself (in place), and an ``out=`` that
    overlaps an input in any other way is computed through a temporary, so the result is always
    the out-of-place one. The GIL is released during the C call: Python threads run kernels in
    parallel.
    Parameters left out take their defaults. A parameter may be an array: per channel along
    ``param_axis`` (a 1-d array of x.shape[param_axis] values, as PyTorch's PReLU on axis 1), or
    without ``param_axis`` any array that broadcasts against x (as Keras' PReLU with shared
    axes); ``param_grads`` then reduces each gradient to its parameter's shape.
    """

    def __init__(self, meta: dict, module, backend: str, table: dict, spec_path: str):
        self.name: str = meta["name"]
        self.kind: str = meta.get("kind", "elementwise")
        self.params: dict[str, float] = {p: v for p, v in meta["params"]}
        self.learnable: tuple[str, ...] = tuple(meta["learnable"])
        self.description: str = meta["description"]
        self.expr_text: str = meta["expr_text"]
        self.backend = backend
        self.meta = meta
        self._table, self._spec_path = table, spec_path
        self._kernels = (_CKernels if backend == "c" else _NumPyKernels)(module, meta)
        self._defaults = tuple(self.params.values())
        self._activation = None
        # the call paths of the common case: {dtype: run(...)}. An elementwise backward_y holds
        # only where output_derivative_valid does: its short path is for the defaults, if valid.
        self._fast_forward, self._fast_backward, self._fast_backward_y = {}, {}, {}
        for dtype, tag in _FLOAT_TAGS.items():
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
        return self._kernels.valid(_FLOAT_TAGS[np.dtype(dtype)], values)

    # symbolic view (imports SymPy on first use) -------------------------------------------
    @property
    def activation(self):
        """The parsed ``actgen.activation.Activation`` (SymPy expression, parameters)."""
        if self._activation is None:
            from .spec import parse_table

            self._activation = parse_table(self.name, self._table, path=self._spec_path)
        return self._activation

    @property
    def expr(self):
        """The activation (the gate, the score) as a SymPy expression in ``x`` and the parameters."""
        return self.activation.expr

    # argument handling -------------------------------------------------------------------
    def _array(self, value, what: str):
        """(value as a C-contiguous array of a kernel dtype, the dtype of the result)."""
        if (type(value) is np.ndarray and value.dtype in _FLOAT_TAGS
                and (f := value.flags).c_contiguous and f.aligned):
            return value, value.dtype                               # nothing to convert
        a = self._asarray(value, what)
        dt = a.dtype
        if dt in _FLOAT_TAGS:
            result = dt
        elif dt.kind == "f" and dt.newbyteorder("=") in _FLOAT_TAGS:      # byte-swapped float32/64
            result = dt = dt.newbyteorder("=")
        elif dt.kind == "f" and dt.itemsize == 2:
            result, dt = np.dtype(np.float16), np.dtype(np.float32)
        elif dt.kind in "iub":
            result = dt = np.dtype(np.float64)
        else:
            raise KernelArgumentError(f"{self.name}: {what} {_dtype_advice(dt)}")
        return _kernel_ready(a, dt), result

    def _asarray(self, value, what: str) -> np.ndarray:
        try:
            return np.asarray(value)
        except (ValueError, TypeError) as exc:      # ragged nested lists, objects numpy refuses
            raise KernelArgumentError(f"{self.name}: {what} is not an array of numbers ({exc}); pass a "
                                      "float32 or float64 numpy array") from None

    def _scalar_values(self, given: dict):
        """The parameter values for the short path: the defaults, or the given ones where all
        are Python floats or ints and known; None otherwise (the general path checks and
        explains)."""
        if not given:
            return self._defaults
        values, used = [], 0
        for p, default in self.params.items():
            if p in given:
                v = given[p]
                used += 1
                if type(v) is not float and type(v) is not int:
                    return None
                values.append(v)
            else:
                values.append(default)
        return tuple(values) if used == len(given) else None

    def _params(self, given: dict):
        """(scalar values, per-channel arrays or None)."""
        if not given:
            return self._defaults, None
        unknown = [k for k in given if k not in self.params]
        if unknown:
            names = ", ".join(self.params) or "none"
            raise KernelArgumentError(f"{self.name}() got unknown parameter(s) {', '.join(unknown)}; "
                                      f"its parameters are: {names}")
        values, arrays = [], None
        for p, default in self.params.items():
            v = given.get(p, default)
            if type(v) is float or type(v) is int:
                values.append(float(v))
                continue
            try:
                a = np.asarray(v)
            except (ValueError, TypeError):
                a = np.asarray(None)
            if a.dtype.kind not in "fiu":
                raise KernelArgumentError(f"{self.name}: parameter {p} must be a real number or an array of real "
                                          f"numbers, got {v!r:.60}" + (f" (dtype {a.dtype})" if a.ndim else ""))
            if a.ndim:
                arrays = arrays or {}
                arrays[p] = a
                values.append(math.nan)
            else:
                values.append(float(a))
        return tuple(values), arrays

    def _scalar_only(self, arrays, what: str):
        if arrays:
            raise KernelArgumentError(f"{self.name}.{what} takes scalar parameters only; "
                                      f"{', '.join(arrays)} is an array (per-channel parameters work with "
                                      "the call, backward and param_grads)")

    def _target(self, out, shape, compute, result, in_place=(), apart=(), what="out"):
        """(the array the kernel writes, the array to copy it into afterwards or None).

        ``out`` may be exactly one of ``in_place`` (the kernel reads element i before it writes
        element i); any other overlap with those, or any overlap at all with ``apart`` (arrays
        the kernel reads after writing), goes through a temporary."""
        if out is None:
            return np.empty(shape, compute), None
        if not isinstance(out, np.ndarray):
            raise KernelArgumentError(f"{self.name}: {what}= must be a numpy array, got {type(out).__name__}")
        if out.shape != shape:
            raise KernelArgumentError(f"{self.name}: {what}= has shape {out.shape}, expected {shape}")
        if out.dtype != result:
            raise KernelArgumentError(f"{self.name}: {what}= has dtype {out.dtype}, expected {result} (the dtype "
                                      "of the result for this input)")
        if not out.flags.writeable:
            raise KernelArgumentError(f"{self.name}: {what}= is read-only; pass a writable array")
        direct = (out.dtype == compute and out.flags.c_contiguous and out.flags.aligned
                  and not any(np.may_share_memory(out, a) and not _exact_alias(out, a) for a in in_place)
                  and not any(np.may_share_memory(out, a) for a in apart))
        return (out, None) if direct else (np.empty(shape, compute), out)

    @staticmethod
    def _finish(y, copy_to, result, scalar):
        if y.dtype != result:               # float16 results: beyond its range is inf, as IEEE rounds
            with np.errstate(over="ignore"):
                if copy_to is not None:
                    copy_to[...] = y
                    return copy_to
                y = y.astype(result)
        elif copy_to is not None:
            copy_to[...] = y
            return copy_to
        return y[()] if scalar else y

    def _dy(self, dy, shape, dtype, what="dy"):
        if (type(dy) is np.ndarray and dy.dtype is dtype and dy.shape == shape
                and (f := dy.flags).c_contiguous and f.aligned):
            return dy
        dya = self._asarray(dy, what)
        if dya.shape != shape:
            raise KernelArgumentError(f"{self.name}: {what} has shape {dya.shape}, expected {shape}")
        if dya.dtype.kind not in "fiub":
            raise KernelArgumentError(f"{self.name}: {what} {_dtype_advice(dya.dtype)}")
        return _kernel_ready(dya, dtype)

    def _layout(self, shape, arrays: dict, param_axis, dtype):
        """Per-channel parameters: ((outer, channels, inner), [one contiguous vector per parameter],
        {param: (block shape, its shape aligned to the block, its own shape)}) for the kernel."""
        ndim = len(shape)
        aligned = {}
        if param_axis is not None:
            if ndim == 0:
                raise KernelArgumentError(f"{self.name}: param_axis needs an array with dimensions")
            ax = _normalize_axis(param_axis, ndim, self.name, "param_axis")
            lo = hi = ax
            for p, a in arrays.items():
                if a.ndim != 1 or a.size not in (1, shape[ax]):
                    raise KernelArgumentError(
                        f"{self.name}: parameter {p} has shape {a.shape}; with param_axis={param_axis} it must "
                        f"have shape ({shape[ax]},) (one value per channel) or (1,)")
                aligned[p] = (a.size,)
        else:
            for p, a in arrays.items():
                if a.ndim > ndim or any(s not in (1, t) for s, t in zip(a.shape[::-1], shape[::-1])):
                    raise KernelArgumentError(
                        f"{self.name}: parameter {p} of shape {a.shape} does not broadcast against x of shape "
                        f"{shape}; give one value per channel with param_axis (e.g. param_axis=1 for NCHW), "
                        "or an array that broadcasts (e.g. shape (C,) for channels last)")
                aligned[p] = (1,) * (ndim - a.ndim) + a.shape
            varying = [i for i in range(ndim) if any(al[i] != 1 for al in aligned.values())]
            lo, hi = (min(varying), max(varying)) if varying else (max(ndim - 1, 0), max(ndim - 1, 0))
            aligned = {p: al[lo:hi + 1] if ndim else () for p, al in aligned.items()}
        block = tuple(shape[lo:hi + 1]) if ndim else ()
        outer = math.prod(shape[:lo]) if ndim else 1
        channels = math.prod(block)
        inner = math.prod(shape[hi + 1:]) if ndim else 1
        return (outer, channels, inner), block, aligned

    def _vectors(self, values, arrays, block, aligned, dtype):
        vectors = []
        channels = math.prod(block)
        for (p, v) in zip(self.params, values):
            if p in arrays:
                a = arrays[p].reshape(aligned[p])
                vectors.append(_kernel_ready(np.broadcast_to(a, block).reshape(channels), dtype))
            else:
                vectors.append(np.full(channels, v, dtype=dtype))
        return vectors

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
        values, arrays = self._params(params)
        y, copy_to = self._target(out, xa.shape, xa.dtype, result, (xa,))
        tag = _FLOAT_TAGS[xa.dtype]
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

    def backward(self, x, dy, out=None, *, param_axis=None, **params):
        """dL/dx = dy * f'(x) elementwise, given dL/dy = dy (same shape as x)."""
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
        values, arrays = self._params(params)
        dx, copy_to = self._target(out, xa.shape, xa.dtype, result, (xa, dya))
        tag = _FLOAT_TAGS[xa.dtype]
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
        tag = _FLOAT_TAGS[ya.dtype]
        if not self._kernels.valid(tag, values):
            raise KernelArgumentError(
                f"{self.name}: backward_from_output does not hold for these parameters "
                f"({', '.join(f'{p}={v:g}' for p, v in zip(self.params, values))}): y does not determine "
                "f'(x) there; use backward(x, dy)")
        dx, copy_to = self._target(out, ya.shape, ya.dtype, result, (ya, dya))
        self._kernels.backward_y(tag, ya, dya, dx, values)
        return self._finish(dx, copy_to, result, out is None and np.ndim(y) == 0)

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
        self._kernels.forward_deriv(_FLOAT_TAGS[xa.dtype], xa, y, d, values)
        scalar = np.ndim(x) == 0
        return (self._finish(y, copy_y, result, out is None and scalar),
                self._finish(d, copy_d, result, deriv_out is None and scalar))

    def param_grads(self, x, dy, *, param_axis=None, **params) -> dict:
        """{p: dL/dp} for every learnable parameter: sum(dy * df/dp), accumulated in float64,
        reduced to the shape of p (a scalar, or the array given for p)."""
        xa, result = self._array(x, "x")
        dya = self._dy(dy, xa.shape, xa.dtype)
        values, arrays = self._params(params)
        tag = _FLOAT_TAGS[xa.dtype]
        if arrays is None:
            return {p: _narrow(self._kernels.grad(tag, p, xa, dya, values), result) for p in self.learnable}
        layout, block, aligned = self._layout(xa.shape, arrays, param_axis, xa.dtype)
        vectors = self._vectors(values, arrays, block, aligned, xa.dtype)
        grads = {}
        for p in self.learnable:
            acc = self._kernels.grad_pc(tag, p, xa, dya, layout, vectors)
            if p not in arrays:
                grads[p] = _narrow(np.sum(acc), result)
                continue
            full = acc.reshape(block)
            axes = tuple(i for i, s in enumerate(aligned[p]) if s == 1 and block[i] != 1)
            reduced = np.sum(full, axis=axes, keepdims=True) if axes else full
            grads[p] = _narrow(reduced.reshape(arrays[p].shape), result)
        return grads


class GatedActivation(Activation):
    """A gated activation (the GLU family): x splits in two halves a, b along ``axis``
    (default the last); ``act(x) = a * f(b)``, whose ``axis`` is half as long.
    ``backward(x, dy)`` returns dL/dx for both halves in one pass."""

    def _split(self, shape, axis):
        if len(shape) == 0:
            raise KernelArgumentError(f"{self.name}: a gated activation needs an array with an axis to split")
        ax = _normalize_axis(axis, len(shape), self.name, "axis")
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
                if out is None or _fits(out, yshape, x.dtype, apart=(x,)):
                    y = np.empty(yshape, x.dtype) if out is None else out
                    run(x, y, x.size // last, last // 2, values)
                    return y
        xa, result = self._array(x, "x")
        values, arrays = self._params(params)
        self._scalar_only(arrays, "__call__")
        outer, half, yshape = self._split(xa.shape, axis)
        y, copy_to = self._target(out, yshape, xa.dtype, result, apart=(xa,))
        self._kernels.gated_forward(_FLOAT_TAGS[xa.dtype], xa, y, outer, half, values)
        return self._finish(y, copy_to, result, False)

    def backward(self, x, dy, out=None, *, axis=-1, **params):
        if (axis == -1 and type(x) is np.ndarray and type(dy) is np.ndarray and x.ndim
                and (f := x.flags).c_contiguous and f.aligned and (f := dy.flags).c_contiguous and f.aligned
                and dy.dtype is x.dtype
                and (values := self._scalar_values(params) if params else self._defaults) is not None):
            run, last = self._fast_backward.get(x.dtype), x.shape[-1]
            if (run is not None and last and not last % 2 and dy.shape == x.shape[:-1] + (last // 2,)
                    and (out is None or _fits(out, x.shape, x.dtype, apart=(x, dy)))):
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
        self._kernels.gated_backward(_FLOAT_TAGS[xa.dtype], xa, dya, dx, outer, half, values)
        return self._finish(dx, copy_to, result, False)

    def param_grads(self, x, dy, *, axis=-1, **params) -> dict:
        xa, result = self._array(x, "x")
        values, arrays = self._params(params)
        self._scalar_only(arrays, "param_grads")
        outer, half, yshape = self._split(xa.shape, axis)
        dya = self._dy(dy, yshape, xa.dtype)
        tag = _FLOAT_TAGS[xa.dtype]
        return {p: _narrow(self._kernels.gated_grad(tag, p, xa, dya, outer, half, values), result)
                for p in self.learnable}

    @property
    def has_output_derivative(self) -> bool:
        return False

    def backward_from_output(self, *args, **kwargs):
        raise KernelArgumentError(f"{self.name} is gated: its backward needs x (both halves); use backward(x, dy)")

    def forward_with_derivative(self, *args, **kwargs):
        raise KernelArgumentError(f"{self.name} is gated: use {self.name}(x) and backward(x, dy)")


class RowwiseActivation(Activation):
    """A rowwise activation (softmax, log_softmax, softmin, ...): along ``axis`` (default the
    last) the scores s = f(x) are normalised. ``backward(x, dy)`` is the Jacobian-vector
    product; ``backward_from_output(y, dy)`` starts from the saved output where f' is constant."""

    def _rows(self, a, axis):
        """(a as a C-contiguous (rows, n) array, rows, n, whether the axis was moved)."""
        if a.ndim == 0:
            raise KernelArgumentError(f"{self.name}: a rowwise activation needs an array with an axis")
        ax = _normalize_axis(axis, a.ndim, self.name, "axis")
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
        elif _fits(out, x.shape, x.dtype, *((inputs, ()) if in_place else ((), inputs))):
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
        tag = _FLOAT_TAGS[xa.dtype]
        return self._run(lambda a, t, rows, n: self._kernels.row_forward(tag, a, t, rows, n, values),
                         [xa], out, result, axis, in_place=True)

    def backward(self, x, dy, out=None, *, axis=-1, **params):
        # the loop writes softmax(row) into dx first and then reads dy and x again: no aliasing
        dx = self._fast(self._fast_backward, x, (dy,), out, axis, params, False)
        if dx is not None:
            return dx
        xa, result = self._array(x, "x")
        dya = self._dy(dy, xa.shape, xa.dtype)
        values, arrays = self._params(params)
        self._scalar_only(arrays, "backward")
        tag = _FLOAT_TAGS[xa.dtype]
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
        tag = _FLOAT_TAGS[ya.dtype]
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
        tag = _FLOAT_TAGS[xa.dtype]
        a, rows, n, _, _ = self._rows(xa, axis)
        g, _, _, _, _ = self._rows(dya, axis)
        return {p: _narrow(self._kernels.row_grad(tag, p, a, g, rows, n, values) if rows and n else 0.0, result)
                for p in self.learnable}


_CLASSES = {"elementwise": Activation, "gated": GatedActivation, "rowwise": RowwiseActivation}


def _find_table(name: str, spec) -> tuple[dict, str, str]:
    """(the table, self-contained (a gate named by a gated table resolved), display path for
    generated files, path for messages)."""
    if spec is None:
        display = library.display_path(name)
        tables = read_tables(library.read(name), path=display)
        find_table(tables, name, display)
        return resolve_table(tables, name, display), display, display
    path = str(spec)
    tables = read_tables(read_spec_text(path), path=path)
    find_table(tables, name, path)
    return resolve_table(tables, name, path), Path(path).name, path


def load(name: str, spec=None, backend: str = "c") -> Activation:
    """Load an activation: a built-in (``load("swish")``) or a table of a spec file
    (``load("serf", spec="serf.toml")``), compiling it on first use.

    ``backend="c"`` (C with OpenMP through cffi) or ``"numpy"``. If no C compiler is found,
    the NumPy backend is used and a warning says so (once).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    table, display, path = _find_table(name, spec)
    key = spec_key(name, table, display, backend)
    if key in _LOADED:
        return _LOADED[key]
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        artifact_key = read_index(key)
        artifact = lookup_artifact(artifact_key) if artifact_key else None
        if artifact is None:
            from .pipeline import build
            from .spec import parse_table

            act = parse_table(name, table, path=path)     # an invalid spec fails here, before any lock
            # processes loading the same spec at once take turns: one lowers and builds it, the
            # others then find it in the index (no SymPy), instead of all lowering it in parallel
            with locked(cache_root(), key):
                artifact_key = read_index(key)
                artifact = lookup_artifact(artifact_key, warn=False) if artifact_key else None
                if artifact is None:
                    try:
                        artifact = build(act, backend, display)
                    except ToolchainError as exc:
                        if backend != "c":
                            raise
                        warn_once(f"{exc}. Using the NumPy backend instead.")
                        artifact = None
                    else:
                        write_index(key, artifact.key)
            if artifact is None:
                return load(name, spec, backend="numpy")
        module = import_module_file(artifact.meta["module"], artifact.module_file)
        loaded = _CLASSES[artifact.meta.get("kind", "elementwise")](artifact.meta, module, backend, table, path)
        _LOADED[key] = loaded
    return loaded


__all__ = ["Activation", "GatedActivation", "RowwiseActivation", "ActgenWarning", "load",
           "set_num_threads", "get_num_threads"]
