"""Code printers: SymPy's own printers, subclassed where a kernel needs something else."""

from __future__ import annotations

import mpmath
import sympy as sp
from sympy.printing.precedence import PRECEDENCE


def decimal_literal(value: sp.Expr, digits: int = 21) -> str:
    """A decimal literal of ``value`` with ``digits`` significant digits (always has . or e).

    21 digits let a C compiler round the literal once, correctly, to float or double.
    ``digits=None`` gives Python's shortest repr of the nearest double: correct for NumPy,
    where a 17-digit decimal of the exact value could round to a different double.
    """
    exact = sp.Float(sp.N(value, 40), 40)
    if digits is None:
        return repr(float(exact))
    with mpmath.workdps(digits + 10):
        text = mpmath.nstr(mpmath.mpf(exact._mpf_), digits, min_fixed=-5, max_fixed=22, strip_zeros=True)
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def dyadic(r: sp.Rational) -> bool:
    """True if r is exactly representable in binary (its denominator is a power of two)."""
    q = int(r.q)
    return q & (q - 1) == 0


class KernelNumbers:
    """Mixin for SymPy printers: every number is a decimal literal from ``_literal``, and a
    rational coefficient p/q * rest prints as (p * rest)/q, a correctly rounded division
    instead of a multiplication by the rounded 1/q."""

    literal_digits: int | None = 21
    literal_suffix = ""

    def _literal(self, value) -> str:
        return decimal_literal(value, self.literal_digits) + self.literal_suffix

    def _print_Float(self, e):
        return self._literal(e)

    def _print_Rational(self, e):
        return self._literal(e)

    def _print_Integer(self, e):
        return self._literal(e)

    def _print_NumberSymbol(self, e):
        return self._literal(e)

    _print_Pi = _print_Exp1 = _print_NumberSymbol

    def _print_Mul(self, e):
        if e.is_number:
            return self._literal(e)
        coeff, rest = e.as_coeff_Mul()
        factors = sp.Mul.make_args(rest)
        # integer negative powers are divided out one factor at a time: x/cosh(x)/cosh(x)
        # cannot overflow where x/(cosh(x)*cosh(x)) does
        den = [f for f in factors if f.is_Pow and f.exp.is_Integer and f.exp < 0
               and -f.exp <= MAX_DIVISIONS]
        num = [f for f in factors if f not in den]
        if not den and not (coeff.is_Rational and not coeff.is_Integer and rest != 1):
            return super()._print_Mul(e)
        q = 1
        if coeff.is_Rational and not dyadic(coeff):
            q, coeff = coeff.q, sp.Integer(coeff.p)
        parts = [] if coeff == 1 else ["-" if coeff == -1 else self._literal(coeff)]
        parts += [self.parenthesize(f, PRECEDENCE["Mul"], strict=False) for f in num]
        if parts == ["-"]:
            parts = ["-" + self._literal(1)]
        text = "*".join(parts).replace("-*", "-") if parts else self._literal(1)
        divisors = ([self._literal(q)] if q != 1 else []) + [
            self.parenthesize(f.base, PRECEDENCE["Pow"], strict=True) for f in den for _ in range(-int(f.exp))]
        if divisors and len(parts) > 1:
            text = f"({text})"
        return "/".join([text] + divisors)


MAX_DIVISIONS = 4
