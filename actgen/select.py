"""Choose, per kernel and dtype, the form to generate, by measurement (the approach of Herbie).

Candidates differ in formula (the stable rewrite, its compensated variant, alternatives.ALTERNATIVES
such as rationalising sqrt(a) - b, the expression as written) and, for float32, in the type the
arithmetic is done in (float, or double rounded once at the end). Each candidate gets the
guards it needs (guards.add_guards) and is evaluated by the kernel model (measure.evaluate_form:
host-independent) on the sweep against the mpmath reference.

Policy: the first candidate, in order of cost, that is within the ULP budget and has no spurious
NaN/inf; if none is, the most accurate one. "Within": on the model, and with the documented errors
of the C library functions it calls added (measure.libm_bound); a float32 form computed in float
must keep the model's error within MARGIN of the budget (the dense float check and libm's
margin). A float32 candidate computed in float that is within that only on an interval around 0
(silu: above x = -85) is kept there, the same form computed in double elsewhere
(Choice.float_range: the C loops check blocks of inputs), for every value of the learnable
parameters in a box around their defaults (Choice.param_box, ranges.certify_params: the C
loops check the parameters once per call). The naive candidate (the expression as
written, computed in the dtype: what lambdify would give) is measured too, to show what was
gained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from .activation import Activation
from .compensate import compensate, float_compensable
from .derive import derive, differentiate, singular_points
from .guards import add_guards, kernel_limits, with_asymptotic_guards, with_local_series
from .ir import DTYPES, X, Form, Kernel, param_symbol
from .measure import measure, measure_bounded, term_scale
from .ranges import certify_params, dense_float_distances, dense_xs, float_range, in_range, open_ended
from .reference import reference
from .alternatives import ALTERNATIVES
from .rewrite import lower, stable_form, stable_source
from .spec import parse_expression
from .sweep import make_sweep, root_points

#: Candidates that cost less than the stable rewrite (fewer transcendental calls), tried before it.
CHEAPER = frozenset({"softplus rational"})
MARGIN = 0.5      # a float candidate must be within MARGIN * budget to be preferred


@dataclass(frozen=True)
class Measured:
    label: str
    compute: str          # "dtype" (the kernel's own type) or "double"
    error: float          # max error on the sweep (ULPs; conditioned for derivatives)
    nonfinite: int        # spurious NaN/inf (or missing ones)
    bound: float = math.nan   # the error with the C library's documented errors added (libm_bound)


@dataclass(frozen=True)
class Choice:
    kernel: Kernel
    dtype: str
    form: Form
    compute: str                      # "dtype", "double" or "wide" (double-double)
    label: str
    error: float
    naive: Measured | None
    measured: tuple[Measured, ...] = field(default=())
    #: float32 computed in float only for x in [lo, hi] (where it measured within its share of
    #: the budget): the C loops check each block of elements and compute a block with any x
    #: outside (NaN included; +-inf where that bound is finite) with ``fallback``, the form computed in double
    float_range: tuple[float, float] | None = None
    fallback: Form | None = None
    fallback_error: float = math.nan      # the double form's error on its own (on every point)
    #: ((parameter, lo, hi), ...): the parameter values (float32) for which ``float_range`` holds
    #: (ranges.certify_params); lo == hi: that parameter's default only. Others: in double
    param_box: tuple[tuple[str, float, float], ...] = ()
    #: the error with the documented errors of the C library functions it calls added (libm_bound)
    bound: float = math.nan
    #: within the budget on the whole sweep (no spurious NaN/inf); if not, where it is worst
    within: bool = True
    worst_x: float = math.nan
    nonfinite: int = 0

    @property
    def c_compute(self) -> str:
        """The C type of the arithmetic: the one selection measured. A float32 form is chosen
        in float only if its float evaluation stays within MARGIN (half) of the budget and
        within the budget with the C library's documented errors. exp, sigmoid, softplus and
        erfc (with a compensated argument) are actgen's own float functions there, which the
        model follows operation by operation; the other functions are libmvec's vector float
        functions, correctly rounded in the model and bounded by their documented errors.
        ``actgen verify`` (and the accuracy tests) then measure the compiled kernel itself. In
        float, a vector holds 16 lanes instead of 8: 2-3x the throughput (measured)."""
        if self.compute == "wide":
            return "wide"
        if self.compute == "double" or self.dtype == "float64":
            return "double"
        return "float"

    def range_text(self) -> str:
        lo, hi = self.float_range
        return f"in float on [{_bound_text(lo)}, {_bound_text(hi)}]{self.box_text()}, else in double"

    def box_text(self) -> str:
        """" for beta in [0.5, 1.5]": the parameter values the float interval holds for."""
        moving = [f"{p} in [{lo:g}, {hi:g}]" for p, lo, hi in self.param_box if lo < hi]
        fixed = [f"{p} = {lo:g}" for p, lo, hi in self.param_box if lo == hi]
        return f" for {' and '.join(moving + fixed)}" if self.param_box else ""


def _bound_text(v: float) -> str:
    if math.isinf(v):
        return "-inf" if v < 0 else "inf"
    return "-max" if v == -float(np.finfo(np.float32).max) else (
        "max" if v == float(np.finfo(np.float32).max) else f"{v:g}")


def _user_form(act: Activation) -> sp.Expr | None:
    """The expression as written (SymPy's canonical grouping undone: evaluate=False)."""
    try:
        with sp.evaluate(False):
            return parse_expression(act.expr_text, act.symbols)
    except Exception:  # noqa: BLE001 - an unevaluated form is only a candidate
        return None


def candidates(act: Activation, kernel: Kernel) -> list[tuple[str, Form]]:
    """(label, form) pairs, cheapest first (the stable rewrite is always first)."""
    source, rules = stable_source(kernel, act.expr)
    rewritten = lower(source, rules)
    out = [("rewritten", rewritten)]
    compensated = compensate(rewritten)
    if compensated is not None:
        out.append(("compensated", compensated))
    for alternative in ALTERNATIVES:
        start, before = {"exact": (kernel.exact, []), "source": (source, rules),
                         "stable": (rewritten.stable, rewritten.rules)}[alternative.of]
        other = alternative.apply(start)
        if other is not None and other != start:
            out.append((alternative.label, lower(other, [*before, alternative.rule])))
    if kernel.kind == "forward":
        written = _user_form(act)
        if written is not None and written != source:
            out.append(("as written", Form((), written, ("as written",), written)))
    return out


def naive_form(act: Activation, kernel: Kernel) -> Form:
    """What a user would get without actgen: the expression (or its plain SymPy derivative)
    evaluated as is."""
    if kernel.kind == "forward":
        expr = _user_form(act) or act.expr
    else:
        var = X if kernel.kind == "backward" else param_symbol(kernel.param)
        expr = differentiate(act.expr, var)
    return Form((), expr, ("naive",), expr)


def plain_ulps(act: Activation, kernel: Kernel) -> bool:
    """Whether a kernel's error is measured in plain ULPs: a spec's forward kernel. Derivatives
    (f', the forward kernel of a derived order f^(k)) are measured conditioned, in ULPs of
    max(|f^(k)|, the sum of |terms|): where the terms cancel (a zero of f^(k)), no form is
    relatively accurate and none is asked to be."""
    return kernel.kind == "forward" and not act.order


def choose(act: Activation, kernel: Kernel, sweep, limits=None) -> Choice:
    """The form of ``kernel`` for ``sweep.dtype``."""
    dtype = sweep.dtype
    params = sweep.params
    ref = sweep.kernel_refs[kernel.name]
    budget = act.budget(kernel.kind, dtype)
    if limits is None:
        limits = kernel_limits(act, kernel)
    computes = ["dtype", "double"] if dtype == "float32" else ["dtype"]
    options = candidates(act, kernel)
    # cheaper candidates are tried first; the stable rewrite stays options[0] (its terms scale the
    # derivatives' errors, and it is the form the fallbacks compute in double)
    tried = sorted(options, key=lambda option: option[0] not in CHEAPER)
    scale = None if plain_ulps(act, kernel) else term_scale(options[0][1].stable, sweep.xs, params)
    measured, best = [], None
    pools: dict[str, list] = {c: [] for c in computes}     # compute -> [(label, form, measurement)]
    dense = dense_scale = None
    held = None     # a float form on an interval at the default parameter values only
    for compute in computes:
        in_float = compute == "dtype" and dtype == "float32"
        close = None
        for label, form in tried:
            if form.compensated and dtype == "float32" and (compute == "double" or not float_compensable(form)):
                continue                    # float32 computed in double needs no compensation;
                                            # in float, float-float exp and erfc only
            guarded = add_guards(form, limits, act, dtype, compute)
            # in float, the model's error must be within MARGIN of the budget and the bound (the
            # C library's documented errors added) within the budget; elsewhere both within it
            m = measure_bounded(guarded, sweep.xs, ref, params, dtype, compute, scale,
                                MARGIN if in_float else 1.0)
            guarded, m = _tails(act, guarded, m, sweep, ref, compute, scale, budget * (MARGIN if in_float else 1.0))
            guarded, m = _near_points(act, kernel, guarded, m, sweep, ref, compute, scale,
                                      budget * (MARGIN if in_float else 1.0))
            err, nonfinite, decisive = m.error, m.nonfinite, m.decisive_max
            measured.append(Measured(label, compute, err, nonfinite, m.bound))
            if in_float:
                if dense is None:
                    dense = dense_xs()
                    dense_scale = (None if plain_ulps(act, kernel)
                                   else term_scale(options[0][1].stable, dense, params))
                dist_d = dense_float_distances(guarded, dense, params, dense_scale)
                err_d = float(np.max(dist_d))
                if kernel.kind != "param_grad" and (nonfinite or decisive > budget * MARGIN
                                                    or err_d > budget * MARGIN):
                    plain = options[0][1] if form.compensated else form
                    # in double, a cheaper candidate may do (blocks outside the interval, and
                    # forward_with_derivative where the derivative is computed in double)
                    doubles = [f for l, f in options if l in CHEAPER and f is not plain] + [plain]
                    ranged = _ranged(act, kernel, sweep, scale, limits, label, doubles, guarded,
                                     (sweep.xs, m.decisive), (dense, dist_d), measured,
                                     None if kernel.kind == "forward" else options[0][1].stable)
                    if ranged is not None:
                        if not act.learnable or any(lo < hi for _, lo, hi in ranged.param_box):
                            return ranged
                        # training moves the parameters off the defaults at its first step: a
                        # costlier candidate (a compensated argument) may hold for a box of them
                        held = held or ranged
                        continue
                if nonfinite == 0 and decisive <= budget and err_d > budget * MARGIN:
                    # float loses where the sweep does not look
                    measured.append(Measured(f"{label} (dense float check)", compute, err_d, 0))
                    continue
            pools[compute].append((label, guarded, m))
            entry = (guarded, compute, label, err, nonfinite, decisive, m.bound, _worst_x(sweep.xs, m))
            if best is None or (nonfinite, decisive) < (best[4], best[5]):
                best = entry
            limit = budget * (MARGIN if in_float else 1.0)
            if nonfinite == 0 and not in_float and budget * MARGIN < decisive <= limit:
                # within the budget, but only just, on a sweep that verify's (denser) one extends:
                # a candidate further down may be well within it (bent identity's forward: 5 ULP
                # here and 13 on verify's sweep as written, 1 rationalized)
                close = close if close is not None and close[5] <= decisive else entry
                continue
            if nonfinite == 0 and decisive <= limit:
                if form.compensated and dtype == "float32":
                    # float-float in float: the NumPy backend computes the plain form in double
                    fallback = add_guards(options[0][1], limits, act, dtype, "double")
                    err_w, _ = measure(fallback, sweep.xs, ref, params, dtype, "double", scale)
                    return Choice(kernel, dtype, guarded, compute, label, err,
                                  _naive(act, kernel, sweep, scale), tuple(measured),
                                  fallback=fallback, fallback_error=err_w, bound=m.bound)
                return Choice(kernel, dtype, guarded, compute, label, err,
                              _naive(act, kernel, sweep, scale), tuple(measured), bound=m.bound)
        if close is not None:       # the most accurate of those only just within the budget
            guarded, compute_, label, err, _, _, bound, _ = close
            return Choice(kernel, dtype, guarded, compute_, label, err, _naive(act, kernel, sweep, scale),
                          tuple(measured), bound=bound)
        if held is not None:
            return held
    # no single form is within the budget everywhere: one per interval of x (Herbie's regimes)
    compute = "double" if dtype == "float32" else "dtype"
    found = _regimes(pools[compute], kernel, sweep, ref, compute, budget)
    if found is not None:
        form, label, m = found
        measured.append(Measured(label, compute, m.error, m.nonfinite, m.bound))
        if (m.nonfinite, m.decisive_max) < (best[4], best[5]):
            return Choice(kernel, dtype, form, compute, label, m.error, _naive(act, kernel, sweep, scale),
                          tuple(measured), bound=m.bound)
    # nor that, on the kernel model itself (not only with libm's documented errors added): the
    # precision escalates to double-double, its forms' guards as in double. (Not parameter
    # gradients: verify judges their sums, not their elements.)
    escalate = kernel.kind != "param_grad" and (best[4] > 0 or best[3] > budget)
    for label, guarded, _ in (pools[compute] if escalate else []):
        if guarded.compensated:
            continue                    # (its pairs are what double-double carries everywhere)
        m = measure_bounded(guarded, sweep.xs, ref, params, dtype, "wide", scale, 1.0)
        guarded, m = _tails(act, guarded, m, sweep, ref, "wide", scale, budget)
        guarded, m = _near_points(act, kernel, guarded, m, sweep, ref, "wide", scale, budget)
        measured.append(Measured(label, "wide", m.error, m.nonfinite, m.bound))
        if m.nonfinite == 0 and m.decisive_max <= budget:
            return Choice(kernel, dtype, guarded, "wide", label, m.error, _naive(act, kernel, sweep, scale),
                          tuple(measured), bound=m.bound)
        if (m.nonfinite, m.decisive_max) < (best[4], best[5]):
            best = (guarded, "wide", label, m.error, m.nonfinite, m.decisive_max, m.bound, _worst_x(sweep.xs, m))
    # the most accurate candidate; within the budget if only the C library's documented errors
    # (the bound) put it over: actgen verify measures those on the host
    guarded, compute, label, err, nonfinite, _, bound, worst = best
    return Choice(kernel, dtype, guarded, compute, label, err, _naive(act, kernel, sweep, scale),
                  tuple(measured), bound=bound, within=(nonfinite == 0 or budget == math.inf) and err <= budget, worst_x=worst,
                  nonfinite=nonfinite)


#: At most this many intervals of x with different forms (each computed for every element)
MAX_REGIMES = 4


def _regimes(pool, kernel, sweep, ref, compute, budget):
    """(form, label, measurement) of a piecewise combination of the measured candidates ``pool``
    ((label, form, measurement), cheapest first): the x axis cut into at most MAX_REGIMES
    intervals, each given the cheapest candidate within the budget on all its sweep points (as
    few intervals as possible: the candidate good for longest from each cut, greedily), the cut
    between two sweep points found by bisection against the reference; None if some point has
    no candidate within the budget or more intervals would be needed. log(x + sqrt(x**2 + 1)):
    the form as written for x > 0, its conjugate 1/(sqrt(x**2 + 1) - x) below."""
    if len(pool) < 2:
        return None
    xs, dtype, params = sweep.xs, sweep.dtype, sweep.params
    order = [int(i) for i in np.argsort(xs, kind="stable") if np.isfinite(xs[i])]
    ok = np.array([[m.decisive[i] <= budget for i in order] for _, _, m in pool])
    segments, j = [], 0
    while j < len(order):
        runs = [int(np.argmin(np.append(row[j:], False))) for row in ok]   # good points from j on
        longest = max(runs)
        if longest == 0:
            return None
        end = j + longest
        # the cheapest candidate good on the whole segment
        pick = next(c for c, row in enumerate(ok) if row[j:end].all())
        segments.append([pick, j, end - 1])
        j = end
    if len(segments) < 2 or len(segments) > MAX_REGIMES:
        return None
    cuts = []
    for (left, _, last), (right, first, _) in zip(segments, segments[1:]):
        cut = _cut(pool[left][1], pool[right][1], float(xs[order[last]]), float(xs[order[first]]),
                   kernel, sweep, compute, budget)
        if cut is None:
            return None
        cuts.append(cut)
    forms = [_renamed(pool[c][1], k) for k, (c, _, _) in enumerate(segments)]
    temps = tuple(t for f in forms for t in f.temps)
    pieces = [(f.result, X < sp.Float(cut, 30)) for f, cut in zip(forms, cuts)] + [(forms[-1].result, True)]
    combined = Form(temps, sp.Piecewise(*pieces), tuple(dict.fromkeys(r for f in forms for r in f.rules)),
                    sp.Piecewise(*[(f.stable if f.stable is not None else f.result, c)
                                   for f, (_, c) in zip(forms, pieces)]),
                    dd_temps=frozenset().union(*(f.dd_temps for f in forms)),
                    compensated=any(f.compensated for f in forms))
    scale = None if plain_ulps(sweep.act, kernel) else term_scale(stable_form(kernel, sweep.act.expr).stable, xs, params)
    m = measure_bounded(combined, xs, ref, params, dtype, compute, scale, 1.0)
    label = "regimes: " + " | ".join(pool[c][0] for c, _, _ in segments)
    return (combined, label, m) if m.nonfinite == 0 and m.decisive_max <= budget else None


def _cut(left: Form, right: Form, lo: float, hi: float, kernel, sweep, compute, budget) -> float | None:
    """A point c in (lo, hi] such that ``left`` is within the budget up to c (exclusive) and
    ``right`` from c on, as far as bisection (against the mpmath reference) can tell; None if
    between lo and hi a point is found where neither is."""
    t = np.dtype(sweep.dtype).type
    for _ in range(80):
        mid = _middle(lo, hi, t)
        if mid in (lo, hi):
            break
        good = [_within_at(f, mid, kernel, sweep, compute, budget) for f in (left, right)]
        if good[0]:
            lo = mid
        elif good[1]:
            hi = mid
        else:
            return None
    return hi


def _within_at(form: Form, x: float, kernel, sweep, compute, budget) -> bool:
    """Whether ``form`` is within the budget at the single input x (the model, the C library's
    documented errors added, against the reference)."""
    params, dtype = sweep.params, sweep.dtype
    xs = np.array([x], dtype=dtype)
    ref = np.array([reference(kernel.exact, {**{param_symbol(p): v for p, v in params.items()}, X: x}, dtype)],
                   dtype=dtype)
    scale = None if plain_ulps(sweep.act, kernel) else term_scale(stable_form(kernel, sweep.act.expr).stable, xs, params)
    m = measure_bounded(form, xs, ref, params, dtype, compute, scale, 1.0)
    return m.nonfinite == 0 and m.decisive_max <= budget


def _renamed(form: Form, k: int) -> Form:
    """``form`` with its temporaries renamed r<k>_<i>: two forms' CSE temporaries side by side."""
    names = {sym: sp.Symbol(f"r{k}_{i}", real=True) for i, (sym, _) in enumerate(form.temps)}
    return Form(tuple((names[sym], value.xreplace(names)) for sym, value in form.temps),
                form.result.xreplace(names), form.rules,
                form.stable, form.guards, frozenset(names.get(s, s) for s in form.dd_temps), form.compensated)


def _middle(lo: float, hi: float, t) -> float:
    """A float between lo and hi: the midpoint in the order of the floats' bit patterns (a
    geometric mean for two magnitudes of one sign, 0 across it)."""
    if lo < 0 < hi:
        return 0.0 if hi > 0 and lo < -0.0 else (lo + hi) / 2
    a, b = sorted((abs(lo), abs(hi)))
    code = np.int32 if t is np.float32 else np.int64
    ia, ib = int(np.array(a, t).view(code)), int(np.array(b, t).view(code))
    m = float(np.array((ia + ib) // 2, code).view(t))
    return m if lo >= 0 else -m


def _worst_x(xs: np.ndarray, m) -> float:
    """The input where a measurement is worst (a spurious NaN/inf first)."""
    return float(xs[int(np.argmax(np.where(np.isnan(m.decisive), np.inf, m.decisive)))])


#: |x| beyond which a form's failures are taken to be of its tails (an intermediate overflowing)
TAIL = 2.0 ** 10


def _tails(act, guarded, m, sweep, ref, compute, scale, limit):
    """(form, measurement): ``guarded`` with its expansions at infinity taking over in the tails
    (guards.with_asymptotic_guards) on the sides where it fails at |x| >= TAIL, if that fixes
    points there and breaks none; else as it was."""
    bad = ~(m.decisive <= limit)
    tail_bad = bad & (np.abs(sweep.xs) >= TAIL) & ~np.isnan(sweep.xs)
    if not tail_bad.any():
        return guarded, m
    signs = tuple(sign for sign in (1, -1) if (sign * sweep.xs[tail_bad] > 0).any())
    variant = with_asymptotic_guards(guarded, act, signs)
    if variant is None:
        return guarded, m
    other = measure_bounded(variant, sweep.xs, ref, sweep.params, sweep.dtype, compute, scale,
                            MARGIN if compute == "dtype" and sweep.dtype == "float32" else 1.0)
    still = ~(other.decisive <= limit)
    if (still & ~bad).any() or still.sum() >= bad.sum():
        return guarded, m
    return variant, other


#: At most this many Taylor polynomials in one form (each is a select on every element; a periodic
#: function's dozens of roots want an argument reduction instead)
MAX_LOCAL_SERIES = 4


def _near_points(act, kernel, guarded, m, sweep, ref, compute, scale, limit):
    """(form, measurement): ``guarded`` with its Taylor polynomials (guards.with_local_series)
    around 0 and the kernel's singular points where it fails within 1 of them, if that fixes
    points there and breaks none; else as it was."""
    bad = ~(m.decisive <= limit)
    # the polynomial keeps digits where the form cancels to 0 or divides by 0; elsewhere the
    # form's trouble is not local (and SymPy's series of a nest like tanh(exp(tanh(exp(x))))
    # at 0 ran for minutes)
    at_zero = ref[sweep.xs == 0.0]
    zeros = {0.0} if at_zero.size and np.all(at_zero == 0) else set()
    roots = set()
    if kernel.kind == "forward":
        # a root of f away from 0, at the float nearest it: the polynomial in (x - x0), x0 that
        # float, is c0 + c1 (x - x0) + ..., c0 = f(x0) tiny and exact to its last digit, and
        # x - x0 exact; it keeps the digits the form cancels away
        roots = set(root_points(act, sweep.dtype)) - zeros
    points = sorted(zeros | roots | set(singular_points(act, kernel.exact)))
    near = [p for p in points if (bad & (np.abs(sweep.xs - p) < 1.0)).any()]
    if not near or len(near) > MAX_LOCAL_SERIES:
        return guarded, m
    variant = with_local_series(guarded, act, near, regular=roots - set(singular_points(act, kernel.exact)))
    if variant is None:
        return guarded, m
    other = measure_bounded(variant, sweep.xs, ref, sweep.params, sweep.dtype, compute, scale,
                            MARGIN if compute == "dtype" and sweep.dtype == "float32" else 1.0)
    still = ~(other.decisive <= limit)
    if (still & ~bad).any() or still.sum() >= bad.sum():
        return guarded, m
    return variant, other


def _ranged(act, kernel, sweep, scale, limits, label, forms, guarded, swept, dense,
            measured, scale_expr) -> Choice | None:
    """The float form on the interval where it measured within MARGIN of the budget (on the
    sweep against the reference, and on the dense points against itself in double), the form
    computed in double elsewhere; None if there is no such interval or the double form is
    over the budget. Its error: the worse of the two where each is used. ``swept`` and
    ``dense``: (points, per-point errors of the float form) on the sweep and the dense points;
    ``forms``: those the fallback may compute in double, the first within the budget (cheaper
    candidates, then the plain form where ``guarded`` is compensated in float: double needs no
    compensation for a float32 result). The interval is then narrowed to hold for a box of the
    learnable parameters' values (ranges.certify_params; ``scale_expr``: the terms a derivative's
    error is conditioned on)."""
    dtype, params, ref = sweep.dtype, sweep.params, sweep.kernel_refs[kernel.name]
    budget = act.budget(kernel.kind, dtype)
    limit = budget * MARGIN
    dist_s = swept[1]
    bounds = float_range(np.concatenate([swept[0], dense[0]]), np.concatenate([dist_s, dense[1]]), limit)
    if bounds is None:
        return None
    for form in forms:
        fallback = add_guards(form, limits, act, dtype, "double")
        err_w, nonfinite = measure(fallback, sweep.xs, ref, params, dtype, "double", scale)
        if not nonfinite and err_w <= budget:
            break
    else:
        return None
    bounds = open_ended(bounds, guarded, fallback, params, dtype)
    # at other parameter values the float form is measured against the double one, which is within
    # max(1, err_w) ULP of the reference (its rounding to float32, and its measured error): within the
    # rest of the budget of it, the float path is within the budget (actgen verify measures it)
    bounds, box = certify_params(guarded, fallback, np.concatenate([sweep.xs, dense[0]]), params, act.learnable,
                                 scale_expr, budget - max(1.0, err_w), 1.0, bounds)
    inside = in_range(sweep.xs, bounds)
    err_f = float(np.max(dist_s[inside])) if inside.any() else 0.0
    err = max(err_f, err_w)
    measured.append(Measured(f"{label} (float on [{bounds[0]:g}, {bounds[1]:g}])", "dtype", err_f, 0))
    return Choice(kernel, dtype, guarded, "dtype", label, err, _naive(act, kernel, sweep, scale),
                  tuple(measured), bounds, fallback, err_w, param_box=box)


def _naive(act, kernel, sweep, scale) -> Measured:
    form = naive_form(act, kernel)
    err, nonfinite = measure(form, sweep.xs, sweep.kernel_refs[kernel.name], sweep.params, sweep.dtype,
                             "dtype", scale, c_model=False)       # as lambdify (its libm ideal)
    return Measured("naive", "dtype", err, nonfinite)


def choose_all(act: Activation, kernels: list[Kernel] | None = None, *, quick: bool = True) -> dict:
    """{(kernel name, dtype): Choice} for every kernel of ``act`` and both dtypes. A derivative
    order (act.order >= 1) is chosen on the full sweep (actgen verify's, 2.5 times the points):
    its candidates' errors vary between neighbouring points more than a spec's do (mish's third
    derivative as regimes cut at x = 9.78 on the quick sweep: 5 ULP at x = 9.0 and 9.75, 14
    at 9.5, a point of the full sweep only)."""
    kernels = kernels or derive(act)
    quick = quick and not act.order
    on_x = [k for k in kernels if k.kind != "backward_y"]
    limits = {k.name: kernel_limits(act, k) for k in on_x}
    choices = {}
    for dtype in DTYPES:
        sweep = make_sweep(act, dtype, quick=quick, kernels=on_x, selection_only=True)
        for k in kernels:
            if k.kind == "backward_y":
                # a function of the output, given by the spec: its stable rewrite, in the dtype
                # (actgen verify measures it at y = f(x))
                form = lower(*stable_source(k, act.expr))
                choices[k.name, dtype] = Choice(k, dtype, form, "dtype", "rewritten", math.nan, None)
            else:
                choices[k.name, dtype] = choose(act, k, sweep, limits[k.name])
    return choices


__all__ = ["CHEAPER", "MARGIN", "Choice", "Measured", "candidates", "choose", "choose_all", "naive_form"]
