"""Float intervals: where a float32 form computed in float is within its share of the budget.

A float form that is accurate only on an interval around 0 (silu: above x = -85, where sigmoid
is still a normal float) is computed in float there and in double elsewhere: the C loops check
each block of inputs against the interval (render.FLOAT_BLOCK). This module finds the interval
from per-point errors, on the sweep and on dense float inputs, and gives the form as the float
blocks see it (``within``).

Learnable parameters move at every training step: the interval is certified for a box of
parameter values around the defaults (``certify_params``), measured on a coarse grid of the box
(its corners and points on each axis, the box's ends included), so that the C loops, which check
the parameters once per call against the box, keep the float path while the parameters stay in it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import sympy as sp

from .ir import X, Form
from .measure import conditioned_distance, evaluate_form, measure_bounded, term_scale

RANGE_MIN = 12.0  # a float range (see select.Choice.float_range) must cover [-RANGE_MIN, RANGE_MIN]
#: The boxes a learnable parameter's float path is certified for, widest first: its default d
#: +- SPAN * |d| (a zero default: +- SPAN). Training moves parameters by tens of percent; the
#: narrower boxes are tried where a parameter value at the edge of the wider one leaves no
#: interval (the float form's error grows with the parameter: exp(alpha x) underflows sooner).
SPANS = (0.5, 0.25, 0.1)


def dense_xs() -> np.ndarray:
    """Dense float32 inputs of both signs: 2^-24 ... 128 log-spaced (where activations bend,
    underflow and saturate), then up to the overflow range, and a uniform grid."""
    mags = np.concatenate([np.geomspace(2.0 ** -24, 128.0, 6000), np.geomspace(128.0, 3.0e38, 200)])
    return np.concatenate([mags, -mags, np.linspace(-100.0, 100.0, 4001)]).astype(np.float32)


def dense_float_distances(form: Form, xs: np.ndarray, params: dict, scale) -> np.ndarray:
    """Per point, the error of a float32 form computed in float32 against the same form
    computed in double (then rounded), on dense inputs; inf where one is NaN or infinite and
    the other not. A check that computing in float loses nothing where the verification sweep
    has few points (e.g. silu's exp(x) going subnormal at x ~ -90, which costs 51 ULP in float):
    it can only reject computing in float (or limit it to an interval), never accept it."""
    ref = evaluate_form(form, xs, params, "float32", "double")
    got = evaluate_form(form, xs, params, "float32", "dtype")
    return conditioned_distance(got, ref, scale)


def float_range(xs: np.ndarray, dist: np.ndarray, limit: float) -> tuple[float, float] | None:
    """The interval around 0 on which a form computed in float measured within ``limit``:
    bounded by the nearest finite points of each sign over it, pulled in to the last good
    point inside, by 1/32 more and to an integer (the points are samples: the C kernel's
    exhaustive check then covers every input); the largest float where no point is over.
    None if it does not cover [-RANGE_MIN, RANGE_MIN] (no use: the blocks of ordinary inputs
    would go to double) or 0 itself is over."""
    top = float(np.finfo(np.float32).max)
    finite = np.isfinite(xs)
    xs, over = xs[finite].astype(np.float64), ~(dist[finite] <= limit)
    if over[xs == 0].any():
        return None
    bounds = []
    for sign in (-1, 1):
        side = sign * xs > 0
        bad = np.abs(xs[side & over])
        if not bad.size:
            bounds.append(sign * top)
            continue
        good = np.abs(xs[side & ~over])
        inside = good[good < bad.min()]
        edge = math.floor((inside.max() if inside.size else 0.0) * (1 - 1 / 32))
        bounds.append(float(sign * edge))
    lo, hi = bounds
    return (lo, hi) if lo <= -RANGE_MIN and hi >= RANGE_MIN else None


def open_ended(bounds: tuple[float, float], form: Form, fallback: Form, params: dict,
                dtype: str) -> tuple[float, float]:
    """A bound at the largest float becomes infinite where the form computed in float gives
    at that infinity what the double form gives (both NaN counts; -0 and 0 do not): the C
    loops then compare each input with one bound instead of two (silu: 5% of its time), and
    an infinite input no longer sends its block to double. NaN still does (it fails x >= lo)."""
    top = float(np.finfo(np.float32).max)
    out = list(bounds)
    for i, sign in ((0, -1.0), (1, 1.0)):
        if out[i] != sign * top:
            continue
        x = np.array([sign * math.inf], dtype=dtype)
        a = evaluate_form(form, x, params, dtype, "dtype")[0]
        b = evaluate_form(fallback, x, params, dtype, "double")[0]
        if (np.isnan(a) and np.isnan(b)) or (a == b and np.signbit(a) == np.signbit(b)):
            out[i] = sign * math.inf
    return out[0], out[1]


def within(form: Form, bounds: tuple[float, float]) -> Form:
    """The float variant of a ranged kernel as its blocks see it: only x in [lo, hi] (an
    infinite bound: +-inf too), never NaN (it fails every check, so the C needs no NaN guard
    there either). The guards (add_guards) whose test on x fails at both ends of the interval
    are dropped (the tests are monotone in x: false at both ends is false between)."""
    if not form.guards:
        return form
    # the guard pieces come before the form's own value, (value, True); SymPy merges guard
    # pieces of one value, so there may be fewer pieces than guards
    pieces, rest = form.result.args[:-1], form.result.args[-1:]
    ends = [sp.oo if math.isinf(b) and b > 0 else -sp.oo if math.isinf(b) else sp.Float(b, 30) for b in bounds]

    def dead(condition):
        tests = [a for a in ([condition] if condition.is_Relational else condition.args)
                 if a.is_Relational and a.has(X)]
        # x == x0 (a removable singularity's guard): dead if x0 is outside the interval;
        # the other tests are monotone in x: false at both ends is false between
        return any(not (bounds[0] <= float(t.rhs if t.lhs == X else t.lhs) <= bounds[1])
                   if isinstance(t, sp.Eq) else all(t.subs(X, e) == sp.false for e in ends)
                   for t in tests)

    live = [(value, cond) for value, cond in pieces if not dead(cond)]
    result = sp.Piecewise(*live, *rest) if live else rest[0][0]
    return replace(form, result=result, guards=tuple(v for v, _ in live))


def in_range(xs: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """The points a ranged kernel computes in float (the C check: lo <= x <= hi; NaN fails)."""
    with np.errstate(invalid="ignore"):
        return (xs >= bounds[0]) & (xs <= bounds[1])


def param_box(defaults: dict, learnable, span: float) -> tuple[tuple[str, float, float], ...]:
    """((name, lo, hi), ...) for every parameter: a learnable one's default +- span * |default|
    (+- span for a zero default), the ends rounded to float32 (the C compares float32 parameters
    with them; the grid measures those very values); the others at their default only."""
    box = []
    for p, d in defaults.items():
        w = (abs(d) * span if d != 0 else span) if p in learnable else 0.0
        box.append((p, float(np.float32(d - w)), float(np.float32(d + w))))
    return tuple(box)


def box_points(box, defaults: dict) -> list[dict]:
    """Parameter values in ``box`` (not the defaults): its corners, then along each moving
    parameter's axis (the others at their defaults) its ends and the points halfway to the
    default. Selection certifies the float path on these; actgen verify measures them."""
    moving = [(p, lo, hi) for p, lo, hi in box if lo < hi]
    points = [dict(defaults, **dict(zip([p for p, _, _ in moving], corner)))
              for corner in itertools.product(*[(lo, hi) for _, lo, hi in moving])]
    for p, lo, hi in moving:
        d = defaults[p]
        for v in (lo, float(np.float32((lo + d) / 2)), float(np.float32((d + hi) / 2)), hi):
            point = dict(defaults, **{p: v})
            if point not in points and point != defaults:
                points.append(point)
    return points if moving else []


def certify_params(form: Form, fallback: Form, xs: np.ndarray, defaults: dict, learnable, scale_expr,
                   limit: float, weight: float, bounds: tuple[float, float]):
    """(interval, box): the interval of x within ``bounds`` (measured at the defaults) on which
    the float32 ``form`` computed in float stays within ``limit`` at every point of the box's
    grid (box_points), and the widest box of SPANS for which that interval still covers
    [-RANGE_MIN, RANGE_MIN]. At each grid point the float form is measured (the C library's
    documented errors added at ``weight``, as selection does) against ``fallback``, the form the kernel computes
    in double there otherwise: the float path adds at most ``limit`` to what the double path
    gives. ``scale_expr``: the terms a derivative's error is conditioned on (None: forward).
    Without learnable parameters, or if no box holds, (bounds, the box of the defaults alone):
    other parameter values are computed in double."""
    for span in SPANS if learnable else ():
        box = param_box(defaults, learnable, span)
        lo, hi = bounds
        for params in box_points(box, defaults):
            found = _float_range_at(form, fallback, xs, params, scale_expr, limit, weight)
            if found is None:
                break
            lo, hi = max(lo, found[0]), min(hi, found[1])
            if lo > -RANGE_MIN or hi < RANGE_MIN:
                break
        else:
            return (lo, hi), box
    return bounds, param_box(defaults, (), 0.0)


def _float_range_at(form: Form, fallback: Form, xs: np.ndarray, params: dict, scale_expr, limit: float,
                    weight: float):
    """The interval (open where the two agree at that infinity) on which ``form`` in float is
    within ``limit`` of ``fallback`` in double, at the parameter values ``params``; None if none."""
    ref = evaluate_form(fallback, xs, params, "float32", "double")
    scale = None if scale_expr is None else term_scale(scale_expr, xs, params)
    m = measure_bounded(form, xs, ref, params, "float32", "dtype", scale, weight)
    found = float_range(xs, m.decisive, limit)
    return None if found is None else open_ended(found, form, fallback, params, "float32")
