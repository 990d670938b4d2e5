"""One interface over a built module: the C one (through cffi) and the NumPy one.

Both take the same layouts (actgen/roles.py): contiguous arrays of a kernel dtype seen as (n,),
(outer, channels, inner), (outer, 2, half) or (rows, n), and parameters as a tuple of numbers
(or one vector per parameter, per channel). The callers (actgen/runtime.py, actgen/kinds.py)
check and convert the arrays first.
"""

from __future__ import annotations

import numpy as np

from . import fastcall
from .threads import THREADS, resolve

# channels per call of a C per-channel gradient (its per-thread accumulator copy: 32 KB of stack)
PC_GRAD_CHANNELS = 4096


class CKernels:
    """Calls into a cffi module: arrays become pointers, parameters C scalars or arrays.

    cffi's API mode releases the GIL around every call, so Python threads run kernels in
    parallel. Every array handed over is C-contiguous, of the kernel's dtype, and an output is
    writable (the callers check it), so ``from_buffer`` needs no further checks."""

    def __init__(self, module, meta):
        resolve()                   # the thread count every call reads is decided before the first
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
        fc.set_threads(THREADS[0])
        return fc.call, found

    def fast(self, role, dtype, kind="elementwise"):
        """The call path of the common case, everything that does not depend on the arrays
        looked up once: for an elementwise activation ``run(x, y, params)`` (forward) or
        ``run(x, dy, dx, params)`` (backward, backward_y), params a tuple of floats; for gated
        and rowwise ones the same with the two layout sizes ((outer, half) or (rows, n)) before
        params."""
        fn, ct, buf, threads = self.fn[role, dtype], self.ctype[dtype], self.buf, THREADS
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
        self.fn["forward", dtype](self._in(dtype, x), self._out(dtype, y), x.size, *params, THREADS[0])

    def backward(self, dtype, x, dy, dx, params):
        self.fn["backward", dtype](self._in(dtype, x), self._in(dtype, dy), self._out(dtype, dx), x.size,
                                   *params, THREADS[0])

    def backward_y(self, dtype, y, dy, dx, params):
        self.fn["backward_y", dtype](self._in(dtype, y), self._in(dtype, dy), self._out(dtype, dx), y.size,
                                     *params, THREADS[0])

    def valid(self, dtype, params) -> bool:
        return bool(self.fn["backward_y_valid", dtype](*params))

    def forward_deriv(self, dtype, x, y, d, params):
        self.fn["forward_deriv", dtype](self._in(dtype, x), self._out(dtype, y), self._out(dtype, d), x.size,
                                        *params, THREADS[0])

    def grad(self, dtype, param, x, dy, params) -> float:
        return self.fn[f"grad_{param}", dtype](self._in(dtype, x), self._in(dtype, dy), x.size, *params,
                                                THREADS[0])

    # elementwise, per-channel parameters (arrays of `channels` values)
    def forward_pc(self, dtype, x, y, layout, vectors):
        self.fn["forward_pc", dtype](self._in(dtype, x), self._out(dtype, y), *layout,
                                     *[self._in(dtype, v) for v in vectors], THREADS[0])

    def backward_pc(self, dtype, x, dy, dx, layout, vectors):
        self.fn["backward_pc", dtype](self._in(dtype, x), self._in(dtype, dy), self._out(dtype, dx), *layout,
                                      *[self._in(dtype, v) for v in vectors], THREADS[0])

    def grad_pc(self, dtype, param, x, dy, layout, vectors) -> np.ndarray:
        fn, ct, buf = self.fn[f"grad_{param}_pc", dtype], self.ctype[dtype], self.buf
        outer, channels, inner = layout
        if channels <= PC_GRAD_CHANNELS:
            acc = np.empty(channels, np.float64)
            fn(buf(ct, x), buf(ct, dy), *layout, *[buf(ct, v) for v in vectors], buf("double[]", acc), THREADS[0])
            return acc
        # The loop's OpenMP array reduction keeps a private copy of the channels' accumulators
        # on each thread's stack: 2^21 channels (16 MB) overflowed the 8 MB main stack, even on
        # one thread. Slabs of channels keep that copy small; a slab of one outer index is
        # contiguous.
        acc, part = np.zeros(channels, np.float64), np.empty(PC_GRAD_CHANNELS, np.float64)
        xf, dyf = x.reshape(-1), dy.reshape(-1)
        for o in range(outer):
            for c0 in range(0, channels, PC_GRAD_CHANNELS):
                c1 = min(c0 + PC_GRAD_CHANNELS, channels)
                lo, hi = (o * channels + c0) * inner, (o * channels + c1) * inner
                fn(buf(ct, xf[lo:hi]), buf(ct, dyf[lo:hi]), 1, c1 - c0, inner,
                   *[buf(ct, v[c0:c1]) for v in vectors], buf("double[]", part), THREADS[0])
                acc[c0:c1] += part[:c1 - c0]
        return acc

    # gated: x is (outer, 2, half)
    def gated_forward(self, dtype, x, y, outer, half, params):
        self.fn["forward", dtype](self._in(dtype, x), self._out(dtype, y), outer, half, *params, THREADS[0])

    def gated_backward(self, dtype, x, dy, dx, outer, half, params):
        self.fn["backward", dtype](self._in(dtype, x), self._in(dtype, dy), self._out(dtype, dx), outer, half,
                                   *params, THREADS[0])

    def gated_grad(self, dtype, param, x, dy, outer, half, params) -> float:
        return self.fn[f"grad_{param}", dtype](self._in(dtype, x), self._in(dtype, dy), outer, half, *params,
                                                THREADS[0])

    # rowwise: x is (rows, n)
    def row_forward(self, dtype, x, y, rows, n, params):
        self.fn["forward", dtype](self._in(dtype, x), self._out(dtype, y), rows, n, *params, THREADS[0])

    def row_backward(self, dtype, x, dy, dx, rows, n, params):
        self.fn["backward", dtype](self._in(dtype, x), self._in(dtype, dy), self._out(dtype, dx), rows, n,
                                   *params, THREADS[0])

    def row_backward_y(self, dtype, y, dy, dx, rows, n, params):
        self.fn["backward_y", dtype](self._in(dtype, y), self._in(dtype, dy), self._out(dtype, dx), rows, n,
                                     *params, THREADS[0])

    def row_grad(self, dtype, param, x, dy, rows, n, params) -> float:
        return self.fn[f"grad_{param}", dtype](self._in(dtype, x), self._in(dtype, dy), rows, n, *params,
                                                THREADS[0])


class NumPyKernels:
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
        """As CKernels.fast."""
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



#: backend name -> the class that calls its modules
KERNELS = {"c": CKernels, "numpy": NumPyKernels}
