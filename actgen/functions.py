"""The vocabulary of a spec expression: SymPy's functions plus actgen's helpers.

``sigmoid`` and ``softplus`` are SymPy functions of their own (not macros for their exp/log
forms) so that the derivation keeps them whole (sigmoid' = sigmoid(z) * sigmoid(-z), which has
no cancellation, unlike sigmoid * (1 - sigmoid)) and the printers can emit stable
implementations for them.
"""

from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import Cbrt, exp2, expm1, hypot, log1p, log2, log10


class sigmoid(sp.Function):
    """Logistic function 1 / (1 + exp(-z))."""

    nargs = 1

    @classmethod
    def eval(cls, z):
        if z.is_zero:
            return sp.S.Half
        if z is sp.S.Infinity:
            return sp.S.One
        if z is sp.S.NegativeInfinity:
            return sp.S.Zero
        return None

    def fdiff(self, argindex=1):
        z = self.args[0]
        return sigmoid(z) * sigmoid(-z)

    def _eval_rewrite_as_exp(self, z, **kwargs):
        return 1 / (1 + sp.exp(-z))

    def _eval_is_extended_real(self):
        return self.args[0].is_extended_real

    def _eval_is_positive(self):
        return True if self.args[0].is_extended_real else None

    def _eval_evalf(self, prec):
        return self._eval_rewrite_as_exp(*self.args)._eval_evalf(prec)


class softplus(sp.Function):
    """log(1 + exp(z)), computed without overflow."""

    nargs = 1

    @classmethod
    def eval(cls, z):
        if z is sp.S.Infinity:
            return sp.S.Infinity
        if z is sp.S.NegativeInfinity:
            return sp.S.Zero
        return None

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_log(self, z, **kwargs):
        return sp.log(1 + sp.exp(z))

    def _eval_rewrite_as_exp(self, z, **kwargs):
        return sp.log(1 + sp.exp(z))

    def _eval_is_extended_real(self):
        return self.args[0].is_extended_real

    def _eval_is_positive(self):
        return True if self.args[0].is_extended_real else None

    def _eval_evalf(self, prec):
        return self._eval_rewrite_as_log(*self.args)._eval_evalf(prec)


class erfc(sp.erfc):
    """SymPy's erfc without its canonicalisation erfc(-u) -> 2 - erfc(u).

    The stable form of GELU is x/2 * erfc(-x/sqrt(2)); SymPy would turn it back into the
    cancelling 2 - erfc(x/sqrt(2)). Rewrites produce this class; specs may use either.
    """

    @classmethod
    def eval(cls, arg):
        return sp.erfc.eval(arg) if arg.is_Number else None


class cbrt(Cbrt):
    """The real cube root (C99's cbrt): cbrt(-8) = -2. SymPy's Cbrt differentiates through
    x**(2/3), the principal (complex) root for x < 0."""

    @classmethod
    def eval(cls, arg):
        if arg.is_Number and arg.is_extended_real:
            return sp.sign(arg) * sp.root(abs(arg), 3)
        return None

    def fdiff(self, argindex=1):
        return 1 / (3 * cbrt(self.args[0]) ** 2)

    def _eval_is_extended_real(self):
        return self.args[0].is_extended_real

    def _eval_evalf(self, prec):
        arg = self.args[0]._eval_evalf(prec)
        if arg is None or not arg.is_extended_real:
            return None
        return (sp.sign(arg) * sp.Abs(arg) ** sp.Rational(1, 3))._eval_evalf(prec)


#: Functions a spec may call, by the name it uses.
FUNCTIONS: dict[str, type] = {
    "exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "Abs": sp.Abs, "sign": sp.sign,
    "Max": sp.Max, "Min": sp.Min, "Piecewise": sp.Piecewise, "Heaviside": sp.Heaviside,
    "tanh": sp.tanh, "sinh": sp.sinh, "cosh": sp.cosh, "atan": sp.atan, "sin": sp.sin,
    "cos": sp.cos, "erf": sp.erf, "erfc": sp.erfc, "sigmoid": sigmoid, "softplus": softplus,
    "log1p": log1p, "expm1": expm1,
    # the rest of C99's <math.h> real functions that SymPy has (domain errors give NaN, as in C)
    "asinh": sp.asinh, "acosh": sp.acosh, "atanh": sp.atanh, "asin": sp.asin, "acos": sp.acos,
    "tan": sp.tan, "cbrt": cbrt, "log2": log2, "log10": log10, "exp2": exp2, "hypot": hypot,
    # conditions inside Piecewise
    "Eq": sp.Eq, "Ne": sp.Ne, "And": sp.And, "Or": sp.Or, "Not": sp.Not,
}

#: Named constants a spec may use.
CONSTANTS: dict[str, sp.Expr] = {"pi": sp.pi, "E": sp.E}


class confine(sp.Function):
    """confine(x, lo, hi, inside): x where lo <= x <= hi, else ``inside`` (a point of [lo, hi]).

    Not part of the spec vocabulary: lowering wraps the input of a select branch in it, so that a
    branch evaluated on every element (that is how a select vectorises) never sees the inputs
    of the other branches (see rewrite.confine_branches). Where the branch is taken it is x
    itself, so the value is unchanged; the NumPy backend evaluates each branch only where it is
    taken and prints it as x."""

    nargs = 4

    def _eval_is_extended_real(self):
        return self.args[0].is_extended_real
