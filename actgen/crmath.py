"""Correctly rounded elementary functions on NumPy arrays: the libm of selection's kernel model.

Selection measures candidate forms by evaluating them in NumPy. If it called NumPy's own
``numpy.tanh`` or ``numpy.exp``, the measurement would depend on the host: NumPy dispatches
its float32 and float64 loops on the CPU (SVML on AVX-512, its own SIMD code or the C
library's scalar functions elsewhere), and those differ in the last bit. The generated
sources would then differ between an AVX2 and an AVX-512 machine.

Here each function returns the correctly rounded value (round to nearest, ties to even) of
its float32 or float64 argument: one answer, whatever computes it. It is computed in a wider
format (float32 from float64, float64 from NumPy's long double), and the points where that
wider value lies so close to a rounding boundary of the target format that the wider
function's own error could decide the rounding are recomputed with mpmath. A C library whose
functions are within ``_WIDE_ULPS`` units of the wider format gives the same result.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import functools
import hashlib

import mpmath
import numpy as np

from .reference import FORMATS, round_to_format

#: The largest error, in ULPs of the wider format, trusted from the wider evaluation (glibc's
#: float64 functions are within 1-2 ULP, NumPy's SIMD float64 loops within 4; glibc's long
#: double functions within 1-5, libm-test-ulps): a value nearer than that to a rounding boundary
#: of the target format goes to mpmath. About 2^-18 of float32 results and 1% of float64 ones.
_WIDE_ULPS = {np.dtype(np.float64): 64, np.dtype(np.longdouble): 8}

#: NumPy's long double, if it is wider than double (x86's 80-bit format, or binary128).
_LONG = np.longdouble if np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant else None

_MPMATH = {
    "exp": mpmath.exp, "expm1": mpmath.expm1, "exp2": lambda v: mpmath.power(2, v),
    "log": mpmath.log, "log1p": mpmath.log1p, "log2": lambda v: mpmath.log(v, 2),
    "log10": mpmath.log10,
    "sin": mpmath.sin, "cos": mpmath.cos, "tan": mpmath.tan,
    "arcsin": mpmath.asin, "arccos": mpmath.acos, "arctan": mpmath.atan,
    "sinh": mpmath.sinh, "cosh": mpmath.cosh, "tanh": mpmath.tanh,
    "arcsinh": mpmath.asinh, "arccosh": mpmath.acosh, "arctanh": mpmath.atanh,
    "cbrt": lambda v: mpmath.sign(v) * mpmath.cbrt(abs(v)), "erf": mpmath.erf, "erfc": mpmath.erfc,
    "power": mpmath.power, "hypot": mpmath.hypot, "arctan2": mpmath.atan2,
}

#: Functions NumPy has no long double loop for: the C library's long double ones, through ctypes.
_LIBM_LONG = ("erf", "erfc")


class _RawLong(ctypes.c_longdouble):
    """A c_longdouble result that ctypes hands back as is (it converts a plain c_longdouble to a
    Python float, losing the extra bits)."""


@functools.cache
def _libm_long(name: str):
    path = ctypes.util.find_library("m")
    if _LONG is None or np.finfo(np.longdouble).nmant != 63 or path is None:
        return None                      # ctypes' c_longdouble is x86's 80-bit format only
    try:
        function = getattr(ctypes.CDLL(path), name + "l")
    except (OSError, AttributeError):
        return None
    function.restype = _RawLong
    function.argtypes = [ctypes.c_longdouble]
    size = ctypes.sizeof(ctypes.c_longdouble)

    def call(values: np.ndarray) -> np.ndarray:
        raw = b"".join(ctypes.string_at(ctypes.addressof(function(v)), size) for v in values.ravel())
        return np.frombuffer(raw, np.longdouble).reshape(values.shape)

    return call


def _wide_values(name: str, args: list[np.ndarray], wide) -> np.ndarray:
    """The function in the wider format (a domain error gives NaN, as in C), or None if this
    platform has no such function in that format."""
    wide_args = [a.astype(wide) for a in args]
    with np.errstate(all="ignore"):
        if name in _LIBM_LONG:
            if wide is np.float64:
                from scipy import special        # float64: SciPy's erf/erfc (cephes, no CPU dispatch)

                return getattr(special, name)(wide_args[0])
            function = _libm_long(name)
            if function is None:
                return None
            return function(wide_args[0])
        return getattr(np, name)(*wide_args)


def _boundary_distance(wide_value: np.ndarray, dtype, wide) -> np.ndarray:
    """|v - b| / ulp_wide(v) for the rounding boundary b of ``dtype`` nearest v (the midpoint
    between the two neighbours of ``dtype`` around v, or the overflow threshold)."""
    info = np.finfo(dtype)
    v = wide_value
    with np.errstate(all="ignore"):
        r = v.astype(dtype)
        r = np.where(np.isinf(r) & np.isfinite(v), np.copysign(info.max, v).astype(dtype), r)
        toward = np.where(v > r.astype(wide), np.array(np.inf, dtype), np.array(-np.inf, dtype))
        neighbour = np.nextafter(r, toward).astype(wide)
        # beyond the largest finite the next "neighbour" is 2^(max_exp + 1)
        top = wide(2.0) ** (int(info.maxexp))
        neighbour = np.where(np.isinf(neighbour), np.copysign(top, v), neighbour)
        middle = (r.astype(wide) + neighbour) / wide(2)
        unit = np.spacing(np.abs(v).astype(wide))
        return np.abs(v - middle) / unit


def _mp_round(name: str, values: tuple, dtype: str) -> float:
    with mpmath.workprec(256):
        try:
            result = _MPMATH[name](*[mpmath.mpf(float(v)) for v in values])
        except (ValueError, ZeroDivisionError):
            return float("nan")
        if isinstance(result, mpmath.mpc):
            return float("nan")          # outside the real domain: NaN, as in C
        return round_to_format(result, *FORMATS[dtype])


#: Recent results by (function, arguments): selection evaluates the same calls on the same
#: points many times (each candidate, each perturbation of libm_bound)
_MEMO: collections.OrderedDict = collections.OrderedDict()
_MEMO_SIZE = 1024


def correctly_rounded(name: str, *args) -> np.ndarray:
    """``name`` (a NumPy ufunc name: exp, log1p, arctan, power...) of float32 or float64 arrays,
    correctly rounded to their dtype. Special values follow C99 Annex F (as NumPy does). The
    result is read-only (it may be shared with the next caller of the same values)."""
    arrays = np.broadcast_arrays(*[np.asarray(a) for a in args])
    dtype = np.result_type(*arrays)
    if dtype not in (np.float32, np.float64):
        dtype = np.dtype(np.float64)
    arrays = [np.ascontiguousarray(a, dtype) for a in arrays]
    digest = hashlib.blake2b(name.encode() + dtype.str.encode() + repr(arrays[0].shape).encode())
    for a in arrays:
        digest.update(a.tobytes())
    key = digest.digest()
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key]
    value = _compute(name, arrays, dtype)
    if isinstance(value, np.ndarray):
        value.setflags(write=False)
    _MEMO[key] = value
    if len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)
    return value


def _compute(name: str, arrays: list[np.ndarray], dtype: np.dtype):
    wide = np.float64 if dtype == np.float32 else _LONG
    shape = arrays[0].shape
    wide_value = None if wide is None else _wide_values(name, arrays, wide)
    if wide_value is None:                # no wider format or function here: mpmath everywhere
        value = np.full(shape, np.nan, dtype)
        doubtful = np.ones(shape, bool)
    else:
        with np.errstate(all="ignore"):
            value = wide_value.astype(dtype)
            distance = _boundary_distance(wide_value, dtype.type, wide)
            doubtful = np.isfinite(wide_value) & (distance <= _WIDE_ULPS[np.dtype(wide)])
    if doubtful.any():
        value = np.array(value, copy=True)
        for index in zip(*np.nonzero(doubtful)):
            value[index] = _mp_round(name, tuple(a[index] for a in arrays), dtype.name)
    return value if value.ndim else value[()]


def _unary(name):
    def function(x):
        return correctly_rounded(name, x)
    function.__name__ = name
    function.__doc__ = f"{name}, correctly rounded to the argument's dtype (float32 or float64)."
    return function


exp, expm1, exp2 = _unary("exp"), _unary("expm1"), _unary("exp2")
log, log1p, log2, log10 = _unary("log"), _unary("log1p"), _unary("log2"), _unary("log10")
sin, cos, tan = _unary("sin"), _unary("cos"), _unary("tan")
arcsin, arccos, arctan = _unary("arcsin"), _unary("arccos"), _unary("arctan")
sinh, cosh, tanh = _unary("sinh"), _unary("cosh"), _unary("tanh")
arcsinh, arccosh, arctanh = _unary("arcsinh"), _unary("arccosh"), _unary("arctanh")
cbrt, erf, erfc = _unary("cbrt"), _unary("erf"), _unary("erfc")


def power(x, y):
    return correctly_rounded("power", x, y)


def hypot(x, y):
    return correctly_rounded("hypot", x, y)


def arctan2(y, x):
    return correctly_rounded("arctan2", y, x)
