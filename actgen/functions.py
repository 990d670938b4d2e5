"""The vocabulary of a spec expression: SymPy's functions plus actgen's helpers.

``sigmoid`` and ``softplus`` are SymPy functions of their own (not macros for their exp/log
forms) so that the derivation keeps them whole (sigmoid' = sigmoid(z) * sigmoid(-z), which has
no cancellation, unlike sigmoid * (1 - sigmoid)) and the printers can emit stable
implementations for them.
"""

from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p


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


#: Functions a spec may call, by the name it uses.
FUNCTIONS: dict[str, type] = {
    "exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "Abs": sp.Abs, "sign": sp.sign,
    "Max": sp.Max, "Min": sp.Min, "Piecewise": sp.Piecewise, "Heaviside": sp.Heaviside,
    "tanh": sp.tanh, "sinh": sp.sinh, "cosh": sp.cosh, "atan": sp.atan, "sin": sp.sin,
    "cos": sp.cos, "erf": sp.erf, "erfc": sp.erfc, "sigmoid": sigmoid, "softplus": softplus,
    "log1p": log1p, "expm1": expm1,
    # conditions inside Piecewise
    "Eq": sp.Eq, "Ne": sp.Ne, "And": sp.And, "Or": sp.Or, "Not": sp.Not,
}

#: Named constants a spec may use.
CONSTANTS: dict[str, sp.Expr] = {"pi": sp.pi, "E": sp.E}

#: Functions that make a derivative piecewise (a kink), used to document conventions.
KINK_FUNCTIONS = (sp.Abs, sp.sign, sp.Max, sp.Min, sp.Piecewise, sp.Heaviside)


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
