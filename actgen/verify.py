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


def _memoised_reference(expr, xs, dtype, params, dys=None) -> np.ndarray:
    """reference_values, kept on disk by content (the sweeps of unchanged specs are reused)."""
    import hashlib

    h = hashlib.sha256(sp.srepr(expr).encode())
    h.update(repr(sorted(params.items())).encode() + dtype.encode() + xs.tobytes())
    if dys is not None:
        h.update(dys.tobytes())
    path = _memo_path(h.hexdigest())
    try:
        return np.load(path)
    except (OSError, ValueError):
        pass
    values = reference_values(expr, xs, dtype, params, dys=dys)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{__import__('os').getpid()}.tmp.npy")
        np.save(tmp, values)
        __import__("os").replace(tmp, path)
    except OSError:
        pass
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
                           specials=specials)
    else:
        xs = sample_points(act, dtype, max_magnitude=max_magnitude, specials=specials)
    dys = np.random.default_rng(seed).uniform(-2.0, 2.0, xs.size).astype(dtype)
    params = param_values(act, dtype)
    refs, grad_refs, kernel_refs = {}, {}, {}
    finite = np.isfinite(xs)
    symbols = {param_symbol(p): v for p, v in params.items()}
    for k in kernels or derive(act):
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


def _ulp_result(act_name, backend, sweep, kernel, kind, got, ref, scale=None) -> Result:
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
                  extra, missing, sweep.act.budget(kind, sweep.dtype), float(np.max(c)))


def check(loaded, sweep: Sweep) -> list[Result]:
    """Every kernel of a loaded activation against the sweep's references."""
    import mpmath

    from .select import candidates, term_scale

    act, out = sweep.act, []
    params = sweep.params
    for k in derive(act):
        if k.kind == "forward":
            got = np.asarray(loaded(sweep.xs, **params))
            out.append(_ulp_result(act.name, loaded.backend, sweep, k.name, k.kind, got, sweep.refs[k.name]))
        elif k.kind == "backward":
            got = np.asarray(loaded.backward(sweep.xs, sweep.dys, **params))
            scale = term_scale(candidates(act, k)[0][1].stable, sweep.xs, params) * np.abs(sweep.dys)
            out.append(_ulp_result(act.name, loaded.backend, sweep, k.name, k.kind, got, sweep.refs[k.name],
                                   scale))
    finite = np.isfinite(sweep.xs)
    if sweep.grad_refs:
        grads = loaded.param_grads(sweep.xs[finite], sweep.dys[finite], **params)
        eps = float(np.finfo(sweep.dtype).eps)
        for p, (exact, scale) in sweep.grad_refs.items():
            got = float(grads[p])
            limit = float(np.finfo(sweep.dtype).max)
            if mpmath.isnan(exact) or abs(exact) > limit:
                err = 0.0 if (np.isinf(got) and abs(exact) > limit and (got > 0) == (exact > 0)) \
                    or (np.isnan(got) and mpmath.isnan(exact)) else np.inf
            else:
                err = float(abs(mpmath.mpf(got) - exact) / scale) / eps if scale else 0.0
            out.append(Result(act.name, loaded.backend, sweep.dtype, f"grad_{p}", "param_grad",
                              int(finite.sum()), err, err, float("nan"), got, float(exact), 0, 0,
                              act.budget("param_grad", sweep.dtype), err, unit="eps*sum|terms|"))
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
