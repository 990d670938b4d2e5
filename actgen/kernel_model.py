"""The model of a compiled kernel that selection measures: what the C computes, host-independent.

Candidate forms are printed by the NumPy printer in model mode (``KernelNumPyPrinter(model=True)``)
and evaluated with this module as ``m``:

* arithmetic is NumPy's, which rounds each operation as C does (no contraction);
* actgen's own float helpers (``exp_f32``, ``sigmoid_f32``, ``softplus_f32``, ``erfc_ff`` and the
  float-float arithmetic) are ``numpy_runtime``'s operation-by-operation models of the C;
* every C library function is correctly rounded (``crmath``): its value does not depend on which
  CPU or which libm ran the measurement. A C library function is not correctly rounded: its
  documented maximum error (LIBM_ULPS) enters as a bound. ``perturbed(k)`` moves the result of
  the k-th call by that many ULPs; selection (select.libm_bound) evaluates a form once per call
  that way and adds up what each call's error can do to the result (first order), and
  ``actgen verify`` measures the compiled kernels on the host.

With this, the forms chosen and the errors written into the generated sources are a function of
the spec and actgen's code alone (issue 23: generated/ was different on AVX2 and AVX-512 hosts,
whose NumPy computes float32 tanh, cosh or expm1 with different code).
"""

from __future__ import annotations

import contextlib

import numpy as np

from . import crmath
from .numpy_runtime import (dd, dd_add, dd_mul, dd_neg, erfc_ff, exp_f32, exp_ff, ff, ff_add, ff_mul,
                            ff_neg, ff_prod, nan_guard, piecewise, sigmoid_f32, sigmoid_ff, softplus_f32)

TWO_OVER_SQRT_PI = 1.1283791670955126

#: The largest error, in ULPs of the result, that glibc documents for each function: the maximum
#: over the scalar function and its libmvec variants (all vector lengths, AVX2 and AVX-512), in
#: round-to-nearest, from glibc's sysdeps/x86_64/fpu/libm-test-ulps (2.41). exp in double is
#: actgen's own (actgen_exp_f64: within 1 ULP, tests/test_double_helpers.py); exp in float,
#: sigmoid and softplus in float are modelled exactly (numpy_runtime) and get no bound.
LIBM_ULPS = {
    "float32": {"arccos": 2, "arccosh": 2, "arcsin": 1, "arcsinh": 2, "arctan": 1, "arctan2": 2,
                "arctanh": 2, "cbrt": 2, "cos": 1, "cosh": 2, "erf": 2, "erfc": 3, "exp": 1, "exp2": 1,
                "expm1": 1, "hypot": 1, "log": 3, "log10": 2, "log1p": 2, "log2": 1, "power": 3,
                "sin": 1, "sinh": 2, "tan": 2, "tanh": 2},
    "float64": {"arccos": 1, "arccosh": 2, "arcsin": 1, "arcsinh": 2, "arctan": 1, "arctan2": 3,
                "arctanh": 2, "cbrt": 4, "cos": 2, "cosh": 2, "erf": 1, "erfc": 5, "exp": 1, "exp2": 1,
                "expm1": 1, "hypot": 1, "log": 1, "log10": 2, "log1p": 1, "log2": 2, "power": 1,
                "sin": 2, "sinh": 2, "tan": 2, "tanh": 2},
}


class Plan:
    """Which call (by its order of execution) to perturb, in which direction, and how many calls
    were made."""

    def __init__(self, target: int | None = None, direction: float = np.inf):
        self.target, self.direction, self.count = target, direction, 0


_active = [Plan()]


@contextlib.contextmanager
def perturbed(target: int | None = None, direction: float = np.inf):
    """Within: the ``target``-th C library call (0, 1, ... in the order the kernel executes
    them) returns its value moved by its documented error (LIBM_ULPS) toward ``direction``
    (+-inf); None moves none. Zero, subnormal and infinite results are not moved: an error
    bound in ULPs is a relative one there (exp(-1000) is 0 in every libm, not the smallest
    subnormal). Yields the Plan, whose ``count`` is the number of calls made."""
    plan = Plan(target, direction)
    _active.append(plan)
    try:
        yield plan
    finally:
        _active.pop()


def _call(name: str, *args):
    value = crmath.correctly_rounded(name, *args)
    plan = _active[-1]
    index = plan.count
    plan.count += 1
    if index == plan.target:
        value = np.asarray(value)
        t = value.dtype.type
        ulps = LIBM_ULPS.get(value.dtype.name, {}).get(name, 0)
        with np.errstate(all="ignore"):
            normal = np.isfinite(value) & (np.abs(value) >= np.finfo(value.dtype).tiny)
            moved = value
            for _ in range(ulps):
                moved = np.nextafter(moved, t(plan.direction))
            value = np.where(normal, moved, value)
        value = value if value.ndim else value[()]
    return value


def _function(name):
    def function(*args):
        return _call(name, *args)
    function.__name__ = name
    function.__doc__ = f"{name}, correctly rounded (crmath), counted and perturbed by the plan."
    return function


arccos, arccosh, arcsin, arcsinh = (_function(n) for n in ("arccos", "arccosh", "arcsin", "arcsinh"))
arctan, arctan2, arctanh, cbrt = (_function(n) for n in ("arctan", "arctan2", "arctanh", "cbrt"))
cos, cosh, erf, erfc, exp = (_function(n) for n in ("cos", "cosh", "erf", "erfc", "exp"))
exp2, expm1, hypot, log, log1p = (_function(n) for n in ("exp2", "expm1", "hypot", "log", "log1p"))
log2, log10, power, sin, sinh = (_function(n) for n in ("log2", "log10", "power", "sin", "sinh"))
tan, tanh = _function("tan"), _function("tanh")


def sigmoid(z):
    """actgen_sigmoid_f64: exp(-|z|) = e, then 1/(1 + e) or e/(1 + e) by the sign of z."""
    z = np.asarray(z)
    with np.errstate(all="ignore"):
        e = exp(-np.abs(z))
        return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def softplus(z):
    """actgen_softplus_f64: max(z, 0) + log1p(exp(-|z|))."""
    z = np.asarray(z)
    with np.errstate(all="ignore"):
        return np.maximum(z, 0) + log1p(exp(-np.abs(z)))


# double-double arguments (rewrite.compensate): the C prelude's actgen_*_dd, with libm correctly rounded

def exp_dd(u):
    with np.errstate(all="ignore"):
        return exp(u[0]) * (1.0 + u[1])


def erfc_dd(u):
    with np.errstate(all="ignore"):
        return erfc(u[0]) - TWO_OVER_SQRT_PI * exp(-u[0] * u[0]) * u[1]


def sigmoid_dd(u):
    s = sigmoid(u[0])
    with np.errstate(all="ignore"):
        return s + s * sigmoid(-u[0]) * u[1]


def softplus_dd(u):
    with np.errstate(all="ignore"):
        return softplus(u[0]) + sigmoid(u[0]) * u[1]


def cosh_dd(u):
    with np.errstate(all="ignore"):
        return cosh(u[0]) + sinh(u[0]) * u[1]


def sinh_dd(u):
    with np.errstate(all="ignore"):
        return sinh(u[0]) + cosh(u[0]) * u[1]


__all__ = ["arccos", "arccosh", "arcsin", "arcsinh", "arctan", "arctan2", "arctanh", "cbrt", "cos",
           "cosh", "cosh_dd", "dd", "dd_add", "dd_mul", "dd_neg", "erf", "erfc", "erfc_dd", "erfc_ff",
           "exp", "exp2", "exp_dd", "exp_f32", "exp_ff", "expm1", "ff", "ff_add", "ff_mul", "ff_neg", "ff_prod",
           "hypot", "log", "log10", "log1p", "log2", "nan_guard", "piecewise", "power", "sigmoid",
           "sigmoid_dd", "sigmoid_f32", "sigmoid_ff", "sin", "sinh", "sinh_dd", "softplus", "softplus_dd",
           "softplus_f32", "tan", "tanh"]
