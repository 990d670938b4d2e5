"""A derived table (actgen/orders.py) -> its Activation: the spec's activation differentiated
k times with actgen's kink conventions (actgen/derive.py), with the budgets the spec states for
f^(k) and f^(k+1). Imported only where a derived order is lowered or shown (it imports SymPy)."""

from __future__ import annotations

from dataclasses import replace

import sympy as sp

from .activation import Activation
from .derive import differentiate
from .errors import DerivationError
from .ir import DTYPES, X
from .orders import DERIVED, is_derived, order_label
from .rewrite import stabilize
from .spec import parse_table


def derivative_expr(act: Activation, k: int):
    """d^k f / dx^k of the activation's expression (the gate's, the score's), differentiated
    from its stable rewrite, as f' is (rewrite.stable_source): log(1 + exp(x)) is softplus(x)
    first, so that f'' is sigmoid(x) sigmoid(-x), not exp(x)/(exp(x) + 1) - exp(2x)/(exp(x) + 1)^2
    (inf/inf from x = 355 on, which no rewrite of the sum recovers)."""
    expr = _expanded_polynomials(stabilize(act.expr)[0]) if k else act.expr
    for _ in range(k):
        expr = differentiate(expr, X)
    return expr


def _expanded_polynomials(expr):
    """Polynomials in x expanded: the derivative of a polynomial in Horner form (tanhshrink's
    Pade branch, x^3 P(x^2)/Q(x^2) with P and Q nested six deep) is a product rule at every
    level, whose third derivative is over differentiate's size limit (about 9,000 operations by
    its estimate); expanded, the third derivative has 850."""
    return expr.replace(lambda e: e.is_Add and e.has(X) and e.is_polynomial(X), sp.expand)


def derived_activation(parent: Activation, k: int) -> Activation:
    """The k-th derivative of ``parent`` as an elementwise Activation: forward f^(k), backward
    f^(k+1), parameter gradients d f^(k) / dp; budgets those of f^(k) and f^(k+1) in the spec."""
    try:
        expr = derivative_expr(parent, k)
    except DerivationError as exc:
        raise DerivationError(exc.problem, path=parent.source, activation=parent.name, key="expr",
                              fix=exc.fix) from None
    budgets = {}
    for dtype in DTYPES:
        budgets["forward", dtype] = parent.order_budget(k, dtype)
        budgets["backward", dtype] = parent.order_budget(k + 1, dtype)
        budgets["param_grad", dtype] = parent.budget("param_grad", dtype)
    info = {key: value for key, value in parent.info.items() if key == "kink"}
    return replace(parent, name=f"{parent.name}_d{k}", expr=expr, kind="elementwise", normalizer="", gate="",
                   output_derivative=None, output_derivative_valid=sp.true,
                   description=f"{order_label(k)}(x) of {parent.name}",
                   expr_text=f"d^{k}/dx^{k} ({parent.expr_text})" if k else parent.expr_text,
                   budgets=budgets, info=info, order=k)


def parse_any(name: str, table: dict, *, path: str) -> Activation:
    """A spec table (spec.parse_table) or a derived one, as its Activation."""
    if not is_derived(table):
        return parse_table(name, table, path=path)
    parent = parse_table(table["name"], table[DERIVED], path=path)
    return derived_activation(parent, table["order"])
