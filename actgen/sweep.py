"""Sweeps: the inputs an activation is measured at, and the reference value of every kernel there.

A sweep (per activation and dtype) is shared by selection (which measures candidate forms on
it) and verification (which measures the compiled kernels on it). Its references are mpmath
values, correctly rounded, memoised on disk by content: the sweeps of unchanged specs are
reused.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import mpmath
import numpy as np
import sympy as sp

from . import reference as reference_module
from .activation import Activation
from .build import cache_root
from .derive import derive, kink_points, singular_points
from .ir import X, Kernel, param_symbol
from .reference import evaluate, limit_at_infinity, limit_at_point, limit_at_zero, reference

DY = sp.Symbol("dy", real=True)


def param_values(act: Activation, dtype: str, overrides: dict | None = None) -> dict:
    """Parameter values as the kernel of ``dtype`` sees them (rounded to that dtype: a default of
    1e300 is inf in float32, as the float32 kernel gets it)."""
    t = np.dtype(dtype).type
    values = dict(act.params, **(overrides or {}))
    with np.errstate(over="ignore"):
        return {p: float(t(v)) for p, v in values.items()}


def reference_values(expr: sp.Expr, xs: np.ndarray, dtype: str, params: dict,
                     dys: np.ndarray | None = None, *, weights: tuple = (), variable: sp.Symbol = X,
                     removable: tuple = ()) -> np.ndarray:
    """Correctly rounded values of ``expr`` (times dy, and times each array of ``weights``, if
    given) at each x (the values of ``variable``), in ``dtype``. At the points of ``removable``
    (where the expression is 0/0: derive.singular_points), its two-sided limit, if it has one."""
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
            if math.isnan(out[i]) and x in removable:
                value = limit_at_point(expr, params, x, dtype, variable=variable) * math.prod(ws)
                out[i] = float(np.dtype(dtype).type(value)) if not math.isnan(value) else math.nan
            if x == 0 and math.isnan(out[i]):
                # undefined at 0 itself (a pole: -1/expm1(-x)): the limit from the zero's side
                value = limit_at_zero(expr, params, -1 if math.copysign(1, x) < 0 else 1, dtype,
                                      variable=variable) * math.prod(ws)
                out[i] = float(np.dtype(dtype).type(value)) if not math.isnan(value) else math.nan
    return out.astype(dtype)


def sample_points(act: Activation, dtype: str, *, dense: int = 241, span: float = 30.0,
                  magnitudes: int = 40, max_magnitude: float | None = None, randoms: int = 60,
                  seed: int = 0, specials: bool = False, per_decade: int = 5) -> np.ndarray:
    """Test inputs: a dense grid on [-span, span], log-spaced magnitudes of both signs from the
    smallest subnormal to ``max_magnitude`` (default: the largest finite) and, ``per_decade`` to a
    decade, from 1e-6 to 1e4, +-0, the kinks and their float neighbours, random draws; with
    ``specials``, +-inf and nan too."""
    t = np.dtype(dtype).type
    info = np.finfo(dtype)
    pts = [np.linspace(-span, span, dense), [0.0, -0.0, 1e-30, -1e-30, span, -span]]
    tiny_exp = math.log10(float(info.smallest_subnormal))
    top = math.log10(max_magnitude) if max_magnitude else math.log10(float(info.max)) - 0.01
    # The whole range, sparsely (a point every 15 decades or so), and the decades around 1 where
    # activations cancel (sqrt(x^2 + 1) - 1, exp(x) - 1, a sum of terms near 1/2), densely: between
    # the dense grid's spacing and the tails, a sweep with only the first saw bent identity's 10 ULP
    # at x = -0.022 once in a random draw and chose that form on the strength of its 2 ULP elsewhere.
    band = np.logspace(-6, min(4.0, top), 10 * per_decade + 1)
    mags = np.concatenate([np.logspace(tiny_exp, top, magnitudes), band])
    pts += [mags, -mags]
    for k in kink_points(act, exact=True) + singular_points(act):
        kk = t(float(k))
        if sp.Float(kk, 60) == k or not np.isfinite(kk):
            near = [kk, np.nextafter(kk, t(np.inf)), np.nextafter(kk, t(-np.inf))]
        else:
            # a kink between two floats: which side the kernel's rounded comparison (x - e vs
            # pi x) puts the floats next to it is not the function's business, and its derivative
            # jumps there; 16 ULPs away each side is unambiguous
            step = np.spacing(kk) * t(16)
            near = [kk + step, kk - step]
        pts.append([*near, kk + t(1e-3) * max(t(1), abs(kk)), kk - t(1e-3) * max(t(1), abs(kk))])
    for r in root_points(act, dtype, span):
        # where f crosses 0 away from 0, a form that cancels there (sin(x) - cos(x) at 5 pi / 4)
        # has no correct digit left: its float neighbours, and a few ULPs and relative steps off
        rr = t(r)
        steps = [np.spacing(rr) * t(k) for k in (1, 4, 64)] + [abs(rr) * t(d) for d in (1e-6, 1e-3)]
        pts.append([rr, *(rr + s for s in steps), *(rr - s for s in steps)])
    rng = np.random.default_rng(seed)
    pts.append(rng.normal(0.0, 5.0, randoms))
    if specials:
        pts.append([np.inf, -np.inf, np.nan])
    xs = np.concatenate([np.asarray(p, dtype=np.float64) for p in pts]).astype(dtype)
    # keep -0 distinct from 0 while dropping exact duplicates
    _, idx = np.unique(xs.view(np.int32 if dtype == "float32" else np.int64), return_index=True)
    return xs[np.sort(idx)]


def root_points(act: Activation, dtype: str, span: float = 30.0) -> tuple[float, ...]:
    """The floats of ``dtype`` nearest the x in [-span, span], away from 0, where the activation
    (at its default parameters, rounded to ``dtype``) changes sign: a grid's sign changes, each
    bisected in 128-bit arithmetic (a change across a jump is no root). Only elementwise
    activations, not derived orders: the forward kernel of f^(k) is measured conditioned on its
    terms, as a derivative is, so a root is not where it loses its budget."""
    if act.kind != "elementwise" or act.order:
        return ()
    t = np.dtype(dtype).type
    return tuple(float(t(r)) for r in _roots(act.expr, tuple(sorted(param_values(act, dtype).items())), float(span)))


@functools.lru_cache(maxsize=512)
def _roots(expr: sp.Expr, params: tuple, span: float) -> tuple[float, ...]:
    env = {param_symbol(p): v for p, v in params}

    def value(x):
        try:
            v = evaluate(expr, {**env, X: x}, 128)
        except (ArithmeticError, ValueError, TypeError):
            return None
        return v if isinstance(v, mpmath.mpf) and mpmath.isfinite(v) else None

    grid = np.linspace(-span, span, 241)
    values = [value(float(x)) for x in grid]
    # a grid point where f is 0 between two where it is not (a flat 0, relu's left half, is none)
    roots = [float(grid[i]) for i in range(1, len(grid) - 1) if values[i] == 0 and abs(grid[i]) > 1e-3
             and values[i - 1] and values[i + 1]]
    with mpmath.workprec(128):
        for a, fa, b, fb in zip(grid, values, grid[1:], values[1:]):
            if fa is None or fb is None or fa == 0 or fb == 0 or (fa > 0) == (fb > 0):
                continue
            lo, hi, flo = mpmath.mpf(a), mpmath.mpf(b), fa
            for _ in range(80):
                mid = (lo + hi) / 2
                fm = value(mid)
                if fm is None or fm == 0:
                    lo = hi = mid
                    break
                if (fm > 0) == (flo > 0):
                    lo, flo = mid, fm
                else:
                    hi = mid
            r = (lo + hi) / 2
            fr = value(r)
            if fr is not None and abs(fr) <= 1e-12 * max(abs(fa), abs(fb)) and abs(r) > 1e-3:
                roots.append(float(r))
    return tuple(roots)


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


def _memo_path(key: str) -> Path:
    return cache_root() / "refs" / f"{key}.npy"


@functools.cache
def _reference_code_hash() -> bytes:
    """The code that computes references (reference.py and this module): part of every memo key,
    so that a changed reference (a limit at 0, a new far-argument rule) is never served stale."""
    return hashlib.sha256(Path(reference_module.__file__).read_bytes() + Path(__file__).read_bytes()).digest()


def memoised_reference(expr, xs, dtype, params, dys=None, *, weights=(), variable=X, removable=()) -> np.ndarray:
    """reference_values, kept on disk by content (the sweeps of unchanged specs are reused). A
    memo that cannot be read, or holds another shape or dtype (a damaged cache), is recomputed;
    one that cannot be written (a full or read-only disk) is skipped, leaving no temporary file."""
    h = hashlib.sha256(_reference_code_hash() + sp.srepr(expr).encode())
    h.update(repr(sorted(params.items())).encode() + dtype.encode() + xs.tobytes() + str(variable).encode()
             + repr(removable).encode())
    for a in ([dys] if dys is not None else []) + list(weights):
        h.update(b"|" + np.asarray(a).tobytes())
    path = _memo_path(h.hexdigest())
    try:
        cached = np.load(path, allow_pickle=False)
        if cached.shape == xs.shape and cached.dtype == np.dtype(dtype):
            return cached
    except (OSError, ValueError, EOFError):
        pass
    values = reference_values(expr, xs, dtype, params, dys=dys, weights=weights, variable=variable,
                              removable=removable)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(tmp, values)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return values


def make_sweep(act: Activation, dtype: str, *, quick: bool = False, max_magnitude=None,
               specials: bool = True, kernels: list[Kernel] | None = None, seed: int = 1,
               selection_only: bool = False, params: dict | None = None) -> Sweep:
    """Inputs (sample_points) and references for every kernel of ``act`` in ``dtype``, at the
    default parameter values or, with ``params``, at those (the others at their defaults).

    ``selection_only``: only the per-element references of the kernel expressions
    (``kernel_refs``), which is all choosing a form needs; not the dy-weighted ones or the sums."""
    if quick:
        xs = sample_points(act, dtype, dense=81, magnitudes=24, randoms=20, max_magnitude=max_magnitude,
                           specials=specials, seed=seed - 1, per_decade=2)
    else:
        xs = sample_points(act, dtype, max_magnitude=max_magnitude, specials=specials, seed=seed - 1)
    dys = np.random.default_rng(seed).uniform(-2.0, 2.0, xs.size).astype(dtype)
    params = param_values(act, dtype, params)
    refs, grad_refs, kernel_refs = {}, {}, {}
    finite = np.isfinite(xs)
    symbols = {param_symbol(p): v for p, v in params.items()}
    for k in kernels or derive(act):
        if k.kind == "backward_y":       # a function of y, measured at y = f(x) by check_output_form
            continue
        if not selection_only and act.kind != "elementwise":
            continue                     # gated and rowwise checks compute their own references
        t = np.dtype(dtype).type
        removable = tuple(float(t(v)) for v in singular_points(act, k.exact))
        kernel_refs[k.name] = memoised_reference(k.exact, xs, dtype, params, removable=removable)
        if selection_only:
            continue
        if k.kind == "forward":
            refs[k.name] = kernel_refs[k.name]
        elif k.kind == "backward":
            refs[k.name] = memoised_reference(k.exact, xs, dtype, params, dys=dys, removable=removable)
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
