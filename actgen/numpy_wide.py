"""NumPy's double-double kernels (select's "wide"), as ``rt.mp`` and ``rt.wide`` of
actgen.numpy_runtime: the C backend computes them with actgen_dd.h; here each element is evaluated
with mpmath at 106 bits (a double-double's precision) and rounded to the kernel's dtype: correct,
and slow (tens of microseconds an element)."""

from __future__ import annotations

import math

import mpmath
import numpy


WIDE_BITS = 106


_MP_HUGE = 4096.0      # |argument| beyond which exp and its kin have over/underflowed any double


class _MpHelpers:
    """mpmath versions of actgen's functions and of the NaN-propagating selects (as ``rt.mp``),
    and of the exponential functions with their overflow decided before mpmath computes it
    (mpmath's exp(1e300) runs out of memory; a double-double kernel's overflows)."""

    @staticmethod
    def exp(z):

        if mpmath.isfinite(z) and abs(z) > _MP_HUGE:
            return mpmath.inf if z > 0 else mpmath.mpf(0)
        return mpmath.exp(z)

    @staticmethod
    def expm1(z):

        if mpmath.isfinite(z) and abs(z) > _MP_HUGE:
            return mpmath.inf if z > 0 else mpmath.mpf(-1)
        return mpmath.expm1(z)

    @staticmethod
    def sinh(z):

        if mpmath.isfinite(z) and abs(z) > _MP_HUGE:
            return mpmath.inf if z > 0 else -mpmath.inf
        return mpmath.sinh(z)

    @staticmethod
    def cosh(z):

        if mpmath.isfinite(z) and abs(z) > _MP_HUGE:
            return mpmath.inf
        return mpmath.cosh(z)

    @staticmethod
    def tanh(z):

        if mpmath.isfinite(z) and abs(z) > _MP_HUGE:
            return mpmath.mpf(1 if z > 0 else -1)
        return mpmath.tanh(z)

    @staticmethod
    def erf(z):

        if mpmath.isfinite(z) and abs(z) > 64:
            return mpmath.mpf(1 if z > 0 else -1)
        return mpmath.erf(z)

    @staticmethod
    def erfc(z):

        if mpmath.isfinite(z) and abs(z) > 64:
            return mpmath.mpf(0) if z > 0 else mpmath.mpf(2)
        return mpmath.erfc(z)

    @staticmethod
    def sigmoid(z):
        e = _MpHelpers.exp(-abs(z))
        return 1 / (1 + e) if z >= 0 else e / (1 + e)

    @staticmethod
    def softplus(z):

        return max(z, 0) + mpmath.log1p(_MpHelpers.exp(-abs(z)))

    @staticmethod
    def cbrt(z):

        return mpmath.sign(z) * mpmath.cbrt(abs(z))

    @staticmethod
    def exp2(z):

        return _MpHelpers.exp(z * mpmath.ln2)

    @staticmethod
    def confine(x, lo, hi, inside):
        return x if lo <= x <= hi else inside

    @staticmethod
    def max(*args):

        return mpmath.nan if any(mpmath.isnan(a) for a in args) else max(args)

    @staticmethod
    def min(*args):

        return mpmath.nan if any(mpmath.isnan(a) for a in args) else min(args)

    @staticmethod
    def sign(z):

        return z if mpmath.isnan(z) else mpmath.mpf((z > 0) - (z < 0))

    @staticmethod
    def heaviside(z, h0):

        return z if mpmath.isnan(z) else (mpmath.mpf(1) if z > 0 else mpmath.mpf(0) if z < 0 else h0)


mp = _MpHelpers()


def wide(element, dtype, *args):
    """``element`` (a function of mpmath numbers: x and the parameters) at every element of the
    broadcast ``args``, with WIDE_BITS bits, rounded to ``dtype``; NaN where it raises (a domain
    error) or is complex."""
    arrays = numpy.broadcast_arrays(*[numpy.asarray(a, numpy.float64) for a in args])
    out = numpy.empty(arrays[0].shape, numpy.float64)
    flat = [a.ravel() for a in arrays]
    result = out.ravel()
    with mpmath.workprec(WIDE_BITS):
        for i in range(result.size):
            values = [mpmath.mpf(float(a[i])) for a in flat]
            if any(mpmath.isnan(v) for v in values):
                result[i] = math.nan
                continue
            try:
                v = element(*values)
            except (ValueError, ZeroDivisionError):
                v = mpmath.nan
            if isinstance(v, mpmath.mpc):
                v = v.real if v.imag == 0 else mpmath.nan
            result[i] = mpmath.libmp.to_float(mpmath.mpf(v)._mpf_, rnd=mpmath.libmp.round_nearest)
    out = result.reshape(arrays[0].shape)
    return out.astype(dtype) if out.ndim else dtype(out[()])
