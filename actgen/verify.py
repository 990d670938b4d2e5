"""Kernels vs. the mpmath reference, in ULPs.

The metric is the distance, in units in the last place, between a kernel's output and the
correctly rounded reference value: 0 means correctly rounded. Infinite where one side is NaN
and the other is not, or one is infinite and the other finite (counted separately too).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import sympy as sp

from .activation import X, Activation, param_symbol
from .derive import Kernel, derive, kink_points
from .functions import sigmoid, softplus
from .reference import reference

DY = sp.Symbol("dy", real=True)
DTYPES = ("float32", "float64")


# ---- ULPs --------------------------------------------------------------------------------

def _ordered(a: np.ndarray) -> np.ndarray:
    """Map floats to int64 in the same order, adjacent floats to adjacent integers (+0 == -0)."""
    if a.dtype == np.float32:
        i = a.view(np.int32).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFF), i)
    i = a.view(np.int64)
    return np.where(i < 0, -(i & 0x7FFFFFFFFFFFFFFF), i)


def _int_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| for the int64 codes of _ordered, as float64, without int64 overflow or rounding
    (the codes of float64 reach 2**63; float64 would round them to multiples of 512)."""
    same_sign = (a >= 0) == (b >= 0)
    with np.errstate(over="ignore"):
        near = np.abs(np.where(same_sign, a - b, 0)).astype(np.float64)
    far = np.abs(a).astype(np.float64) + np.abs(b).astype(np.float64)
    return np.where(same_sign, near, far)


def ulp_distance(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|got - ref| in ULPs of their format, elementwise (``ref`` already rounded to that format).

    0 where both are NaN, or equal (including +0/-0); inf where exactly one is NaN or where
    one is infinite and the other is not.
    """
    got = np.asarray(got)
    ref = np.asarray(ref, dtype=got.dtype)
    dist = _int_distance(_ordered(got), _ordered(ref))
    g_nan, r_nan = np.isnan(got), np.isnan(ref)
    dist = np.where(g_nan | r_nan, np.where(g_nan & r_nan, 0.0, np.inf), dist)
    g_inf, r_inf = np.isinf(got), np.isinf(ref)
    mismatch = (g_inf | r_inf) & ~(g_nan | r_nan) & (got != ref)
    return np.where(mismatch, np.inf, dist)


# ---- reference values ----------------------------------------------------------------------

def param_values(act: Activation, dtype: str, overrides: dict | None = None) -> dict:
    """Parameter values as the kernel of ``dtype`` sees them (rounded to that dtype)."""
    t = np.dtype(dtype).type
    values = dict(act.params, **(overrides or {}))
    return {p: float(t(v)) for p, v in values.items()}


def limit_at_infinity(expr: sp.Expr, params: dict, sign: int, dtype: str) -> float:
    """lim expr as x -> sign*inf, rounded to ``dtype``; nan if it does not settle.

    Evaluated numerically: at x = sign * 2**k for k = 64, 256, 1024, 4096, 16384, until two
    successive values round to the same float. (SymPy's limit cannot see through Max, Min
    and Piecewise; mpmath's exponent range has no such trouble.)
    """
    import mpmath

    values = {param_symbol(p): v for p, v in params.items()}
    previous = None
    for k in (64, 256, 1024, 4096, 16384):
        value = reference(expr, {**values, X: mpmath.ldexp(mpmath.mpf(sign), k)}, dtype)
        if previous is not None and (value == previous or (math.isnan(value) and math.isnan(previous))):
            return value
        previous = value
    return math.nan


def reference_values(expr: sp.Expr, xs: np.ndarray, dtype: str, params: dict,
                     dys: np.ndarray | None = None) -> np.ndarray:
    """Correctly rounded values of ``expr`` (times dy if given) at each x, in ``dtype``."""
    symbols = {param_symbol(p): v for p, v in params.items()}
    target = expr * DY if dys is not None else expr
    limits = {}
    out = np.empty(len(xs), dtype=np.float64)
    for i, x in enumerate(xs.astype(np.float64)):
        dy = float(dys[i]) if dys is not None else None
        if math.isnan(x) or (dy is not None and math.isnan(dy)):
            out[i] = math.nan
        elif math.isinf(x):
            if x not in limits:
                limits[x] = limit_at_infinity(expr, params, 1 if x > 0 else -1, dtype)
            value = limits[x] * (dy if dy is not None else 1.0)
            out[i] = float(np.dtype(dtype).type(value)) if not math.isnan(value) else math.nan
        else:
            values = {**symbols, X: x}
            if dy is not None:
                values[DY] = dy
            out[i] = reference(target, values, dtype)
    return out.astype(dtype)


# ---- sample points -------------------------------------------------------------------------

def sample_points(act: Activation, dtype: str, *, dense: int = 241, span: float = 30.0,
                  magnitudes: int = 40, max_magnitude: float | None = None, randoms: int = 60,
                  seed: int = 0, specials: bool = False) -> np.ndarray:
    """Test inputs: a dense grid on [-span, span], log-spaced magnitudes of both signs from the
    smallest subnormal to ``max_magnitude`` (default: the largest finite), +-0, the kinks and
    their float neighbours, random draws; with ``specials``, +-inf and nan too."""
    t = np.dtype(dtype).type
    info = np.finfo(dtype)
    pts = [np.linspace(-span, span, dense), [0.0, -0.0, 1e-30, -1e-30, span, -span]]
    tiny_exp = math.log10(float(info.smallest_subnormal))
    top = math.log10(max_magnitude) if max_magnitude else math.log10(float(info.max)) - 0.01
    mags = np.logspace(tiny_exp, top, magnitudes)
    pts += [mags, -mags]
    for k in kink_points(act):
        kk = t(k)
        pts.append([kk, np.nextafter(kk, t(np.inf)), np.nextafter(kk, t(-np.inf)),
                    kk + t(1e-3) * max(t(1), abs(kk)), kk - t(1e-3) * max(t(1), abs(kk))])
    rng = np.random.default_rng(seed)
    pts.append(rng.normal(0.0, 5.0, randoms))
    if specials:
        pts.append([np.inf, -np.inf, np.nan])
    xs = np.concatenate([np.asarray(p, dtype=np.float64) for p in pts]).astype(dtype)
    # keep -0 distinct from 0 while dropping exact duplicates
    _, idx = np.unique(xs.view(np.int32 if dtype == "float32" else np.int64), return_index=True)
    return xs[np.sort(idx)]


# ---- measuring kernels ----------------------------------------------------------------------

@dataclass
class Measurement:
    activation: str
    backend: str
    dtype: str
    kernel: str
    points: int
    max_ulp: float
    p99_ulp: float
    worst_x: float
    nonfinite_extra: int      # kernel NaN/inf where the reference is finite
    nonfinite_missing: int    # kernel finite where the reference is NaN/inf

    def as_dict(self) -> dict:
        return asdict(self)


def _summarise(act_name, backend, dtype, kernel, xs, got, ref) -> Measurement:
    dist = ulp_distance(got, ref)
    finite_ref = np.isfinite(ref)
    extra = int(np.sum(~np.isfinite(got) & finite_ref))
    missing = int(np.sum(np.isfinite(got) & ~finite_ref))
    worst = int(np.argmax(dist)) if dist.size else 0
    return Measurement(act_name, backend, dtype, kernel, int(xs.size), float(np.max(dist)),
                       float(np.percentile(dist, 99)), float(xs[worst]), extra, missing)


def measure(loaded, act: Activation, dtype: str, xs: np.ndarray, *, seed: int = 1,
            kernels: list[Kernel] | None = None) -> list[Measurement]:
    """Forward and backward kernels of ``loaded`` at ``xs`` against the reference, in ULPs."""
    params = param_values(act, dtype)
    kernels = kernels or derive(act)
    rng = np.random.default_rng(seed)
    dys = rng.uniform(-2.0, 2.0, xs.size).astype(dtype)
    out = []
    for k in kernels:
        if k.kind == "forward":
            got = np.asarray(loaded(xs, **params))
            ref = reference_values(k.exact, xs, dtype, params)
        elif k.kind == "backward":
            got = np.asarray(loaded.backward(xs, dys, **params))
            ref = reference_values(k.exact, xs, dtype, params, dys=dys)
        else:
            continue
        out.append(_summarise(act.name, loaded.backend, dtype, k.name, xs, got, ref))
    return out


def param_grad_errors(loaded, act: Activation, dtype: str, xs: np.ndarray, *, seed: int = 1) -> dict:
    """{param: |kernel sum - exact sum| / sum |dy * df/dp|} (the error relative to the sum's
    condition), over the finite xs, for each learnable parameter."""
    import mpmath

    from .reference import evaluate

    params = param_values(act, dtype)
    xs = xs[np.isfinite(xs)]
    rng = np.random.default_rng(seed)
    dys = rng.uniform(-2.0, 2.0, xs.size).astype(dtype)
    got = loaded.param_grads(xs, dys, **params)
    symbols = {param_symbol(p): v for p, v in params.items()}
    errors = {}
    for k in derive(act):
        if k.kind != "param_grad":
            continue
        terms = [evaluate(k.exact, {**symbols, X: float(x)}, 200) * float(dy) for x, dy in zip(xs, dys)]
        with mpmath.workprec(200):
            exact = mpmath.fsum(terms)
            scale = mpmath.fsum(abs(t) for t in terms)
        errors[k.param] = float(abs(mpmath.mpf(float(got[k.param])) - exact) / scale) if scale else 0.0
    return errors
