"""The Activation: what a spec table means, independent of any backend."""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .ir import X, param_symbol

#: What an activation's expression is, and how its kernels loop over an array:
#:   elementwise  y = f(x) element by element (the default)
#:   gated        the input splits in two halves (a, b) along an axis; y = a * f(b) (the GLU family)
#:   rowwise      along an axis, s = f(x) is a score and each row is normalised: softmax(s) or
#:                log_softmax(s) (softmax, log_softmax, softmin, a temperature softmax...)
KINDS = ("elementwise", "gated", "rowwise")
NORMALIZERS = ("softmax", "log_softmax", "sparsemax")

#: Max ULPs (of the correctly rounded reference) per kernel kind and dtype, unless a spec's
#: ``budgets`` says otherwise. glibc's vector math promises 4 ULP per function (float and
#: double); a kernel chains a few of them, and float64 gets 8. Parameter gradients are sums:
#: their budget is in units of eps times sum |dy * df/dp| (the sum's own condition), since a sum
#: has no useful ULP error.
BUDGETS = {("forward", "float32"): 4, ("forward", "float64"): 8,
           ("backward", "float32"): 4, ("backward", "float64"): 8,
           ("param_grad", "float32"): 64, ("param_grad", "float64"): 64}


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
    #: (kind, dtype) -> ULP budget declared by the spec, overriding verify.BUDGETS; kind is a
    #: kernel kind or "order<k>" (k >= 2), the budget of the k-th derivative f^(k)
    budgets: dict = field(default_factory=dict, compare=False)
    #: documentation only: "kink" (the derivative's convention at kinks), "reference" (paper),
    #: "frameworks" ({framework: its name for it and how it differs})
    info: dict = field(default_factory=dict, compare=False)
    #: k if this is the k-th derivative of a spec's activation (actgen/orders.py), else 0: its
    #: forward kernel is then a derivative, measured conditioned as f' is
    order: int = 0

    def budget(self, kind: str, dtype: str) -> float:
        return self.budgets.get((kind, dtype), BUDGETS[kind, dtype])

    def order_budget(self, k: int, dtype: str) -> float:
        """The budget of f^(k) (in conditioned ULPs for k >= 1): f's forward budget for k = 0,
        the backward one for k = 1, the spec's ``order<k>.<dtype>`` for k >= 2, else the backward
        default (a derivative kernel chains about as many functions as f' does)."""
        if k == 0:
            return self.budget("forward", dtype)
        if k == 1:
            return self.budget("backward", dtype)
        return self.budgets.get((f"order{k}", dtype), BUDGETS["backward", dtype])

    @property
    def x(self) -> sp.Symbol:
        return X

    @property
    def symbols(self) -> dict[str, sp.Symbol]:
        """Parameter symbols by name, in declaration order."""
        return {p: param_symbol(p) for p in self.params}
