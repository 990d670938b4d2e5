"""C99 printer for kernel expressions, for one compute type (float or double).

Changes from SymPy's ``C99CodePrinter`` (each for a reason):
* every number is a decimal literal of the compute type (no ``M_SQRT2`` in float code, no
  ``const float pi`` declarations, no integer division);
* small integer powers are multiplications, 1/2 powers are sqrt (``powf(x, 2)`` is slow);
* Piecewise is a select the vectoriser turns into a blend (one ternary, or a flat chain of
  them for more than two pieces); branches that call functions are computed first, in
  statements the element function runs before the expression (``take_statements``), so no call
  is conditional (and the source stays C99: no GNU statement expression);
* Max/Min/sign/Heaviside/sigmoid/softplus call small inline helpers that propagate NaN
  (``fmaxf`` drops NaN and blocks vectorisation), from actgen/csrc/actgen_math.h, which declares
  libmvec's SIMD variants of every libm function it has;
* in float arithmetic, exp, sigmoid and softplus call actgen's own float functions
  (``actgen_exp_f32``: within 1 ULP of exp; libmvec's expf is within 3), and compensated
  arguments of exp and erfc are float-float pairs (``actgen_exp_ff``, ``actgen_erfc_ff``), which
  ``actgen.numpy_runtime`` models operation by operation, so that selection measures what the C
  kernel computes;
* in double arithmetic, exp (and the exp(-|z|) of sigmoid and softplus) is actgen's own inline
  exp (``actgen_exp_f64``, SLEEF's polynomial: within 1 ULP), not a libmvec call, which spills
  the loop's vector registers (float64 sigmoid at 2^24 elements: 1.4 -> 2.0 Gelem/s);
* ``narrow`` (double arithmetic whose result is rounded to float32): exp, expm1, tanh, cosh and
  the sigmoid/softplus helpers call actgen's own exp (``actgen_exp_d32``: relative error below
  2^-36, far under float32's 2^-24, at a fraction of the cost of libm's correctly-near-rounded
  double exp, which spends its time on bits the float result drops).
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from sympy.codegen.ast import float32, real
from sympy.printing.c import C99CodePrinter
from sympy.printing.precedence import PRECEDENCE

from . import DoubleDouble, KernelNumbers

MAX_EXPANDED_POWER = 8


class KernelCPrinter(DoubleDouble, KernelNumbers, C99CodePrinter):
    """Prints kernel expressions for ``compute`` = "float" or "double"; with ``compensate``
    (double only), sensitive functions get double-double arguments (``dd_temps`` are the
    temporaries held as ``actgen_dd``)."""

    def __init__(self, compute: str = "double", dd_temps=frozenset(), compensate: bool = False,
                 narrow: bool = False):
        if compute not in ("float", "double") or (narrow and compute != "double"):
            raise ValueError(compute)
        settings = {"strict": True, "math_macros": {}}
        if compute == "float":
            settings["type_aliases"] = {real: float32}
        super().__init__(settings)
        self.compute = compute
        self.tag = "f32" if compute == "float" else "f64"
        self.literal_suffix = "F" if compute == "float" else ""
        self.dd_temps = frozenset(dd_temps)
        self.compensate = compensate
        self.dd_float = compute == "float"      # float-float pairs (actgen_ff) in float arithmetic
        self._pair = "ff" if self.dd_float else "dd"
        self._branch_temps = 0                  # names of hoisted Piecewise branches
        self._hoisted: list[str] = []           # their statements, until take_statements()
        self.narrow = narrow and not self.compensate

    # numbers: KernelNumbers prints literals with the suffix of the compute type ---------
    def _print_Infinity(self, e):
        return "INFINITY"

    def _print_NegativeInfinity(self, e):
        return "(-INFINITY)"

    def _print_NaN(self, e):
        return "NAN"

    # arithmetic ----------------------------------------------------------------------
    def _print_Pow(self, e):
        if e.is_number:
            return self._literal(e)
        base, exponent = e.args
        b = self.parenthesize(base, PRECEDENCE["Mul"], strict=True)
        one = self._literal(1)
        if exponent.is_Integer and 0 < abs(int(exponent)) <= MAX_EXPANDED_POWER:
            # parenthesised: SymPy's Mul printer puts a Pow after "/" unparenthesised.
            # Negative powers multiply reciprocals: 1/(t*t) would overflow where (1/t)^2 does not.
            factor = b if exponent > 0 else f"({one}/{b})"
            if abs(int(exponent)) == 1:
                return factor
            return "(" + "*".join([factor] * abs(int(exponent))) + ")"
        if exponent.is_Rational and exponent.q == 2 and abs(exponent.p) <= 2 * MAX_EXPANDED_POWER + 1:
            # x**(k + 1/2) = x**k * sqrt(x): exact powers and a correctly rounded sqrt, no powf
            whole = [b] * ((abs(exponent.p) - 1) // 2)
            product = "*".join(whole + [self._call("sqrt", base)])
            if exponent > 0:
                return f"({product})" if whole else product
            return f"({one}/({product}))"
        return self._call("pow", base, exponent)

    def _call(self, name: str, *args) -> str:
        full = name + self._get_func_suffix(real)
        return f"{full}({', '.join(self._print(a) for a in args)})"

    # selects and helpers ---------------------------------------------------------------
    def _print_Piecewise(self, e):
        *pieces, (last, _) = e.args
        values = [v for v, _ in pieces] + [last]
        printed = [self._print(v) for v in values]
        for i, v in enumerate(values):
            if _calls(v):
                # a branch that calls a function is computed before the select, in a statement
                # before the one that uses it: the call then is unconditional (with -fno-tree-sink
                # the compiler keeps it so) and the loop vectorises with libmvec; a call inside
                # a ?: arm makes gcc 12 emit control flow, and the loop stays scalar
                self._branch_temps += 1
                name = f"actgen_b{self._branch_temps}"
                self._hoisted.append(f"const {self.compute} {name} = {printed[i]};")
                printed[i] = name
        if len(pieces) == 1:
            (_, cond), = pieces
            return f"(({self._print(cond)}) ? ({printed[0]}) : ({printed[-1]}))"
        # more than one condition: a flat chain of selects on one variable, the last piece
        # first, so the first true condition is the one applied last and wins, as in a
        # Piecewise. gcc 12 if-converts nested ?: whose inner condition is a & of comparisons
        # into control flow (swish's f' stayed scalar); the chain vectorises.
        self._branch_temps += 1
        var = f"actgen_s{self._branch_temps}"
        steps = [f"{self.compute} {var} = {printed[-1]};"]
        for (_, cond), p in reversed(list(zip(pieces, printed[:-1]))):
            steps.append(f"{var} = ({self._print(cond)}) ? ({p}) : {var};")
        self._hoisted.extend(steps)
        return var

    # conditions: & and | on the 0/1 of comparisons, not && and || (short-circuit evaluation is
    # control flow, which stops vectorisation; comparisons have no side effects)
    def _print_And(self, e):
        return "(" + " & ".join(f"({self._print(a)})" for a in e.args) + ")"

    def _print_Or(self, e):
        return "(" + " | ".join(f"({self._print(a)})" for a in e.args) + ")"

    def _print_ITE(self, e):
        return self._print(e.rewrite(sp.Piecewise))

    def _helper(self, key: str, *args) -> str:
        return f"actgen_{key}_{self.tag}({', '.join(self._print(a) for a in args)})"

    def _fold(self, e, key):
        args = list(e.args)
        text = self._print(args[-1])
        for a in reversed(args[:-1]):
            text = f"actgen_{key}_{self.tag}({self._print(a)}, {text})"
        return text

    def _print_Max(self, e):
        return self._fold(e, "max")

    def _print_Min(self, e):
        return self._fold(e, "min")

    def _print_sign(self, e):
        return self._helper("sign", e.args[0])

    def _print_Heaviside(self, e):
        h0 = e.args[1] if len(e.args) > 1 else sp.S.Half
        return self._helper("heaviside", e.args[0], h0)

    def _print_confine(self, e):
        # x inside [lo, hi], else a point inside (see rewrite.confine_branches): a select
        x, lo, hi, inside = (self._print(a) for a in e.args)
        tests = [f"({x} >= {lo})"] * bool(e.args[1].is_finite) + [f"({x} <= {hi})"] * bool(e.args[2].is_finite)
        return f"(({' & '.join(tests)}) ? {x} : {inside})"

    def _narrow_helper(self, key: str, *args) -> str:
        return f"actgen_{key}_d32({', '.join(self._print(a) for a in args)})"

    def _print_sigmoid(self, e):
        if self.narrow:
            return self._narrow_helper("sigmoid", e.args[0])
        return self._sensitive(e, lambda e: self._helper("sigmoid", e.args[0]))

    def _print_softplus(self, e):
        if self.narrow:
            return self._narrow_helper("softplus", e.args[0])
        return self._sensitive(e, lambda e: self._helper("softplus", e.args[0]))

    def _print_expm1(self, e):
        if self.narrow:
            return self._narrow_helper("expm1", e.args[0])
        return self._print_math_func(e)

    def _print_tanh(self, e):
        if self.narrow:
            return self._narrow_helper("tanh", e.args[0])
        return self._print_math_func(e)

    # double-double (compensated arguments; float-float in float arithmetic) -------------------
    def _dd_lift(self, text):
        return f"actgen_{self._pair}_make({text}, {self._literal(0)})"

    def _dd_const(self, hi, lo):
        if self.dd_float:
            return f"actgen_ff_make({_float_text(hi)}, {_float_text(lo)})"
        return f"actgen_dd_make({hi!r}, {lo!r})"

    def _dd_op(self, name, a, b):
        return f"actgen_{self._pair}_{name}({a}, {b})"

    def _dd_neg(self, a):
        return f"actgen_{self._pair}_neg({a})"

    def _dd_hi(self, name):
        return f"{name}.hi"

    def _dd_pair(self, name):
        return name

    def _dd_call(self, function, dd):
        if self.dd_float:       # actgen_exp_ff, actgen_erfc_ff: no libm (the ff helper calls actgen's exp)
            return f"actgen_{function}_ff({dd})"
        return f"actgen_{function}_dd({dd})"

    def _print_exp(self, e):
        if self.narrow:
            return self._narrow_helper("exp", e.args[0])
        # actgen's exp: in float within 1 ULP (libmvec's expf: 3), modelled by selection; in double
        # within 1 ULP too, inline (a libmvec call in a loop spills its vector registers)
        return self._sensitive(e, self._print_own_exp)

    def _print_own_exp(self, e):
        if e.args[0].is_nonpositive:
            # exp(-|u|) (select's rational candidates): the same value, without the scaling
            # that an argument > 0 needs
            return f"actgen_exp_neg_{self.tag}({self._print(e.args[0])})"
        return self._helper("exp", e.args[0])

    def _print_erfc(self, e):
        # no _d32 erfc: one was tried (a1b6ba1, 2^-35.6): 16% faster than libmvec's double erfc
        # with AVX-512, 45% slower with AVX2
        return self._sensitive(e, self._print_math_func)

    def _print_cosh(self, e):
        if self.narrow:
            return self._narrow_helper("cosh", e.args[0])
        return self._sensitive(e, self._print_math_func)

    def _print_sinh(self, e):
        return self._sensitive(e, self._print_math_func)

    def _print_DiracDelta(self, e):
        return self._literal(0)

    def _print_BooleanTrue(self, e):
        return "1"

    def _print_BooleanFalse(self, e):
        return "0"


def _float_text(value: float) -> str:
    """A float32 literal that reads back as exactly ``value`` (a float32 value)."""
    return f"{np.float32(value)!r}".removeprefix("np.float32(").removesuffix(")") + "F"


def _calls(e) -> bool:
    """True if printing ``e`` calls a function (libm or a helper), not just arithmetic."""
    return bool(e.atoms(sp.Function)) or any(not p.exp.is_Integer for p in e.atoms(sp.Pow)) \
        or bool(e.atoms(sp.Max, sp.Min))
