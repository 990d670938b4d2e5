"""Alternatives: exact rewrites that give selection another candidate for a kernel, not a better
form in general (actgen/rewrite.py's RULES are those). Each is measured per kernel and dtype
(actgen/select.py): a root rationalized against what it cancels with, a power minus one as expm1
of log1p, hypot for a root of squares, the log of a ratio as log1p, sech^2 as sigmoids, mish's
functions of softplus as rational functions of exp(-|u|).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy as sp
from sympy.codegen.cfunctions import expm1, hypot, log1p

from .functions import sigmoid, softplus
from .ir import X


def _rationalize_node(e, constants_only: bool = False):
    """c sqrt(a) + b -> (c^2 a - b^2) / (c sqrt(a) - b), the numerator expanded so that what cancels
    where c sqrt(a) ~ -b cancels symbolically (bent identity's sqrt(x^2 + 1)/2 - 1/2 + x: x^2/4
    over sqrt(x^2 + 1)/2 + 1/2, plus x). b is every other term of the sum or, with
    ``constants_only``, only its numbers (the rest is added after: x + sqrt(x^2 + 1)/2 - 1/2
    cancels between the root and -1/2 alone)."""
    if not e.is_Add:
        return None
    roots = [t for t in e.args if _scaled_root(t) is not None]
    if len(roots) != 1:
        return None
    coeff, root = _scaled_root(roots[0])
    others = [t for t in e.args if t is not roots[0]]
    paired = [t for t in others if t.is_Number] if constants_only else others
    if not paired or (constants_only and len(paired) == len(others)):
        return None                   # nothing to pair, or the same as pairing every term
    rest = sp.Add(*paired)
    numerator = coeff**2 * root.base - rest**2
    expanded = sp.expand(numerator)
    if sp.count_ops(expanded) <= sp.count_ops(numerator):
        numerator = expanded
    return numerator / (coeff * root - rest) + sp.Add(*[t for t in others if t not in paired])


def _pow_expm1_node(e):
    """c + k*b**p + r with k = -c, b a function of x -> k*expm1(p*log1p(b - 1)) + r, b - 1 taken
    symbolically (through Max, Min and Piecewise: Max(0, 1 + x/10) - 1 is Max(-1, x/10)): the
    power cancels against the constant where b is near 1, as (1 + x/10)**10 - 1 at x ~ 0 does
    (PDELU). Not integer powers (a polynomial in b - 1, which the other rules see). A candidate,
    not a rule: where b is large, p*log(b) magnifies its rounding."""
    if not e.is_Add:
        return None
    for term in e.args:
        k, power = term.as_coeff_Mul()
        if not (power.is_Pow and X in power.base.free_symbols and X not in power.exp.free_symbols
                and not power.exp.is_Integer):
            continue                  # (an integer power minus 1 is a polynomial: 1 - tanh(u)**2 has sech2)
        constant = [t for t in e.args if t.is_Number and t == -k]
        if not constant:
            continue
        rest = [t for t in e.args if t is not term and t is not constant[0]]
        return k * expm1(power.exp * log1p(_minus_one(power.base))) + sp.Add(*rest)
    return None


def _minus_one(b):
    if isinstance(b, (sp.Max, sp.Min)):
        return b.func(*[_minus_one(a) for a in b.args])
    if isinstance(b, sp.Piecewise):
        return sp.Piecewise(*[(_minus_one(v), c) for v, c in b.args])
    return b - 1


def _pow_expm1(source: sp.Expr) -> sp.Expr:
    return source.replace(lambda e: _pow_expm1_node(e) is not None, _pow_expm1_node)


def _hypot_node(e):
    """sqrt(a**2 + b**2) -> hypot(a, b) (and its reciprocal), a positive number c being sqrt(c)**2
    and c*u**2 being (sqrt(c)*u)**2: no overflow of the squares (asinh(x)*sqrt(|x|)'s derivative,
    1/sqrt(x**2 + 1), was 0 beyond x = 1e154). A candidate: libm's hypot has no vector variant."""
    if not (e.is_Pow and e.exp in (sp.S.Half, -sp.S.Half) and e.base.is_Add and len(e.base.args) == 2):
        return None
    sides = [_square_root_of(t) for t in e.base.args]
    if any(side is None for side in sides) or all(side.is_Number for side in sides):
        return None
    return hypot(*sides) ** (2 * e.exp)


def _square_root_of(t):
    """u for a term u**2 (c*u**2 with a number c > 0: sqrt(c)*u; a number c > 0: sqrt(c)), else None."""
    if t.is_Number:
        return sp.sqrt(t) if t > 0 else None
    coeff, rest = t.as_coeff_Mul()
    if coeff > 0 and rest.is_Pow and rest.exp == 2:
        return sp.sqrt(coeff) * rest.base
    return None


def _hypot(source: sp.Expr) -> sp.Expr:
    return source.replace(lambda e: _hypot_node(e) is not None, _hypot_node)


def _scaled_root(t):
    """(c, sqrt(a)) for a term c * sqrt(a) with a number c (c = 1 for sqrt(a)), else None."""
    if t.is_Pow and t.exp == sp.S.Half:
        return sp.S.One, t
    if t.is_Mul:
        coeff, rest = t.as_coeff_Mul()
        if coeff is not sp.S.One and rest.is_Pow and rest.exp == sp.S.Half:
            return coeff, rest
    return None


def sech2_sigmoid_node(e):
    """cosh(u)**-2 -> 4 sigmoid(2u) sigmoid(-2u): the same value, e/(1 + e)^2 with e = exp(-2|u|)
    (2u exact where u is), which actgen's float sigmoid computes within 1 ULP each; in float,
    cosh overflows at |u| ~ 89 and libmvec's coshf is not modelled by selection."""
    if e.is_Pow and e.exp == -2 and isinstance(e.base, sp.cosh):
        u = e.base.args[0]
        return 4 * sigmoid(2 * u) * sigmoid(-2 * u)
    return None


def softplus_rational_of(expr: sp.Expr, u: sp.Expr) -> sp.Expr:
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


def _log_ratio_node(e):
    """log(a) - log(b) (+ c log terms ...) -> log(a/b); then log(u) -> log1p(u - 1) with u - 1 over
    one denominator, its terms cancelled symbolically (None where nothing changes)."""
    if e.is_Add:
        logs = [(c, f) for c, f in (t.as_coeff_Mul() for t in e.args) if isinstance(f, sp.log) and c in (1, -1)]
        if len(logs) >= 2:
            num = sp.Mul(*[f.args[0] for c, f in logs if c == 1])
            den = sp.Mul(*[f.args[0] for c, f in logs if c == -1])
            rest = [t for t in e.args if not (isinstance(t.as_coeff_Mul()[1], sp.log)
                                              and t.as_coeff_Mul()[0] in (1, -1))]
            return sp.Add(_log1p_of(num / den), *rest)
    if isinstance(e, sp.log) and e.args[0].has(X):
        return _log1p_of(e.args[0])
    return None


def _log1p_of(u: sp.Expr) -> sp.Expr:
    return log1p(sp.together(sp.expand(u - 1)))


def _log_ratio(exact: sp.Expr) -> sp.Expr:
    """Top down: a sum of logs is combined before its logs are taken one by one."""
    def walk(e):
        new = _log_ratio_node(e)
        if new is not None:
            return new
        return e.func(*[walk(a) for a in e.args]) if e.args and not isinstance(e, sp.logic.boolalg.Boolean) else e

    return walk(exact)


def _rationalize(source: sp.Expr, constants_only: bool = False) -> sp.Expr:
    def node(e):
        return _rationalize_node(e, constants_only)

    return source.replace(lambda e: node(e) is not None, node)


def _rationalize_constant(source: sp.Expr) -> sp.Expr:
    return _rationalize(source, constants_only=True)


def _sech2_sigmoid(stable: sp.Expr) -> sp.Expr:
    return stable.replace(lambda e: sech2_sigmoid_node(e) is not None, sech2_sigmoid_node)


def _softplus_rational(stable: sp.Expr) -> sp.Expr | None:
    inner = _softplus_arguments(stable)
    return softplus_rational_of(stable, inner.pop()) if len(inner) == 1 else None


@dataclass(frozen=True)
class Alternative:
    """A rewrite that gives selection another candidate, not a better form in general: exact
    like the RULES, but whether it wins (accuracy, cost) is measured per kernel and dtype.
    ``apply`` takes the kernel's exact expression (``of = "exact"``: as derived, no rule applied),
    its source expression (``of = "source"``: the stable rewrite before lowering) or its stable
    rewrite (``of = "stable"``) and returns the alternative expression, or None (or the same
    expression) where it does not apply."""

    label: str          # the candidate's name in selection's measurements and the generated comments
    rule: str           # recorded in the Form's rules
    doc: str
    of: str
    apply: Callable[[sp.Expr], sp.Expr | None]


#: Alternatives, in the order selection tries their candidates (after the rewrite itself and its
#: compensated variant).
ALTERNATIVES: tuple[Alternative, ...] = (
    Alternative("log1p of the ratio", "log_ratio",
                "log(a) - log(b) -> log1p((a - b)/b), log(u) -> log1p(u - 1), the difference cancelled "
                "symbolically: log(1 + exp(x)) - log(2) is log1p(expm1(x)/2), exact near x = 0", "exact",
                _log_ratio),
    Alternative("rationalized against the constant", "rationalize",
                "c sqrt(a) + k + r -> (c^2 a - k^2) / (c sqrt(a) - k) + r for a number k", "source",
                _rationalize_constant),     # (first: pairing x too can cancel in the denominator)
    Alternative("rationalized", "rationalize", "c sqrt(a) + b -> (c^2 a - b^2) / (c sqrt(a) - b)", "source",
                _rationalize),
    Alternative("power as expm1", "pow_expm1", "b**p - 1 -> expm1(p*log1p(b - 1))", "source", _pow_expm1),
    Alternative("hypot", "hypot", "sqrt(a**2 + b**2) -> hypot(a, b)", "source", _hypot),
    Alternative("sech2 as sigmoid", "sech2_sigmoid", "cosh(u)**-2 -> 4 sigmoid(2u) sigmoid(-2u)", "stable",
                _sech2_sigmoid),
    Alternative("softplus rational", "softplus_rational",
                "tanh(softplus(u)), cosh(softplus(u))**-2, sigmoid(u) -> rational functions of exp(-|u|)",
                "stable", _softplus_rational),
)
