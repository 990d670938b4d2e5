"""The measurement vocabulary: ULP distances and the evaluation of a Form as the C computes it.

Selection, verification and the exhaustive check all speak in these terms:

* ``ulp_distance``: how many floats of a format lie between a result and the correctly rounded
  reference; ``conditioned_distance`` for derivatives, in ULPs of max(|reference|, the
  magnitude of the terms it is computed from) (a root of f' has no relative accuracy);
* ``evaluate_form``: a candidate Form evaluated by the kernel model (actgen.kernel_model: the
  C library correctly rounded, actgen's own float helpers operation by operation), in the
  kernel's type or in double, host-independent;
* ``libm_bound`` / ``measure_bounded``: the model's error with the documented errors of the C
  library functions a form calls added.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import sympy as sp

import mpmath

from . import kernel_model
from .ir import X, Form, param_symbol
from .printers.numpy import KernelNumPyPrinter
from .reference import FORMATS, Undefined, evaluate_fixed, round_to_format

#: The precision that models a form computed in double-double (actgen/csrc/actgen_dd.h): about
#: 106 bits in each operation, its functions within 2**-100 (tests/test_dd_math.py)
WIDE_BITS = 100



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


def numpy_function(form: Form, params: list[str], c_float: bool = False):
    """A Python function (x, *params) -> values: selection's model of the C kernel (the NumPy
    printer in model mode, evaluated with actgen.kernel_model: C library functions correctly
    rounded, host-independent); with ``c_float``, the kernel computed in float (actgen's own
    float exp, sigmoid, softplus, erfc modelled operation by operation)."""
    return _numpy_function(form, tuple(params), c_float)


@functools.lru_cache(maxsize=512)
def _numpy_function(form: Form, params: tuple[str, ...], c_float: bool = False):
    printer = KernelNumPyPrinter(form.dd_temps, form.compensated, c_float=c_float, model=True)
    lines = [f"def kernel(x{''.join(', ' + p for p in params)}):"]
    lines += [f"    {sym} = {printer._dd(value) if sym in form.dd_temps else printer.doprint(value)}"
              for sym, value in form.temps]
    lines.append(f"    return {printer.doprint(form.result)}")
    namespace = {"numpy": np, "m": kernel_model}
    exec(compile("\n".join(lines), "<actgen candidate>", "exec"), namespace)  # noqa: S102
    return namespace["kernel"]


def evaluate_form(form: Form, xs: np.ndarray, params: dict, dtype: str, compute: str,
                  c_model: bool = True) -> np.ndarray:
    """The form at xs, computed in ``dtype`` (or in float64 when compute == "double"), as dtype.
    In float32, as the C kernel computes it in float (``c_model``: actgen's own float exp,
    sigmoid, softplus; without, every function correctly rounded, as an ideal lambdify). With
    compute == "wide", in double-double (evaluate_form_wide)."""
    if compute == "wide":
        return evaluate_form_wide(form, xs, params, dtype)
    work = np.float64 if compute == "double" else np.dtype(dtype).type
    fn = numpy_function(form, list(params), c_float=c_model and work is np.float32)
    with np.errstate(all="ignore"):
        value = fn(xs.astype(work), *[work(v) for v in params.values()])
        value = np.broadcast_to(np.asarray(value, dtype=work), xs.shape)
        if form.needs_nan_guard:
            value = np.where(np.isnan(xs), xs.astype(work), value)
        return value.astype(dtype)


_DOUBLE_MAX = float(np.finfo(np.float64).max)
_DOUBLE_TINY = float(np.finfo(np.float64).smallest_subnormal)


def evaluate_form_wide(form: Form, xs: np.ndarray, params: dict, dtype: str) -> np.ndarray:
    """The form at xs computed in double-double, rounded to ``dtype``: modelled by mpmath with
    every operation at WIDE_BITS bits (reference.evaluate_fixed: its cancellations kept, unlike
    the reference's), the temporaries in order. NaN in gives NaN."""
    fmt = FORMATS[dtype]
    symbols = {param_symbol(p): v for p, v in params.items()}
    out = np.empty(xs.size, dtype=np.float64)
    for i, x in enumerate(np.asarray(xs, np.float64).ravel()):
        if math.isnan(x):
            out[i] = math.nan
            continue
        env = {**symbols, X: x}
        try:
            with mpmath.workprec(WIDE_BITS):
                for sym, value in form.temps:
                    env[sym] = evaluate_fixed(value, env, WIDE_BITS, _DOUBLE_MAX, _DOUBLE_TINY)
                v = evaluate_fixed(form.result, env, WIDE_BITS, _DOUBLE_MAX, _DOUBLE_TINY)
            out[i] = round_to_format(v, *fmt) if not isinstance(v, mpmath.mpc) else math.nan
        except (Undefined, ValueError, ZeroDivisionError, OverflowError, TypeError):
            out[i] = math.nan
    return out.astype(dtype).reshape(np.shape(xs))


def term_scale(form_expr: sp.Expr, xs: np.ndarray, params: dict) -> np.ndarray:
    """sum |terms| of the top-level sum of an expression, in float64: the magnitude the result
    is computed from (its rounding errors are relative to this, not to the possibly tiny sum).
    The sum is looked for through a Piecewise (the branch each x takes) and a product with one
    such factor (|the other factors| times its terms): softplus's third derivative is
    Piecewise((0, beta x > threshold), (beta^2 (s(-u)^2 s(u) - s(-u) s(u)^2), True)), which
    cancels at x ~ 0 as softplus_plain's sum does, and was measured relative to the tiny value."""
    if isinstance(form_expr, sp.Piecewise):
        branch = _values(sp.Piecewise(*[(i, c) for i, (_, c) in enumerate(form_expr.args)]), xs, params)
        total = np.full(xs.shape, np.nan)
        for i, (value, _) in enumerate(form_expr.args):
            taken = branch == i
            if taken.any():
                total[taken] = term_scale(value, xs[taken], params)
        return total
    if form_expr.is_Mul:
        sums = [f for f in form_expr.args if (f.is_Add or isinstance(f, sp.Piecewise)) and f.has(X)]
        if len(sums) == 1:
            rest = form_expr.func(*[f for f in form_expr.args if f is not sums[0]])
            scale = term_scale(sums[0], xs, params)
            with np.errstate(all="ignore"):             # (0 * inf is NaN: no scale there)
                return np.abs(_values(rest, xs, params)) * scale
    total = np.zeros(xs.shape)
    for term in sp.Add.make_args(form_expr):
        total = total + np.abs(_values(term, xs, params))
    return total


def _values(expr: sp.Expr, xs: np.ndarray, params: dict) -> np.ndarray:
    """expr at xs in float64 (the kernel model's functions), broadcast to xs's shape."""
    f = numpy_function(Form((), expr), list(params))
    with np.errstate(all="ignore"):
        return np.broadcast_to(np.asarray(f(xs.astype(np.float64), *params.values()), float), xs.shape)


def conditioned_distance(got: np.ndarray, ref: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """ULP distance; for derivatives measured in ULPs of max(|ref|, scale) where finite."""
    dist = ulp_distance(got, ref)
    if scale is None:
        return dist
    dtype = got.dtype
    big = np.maximum(np.abs(ref.astype(np.float64)), scale)
    with np.errstate(all="ignore"):
        unit = np.spacing(big.astype(dtype)).astype(np.float64)
        cond = np.abs(got.astype(np.float64) - ref.astype(np.float64)) / unit
    usable = np.isfinite(cond) & np.isfinite(ref) & np.isfinite(got) & (unit > 0)
    return np.where(usable, np.minimum(dist, cond), dist)


def measure(form: Form, sweep_xs, ref, params, dtype, compute, scale,
            c_model: bool = True) -> tuple[float, int]:
    return measure_points(form, sweep_xs, ref, params, dtype, compute, scale, c_model)[:2]


def measure_points(form: Form, sweep_xs, ref, params, dtype, compute, scale,
                   c_model: bool = True) -> tuple[float, int, np.ndarray]:
    """(max error where both are finite, spurious NaN/inf count, the per-point errors)."""
    got = evaluate_form(form, sweep_xs, params, dtype, compute, c_model)
    finite_ref = np.isfinite(ref)
    nonfinite = int(np.sum(np.isfinite(got) != finite_ref) + np.sum(np.isnan(got) & ~np.isnan(ref)))
    dist = conditioned_distance(got, ref, scale)
    comparable = np.isfinite(got) == finite_ref
    err = float(np.max(dist[comparable])) if comparable.any() else math.inf
    return err, nonfinite, dist


def libm_bound(form: Form, xs: np.ndarray, params: dict, dtype: str, compute: str, scale,
               base: np.ndarray) -> np.ndarray:
    """Per point, how far the documented errors of the C library functions the form calls
    (kernel_model.LIBM_ULPS) can move its result ``base`` (the correctly rounded model), in the
    ULPs of the measurement: each call moved by its error on its own, the effects added (to first
    order, the worst case of all of them at once). Each call is moved both ways and the smaller
    effect taken: to first order they are the same, and one way may leave the function's range
    (tanh above 1), which no libm does. A float32 form computed in double gets none: a few
    double ULPs do not reach its float result."""
    bound = np.zeros(xs.shape)
    if (compute == "double" and dtype == "float32") or compute == "wide":
        return bound                                # (double-double functions: 2**-100)
    with kernel_model.perturbed() as plan:
        evaluate_form(form, xs, params, dtype, compute)
    for k in range(plan.count):
        effects = []
        for direction in (math.inf, -math.inf):
            with kernel_model.perturbed(k, direction):
                moved = evaluate_form(form, xs, params, dtype, compute)
            effects.append(conditioned_distance(moved, base, scale))
        bound += np.minimum(*effects)
    return bound


@dataclass(frozen=True)
class Measurement:
    """A candidate on the sweep: its error (the correctly rounded model against the reference),
    that error with the C library's documented errors added (``bound``), the spurious NaN/inf,
    and per point the error that decides (``decisive``: the larger of the two, the bound taken at
    ``bound_weight``; the points where finiteness differs are inf)."""

    error: float
    bound: float
    nonfinite: int
    decisive: np.ndarray

    @property
    def decisive_max(self) -> float:
        finite = np.isfinite(self.decisive)
        return float(np.max(self.decisive[finite])) if finite.any() else math.inf


def measure_bounded(form: Form, xs, ref, params, dtype, compute, scale, bound_weight: float) -> Measurement:
    got = evaluate_form(form, xs, params, dtype, compute)
    finite_ref = np.isfinite(ref)
    nonfinite = int(np.sum(np.isfinite(got) != finite_ref) + np.sum(np.isnan(got) & ~np.isnan(ref)))
    dist = conditioned_distance(got, ref, scale)
    comparable = np.isfinite(got) == finite_ref
    bound = dist + libm_bound(form, xs, params, dtype, compute, scale, got)
    decisive = np.where(comparable, np.maximum(dist, bound * bound_weight), np.inf)

    def top(a):
        return float(np.max(a[comparable])) if comparable.any() else math.inf

    return Measurement(top(dist), top(bound), nonfinite, decisive)
