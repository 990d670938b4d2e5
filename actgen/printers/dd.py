"""C printer for kernel expressions evaluated in double-double (actgen/csrc/actgen_dd.h).

A float64 kernel computed this way carries about 106 bits through every operation and function
of the spec grammar, and is rounded to double once at the end: correctly rounded or within 1 ULP
unless the expression itself cancels more than about 2^50 (a naive form: the bits it cancels
are lost in any precision).

Changes from SymPy's ``C99CodePrinter`` (each for a reason):
* every subexpression is an ``actgen_dd`` value: the inputs (x and the parameters, doubles) are
  lifted with ``actgen_dd_from``; names in ``dd_symbols`` (temporaries already held as
  ``actgen_dd``) are used as they are;
* numbers are exact double-double constants, the 40-digit value split into hi and lo (as
  ``KernelNumbers`` makes every literal go through ``_literal``); a number a double holds exactly
  is an ``actgen_dd_from``, and multiplies or adds as a double (``actgen_dd_mul_d``);
* ``+ - * /`` are ``actgen_dd_add``/``sub``/``mul``/``div``; integer powers up to 8 are
  ``actgen_dd_powi`` (``actgen_dd_sqr`` for squares), half-integer powers multiply by
  ``actgen_dd_sqrt``, and any other power is ``actgen_dd_pow``; a factor with a negative
  integer power is divided out, one factor at a time, so that x/cosh(x)^2 does not overflow
  where x/cosh(x)/cosh(x) does not;
* Piecewise is a flat chain of ``actgen_dd_select`` (every branch evaluated, no control flow:
  it vectorises) whose conditions compare double-double values (``actgen_dd_gt`` ...: NaN makes
  every comparison false, as in C);
* strict: a node this printer has no method of its own for is refused (SymPy's C printer would
  print some of them as double C code, such as ``floor`` or ``gamma``).
"""

from __future__ import annotations

import mpmath
import sympy as sp
from sympy.printing.c import C99CodePrinter
from sympy.printing.codeprinter import PrintMethodNotImplementedError

from . import KernelNumbers

#: the grammar's functions with an actgen_dd_<name> of one argument, by SymPy class name
UNARY = {name: name for name in (
    "exp expm1 exp2 log log1p log2 log10 sin cos tan asin acos atan sinh cosh tanh asinh acosh "
    "atanh erf erfc sigmoid softplus").split()}
UNARY.update({"Cbrt": "cbrt", "cbrt": "cbrt", "Sqrt": "sqrt"})
BINARY = {"hypot": "hypot", "atan2": "atan2"}

MAX_EXPANDED_POWER = 8

#: C operators of SymPy's relations, as the comparison functions of actgen_dd.h
RELATIONS = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne"}


class KernelDDPrinter(KernelNumbers, C99CodePrinter):
    """Prints a kernel expression as a C expression of type ``actgen_dd``.

    ``dd_symbols``: names that are ``actgen_dd`` values already; every other symbol is a double.
    ``functions`` collects the ``actgen_dd_*`` functions the printed code calls.
    """

    printmethod = "_actgen_dd"      # no expression class defines it: every node comes here

    def __init__(self, dd_symbols=frozenset()):
        super().__init__({"strict": True, "math_macros": {}})
        self.known_functions = {}
        self.dd_symbols = frozenset(str(s) for s in dd_symbols)
        self.functions: set[str] = set()

    def doprint(self, expr, assign_to=None):
        if assign_to is not None:
            raise ValueError("KernelDDPrinter prints expressions, not assignments")
        return self._print(sp.sympify(expr))

    # strictness: only this class's methods (and KernelNumbers' literals) print anything -------
    def _print(self, expr, **kwargs):
        if isinstance(expr, sp.Basic):
            if isinstance(expr, sp.Expr) and expr.is_number and not isinstance(expr, sp.Number):
                return self._literal(expr)
            for cls in type(expr).__mro__:         # the first method of this printer's own
                name = "_print_" + cls.__name__
                if name in _OWN:
                    return getattr(self, name)(expr, **kwargs)
            raise PrintMethodNotImplementedError(
                f"KernelDDPrinter cannot print {type(expr).__name__} ({expr}): the double-double "
                "kernels support the functions of actgen's spec grammar only")
        return super()._print(expr, **kwargs)

    def _call(self, function: str, *args: str) -> str:
        self.functions.add(function)
        return f"actgen_dd_{function}({', '.join(args)})"

    # numbers ------------------------------------------------------------------------------------
    def _literal(self, value) -> str:
        exact = sp.N(value, 40)
        if not exact.is_extended_real:
            raise PrintMethodNotImplementedError(f"KernelDDPrinter: {value} is not a real number")
        if exact in (sp.oo, -sp.oo):
            return self._print(exact)
        with mpmath.workprec(200):
            v = mpmath.mpf(sp.Float(exact, 40)._mpf_)
            hi = float(v)                                  # nearest double
            lo = float(v - mpmath.mpf(hi)) if abs(hi) != float("inf") else 0.0
        if abs(hi) == float("inf"):                        # beyond the largest double
            return self._call("from", "INFINITY" if hi > 0 else "-INFINITY")
        if abs(hi) < 2.0 ** -1022:                         # subnormal: the format holds no lo
            lo = 0.0
        if lo == 0.0:
            return self._call("from", repr(hi))
        return self._call("make", repr(hi), repr(lo))

    def _double(self, e) -> str | None:
        """C text of ``e`` as a double where it is one exactly (an input, or a number a double
        holds), else None"""
        if isinstance(e, sp.Symbol) and e.name not in self.dd_symbols:
            return super()._print_Symbol(e)
        if isinstance(e, sp.Expr) and e.is_number:
            text = self._literal(e)
            if text.startswith("actgen_dd_from("):
                return text[len("actgen_dd_from("):-1]
        return None

    def _print_Infinity(self, e):
        return self._call("from", "INFINITY")

    def _print_NegativeInfinity(self, e):
        return self._call("from", "-INFINITY")

    def _print_NaN(self, e):
        return self._call("from", "NAN")

    def _print_Symbol(self, e):
        name = super()._print_Symbol(e)
        return name if e.name in self.dd_symbols else self._call("from", name)

    def _print_UnevaluatedExpr(self, e):
        return self._print(e.args[0])

    # arithmetic ---------------------------------------------------------------------------------
    def _print_Add(self, e):
        terms = list(e.as_ordered_terms())
        text = self._print(terms[0])
        for t in terms[1:]:
            d = self._double(t)
            if d is not None:
                text = self._call("add_d", text, d)
            elif t.as_coeff_Mul()[0].is_negative:
                text = self._call("sub", text, self._print(-t))
            else:
                text = self._call("add", text, self._print(t))
        return text

    def _print_Mul(self, e):
        coeff, rest = e.as_coeff_Mul()
        if coeff == -1:
            return self._call("neg", self._print(rest))
        factors = list(sp.Mul.make_args(rest))
        if coeff != 1:
            factors.insert(0, coeff)
        # integer negative powers are divided out one factor at a time
        den = [f for f in factors if f.is_Pow and f.exp.is_Integer and f.exp < 0 and -f.exp <= MAX_EXPANDED_POWER]
        num = [f for f in factors if f not in den]
        doubles = [f for f in num if self._double(f) is not None]
        dds = [f for f in num if self._double(f) is None]
        if dds:
            text = self._print(dds[0])
            rest_dd, rest_d = dds[1:], doubles
        elif doubles:
            text = self._call("from", self._double(doubles[0]))
            rest_dd, rest_d = [], doubles[1:]
        else:
            text = self._call("from", "1.0")
            rest_dd, rest_d = [], []
        for f in rest_dd:
            text = self._call("mul", text, self._print(f))
        for f in rest_d:
            text = self._call("mul_d", text, self._double(f))
        for f in den:
            base = self._print(f.base)
            for _ in range(-int(f.exp)):
                text = self._call("div", text, base)
        return text

    def _print_Pow(self, e):
        base, exponent = e.args
        if exponent.is_Integer and 0 < abs(int(exponent)) <= MAX_EXPANDED_POWER:
            n = int(exponent)
            if n == 1:
                return self._print(base)
            if n == 2:
                return self._call("sqr", self._print(base))
            if n == -1:
                return self._call("div", self._call("from", "1.0"), self._print(base))
            return self._call("powi", self._print(base), str(n))
        if exponent.is_Rational and exponent.q == 2 and abs(exponent.p) <= 2 * MAX_EXPANDED_POWER + 1:
            # x**(k + 1/2) = x**k * sqrt(x): exact powers and a root, no pow
            b = self._print(base)
            k = (abs(int(exponent.p)) - 1) // 2
            root = self._call("sqrt", b)
            value = root if k == 0 else self._call("mul", self._call("powi", b, str(k)), root)
            return value if exponent > 0 else self._call("div", self._call("from", "1.0"), value)
        if exponent.is_Integer and exponent == 0:
            return self._call("from", "1.0")
        return self._call("pow", self._print(base), self._print(exponent))

    # functions ----------------------------------------------------------------------------------
    def _print_Function(self, e):
        name = type(e).__name__
        for cls in type(e).__mro__:
            if cls.__name__ in UNARY and len(e.args) == 1:
                return self._call(UNARY[cls.__name__], self._print(e.args[0]))
            if cls.__name__ in BINARY and len(e.args) == 2:
                return self._call(BINARY[cls.__name__], *(self._print(a) for a in e.args))
        raise PrintMethodNotImplementedError(
            f"KernelDDPrinter cannot print the function {name}: actgen_dd.h has no double-double {name}")

    def _print_Abs(self, e):
        return self._call("abs", self._print(e.args[0]))

    def _print_sign(self, e):
        return self._call("sign", self._print(e.args[0]))

    def _print_Heaviside(self, e):
        h0 = e.args[1] if len(e.args) > 1 else sp.S.Half
        return self._call("heaviside", self._print(e.args[0]), self._print(h0))

    def _fold(self, e, function):
        args = list(e.args)
        text = self._print(args[-1])
        for a in reversed(args[:-1]):
            text = self._call(function, self._print(a), text)
        return text

    def _print_Max(self, e):
        return self._fold(e, "max")

    def _print_Min(self, e):
        return self._fold(e, "min")

    def _print_DiracDelta(self, e):
        return self._call("from", "0.0")

    def _print_confine(self, e):
        # x inside [lo, hi], else a point inside (see rewrite.confine_branches): a select
        x, lo, hi, inside = e.args
        tests = []
        if lo.is_finite:
            tests.append(self._call("ge", self._print(x), self._print(lo)))
        if hi.is_finite:
            tests.append(self._call("le", self._print(x), self._print(hi)))
        if not tests:
            return self._print(x)
        cond = " & ".join(f"({t})" for t in tests)
        return self._call("select", cond, self._print(x), self._print(inside))

    # selects and conditions ---------------------------------------------------------------------
    def _print_Piecewise(self, e):
        *pieces, (last, last_cond) = e.args
        # the last piece applies where no other condition holds; if its own condition is not
        # True, NaN where it does not hold either
        text = self._print(last)
        if last_cond is not sp.true:
            text = self._call("select", self._print(last_cond), text, self._call("from", "NAN"))
        # a flat chain, the first piece outermost: the first true condition wins
        for value, cond in reversed(pieces):
            text = self._call("select", self._print(cond), self._print(value), text)
        return text

    def _print_ITE(self, e):
        return self._print(e.rewrite(sp.Piecewise))

    def _print_Relational(self, e):
        op = RELATIONS.get(e.rel_op)
        if op is None:
            raise PrintMethodNotImplementedError(f"KernelDDPrinter cannot print the relation {e.rel_op}")
        return self._call(op, self._print(e.lhs), self._print(e.rhs))

    # & and | on the 0/1 of comparisons, not && and || (short-circuit evaluation is control flow)
    def _print_And(self, e):
        return "(" + " & ".join(f"({self._print(a)})" for a in e.args) + ")"

    def _print_Or(self, e):
        return "(" + " | ".join(f"({self._print(a)})" for a in e.args) + ")"

    def _print_Not(self, e):
        return f"(!({self._print(e.args[0])}))"

    def _print_BooleanTrue(self, e):
        return "1"

    def _print_BooleanFalse(self, e):
        return "0"


#: the print methods that are this printer's own (every other one is refused)
_OWN = frozenset(n for cls in (KernelDDPrinter, KernelNumbers) for n in vars(cls) if n.startswith("_print_"))


def dd_function(name: str, expr, params=(), x: str = "x") -> str:
    """C source of ``double name(double x, double p1, ...)``, the kernel ``expr`` computed in
    double-double and rounded once (for tests and standalone use; includes actgen_dd.h)."""
    names = [x, *map(str, params)]
    extra = {str(s) for s in sp.sympify(expr).free_symbols} - set(names)
    if extra:
        raise ValueError(f"{name}: free symbols {sorted(extra)} are neither {x} nor parameters")
    body = KernelDDPrinter().doprint(expr)
    args = ", ".join(f"double {n}" for n in names)
    return f'#include "actgen_dd.h"\n\ndouble {name}({args})\n{{\n    return actgen_dd_to_double({body});\n}}\n'
