"""Compensated arguments: which sensitive functions get their argument as an unevaluated pair.

exp, erfc, sigmoid, softplus, cosh and sinh magnify the rounding error of their argument by its
size. Where that argument is a sum or product that rounds, the printers evaluate it as a
double-double (a float-float in float arithmetic) and the function takes the low part as a
first-order correction. This module decides where (a Form's ``dd_temps``); the printers
(printers.DoubleDouble) print it.
"""

from __future__ import annotations

from dataclasses import replace

import sympy as sp

from .functions import erfc, sigmoid, softplus
from .ir import Form, dyadic


#: Functions whose relative condition grows with the argument (exp: |u|; erfc: ~2u^2; sigmoid and
#: softplus towards -inf: |u|; cosh, sinh: |u|). The rounding of their argument is magnified by
#: that much; in float64 these get the argument in double-double and a first-order correction.
SENSITIVE = (sp.exp, erfc, sp.erfc, sigmoid, softplus, sp.cosh, sp.sinh)

#: The sensitive functions with a float-float variant (actgen_exp_ff, actgen_erfc_ff,
#: actgen_sigmoid_ff): a float32 kernel computed in float can be compensated only where these are
#: the ones that need it
FLOAT_COMPENSATED = ("exp", "erfc", "sigmoid")


def dd_printable(e) -> bool:
    """An expression the printers can evaluate in double-double: +, *, integer powers up to 8,
    numbers and symbols (anything else is evaluated in double and lifted)."""
    if e.is_Symbol or e.is_Number:
        return True
    if isinstance(e, sp.UnevaluatedExpr):
        return dd_printable(e.args[0])
    if e.is_Add or e.is_Mul:
        return all(dd_printable(a) or not a.free_symbols for a in e.args)
    if e.is_Pow:
        return e.exp.is_Integer and 1 <= int(e.exp) <= 8 and dd_printable(e.base)
    return False


def rounds(e, dd_temps) -> bool:
    """Whether evaluating e in double rounds (so that double-double gains something)."""
    if e.is_Symbol:
        return e in dd_temps
    if e.is_Number or not e.free_symbols:
        return False
    if isinstance(e, sp.UnevaluatedExpr):
        return rounds(e.args[0], dd_temps)
    if e.is_Mul:
        coeff, rest = e.as_coeff_Mul()
        exact_coeff = coeff.is_Rational and dyadic(coeff) and abs(coeff.p) == 1
        factors = sp.Mul.make_args(rest)
        return (not exact_coeff) or len(factors) > 1 or any(rounds(f, dd_temps) for f in factors)
    return True


def float_compensable(form: Form) -> bool:
    """Whether a compensated form can be computed in float: every sensitive function that gets a
    compensated argument has a float-float variant (FLOAT_COMPENSATED)."""
    for e in [v for _, v in form.temps] + [form.result]:
        for node in sp.preorder_traversal(e):
            if (isinstance(node, SENSITIVE) and dd_printable(node.args[0])
                    and rounds(node.args[0], form.dd_temps) and type(node).__name__ not in FLOAT_COMPENSATED):
                return False
    return True


def compensate(form: Form) -> Form | None:
    """The form with double-double arguments for its sensitive functions, or None if no
    sensitive function has an argument that rounds."""
    definitions = dict(form.temps)
    exprs = [v for _, v in form.temps] + [form.result]
    calls = [node for e in exprs for node in sp.preorder_traversal(e)
             if isinstance(node, SENSITIVE) and dd_printable(node.args[0])]
    if not calls:
        return None
    dd_temps: set = set()
    pending = [s for call in calls for s in call.args[0].free_symbols if s in definitions]
    while pending:
        sym = pending.pop()
        if sym in dd_temps or not dd_printable(definitions[sym]):
            continue
        dd_temps.add(sym)
        pending.extend(s for s in definitions[sym].free_symbols if s in definitions)
    if not any(rounds(call.args[0], dd_temps) for call in calls):
        return None
    return replace(form, dd_temps=frozenset(dd_temps), compensated=True,
                   rules=(*form.rules, "compensated"))
