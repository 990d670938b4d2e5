"""The Activation: what a spec table means, independent of any backend."""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

#: The input variable of every activation.
X = sp.Symbol("x", real=True)
#: The output y = f(x), the variable of an output-form derivative (``output_derivative``).
Y = sp.Symbol("y", real=True)

#: What an activation's expression is, and how its kernels loop over an array:
#:   elementwise  y = f(x) element by element (the default)
#:   gated        the input splits in two halves (a, b) along an axis; y = a * f(b) (the GLU family)
#:   rowwise      along an axis, s = f(x) is a score and each row is normalised: softmax(s) or
#:                log_softmax(s) (softmax, log_softmax, softmin, a temperature softmax...)
KINDS = ("elementwise", "gated", "rowwise")
NORMALIZERS = ("softmax", "log_softmax", "sparsemax")


def param_symbol(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


@dataclass(frozen=True)
class Activation:
    """One activation function: ``expr`` in ``X`` and the parameters ``params``.

    ``params`` maps each parameter name to its default, in declaration order; ``learnable``
    names those for which gradient kernels are generated. ``source`` is the spec file it came
    from (a path, or ``<builtin>/name.toml``) and ``expr_text`` the expression as written there.
    ``kind`` says what ``expr`` is (the activation, a gate, a row score: see KINDS);
    ``output_derivative``, if given, is f'(x) written with the output ``Y`` = f(x) (valid where
    ``output_derivative_valid``, a condition on the parameters, holds).
    """

    name: str
    expr: sp.Expr
    params: dict[str, float]
    learnable: tuple[str, ...] = ()
    description: str = ""
    source: str = "<string>"
    expr_text: str = ""
    kind: str = "elementwise"
    normalizer: str = ""                      # rowwise: "softmax", "log_softmax" or "sparsemax"
    gate: str = ""                            # gated: the activation used as the gate, if named
    output_derivative: sp.Expr | None = None  # f'(x) as an expression in Y and the parameters
    output_derivative_valid: sp.Basic = sp.true
    #: (kind, dtype) -> ULP budget declared by the spec, overriding verify.BUDGETS
    budgets: dict = field(default_factory=dict, compare=False)
    #: documentation only: "kink" (the derivative's convention at kinks), "reference" (paper),
    #: "frameworks" ({framework: its name for it and how it differs})
    info: dict = field(default_factory=dict, compare=False)

    def budget(self, kind: str, dtype: str) -> float:
        from .verify import BUDGETS

        return self.budgets.get((kind, dtype), BUDGETS[kind, dtype])

    @property
    def x(self) -> sp.Symbol:
        return X

    @property
    def symbols(self) -> dict[str, sp.Symbol]:
        """Parameter symbols by name, in declaration order."""
        return {p: param_symbol(p) for p in self.params}
