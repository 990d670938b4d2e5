"""Guards: what a kernel returns where IEEE arithmetic cannot compute its form.

At x = +-inf a form can give inf*0 or inf/inf; beyond the magnitude where an intermediate
overflows it gives NaN although the function has long saturated. ``add_guards`` wraps a form
in a select that returns there its limit at infinity, or its asymptote (the form with its
saturated calls replaced by their limits, equal to it to the last bit where both compute).
Limits are found numerically (mpmath at x = +-2^k, at the default parameters and perturbed
ones) and, failing that, by SymPy's gruntz.
"""

from __future__ import annotations

import math
from dataclasses import replace

import mpmath
import numpy as np
import sympy as sp

from .activation import Activation
from .derive import kink_points, singular_points, ties_to_piecewise
from .functions import erfc, sigmoid, softplus
from .ir import X, Form, Kernel, param_symbol
from .measure import evaluate_form
from .reference import Undefined, evaluate, limit_at_infinity, limit_at_point
from .rewrite import lower, stable_source
from .sweep import param_values


def _eventual(expr: sp.Expr, sign: int) -> sp.Expr:
    """Resolve every Piecewise whose conditions are decided for all large sign*x."""
    big = sp.oo if sign > 0 else -sp.oo

    def decide(cond):
        try:
            value = cond.subs(X, big)
        except (TypeError, ValueError):
            return None
        return value if value in (sp.true, sp.false) else None

    def pick(pw):
        kept = []
        for value, cond in pw.args:
            decided = decide(cond)
            if decided is sp.true and not kept:
                return value
            if decided is not sp.false:
                kept.append((value, cond if decided is None else sp.true))
                if decided is sp.true:
                    break
        return sp.Piecewise(*kept) if kept else pw

    return expr.replace(lambda e: isinstance(e, sp.Piecewise), pick)


def _to_elementary(expr: sp.Expr) -> sp.Expr:
    expr = expr.replace(lambda e: isinstance(e, (sigmoid, softplus)), lambda e: e.rewrite(sp.exp))
    expr = expr.replace(lambda e: isinstance(e, erfc), lambda e: sp.erfc(e.args[0]))
    return expr.replace(sp.UnevaluatedExpr, lambda e: e)


def _perturbations(defaults: dict, used: list[str]):
    """Parameter sets near the defaults: each used parameter halved and doubled (a zero default
    tried at +-1/2), the others at their defaults. A limit that is the same at all of them is
    taken not to depend on the parameters (for parameters of the defaults' signs)."""
    for p in used:
        d = defaults[p]
        for v in ((d / 2, 2 * d) if d != 0 else (0.5, -0.5)):
            yield dict(defaults, **{p: v})


def _sign_condition(defaults: dict, used: list[str]) -> sp.Basic:
    """The parameters keep the signs of their defaults (a zero default: no condition)."""
    parts = [param_symbol(p) > 0 if defaults[p] > 0 else param_symbol(p) < 0
             for p in used if defaults[p] != 0]
    return sp.And(*parts)


def _plain(expr: sp.Expr) -> sp.Expr:
    return expr.replace(sp.UnevaluatedExpr, lambda e: e)


def _numeric_limit(expr: sp.Expr, defaults: dict, sign: int) -> tuple[sp.Expr, sp.Basic] | None:
    """lim expr as x -> sign*inf by evaluation at x = sign * 2**k (k = 64 ... 16384, mpmath),
    at the default parameters and at perturbed ones; None if it does not settle or depends on
    the parameters. Fast where SymPy's gruntz takes seconds, and it sees through Piecewise."""
    expr = _plain(expr)
    used = [p for p in defaults if expr.has(param_symbol(p))]
    value = limit_at_infinity(expr, defaults, sign, "float64")
    if math.isnan(value):
        return None
    for values in _perturbations(defaults, used):
        other = limit_at_infinity(expr, values, sign, "float64")
        if not (other == value or (math.isinf(value) and other == value)):
            return None
    limit = sp.oo if value == math.inf else -sp.oo if value == -math.inf else sp.Float(value, 17)
    return limit, _sign_condition(defaults, used)


def _tends_to_infinity(u: sp.Expr, defaults: dict, sign: int) -> tuple[sp.Expr, sp.Basic] | None:
    """(+oo or -oo, condition) if u(x) grows without bound as x -> sign*inf, judged from its values
    at x = sign * 2**64, 2**256, 2**1024 (mpmath) at the default and perturbed parameters."""
    u = _plain(u)
    used = [p for p in defaults if u.has(param_symbol(p))]

    def direction(values):
        env = {param_symbol(p): v for p, v in values.items()}
        seen = []
        for k in (64, 256, 1024):
            try:
                v = evaluate(u, {**env, X: mpmath.ldexp(mpmath.mpf(sign), k)}, 128)
            except (Undefined, TypeError, ValueError, ZeroDivisionError):
                return None
            if not mpmath.isfinite(v) and not mpmath.isinf(v):
                return None
            seen.append(v)
        if all(abs(v) > mpmath.mpf(2) ** 60 for v in seen) and abs(seen[2]) > abs(seen[1]) > abs(seen[0]) \
                and len({v > 0 for v in seen}) == 1:
            return 1 if seen[0] > 0 else -1
        return None

    found = direction(defaults)
    if found is None or any(direction(v) != found for v in _perturbations(defaults, used)):
        return None
    return (sp.oo if found > 0 else -sp.oo), _sign_condition(defaults, used)


def limit_at(expr: sp.Expr, params: list[str], sign: int,
             defaults: dict | None = None) -> tuple[sp.Expr, sp.Basic] | None:
    """(lim expr as x -> sign*inf, the condition on the parameters under which it holds), or None.

    With ``defaults`` (the parameters' default values), first numerically (_numeric_limit);
    then symbolically with SymPy, the parameters as real symbols, then as positive ones (the
    limit then holds for positive parameter values only, and the guard says so)."""
    if defaults is not None:
        found = _numeric_limit(expr, defaults, sign)
        if found is not None:
            return found
    e = _eventual(ties_to_piecewise(expr, X), sign)
    if isinstance(e, sp.Piecewise):          # branches decided by the parameters only
        pieces = []
        for value, cond in e.args:
            found = limit_at(value, params, sign, defaults)
            if found is None or found[1] is not sp.true:
                return None
            pieces.append((found[0], cond))
        return sp.Piecewise(*pieces), sp.true
    e = _to_elementary(e)
    if not e.has(X):
        return e, sp.true
    used = [p for p in params if e.has(param_symbol(p))]
    for positive in (False, True):
        if positive and not used:
            break
        forward = {param_symbol(p): sp.Symbol(p, positive=True) for p in used} if positive else {}
        try:
            value = sp.limit(e.xreplace(forward), X, sp.oo if sign > 0 else -sp.oo)
        except (NotImplementedError, ValueError, TypeError, AttributeError, RecursionError, KeyError):
            continue
        if value.has(sp.Limit, sp.nan, sp.zoo, sp.AccumBounds) or value is sp.nan:
            continue
        value = value.xreplace({v: k for k, v in forward.items()})
        condition = sp.And(*[param_symbol(p) > 0 for p in used]) if positive else sp.true
        return value, condition
    return None


def _largest(dtype: str) -> float:
    return float(np.finfo(dtype).max)


def _finite_threshold(fn_values, dtype: str, sign: int) -> float | None:
    """The smallest |x| (as sign*|x|) from which the form's value is NaN, searching powers of
    two and then bisecting in float order; None if it stays a number up to the largest float."""
    t = np.dtype(dtype).type
    info = np.finfo(dtype)
    top = int(info.maxexp) - 1          # (log2 of the largest double rounds to 1024.0)
    with np.errstate(over="ignore"):
        powers = [t(sign) * np.ldexp(t(1.0), k) for k in range(0, top + 1)] + [t(sign) * info.max]
    values = fn_values(np.array(powers, dtype=dtype))
    bad = np.flatnonzero(np.isnan(values))
    if not bad.size:
        return None
    i = int(bad[0])
    if i == 0:
        return None                         # NaN near 1: not an overflow regime
    lo, hi = np.array(powers[i - 1], dtype), np.array(powers[i], dtype)
    # bisect on the integer codes of positive floats
    code = np.int32 if dtype == "float32" else np.int64
    a, b = int(abs(lo).view(code)), int(abs(hi).view(code))
    while b - a > 1:
        m = (a + b) // 2
        v = np.array(m, code).view(dtype) * t(sign)
        if np.isnan(fn_values(np.array([v], dtype=dtype)))[0]:
            b = m
        else:
            a = m
    return float(np.array(b, code).view(dtype)) * sign


#: saturating functions and their values at +-inf
_SATURATING = (sigmoid, softplus, erfc, sp.erfc, sp.erf, sp.exp, sp.tanh, sp.atan)


def asymptote(expr: sp.Expr, params: list[str], sign: int,
              defaults: dict | None = None) -> tuple[sp.Expr, sp.Basic] | None:
    """expr with every saturating call whose argument tends to +-inf (as x -> sign*inf)
    replaced by its limit, and decided branches resolved: what expr equals, to the last bit,
    once those calls have saturated (gelu_tanh -> x for x -> +inf; x**2*sigmoid(-b*x) -> 0).
    Returns (asymptote, condition on the parameters), or None if nothing saturates."""
    e = _eventual(ties_to_piecewise(expr, X), sign)
    conditions = []

    def argument_limit(u):
        if defaults is not None:
            found = _tends_to_infinity(u, defaults, sign)
            if found is not None:
                conditions.append(found[1])
                return found[0]
        for positive in (False, True):
            used = [p for p in params if u.has(param_symbol(p))]
            if positive and not used:
                return None
            forward = {param_symbol(p): sp.Symbol(p, positive=True) for p in used} if positive else {}
            try:
                value = sp.limit(_to_elementary(u).xreplace(forward), X, sp.oo if sign > 0 else -sp.oo)
            except (NotImplementedError, ValueError, TypeError, AttributeError, RecursionError, KeyError):
                continue
            if value in (sp.oo, -sp.oo):
                if positive:
                    conditions.extend(param_symbol(p) > 0 for p in used)
                return value
        return None

    def saturated(node):
        if isinstance(node, _SATURATING) and node.args[0].has(X):
            u_limit = argument_limit(node.args[0])
            if u_limit is not None:
                value = node.func(u_limit)
                if value.is_finite:
                    return value
        return None

    replaced = e.replace(lambda n: saturated(n) is not None, saturated)
    if replaced == e:
        return None
    # units (rewrite's softplus rational) whose calls all saturated are constants: evaluate them
    replaced = replaced.replace(lambda n: isinstance(n, sp.UnevaluatedExpr) and n.is_number, lambda n: n.doit())
    if replaced.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        return None                 # a saturated factor met one that grows (0 * oo): no asymptote
    return replaced, sp.And(*conditions)


def add_guards(form: Form, limits: dict, act: Activation, dtype: str, compute: str) -> Form:
    """Wrap the form so that where it yields NaN at large |x| (an intermediate overflowed)
    and at +-inf, it returns its asymptote (its saturated calls replaced by their limits) or
    its limit at infinity, provided the form equals that asymptote where it still works."""
    params = param_values(act, dtype)
    names = list(act.params)
    pieces = []
    source = form.stable if form.stable is not None else form.result

    def values(f, xs):
        return evaluate_form(f, xs, params, dtype, compute)

    for sign in (1, -1):
        at_inf = values(form, np.array([sign * np.inf], dtype=dtype))[0]
        if not np.isnan(at_inf):
            fixed = _select_at_infinity(source, act, sign, at_inf, params, dtype)
            if fixed is not None:
                pieces.append(fixed)
            continue
        threshold = _finite_threshold(lambda xs: values(form, xs), dtype, sign)
        found = asymptote(source, names, sign, dict(act.params))
        replacement = None
        if found is not None and threshold is not None:
            asym_form = lower(found[0])
            before = np.nextafter(np.array(threshold, dtype), np.array(0, dtype))
            here = np.array([before], dtype=dtype)
            a, f = values(asym_form, here)[0], values(form, here)[0]
            if a == f or (np.isinf(a) and a == f):
                replacement, condition = found[0], found[1]
                edge = sp.Float(abs(threshold), 30)
                test = (X >= edge) if sign > 0 else (X <= -edge)
                # the asymptote itself may be NaN at +-inf (x * 0): the limit takes over there
                if np.isnan(values(asym_form, np.array([sign * np.inf], dtype=dtype))[0]):
                    replacement = None
                else:
                    pieces.append((replacement, sp.And(test, condition)))
                    continue
        if limits.get(sign) is None:
            continue
        limit, condition = limits[sign]
        edge = sp.Float(_largest(dtype), 30)
        test = (X > edge) if sign > 0 else (X < -edge)      # +-inf itself
        pieces.append((limit, sp.And(test, condition)))
        if found is not None and threshold is not None and replacement is None:
            edge = sp.Float(abs(threshold), 30)
            test = (X >= edge) if sign > 0 else (X <= -edge)
            asym_form = lower(found[0])
            before = np.nextafter(np.array(threshold, dtype), np.array(0, dtype))
            here = np.array([before], dtype=dtype)
            if values(asym_form, here)[0] == values(form, here)[0]:
                pieces.append((found[0], sp.And(test, found[1])))
    for point, limit, condition in removable_singularities(_plain(source), act, dtype):
        if not np.isfinite(values(form, np.array([point], dtype=dtype))[0]):
            pieces.append((limit, sp.And(sp.Eq(X, sp.Float(point, 30)), condition)))
    if not pieces:
        return form
    guarded = sp.Piecewise(*pieces, (form.result, True))
    return replace(form, result=guarded, guards=tuple(p[0] for p in pieces))


def removable_singularities(source: sp.Expr, act: Activation, dtype: str) -> list[tuple[float, sp.Expr, sp.Basic]]:
    """(x0, the limit there, the condition on the parameters) for each point x0 (a float of
    ``dtype``) where a denominator of ``source`` vanishes and the expression has a finite
    two-sided limit (sin(x)/x at 0: 1). The limit is the numeric one (mpmath) where it does not
    move with the parameters (checked at perturbed ones), else SymPy's symbolic one where that
    agrees with it; otherwise the point is left out (its value stays NaN)."""
    t = np.dtype(dtype).type
    params = param_values(act, dtype)
    used = [p for p in act.params if source.has(param_symbol(p))]
    found = []
    for x0 in singular_points(act, source):
        point = float(t(x0))
        if point != x0:
            continue                    # not a float: no input of the kernel hits it
        value = limit_at_point(source, params, point, dtype)
        if math.isnan(value):
            continue
        moved = [limit_at_point(source, p, point, dtype) for p in _perturbations(params, used)]
        if all(m == value for m in moved):
            found.append((point, sp.Float(value, 17), sp.true))
            continue
        try:
            symbolic = sp.limit(_to_elementary(source), X, sp.nsimplify(point))
        except (NotImplementedError, ValueError, TypeError, AttributeError, RecursionError, KeyError):
            continue
        if symbolic.is_finite and _numeric(symbolic, params, dtype) == value:
            found.append((point, symbolic, sp.true))
    return found


def _select_at_infinity(source, act, sign, at_inf, params, dtype):
    """A select compares infinities at x = +-inf, where inf > inf is false: x = inf can take a
    tie or default branch that no finite x takes (d/dx Max(x + E, pi*x) is (1 + pi)/2 there,
    not pi). For a kernel with selects, the limit (found numerically; no SymPy gruntz here)
    as a guard at +-inf where it differs from the form's value; else None."""
    if not source.has(sp.Piecewise, sp.Max, sp.Min):
        return None
    found = _numeric_limit(source, dict(act.params), sign)
    if found is None:
        return None
    limit, condition = found
    value = _numeric(limit, params, dtype)
    if value == at_inf or (math.isnan(value) and math.isnan(at_inf)):
        return None
    edge = sp.Float(_largest(dtype), 30)
    return limit, sp.And((X > edge) if sign > 0 else (X < -edge), condition)


def _numeric(expr: sp.Expr, params: dict, dtype: str) -> float:
    value = expr.xreplace({param_symbol(p): sp.Float(v, 30) for p, v in params.items()})
    value = complex(sp.N(value)) if value.is_number else math.nan
    return float(np.dtype(dtype).type(value.real))


class _Limits(dict):
    """{sign: limit_at(...)} of one kernel, each computed on first use (only kernels whose form
    is NaN at +-inf need one)."""

    def __init__(self, act: Activation, kernel: Kernel):
        super().__init__()
        self.act, self.kernel = act, kernel

    def __missing__(self, sign):
        source, _ = stable_source(self.kernel, self.act.expr)
        self[sign] = limit_at(source, list(self.act.params), sign, dict(self.act.params))
        return self[sign]

    def get(self, sign, default=None):
        return self[sign]


def kernel_limits(act: Activation, kernel: Kernel) -> dict:
    return _Limits(act, kernel)


#: A truncated expansion at infinity is used from the |x| where its first omitted terms are below
#: this fraction of it (far below a double's 2**-53: the parameters may move during training)
_EXPANSION_TOLERANCE = mpmath.mpf(2) ** -70


def asymptotic_expansion(expr: sp.Expr, act: Activation, sign: int, terms: int = 4) -> tuple[sp.Expr, float] | None:
    """(the expansion of ``expr`` at sign*inf in powers of 1/x, truncated, as an expression in x;
    the smallest |x|, a power of two, from which the omitted terms are below 2**-70 of it at the
    default parameters), or None (no such expansion, or it is 0: the function decays faster than
    any power of x, as x exp(-x**2), and needs none). SymPy's series of expr(sign/t) at t = 0+.
    Where an intermediate overflows (x**2 beyond 1e154 in 1/sqrt(x**2 + c**2)), the form is wrong
    although the function is finite: the expansion computes it without the overflow."""
    t = sp.Dummy("t", positive=True)
    e = _to_elementary(_eventual(ties_to_piecewise(_plain(expr), X), sign))
    if e.has(sp.Piecewise, sp.Max, sp.Min, sp.Heaviside, sp.sign):
        return None
    parts: list = []
    orders = [terms + 2, terms + 4, terms + 8]
    while orders:                                       # until a term beyond the kept ones shows
        order = orders.pop(0)
        try:
            series = sp.series(e.xreplace({X: sign / t}), t, 0, order).removeO()
        except (NotImplementedError, ValueError, TypeError, AttributeError, RecursionError, KeyError,
                ZeroDivisionError, sp.PoleError):
            return None
        if series == 0 or series.has(sp.Order, sp.zoo, sp.nan) or not series.has(t):
            return None
        parts = sorted(sp.Add.make_args(sp.expand(series)), key=lambda a: _order(a, t))
        if len(parts) > terms:
            break
        if not orders:
            # orders counted from the leading power: a k-th derivative starts far down (squareplus's
            # f''' is -3b/2 x^-4 + 15b^2/4 x^-6 + ...: five terms need t^14), once
            lead = math.ceil(_order(parts[0], t))
            if lead + 2 * terms + 2 > order:
                orders.append(lead + 2 * terms + 2)
    if len(parts) <= min(terms, 1):
        return None
    if len(parts) <= terms:
        return None                     # the omitted part's size is unknown: no expansion
    kept, omitted = sp.Add(*parts[:terms]), sp.Add(*parts[terms:])
    subs = {param_symbol(p): v for p, v in act.params.items()}
    for k in range(4, 1024):
        tk = mpmath.ldexp(1, -k)
        try:
            with mpmath.workprec(200):
                a = evaluate(kept, {**subs, t: tk}, 200)
                b = evaluate(omitted, {**subs, t: tk}, 200) if omitted != 0 else mpmath.mpf(0)
        except (Undefined, ValueError, ZeroDivisionError, TypeError):
            return None
        if a != 0 and abs(b) <= _EXPANSION_TOLERANCE * abs(a):
            u = sp.Dummy("u", positive=True)            # u = |x| on this side: log(t) is -log(u)
            expansion = sp.expand_log(kept.xreplace({t: 1 / u}), force=True)
            return expansion.xreplace({u: sign * X}), 2.0 ** k
    return None


def _order(term: sp.Expr, t: sp.Symbol) -> float:
    """The power of t a term of the series goes with; a log(t) factor counts half a power more
    (it grows, slower than any power): the terms sort from the largest as t -> 0."""
    logs = [a for a in term.atoms(sp.log) if a.has(t)]
    core = term.xreplace({a: sp.S.One for a in logs}) if logs else term
    _, exponent = core.as_coeff_exponent(t)
    return float(exponent) - (0.5 if logs else 0.0)


def with_asymptotic_guards(form: Form, act: Activation, signs: tuple[int, ...]) -> Form | None:
    """``form`` with, for each sign, its expansion at sign*inf (asymptotic_expansion) taking over
    beyond the |x| where that is exact to 2**-70; None if no side has one. The pieces go after the
    guards ``form`` has (x = +-inf keeps its limit) and before the form itself."""
    source = form.stable if form.stable is not None else form.result
    pieces = []
    for sign in signs:
        found = asymptotic_expansion(source, act, sign)
        if found is None:
            continue
        expansion, edge = found
        test = (X >= sp.Float(edge, 30)) if sign > 0 else (X <= -sp.Float(edge, 30))
        pieces.append((expansion, test))
    if not pieces:
        return None
    if form.guards:          # (SymPy merges guard pieces of one value: count the pieces, not the guards)
        old = form.result.args
        result = sp.Piecewise(*old[:-1], *pieces, old[-1])
    else:
        result = sp.Piecewise(*pieces, (form.result, True))
    return replace(form, result=result, guards=(*form.guards, *(p[0] for p in pieces)))


def _branch_at(e: sp.Expr, env: dict) -> sp.Expr | None:
    """``e`` with each Piecewise (and Max, Min, Abs, sign, Heaviside) replaced by the branch it
    takes at the point ``env``; None where a condition is undecided there."""
    e = ties_to_piecewise(e, X).rewrite(sp.Piecewise)
    undecided = []

    def branch(p):
        for value, condition in p.args:
            taken = condition.subs(env)
            if taken is sp.true:
                return value
            if taken is not sp.false:
                break
        undecided.append(p)
        return p

    e = e.replace(lambda n: isinstance(n, sp.Piecewise), branch)
    return None if undecided else e


def _numeric_series(e: sp.Expr, subs: dict, point: float, n: int, h: sp.Symbol) -> sp.Expr | None:
    """sum of c_k h**k for k < n: the Taylor coefficients of ``e`` at ``point``, a regular point (a
    root of f), by mpmath's numerical differentiation at 320 bits. SymPy's series at a root with
    a 60-bit rational ran for minutes (1 - 2 exp(-0.7 exp(x)) at -0.0098)."""
    try:
        with mpmath.workprec(320):
            cs = mpmath.taylor(lambda t: evaluate(e, {**subs, X: t}, mpmath.mp.prec), mpmath.mpf(point), n - 1)
    except (Undefined, ValueError, ZeroDivisionError, TypeError, OverflowError):
        return None
    if not all(isinstance(c, mpmath.mpf) and mpmath.isfinite(c) for c in cs):
        return None
    return sp.Add(*[sp.Float(c, 40) * h ** k for k, c in enumerate(cs)])


def local_series(expr: sp.Expr, act: Activation, point: float, order: int = 12,
                 regular: bool = False) -> tuple[sp.Expr, float] | None:
    """(the Taylor polynomial of ``expr`` at x = ``point`` in powers of (x - point), the radius
    within which the omitted terms are below 2**-70 of it at the default parameters), or None.
    Near a removable singularity (sin(x)/x at 0) or a point where the form cancels (1 - cos(x)),
    the form loses its digits where the polynomial keeps them. Only where the expression is smooth
    at the point (no select, Abs, sign there: their series differ by side); at a ``regular`` point
    (a root of f) the branch each select takes there, numerically, in Horner form in (x - point)."""
    h = sp.Dummy("h", real=True)
    e = _to_elementary(_plain(expr))
    x0 = sp.Rational(point)
    subs = {param_symbol(p): v for p, v in act.params.items()}
    if regular:
        e = _branch_at(e, {**subs, X: x0})
        if e is None:
            return None
    if e.has(sp.Piecewise, sp.Max, sp.Min, sp.Heaviside, sp.sign, sp.Abs):
        return None
    if regular:             # smooth at the point (``regular``): its derivatives, numerically
        series = _numeric_series(e, subs, point, order + 2, h)
        if series is None:
            return None
    else:
        try:
            series = sp.series(e.xreplace({X: x0 + h}), h, 0, order + 2).removeO()
        except (NotImplementedError, ValueError, TypeError, AttributeError, RecursionError, KeyError,
                ZeroDivisionError, sp.PoleError):
            return None
    if series.has(sp.Order, sp.zoo, sp.nan, sp.log) or not series.is_polynomial(h):
        return None
    poly = sp.Poly(series, h)
    terms = sorted(poly.terms(), key=lambda t: t[0][0])
    if len(terms) < 2 or terms[-1][0][0] < order:
        return None                    # not enough terms beyond the kept ones to bound them
    kept = sp.Add(*[c * h ** k for (k,), c in terms if k < order])
    omitted = sp.Add(*[c * h ** k for (k,), c in terms if k >= order])
    radius = None
    for k in range(1, 60):
        r = mpmath.ldexp(1, -k)
        try:
            ok = True
            for side in (r, -r):
                a = evaluate(kept, {**subs, h: side}, 200)
                b = evaluate(omitted, {**subs, h: side}, 200)
                ok = ok and a != 0 and abs(b) <= _EXPANSION_TOLERANCE * abs(a)
        except (Undefined, ValueError, ZeroDivisionError, TypeError):
            return None
        if ok:
            radius = float(r)
            break
    if radius is None:
        return None
    if regular:
        # within the branch the point is on: no kink inside the radius
        kinks = [abs(k - point) for k in kink_points(act)]
        while any(d <= radius for d in kinks) and radius > 2.0 ** -60:
            radius /= 2
        # in Horner form: c1 (x - x0), built as a product, would be distributed by SymPy into
        # c1 x - c1 x0, the cancellation the polynomial is there to avoid
        coefficients = {k: c for (k,), c in terms}
        horner = sp.S.Zero
        for k in range(order - 1, -1, -1):
            horner = coefficients.get(k, sp.S.Zero) + (X - x0) * horner
        return horner, radius
    return kept.xreplace({h: X - x0}), radius


def with_local_series(form: Form, act: Activation, points: list[float], regular=frozenset()) -> Form | None:
    """``form`` with its Taylor polynomial (local_series) taking over within its radius of each
    of ``points``; None if no point has one. The pieces go after the form's guards. At the points
    of ``regular`` (roots of f) the polynomial's coefficients are computed numerically."""
    source = form.stable if form.stable is not None else form.result
    pieces = []
    for point in points:
        found = local_series(source, act, point, regular=point in regular)
        if found is None:
            continue
        polynomial, radius = found
        pieces.append((polynomial, sp.Abs(X - sp.Float(point, 30)) < sp.Float(radius, 30)))
    if not pieces:
        return None
    if form.guards:
        old = form.result.args
        result = sp.Piecewise(*old[:-1], *pieces, old[-1])
    else:
        result = sp.Piecewise(*pieces, (form.result, True))
    return replace(form, result=result, guards=(*form.guards, *(p[0] for p in pieces)))