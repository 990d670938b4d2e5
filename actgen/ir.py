"""The plain data every stage of the pipeline passes on: the symbols, kernels and forms.

A leaf module (SymPy only): the spec parser makes Activations of these symbols, derive makes
Kernels, rewrite and select make Forms, render prints them. Keeping them here lets each stage
import the vocabulary without importing the stage that produces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

#: The floating-point types kernels are generated for: numpy name -> (tag in C names, C type).
DTYPES = {"float32": ("f32", "float"), "float64": ("f64", "double")}

#: The input variable of every activation.
X = sp.Symbol("x", real=True)
#: The output y = f(x), the variable of an output-form derivative (``output_derivative``).
Y = sp.Symbol("y", real=True)


def param_symbol(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def dyadic(r: sp.Rational) -> bool:
    """True if r is exactly representable in binary (its denominator is a power of two)."""
    return power_of_two(int(r.q))


@dataclass(frozen=True)
class Kernel:
    """One generated kernel: ``exact`` is the per-element value it must reproduce."""

    name: str                 # "forward", "backward", "backward_y" or "grad_<param>"
    kind: str                 # "forward", "backward", "backward_y" or "param_grad"
    exact: sp.Expr
    param: str | None = None

    @property
    def description(self) -> str:
        return {"forward": "y = f(x)", "backward": "dx = dy * f'(x)",
                "backward_y": "dx = dy * f'(x), written with y = f(x)"}.get(
            self.kind, f"d{self.param} = sum(dy * df/d{self.param})")

    @property
    def variable(self) -> sp.Symbol:
        """The per-element input of the kernel expression: x, or y for backward_y."""
        return Y if self.kind == "backward_y" else X


@dataclass(frozen=True)
class Form:
    """A kernel expression ready to print: CSE temporaries, then the result."""

    temps: tuple[tuple[sp.Symbol, sp.Expr], ...]
    result: sp.Expr
    rules: tuple[str, ...] = field(default=())
    stable: sp.Expr | None = None     # the rewritten expression before folding and CSE
    guards: tuple = field(default=())  # limits returned at +-inf / beyond overflow (guards.py)
    #: temporaries evaluated in double-double (hi, lo), for arguments of sensitive functions
    dd_temps: frozenset = field(default=frozenset())
    compensated: bool = False

    @property
    def needs_nan_guard(self) -> bool:
        """True if a NaN input could come out as a number.

        A Piecewise is a select whose otherwise-branch takes NaN (every comparison is false), and
        a result that does not depend on x at all ignores it. The kernels then return NaN
        explicitly, so that NaN in means NaN out in every kernel (Max, Min, sign and Heaviside
        are printed as NaN-propagating helpers and need no guard).
        """
        exprs = [self.result] + [v for _, v in self.temps]
        if any(e.has(sp.Piecewise) for e in exprs):
            return True
        # the input (x, or y for backward_y), directly or through a temporary: a parameter
        # alone (expr = "a") does not carry the NaN
        carriers = {X, Y}
        for sym, value in self.temps:
            if value.free_symbols & carriers:
                carriers.add(sym)
        return not self.result.free_symbols & carriers


@dataclass(frozen=True)
class Lowered:
    """An activation with its kernels and the chosen form of each, per dtype."""

    act: "Activation"        # activation.Activation
    kernels: tuple[Kernel, ...]
    choices: dict             # (kernel name, dtype) -> select.Choice

    def form(self, kernel: str, dtype: str = "float64") -> Form:
        return self.choices[kernel, dtype].form
