"""NumPy printer for kernel expressions.

Changes from SymPy's ``NumPyPrinter`` (each for a reason):
* numbers are plain Python float literals: NumPy treats them as "weak" scalars, so float32
  arrays stay float32 (``numpy.sqrt(2)`` or ``numpy.pi`` are float64 and would upcast);
* Piecewise is ``rt.piecewise``, which evaluates each branch only on the elements that take
  it (``numpy.select`` evaluates every branch everywhere: warnings, NaN, wasted work);
* with ``c_float`` (selection's model of a C kernel computed in float), exp, sigmoid and
  softplus are ``rt.exp_f32``/``rt.sigmoid_f32``/``rt.softplus_f32`` and compensated arguments
  float-float pairs (``rt.ff_*``, ``rt.erfc_ff``): operation-by-operation models of the C
  prelude's own float functions;
* with ``model`` (selection's model of the C kernel, ``actgen.kernel_model`` as ``m``), every C
  library function is printed as ``m.<name>``, correctly rounded whatever the host, and powers
  as the C printer writes them (products, sqrt), so that a measurement does not depend on the
  CPU that ran it;
* erf/erfc are vectorised ufuncs (``math.erf`` is not), sigmoid/softplus are the stable
  implementations of ``actgen.numpy_runtime``; Max/Min are ``numpy.maximum``/``minimum``,
  which propagate NaN.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.pycode import MpmathPrinter

from . import DoubleDouble, KernelNumbers
from .c import MAX_EXPANDED_POWER

#: NumPy functions that the kernel model (actgen.kernel_model) replaces by correctly rounded ones
MODELLED = frozenset("exp expm1 exp2 log log1p log2 log10 sin cos tan arcsin arccos arctan arctan2 sinh "
                     "cosh tanh arcsinh arccosh arctanh cbrt hypot power".split())


class KernelNumPyPrinter(DoubleDouble, KernelNumbers, NumPyPrinter):
    """Prints kernel expressions as NumPy code; ``rt`` is ``actgen.numpy_runtime``. With
    ``compensate``, sensitive functions get double-double arguments ((hi, lo) tuples)."""

    def __init__(self, dd_temps=frozenset(), compensate: bool = False, c_float: bool = False,
                 model: bool = False):
        super().__init__({"strict": True, "fully_qualified_modules": True})
        self.model = model
        #: the module of the helpers: actgen.numpy_runtime, or the kernel model
        self.rt = "m" if model else "rt"
        self.dd_temps = frozenset(dd_temps)
        self.compensate = compensate
        # the model of a C kernel computed in float: float-float pairs (rt.ff_*), as the C prelude's
        self.dd_float = c_float
        # c_float: model the C kernel computed in float (selection): exp and sigmoid are the
        # models of actgen's own float functions, not NumPy's
        self.c_float = c_float

    literal_digits = None    # repr of the nearest double

    def _module_format(self, fqn, register=True):
        if self.model and fqn.startswith("numpy.") and fqn[6:] in MODELLED:
            return "m." + fqn[6:]
        return super()._module_format(fqn, register)

    def _print_Infinity(self, e):
        return "numpy.inf"

    def _print_NegativeInfinity(self, e):
        return "(-numpy.inf)"

    def _print_NaN(self, e):
        return "numpy.nan"

    def _print_Pow(self, e, rational=False):
        if e.is_number:
            return self._literal(e)
        if self.model:
            return self._model_pow(e)
        if e.exp.is_Integer:
            return f"{self.parenthesize(e.base, 60, strict=True)}**{int(e.exp)}"
        return super()._print_Pow(e, rational)

    def _model_pow(self, e):
        """As printers.c.KernelCPrinter prints it: small integer powers as products (negative ones
        of reciprocals), x**(k + 1/2) as products and a sqrt, anything else as pow."""
        base, exponent = e.args
        b = self.parenthesize(base, 60, strict=True)
        one = self._literal(1)
        if exponent.is_Integer and 0 < abs(int(exponent)) <= MAX_EXPANDED_POWER:
            factor = b if exponent > 0 else f"({one}/{b})"
            return factor if abs(int(exponent)) == 1 else "(" + "*".join([factor] * abs(int(exponent))) + ")"
        if exponent.is_Rational and exponent.q == 2 and abs(exponent.p) <= 2 * MAX_EXPANDED_POWER + 1:
            whole = [b] * ((abs(exponent.p) - 1) // 2)
            product = "*".join(whole + [f"numpy.sqrt({self._print(base)})"])
            if exponent > 0:
                return f"({product})" if whole else product
            return f"({one}/({product}))"
        return f"m.power({self._print(base)}, {self._print(exponent)})"

    def _print_Piecewise(self, e):
        # rt.piecewise masks its array arguments; a double-double temporary t goes in as two
        # arrays, t_hi and t_lo, and is (t_hi, t_lo) inside the lambdas
        names, values, inner = [], [], {}
        for s in sorted(e.free_symbols, key=str):
            if s in self.dd_temps:
                names += [f"{s.name}_hi", f"{s.name}_lo"]
                values += [f"{self._dd_hi(s.name)}", f"{self._dd_pair(s.name)}[1]"]
                inner[s.name] = (f"{s.name}_hi", f"({s.name}_hi, {s.name}_lo)")
            else:
                names.append(s.name)
                values.append(self._print(s))
        params = ", ".join(names)
        arguments = "(" + "".join(v + ", " for v in values) + ")"
        saved, self._dd_names = self._dd_names, {**self._dd_names, **inner}
        try:
            pieces = []
            for value, cond in e.args:
                test = "None" if cond is sp.true else f"lambda {params}: {self._print(cond)}"
                pieces.append(f"({test}, lambda {params}: {self._print(value)})")
        finally:
            self._dd_names = saved
        return f"{self.rt}.piecewise({arguments}, {', '.join(pieces)})"

    def _fold(self, e, func):
        text = self._print(e.args[-1])
        for a in reversed(e.args[:-1]):
            text = f"numpy.{func}({self._print(a)}, {text})"
        return text

    def _print_Max(self, e):
        return self._fold(e, "maximum")

    def _print_Min(self, e):
        return self._fold(e, "minimum")

    def _print_Heaviside(self, e):
        h0 = e.args[1] if len(e.args) > 1 else sp.S.Half
        return f"numpy.heaviside({self._print(e.args[0])}, {self._print(h0)})"

    def _print_sign(self, e):
        return f"numpy.sign({self._print(e.args[0])})"

    def _rt(self, name, e):
        return f"{self.rt}.{name}({self._print(e.args[0])})"

    def _print_confine(self, e):
        # rt.piecewise evaluates a branch only on the elements that take it: x is in range
        return self._print(e.args[0])

    def _print_sigmoid(self, e):
        if self.c_float:
            return self._sensitive(e, lambda e: self._rt("sigmoid_f32", e))
        return self._sensitive(e, lambda e: self._rt("sigmoid", e))

    def _print_softplus(self, e):
        if self.c_float:
            return self._sensitive(e, lambda e: self._rt("softplus_f32", e))
        return self._sensitive(e, lambda e: self._rt("softplus", e))

    def _print_erf(self, e):
        return self._rt("erf", e)

    def _print_erfc(self, e):
        return self._sensitive(e, lambda e: self._rt("erfc", e))

    def _print_exp(self, e):
        if self.c_float:
            return self._sensitive(e, lambda e: self._rt("exp_f32", e))
        return self._sensitive(e, self._function)

    def _print_cosh(self, e):
        return self._sensitive(e, self._function)

    def _print_sinh(self, e):
        return self._sensitive(e, self._function)

    def _function(self, e):
        """numpy.<name>(args), through _module_format (the model's m.<name>)."""
        name = self._module_format(self.known_functions[type(e).__name__])
        return f"{name}({', '.join(self._print(a) for a in e.args)})"

    # double-double (compensated arguments) --------------------------------------------------
    def _dd_lift(self, text):
        return f"{self.rt}.{'ff' if self.dd_float else 'dd'}({text})"

    def _dd_const(self, hi, lo):
        if self.dd_float:
            return f"(numpy.float32({hi!r}), numpy.float32({lo!r}))"
        return f"({hi!r}, {lo!r})"

    def _dd_op(self, name, a, b):
        return f"{self.rt}.{'ff' if self.dd_float else 'dd'}_{name}({a}, {b})"

    def _dd_neg(self, a):
        return f"{self.rt}.{'ff' if self.dd_float else 'dd'}_neg({a})"

    _dd_names: dict = {}     # inside rt.piecewise lambdas: name -> (hi text, pair text)

    def _dd_hi(self, name):
        return self._dd_names[name][0] if name in self._dd_names else f"{name}[0]"

    def _dd_pair(self, name):
        return self._dd_names[name][1] if name in self._dd_names else name

    def _dd_call(self, function, dd):
        return f"{self.rt}.{function}_{'ff' if self.dd_float else 'dd'}({dd})"

    def _print_cbrt(self, e):
        return f"{self._module_format('numpy.cbrt')}({self._print(e.args[0])})"

    def _print_DiracDelta(self, e):
        return "0.0"

    def _print_BooleanTrue(self, e):
        return "True"

    def _print_BooleanFalse(self, e):
        return "False"


class KernelMpmathPrinter(MpmathPrinter):
    """Prints a kernel expression as mpmath code of one element: the NumPy backend's kernels
    computed in double-double (select's "wide"), which it evaluates element by element with
    mpmath at 106 bits (numpy_runtime.wide). Slow, but as accurate as the C kernel's actgen_dd.h;
    actgen's own functions and the NaN-propagating selects are numpy_runtime's ``mp`` helpers."""

    def __init__(self):
        super().__init__({"strict": True, "fully_qualified_modules": True})

    def _mp(self, name, e):
        return f"rt.mp.{name}({', '.join(self._print(a) for a in e.args)})"

    def _print_sigmoid(self, e):
        return self._mp("sigmoid", e)

    def _print_softplus(self, e):
        return self._mp("softplus", e)

    def _print_cbrt(self, e):
        return self._mp("cbrt", e)

    def _print_exp2(self, e):
        return self._mp("exp2", e)

    # the exponential functions through numpy_runtime.mp: their overflow decided, not computed
    def _print_exp(self, e):
        return self._mp("exp", e)

    def _print_expm1(self, e):
        return self._mp("expm1", e)

    def _print_sinh(self, e):
        return self._mp("sinh", e)

    def _print_cosh(self, e):
        return self._mp("cosh", e)

    def _print_tanh(self, e):
        return self._mp("tanh", e)

    def _print_erf(self, e):
        return self._mp("erf", e)

    def _print_erfc(self, e):
        return self._mp("erfc", e)

    def _print_confine(self, e):
        return self._mp("confine", e)

    def _print_Max(self, e):
        return self._mp("max", e)

    def _print_Min(self, e):
        return self._mp("min", e)

    def _print_Heaviside(self, e):
        h0 = e.args[1] if len(e.args) > 1 else sp.S.Half
        return f"rt.mp.heaviside({self._print(e.args[0])}, {self._print(h0)})"

    def _print_sign(self, e):
        return self._mp("sign", e)

    def _print_DiracDelta(self, e):
        return "mpmath.mpf(0)"

    def _print_UnevaluatedExpr(self, e):
        return self._print(e.args[0])

    def _print_Infinity(self, e):
        return "mpmath.inf"

    def _print_NegativeInfinity(self, e):
        return "(-mpmath.inf)"

    def _print_NaN(self, e):
        return "mpmath.nan"

    def _print_BooleanTrue(self, e):
        return "True"

    def _print_BooleanFalse(self, e):
        return "False"
