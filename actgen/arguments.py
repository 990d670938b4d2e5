"""Arguments of a loaded activation's calls: arrays brought to a kernel dtype and layout,
parameters as numbers or per-channel vectors, ``out=`` checked against what the kernel may
write. ``ArgumentChecks`` is the base of every loaded activation (actgen/runtime.py)."""

from __future__ import annotations

import math
import operator
import sys

import numpy as np

from .errors import KernelArgumentError

FLOAT_TAGS = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}
#: the largest integer that converts to a finite float64 (a larger one raises OverflowError)
_INT_LIMIT = int(sys.float_info.max)
_F64 = np.dtype(np.float64)


def exact_alias(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides)


def narrow(value, result: np.dtype):
    """A float64 sum (a gradient) as the result dtype: a value beyond its range is inf (as IEEE
    rounding gives), without NumPy's overflow warning."""
    if result == _F64:
        return result.type(value)
    with np.errstate(over="ignore"):
        return result.type(value) if np.ndim(value) == 0 else np.asarray(value).astype(result)


def kernel_ready(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``a`` as a C-contiguous, aligned array of ``dtype`` (a copy only where needed: a C loop
    may assume its pointers aligned)."""
    return np.require(a, dtype, "CA")


def fits(out, shape, dtype, in_place=(), apart=()) -> bool:
    """Whether a kernel can write straight into ``out``: the right array, C-contiguous,
    writable, exactly one of ``in_place`` or apart from them, apart from ``apart``."""
    return (type(out) is np.ndarray and out.dtype is dtype and out.shape == shape and out.flags.carray
            and all(out is a or disjoint(out, a) for a in in_place)
            and all(out is not a and disjoint(out, a) for a in apart))


def disjoint(a, b) -> bool:
    """Whether two distinct arrays share no memory: certainly if each owns its own (a flag
    read, where np.may_share_memory costs ~190 ns), else as NumPy's bounds check says."""
    return (a.flags.owndata and b.flags.owndata) or not np.may_share_memory(a, b)


def dtype_advice(dt: np.dtype) -> str:
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


def normalize_axis(axis, ndim: int, name: str, what: str) -> int:
    """``axis`` (an integer: Python's or NumPy's, not a bool, a float or a string) as an index
    into ``ndim`` dimensions."""
    try:
        if isinstance(axis, (bool, np.bool_)):
            raise TypeError
        axis = operator.index(axis)
    except TypeError:
        raise KernelArgumentError(f"{name}: {what} must be an integer, got {axis!r:.40}") from None
    if not -ndim <= axis < ndim:
        raise KernelArgumentError(f"{name}: {what}={axis} is out of range for an array of {ndim} dimension(s)")
    return axis % ndim



class ArgumentChecks:
    """Conversion and checking of a call's arrays and parameters; needs ``name``, ``params``
    (name -> default) and ``_defaults`` (the defaults as a tuple)."""

    name: str
    params: dict
    _defaults: tuple

    def _array(self, value, what: str):
        """(value as a C-contiguous array of a kernel dtype, the dtype of the result)."""
        if (type(value) is np.ndarray and value.dtype in FLOAT_TAGS
                and (f := value.flags).c_contiguous and f.aligned):
            return value, value.dtype                               # nothing to convert
        a = self._asarray(value, what)
        dt = a.dtype
        if dt in FLOAT_TAGS:
            result = dt
        elif dt.kind == "f" and dt.newbyteorder("=") in FLOAT_TAGS:      # byte-swapped float32/64
            result = dt = dt.newbyteorder("=")
        elif dt.kind == "f" and dt.itemsize == 2:
            result, dt = np.dtype(np.float16), np.dtype(np.float32)
        elif dt.kind in "iub":
            result = dt = np.dtype(np.float64)
        else:
            raise KernelArgumentError(f"{self.name}: {what} {dtype_advice(dt)}")
        return kernel_ready(a, dt), result

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
                if type(v) is not float and (type(v) is not int or not -_INT_LIMIT <= v <= _INT_LIMIT):
                    return None
                values.append(v)
            else:
                values.append(default)
        return tuple(values) if used == len(given) else None

    def _params(self, given: dict, dtype: np.dtype | None = None):
        """(scalar values, per-channel arrays or None). With ``dtype`` (the kernel dtype), an
        array parameter that carries a dtype must convert to it without rounding (see ``_dy``)."""
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
            if type(v) is float:
                values.append(v)
                continue
            if type(v) is int:
                if not -_INT_LIMIT <= v <= _INT_LIMIT:
                    raise KernelArgumentError(f"{self.name}: parameter {p} is an integer of {v.bit_length()} bits, "
                                              "beyond the range of float64 (about 1.8e308), in which it is computed")
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
                if dtype is not None and hasattr(v, "dtype"):
                    self._convertible(a.dtype, dtype, f"parameter {p}")
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
                                      f"of the result for this input: {what}= is never converted; pass an array "
                                      f"of {result})")
        if not out.flags.writeable:
            raise KernelArgumentError(f"{self.name}: {what}= is read-only; pass a writable array")
        direct = (out.dtype == compute and out.flags.c_contiguous and out.flags.aligned
                  and not any(np.may_share_memory(out, a) and not exact_alias(out, a) for a in in_place)
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
        """``dy`` in the kernel dtype ``dtype`` (x's, or float32 for float16 x): converted where
        no value changes (NumPy's "safe" casting: float16 or float32 dy for float64 x), refused
        where it could round (float64 dy for float32 x); Python numbers and lists are taken in
        that dtype, as NumPy takes a Python number next to an array."""
        if (type(dy) is np.ndarray and dy.dtype is dtype and dy.shape == shape
                and (f := dy.flags).c_contiguous and f.aligned):
            return dy
        dya = self._asarray(dy, what)
        if dya.shape != shape:
            raise KernelArgumentError(f"{self.name}: {what} has shape {dya.shape}, expected {shape}")
        if dya.dtype.kind not in "fiub":
            raise KernelArgumentError(f"{self.name}: {what} {dtype_advice(dya.dtype)}")
        if hasattr(dy, "dtype"):
            self._convertible(dya.dtype, dtype, what)
        return kernel_ready(dya, dtype)

    def _convertible(self, given: np.dtype, dtype: np.dtype, what: str) -> None:
        """Refuse an array of dtype ``given`` that the kernel dtype ``dtype`` cannot hold exactly."""
        if not np.can_cast(given, dtype, "safe"):
            raise KernelArgumentError(
                f"{self.name}: {what} has dtype {given}, and the kernel for this x computes in {dtype}: converting "
                f"it could round, so it is not done silently; pass {what.split()[-1]}.astype(np.{dtype}) to round it"
                + (f", or x as {given} to compute in {given}" if given in FLOAT_TAGS else ""))

    def _layout(self, shape, arrays: dict, param_axis, dtype):
        """Per-channel parameters: ((outer, channels, inner), [one contiguous vector per parameter],
        {param: (block shape, its shape aligned to the block, its own shape)}) for the kernel."""
        ndim = len(shape)
        aligned = {}
        if param_axis is not None:
            if ndim == 0:
                raise KernelArgumentError(f"{self.name}: param_axis needs an array with dimensions")
            ax = normalize_axis(param_axis, ndim, self.name, "param_axis")
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
                vectors.append(kernel_ready(np.broadcast_to(a, block).reshape(channels), dtype))
            else:
                vectors.append(np.full(channels, v, dtype=dtype))
        return vectors
