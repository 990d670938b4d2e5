"""Helpers called by generated NumPy kernels (imported as ``rt``). Dtype-preserving."""

from __future__ import annotations

import numpy

try:  # vectorised erf/erfc with float32 and float64 loops
    from scipy.special import erf, erfc
except ImportError:  # pragma: no cover - scipy is a dependency; this keeps import errors clear
    erf = erfc = None


def piecewise(args, *pieces):
    """Evaluate a Piecewise branch by branch, each branch only where it is taken.

    ``args`` are the arrays and scalars the branches use; each piece is (condition, value),
    both functions of ``*args`` (condition None means "otherwise"). Elements where no
    condition holds (NaN inputs make every comparison false) take the last branch.
    """
    arrays = numpy.broadcast_arrays(*[numpy.asarray(a) for a in args])
    dtype = numpy.result_type(*args)
    if not numpy.issubdtype(dtype, numpy.floating):
        dtype = numpy.float64
    out = numpy.empty(arrays[0].shape, dtype)
    remaining = numpy.ones(arrays[0].shape, bool)
    for cond, value in pieces:
        if cond is None:
            mask = remaining
        else:
            mask = remaining & numpy.asarray(cond(*arrays), bool)
        if mask.any():
            out[mask] = value(*[a[mask] for a in arrays])
        remaining &= ~mask
        if not remaining.any():
            break
    return out if out.ndim else out[()]


def sigmoid(z):
    """1 / (1 + exp(-z)) without overflow warnings: exp(-z) for z >= 0, exp(z)/(1+exp(z)) below."""
    z = numpy.asarray(z)
    e = numpy.exp(-numpy.abs(z))
    return numpy.where(z >= 0, 1 / (1 + e), e / (1 + e))


def softplus(z):
    """log(1 + exp(z)) as max(z, 0) + log1p(exp(-|z|))."""
    z = numpy.asarray(z)
    return numpy.maximum(z, 0) + numpy.log1p(numpy.exp(-numpy.abs(z)))


def nan_guard(x, value):
    """NaN where x is NaN (a select would otherwise turn NaN into a number)."""
    return numpy.where(numpy.isnan(x), x, value)
