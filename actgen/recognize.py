"""Standard functions spelled out: (exp(u) - exp(-u)) / (exp(u) + exp(-u)) is tanh(u).

Papers and first-time users write tanh, sinh, asinh, atanh, sigmoid with exponentials,
logarithms and square roots. The spelled-out forms cancel (tanh's near 0, asinh's for u < 0)
or overflow (exp(u) beyond 709) where the library function does neither. A rewrite rule
(rewrite.RULES, "standard_function") replaces a subexpression by the function it equals.

Recognition is by identity testing, not by pattern: for a subexpression s with exponentials,
logarithms or square roots, the candidate arguments u are read off it (the arguments of its
exponentials and their halves and negatives, the bases of its square roots less 1 or plus 1,
the linear parts of its logarithms), and s is compared with each standard function of u at a
dozen points, both signs of x and the parameters moved off their defaults, in 80-digit
arithmetic. A candidate equal at every point where s is real (and s real at all of them) is
taken. Wrong identities cannot pass: two different analytic expressions agree at a dozen
scattered points only by accident of measure zero.
"""

from __future__ import annotations

import functools

import mpmath
import sympy as sp

from sympy.codegen.cfunctions import expm1, log1p

from .functions import sigmoid, softplus
from .ir import X
from .reference import Undefined, evaluate

#: The functions a spelled-out subexpression is tested against, in order (the first that matches),
#: with their mpmath values
STANDARD = ((sp.tanh, mpmath.tanh), (sp.sinh, mpmath.sinh), (sp.cosh, mpmath.cosh),
            (sigmoid, lambda u: 1 / (1 + mpmath.exp(-u))), (softplus, lambda u: mpmath.log1p(mpmath.exp(u))),
            (sp.asinh, mpmath.asinh), (sp.acosh, mpmath.acosh), (sp.atanh, mpmath.atanh))

#: Functions whose arguments are candidate arguments, and whose presence makes a node worth testing
_INNER = (sp.exp, sp.log, sigmoid, softplus, sp.sinh, sp.cosh, sp.tanh, expm1, log1p)

#: Values of x the identity is tested at (both signs, near 0 and away from it)
_XS = (-3.7, -1.3, -0.61, -0.13, 0.09, 0.47, 1.1, 2.9)
_MAX_NODES = 60


def _spelled(e: sp.Expr) -> bool:
    """A node worth testing: it has exponentials, logarithms or square roots below it and is not
    itself one of the standard functions."""
    if not (e.is_Add or e.is_Mul or e.is_Pow or isinstance(e, sp.log)):
        return False
    if not e.has(X) or sp.count_ops(e) > _MAX_NODES:
        return False
    return any(isinstance(n, _INNER) or (n.is_Pow and n.exp == sp.S.Half) for n in sp.preorder_traversal(e))


def _arguments(e: sp.Expr) -> list[sp.Expr]:
    """Candidate arguments u of a standard function that ``e`` may spell out."""
    found = []
    for node in sp.preorder_traversal(e):
        if isinstance(node, _INNER) and not isinstance(node, sp.log):
            a = node.args[0]
            found += [a, a / 2, -a, -a / 2]
        elif node.is_Pow and node.exp == sp.S.Half:
            for shift in (-1, 1):
                square = sp.expand(node.base + shift)
                root = sp.sqrt(square)
                if not root.is_Pow or root.exp != sp.S.Half:        # a perfect square
                    found += [root, -root]
            for term in sp.Add.make_args(node.base):
                coeff, rest = term.as_coeff_Mul()
                if rest.is_Pow and rest.exp == 2 and coeff > 0:
                    found.append(sp.sqrt(coeff) * rest.base)
        elif isinstance(node, sp.log):
            num, den = sp.fraction(sp.together(node.args[0]))
            found += [sp.expand(num - 1), sp.expand(1 - den), sp.expand(node.args[0] - 1)]
    out = []
    for u in found:
        if u.has(X) and u not in out:
            out.append(u)
    return out


def _values(e: sp.Expr, points: list[dict], prec: int = 270) -> list | None:
    out = []
    for env in points:
        try:
            v = evaluate(e, env, prec)
        except (Undefined, ValueError, ZeroDivisionError, TypeError, OverflowError):
            out.append(None)
            continue
        out.append(v if mpmath.isfinite(v) else None)
    return out


def _points(e: sp.Expr) -> list[dict]:
    params = sorted((s for s in e.free_symbols if s != X), key=str)
    points = []
    for i, x in enumerate(_XS):
        env = {X: mpmath.mpf(x)}
        for j, p in enumerate(params):
            env[p] = mpmath.mpf(0.37 + 0.53 * ((i + 2 * j) % 5))        # positive, away from defaults
        points.append(env)
    return points


@functools.lru_cache(maxsize=2048)
def standard_function(e: sp.Expr) -> sp.Expr | None:
    """c * f(u) + d, a standard function f of some argument u with small rational c and d, that
    ``e`` equals (tanh(u) for the exponential spelling, -asinh(x) for log(sqrt(x**2 + 1) - x)),
    or None. A product is also tested without its factors that spell nothing (x * tanh(x) written
    x * (1 - exp(-2x)) / (1 + exp(-2x)))."""
    if not _spelled(e):
        return None
    if e.is_Mul:
        plain = [f for f in e.args if not _spelled(f) and not isinstance(f, _INNER)]
        core = sp.Mul(*[f for f in e.args if f not in plain])
        if plain and core != e and len(sp.Mul.make_args(core)) > 1:
            found = _identify(core)
            return None if found is None else sp.Mul(*plain) * found
    return _identify(e)


def _identify(e: sp.Expr) -> sp.Expr | None:
    """Screened in 64-bit arithmetic (most subexpressions are no standard function: a rejection
    costs a few microseconds a point), confirmed in 270-bit."""
    points = _points(e)
    have = _values(e, points, 64)
    if have is None or sum(v is not None for v in have) < 6:
        return None
    arguments = {}                                      # u -> its values at the points, 64-bit
    for u in _arguments(e):
        us = _values(u, points, 64)
        if us is not None and all(v is not None for v in us):
            arguments[u] = us
    for function, numeric in STANDARD:
        for u, us64 in arguments.items():
            candidate = function(u)
            if candidate == e or not isinstance(candidate, sp.Function):
                continue
            if _affine(have, [_numeric(numeric, v, 64) for v in us64], 10 ** -12) is None:
                continue
            exact_have, us = _values(e, points), _values(u, points)
            affine = _affine(exact_have, [_numeric(numeric, v) for v in us])
            if affine is not None:
                c, d = affine
                return c * candidate + d
    return None


def _numeric(numeric, u, prec: int = 270):
    with mpmath.workprec(prec):
        try:
            b = numeric(u)
        except (ValueError, ZeroDivisionError):
            return None
    if isinstance(b, mpmath.mpc):
        b = b.real if b.imag == 0 else None
    return b if b is not None and mpmath.isfinite(b) else None


def _affine(have: list, want: list, tolerance: float = 10 ** -50) -> tuple[sp.Rational, sp.Rational] | None:
    """(c, d) small rationals with have = c * want + d at every point (both undefined at the same
    points) to ``tolerance`` relative, else None."""
    if any((a is None) != (b is None) for a, b in zip(have, want)):
        return None
    pairs = [(a, b) for a, b in zip(have, want) if a is not None]
    (a0, b0), (a1, b1) = pairs[0], next(((a, b) for a, b in pairs[1:] if b != pairs[0][1]), (None, None))
    if a1 is None:
        return None
    with mpmath.workprec(270):
        tolerance = mpmath.mpf(tolerance)
        c = (a1 - a0) / (b1 - b0)
        d = a0 - c * b0
        rationals = []
        for value in (c, d):
            r = sp.Rational(mpmath.nstr(value, 60, min_fixed=-100, max_fixed=100)).limit_denominator(16)
            if abs(r.p) > 64 or abs(mpmath.mpf(r.p) / r.q - value) > tolerance * max(1, abs(value)):
                return None
            rationals.append(r)
        c, d = rationals
        if c == 0:
            return None
        cv, dv = mpmath.mpf(c.p) / c.q, mpmath.mpf(d.p) / d.q
        if all(abs(a - (cv * b + dv)) <= tolerance * max(1, abs(a)) for a, b in pairs):
            return c, d
    return None
