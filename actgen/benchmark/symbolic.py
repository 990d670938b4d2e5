"""An activation written the way a user would write it in PyTorch, JAX and numexpr, from its
SymPy expression: the peers ``actgen bench`` times for any spec.

The printers are SymPy's own (``TorchPrinter``, ``JaxPrinter``, ``NumExprPrinter``) with the
changes a user's hand would make:

- actgen's functions become the libraries' own: ``sigmoid`` -> ``torch.sigmoid`` /
  ``jax.nn.sigmoid``, ``softplus`` -> ``torch.nn.functional.softplus`` / ``jax.nn.softplus``,
  ``erf``/``erfc`` -> ``torch.erf`` / ``jax.scipy.special.erf`` (SymPy's JAX printer writes
  ``math.erf``, which does not take arrays);
- ``Piecewise`` is nested ``where`` (SymPy's JAX printer writes ``select``), comparisons are
  operators, ``Max``/``Min`` are ``maximum``/``clamp`` (SymPy's torch printer writes
  ``torch.max(0, x)``, a reduction), ``Heaviside`` takes its value at 0 as a tensor;
- parameters that are not learnable are numbers in the expression (a user writes ``0.01 * x``),
  learnable ones are arguments (tensors); constants such as sqrt(2) or pi are float literals;
- numexpr has no erf and no maximum: sigmoid and softplus are written ``1 / (1 + exp(-z))`` and
  ``log1p(exp(z))``, as its users write them, and its float constants are named (a literal
  would make numexpr compute a float32 array in float64).

What a library cannot express raises ``Inexpressible`` with the reason the report shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import sympy as sp
from sympy.printing.lambdarepr import NumExprPrinter
from sympy.printing.numpy import JaxPrinter
from sympy.printing.pytorch import TorchPrinter

from ..activation import X, param_symbol
from ..derive import differentiate
from ..functions import confine

DY = sp.Symbol("dy", real=True)


class Inexpressible(Exception):
    """The activation has no equivalent in a peer library; ``str()`` is the reason, short enough
    for a table cell ("no erf in numexpr")."""


@dataclass(frozen=True)
class PeerSource:
    """A Python function of ``x`` and the learnable parameters, as source text."""

    library: str                  # "torch", "jax"
    text: str                     # "def f(x, beta):\n    return x*torch.sigmoid(beta*x)\n"
    args: tuple[str, ...]         # the learnable parameters, after x

    def function(self, namespace: dict):
        """The function, compiled from ``text`` with the library's modules in ``namespace``."""
        scope = dict(namespace)
        exec(compile(self.text, f"<actgen bench: {self.library} peer>", "exec"), scope)   # noqa: S102
        return scope["f"]


@dataclass(frozen=True)
class NumExprSource:
    """numexpr formulas: ``forward`` in x, ``backward`` (dy * f'(x)) in x and dy; ``constants``
    the named numbers (passed in the array's dtype), ``args`` the learnable parameters."""

    forward: str
    backward: str
    constants: dict = field(default_factory=dict)
    args: tuple[str, ...] = ()


def user_expression(act, expr=None):
    """``expr`` (default: the activation's) with the parameters that are not learnable replaced
    by their defaults and each constant subexpression (sqrt(2), pi, log(2)) by a float: what a
    user types."""
    expr = act.expr if expr is None else expr
    fixed = {param_symbol(p): _number(v) for p, v in act.params.items() if p not in act.learnable}
    expr = expr.xreplace(fixed) if fixed else expr
    if expr.has(confine):
        raise Inexpressible("internal function confine")
    return _floats(sp.sympify(expr))


def _number(v: float):
    """A parameter's value as a user types it: 1 for 1.0 (so that 1.0*exp(x) - 1.0 is exp(x) - 1)."""
    if not math.isfinite(v):
        return sp.oo if v > 0 else (-sp.oo if v < 0 else sp.nan)
    return sp.Integer(int(v)) if v == int(v) and abs(v) < 2 ** 53 else sp.Float(v, 17)


def _floats(expr):
    """Irrational constants (and rationals inside functions) as 17-digit floats; integers and
    the rational coefficients SymPy keeps (x/2) stay as they are."""
    if expr.is_Atom:
        if expr.is_number and not expr.is_Rational and expr.is_finite:
            return sp.Float(expr.evalf(17), 17)
        return expr
    if expr.is_number and not isinstance(expr, (sp.Rational, sp.logic.boolalg.BooleanAtom)) \
            and expr.is_finite:
        return sp.Float(expr.evalf(17), 17)
    return expr.func(*[_floats(a) for a in expr.args])


def _params(act) -> tuple[str, ...]:
    return tuple(act.learnable)


# ---- torch and JAX: one mixin, two libraries ---------------------------------------------------

class _ArrayPeerPrinter:
    """What the torch and JAX printers share: functions by table, Piecewise as nested where,
    comparisons and logic as operators, Max/Min, Heaviside; anything else is Inexpressible."""

    LIBRARY = ""
    FUNCTIONS: dict = {}
    WHERE = MAXIMUM = MINIMUM = ""

    def __init_subclass__(cls, **kwargs):
        # SymPy's printers have a method per known function (_print_exp writes numpy.exp or
        # math.erf): each function of the table prints through the table instead
        super().__init_subclass__(**kwargs)
        for name in cls.FUNCTIONS:
            setattr(cls, f"_print_{name}", _ArrayPeerPrinter._print_Function)

    def _print_Function(self, expr):
        for cls in type(expr).__mro__:
            name = self.FUNCTIONS.get(cls.__name__)
            if name is not None:
                return f"{name}({', '.join(self._print(a) for a in expr.args)})"
            if cls is sp.Function:
                break
        raise Inexpressible(f"no {type(expr).__name__} in {self.LIBRARY}")

    def _print_Piecewise(self, expr):
        *branches, (last, cond) = expr.args
        if cond != sp.true:
            raise Inexpressible("a Piecewise without a final (value, True)")
        out = self._branch(last)
        for value, cond in reversed(branches):
            out = f"{self.WHERE}({self._print(cond)}, {self._branch(value)}, {out})"
        return out

    def _branch(self, value):
        return self._print(value)

    def _print_Relational(self, expr):
        ops = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
        return f"({self._print(expr.lhs)} {ops[expr.rel_op]} {self._print(expr.rhs)})"

    def _print_And(self, expr):
        return "(" + " & ".join(self._print(a) for a in expr.args) + ")"

    def _print_Or(self, expr):
        return "(" + " | ".join(self._print(a) for a in expr.args) + ")"

    def _print_Not(self, expr):
        return f"(~{self._print(expr.args[0])})"

    def _fold(self, name, args):
        out = self._print(args[0])
        for a in args[1:]:
            out = f"{name}({out}, {self._print(a)})"
        return out

    def _print_Max(self, expr):
        return self._fold(self.MAXIMUM, _arrays_first(expr.args))

    def _print_Min(self, expr):
        return self._fold(self.MINIMUM, _arrays_first(expr.args))

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.args
        if exp == sp.S.Half:
            return f"{self.FUNCTIONS['sqrt']}({self._print(base)})"
        if exp == -sp.S.Half:
            return f"1/{self.FUNCTIONS['sqrt']}({self._print(base)})"
        return f"{self.parenthesize(base, 60)}**{self.parenthesize(exp, 60)}"

    def _print_Exp1(self, expr):
        return repr(math.e)

    def _print_Pi(self, expr):
        return repr(math.pi)

    def _print_Infinity(self, expr):
        return "float('inf')"

    def _print_NegativeInfinity(self, expr):
        return "float('-inf')"


def _arrays_first(args):
    """Max/Min's arguments with the numbers last: maximum(x + 3, 0), as a user writes it."""
    return sorted(args, key=lambda a: a.is_number)


_COMMON = {"exp": "exp", "log": "log", "sqrt": "sqrt", "Abs": "abs", "sign": "sign", "tanh": "tanh",
           "sinh": "sinh", "cosh": "cosh", "atan": "atan", "sin": "sin", "cos": "cos",
           "log1p": "log1p", "expm1": "expm1"}


class TorchPeerPrinter(_ArrayPeerPrinter, TorchPrinter):
    """PyTorch as a user writes it: torch.sigmoid, torch.nn.functional.softplus, torch.where."""

    LIBRARY = "torch"
    FUNCTIONS = {**{k: f"torch.{v}" for k, v in _COMMON.items()}, "erf": "torch.erf", "erfc": "torch.erfc",
                 "sigmoid": "torch.sigmoid", "softplus": "torch.nn.functional.softplus"}
    WHERE, MAXIMUM, MINIMUM = "torch.where", "torch.maximum", "torch.minimum"

    def _fold(self, name, args):
        # a number bound is torch.clamp (torch.maximum takes tensors only)
        tensors = [a for a in args if not a.is_number]
        numbers = [a for a in args if a.is_number]
        out = _ArrayPeerPrinter._fold(self, name, tensors)
        if not numbers:
            return out
        bound = (sp.Max if name == self.MAXIMUM else sp.Min)(*numbers)
        return f"torch.clamp({out}, {'min' if name == self.MAXIMUM else 'max'}={self._print(bound)})"

    def _branch(self, value):
        # torch.where of two numbers would be a tensor of the default dtype, not x's
        return f"x.new_tensor({self._print(value)})" if value.is_number else self._print(value)

    def _print_Heaviside(self, expr):
        z = self._print(expr.args[0])
        at0 = self._print(expr.args[1]) if len(expr.args) > 1 else "0.5"
        return f"torch.heaviside({z}, x.new_tensor({at0}))"


class JaxPeerPrinter(_ArrayPeerPrinter, JaxPrinter):
    """JAX as a user writes it: jax.nn.sigmoid, jax.nn.softplus, jnp.where,
    jax.scipy.special.erf."""

    LIBRARY = "jax"
    FUNCTIONS = {**{k: f"jnp.{v}" for k, v in _COMMON.items()}, "atan": "jnp.arctan",
                 "erf": "jax.scipy.special.erf", "erfc": "jax.scipy.special.erfc",
                 "sigmoid": "jax.nn.sigmoid", "softplus": "jax.nn.softplus"}
    WHERE, MAXIMUM, MINIMUM = "jnp.where", "jnp.maximum", "jnp.minimum"

    def _print_Heaviside(self, expr):
        at0 = self._print(expr.args[1]) if len(expr.args) > 1 else "0.5"
        return f"jnp.heaviside({self._print(expr.args[0])}, {at0})"


def _source(printer, act, library: str) -> PeerSource:
    expr = user_expression(act)
    try:
        body = printer.doprint(expr)
    except Inexpressible:
        raise
    except Exception as exc:                       # noqa: BLE001 - SymPy's "not supported" errors
        raise Inexpressible(f"not expressible in {library}: {str(exc).splitlines()[0][:60]}") from None
    args = _params(act)
    return PeerSource(library, f"def f({', '.join(('x',) + args)}):\n    return {body}\n", args)


def torch_source(act) -> PeerSource:
    """The activation as a user writes it with torch ops (autograd differentiates it)."""
    return _source(TorchPeerPrinter({"strict": True}), act, "torch")


def jax_source(act) -> PeerSource:
    """The activation as a user writes it with jax.numpy (jax.vjp differentiates it)."""
    return _source(JaxPeerPrinter({"strict": True}), act, "jax")


# ---- numexpr --------------------------------------------------------------------------------

class NumExprPeerPrinter(NumExprPrinter):
    """numexpr formulas; non-integer numbers become names (``c0``, ``c1``...) collected in
    ``constants``, so that a float32 array stays float32."""

    def __init__(self, settings=None):
        super().__init__(settings)
        self.constants: dict[str, float] = {}

    def _constant(self, value: float) -> str:
        for name, v in self.constants.items():
            if v == value:
                return name
        name = f"c{len(self.constants)}"
        self.constants[name] = value
        return name

    def _print_Float(self, expr):
        return self._constant(float(expr))

    def _print_Rational(self, expr):
        return str(expr.p) if expr.q == 1 else self._constant(float(expr))

    _print_Half = _print_Rational

    def _print_Function(self, expr):
        name = type(expr).__name__
        z = expr.args[0] if expr.args else None
        if name == "sigmoid":
            return f"(1 / (1 + exp(-({self._print(z)}))))"
        if name == "softplus":
            return f"log1p(exp({self._print(z)}))"
        if name in ("log1p", "expm1"):
            return f"{name}({self._print(z)})"
        try:
            return super()._print_Function(expr)
        except TypeError:
            raise Inexpressible(f"no {name} in numexpr") from None

    # SymPy's Python printers write these with math. (not numexpr functions)
    _print_log1p = _print_expm1 = _print_erf = _print_erfc = _print_sigmoid = _print_softplus = _print_Function

    def _print_And(self, expr):
        return "(" + " & ".join(self._print(a) for a in expr.args) + ")"

    def _print_Or(self, expr):
        return "(" + " | ".join(self._print(a) for a in expr.args) + ")"

    def _print_Not(self, expr):
        return f"(~{self._print(expr.args[0])})"

    def _print_Max(self, expr):
        return self._pairwise(expr.args, ">")

    def _print_Min(self, expr):
        return self._pairwise(expr.args, "<")

    def _pairwise(self, args, op):
        out = self._print(args[0])
        for a in args[1:]:
            b = self._print(a)
            out = f"where({out} {op} {b}, {out}, {b})"
        return out

    def _print_Heaviside(self, expr):
        z = self._print(expr.args[0])
        at0 = self._print(expr.args[1] if len(expr.args) > 1 else sp.S.Half)
        return f"where({z} > 0, 1, where({z} < 0, 0, {at0}))"

    def _print_sign(self, expr):
        # SymPy's Python printer writes (0.0 if x == 0 else math.copysign(1, x))
        z = self._print(expr.args[0])
        return f"where({z} > 0, 1, where({z} < 0, -1, 0))"

    def _print_Exp1(self, expr):
        return self._constant(math.e)

    def _print_Pi(self, expr):
        return self._constant(math.pi)

    def _print_Infinity(self, expr):
        return self._constant(math.inf)

    def _print_NegativeInfinity(self, expr):
        return self._constant(-math.inf)


def numexpr_source(act) -> NumExprSource:
    """f and dy * f' (SymPy's derivative) as numexpr formulas."""
    printer = NumExprPeerPrinter({"strict": True})
    try:
        forward = printer._print(user_expression(act))
        backward = printer._print(DY * user_expression(act, differentiate(act.expr, X)))
    except Inexpressible:
        raise
    except Exception as exc:                       # noqa: BLE001 - SymPy's "not supported" errors
        raise Inexpressible(f"not expressible in numexpr: {str(exc).splitlines()[0][:60]}") from None
    if "math." in forward + backward:              # a Python-only function SymPy fell back to
        raise Inexpressible("a function numexpr lacks")
    return NumExprSource(forward, backward, dict(printer.constants), _params(act))
