"""Kernels vs. the mpmath reference, in ULPs.

The metric is the distance, in units in the last place, between a kernel's output and the
correctly rounded reference value: 0 means correctly rounded. Infinite where one side is NaN
and the other is not, or one is infinite and the other finite (counted separately too).
"""

from __future__ import annotations

import functools
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


def limit_at_infinity(expr: sp.Expr, params: dict, sign: int, dtype: str, *, variable: sp.Symbol = X) -> float:
    """lim expr as x -> sign*inf, rounded to ``dtype``; nan if it does not settle.

    Evaluated numerically: at x = sign * 2**k for k = 64, 256, 1024, 4096, 16384, until two
    successive values round to the same float. (SymPy's limit cannot see through Max, Min
    and Piecewise; mpmath's exponent range has no such trouble.)
    """
    import mpmath

    return _settled(expr, params, dtype, variable, [mpmath.ldexp(mpmath.mpf(sign), k)
                                                    for k in (64, 256, 1024, 4096, 16384)])


def limit_at_zero(expr: sp.Expr, params: dict, sign: int, dtype: str, *, variable: sp.Symbol = X) -> float:
    """lim expr as x -> +-0 (the side of the zero's sign), rounded to ``dtype``; nan if it does
    not settle. For a pole at 0 that the kernel's IEEE arithmetic resolves by the sign of the
    zero (log1mexp'(+-0) = +-inf); used only where the value at 0 itself is undefined."""
    import mpmath

    return _settled(expr, params, dtype, variable, [mpmath.ldexp(mpmath.mpf(sign), -k)
                                                    for k in (64, 256, 1024, 4096, 16384)])


def _settled(expr, params, dtype, variable, points) -> float:
    """The value at the first of ``points`` where two successive ones round to the same float."""
    from . import reference as ref_module

    values = {param_symbol(p): v for p, v in params.items()}
    previous = None
    ref_module._IN_LIMIT[0] = True
    try:
        for point in points:
            value = reference(expr, {**values, variable: point}, dtype)
            if previous is not None and (value == previous or (math.isnan(value) and math.isnan(previous))):
                return value
            previous = value
    finally:
        ref_module._IN_LIMIT[0] = False
    return math.nan


def reference_values(expr: sp.Expr, xs: np.ndarray, dtype: str, params: dict,
                     dys: np.ndarray | None = None, *, weights: tuple = (), variable: sp.Symbol = X) -> np.ndarray:
    """Correctly rounded values of ``expr`` (times dy, and times each array of ``weights``, if
    given) at each x (the values of ``variable``), in ``dtype``."""
    symbols = {param_symbol(p): v for p, v in params.items()}
    arrays = ([dys] if dys is not None else []) + list(weights)
    names = [DY] + [sp.Symbol(f"w{i}", real=True) for i in range(1, len(arrays))]
    target = expr * sp.Mul(*names[:len(arrays)])
    limits = {}
    out = np.empty(len(xs), dtype=np.float64)
    for i, x in enumerate(xs.astype(np.float64)):
        ws = [float(a[i]) for a in arrays]
        if math.isnan(x) or any(math.isnan(w) for w in ws):
            out[i] = math.nan
        elif math.isinf(x):
            if x not in limits:
                limits[x] = limit_at_infinity(expr, params, 1 if x > 0 else -1, dtype, variable=variable)
            value = limits[x] * math.prod(ws)
            out[i] = float(np.dtype(dtype).type(value)) if not math.isnan(value) else math.nan
        else:
            values = {**symbols, variable: x, **dict(zip(names, ws))}
            out[i] = reference(target, values, dtype)
            if x == 0 and math.isnan(out[i]):
                # undefined at 0 itself (a pole: -1/expm1(-x)): the limit from the zero's side
                value = limit_at_zero(expr, params, -1 if math.copysign(1, x) < 0 else 1, dtype,
                                      variable=variable) * math.prod(ws)
                out[i] = float(np.dtype(dtype).type(value)) if not math.isnan(value) else math.nan
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


# ---- budgets -------------------------------------------------------------------------------

#: Max ULPs (of the correctly rounded reference) per kernel kind and dtype. glibc's vector math
#: promises 4 ULP per function (float and double); a kernel chains a few of them, and float64
#: gets the 8 ULP the issue allows. Parameter gradients are sums: their budget is in units of
#: eps times sum |dy * df/dp| (the sum's own condition), since a sum has no useful ULP error.
BUDGETS = {("forward", "float32"): 4, ("forward", "float64"): 8,
           ("backward", "float32"): 4, ("backward", "float64"): 8,
           ("param_grad", "float32"): 64, ("param_grad", "float64"): 64}


# ---- sweeps: inputs and references, shared by backends and candidate forms --------------------

@dataclass
class Sweep:
    """The inputs of one activation and dtype, and the reference value of every kernel there."""

    act: Activation
    dtype: str
    xs: np.ndarray
    dys: np.ndarray
    params: dict
    refs: dict             # kernel name -> per-element reference of what the kernel returns
                           # (forward: f, backward: dy * f')
    grad_refs: dict        # param -> (exact sum, sum of |terms|) over the finite xs
    kernel_refs: dict      # kernel name -> per-element reference of the kernel expression
                           # (f, f', df/dp), used to choose forms


def _memo_path(key: str):
    from .build import cache_root

    return cache_root() / "refs" / f"{key}.npy"


@functools.cache
def _reference_code_hash() -> bytes:
    """The code that computes references (reference.py and this module): part of every memo key,
    so that a changed reference (a limit at 0, a new far-argument rule) is never served stale."""
    import hashlib
    from pathlib import Path

    from . import reference as ref_module

    return hashlib.sha256(Path(ref_module.__file__).read_bytes() + Path(__file__).read_bytes()).digest()


def _memoised_reference(expr, xs, dtype, params, dys=None, *, weights=(), variable=X) -> np.ndarray:
    """reference_values, kept on disk by content (the sweeps of unchanged specs are reused)."""
    import hashlib
    import os

    h = hashlib.sha256(_reference_code_hash() + sp.srepr(expr).encode())
    h.update(repr(sorted(params.items())).encode() + dtype.encode() + xs.tobytes() + str(variable).encode())
    for a in ([dys] if dys is not None else []) + list(weights):
        h.update(b"|" + np.asarray(a).tobytes())
    path = _memo_path(h.hexdigest())
    try:
        cached = np.load(path)
        if cached.shape == (len(xs),):           # another shape: a damaged memo, computed again
            return cached
    except (OSError, ValueError):
        pass
    values = reference_values(expr, xs, dtype, params, dys=dys, weights=weights, variable=variable)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(tmp, values)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)             # a full disk leaves no empty file behind
    return values


def make_sweep(act: Activation, dtype: str, *, quick: bool = False, max_magnitude=None,
               specials: bool = True, kernels: list[Kernel] | None = None, seed: int = 1,
               selection_only: bool = False) -> Sweep:
    """Inputs (sample_points) and references for every kernel of ``act`` in ``dtype``.

    ``selection_only``: only the per-element references of the kernel expressions
    (``kernel_refs``), which is all choosing a form needs; not the dy-weighted ones or the sums."""
    import mpmath

    from .reference import evaluate

    if quick:
        xs = sample_points(act, dtype, dense=81, magnitudes=24, randoms=20, max_magnitude=max_magnitude,
                           specials=specials, seed=seed - 1)
    else:
        xs = sample_points(act, dtype, max_magnitude=max_magnitude, specials=specials, seed=seed - 1)
    dys = np.random.default_rng(seed).uniform(-2.0, 2.0, xs.size).astype(dtype)
    params = param_values(act, dtype)
    refs, grad_refs, kernel_refs = {}, {}, {}
    finite = np.isfinite(xs)
    symbols = {param_symbol(p): v for p, v in params.items()}
    for k in kernels or derive(act):
        if k.kind == "backward_y":       # a function of y, measured at y = f(x) by check_output_form
            continue
        if not selection_only and act.kind != "elementwise":
            continue                     # gated and rowwise checks compute their own references
        kernel_refs[k.name] = _memoised_reference(k.exact, xs, dtype, params)
        if selection_only:
            continue
        if k.kind == "forward":
            refs[k.name] = kernel_refs[k.name]
        elif k.kind == "backward":
            refs[k.name] = _memoised_reference(k.exact, xs, dtype, params, dys=dys)
        else:
            terms = []
            for x, dy in zip(xs[finite], dys[finite]):
                try:
                    terms.append(evaluate(k.exact, {**symbols, X: float(x)}, 200) * float(dy))
                except ArithmeticError:
                    terms.append(mpmath.nan)
            with mpmath.workprec(200):
                grad_refs[k.param] = (mpmath.fsum(terms), mpmath.fsum(abs(t) for t in terms))
    return Sweep(act, dtype, xs, dys, params, refs, grad_refs, kernel_refs)


# ---- measuring kernels ----------------------------------------------------------------------

@dataclass
class Result:
    activation: str
    backend: str
    dtype: str
    kernel: str
    kind: str
    points: int
    max_ulp: float            # plain ULPs of the correctly rounded reference
    p99_ulp: float
    worst_x: float
    worst_got: float
    worst_ref: float
    nonfinite_extra: int      # kernel NaN/inf where the reference is finite
    nonfinite_missing: int    # kernel finite where the reference is NaN/inf
    budget: float
    error: float = 0.0        # what the budget applies to: max_ulp for forward kernels; for
                              # derivatives, ULPs of max(|ref|, |dy| * sum|terms|) (conditioned)
    unit: str = "ulp"         # "ulp", or "eps*sum|terms|" for parameter gradients

    @property
    def passed(self) -> bool:
        return self.error <= self.budget and self.nonfinite_extra == 0 and self.nonfinite_missing == 0

    def as_dict(self) -> dict:
        return dict(asdict(self), passed=self.passed)


def _ulp_result(act_name, backend, sweep, kernel, kind, got, ref, scale=None, extra_ulps=0.0) -> Result:
    from .select import conditioned_distance

    xs = sweep.xs
    dist = ulp_distance(got, ref)
    cond = conditioned_distance(got, ref, scale)
    finite_ref = np.isfinite(ref)
    extra = int(np.sum(~np.isfinite(got) & finite_ref))
    missing = int(np.sum(np.isfinite(got) & ~finite_ref))
    # a mismatch in finiteness is counted above; the ULP statistics cover the comparable points
    comparable = ~(np.isinf(dist) & (np.isfinite(got) != np.isfinite(ref)))
    d = dist[comparable] if comparable.any() else np.zeros(1)
    c = cond[comparable] if comparable.any() else np.zeros(1)
    worst = int(np.flatnonzero(comparable)[np.argmax(c)]) if comparable.any() else 0
    return Result(act_name, backend, sweep.dtype, kernel, kind, int(xs.size), float(np.max(d)),
                  float(np.percentile(d, 99)), float(xs[worst]), float(got[worst]), float(ref[worst]),
                  extra, missing, sweep.act.budget(kind, sweep.dtype) + extra_ulps, float(np.max(c)))


def check(loaded, sweep: Sweep) -> list[Result]:
    """Every exported function of a loaded activation against the sweep's references."""
    kind = sweep.act.kind
    if kind == "gated":
        return _check_gated(loaded, sweep)
    if kind == "rowwise":
        return _check_rowwise(loaded, sweep)
    return _check_elementwise(loaded, sweep)


def _grad_result(act, loaded, sweep, p, got, exact, scale, points) -> Result:
    """A parameter gradient (a sum) in units of eps * sum |terms|."""
    import mpmath

    eps = float(np.finfo(sweep.dtype).eps)
    limit = float(np.finfo(sweep.dtype).max)
    if mpmath.isnan(exact) or abs(exact) > limit:
        err = 0.0 if (np.isinf(got) and abs(exact) > limit and (got > 0) == (exact > 0)) \
            or (np.isnan(got) and mpmath.isnan(exact)) else np.inf
    else:
        err = float(abs(mpmath.mpf(got) - exact) / scale) / eps if scale else (0.0 if got == 0 else np.inf)
    return Result(act.name, loaded.backend, sweep.dtype, f"grad_{p}", "param_grad", points, err, err,
                  float("nan"), got, float(exact), 0, 0, act.budget("param_grad", sweep.dtype), err,
                  unit="eps*sum|terms|")


def _exact_sum(expr, xs, weights, params) -> tuple:
    """(sum of expr(x) * prod(weights), sum of |terms|) at 200 bits over the finite x."""
    import mpmath

    from .reference import evaluate

    symbols = {param_symbol(p): v for p, v in params.items()}
    terms = []
    for i, x in enumerate(xs):
        w = math.prod(float(a[i]) for a in weights)
        try:
            terms.append(evaluate(expr, {**symbols, X: float(x)}, 200) * w)
        except ArithmeticError:
            terms.append(mpmath.nan)
    with mpmath.workprec(200):
        return mpmath.fsum(terms), mpmath.fsum(abs(t) for t in terms)


def _identical(act, loaded, sweep, name, kind, got, want) -> Result:
    """A function that must reproduce another bit for bit (the fused and per-channel loops
    call the same element functions as the plain ones)."""
    got, want = np.asarray(got).ravel(), np.asarray(want).ravel()
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    dist = ulp_distance(got, want)
    worst = int(np.argmax(np.where(same, 0, dist))) if got.size else 0
    err = 0.0 if same.all() else float(np.max(np.where(same, 0, dist)))
    return Result(act.name, loaded.backend, sweep.dtype, name, kind, int(got.size), err, err,
                  float(sweep.xs.ravel()[worst % sweep.xs.size]) if got.size else math.nan,
                  float(got[worst]) if got.size else math.nan, float(want[worst]) if got.size else math.nan,
                  0, 0, 0.0, err, unit="ulp vs the plain kernel")


def _check_elementwise(loaded, sweep: Sweep) -> list[Result]:
    from .activation import Y
    from .select import candidates, term_scale

    act, out = sweep.act, []
    params = sweep.params
    xs, dys = sweep.xs, sweep.dys
    kernels = {k.name: k for k in derive(act)}
    each = _each_point if loaded.backend == "c" and sweep.dtype == "float32" else (lambda f, *a: f(*a))
    y = np.asarray(each(lambda x: loaded(x, **params), xs))
    out.append(_ulp_result(act.name, loaded.backend, sweep, "forward", "forward", y, sweep.refs["forward"]))
    dx = np.asarray(each(lambda x, dy: loaded.backward(x, dy, **params), xs, dys))
    back = kernels["backward"]
    scale = term_scale(candidates(act, back)[0][1].stable, xs, params) * np.abs(dys)
    out.append(_ulp_result(act.name, loaded.backend, sweep, "backward", "backward", dx, sweep.refs["backward"],
                           scale))
    # the fused forward and derivative (its loop may vectorise differently: measured on its own)
    fy, fd = each(lambda x: np.stack(loaded.forward_with_derivative(x, **params)), xs)
    out.append(_ulp_result(act.name, loaded.backend, sweep, "fused_y", "forward", fy, sweep.refs["forward"]))
    out.append(_ulp_result(act.name, loaded.backend, sweep, "fused_dydx", "backward", fd,
                           sweep.kernel_refs["backward"], scale / np.where(dys == 0, 1, np.abs(dys))))
    # per-channel parameters (here equal to the scalars)
    if act.params:
        arrays = {p: np.full(xs.shape, v, dtype=xs.dtype) for p, v in params.items()}
        out.append(_ulp_result(act.name, loaded.backend, sweep, "forward_pc", "forward",
                               np.asarray(loaded(xs, **arrays)), sweep.refs["forward"]))
        out.append(_ulp_result(act.name, loaded.backend, sweep, "backward_pc", "backward",
                               np.asarray(loaded.backward(xs, dys, **arrays)), sweep.refs["backward"], scale))
    # from the saved output: at the correctly rounded y = f(x), against g(y) exactly
    if "backward_y" in kernels and loaded._kernels.valid(sweep.dtype, tuple(params.values())):
        ys = sweep.refs["forward"]
        g = kernels["backward_y"].exact
        ref = _memoised_reference(g, ys, sweep.dtype, params, dys=dys, variable=Y)
        got = np.asarray(loaded.backward_from_output(ys, dys, **params))
        out.append(_ulp_result(act.name, loaded.backend, sweep, "backward_y", "backward", got, ref))
    finite = np.isfinite(xs)
    if sweep.grad_refs:
        grads = loaded.param_grads(xs[finite], dys[finite], **params)
        for p, (exact, scale) in sweep.grad_refs.items():
            out.append(_grad_result(act, loaded, sweep, p, float(grads[p]), exact, scale, int(finite.sum())))
    return out


def _each_point(fn, *arrays):
    """``fn`` of arrays (on their last axis) with every point repeated to a block of its own: a
    float32 C kernel computed in float on an interval only (select.Choice.float_range) checks
    blocks of render.FLOAT_BLOCK inputs, and computes a block with any input outside in double.
    The sweep mixes both kinds in one block; this way each point takes the path that an array of
    such points takes (in float where it lies in the interval)."""
    from .render import FLOAT_BLOCK

    got = fn(*[np.repeat(a, FLOAT_BLOCK) for a in arrays])
    return np.asarray(got)[..., ::FLOAT_BLOCK]


def _check_gated(loaded, sweep: Sweep) -> list[Result]:
    """y = a * f(b) with b the sweep's points and a random (both halves along axis 0)."""
    from .select import candidates, term_scale

    act, out = sweep.act, []
    params, dtype = sweep.params, sweep.dtype
    b, dy = sweep.xs, sweep.dys
    a = np.random.default_rng(5).uniform(-2.0, 2.0, b.size).astype(dtype)
    x = np.stack([a, b])
    kernels = {k.name: k for k in derive(act)}
    f, fprime = kernels["forward"].exact, kernels["backward"].exact
    # a * f(b): the gate's budget plus the product's rounding
    y = np.asarray(loaded(x, axis=0, **params))[0]
    out.append(_ulp_result(act.name, loaded.backend, sweep, "forward", "forward", y,
                           _memoised_reference(f, b, dtype, params, weights=(a,)), extra_ulps=1))
    dx = np.asarray(loaded.backward(x, dy[None, :], axis=0, **params))
    out.append(_ulp_result(act.name, loaded.backend, sweep, "backward_a", "backward", dx[0],
                           _memoised_reference(f, b, dtype, params, dys=dy)))
    scale = term_scale(candidates(act, kernels["backward"])[0][1].stable, b, params) * np.abs(dy * a)
    out.append(_ulp_result(act.name, loaded.backend, sweep, "backward_b", "backward", dx[1],
                           _memoised_reference(fprime, b, dtype, params, dys=dy, weights=(a,)), scale,
                           extra_ulps=1))
    finite = np.isfinite(b)
    if act.learnable:
        grads = loaded.param_grads(x[:, finite], dy[None, finite], axis=0, **params)
        for p in act.learnable:
            exact, total = _exact_sum(kernels[f"grad_{p}"].exact, b[finite], (dy[finite], a[finite]), params)
            out.append(_grad_result(act, loaded, sweep, p, float(grads[p]), exact, total, int(finite.sum())))
    return out


ROW = 8


def _rows_of(xs: np.ndarray) -> np.ndarray:
    """Rows of ROW elements from the sweep: its points in their order (neighbouring magnitudes)
    and shuffled, padded with zeros."""
    shuffled = xs[np.random.default_rng(11).permutation(xs.size)]
    pts = np.concatenate([xs, shuffled])
    pad = (-pts.size) % ROW
    return np.concatenate([pts, np.zeros(pad, xs.dtype)]).reshape(-1, ROW)


def row_reference(act: Activation, rows: np.ndarray, dys: np.ndarray, params: dict, dtype: str, prec: int = 320):
    """Correctly rounded (at ``prec`` bits) softmax/log_softmax/sparsemax of each row and its
    backward dy -> dx, the backward's conditioning scale, the exact parameter gradients (sum, sum
    of |terms|) and, for sparsemax, the forward's conditioning scale (None otherwise), with the
    row conventions of the kernels (a NaN, or an infinite maximum, makes the row NaN)."""
    import mpmath

    from .reference import FORMATS, Undefined, _exp, evaluate, round_to_format

    kernels = {k.name: k for k in derive(act)}
    score, ds = kernels["forward"].exact, kernels["backward"].exact
    grads = {p: kernels[f"grad_{p}"].exact for p in act.learnable}
    symbols = {param_symbol(p): v for p, v in params.items()}
    fmt = FORMATS[dtype]
    y = np.empty(rows.shape)
    dx = np.empty(rows.shape)
    scale = np.empty(rows.shape)
    sums = {p: [] for p in grads}
    softmax, sparse = act.normalizer == "softmax", act.normalizer == "sparsemax"
    fscale = np.zeros(rows.shape)

    def ev(e, x):
        try:
            return evaluate(e, {**symbols, X: x}, prec)
        except (Undefined, ZeroDivisionError, ValueError):
            return mpmath.nan

    with mpmath.workprec(prec):
        for r in range(rows.shape[0]):
            xr = [mpmath.mpf(float(v)) if math.isfinite(v) else mpmath.mpf(float(v)) for v in rows[r]]
            s = [ev(score, v) for v in xr]
            bad = any(mpmath.isnan(v) for v in s)
            m = max(s) if not bad else mpmath.nan
            if bad or mpmath.isinf(m):
                y[r] = dx[r] = math.nan
                scale[r] = fscale[r] = math.nan
                for p in grads:
                    sums[p].append((mpmath.nan, mpmath.mpf(0)))
                continue
            d = [mpmath.mpf(float(v)) for v in dys[r]]
            if sparse:
                # sort-based (Martins & Astudillo 2016), exactly: u = s - m, the support is the k
                # largest with 1 + k u_(k) > u_(1) + ... + u_(k), t = (that sum - 1) / k
                u = [v - m for v in s]
                z = sorted(u, reverse=True)
                k, total, acc = 1, z[0], mpmath.mpf(0)
                for i, zi in enumerate(z, 1):
                    acc += zi
                    if 1 + i * zi > acc:
                        k, total = i, acc
                t = (total - 1) / k
                prob = [max(v - t, mpmath.mpf(0)) for v in u]
                support = [pp > 0 for pp in prob]
                a = mpmath.fsum(dd for dd, on in zip(d, support) if on) / k
                a_abs = mpmath.fsum(abs(dd) for dd, on in zip(d, support) if on) / k
                g = [dd - a if on else mpmath.mpf(0) for dd, on in zip(d, support)]
                g_scale = [abs(dd) + a_abs if on else mpmath.mpf(0) for dd, on in zip(d, support)]
                # the output u - t cancels near the support's edge: its conditioning scale is the
                # magnitude of its terms (t's own: the sum over the support, divided by k)
                t_abs = (mpmath.fsum(abs(v) for v, on in zip(u, support) if on) + 1) / k
                for j, v in enumerate(u):      # (an element at -inf is 0 exactly)
                    fscale[r, j] = float(abs(v) + abs(t) + t_abs) if mpmath.isfinite(v) else 0.0
            else:
                e = [_exp(v - m) for v in s]
                total = mpmath.fsum(e)
                prob = [v / total for v in e]
                logs = [(v - m) - mpmath.log(total) for v in s]
                if softmax:
                    a = mpmath.fsum(dd * pp for dd, pp in zip(d, prob))
                    a_abs = mpmath.fsum(abs(dd * pp) for dd, pp in zip(d, prob))
                    g = [pp * (dd - a) for dd, pp in zip(d, prob)]
                    g_scale = [pp * (abs(dd) + a_abs) for dd, pp in zip(d, prob)]
                else:
                    a = mpmath.fsum(d)
                    a_abs = mpmath.fsum(abs(dd) for dd in d)
                    g = [dd - pp * a for dd, pp in zip(d, prob)]
                    g_scale = [abs(dd) + pp * a_abs for dd, pp in zip(d, prob)]
            for j, v in enumerate(xr):
                y[r, j] = round_to_format(prob[j] if softmax or sparse else logs[j], *fmt)
                dsj = ev(ds, v)
                dx[r, j] = round_to_format(dsj * g[j], *fmt)
                scale[r, j] = float(abs(dsj) * g_scale[j])
            for p, e_p in grads.items():
                # a term whose dL/ds is 0 is 0 (an x = -inf: probability 0, ds/dp = inf)
                terms = [mpmath.mpf(0) if g[j] == 0 else ev(e_p, v) * g[j] for j, v in enumerate(xr)]
                sums[p].append((mpmath.fsum(terms), mpmath.fsum(abs(t) for t in terms)))
    totals = {}
    for p, parts in sums.items():
        finite = [t for t in parts if not mpmath.isnan(t[0])]
        totals[p] = (mpmath.fsum(t[0] for t in finite), mpmath.fsum(t[1] for t in finite))
    return y.astype(dtype), dx.astype(dtype), scale, totals, (fscale if sparse else None)


def _check_rowwise(loaded, sweep: Sweep) -> list[Result]:
    act, out = sweep.act, []
    params, dtype = sweep.params, sweep.dtype
    rows = _rows_of(sweep.xs)
    dys = np.random.default_rng(13).uniform(-2.0, 2.0, rows.shape).astype(dtype)
    ref_y, ref_dx, scale, totals, fscale = row_reference(act, rows.astype(np.float64), dys, params, dtype)
    row_sweep = Sweep(act, dtype, rows.ravel(), dys.ravel(), params, {}, {}, {})
    y = np.asarray(loaded(rows, **params))
    out.append(_ulp_result(act.name, loaded.backend, row_sweep, "forward", "forward", y.ravel(), ref_y.ravel(),
                           None if fscale is None else fscale.ravel()))
    dx = np.asarray(loaded.backward(rows, dys, **params))
    out.append(_ulp_result(act.name, loaded.backend, row_sweep, "backward", "backward", dx.ravel(),
                           ref_dx.ravel(), scale.ravel()))
    # along another axis: the same values (the rows are moved, not recomputed differently)
    along0 = np.asarray(loaded(np.ascontiguousarray(rows.T), axis=0, **params)).T
    out.append(_identical(act, loaded, row_sweep, "forward_axis0", "forward", along0, y))
    if loaded.has_output_derivative:
        ok = np.isfinite(y).all(axis=1)
        got = np.asarray(loaded.backward_from_output(y[ok], dys[ok], **params))
        out.append(_ulp_result(act.name, loaded.backend, Sweep(act, dtype, rows[ok].ravel(), dys[ok].ravel(),
                                                               params, {}, {}, {}),
                               "backward_y", "backward", got.ravel(), ref_dx[ok].ravel(), scale[ok].ravel()))
    if act.learnable:
        ok = np.isfinite(ref_y).all(axis=1)
        grads = loaded.param_grads(rows[ok], dys[ok], **params)
        for p in act.learnable:
            exact, total = totals[p]
            out.append(_grad_result(act, loaded, row_sweep, p, float(grads[p]), exact, total, int(ok.sum())))
    return out


def verify(act: Activation, *, spec=None, backends=("c", "numpy"), dtypes=DTYPES, quick=False) -> list[Result]:
    """Build (or load) ``act`` with each backend and check every kernel and dtype."""
    import actgen

    results = []
    for dtype in dtypes:
        sweep = make_sweep(act, dtype, quick=quick)
        for backend in backends:
            loaded = actgen.load(act.name, spec=spec, backend=backend)
            results.extend(check(loaded, sweep))
    return results


def format_table(results: list[Result]) -> str:
    """A terminal table: one row per activation, kernel, dtype and backend."""
    header = (f"{'activation':20s} {'kernel':12s} {'dtype':8s} {'backend':7s} {'max':>9s} {'p99':>7s} "
              f"{'error':>7s} {'budget':>6s} {'nonfinite':>9s}  {'worst x':>13s}  status")
    lines = [header, "-" * len(header)]
    for r in results:
        nonfinite = f"{r.nonfinite_extra}/{r.nonfinite_missing}"
        worst = "" if r.kind == "param_grad" else f"{r.worst_x:13.6g}"
        lines.append(f"{r.activation:20s} {r.kernel:12s} {r.dtype:8s} {r.backend:7s} {r.max_ulp:9.3g} "
                     f"{r.p99_ulp:7.3g} {r.error:7.3g} {r.budget:6g} {nonfinite:>9s}  {worst:>13s}  "
                     f"{'ok' if r.passed else 'OVER BUDGET'}")
    failed = sum(not r.passed for r in results)
    lines.append(f"\n{len(results)} kernel checks, {failed} over budget.\n"
                 "max, p99: ULPs of the correctly rounded mpmath reference. error: what the budget applies "
                 "to; the max ULPs for forward kernels, for backward kernels the ULPs of "
                 "max(|reference|, |dy| * sum of the magnitudes of the derivative's terms) (near a root "
                 "of f' no fixed precision keeps relative accuracy), for parameter gradients "
                 "|error| / (eps * sum|dy * df/dp|). nonfinite: kernel NaN/inf where the reference is "
                 "finite / the reverse.")
    return "\n".join(lines)
