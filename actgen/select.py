"""Choose, per kernel and dtype, the form to generate, by measurement (the approach of Herbie).

Candidates differ in formula (the stable rewrite, the rewrite plus optional rules such as
rationalising sqrt(a) - b, the expression as written) and, for float32, in the type the
arithmetic is done in (float, or double rounded once at the end). Each candidate gets the
guards it needs (the limit at +-inf where IEEE arithmetic gives inf*0 or inf/inf; the limit
beyond the magnitude where an intermediate overflows, if the function has saturated there),
and is evaluated with NumPy on the verification sweep against the mpmath reference.

Policy: the first candidate, in order of cost, that is within the ULP budget (with a margin,
so that libm differences between NumPy and C cannot flip the choice) and has no spurious
NaN/inf; if none is, the most accurate one. A float32 candidate computed in float that is within
its share of the budget only on an interval around 0 (silu: above x = -85) is kept there, the
same form computed in double elsewhere (Choice.float_range: the C loops check blocks of inputs). The naive candidate (the expression as written,
computed in the dtype: what lambdify would give) is measured too, to show what was gained.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import numpy as np
import sympy as sp

from . import kernel_model
from .activation import X, Activation, param_symbol
from .derive import Kernel, derive, differentiate, ties_to_piecewise
from .functions import erfc, sigmoid, softplus
from .rewrite import Form, compensate, float_compensable, lower, stabilize, stable_source

#: Candidates that cost less than the stable rewrite (fewer transcendental calls), tried before it.
CHEAPER = frozenset({"softplus rational"})
MARGIN = 0.5      # a float candidate must be within MARGIN * budget to be preferred
RANGE_MIN = 12.0  # a float range (see Choice.float_range) must cover [-RANGE_MIN, RANGE_MIN]


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
    compute: str                      # "dtype" or "double"
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
    #: the error with the documented errors of the C library functions it calls added (libm_bound)
    bound: float = math.nan

    @property
    def c_compute(self) -> str:
        """The C type of the arithmetic: the one selection measured. A float32 form is chosen
        in float only if its float evaluation stays within MARGIN (half) of the budget. exp,
        sigmoid, softplus and erfc (with a compensated argument) are actgen's own float
        functions there, which the evaluation models operation
        by operation; the other functions are libmvec's vector float functions, which NumPy's
        measurement cannot see (up to 1-4 ULP each on their own): they have the other half.
        ``actgen verify`` (and the accuracy tests) then measure the compiled kernel itself. In
        float, a vector holds 16 lanes instead of 8: 2-3x the throughput (measured)."""
        if self.compute == "double" or self.dtype == "float64":
            return "double"
        return "float"

    def range_text(self) -> str:
        lo, hi = self.float_range
        return f"in float on [{_bound_text(lo)}, {_bound_text(hi)}], else in double"


def _bound_text(v: float) -> str:
    if math.isinf(v):
        return "-inf" if v < 0 else "inf"
    return "-max" if v == -float(np.finfo(np.float32).max) else (
        "max" if v == float(np.finfo(np.float32).max) else f"{v:g}")


#: Functions that are exact or correctly rounded in C (no libm approximation involved).
_EXACT_FUNCTIONS = (sp.Max, sp.Min, sp.Abs, sp.sign, sp.Heaviside, sp.Piecewise, sp.DiracDelta)


def calls_libm(form: Form) -> bool:
    """Whether a form calls a transcendental function (anything but arithmetic, sqrt, selects)."""
    for e in [v for _, v in form.temps] + [form.result]:
        for node in sp.preorder_traversal(e):
            if isinstance(node, sp.Function) and not isinstance(node, _EXACT_FUNCTIONS):
                return True
            if node.is_Pow and not (node.exp.is_Integer or node.exp == sp.S.Half or node.exp == -sp.S.Half):
                return True
    return False


# ---- numeric evaluation of forms ----------------------------------------------------------------

def numpy_function(form: Form, params: list[str], c_float: bool = False):
    """A Python function (x, *params) -> values: selection's model of the C kernel (the NumPy
    printer in model mode, evaluated with actgen.kernel_model: C library functions correctly
    rounded, host-independent); with ``c_float``, the kernel computed in float (actgen's own
    float exp, sigmoid, softplus, erfc modelled operation by operation)."""
    return _numpy_function(form, tuple(params), c_float)


@functools.lru_cache(maxsize=512)
def _numpy_function(form: Form, params: tuple[str, ...], c_float: bool = False):
    from . import kernel_model
    from .printers.numpy import KernelNumPyPrinter

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
    sigmoid, softplus; without, every function correctly rounded, as an ideal lambdify)."""
    work = np.float64 if compute == "double" else np.dtype(dtype).type
    fn = numpy_function(form, list(params), c_float=c_model and work is np.float32)
    with np.errstate(all="ignore"):
        value = fn(xs.astype(work), *[work(v) for v in params.values()])
        value = np.broadcast_to(np.asarray(value, dtype=work), xs.shape)
        if form.needs_nan_guard:
            value = np.where(np.isnan(xs), xs.astype(work), value)
        return value.astype(dtype)


# ---- limits at infinity and overflow regimes ---------------------------------------------------------

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
    from .verify import limit_at_infinity

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
    from .reference import Undefined, evaluate

    import mpmath

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
    # units (select._softplus_rational) whose calls all saturated are constants: evaluate them
    replaced = replaced.replace(lambda n: isinstance(n, sp.UnevaluatedExpr) and n.is_number, lambda n: n.doit())
    return replaced, sp.And(*conditions)


def add_guards(form: Form, limits: dict, act: Activation, dtype: str, compute: str) -> Form:
    """Wrap the form so that where it yields NaN at large |x| (an intermediate overflowed)
    and at +-inf, it returns its asymptote (its saturated calls replaced by their limits) or
    its limit at infinity, provided the form equals that asymptote where it still works."""
    params = {p: float(np.dtype(dtype).type(v)) for p, v in act.params.items()}
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
    if not pieces:
        return form
    guarded = sp.Piecewise(*pieces, (form.result, True))
    return replace(form, result=guarded, guards=tuple(p[0] for p in pieces))


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


# ---- the measurement -----------------------------------------------------------------------------

def term_scale(form_expr: sp.Expr, xs: np.ndarray, params: dict) -> np.ndarray:
    """sum |terms| of the top-level sum of an expression, in float64: the magnitude the result
    is computed from (its rounding errors are relative to this, not to the possibly tiny sum)."""
    terms = sp.Add.make_args(form_expr)
    total = np.zeros(xs.shape)
    for term in terms:
        f = numpy_function(Form((), term), list(params))
        with np.errstate(all="ignore"):
            v = np.broadcast_to(np.asarray(f(xs.astype(np.float64), *params.values()), float), xs.shape)
        total = total + np.abs(v)
    return total


def conditioned_distance(got: np.ndarray, ref: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """ULP distance; for derivatives measured in ULPs of max(|ref|, scale) where finite."""
    from .verify import ulp_distance

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
    if compute == "double" and dtype == "float32":
        return bound
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


def _dense_xs() -> np.ndarray:
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


def _open_ended(bounds: tuple[float, float], form: Form, fallback: Form, params: dict,
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
    pieces, rest = form.result.args[:len(form.guards)], form.result.args[len(form.guards):]
    ends = [sp.oo if math.isinf(b) and b > 0 else -sp.oo if math.isinf(b) else sp.Float(b, 30) for b in bounds]

    def dead(condition):
        tests = [a for a in ([condition] if condition.is_Relational else condition.args)
                 if a.is_Relational and a.has(X)]
        return any(all(t.subs(X, e) == sp.false for e in ends) for t in tests)

    live = [(value, cond) for value, cond in pieces if not dead(cond)]
    result = sp.Piecewise(*live, *rest) if live else rest[0][0]
    return replace(form, result=result, guards=tuple(v for v, _ in live))


def _in_range(xs: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """The points a ranged kernel computes in float (the C check: lo <= x <= hi; NaN fails)."""
    with np.errstate(invalid="ignore"):
        return (xs >= bounds[0]) & (xs <= bounds[1])


# ---- candidates and the choice ----------------------------------------------------------------------

def _rationalize(e):
    """sqrt(a) + b -> (a - b**2) / (sqrt(a) - b): no cancellation where sqrt(a) ~ -b."""
    if not e.is_Add:
        return None
    roots = [t for t in e.args if t.is_Pow and t.exp == sp.S.Half]
    if len(roots) != 1:
        return None
    root = roots[0]
    rest = sp.Add(*[t for t in e.args if t is not root])
    return (root.base - rest**2) / (root - rest)


def _sech2_sigmoid(e):
    """cosh(u)**-2 -> 4 sigmoid(2u) sigmoid(-2u): the same value, e/(1 + e)^2 with e = exp(-2|u|)
    (2u exact where u is), which actgen's float sigmoid computes within 1 ULP each; in float,
    cosh overflows at |u| ~ 89 and libmvec's coshf is not modelled by selection."""
    if e.is_Pow and e.exp == -2 and isinstance(e.base, sp.cosh):
        u = e.base.args[0]
        return 4 * sigmoid(2 * u) * sigmoid(-2 * u)
    return None


def _softplus_rational(expr: sp.Expr, u: sp.Expr) -> sp.Expr:
    """expr with tanh(softplus(u)), cosh(softplus(u))**-2 and sigmoid(u) written as rational
    functions of v = exp(-|u|) <= 1 (w = e^u: tanh(log(1 + w)) = w(w + 2) / (w(w + 2) + 2); for
    u >= 0, w = 1/v): tanh = a/d, sech^2 = 4 (1 + v)^2 m / d^2, sigmoid = s / (1 + v), with a, d,
    m, s selected by the sign of u, d in [1, 5]. Mish and its derivative then take one exp and one
    division (r = 1/d), no tanh, cosh or log1p, and nothing overflows: each factor that multiplies x
    (tanh, sigmoid * sech^2) is one bounded unit (UnevaluatedExpr keeps SymPy from distributing
    x's coefficient, or from clearing exp(-a) as 1/exp(a))."""
    v = sp.UnevaluatedExpr(sp.exp(-sp.Abs(u)))

    def pick(positive, negative):
        return sp.Piecewise((positive, u >= 0), (negative, True))

    a = pick(1 + 2 * v, v * (v + 2))
    d = pick(1 + 2 * v + 2 * v**2, v * (v + 2) + 2)
    m, s = pick(v**2, 1), pick(1, v)
    r = sp.UnevaluatedExpr(1 / d)
    tanh, sech2 = sp.tanh(softplus(u)), sp.cosh(softplus(u)) ** -2

    def product(e):                 # sigmoid(u) * sech^2(softplus(u)) * rest -> one unit * rest
        if e.is_Mul and sigmoid(u) in e.args and sech2 in e.args:
            rest = [f for f in e.args if f not in (sigmoid(u), sech2)]
            return sp.Mul(sp.UnevaluatedExpr(4 * s * (1 + v) * m * r * r), *rest)
        return None

    expr = expr.replace(lambda e: product(e) is not None, product)
    table = {tanh: sp.UnevaluatedExpr(a * r), sech2: sp.UnevaluatedExpr(4 * (1 + v) ** 2 * m * r * r),
             sigmoid(u): s / (1 + v)}
    return expr.replace(lambda e: e in table, lambda e: table[e])


def _softplus_arguments(e) -> set:
    return {f.args[0].args[0] for f in e.atoms(sp.tanh, sp.cosh) if isinstance(f.args[0], softplus)}


def _user_form(act: Activation) -> sp.Expr | None:
    """The expression as written (SymPy's canonical grouping undone: evaluate=False)."""
    from .spec import parse_expression

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
    rational = source.replace(lambda e: _rationalize(e) is not None, _rationalize)
    if rational != source:
        out.append(("rationalized", lower(rational, [*rules, "rationalize"])))
    sech2 = rewritten.stable.replace(lambda e: _sech2_sigmoid(e) is not None, _sech2_sigmoid)
    if sech2 != rewritten.stable:
        out.append(("sech2 as sigmoid", lower(sech2, [*rewritten.rules, "sech2_sigmoid"])))
    inner = _softplus_arguments(rewritten.stable)
    if len(inner) == 1:
        rational = _softplus_rational(rewritten.stable, inner.pop())
        out.append(("softplus rational", lower(rational, [*rewritten.rules, "softplus_rational"])))
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
    scale = None if kernel.kind == "forward" else term_scale(options[0][1].stable, sweep.xs, params)
    measured, best = [], None
    dense = dense_scale = None
    for compute in computes:
        in_float = compute == "dtype" and dtype == "float32"
        for label, form in tried:
            if form.compensated and dtype == "float32" and (compute == "double" or not float_compensable(form)):
                continue                    # float32 computed in double needs no compensation;
                                            # in float, float-float exp and erfc only
            guarded = add_guards(form, limits, act, dtype, compute)
            # in float, the model's error must be within MARGIN of the budget and the bound (the
            # C library's documented errors added) within the budget; elsewhere both within it
            m = measure_bounded(guarded, sweep.xs, ref, params, dtype, compute, scale,
                                MARGIN if in_float else 1.0)
            err, nonfinite, decisive = m.error, m.nonfinite, m.decisive_max
            measured.append(Measured(label, compute, err, nonfinite, m.bound))
            if in_float:
                if dense is None:
                    dense = _dense_xs()
                    dense_scale = (None if kernel.kind == "forward"
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
                                     (sweep.xs, m.decisive), (dense, dist_d), measured)
                    if ranged is not None:
                        return ranged
                if nonfinite == 0 and decisive <= budget and err_d > budget * MARGIN:
                    # float loses where the sweep does not look
                    measured.append(Measured(f"{label} (dense float check)", compute, err_d, 0))
                    continue
            entry = (guarded, compute, label, err, nonfinite, decisive, m.bound)
            if best is None or (nonfinite, decisive) < (best[4], best[5]):
                best = entry
            limit = budget * (MARGIN if in_float else 1.0)
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
    guarded, compute, label, err, _, _, bound = best
    return Choice(kernel, dtype, guarded, compute, label, err, _naive(act, kernel, sweep, scale),
                  tuple(measured), bound=bound)


def _ranged(act, kernel, sweep, scale, limits, label, forms, guarded, swept, dense,
            measured) -> Choice | None:
    """The float form on the interval where it measured within MARGIN of the budget (on the
    sweep against the reference, and on the dense points against itself in double), the form
    computed in double elsewhere; None if there is no such interval or the double form is
    over the budget. Its error: the worse of the two where each is used. ``swept`` and
    ``dense``: (points, per-point errors of the float form) on the sweep and the dense points;
    ``forms``: those the fallback may compute in double, the first within the budget (cheaper
    candidates, then the plain form where ``guarded`` is compensated in float: double needs no
    compensation for a float32 result)."""
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
    bounds = _open_ended(bounds, guarded, fallback, params, dtype)
    inside = _in_range(sweep.xs, bounds)
    err_f = float(np.max(dist_s[inside])) if inside.any() else 0.0
    err = max(err_f, err_w)
    measured.append(Measured(f"{label} (float on [{bounds[0]:g}, {bounds[1]:g}])", "dtype", err_f, 0))
    return Choice(kernel, dtype, guarded, "dtype", label, err, _naive(act, kernel, sweep, scale),
                  tuple(measured), bounds, fallback, err_w)


def _naive(act, kernel, sweep, scale) -> Measured:
    form = naive_form(act, kernel)
    err, nonfinite = measure(form, sweep.xs, sweep.kernel_refs[kernel.name], sweep.params, sweep.dtype,
                             "dtype", scale, c_model=False)       # as lambdify (its libm ideal)
    return Measured("naive", "dtype", err, nonfinite)


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


def choose_all(act: Activation, kernels: list[Kernel] | None = None, *, quick: bool = True) -> dict:
    """{(kernel name, dtype): Choice} for every kernel of ``act`` and both dtypes."""
    from .verify import DTYPES, make_sweep

    kernels = kernels or derive(act)
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


__all__ = ["Choice", "Measured", "choose", "choose_all", "candidates", "evaluate_form", "limit_at",
           "stabilize"]
