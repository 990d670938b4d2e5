"""actgen/csrc/actgen_dd.h against mpmath at 240 bits.

Each function runs on about 1,500 double-double inputs (uniform and log-spaced over its domain,
both signs, subnormal and huge, near roots, poles and branch points, with random low parts and
with lo = 0) in a small shared library built from the header twice: strict C99 at -O2 for the
default target, and actgen's own flags (-O3, gnu11, OpenMP, -march=native) where the exact
products are hardware fmas and gcc may contract. Errors are in units of 2^-100 relative to the
exact value; below 2^-969 (where lo is subnormal and the format holds fewer bits) relative to
2^-969. The bounds are the measured maxima with a margin of about 2.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import mpmath as mp
import numpy as np
import pytest

HEADER = Path(__file__).resolve().parent.parent / "actgen" / "csrc" / "actgen_dd.h"
CC = shutil.which("gcc") or shutil.which("cc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler")

UNARY = ("exp expm1 exp2 log log1p log2 log10 sqrt cbrt sin cos tan asin acos atan sinh cosh tanh "
         "asinh acosh atanh erf erfc sigmoid softplus").split()
BINARY = ("pow", "hypot", "atan2")

#: max error in units of 2^-100 (relative; see the module docstring). pow's grows with |y log2 x|:
#: its bound is BOUNDS["pow"] * max(1, |y log2 x| / 32).
BOUNDS = {
    "exp": 0.05, "expm1": 0.05, "exp2": 0.05, "log": 0.1, "log1p": 0.1, "log2": 0.1, "log10": 0.1,
    "sqrt": 0.05, "cbrt": 0.6, "sin": 0.1, "cos": 0.1, "tan": 0.2, "asin": 0.2, "acos": 0.2,
    "atan": 0.1, "sinh": 0.1, "cosh": 0.1, "tanh": 0.1, "asinh": 0.1, "acosh": 0.2, "atanh": 0.2,
    "erf": 0.1, "erfc": 0.1, "sigmoid": 0.1, "softplus": 0.1, "pow": 1.0, "hypot": 0.1, "atan2": 0.2,
}

#: |x| from which sin, cos and tan are the C library's of hi and lo by the addition formula (about
#: a double's accuracy: glibc reduces each exactly), not the header's double-double reduction
TRIG_LIMIT = 2.0 ** 100
FLOOR = mp.ldexp(1, -969)
DBL_MAX = mp.mpf(np.finfo(float).max)

STRICT = ("-std=c99", "-O2", "-Wall", "-Wextra", "-pedantic", "-Werror")
ACTGEN = ("-std=gnu11", "-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-march=native",
          "-fno-tree-sink", "-fno-tree-pre", "-Wall", "-Wextra", "-pedantic", "-Werror")


# --- the library -----------------------------------------------------------------------------------

def _wrappers() -> str:
    src = ['#include "actgen_dd.h"']
    for f in UNARY:
        src.append(f"void t_{f}(const double *xh, const double *xl, double *yh, double *yl, long n) {{\n"
                   f"    for (long i = 0; i < n; i++) {{ actgen_dd r = actgen_dd_{f}(actgen_dd_make(xh[i], xl[i]));"
                   f" yh[i] = r.hi; yl[i] = r.lo; }}\n}}")
    for f in BINARY:
        src.append(f"void t_{f}(const double *xh, const double *xl, const double *wh, const double *wl,"
                   f" double *yh, double *yl, long n) {{\n    for (long i = 0; i < n; i++) {{ actgen_dd r = "
                   f"actgen_dd_{f}(actgen_dd_make(xh[i], xl[i]), actgen_dd_make(wh[i], wl[i]));"
                   f" yh[i] = r.hi; yl[i] = r.lo; }}\n}}")
    return "\n".join(src) + "\n"


def _build(tmp: Path, flags) -> ctypes.CDLL:
    tmp.mkdir(parents=True, exist_ok=True)
    src, so = tmp / "dd_lib.c", tmp / "dd_lib.so"
    src.write_text(_wrappers())
    subprocess.run([CC, *flags, "-shared", "-fPIC", "-I", str(HEADER.parent), str(src), "-o", str(so), "-lm"],
                   check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(so))


@pytest.fixture(scope="module", params=["strict", "actgen"])
def lib(request, tmp_path_factory):
    flags = STRICT if request.param == "strict" else ACTGEN
    try:
        return _build(tmp_path_factory.mktemp(request.param), flags)
    except subprocess.CalledProcessError as exc:
        if request.param == "actgen" and "march" in exc.stderr:
            pytest.skip("the compiler has no -march=native")
        raise AssertionError(exc.stderr)


_P = ctypes.POINTER(ctypes.c_double)


def call(lib, name, *args):
    args = [np.ascontiguousarray(a, dtype=np.float64) for a in args]
    n = len(args[0])
    yh, yl = np.empty(n), np.empty(n)
    getattr(lib, "t_" + name)(*[a.ctypes.data_as(_P) for a in args], yh.ctypes.data_as(_P),
                              yl.ctypes.data_as(_P), ctypes.c_long(n))
    return yh, yl


# --- references ------------------------------------------------------------------------------------

def _pow(x, y):
    if x < 0:
        if y != mp.floor(y):
            return mp.nan
        r = mp.power(-x, y)
        return -r if int(mp.floor(y)) % 2 else r
    return mp.power(x, y)


def _erf(x):
    return mp.erf(x) if abs(x) < 100 else mp.sign(x)


def _erfc(x):
    if abs(x) < 100:
        return mp.erfc(x)
    return mp.mpf(0) if x > 0 else mp.mpf(2)


REF = {
    "exp": mp.exp, "expm1": mp.expm1, "exp2": lambda x: mp.power(2, x), "log": mp.log,
    "log1p": mp.log1p, "log2": lambda x: mp.log(x, 2), "log10": mp.log10, "sqrt": mp.sqrt,
    "cbrt": lambda x: mp.sign(x) * mp.cbrt(abs(x)), "sin": mp.sin, "cos": mp.cos, "tan": mp.tan,
    "asin": mp.asin, "acos": mp.acos, "atan": mp.atan, "sinh": mp.sinh, "cosh": mp.cosh,
    "tanh": mp.tanh, "asinh": mp.asinh, "acosh": mp.acosh, "atanh": mp.atanh, "erf": _erf,
    "erfc": _erfc, "sigmoid": lambda x: 1 / (1 + mp.exp(-x)), "softplus": lambda x: mp.log1p(mp.exp(x)),
    "pow": _pow, "hypot": lambda a, b: mp.sqrt(a * a + b * b), "atan2": mp.atan2,
}


def exact(name, *args):
    """The exact value at 240 bits; NaN outside the real domain (as C)."""
    if any(mp.isnan(a) for a in args):
        return mp.nan
    with mp.workprec(240):
        try:
            v = REF[name](*args)
        except (ValueError, ZeroDivisionError):
            return mp.nan
        if isinstance(v, mp.mpc):
            return v.real if v.imag == 0 else mp.nan
        return +v


_cache: dict = {}


def exact_values(name, *arrays):
    with mp.workprec(240):
        return _exact_values(name, *arrays)


def _exact_values(name, *arrays):
    key = (name,) + tuple(a.tobytes() for a in arrays)
    if key not in _cache:
        n = len(arrays[0])
        if len(arrays) == 2:
            _cache[key] = [exact(name, mp.mpf(arrays[0][i]) + mp.mpf(arrays[1][i])) for i in range(n)]
        else:
            _cache[key] = [exact(name, mp.mpf(arrays[0][i]) + mp.mpf(arrays[1][i]),
                                 mp.mpf(arrays[2][i]) + mp.mpf(arrays[3][i])) for i in range(n)]
    return _cache[key]


# --- inputs ----------------------------------------------------------------------------------------

SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, -0.5, 2.0, 5e-324, -5e-324,
                     2.2250738585072014e-308, 1e-300, -1e-300, 1e300, -1e300, 1.7976931348623157e308,
                     -1.7976931348623157e308])


def with_lo(hi, rng):
    """Random low parts, |lo| < ulp(hi)/2, 0 for a third of the points and where hi is special."""
    hi = np.asarray(hi, float)
    with np.errstate(over="ignore", invalid="ignore"):
        lo = rng.uniform(-0.5, 0.5, hi.shape) * np.spacing(np.abs(hi))
    lo[rng.random(hi.shape) < 0.33] = 0.0
    lo[~np.isfinite(hi) | ~np.isfinite(lo) | (np.abs(hi) < 2.0 ** -1021)] = 0.0
    return lo


def logspace(lo, hi, n, rng):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def signed(v, rng):
    return v * rng.choice([-1.0, 1.0], len(v))


def near(points, rng, n_each=8, width=2.0 ** -20):
    out = [np.asarray(points, float)]
    for _ in range(n_each):
        out.append(np.asarray(points, float) * (1 + rng.uniform(-width, width, len(points))))
    return np.concatenate(out)


def near_multiples_of_pio2(rng, n=200, kmax=2 ** 60):
    """double-double inputs within a few units of 2^-106 of k pi/2 (the roots of sin, cos, tan)"""
    k = np.unique(np.concatenate([rng.integers(1, 64, n // 4), rng.integers(1, 2 ** 20, n // 4),
                                  np.exp2(rng.uniform(20, np.log2(kmax), n // 2)).astype(np.int64)]))
    hi, lo = [], []
    with mp.workprec(300):
        for kk in k:
            v = mp.pi * int(kk) / 2
            h = float(v)
            hi.append(h)
            lo.append(float(v - h))
    return np.array(hi), np.array(lo)


def unary_inputs(name, rng):
    u = rng.uniform
    tiny = logspace(5e-324, 1e-300, 40, rng)
    common = [SPECIALS, signed(tiny, rng)]
    dom = {
        "exp": [u(-746, 710, 600), signed(logspace(1e-300, 746, 500, rng), rng), near([709.78, -745.13, -708.4], rng)],
        "expm1": [u(-100, 710, 600), signed(logspace(1e-300, 1, 500, rng), rng), near([709.78, -37.4], rng)],
        "exp2": [u(-1076, 1025, 600), signed(logspace(1e-300, 1075, 500, rng), rng), near([1024.0, -1074.0, -1022.0], rng)],
        "log": [logspace(5e-324, 1.7e308, 800, rng), 1 + u(-2 ** -20, 2 ** -20, 300), u(0.5, 2, 200), -u(0, 10, 20)],
        "log1p": [signed(logspace(1e-300, 1e300, 600, rng), rng), -1 + logspace(1e-17, 1, 200, rng),
                  u(-0.3, 0.42, 300), u(-5, -1, 20)],
        "sqrt": [logspace(5e-324, 1.7e308, 1000, rng), u(0, 4, 200), -u(0, 1, 20)],
        "cbrt": [signed(logspace(5e-324, 1.7e308, 1000, rng), rng), u(-10, 10, 300)],
        "sin": [u(-10, 10, 500), signed(logspace(1e-300, 2.0 ** 99, 600, rng), rng), signed(logspace(2.0 ** 100, 1e300, 30, rng), rng)],
        "asin": [u(-1, 1, 600), signed(1 - logspace(2.0 ** -53, 0.5, 300, rng), rng), signed(logspace(1e-300, 1, 300, rng), rng), u(1, 3, 20)],
        "atan": [signed(logspace(1e-300, 1e300, 800, rng), rng), u(-5, 5, 400)],
        "sinh": [u(-711, 711, 500), signed(logspace(1e-300, 711, 600, rng), rng), near([710.47], rng)],
        "tanh": [u(-25, 25, 500), signed(logspace(1e-300, 60, 600, rng), rng)],
        "asinh": [signed(logspace(1e-300, 1.7e308, 900, rng), rng), u(-3, 3, 300)],
        "acosh": [1 + logspace(1e-300, 1.7e308, 800, rng), u(1, 3, 300), u(-3, 1, 30)],
        "atanh": [u(-1, 1, 600), signed(1 - logspace(2.0 ** -53, 0.5, 300, rng), rng), signed(logspace(1e-300, 1, 300, rng), rng), u(1, 3, 20)],
        "erf": [u(-7, 7, 600), signed(logspace(1e-300, 30, 600, rng), rng)],
        "erfc": [u(-7, 28, 700), signed(logspace(1e-300, 30, 400, rng), rng),
                 near([2.0 ** e * (1 + j / 8) for e in range(-1, 5) for j in range(8)], rng, 3, 2.0 ** -40), near([26.55, 27.2], rng)],
        "sigmoid": [u(-750, 750, 500), signed(logspace(1e-300, 750, 600, rng), rng)],
        "softplus": [u(-750, 750, 500), signed(logspace(1e-300, 750, 600, rng), rng)],
    }
    alias = {"log2": "log", "log10": "log", "cos": "sin", "tan": "sin", "acos": "asin", "cosh": "sinh"}
    hi = np.concatenate(common + dom[alias.get(name, name)])
    return hi, with_lo(hi, rng)


def binary_inputs(name, rng):
    u, n = rng.uniform, 500
    if name == "pow":
        x = np.concatenate([logspace(1e-300, 1e300, n, rng), u(0, 3, n), signed(u(0.5, 2, n), rng), u(-50, 50, n),
                            1 + u(-2 ** -30, 2 ** -30, 100), SPECIALS, np.repeat(SPECIALS, 3)[:57]])
        y = np.concatenate([u(-2, 2, n), u(-30, 30, n), u(-1000, 1000, n), rng.integers(-40, 40, n).astype(float),
                            u(-1e9, 1e9, 100), np.full(len(SPECIALS), 2.5), np.resize(SPECIALS, 57)])
    else:
        x = np.concatenate([signed(logspace(1e-300, 1e300, n, rng), rng), rng.normal(size=n), SPECIALS, np.repeat(SPECIALS, len(SPECIALS))])
        y = np.concatenate([signed(logspace(1e-300, 1e300, n, rng), rng), rng.normal(size=n), np.full(len(SPECIALS), 1.5), np.tile(SPECIALS, len(SPECIALS))])
    xl, yl = with_lo(x, rng), with_lo(y, rng)
    special = _special_row(x, y)
    xl[special] = yl[special] = 0.0
    return x, xl, y, yl


def _special_row(x, y):
    return ~np.isfinite(x) | ~np.isfinite(y) | (x == 0) | (y == 0)


def c_reference(name, x, y):
    """C99's value where an argument is 0, inf or NaN (Python's math follows Annex F)"""
    import math
    try:
        v = {"pow": math.pow, "hypot": math.hypot, "atan2": math.atan2}[name](x, y)
        if name == "atan2" and v != 0 and v == v:       # a multiple of pi/4, exactly
            with mp.workprec(240):
                return +(round(v / (math.pi / 4)) * mp.pi / 4)
        return mp.mpf(v)
    except ValueError:
        return mp.nan
    except OverflowError:
        return mp.inf if not (x < 0 and y == int(y) and int(y) % 2) else -mp.inf


def to_double(hi, lo):
    """actgen_dd_to_double"""
    return hi if lo == 0 else hi + lo


# --- error measures --------------------------------------------------------------------------------

def errors(yh, yl, ex, floor=None):
    """units of 2^-100, relative to max(|exact|, 2^-969, floor); inf where the class of value is wrong"""
    with mp.workprec(240):
        return _errors(yh, yl, ex, np.zeros(len(yh)) if floor is None else floor)


def _errors(yh, yl, ex, floor):
    out = np.zeros(len(yh))
    for i, e in enumerate(ex):
        h = yh[i]
        if mp.isnan(e):
            out[i] = 0.0 if np.isnan(h) else np.inf
        elif abs(e) > DBL_MAX * (1 + mp.ldexp(1, -53)):
            out[i] = 0.0 if np.isinf(h) and (h > 0) == (e > 0) else np.inf
        elif not np.isfinite(h):
            out[i] = np.inf
        else:
            out[i] = float(abs(mp.mpf(h) + mp.mpf(yl[i]) - e) / max(abs(e), FLOOR, mp.mpf(floor[i])) * mp.ldexp(1, 100))
    return out


def check_convention(yh, yl):
    bad = (~np.isfinite(yh) & (yl != 0)) | ((np.abs(yh) < 2.0 ** -1022) & (yl != 0))
    assert not bad.any(), f"lo must be 0 where hi is not finite or subnormal: {yh[bad][:5]} {yl[bad][:5]}"
    norm = np.isfinite(yh) & (yl != 0)
    with np.errstate(over="ignore"):
        assert (np.abs(yl[norm]) <= np.spacing(np.abs(yh[norm])) / 2).all(), "not normalised"


def rounding_misses(yh, yl, ex):
    """points where hi + lo rounded to double is not within 0.5 ULP + 2^-95 relative of exact"""
    with mp.workprec(240):
        return _rounding_misses(yh, yl, ex)


def _rounding_misses(yh, yl, ex):
    miss = []
    for i, e in enumerate(ex):
        if mp.isnan(e) or not np.isfinite(yh[i]) or abs(e) > DBL_MAX:
            continue
        d = yh[i] + yl[i]
        with np.errstate(over="ignore"):
            ulp = np.spacing(abs(float(e))) if float(e) != 0 else 5e-324
        if abs(mp.mpf(d) - e) > mp.mpf(ulp) / 2 + abs(e) * mp.ldexp(1, -95) + mp.ldexp(1, -1075):
            miss.append(i)
    return miss


# --- tests -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", UNARY)
def test_unary_accuracy(lib, name):
    rng = np.random.default_rng(sum(map(ord, name)))
    xh, xl = unary_inputs(name, rng)
    yh, yl = call(lib, name, xh, xl)
    ex = exact_values(name, xh, xl)
    if name in ("sin", "cos", "tan"):
        beyond = np.abs(xh) >= TRIG_LIMIT          # documented: a double's accuracy there
        for i in np.flatnonzero(beyond & np.isfinite(xh)):
            want = float(ex[i])
            ulps = 8 if name == "tan" else 4         # (tan: the quotient of the two)
            assert abs(yh[i] + yl[i] - want) <= ulps * np.spacing(abs(want)) + 1e-300, (name, xh[i], xl[i], yh[i], want)
        ex = [mp.nan if b else e for b, e in zip(beyond, ex)]
        yh, yl = np.where(beyond, np.nan, yh), np.where(beyond, 0.0, yl)
    err = errors(yh, yl, ex)
    i = int(np.argmax(err))
    assert err[i] <= BOUNDS[name], f"{name}({xh[i]!r} + {xl[i]!r}) = {yh[i]!r} + {yl[i]!r}, exact {ex[i]}: {err[i]:.3g} units of 2^-100"
    check_convention(yh, yl)
    miss = rounding_misses(yh, yl, ex)
    assert not miss, [(xh[i], xl[i], yh[i], yl[i], str(ex[i])) for i in miss[:3]]


@pytest.mark.parametrize("name", BINARY)
def test_binary_accuracy(lib, name):
    rng = np.random.default_rng(sum(map(ord, name)))
    xh, xl, wh, wl = binary_inputs(name, rng)
    yh, yl = call(lib, name, xh, xl, wh, wl)
    ex = exact_values(name, xh, xl, wh, wl)
    special = _special_row(xh, wh)
    ex = [c_reference(name, xh[i], wh[i]) if special[i] else e for i, e in enumerate(ex)]
    err = errors(yh, yl, ex)
    if name == "pow":
        with mp.workprec(60):
            scale = np.array([max(1.0, float(abs((mp.mpf(wh[i]) * mp.log(abs(mp.mpf(xh[i])), 2)))) / 32)
                              if np.isfinite(xh[i]) and xh[i] != 0 and np.isfinite(wh[i]) else 1.0 for i in range(len(xh))])
        err = err / scale
    i = int(np.argmax(err))
    assert err[i] <= BOUNDS[name], f"{name}({xh[i]!r} + {xl[i]!r}, {wh[i]!r} + {wl[i]!r}) = {yh[i]!r} + {yl[i]!r}, exact {ex[i]}: {err[i]:.3g}"
    check_convention(yh, yl)
    miss = rounding_misses(yh, yl, ex)
    assert not miss, [(xh[i], xl[i], wh[i], wl[i], yh[i], yl[i], str(ex[i])) for i in miss[:3]]


@pytest.mark.parametrize("name", ["sin", "cos", "tan"])
def test_trig_near_roots(lib, name):
    """double-double inputs as close to k pi/2 as the format allows, k up to 2^60: the error is
    relative, or absolute below 2^-210 max(1, |x|) (pi/2 is carried to 217 bits)"""
    xh, xl = near_multiples_of_pio2(np.random.default_rng(7))
    yh, yl = call(lib, name, xh, xl)
    ex = exact_values(name, xh, xl)
    if name == "tan":       # near its poles: the error of cot = 1/tan, as near the zeros of sin and cos
        with mp.workprec(240):
            pole = [abs(e) > 1 for e in ex]
            got = [1 / (mp.mpf(h) + mp.mpf(l)) if p else mp.mpf(h) + mp.mpf(l) for h, l, p in zip(yh, yl, pole)]
            ex = [1 / e if p else e for e, p in zip(ex, pole)]
            yh = np.array([float(g) for g in got])
            yl = np.array([float(g - mp.mpf(float(g))) for g in got])
    err = errors(yh, yl, ex, floor=np.maximum(1.0, np.abs(xh)) * 2.0 ** -110)
    i = int(np.argmax(err))
    assert err[i] <= 3.0, f"{name}({xh[i]!r} + {xl[i]!r}) = {yh[i]!r}, exact {ex[i]}: {err[i]:.3g}"


# C99 Annex F special values, with the signs of zeros
INF, NAN = float("inf"), float("nan")
SPECIAL_CASES = [
    ("exp", INF, INF), ("exp", -INF, 0.0), ("exp", 710.0, INF), ("exp", -746.0, 0.0), ("exp", -0.0, 1.0),
    ("expm1", -0.0, -0.0), ("expm1", -INF, -1.0), ("expm1", INF, INF), ("exp2", 1024.0, INF), ("exp2", -1075.0, 0.0),
    ("exp2", 3.0, 8.0), ("exp2", -1074.0, 5e-324), ("log", 0.0, -INF), ("log", -0.0, -INF), ("log", -1.0, NAN),
    ("log", INF, INF), ("log", 1.0, 0.0), ("log2", 8.0, 3.0), ("log2", 5e-324, -1074.0), ("log10", 1000.0, 3.0),
    ("log1p", -1.0, -INF), ("log1p", -2.0, NAN), ("log1p", -0.0, -0.0), ("log1p", INF, INF),
    ("sqrt", -0.0, -0.0), ("sqrt", -1.0, NAN), ("sqrt", INF, INF), ("sqrt", 4.0, 2.0), ("cbrt", -8.0, -2.0),
    ("cbrt", -0.0, -0.0), ("cbrt", -INF, -INF), ("sin", -0.0, -0.0), ("sin", INF, NAN), ("cos", INF, NAN),
    ("tan", -0.0, -0.0), ("asin", 2.0, NAN), ("asin", -0.0, -0.0), ("acos", 1.0, 0.0), ("acos", 1.5, NAN),
    ("atan", -0.0, -0.0), ("atan", INF, float(mp.pi / 2)), ("sinh", -0.0, -0.0), ("sinh", -INF, -INF),
    ("cosh", -INF, INF), ("tanh", -INF, -1.0), ("tanh", -0.0, -0.0), ("asinh", -0.0, -0.0), ("asinh", -INF, -INF),
    ("acosh", 1.0, 0.0), ("acosh", 0.5, NAN), ("acosh", INF, INF), ("atanh", 1.0, INF), ("atanh", -1.0, -INF),
    ("atanh", 2.0, NAN), ("atanh", -0.0, -0.0), ("erf", -0.0, -0.0), ("erf", -INF, -1.0), ("erfc", INF, 0.0),
    ("erfc", -INF, 2.0), ("sigmoid", INF, 1.0), ("sigmoid", -INF, 0.0), ("softplus", INF, INF),
    ("softplus", -INF, 0.0),
]


@pytest.mark.parametrize("name,x,want", SPECIAL_CASES)
def test_special_values(lib, name, x, want):
    yh, yl = call(lib, name, np.array([x]), np.array([0.0]))
    got = to_double(yh[0], yl[0])
    if np.isnan(want):
        assert np.isnan(yh[0]) and yl[0] == 0
    else:
        assert got == want and np.signbit(got) == np.signbit(want), (got, want)
        assert np.isfinite(yh[0]) or yl[0] == 0


POW_CASES = [  # C99 F.9.4.4
    (2.0, 0.0, 1.0), (NAN, 0.0, 1.0), (NAN, -0.0, 1.0), (1.0, NAN, 1.0), (1.0, INF, 1.0), (-1.0, INF, 1.0),
    (-1.0, -INF, 1.0), (0.0, -3.0, INF), (-0.0, -3.0, -INF), (-0.0, -2.0, INF), (-0.0, -0.5, INF),
    (0.0, 3.0, 0.0), (-0.0, 3.0, -0.0), (-0.0, 2.0, 0.0), (-0.0, 0.5, 0.0), (0.5, -INF, INF), (2.0, -INF, 0.0),
    (0.5, INF, 0.0), (2.0, INF, INF), (-INF, -3.0, -0.0), (-INF, -2.0, 0.0), (-INF, 3.0, -INF), (-INF, 2.5, INF),
    (INF, -1.0, 0.0), (INF, 0.5, INF), (-8.0, 1.0 / 3.0, NAN), (-2.0, 3.0, -8.0), (-2.0, -2.0, 0.25),
    (NAN, 1.0, NAN), (2.0, NAN, NAN), (10.0, 400.0, INF), (10.0, -400.0, 0.0), (2.0, -1074.0, 5e-324),
]


@pytest.mark.parametrize("x,y,want", POW_CASES)
def test_pow_special_values(lib, x, y, want):
    yh, yl = call(lib, "pow", np.array([x]), np.array([0.0]), np.array([y]), np.array([0.0]))
    if np.isnan(want):
        assert np.isnan(yh[0]) and yl[0] == 0
    else:
        assert to_double(yh[0], yl[0]) == want and np.signbit(yh[0]) == np.signbit(want), (yh[0], yl[0], want)


def test_pow_parity_of_double_double_exponents(lib):
    """y = 2^53 + 1 is an odd integer only in its low part; y = 3 + 2^-60 is not an integer"""
    x = np.array([-1.0, -0.0, -1.0])
    y = np.array([2.0 ** 53, 3.0, 3.0])
    ylo = np.array([1.0, 2.0 ** -60, 2.0 ** -60])
    yh, yl = call(lib, "pow", x, np.zeros(3), y, ylo)
    assert yh[0] == -1.0 and yh[1] == 0.0 and not np.signbit(yh[1]) and np.isnan(yh[2])


def test_hypot_and_atan2_special_values(lib):
    x = np.array([INF, NAN, 0.0, -0.0, 0.0, -0.0, 1.0, -INF, 0.0])
    y = np.array([NAN, INF, 0.0, 0.0, -0.0, -0.0, -INF, 1.0, 5e-324])
    yh, _ = call(lib, "hypot", x, np.zeros(9), y, np.zeros(9))
    assert list(yh[:2]) == [INF, INF] and yh[2] == 0.0 and yh[8] == 5e-324
    ah, al = call(lib, "atan2", y, np.zeros(9), x, np.zeros(9))     # atan2(y, x)
    want = [np.arctan2(b, a) for a, b in zip(x, y)]
    for got, lo, w in zip(ah, al, want):
        assert (np.isnan(got) and np.isnan(w)) or (got == w and np.signbit(got) == np.signbit(w))
        if w == np.pi:
            with mp.workprec(240):
                assert lo == float(mp.pi - mp.mpf(np.pi))   # the double-double pi


def test_arithmetic_and_conventions(tmp_path):
    """the basic operations: IEEE sums where hi parts cancel, exact products, inf and NaN with lo 0,
    comparisons false on NaN, max/min propagate NaN"""
    src = tmp_path / "t.c"
    src.write_text('#include <stdio.h>\n#include "actgen_dd.h"\n' r'''
int main(void) {
    const actgen_dd a = actgen_dd_make(1.0, 0x1p-60), b = actgen_dd_make(-1.0, 0x1p-70);
    const actgen_dd s = actgen_dd_add(a, b);
    const actgen_dd p = actgen_dd_mul(actgen_dd_from(1.0 + 0x1p-30), actgen_dd_from(1.0 - 0x1p-30));
    const actgen_dd q = actgen_dd_div(actgen_dd_from(1.0), actgen_dd_from(3.0));
    const actgen_dd t = actgen_dd_mul(q, actgen_dd_from(3.0));
    const actgen_dd big = actgen_dd_mul(actgen_dd_from(1e300), actgen_dd_from(1e10));
    const actgen_dd in = actgen_dd_add(actgen_dd_from(INFINITY), actgen_dd_make(1.0, 1e-20));
    const actgen_dd nn = actgen_dd_add(actgen_dd_from(INFINITY), actgen_dd_from(-INFINITY));
    const actgen_dd z = actgen_dd_div(actgen_dd_from(1.0), actgen_dd_from(-0.0));
    const actgen_dd n = actgen_dd_from(NAN);
    printf("%a %a\n%a %a\n%a %a\n%a %a\n", s.hi, s.lo, p.hi, p.lo, t.hi, t.lo, actgen_dd_to_double(q), 1.0 / 3.0);
    printf("%g %g %g %g %g %g\n", big.hi, big.lo, in.hi, in.lo, nn.lo, z.hi);
    printf("%d %d %d %d %d %d %d\n", actgen_dd_lt(n, a), actgen_dd_ge(n, a), actgen_dd_ne(n, n),
           actgen_dd_lt(actgen_dd_make(1.0, -0x1p-60), actgen_dd_from(1.0)), actgen_dd_le(a, a),
           actgen_dd_isnan(actgen_dd_max(a, n)), actgen_dd_isnan(actgen_dd_min(n, a)));
    const actgen_dd p3 = actgen_dd_powi(actgen_dd_from(3.0), 5), pm = actgen_dd_powi(actgen_dd_from(2.0), -3);
    const actgen_dd sg = actgen_dd_sign(actgen_dd_from(-0.0)), hv = actgen_dd_heaviside(actgen_dd_from(0.0), actgen_dd_from(0.25));
    printf("%g %g %g %g %g\n", p3.hi, pm.hi, sg.hi, hv.hi, actgen_dd_abs(actgen_dd_make(-1.0, 0x1p-60)).lo);
    return 0;
}
''')
    exe = tmp_path / "t"
    subprocess.run([CC, *STRICT, "-I", str(HEADER.parent), str(src), "-o", str(exe), "-lm"], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines()
    s = out[0].split()
    assert float.fromhex(s[0]) == 2.0 ** -60 + 2.0 ** -70 and float.fromhex(s[1]) == 0.0   # no cancellation loss
    p = [float.fromhex(v) for v in out[1].split()]
    assert p == [1.0, -(2.0 ** -60)]                                                     # exact product
    t = [float.fromhex(v) for v in out[2].split()]
    assert t[0] == 1.0 and abs(t[1]) < 2.0 ** -104
    assert float.fromhex(out[3].split()[0]) == float.fromhex(out[3].split()[1])
    assert out[4].split() == ["inf", "0", "inf", "0", "0", "-inf"]
    assert out[5].split() == ["0", "0", "1", "1", "1", "1", "1"]
    assert out[6].split() == ["243", "0.125", "-0", "0.25", "-8.67362e-19"]


COMPILERS = [c for c in ("gcc", "clang") if shutil.which(c)]


@pytest.mark.parametrize("cc", COMPILERS)
@pytest.mark.parametrize("flags", [STRICT, ("-std=gnu11", "-O3", "-fno-math-errno", "-fno-trapping-math",
                                            "-march=x86-64-v3", "-Wall", "-Wextra", "-pedantic", "-Werror")])
def test_compiles_without_warnings(tmp_path, cc, flags):
    if "-march=x86-64-v3" in flags and not re.match(r"x86_64|AMD64", subprocess.run(
            ["uname", "-m"], capture_output=True, text=True).stdout):
        pytest.skip("x86-64 flags")
    src = tmp_path / "w.c"
    src.write_text(_wrappers())
    res = subprocess.run([cc, *flags, "-c", "-I", str(HEADER.parent), str(src), "-o", str(tmp_path / "w.o")],
                         capture_output=True, text=True)
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr


@pytest.mark.skipif(not (shutil.which("aarch64-linux-gnu-gcc") and shutil.which("qemu-aarch64")),
                    reason="no aarch64 cross compiler or qemu")
def test_aarch64_smoke(tmp_path):
    src = tmp_path / "a.c"
    src.write_text('#include <stdio.h>\n#include "actgen_dd.h"\n' r'''
int main(void) {
    const actgen_dd x = actgen_dd_make(0.75, 0x1p-60);
    const actgen_dd r[] = { actgen_dd_exp(x), actgen_dd_log(x), actgen_dd_sin(x), actgen_dd_atan2(x, actgen_dd_from(-2.0)),
                            actgen_dd_erfc(x), actgen_dd_pow(x, actgen_dd_from(2.5)), actgen_dd_cbrt(actgen_dd_neg(x)) };
    for (unsigned i = 0; i < sizeof r / sizeof r[0]; i++) printf("%a %a\n", r[i].hi, r[i].lo);
    return 0;
}
''')
    exe = tmp_path / "a"
    subprocess.run(["aarch64-linux-gnu-gcc", *STRICT, "-O2", "-I", str(HEADER.parent), str(src), "-o", str(exe), "-lm"], check=True)
    out = subprocess.run(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", str(exe)], capture_output=True, text=True,
                         check=True).stdout.split()
    with mp.workprec(240):
        x = mp.mpf(0.75) + mp.ldexp(1, -60)
        want = [mp.exp(x), mp.log(x), mp.sin(x), mp.atan2(x, -2), mp.erfc(x), mp.power(x, 2.5), -mp.cbrt(x)]
        for i, w in enumerate(want):
            got = mp.mpf(float.fromhex(out[2 * i])) + mp.mpf(float.fromhex(out[2 * i + 1]))
            assert abs(got - w) / abs(w) < mp.ldexp(1, -100), (i, got, w)


# --- the coefficient tables ------------------------------------------------------------------------

def _fit(f, a, b, degree, center):
    """monomial coefficients in t = x - center of the polynomial interpolating f at the
    Chebyshev points of [a, b] (320 bits)"""
    a, b, center = mp.mpf(a), mp.mpf(b), mp.mpf(center)
    h = (b - a) / 2
    xs = [(a + b) / 2 + h * mp.cos(mp.pi * (i + mp.mpf(0.5)) / (degree + 1)) for i in range(degree + 1)]
    m = mp.matrix([[(x - center) ** k for k in range(degree + 1)] for x in xs])
    c = mp.lu_solve(m, mp.matrix([f(x) for x in xs]))
    return [c[k] for k in range(degree + 1)]


def header_tables():
    """the polynomials of actgen_dd.h, computed as they were: expm1 (degree 10 on |r| <= 0.0218),
    sin and cos (degree 10 in z = r^2 <= 0.786^2), erf/erfcx (degree 21 on 49 intervals)"""
    with mp.workprec(320):
        tiny = mp.mpf("1e-40")
        expm1 = _fit(lambda r: (mp.expm1(r) - r - r * r / 2) / r ** 3 if abs(r) > tiny else mp.mpf(1) / 6,
                     "-0.0218", "0.0218", 10, 0)
        z = mp.mpf("0.786") ** 2
        sin = _fit(lambda v: (mp.sin(mp.sqrt(v)) / mp.sqrt(v) - 1) / v if v > tiny else -mp.mpf(1) / 6, 0, z, 10, 0)
        cos = _fit(lambda v: (mp.cos(mp.sqrt(v)) - 1 + v / 2) / v ** 2 if v > tiny else mp.mpf(1) / 24, 0, z, 10, 0)
        erfcx = lambda v: mp.erfc(v) * mp.exp(v * v)
        rows = [_fit(lambda v: mp.erf(mp.sqrt(v)) / mp.sqrt(v) if v else 2 / mp.sqrt(mp.pi), 0, "0.25", 15, 0)
                + [mp.mpf(0)] * 6]
        for e in range(-1, 5):
            for j in range(8):
                a, b = mp.ldexp(1 + mp.mpf(j) / 8, e), mp.ldexp(1 + mp.mpf(j + 1) / 8, e)
                rows.append(_fit(erfcx, a, b, 21, (a + b) / 2))
        return {"expm1": expm1, "sin": sin, "cos": cos, "erfc": rows}


def _pairs(values):
    with mp.workprec(320):
        return [(float(v), float(v - mp.mpf(float(v)))) for v in values]


def test_coefficient_tables_are_reproducible():
    """every coefficient in the header is the double (or double-double) of the recomputed one"""
    text = HEADER.read_text()
    numbers = {float(m) for m in re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", text)}
    t = header_tables()
    for name, n_dd in (("expm1", 6), ("sin", 8), ("cos", 7)):     # the first n_dd in double-double
        for k, (hi, lo) in enumerate(_pairs(t[name])):
            assert hi in numbers, (name, k, hi)
            assert k >= n_dd or lo in numbers, (name, k, lo)
    table = re.search(r"actgen_ddi_erfc_hi\[22\]\[49\] = \{(.*?)\};", text, re.S).group(1)
    rows_hi = [[float(v) for v in re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", r)] for r in table.split("},")[:22]]
    lo_table = re.search(r"actgen_ddi_erfc_lo\[14\]\[49\] = \{(.*?)\};", text, re.S).group(1)
    rows_lo = [[float(v) for v in re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", r)] for r in lo_table.split("},")[:14]]
    for i, row in enumerate(t["erfc"]):
        for k, (hi, lo) in enumerate(_pairs(row)):
            assert rows_hi[k][i] == hi, (i, k)
            if k < 14:
                assert rows_lo[k][i] == lo, (i, k)
