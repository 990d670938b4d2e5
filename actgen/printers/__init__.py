"""Code printers: SymPy's own printers, subclassed where a kernel needs something else."""

from __future__ import annotations

import mpmath
import numpy as np
import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from ..compensate import FLOAT_COMPENSATED, dd_printable, rounds
from ..ir import dyadic, power_of_two


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


class KernelNumbers:
    """Mixin for SymPy printers: every number is a decimal literal from ``_literal``, and a
    rational coefficient p/q * rest with p a power of two prints as (p * rest)/q, a correctly
    rounded division instead of a multiplication by the rounded 1/q (x/6). Any other p/q (a
    decimal such as gelu_tanh's 0.044715 = 8943/200000) prints as the rounded literal times rest:
    p * rest rounds already, so the division would cost a division per element for no accuracy."""

    literal_digits: int | None = 21
    literal_suffix = ""

    def take_statements(self) -> tuple[str, ...]:
        """The statements that the expressions printed since the last call need to run before them
        (the C printer computes a select's calls first), and forget them; () for a printer that
        needs none."""
        taken = tuple(getattr(self, "_hoisted", ()))
        self._hoisted = []
        return taken

    def _literal(self, value) -> str:
        if isinstance(value, sp.Expr) and value.is_finite is not False \
                and abs(float(sp.N(value, 20))) == float("inf"):
            # a constant beyond the largest double (sqrt(sinh(4e8)) folds to 1.7e+86858896):
            # its correctly rounded value is inf, printed as the printer prints inf
            return self._print(sp.oo if sp.N(value, 20) > 0 else -sp.oo)
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
        if coeff.is_Rational and not dyadic(coeff) and power_of_two(abs(int(coeff.p))):
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


class DoubleDouble:
    """Mixin: arguments of sensitive functions printed in double-double (compensate.py).

    Subclasses give the syntax: ``_dd_lift(text)`` (a double as (hi, 0)), ``_dd_const(hi, lo)``,
    ``_dd_op(name, a, b)`` (name is add or mul, or prod: the exact product of two floats), ``_dd_neg(a)``, ``_dd_call(function, dd)``,
    ``_dd_hi(name)`` (the double value of a double-double temporary) and ``_dd_pair(name)``
    (the temporary as a double-double).
    """

    dd_temps: frozenset = frozenset()
    compensate: bool = False
    #: the pairs are float-float (float32 halves: a kernel computed in float) instead of double-double
    dd_float: bool = False

    def _dd_round(self, value) -> float:
        """A constant's hi or lo part: the nearest double, or float for float-float."""
        return float(np.float32(float(value))) if self.dd_float else float(value)

    def _dd_wanted(self, arg) -> bool:
        return self.compensate and dd_printable(arg) and rounds(arg, self.dd_temps)

    def _dd(self, e) -> str:
        if e.is_Symbol:
            return self._dd_pair(e.name) if e in self.dd_temps else self._dd_lift(self._print(e))
        if not e.free_symbols:
            exact = sp.N(e, 40)
            hi = self._dd_round(exact)
            return self._dd_const(hi, self._dd_round(sp.N(exact - sp.Float(hi, 40), 20)))
        if isinstance(e, sp.UnevaluatedExpr):
            return self._dd(e.args[0])
        if e.is_Add or e.is_Mul:
            if e.is_Mul and e.args[0] == -1:
                return self._dd_neg(self._dd(sp.Mul(*e.args[1:])))
            if self.dd_float and e.is_Mul and len(e.args) == 2 and all(
                    a.is_Symbol and a not in self.dd_temps for a in e.args):
                # two floats (b * x): their exact product is (p, fma(a, b, -p)), the pair ff_mul
                # of the two lifted gives (where the error does not underflow), in 2 operations
                # instead of 12
                return self._dd_op("prod", *(self._print(a) for a in e.args))
            parts = [self._dd(a) for a in e.args]
            text = parts[0]
            for p in parts[1:]:
                text = self._dd_op("add" if e.is_Add else "mul", text, p)
            return text
        if e.is_Pow and e.exp.is_Integer and 1 <= int(e.exp) <= 8:
            base = self._dd(e.base)
            text = base
            for _ in range(int(e.exp) - 1):
                text = self._dd_op("mul", text, base)
            return text
        return self._dd_lift(self._print(e))

    def _sensitive(self, e, fallback):
        if self._dd_wanted(e.args[0]):
            name = type(e).__name__
            if self.dd_float and name not in FLOAT_COMPENSATED:
                raise ValueError(f"no float-float {name}: only {', '.join(FLOAT_COMPENSATED)}")
            return self._dd_call(name, self._dd(e.args[0]))
        return fallback(e)

    def _print_Symbol(self, e):
        if e in self.dd_temps:
            return self._dd_hi(e.name)
        return super()._print_Symbol(e)
