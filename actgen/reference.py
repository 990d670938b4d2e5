"""Independent high-precision evaluation of SymPy expressions with mpmath.

This is the yardstick every kernel is measured against. It walks the SymPy tree itself (no
code printers, no ``lambdify``), so a bug in the printers or rewrites cannot hide in the
reference. Precision is raised until the result, rounded to the target format, is stable.
"""

from __future__ import annotations

import functools
import math

import mpmath
import sympy as sp
from sympy.codegen.cfunctions import exp2, expm1, hypot, log1p, log2, log10

from .functions import cbrt, confine, sigmoid, softplus
from .ir import X, param_symbol

mp = mpmath.mp


class Undefined(ArithmeticError):
    """The expression has no real value at this point (a pole, or a complex result)."""


class _Cancellation(Exception):
    """An addition lost so many bits that the working precision cannot give the target."""

    def __init__(self, lost_bits: int):
        self.lost_bits = lost_bits


#: Bits the result must keep after the worst cancellation (set by reference() per call), and
#: how many bits below 1 a result rounds to zero in the target format whatever its digits.
_NEEDED_BITS = [0]
_ZERO_BITS = [0]


def _mpf_of_number(e):
    if e.is_Integer:
        return mpmath.mpf(int(e))
    if e.is_Rational:
        return mpmath.mpf(int(e.p)) / int(e.q)
    if e.is_Float:
        return mpmath.mpf(e._mpf_)
    if e is sp.pi:
        return +mp.pi
    if e is sp.E:
        return +mp.e
    if e is sp.S.Infinity:
        return mpmath.inf
    if e is sp.S.NegativeInfinity:
        return -mpmath.inf
    if e is sp.S.NaN:
        return mpmath.nan
    raise TypeError(f"no mpmath value for {e!r}")


def _heaviside(z, h0=mpmath.mpf(0.5)):
    if z > 0:
        return mpmath.mpf(1)
    if z < 0:
        return mpmath.mpf(0)
    if z == 0:
        return h0
    return mpmath.nan


def _sign(z):
    if mpmath.isnan(z):
        return z
    return mpmath.mpf(0) if z == 0 else mpmath.mpf(1 if z > 0 else -1)


def _log(z):
    if z == 0:
        return -mpmath.inf
    return mpmath.log(z)


def exp_reference(z):
    """exp(z). mpmath computes exp of a large integer-valued argument at more than 600 bits as
    a power of e (seconds per call at |z| ~ 1e300); reduce the argument first instead:
    exp(z) = 2**k * exp(z - k*log(2)), with |z - k*log(2)| <= log(2)/2 computed exactly enough."""
    if not mpmath.isfinite(z) or abs(z) < 2:
        return mpmath.exp(z)
    if mpmath.mag(z) > _HUGE_EXP_BITS:
        # exp(z) with |z| > 2**16384 is 2**(+-2**16384): the argument itself is beyond every
        # float (only x**16 and beyond, or exp(exp(x)), get here) and the reduction would need
        # |z|'s bits of log(2) (exp(exp(x)) at x = 1e308 hung in the precision loop). The
        # float kernel's overflow (inf, or 0) is what it gives too.
        return mpmath.inf if z > 0 else mpmath.mpf(0)
    extra = int(mpmath.mag(z)) + 16
    with mpmath.extraprec(extra):
        k = int(mpmath.nint(z / mpmath.ln2))
        r = z - k * mpmath.ln2
    return mpmath.ldexp(mpmath.exp(r), k)


#: |argument| (as a power of 2) beyond which exp is taken to over/underflow exactly
_HUGE_EXP_BITS = 16384
#: |argument| beyond which sin and cos are NaN: only an overflowed intermediate gets there
#: (the largest float is 2**1024), where the float kernel computes sin(inf) = NaN
_HUGE_TRIG_BITS = 1100
#: set while a limit at +-inf is evaluated (x = 2**k, k up to 16384): there x itself is beyond
#: the float range on purpose, and sin(x) is computed (mpmath reduces it exactly)
_IN_LIMIT = [False]


def _far(function, huge):
    """``function``, except for arguments beyond 2**bits, where ``huge(z)`` gives the value."""
    bits = _HUGE_TRIG_BITS if huge is None else _HUGE_EXP_BITS

    def call(z):
        if mpmath.isfinite(z) and z != 0 and mpmath.mag(z) > bits:
            if huge is None and _IN_LIMIT[0] and mpmath.mag(z) <= _HUGE_EXP_BITS + 64:
                return function(z)
            if huge is None:
                raise Undefined("sin or cos of an argument beyond the float range")
            return huge(z)
        return function(z)

    return call


def _erfc(z):
    """erfc(z). mpmath's erfc raises OverflowError for z beyond ~2**500 (its series check
    squares a huge integer as a float); there, the asymptotic series
    exp(-z**2) / (z sqrt(pi)) * (1 - 1/(2 z**2) + 3/(4 z**4)), whose next term is 2**-384
    relative at z > 2**64, is used."""
    if mpmath.isfinite(z) and z > mpmath.ldexp(1, 64):
        w = 1 / (2 * z * z)
        return exp_reference(-z * z) / (z * mpmath.sqrt(mpmath.pi)) * (1 - w + 3 * w * w)
    if mpmath.isfinite(z) and z < -(mpmath.sqrt(mp.prec) + 2):
        return mpmath.mpf(2)               # 2 - erfc(-z), erfc(-z) < 2**-prec
    return mpmath.erfc(z)


def _saturating(function, limit, threshold):
    """``function`` for arguments up to ``threshold(prec)`` in magnitude; beyond, its limit at
    +-inf (``limit(sign)``), which it equals to within 2**-prec there. mpmath computes tanh,
    erf, atan of a huge argument the long way (tanh(exp(2**1024)) ran out of memory in
    mpf_cosh_sinh; erf(2**600) overflowed converting an int to a float): reasoned, not computed."""

    def call(z):
        if mpmath.isfinite(z) and abs(z) > threshold(mp.prec):
            return limit(1 if z > 0 else -1)
        return function(z)

    return call


def _huge_cosh_sinh(odd: bool):
    """cosh or sinh: beyond |z| > prec, e^|z| / 2 (the other exponential is below 2**-prec of it),
    through exp_reference's exact argument reduction (mpmath's cosh of 2**1000 does not end)."""
    function = mpmath.sinh if odd else mpmath.cosh

    def call(z):
        if mpmath.isfinite(z) and abs(z) > mp.prec:
            half = exp_reference(abs(z)) / 2
            return -half if odd and z < 0 else half
        return function(z)

    return call


def _max(*args):
    if any(mpmath.isnan(a) for a in args):
        return mpmath.nan
    return max(args)


def _min(*args):
    if any(mpmath.isnan(a) for a in args):
        return mpmath.nan
    return min(args)


_FUNCS = {
    sp.exp: exp_reference, sp.log: _log,
    sp.tanh: _saturating(mpmath.tanh, lambda sign: mpmath.mpf(sign), lambda prec: prec),
    sp.sinh: _far(_huge_cosh_sinh(True), lambda z: mpmath.inf if z > 0 else -mpmath.inf),
    sp.cosh: _far(_huge_cosh_sinh(False), lambda z: mpmath.inf),
    sp.atan: _saturating(mpmath.atan, lambda sign: sign * mpmath.pi / 2, lambda prec: mpmath.ldexp(1, prec)),
    sp.sin: _far(mpmath.sin, None), sp.cos: _far(mpmath.cos, None),
    sp.erf: _saturating(mpmath.erf, lambda sign: mpmath.mpf(sign), lambda prec: mpmath.sqrt(prec) + 2),
    sp.erfc: _erfc,
    sp.Abs: abs, sp.sign: _sign, sp.Heaviside: _heaviside, sp.Max: _max, sp.Min: _min,
    sigmoid: lambda z: 1 / (1 + exp_reference(-z)),
    softplus: lambda z: mpmath.log1p(exp_reference(z)) if z < 0 else z + mpmath.log1p(exp_reference(-z)),
    log1p: lambda z: _log(1 + z) if z == -1 else mpmath.log1p(z),
    expm1: lambda z: exp_reference(z) - 1 if mpmath.isfinite(z) and abs(z) > 1 else mpmath.expm1(z),
    sp.DiracDelta: lambda *a: mpmath.mpf(0),
    confine: lambda x, lo, hi, inside: x if lo <= x <= hi else inside,
    sp.asinh: mpmath.asinh, sp.acosh: mpmath.acosh, sp.atanh: mpmath.atanh,
    sp.asin: mpmath.asin, sp.acos: mpmath.acos, sp.tan: _far(mpmath.tan, None),
    cbrt: lambda z: mpmath.sign(z) * mpmath.cbrt(abs(z)),
    log2: lambda z: _log(z) / mpmath.ln2, log10: lambda z: _log(z) / mpmath.ln10,
    exp2: lambda z: exp_reference(z * mpmath.ln2), hypot: mpmath.hypot,
}

_RELATIONS = {sp.StrictLessThan: lambda a, b: a < b, sp.LessThan: lambda a, b: a <= b,
              sp.StrictGreaterThan: lambda a, b: a > b, sp.GreaterThan: lambda a, b: a >= b,
              sp.Equality: lambda a, b: a == b, sp.Unequality: lambda a, b: a != b}


def _real(v):
    if isinstance(v, mpmath.mpc):
        if v.imag == 0:
            return v.real
        raise Undefined("complex value")
    return v


def _tanh_derivative_argument(e):
    """u if ``e`` is the sum 1 - tanh(u)**2 (SymPy's d/du tanh(u)), else None."""
    if len(e.args) != 2 or sp.S.One not in e.args:
        return None
    (other,) = [a for a in e.args if a is not sp.S.One]
    if other.is_Mul and len(other.args) == 2 and other.args[0] is sp.S.NegativeOne:
        square = other.args[1]
        if square.is_Pow and square.exp == 2 and isinstance(square.base, sp.tanh):
            return square.base.args[0]
    return None


def _erf_complement(e):
    """``e`` (an Add) with a pair c + c*erf(u) written c*erfc(-u), or c - c*erf(u) written
    c*erfc(u) (the same value: 1 + erf(u) = erfc(-u)), else None. Literally, 1 + erf(u) cancels
    about u**2 * 1.44 bits at negative u (gelu at x = -1e38: past the 16384-bit ceiling)."""
    constant = next((a for a in e.args if a.is_Number), None)
    if constant is None or constant == 0:
        return None
    for term in e.args:
        coeff, rest = term.as_coeff_Mul()
        if isinstance(rest, sp.erf) and abs(coeff) == abs(constant):
            u = rest.args[0]
            replaced = constant * sp.erfc(-u if coeff == constant else u, evaluate=False)
            others = [a for a in e.args if a is not constant and a is not term]
            return sp.Add(replaced, *others, evaluate=False)
    return None


def _equal_without_cancellation(e):
    """For a sum that cancels catastrophically where its value is small, an equal expression
    that does not (else None): 1 - tanh(u)**2 -> 4 t / (1 + t)**2 with t = exp(-2|u|) (sech(u)**2;
    literally it cancels about 2.9|u| bits, and the precision loop went to its 16384-bit ceiling
    at every large u of tanh', mish', gelu_tanh'), and c + c*erf(u) -> c*erfc(-u)."""
    u = _tanh_derivative_argument(e)
    if u is not None:
        t = sp.exp(-2 * sp.Abs(u))
        return 4 * t / (1 + t) ** 2
    return _erf_complement(e)


@functools.lru_cache(maxsize=512)
def _without_cancellations(expr: sp.Expr) -> sp.Expr:
    """``expr`` with every sum that _equal_without_cancellation knows replaced: the same values
    (exact identities), found in fewer bits. Once per expression, not per point."""
    return expr.replace(lambda e: e.is_Add and _equal_without_cancellation(e) is not None,
                        _equal_without_cancellation)


#: evaluate_fixed's overflow threshold and underflow quantum while it runs (None: mpmath's
#: unbounded exponents)
_RANGE: list = [None, None]


def _eval(e, env):
    return _clamp(_eval_node(e, env))


def _clamp(v):
    if _RANGE[0] is not None and mpmath.isfinite(v):
        if abs(v) > _RANGE[0]:
            return mpmath.inf if v > 0 else -mpmath.inf
        if _RANGE[1] is not None and abs(v) < _RANGE[1] * _SUBNORMAL_SPAN:
            # below double's normal range a double-double's low part is subnormal: what is left is
            # a multiple of the smallest subnormal (c * x underflows at x = 5e-324 whatever comes
            # after: (c * asinh(x)) / sqrt(x) was 0 in the kernel, 2.8e-163 in the model)
            return mpmath.nint(v / _RANGE[1]) * _RANGE[1]
    return v


#: 2**-969 / 2**-1074: where double-double's 106 bits reach the smallest subnormal
_SUBNORMAL_SPAN = mpmath.mpf(2) ** 105


def _eval_node(e, env):
    if e.is_Symbol:
        return env[e]
    if isinstance(e, sp.UnevaluatedExpr):          # (rewrite's units: the same value)
        return _eval(e.args[0], env)
    if e.is_Number or e.is_NumberSymbol or e in (sp.S.Infinity, sp.S.NegativeInfinity, sp.S.NaN):
        return _mpf_of_number(e)
    if e.is_Add:
        terms = [_eval(a, env) for a in e.args]
        total = _real(mpmath.fsum(terms))
        if _NEEDED_BITS[0] and mpmath.isfinite(total):
            big = max((abs(t) for t in terms if mpmath.isfinite(t)), default=0)
            if big:
                # bits lost to cancellation: from the largest term's magnitude to the sum's
                lost = mp.prec if total == 0 else int(mpmath.mag(big) - mpmath.mag(total))
                if mp.prec - lost < _NEEDED_BITS[0]:
                    raise _Cancellation(max(lost, 1))
        return total
    if e.is_Mul:
        if _RANGE[0] is not None:
            # a fixed-precision model: one factor at a time, the divisions last, as the double-double
            # printer multiplies (an intermediate product can underflow or overflow)
            den = [a for a in e.args if a.is_Pow and a.exp.is_Integer and a.exp < 0]
            value = mpmath.mpf(1)
            for a in [a for a in e.args if a not in den]:
                value = _clamp(_real(value * _eval(a, env)))
            for a in den:
                value = _clamp(_real(value * _eval(a, env)))
            return value
        return _real(mpmath.fprod(_eval(a, env) for a in e.args))
    if e.is_Pow:
        base, exponent = e.args
        b = _eval(base, env)
        if exponent.is_Integer:
            n = int(exponent)
            if b == 0 and n < 0:
                raise Undefined("division by zero")
            return b ** n
        if exponent == sp.S.Half:
            if b < 0:
                raise Undefined("sqrt of a negative number")
            return mpmath.sqrt(b)
        x = _eval(exponent, env)
        if b == 0 and x < 0:
            raise Undefined("division by zero")
        return _real(mpmath.power(b, x))
    if isinstance(e, sp.Piecewise):
        for value, cond in e.args:
            if _cond(cond, env):
                return _eval(value, env)
        raise Undefined("no Piecewise condition holds")
    func = next((_FUNCS[c] for c in type(e).__mro__ if c in _FUNCS), None)  # subclasses too
    if func is None:
        raise TypeError(f"the reference cannot evaluate {e.func}")
    try:
        value = _real(func(*[_eval(a, env) for a in e.args]))
    except ZeroDivisionError:
        raise Undefined("division by zero") from None
    except ValueError as exc:  # mpmath: math domain error
        raise Undefined(str(exc)) from None
    if func is _log and _NEEDED_BITS[0] and not (e.args[0].is_Symbol or e.args[0].is_Number):
        # log of a computed value near 1 keeps its absolute error, 2**-prec, so the result loses
        # -log2|log z| bits (all of them where z rounded to 1): log(1 + exp(x)) at x = -316 came
        # out 0 at every precision the loop tried, though no addition cancelled
        # (unless |log z| < 2**-prec is below the format's smallest subnormal: the result is 0)
        if value == 0:
            if mp.prec < _ZERO_BITS[0]:
                raise _Cancellation(mp.prec)
        elif (mpmath.isfinite(value) and mp.prec + int(mpmath.mag(value)) < _NEEDED_BITS[0]
              and -int(mpmath.mag(value)) < _ZERO_BITS[0]):
            raise _Cancellation(max(1, -int(mpmath.mag(value))))
    return value


def _cond(c, env) -> bool:
    if c is sp.true:
        return True
    if c is sp.false:
        return False
    if isinstance(c, sp.And):
        return all(_cond(a, env) for a in c.args)
    if isinstance(c, sp.Or):
        return any(_cond(a, env) for a in c.args)
    if isinstance(c, sp.Not):
        return not _cond(c.args[0], env)
    if isinstance(c, sp.ITE):
        return _cond(c.args[1], env) if _cond(c.args[0], env) else _cond(c.args[2], env)
    rel = _RELATIONS.get(type(c))
    if rel is None:
        raise TypeError(f"the reference cannot evaluate the condition {c}")
    a, b = _eval(c.lhs, env), _eval(c.rhs, env)
    if isinstance(a, mpmath.mpc) or isinstance(b, mpmath.mpc):
        raise Undefined("complex value in a condition")
    return bool(rel(a, b))


def evaluate_fixed(expr: sp.Expr, values: dict, prec: int, max_magnitude: float | None = None,
                   quantum: float | None = None) -> mpmath.mpf:
    """``expr`` at ``values`` with every operation at ``prec`` bits, as written: no rewrite of its
    cancelling sums (evaluate's), no precision raised where it cancels. A model of a fixed-
    precision computation of the form (measure.evaluate_form_wide). With ``max_magnitude``, every
    operation's result beyond it is +-inf (double-double overflows where double does: sin(2 x)
    at x = 1e308 is sin(inf)). May raise Undefined."""
    _RANGE[:] = [max_magnitude, None if quantum is None else mpmath.mpf(quantum)]
    try:
        with mpmath.workprec(prec):
            env = {s: mpmath.mpf(v) for s, v in values.items()}
            return _eval(expr, env)
    finally:
        _RANGE[:] = [None, None]


def evaluate(expr: sp.Expr, values: dict, prec: int) -> mpmath.mpf:
    """Evaluate ``expr`` at ``values`` ({Symbol: float or mpf}) with ``prec`` bits. May raise Undefined."""
    expr = _without_cancellations(expr)
    with mpmath.workprec(prec):
        env = {s: mpmath.mpf(v) for s, v in values.items()}
        return _eval(expr, env)


def round_to_format(v, mant_bits: int, min_exp: int, max_exp: int) -> float:
    """Round an mpf to the nearest float of a binary format (ties to even), as a Python float.

    ``mant_bits`` counts the implicit bit (24 for float32, 53 for float64); ``min_exp`` is the
    exponent of the smallest normal (-126, -1022); ``max_exp`` that of the largest finite (127, 1023).
    """
    if mpmath.isnan(v):
        return math.nan
    if mpmath.isinf(v):
        return math.inf if v > 0 else -math.inf
    if v == 0:
        return 0.0
    man, exp = mpmath.frexp(v)  # v = man * 2**exp, 0.5 <= |man| < 1
    # quantum: the value of the last mantissa bit, floored at the subnormal quantum
    quantum = max(int(exp) - mant_bits, min_exp - mant_bits + 1)
    integer = int(mpmath.nint(mpmath.ldexp(v, -quantum)))  # nint rounds half to even
    if integer == 0:
        return math.copysign(0.0, float(man))
    if abs(integer).bit_length() + quantum - 1 > max_exp:   # rounds beyond the largest finite
        return math.copysign(math.inf, integer)
    return math.ldexp(integer, quantum)


FORMATS = {"float32": (24, -126, 127), "float64": (53, -1022, 1023)}


def _start_precision(values: dict, target: int) -> int:
    """Enough bits that Taylor-regime cancellations (exp(x) - 1 at tiny x, 1 + erf(x) at
    large negative x) can resolve: the target plus guard bits plus the inputs' exponent range,
    that range counted up to 128 bits: beyond, the cancellation check (_Cancellation) raises the
    precision where a sum needs it (x = 1e-300 made every evaluation 1100 bits: 3 s of a build)."""
    spread = 0
    for v in values.values():
        v = mpmath.mpf(v)
        if v != 0 and mpmath.isfinite(v):
            spread = max(spread, abs(int(mpmath.mag(v))))
    return target + 64 + min(spread, 128)


def reference(expr: sp.Expr, values: dict, dtype: str = "float64", *, max_prec: int = 16384) -> float:
    """The correctly rounded value of ``expr`` at ``values`` in ``dtype`` (nan where undefined).

    Starts with the target precision plus guard bits plus the inputs' exponent spread; an
    addition that cancels more bits than the precision can spare restarts the evaluation with
    more; then the precision is doubled until two successive results round to the same float.
    An exact zero that survives ``max_prec`` bits is taken as zero.
    """
    fmt = FORMATS[dtype]
    target = fmt[0]
    prec = _start_precision(values, target)
    previous = None
    while True:
        try:
            _NEEDED_BITS[0] = target + 24 if prec < max_prec else 0
            _ZERO_BITS[0] = target - fmt[1] + 24
            value = evaluate(expr, values, prec)
        except Undefined:
            return math.nan
        except _Cancellation as exc:
            prec = min(max_prec, max(2 * prec, prec + 2 * exc.lost_bits))
            previous = None
            continue
        finally:
            _NEEDED_BITS[0] = _ZERO_BITS[0] = 0
        rounded = round_to_format(value, *fmt)
        if previous is not None and (rounded == previous or (math.isnan(rounded) and math.isnan(previous))):
            return rounded
        if prec >= max_prec:
            return rounded
        previous = rounded
        prec = min(max_prec, 2 * prec)


SAMPLE_XS = (-1000, -100, -30, -10, -3, -1, -0.5, -1e-3, 0, 1e-3, 0.5, 1, 3, 10, 30, 100, 1000)


def complex_sample_point(expr: sp.Expr, params: dict[str, float]):
    """Return an x among SAMPLE_XS where ``expr`` (at default params) is complex, else None.

    Poles and other undefined points are not complex; they are the spec author's business.
    """
    values = {param_symbol(p): v for p, v in params.items()}
    for x in SAMPLE_XS:
        try:
            evaluate(expr, {**values, X: x}, 64)
        except Undefined as exc:
            if "complex" in str(exc) or "negative" in str(exc):
                return x
    return None


def limit_at_infinity(expr: sp.Expr, params: dict, sign: int, dtype: str, *, variable: sp.Symbol = X) -> float:
    """lim expr as x -> sign*inf, rounded to ``dtype``; nan if it does not settle.

    Evaluated numerically: at x = sign * 2**k for k = 64, 256, 1024, 4096, 16384, until two
    successive values round to the same float. (SymPy's limit cannot see through Max, Min
    and Piecewise; mpmath's exponent range has no such trouble.)
    """
    return _settled(expr, params, dtype, variable, [mpmath.ldexp(mpmath.mpf(sign), k)
                                                    for k in (64, 256, 1024, 4096, 16384)])


def limit_at_zero(expr: sp.Expr, params: dict, sign: int, dtype: str, *, variable: sp.Symbol = X) -> float:
    """lim expr as x -> +-0 (the side of the zero's sign), rounded to ``dtype``; nan if it does
    not settle. For a pole at 0 that the kernel's IEEE arithmetic resolves by the sign of the
    zero (log1mexp'(+-0) = +-inf); used only where the value at 0 itself is undefined."""
    return _settled(expr, params, dtype, variable, [mpmath.ldexp(mpmath.mpf(sign), -k)
                                                    for k in (64, 256, 1024, 4096, 16384)])


def limit_at_point(expr: sp.Expr, params: dict, point: float, dtype: str, *, variable: sp.Symbol = X) -> float:
    """The two-sided limit of expr as x -> ``point`` (a float), rounded to ``dtype``: the value
    at point -+ 2**-k (k = 60, 120, ... 4096, relative to the point's scale) where both sides
    settle to the same float (a limit of 0 settles once the values underflow); nan if they do not
    (a pole, a jump). For a removable singularity: sin(x)/x at
    0 is 1, (exp(x) - 1)/x at 0 is 1."""
    scale = mpmath.mpf(abs(point)) if point != 0 else mpmath.mpf(1)
    sides = [_settled(expr, params, dtype, variable,
                      [mpmath.mpf(point) + sign * mpmath.ldexp(scale, -k) for k in (60, 120, 240, 480, 960, 2048, 4096)])
             for sign in (-1, 1)]
    if math.isnan(sides[0]) or sides[0] != sides[1] or math.isinf(sides[0]):
        return math.nan
    return sides[0]


def _settled(expr, params, dtype, variable, points) -> float:
    """The value at the first of ``points`` where two successive ones round to the same float;
    nan if none do, or if three successive values are not monotone and do not shrink (sin(x) at
    x = 2**64, 2**256, 2**1024: an oscillation, which the further points, each dearer, would not
    settle either; sin(x)/x shrinks, and settles at 0)."""
    values = {param_symbol(p): v for p, v in params.items()}
    seen: list[float] = []
    _IN_LIMIT[0] = True
    try:
        for point in points:
            value = reference(expr, {**values, variable: point}, dtype)
            if seen and (value == seen[-1] or (math.isnan(value) and math.isnan(seen[-1]))):
                return value
            seen.append(value)
            if value == 0 and len(seen) >= 3 and abs(seen[-3]) > abs(seen[-2]) > 0:
                # shrinking, and now below the format's smallest subnormal: the limit rounds to 0
                # (the next point's evaluation can run out of precision first: the derivative of
                # log(x + sqrt(x**2 + 1)) cancels twice at x = -2**16384, past 16384 bits)
                return value
            if len(seen) >= 3 and not any(math.isnan(v) for v in seen[-3:]):
                a, b, c = seen[-3:]
                shrinking = abs(c) < abs(a) * 2.0 ** -64          # sin(x)/x: decays while it oscillates
                if not (a <= b <= c or a >= b >= c or shrinking):
                    return math.nan
    finally:
        _IN_LIMIT[0] = False
    # growing without bound, but slower than any float can show: asinh(x) and log(x) at
    # x = 2**64 ... 2**16384 are 44, 178, 710, 2839, 11357 (the steps grow with the exponent;
    # log(log(x))'s stay the same). A limit that exists has steps that shrink. (The last point
    # may be past what 16384 bits resolve: log(x + sqrt(x**2 + 1)) at x = -2**16384 is -inf.)
    finite = seen[:next((i for i, v in enumerate(seen) if not math.isfinite(v)), len(seen))]
    if len(finite) >= 4:
        steps = [b - a for a, b in zip(finite, finite[1:])]
        if all(d > 0 for d in steps) or all(d < 0 for d in steps):
            if all(abs(later) >= abs(earlier) * (1 - 1e-9) for earlier, later in zip(steps, steps[1:])):
                return math.copysign(math.inf, steps[-1])
    return math.nan
