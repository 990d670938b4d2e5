"""Float intervals: where a float32 form computed in float is within its share of the budget.

A float form that is accurate only on an interval around 0 (silu: above x = -85, where sigmoid
is still a normal float) is computed in float there and in double elsewhere: the C loops check
each block of inputs against the interval (render.FLOAT_BLOCK). This module finds the interval
from per-point errors, on the sweep and on dense float inputs, and gives the form as the float
blocks see it (``within``).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import sympy as sp

from .ir import X, Form
from .measure import conditioned_distance, evaluate_form

RANGE_MIN = 12.0  # a float range (see select.Choice.float_range) must cover [-RANGE_MIN, RANGE_MIN]


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
